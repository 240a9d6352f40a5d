//! Zero-filled memory addressed by 4 KiB page, in 32-bit words (the unit of every pattern and
//! kernel). It is materialised in 2 MiB segments on the first write, so untouched memory costs
//! nothing: a 192 GiB VRAM arena or an oversubscribing allocation is only as large as what the
//! case really wrote. Each segment is a `vec![0; n]`, which the allocator zeroes lazily.

use crate::device::WORDS_PER_PAGE;

/// Pages per segment: 2 MiB, the largest range chunk.
const SEGMENT_PAGES: u64 = 512;
pub(super) const PAGE_WORDS: usize = WORDS_PER_PAGE as usize;
/// What an unwritten page reads as.
static ZERO_PAGE: [u32; PAGE_WORDS] = [0; PAGE_WORDS];

#[derive(Clone, Debug, Default)]
pub(super) struct Store {
    segments: Vec<Option<Box<[u32]>>>,
    pages: u64,
}

impl Store {
    pub fn new(pages: u64) -> Store {
        Store {
            segments: vec![None; pages.div_ceil(SEGMENT_PAGES) as usize],
            pages,
        }
    }

    /// The words of `page`; an unwritten page reads as zeros without being materialised.
    pub fn page(&self, page: u64) -> &[u32] {
        let (segment, at) = locate(page);
        match &self.segments[segment] {
            Some(words) => &words[at..at + PAGE_WORDS],
            None => &ZERO_PAGE,
        }
    }

    pub fn page_mut(&mut self, page: u64) -> &mut [u32] {
        let (segment, at) = locate(page);
        let pages = SEGMENT_PAGES.min(self.pages - segment as u64 * SEGMENT_PAGES);
        let words = self.segments[segment]
            .get_or_insert_with(|| vec![0; pages as usize * PAGE_WORDS].into_boxed_slice());
        &mut words[at..at + PAGE_WORDS]
    }

    /// Bytes of segments materialised so far.
    #[cfg(test)]
    pub fn materialised_bytes(&self) -> u64 {
        self.segments
            .iter()
            .flatten()
            .map(|s| s.len() as u64 * 4)
            .sum()
    }
}

/// The segment of `page` and the word offset of the page inside it.
fn locate(page: u64) -> (usize, usize) {
    (
        (page / SEGMENT_PAGES) as usize,
        (page % SEGMENT_PAGES) as usize * PAGE_WORDS,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwritten_pages_read_zero_and_cost_nothing() {
        let mut s = Store::new(3 * SEGMENT_PAGES + 1);
        assert!(s.page(1000).iter().all(|w| *w == 0));
        assert_eq!(s.materialised_bytes(), 0);
        s.page_mut(3 * SEGMENT_PAGES)[5] = 9;
        assert_eq!(s.page(3 * SEGMENT_PAGES)[5], 9);
        // The last segment holds only the one page left over.
        assert_eq!(s.materialised_bytes(), 4096);
    }
}
