//! KFD SMI events: the text lines the amdkfd driver writes to a process that asked for them, parsed
//! into [`SmiEvent`]s, and migrations among them turned into the crate's [`MigrationEvent`]s.
//!
//! This is the migration evidence of the mainline KFD SVM path. The process opens `/dev/kfd`,
//! calls `AMDKFD_IOC_SMI_EVENTS` ([`AMDKFD_IOC_SMI_EVENTS`], argument [`KfdIoctlSmiEventsArgs`])
//! for one GPU, writes a native-endian `u64` mask of the events it wants ([`event_mask`]) to the
//! returned fd, and reads. That ioctl belongs to the backend's FFI layer; everything after the
//! bytes arrive is here and needs no GPU.
//!
//! # Wire format (include/uapi/linux/kfd_ioctl.h, drivers/gpu/drm/amd/amdkfd/kfd_smi_events.c)
//! `kfd_smi_event_add()` writes `"%x "` with the event id, then the event's `KFD_EVENT_FMT_*`
//! format, each ending in `\n`, into a 1024-byte kfifo per reader; a `read()` returns whatever the
//! fifo holds up to the buffer size, so one read may carry several events and may end inside one
//! (kernels before the `min3(size, sizeof(buf), ...)` fix returned at most 8 bytes per read).
//! When the fifo is full, new events are dropped without a trace.
//! ```text
//! id  event            fields after "ID "                     notes
//! 1   VMFAULT          %x:%s            pid:task
//! 2   THERMAL_THROTTLE %llx:%llx        bitmask:counter      older kernels: %x:%llx
//! 3   GPU_PRE_RESET    %x %s            seq reset_cause      before the cause: %x
//! 4   GPU_POST_RESET   %x %s            seq reset_cause      before the cause: %x
//! 5   MIGRATE_START    %lld -%d @%lx(%lx) %x->%x %x:%x %d
//!                      ns -pid @start_page(npages) from->to prefetch_loc:preferred_loc trigger
//! 6   MIGRATE_END      %lld -%d @%lx(%lx) %x->%x %d %d
//!                      ns -pid @start_page(npages) from->to trigger error_code
//!                                                             before the error code: 8 fields
//! 7   PAGE_FAULT_START %lld -%d @%lx(%x) %c   ns -pid @page(gpu_id) R|W
//! 8   PAGE_FAULT_END   %lld -%d @%lx(%x) %c   ns -pid @page(gpu_id) M|U (migrated, updated)
//! 9   QUEUE_EVICTION   %lld -%d %x %d         ns -pid gpu_id trigger
//! 10  QUEUE_RESTORE    %lld -%d %x %c         ns -pid gpu_id rescheduled ('R', or '0')
//!                                             first without the %c; one release printed a NUL
//! 11  UNMAP_FROM_GPU   %lld -%d @%lx(%lx) %x %d   ns -pid @start_page(npages) gpu_id trigger
//! 12  PROCESS_START    %x %s            pid task
//! 13  PROCESS_END      %x %s            pid task
//! ```
//! Addresses and sizes are in 4 KiB pages; locations are KFD gpu ids (the topology's `gpu_id`,
//! not the DRM minor), 0 for system memory; `ns` is CLOCK_BOOTTIME. The error code of
//! MIGRATE_END is the kernel's return value, a negative errno or 0; kernels without it printed
//! MIGRATE_END only for migrations that succeeded. A June 2026 amd-gfx patch proposes id 14,
//! QUEUE_RESTORE_RESCHEDULED; it is not in the headers read here and parses as
//! [`SmiEvent::Unknown`], like any id this module does not know.

use std::collections::VecDeque;
use std::fmt;

use crate::device::{Location, MigrationEvent, Trigger, PAGE_SIZE};
use crate::util::text;

// --- the ioctl and the mask ----------------------------------------------------------------------

/// `AMDKFD_IOCTL_BASE`, the ioctl type of `/dev/kfd`.
pub const AMDKFD_IOCTL_BASE: u8 = b'K';
/// The ioctl number of `AMDKFD_IOC_SMI_EVENTS`.
pub const AMDKFD_IOC_SMI_EVENTS_NR: u8 = 0x1f;

/// `struct kfd_ioctl_smi_events_args`: `gpuid` goes to KFD, `anon_fd` comes back, the fd to
/// write the mask to and read events from.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KfdIoctlSmiEventsArgs {
    pub gpuid: u32,
    pub anon_fd: u32,
}

/// `_IOWR('K', 0x1F, struct kfd_ioctl_smi_events_args)`: 0xC0084B1F on every Linux architecture
/// with the generic ioctl encoding (x86-64, arm64).
pub const AMDKFD_IOC_SMI_EVENTS: u32 = iowr(
    AMDKFD_IOCTL_BASE,
    AMDKFD_IOC_SMI_EVENTS_NR,
    std::mem::size_of::<KfdIoctlSmiEventsArgs>(),
);

/// The generic `_IOWR(type, nr, size)`: direction read|write (3) in bits 30-31, size in 16-29,
/// type in 8-15, number in 0-7.
pub const fn iowr(ty: u8, nr: u8, size: usize) -> u32 {
    (3u32 << 30) | ((size as u32 & 0x3fff) << 16) | ((ty as u32) << 8) | nr as u32
}

/// `KFD_SMI_EVENT_MSG_SIZE`: the kernel formats each event into a buffer of this many bytes.
pub const KFD_SMI_EVENT_MSG_SIZE: usize = 96;
/// `MAX_KFIFO_SIZE` in kfd_smi_events.c: the per-reader fifo, and the most one `read()` returns.
pub const KFD_SMI_FIFO_SIZE: usize = 1024;

/// `enum kfd_smi_event`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum SmiEventId {
    VmFault = 1,
    ThermalThrottle = 2,
    GpuPreReset = 3,
    GpuPostReset = 4,
    MigrateStart = 5,
    MigrateEnd = 6,
    PageFaultStart = 7,
    PageFaultEnd = 8,
    QueueEviction = 9,
    QueueRestore = 10,
    UnmapFromGpu = 11,
    ProcessStart = 12,
    ProcessEnd = 13,
    /// Not an event: the mask bit that asks for every process's events (needs CAP_SYS_ADMIN);
    /// without it a reader sees only its own process's events.
    AllProcess = 64,
}

impl SmiEventId {
    /// Every event that is sent (not [`SmiEventId::AllProcess`]).
    pub const EVENTS: [SmiEventId; 13] = [
        SmiEventId::VmFault,
        SmiEventId::ThermalThrottle,
        SmiEventId::GpuPreReset,
        SmiEventId::GpuPostReset,
        SmiEventId::MigrateStart,
        SmiEventId::MigrateEnd,
        SmiEventId::PageFaultStart,
        SmiEventId::PageFaultEnd,
        SmiEventId::QueueEviction,
        SmiEventId::QueueRestore,
        SmiEventId::UnmapFromGpu,
        SmiEventId::ProcessStart,
        SmiEventId::ProcessEnd,
    ];

    pub fn from_raw(id: u32) -> Option<SmiEventId> {
        if id == SmiEventId::AllProcess as u32 {
            return Some(SmiEventId::AllProcess);
        }
        SmiEventId::EVENTS.into_iter().find(|e| *e as u32 == id)
    }

    /// The kernel's name, `KFD_SMI_EVENT_<NAME>`, as errors quote it.
    pub fn name(self) -> &'static str {
        match self {
            SmiEventId::VmFault => "VMFAULT",
            SmiEventId::ThermalThrottle => "THERMAL_THROTTLE",
            SmiEventId::GpuPreReset => "GPU_PRE_RESET",
            SmiEventId::GpuPostReset => "GPU_POST_RESET",
            SmiEventId::MigrateStart => "MIGRATE_START",
            SmiEventId::MigrateEnd => "MIGRATE_END",
            SmiEventId::PageFaultStart => "PAGE_FAULT_START",
            SmiEventId::PageFaultEnd => "PAGE_FAULT_END",
            SmiEventId::QueueEviction => "QUEUE_EVICTION",
            SmiEventId::QueueRestore => "QUEUE_RESTORE",
            SmiEventId::UnmapFromGpu => "UNMAP_FROM_GPU",
            SmiEventId::ProcessStart => "PROCESS_START",
            SmiEventId::ProcessEnd => "PROCESS_END",
            SmiEventId::AllProcess => "ALL_PROCESS",
        }
    }

    /// This event's bit, `KFD_SMI_EVENT_MASK_FROM_INDEX(id)`.
    pub fn mask(self) -> u64 {
        event_mask(self as u32)
    }
}

/// `KFD_SMI_EVENT_MASK_FROM_INDEX(i)`, `1ULL << (i - 1)`; 0 for indices the macro does not
/// define (0, above 64) instead of the C shift's undefined behaviour.
pub const fn event_mask(index: u32) -> u64 {
    if index == 0 || index > 64 {
        0
    } else {
        1u64 << (index - 1)
    }
}

/// The mask to write for `events`, as the 8 bytes `write()` takes (native endian, as
/// `kfd_smi_ev_write()` copies a `uint64_t`).
pub fn mask_bytes(events: &[SmiEventId]) -> [u8; 8] {
    events.iter().fold(0u64, |m, e| m | e.mask()).to_ne_bytes()
}

/// The events a migration case asks for: the migrations, the faults that cause them, and the
/// queue evictions and resets that explain a missing one.
pub const MIGRATION_EVENTS: [SmiEventId; 9] = [
    SmiEventId::MigrateStart,
    SmiEventId::MigrateEnd,
    SmiEventId::PageFaultStart,
    SmiEventId::PageFaultEnd,
    SmiEventId::QueueEviction,
    SmiEventId::QueueRestore,
    SmiEventId::UnmapFromGpu,
    SmiEventId::GpuPreReset,
    SmiEventId::GpuPostReset,
];

// --- triggers ------------------------------------------------------------------------------------

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

// --- events --------------------------------------------------------------------------------------

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
const QUOTE_MAX: usize = 120;

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

// --- the byte stream -----------------------------------------------------------------------------

/// Turns the bytes of successive `read()`s into events, keeping an event cut at the end of one
/// read until the next read completes it.
#[derive(Debug, Default)]
pub struct SmiStream {
    partial: Vec<u8>,
    /// Inside a line that grew past [`KFD_SMI_FIFO_SIZE`]: drop bytes up to the next newline.
    discarding: bool,
}

impl SmiStream {
    pub fn new() -> SmiStream {
        SmiStream::default()
    }

    /// The events completed by `chunk`, in order, each parsed or refused. Empty lines are
    /// skipped: the kernel writes none, and they carry nothing.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Result<SmiEvent, SmiError>> {
        let mut out = Vec::new();
        let mut rest = chunk;
        loop {
            let (segment, complete) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            if !self.discarding {
                self.partial.extend_from_slice(segment);
                if self.partial.len() > KFD_SMI_FIFO_SIZE {
                    let start = String::from_utf8_lossy(&self.partial[..64]).into_owned();
                    out.push(Err(SmiError::Overlong {
                        start: text::quote(&start, QUOTE_MAX),
                    }));
                    self.partial.clear();
                    self.discarding = true;
                }
            }
            if !complete {
                break;
            }
            rest = &rest[segment.len() + 1..];
            if self.discarding {
                self.discarding = false;
                continue;
            }
            let line = std::mem::take(&mut self.partial);
            if !line.is_empty() {
                out.push(parse_line(&String::from_utf8_lossy(&line)));
            }
        }
        out
    }

    /// Bytes held back, waiting for the rest of their event.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// Ends the stream: an event still incomplete is an error (the fd was closed, or the
    /// kernel's message buffer cut it before its newline).
    pub fn finish(&mut self) -> Option<SmiError> {
        self.discarding = false;
        if self.partial.is_empty() {
            return None;
        }
        let text = String::from_utf8_lossy(&std::mem::take(&mut self.partial)).into_owned();
        Some(SmiError::Unterminated {
            text: text::quote(&text, QUOTE_MAX),
        })
    }
}

// --- migration evidence --------------------------------------------------------------------------

/// Where a case's allocations lie in the process's address space, so that KFD's absolute page
/// numbers become pages of an allocation.
#[derive(Clone, Debug, Default)]
pub struct AddressMap {
    bufs: Vec<Mapped>,
}

#[derive(Clone, Copy, Debug)]
struct Mapped {
    buf: u32,
    addr: u64,
    len: u64,
}

impl AddressMap {
    pub fn new() -> AddressMap {
        AddressMap::default()
    }

    /// Allocation `buf` is `len` bytes at virtual address `addr`; replaces an earlier entry.
    pub fn insert(&mut self, buf: u32, addr: u64, len: u64) {
        self.remove(buf);
        self.bufs.push(Mapped { buf, addr, len });
    }

    pub fn remove(&mut self, buf: u32) {
        self.bufs.retain(|m| m.buf != buf);
    }

    /// The pages of each allocation that the absolute pages `start_page .. start_page + npages`
    /// cover, clipped to the allocation (an allocation need not be page aligned: a kernel page
    /// then covers parts of two of its pages, and both count).
    pub fn locate(&self, start_page: u64, npages: u64) -> Vec<(u32, u64, u64)> {
        let start = start_page.saturating_mul(PAGE_SIZE);
        let end = start_page.saturating_add(npages).saturating_mul(PAGE_SIZE);
        let mut out = Vec::new();
        for m in &self.bufs {
            let lo = start.max(m.addr);
            let hi = end.min(m.addr.saturating_add(m.len));
            if lo >= hi {
                continue;
            }
            let first = (lo - m.addr) / PAGE_SIZE;
            let last = (hi - m.addr).div_ceil(PAGE_SIZE);
            out.push((m.buf, first, last - first));
        }
        out.sort_by_key(|&(buf, first, _)| (buf, first));
        out
    }
}

/// A migration event that cannot be evidence about this device.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error(
        "SMI migration of pages {start_page:#x}+{npages:#x}: location gpu id {gpu_id:#x} is \
         neither system memory (0) nor this device ({ours:#x}); VRAM-to-VRAM is out of scope"
    )]
    ForeignGpu {
        start_page: u64,
        npages: u64,
        gpu_id: u32,
        ours: u32,
    },
    #[error(
        "SMI migration of pages {start_page:#x}+{npages:#x}: trigger {value} is not one of \
         KFD_MIGRATE_TRIGGERS (prefetch 0, GPU fault 1, CPU fault 2, TTM eviction 3)"
    )]
    UnknownTrigger {
        start_page: u64,
        npages: u64,
        value: i32,
    },
    #[error(
        "SMI migration of pages {start_page:#x}+{npages:#x} from {from:#x} to {to:#x} failed \
         with error {error}"
    )]
    Failed {
        start_page: u64,
        npages: u64,
        from: u32,
        to: u32,
        error: i32,
    },
}

/// The identity of a migration, shared by its MIGRATE_START and MIGRATE_END.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MigrationKey {
    pid: u32,
    start_page: u64,
    npages: u64,
    from: u32,
    to: u32,
    trigger: MigrateTrigger,
}

/// Starts remembered without their end; beyond this the oldest are forgotten, since an end can
/// be lost when the reader's fifo is full.
const OPEN_MAX: usize = 4096;

/// Pairs MIGRATE_START with MIGRATE_END and turns each finished migration on this device into
/// [`MigrationEvent`]s, one per allocation it touched.
#[derive(Debug)]
pub struct MigrationCollector {
    gpu_id: u32,
    open: VecDeque<(MigrationKey, u64)>,
}

impl MigrationCollector {
    /// `gpu_id`: this device's KFD gpu id (the topology's `gpu_id`), what SMI calls its VRAM.
    pub fn new(gpu_id: u32) -> MigrationCollector {
        MigrationCollector {
            gpu_id,
            open: VecDeque::new(),
        }
    }

    /// Feeds one event. A finished migration gives its events, stamped with the start's time
    /// when the start was seen (the end's otherwise); every other event gives none. Migrations
    /// over no known allocation give none either: they belong to memory the case did not make.
    pub fn observe(
        &mut self,
        event: &SmiEvent,
        map: &AddressMap,
    ) -> Result<Vec<MigrationEvent>, ConvertError> {
        match *event {
            SmiEvent::MigrateStart {
                ns,
                pid,
                start_page,
                npages,
                from,
                to,
                trigger,
                ..
            } => {
                if self.open.len() == OPEN_MAX {
                    self.open.pop_front();
                }
                let key = MigrationKey {
                    pid,
                    start_page,
                    npages,
                    from,
                    to,
                    trigger,
                };
                self.open.push_back((key, ns));
                Ok(Vec::new())
            }
            SmiEvent::MigrateEnd {
                ns,
                pid,
                start_page,
                npages,
                from,
                to,
                trigger,
                error,
            } => {
                let key = MigrationKey {
                    pid,
                    start_page,
                    npages,
                    from,
                    to,
                    trigger,
                };
                let started = match self.open.iter().position(|(k, _)| *k == key) {
                    Some(i) => self.open.remove(i).map(|(_, ns)| ns),
                    None => None,
                };
                if let Some(error) = error.filter(|&e| e != 0) {
                    return Err(ConvertError::Failed {
                        start_page,
                        npages,
                        from,
                        to,
                        error,
                    });
                }
                let from = self.location(from, start_page, npages)?;
                let to = self.location(to, start_page, npages)?;
                let Some(trigger) = trigger.to_trigger() else {
                    return Err(ConvertError::UnknownTrigger {
                        start_page,
                        npages,
                        value: trigger.raw(),
                    });
                };
                let at_ns = started.unwrap_or(ns);
                Ok(map
                    .locate(start_page, npages)
                    .into_iter()
                    .map(|(buf, first_page, pages)| MigrationEvent {
                        buf,
                        first_page,
                        pages,
                        from,
                        to,
                        trigger,
                        at_ns,
                    })
                    .collect())
            }
            _ => Ok(Vec::new()),
        }
    }

    fn location(
        &self,
        gpu_id: u32,
        start_page: u64,
        npages: u64,
    ) -> Result<Location, ConvertError> {
        if gpu_id == 0 {
            Ok(Location::System)
        } else if gpu_id == self.gpu_id {
            Ok(Location::Vram)
        } else {
            Err(ConvertError::ForeignGpu {
                start_page,
                npages,
                gpu_id,
                ours: self.gpu_id,
            })
        }
    }
}

#[cfg(test)]
mod tests;
