//! The kernel log of a run: [`KernelLog`] brackets each case with marker records and hands it
//! the records logged in between ([`Span`]); [`open`] picks the source.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::util::text::io_reason;

use super::attribute::{attribute, Charge, Owner};
use super::record::{Record, BEGIN, END};
use super::source::{DevKmsg, FileKmsg, KmsgSource, DEV_KMSG};
use crate::model::memory::Allocation;

/// The kernel refuses longer `/dev/kmsg` writes (LOG_LINE_MAX less the prefix); a marker is cut
/// well below that.
pub(super) const MARKER_MAX: usize = 900;

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
    /// Windows already ended that an open one may overlap: who else a record may be.
    closed: Vec<Closed>,
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
    /// The processes the case runs in, as they start ([`KernelLog::claim`]).
    pids: Vec<u32>,
}

/// An ended window: its records `[start, end)` and whose they were.
struct Closed {
    start: u64,
    end: u64,
    owner: Owner,
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
    pub(super) fn new(path: &Path, e: &io::Error) -> Unavailable {
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
                closed: Vec::new(),
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
                pids: Vec::new(),
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
        self.end_attributed(span, Vec::new())
            .into_iter()
            .map(|(r, _)| r)
            .collect()
    }

    /// Says that the case of `span` runs in process `pid` (its child process), so that a
    /// record naming it is the case's, whoever else ran then.
    pub fn claim(&self, span: &Span, pid: u32) {
        if let Some(open) = self.lock().open.get_mut(&span.id) {
            open.pids.push(pid);
        }
    }

    /// [`KernelLog::end`], each record with whose it is ([`attribute`]): the case's own
    /// (`allocations` are where its memory was), another case's that it names, or unattributed
    /// among every case whose window held it.
    pub fn end_attributed(
        &self,
        span: Span,
        allocations: Vec<Allocation>,
    ) -> Vec<(Record, Charge)> {
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
        let me = Owner {
            case: open.case,
            pids: open.pids,
            allocations,
        };
        let others: Vec<(u64, u64, Owner)> = inner
            .open
            .values()
            .map(|o| {
                let owner = Owner {
                    case: o.case.clone(),
                    pids: o.pids.clone(),
                    allocations: Vec::new(),
                };
                (o.start, u64::MAX, owner)
            })
            .chain(
                inner
                    .closed
                    .iter()
                    .map(|c| (c.start, c.end, c.owner.clone())),
            )
            .collect();
        let records = (open.start.max(inner.first)..end)
            .filter_map(|i| Some((i, inner.get(i)?)))
            .filter(|(_, r)| !r.is_marker())
            .map(|(i, r)| {
                let during: Vec<&Owner> = others
                    .iter()
                    .filter(|(s, e, _)| *s <= i && i < *e)
                    .map(|(_, _, o)| o)
                    .collect();
                (r.clone(), attribute(&r.text, &me, &during))
            })
            .collect();
        inner.closed.push(Closed {
            start: open.start,
            end,
            owner: me,
        });
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
    pub(super) fn buffered(&self) -> usize {
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
pub(super) fn marker(kind: &str, case: &str) -> String {
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

    /// Drops the records, and the ended windows, no open span needs.
    fn trim(&mut self) {
        let keep_from = self
            .open
            .values()
            .map(|o| o.start)
            .min()
            .unwrap_or_else(|| self.end_index());
        self.closed.retain(|c| c.end > keep_from);
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
