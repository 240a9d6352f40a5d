//! The kernels of `kernels/` as the vsvm device runs them: the arithmetic on the CPU, every
//! byte in and out through the device's READ, WRITE and ATOMIC_INC commands, so that each
//! access is the GPU's (its faults, the migrations they make, its mapping of VRAM and of
//! system pages). Written against [`GpuIo`] so that the logic is tested here without the
//! driver.
//!
//! Unlike the HMM test driver, vsvm's commands take any span, byte-exact: a kernel touches the
//! words it names and no others. ATOMIC_INC is the device's own `atomic_inc()` on each word,
//! so an increment is never a read and a write of the CPU's.

use crate::device::kernels::{storm_page, Launch};
use crate::device::{Buf, DeviceError, Result, Span, PAGE_SIZE, WORDS_PER_PAGE};
use crate::model::pattern::Pattern;

/// Bytes moved by one command: the driver copies through a 2 MiB kernel buffer anyway (no
/// range crosses a 2 MiB boundary), and 2 MiB keeps the host bounce buffers small whatever
/// the span.
pub const BATCH_BYTES: u64 = 2 << 20;

/// Device accesses of an allocation at byte offsets; each returns the GPU faults it took.
pub trait GpuIo {
    /// The GPU reads the words at byte `offset` of `buf` into `out`.
    fn read(&mut self, buf: Buf, offset: u64, out: &mut [u32]) -> Result<u64>;
    /// The GPU writes `words` at byte `offset` of `buf`.
    fn write(&mut self, buf: Buf, offset: u64, words: &[u32]) -> Result<u64>;
    /// The GPU adds one to every word of `span` of `buf`, one atomic at a time.
    fn atomic_inc(&mut self, buf: Buf, span: Span) -> Result<u64>;
}

/// `n` words at word `first_word` of `buf`, read by the GPU in batches.
fn read_words(
    io: &mut dyn GpuIo,
    buf: Buf,
    first_word: u64,
    n: u64,
    faults: &mut u64,
) -> Result<Vec<u32>> {
    let mut out = vec![0u32; n as usize];
    for chunk_start in (0..n).step_by((BATCH_BYTES / 4) as usize) {
        let end = (chunk_start + BATCH_BYTES / 4).min(n);
        let offset = (first_word + chunk_start) * 4;
        *faults += io.read(buf, offset, &mut out[chunk_start as usize..end as usize])?;
    }
    Ok(out)
}

/// `words` written by the GPU at word `first_word` of `buf`, in batches.
fn write_words(
    io: &mut dyn GpuIo,
    buf: Buf,
    first_word: u64,
    words: &[u32],
    faults: &mut u64,
) -> Result<()> {
    for (i, chunk) in words.chunks((BATCH_BYTES / 4) as usize).enumerate() {
        let offset = (first_word + i as u64 * BATCH_BYTES / 4) * 4;
        *faults += io.write(buf, offset, chunk)?;
    }
    Ok(())
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

/// The first word of the span-relative page `i` a page kernel touches (whole pages only).
fn page_word(span: Span, i: u64) -> u64 {
    span.first_word() + i * WORDS_PER_PAGE
}

/// Writes the pattern over the page whose first word is `first`.
fn write_page(
    io: &mut dyn GpuIo,
    buf: Buf,
    pattern: &Pattern,
    first: u64,
    faults: &mut u64,
) -> Result<()> {
    let mut words = vec![0u32; WORDS_PER_PAGE as usize];
    pattern.fill(first, &mut words);
    write_words(io, buf, first, &words, faults)
}

/// Runs `launch` through the device; returns the GPU faults it took.
pub fn run(io: &mut dyn GpuIo, launch: &Launch) -> Result<u64> {
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
            let pattern = Pattern::new(seed, generation);
            // In batches computed one at a time: a 64 MiB fill needs one 2 MiB buffer.
            let mut words = Vec::new();
            let mut first = span.first_word();
            let end = first + span.words();
            while first < end {
                let n = (end - first).min(BATCH_BYTES / 4);
                words.resize(n as usize, 0);
                pattern.fill(first, &mut words);
                *f += io.write(buf, first * 4, &words)?;
                first += n;
            }
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
            let (mut bad, mut min_bad) = (0u64, u64::MAX);
            let mut first = span.first_word();
            let end = first + span.words();
            while first < end {
                let n = (end - first).min(BATCH_BYTES / 4);
                let words = read_words(io, buf, first, n, f)?;
                let (b, m) = compare(&pattern, first, &words);
                bad += b;
                min_bad = min_bad.min(m);
                first += n;
            }
            let mut r = read_words(io, result, 0, 4, f)?;
            let (count, lowest) = (u64_at(&r, 0).wrapping_add(bad), u64_at(&r, 1).min(min_bad));
            set_u64(&mut r, 0, count);
            set_u64(&mut r, 1, lowest);
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
                    total += read_words(io, buf, page_word(span, i), 1, f)?[0] as u64;
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
                    write_page(io, buf, &pattern, page_word(span, i), f)?;
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
            // One command per page, in the scattered order: each is the GPU's first touch.
            for i in 0..n {
                let page = storm_page(i, step, offset, n);
                write_page(io, buf, &pattern, page_word(span, page), f)?;
            }
        }
        Launch::AtomicInc {
            buf,
            span,
            iterations,
        } => {
            inside(buf, span)?;
            if span.len > 0 {
                for _ in 0..iterations {
                    *f += io.atomic_inc(buf, span)?;
                }
            }
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
            let mut done = 0;
            while done < n {
                let count = (n - done).min(BATCH_BYTES / 4);
                let words = read_words(io, src, src_span.first_word() + done, count, f)?;
                write_words(io, dst, dst_span.first_word() + done, &words, f)?;
                done += count;
            }
        }
    }
    Ok(faults)
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

    /// Device memory as vectors of words, recording every command and refusing writes where
    /// asked.
    #[derive(Default)]
    struct FakeDevice {
        mem: HashMap<u32, Vec<u32>>,
        /// (op, buf, byte offset, bytes) of every command, in order.
        log: Vec<(&'static str, u32, u64, u64)>,
        read_only: Option<u32>,
    }

    impl FakeDevice {
        fn alloc(&mut self, id: u32, len: u64) -> Buf {
            self.mem.insert(id, vec![0; (len / 4) as usize]);
            Buf {
                id,
                kind: AllocKind::Mmap,
                len,
            }
        }

        fn words(&self, buf: Buf, offset: u64, n: usize) -> std::ops::Range<usize> {
            assert_eq!(offset % 4, 0, "word aligned");
            let start = (offset / 4) as usize;
            assert!(
                start + n <= self.mem[&buf.id].len(),
                "inside the allocation"
            );
            start..start + n
        }

        fn ops(&self, op: &str) -> usize {
            self.log.iter().filter(|l| l.0 == op).count()
        }
    }

    impl GpuIo for FakeDevice {
        fn read(&mut self, buf: Buf, offset: u64, out: &mut [u32]) -> Result<u64> {
            let r = self.words(buf, offset, out.len());
            out.copy_from_slice(&self.mem[&buf.id][r]);
            self.log
                .push(("read", buf.id, offset, out.len() as u64 * 4));
            Ok(1)
        }

        fn write(&mut self, buf: Buf, offset: u64, words: &[u32]) -> Result<u64> {
            if self.read_only == Some(buf.id) {
                return Err(DeviceError::GpuMemoryFault {
                    buf: buf.id,
                    offset,
                    reason: "EPERM".into(),
                });
            }
            let r = self.words(buf, offset, words.len());
            self.mem.get_mut(&buf.id).unwrap()[r].copy_from_slice(words);
            self.log
                .push(("write", buf.id, offset, words.len() as u64 * 4));
            Ok(1)
        }

        fn atomic_inc(&mut self, buf: Buf, span: Span) -> Result<u64> {
            let r = self.words(buf, span.offset, span.words() as usize);
            for w in &mut self.mem.get_mut(&buf.id).unwrap()[r] {
                *w = w.wrapping_add(1);
            }
            self.log.push(("inc", buf.id, span.offset, span.len));
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
    fn fill_writes_exactly_the_span_in_one_command_without_reading() {
        let mut dev = FakeDevice::default();
        let buf = dev.alloc(1, 3 * PAGE_SIZE);
        run(&mut dev, &fill(buf, buf.all(), 1)).unwrap();
        // An unaligned span across pages 0 and 1: written as it is, nothing read first.
        let span = Span::new(PAGE_SIZE - 8, 16);
        let faults = run(&mut dev, &fill(buf, span, 2)).unwrap();
        assert_eq!(faults, 1);
        assert_eq!(dev.log.last(), Some(&("write", 1, PAGE_SIZE - 8, 16)));
        assert_eq!(dev.ops("read"), 0);
        let words = &dev.mem[&1];
        let (one, two) = (Pattern::new(SEED, 1), Pattern::new(SEED, 2));
        let edge = (PAGE_SIZE / 4 - 2) as usize;
        assert_eq!(words[edge - 1], one.word(edge as u64 - 1), "before");
        for (i, w) in words.iter().enumerate().skip(edge).take(4) {
            assert_eq!(*w, two.word(i as u64), "word {i}");
        }
        assert_eq!(words[edge + 4], one.word(edge as u64 + 4), "after");
    }

    #[test]
    fn a_large_fill_and_verify_go_in_batches() {
        let mut dev = FakeDevice::default();
        let buf = dev.alloc(1, BATCH_BYTES + 3 * PAGE_SIZE);
        run(&mut dev, &fill(buf, buf.all(), 1)).unwrap();
        assert_eq!(dev.ops("write"), 2);
        assert_eq!(dev.log[1], ("write", 1, BATCH_BYTES, 3 * PAGE_SIZE));
        assert_eq!(compare(&Pattern::new(SEED, 1), 0, &dev.mem[&1]).0, 0);
        assert_eq!(verify(&mut dev, buf, buf.all(), 1), (0, u64::MAX));
        // Two batches of the span, then the result read and written.
        assert_eq!(dev.ops("read"), 3);
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
        // Only the span is compared and read; the index stays allocation relative.
        assert_eq!(
            verify(&mut dev, buf, Span::new(1040 * 4, 1000 * 4), 1),
            (1, 1500)
        );
        assert!(dev.log.contains(&("read", 1, 1040 * 4, 1000 * 4)));
        assert_eq!(
            verify(&mut dev, buf, buf.all(), 2).0,
            2048,
            "another generation"
        );
    }

    #[test]
    fn the_storm_writes_every_page_once_in_its_own_command_in_the_scattered_order() {
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
        let pages: Vec<u64> = dev.log.iter().map(|l| l.2 / PAGE_SIZE).collect();
        assert_eq!(pages, [5, 1, 4, 0, 3, 6, 2]);
        assert!(dev.log.iter().all(|l| l.0 == "write" && l.3 == PAGE_SIZE));
        assert_eq!(compare(&Pattern::new(SEED, 4), 0, &dev.mem[&1]).0, 0);
    }

    #[test]
    fn touch_read_sums_the_first_word_of_every_stride_th_page_reading_only_those() {
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
        let reads: Vec<_> = dev.log.iter().filter(|l| l.1 == 1).collect();
        assert_eq!(reads.len(), 3);
        assert!(reads.iter().all(|l| l.0 == "read" && l.3 == 4));
    }

    #[test]
    fn touch_write_writes_whole_pages_and_leaves_a_partial_last_page() {
        let mut dev = FakeDevice::default();
        let buf = dev.alloc(1, 3 * PAGE_SIZE);
        let touch = Launch::TouchWrite {
            buf,
            span: Span::new(0, 2 * PAGE_SIZE + 8),
            stride_pages: 1,
            seed: SEED,
            generation: 1,
        };
        run(&mut dev, &touch).unwrap();
        assert_eq!(dev.ops("write"), 2);
        assert_eq!(dev.mem[&1][2 * WORDS_PER_PAGE as usize], 0);
    }

    #[test]
    fn atomic_inc_is_the_devices_increment_once_per_iteration() {
        let mut dev = FakeDevice::default();
        let a = dev.alloc(1, PAGE_SIZE);
        let inc = Launch::AtomicInc {
            buf: a,
            span: Span::new(8, 8),
            iterations: 3,
        };
        assert_eq!(run(&mut dev, &inc).unwrap(), 3);
        assert_eq!(dev.mem[&1][..5], [0, 0, 3, 3, 0]);
        assert_eq!(
            (dev.ops("inc"), dev.ops("read"), dev.ops("write")),
            (3, 0, 0)
        );
    }

    #[test]
    fn copy_reads_the_source_and_writes_the_destination() {
        let mut dev = FakeDevice::default();
        let a = dev.alloc(1, PAGE_SIZE);
        let b = dev.alloc(2, PAGE_SIZE);
        dev.mem.get_mut(&1).unwrap()[1..5].copy_from_slice(&[6, 7, 8, 9]);
        let copy = Launch::Copy {
            dst: b,
            dst_span: Span::new(0, 16),
            src: a,
            src_span: Span::new(4, 16),
        };
        run(&mut dev, &copy).unwrap();
        assert_eq!(dev.mem[&2][..5], [6, 7, 8, 9, 0]);
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
        let e = run(&mut dev, &fill(buf, Span::new(2, 4), 1)).unwrap_err();
        assert!(
            matches!(e, DeviceError::OutOfBounds { .. }),
            "unaligned: {e}"
        );
        assert!(dev.log.is_empty());
    }
}
