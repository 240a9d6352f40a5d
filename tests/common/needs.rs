//! What a test does when this machine lacks something it needs: a C or C++ compiler,
//! llvm-readelf, xmllint, a readable /dev/kmsg. Under CI (`CI=true`, which GitHub Actions,
//! GitLab CI and `.ci/run` set) it fails, naming what is missing and how to get it: a test that
//! checks nothing must not show green there. Anywhere else it prints a skip line, and the test
//! returns without checking.
//!
//! One file for both kinds of tests: the integration tests reach it as `common::needs`, the
//! library's unit tests as `crate::needs` (`src/lib.rs` includes it under `cfg(test)`).

/// Whether the value of `CI` makes this a CI run: `true` (any case) or `1`.
pub fn is_ci(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// What a test that lacks `what` does when `CI` is `ci`: `Err` with the message to fail with,
/// or `Ok` with the line to print before it returns. `install` says how to get `what`: the
/// Debian package that provides it, or what the machine must allow.
pub fn verdict(ci: Option<&str>, what: &str, install: &str) -> Result<String, String> {
    if is_ci(ci) {
        Err(format!(
            "{what} is missing: {install}. Under CI=true a test that needs it fails rather than \
             pass without checking"
        ))
    } else {
        Ok(format!(
            "skipped: {what} is missing ({install}); under CI=true this test fails"
        ))
    }
}

/// For a test that cannot check anything because `what` is missing here, just before it
/// returns: fails the test under `CI=true`, else prints why it skipped.
#[track_caller]
pub fn missing(what: &str, install: &str) {
    match verdict(std::env::var("CI").ok().as_deref(), what, install) {
        Ok(line) => eprintln!("{line}"),
        Err(message) => panic!("{message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_ci_a_missing_tool_fails_naming_it_and_its_package() {
        for ci in ["true", "TRUE", "1"] {
            let e = verdict(Some(ci), "xmllint", "Debian package libxml2-utils").unwrap_err();
            assert!(
                e.starts_with("xmllint is missing: Debian package libxml2-utils."),
                "{e}"
            );
        }
    }

    #[test]
    fn elsewhere_a_missing_tool_is_a_skip_line() {
        for ci in [None, Some(""), Some("false"), Some("0")] {
            let line = verdict(ci, "xmllint", "Debian package libxml2-utils").unwrap();
            assert!(line.starts_with("skipped: xmllint is missing"), "{line}");
        }
    }
}
