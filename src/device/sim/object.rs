//! The memory behind an allocation: its system backing and, per page, whether it is
//! device-private and in which devmem allocation and VRAM frame. An object is what fork shares
//! between processes for shared mappings, so residency is per object, not per process.

use super::store::Store;
use crate::device::Location;

pub(super) type ObjId = u32;

/// A process id on the simulated GPU: its index in the process table, never reused.
pub(super) type Pid = usize;

/// A page's devmem allocation when it is in system memory.
pub(super) const NO_DEVMEM: u32 = u32::MAX;

/// One process's allocation mapping an object: whose events a migration is and which buffer
/// id they carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Mapper {
    pub pid: Pid,
    pub buf: u32,
}

#[derive(Debug)]
pub(super) struct Object {
    /// The system pages. A page in VRAM keeps its old system copy, which is what a
    /// migrate-to-ram that copies nothing would expose.
    pub sys: Store,
    /// Per page: the devmem allocation holding it, or [`NO_DEVMEM`].
    pub devmem: Vec<u32>,
    /// Per page: its VRAM frame while it is in a devmem allocation.
    pub frame: Vec<u32>,
    /// The allocations that map this object (more than one after fork of a shared mapping).
    pub mappers: Vec<Mapper>,
    /// The suite's own machinery, not data under test (`Device::mark_helper`): fault plan
    /// rules leave it alone unless they ask for helpers.
    pub helper: bool,
    /// Some page of it has migrated to VRAM (or a migration there was attempted) before.
    pub migrated: bool,
}

impl Object {
    pub fn new(pages: u64, mapper: Mapper) -> Object {
        Object {
            sys: Store::new(pages),
            devmem: vec![NO_DEVMEM; pages as usize],
            frame: vec![NO_DEVMEM; pages as usize],
            mappers: vec![mapper],
            helper: false,
            migrated: false,
        }
    }

    pub fn in_vram(&self, page: u64) -> bool {
        self.devmem[page as usize] != NO_DEVMEM
    }

    pub fn location(&self, page: u64) -> Location {
        if self.in_vram(page) {
            Location::Vram
        } else {
            Location::System
        }
    }
}
