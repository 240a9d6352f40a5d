//! The fault paths and their policy. A GPU access to a system page with no GPU mapping faults:
//! the range holding it (found, or formed by the chunk rule) migrates to VRAM, or is mapped in
//! place when the page prefers system memory, the mapping cannot migrate, XNACK is off or no
//! VRAM can be found. A CPU access to a device-private page faults and migrates it back to RAM:
//! the whole devmem allocation holding it, as drm_pagemap's migrate_to_ram does.

use super::clock::Meter;
use super::exec::{Home, Progress, HANG};
use super::faults::Kind;
use super::gpu::Gpu;
use super::migrate::WHOLE_ALLOCATION;
use super::object::Pid;
use super::object::{Mapper, ObjId};
use crate::device::{AllocKind, DeviceError, Location, Result, Trigger};
use crate::model::profile::EvictionOrder;

/// The outcome of the GPU reaching one page.
#[derive(Clone, Copy, Debug)]
pub(super) struct Reach {
    pub object: ObjId,
    pub home: Home,
    /// This access faulted and migrated the page's range to VRAM.
    pub migrated: bool,
}

impl Gpu {
    /// The GPU accesses `page` of allocation `buf` at byte `byte`, faulting per the policy.
    pub(super) fn gpu_reach(
        &mut self,
        pid: Pid,
        buf: u32,
        page: u64,
        write: bool,
        byte: u64,
        progress: &mut Progress,
    ) -> Result<Reach> {
        let readonly_writes_ok = self.breaks.readonly_gpu_write_allowed;
        let alloc = self.processes[pid].space.get(buf)?;
        alloc.check_gpu(page, write, byte, readonly_writes_ok)?;
        let object = alloc.object;
        let mut migrated = false;
        if !self.objects[object].in_vram(page) && !alloc.gpu_mapped[page as usize] {
            progress.faults += 1;
            migrated = self.gpu_fault(pid, buf, page, &mut progress.meter)?;
        }
        let obj = &self.objects[object];
        let home = if obj.in_vram(page) {
            let devmem = obj.devmem[page as usize];
            let frame = obj.frame[page as usize];
            if self.policy.eviction_order == EvictionOrder::Access {
                self.vram.touch(devmem);
            }
            Home::Vram(frame)
        } else {
            Home::System
        };
        Ok(Reach {
            object,
            home,
            migrated,
        })
    }

    /// One GPU page fault: the range holding `page` migrates to VRAM or is mapped in place.
    /// Returns whether pages migrated.
    fn gpu_fault(&mut self, pid: Pid, buf: u32, page: u64, meter: &mut Meter) -> Result<bool> {
        let ns = self.clock.gpu_fault_ns();
        self.clock.charge(meter, ns);
        let helper = self.objects[self.processes[pid].space.get(buf)?.object].helper;
        if self.faults.on(Kind::Hang, helper) {
            self.clock.charge(meter, HANG.as_nanos() as f64);
            return Err(DeviceError::Timeout(HANG));
        }
        let chunk_sizes = &self.policy.chunk_sizes;
        let alloc = self.processes[pid].space.get_mut(buf)?;
        let range = match alloc.range_containing(page) {
            Some(range) => range,
            None => alloc.form_range(page, 0..alloc.pages(), chunk_sizes),
        };
        let (kind, preferred, object) =
            (alloc.buf.kind, alloc.preferred[page as usize], alloc.object);
        let mut moved = 0;
        if self.fault_migrates(kind, preferred, helper) {
            let who = Mapper { pid, buf };
            // No VRAM even after eviction: the range is mapped in place instead.
            moved = self
                .migrate_to_devmem(who, object, range.clone(), Trigger::GpuFault, meter)
                .unwrap_or(0);
        }
        self.processes[pid]
            .space
            .get_mut(buf)?
            .set_gpu_mapped(range, true);
        Ok(moved > 0)
    }

    /// Whether a GPU fault on a page of `kind` with `preferred` location migrates its range.
    /// Preferred VRAM behaves like no preference.
    /// `helper`: the allocation is the suite's own (fault plan rules leave it alone).
    fn fault_migrates(
        &mut self,
        kind: AllocKind,
        preferred: Option<Location>,
        helper: bool,
    ) -> bool {
        let prefers_system = preferred == Some(Location::System)
            && self.policy.preferred_system_maps_in_place
            && !self.breaks.ignore_preferred_system
            && !self.faults.on(Kind::IgnorePreferred, helper);
        self.xnack && self.policy.gpu_fault_migrates && self.migratable(kind) && !prefers_system
    }

    /// The CPU accesses `page` of allocation `buf`: a device-private page faults and migrates
    /// back to RAM, with its whole devmem allocation when the policy says so.
    pub(super) fn cpu_reach(
        &mut self,
        pid: Pid,
        buf: u32,
        page: u64,
        meter: &mut Meter,
    ) -> Result<ObjId> {
        let object = self.processes[pid].space.get(buf)?.object;
        if self.objects[object].in_vram(page) {
            let devmem = self.objects[object].devmem[page as usize];
            let ns = self.clock.cpu_fault_ns();
            self.clock.charge(meter, ns);
            let only = if self.policy.cpu_fault_migrates_whole_allocation {
                WHOLE_ALLOCATION
            } else {
                page..page + 1
            };
            let who = Mapper { pid, buf };
            self.migrate_to_ram(devmem, only, who, Trigger::CpuFault, meter);
        }
        Ok(object)
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use crate::device::sim::testutil::*;
    use crate::device::sim::Breaks;
    use crate::device::{Advice, AllocKind, Device, Location, Span, Trigger};

    /// What differs from the reference setup in one row of the fault matrix.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Setup {
        Plain,
        PreferSystem,
        PreferVram,
        XnackOff,
        PolicyNoFaultMigration,
        PolicyPreferSystemMigrates,
        PolicySharedMigrates,
    }

    #[rstest]
    #[case::managed(AllocKind::Managed, Setup::Plain, Location::Vram)]
    #[case::malloc(AllocKind::Malloc, Setup::Plain, Location::Vram)]
    #[case::mmap(AllocKind::Mmap, Setup::Plain, Location::Vram)]
    #[case::preferred_system(AllocKind::Managed, Setup::PreferSystem, Location::System)]
    #[case::preferred_vram_is_like_unset(AllocKind::Managed, Setup::PreferVram, Location::Vram)]
    #[case::shared(AllocKind::Shared, Setup::Plain, Location::System)]
    #[case::file(AllocKind::File, Setup::Plain, Location::System)]
    #[case::xnack_off(AllocKind::Managed, Setup::XnackOff, Location::System)]
    #[case::policy_no_fault_migration(
        AllocKind::Managed,
        Setup::PolicyNoFaultMigration,
        Location::System
    )]
    #[case::policy_preferred_system_migrates(
        AllocKind::Managed,
        Setup::PolicyPreferSystemMigrates,
        Location::Vram
    )]
    #[case::policy_shared_migrates(AllocKind::Shared, Setup::PolicySharedMigrates, Location::Vram)]
    fn gpu_fault_migrates_unless_the_page_is_mapped_in_place(
        #[case] kind: AllocKind,
        #[case] setup: Setup,
        #[case] want: Location,
    ) {
        let mut dev = device_with(
            |p| match setup {
                Setup::XnackOff => p.xnack = false,
                Setup::PolicyNoFaultMigration => p.policy.gpu_fault_migrates = false,
                Setup::PolicyPreferSystemMigrates => {
                    p.policy.preferred_system_maps_in_place = false
                }
                Setup::PolicySharedMigrates => p.policy.shared_and_file_migrate = true,
                _ => {}
            },
            Breaks::default(),
        );
        let buf = dev.alloc(kind, 2 * MIB).unwrap();
        cpu_fill(&mut dev, buf, buf.all(), 1);
        let preferred = match setup {
            Setup::PreferSystem | Setup::PolicyPreferSystemMigrates => Some(Location::System),
            Setup::PreferVram => Some(Location::Vram),
            _ => None,
        };
        if let Some(loc) = preferred {
            dev.advise(buf, buf.all(), Advice::PreferredLocation(loc))
                .unwrap();
        }
        let run = gpu_fill(&mut dev, buf, buf.all(), 2);
        assert!(run.faults.unwrap() >= 1, "a first GPU touch faults");
        assert_eq!(count(&mut dev, buf, want), buf.pages() as usize);
        let migrated: u64 = moves(&events(&mut dev), Trigger::GpuFault)
            .iter()
            .map(|m| m.1)
            .sum();
        assert_eq!(migrated, if want == Location::Vram { 512 } else { 0 });
        // Mapped now, in VRAM or in place: the next launch takes no fault.
        assert_eq!(gpu_fill(&mut dev, buf, buf.all(), 3).faults, Some(0));
        cpu_check(&mut dev, buf, buf.all(), 3);
    }

    #[rstest]
    #[case::managed_one_2m_range(AllocKind::Managed, 4 * MIB, 2)]
    #[case::malloc_4k_ranges(AllocKind::Malloc, 64 << 10, 16)]
    fn each_range_faults_once(#[case] kind: AllocKind, #[case] len: u64, #[case] faults: u64) {
        let mut dev = device();
        let buf = dev.alloc(kind, len).unwrap();
        assert_eq!(gpu_fill(&mut dev, buf, buf.all(), 1).faults, Some(faults));
        assert_eq!(
            moves(&events(&mut dev), Trigger::GpuFault).len() as u64,
            faults
        );
    }

    #[test]
    fn no_vram_even_after_eviction_maps_the_range_in_place() {
        let mut dev = device();
        let _pinned = dev.alloc(AllocKind::DeviceBuffer, 16 * MIB).unwrap();
        let buf = dev.alloc(AllocKind::Managed, 2 * MIB).unwrap();
        cpu_fill(&mut dev, buf, buf.all(), 1);
        assert_eq!(gpu_fill(&mut dev, buf, buf.all(), 2).faults, Some(1));
        assert_eq!(count(&mut dev, buf, Location::System), 512);
        assert!(events(&mut dev).is_empty());
        cpu_check(&mut dev, buf, buf.all(), 2);
    }

    #[test]
    fn preferred_location_is_per_page() {
        let mut dev = device();
        let buf = dev.alloc(AllocKind::Managed, 4 * MIB).unwrap();
        let second = Span::pages(512, 512);
        dev.advise(buf, second, Advice::PreferredLocation(Location::System))
            .unwrap();
        gpu_fill(&mut dev, buf, buf.all(), 1);
        let res = residency(&mut dev, buf);
        assert!(res[..512].iter().all(|l| *l == Location::Vram));
        assert!(res[512..].iter().all(|l| *l == Location::System));
        dev.advise(buf, second, Advice::UnsetPreferredLocation)
            .unwrap();
        // Still mapped in place: unsetting advice does not move pages by itself.
        assert_eq!(gpu_fill(&mut dev, buf, buf.all(), 2).faults, Some(0));
    }
}
