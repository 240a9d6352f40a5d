//! The kernels of `kernels/` as the vsvm device runs them ([`crate::device::kernels::words`]):
//! the arithmetic on the CPU, every byte in and out through the device's READ, WRITE and
//! ATOMIC_INC commands, so that each access is the GPU's (its faults, the migrations they make,
//! its mapping of VRAM and of system pages). Written against [`GpuIo`] so that the commands
//! each kernel makes are tested here without the driver.
//!
//! Unlike the HMM test driver, vsvm's commands take any span, byte-exact: a kernel touches the
//! words it names and no others. ATOMIC_INC is the device's own `atomic_inc()` on each word,
//! so an increment is never a read and a write of the CPU's.

use crate::device::kernels::words::{self, WordIo};
use crate::device::kernels::Launch;
use crate::device::{Buf, Result, Span};

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

/// Runs `launch` through the device; returns the GPU faults it took.
pub fn run(io: &mut dyn GpuIo, launch: &Launch) -> Result<u64> {
    words::run(&mut Commands(io), launch)
}

/// The commands as the words the kernels are run over: one command per batch of
/// [`BATCH_BYTES`], at the words' byte offset, and an increment of `iterations` as that many
/// ATOMIC_INC commands over the span.
struct Commands<'a>(&'a mut dyn GpuIo);

impl WordIo for Commands<'_> {
    fn batch_words(&self) -> u64 {
        BATCH_BYTES / 4
    }

    fn read(&mut self, buf: Buf, first_word: u64, out: &mut [u32]) -> Result<u64> {
        self.0.read(buf, first_word * 4, out)
    }

    fn write(&mut self, buf: Buf, first_word: u64, words: &[u32]) -> Result<u64> {
        self.0.write(buf, first_word * 4, words)
    }

    fn atomic_inc(&mut self, buf: Buf, span: Span, iterations: u32) -> Result<u64> {
        let mut faults = 0;
        if span.len > 0 {
            for _ in 0..iterations {
                faults += self.0.atomic_inc(buf, span)?;
            }
        }
        Ok(faults)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::device::kernels::words::checks::{self, fill, verify, Fake, SEED};
    use crate::device::kernels::words::compare;
    use crate::device::{DeviceError, PAGE_SIZE, WORDS_PER_PAGE};
    use crate::model::pattern::Pattern;

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

    impl Fake for FakeDevice {
        fn allocations(&mut self) -> &mut HashMap<u32, Vec<u32>> {
            &mut self.mem
        }

        fn words_for(&self, len: u64) -> usize {
            (len / 4) as usize
        }

        fn run(&mut self, launch: &Launch) -> Result<u64> {
            run(self, launch)
        }
    }

    #[test]
    fn fill_writes_exactly_the_span_in_one_command_without_reading() {
        let mut dev = FakeDevice::default();
        // An unaligned span across pages 0 and 1: written as it is, nothing read first.
        let faults = checks::fill_across_a_page_edge(&mut dev);
        assert_eq!(faults, 1);
        assert_eq!(dev.log.last(), Some(&("write", 1, PAGE_SIZE - 8, 16)));
        assert_eq!(dev.ops("read"), 0);
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

    #[test]
    fn verify_counts_bad_words_and_the_first_one() {
        let mut dev = FakeDevice::default();
        checks::verify_counts_bad_words_and_the_first_one(&mut dev);
        // Only the span is read.
        assert!(dev.log.contains(&("read", 1, 1040 * 4, 1000 * 4)));
    }

    #[test]
    fn the_storm_writes_every_page_once_in_its_own_command_in_the_scattered_order() {
        let mut dev = FakeDevice::default();
        checks::a_storm_writes_every_page(&mut dev);
        let pages: Vec<u64> = dev.log.iter().map(|l| l.2 / PAGE_SIZE).collect();
        assert_eq!(pages, [5, 1, 4, 0, 3, 6, 2]);
        assert!(dev.log.iter().all(|l| l.0 == "write" && l.3 == PAGE_SIZE));
    }

    #[test]
    fn touch_read_sums_the_first_word_of_every_stride_th_page_reading_only_those() {
        let mut dev = FakeDevice::default();
        checks::touch_read_sums_the_first_word_of_every_stride_th_page(&mut dev);
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
        checks::copy_four_words(&mut dev, a, b);
        assert_eq!(dev.mem[&2][..5], [6, 7, 8, 9, 0]);
    }

    #[test]
    fn a_refused_write_is_the_kernels_error_and_a_span_outside_is_refused_first() {
        let mut dev = FakeDevice {
            read_only: Some(1),
            ..FakeDevice::default()
        };
        let buf = checks::a_refused_write_and_a_span_outside(&mut dev);
        let e = run(&mut dev, &fill(buf, Span::new(2, 4), 1)).unwrap_err();
        assert!(
            matches!(e, DeviceError::OutOfBounds { .. }),
            "unaligned: {e}"
        );
        assert!(dev.log.is_empty());
    }
}
