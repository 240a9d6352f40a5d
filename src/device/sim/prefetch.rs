//! Prefetch: every page of the span ends at the target. To VRAM, ranges form by the chunk rule
//! bounded by the span (as the prefetch's GPU VA bounds drm_gpusvm's chunk), each migrates
//! as one devmem allocation and is mapped; pages already there neither move nor emit an
//! event. To system, the span's VRAM pages migrate back. Shared and file mappings do not move.

use std::ops::Range;
use std::time::Duration;

use super::clock::Meter;
use super::gpu::Gpu;
use super::object::Pid;
use super::object::{Mapper, NO_DEVMEM};
use super::space::check_bounds;
use crate::device::{Buf, DeviceError, Location, Result, Span, Trigger, PAGE_SIZE};

impl Gpu {
    pub(super) fn prefetch(
        &mut self,
        pid: Pid,
        buf: Buf,
        span: Span,
        to: Location,
    ) -> Result<Duration> {
        self.processes[pid].used_gpu = true;
        let alloc = self.svm_alloc(pid, buf.id, "prefetch")?;
        check_bounds(&alloc.buf, span)?;
        let pages = span.page_range();
        if let Some(page) = alloc.first_unmapped(pages.clone()) {
            return Err(DeviceError::GpuMemoryFault {
                buf: buf.id,
                offset: (page * PAGE_SIZE).max(span.offset),
                reason: "prefetch of an unmapped page".to_string(),
            });
        }
        let (kind, object) = (alloc.buf.kind, alloc.object);
        if !self.migratable(kind) {
            return Ok(Duration::ZERO);
        }
        let mut meter = self.clock.meter();
        let helper = self.objects[object].helper;
        if self.breaks.ignore_prefetch
            || self.faults.on(super::faults::Kind::IgnorePrefetch, helper)
        {
            let obj = &self.objects[object];
            let stray = pages.filter(|&p| obj.location(p) != to).count() as u64;
            if stray > 0 {
                let ns = self.clock.migration_ns(stray * PAGE_SIZE);
                self.clock.charge(&mut meter, ns);
            }
            return Ok(meter.duration());
        }
        match to {
            Location::Vram => self.prefetch_to_vram(pid, buf.id, pages, &mut meter)?,
            Location::System => self.prefetch_to_ram(pid, buf.id, object, pages, &mut meter),
        }
        Ok(meter.duration())
    }

    fn prefetch_to_vram(
        &mut self,
        pid: Pid,
        buf: u32,
        pages: Range<u64>,
        meter: &mut Meter,
    ) -> Result<()> {
        let who = Mapper { pid, buf };
        let mut page = pages.start;
        while page < pages.end {
            let chunk_sizes = &self.policy.chunk_sizes;
            let alloc = self.processes[pid].space.get_mut(buf)?;
            let object = alloc.object;
            if self.objects[object].in_vram(page) {
                page += 1;
                continue;
            }
            let range = match alloc.range_containing(page) {
                Some(range) => range,
                None => alloc.form_range(page, pages.clone(), chunk_sizes),
            };
            let part = range.start.max(pages.start)..range.end.min(pages.end);
            // No VRAM even after eviction: these pages stay in system memory.
            if self
                .migrate_to_devmem(who, object, part.clone(), Trigger::Prefetch, meter)
                .is_some()
            {
                self.processes[pid]
                    .space
                    .get_mut(buf)?
                    .set_gpu_mapped(part.clone(), true);
            }
            page = part.end;
        }
        Ok(())
    }

    fn prefetch_to_ram(
        &mut self,
        pid: Pid,
        buf: u32,
        object: u32,
        pages: Range<u64>,
        meter: &mut Meter,
    ) {
        let who = Mapper { pid, buf };
        // Each devmem allocation once: one a `phantom` rule left in VRAM is not asked again.
        let mut seen = std::collections::BTreeSet::new();
        for page in pages.clone() {
            let devmem = self.objects[object].devmem[page as usize];
            if devmem != NO_DEVMEM && seen.insert(devmem) {
                self.migrate_to_ram(devmem, pages.clone(), who, Trigger::Prefetch, meter);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rstest::rstest;

    use crate::device::sim::testutil::*;
    use crate::device::{AllocKind, Device, DeviceError, Location, Span, Trigger, PAGE_SIZE};

    /// What the cost model says the prefetch of these migrations takes.
    fn cost_of(migrations: &[(u64, u64)]) -> Duration {
        let c = cost();
        let ns: f64 = migrations
            .iter()
            .map(|(_, pages)| {
                c.migration_fixed_us * 1e3 + (pages * PAGE_SIZE) as f64 / c.migrate_gbps
            })
            .sum();
        Duration::from_nanos(ns.round() as u64)
    }

    #[rstest]
    #[case::full(Span::new(0, 4 * MIB), vec![(0, 512), (512, 512)])]
    #[case::partial_4k(Span::pages(1, 2), vec![(1, 1), (2, 1)])]
    #[case::partial_64k(Span::pages(16, 32), vec![(16, 16), (32, 16)])]
    #[case::across_2m(Span::pages(510, 4), vec![(510, 1), (511, 1), (512, 1), (513, 1)])]
    #[case::unaligned_bytes(Span::new(100, 5000), vec![(0, 1), (1, 1)])]
    fn prefetch_to_vram_migrates_exactly_the_span(
        #[case] span: Span,
        #[case] want: Vec<(u64, u64)>,
    ) {
        let mut dev = device();
        let buf = dev.alloc(AllocKind::Managed, 4 * MIB).unwrap();
        cpu_fill(&mut dev, buf, buf.all(), 1);
        let took = dev.prefetch(buf, span, Location::Vram).unwrap();
        assert_eq!(moves(&events(&mut dev), Trigger::Prefetch), want);
        assert_eq!(took, cost_of(&want));
        let res = residency(&mut dev, buf);
        for (page, loc) in res.iter().enumerate() {
            let inside = span.page_range().contains(&(page as u64));
            assert_eq!(*loc == Location::Vram, inside, "page {page}");
        }
        // Prefetched ranges are mapped: the GPU takes no fault on them.
        let run = gpu_fill(&mut dev, buf, Span::pages(span.page_range().start, 1), 2);
        assert_eq!(run.faults, Some(0));
        cpu_check(&mut dev, buf, Span::pages(span.page_range().start, 1), 2);
        cpu_check(&mut dev, buf, Span::pages(600, 400), 1);
    }

    #[test]
    fn pages_already_there_neither_move_nor_emit() {
        let mut dev = device();
        let buf = dev.alloc(AllocKind::Managed, 2 * MIB).unwrap();
        dev.prefetch(buf, buf.all(), Location::Vram).unwrap();
        events(&mut dev);
        assert_eq!(
            dev.prefetch(buf, buf.all(), Location::Vram).unwrap(),
            Duration::ZERO
        );
        assert!(events(&mut dev).is_empty());
        let untouched = dev.alloc(AllocKind::Managed, 4096).unwrap();
        assert_eq!(
            dev.prefetch(untouched, untouched.all(), Location::System)
                .unwrap(),
            Duration::ZERO
        );
        assert!(events(&mut dev).is_empty());
    }

    #[test]
    fn prefetch_to_system_brings_back_only_the_span() {
        let mut dev = device();
        let buf = dev.alloc(AllocKind::Managed, 2 * MIB).unwrap();
        gpu_fill(&mut dev, buf, buf.all(), 1);
        events(&mut dev);
        dev.prefetch(buf, Span::pages(100, 100), Location::System)
            .unwrap();
        assert_eq!(
            moves(&events(&mut dev), Trigger::Prefetch),
            vec![(100, 100)]
        );
        assert_eq!(count(&mut dev, buf, Location::System), 100);
        cpu_check(&mut dev, buf, Span::pages(100, 100), 1);
        // Those pages lost their GPU mapping: a GPU touch faults them back into VRAM.
        assert_eq!(
            gpu_fill(&mut dev, buf, Span::pages(150, 1), 2).faults,
            Some(1)
        );
    }

    #[rstest]
    #[case::shared(AllocKind::Shared)]
    #[case::file(AllocKind::File)]
    fn shared_and_file_mappings_never_move(#[case] kind: AllocKind) {
        let mut dev = device();
        let buf = dev.alloc(kind, 2 * MIB).unwrap();
        cpu_fill(&mut dev, buf, buf.all(), 1);
        dev.prefetch(buf, buf.all(), Location::Vram).unwrap();
        assert_eq!(count(&mut dev, buf, Location::System), 512);
        assert!(events(&mut dev).is_empty());
        cpu_check(&mut dev, buf, buf.all(), 1);
    }

    #[test]
    fn prefetch_refuses_device_buffers_and_unmapped_pages() {
        let mut dev = device();
        let vram = dev.alloc(AllocKind::DeviceBuffer, 4096).unwrap();
        assert!(matches!(
            dev.prefetch(vram, vram.all(), Location::System),
            Err(DeviceError::Unsupported { .. })
        ));
        let buf = dev.alloc(AllocKind::Managed, 16 * 4096).unwrap();
        dev.unmap(buf, Span::pages(4, 1)).unwrap();
        assert!(matches!(
            dev.prefetch(buf, buf.all(), Location::Vram),
            Err(DeviceError::GpuMemoryFault { offset: 0x4000, .. })
        ));
    }
}
