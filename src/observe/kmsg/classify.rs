//! Which kernel log records matter: the named patterns and levels that flag a line, the
//! allow-list that excuses one, and what a flagged line does to a case's status.

use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;
use serde::Deserialize;

use crate::model::status::Status;
use crate::util::yaml::{self, FieldPath, YamlError};

use super::record::{LogLine, Record};

/// How bad the worst flagged line of a case is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Warning,
    Error,
}

/// The flags a [`LogLine`] can carry.
pub mod flag {
    pub const WARNING: &str = "WARNING";
    pub const BUG: &str = "BUG";
    pub const OOPS: &str = "oops";
    pub const CALL_TRACE: &str = "call trace";
    pub const GPU_PAGE_FAULT: &str = "GPU page fault";
    pub const LEVEL_WARNING: &str = "level warning";
    pub const LEVEL_ERROR: &str = "level error";
}

/// A kind of line that matters whatever its level, by the kernel's own wording.
pub(super) struct Named {
    flag: &'static str,
    severity: Severity,
    pattern: &'static str,
}

/// First match wins, so the more specific come first.
pub(super) const NAMED: [Named; 5] = [
    Named {
        flag: flag::OOPS,
        severity: Severity::Error,
        // "Oops: 0000 [#1] SMP", "Oops: general protection fault, ...", the older x86
        // "general protection fault: 0000 [#1]", and the panic that may follow.
        pattern: r"^(?:Oops: |general protection fault\b|Kernel panic - not syncing)",
    },
    Named {
        flag: flag::BUG,
        severity: Severity::Error,
        // "BUG: unable to handle page fault", "BUG: KASAN: ...", "BUG: Bad page state",
        // "BUG: soft lockup", and BUG_ON's "kernel BUG at mm/migrate.c:123!".
        pattern: r"^(?:BUG: |kernel BUG at )",
    },
    Named {
        flag: flag::WARNING,
        severity: Severity::Warning,
        // WARN_ON's "WARNING: CPU: 3 PID: 1 at drivers/...", and lockdep's and RCU's reports.
        pattern: r"^WARNING: ",
    },
    Named {
        flag: flag::GPU_PAGE_FAULT,
        severity: Severity::Error,
        // gmc_v9_0.c and later: "[gfxhub0] retry page fault (src_id:0 ring:40 vmid:8
        // pasid:32770, ...)", "[mmhub] no-retry page fault (...)", gmc_v10's "[gfxhub] page
        // fault (...)"; then "  in page starting at address 0x... from IH client 0x1b (UTCL2)"
        // and "VM_L2_PROTECTION_FAULT_STATUS:0x..." (GCVM_ on gfx10 and later). With XNACK on,
        // a retry fault the driver resolves prints nothing: a printed one was not resolved.
        pattern: r"\[(?:gfx|mm)hub\d*\] (?:(?:no-)?retry )?page fault \(src_id:|(?:GC)?VM_L2_PROTECTION_FAULT_STATUS:0x|in page starting at address 0x[0-9a-fA-F]+ from (?:IH )?client",
    },
    Named {
        flag: flag::CALL_TRACE,
        severity: Severity::Warning,
        // "Call Trace:" on x86, "Call trace:" on arm64; the rest of a splat is flagged by level.
        pattern: r"^\s*Call [Tt]race:",
    },
];

pub(super) static NAMED_RE: LazyLock<Vec<(&'static Named, Regex)>> = LazyLock::new(|| {
    NAMED
        .iter()
        .filter_map(|n| Regex::new(n.pattern).ok().map(|re| (n, re)))
        .collect()
});

/// The severity a line has by its level alone.
fn level_severity(level: u8) -> Option<Severity> {
    match level {
        0..=3 => Some(Severity::Error),
        4 => Some(Severity::Warning),
        _ => None,
    }
}

/// Lines that never flag a case, each with why (`fixtures/kernel-log.yaml`).
#[derive(Clone, Debug, Default)]
pub struct AllowList {
    entries: Vec<AllowEntry>,
}

#[derive(Clone, Debug)]
pub struct AllowEntry {
    /// Searched in the message (not anchored).
    pub pattern: Regex,
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowFile {
    allow: Vec<AllowEntryText>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowEntryText {
    pattern: String,
    reason: String,
}

impl AllowList {
    /// Nothing allowed: every line at warning or worse flags its case.
    pub fn empty() -> AllowList {
        AllowList::default()
    }

    /// Parses the allow-list `text` read from `file`; errors name the file, line, column and
    /// entry (`allow[2].pattern`).
    pub fn parse(text: &str, file: &Path) -> Result<AllowList, YamlError> {
        let raw: AllowFile = yaml::parse(text, file)?;
        let mut entries = Vec::with_capacity(raw.allow.len());
        for (i, e) in raw.allow.into_iter().enumerate() {
            let at = |field: &str, message: String| {
                let path = FieldPath::root().key("allow").index(i).key(field);
                YamlError::at(file, text, &path, message)
            };
            if e.pattern.is_empty() {
                return Err(at(
                    "pattern",
                    "an empty pattern would allow every line; expected a regular expression \
                     for the lines to allow"
                        .into(),
                ));
            }
            let pattern = Regex::new(&e.pattern).map_err(|err| {
                at(
                    "pattern",
                    format!(
                        "not a regular expression: {}",
                        crate::fixtures::regex_error_text(&err)
                    ),
                )
            })?;
            if e.reason.trim().is_empty() {
                return Err(at(
                    "reason",
                    "expected why the line is harmless, got nothing".into(),
                ));
            }
            entries.push(AllowEntry {
                pattern,
                reason: e.reason,
            });
        }
        Ok(AllowList { entries })
    }

    pub fn entries(&self) -> &[AllowEntry] {
        &self.entries
    }

    /// The entry that excuses a message, if any.
    pub fn excuse(&self, text: &str) -> Option<&AllowEntry> {
        self.entries.iter().find(|e| e.pattern.is_match(text))
    }
}

/// A case's kernel log records, flagged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Classification {
    /// Every record, in order, with its flag (`None`: informational or allowed).
    pub lines: Vec<LogLine>,
    /// The worst flagged line; `None` when nothing is flagged.
    pub worst: Option<Severity>,
    /// The named patterns that matched (`WARNING`, `BUG`, `oops`, `call trace`,
    /// `GPU page fault`), each once, in the order first seen.
    pub named: Vec<String>,
}

impl Classification {
    /// Whether any line is flagged: what turns pass into dmesg-warn.
    pub fn flagged(&self) -> bool {
        self.lines.iter().any(|l| l.flag.is_some())
    }
}

/// Flags each record: allowed lines never; then the named patterns, whatever the level (a
/// WARNING splat is logged at level 4 and its trace too, a GPU page fault at level 3); then any
/// other line at warning (4) or worse.
pub fn classify(records: &[Record], allow: &AllowList) -> Classification {
    let mut c = Classification::default();
    for r in records {
        let (flag, severity) = if allow.excuse(&r.text).is_some() {
            (None, None)
        } else if let Some((named, _)) = NAMED_RE.iter().find(|(_, re)| re.is_match(&r.text)) {
            if !c.named.iter().any(|n| n == named.flag) {
                c.named.push(named.flag.to_string());
            }
            let severity =
                level_severity(r.level).map_or(named.severity, |s| s.max(named.severity));
            (Some(named.flag), Some(severity))
        } else {
            match level_severity(r.level) {
                Some(Severity::Error) => (Some(flag::LEVEL_ERROR), Some(Severity::Error)),
                Some(Severity::Warning) => (Some(flag::LEVEL_WARNING), Some(Severity::Warning)),
                None => (None, None),
            }
        };
        c.worst = c.worst.max(severity);
        c.lines.push(r.to_log_line(flag));
    }
    c
}

/// A case's status once its kernel log is counted: a flagged line turns pass into dmesg-warn
/// and fail into dmesg-fail, as igt_runner does; other statuses already say more.
pub fn apply(status: Status, c: &Classification) -> Status {
    if !c.flagged() {
        return status;
    }
    status.with_kernel_finding()
}
