//! Moving pages between system memory and VRAM, as drm_pagemap does: migrate-to-devmem of a
//! range's system pages into one new devmem allocation, migrate-to-ram of a devmem
//! allocation's pages, and TTM eviction of whole SVM devmem allocations (synchronous, least
//! recently used first, each with the throwaway system resource of the series' open issue).
//! Every migration really copies the page words and is charged to the clock.

use std::collections::BTreeMap;
use std::ops::Range;

use super::clock::Meter;
use super::faults::{Direction, Fired, Growth, Kind};
use super::gpu::Gpu;
use super::object::{Mapper, ObjId, NO_DEVMEM};
use super::vram::Devmem;
use crate::device::{Location, Trigger, PAGE_SIZE, WORDS_PER_PAGE};

/// `only` for [`Gpu::migrate_to_ram`] of every page the devmem allocation holds.
pub(super) const WHOLE_ALLOCATION: Range<u64> = 0..u64::MAX;

/// The bit the `corrupt-migrate-to-ram` break flips.
const CORRUPT_BIT: u32 = 1 << 8;

impl Gpu {
    /// Migrates the system pages among `pages` of `object` into one new devmem allocation
    /// (pages already in VRAM stay in theirs: migrate_vma only collects system pages). Returns
    /// how many pages moved, or `None` when no VRAM could be found even after eviction.
    pub(super) fn migrate_to_devmem(
        &mut self,
        who: Mapper,
        object: ObjId,
        pages: Range<u64>,
        trigger: Trigger,
        meter: &mut Meter,
    ) -> Option<u64> {
        let moving: Vec<u64> = pages
            .filter(|&p| !self.objects[object].in_vram(p))
            .collect();
        let (Some(&first), Some(&last)) = (moving.first(), moving.last()) else {
            return Some(0);
        };
        let n = moving.len() as u64;
        let fired = self.faults.on_migration(Direction::ToVram, trigger);
        if fired.any(Kind::Drop) {
            return Some(0);
        }
        if fired.any(Kind::Phantom) {
            self.record(who, &moving, Location::Vram, trigger, meter, &fired);
            return Some(0);
        }
        if !self.make_room(n, meter) {
            return None;
        }
        let frames = self.vram.take_frames(n)?;
        let id = self.vram.add(Devmem {
            object,
            owner: who,
            first_page: first,
            end_page: last + 1,
            frames: frames.clone(),
            resident: n,
            pinned: false,
            last_use: 0,
        });
        let copies = !(trigger == Trigger::GpuFault && self.breaks.zero_on_first_touch);
        let misplace = trigger == Trigger::Prefetch && self.breaks.misplace_prefetch;
        let (objects, vram) = (&mut self.objects, &mut self.vram);
        let obj = &mut objects[object];
        let count = moving.len();
        for (i, (&page, &frame)) in moving.iter().zip(&frames).enumerate() {
            let mut source = match moving.get(1) {
                Some(&next) if misplace && i == 0 => next,
                _ => page,
            };
            if let Some(rule) = fired
                .get(Kind::WrongPage)
                .filter(|r| r.pages.picks(i, count))
            {
                source = moving[offset_index(i, rule.offset, count)];
            }
            if copies {
                vram.frame_mut(frame).copy_from_slice(obj.sys.page(source));
            }
            if let Some(rule) = fired.get(Kind::Corrupt).filter(|r| r.pages.picks(i, count)) {
                corrupt_words(vram.frame_mut(frame), rule.words, self.seed);
            }
            obj.devmem[page as usize] = id;
            obj.frame[page as usize] = frame;
        }
        self.record(who, &moving, Location::Vram, trigger, meter, &fired);
        Some(n)
    }

    /// Migrates the pages of devmem allocation `devmem` that lie in `only` back to system
    /// memory (all of them for [`WHOLE_ALLOCATION`]), invalidating every GPU mapping of them; the
    /// allocation's frames go back once its last page has left. Returns the pages moved.
    pub(super) fn migrate_to_ram(
        &mut self,
        devmem: u32,
        only: Range<u64>,
        who: Mapper,
        trigger: Trigger,
        meter: &mut Meter,
    ) -> u64 {
        let d = &self.vram.devmem[devmem];
        let object = d.object;
        let span = d.first_page.max(only.start)..d.end_page.min(only.end);
        let moving: Vec<u64> = span
            .filter(|&p| self.objects[object].devmem[p as usize] == devmem)
            .collect();
        if moving.is_empty() {
            return 0;
        }
        let cpu_fault = trigger == Trigger::CpuFault;
        let fired = self.faults.on_migration(Direction::ToRam, trigger);
        let skips_copy = (cpu_fault && self.breaks.stale_migrate_to_ram)
            || fired.any(Kind::Stale)
            || fired.any(Kind::EvictWithoutCopy);
        let copies = !skips_copy;
        let corrupt = cpu_fault && self.breaks.corrupt_migrate_to_ram;
        let lose = trigger == Trigger::Eviction && self.breaks.lose_page_on_eviction;
        let corrupt_word = (self.seed % WORDS_PER_PAGE) as usize;
        let (objects, vram, processes) = (&mut self.objects, &self.vram, &mut self.processes);
        let obj = &mut objects[object];
        let count = moving.len();
        let sources: Vec<u32> = (0..count)
            .map(|i| {
                match fired
                    .get(Kind::WrongPage)
                    .filter(|r| r.pages.picks(i, count))
                {
                    Some(rule) => obj.frame[moving[offset_index(i, rule.offset, count)] as usize],
                    None => obj.frame[moving[i] as usize],
                }
            })
            .collect();
        for (i, &page) in moving.iter().enumerate() {
            let words = obj.sys.page_mut(page);
            if copies {
                words.copy_from_slice(vram.frame(sources[i]));
            }
            if let Some(rule) = fired.get(Kind::Corrupt).filter(|r| r.pages.picks(i, count)) {
                corrupt_words(words, rule.words, self.seed);
            }
            if fired.picks(Kind::ZeroOnEviction, i, count) {
                words.fill(0);
            }
            if i == 0 && corrupt {
                words[corrupt_word] ^= CORRUPT_BIT;
            }
            if i == 0 && lose {
                words.fill(0);
            }
            obj.devmem[page as usize] = NO_DEVMEM;
            obj.frame[page as usize] = NO_DEVMEM;
        }
        // The mmu notifier: every GPU mapping of these pages goes.
        for m in &obj.mappers {
            if let Some(alloc) = processes[m.pid].space.allocs.get_mut(&m.buf) {
                for &page in &moving {
                    alloc.gpu_mapped[page as usize] = false;
                }
            }
        }
        self.vram.release_pages(devmem, moving.len() as u64);
        self.record(who, &moving, Location::System, trigger, meter, &fired);
        moving.len() as u64
    }

    /// One event per contiguous run of `pages`, then the migration's cost on the clock.
    fn record(
        &mut self,
        who: Mapper,
        pages: &[u64],
        to: Location,
        trigger: Trigger,
        meter: &mut Meter,
        fired: &Fired,
    ) {
        for (first, count) in runs(pages) {
            self.emit(who, first, count, to, trigger);
        }
        let bytes = pages.len() as u64 * PAGE_SIZE;
        let mut ns = self.clock.migration_ns(bytes);
        if let Some(rule) = fired.get(Kind::Slow) {
            ns *= match rule.growth {
                Growth::Linear => rule.factor,
                Growth::Quadratic => {
                    rule.factor * (1.0 + meter.migrated() as f64 / QUADRATIC_BYTES as f64)
                }
            };
        }
        self.clock.charge(meter, ns);
        meter.add_migrated(bytes);
    }

    /// Makes `frames` frames free, evicting SVM allocations when the policy lets TTM do so.
    /// Evicts nothing when even evicting every SVM allocation would not be enough.
    pub(super) fn make_room(&mut self, frames: u64, meter: &mut Meter) -> bool {
        if self.vram.disabled {
            return false;
        }
        if self.vram.free_frames() >= frames {
            return true;
        }
        if !self.policy.evict_lru_whole
            || self.vram.free_frames() + self.vram.evictable_frames() < frames
        {
            return false;
        }
        while self.vram.free_frames() < frames {
            match self.vram.victim(self.breaks.evict_mru) {
                Some(victim) => self.ttm_evict(victim, meter),
                None => return false,
            }
        }
        true
    }

    /// TTM empties VRAM of SVM allocations: every one evicted whole, least recently used first.
    pub(super) fn evict_all(&mut self) -> std::time::Duration {
        let mut meter = self.clock.meter();
        // Each eviction takes its allocation out of the LRU; the bound only guards the loop.
        for _ in 0..=self.vram.devmem.len() {
            match self.vram.victim(false) {
                Some(victim) => self.ttm_evict(victim, &mut meter),
                None => break,
            }
        }
        meter.duration()
    }

    /// TTM evicts one SVM devmem allocation whole, synchronously (amdgpu_bo_move ->
    /// drm_pagemap_evict_to_ram), accounting the transient system resource TTM takes for it.
    fn ttm_evict(&mut self, victim: u32, meter: &mut Meter) {
        let d = &self.vram.devmem[victim];
        let (owner, size) = (d.owner, d.bytes());
        let moved = self.migrate_to_ram(victim, WHOLE_ALLOCATION, owner, Trigger::Eviction, meter);
        let transient = self.policy.eviction_transient_system;
        self.vram
            .account_eviction(moved * PAGE_SIZE, size, transient);
    }

    /// The pages' data is gone (munmap, free): device-private ones leave their devmem
    /// allocations without a copy.
    pub(super) fn drop_pages(&mut self, object: ObjId, pages: Range<u64>) {
        let mut left: BTreeMap<u32, u64> = BTreeMap::new();
        let obj = &mut self.objects[object];
        for page in pages {
            let devmem = std::mem::replace(&mut obj.devmem[page as usize], NO_DEVMEM);
            if devmem != NO_DEVMEM {
                obj.frame[page as usize] = NO_DEVMEM;
                *left.entry(devmem).or_default() += 1;
            }
        }
        for (devmem, pages) in left {
            self.vram.release_pages(devmem, pages);
        }
    }
}

/// A `slow` rule with quadratic growth adds the migration's own cost once per this many bytes
/// its operation has already migrated: summed over an operation, time grows with its size
/// squared.
const QUADRATIC_BYTES: u64 = 2 << 20;

/// The index `offset` pages away from `i` among `count`, wrapping around.
fn offset_index(i: usize, offset: i64, count: usize) -> usize {
    (i as i64 + offset).rem_euclid(count as i64) as usize
}

/// Flips bit 8 of `words` words of `page`, starting at a seed-chosen word.
fn corrupt_words(page: &mut [u32], words: u32, seed: u64) {
    let start = (seed % WORDS_PER_PAGE) as usize;
    for k in 0..(words as usize).min(page.len()) {
        let w = (start + k) % page.len();
        page[w] ^= CORRUPT_BIT;
    }
}

/// `(first, count)` for each run of consecutive page numbers.
fn runs(pages: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &p in pages {
        match out.last_mut() {
            Some((first, count)) if *first + *count == p => *count += 1,
            _ => out.push((p, 1)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_split_at_gaps() {
        assert_eq!(runs(&[1, 2, 3, 7, 9, 10]), vec![(1, 3), (7, 1), (9, 2)]);
        assert!(runs(&[]).is_empty());
    }
}

#[cfg(test)]
mod device_tests {
    use rstest::rstest;

    use crate::device::sim::testutil::*;
    use crate::device::{AllocKind, Device, EvictionTransient, Location, Span, Trigger};

    /// VRAM (16 MiB) filled by two 8 MiB allocations on the GPU, then the first 2 MiB of `a`
    /// used again, so that LRU order is a1 a2 a3 b0 b1 b2 b3 a0.
    fn full_vram(dev: &mut dyn Device) -> (crate::device::Buf, crate::device::Buf) {
        let a = dev.alloc(AllocKind::Managed, 8 * MIB).unwrap();
        let b = dev.alloc(AllocKind::Managed, 8 * MIB).unwrap();
        gpu_fill(dev, a, a.all(), 1);
        gpu_fill(dev, b, b.all(), 1);
        gpu_fill(dev, a, Span::pages(0, 512), 2);
        assert_eq!(dev.vram_used(), Some(16 * MIB));
        events(dev);
        (a, b)
    }

    #[rstest]
    #[case::with_transient(true, 2 * MIB)]
    #[case::without_transient(false, 0)]
    fn ttm_evicts_the_least_recently_used_allocation_whole(
        #[case] transient: bool,
        #[case] taken: u64,
    ) {
        let mut dev = with_policy(|p| p.eviction_transient_system = transient);
        let (a, _) = full_vram(&mut dev);
        let c = dev.alloc(AllocKind::Managed, 2 * MIB).unwrap();
        gpu_fill(&mut dev, c, c.all(), 1);
        let ev = events(&mut dev);
        assert_eq!(moves(&ev, Trigger::Eviction), vec![(512, 512)]);
        assert!(ev
            .iter()
            .filter(|e| e.trigger == Trigger::Eviction)
            .all(|e| e.buf == a.id));
        assert_eq!(count(&mut dev, c, Location::Vram), 512);
        let res = residency(&mut dev, a);
        assert!(res[512..1024].iter().all(|l| *l == Location::System));
        assert!(res[..512]
            .iter()
            .chain(&res[1024..])
            .all(|l| *l == Location::Vram));
        assert_eq!(
            dev.eviction_transient(),
            Some(EvictionTransient {
                evictions: 1,
                bytes_evicted: 2 * MIB,
                transient_bytes_total: taken,
                transient_bytes_peak: taken,
                pool_pages: None,
                transient_pages: None,
            })
        );
        cpu_check(&mut dev, a, Span::pages(0, 512), 2);
        cpu_check(&mut dev, a, Span::pages(512, 1536), 1);
    }

    /// Where a GPU access never reaches TTM's LRU, the allocation migrated first goes first,
    /// though the GPU used it last.
    #[test]
    fn in_migration_order_the_first_migrated_goes_however_recently_used() {
        let mut dev =
            with_policy(|p| p.eviction_order = crate::model::profile::EvictionOrder::Migration);
        let (a, _) = full_vram(&mut dev);
        let c = dev.alloc(AllocKind::Managed, 2 * MIB).unwrap();
        gpu_fill(&mut dev, c, c.all(), 1);
        let ev = events(&mut dev);
        assert_eq!(moves(&ev, Trigger::Eviction), vec![(0, 512)]);
        let res = residency(&mut dev, a);
        assert!(res[..512].iter().all(|l| *l == Location::System));
        assert!(res[512..].iter().all(|l| *l == Location::Vram));
        cpu_check(&mut dev, a, Span::pages(0, 512), 2);
    }

    #[test]
    fn without_lru_eviction_a_fault_that_finds_no_vram_maps_in_place() {
        let mut dev = with_policy(|p| p.evict_lru_whole = false);
        full_vram(&mut dev);
        let c = dev.alloc(AllocKind::Managed, 2 * MIB).unwrap();
        gpu_fill(&mut dev, c, c.all(), 1);
        assert!(events(&mut dev).is_empty());
        assert_eq!(count(&mut dev, c, Location::System), 512);
        assert_eq!(dev.eviction_transient().unwrap().evictions, 0);
    }

    #[test]
    fn the_transient_peak_is_the_largest_single_eviction() {
        let mut dev = device();
        let small = dev.alloc(AllocKind::Managed, 64 << 10).unwrap();
        let big = dev.alloc(AllocKind::Managed, 2 * MIB).unwrap();
        gpu_fill(&mut dev, small, small.all(), 1);
        gpu_fill(&mut dev, big, big.all(), 1);
        let _pressure = dev.alloc(AllocKind::DeviceBuffer, 16 * MIB).unwrap();
        let t = dev.eviction_transient().unwrap();
        assert_eq!(t.evictions, 2);
        assert_eq!(t.bytes_evicted, 2 * MIB + (64 << 10));
        assert_eq!(t.transient_bytes_total, 2 * MIB + (64 << 10));
        assert_eq!(t.transient_bytes_peak, 2 * MIB);
    }
}
