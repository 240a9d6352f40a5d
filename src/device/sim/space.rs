//! A process's address space: its allocations, the virtual address each is mapped at, per page
//! the CPU mapping, the GPU mapping and the advice, and the GPU ranges (drm_gpusvm ranges)
//! formed over it by the chunk rule.
//!
//! Virtual addresses decide chunking, so they are chosen on purpose: managed allocations and
//! device buffers start 2 MiB aligned (hipMallocManaged aligns them); malloc, mmap, shared and
//! file mappings start [`UNALIGNED_OFFSET`] past a 2 MiB boundary, page aligned but neither
//! 64 KiB nor 2 MiB aligned, so their ranges begin with 4 KiB chunks and grow at alignment, as
//! they do for ordinary heap memory. No two allocations share a 2 MiB block.

use std::collections::BTreeMap;
use std::ops::Range;

use super::object::ObjId;
use crate::device::{AllocKind, Buf, DeviceError, Location, Protection, Result, Span, PAGE_SIZE};

/// Where the first allocation of a process is placed.
const VA_BASE: u64 = 0x7f00_0000_0000;
/// The largest chunk, and the block no two allocations share.
const HUGE_PAGE: u64 = 2 << 20;
/// How far past a 2 MiB boundary malloc and mmap allocations start: 64 KiB + 4 KiB.
pub(super) const UNALIGNED_OFFSET: u64 = (64 << 10) + (4 << 10);

/// Advice recorded per page that changes nothing in the reference policy (see `advise`).
pub(super) const HINT_ACCESSED_BY: u8 = 1;
pub(super) const HINT_READ_MOSTLY: u8 = 2;

#[derive(Debug)]
pub(super) struct Alloc {
    pub buf: Buf,
    pub va: u64,
    pub object: ObjId,
    pub prot: Protection,
    /// Per page: the CPU mapping still covers it (false after a partial unmap).
    mapped: Vec<bool>,
    unmapped_pages: u64,
    /// Per page: the GPU page table maps it (in VRAM or in place). A system page without it
    /// faults on GPU access.
    pub gpu_mapped: Vec<bool>,
    /// Per page: the preferred location from advise.
    pub preferred: Vec<Option<Location>>,
    /// Per page: accessed-by and read-mostly bits.
    hints: Vec<u8>,
    /// The GPU ranges: first page to end page, disjoint.
    ranges: BTreeMap<u64, u64>,
}

impl Alloc {
    pub fn new(buf: Buf, va: u64, object: ObjId) -> Alloc {
        let pages = buf.pages() as usize;
        Alloc {
            buf,
            va,
            object,
            prot: Protection::ReadWrite,
            mapped: vec![true; pages],
            unmapped_pages: 0,
            gpu_mapped: vec![false; pages],
            preferred: vec![None; pages],
            hints: vec![0; pages],
            ranges: BTreeMap::new(),
        }
    }

    /// The child's view after fork: same address, contents in `object`; no GPU state and no
    /// advice, since the child is a new GPU process.
    pub fn forked(&self, object: ObjId) -> Alloc {
        Alloc {
            prot: self.prot,
            mapped: self.mapped.clone(),
            unmapped_pages: self.unmapped_pages,
            ..Alloc::new(self.buf, self.va, object)
        }
    }

    pub fn pages(&self) -> u64 {
        self.buf.pages()
    }

    pub fn is_mapped(&self, page: u64) -> bool {
        self.mapped[page as usize]
    }

    pub fn first_unmapped(&self, pages: Range<u64>) -> Option<u64> {
        if self.unmapped_pages == 0 {
            return None;
        }
        pages.into_iter().find(|&p| !self.is_mapped(p))
    }

    /// Marks pages unmapped (munmap) and drops their GPU mapping.
    pub fn unmap(&mut self, pages: Range<u64>) {
        for p in pages {
            if std::mem::replace(&mut self.mapped[p as usize], false) {
                self.unmapped_pages += 1;
            }
            self.gpu_mapped[p as usize] = false;
        }
    }

    pub fn set_gpu_mapped(&mut self, pages: Range<u64>, mapped: bool) {
        self.gpu_mapped[pages.start as usize..pages.end as usize].fill(mapped);
    }

    pub fn advise(&mut self, pages: Range<u64>, preferred: Option<Option<Location>>, hint: u8) {
        let pages = pages.start as usize..pages.end as usize;
        if let Some(loc) = preferred {
            self.preferred[pages.clone()].fill(loc);
        }
        for h in &mut self.hints[pages] {
            *h |= hint;
        }
    }

    /// A CPU access to `page` at allocation byte `byte`: SIGSEGV when unmapped, or on a write
    /// to a read-only mapping.
    pub fn check_cpu(&self, page: u64, write: bool, byte: u64) -> Result<()> {
        if !self.is_mapped(page) || (write && self.prot == Protection::ReadOnly) {
            return Err(DeviceError::Segfault {
                buf: self.buf.id,
                offset: byte,
            });
        }
        Ok(())
    }

    /// A GPU access to `page` at allocation byte `byte`: a GPU memory fault when unmapped, or
    /// on a write to a read-only mapping unless `readonly_writes_ok` (a break).
    pub fn check_gpu(
        &self,
        page: u64,
        write: bool,
        byte: u64,
        readonly_writes_ok: bool,
    ) -> Result<()> {
        let reason = if !self.is_mapped(page) {
            "access to an unmapped page"
        } else if write && self.prot == Protection::ReadOnly && !readonly_writes_ok {
            "write to a read-only mapping"
        } else {
            return Ok(());
        };
        Err(DeviceError::GpuMemoryFault {
            buf: self.buf.id,
            offset: byte,
            reason: reason.to_string(),
        })
    }

    /// The range holding `page`, if one was formed.
    pub fn range_containing(&self, page: u64) -> Option<Range<u64>> {
        let (&start, &end) = self.ranges.range(..=page).next_back()?;
        (end > page).then_some(start..end)
    }

    fn overlaps_range(&self, pages: &Range<u64>) -> bool {
        // Ranges are disjoint, so only the last one starting before `pages.end` can overlap.
        self.ranges
            .range(..pages.end)
            .next_back()
            .is_some_and(|(_, &end)| end > pages.start)
    }

    /// Forms and records the range for a fault (or prefetch) on `page`: the largest chunk of
    /// `chunk_sizes` that is aligned in VA, lies inside `bound` (the mapping, or a prefetch
    /// span) and the CPU mapping, and overlaps no range. One page when no chunk fits, as
    /// drm_gpusvm would fail the fault instead and the policy always has a 4 KiB chunk.
    pub fn form_range(&mut self, page: u64, bound: Range<u64>, chunk_sizes: &[u64]) -> Range<u64> {
        let fits = |pages: &Range<u64>| {
            pages.start >= bound.start
                && pages.end <= bound.end
                && self.first_unmapped(pages.clone()).is_none()
                && !self.overlaps_range(pages)
        };
        let range = chunk_sizes
            .iter()
            .filter_map(|&size| self.aligned_chunk(page, size))
            .find(|pages| fits(pages))
            .unwrap_or(page..page + 1);
        self.ranges.insert(range.start, range.end);
        range
    }

    /// The pages of the `size`-aligned VA block around `page`, when it lies inside the
    /// allocation at all.
    fn aligned_chunk(&self, page: u64, size: u64) -> Option<Range<u64>> {
        let va = self.va + page * PAGE_SIZE;
        let start = (va & !(size - 1)).checked_sub(self.va)?;
        let end = start + size;
        (end <= self.pages() * PAGE_SIZE).then_some(start / PAGE_SIZE..end / PAGE_SIZE)
    }

    /// Destroys every range overlapping `pages` and unmaps them from the GPU; returns them.
    pub fn destroy_ranges_overlapping(&mut self, pages: Range<u64>) -> Vec<Range<u64>> {
        let doomed: Vec<Range<u64>> = self
            .ranges
            .range(..pages.end)
            .rev()
            .take_while(|(_, &end)| end > pages.start)
            .map(|(&start, &end)| start..end)
            .collect();
        for range in &doomed {
            self.ranges.remove(&range.start);
            self.set_gpu_mapped(range.clone(), false);
        }
        doomed
    }

    /// Destroys every range (mremap, reset): the GPU maps nothing of the allocation.
    pub fn destroy_all_ranges(&mut self) {
        self.ranges.clear();
        self.gpu_mapped.fill(false);
    }

    #[cfg(test)]
    pub fn hints(&self) -> &[u8] {
        &self.hints
    }

    #[cfg(test)]
    pub fn ranges(&self) -> Vec<Range<u64>> {
        self.ranges.iter().map(|(&s, &e)| s..e).collect()
    }
}

/// A process's allocations by buffer id, and where the next one goes.
#[derive(Debug)]
pub(super) struct Space {
    pub allocs: BTreeMap<u32, Alloc>,
    next_id: u32,
    next_va: u64,
}

impl Space {
    pub fn new() -> Space {
        Space {
            allocs: BTreeMap::new(),
            next_id: 1,
            next_va: VA_BASE,
        }
    }

    /// An empty space that continues numbering where `parent`'s does (fork's child).
    pub fn continuing(parent: &Space) -> Space {
        Space {
            allocs: BTreeMap::new(),
            next_id: parent.next_id,
            next_va: parent.next_va,
        }
    }

    /// The handle and virtual address of a new allocation.
    pub fn place(&mut self, kind: AllocKind, len: u64) -> (Buf, u64) {
        let id = self.next_id;
        self.next_id += 1;
        let buf = Buf { id, kind, len };
        (buf, self.new_va(kind, len))
    }

    /// A fresh address in `kind`'s alignment class, in a 2 MiB block of its own.
    pub fn new_va(&mut self, kind: AllocKind, len: u64) -> u64 {
        let offset = match kind {
            AllocKind::Managed | AllocKind::DeviceBuffer => 0,
            AllocKind::Malloc | AllocKind::Mmap | AllocKind::Shared | AllocKind::File => {
                UNALIGNED_OFFSET
            }
        };
        let va = self.next_va + offset;
        // A guard block after each allocation keeps neighbours out of each other's chunks.
        self.next_va += (offset + len).div_ceil(HUGE_PAGE) * HUGE_PAGE + HUGE_PAGE;
        va
    }

    pub fn get(&self, id: u32) -> Result<&Alloc> {
        self.allocs.get(&id).ok_or(DeviceError::NoSuchBuffer(id))
    }

    pub fn get_mut(&mut self, id: u32) -> Result<&mut Alloc> {
        self.allocs
            .get_mut(&id)
            .ok_or(DeviceError::NoSuchBuffer(id))
    }
}

/// Checks that `span` lies inside `buf`.
pub(super) fn check_bounds(buf: &Buf, span: Span) -> Result<()> {
    if span
        .offset
        .checked_add(span.len)
        .map_or(true, |end| end > buf.len)
    {
        return Err(DeviceError::OutOfBounds {
            buf: buf.id,
            span,
            len: buf.len,
        });
    }
    Ok(())
}

/// Checks that `span` lies inside `buf` and covers whole 32-bit words, the unit of every
/// pattern and kernel.
pub(super) fn check_words(buf: &Buf, span: Span) -> Result<()> {
    check_bounds(buf, span)?;
    if span.offset % 4 != 0 || span.len % 4 != 0 {
        return Err(DeviceError::Backend(format!(
            "{span} of allocation {} is not 4-byte aligned: CPU and GPU accesses work in 32-bit words",
            buf.id
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    const K4: u64 = 4 << 10;
    const K64: u64 = 64 << 10;
    const M2: u64 = 2 << 20;
    const SIZES: [u64; 3] = [M2, K64, K4];

    fn alloc(kind: AllocKind, len: u64) -> Alloc {
        let mut space = Space::new();
        let (buf, va) = space.place(kind, len);
        Alloc::new(buf, va, 0)
    }

    /// Faults every page in order and returns the range sizes in bytes, as a GPU first touch
    /// of the whole allocation forms them.
    fn first_touch_chunks(kind: AllocKind, len: u64) -> Vec<u64> {
        let mut a = alloc(kind, len);
        let mut sizes = Vec::new();
        for page in 0..a.pages() {
            if a.range_containing(page).is_none() {
                let r = a.form_range(page, 0..a.pages(), &SIZES);
                sizes.push((r.end - r.start) * PAGE_SIZE);
            }
        }
        sizes
    }

    #[rstest]
    #[case::managed_4k(AllocKind::Managed, K4, vec![K4])]
    #[case::managed_64k(AllocKind::Managed, K64, vec![K64])]
    #[case::managed_2m(AllocKind::Managed, M2, vec![M2])]
    #[case::managed_2m_4k(AllocKind::Managed, M2 + K4, vec![M2, K4])]
    #[case::malloc_4k(AllocKind::Malloc, K4, vec![K4])]
    #[case::malloc_64k(AllocKind::Malloc, K64, vec![K4; 16])]
    // 68 KiB past a 2 MiB boundary: 15 pages of 4 KiB reach 128 KiB, then 64 KiB chunks (no
    // 2 MiB block lies inside the mapping), then 4 KiB pages for the tail.
    #[case::malloc_2m(AllocKind::Malloc, M2, [vec![K4; 15], vec![K64; 31], vec![K4; 1]].concat())]
    #[case::mmap_2m_4k(AllocKind::Mmap, M2 + K4, [vec![K4; 15], vec![K64; 31], vec![K4; 2]].concat())]
    fn chunks_follow_size_and_alignment(
        #[case] kind: AllocKind,
        #[case] len: u64,
        #[case] want: Vec<u64>,
    ) {
        let got = first_touch_chunks(kind, len);
        assert_eq!(got, want);
        assert_eq!(got.iter().sum::<u64>(), len.div_ceil(PAGE_SIZE) * PAGE_SIZE);
    }

    #[test]
    fn malloc_is_page_aligned_but_not_2mib_aligned() {
        let a = alloc(AllocKind::Malloc, M2);
        assert_eq!(a.va % PAGE_SIZE, 0);
        assert_eq!(a.va % M2, UNALIGNED_OFFSET);
        let m = alloc(AllocKind::Managed, M2);
        assert_eq!(m.va % M2, 0);
    }

    #[test]
    fn a_chunk_never_overlaps_an_existing_range_or_an_unmapped_page() {
        let mut a = alloc(AllocKind::Managed, 4 * M2);
        assert_eq!(a.form_range(3, 3..4, &SIZES), 3..4, "bounded to one page");
        assert_eq!(
            a.form_range(20, 0..2048, &SIZES),
            16..32,
            "64 KiB beside it"
        );
        assert_eq!(a.form_range(0, 0..2048, &SIZES), 0..1);
        a.unmap(600..601);
        assert_eq!(a.form_range(700, 0..2048, &SIZES), 688..704);
        assert_eq!(a.form_range(1024, 0..2048, &SIZES), 1024..1536);
        assert_eq!(a.range_containing(1100), Some(1024..1536));
        assert_eq!(
            a.destroy_ranges_overlapping(690..1030),
            vec![1024..1536, 688..704]
        );
        assert_eq!(a.ranges(), vec![0..1, 3..4, 16..32]);
    }
}
