//! The kernels of `kernels/` as the test driver's device runs them
//! ([`crate::device::kernels::words`]): the arithmetic on the CPU, every byte in and out
//! through the device's READ and WRITE commands, so that each access is the device's (its page
//! faults, its page table, its view of device-private pages). Written against [`PageIo`] so
//! that the commands each kernel makes are tested here without the driver.
//!
//! The device moves whole pages. A span that starts or ends inside a page is read, changed and
//! written back whole (read-modify-write through the device); the words outside the span are
//! written back as they were read, which is right because nothing else runs meanwhile (the
//! backend runs kernels synchronously). An atomic increment is such a read and write too: the
//! device has no atomics of its own.

use std::ops::Range;

use crate::device::kernels::words::{self, WordIo};
use crate::device::kernels::Launch;
use crate::device::{Buf, Result, Span, WORDS_PER_PAGE};

/// Pages moved by one command: the driver works through 64-page windows anyway, and 2 MiB
/// keeps the bounce buffers small whatever the span.
pub const BATCH_PAGES: u64 = 512;

/// Whole-page device reads and writes of an allocation; each returns the device page faults
/// it took.
pub trait PageIo {
    /// Reads pages `first_page ..` of `buf` into `out` (a whole number of pages of words).
    fn read_pages(&mut self, buf: Buf, first_page: u64, out: &mut [u32]) -> Result<u64>;
    /// Writes `words` (a whole number of pages) over pages `first_page ..` of `buf`.
    fn write_pages(&mut self, buf: Buf, first_page: u64, words: &[u32]) -> Result<u64>;
}

/// Runs `launch` through the device; returns the device page faults it took.
pub fn run(io: &mut dyn PageIo, launch: &Launch) -> Result<u64> {
    words::run(&mut Pages(io), launch)
}

/// The page commands as the words the kernels are run over: each span whole, in commands of
/// at most [`BATCH_PAGES`] pages, partial pages at either end read first and written back
/// whole.
struct Pages<'a>(&'a mut dyn PageIo);

impl WordIo for Pages<'_> {
    /// Spans go whole: the pages are cut into commands here.
    fn batch_words(&self) -> u64 {
        u64::MAX
    }

    fn read(&mut self, buf: Buf, first_word: u64, out: &mut [u32]) -> Result<u64> {
        let mut faults = 0;
        let mut scratch = Vec::new();
        for w in windows(first_word, out.len() as u64) {
            scratch.resize(w.words(), 0);
            faults += self.0.read_pages(buf, w.page, &mut scratch)?;
            out[w.outer(first_word)].copy_from_slice(&scratch[w.inner()]);
        }
        Ok(faults)
    }

    fn write(&mut self, buf: Buf, first_word: u64, words: &[u32]) -> Result<u64> {
        let mut faults = 0;
        let mut scratch = Vec::new();
        for w in windows(first_word, words.len() as u64) {
            scratch.resize(w.words(), 0);
            if !w.whole() {
                faults += self.0.read_pages(buf, w.page, &mut scratch)?;
            }
            scratch[w.inner()].copy_from_slice(&words[w.outer(first_word)]);
            faults += self.0.write_pages(buf, w.page, &scratch)?;
        }
        Ok(faults)
    }

    /// A read of the span, the additions on the CPU, a write back.
    fn atomic_inc(&mut self, buf: Buf, span: Span, iterations: u32) -> Result<u64> {
        let mut words = vec![0u32; span.words() as usize];
        let mut faults = self.read(buf, span.first_word(), &mut words)?;
        for w in &mut words {
            *w = w.wrapping_add(iterations);
        }
        faults += self.write(buf, span.first_word(), &words)?;
        Ok(faults)
    }
}

/// One command's pages, `page .. page + count`, and the words `lo .. hi` of them (allocation
/// words) that a span of words covers.
struct Window {
    page: u64,
    count: u64,
    lo: u64,
    hi: u64,
}

impl Window {
    /// The command's first word.
    fn base(&self) -> u64 {
        self.page * WORDS_PER_PAGE
    }

    /// Words the command moves.
    fn words(&self) -> usize {
        (self.count * WORDS_PER_PAGE) as usize
    }

    /// The span's words among the command's.
    fn inner(&self) -> Range<usize> {
        (self.lo - self.base()) as usize..(self.hi - self.base()) as usize
    }

    /// The same words among the span's, which start at word `first_word`.
    fn outer(&self, first_word: u64) -> Range<usize> {
        (self.lo - first_word) as usize..(self.hi - first_word) as usize
    }

    /// Whether the span covers the command's pages whole: a write need not read them first.
    fn whole(&self) -> bool {
        self.lo == self.base() && self.hi == self.base() + self.count * WORDS_PER_PAGE
    }
}

/// The commands over words `first_word .. first_word + n`: every page they touch, in windows
/// of [`BATCH_PAGES`] from the first (none when `n` is 0).
fn windows(first_word: u64, n: u64) -> impl Iterator<Item = Window> {
    let end = first_word + n;
    let pages = match n {
        0 => 0..0,
        _ => first_word / WORDS_PER_PAGE..(end - 1) / WORDS_PER_PAGE + 1,
    };
    let end_page = pages.end;
    pages.step_by(BATCH_PAGES as usize).map(move |page| {
        let count = (end_page - page).min(BATCH_PAGES);
        let base = page * WORDS_PER_PAGE;
        Window {
            page,
            count,
            lo: first_word.max(base),
            hi: end.min(base + count * WORDS_PER_PAGE),
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::device::kernels::words::checks::{self, fill, Fake, SEED};
    use crate::device::kernels::words::compare;
    use crate::device::{DeviceError, PAGE_SIZE};
    use crate::model::pattern::Pattern;

    /// Device memory as vectors of words, counting commands and refusing writes where asked.
    #[derive(Default)]
    struct FakeDevice {
        mem: HashMap<u32, Vec<u32>>,
        reads: u64,
        writes: u64,
        read_only: Option<u32>,
    }

    impl FakeDevice {
        fn range(&self, buf: Buf, first_page: u64, words: usize) -> std::ops::Range<usize> {
            let start = (first_page * WORDS_PER_PAGE) as usize;
            assert_eq!(words % WORDS_PER_PAGE as usize, 0, "whole pages only");
            assert!(
                start + words <= self.mem[&buf.id].len(),
                "inside the mapping"
            );
            start..start + words
        }
    }

    impl PageIo for FakeDevice {
        fn read_pages(&mut self, buf: Buf, first_page: u64, out: &mut [u32]) -> Result<u64> {
            let r = self.range(buf, first_page, out.len());
            out.copy_from_slice(&self.mem[&buf.id][r]);
            self.reads += 1;
            Ok(1)
        }

        fn write_pages(&mut self, buf: Buf, first_page: u64, words: &[u32]) -> Result<u64> {
            if self.read_only == Some(buf.id) {
                return Err(DeviceError::GpuMemoryFault {
                    buf: buf.id,
                    offset: first_page * PAGE_SIZE,
                    reason: "EPERM".into(),
                });
            }
            let r = self.range(buf, first_page, words.len());
            self.mem.get_mut(&buf.id).unwrap()[r].copy_from_slice(words);
            self.writes += 1;
            Ok(1)
        }
    }

    impl Fake for FakeDevice {
        fn allocations(&mut self) -> &mut HashMap<u32, Vec<u32>> {
            &mut self.mem
        }

        /// Whole pages: the device moves nothing smaller.
        fn words_for(&self, len: u64) -> usize {
            (len.div_ceil(PAGE_SIZE) * WORDS_PER_PAGE) as usize
        }

        fn run(&mut self, launch: &Launch) -> Result<u64> {
            run(self, launch)
        }
    }

    #[test]
    fn fill_writes_the_span_and_nothing_around_it() {
        let mut dev = FakeDevice::default();
        // An unaligned span inside pages 0 and 1: read-modify-write of both.
        let faults = checks::fill_across_a_page_edge(&mut dev);
        assert_eq!(faults, 2, "one read and one write command");
    }

    #[test]
    fn a_large_fill_goes_in_batches_of_whole_pages_without_reads() {
        let mut dev = FakeDevice::default();
        let buf = dev.alloc(1, (BATCH_PAGES + 3) * PAGE_SIZE);
        run(&mut dev, &fill(buf, buf.all(), 1)).unwrap();
        assert_eq!((dev.reads, dev.writes), (0, 2));
        let (bad, _) = compare(&Pattern::new(SEED, 1), 0, &dev.mem[&1]);
        assert_eq!(bad, 0);
    }

    #[test]
    fn verify_counts_bad_words_and_the_first_one() {
        checks::verify_counts_bad_words_and_the_first_one(&mut FakeDevice::default());
    }

    #[test]
    fn the_storm_writes_every_page_once_in_its_own_command() {
        let mut dev = FakeDevice::default();
        checks::a_storm_writes_every_page(&mut dev);
        assert_eq!((dev.reads, dev.writes), (0, 7));
    }

    #[test]
    fn touch_read_sums_the_first_word_of_every_stride_th_page() {
        checks::touch_read_sums_the_first_word_of_every_stride_th_page(&mut FakeDevice::default());
    }

    #[test]
    fn atomic_inc_and_copy_go_through_the_device() {
        let mut dev = FakeDevice::default();
        let a = dev.alloc(1, PAGE_SIZE);
        let b = dev.alloc(2, PAGE_SIZE);
        let inc = Launch::AtomicInc {
            buf: a,
            span: Span::new(8, 8),
            iterations: 3,
        };
        run(&mut dev, &inc).unwrap();
        run(&mut dev, &inc).unwrap();
        assert_eq!(dev.mem[&1][..5], [0, 0, 6, 6, 0]);
        checks::copy_four_words(&mut dev, a, b);
        assert_eq!(dev.mem[&2][..5], [0, 6, 6, 0, 0]);
    }

    #[test]
    fn a_refused_write_is_the_kernels_error_and_a_span_outside_is_refused_first() {
        let mut dev = FakeDevice {
            read_only: Some(1),
            ..FakeDevice::default()
        };
        checks::a_refused_write_and_a_span_outside(&mut dev);
        assert_eq!(dev.writes, 0);
    }
}
