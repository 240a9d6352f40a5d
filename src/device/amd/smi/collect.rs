//! Migration evidence: MIGRATE_START and MIGRATE_END paired ([`MigrationCollector`]) and mapped
//! onto a case's allocations ([`AddressMap`]) as the crate's [`MigrationEvent`]s.

use std::collections::VecDeque;

use crate::device::{Location, MigrationEvent, PAGE_SIZE};

use super::event::{MigrateTrigger, SmiEvent};

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
pub(super) struct MigrationKey {
    pid: u32,
    start_page: u64,
    npages: u64,
    from: u32,
    to: u32,
    trigger: MigrateTrigger,
}

/// Starts remembered without their end; beyond this the oldest are forgotten, since an end can
/// be lost when the reader's fifo is full.
pub(super) const OPEN_MAX: usize = 4096;

/// Pairs MIGRATE_START with MIGRATE_END and turns each finished migration on this device into
/// [`MigrationEvent`]s, one per allocation it touched.
#[derive(Debug)]
pub struct MigrationCollector {
    gpu_id: u32,
    pub(super) open: VecDeque<(MigrationKey, u64)>,
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
