//! The kernel log: reading `/dev/kmsg`, attributing its records to the cases that were running
//! when the kernel logged them, and deciding which records turn a pass into dmesg-warn and a
//! fail into dmesg-fail.
//!
//! A case cannot see the kernel log itself: a WARNING in migrate_device or a GPU page fault
//! printed by amdgpu is the kernel's word, logged while the case's data may still come back
//! right. So the runner brackets each case with [`KernelLog::begin`] and [`KernelLog::end`],
//! which write marker records (`svmconf: begin <case>`, as igt_runner does) and return the
//! records logged in between; [`classify`] then flags the ones that matter, and [`apply`] turns
//! the case's status accordingly.
//!
//! # Record format (Documentation/ABI/testing/dev-kmsg)
//! ```text
//! 4,1832,2314125813,-;amdgpu 0000:c1:00.0: amdgpu: Runlist is getting oversubscribed.
//!  SUBSYSTEM=pci
//!  DEVICE=+pci:0000:c1:00.0
//! ```
//! `PREFIX,SEQ,TIMESTAMP,FLAGS[,MORE...];MESSAGE`: prefix is `facility << 3 | level`, the
//! sequence number counts every record since boot, the timestamp is microseconds since boot,
//! flags are `-` or `c` (a fragment). Fields after the flags are future extensions
//! (`caller=T123`) and are ignored. Bytes below space, from 127 up, and `\` itself are escaped
//! as `\xNN` in the message. Lines starting with a space are the record's `KEY=VALUE`
//! dictionary; they are checked but not kept, since a [`LogLine`] has no place for them.
//!
//! # `fixtures/kernel-log.yaml`
//! ```yaml
//! allow:                               # lines that never flag a case
//!   - pattern: 'workqueue: .* hogged CPU'  # a regular expression, searched in the message
//!     reason: why this line is harmless   # required: the next reader must know why
//! ```
//! An entry excuses every record whose message it matches, the named patterns (WARNING, BUG,
//! ...) included: write patterns narrowly.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, MutexGuard};

use regex::Regex;
use serde::Deserialize;

use crate::model::status::Status;
use crate::util::text;
use crate::util::text::io_reason;
use crate::util::yaml::{self, FieldPath, YamlError};

/// The kernel log device.
pub const DEV_KMSG: &str = "/dev/kmsg";

/// The syslog facility the kernel gives to records written to `/dev/kmsg` from userspace
/// without one (LOG_USER); kernel messages have facility 0.
pub const USER_FACILITY: u8 = 1;

/// The level of the markers: notice, visible in `dmesg` without counting as a warning.
const MARKER_LEVEL: u8 = 5;

/// The kernel refuses longer `/dev/kmsg` writes (LOG_LINE_MAX less the prefix); a marker is cut
/// well below that.
const MARKER_MAX: usize = 900;

/// How much of a bad record an error quotes.
const QUOTE_MAX: usize = 120;

// --- records -----------------------------------------------------------------------------------

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
        }
    }

    /// The record as `/dev/kmsg` shows it, on one line without the newline: what [`FileKmsg`]
    /// reads, and what `cat /dev/kmsg > FILE` captures on a lab machine.
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
}

// --- sources -----------------------------------------------------------------------------------

/// Where kernel log records come from: `/dev/kmsg`, or a file of records for tests and replay.
pub trait KmsgSource: Send {
    /// The records logged since the last call (since opening, on the first), oldest first.
    fn read_new(&mut self) -> io::Result<Vec<Record>>;
    /// Logs `text` as a record of the log itself, so that readers can see where a case began.
    fn write_marker(&mut self, text: &str) -> io::Result<()>;
    /// Where the records come from, for run.json and messages: `/dev/kmsg`.
    fn describe(&self) -> String;
    /// What went wrong while reading without stopping it (records overwritten before they were
    /// read, a line that is not a record), since the last call.
    fn take_notes(&mut self) -> Vec<String> {
        Vec::new()
    }
}

/// The kernel's own log, `/dev/kmsg`.
pub struct DevKmsg {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    notes: Vec<String>,
}

/// Larger than the largest record the kernel hands out in one `read()` (CONSOLE_EXT_LOG_MAX,
/// 8 KiB); a smaller buffer makes the read fail with EINVAL.
const READ_BUF: usize = 16 << 10;

/// Records taken in one `read_new`, so a kernel flooding its log cannot hold the runner.
const READ_MAX: usize = 100_000;

impl DevKmsg {
    /// Opens `path` (normally [`DEV_KMSG`]) for reading without blocking, positioned after the
    /// last record: the records from before the run belong to no case.
    pub fn open(path: &Path) -> io::Result<DevKmsg> {
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)?;
        // SEEK_END is how /dev/kmsg lets a reader skip what is already in the buffer.
        file.seek(SeekFrom::End(0))?;
        Ok(DevKmsg {
            path: path.to_path_buf(),
            file,
            buf: vec![0; READ_BUF],
            notes: Vec::new(),
        })
    }
}

impl KmsgSource for DevKmsg {
    fn read_new(&mut self) -> io::Result<Vec<Record>> {
        let mut records = Vec::new();
        while records.len() < READ_MAX {
            match self.file.read(&mut self.buf) {
                Ok(0) => break,
                // Each read() is exactly one record.
                Ok(n) => match parse_record(&String::from_utf8_lossy(&self.buf[..n])) {
                    Ok(r) => records.push(r),
                    Err(e) => self.notes.push(format!("{}: {e}", self.path.display())),
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The kernel moved the reader on to the oldest record it still has; the jump in
                // sequence numbers says how many were lost, and KernelLog reports it.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(e) if records.is_empty() => return Err(e),
                Err(e) => {
                    self.notes.push(format!(
                        "reading {}: {}",
                        self.path.display(),
                        io_reason(&e)
                    ));
                    break;
                }
            }
        }
        Ok(records)
    }

    fn write_marker(&mut self, text: &str) -> io::Result<()> {
        // A fresh open per marker: the kernel rate-limits writes per open file
        // (printk.devkmsg=ratelimit: 10 lines per 5 s), and a run writes two per case.
        let mut w = OpenOptions::new().write(true).open(&self.path)?;
        let line = format!("<{MARKER_LEVEL}>{text}\n");
        // One write() is one record; a short write would split it.
        let n = w.write(line.as_bytes())?;
        if n != line.len() {
            return Err(io::Error::other(format!(
                "the kernel took {n} of {} bytes of the marker",
                line.len()
            )));
        }
        Ok(())
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }
}

/// A text file of records in the `/dev/kmsg` format, one per line, dictionary lines allowed:
/// the kernel log of tests, and of a lab machine replayed (`cat /dev/kmsg > FILE`).
///
/// [`read_new`](KmsgSource::read_new) returns the records appended since the last read; a last
/// line without its newline is left for the next read, since its writer may be mid-line.
/// [`write_marker`](KmsgSource::write_marker) appends a record with the next sequence number, as
/// the kernel would (facility user, level notice). Writers must append whole lines.
pub struct FileKmsg {
    path: PathBuf,
    /// Bytes of the file consumed: always just after a newline.
    offset: u64,
    /// Lines consumed, for messages that point at a line.
    line_no: usize,
    /// Records read from the file but not yet returned.
    pending: Vec<Record>,
    last_seq: Option<u64>,
    last_ts: u64,
    notes: Vec<String>,
}

impl FileKmsg {
    /// Opens `path`, positioned after its last complete line, as [`DevKmsg`] opens at the end.
    pub fn open(path: &Path) -> io::Result<FileKmsg> {
        let mut k = FileKmsg::from_start(path)?;
        // Reading what is there learns the last sequence number, which markers continue.
        k.fill()?;
        k.pending.clear();
        k.notes.clear();
        Ok(k)
    }

    /// Opens `path` so that the first read returns the records already in it.
    pub fn from_start(path: &Path) -> io::Result<FileKmsg> {
        // Fail now, not at the first read, when the file is not there.
        File::open(path)?;
        Ok(FileKmsg {
            path: path.to_path_buf(),
            offset: 0,
            line_no: 0,
            pending: Vec::new(),
            last_seq: None,
            last_ts: 0,
            notes: Vec::new(),
        })
    }

    /// Moves the complete lines appended since the last call into `pending`.
    fn fill(&mut self) -> io::Result<()> {
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(self.offset))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let Some(last_newline) = bytes.iter().rposition(|&b| b == b'\n') else {
            return Ok(());
        };
        let complete = &bytes[..=last_newline];
        let text = String::from_utf8_lossy(complete);
        // A record line with the dictionary lines that follow it.
        let mut current: Option<(usize, String)> = None;
        for line in text.split_terminator('\n') {
            self.line_no += 1;
            if line.starts_with(' ') {
                // Dictionary lines of a record returned by an earlier read are dropped with it.
                if let Some((_, record)) = &mut current {
                    record.push('\n');
                    record.push_str(line);
                }
                continue;
            }
            if let Some((at, record)) = current.take() {
                self.accept(at, &record);
            }
            if !line.trim().is_empty() {
                current = Some((self.line_no, line.to_string()));
            }
        }
        if let Some((at, record)) = current.take() {
            self.accept(at, &record);
        }
        self.offset += complete.len() as u64;
        Ok(())
    }

    fn accept(&mut self, line: usize, record: &str) {
        match parse_record(record) {
            Ok(r) => {
                self.last_seq = Some(self.last_seq.map_or(r.seq, |s| s.max(r.seq)));
                self.last_ts = self.last_ts.max(r.ts_us);
                self.pending.push(r);
            }
            Err(e) => self
                .notes
                .push(format!("{}:{line}: {e}", self.path.display())),
        }
    }
}

impl KmsgSource for FileKmsg {
    fn read_new(&mut self) -> io::Result<Vec<Record>> {
        self.fill()?;
        Ok(std::mem::take(&mut self.pending))
    }

    fn write_marker(&mut self, text: &str) -> io::Result<()> {
        // Whatever was appended before the marker comes before it in sequence too.
        self.fill()?;
        let record = Record {
            level: MARKER_LEVEL,
            facility: USER_FACILITY,
            seq: self.last_seq.map_or(0, |s| s.saturating_add(1)),
            ts_us: self.last_ts,
            text: text.to_string(),
        };
        let mut file = OpenOptions::new().append(true).open(&self.path)?;
        file.write_all(format!("{}\n", record.to_kmsg_line()).as_bytes())
    }

    fn describe(&self) -> String {
        format!("{} (a file of kernel log records)", self.path.display())
    }

    fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }
}

// --- attribution -------------------------------------------------------------------------------

const BEGIN: &str = "svmconf: begin ";
const END: &str = "svmconf: end ";

/// Most notes kept; past this, only a count.
const NOTES_MAX: usize = 100;

/// The kernel log of a run, shared by the threads that run cases.
///
/// Every record read gets an index in read order. A [`Span`] is a range of those indices: from
/// just after its begin marker to just before its end marker, or, where markers cannot be
/// written, from what had been read at `begin` to what had been read at `end`. Records are kept
/// only while an open span may still need them.
pub struct KernelLog {
    inner: Mutex<Inner>,
}

struct Inner {
    source: Box<dyn KmsgSource>,
    /// Records an open span may still need; the front has index `first`.
    buffer: VecDeque<Record>,
    first: u64,
    open: BTreeMap<u64, Open>,
    next_span: u64,
    last_seq: Option<u64>,
    /// False once a marker failed: the next would fail the same way.
    markers: bool,
    notes: Vec<String>,
    notes_dropped: usize,
}

struct Open {
    case: String,
    start: u64,
}

/// A case's window on the kernel log, from [`KernelLog::begin`] to [`KernelLog::end`].
#[derive(Debug)]
#[must_use = "a span holds kernel log records until it is ended"]
pub struct Span {
    id: u64,
    case: String,
}

impl Span {
    /// The case the span was begun for.
    pub fn case(&self) -> &str {
        &self.case
    }
}

/// The kernel log cannot be read: said once in run.json, and the run goes on without it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("kernel log `{}` is not available: {reason}", path.display())]
pub struct Unavailable {
    pub path: PathBuf,
    pub reason: String,
}

impl Unavailable {
    fn new(path: &Path, e: &io::Error) -> Unavailable {
        let reason = match e.kind() {
            io::ErrorKind::NotFound => "it does not exist".to_string(),
            // EACCES and EPERM both: the second is what dmesg_restrict gives.
            io::ErrorKind::PermissionDenied => format!(
                "{}: reading the kernel log needs root, or CAP_SYSLOG where \
                 kernel.dmesg_restrict is 1",
                io_reason(e)
            ),
            _ => io_reason(e),
        };
        Unavailable {
            path: path.to_path_buf(),
            reason,
        }
    }
}

/// Opens the kernel log: `/dev/kmsg` for `None`, else `spec`, a character device read as
/// `/dev/kmsg` or a file of records read as [`FileKmsg`] (tests, replay of a lab log).
pub fn open(spec: Option<&Path>) -> Result<KernelLog, Unavailable> {
    let path = spec.unwrap_or(Path::new(DEV_KMSG));
    let meta = std::fs::metadata(path).map_err(|e| Unavailable::new(path, &e))?;
    let source: Box<dyn KmsgSource> = if meta.file_type().is_char_device() {
        Box::new(DevKmsg::open(path).map_err(|e| Unavailable::new(path, &e))?)
    } else if meta.is_file() {
        Box::new(FileKmsg::open(path).map_err(|e| Unavailable::new(path, &e))?)
    } else {
        return Err(Unavailable {
            path: path.to_path_buf(),
            reason: "it is neither a character device like /dev/kmsg nor a file of kernel log \
                     records"
                .to_string(),
        });
    };
    Ok(KernelLog::new(source))
}

impl KernelLog {
    pub fn new(source: Box<dyn KmsgSource>) -> KernelLog {
        KernelLog {
            inner: Mutex::new(Inner {
                source,
                buffer: VecDeque::new(),
                first: 0,
                open: BTreeMap::new(),
                next_span: 0,
                last_seq: None,
                markers: true,
                notes: Vec::new(),
                notes_dropped: 0,
            }),
        }
    }

    /// Where the records come from, for run.json.
    pub fn describe(&self) -> String {
        self.lock().source.describe()
    }

    /// Starts `case`'s window: writes `svmconf: begin <case>` where it can, and remembers that
    /// the case's records start after it.
    pub fn begin(&self, case: &str) -> Span {
        let mut inner = self.lock();
        let marker = marker(BEGIN, case);
        let written = inner.write_marker(&marker);
        let new = inner.pump();
        let start = written
            .then(|| inner.find(new.clone(), &marker))
            .flatten()
            .map_or(new.end, |at| at + 1);
        let id = inner.next_span;
        inner.next_span += 1;
        inner.open.insert(
            id,
            Open {
                case: case.to_string(),
                start,
            },
        );
        inner.trim();
        Span {
            id,
            case: case.to_string(),
        }
    }

    /// Ends a span: writes `svmconf: end <case>` where it can, and returns the records logged
    /// between the span's markers (the markers themselves, and any other svmconf marker, left
    /// out). Records logged while several spans were open are returned to each.
    pub fn end(&self, span: Span) -> Vec<Record> {
        let mut inner = self.lock();
        let marker = marker(END, &span.case);
        let written = inner.write_marker(&marker);
        let new = inner.pump();
        let Some(open) = inner.open.remove(&span.id) else {
            return Vec::new();
        };
        let end = written
            .then(|| inner.find(open.start.max(new.start)..new.end, &marker))
            .flatten()
            .unwrap_or(new.end);
        let records = (open.start.max(inner.first)..end)
            .filter_map(|i| inner.get(i))
            .filter(|r| !r.is_marker())
            .cloned()
            .collect();
        inner.trim();
        records
    }

    /// What the runner should say once about the kernel log: markers that could not be written,
    /// records lost before they were read, lines that were not records. In the order they
    /// happened, each said once.
    pub fn notes(&self) -> Vec<String> {
        let inner = self.lock();
        let mut notes = inner.notes.clone();
        if inner.notes_dropped > 0 {
            notes.push(format!(
                "... and {} more kernel log notes",
                inner.notes_dropped
            ));
        }
        notes
    }

    /// Records held for open spans (for tests of the buffering).
    #[cfg(test)]
    fn buffered(&self) -> usize {
        self.lock().buffer.len()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A thread that panicked while holding the lock left the state consistent: every
        // change is a push or a pop. The log must keep working for the other cases.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `svmconf: begin <case>`, cut to what the kernel takes in one write and with control
/// characters replaced so the marker stays one line.
fn marker(kind: &str, case: &str) -> String {
    let mut text = String::from(kind);
    for c in case.chars() {
        if text.len() + c.len_utf8() > MARKER_MAX {
            break;
        }
        text.push(if c.is_control() { '?' } else { c });
    }
    text
}

impl Inner {
    /// Tries to write a marker; the first failure is noted and ends the trying.
    fn write_marker(&mut self, text: &str) -> bool {
        if !self.markers {
            return false;
        }
        match self.source.write_marker(text) {
            Ok(()) => true,
            Err(e) => {
                self.markers = false;
                let note = format!(
                    "cannot write markers to {}: {}; kernel log records are attributed to cases \
                     by when they were read, so a record logged just before or after a case may \
                     be counted in or out of it",
                    self.source.describe(),
                    io_reason(&e)
                );
                self.note(note);
                false
            }
        }
    }

    /// Reads what is new into the buffer; returns the indices it got.
    fn pump(&mut self) -> Range<u64> {
        let from = self.end_index();
        match self.source.read_new() {
            Ok(records) => {
                for r in records {
                    self.check_gap(&r);
                    self.buffer.push_back(r);
                }
            }
            Err(e) => {
                let note = format!("reading {}: {}", self.source.describe(), io_reason(&e));
                self.note(note);
            }
        }
        for note in self.source.take_notes() {
            self.note(note);
        }
        from..self.end_index()
    }

    fn check_gap(&mut self, r: &Record) {
        if let Some(last) = self.last_seq {
            if r.seq > last.saturating_add(1) {
                let cases: Vec<&str> = self.open.values().map(|o| o.case.as_str()).collect();
                let during = if cases.is_empty() {
                    String::new()
                } else {
                    format!(" while {} ran", cases.join(", "))
                };
                let note = format!(
                    "kernel log records {}..={} were lost before they were read{during} \
                     (the kernel's buffer wrapped)",
                    last + 1,
                    r.seq - 1
                );
                self.note(note);
            }
        }
        self.last_seq = Some(r.seq);
    }

    /// The index of the last record in `range` whose text is `text`.
    fn find(&self, range: Range<u64>, text: &str) -> Option<u64> {
        range
            .rev()
            .find(|&i| self.get(i).is_some_and(|r| r.text == text))
    }

    fn get(&self, index: u64) -> Option<&Record> {
        let offset = index.checked_sub(self.first)?;
        self.buffer.get(usize::try_from(offset).ok()?)
    }

    fn end_index(&self) -> u64 {
        self.first + self.buffer.len() as u64
    }

    /// Drops the records no open span needs.
    fn trim(&mut self) {
        let keep_from = self
            .open
            .values()
            .map(|o| o.start)
            .min()
            .unwrap_or_else(|| self.end_index());
        while self.first < keep_from && self.buffer.pop_front().is_some() {
            self.first += 1;
        }
    }

    fn note(&mut self, note: String) {
        if self.notes.contains(&note) {
            return;
        }
        if self.notes.len() < NOTES_MAX {
            self.notes.push(note);
        } else {
            self.notes_dropped += 1;
        }
    }
}

// --- classification ----------------------------------------------------------------------------

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
struct Named {
    flag: &'static str,
    severity: Severity,
    pattern: &'static str,
}

/// First match wins, so the more specific come first.
const NAMED: [Named; 5] = [
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

static NAMED_RE: LazyLock<Vec<(&'static Named, Regex)>> = LazyLock::new(|| {
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

#[cfg(test)]
mod tests;
