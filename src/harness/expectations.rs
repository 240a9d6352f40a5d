//! The expectations file: what a profile's device is known to fail, flake on, or not run, as
//! deqp-runner's baselines say it. Lives in `fixtures/expectations/PROFILE.yaml`.
//!
//! ```yaml
//! fail:                                   # known failures: a bad outcome is expected_fail,
//!   - case: eviction::lru_whole::vram_2x  #   a pass is unexpected_pass (the list is stale)
//!     reason: https://gitlab.freedesktop.org/drm/amd/-/issues/4242
//! flake:                                  # known flakes: a bad outcome is flake
//!   - pattern: 'fault_storm::.*::64KiB'   # a regex matched against the whole case name
//!     reason: fault storms time out on loaded MI60s
//! skip:                                   # never run: the runner skips them with the reason
//!   - pattern: 'reset::.*'
//!     reason: GPU reset hangs this board's firmware (ticket LAB-17)
//! ```
//! Each entry has exactly one of `case` (an instance name, matched exactly) and `pattern` (a
//! regex that must match the whole name), and a `reason` (text or a link). Every list is
//! optional. An exact name may be listed once in the whole file. A missing file means no
//! expectations.
//!
//! Lookup: an exact `case` entry wins over any pattern; among patterns the first that matches
//! wins, trying the `skip` list, then `fail`, then `flake`, each from the top. Skip comes first
//! because a case the file says not to run must not run, whatever else matches it.
//!
//! Application ([`Expectations::apply`]), from the status the case had ("bad outcome" is
//! [`Status::is_bad_outcome`]: fail, timeout, crash, dmesg-warn, dmesg-fail, incomplete):
//!
//! | listed as | observed     | becomes          |
//! |-----------|--------------|------------------|
//! | fail      | bad outcome  | expected_fail    |
//! | fail      | pass         | unexpected_pass  |
//! | flake     | bad outcome  | flake            |
//! | any       | anything else| unchanged        |
//!
//! Whenever an entry matches, the record gets an [`ExpectationNote`] saying what was listed,
//! why, and what the case really did, so reports show both.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::Deserialize;

use crate::fixtures::{read_source, shown_path, FixtureError, Loaded};
use crate::results::{CaseRecord, ExpectationNote, Status};
use crate::util::yaml::{self, FieldPath, YamlError};

/// The folder of expectations files, inside the fixtures root.
pub const EXPECTATIONS_DIR: &str = "expectations";

/// What an entry says of the cases it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExpectedKind {
    Fail,
    Flake,
    Skip,
}

impl ExpectedKind {
    /// The list's name in the file, and what [`ExpectationNote::expected`] holds.
    pub fn name(self) -> &'static str {
        match self {
            ExpectedKind::Fail => "fail",
            ExpectedKind::Flake => "flake",
            ExpectedKind::Skip => "skip",
        }
    }
}

impl fmt::Display for ExpectedKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the file says of one case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    pub kind: ExpectedKind,
    /// The entry's reason: text or a link.
    pub reason: String,
}

/// A loaded expectations file.
#[derive(Clone, Debug)]
pub struct Expectations {
    exact: HashMap<String, Expected>,
    /// Anchored at both ends; in lookup order (skip, fail, flake; file order within each).
    patterns: Vec<(Regex, Expected)>,
}

// --- the file as written ---------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    // `fail:` with nothing under it is YAML null: read as an empty list.
    #[serde(default)]
    fail: Option<Vec<EntrySpec>>,
    #[serde(default)]
    flake: Option<Vec<EntrySpec>>,
    #[serde(default)]
    skip: Option<Vec<EntrySpec>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntrySpec {
    #[serde(default)]
    case: Option<String>,
    #[serde(default)]
    pattern: Option<String>,
    reason: String,
}

impl Expectations {
    /// Loads `ROOT/expectations/PROFILE.yaml`; `Ok(None)` when there is no such file.
    pub fn load(root: &Path, profile: &str) -> Result<Option<Loaded<Expectations>>, FixtureError> {
        let file = expectations_path(root, profile);
        match std::fs::metadata(&file) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(FixtureError::Read {
                    path: shown_path(root, &file),
                    source,
                })
            }
            Ok(_) => {}
        }
        let src = read_source(root, &file)?;
        let value = Expectations::parse(&src.text, &src.shown)?;
        Ok(Some(Loaded {
            value,
            path: src.shown,
            sha256: src.sha256,
        }))
    }

    /// Parses and checks an expectations file held in memory; `file` is what messages call it.
    pub fn parse(text: &str, file: &Path) -> Result<Expectations, FixtureError> {
        // A file of comments only is an empty document, which is no mapping: nothing listed.
        let spec: FileSpec = if is_blank_yaml(text) {
            FileSpec {
                fail: None,
                flake: None,
                skip: None,
            }
        } else {
            yaml::parse(text, file)?
        };
        let at = |path: FieldPath, msg: String| YamlError::at(file, text, &path, msg);

        let mut exact: HashMap<String, Expected> = HashMap::new();
        let mut first_listed: HashMap<String, FieldPath> = HashMap::new();
        let mut patterns = Vec::new();
        // Lookup order: skip, then fail, then flake (see the module documentation).
        let lists = [
            (ExpectedKind::Skip, spec.skip),
            (ExpectedKind::Fail, spec.fail),
            (ExpectedKind::Flake, spec.flake),
        ];
        for (kind, list) in lists {
            for (i, entry) in list.unwrap_or_default().into_iter().enumerate() {
                let here = FieldPath::root().key(kind.name()).index(i);
                let reason = entry.reason.trim();
                if reason.is_empty() {
                    return Err(at(
                        here.key("reason"),
                        "expected why the entry is listed (text or a link), got nothing".into(),
                    )
                    .into());
                }
                let expected = Expected {
                    kind,
                    reason: reason.to_string(),
                };
                match (entry.case, entry.pattern) {
                    (Some(_), Some(_)) => {
                        return Err(at(
                            here,
                            "has both `case` and `pattern`; expected exactly one".into(),
                        )
                        .into())
                    }
                    (None, None) => {
                        return Err(at(
                            here,
                            "has neither `case` nor `pattern`; expected exactly one \
                             (`case: exact::name` or `pattern: 'regex'`)"
                                .into(),
                        )
                        .into())
                    }
                    (Some(case), None) => {
                        if case.trim().is_empty() {
                            return Err(at(
                                here.key("case"),
                                "expected a case name like `prefetch::to_vram::2MiB`, got nothing"
                                    .into(),
                            )
                            .into());
                        }
                        if let Some(first) = first_listed.get(&case) {
                            return Err(at(
                                here.key("case"),
                                format!(
                                    "case `{case}` is already listed at {first}; \
                                     expected each case once"
                                ),
                            )
                            .into());
                        }
                        first_listed.insert(case.clone(), here);
                        exact.insert(case, expected);
                    }
                    (None, Some(pattern)) => {
                        let regex = whole_name_regex(&pattern).map_err(|why| {
                            at(
                                here.clone().key("pattern"),
                                format!(
                                    "entry {here}: `{pattern}` is not a usable regular \
                                     expression: {why}"
                                ),
                            )
                        })?;
                        patterns.push((regex, expected));
                    }
                }
            }
        }
        Ok(Expectations { exact, patterns })
    }

    /// What the file says of `case`, if anything: an exact entry, else the first pattern.
    pub fn lookup(&self, case: &str) -> Option<&Expected> {
        self.exact.get(case).or_else(|| {
            self.patterns
                .iter()
                .find(|(re, _)| re.is_match(case))
                .map(|(_, e)| e)
        })
    }

    /// Whether the file lists nothing.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.patterns.is_empty()
    }

    /// Turns the status the case had into the one against these expectations (the table in the
    /// module documentation) and notes the entry on the record.
    ///
    /// A record that already carries a note is first put back to the status it observed, so
    /// applying twice changes nothing, and a journal can be re-exported against a newer file.
    pub fn apply(&self, record: &mut CaseRecord) {
        if let Some(note) = record.expectation.take() {
            record.status = note.observed;
        }
        let Some(expected) = self.lookup(&record.case) else {
            return;
        };
        let observed = record.status;
        record.status = match expected.kind {
            ExpectedKind::Fail if observed.is_bad_outcome() => Status::ExpectedFail,
            ExpectedKind::Fail if observed == Status::Pass => Status::UnexpectedPass,
            ExpectedKind::Flake if observed.is_bad_outcome() => Status::Flake,
            _ => observed,
        };
        record.expectation = Some(ExpectationNote {
            expected: expected.kind.name().to_string(),
            reason: expected.reason.clone(),
            observed,
        });
    }
}

/// `pattern` compiled to match whole names only; on error, the regex crate's own last line
/// (`error: unclosed group`), which names the problem without the caret diagram.
fn whole_name_regex(pattern: &str) -> Result<Regex, String> {
    if pattern.is_empty() {
        return Err("expected a pattern, got nothing".to_string());
    }
    // Compiled alone first, so that an error quotes the pattern as written, not the anchors.
    if let Err(e) = Regex::new(pattern) {
        let text = e.to_string();
        return Err(text.lines().last().unwrap_or(&text).trim().to_string());
    }
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| e.to_string())
}

/// Whether `text` holds no YAML node: only blank lines, comments and document markers.
fn is_blank_yaml(text: &str) -> bool {
    text.lines().all(|line| {
        let line = line.trim();
        line.is_empty() || line.starts_with('#') || line == "---" || line == "..."
    })
}

/// Where the expectations of `profile` live under `root`, whether or not the file exists.
pub fn expectations_path(root: &Path, profile: &str) -> PathBuf {
    root.join(EXPECTATIONS_DIR).join(format!("{profile}.yaml"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::test_support::record;
    use rstest::rstest;

    const FILE: &str = "fixtures/expectations/lab.yaml";

    const LAB: &str = "\
# what the lab's board is known to do
fail:
  - case: eviction::lru_whole::vram_2x
    reason: https://gitlab.freedesktop.org/drm/amd/-/issues/4242
  - pattern: 'prefetch::to_system::.*'
    reason: migrate-to-ram loses the last page
flake:
  - pattern: 'prefetch::.*'
    reason: prefetch races the MMU notifier
  - case: fault_storm::scattered::64KiB
    reason: times out under load
skip:
  - pattern: 'reset::.*'
    reason: reset hangs the firmware
  - pattern: 'prefetch::to_system::malloc::4KiB'
    reason: skipped before it can be expected to fail
";

    fn lab() -> Expectations {
        Expectations::parse(LAB, Path::new(FILE)).unwrap()
    }

    #[rstest]
    #[case("eviction::lru_whole::vram_2x", Some((ExpectedKind::Fail, "https://gitlab.freedesktop.org/drm/amd/-/issues/4242")))]
    // A pattern in fail beats a pattern in flake that comes later.
    #[case("prefetch::to_system::managed::2MiB", Some((ExpectedKind::Fail, "migrate-to-ram loses the last page")))]
    #[case("prefetch::to_vram::2MiB", Some((ExpectedKind::Flake, "prefetch races the MMU notifier")))]
    #[case("fault_storm::scattered::64KiB", Some((ExpectedKind::Flake, "times out under load")))]
    #[case("reset::loses_vram::2MiB", Some((ExpectedKind::Skip, "reset hangs the firmware")))]
    // Skip patterns are tried first.
    #[case("prefetch::to_system::malloc::4KiB", Some((ExpectedKind::Skip, "skipped before it can be expected to fail")))]
    // Whole-name match: a pattern does not match a part of a name.
    #[case("xreset::loses_vram::2MiB", None)]
    #[case("fault_storm::scattered::64KiB::x", None)]
    #[case("first_touch::untouched::4KiB", None)]
    fn lookup_finds_the_entry(#[case] case: &str, #[case] want: Option<(ExpectedKind, &str)>) {
        let e = lab();
        let got = e.lookup(case).map(|x| (x.kind, x.reason.as_str()));
        assert_eq!(got, want, "{case}");
    }

    #[test]
    fn exact_beats_an_earlier_pattern() {
        let text = "\
skip:
  - pattern: '.*'
    reason: everything
flake:
  - case: a::b::4KiB
    reason: just this one
";
        let e = Expectations::parse(text, Path::new(FILE)).unwrap();
        assert_eq!(e.lookup("a::b::4KiB").unwrap().kind, ExpectedKind::Flake);
        assert_eq!(e.lookup("a::c::4KiB").unwrap().kind, ExpectedKind::Skip);
    }

    #[rstest]
    #[case(ExpectedKind::Fail, Status::Fail, Status::ExpectedFail)]
    #[case(ExpectedKind::Fail, Status::Timeout, Status::ExpectedFail)]
    #[case(ExpectedKind::Fail, Status::Crash, Status::ExpectedFail)]
    #[case(ExpectedKind::Fail, Status::DmesgWarn, Status::ExpectedFail)]
    #[case(ExpectedKind::Fail, Status::DmesgFail, Status::ExpectedFail)]
    #[case(ExpectedKind::Fail, Status::Incomplete, Status::ExpectedFail)]
    #[case(ExpectedKind::Fail, Status::Pass, Status::UnexpectedPass)]
    #[case(ExpectedKind::Fail, Status::Skip, Status::Skip)]
    #[case(ExpectedKind::Fail, Status::Notrun, Status::Notrun)]
    #[case(ExpectedKind::Fail, Status::Flake, Status::Flake)]
    #[case(ExpectedKind::Flake, Status::Fail, Status::Flake)]
    #[case(ExpectedKind::Flake, Status::Timeout, Status::Flake)]
    #[case(ExpectedKind::Flake, Status::Crash, Status::Flake)]
    #[case(ExpectedKind::Flake, Status::DmesgWarn, Status::Flake)]
    #[case(ExpectedKind::Flake, Status::DmesgFail, Status::Flake)]
    #[case(ExpectedKind::Flake, Status::Incomplete, Status::Flake)]
    #[case(ExpectedKind::Flake, Status::Pass, Status::Pass)]
    #[case(ExpectedKind::Flake, Status::Skip, Status::Skip)]
    #[case(ExpectedKind::Skip, Status::Skip, Status::Skip)]
    #[case(ExpectedKind::Skip, Status::Fail, Status::Fail)]
    #[case(ExpectedKind::Skip, Status::Pass, Status::Pass)]
    fn apply_maps_status(
        #[case] kind: ExpectedKind,
        #[case] observed: Status,
        #[case] becomes: Status,
    ) {
        let text = format!("{kind}:\n  - case: a::b::4KiB\n    reason: why\n");
        let e = Expectations::parse(&text, Path::new(FILE)).unwrap();
        let mut r = record("a::b::4KiB", observed, Some("what happened"));
        e.apply(&mut r);
        assert_eq!(r.status, becomes);
        assert_eq!(
            r.expectation,
            Some(ExpectationNote {
                expected: kind.name().to_string(),
                reason: "why".to_string(),
                observed,
            })
        );
        // The case's own account stays.
        assert_eq!(r.reason.as_deref(), Some("what happened"));

        // Idempotent: a second application starts from what the case observed.
        let once = r.clone();
        e.apply(&mut r);
        assert_eq!(r, once);
    }

    #[test]
    fn unlisted_case_is_unchanged() {
        let mut r = record("first_touch::untouched::4KiB", Status::Fail, None);
        let before = r.clone();
        lab().apply(&mut r);
        assert_eq!(r, before);
    }

    #[test]
    fn reapplying_a_newer_file_starts_from_the_observed_status() {
        let mut r = record("eviction::lru_whole::vram_2x", Status::Fail, None);
        lab().apply(&mut r);
        assert_eq!(r.status, Status::ExpectedFail);
        // The entry was removed from the file: the case is a plain failure again.
        let empty = Expectations::parse("fail: []\n", Path::new(FILE)).unwrap();
        empty.apply(&mut r);
        assert_eq!(r.status, Status::Fail);
        assert_eq!(r.expectation, None);
    }

    #[rstest]
    #[case("")]
    #[case("# the reference device has no known failures\n")]
    #[case("---\n# nothing\n")]
    #[case("fail: []\nflake: []\nskip: []\n")]
    #[case("fail:\nflake:\n")]
    fn nothing_listed(#[case] text: &str) {
        let e = Expectations::parse(text, Path::new(FILE)).unwrap();
        assert!(e.is_empty());
        assert_eq!(e.lookup("prefetch::to_vram::2MiB"), None);
    }

    /// (text, line, column, field, message fragment)
    #[rstest]
    #[case::unknown_top_level_key(
        "fail: []\nxfail: []\n",
        Some((2, 1)), None,
        "unknown field `xfail`, expected one of `fail`, `flake`, `skip`"
    )]
    #[case::unknown_entry_key(
        "fail:\n  - case: a::b\n    reason: r\n    bug: 12\n",
        Some((4, 5)), Some("fail[0]"),
        "unknown field `bug`, expected one of `case`, `pattern`, `reason`"
    )]
    #[case::missing_reason(
        "flake:\n  - case: a::b\n",
        Some((2, 5)), Some("flake[0]"),
        "missing field `reason`"
    )]
    #[case::empty_reason(
        "flake:\n  - case: a::b\n    reason: '  '\n",
        Some((3, 13)), Some("flake[0].reason"),
        "expected why the entry is listed (text or a link), got nothing"
    )]
    #[case::both_case_and_pattern(
        "fail:\n  - case: a::b\n    reason: r\n  - case: a::c\n    pattern: 'a::.*'\n    reason: r\n",
        Some((4, 5)), Some("fail[1]"),
        "has both `case` and `pattern`; expected exactly one"
    )]
    #[case::neither_case_nor_pattern(
        "skip:\n  - reason: r\n",
        Some((2, 5)), Some("skip[0]"),
        "has neither `case` nor `pattern`; expected exactly one"
    )]
    #[case::empty_case(
        "fail:\n  - case: ''\n    reason: r\n",
        Some((2, 11)), Some("fail[0].case"),
        "expected a case name like `prefetch::to_vram::2MiB`, got nothing"
    )]
    #[case::bad_regex(
        "flake:\n  - pattern: 'a::(b'\n    reason: r\n",
        Some((2, 14)), Some("flake[0].pattern"),
        "entry flake[0]: `a::(b` is not a usable regular expression: error: unclosed group"
    )]
    #[case::empty_pattern(
        "flake:\n  - pattern: ''\n    reason: r\n",
        Some((2, 14)), Some("flake[0].pattern"),
        "entry flake[0]: `` is not a usable regular expression: expected a pattern, got nothing"
    )]
    #[case::same_case_twice_in_one_list(
        "fail:\n  - case: a::b\n    reason: r\n  - case: a::b\n    reason: s\n",
        Some((4, 11)), Some("fail[1].case"),
        "case `a::b` is already listed at fail[0]; expected each case once"
    )]
    #[case::same_case_in_two_lists(
        "fail:\n  - case: a::b\n    reason: r\nflake:\n  - case: a::b\n    reason: s\n",
        Some((5, 11)), Some("flake[0].case"),
        "case `a::b` is already listed at fail[0]; expected each case once"
    )]
    #[case::list_is_not_a_list(
        "fail: a::b\n",
        Some((1, 7)), Some("fail"),
        "invalid type: string \"a::b\", expected a sequence"
    )]
    #[case::syntax(
        "fail: [\n",
        Some((2, 1)), None,
        "did not find expected node content"
    )]
    fn bad_files_are_located(
        #[case] text: &str,
        #[case] place: Option<(usize, usize)>,
        #[case] field: Option<&str>,
        #[case] message: &str,
    ) {
        let e = Expectations::parse(text, Path::new(FILE)).unwrap_err();
        let FixtureError::Yaml(y) = &e else {
            panic!("not a located YAML error: {e}");
        };
        assert_eq!(y.line.zip(y.column), place, "{e}");
        assert_eq!(y.field.as_deref(), field, "{e}");
        assert!(y.message.contains(message), "{e}");
        assert!(e.to_string().starts_with(FILE), "{e}");
    }

    #[test]
    fn missing_file_means_no_expectations() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Expectations::load(dir.path(), "mi300x").unwrap().is_none());
    }

    #[test]
    fn loads_with_path_and_digest() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("fixtures");
        std::fs::create_dir_all(root.join(EXPECTATIONS_DIR)).unwrap();
        std::fs::write(expectations_path(&root, "lab"), LAB).unwrap();
        let loaded = Expectations::load(&root, "lab").unwrap().unwrap();
        assert_eq!(loaded.path, Path::new("fixtures/expectations/lab.yaml"));
        assert_eq!(loaded.sha256.len(), 64);
        let digest = loaded.digest();
        assert_eq!(digest.path, "fixtures/expectations/lab.yaml");
        assert_eq!(
            loaded.value.lookup("reset::x::4KiB").unwrap().kind,
            ExpectedKind::Skip
        );
    }

    #[test]
    fn load_error_names_the_file_under_fixtures() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("fixtures");
        std::fs::create_dir_all(root.join(EXPECTATIONS_DIR)).unwrap();
        std::fs::write(expectations_path(&root, "lab"), "fail:\n  - reason: r\n").unwrap();
        let e = Expectations::load(&root, "lab").unwrap_err().to_string();
        assert!(
            e.starts_with("fixtures/expectations/lab.yaml:2:5: fail[0]: has neither"),
            "{e}"
        );
    }

    #[test]
    fn unreadable_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("fixtures");
        // A folder where the file should be: it exists, and cannot be read as text.
        std::fs::create_dir_all(expectations_path(&root, "lab")).unwrap();
        let e = Expectations::load(&root, "lab").unwrap_err().to_string();
        assert!(
            e.starts_with("cannot read `fixtures/expectations/lab.yaml`"),
            "{e}"
        );
    }

    /// The files in the repository load: a typo there would fail every nightly run.
    #[test]
    fn repository_files_load() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let sim = Expectations::load(&root, "sim").unwrap().unwrap();
        assert!(sim.value.is_empty());
        for entry in std::fs::read_dir(root.join(EXPECTATIONS_DIR)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let stem = path.file_stem().unwrap().to_str().unwrap();
                Expectations::load(&root, stem)
                    .unwrap_or_else(|e| panic!("{e}"))
                    .unwrap();
            }
        }
    }
}
