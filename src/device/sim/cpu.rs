//! CPU accesses: reads and writes of a span in word order, and touches from several CPU
//! threads interleaved deterministically from the seed. Each touch of a device-private page
//! takes a CPU fault per the policy before it reads or writes the system page.

use std::time::Duration;

use super::clock::Meter;
use super::gpu::Gpu;
use super::object::Pid;
use super::space::check_words;
use crate::device::{Buf, CpuOp, CpuThreads, DeviceError, Result, Span, PAGE_SIZE, WORDS_PER_PAGE};

/// Bytes one thread touch reads or writes: the page's first word.
const TOUCH_BYTES: u64 = 4;

impl Gpu {
    pub(super) fn cpu_read(
        &mut self,
        pid: Pid,
        buf: Buf,
        span: Span,
        out: &mut [u32],
    ) -> Result<Duration> {
        self.check_cpu_span(pid, buf, span, out.len(), false)?;
        let mut meter = self.clock.meter();
        self.cpu_pages(pid, buf.id, span, &mut meter, |words, at| {
            let n = words.len();
            out[at..at + n].copy_from_slice(words);
        })?;
        let ns = self.clock.cpu_ns(span.len);
        self.clock.charge(&mut meter, ns);
        Ok(meter.duration())
    }

    pub(super) fn cpu_write(
        &mut self,
        pid: Pid,
        buf: Buf,
        span: Span,
        words: &[u32],
    ) -> Result<Duration> {
        self.check_cpu_span(pid, buf, span, words.len(), true)?;
        let mut meter = self.clock.meter();
        self.cpu_pages(pid, buf.id, span, &mut meter, |page, at| {
            let n = page.len();
            page.copy_from_slice(&words[at..at + n]);
        })?;
        let ns = self.clock.cpu_ns(span.len);
        self.clock.charge(&mut meter, ns);
        Ok(meter.duration())
    }

    /// Calls `f` with each page's words of `span` (system memory, after any CPU fault) and
    /// their index into the span's words.
    fn cpu_pages(
        &mut self,
        pid: Pid,
        buf: u32,
        span: Span,
        meter: &mut Meter,
        mut f: impl FnMut(&mut [u32], usize),
    ) -> Result<()> {
        let (first, end) = (span.first_word(), span.first_word() + span.words());
        let mut word = first;
        while word < end {
            let page = word / WORDS_PER_PAGE;
            let stop = end.min((page + 1) * WORDS_PER_PAGE);
            let object = self.cpu_reach(pid, buf, page, meter)?;
            let base = page * WORDS_PER_PAGE;
            let words = self.objects[object].sys.page_mut(page);
            f(
                &mut words[(word - base) as usize..(stop - base) as usize],
                (word - first) as usize,
            );
            word = stop;
        }
        Ok(())
    }

    /// The checks of a CPU access before anything happens: SVM memory, inside the
    /// allocation, whole words, `words` words supplied, every page mapped (and writable).
    fn check_cpu_span(
        &self,
        pid: Pid,
        buf: Buf,
        span: Span,
        words: usize,
        write: bool,
    ) -> Result<()> {
        let alloc = self.svm_alloc(pid, buf.id, "CPU access")?;
        check_words(&alloc.buf, span)?;
        if words as u64 != span.words() {
            return Err(DeviceError::Backend(format!(
                "CPU access to {span} of allocation {}: {words} words given for a span of {}",
                buf.id,
                span.words()
            )));
        }
        for page in span.page_range() {
            alloc.check_cpu(page, write, (page * PAGE_SIZE).max(span.offset))?;
        }
        Ok(())
    }

    /// Touches from several threads. The touches interleave in a seed-chosen order; each
    /// reads or increments the page's first word after any CPU fault. Threads run in parallel,
    /// so their own accesses overlap in time, while faults serialise in the driver.
    pub(super) fn cpu_threads(&mut self, pid: Pid, work: &CpuThreads) -> Result<Duration> {
        let write = work.op == CpuOp::AtomicInc;
        let order = self.interleave(pid, &work.pages);
        let alloc = self.svm_alloc(pid, work.buf.id, "CPU access")?;
        for &(_, page) in &order {
            if page >= alloc.pages() {
                return Err(DeviceError::OutOfBounds {
                    buf: work.buf.id,
                    span: Span::pages(page, 1),
                    len: alloc.buf.len,
                });
            }
            alloc.check_cpu(page, write, page * PAGE_SIZE)?;
        }
        let mut meter = self.clock.meter();
        let mut touches = vec![0u64; work.pages.len()];
        for (thread, page) in order {
            let object = self.cpu_reach(pid, work.buf.id, page, &mut meter)?;
            if write {
                let words = self.objects[object].sys.page_mut(page);
                words[0] = words[0].wrapping_add(1);
            }
            touches[thread] += 1;
        }
        let busiest = touches.iter().max().copied().unwrap_or(0);
        let ns = self.clock.cpu_ns(busiest * TOUCH_BYTES);
        self.clock.charge(&mut meter, ns);
        Ok(meter.duration())
    }

    /// `(thread, page)` for every touch, threads picked at random among those with touches left.
    fn interleave(&mut self, pid: Pid, pages: &[Vec<u64>]) -> Vec<(usize, u64)> {
        let rng = &mut self.processes[pid].rng;
        let mut next = vec![0usize; pages.len()];
        let mut live: Vec<usize> = (0..pages.len()).filter(|&t| !pages[t].is_empty()).collect();
        let mut order = Vec::with_capacity(pages.iter().map(Vec::len).sum());
        while !live.is_empty() {
            let pick = rng.below(live.len() as u64) as usize;
            let thread = live[pick];
            order.push((thread, pages[thread][next[thread]]));
            next[thread] += 1;
            if next[thread] == pages[thread].len() {
                live.swap_remove(pick);
            }
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use crate::device::sim::testutil::*;
    use crate::device::{
        AllocKind, CpuOp, CpuThreads, Device, DeviceError, Location, Span, Trigger,
    };

    #[rstest]
    #[case::whole_allocation(true, (0, 512))]
    #[case::page_only(false, (7, 1))]
    fn cpu_fault_migrates_the_devmem_allocation_back(
        #[case] whole: bool,
        #[case] back: (u64, u64),
    ) {
        let mut dev = with_policy(|p| p.cpu_fault_migrates_whole_allocation = whole);
        let buf = dev.alloc(AllocKind::Managed, 2 * MIB).unwrap();
        gpu_fill(&mut dev, buf, buf.all(), 1);
        events(&mut dev);
        let mut word = [0u32; 1];
        dev.cpu_read(buf, Span::new(7 * 4096 + 8, 4), &mut word)
            .unwrap();
        assert_eq!(word[0], pattern(1).word(7 * 1024 + 2));
        assert_eq!(moves(&events(&mut dev), Trigger::CpuFault), vec![back]);
        assert_eq!(count(&mut dev, buf, Location::System) as u64, back.1);
        // The GPU mapping went with the pages: the next GPU access faults and migrates them again.
        assert_eq!(gpu_fill(&mut dev, buf, buf.all(), 2).faults, Some(1));
        assert_eq!(moves(&events(&mut dev), Trigger::GpuFault), vec![back]);
        assert_eq!(count(&mut dev, buf, Location::Vram), 512);
        cpu_check(&mut dev, buf, buf.all(), 2);
    }

    #[test]
    fn cpu_write_faults_too_and_lands() {
        let mut dev = device();
        let buf = dev.alloc(AllocKind::Managed, 64 << 10).unwrap();
        gpu_fill(&mut dev, buf, buf.all(), 1);
        events(&mut dev);
        cpu_fill(&mut dev, buf, Span::pages(3, 1), 2);
        assert_eq!(moves(&events(&mut dev), Trigger::CpuFault), vec![(0, 16)]);
        cpu_check(&mut dev, buf, Span::pages(3, 1), 2);
        cpu_check(&mut dev, buf, Span::pages(4, 12), 1);
    }

    #[test]
    fn cpu_access_checks_before_touching() {
        let mut dev = device();
        let buf = dev.alloc(AllocKind::Managed, 8192).unwrap();
        let mut short = [0u32; 3];
        assert!(matches!(
            dev.cpu_read(buf, Span::new(0, 16), &mut short),
            Err(DeviceError::Backend(_))
        ));
        assert!(matches!(
            dev.cpu_read(buf, Span::new(8192, 4), &mut short[..1]),
            Err(DeviceError::OutOfBounds { .. })
        ));
        let vram = dev.alloc(AllocKind::DeviceBuffer, 4096).unwrap();
        assert!(matches!(
            dev.cpu_read(vram, Span::new(0, 4), &mut short[..1]),
            Err(DeviceError::Unsupported { .. })
        ));
    }

    #[test]
    fn cpu_threads_touch_every_page_and_fault_per_policy() {
        let mut dev = device();
        let buf = dev.alloc(AllocKind::Managed, 64 << 10).unwrap();
        gpu_fill(&mut dev, buf, buf.all(), 1);
        events(&mut dev);
        let pages: Vec<u64> = (0..16).collect();
        let work = CpuThreads {
            buf,
            op: CpuOp::AtomicInc,
            pages: vec![pages.clone(), pages.iter().rev().copied().collect()],
        };
        dev.cpu_threads(&work).unwrap();
        assert_eq!(moves(&events(&mut dev), Trigger::CpuFault), vec![(0, 16)]);
        let words = cpu_words(&mut dev, buf, buf.all());
        for p in 0..16u64 {
            let want = pattern(1).word(p * 1024).wrapping_add(2);
            assert_eq!(words[(p * 1024) as usize], want, "page {p}");
        }
    }

    #[test]
    fn cpu_thread_interleaving_is_seeded_and_keeps_each_threads_order() {
        let threads: Vec<Vec<u64>> = (0..4)
            .map(|t| (0..32).map(|i| t * 100 + i).collect())
            .collect();
        let order = |seed: u64| {
            let dev = device_with(|_| {}, crate::device::sim::Breaks::default());
            let mut gpu = dev.lock();
            gpu.seed = seed;
            gpu.processes[dev.pid].rng = crate::device::sim::rng::Rng::new(seed);
            gpu.interleave(dev.pid, &threads)
        };
        let a = order(1);
        assert_eq!(a, order(1));
        assert_ne!(a, order(2));
        assert_eq!(a.len(), 128);
        for (t, pages) in threads.iter().enumerate() {
            let mine: Vec<u64> = a
                .iter()
                .filter(|(th, _)| *th == t)
                .map(|(_, p)| *p)
                .collect();
            assert_eq!(&mine, pages);
        }
        // Interleaved, not one thread after another.
        assert!(a.windows(2).filter(|w| w[0].0 != w[1].0).count() > 8);
    }
}
