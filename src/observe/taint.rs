//! Kernel taint: `/proc/sys/kernel/tainted` before and after each case, and which flags the
//! case gained.
//!
//! The kernel sets a taint flag for good when something happens that makes later behaviour
//! suspect: it died (D), warned (W), saw a machine check (M) or a bad page (B), or a CPU soft
//! locked up (L). A case that gains one of those broke the kernel under test, whatever its own
//! verdict, and every later case runs on a kernel that is no longer trustworthy: igt_runner
//! stops the run on them, and so should the runner here ([`TaintChange::bad`]).
//!
//! The flag table is the kernel's (`taint_flags[]` in kernel/panic.c, described in
//! Documentation/admin-guide/tainted-kernels.rst); bits it does not know yet are reported by
//! number.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::util::text::io_reason;

/// Where the kernel publishes its taint mask.
pub const TAINTED: &str = "/proc/sys/kernel/tainted";

/// One taint flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flag {
    /// The bit in the mask.
    pub bit: u8,
    /// The letter in "Tainted: G W" lines of oopses; `?` for a bit not in the table.
    pub letter: char,
    /// Short name, from the kernel's TAINT_* name: `warn`, `die`, `soft lockup`.
    pub name: &'static str,
    /// What it means, from tainted-kernels.rst.
    pub description: &'static str,
}

const fn flag(bit: u8, letter: char, name: &'static str, description: &'static str) -> Flag {
    Flag {
        bit,
        letter,
        name,
        description,
    }
}

/// The kernel's flags, by bit (kernel/panic.c `taint_flags[]`, as of Linux 6.15).
pub const FLAGS: [Flag; 20] = [
    flag(
        0,
        'P',
        "proprietary module",
        "a proprietary module was loaded",
    ),
    flag(1, 'F', "forced module", "a module was force loaded"),
    flag(
        2,
        'S',
        "cpu out of spec",
        "the kernel runs on an out of specification system",
    ),
    flag(3, 'R', "forced rmmod", "a module was force unloaded"),
    flag(
        4,
        'M',
        "machine check",
        "a processor reported a Machine Check Exception",
    ),
    flag(
        5,
        'B',
        "bad page",
        "a bad page was referenced, or a page had unexpected flags",
    ),
    flag(6, 'U', "user", "userspace asked for the taint"),
    flag(7, 'D', "die", "the kernel died recently: an OOPS or BUG"),
    flag(
        8,
        'A',
        "overridden acpi table",
        "an ACPI table was overridden by the user",
    ),
    flag(9, 'W', "warn", "the kernel issued a warning"),
    flag(10, 'C', "staging driver", "a staging driver was loaded"),
    flag(
        11,
        'I',
        "firmware workaround",
        "a workaround for a platform firmware bug was applied",
    ),
    flag(
        12,
        'O',
        "out-of-tree module",
        "an externally built module was loaded",
    ),
    flag(13, 'E', "unsigned module", "an unsigned module was loaded"),
    flag(14, 'L', "soft lockup", "a soft lockup occurred"),
    flag(15, 'K', "live patch", "the kernel was live patched"),
    flag(
        16,
        'X',
        "auxiliary",
        "an auxiliary taint, defined for and used by distributions",
    ),
    flag(
        17,
        'T',
        "randstruct",
        "the kernel was built with the struct randomization plugin",
    ),
    flag(18, 'N', "test", "an in-kernel test was run"),
    flag(
        19,
        'J',
        "fwctl",
        "userspace used a mutating debug operation in fwctl",
    ),
];

/// Flags that mean the kernel under test misbehaved: die, warn, machine check, bad page, soft
/// lockup. The others say how the kernel was built or loaded, not that it broke.
pub const BAD: [char; 5] = ['D', 'W', 'M', 'B', 'L'];

impl Flag {
    /// The flag at `bit`; one named `unknown` for a bit this table does not have.
    pub fn at(bit: u8) -> Flag {
        FLAGS.get(usize::from(bit)).copied().unwrap_or(Flag {
            bit,
            letter: '?',
            name: "unknown",
            description: "a taint this version of svmconf does not know",
        })
    }

    /// Whether gaining it stops the run.
    pub fn is_bad(self) -> bool {
        self.letter != '?' && BAD.contains(&self.letter)
    }
}

impl fmt::Display for Flag {
    /// `W (warn)`, or `bit 20 (unknown)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.letter == '?' {
            write!(f, "bit {} ({})", self.bit, self.name)
        } else {
            write!(f, "{} ({})", self.letter, self.name)
        }
    }
}

/// The taint mask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Taint(pub u64);

impl Taint {
    /// The flags set, by bit.
    pub fn flags(self) -> Vec<Flag> {
        (0..64u8)
            .filter(|&b| self.0 & (1 << b) != 0)
            .map(Flag::at)
            .collect()
    }

    /// Parses the file's content: a decimal number and a newline.
    pub fn parse(text: &str) -> Option<Taint> {
        let t = text.trim();
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        t.parse().ok().map(Taint)
    }
}

impl fmt::Display for Taint {
    /// `0`, or `512 (W)`: the mask with its letters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let letters: String = self.flags().iter().map(|f| f.letter).collect();
        if !letters.is_empty() {
            write!(f, " ({letters})")?;
        }
        Ok(())
    }
}

/// The flags set in `after` and not in `before`.
pub fn gained(before: Taint, after: Taint) -> Vec<Flag> {
    Taint(after.0 & !before.0).flags()
}

/// What the journal records of a case's taint: `None` when the mask did not change.
pub fn change(before: Taint, after: Taint) -> Option<TaintChange> {
    if before == after {
        return None;
    }
    let gained = gained(before, after);
    Some(TaintChange {
        before: before.0,
        after: after.0,
        bad: gained.iter().any(|f| f.is_bad()),
        gained: gained.iter().map(Flag::to_string).collect(),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum TaintError {
    #[error("cannot read the kernel taint from `{}`: {}", path.display(), io_reason(source))]
    Read { path: PathBuf, source: io::Error },
    #[error("`{}` holds `{content}`; expected the kernel taint mask, a decimal number", path.display())]
    Malformed { path: PathBuf, content: String },
}

/// Where the taint mask is read: [`TAINTED`], or a file standing in for it in tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaintSource {
    path: PathBuf,
}

impl Default for TaintSource {
    fn default() -> Self {
        TaintSource::new(Path::new(TAINTED))
    }
}

impl TaintSource {
    pub fn new(path: &Path) -> TaintSource {
        TaintSource {
            path: path.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn read(&self) -> Result<Taint, TaintError> {
        let text = std::fs::read_to_string(&self.path).map_err(|source| TaintError::Read {
            path: self.path.clone(),
            source,
        })?;
        Taint::parse(&text).ok_or_else(|| TaintError::Malformed {
            path: self.path.clone(),
            content: text.trim().chars().take(80).collect(),
        })
    }
}

/// `/proc/sys/kernel/tainted` before and after a case, when it changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaintChange {
    pub before: u64,
    pub after: u64,
    /// The flags gained, by name: `W (warn)`.
    pub gained: Vec<String>,
    /// Whether a gained flag stops the run (die, warn, machine check, bad page, soft lockup).
    pub bad: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const W: u64 = 1 << 9;
    const O: u64 = 1 << 12;
    const E: u64 = 1 << 13;

    #[test]
    fn the_table_is_the_kernels_order() {
        let letters: String = FLAGS.iter().map(|f| f.letter).collect();
        assert_eq!(letters, "PFSRMBUDAWCIOELKXTNJ");
        for (i, f) in FLAGS.iter().enumerate() {
            assert_eq!(usize::from(f.bit), i, "{f}");
        }
    }

    #[rstest]
    #[case('D', true)]
    #[case('W', true)]
    #[case('M', true)]
    #[case('B', true)]
    #[case('L', true)]
    #[case('P', false)]
    #[case('O', false)]
    #[case('E', false)]
    #[case('N', false)]
    #[case('U', false)]
    fn bad_flags(#[case] letter: char, #[case] bad: bool) {
        let f = FLAGS.iter().find(|f| f.letter == letter).unwrap();
        assert_eq!(f.is_bad(), bad, "{f}");
    }

    #[rstest]
    #[case(0, 0, &[])]
    #[case(O | E, O | E, &[])]
    #[case(O | E, O | E | W, &["W (warn)"])]
    #[case(0, (1 << 7) | W, &["D (die)", "W (warn)"])]
    #[case(W, 0, &[])]
    #[case(0, 1 << 14, &["L (soft lockup)"])]
    #[case(0, 1 << 20, &["bit 20 (unknown)"])]
    #[case(0, 1 << 63, &["bit 63 (unknown)"])]
    fn gained_flags(#[case] before: u64, #[case] after: u64, #[case] want: &[&str]) {
        let got: Vec<String> = gained(Taint(before), Taint(after))
            .iter()
            .map(Flag::to_string)
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_warning_is_a_bad_change() {
        assert_eq!(
            change(Taint(O | E), Taint(O | E | W)),
            Some(TaintChange {
                before: O | E,
                after: O | E | W,
                gained: vec!["W (warn)".into()],
                bad: true,
            })
        );
    }

    #[rstest]
    #[case(0, 0, None)]
    #[case(O, O, None)]
    #[case(0, O, Some(false))]
    #[case(0, 1 << 18, Some(false))]
    #[case(0, 1 << 20, Some(false))]
    #[case(O, O | (1 << 4), Some(true))]
    #[case(0, 1 << 5, Some(true))]
    fn changes(#[case] before: u64, #[case] after: u64, #[case] bad: Option<bool>) {
        assert_eq!(change(Taint(before), Taint(after)).map(|c| c.bad), bad);
    }

    #[test]
    fn taint_displays_its_letters() {
        assert_eq!(Taint(0).to_string(), "0");
        assert_eq!(Taint(O | E | W).to_string(), "12800 (WOE)");
    }

    fn file(content: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tainted");
        std::fs::write(&path, content).unwrap();
        (dir, path)
    }

    #[rstest]
    #[case("0\n", 0)]
    #[case("12800\n", O | E | W)]
    #[case("18446744073709551615", u64::MAX)]
    fn reads_the_mask(#[case] content: &str, #[case] want: u64) {
        let (_dir, path) = file(content);
        assert_eq!(TaintSource::new(&path).read().unwrap(), Taint(want));
    }

    #[rstest]
    #[case("")]
    #[case("tainted\n")]
    #[case("-1\n")]
    #[case("0x200\n")]
    #[case("18446744073709551616\n")]
    fn malformed_content_names_the_file(#[case] content: &str) {
        let (_dir, path) = file(content);
        let e = TaintSource::new(&path).read().unwrap_err().to_string();
        let want = format!("`{}` holds `{}`; expected", path.display(), content.trim());
        assert!(e.starts_with(&want), "{e}");
    }

    #[test]
    fn an_unreadable_file_is_named() {
        let e = TaintSource::new(Path::new("/nonexistent/tainted"))
            .read()
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "cannot read the kernel taint from `/nonexistent/tainted`: no such file or directory"
        );
    }

    #[test]
    fn this_machine_has_a_taint_mask() {
        // Linux always has the file; elsewhere this is a skip, and under CI=true a failure.
        if !Path::new(TAINTED).exists() {
            crate::needs::missing(TAINTED, "a Linux kernel with /proc mounted");
            return;
        }
        TaintSource::default().read().unwrap();
    }
}
