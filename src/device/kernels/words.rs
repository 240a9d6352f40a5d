//! The kernels of `kernels/` run on the CPU, every word in and out through a device: the GPU
//! work of the kernel-driver backends (vsvm, dmirror), whose devices have commands that read
//! and write memory but run no code. Each access is the device's (its faults, the migrations
//! they make, its mapping of device and of system pages); only the arithmetic is the CPU's.
//!
//! [`run`] interprets a [`Launch`] over [`WordIo`], the device's word accesses. A backend
//! whose device moves other units adapts its commands to words in its own `kernels` module:
//! vsvm's commands take byte spans, the HMM test driver's whole pages (read-modify-write).

use std::collections::HashMap;
use std::time::Instant;

use super::{storm_page, Launch};
use crate::device::{
    Buf, DeviceError, KernelRun, Pending, Result, Span, PAGE_SIZE, WORDS_PER_PAGE,
};
use crate::model::pattern::Pattern;

/// A device's accesses of an allocation, word by word; each returns the device faults it
/// took.
pub trait WordIo {
    /// The most words one read or write is given, at least one: a fill, verify or copy goes in
    /// pieces of this many from the start of its span, so that the host's buffers stay that
    /// small. `u64::MAX` gives each span whole, for a device that cuts it up itself.
    fn batch_words(&self) -> u64;
    /// The device reads words `first_word ..` of `buf` into `out`.
    fn read(&mut self, buf: Buf, first_word: u64, out: &mut [u32]) -> Result<u64>;
    /// The device writes `words` over words `first_word ..` of `buf`.
    fn write(&mut self, buf: Buf, first_word: u64, words: &[u32]) -> Result<u64>;
    /// The device adds `iterations` to every word of `span` of `buf`: the atomic_inc kernel,
    /// with the device's own atomics where it has them.
    fn atomic_inc(&mut self, buf: Buf, span: Span, iterations: u32) -> Result<u64>;
}

/// Runs `launch` through the device; returns the device faults it took.
pub fn run(io: &mut dyn WordIo, launch: &Launch) -> Result<u64> {
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
            // One batch computed at a time: a 64 MiB fill needs one batch of host memory.
            let mut words = Vec::new();
            for (first, n) in batches(span.first_word(), span.words(), io.batch_words()) {
                words.resize(n as usize, 0);
                pattern.fill(first, &mut words);
                write_words(io, buf, first, &words, f)?;
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
            for (first, n) in batches(span.first_word(), span.words(), io.batch_words()) {
                let words = read_words(io, buf, first, n, f)?;
                let (b, m) = compare(&pattern, first, &words);
                bad += b;
                min_bad = min_bad.min(m);
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
            // One write per page, in the scattered order: each is the device's first touch.
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
            *f += io.atomic_inc(buf, span, iterations)?;
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
            for (done, count) in batches(0, n, io.batch_words()) {
                let words = read_words(io, src, src_span.first_word() + done, count, f)?;
                write_words(io, dst, dst_span.first_word() + done, &words, f)?;
            }
        }
    }
    Ok(faults)
}

/// The launches of a device that runs them with [`run`], which finishes each inside
/// `launch_async`: their results, kept until `wait` collects them.
#[derive(Default)]
pub struct Finished {
    runs: HashMap<u64, Result<KernelRun>>,
    next: u64,
}

impl Finished {
    /// Keeps what [`run`] returned for a launch started at `clock`, timed now; the handle
    /// [`Finished::take`] gives it back for.
    pub fn keep(&mut self, clock: Instant, faults: Result<u64>) -> Pending {
        let run = faults.map(|faults| KernelRun {
            elapsed: clock.elapsed(),
            faults: Some(faults),
        });
        let id = self.next;
        self.next += 1;
        self.runs.insert(id, run);
        Pending(id)
    }

    /// What launch `pending` came to; an error for a launch never started here.
    pub fn take(&mut self, pending: Pending) -> Result<KernelRun> {
        self.runs.remove(&pending.0).unwrap_or_else(|| {
            Err(DeviceError::Backend(format!(
                "launch {} was never started here",
                pending.0
            )))
        })
    }
}

/// Words `first .. first + n` in pieces of at most `batch`, from `first` on: each piece's
/// first word and length.
fn batches(first: u64, n: u64, batch: u64) -> impl Iterator<Item = (u64, u64)> {
    let end = first + n;
    let mut at = first;
    std::iter::from_fn(move || {
        let piece = (at < end).then(|| (at, (end - at).min(batch)))?;
        at += piece.1;
        Some(piece)
    })
}

/// `n` words at word `first_word` of `buf`, read by the device in batches.
fn read_words(
    io: &mut dyn WordIo,
    buf: Buf,
    first_word: u64,
    n: u64,
    faults: &mut u64,
) -> Result<Vec<u32>> {
    let mut out = vec![0u32; n as usize];
    for (first, count) in batches(first_word, n, io.batch_words()) {
        let at = (first - first_word) as usize;
        *faults += io.read(buf, first, &mut out[at..at + count as usize])?;
    }
    Ok(out)
}

/// `words` written by the device at word `first_word` of `buf`, in batches.
fn write_words(
    io: &mut dyn WordIo,
    buf: Buf,
    first_word: u64,
    words: &[u32],
    faults: &mut u64,
) -> Result<()> {
    for (first, count) in batches(first_word, words.len() as u64, io.batch_words()) {
        let at = (first - first_word) as usize;
        *faults += io.write(buf, first, &words[at..at + count as usize])?;
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

/// The little-endian u64 `i` of `words` (the verify result and the touch sum are u64 at the
/// start of their allocations).
pub(crate) fn u64_at(words: &[u32], i: usize) -> u64 {
    words[2 * i] as u64 | (words[2 * i + 1] as u64) << 32
}

/// Sets the little-endian u64 `i` of `words` to `v`.
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
    io: &mut dyn WordIo,
    buf: Buf,
    pattern: &Pattern,
    first: u64,
    faults: &mut u64,
) -> Result<()> {
    let mut words = vec![0u32; WORDS_PER_PAGE as usize];
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

/// The kernels' results as each backend's tests check them, through its own adapter over a fake
/// device of its own (the commands each adapter makes are checked there).
#[cfg(test)]
pub(crate) mod checks {
    use std::collections::HashMap;

    use super::{compare, u64_at};
    use crate::device::kernels::Launch;
    use crate::device::{AllocKind, Buf, DeviceError, Result, Span, PAGE_SIZE, WORDS_PER_PAGE};
    use crate::model::pattern::Pattern;

    /// A backend's fake device as the checks drive it: its memory, words by allocation id.
    pub(crate) trait Fake {
        /// The words of every allocation, by id.
        fn allocations(&mut self) -> &mut HashMap<u32, Vec<u32>>;
        /// The words an allocation of `len` bytes holds on this device.
        fn words_for(&self, len: u64) -> usize;
        /// The backend's `run` of `launch` over this device.
        fn run(&mut self, launch: &Launch) -> Result<u64>;

        /// Allocation `id` of `len` bytes, all zero.
        fn alloc(&mut self, id: u32, len: u64) -> Buf {
            let words = self.words_for(len);
            self.allocations().insert(id, vec![0; words]);
            Buf {
                id,
                kind: AllocKind::Mmap,
                len,
            }
        }

        /// The words of allocation `id`.
        fn mem(&mut self, id: u32) -> &mut Vec<u32> {
            self.allocations().get_mut(&id).unwrap()
        }
    }

    pub(crate) const SEED: u64 = 0x5eed;

    pub(crate) fn fill(buf: Buf, span: Span, generation: u32) -> Launch {
        Launch::Fill {
            buf,
            span,
            seed: SEED,
            generation,
        }
    }

    /// Fills allocation 1, three pages, with generation 1, then 16 bytes across the end of its
    /// first page with generation 2; checks that those four words changed and no other, and
    /// returns the faults of the second fill.
    pub(crate) fn fill_across_a_page_edge(dev: &mut dyn Fake) -> u64 {
        let buf = dev.alloc(1, 3 * PAGE_SIZE);
        dev.run(&fill(buf, buf.all(), 1)).unwrap();
        let span = Span::new(PAGE_SIZE - 8, 16);
        let faults = dev.run(&fill(buf, span, 2)).unwrap();
        let words = dev.mem(1);
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
        faults
    }

    /// Verifies `span` of `buf` against `generation` into a fresh result, allocation 99;
    /// returns the count and the lowest bad word.
    pub(crate) fn verify(dev: &mut dyn Fake, buf: Buf, span: Span, generation: u32) -> (u64, u64) {
        let result = dev.alloc(99, 16);
        dev.mem(99)[..4].copy_from_slice(&[0, 0, u32::MAX, u32::MAX]);
        dev.run(&Launch::Verify {
            buf,
            span,
            seed: SEED,
            generation,
            result,
        })
        .unwrap();
        let r = dev.mem(99);
        (u64_at(r, 0), u64_at(r, 1))
    }

    /// Verify counts the bad words of its span alone and finds the lowest, allocation relative.
    pub(crate) fn verify_counts_bad_words_and_the_first_one(dev: &mut dyn Fake) {
        let buf = dev.alloc(1, 2 * PAGE_SIZE);
        dev.run(&fill(buf, buf.all(), 1)).unwrap();
        assert_eq!(verify(dev, buf, buf.all(), 1), (0, u64::MAX));
        dev.mem(1)[1500] ^= 1;
        dev.mem(1)[1030] = 0;
        assert_eq!(verify(dev, buf, buf.all(), 1), (2, 1030));
        assert_eq!(
            verify(dev, buf, Span::new(1040 * 4, 1000 * 4), 1),
            (1, 1500)
        );
        assert_eq!(verify(dev, buf, buf.all(), 2).0, 2048, "another generation");
    }

    /// A fault storm over allocation 1, seven pages, writes the pattern over every page, one
    /// write (one fault here) each.
    pub(crate) fn a_storm_writes_every_page(dev: &mut dyn Fake) {
        let buf = dev.alloc(1, 7 * PAGE_SIZE);
        let storm = Launch::FaultStorm {
            buf,
            span: buf.all(),
            step: 3,
            offset: 5,
            seed: SEED,
            generation: 4,
        };
        assert_eq!(dev.run(&storm).unwrap(), 7);
        assert_eq!(compare(&Pattern::new(SEED, 4), 0, dev.mem(1)).0, 0);
    }

    /// A touch of every other page of allocation 1, five pages, sums their first words into
    /// allocation 2.
    pub(crate) fn touch_read_sums_the_first_word_of_every_stride_th_page(dev: &mut dyn Fake) {
        let buf = dev.alloc(1, 5 * PAGE_SIZE);
        for p in 0..5 {
            dev.mem(1)[(p * WORDS_PER_PAGE) as usize] = 10 + p as u32;
        }
        let sum = dev.alloc(2, 8);
        let touch = Launch::TouchRead {
            buf,
            span: buf.all(),
            stride_pages: 2,
            sum,
        };
        dev.run(&touch).unwrap();
        assert_eq!(u64_at(dev.mem(2), 0), 10 + 12 + 14);
    }

    /// Copies words 1 ..= 4 of `src` over words 0 .. 4 of `dst`.
    pub(crate) fn copy_four_words(dev: &mut dyn Fake, src: Buf, dst: Buf) {
        let copy = Launch::Copy {
            dst,
            dst_span: Span::new(0, 16),
            src,
            src_span: Span::new(4, 16),
        };
        dev.run(&copy).unwrap();
    }

    /// A fill of allocation 1, one page the device refuses to write, is the device's error; a
    /// fill past its end is refused before the device is asked. Returns the allocation.
    pub(crate) fn a_refused_write_and_a_span_outside(dev: &mut dyn Fake) -> Buf {
        let buf = dev.alloc(1, PAGE_SIZE);
        let e = dev.run(&fill(buf, buf.all(), 1)).unwrap_err();
        assert!(
            matches!(e, DeviceError::GpuMemoryFault { offset: 0, .. }),
            "{e}"
        );
        let e = dev
            .run(&fill(buf, Span::new(0, 2 * PAGE_SIZE), 1))
            .unwrap_err();
        assert!(matches!(e, DeviceError::OutOfBounds { .. }), "{e}");
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::AllocKind;

    /// One allocation of words, taking reads and writes of at most `batch` words and logging
    /// each as (write, first word, words).
    struct Words {
        mem: Vec<u32>,
        batch: u64,
        log: Vec<(bool, u64, usize)>,
    }

    impl WordIo for Words {
        fn batch_words(&self) -> u64 {
            self.batch
        }

        fn read(&mut self, _: Buf, first_word: u64, out: &mut [u32]) -> Result<u64> {
            assert!(out.len() as u64 <= self.batch);
            let at = first_word as usize;
            out.copy_from_slice(&self.mem[at..at + out.len()]);
            self.log.push((false, first_word, out.len()));
            Ok(0)
        }

        fn write(&mut self, _: Buf, first_word: u64, words: &[u32]) -> Result<u64> {
            assert!(words.len() as u64 <= self.batch);
            let at = first_word as usize;
            self.mem[at..at + words.len()].copy_from_slice(words);
            self.log.push((true, first_word, words.len()));
            Ok(1)
        }

        fn atomic_inc(&mut self, _: Buf, _: Span, _: u32) -> Result<u64> {
            unreachable!("no increment here")
        }
    }

    const BUF: Buf = Buf {
        id: 1,
        kind: AllocKind::Mmap,
        len: 4 * PAGE_SIZE,
    };

    #[test]
    fn spans_go_in_batches_from_their_first_word_and_an_empty_one_in_none() {
        let mut dev = Words {
            mem: vec![0; 4 * WORDS_PER_PAGE as usize],
            batch: 1000,
            log: Vec::new(),
        };
        let fill = |span| Launch::Fill {
            buf: BUF,
            span,
            seed: 1,
            generation: 1,
        };
        assert_eq!(run(&mut dev, &fill(Span::new(8, 2400 * 4))).unwrap(), 3);
        assert_eq!(
            dev.log,
            [(true, 2, 1000), (true, 1002, 1000), (true, 2002, 400)]
        );
        assert_eq!(compare(&Pattern::new(1, 1), 2, &dev.mem[2..2402]).0, 0);
        dev.log.clear();
        assert_eq!(run(&mut dev, &fill(Span::new(8, 0))).unwrap(), 0);
        assert!(dev.log.is_empty());
    }

    #[test]
    fn the_verify_result_and_the_touch_sum_are_little_endian_u64() {
        let mut words = [0u32; 4];
        set_u64(&mut words, 1, 0x1234_5678_9abc_def0);
        assert_eq!(words, [0, 0, 0x9abc_def0, 0x1234_5678]);
        assert_eq!(u64_at(&words, 1), 0x1234_5678_9abc_def0);
    }
}
