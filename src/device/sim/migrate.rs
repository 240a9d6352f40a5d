//! Moving pages between system memory and VRAM, as drm_pagemap does: migrate-to-devmem of a
//! range's system pages into one new devmem allocation, migrate-to-ram of a devmem
//! allocation's pages, and TTM eviction of whole SVM devmem allocations (synchronous, least
//! recently used first, each with the throwaway system resource of the series' open issue).
//! Every migration really copies the page words and is charged to the clock.

use std::collections::BTreeMap;
use std::ops::Range;

use super::clock::Meter;
use super::faults::{Direction, Fired, Kind, Migration};
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
        let obj = &self.objects[object];
        let moving: Vec<u64> = pages.filter(|&p| !obj.in_vram(p)).collect();
        let (Some(&first), Some(&last)) = (moving.first(), moving.last()) else {
            return Some(0);
        };
        let n = moving.len() as u64;
        let m = Migration {
            direction: Direction::ToVram,
            trigger,
            pages: &moving,
            alloc_pages: obj.devmem.len() as u64,
            helper: obj.helper,
            first: !obj.migrated,
        };
        let fired = self.faults.on_migration(&m);
        self.objects[object].migrated = true;
        match fired.moves_nothing() {
            Some(Kind::Phantom) => {
                self.record(who, &moving, Location::Vram, trigger, meter, &fired);
                return Some(0);
            }
            Some(_) => return Some(0),
            None => {}
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
        let sources = self.wrong_sources(object, &fired, &m);
        let seed = self.seed;
        let (objects, vram) = (&mut self.objects, &mut self.vram);
        let obj = &mut objects[object];
        for (i, (&page, &frame)) in moving.iter().zip(&frames).enumerate() {
            let source = match moving.get(1) {
                Some(&next) if misplace && i == 0 => next,
                _ => page,
            };
            if copies && !fired.skips_copy(i, &m) {
                vram.frame_mut(frame).copy_from_slice(obj.sys.page(source));
            }
            break_page(vram.frame_mut(frame), &fired, i, &m, &sources, seed);
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
        let obj = &self.objects[object];
        let moving: Vec<u64> = span.filter(|&p| obj.devmem[p as usize] == devmem).collect();
        if moving.is_empty() {
            return 0;
        }
        let m = Migration {
            direction: Direction::ToRam,
            trigger,
            pages: &moving,
            alloc_pages: obj.devmem.len() as u64,
            helper: obj.helper,
            first: false,
        };
        let fired = self.faults.on_migration(&m);
        let moves_nothing = fired.moves_nothing();
        if moves_nothing == Some(Kind::Phantom) {
            // Reported, yet the pages stay in VRAM. The access that asked is served from the
            // system page as it is (a kernel would fault again, forever), and TTM gives up
            // on an eviction that freed nothing: the sim never loops on it.
            self.record(who, &moving, Location::System, trigger, meter, &fired);
            return 0;
        }
        // `drop`: the pages come back without a copy and without a report.
        let dropped = moves_nothing == Some(Kind::Drop);
        let cpu_fault = trigger == Trigger::CpuFault;
        let stale_break = cpu_fault && self.breaks.stale_migrate_to_ram;
        let corrupt = cpu_fault && self.breaks.corrupt_migrate_to_ram;
        let lose = trigger == Trigger::Eviction && self.breaks.lose_page_on_eviction;
        let corrupt_word = (self.seed % WORDS_PER_PAGE) as usize;
        let sources = self.wrong_sources(object, &fired, &m);
        let seed = self.seed;
        let (objects, vram, processes) = (&mut self.objects, &self.vram, &mut self.processes);
        let obj = &mut objects[object];
        for (i, &page) in moving.iter().enumerate() {
            let frame = obj.frame[page as usize];
            let words = obj.sys.page_mut(page);
            if !(dropped || stale_break || fired.skips_copy(i, &m)) {
                words.copy_from_slice(vram.frame(frame));
            }
            break_page(words, &fired, i, &m, &sources, seed);
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
        if !dropped {
            self.record(who, &moving, Location::System, trigger, meter, &fired);
        }
        moving.len() as u64
    }

    /// The data each `wrong_page` source of `m` holds now, wherever it lives (VRAM or system
    /// memory), taken before the migration changes anything.
    fn wrong_sources(
        &self,
        object: ObjId,
        fired: &Fired,
        m: &Migration,
    ) -> BTreeMap<u64, Vec<u32>> {
        let obj = &self.objects[object];
        let mut sources = BTreeMap::new();
        for rule in fired.rules.iter().filter(|r| r.kind == Kind::WrongPage) {
            for i in 0..m.pages.len() {
                let Some(source) = rule.source(i, m).filter(|_| rule.picks(i, m)) else {
                    continue;
                };
                sources
                    .entry(source)
                    .or_insert_with(|| match obj.frame[source as usize] {
                        NO_DEVMEM => obj.sys.page(source).to_vec(),
                        frame => self.vram.frame(frame).to_vec(),
                    });
            }
        }
        sources
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
        let ns = self.clock.migration_ns(bytes) * fired.slowdown(meter.migrated(), QUADRATIC_BYTES);
        self.clock.charge_migration(meter, ns);
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
            let before = self.vram.free_frames();
            match self.vram.victim(self.breaks.evict_mru) {
                Some(victim) => self.ttm_evict(victim, meter),
                None => return false,
            }
            // An eviction that freed nothing (a `phantom` rule) would be chosen again forever.
            if self.vram.free_frames() == before {
                return false;
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

/// What the fired page rules do to page `i` of `m` once it is copied (or not), in plan order:
/// `wrong_page` puts its source's data (from `sources`) there, `corrupt` flips words after
/// those an earlier `corrupt` flipped, `zero_on_eviction` zeroes it.
fn break_page(
    words: &mut [u32],
    fired: &Fired,
    i: usize,
    m: &Migration,
    sources: &BTreeMap<u64, Vec<u32>>,
    seed: u64,
) {
    let mut flipped = 0;
    for rule in fired.on_page(i, m) {
        match rule.kind {
            Kind::WrongPage => {
                if let Some(data) = rule.source(i, m).and_then(|s| sources.get(&s)) {
                    words.copy_from_slice(data);
                }
            }
            Kind::Corrupt => {
                corrupt_words(words, rule.words, seed, flipped);
                flipped += rule.words as usize;
            }
            Kind::ZeroOnEviction => words.fill(0),
            _ => {}
        }
    }
}

/// Flips bit 8 of `words` words of `page`, starting `skip` words after a seed-chosen word.
fn corrupt_words(page: &mut [u32], words: u32, seed: u64, skip: usize) {
    let start = (seed % WORDS_PER_PAGE) as usize + skip;
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

/// Fault plan rules as migrations meet them: several of a kind, pages counted in the
/// allocation, drop, phantom and stale both ways, helpers.
#[cfg(test)]
mod fault_tests {
    use std::path::Path;

    use crate::device::sim::faults::Plan;
    use crate::device::sim::testutil::*;
    use crate::device::sim::SimDevice;
    use crate::device::{AllocKind, Buf, Device, Location, Span, Trigger, WORDS_PER_PAGE};

    fn plan(rules: &str) -> Plan {
        let text = format!("description: t\ncatches: [x]\nrules:\n{rules}");
        Plan::parse(&text, Path::new("t.yaml")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn faulty(rules: &str) -> SimDevice {
        let mut dev = device();
        dev.set_faults(plan(rules), SEED, None);
        dev
    }

    /// Generation `generation` of the pattern over page `page`.
    fn page_words(generation: u32, page: u64) -> Vec<u32> {
        let mut w = vec![0u32; WORDS_PER_PAGE as usize];
        pattern(generation).fill(page * WORDS_PER_PAGE, &mut w);
        w
    }

    /// The words of `buf` that do not hold generation `generation`, by index.
    fn bad_words(dev: &mut dyn Device, buf: Buf, generation: u32) -> Vec<u64> {
        let words = cpu_words(dev, buf, buf.all());
        let mut want = vec![0u32; words.len()];
        pattern(generation).fill(0, &mut want);
        (0..)
            .zip(words.iter().zip(&want))
            .filter(|(_, (got, want))| got != want)
            .map(|(i, _)| i)
            .collect()
    }

    /// `len` bytes written by the CPU with generation 1, then prefetched to VRAM.
    fn prefetched(dev: &mut dyn Device, len: u64) -> Buf {
        let buf = dev.alloc(AllocKind::Managed, len).unwrap();
        cpu_fill(dev, buf, buf.all(), 1);
        dev.prefetch(buf, buf.all(), Location::Vram).unwrap();
        buf
    }

    fn counts(dev: &mut dyn Device) -> Vec<(u64, u64)> {
        dev.injected()
            .iter()
            .map(|i| (i.matched, i.fired))
            .collect()
    }

    #[test]
    fn two_corrupt_rules_on_one_migration_both_flip() {
        let mut one = faulty("  - kind: corrupt\n    trigger: prefetch\n");
        let buf = prefetched(&mut one, 2 * MIB);
        assert_eq!(bad_words(&mut one, buf, 1).len(), 1);
        let mut two = faulty("  - kind: corrupt\n    trigger: prefetch\n  - kind: corrupt\n    trigger: prefetch\n    words: 2\n");
        let buf = prefetched(&mut two, 2 * MIB);
        let bad = bad_words(&mut two, buf, 1);
        assert_eq!(bad.len(), 3, "{bad:?}");
        assert!(
            bad.iter().all(|&w| w < WORDS_PER_PAGE),
            "all in the first page: {bad:?}"
        );
        assert_eq!(counts(&mut two), [(1, 1), (1, 1)]);
    }

    #[test]
    fn wrong_page_then_corrupt_both_land_on_the_page() {
        let mut dev = faulty(
            "  - kind: wrong_page\n    trigger: prefetch\n  - kind: corrupt\n    trigger: prefetch\n",
        );
        let buf = prefetched(&mut dev, 2 * MIB);
        let page0 = cpu_words(&mut dev, buf, Span::pages(0, 1));
        let differ = page0
            .iter()
            .zip(page_words(1, 1))
            .filter(|(a, b)| **a != *b)
            .count();
        assert_eq!(
            differ, 1,
            "page 0 holds page 1's data with one word flipped"
        );
    }

    #[test]
    fn two_slow_rules_multiply() {
        let took = |rules: &str| {
            let mut dev = faulty(rules);
            let buf = dev.alloc(AllocKind::Managed, 2 * MIB).unwrap();
            dev.prefetch(buf, buf.all(), Location::Vram).unwrap()
        };
        let six = took("  - kind: slow\n    factor: 6\n");
        assert_eq!(
            took("  - kind: slow\n    factor: 2\n  - kind: slow\n    factor: 3\n"),
            six
        );
        assert!(took("  - kind: slow\n    factor: 2\n") < six);
    }

    #[test]
    fn a_page_of_the_allocation_is_broken_in_whichever_migration_moves_it() {
        let mut dev =
            faulty("  - kind: corrupt\n    direction: to_vram\n    pages: page 600\n    of: allocation\n    nth: 1\n");
        let buf = prefetched(&mut dev, 4 * MIB);
        let bad = bad_words(&mut dev, buf, 1);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0] / WORDS_PER_PAGE, 600);
        // The migration of pages 0..512 held no page 600: it did not count towards nth.
        assert_eq!(counts(&mut dev), [(1, 1)]);
    }

    #[test]
    fn a_wrong_page_reaches_across_the_allocation_and_not_outside_it() {
        let mut dev = faulty(
            "  - kind: wrong_page\n    direction: to_vram\n    offset: 600\n    of: allocation\n",
        );
        let buf = prefetched(&mut dev, 4 * MIB);
        assert_eq!(
            cpu_words(&mut dev, buf, Span::pages(0, 1)),
            page_words(1, 600)
        );
        let mut dev = faulty(
            "  - kind: wrong_page\n    direction: to_vram\n    offset: -1\n    of: allocation\n",
        );
        let buf = prefetched(&mut dev, 4 * MIB);
        assert!(bad_words(&mut dev, buf, 1).is_empty());
        assert_eq!(counts(&mut dev), [(0, 0)]);
    }

    /// Generation 1 in system memory, then generation 2 written by the GPU into VRAM.
    fn newer_in_vram(dev: &mut dyn Device) -> Buf {
        let buf = prefetched(dev, 2 * MIB);
        gpu_fill(dev, buf, buf.all(), 2);
        events(dev);
        buf
    }

    #[test]
    fn a_drop_to_ram_brings_the_pages_back_stale_and_unreported() {
        let mut dev = faulty("  - kind: drop\n    trigger: cpu_fault\n");
        let buf = newer_in_vram(&mut dev);
        cpu_check(&mut dev, buf, buf.all(), 1);
        assert!(moves(&events(&mut dev), Trigger::CpuFault).is_empty());
        assert_eq!(count(&mut dev, buf, Location::System), 512);
        // The pages are back: the next read faults no more.
        cpu_check(&mut dev, buf, buf.all(), 1);
        assert_eq!(counts(&mut dev), [(1, 1)]);
    }

    #[test]
    fn a_phantom_to_ram_reports_the_migration_and_leaves_the_pages_in_vram() {
        let mut dev = faulty("  - kind: phantom\n    trigger: cpu_fault\n");
        let buf = newer_in_vram(&mut dev);
        // Served from the system page as it is, without faulting forever.
        cpu_check(&mut dev, buf, Span::pages(0, 4), 1);
        let reported = moves(&events(&mut dev), Trigger::CpuFault);
        assert_eq!(reported, vec![(0, 512); 4], "one fault per page read");
        assert_eq!(count(&mut dev, buf, Location::Vram), 512);
        assert_eq!(counts(&mut dev), [(4, 4)]);
    }

    #[test]
    fn a_phantom_eviction_frees_nothing_and_the_fault_maps_in_place() {
        let mut dev = faulty("  - kind: phantom\n    trigger: eviction\n");
        let a = dev.alloc(AllocKind::Managed, 16 * MIB).unwrap();
        gpu_fill(&mut dev, a, a.all(), 1);
        let c = dev.alloc(AllocKind::Managed, 2 * MIB).unwrap();
        gpu_fill(&mut dev, c, c.all(), 2);
        assert_eq!(count(&mut dev, c, Location::System), 512);
        assert_eq!(count(&mut dev, a, Location::Vram), 4096);
        assert_eq!(counts(&mut dev), [(1, 1)]);
    }

    #[test]
    fn a_stale_page_in_vram_keeps_what_its_frame_held_before() {
        let mut dev = device();
        let old = prefetched(&mut dev, 2 * MIB);
        dev.free(old).unwrap();
        dev.set_faults(
            plan("  - kind: stale\n    direction: to_vram\n    pages: every 53\n"),
            SEED,
            None,
        );
        let buf = dev.alloc(AllocKind::Managed, 2 * MIB).unwrap();
        cpu_fill(&mut dev, buf, buf.all(), 2);
        dev.prefetch(buf, buf.all(), Location::Vram).unwrap();
        assert_eq!(count(&mut dev, buf, Location::Vram), 512);
        // The frames come back in the order they were freed: each page gets its old twin.
        for page in 0..512 {
            let want = page_words(if page % 53 == 0 { 1 } else { 2 }, page);
            assert_eq!(
                cpu_words(&mut dev, buf, Span::pages(page, 1)),
                want,
                "page {page}"
            );
        }
        assert_eq!(counts(&mut dev), [(1, 1)]);
    }

    #[test]
    fn a_helpers_migrations_do_not_count_unless_the_rule_asks() {
        let run = |mark: bool, rules: &str| {
            let mut dev = faulty(rules);
            let helper = dev.alloc(AllocKind::Managed, 16).unwrap();
            if mark {
                dev.mark_helper(helper);
            }
            gpu_fill(&mut dev, helper, helper.all(), 1);
            cpu_words(&mut dev, helper, helper.all());
            let buf = newer_in_vram(&mut dev);
            let bad = bad_words(&mut dev, buf, 2).len();
            (bad, counts(&mut dev))
        };
        let rule = "  - kind: corrupt\n    trigger: cpu_fault\n    nth: 1\n";
        assert_eq!(run(true, rule), (1, vec![(1, 1)]));
        assert_eq!(
            run(false, rule),
            (0, vec![(2, 1)]),
            "the helper took the first"
        );
        let both = "  - kind: corrupt\n    trigger: cpu_fault\n    nth: 2\n    helpers: true\n";
        assert_eq!(run(true, both), (1, vec![(2, 1)]));
    }
}
