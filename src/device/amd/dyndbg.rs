//! The series' own trace as migration evidence where KFD SMI events are absent: the series
//! reimplements SVM on drm_gpusvm and emits no SMI migration events, but it traces migrations
//! with `pr_debug`, which dynamic debug turns on at run time.
//!
//! Three parts:
//! - the patterns, one regular expression per line of evidence, in `fixtures/amdgpu-trace.yaml`
//!   ([`TracePatterns::parse`], loaded by [`crate::fixtures::load_with`]), so that a
//!   lab whose kernel prints differently fixes a fixture, not the code;
//! - kernel log lines in the forms they reach us ([`split_log_line`]): `/dev/kmsg` messages,
//!   `dmesg` lines with `[ seconds]` and `<level>` prefixes, `dev_printk`'s `amdgpu
//!   0000:c1:00.0: ` prefix, and dynamic debug's own decorations (`+pfmlt`);
//! - the control lines that turn the trace on, written to
//!   `/sys/kernel/debug/dynamic_debug/control` ([`write_control`]), and a reader of that file's
//!   listing ([`parse_control_listing`]) that tells whether they took.
//!
//! # What the series prints (amd-gfx, "drm/amdgpu: SVM VRAM migration via drm_pagemap", v2-v5)
//! `AMDGPU_MIGRATE_TRACE` in amdgpu_migrate.c and `AMDGPU_SVM_TRACE` in amdgpu_svm.h are both
//! `pr_debug("%s: " fmt, __func__, ...)`, and amdgpu.h's `pr_fmt` adds `amdgpu: `, so a line is
//! `amdgpu: amdgpu_svm_populate_mm: populate_mm: [0x7f...-0x7f...] size=2097152`. The exact
//! format strings are quoted beside each pattern in the fixture. TTM eviction
//! (`amdgpu_svm_bo_evict()` → `drm_pagemap_evict_to_ram()`) prints nothing of its own in v4: its
//! copies appear as `copy_to_ram` lines, the same as a CPU fault's.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::Deserialize;

use crate::device::PAGE_SIZE;
use crate::observe::kmsg::Record;
use crate::util::text;
use crate::util::text::io_reason;
use crate::util::yaml::{self, FieldPath, YamlError};

use super::sysfs::PciAddress;

/// The dynamic debug control file, under the debugfs root.
pub const CONTROL: &str = "dynamic_debug/control";
/// The same file where debugfs is not mounted (Linux 5.x and later).
pub const PROC_CONTROL: &str = "/proc/dynamic_debug/control";

/// What a line of the trace is evidence of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceKind {
    /// A migration to VRAM began (a range, its size).
    VramStart,
    /// A migration to VRAM finished copying.
    VramEnd,
    /// Pages were copied back to system memory (CPU fault or eviction).
    Ram,
    /// TTM evicted an SVM allocation.
    Eviction,
    /// A migration was attempted and failed.
    Failed,
}

impl fmt::Display for TraceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TraceKind::VramStart => "vram_start",
            TraceKind::VramEnd => "vram_end",
            TraceKind::Ram => "ram",
            TraceKind::Eviction => "eviction",
            TraceKind::Failed => "failed",
        })
    }
}

/// The named groups a pattern may capture, and what each holds.
pub const GROUPS: [(&str, &str); 6] = [
    ("addr", "the first virtual address, hex (`0x` optional)"),
    ("end", "the virtual address after the last byte, hex"),
    ("size", "bytes, decimal or 0x hex"),
    ("npages", "4 KiB pages, decimal or 0x hex"),
    (
        "ret",
        "the kernel's return value, decimal, 0 or a negative errno",
    ),
    ("trigger", "what caused the migration, free text"),
];

/// One pattern of the fixture.
#[derive(Clone, Debug)]
pub struct TracePattern {
    pub kind: TraceKind,
    /// Where the kernel prints it, with the format string: for the next reader, and for the lab
    /// to check against the running kernel's `control` listing.
    pub source: String,
    /// Searched in the message (not anchored), so any prefix is allowed.
    pub regex: Regex,
}

/// The patterns and control lines of `fixtures/amdgpu-trace.yaml`.
#[derive(Clone, Debug)]
pub struct TracePatterns {
    control: Vec<String>,
    patterns: Vec<TracePattern>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TraceFile {
    control: Vec<String>,
    patterns: Vec<PatternText>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatternText {
    kind: TraceKind,
    source: String,
    pattern: String,
}

/// A control line: one or more `KEYWORD VALUE` terms, then the flags change.
fn control_line_re() -> Regex {
    // Compiles: a constant pattern, checked by the tests.
    Regex::new(r"^(?:(?:file|func|module|format|line|class)\s+\S+\s+)+[-+=][pflmts_]*$")
        .expect("the control line pattern compiles")
}

impl TracePatterns {
    /// Parses the fixture `text` read from `file`; errors name the file, line, column and field
    /// (`patterns[2].pattern`).
    pub fn parse(text: &str, file: &Path) -> Result<TracePatterns, YamlError> {
        let raw: TraceFile = yaml::parse(text, file)?;
        let control_re = control_line_re();
        for (i, line) in raw.control.iter().enumerate() {
            if !control_re.is_match(line.trim()) {
                let path = FieldPath::root().key("control").index(i);
                return Err(YamlError::at(
                    file,
                    text,
                    &path,
                    format!(
                        "`{line}` is not a dynamic debug query; expected terms like `file \
                         amdgpu_migrate.c` then a flags change like `+p`"
                    ),
                ));
            }
        }
        let mut patterns = Vec::with_capacity(raw.patterns.len());
        for (i, p) in raw.patterns.into_iter().enumerate() {
            let at = |field: &str, message: String| {
                let path = FieldPath::root().key("patterns").index(i).key(field);
                YamlError::at(file, text, &path, message)
            };
            if p.pattern.is_empty() {
                return Err(at(
                    "pattern",
                    "an empty pattern would match every line; expected a regular expression".into(),
                ));
            }
            let regex = Regex::new(&p.pattern).map_err(|e| {
                at(
                    "pattern",
                    format!(
                        "not a regular expression: {}",
                        crate::fixtures::regex_error_text(&e)
                    ),
                )
            })?;
            for name in regex.capture_names().flatten() {
                if !GROUPS.iter().any(|(g, _)| *g == name) {
                    return Err(at(
                        "pattern",
                        format!(
                            "unknown group `{name}`; expected some of {}",
                            GROUPS
                                .iter()
                                .map(|(g, _)| format!("`{g}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
            if p.source.trim().is_empty() {
                return Err(at(
                    "source",
                    "expected where the kernel prints this line, with its format string".into(),
                ));
            }
            patterns.push(TracePattern {
                kind: p.kind,
                source: p.source,
                regex,
            });
        }
        Ok(TracePatterns {
            control: raw.control.iter().map(|l| l.trim().to_string()).collect(),
            patterns,
        })
    }

    /// The lines that turn the trace on, each written by itself.
    pub fn control_lines(&self) -> &[String] {
        &self.control
    }

    /// The same lines with every `+` flags change made `-`: the trace off again.
    pub fn disable_lines(&self) -> Vec<String> {
        self.control
            .iter()
            .map(|l| match l.rsplit_once(' ') {
                Some((query, flags)) if flags.starts_with('+') => {
                    format!("{query} -{}", &flags[1..])
                }
                _ => l.clone(),
            })
            .collect()
    }

    pub fn patterns(&self) -> &[TracePattern] {
        &self.patterns
    }

    /// The evidence in one `dmesg` line (`<level>` and `[time]` prefixes allowed), if any.
    pub fn match_line(&self, line: &str) -> Result<Option<TraceEvidence>, DyndbgError> {
        let parts = split_log_line(line)?;
        self.evidence(parts.message, parts.device, parts.level, parts.ts_us)
    }

    /// The evidence in one `/dev/kmsg` record, if any.
    pub fn match_record(&self, record: &Record) -> Result<Option<TraceEvidence>, DyndbgError> {
        let (device, message) = split_device(&record.text);
        self.evidence(message, device, Some(record.level), Some(record.ts_us))
    }

    /// The evidence in a bare message (no level or time in front), if any.
    pub fn match_message(&self, message: &str) -> Result<Option<TraceEvidence>, DyndbgError> {
        let (device, message) = split_device(message);
        self.evidence(message, device, None, None)
    }

    fn evidence(
        &self,
        message: &str,
        device: Option<PciAddress>,
        level: Option<u8>,
        ts_us: Option<u64>,
    ) -> Result<Option<TraceEvidence>, DyndbgError> {
        for p in &self.patterns {
            let Some(caps) = p.regex.captures(message) else {
                continue;
            };
            let group = |name: &'static str| caps.name(name).map(|m| m.as_str());
            let bad =
                |name: &'static str, text: &str, expected: &'static str| DyndbgError::BadCapture {
                    kind: p.kind,
                    group: name,
                    text: text.to_string(),
                    expected,
                    message: text::quote(message, 160),
                };
            let hex = |name: &'static str| -> Result<Option<u64>, DyndbgError> {
                group(name)
                    .map(|t| parse_hex(t).ok_or_else(|| bad(name, t, "a 64-bit hex number")))
                    .transpose()
            };
            let number = |name: &'static str| -> Result<Option<u64>, DyndbgError> {
                group(name)
                    .map(|t| {
                        parse_number(t)
                            .ok_or_else(|| bad(name, t, "a 64-bit decimal or 0x hex number"))
                    })
                    .transpose()
            };
            let addr = hex("addr")?;
            let end = hex("end")?;
            let bytes = number("size")?;
            let npages = number("npages")?;
            let ret = group("ret")
                .map(|t| {
                    t.parse::<i64>()
                        .map_err(|_| bad("ret", t, "a 64-bit signed decimal number"))
                })
                .transpose()?;
            if let (Some(a), Some(e)) = (addr, end) {
                if e < a {
                    let text = format!("{a:#x}-{e:#x}");
                    return Err(bad("end", &text, "an end address after the start"));
                }
            }
            let span = addr.zip(end).map(|(a, e)| e - a);
            let npages = npages.or(bytes.or(span).map(|b| b.div_ceil(PAGE_SIZE)));
            return Ok(Some(TraceEvidence {
                kind: p.kind,
                addr,
                npages,
                bytes: bytes.or(span),
                ret,
                trigger: group("trigger").map(str::to_string),
                device,
                level,
                ts_us,
                message: message.to_string(),
            }));
        }
        Ok(None)
    }
}

fn parse_hex(text: &str) -> Option<u64> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

fn parse_number(text: &str) -> Option<u64> {
    if text.starts_with("0x") || text.starts_with("0X") {
        return parse_hex(text);
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// One line of migration evidence from the trace.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TraceEvidence {
    pub kind: TraceKind,
    /// First virtual address.
    pub addr: Option<u64>,
    /// 4 KiB pages: the `npages` group, else bytes rounded up to pages.
    pub npages: Option<u64>,
    /// Bytes: the `size` group, else `end - addr`.
    pub bytes: Option<u64>,
    /// The kernel's return value where the line has one; non-zero means the step failed.
    pub ret: Option<i64>,
    pub trigger: Option<String>,
    /// The device of a `dev_printk` line; `pr_debug` lines name none.
    pub device: Option<PciAddress>,
    pub level: Option<u8>,
    /// Microseconds since boot, where the line carried a time.
    pub ts_us: Option<u64>,
    /// The message the pattern matched, prefixes removed.
    pub message: String,
}

// --- kernel log lines ----------------------------------------------------------------------------

/// A kernel log line taken apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogLine<'a> {
    /// `<N>` of `dmesg -r` (its low 3 bits).
    pub level: Option<u8>,
    /// `[  12.345678]` of `dmesg`, in microseconds.
    pub ts_us: Option<u64>,
    /// `amdgpu 0000:c1:00.0: ` of `dev_printk`.
    pub device: Option<PciAddress>,
    /// The rest, where the patterns look.
    pub message: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum DyndbgError {
    #[error("kernel log line `{line}`: `{prefix}` is not a syslog level; expected `<N>` with N a decimal number")]
    BadLevel { line: String, prefix: String },
    #[error(
        "kernel log line `{line}`: `{prefix}` is not a timestamp; expected `[SECONDS.MICROS]` \
         as dmesg prints it"
    )]
    BadTimestamp { line: String, prefix: String },
    #[error("trace line `{message}` matched the {kind} pattern, but its `{group}` is `{text}`; expected {expected}")]
    BadCapture {
        kind: TraceKind,
        group: &'static str,
        text: String,
        expected: &'static str,
        message: String,
    },
    #[error("cannot open `{}` to change dynamic debug: {}; is debugfs mounted, and is this run root?", path.display(), io_reason(source))]
    OpenControl { path: PathBuf, source: io::Error },
    #[error("dynamic debug refused `{line}` written to `{}`: {}", path.display(), io_reason(source))]
    Control {
        path: PathBuf,
        line: String,
        source: io::Error,
    },
}

/// Takes the prefixes off a `dmesg` line, in the order it prints them: `<level>` (`-r`),
/// `[time]`, then a `dev_printk` device. A line that starts like a level or a time but is not
/// one is an error, not a message. (A `/dev/kmsg` message has neither; use [`split_device`].)
pub fn split_log_line(line: &str) -> Result<LogLine<'_>, DyndbgError> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let mut rest = line;
    let mut level = None;
    if let Some(after) = rest.strip_prefix('<') {
        let close = after.find('>');
        let digits = close.map(|i| &after[..i]);
        match digits.filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())) {
            Some(d) => {
                let n: u64 = d.parse().map_err(|_| DyndbgError::BadLevel {
                    line: text::quote(line, 160),
                    prefix: text::quote(d, 160),
                })?;
                level = Some((n & 7) as u8);
                rest = &after[d.len() + 1..];
            }
            None => {
                return Err(DyndbgError::BadLevel {
                    line: text::quote(line, 160),
                    prefix: text::quote(head(rest, 12), 160),
                })
            }
        }
    }
    let mut ts_us = None;
    if let Some(after) = rest.strip_prefix('[') {
        let bad = || DyndbgError::BadTimestamp {
            line: text::quote(line, 160),
            prefix: text::quote(rest.find(']').map_or(head(rest, 20), |i| &rest[..=i]), 160),
        };
        let close = after.find(']').ok_or_else(bad)?;
        ts_us = Some(parse_seconds(after[..close].trim()).ok_or_else(bad)?);
        rest = after[close + 1..]
            .strip_prefix(' ')
            .unwrap_or(&after[close + 1..]);
    }
    let (device, rest) = split_device(rest);
    Ok(LogLine {
        level,
        ts_us,
        device,
        message: rest,
    })
}

/// `amdgpu 0000:c1:00.0: message` → the device and the message, as `dev_printk` prints for a
/// PCI device; any other text is all message.
pub fn split_device(text: &str) -> (Option<PciAddress>, &str) {
    if let Some((head, tail)) = text.split_once(": ") {
        if let Some((driver, bus_id)) = head.split_once(' ') {
            // dev_name() of a PCI device is always the full `DDDD:BB:DD.F`.
            if !driver.is_empty() && bus_id.len() == 12 {
                if let Ok(pci) = bus_id.parse::<PciAddress>() {
                    return (Some(pci), tail);
                }
            }
        }
    }
    (None, text)
}

/// The first `n` characters, for error messages.
fn head(text: &str, n: usize) -> &str {
    text.char_indices().nth(n).map_or(text, |(i, _)| &text[..i])
}

/// `12.345678` → 12345678 µs; up to six decimals, as printk prints them.
fn parse_seconds(text: &str) -> Option<u64> {
    let (secs, frac) = text.split_once('.')?;
    if secs.is_empty()
        || frac.is_empty()
        || frac.len() > 6
        || !secs.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let secs: u64 = secs.parse().ok()?;
    let micros: u64 = frac.parse::<u64>().ok()? * 10u64.pow(6 - frac.len() as u32);
    secs.checked_mul(1_000_000)?.checked_add(micros)
}

// --- the control file ----------------------------------------------------------------------------

/// Writes each line to the dynamic debug control file at `path`, one `write()` per line, as the
/// kernel parses each write on its own. A query that matches nothing is not an error to the
/// kernel; [`parse_control_listing`] of the file read back tells whether the sites are on.
pub fn write_control(path: &Path, lines: &[String]) -> Result<(), DyndbgError> {
    let mut file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|source| DyndbgError::OpenControl {
            path: path.to_path_buf(),
            source,
        })?;
    for line in lines {
        let mut text = line.clone();
        text.push('\n');
        file.write_all(text.as_bytes())
            .map_err(|source| DyndbgError::Control {
                path: path.to_path_buf(),
                line: line.clone(),
                source,
            })?;
    }
    Ok(())
}

/// One `pr_debug` site as the control file lists it (lib/dynamic_debug.c `ddebug_proc_show`,
/// `"%s:%u [%s]%s =%s \""`, the escaped format, `"`, then ` class:%s` for classed sites):
/// `drivers/gpu/drm/amd/amdgpu/amdgpu_migrate.c:412 [amdgpu]amdgpu_svm_populate_mm =p "..."`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DyndbgSite {
    pub file: String,
    pub line: u32,
    pub module: String,
    pub function: String,
    /// The flags after `=`: `p` when printing, `_` when off.
    pub flags: String,
    /// The format string with the kernel's escapes: `\n` (Linux 6.1 and later) or `\012`
    /// for the newline, octal for a `"`.
    pub format: String,
    /// ` class:NAME` after the format, for sites in a class (drm.debug categories).
    pub class: Option<String>,
}

impl DyndbgSite {
    pub fn enabled(&self) -> bool {
        self.flags.contains('p')
    }
}

/// The sites of a control file's listing; the header line and lines of another shape are
/// skipped.
pub fn parse_control_listing(text: &str) -> Vec<DyndbgSite> {
    text.lines().filter_map(parse_control_site).collect()
}

fn parse_control_site(line: &str) -> Option<DyndbgSite> {
    let (file_line, rest) = line.split_once(' ')?;
    let (file, lineno) = file_line.rsplit_once(':')?;
    let rest = rest.strip_prefix('[')?;
    let (module, rest) = rest.split_once(']')?;
    let (function, rest) = rest.split_once(" =")?;
    let (flags, rest) = rest.split_once(' ')?;
    // The format never holds a bare `"`: the kernel escapes it.
    let (format, after) = rest.strip_prefix('"')?.split_once('"')?;
    let class = match after {
        "" => None,
        a => Some(a.strip_prefix(" class:")?.to_string()),
    };
    Some(DyndbgSite {
        file: file.to_string(),
        line: lineno.parse().ok()?,
        module: module.to_string(),
        function: function.to_string(),
        flags: flags.to_string(),
        format: format.to_string(),
        class,
    })
}

#[cfg(test)]
mod tests;
