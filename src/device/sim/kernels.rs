//! Rust twins of the kernels in `kernels/`, with the semantics of [`Launch`]'s doc comments.
//! Each runs as steps, one page (or span-relative page block) per step, in the order a GPU
//! reaches them: in order for fill, verify, touch, atomic and copy, the permutation
//! `(i * step + offset) % pages` for the fault storm. Every step takes GPU faults per the
//! policy as it goes. A launch that is not waited for is pending: an operation of the same
//! process first runs a seed-chosen part of it, the rest runs at `wait`, which is how a case
//! races a prefetch or a CPU access against a running kernel, deterministically.

use super::exec::{Exec, Gathered, Home, Progress, HANG};
use super::gpu::Gpu;
use super::object::Pid;
use super::space::{check_words, Space};
use super::store::PAGE_WORDS;
use crate::device::kernels::{storm_page, Launch};
use crate::device::{Buf, DeviceError, KernelRun, Pending, Result, Span, WORDS_PER_PAGE};
use crate::model::pattern::Pattern;

/// Words one step reads or writes in one allocation, `weight` accesses per word (atomics
/// repeat).
#[derive(Clone, Copy, Debug)]
struct Access {
    buf: Buf,
    first: u64,
    end: u64,
    write: bool,
    weight: u64,
}

impl Access {
    fn read(buf: Buf, (first, end): (u64, u64)) -> Access {
        Access {
            buf,
            first,
            end,
            write: false,
            weight: 1,
        }
    }

    fn write(buf: Buf, words: (u64, u64)) -> Access {
        Access {
            write: true,
            ..Access::read(buf, words)
        }
    }

    fn pages(&self) -> std::ops::Range<u64> {
        if self.end <= self.first {
            return 0..0;
        }
        self.first / WORDS_PER_PAGE..(self.end - 1) / WORDS_PER_PAGE + 1
    }
}

/// Page-sized blocks of a span, counted from its start (touch and storm kernels index pages
/// relative to the pointer they are given, `base + span.offset`).
fn blocks(span: Span) -> u64 {
    span.words().div_ceil(WORDS_PER_PAGE)
}

fn span_words(span: Span) -> (u64, u64) {
    (span.first_word(), span.first_word() + span.words())
}

/// The span's words on allocation page `page`.
fn page_part(span: Span, page: u64) -> (u64, u64) {
    let (lo, hi) = span_words(span);
    (
        lo.max(page * WORDS_PER_PAGE),
        hi.min((page + 1) * WORDS_PER_PAGE),
    )
}

/// The span's words in span-relative block `block`.
fn block_part(span: Span, block: u64) -> (u64, u64) {
    let (lo, hi) = span_words(span);
    (
        lo + block * WORDS_PER_PAGE,
        hi.min(lo + (block + 1) * WORDS_PER_PAGE),
    )
}

fn page_count(span: Span) -> u64 {
    let pages = span.page_range();
    pages.end - pages.start
}

fn steps(launch: &Launch) -> u64 {
    match launch {
        Launch::Fill { span, .. }
        | Launch::Verify { span, .. }
        | Launch::AtomicInc { span, .. } => page_count(*span),
        Launch::TouchRead {
            span, stride_pages, ..
        }
        | Launch::TouchWrite {
            span, stride_pages, ..
        } => blocks(*span).div_ceil(*stride_pages),
        Launch::FaultStorm { span, .. } => blocks(*span),
        Launch::Copy { dst_span, .. } => page_count(*dst_span),
    }
}

/// What step `i` reads and writes, in that order.
fn accesses(launch: &Launch, i: u64) -> [Option<Access>; 2] {
    let nth_page = |span: &Span| page_part(*span, span.page_range().start + i);
    let one = |a: Access| [Some(a), None];
    match launch {
        Launch::Fill { buf, span, .. } => one(Access::write(*buf, nth_page(span))),
        Launch::Verify { buf, span, .. } => one(Access::read(*buf, nth_page(span))),
        Launch::AtomicInc {
            buf,
            span,
            iterations,
        } => one(Access {
            weight: *iterations as u64,
            ..Access::write(*buf, nth_page(span))
        }),
        Launch::TouchRead {
            buf,
            span,
            stride_pages,
            ..
        } => {
            let (lo, _) = block_part(*span, i * stride_pages);
            one(Access::read(*buf, (lo, lo + 1)))
        }
        Launch::TouchWrite {
            buf,
            span,
            stride_pages,
            ..
        } => one(Access::write(*buf, block_part(*span, i * stride_pages))),
        Launch::FaultStorm {
            buf,
            span,
            step,
            offset,
            ..
        } => {
            let block = storm_page(i, *step, *offset, blocks(*span));
            one(Access::write(*buf, block_part(*span, block)))
        }
        Launch::Copy {
            dst,
            dst_span,
            src,
            src_span,
        } => {
            let (lo, hi) = nth_page(dst_span);
            let from = src_span.first_word() + (lo - dst_span.first_word());
            [
                Some(Access::read(*src, (from, from + (hi - lo)))),
                Some(Access::write(*dst, (lo, hi))),
            ]
        }
    }
}

/// The result a kernel writes when it ends: verify's two u64, touch-read's sum.
fn epilogue(launch: &Launch) -> Option<Access> {
    match launch {
        Launch::Verify { result, .. } => Some(Access::write(*result, (0, 4))),
        Launch::TouchRead { sum, .. } => Some(Access::write(*sum, (0, 2))),
        _ => None,
    }
}

/// Every buffer exists and every span fits in it, in whole words; the arguments make sense.
fn validate(launch: &Launch, space: &Space) -> Result<()> {
    let spans: Vec<(Buf, Span)> = match launch {
        Launch::Fill { buf, span, .. }
        | Launch::TouchWrite { buf, span, .. }
        | Launch::FaultStorm { buf, span, .. }
        | Launch::AtomicInc { buf, span, .. } => vec![(*buf, *span)],
        Launch::Verify {
            buf, span, result, ..
        } => vec![(*buf, *span), (*result, Span::new(0, 16))],
        Launch::TouchRead { buf, span, sum, .. } => vec![(*buf, *span), (*sum, Span::new(0, 8))],
        Launch::Copy {
            dst,
            dst_span,
            src,
            src_span,
        } => vec![(*dst, *dst_span), (*src, *src_span)],
    };
    for (buf, span) in spans {
        check_words(&space.get(buf.id)?.buf, span)?;
    }
    match launch {
        Launch::TouchRead {
            stride_pages: 0, ..
        }
        | Launch::TouchWrite {
            stride_pages: 0, ..
        } => Err(DeviceError::Backend(format!(
            "{}: stride_pages must be at least 1",
            launch.symbol()
        ))),
        Launch::Copy {
            dst_span, src_span, ..
        } if dst_span.len != src_span.len => Err(DeviceError::Backend(format!(
            "svm_copy: dst_span {dst_span} and src_span {src_span} differ in length"
        ))),
        _ => Ok(()),
    }
}

impl Gpu {
    /// Starts a kernel: checked in full first, so a kernel that would hit an unmapped or
    /// read-only page fails here at the first page it would reach, having written nothing.
    pub(super) fn launch_async(&mut self, pid: Pid, launch: &Launch) -> Result<Pending> {
        validate(launch, &self.processes[pid].space)?;
        self.preflight(pid, launch)?;
        self.processes[pid].used_gpu = true;
        let id = self.processes[pid].next_launch;
        self.processes[pid].next_launch += 1;
        let mut exec = Exec {
            id,
            launch: launch.clone(),
            steps: steps(launch),
            done: 0,
            progress: Progress {
                meter: self.clock.meter(),
                faults: 0,
            },
            gathered: Gathered {
                bad: 0,
                min_bad: u64::MAX,
                sum: 0,
                lost_update: false,
            },
            hung: self.breaks.storm_hang && matches!(launch, Launch::FaultStorm { .. }),
            failed: None,
        };
        let ns = self.clock.launch_ns();
        self.clock.charge(&mut exec.progress.meter, ns);
        self.processes[pid].queue.push_back(exec);
        Ok(Pending(id))
    }

    fn preflight(&self, pid: Pid, launch: &Launch) -> Result<()> {
        let space = &self.processes[pid].space;
        let readonly_writes_ok = self.breaks.readonly_gpu_write_allowed;
        let all = (0..steps(launch))
            .flat_map(|i| accesses(launch, i))
            .flatten()
            .chain(epilogue(launch));
        for access in all {
            let alloc = space.get(access.buf.id)?;
            for page in access.pages() {
                let byte = (page * WORDS_PER_PAGE).max(access.first) * 4;
                alloc.check_gpu(page, access.write, byte, readonly_writes_ok)?;
            }
        }
        Ok(())
    }

    /// Another operation of this process is about to run: the launch at the head of the
    /// stream first gets through a seed-chosen 1/8 to 7/8 of its remaining work.
    pub(super) fn race_pending(&mut self, pid: Pid) {
        let Some(mut exec) = self.processes[pid].queue.pop_front() else {
            return;
        };
        let remaining = exec.steps - exec.done;
        if remaining > 0 && !exec.hung && exec.failed.is_none() {
            let eighths = 1 + self.processes[pid].rng.below(7);
            let upto = exec.done + (remaining * eighths / 8).max(1);
            self.advance(pid, &mut exec, upto);
        }
        self.processes[pid].queue.push_front(exec);
    }

    /// Completes launches in stream order up to `pending` and returns its result.
    pub(super) fn wait(&mut self, pid: Pid, pending: Pending) -> Result<KernelRun> {
        let id = pending.0;
        loop {
            if let Some(result) = self.processes[pid].finished.remove(&id) {
                return result;
            }
            let Some(exec) = self.processes[pid].queue.pop_front() else {
                return Err(DeviceError::Backend(format!(
                    "launch {id} is not pending: never started, or already waited for"
                )));
            };
            let done = exec.id;
            let result = self.complete(pid, exec);
            self.processes[pid].finished.insert(done, result);
        }
    }

    fn complete(&mut self, pid: Pid, mut exec: Exec) -> Result<KernelRun> {
        if exec.hung {
            self.clock
                .charge(&mut exec.progress.meter, HANG.as_nanos() as f64);
            return Err(DeviceError::Timeout(HANG));
        }
        let all = exec.steps;
        self.advance(pid, &mut exec, all);
        if let Some(error) = exec.failed {
            return Err(error);
        }
        self.write_result(pid, &mut exec)?;
        Ok(KernelRun {
            elapsed: exec.progress.meter.duration(),
            faults: Some(exec.progress.faults),
        })
    }

    /// Runs steps until `upto` are done or one fails (an unmap raced the kernel).
    fn advance(&mut self, pid: Pid, exec: &mut Exec, upto: u64) {
        while exec.done < upto.min(exec.steps) && exec.failed.is_none() {
            if let Err(error) = self.step(pid, exec, exec.done) {
                exec.failed = Some(error);
            }
            exec.done += 1;
        }
    }

    fn step(&mut self, pid: Pid, exec: &mut Exec, i: u64) -> Result<()> {
        let lose_update = self.breaks.lost_atomic_update;
        let Exec {
            launch,
            progress,
            gathered,
            ..
        } = exec;
        let [Some(first), second] = accesses(launch, i) else {
            return Ok(());
        };
        match launch {
            Launch::Fill {
                seed, generation, ..
            }
            | Launch::TouchWrite {
                seed, generation, ..
            }
            | Launch::FaultStorm {
                seed, generation, ..
            } => {
                let pattern = Pattern::new(*seed, *generation);
                self.gpu_words(pid, first, progress, |at, words, _| pattern.fill(at, words))
            }
            Launch::Verify {
                seed, generation, ..
            } => {
                let pattern = Pattern::new(*seed, *generation);
                self.gpu_words(pid, first, progress, |at, words, _| {
                    gathered.verify(&pattern, at, words)
                })
            }
            Launch::TouchRead { .. } => self.gpu_words(pid, first, progress, |_, words, _| {
                gathered.sum = gathered.sum.wrapping_add(words[0] as u64)
            }),
            Launch::AtomicInc { iterations, .. } => {
                self.gpu_words(pid, first, progress, |_, words, migrated| {
                    for w in words.iter_mut() {
                        *w = w.wrapping_add(*iterations);
                    }
                    if lose_update && migrated && !gathered.lost_update {
                        words[0] = words[0].wrapping_sub(1);
                        gathered.lost_update = true;
                    }
                })
            }
            Launch::Copy { .. } => {
                let mut staged = [0u32; PAGE_WORDS];
                let mut n = 0;
                self.gpu_words(pid, first, progress, |_, words, _| {
                    staged[n..n + words.len()].copy_from_slice(words);
                    n += words.len();
                })?;
                let Some(second) = second else {
                    return Ok(());
                };
                let mut at = 0;
                self.gpu_words(pid, second, progress, |_, words, _| {
                    let k = words.len();
                    words.copy_from_slice(&staged[at..at + k]);
                    at += k;
                })
            }
        }
    }

    /// Verify adds its count into `result[0]` and takes the minimum into `result[1]`;
    /// touch-read adds its sum into `sum[0]`.
    fn write_result(&mut self, pid: Pid, exec: &mut Exec) -> Result<()> {
        let Some(access) = epilogue(&exec.launch) else {
            return Ok(());
        };
        let verify = matches!(exec.launch, Launch::Verify { .. });
        let g = exec.gathered;
        self.gpu_words(pid, access, &mut exec.progress, |_, words, _| {
            if verify {
                set_u64(words, 0, get_u64(words, 0).wrapping_add(g.bad));
                set_u64(words, 2, get_u64(words, 2).min(g.min_bad));
            } else {
                set_u64(words, 0, get_u64(words, 0).wrapping_add(g.sum));
            }
        })
    }

    /// Calls `f` with the words of `access` page by page (allocation word index of the first
    /// one, the words, whether reaching the page migrated it), reaching each page as the GPU
    /// does and charging the bytes at VRAM or link speed.
    fn gpu_words(
        &mut self,
        pid: Pid,
        access: Access,
        progress: &mut Progress,
        mut f: impl FnMut(u64, &mut [u32], bool),
    ) -> Result<()> {
        let mut word = access.first;
        while word < access.end {
            let page = word / WORDS_PER_PAGE;
            let stop = access.end.min((page + 1) * WORDS_PER_PAGE);
            let reach =
                self.gpu_reach(pid, access.buf.id, page, access.write, word * 4, progress)?;
            let bytes = (stop - word) * 4 * access.weight;
            let ns = match reach.home {
                Home::Vram(_) => self.clock.vram_ns(bytes),
                Home::System => self.clock.remote_ns(bytes),
            };
            self.clock.charge(&mut progress.meter, ns);
            let words = match reach.home {
                Home::Vram(frame) => self.vram.frame_mut(frame),
                Home::System => self.objects[reach.object].sys.page_mut(page),
            };
            let base = page * WORDS_PER_PAGE;
            f(
                word,
                &mut words[(word - base) as usize..(stop - base) as usize],
                reach.migrated,
            );
            word = stop;
        }
        Ok(())
    }
}

/// The u64 at word `at`, stored little-endian as two words, as the GPU stores it.
fn get_u64(words: &[u32], at: usize) -> u64 {
    words[at] as u64 | (words[at + 1] as u64) << 32
}

fn set_u64(words: &mut [u32], at: usize, value: u64) {
    words[at] = value as u32;
    words[at + 1] = (value >> 32) as u32;
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use crate::device::kernels::Launch;
    use crate::device::sim::testutil::*;
    use crate::device::{AllocKind, Buf, Device, DeviceError, Location, Pending, Span, Trigger};

    fn verify(dev: &mut dyn Device, buf: Buf, span: Span, generation: u32) -> (u64, u64) {
        let result = dev.alloc(AllocKind::Managed, 16).unwrap();
        dev.cpu_write(result, result.all(), &[0, 0, u32::MAX, u32::MAX])
            .unwrap();
        let launch = Launch::Verify {
            buf,
            span,
            seed: SEED,
            generation,
            result,
        };
        dev.launch(&launch).unwrap();
        let w = cpu_words(dev, result, result.all());
        dev.free(result).unwrap();
        (
            w[0] as u64 | (w[1] as u64) << 32,
            w[2] as u64 | (w[3] as u64) << 32,
        )
    }

    #[test]
    fn verify_counts_bad_words_and_finds_the_lowest() {
        let mut dev = device();
        let buf = dev.alloc(AllocKind::Managed, 64 << 10).unwrap();
        gpu_fill(&mut dev, buf, buf.all(), 1);
        assert_eq!(verify(&mut dev, buf, buf.all(), 1), (0, u64::MAX));
        dev.cpu_write(buf, Span::new(4 * 5000, 8), &[1, 2]).unwrap();
        dev.cpu_write(buf, Span::new(4 * 9000, 4), &[3]).unwrap();
        assert_eq!(verify(&mut dev, buf, buf.all(), 1), (3, 5000));
        assert_eq!(
            verify(&mut dev, buf, Span::new(4 * 6000, 4 * 4000), 1),
            (1, 9000)
        );
        assert_eq!(verify(&mut dev, buf, buf.all(), 2).0, 16 * 1024);
    }

    #[rstest]
    #[case::aligned(Span::pages(1, 15), 3, vec![1024, 4096, 7168, 10240, 13312])]
    #[case::mid_page(Span::new(2048, 5 * 4096), 2, vec![512, 2560, 4608])]
    fn touch_read_sums_the_first_word_of_every_strided_page(
        #[case] span: Span,
        #[case] stride_pages: u64,
        #[case] words: Vec<u64>,
    ) {
        let mut dev = device();
        let buf = dev.alloc(AllocKind::Managed, 64 << 10).unwrap();
        cpu_fill(&mut dev, buf, buf.all(), 1);
        let sum = dev.alloc(AllocKind::Managed, 8).unwrap();
        dev.launch(&Launch::TouchRead {
            buf,
            span,
            stride_pages,
            sum,
        })
        .unwrap();
        let want: u64 = words.iter().map(|&i| pattern(1).word(i) as u64).sum();
        let got = cpu_words(&mut dev, sum, sum.all());
        assert_eq!(got[0] as u64 | (got[1] as u64) << 32, want);
    }

    #[test]
    fn touch_write_writes_whole_strided_pages_only() {
        let mut dev = device();
        let buf = dev.alloc(AllocKind::Managed, 8 * 4096).unwrap();
        cpu_fill(&mut dev, buf, buf.all(), 1);
        let launch = Launch::TouchWrite {
            buf,
            span: buf.all(),
            stride_pages: 2,
            seed: SEED,
            generation: 2,
        };
        dev.launch(&launch).unwrap();
        for page in 0..8 {
            cpu_check(
                &mut dev,
                buf,
                Span::pages(page, 1),
                if page % 2 == 0 { 2 } else { 1 },
            );
        }
    }

    #[test]
    fn fault_storm_reaches_pages_in_its_permutation() {
        let mut dev = with_policy(|p| p.chunk_sizes = vec![4096]);
        let buf = dev.alloc(AllocKind::Managed, 16 * 4096).unwrap();
        let storm = Launch::FaultStorm {
            buf,
            span: buf.all(),
            step: 5,
            offset: 3,
            seed: SEED,
            generation: 1,
        };
        assert_eq!(dev.launch(&storm).unwrap().faults, Some(16));
        let order: Vec<u64> = events(&mut dev).iter().map(|e| e.first_page).collect();
        let want: Vec<u64> = (0..16).map(|i| (i * 5 + 3) % 16).collect();
        assert_eq!(order, want);
        cpu_check(&mut dev, buf, buf.all(), 1);
    }

    #[test]
    fn atomic_inc_adds_the_iterations_to_every_counter() {
        let mut dev = device();
        let buf = dev.alloc(AllocKind::Malloc, 3 * 4096).unwrap();
        let launch = Launch::AtomicInc {
            buf,
            span: buf.all(),
            iterations: 7,
        };
        dev.launch(&launch).unwrap();
        dev.launch(&launch).unwrap();
        assert!(cpu_words(&mut dev, buf, buf.all()).iter().all(|w| *w == 14));
    }

    #[test]
    fn copy_copies_word_for_word_across_page_offsets() {
        let mut dev = device();
        let src = dev.alloc(AllocKind::Malloc, 4 * 4096).unwrap();
        let dst = dev.alloc(AllocKind::Managed, 4 * 4096).unwrap();
        cpu_fill(&mut dev, src, src.all(), 1);
        let (src_span, dst_span) = (Span::new(4, 8192), Span::new(4096 + 400, 8192));
        dev.launch(&Launch::Copy {
            dst,
            dst_span,
            src,
            src_span,
        })
        .unwrap();
        assert_eq!(
            cpu_words(&mut dev, dst, dst_span),
            cpu_words(&mut dev, src, src_span)
        );
        assert!(cpu_words(&mut dev, dst, Span::new(0, 4096 + 400))
            .iter()
            .all(|w| *w == 0));
    }

    #[test]
    fn launches_are_checked_before_they_start() {
        let mut dev = device();
        let buf = dev.alloc(AllocKind::Managed, 8192).unwrap();
        let sum = dev.alloc(AllocKind::Managed, 8).unwrap();
        let bad = [
            Launch::Fill {
                buf,
                span: Span::new(0, 8196),
                seed: SEED,
                generation: 1,
            },
            Launch::Fill {
                buf,
                span: Span::new(2, 8),
                seed: SEED,
                generation: 1,
            },
            Launch::TouchRead {
                buf,
                span: buf.all(),
                stride_pages: 0,
                sum,
            },
            Launch::Copy {
                dst: buf,
                dst_span: Span::new(0, 8),
                src: buf,
                src_span: Span::new(8, 4),
            },
            Launch::TouchRead {
                buf,
                span: buf.all(),
                stride_pages: 1,
                sum: Buf { id: 99, ..sum },
            },
        ];
        for launch in &bad {
            assert!(dev.launch(launch).is_err(), "{launch:?}");
        }
        assert!(matches!(
            dev.wait(Pending(77)),
            Err(DeviceError::Backend(_))
        ));
        assert!(events(&mut dev).is_empty(), "nothing ran");
    }

    #[test]
    fn launches_complete_in_stream_order() {
        let mut dev = device();
        let buf = dev.alloc(AllocKind::Managed, 2 * MIB).unwrap();
        let first = dev
            .launch_async(&Launch::Fill {
                buf,
                span: buf.all(),
                seed: SEED,
                generation: 1,
            })
            .unwrap();
        let second = dev
            .launch_async(&Launch::Fill {
                buf,
                span: buf.all(),
                seed: SEED,
                generation: 2,
            })
            .unwrap();
        assert_eq!(dev.wait(second).unwrap().faults, Some(0));
        assert_eq!(dev.wait(first).unwrap().faults, Some(1));
        cpu_check(&mut dev, buf, buf.all(), 2);
    }

    #[test]
    fn a_pending_launch_races_the_next_operation() {
        let mut dev = device();
        let buf = dev.alloc(AllocKind::Managed, 4 * MIB).unwrap();
        cpu_fill(&mut dev, buf, buf.all(), 1);
        events(&mut dev);
        let pending = dev
            .launch_async(&Launch::Fill {
                buf,
                span: buf.all(),
                seed: SEED,
                generation: 2,
            })
            .unwrap();
        // The kernel gets part of the way, then the prefetch takes back what it migrated.
        dev.prefetch(buf, buf.all(), Location::System).unwrap();
        let raced = events(&mut dev);
        let back: u64 = moves(&raced, Trigger::Prefetch).iter().map(|m| m.1).sum();
        assert!(
            back >= 512,
            "the kernel had migrated at least its first range"
        );
        assert_eq!(
            moves(&raced, Trigger::GpuFault)
                .iter()
                .map(|m| m.1)
                .sum::<u64>(),
            back
        );
        // The rest of the kernel faults again on the pages it had not reached; the pages it
        // had written before the race stay where the prefetch put them, written.
        let run = dev.wait(pending).unwrap();
        assert!(run.faults.unwrap() >= 1);
        let again: u64 = moves(&events(&mut dev), Trigger::GpuFault)
            .iter()
            .map(|m| m.1)
            .sum();
        assert_eq!(count(&mut dev, buf, Location::Vram) as u64, again);
        assert!((512..1024).contains(&again));
        cpu_check(&mut dev, buf, buf.all(), 2);
    }

    #[test]
    fn an_unmap_racing_a_kernel_fails_it_at_wait() {
        let mut dev = device();
        let buf = dev.alloc(AllocKind::Managed, 4 * MIB).unwrap();
        let pending = dev
            .launch_async(&Launch::Fill {
                buf,
                span: buf.all(),
                seed: SEED,
                generation: 1,
            })
            .unwrap();
        dev.unmap(buf, Span::pages(1020, 4)).unwrap();
        assert!(matches!(
            dev.wait(pending),
            Err(DeviceError::GpuMemoryFault { offset, .. }) if offset == 1020 * 4096
        ));
    }
}
