//! The kernels of `kernels/` as the test driver's device runs them: the arithmetic on the CPU,
//! every byte in and out through the device's READ and WRITE commands, so that each access is
//! the device's (its page faults, its page table, its view of device-private pages). Written
//! against [`PageIo`] so that the logic is tested here without the driver.
//!
//! The device moves whole pages. A span that starts or ends inside a page is read, changed and
//! written back whole (read-modify-write through the device); the words outside the span are
//! written back as they were read, which is right because nothing else runs meanwhile (the
//! backend runs kernels synchronously).

use crate::device::kernels::{storm_page, Launch};
use crate::device::{Buf, DeviceError, Result, Span, PAGE_SIZE, WORDS_PER_PAGE};
use crate::model::pattern::Pattern;

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

/// Words `first_word .. first_word + n` of `buf`, read through the device.
fn read_words(
    io: &mut dyn PageIo,
    buf: Buf,
    first_word: u64,
    n: u64,
    faults: &mut u64,
) -> Result<Vec<u32>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let (first_page, end_page) = pages_of(first_word, n);
    let mut out = Vec::with_capacity(n as usize);
    let mut page = first_page;
    let mut scratch = Vec::new();
    while page < end_page {
        let count = (end_page - page).min(BATCH_PAGES);
        scratch.resize((count * WORDS_PER_PAGE) as usize, 0);
        *faults += io.read_pages(buf, page, &mut scratch)?;
        let base = page * WORDS_PER_PAGE;
        let lo = first_word.max(base) - base;
        let hi = (first_word + n).min(base + count * WORDS_PER_PAGE) - base;
        out.extend_from_slice(&scratch[lo as usize..hi as usize]);
        page += count;
    }
    Ok(out)
}

/// Writes `words` at word `first_word` of `buf` through the device; partial pages at either
/// end are read first and written back whole.
fn write_words(
    io: &mut dyn PageIo,
    buf: Buf,
    first_word: u64,
    words: &[u32],
    faults: &mut u64,
) -> Result<()> {
    let n = words.len() as u64;
    if n == 0 {
        return Ok(());
    }
    let (first_page, end_page) = pages_of(first_word, n);
    let mut page = first_page;
    let mut scratch = Vec::new();
    while page < end_page {
        let count = (end_page - page).min(BATCH_PAGES);
        let base = page * WORDS_PER_PAGE;
        let lo = first_word.max(base);
        let hi = (first_word + n).min(base + count * WORDS_PER_PAGE);
        scratch.resize((count * WORDS_PER_PAGE) as usize, 0);
        let whole = lo == base && hi == base + count * WORDS_PER_PAGE;
        if !whole {
            *faults += io.read_pages(buf, page, &mut scratch)?;
        }
        scratch[(lo - base) as usize..(hi - base) as usize]
            .copy_from_slice(&words[(lo - first_word) as usize..(hi - first_word) as usize]);
        *faults += io.write_pages(buf, page, &scratch)?;
        page += count;
    }
    Ok(())
}

/// Pages `[first, end)` holding words `first_word .. first_word + n` (n > 0).
fn pages_of(first_word: u64, n: u64) -> (u64, u64) {
    (
        first_word / WORDS_PER_PAGE,
        (first_word + n - 1) / WORDS_PER_PAGE + 1,
    )
}

/// The span must lie inside its allocation and be word aligned, as on the other devices.
fn inside(buf: Buf, span: Span) -> Result<()> {
    if span.end() > buf.len || span.offset % 4 != 0 || span.len % 4 != 0 {
        return Err(DeviceError::OutOfBounds {
            buf: buf.id,
            span,
            len: buf.len,
        });
    }
    Ok(())
}

/// Two little-endian u64 (or one) at the start of `buf`, as words.
fn u64_at(words: &[u32], i: usize) -> u64 {
    words[2 * i] as u64 | (words[2 * i + 1] as u64) << 32
}

fn set_u64(words: &mut [u32], i: usize, v: u64) {
    words[2 * i] = v as u32;
    words[2 * i + 1] = (v >> 32) as u32;
}

/// Words of each span-relative page block the page kernels touch: `npages` is whole pages.
fn block(span: Span, i: u64) -> (u64, u64) {
    (span.first_word() + i * WORDS_PER_PAGE, WORDS_PER_PAGE)
}

/// Runs `launch` through the device; returns the device page faults it took.
pub fn run(io: &mut dyn PageIo, launch: &Launch) -> Result<u64> {
    let mut faults = 0;
    let f = &mut faults;
    match *launch {
        Launch::Fill {
            buf,
            span,
            seed,
            generation,
        } => {
            inside(buf, span)?;
            let mut words = vec![0u32; span.words() as usize];
            Pattern::new(seed, generation).fill(span.first_word(), &mut words);
            write_words(io, buf, span.first_word(), &words, f)?;
        }
        Launch::Verify {
            buf,
            span,
            seed,
            generation,
            result,
        } => {
            inside(buf, span)?;
            inside(result, Span::new(0, 16))?;
            let pattern = Pattern::new(seed, generation);
            let (bad, min_bad) = compare(
                &pattern,
                span.first_word(),
                &read_words(io, buf, span.first_word(), span.words(), f)?,
            );
            let mut r = read_words(io, result, 0, 4, f)?;
            let (count, first) = (u64_at(&r, 0).wrapping_add(bad), u64_at(&r, 1).min(min_bad));
            set_u64(&mut r, 0, count);
            set_u64(&mut r, 1, first);
            write_words(io, result, 0, &r, f)?;
        }
        Launch::TouchRead {
            buf,
            span,
            stride_pages,
            sum,
        } => {
            inside(buf, span)?;
            inside(sum, Span::new(0, 8))?;
            let mut total = 0u64;
            if stride_pages > 0 {
                for i in (0..span.len / PAGE_SIZE).step_by(stride_pages as usize) {
                    let (first, _) = block(span, i);
                    total += read_words(io, buf, first, 1, f)?[0] as u64;
                }
            }
            let mut s = read_words(io, sum, 0, 2, f)?;
            let total = u64_at(&s, 0).wrapping_add(total);
            set_u64(&mut s, 0, total);
            write_words(io, sum, 0, &s, f)?;
        }
        Launch::TouchWrite {
            buf,
            span,
            stride_pages,
            seed,
            generation,
        } => {
            inside(buf, span)?;
            if stride_pages > 0 {
                let pattern = Pattern::new(seed, generation);
                for i in (0..span.len / PAGE_SIZE).step_by(stride_pages as usize) {
                    write_block(io, buf, &pattern, block(span, i), f)?;
                }
            }
        }
        Launch::FaultStorm {
            buf,
            span,
            step,
            offset,
            seed,
            generation,
        } => {
            inside(buf, span)?;
            let pattern = Pattern::new(seed, generation);
            let n = span.len / PAGE_SIZE;
            // One command per page, in the scattered order: each is the device's first touch.
            for i in 0..n {
                let page = storm_page(i, step, offset, n);
                write_block(io, buf, &pattern, block(span, page), f)?;
            }
        }
        Launch::AtomicInc {
            buf,
            span,
            iterations,
        } => {
            inside(buf, span)?;
            let mut words = read_words(io, buf, span.first_word(), span.words(), f)?;
            for w in &mut words {
                *w = w.wrapping_add(iterations);
            }
            write_words(io, buf, span.first_word(), &words, f)?;
        }
        Launch::Copy {
            dst,
            dst_span,
            src,
            src_span,
        } => {
            inside(dst, dst_span)?;
            inside(src, src_span)?;
            let n = dst_span.words().min(src_span.words());
            let words = read_words(io, src, src_span.first_word(), n, f)?;
            write_words(io, dst, dst_span.first_word(), &words, f)?;
        }
    }
    Ok(faults)
}

fn write_block(
    io: &mut dyn PageIo,
    buf: Buf,
    pattern: &Pattern,
    (first, n): (u64, u64),
    faults: &mut u64,
) -> Result<()> {
    let mut words = vec![0u32; n as usize];
    pattern.fill(first, &mut words);
    write_words(io, buf, first, &words, faults)
}

/// Words that differ from the pattern, and the lowest differing word index (allocation
/// relative; `u64::MAX` when none): what the verify kernel adds into its result.
pub fn compare(pattern: &Pattern, first_word: u64, words: &[u32]) -> (u64, u64) {
    let mut expected = vec![0u32; words.len()];
    pattern.fill(first_word, &mut expected);
    let mut bad = 0;
    let mut min_bad = u64::MAX;
    for (i, (e, a)) in expected.iter().zip(words).enumerate() {
        if e != a {
            bad += 1;
            min_bad = min_bad.min(first_word + i as u64);
        }
    }
    (bad, min_bad)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::device::AllocKind;

    /// Device memory as vectors of words, counting commands and refusing writes where asked.
    #[derive(Default)]
    struct FakeDevice {
        mem: HashMap<u32, Vec<u32>>,
        reads: u64,
        writes: u64,
        read_only: Option<u32>,
    }

    impl FakeDevice {
        fn alloc(&mut self, id: u32, len: u64) -> Buf {
            let pages = len.div_ceil(PAGE_SIZE);
            self.mem
                .insert(id, vec![0; (pages * WORDS_PER_PAGE) as usize]);
            Buf {
                id,
                kind: AllocKind::Mmap,
                len,
            }
        }

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

    const SEED: u64 = 0x5eed;

    fn fill(buf: Buf, span: Span, generation: u32) -> Launch {
        Launch::Fill {
            buf,
            span,
            seed: SEED,
            generation,
        }
    }

    #[test]
    fn fill_writes_the_span_and_nothing_around_it() {
        let mut dev = FakeDevice::default();
        let buf = dev.alloc(1, 3 * PAGE_SIZE);
        run(&mut dev, &fill(buf, buf.all(), 1)).unwrap();
        // An unaligned span inside pages 0 and 1: read-modify-write of both.
        let span = Span::new(PAGE_SIZE - 8, 16);
        let faults = run(&mut dev, &fill(buf, span, 2)).unwrap();
        assert_eq!(faults, 2, "one read and one write command");
        let words = &dev.mem[&1];
        let (one, two) = (Pattern::new(SEED, 1), Pattern::new(SEED, 2));
        let edge = (PAGE_SIZE / 4 - 2) as usize;
        assert_eq!(
            words[edge - 1],
            one.word(edge as u64 - 1),
            "before the span"
        );
        for (i, w) in words.iter().enumerate().skip(edge).take(4) {
            assert_eq!(*w, two.word(i as u64), "word {i}");
        }
        assert_eq!(words[edge + 4], one.word(edge as u64 + 4), "after the span");
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

    fn verify(dev: &mut FakeDevice, buf: Buf, span: Span, generation: u32) -> (u64, u64) {
        let result = dev.alloc(99, 16);
        dev.mem.get_mut(&99).unwrap()[..4].copy_from_slice(&[0, 0, u32::MAX, u32::MAX]);
        run(
            dev,
            &Launch::Verify {
                buf,
                span,
                seed: SEED,
                generation,
                result,
            },
        )
        .unwrap();
        let r = &dev.mem[&99];
        (u64_at(r, 0), u64_at(r, 1))
    }

    #[test]
    fn verify_counts_bad_words_and_the_first_one() {
        let mut dev = FakeDevice::default();
        let buf = dev.alloc(1, 2 * PAGE_SIZE);
        run(&mut dev, &fill(buf, buf.all(), 1)).unwrap();
        assert_eq!(verify(&mut dev, buf, buf.all(), 1), (0, u64::MAX));
        dev.mem.get_mut(&1).unwrap()[1500] ^= 1;
        dev.mem.get_mut(&1).unwrap()[1030] = 0;
        assert_eq!(verify(&mut dev, buf, buf.all(), 1), (2, 1030));
        // Only the span is compared; the index stays allocation relative.
        assert_eq!(
            verify(&mut dev, buf, Span::new(1040 * 4, 1000 * 4), 1),
            (1, 1500)
        );
        assert_eq!(
            verify(&mut dev, buf, buf.all(), 2).0,
            2048,
            "another generation"
        );
    }

    #[test]
    fn the_storm_writes_every_page_once_in_its_own_command() {
        let mut dev = FakeDevice::default();
        let buf = dev.alloc(1, 7 * PAGE_SIZE);
        let storm = Launch::FaultStorm {
            buf,
            span: buf.all(),
            step: 3,
            offset: 5,
            seed: SEED,
            generation: 4,
        };
        assert_eq!(run(&mut dev, &storm).unwrap(), 7);
        assert_eq!((dev.reads, dev.writes), (0, 7));
        assert_eq!(compare(&Pattern::new(SEED, 4), 0, &dev.mem[&1]).0, 0);
    }

    #[test]
    fn touch_read_sums_the_first_word_of_every_stride_th_page() {
        let mut dev = FakeDevice::default();
        let buf = dev.alloc(1, 5 * PAGE_SIZE);
        for p in 0..5 {
            dev.mem.get_mut(&1).unwrap()[(p * WORDS_PER_PAGE) as usize] = 10 + p as u32;
        }
        let sum = dev.alloc(2, 8);
        let touch = Launch::TouchRead {
            buf,
            span: buf.all(),
            stride_pages: 2,
            sum,
        };
        run(&mut dev, &touch).unwrap();
        assert_eq!(u64_at(&dev.mem[&2], 0), 10 + 12 + 14);
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
        let copy = Launch::Copy {
            dst: b,
            dst_span: Span::new(0, 16),
            src: a,
            src_span: Span::new(4, 16),
        };
        run(&mut dev, &copy).unwrap();
        assert_eq!(dev.mem[&2][..5], [0, 6, 6, 0, 0]);
    }

    #[test]
    fn a_refused_write_is_the_kernels_error_and_a_span_outside_is_refused_first() {
        let mut dev = FakeDevice::default();
        let buf = dev.alloc(1, PAGE_SIZE);
        dev.read_only = Some(1);
        let e = run(&mut dev, &fill(buf, buf.all(), 1)).unwrap_err();
        assert!(
            matches!(e, DeviceError::GpuMemoryFault { offset: 0, .. }),
            "{e}"
        );
        let e = run(&mut dev, &fill(buf, Span::new(0, 2 * PAGE_SIZE), 1)).unwrap_err();
        assert!(matches!(e, DeviceError::OutOfBounds { .. }), "{e}");
        assert_eq!(dev.writes, 0);
    }
}
