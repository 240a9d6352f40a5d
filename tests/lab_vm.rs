//! The VM lab's refusals: each bad input ends `lab/vm/run` with its own status and a message
//! that names it, before anything is installed, downloaded or built. (Booting a kernel is
//! `.ci/run`'s VM step; these need no kernel and no network.)

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::needs;
use rstest::rstest;

fn lab(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/vm/run"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("lab/vm/run runs")
}

fn said(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[rstest]
#[case::unknown_kernel(&["--kernel", "9.9"], 2, "--kernel 9.9: expected 7.3 or 6.12")]
#[case::missing_tree(
    &["--kernel-tree", "/nonexistent/linux"],
    5,
    "--kernel-tree /nonexistent/linux: no such folder"
)]
#[case::driver_without_its_framework(
    &["--vsvm", "--kernel", "6.12"],
    6,
    "--vsvm: linux-source-6.12 has no drm_gpusvm"
)]
fn a_bad_kernel_choice_is_refused_with_its_status(
    #[case] args: &[&str],
    #[case] status: i32,
    #[case] message: &str,
) {
    let cache = tempfile::tempdir().expect("a temporary folder");
    let out = lab(args, &[("XDG_CACHE_HOME", cache.path())]);
    assert_eq!(out.status.code(), Some(status), "{}", said(&out));
    assert!(said(&out).contains(message), "{}", said(&out));
    assert_eq!(
        std::fs::read_dir(cache.path()).expect("readable").count(),
        0,
        "nothing is written to the cache"
    );
}

#[test]
fn a_tree_that_is_no_kernel_or_was_built_in_place_is_refused() {
    let cache = tempfile::tempdir().expect("a temporary folder");
    let tree = tempfile::tempdir().expect("a temporary folder");
    let path = tree.path().to_str().expect("UTF-8").to_string();
    let out = lab(
        &["--kernel-tree", &path],
        &[("XDG_CACHE_HOME", cache.path())],
    );
    assert_eq!(out.status.code(), Some(5), "{}", said(&out));
    assert!(
        said(&out).contains("not a readable kernel tree"),
        "{}",
        said(&out)
    );

    for f in ["Makefile", "Kconfig", ".config"] {
        std::fs::write(tree.path().join(f), "").expect("write");
    }
    std::fs::create_dir_all(tree.path().join("arch/x86")).expect("mkdir");
    let out = lab(
        &["--kernel-tree", &path],
        &[("XDG_CACHE_HOME", cache.path())],
    );
    assert_eq!(out.status.code(), Some(5), "{}", said(&out));
    assert!(
        said(&out).contains("has an in-tree build (.config)"),
        "{}",
        said(&out)
    );
}

/// A tree without the framework the virtual SVM GPU is built on cannot have it: status 6.
#[test]
fn the_virtual_gpu_is_refused_on_a_tree_without_drm_gpusvm() {
    let cache = tempfile::tempdir().expect("a temporary folder");
    let tree = tempfile::tempdir().expect("a temporary folder");
    std::fs::write(
        tree.path().join("Makefile"),
        "kernelversion:\n\t@echo 6.12.0\n",
    )
    .expect("write");
    std::fs::write(tree.path().join("Kconfig"), "").expect("write");
    std::fs::create_dir_all(tree.path().join("arch/x86")).expect("mkdir");
    let path = tree.path().to_str().expect("UTF-8").to_string();
    let out = lab(
        &["--kernel-tree", &path, "--vsvm"],
        &[("XDG_CACHE_HOME", cache.path())],
    );
    assert_eq!(out.status.code(), Some(6), "{}", said(&out));
    assert!(
        said(&out).contains("has no drivers/gpu/drm/drm_gpusvm.c"),
        "{}",
        said(&out)
    );
}

/// An archive that does not answer, and nothing cached: status 4, naming the archive and what
/// apt said, and nothing of the machine's own apt configuration used or changed.
#[test]
fn a_download_that_fails_ends_the_lab_with_status_4() {
    if Command::new("apt-get").arg("--version").output().is_err() {
        needs::missing("apt-get", "a Debian or Ubuntu machine");
        return;
    }
    let cache = tempfile::tempdir().expect("a temporary folder");
    let apt = tempfile::tempdir().expect("a temporary folder");
    std::fs::create_dir_all(apt.path().join("sources.list.d")).expect("mkdir");
    std::fs::write(
        apt.path().join("sources.list.d/debian.sources"),
        "Types: deb\nURIs: http://127.0.0.1:9/debian\nSuites: trixie\nComponents: main\n\n\
         Types: deb\nURIs: http://127.0.0.1:9/debian-security\nSuites: trixie-security\n\
         Components: main\n",
    )
    .expect("write");
    let out = lab(
        &["--build-only"],
        &[
            ("XDG_CACHE_HOME", cache.path()),
            ("SVMCONF_LAB_APT_ETC", apt.path()),
        ],
    );
    assert_eq!(out.status.code(), Some(4), "{}", said(&out));
    let said = said(&out);
    assert!(
        said.contains(
            "linux-source-7.3 not found in trixie-backports at http://127.0.0.1:9/debian"
        ) && said.contains("none cached"),
        "{said}"
    );
    let list = std::fs::read_to_string(cache.path().join("svmconf/vm/apt/sources.list"))
        .expect("the lab's own sources list");
    assert_eq!(
        list.trim(),
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] \
         http://127.0.0.1:9/debian trixie-backports main"
    );
}

/// `lab/vm/report.sh`'s `NAME ARGS...` in bash, with `stdin` as the file it reads where it
/// takes one: its standard output.
fn report(function: &str, args: &[&str]) -> Output {
    Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -euo pipefail; source '{}'; {function} \"$@\"",
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("lab/vm/report.sh")
                .display()
        ))
        .arg("report")
        .args(args)
        .output()
        .expect("bash runs")
}

/// hmm-tests failing at length (8 failures in a TAP of about 20,000 lines, each failure's text
/// far past mawk's 8 KiB sprintf buffer): every verdict reaches hmm-tests.junit.xml, each
/// failure with the whole of what its test printed.
#[test]
fn long_hmm_test_failures_keep_every_verdict_and_all_their_text() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let tap = dir.path().join("hmm-tests.tap");
    let mut text = String::from("TAP version 13\n1..40\n");
    let mut lines_per_failure = Vec::new();
    for i in 1..=40 {
        text += &format!("#  RUN           hmm.hmm_device_private.test_{i} ...\n");
        if i % 5 == 0 {
            let n = 2400;
            for k in 0..n {
                text += &format!(
                    "# hmm-tests.c:{k}:test_{i}:Expected buffer->ptr[{k}] (1) == i (0) <&>\n"
                );
            }
            lines_per_failure.push(n);
            text += &format!("not ok {i} hmm.hmm_device_private.test_{i}\n");
        } else if i % 7 == 0 {
            text += &format!("ok {i} hmm.hmm_device_private.test_{i} # SKIP no device\n");
        } else {
            text += &format!("ok {i} hmm.hmm_device_private.test_{i}\n");
        }
    }
    assert!(text.lines().count() > 19_000, "a TAP as long as the lab's");
    std::fs::write(&tap, &text).expect("write the TAP");
    let out = report("tap_junit", &[tap.to_str().unwrap_or_default()]);
    assert!(out.status.success(), "{}", said(&out));
    let xml = String::from_utf8(out.stdout).expect("UTF-8");
    let doc = roxmltree::Document::parse(&xml).expect("hmm-tests.junit.xml is XML");
    let suite = doc
        .descendants()
        .find(|n| n.has_tag_name("testsuite"))
        .expect("a testsuite");
    assert_eq!(suite.attribute("tests"), Some("40"));
    assert_eq!(suite.attribute("failures"), Some("8"));
    assert_eq!(suite.attribute("skipped"), Some("4"));
    let failures: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("failure"))
        .collect();
    assert_eq!(failures.len(), 8);
    for (f, n) in failures.iter().zip(&lines_per_failure) {
        let body = f.text().unwrap_or_default();
        assert_eq!(
            body.lines().count(),
            *n,
            "the whole of what the test printed"
        );
        assert!(
            body.contains("Expected buffer->ptr[2399] (1) == i (0) <&>"),
            "escaped and whole"
        );
        assert!(f
            .attribute("message")
            .is_some_and(|m| m.starts_with("hmm-tests.c:0:")));
    }
}

/// A reason in verdicts.md: its first line whole (no cut at 200 characters), JSON escapes undone
/// (no literal `\n`), pipes escaped for the table.
#[test]
fn a_reason_cell_is_the_whole_first_line_without_escapes() {
    let long = "x".repeat(300);
    let line = format!(
        r#"{{"event":"end","case":"a::b","status":"fail","reason":"CPU verify of \"[0x0, 0x1000)\" | {long}\n  page 0: corrupt\n  more","seed":1}}"#
    );
    let out = report("reason_cell", &[&line]);
    assert!(out.status.success(), "{}", said(&out));
    let cell = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        cell.trim_end(),
        format!(r#"CPU verify of "[0x0, 0x1000)" \| {long}"#)
    );
}

/// The cases of verdicts.md that neither passed nor skipped, said at the end of the lab's
/// output with their run and reason (a CI log's tail names the failing case); hmm-tests' rows
/// and passes are not among them, and past 40 the rest are counted.
#[test]
fn failed_cases_are_said_last_with_their_reason() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let v = dir.path().join("verdicts.md");
    let mut text = String::from(
        "# Verdicts\n\n## svmconf: dmirror (dmirror/r1/journal.jsonl)\n\n| case | status | reason |\n\
         | --- | --- | --- |\n\
         | `prefetch::partial::2MiB` | fail | CPU verify of [0x0, 0x200000): 1 bad word \\| page 3 |\n\
         | `vma::munmap::2MiB` | pass |  |\n\
         | `gpu_reset::holder_ends::2MiB` | skip | no reset |\n\
         | `fault_storm::cpu_threads::64MiB` | timeout | past 120 s |\n\n\
         ## hmm-tests\n\n| test | verdict |\n| --- | --- |\n| `hmm.anon_read` | not ok |\n\n\
         ## svmconf: vsvm (vsvm/r2/journal.jsonl)\n\n| case | status | reason |\n| --- | --- | --- |\n",
    );
    for i in 0..45 {
        text += &format!("| `c{i}::2MiB` | crash | signal 11 |\n");
    }
    std::fs::write(&v, text).expect("write verdicts.md");
    let out = report("failed_cases", &[v.to_str().unwrap_or_default()]);
    assert!(out.status.success(), "{}", said(&out));
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        lines[0],
        "lab/vm: dmirror: prefetch::partial::2MiB fail: CPU verify of [0x0, 0x200000): 1 bad word \\| page 3"
    );
    assert_eq!(
        lines[1],
        "lab/vm: dmirror: fault_storm::cpu_threads::64MiB timeout: past 120 s"
    );
    assert_eq!(lines[2], "lab/vm: vsvm: c0::2MiB crash: signal 11");
    assert_eq!(lines.len(), 41, "{lines:?}");
    assert_eq!(lines[40], "lab/vm: ... and 7 more in verdicts.md");
}
