//! VRAM: one arena of the profile's size in 4 KiB frames, the frame allocator, the devmem
//! allocations (drm_pagemap_devmem: the BO that holds migrated pages), the LRU TTM evicts by,
//! and the accounting of evictions and their transient system resource.

use std::collections::VecDeque;

use super::object::{Mapper, ObjId, Object, NO_DEVMEM};
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
    /// GPU uses of SVM allocations in order, as (stamp, devmem); an entry whose stamp is no
    /// longer its allocation's `last_use` is stale and skipped. Stamps only grow, so the
    /// front is the least recently used: victims in O(1) however many allocations live.
    lru: VecDeque<(u64, u32)>,
    /// The allocation stamped last: touching it again changes no order.
    newest: Option<u32>,
    /// Frames held by SVM (unpinned) allocations.
    svm_frames: u64,
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
            lru: VecDeque::new(),
            newest: None,
            svm_frames: 0,
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

    pub fn add(&mut self, devmem: Devmem) -> u32 {
        if !devmem.pinned {
            self.svm_frames += devmem.frames.len() as u64;
        }
        let id = self.devmem.insert(devmem);
        self.newest = None;
        self.touch(id);
        id
    }

    /// The GPU used the allocation now (the LRU order TTM evicts by). Called per page, so the
    /// common case, the same allocation again, returns at once.
    pub fn touch(&mut self, id: u32) {
        if self.newest == Some(id) {
            return;
        }
        self.tick += 1;
        let devmem = &mut self.devmem[id];
        devmem.last_use = self.tick;
        self.newest = Some(id);
        if !devmem.pinned {
            self.lru.push_back((self.tick, id));
            self.compact_lru();
        }
    }

    /// Drops stale entries once they outnumber the live ones, keeping the queue O(live).
    fn compact_lru(&mut self) {
        if self.lru.len() > 64 + 2 * self.devmem.len() {
            let devmem = &self.devmem;
            self.lru
                .retain(|&(stamp, id)| is_current(devmem, stamp, id));
        }
    }

    /// `pages` pages left the allocation; its frames go back when the last one has.
    pub fn release_pages(&mut self, id: u32, pages: u64) {
        let devmem = &mut self.devmem[id];
        devmem.resident -= pages;
        if devmem.resident == 0 {
            if let Some(gone) = self.devmem.remove(id) {
                if !gone.pinned {
                    self.svm_frames -= gone.frames.len() as u64;
                }
                if self.newest == Some(id) {
                    self.newest = None;
                }
                // Reversed so that the next allocation takes them in ascending order.
                self.free.extend(gone.frames.into_iter().rev());
            }
        }
    }

    /// The SVM allocation TTM evicts next: least recently used, or most with `evict-mru`.
    pub fn victim(&mut self, most_recent: bool) -> Option<u32> {
        loop {
            let end = if most_recent {
                self.lru.back()
            } else {
                self.lru.front()
            };
            let &(stamp, id) = end?;
            if is_current(&self.devmem, stamp, id) {
                return Some(id);
            }
            if most_recent {
                self.lru.pop_back();
            } else {
                self.lru.pop_front();
            }
        }
    }

    /// Frames that evicting every SVM allocation would free.
    pub fn evictable_frames(&self) -> u64 {
        self.svm_frames
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

/// Whether an LRU entry is still its allocation's last use (stamps are unique, so an entry of
/// a freed id that was reused never matches).
fn is_current(devmem: &Slab<Devmem>, stamp: u64, id: u32) -> bool {
    devmem.get(id).is_some_and(|d| d.last_use == stamp)
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

impl Vram {
    /// A copy of `object`'s current contents with every page in system memory: fork's private
    /// copy. The pages of `object` stay where they are.
    pub fn snapshot(&self, object: &Object, mapper: Mapper) -> Object {
        let mut copy = Object {
            sys: object.sys.clone(),
            ..Object::new(object.devmem.len() as u64, mapper)
        };
        for (page, &frame) in object.frame.iter().enumerate() {
            if frame != NO_DEVMEM {
                copy.sys
                    .page_mut(page as u64)
                    .copy_from_slice(self.frame(frame));
            }
        }
        copy
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
        v.release_pages(a, 1);
        assert_eq!(
            v.victim(true),
            Some(b),
            "a freed allocation is never a victim"
        );
        let c = v.add(devmem(vec![0]));
        assert_eq!(c, a, "the id is reused");
        v.touch(b);
        assert_eq!(v.victim(false), Some(c));
        assert_eq!(v.evictable_frames(), 2);
    }

    #[test]
    fn the_lru_queue_stays_proportional_to_live_allocations() {
        let mut v = Vram::new(8 * PAGE_SIZE);
        let ids: Vec<u32> = (0..4).map(|f| v.add(devmem(vec![f]))).collect();
        for round in 0..1000 {
            v.touch(ids[round % 4]);
        }
        assert!(v.lru.len() <= 64 + 2 * 4 + 1, "{} entries", v.lru.len());
        assert_eq!(v.victim(false), Some(ids[0]));
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
