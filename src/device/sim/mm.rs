//! A process's memory-management calls: alloc, free, munmap of part of an allocation (which
//! destroys the ranges it cuts and evicts what they held), mremap, mprotect, advise, and the
//! residency query.

use std::collections::BTreeSet;

use super::gpu::Gpu;
use super::migrate::WHOLE_ALLOCATION;
use super::object::Pid;
use super::object::{Mapper, Object, NO_DEVMEM};
use super::space::{check_bounds, Alloc, HINT_ACCESSED_BY, HINT_READ_MOSTLY};
use super::vram::Devmem;
use crate::device::{
    Advice, AllocKind, Buf, DeviceError, Location, Protection, Result, Span, Trigger, PAGE_SIZE,
};

/// The largest allocation the sim makes: it keeps a few bytes of state per page whether the
/// page is touched or not, so a runaway length fails cleanly instead of exhausting the host.
const MAX_ALLOC_BYTES: u64 = 256 << 30;

impl Gpu {
    pub(super) fn alloc(&mut self, pid: Pid, kind: AllocKind, len: u64) -> Result<Buf> {
        if len == 0 {
            return Err(DeviceError::Backend(format!(
                "a {kind} allocation of 0 bytes: the length must be at least one byte"
            )));
        }
        if len > MAX_ALLOC_BYTES {
            return Err(DeviceError::OutOfMemory {
                what: "system",
                bytes: len,
            });
        }
        let pages = len.div_ceil(PAGE_SIZE);
        let frames = match kind {
            AllocKind::DeviceBuffer => Some(self.device_buffer_frames(len)?),
            _ => None,
        };
        let (buf, va) = self.processes[pid].space.place(kind, len);
        let mapper = Mapper { pid, buf: buf.id };
        let object = self.objects.insert(Object::new(pages, mapper));
        if let Some(frames) = frames {
            self.pin(object, mapper, frames);
        }
        let alloc = Alloc::new(buf, va, object);
        self.processes[pid].space.allocs.insert(buf.id, alloc);
        Ok(buf)
    }

    /// A device buffer takes its VRAM at allocation, TTM evicting SVM allocations to make room;
    /// out of memory when even evicting all of them is not enough.
    fn device_buffer_frames(&mut self, len: u64) -> Result<Vec<u32>> {
        let pages = len.div_ceil(PAGE_SIZE);
        let mut meter = self.clock.meter();
        let room = self.make_room(pages, &mut meter);
        let frames = if room {
            self.vram.take_frames(pages)
        } else {
            None
        };
        frames.ok_or(DeviceError::OutOfMemory {
            what: "VRAM",
            bytes: len,
        })
    }

    /// A device buffer's pages live in one pinned devmem allocation, never evicted: TTM
    /// evicts only SVM BOs here, and the suite uses device buffers as the pressure.
    fn pin(&mut self, object: u32, owner: Mapper, frames: Vec<u32>) {
        let pages = frames.len() as u64;
        let id = self.vram.add(Devmem {
            object,
            owner,
            first_page: 0,
            end_page: pages,
            frames: frames.clone(),
            resident: pages,
            pinned: true,
            last_use: 0,
        });
        let obj = &mut self.objects[object];
        obj.devmem.fill(id);
        obj.frame = frames;
    }

    pub(super) fn free(&mut self, pid: Pid, buf: Buf) -> Result<()> {
        let object = self.processes[pid].space.get(buf.id)?.object;
        let helper = self.objects[object].helper;
        self.release(pid, buf.id)?;
        self.faults.on_free(helper);
        Ok(())
    }

    /// Removes an allocation; its object goes when no process maps it any more.
    pub(super) fn release(&mut self, pid: Pid, id: u32) -> Result<()> {
        let alloc = self.processes[pid]
            .space
            .allocs
            .remove(&id)
            .ok_or(DeviceError::NoSuchBuffer(id))?;
        let obj = &mut self.objects[alloc.object];
        obj.mappers.retain(|m| *m != Mapper { pid, buf: id });
        if obj.mappers.is_empty() {
            self.drop_pages(alloc.object, 0..alloc.pages());
            self.objects.remove(alloc.object);
        }
        Ok(())
    }

    /// munmap of `span`: its pages become unmapped, every range overlapping it is destroyed
    /// (drm_gpusvm does not split a range), and the devmem allocations those ranges and pages
    /// used are evicted to RAM when `partial_unmap_evicts`.
    pub(super) fn unmap(&mut self, pid: Pid, buf: Buf, span: Span) -> Result<()> {
        let alloc = self.svm_alloc(pid, buf.id, "unmap")?;
        check_bounds(&alloc.buf, span)?;
        if span.offset % PAGE_SIZE != 0 {
            return Err(DeviceError::Backend(format!(
                "unmap of {span} in allocation {}: munmap needs a page-aligned start",
                buf.id
            )));
        }
        let pages = span.page_range();
        let object = alloc.object;
        let alloc = self.processes[pid].space.get_mut(buf.id)?;
        let destroyed = alloc.destroy_ranges_overlapping(pages.clone());
        alloc.unmap(pages.clone());
        let obj = &self.objects[object];
        let affected: BTreeSet<u32> = destroyed
            .into_iter()
            .chain(std::iter::once(pages.clone()))
            .flatten()
            .map(|p| obj.devmem[p as usize])
            .filter(|&d| d != NO_DEVMEM)
            .collect();
        // Another process (fork of a shared mapping) still maps the pages: they live on.
        if obj.mappers.len() == 1 {
            self.drop_pages(object, pages);
        }
        let who = Mapper { pid, buf: buf.id };
        let mut meter = self.clock.meter();
        for devmem in affected {
            if self.vram.devmem.get(devmem).is_none() {
                continue;
            }
            if self.breaks.partial_unmap_keeps_range {
                self.zero_devmem(devmem);
            } else if self.policy.partial_unmap_evicts {
                self.migrate_to_ram(devmem, WHOLE_ALLOCATION, who, Trigger::Eviction, &mut meter);
            }
        }
        Ok(())
    }

    /// The `partial-unmap-keeps-range` break: the pages stay in VRAM but their data is gone.
    fn zero_devmem(&mut self, devmem: u32) {
        let d = &self.vram.devmem[devmem];
        let obj = &self.objects[d.object];
        let frames: Vec<u32> = (d.first_page..d.end_page)
            .filter(|&p| obj.devmem[p as usize] == devmem)
            .map(|p| obj.frame[p as usize])
            .collect();
        for frame in frames {
            self.vram.frame_mut(frame).fill(0);
        }
    }

    /// mremap to a new address of the same alignment class: every range is destroyed (the
    /// GPU maps nothing until it faults again); contents and residency move with the pages.
    pub(super) fn remap(&mut self, pid: Pid, buf: Buf) -> Result<()> {
        let alloc = self.svm_alloc(pid, buf.id, "remap")?;
        let (kind, len) = (alloc.buf.kind, alloc.buf.len);
        let space = &mut self.processes[pid].space;
        let va = space.new_va(kind, len);
        let alloc = space.get_mut(buf.id)?;
        alloc.va = va;
        alloc.destroy_all_ranges();
        Ok(())
    }

    /// mprotect: the mmu notifier drops the GPU mappings; the next GPU access faults again and
    /// is checked against the new protection.
    pub(super) fn protect(&mut self, pid: Pid, buf: Buf, prot: Protection) -> Result<()> {
        self.svm_alloc(pid, buf.id, "protect")?;
        let alloc = self.processes[pid].space.get_mut(buf.id)?;
        alloc.prot = prot;
        alloc.gpu_mapped.fill(false);
        Ok(())
    }

    /// Records advice per page. Preferred location steers GPU faults; accessed-by and
    /// read-mostly are recorded and change nothing: with one GPU there is no other device to
    /// map for, and the series does not duplicate read-mostly pages.
    pub(super) fn advise(&mut self, pid: Pid, buf: Buf, span: Span, advice: Advice) -> Result<()> {
        self.svm_alloc(pid, buf.id, "advise")?;
        let alloc = self.processes[pid].space.get_mut(buf.id)?;
        check_bounds(&alloc.buf, span)?;
        let pages = span.page_range();
        match advice {
            Advice::PreferredLocation(loc) => alloc.advise(pages, Some(Some(loc)), 0),
            Advice::UnsetPreferredLocation => alloc.advise(pages, Some(None), 0),
            Advice::AccessedBy => alloc.advise(pages, None, HINT_ACCESSED_BY),
            Advice::ReadMostly => alloc.advise(pages, None, HINT_READ_MOSTLY),
        }
        Ok(())
    }

    pub(super) fn residency(&self, pid: Pid, buf: Buf, span: Span) -> Result<Vec<Location>> {
        let alloc = self.processes[pid].space.get(buf.id)?;
        check_bounds(&alloc.buf, span)?;
        let obj = &self.objects[alloc.object];
        let unmapped = |p| {
            DeviceError::Backend(format!(
                "residency of {span} in allocation {}: page {p} is unmapped",
                buf.id
            ))
        };
        span.page_range()
            .map(|p| {
                if alloc.is_mapped(p) {
                    Ok(obj.location(p))
                } else {
                    Err(unmapped(p))
                }
            })
            .collect()
    }

    /// The allocation `id` when it is SVM memory (has a CPU mapping); device buffers have
    /// none, so `op` is unsupported for them.
    pub(super) fn svm_alloc(&self, pid: Pid, id: u32, op: &'static str) -> Result<&Alloc> {
        let alloc = self.processes[pid].space.get(id)?;
        match alloc.buf.kind {
            AllocKind::DeviceBuffer => Err(DeviceError::Unsupported {
                op,
                kind: AllocKind::DeviceBuffer,
            }),
            _ => Ok(alloc),
        }
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use crate::device::kernels::Launch;
    use crate::device::sim::testutil::*;
    use crate::device::{
        Advice, AllocKind, Device, DeviceError, Location, Protection, Span, Trigger, PAGE_SIZE,
    };

    #[test]
    fn device_buffers_take_vram_evicting_svm_allocations_and_are_never_evicted() {
        let mut dev = device();
        let a = dev.alloc(AllocKind::Managed, 8 * MIB).unwrap();
        gpu_fill(&mut dev, a, a.all(), 1);
        events(&mut dev);
        let pinned = dev.alloc(AllocKind::DeviceBuffer, 12 * MIB).unwrap();
        assert_eq!(dev.vram_used(), Some(16 * MIB));
        assert_eq!(
            moves(&events(&mut dev), Trigger::Eviction),
            vec![(0, 512), (512, 512)]
        );
        assert_eq!(count(&mut dev, a, Location::System), 1024);
        assert_eq!(count(&mut dev, pinned, Location::Vram), 3072);
        // The next SVM fault can only evict SVM allocations: the device buffer stays.
        let b = dev.alloc(AllocKind::Managed, 8 * MIB).unwrap();
        gpu_fill(&mut dev, b, b.all(), 1);
        assert_eq!(count(&mut dev, pinned, Location::Vram), 3072);
        assert_eq!(count(&mut dev, b, Location::Vram), 1024);
        cpu_check(&mut dev, a, a.all(), 1);
        dev.free(pinned).unwrap();
        assert_eq!(dev.vram_used(), Some(4 * MIB));
    }

    #[test]
    fn a_device_buffer_that_cannot_fit_is_out_of_memory_and_evicts_nothing() {
        let mut dev = device();
        let a = dev.alloc(AllocKind::Managed, 8 * MIB).unwrap();
        gpu_fill(&mut dev, a, a.all(), 1);
        let _half = dev.alloc(AllocKind::DeviceBuffer, 8 * MIB).unwrap();
        assert_eq!(
            dev.alloc(AllocKind::DeviceBuffer, 8 * MIB + 1),
            Err(DeviceError::OutOfMemory {
                what: "VRAM",
                bytes: 8 * MIB + 1
            })
        );
        assert_eq!(dev.eviction_transient().unwrap().evictions, 0);
        assert!(
            dev.alloc(AllocKind::DeviceBuffer, 8 * MIB).is_ok(),
            "after evicting all of `a`"
        );
        assert_eq!(count(&mut dev, a, Location::System), 2048);
    }

    /// One 2 MiB range in VRAM, pages 100..110 unmapped.
    fn cut(evicts: bool) -> (super::super::SimDevice, crate::device::Buf) {
        let mut dev = with_policy(|p| p.partial_unmap_evicts = evicts);
        let buf = dev.alloc(AllocKind::Managed, 2 * MIB).unwrap();
        gpu_fill(&mut dev, buf, buf.all(), 1);
        events(&mut dev);
        dev.unmap(buf, Span::pages(100, 10)).unwrap();
        (dev, buf)
    }

    #[rstest]
    #[case::evicts(true, Location::System, vec![(0, 100), (110, 402)])]
    #[case::keeps(false, Location::Vram, vec![])]
    fn partial_unmap_destroys_the_range_and_evicts_the_rest(
        #[case] evicts: bool,
        #[case] rest: Location,
        #[case] want: Vec<(u64, u64)>,
    ) {
        let (mut dev, buf) = cut(evicts);
        assert_eq!(moves(&events(&mut dev), Trigger::Eviction), want);
        let kept = [Span::pages(0, 100), Span::pages(110, 402)];
        for span in kept {
            let res = residency_of(&mut dev, buf, span);
            assert!(res.iter().all(|l| *l == rest));
        }
        for span in kept {
            cpu_check(&mut dev, buf, span, 1);
        }
        assert!(dev.residency(buf, Span::pages(99, 2)).unwrap().is_err());
        // Eviction through the unmap is not TTM's: no transient resource.
        assert_eq!(dev.eviction_transient().unwrap().evictions, 0);
        assert_eq!(dev.vram_used(), Some(0));
    }

    #[test]
    fn unmapped_pages_fault_on_either_side() {
        let (mut dev, buf) = cut(true);
        let mut w = [0u32; 1];
        assert_eq!(
            dev.cpu_read(buf, Span::new(105 * PAGE_SIZE, 4), &mut w),
            Err(DeviceError::Segfault {
                buf: buf.id,
                offset: 105 * PAGE_SIZE
            })
        );
        let before = cpu_words(&mut dev, buf, Span::pages(0, 100));
        let err = dev
            .launch(&Launch::Fill {
                buf,
                span: buf.all(),
                seed: SEED,
                generation: 2,
            })
            .unwrap_err();
        assert!(
            matches!(err, DeviceError::GpuMemoryFault { offset, .. } if offset == 100 * PAGE_SIZE)
        );
        assert_eq!(
            cpu_words(&mut dev, buf, Span::pages(0, 100)),
            before,
            "nothing written"
        );
        // The pages that stay mapped are ordinary memory again and form new ranges: six 64 KiB
        // chunks, then 4 KiB pages up to the hole (no chunk may cover an unmapped page).
        assert_eq!(
            gpu_fill(&mut dev, buf, Span::pages(0, 100), 2).faults,
            Some(6 + 4)
        );
        assert_eq!(
            count_in(&mut dev, buf, Span::pages(0, 100), Location::Vram),
            100
        );
    }

    #[test]
    fn unmap_needs_a_page_aligned_start() {
        let mut dev = device();
        let buf = dev.alloc(AllocKind::Managed, 2 * PAGE_SIZE).unwrap();
        assert!(matches!(
            dev.unmap(buf, Span::new(4, 4096)),
            Err(DeviceError::Backend(_))
        ));
    }

    #[test]
    fn remap_moves_the_address_keeps_contents_and_residency_and_destroys_ranges() {
        let mut dev = device();
        let buf = dev.alloc(AllocKind::Malloc, 2 * MIB).unwrap();
        gpu_fill(&mut dev, buf, buf.all(), 1);
        let va_of = |dev: &super::super::SimDevice| {
            dev.lock().processes[dev.pid].space.get(buf.id).unwrap().va
        };
        let before = va_of(&dev);
        dev.remap(buf).unwrap();
        let after = va_of(&dev);
        assert_ne!(before, after);
        assert_eq!(
            before % (2 * MIB),
            after % (2 * MIB),
            "same alignment class"
        );
        assert_eq!(count(&mut dev, buf, Location::Vram), 512);
        {
            let gpu = dev.lock();
            let alloc = gpu.processes[dev.pid].space.get(buf.id).unwrap();
            assert!(alloc.ranges().is_empty());
        }
        // VRAM pages need no GPU fault; moved back, they fault and form ranges anew.
        assert_eq!(gpu_fill(&mut dev, buf, buf.all(), 2).faults, Some(0));
        dev.prefetch(buf, buf.all(), Location::System).unwrap();
        assert_eq!(gpu_fill(&mut dev, buf, buf.all(), 3).faults, Some(47));
        cpu_check(&mut dev, buf, buf.all(), 3);
    }

    #[test]
    fn read_only_mappings_refuse_writes_from_either_side_and_allow_reads() {
        let mut dev = device();
        let buf = dev.alloc(AllocKind::Managed, 64 << 10).unwrap();
        cpu_fill(&mut dev, buf, buf.all(), 1);
        dev.protect(buf, Protection::ReadOnly).unwrap();
        let span = Span::new(3 * PAGE_SIZE + 64, 2 * PAGE_SIZE);
        let err = dev
            .launch(&Launch::Fill {
                buf,
                span,
                seed: SEED,
                generation: 2,
            })
            .unwrap_err();
        assert!(matches!(err, DeviceError::GpuMemoryFault { offset, .. } if offset == span.offset));
        assert_eq!(
            dev.cpu_write(buf, Span::new(8, 4), &[0]),
            Err(DeviceError::Segfault {
                buf: buf.id,
                offset: 8
            })
        );
        let result = dev.alloc(AllocKind::Managed, 16).unwrap();
        dev.cpu_write(result, result.all(), &[0, 0, u32::MAX, u32::MAX])
            .unwrap();
        dev.launch(&Launch::Verify {
            buf,
            span: buf.all(),
            seed: SEED,
            generation: 1,
            result,
        })
        .unwrap();
        assert_eq!(
            cpu_words(&mut dev, result, result.all()),
            vec![0, 0, u32::MAX, u32::MAX]
        );
        cpu_check(&mut dev, buf, buf.all(), 1);
        dev.protect(buf, Protection::ReadWrite).unwrap();
        gpu_fill(&mut dev, buf, span, 2);
    }

    #[test]
    fn accessed_by_and_read_mostly_are_recorded_and_change_nothing() {
        let mut dev = device();
        let buf = dev.alloc(AllocKind::Managed, 2 * MIB).unwrap();
        dev.advise(buf, buf.all(), Advice::AccessedBy).unwrap();
        dev.advise(buf, buf.all(), Advice::ReadMostly).unwrap();
        gpu_fill(&mut dev, buf, buf.all(), 1);
        assert_eq!(count(&mut dev, buf, Location::Vram), 512);
        let gpu = dev.lock();
        let alloc = gpu.processes[dev.pid].space.get(buf.id).unwrap();
        assert!(alloc.hints().iter().all(|h| *h == 3));
    }

    #[test]
    fn free_gives_vram_back_and_forgets_the_id() {
        let mut dev = device();
        let buf = dev.alloc(AllocKind::Managed, 2 * MIB).unwrap();
        gpu_fill(&mut dev, buf, buf.all(), 1);
        assert_eq!(dev.vram_used(), Some(2 * MIB));
        dev.free(buf).unwrap();
        assert_eq!(dev.vram_used(), Some(0));
        assert_eq!(dev.free(buf), Err(DeviceError::NoSuchBuffer(buf.id)));
        assert!(matches!(
            dev.alloc(AllocKind::Managed, 0),
            Err(DeviceError::Backend(_))
        ));
        assert!(matches!(
            dev.alloc(AllocKind::Malloc, u64::MAX),
            Err(DeviceError::OutOfMemory { .. })
        ));
        let buf = dev.alloc(AllocKind::Managed, 4096).unwrap();
        let absurd = Span::new(u64::MAX - 1, 4);
        assert!(matches!(
            dev.prefetch(buf, absurd, Location::Vram),
            Err(DeviceError::OutOfBounds { .. })
        ));
    }
}
