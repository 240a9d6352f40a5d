//! The `/dev/kmsg` record format: a [`Record`] parsed from what one `read()` returns or written
//! back as a line, its errors ([`KmsgError`]), and the [`LogLine`] the journal keeps of it.

use crate::util::text;

/// The syslog facility the kernel gives to records written to `/dev/kmsg` from userspace
/// without one (LOG_USER); kernel messages have facility 0.
pub const USER_FACILITY: u8 = 1;

/// How much of a bad record an error quotes.
const QUOTE_MAX: usize = 120;

pub(super) const BEGIN: &str = "svmconf: begin ";
pub(super) const END: &str = "svmconf: end ";

/// One record of the kernel log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Syslog level: 0 emerg .. 4 warning .. 7 debug.
    pub level: u8,
    /// Syslog facility: 0 for the kernel, 1 (user) for lines written to `/dev/kmsg`.
    pub facility: u8,
    /// The kernel's sequence number: consecutive, so a jump means lost records.
    pub seq: u64,
    /// Microseconds since boot.
    pub ts_us: u64,
    /// The message, unescaped.
    pub text: String,
}

impl Record {
    /// The record as the journal keeps it.
    pub fn to_log_line(&self, flag: Option<&str>) -> LogLine {
        LogLine {
            level: self.level,
            seq: self.seq,
            ts_us: self.ts_us,
            text: self.text.clone(),
            flag: flag.map(str::to_string),
            attribution: None,
        }
    }

    /// The record as `/dev/kmsg` shows it, on one line without the newline: what [`FileKmsg`]
    /// reads, and what `cat /dev/kmsg > FILE` captures on a lab machine.
    ///
    /// [`FileKmsg`]: super::FileKmsg
    pub fn to_kmsg_line(&self) -> String {
        let prefix = u32::from(self.facility) << 3 | u32::from(self.level & 7);
        format!(
            "{prefix},{},{},-;{}",
            self.seq,
            self.ts_us,
            escape(&self.text)
        )
    }

    /// Whether this is a marker written by [`KernelLog`] (of this run or another svmconf).
    ///
    /// [`KernelLog`]: super::KernelLog
    pub fn is_marker(&self) -> bool {
        self.text.starts_with(BEGIN) || self.text.starts_with(END)
    }
}

/// A record that is not in the `/dev/kmsg` format.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KmsgError {
    #[error("empty kernel log record; expected `PREFIX,SEQ,TIMESTAMP,FLAGS;MESSAGE`")]
    Empty,
    #[error(
        "kernel log record `{record}` has no `;` before its message (truncated?); \
         expected `PREFIX,SEQ,TIMESTAMP,FLAGS;MESSAGE`"
    )]
    NoMessage { record: String },
    #[error(
        "kernel log record `{record}` has no {field}; expected `PREFIX,SEQ,TIMESTAMP,FLAGS;MESSAGE`"
    )]
    MissingField { record: String, field: &'static str },
    #[error("kernel log record `{record}`: {field} `{value}` is not {expected}")]
    BadField {
        record: String,
        field: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error(
        "kernel log record `{record}`: line {line} `{text}` is not a dictionary entry; \
         expected ` KEY=VALUE`"
    )]
    BadDictionary {
        record: String,
        line: usize,
        text: String,
    },
    #[error(
        "`{text}` is a dictionary line (it starts with a space) without the record it belongs to"
    )]
    OrphanDictionary { text: String },
}

/// Parses one record as a `read()` of `/dev/kmsg` returns it: the record line, then its
/// dictionary lines, each ending in a newline (the last newline is optional).
pub fn parse_record(raw: &str) -> Result<Record, KmsgError> {
    let raw = raw.strip_suffix('\n').unwrap_or(raw);
    if raw.trim().is_empty() {
        return Err(KmsgError::Empty);
    }
    let mut lines = raw.split('\n');
    let first = lines.next().unwrap_or_default();
    if first.starts_with(' ') {
        return Err(KmsgError::OrphanDictionary {
            text: text::clip(first, QUOTE_MAX),
        });
    }
    for (i, line) in lines.enumerate() {
        let entry = line
            .strip_prefix(' ')
            .and_then(|kv| kv.split_once('='))
            .is_some_and(|(key, _)| !key.is_empty());
        if !entry {
            return Err(KmsgError::BadDictionary {
                record: text::clip(first, QUOTE_MAX),
                line: i + 2,
                text: text::clip(line, QUOTE_MAX),
            });
        }
    }
    let Some((header, message)) = first.split_once(';') else {
        return Err(KmsgError::NoMessage {
            record: text::clip(first, QUOTE_MAX),
        });
    };
    let mut fields = header.split(',');
    let prefix: u32 = number(fields.next(), "prefix", first)?;
    let seq: u64 = number(fields.next(), "sequence number", first)?;
    let ts_us: u64 = number(fields.next(), "timestamp", first)?;
    if fields.next().map_or(true, str::is_empty) {
        return Err(KmsgError::MissingField {
            record: text::clip(first, QUOTE_MAX),
            field: "flags",
        });
    }
    // Any further fields are extensions the ABI tells readers to ignore.
    let facility = u8::try_from(prefix >> 3).map_err(|_| KmsgError::BadField {
        record: text::clip(first, QUOTE_MAX),
        field: "prefix",
        value: prefix.to_string(),
        expected: "a syslog priority (facility below 256)",
    })?;
    Ok(Record {
        level: (prefix & 7) as u8,
        facility,
        seq,
        ts_us,
        text: unescape(message),
    })
}

fn number<T: std::str::FromStr>(
    field: Option<&str>,
    name: &'static str,
    record: &str,
) -> Result<T, KmsgError> {
    let value = match field {
        Some(v) if !v.is_empty() => v,
        _ => {
            return Err(KmsgError::MissingField {
                record: text::clip(record, QUOTE_MAX),
                field: name,
            })
        }
    };
    // `str::parse` would take a leading `+`; the kernel writes plain digits.
    let parsed = value
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| value.parse::<T>().ok())
        .flatten();
    parsed.ok_or_else(|| KmsgError::BadField {
        record: text::clip(record, QUOTE_MAX),
        field: name,
        value: text::clip(value, QUOTE_MAX),
        expected: "a decimal number in range",
    })
}

/// `\xNN` back to the byte; anything else as it is. A stray `\` is kept: the kernel escapes
/// every backslash, but a line is worth more than strictness here.
fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1] == b'x' {
            let hex = std::str::from_utf8(&b[i + 2..i + 4])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(byte) = hex {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// Escapes as the kernel does: bytes below space, from 127 up, and `\`.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if !(b' '..127).contains(&b) || b == b'\\' {
            out.push_str(&format!("\\x{b:02x}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

/// A record of the kernel log (`/dev/kmsg`), as attributed to a case.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogLine {
    /// Syslog level: 0 emerg .. 7 debug.
    pub level: u8,
    /// The kernel's sequence number of the record.
    pub seq: u64,
    /// Microseconds since boot, as the kernel stamps it.
    pub ts_us: u64,
    pub text: String,
    /// Why the line matters, where it does: `WARNING`, `BUG`, `oops`, `call trace`,
    /// `GPU page fault`, or `level warning` for any other line at or below warning that the
    /// allow-list does not excuse. `None`: the line is informational or allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
    /// Where the line could not be charged to one case: the other cases running when it was
    /// logged. Every one of them keeps the line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribution: Option<String>,
}
