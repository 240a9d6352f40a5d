//! The `AMDKFD_IOC_SMI_EVENTS` ioctl and the event mask written to its fd, as
//! include/uapi/linux/kfd_ioctl.h defines them.

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
