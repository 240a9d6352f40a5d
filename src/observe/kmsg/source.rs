//! Where kernel log records come from: the [`KmsgSource`] trait, the kernel's own `/dev/kmsg`
//! ([`DevKmsg`]), and a file of records for tests and replay ([`FileKmsg`]).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::util::text::io_reason;

use super::record::{parse_record, Record, USER_FACILITY};

/// The kernel log device.
pub const DEV_KMSG: &str = "/dev/kmsg";

/// The level of the markers: notice, visible in `dmesg` without counting as a warning.
pub(super) const MARKER_LEVEL: u8 = 5;

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
