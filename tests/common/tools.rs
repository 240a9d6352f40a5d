//! The consumers of svmconf's reports that the tests check them with, found on this machine:
//! xmllint and the JUnit schema junit-report ships, junitparser, the kernel's kunit.py.

use std::path::{Path, PathBuf};
use std::process::Command;

/// xmllint: `SVMCONF_XMLLINT`, else `xmllint`, where it runs.
pub fn xmllint() -> Option<String> {
    let name = std::env::var("SVMCONF_XMLLINT").unwrap_or_else(|_| "xmllint".to_string());
    Command::new(&name)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        .then_some(name)
}

/// The `tests/` folder of the junit-report crate this build uses, in Cargo's registry: the
/// version from Cargo.lock, the registry under `$CARGO_HOME`, else `~/.cargo`.
pub fn junit_report_tests() -> Option<PathBuf> {
    let lock =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock")).ok()?;
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"junit-report\""))?
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))?
        .trim_end_matches('"')
        .to_string();
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))?;
    std::fs::read_dir(home.join("registry/src"))
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join(format!("junit-report-{version}/tests")))
        .find(|t| t.join("JUnit.xsd").is_file())
}

/// `xml` with the attributes of every `<skipped>` element taken off, and how many had some.
///
/// junit-report's `JUnit.xsd` (Jenkins' junit-4.xsd) allows no attribute on `<skipped>`, and
/// svmconf writes the reason of a skip there (`<skipped type="skip" message="REASON"/>`, as
/// junit-report's `TestCase::skipped_with_cause` does and as Surefire's schema and the CI
/// systems that read JUnit accept). That is the one departure from the schema the golden files
/// may have; everything else must validate. The writer escapes `>` in attribute values, so the
/// first `>` after `<skipped` ends the tag.
fn without_skip_attributes(xml: &str) -> (String, usize) {
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    let mut stripped = 0;
    while let Some(at) = rest.find("<skipped ") {
        out.push_str(&rest[..at]);
        let tag = &rest[at..];
        let end = tag.find('>').expect("a <skipped> tag ends");
        out.push_str(if tag[..end].ends_with('/') {
            "<skipped/>"
        } else {
            "<skipped>"
        });
        stripped += 1;
        rest = &tag[end + 1..];
    }
    out.push_str(rest);
    (out, stripped)
}

/// A python3 with junitparser (Debian package python3-junitparser): `SVMCONF_PYTHON`, else the
/// first of `python3` on PATH and the system's `/usr/bin/python3` that imports it (a pyenv or
/// venv python3 first on PATH does not see Debian's packages).
pub fn junitparser() -> Option<String> {
    let candidates = match std::env::var("SVMCONF_PYTHON") {
        Ok(p) => vec![p],
        Err(_) => vec!["python3".to_string(), "/usr/bin/python3".to_string()],
    };
    candidates.into_iter().find(|python| {
        Command::new(python)
            .args(["-c", "import junitparser"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// The kernel's kunit.py: `SVMCONF_KUNIT`, else a kernel source tree under /usr/src, else the
/// copy extracted once from a Debian linux-source tarball there into `target/kunit`.
pub fn kunit_py() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SVMCONF_KUNIT").map(PathBuf::from) {
        return p.is_file().then_some(p);
    }
    const KUNIT: &str = "tools/testing/kunit/kunit.py";
    let mut tarballs = Vec::new();
    for e in std::fs::read_dir("/usr/src").ok()?.filter_map(|e| e.ok()) {
        let path = e.path();
        if path.join(KUNIT).is_file() {
            return Some(path.join(KUNIT));
        }
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("linux-source-") && name.ends_with(".tar.xz") {
            tarballs.push(path);
        }
    }
    tarballs.sort();
    let tarball = tarballs.pop()?;
    let stem = tarball
        .file_name()?
        .to_string_lossy()
        .trim_end_matches(".tar.xz")
        .to_string();
    let into = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/kunit");
    let found = into.join(&stem).join(KUNIT);
    if !found.is_file() {
        std::fs::create_dir_all(&into).ok()?;
        let ok = Command::new("tar")
            .arg("-xJf")
            .arg(&tarball)
            .arg("-C")
            .arg(&into)
            .arg(format!("{stem}/tools/testing/kunit"))
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return None;
        }
    }
    found.is_file().then_some(found)
}

/// The Python tools the history's consumers are checked with (apache-otava, kcidb-io,
/// check-jsonschema), from PyPI: the venv `SVMCONF_PYTOOLS`, else `target/pytools` (where
/// `.ci/run` installs them), else the same commands on PATH. `name` is a command of the venv's
/// `bin/` (`otava`, `python3`, `check-jsonschema`).
pub fn pytool(name: &str) -> Option<PathBuf> {
    let venv = std::env::var_os("SVMCONF_PYTOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pytools"));
    let in_venv = venv.join("bin").join(name);
    if in_venv.is_file() {
        return Some(in_venv);
    }
    (name != "python3")
        .then(|| {
            Command::new(name)
                .arg("--help")
                .output()
                .is_ok_and(|o| o.status.success())
                .then(|| PathBuf::from(name))
        })
        .flatten()
}

/// A python3 that imports `module`: the tools' venv first, then PATH's.
pub fn python_with(module: &str) -> Option<PathBuf> {
    pytool("python3")
        .into_iter()
        .chain([PathBuf::from("python3")])
        .find(|p| {
            Command::new(p)
                .args(["-c", &format!("import {module}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// Headless Chromium (Debian package chromium): `SVMCONF_CHROMIUM`, else `chromium`.
pub fn chromium() -> Option<String> {
    let name = std::env::var("SVMCONF_CHROMIUM").unwrap_or_else(|_| "chromium".to_string());
    Command::new(&name)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        .then_some(name)
}
