//! What the sim's own tests share: a small profile, and CPU/GPU fill and check helpers.

use super::{Breaks, SimDevice};
use crate::device::kernels::Launch;
use crate::device::{Buf, Device, KernelRun, Location, MigrationEvent, Span, Trigger};
use crate::model::pattern::Pattern;
use crate::model::profile::{Limits, Policy, Profile, SimCost};

pub const SEED: u64 = 0x5eed;
pub const MIB: u64 = 1 << 20;

pub fn cost() -> SimCost {
    SimCost {
        migrate_gbps: 10.0,
        migration_fixed_us: 10.0,
        gpu_fault_us: 5.0,
        cpu_fault_us: 8.0,
        launch_us: 4.0,
        vram_gbps: 1000.0,
        remote_gbps: 25.0,
        cpu_gbps: 20.0,
        reset_exit_ms: 50.0,
        noise: crate::model::profile::Noise::default(),
    }
}

/// 16 MiB of VRAM: small enough that eviction is cheap to provoke.
pub fn profile() -> Profile {
    Profile {
        name: "test".to_string(),
        description: "the sim's unit tests".to_string(),
        arch: "sim".to_string(),
        vram_bytes: 16 * MIB,
        gpus: 1,
        xnack: true,
        limits: Limits {
            link: "PCIe Gen5 x16".to_string(),
            link_peak_gbps: 63.0,
            memory_peak_gbps: 5300.0,
            system_memory_bytes: None,
            slowest: None,
        },
        policy: Policy::default(),
        sim: Some(cost()),
        expect: None,
    }
}

pub fn device() -> SimDevice {
    device_with(|_| {}, Breaks::default())
}

pub fn broken(name: &str) -> SimDevice {
    match Breaks::parse(name) {
        Ok(breaks) => device_with(|_| {}, breaks),
        Err(e) => panic!("{e}"),
    }
}

pub fn device_with(edit: impl FnOnce(&mut Profile), breaks: Breaks) -> SimDevice {
    let mut p = profile();
    edit(&mut p);
    SimDevice::new(&p, SEED, breaks).expect("test profile is valid")
}

pub fn with_policy(edit: impl FnOnce(&mut Policy)) -> SimDevice {
    device_with(|p| edit(&mut p.policy), Breaks::default())
}

pub fn pattern(generation: u32) -> Pattern {
    Pattern::new(SEED, generation)
}

pub fn cpu_fill(dev: &mut dyn Device, buf: Buf, span: Span, generation: u32) {
    let mut words = vec![0u32; span.words() as usize];
    pattern(generation).fill(span.first_word(), &mut words);
    dev.cpu_write(buf, span, &words).expect("cpu write");
}

pub fn gpu_fill(dev: &mut dyn Device, buf: Buf, span: Span, generation: u32) -> KernelRun {
    dev.launch(&Launch::Fill {
        buf,
        span,
        seed: SEED,
        generation,
    })
    .expect("gpu fill")
}

pub fn cpu_words(dev: &mut dyn Device, buf: Buf, span: Span) -> Vec<u32> {
    let mut words = vec![0u32; span.words() as usize];
    dev.cpu_read(buf, span, &mut words).expect("cpu read");
    words
}

/// The CPU reads the span back and finds generation `generation` in every word.
pub fn cpu_check(dev: &mut dyn Device, buf: Buf, span: Span, generation: u32) {
    let words = cpu_words(dev, buf, span);
    if let Err(m) = pattern(generation).check(span.first_word(), &words) {
        panic!("allocation {} {span}, generation {generation}: {m}", buf.id);
    }
}

pub fn residency(dev: &mut dyn Device, buf: Buf) -> Vec<Location> {
    residency_of(dev, buf, buf.all())
}

pub fn residency_of(dev: &mut dyn Device, buf: Buf, span: Span) -> Vec<Location> {
    dev.residency(buf, span)
        .expect("sim observes residency")
        .expect("all pages mapped")
}

pub fn count(dev: &mut dyn Device, buf: Buf, want: Location) -> usize {
    count_in(dev, buf, buf.all(), want)
}

/// Pages of `span` at `want`.
pub fn count_in(dev: &mut dyn Device, buf: Buf, span: Span, want: Location) -> usize {
    let res = residency_of(dev, buf, span);
    res.into_iter().filter(|l| *l == want).count()
}

pub fn events(dev: &mut dyn Device) -> Vec<MigrationEvent> {
    dev.take_events().expect("sim reports events")
}

/// (first page, pages) of each event with `trigger`.
pub fn moves(events: &[MigrationEvent], trigger: Trigger) -> Vec<(u64, u64)> {
    events
        .iter()
        .filter(|e| e.trigger == trigger)
        .map(|e| (e.first_page, e.pages))
        .collect()
}

/// The sim with its migration clock hidden, as on a device that has none: timed migrations
/// are the step less the same step on resident data. `resident_slower` makes a prefetch of
/// pages already where it takes them a millisecond slower than any migration, as noise does at
/// small sizes.
pub struct NoClock {
    pub sim: SimDevice,
    pub resident_slower: bool,
}

impl NoClock {
    pub fn new(sim: SimDevice, resident_slower: bool) -> NoClock {
        NoClock {
            sim,
            resident_slower,
        }
    }
}

impl Device for NoClock {
    fn info(&self) -> &crate::device::DeviceInfo {
        self.sim.info()
    }
    fn alloc(&mut self, kind: crate::device::AllocKind, len: u64) -> crate::device::Result<Buf> {
        self.sim.alloc(kind, len)
    }
    fn free(&mut self, buf: Buf) -> crate::device::Result<()> {
        self.sim.free(buf)
    }
    fn unmap(&mut self, buf: Buf, span: Span) -> crate::device::Result<()> {
        self.sim.unmap(buf, span)
    }
    fn remap(&mut self, buf: Buf) -> crate::device::Result<()> {
        self.sim.remap(buf)
    }
    fn protect(&mut self, buf: Buf, prot: crate::device::Protection) -> crate::device::Result<()> {
        self.sim.protect(buf, prot)
    }
    fn fork(&mut self) -> crate::device::Result<Box<dyn Device>> {
        self.sim.fork()
    }
    fn advise(
        &mut self,
        buf: Buf,
        span: Span,
        advice: crate::device::Advice,
    ) -> crate::device::Result<()> {
        self.sim.advise(buf, span, advice)
    }
    fn prefetch(
        &mut self,
        buf: Buf,
        span: Span,
        to: Location,
    ) -> crate::device::Result<std::time::Duration> {
        let resident = match self.sim.residency(buf, span) {
            Some(Ok(at)) => at.iter().all(|l| *l == to),
            _ => false,
        };
        let took = self.sim.prefetch(buf, span, to)?;
        Ok(if self.resident_slower && resident {
            took + std::time::Duration::from_millis(1)
        } else {
            took
        })
    }
    fn launch_async(&mut self, launch: &Launch) -> crate::device::Result<crate::device::Pending> {
        self.sim.launch_async(launch)
    }
    fn wait(&mut self, pending: crate::device::Pending) -> crate::device::Result<KernelRun> {
        self.sim.wait(pending)
    }
    fn cpu_read(
        &mut self,
        buf: Buf,
        span: Span,
        out: &mut [u32],
    ) -> crate::device::Result<std::time::Duration> {
        self.sim.cpu_read(buf, span, out)
    }
    fn cpu_write(
        &mut self,
        buf: Buf,
        span: Span,
        words: &[u32],
    ) -> crate::device::Result<std::time::Duration> {
        self.sim.cpu_write(buf, span, words)
    }
    fn cpu_threads(
        &mut self,
        work: &crate::device::CpuThreads,
    ) -> crate::device::Result<std::time::Duration> {
        self.sim.cpu_threads(work)
    }
    fn residency(&mut self, buf: Buf, span: Span) -> Option<crate::device::Result<Vec<Location>>> {
        self.sim.residency(buf, span)
    }
    fn take_events(&mut self) -> Option<Vec<MigrationEvent>> {
        self.sim.take_events()
    }
    fn vram_used(&mut self) -> Option<u64> {
        self.sim.vram_used()
    }
    fn vram_free(&mut self) -> Option<u64> {
        self.sim.vram_free()
    }
    fn eviction_transient(&mut self) -> Option<crate::device::EvictionTransient> {
        self.sim.eviction_transient()
    }
    fn spawn_process(&mut self) -> crate::device::Result<Box<dyn Device>> {
        self.sim.spawn_process()
    }
    fn wait_exit(
        &mut self,
        limit: std::time::Duration,
    ) -> crate::device::Result<crate::device::ProcessExit> {
        self.sim.wait_exit(limit)
    }
    fn gpu_reset(&mut self, permit: &crate::device::Destructive) -> crate::device::Result<()> {
        self.sim.gpu_reset(permit)
    }
}
