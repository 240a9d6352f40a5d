//! VRAM: one arena of the profile's size in 4 KiB frames, the frame allocator, the devmem
//! allocations (drm_pagemap_devmem: the BO that holds migrated pages), the LRU TTM evicts by,
//! and the accounting of evictions and their transient system resource.

use super::object::{Mapper, ObjId};
use super::rng::Rng;
use super::slab::Slab;
use super::store::Store;
use crate::device::{EvictionTransient, PAGE_SIZE};

/// One devmem allocation: the VRAM frames it owns and the object pages it holds.
#[derive(Debug)]
pub(super) struct Devmem {
    pub object: ObjId,
    /// The process and buffer that made it; its eviction events go there.
    pub owner: Mapper,
    /// The object pages it may hold: `first_page..end_page`.
    pub first_page: u64,
    pub end_page: u64,
    /// Owned until the last page leaves, as a BO keeps its VRAM until its last device page
    /// is freed.
    pub frames: Vec<u32>,
    /// Pages still held.
    pub resident: u64,
    /// A device buffer (a plain VRAM BO): never evicted.
    pub pinned: bool,
    /// LRU stamp of the last GPU use.
    pub last_use: u64,
}

impl Devmem {
    pub fn bytes(&self) -> u64 {
        self.frames.len() as u64 * PAGE_SIZE
    }
}

#[derive(Debug)]
pub(super) struct Vram {
    arena: Store,
    frames: u64,
    /// Frames below this have been handed out at least once; above it the arena is untouched.
    fresh: u64,
    /// Frames given back, reused last-freed first.
    free: Vec<u32>,
    /// After a reset that loses VRAM: the seed untouched frames are filled from when handed out.
    garbage: Option<u64>,
    /// Set by the `no-vram-after-reset` break: every frame allocation fails.
    pub disabled: bool,
    pub devmem: Slab<Devmem>,
    tick: u64,
    pub transient: EvictionTransient,
}

impl Vram {
    pub fn new(bytes: u64) -> Vram {
        let frames = bytes / PAGE_SIZE;
        Vram {
            arena: Store::new(frames),
            frames,
            fresh: 0,
            free: Vec::new(),
            garbage: None,
            disabled: false,
            devmem: Slab::default(),
            tick: 0,
            transient: EvictionTransient::default(),
        }
    }

    pub fn free_frames(&self) -> u64 {
        self.frames - self.fresh + self.free.len() as u64
    }

    pub fn used_bytes(&self) -> u64 {
        (self.frames - self.free_frames()) * PAGE_SIZE
    }

    /// `n` frames, or `None` when fewer are free (nothing is taken then).
    pub fn take_frames(&mut self, n: u64) -> Option<Vec<u32>> {
        if self.disabled || self.free_frames() < n {
            return None;
        }
        let mut frames = Vec::with_capacity(n as usize);
        while (frames.len() as u64) < n {
            let frame = match self.free.pop() {
                Some(f) => f,
                None => self.first_use(),
            };
            frames.push(frame);
        }
        Some(frames)
    }

    /// Hands out the next untouched frame, garbage-filled when a reset has lost VRAM.
    fn first_use(&mut self) -> u32 {
        let frame = self.fresh as u32;
        self.fresh += 1;
        if let Some(seed) = self.garbage {
            fill_garbage(self.arena.page_mut(frame as u64), seed, frame);
        }
        frame
    }

    pub fn frame(&self, frame: u32) -> &[u32] {
        self.arena.page(frame as u64)
    }

    pub fn frame_mut(&mut self, frame: u32) -> &mut [u32] {
        self.arena.page_mut(frame as u64)
    }

    pub fn add(&mut self, mut devmem: Devmem) -> u32 {
        devmem.last_use = self.stamp();
        self.devmem.insert(devmem)
    }

    /// The GPU used the allocation now (the LRU order TTM evicts by).
    pub fn touch(&mut self, id: u32) {
        let stamp = self.stamp();
        self.devmem[id].last_use = stamp;
    }

    fn stamp(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// `pages` pages left the allocation; its frames go back when the last one has.
    pub fn release_pages(&mut self, id: u32, pages: u64) {
        let devmem = &mut self.devmem[id];
        devmem.resident -= pages;
        if devmem.resident == 0 {
            if let Some(gone) = self.devmem.remove(id) {
                // Reversed so that the next allocation takes them in ascending order.
                self.free.extend(gone.frames.into_iter().rev());
            }
        }
    }

    /// The SVM allocation TTM evicts next: least recently used, or most with `evict-mru`.
    pub fn victim(&self, most_recent: bool) -> Option<u32> {
        let svm = self.devmem.iter().filter(|(_, d)| !d.pinned);
        if most_recent {
            svm.max_by_key(|(_, d)| d.last_use).map(|(id, _)| id)
        } else {
            svm.min_by_key(|(_, d)| d.last_use).map(|(id, _)| id)
        }
    }

    /// Frames that evicting every SVM allocation would free.
    pub fn evictable_frames(&self) -> u64 {
        self.devmem
            .iter()
            .filter(|(_, d)| !d.pinned)
            .map(|(_, d)| d.frames.len() as u64)
            .sum()
    }

    /// One TTM eviction of an allocation of `size` bytes that moved `bytes` to RAM. With
    /// `transient`, TTM also took (and gave back) a system resource of `size` for its
    /// duration; evictions run one at a time, so the peak is the largest one.
    pub fn account_eviction(&mut self, bytes: u64, size: u64, transient: bool) {
        let t = &mut self.transient;
        t.evictions += 1;
        t.bytes_evicted += bytes;
        if transient {
            t.transient_bytes_total += size;
            t.transient_bytes_peak = t.transient_bytes_peak.max(size);
        }
    }

    /// A reset lost VRAM: every frame ever used now holds garbage, and so will every frame
    /// used for the first time from now on.
    pub fn lose_contents(&mut self, seed: u64) {
        for frame in 0..self.fresh as u32 {
            fill_garbage(self.arena.page_mut(frame as u64), seed, frame);
        }
        self.garbage = Some(seed);
    }
}

/// Seed-determined noise, not zeros: a page read after a reset must not pass as a fresh page.
fn fill_garbage(words: &mut [u32], seed: u64, frame: u32) {
    let mut rng = Rng::new(seed ^ (frame as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    for pair in words.chunks_mut(2) {
        let bits = rng.next_u64() | 1;
        pair[0] = bits as u32;
        if let Some(w) = pair.get_mut(1) {
            *w = (bits >> 32) as u32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devmem(frames: Vec<u32>) -> Devmem {
        let pages = frames.len() as u64;
        Devmem {
            object: 0,
            owner: Mapper { pid: 0, buf: 0 },
            first_page: 0,
            end_page: pages,
            frames,
            resident: pages,
            pinned: false,
            last_use: 0,
        }
    }

    #[test]
    fn frames_come_back_when_the_last_page_leaves() {
        let mut v = Vram::new(8 * PAGE_SIZE);
        let frames = v.take_frames(5).unwrap();
        assert_eq!(frames, vec![0, 1, 2, 3, 4]);
        assert!(v.take_frames(4).is_none(), "only 3 frames are free");
        let id = v.add(devmem(frames));
        assert_eq!(v.used_bytes(), 5 * PAGE_SIZE);
        v.release_pages(id, 4);
        assert_eq!(v.used_bytes(), 5 * PAGE_SIZE, "one page still holds the BO");
        v.release_pages(id, 1);
        assert_eq!(v.used_bytes(), 0);
        assert_eq!(v.take_frames(2).unwrap(), vec![0, 1]);
    }

    #[test]
    fn victim_is_the_least_recently_used_unpinned_allocation() {
        let mut v = Vram::new(8 * PAGE_SIZE);
        let a = v.add(devmem(vec![0]));
        let b = v.add(devmem(vec![1]));
        let pinned = v.add(Devmem {
            pinned: true,
            ..devmem(vec![2])
        });
        v.touch(pinned);
        assert_eq!(v.victim(false), Some(a));
        v.touch(a);
        assert_eq!(v.victim(false), Some(b));
        assert_eq!(v.victim(true), Some(a));
        assert_eq!(v.evictable_frames(), 2);
    }

    #[test]
    fn lost_contents_are_seeded_garbage_not_zeros() {
        let mut v = Vram::new(4 * PAGE_SIZE);
        let f = v.take_frames(1).unwrap()[0];
        v.frame_mut(f).fill(7);
        v.lose_contents(42);
        let lost = v.frame(f).to_vec();
        assert!(lost.iter().all(|w| *w != 7) && lost.iter().any(|w| *w != 0));
        let fresh = v.take_frames(1).unwrap()[0];
        assert!(
            v.frame(fresh).iter().any(|w| *w != 0),
            "untouched frames too"
        );
        let mut again = Vram::new(4 * PAGE_SIZE);
        let f2 = again.take_frames(1).unwrap()[0];
        again.lose_contents(42);
        assert_eq!(
            again.frame(f2),
            &lost[..],
            "the same seed gives the same garbage"
        );
    }
}
