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
//!
//! [`MigrationEvent`]: crate::device::MigrationEvent

mod abi;
mod collect;
mod event;
mod stream;

pub use abi::{
    event_mask, iowr, mask_bytes, KfdIoctlSmiEventsArgs, SmiEventId, AMDKFD_IOCTL_BASE,
    AMDKFD_IOC_SMI_EVENTS, AMDKFD_IOC_SMI_EVENTS_NR, KFD_SMI_EVENT_MSG_SIZE, KFD_SMI_FIFO_SIZE,
    MIGRATION_EVENTS,
};
pub use collect::{AddressMap, ConvertError, MigrationCollector};
pub use event::{
    parse_line, MigrateTrigger, QueueEvictionTrigger, SmiError, SmiEvent, UnmapTrigger,
};
pub use stream::SmiStream;

// What tests.rs names through `use super::*`: the files' items kept within this module, and
// the crate names the code above them used to import here.
#[cfg(test)]
use crate::device::{Location, MigrationEvent, Trigger};

#[cfg(test)]
use collect::OPEN_MAX;

#[cfg(test)]
mod tests;
