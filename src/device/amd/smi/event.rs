//! One SMI event line: the kernel's trigger enums, [`SmiEvent`], the errors of a line that is not
//! one ([`SmiError`]), and [`parse_line`].

use std::fmt;

use crate::device::Trigger;
use crate::util::text;

use super::abi::{SmiEventId, KFD_SMI_FIFO_SIZE};

/// `enum KFD_MIGRATE_TRIGGERS`; a value the header does not name is kept, not refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MigrateTrigger {
    Prefetch,
    PagefaultGpu,
    PagefaultCpu,
    TtmEviction,
    Other(i32),
}

impl MigrateTrigger {
    pub fn from_raw(v: i32) -> MigrateTrigger {
        match v {
            0 => MigrateTrigger::Prefetch,
            1 => MigrateTrigger::PagefaultGpu,
            2 => MigrateTrigger::PagefaultCpu,
            3 => MigrateTrigger::TtmEviction,
            v => MigrateTrigger::Other(v),
        }
    }

    /// The number the kernel printed.
    pub fn raw(self) -> i32 {
        match self {
            MigrateTrigger::Prefetch => 0,
            MigrateTrigger::PagefaultGpu => 1,
            MigrateTrigger::PagefaultCpu => 2,
            MigrateTrigger::TtmEviction => 3,
            MigrateTrigger::Other(v) => v,
        }
    }

    /// The crate's trigger, whose discriminants are these same numbers.
    pub fn to_trigger(self) -> Option<Trigger> {
        match self {
            MigrateTrigger::Prefetch => Some(Trigger::Prefetch),
            MigrateTrigger::PagefaultGpu => Some(Trigger::GpuFault),
            MigrateTrigger::PagefaultCpu => Some(Trigger::CpuFault),
            MigrateTrigger::TtmEviction => Some(Trigger::Eviction),
            MigrateTrigger::Other(_) => None,
        }
    }
}

/// `enum KFD_QUEUE_EVICTION_TRIGGERS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QueueEvictionTrigger {
    Svm,
    Userptr,
    Ttm,
    Suspend,
    CriuCheckpoint,
    CriuRestore,
    Other(i32),
}

impl QueueEvictionTrigger {
    pub fn from_raw(v: i32) -> QueueEvictionTrigger {
        match v {
            0 => QueueEvictionTrigger::Svm,
            1 => QueueEvictionTrigger::Userptr,
            2 => QueueEvictionTrigger::Ttm,
            3 => QueueEvictionTrigger::Suspend,
            4 => QueueEvictionTrigger::CriuCheckpoint,
            5 => QueueEvictionTrigger::CriuRestore,
            v => QueueEvictionTrigger::Other(v),
        }
    }
}

/// `enum KFD_SVM_UNMAP_TRIGGERS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnmapTrigger {
    MmuNotify,
    MmuNotifyMigrate,
    UnmapFromCpu,
    Other(i32),
}

impl UnmapTrigger {
    pub fn from_raw(v: i32) -> UnmapTrigger {
        match v {
            0 => UnmapTrigger::MmuNotify,
            1 => UnmapTrigger::MmuNotifyMigrate,
            2 => UnmapTrigger::UnmapFromCpu,
            v => UnmapTrigger::Other(v),
        }
    }
}

/// One SMI event line. Pages are 4 KiB pages of the process's address space; gpu ids are KFD's,
/// 0 for system memory; `ns` is CLOCK_BOOTTIME in nanoseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SmiEvent {
    VmFault {
        pid: u32,
        task: String,
    },
    ThermalThrottle {
        bitmask: u64,
        counter: u64,
    },
    GpuPreReset {
        seq: u32,
        /// `amdgpu_reset_get_desc()`: "user trigger", "job hang on ring:...", ...; absent in
        /// kernels before the cause was added.
        cause: Option<String>,
    },
    GpuPostReset {
        seq: u32,
        cause: Option<String>,
    },
    MigrateStart {
        ns: u64,
        pid: u32,
        start_page: u64,
        npages: u64,
        from: u32,
        to: u32,
        prefetch_loc: u32,
        preferred_loc: u32,
        trigger: MigrateTrigger,
    },
    MigrateEnd {
        ns: u64,
        pid: u32,
        start_page: u64,
        npages: u64,
        from: u32,
        to: u32,
        trigger: MigrateTrigger,
        /// The kernel's result, 0 or a negative errno; `None` from kernels that printed 8 fields
        /// (and then only for migrations that succeeded).
        error: Option<i32>,
    },
    PageFaultStart {
        ns: u64,
        pid: u32,
        page: u64,
        gpu_id: u32,
        write: bool,
    },
    PageFaultEnd {
        ns: u64,
        pid: u32,
        page: u64,
        gpu_id: u32,
        /// 'M': the fault was resolved by migrating; 'U': by updating the GPU mapping in place.
        migrated: bool,
    },
    QueueEviction {
        ns: u64,
        pid: u32,
        gpu_id: u32,
        trigger: QueueEvictionTrigger,
    },
    QueueRestore {
        ns: u64,
        pid: u32,
        gpu_id: u32,
        /// 'R': the restore failed and was rescheduled.
        rescheduled: bool,
    },
    UnmapFromGpu {
        ns: u64,
        pid: u32,
        start_page: u64,
        npages: u64,
        gpu_id: u32,
        trigger: UnmapTrigger,
    },
    ProcessStart {
        pid: u32,
        task: String,
    },
    ProcessEnd {
        pid: u32,
        task: String,
    },
    /// An id this module does not parse, with the text after the id.
    Unknown {
        id: u32,
        text: String,
    },
}

/// A line that is not an SMI event as the kernel writes it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SmiError {
    #[error("empty SMI event line; expected `ID FIELDS` with the event id in hex")]
    Empty,
    #[error("SMI event line `{line}` does not start with an event id in hex followed by a space")]
    BadEventId { line: String },
    #[error("SMI {event} line `{line}` ends before its {field} (truncated?)")]
    Truncated {
        event: &'static str,
        field: &'static str,
        line: String,
    },
    #[error("SMI {event} line `{line}`: {field} is `{found}`, expected {expected}")]
    BadField {
        event: &'static str,
        field: &'static str,
        expected: &'static str,
        found: String,
        line: String,
    },
    #[error(
        "SMI {event} line `{line}` has `{rest}` after its last field; \
         a kernel with another format for this event?"
    )]
    Trailing {
        event: &'static str,
        rest: String,
        line: String,
    },
    /// Says only what every way of cutting the bytes into reads agrees on: how the line
    /// starts, not how long it had grown when the limit was crossed.
    #[error(
        "SMI event stream: more than {KFD_SMI_FIFO_SIZE} bytes without a newline, starting \
         `{start}`; no event is that long, so they were dropped up to the next newline"
    )]
    Overlong { start: String },
    #[error("SMI event stream ended inside an event: `{text}`")]
    Unterminated { text: String },
}

/// How much of a bad line an error quotes.
pub(super) const QUOTE_MAX: usize = 120;

/// Parses one event line, with or without its trailing newline.
pub fn parse_line(line: &str) -> Result<SmiEvent, SmiError> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    if line.is_empty() {
        return Err(SmiError::Empty);
    }
    let id_len = line.bytes().take_while(|b| b.is_ascii_hexdigit()).count();
    let (id_text, rest) = line.split_at(id_len);
    let id = match u32::from_str_radix(id_text, 16) {
        Ok(id) => id,
        Err(_) => {
            return Err(SmiError::BadEventId {
                line: text::quote(line, QUOTE_MAX),
            })
        }
    };
    let known = SmiEventId::from_raw(id);
    let event_name = known.map_or("event", SmiEventId::name);
    let Some(fields) = rest.strip_prefix(' ') else {
        if rest.is_empty() {
            return Err(SmiError::Truncated {
                event: event_name,
                field: "space after the event id",
                line: text::quote(line, QUOTE_MAX),
            });
        }
        return Err(SmiError::BadEventId {
            line: text::quote(line, QUOTE_MAX),
        });
    };
    let Some(known) = known else {
        return Ok(SmiEvent::Unknown {
            id,
            text: fields.to_string(),
        });
    };
    let mut s = Scan {
        line,
        rest: fields,
        event: known.name(),
    };
    let event = match known {
        SmiEventId::VmFault => {
            let pid = s.hex_u32("pid")?;
            s.lit(":", "`:` before the task name")?;
            SmiEvent::VmFault {
                pid,
                task: s.take_rest().to_string(),
            }
        }
        SmiEventId::ThermalThrottle => {
            let bitmask = s.hex_u64("throttle bitmask")?;
            s.lit(":", "`:` before the counter")?;
            let counter = s.hex_u64("thermal interrupt counter")?;
            s.end()?;
            SmiEvent::ThermalThrottle { bitmask, counter }
        }
        SmiEventId::GpuPreReset | SmiEventId::GpuPostReset => {
            let seq = s.hex_u32("reset sequence number")?;
            let cause = s.optional_text("reset cause")?;
            if known == SmiEventId::GpuPreReset {
                SmiEvent::GpuPreReset { seq, cause }
            } else {
                SmiEvent::GpuPostReset { seq, cause }
            }
        }
        SmiEventId::MigrateStart => {
            let (ns, pid) = s.ns_pid()?;
            let (start_page, npages) = s.page_range()?;
            let (from, to) = s.locations()?;
            s.lit(" ", "prefetch location")?;
            let prefetch_loc = s.hex_u32("prefetch location")?;
            s.lit(":", "preferred location")?;
            let preferred_loc = s.hex_u32("preferred location")?;
            s.lit(" ", "trigger")?;
            let trigger = MigrateTrigger::from_raw(s.dec_i32("trigger")?);
            s.end()?;
            SmiEvent::MigrateStart {
                ns,
                pid,
                start_page,
                npages,
                from,
                to,
                prefetch_loc,
                preferred_loc,
                trigger,
            }
        }
        SmiEventId::MigrateEnd => {
            let (ns, pid) = s.ns_pid()?;
            let (start_page, npages) = s.page_range()?;
            let (from, to) = s.locations()?;
            s.lit(" ", "trigger")?;
            let trigger = MigrateTrigger::from_raw(s.dec_i32("trigger")?);
            // The error code was appended in 2024; older kernels stop after the trigger.
            let error = if s.rest.is_empty() {
                None
            } else {
                s.lit(" ", "error code")?;
                Some(s.dec_i32("error code")?)
            };
            s.end()?;
            SmiEvent::MigrateEnd {
                ns,
                pid,
                start_page,
                npages,
                from,
                to,
                trigger,
                error,
            }
        }
        SmiEventId::PageFaultStart | SmiEventId::PageFaultEnd => {
            let (ns, pid) = s.ns_pid()?;
            s.lit(" @", "page")?;
            let page = s.hex_u64("page")?;
            s.lit("(", "gpu id")?;
            let gpu_id = s.hex_u32("gpu id")?;
            s.lit(")", "`)` after the gpu id")?;
            s.lit(" ", "access kind")?;
            let event = if known == SmiEventId::PageFaultStart {
                let write = match s.ch("access kind")? {
                    'R' => false,
                    'W' => true,
                    c => return Err(s.bad("access kind", "`R` (read) or `W` (write)", c)),
                };
                SmiEvent::PageFaultStart {
                    ns,
                    pid,
                    page,
                    gpu_id,
                    write,
                }
            } else {
                let migrated = match s.ch("resolution")? {
                    'M' => true,
                    'U' => false,
                    c => return Err(s.bad("resolution", "`M` (migrated) or `U` (updated)", c)),
                };
                SmiEvent::PageFaultEnd {
                    ns,
                    pid,
                    page,
                    gpu_id,
                    migrated,
                }
            };
            s.end()?;
            event
        }
        SmiEventId::QueueEviction => {
            let (ns, pid) = s.ns_pid()?;
            s.lit(" ", "gpu id")?;
            let gpu_id = s.hex_u32("gpu id")?;
            s.lit(" ", "trigger")?;
            let trigger = QueueEvictionTrigger::from_raw(s.dec_i32("trigger")?);
            s.end()?;
            SmiEvent::QueueEviction {
                ns,
                pid,
                gpu_id,
                trigger,
            }
        }
        SmiEventId::QueueRestore => {
            let (ns, pid) = s.ns_pid()?;
            s.lit(" ", "gpu id")?;
            let gpu_id = s.hex_u32("gpu id")?;
            // Three shapes in the history: no flag at all, `%c` with 'R' or '0', and one
            // release that passed 0 to `%c` and so printed a NUL byte.
            const FLAG: &str = "`R` (rescheduled), `0` or a NUL byte";
            let rescheduled = if s.rest.is_empty() {
                false
            } else {
                s.lit(" ", "rescheduled flag")?;
                match s.ch("rescheduled flag")? {
                    'R' => true,
                    '0' | '\0' => false,
                    c => return Err(s.bad("rescheduled flag", FLAG, c)),
                }
            };
            s.end()?;
            SmiEvent::QueueRestore {
                ns,
                pid,
                gpu_id,
                rescheduled,
            }
        }
        SmiEventId::UnmapFromGpu => {
            let (ns, pid) = s.ns_pid()?;
            let (start_page, npages) = s.page_range()?;
            s.lit(" ", "gpu id")?;
            let gpu_id = s.hex_u32("gpu id")?;
            s.lit(" ", "trigger")?;
            let trigger = UnmapTrigger::from_raw(s.dec_i32("trigger")?);
            s.end()?;
            SmiEvent::UnmapFromGpu {
                ns,
                pid,
                start_page,
                npages,
                gpu_id,
                trigger,
            }
        }
        SmiEventId::ProcessStart | SmiEventId::ProcessEnd => {
            let pid = s.hex_u32("pid")?;
            s.lit(" ", "task name")?;
            let task = s.take_rest().to_string();
            if known == SmiEventId::ProcessStart {
                SmiEvent::ProcessStart { pid, task }
            } else {
                SmiEvent::ProcessEnd { pid, task }
            }
        }
        // A mask bit, never sent; should a kernel send it, nobody knows what it means.
        SmiEventId::AllProcess => SmiEvent::Unknown {
            id,
            text: fields.to_string(),
        },
    };
    Ok(event)
}

/// A strict left-to-right reader of one line's fields, like the `sscanf` the header's formats
/// are written for, but saying which field went wrong.
struct Scan<'a> {
    line: &'a str,
    rest: &'a str,
    event: &'static str,
}

impl<'a> Scan<'a> {
    fn truncated(&self, field: &'static str) -> SmiError {
        SmiError::Truncated {
            event: self.event,
            field,
            line: text::quote(self.line, QUOTE_MAX),
        }
    }

    fn bad(
        &self,
        field: &'static str,
        expected: &'static str,
        found: impl fmt::Display,
    ) -> SmiError {
        SmiError::BadField {
            event: self.event,
            field,
            expected,
            found: text::quote(&found.to_string(), QUOTE_MAX),
            line: text::quote(self.line, QUOTE_MAX),
        }
    }

    /// What follows, up to the next separator, for an error message.
    fn next_word(&self) -> &'a str {
        let end = self
            .rest
            .find([' ', ':', '(', ')', '@', '-', '>'])
            .filter(|&i| i > 0)
            .unwrap_or(self.rest.len());
        &self.rest[..end]
    }

    fn lit(&mut self, lit: &'static str, field: &'static str) -> Result<(), SmiError> {
        if let Some(rest) = self.rest.strip_prefix(lit) {
            self.rest = rest;
            return Ok(());
        }
        if self.rest.is_empty() || lit.starts_with(self.rest) {
            return Err(self.truncated(field));
        }
        let expected = match lit {
            " " => "a space",
            ":" => "`:`",
            " @" => "` @` and the page in hex",
            "(" => "`(`",
            ")" => "`)`",
            " -" => "` -` and the pid",
            "->" => "`->`",
            _ => "a separator",
        };
        Err(self.bad(field, expected, self.next_word()))
    }

    fn digits(&mut self, field: &'static str, hex: bool) -> Result<&'a str, SmiError> {
        let n = self
            .rest
            .bytes()
            .take_while(|b| {
                if hex {
                    b.is_ascii_hexdigit()
                } else {
                    b.is_ascii_digit()
                }
            })
            .count();
        if n == 0 {
            if self.rest.is_empty() {
                return Err(self.truncated(field));
            }
            let expected = if hex {
                "a hex number"
            } else {
                "a decimal number"
            };
            return Err(self.bad(field, expected, self.next_word()));
        }
        let (digits, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(digits)
    }

    fn hex_u64(&mut self, field: &'static str) -> Result<u64, SmiError> {
        let d = self.digits(field, true)?;
        u64::from_str_radix(d, 16)
            .map_err(|_| self.bad(field, "a hex number of at most 64 bits", d))
    }

    fn hex_u32(&mut self, field: &'static str) -> Result<u32, SmiError> {
        let d = self.digits(field, true)?;
        u32::from_str_radix(d, 16)
            .map_err(|_| self.bad(field, "a hex number of at most 32 bits", d))
    }

    fn dec_u64(&mut self, field: &'static str) -> Result<u64, SmiError> {
        let d = self.digits(field, false)?;
        d.parse()
            .map_err(|_| self.bad(field, "a decimal number of at most 64 bits", d))
    }

    fn dec_u32(&mut self, field: &'static str) -> Result<u32, SmiError> {
        let d = self.digits(field, false)?;
        d.parse()
            .map_err(|_| self.bad(field, "a decimal number of at most 32 bits", d))
    }

    fn dec_i32(&mut self, field: &'static str) -> Result<i32, SmiError> {
        let negative = self.rest.starts_with('-');
        if negative {
            self.rest = &self.rest[1..];
        }
        let d = self.digits(field, false)?;
        let magnitude: i64 = d
            .parse()
            .map_err(|_| self.bad(field, "a 32-bit decimal number", d))?;
        let v = if negative { -magnitude } else { magnitude };
        i32::try_from(v).map_err(|_| self.bad(field, "a 32-bit decimal number", v))
    }

    fn ch(&mut self, field: &'static str) -> Result<char, SmiError> {
        let Some(c) = self.rest.chars().next() else {
            return Err(self.truncated(field));
        };
        self.rest = &self.rest[c.len_utf8()..];
        Ok(c)
    }

    /// `%lld -%d`: the timestamp, then the pid after a space and a minus sign.
    fn ns_pid(&mut self) -> Result<(u64, u32), SmiError> {
        let ns = self.dec_u64("timestamp")?;
        self.lit(" -", "pid")?;
        let pid = self.dec_u32("pid")?;
        Ok((ns, pid))
    }

    /// ` @%lx(%lx)`: the first page and the page count.
    fn page_range(&mut self) -> Result<(u64, u64), SmiError> {
        self.lit(" @", "start page")?;
        let start = self.hex_u64("start page")?;
        self.lit("(", "page count")?;
        let npages = self.hex_u64("page count")?;
        self.lit(")", "`)` after the page count")?;
        Ok((start, npages))
    }

    /// ` %x->%x`: the source and destination gpu ids.
    fn locations(&mut self) -> Result<(u32, u32), SmiError> {
        self.lit(" ", "source location")?;
        let from = self.hex_u32("source location")?;
        self.lit("->", "destination location")?;
        let to = self.hex_u32("destination location")?;
        Ok((from, to))
    }

    /// An optional ` %s` at the end of the line.
    fn optional_text(&mut self, field: &'static str) -> Result<Option<String>, SmiError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        self.lit(" ", field)?;
        Ok(Some(self.take_rest().to_string()))
    }

    fn take_rest(&mut self) -> &'a str {
        std::mem::take(&mut self.rest)
    }

    fn end(&self) -> Result<(), SmiError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(SmiError::Trailing {
                event: self.event,
                rest: text::quote(self.rest, QUOTE_MAX),
                line: text::quote(self.line, QUOTE_MAX),
            })
        }
    }
}
