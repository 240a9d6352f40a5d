# The reports lab/vm/run makes from what the guest left, as functions it sources; each works on
# files of any size (mawk's sprintf stops at 8 KiB, so no text goes through sprintf).

# hmm-tests' verdicts (TAP, file $1) as JUnit, for the CI that reads svmconf's junit.xml: one
# testcase per TAP result, the lines the test printed since its RUN line as the failure's text,
# whole, whatever their length.
tap_junit() {
    local body counts n failures skipped
    body=$(mktemp) || return 1
    counts=$body.counts
    awk -v counts="$counts" '
        function esc(t) {
            gsub(/&/, "\\&amp;", t); gsub(/</, "\\&lt;", t); gsub(/>/, "\\&gt;", t)
            gsub(/"/, "\\&quot;", t); return t
        }
        /^#  RUN / { said = ""; first = ""; next }
        /^# / {
            line = substr($0, 3); said = said line "\n"
            if (first == "" && line ~ /Expected|Test terminated|SKIP/) first = line
            next
        }
        /^(not )?ok [0-9]+ / {
            bad = ($1 == "not"); name = bad ? $4 : $3; n++
            print "    <testcase classname=\"hmm-tests\" name=\"" esc(name) "\">"
            if (bad) {
                failures++
                print "      <failure message=\"" esc(first) "\">" esc(said) "</failure>"
            } else if ($0 ~ /# SKIP/) {
                skipped++
                print "      <skipped/>"
            }
            print "    </testcase>"
            said = ""; first = ""
        }
        END { print n + 0, failures + 0, skipped + 0 > counts }' "$1" >"$body" || {
        rm -f "$body" "$counts"
        return 1
    }
    read -r n failures skipped <"$counts"
    echo '<?xml version="1.0" encoding="UTF-8"?>'
    echo '<testsuites>'
    echo "  <testsuite name=\"hmm-tests\" tests=\"$n\" failures=\"$failures\" skipped=\"$skipped\">"
    cat "$body"
    echo '  </testsuite>'
    echo '</testsuites>'
    rm -f "$body" "$counts"
}

# The reason of a journal end record (the JSON line $1) as a Markdown table cell: its first line
# (the diagnosis) whole, JSON escapes undone, `|` escaped; nothing when it has none.
reason_cell() {
    grep -oE '"(reason|diagnosis)":"([^"\\]|\\.)*"' <<<"$1" | head -n1 |
        sed -E 's/^"[a-z]*":"//; s/"$//; s/\\n.*$//; s/\\"/"/g; s/\\t/ /g; s/\\\\/\\/g; s/\|/\\|/g' ||
        true
}

# The svmconf cases of verdicts.md ($1) that neither passed nor skipped, a line each:
# `lab/vm: RUN: CASE STATUS: REASON`, at most 40 and then how many more.
failed_cases() {
    awk -F' [|] ' '
        /^## / { run = "" }
        /^## svmconf: / { run = $0; sub(/^## svmconf: /, "", run); sub(/ .*/, "", run) }
        run != "" && /^[|] `/ && $2 != "pass" && $2 != "skip" {
            name = $1; sub(/^[|] /, "", name); gsub(/`/, "", name)
            reason = $3; sub(/ [|]$/, "", reason)
            if (++shown <= 40) printf "lab/vm: %s: %s %s: %s\n", run, name, $2, reason
        }
        END { if (shown > 40) printf "lab/vm: ... and %d more in verdicts.md\n", shown - 40 }
    ' "$1"
}
