//! `sim`: the reference device. An in-process model of the series' migration policy over real
//! bytes, with a simulated clock from the profile's cost model; deterministic for a seed. It
//! is the oracle the real backends are compared with, so it speaks drm_gpusvm and drm_pagemap:
//! a GPU fault forms a range by the chunk rule and migrates it as one devmem allocation, a
//! CPU fault migrates a whole devmem allocation back to RAM, TTM evicts least-recently-used
//! SVM devmem allocations whole, each rule switched by its `Policy` field.
//!
//! One [`SimDevice`] is one process's view of one GPU. What the GPU holds (the VRAM arena,
//! devmem allocations, the eviction LRU, the clock, and every process's address space, so that
//! one process's fault can evict another's pages) is one `Gpu` behind a mutex, shared by the
//! processes that `fork` and `spawn_process` make.
//!
//! Where the policy is silent the sim decides, and says so beside the code:
//! - ranges and VA alignment: `space.rs`; a range partly in VRAM migrates only its system
//!   pages (migrate_vma collects only those), as a devmem allocation of that many pages;
//! - prefetch to VRAM maps what it migrated, so the next kernel takes no fault there;
//!   prefetch of pages that need not move, or of shared memory, takes no time: `prefetch.rs`;
//! - XNACK off still counts a fault per range on first GPU touch, and maps it in place;
//! - a kernel's result (verify's counts, touch-read's sum) is a GPU access like any other:
//!   it faults, migrates and counts in `KernelRun::faults`: `kernels.rs`;
//! - any operation of a process, not only prefetch, CPU access and launch, first runs part
//!   of its pending launch; observations (residency, events, VRAM use) do not;
//! - device buffers are pinned, and are not inherited by fork: `mm.rs`, `gpu.rs`;
//! - the eviction through a partial unmap is not TTM's: it takes no transient resource;
//! - eviction accounting (`EvictionTransient`) and `vram_used` are GPU-wide, not per process;
//! - a reset leaves surviving processes' VRAM pages holding garbage: `gpu.rs`;
//! - one GPU: `profile.gpus` is reported as it is and `policy.max_gpus` is for the suite to
//!   read; no migration between GPUs exists here.

pub mod backend;
mod breaks;
mod clock;
mod cpu;
mod exec;
mod fault;
pub mod faults;
mod gpu;
mod kernels;
mod migrate;
mod mm;
mod object;
mod prefetch;
mod rng;
mod slab;
mod space;
mod store;
#[cfg(test)]
pub(crate) mod testutil;
mod vram;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

pub use breaks::Breaks;
pub use clock::NoiseSource;

use crate::device::kernels::Launch;
use crate::device::{
    Advice, AllocKind, Buf, Capabilities, CpuThreads, Destructive, Device, DeviceInfo,
    EvictionTransient, KernelRun, Level, Location, MigrationEvent, Need, Pending, ProcessExit,
    Protection, Result, Span, PAGE_SIZE,
};
use crate::model::profile::{Profile, SimCost};
use gpu::{Gpu, ProcState};
use object::Pid;
use space::Space;

/// Why a reference device could not be made.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SimError {
    #[error("profile `{0}` has no `sim:` cost model; the reference device needs one")]
    NoCostModel(String),
    #[error("profile `{profile}`: `{field}` is {value}; expected {expected}")]
    BadProfile {
        profile: String,
        field: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("unknown break `{name}`; valid breaks: {valid}")]
    UnknownBreak { name: String, valid: String },
}

/// One process on the reference device.
#[derive(Debug)]
pub struct SimDevice {
    gpu: Arc<Mutex<Gpu>>,
    pid: Pid,
    info: DeviceInfo,
}

impl SimDevice {
    /// A fresh GPU with one process on it, following `profile`'s policy and `sim:` cost model.
    pub fn new(profile: &Profile, seed: u64, breaks: Breaks) -> Result<SimDevice, SimError> {
        let cost = profile
            .sim
            .clone()
            .ok_or_else(|| SimError::NoCostModel(profile.name.clone()))?;
        check_profile(profile, &cost)?;
        let mut gpu = Gpu::new(profile, cost, seed, breaks);
        let pid = gpu.add_process(Space::new());
        Ok(SimDevice {
            gpu: Arc::new(Mutex::new(gpu)),
            pid,
            info: info(profile),
        })
    }

    /// Puts fault plan `plan` in force, its probabilities drawn from `seed`; its `kernel_log`
    /// rules write to `kmsg`.
    pub fn set_faults(&mut self, plan: faults::Plan, seed: u64, kmsg: Option<std::path::PathBuf>) {
        self.lock().faults = faults::Faults::new(plan, seed, kmsg);
    }

    /// The breaks this device runs with.
    pub fn breaks(&self) -> Breaks {
        self.lock().breaks
    }

    fn lock(&self) -> MutexGuard<'_, Gpu> {
        // A panic elsewhere left the model mid-update; report what it holds rather than panic.
        self.gpu.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs one operation of this process: refused once the process was aborted, and a
    /// pending launch first runs part of its work (the race).
    fn op<T>(&mut self, f: impl FnOnce(&mut Gpu, Pid) -> Result<T>) -> Result<T> {
        let pid = self.pid;
        let mut gpu = self.lock();
        gpu.ensure_running(pid)?;
        gpu.race_pending(pid);
        f(&mut gpu, pid)
    }

    fn sibling(&self, pid: Pid) -> Box<dyn Device> {
        Box::new(SimDevice {
            gpu: Arc::clone(&self.gpu),
            pid,
            info: self.info.clone(),
        })
    }
}

impl Drop for SimDevice {
    fn drop(&mut self) {
        let pid = self.pid;
        let mut gpu = self.lock();
        if gpu.processes[pid].state == ProcState::Running {
            gpu.end_process(pid, ProcState::Ended);
        }
    }
}

fn info(profile: &Profile) -> DeviceInfo {
    DeviceInfo {
        backend: "sim".to_string(),
        name: format!("Reference device (profile {})", profile.name),
        arch: profile.arch.clone(),
        vram_bytes: profile.vram_bytes,
        gpus: profile.gpus,
        // The model answers every observation; only XNACK is the profile's to say.
        caps: Capabilities::of(&Need::DEVICE).with(Need::Xnack, profile.xnack),
    }
}

/// What the model needs of a profile: chunk sizes it can align to, costs it can divide by.
fn check_profile(profile: &Profile, cost: &SimCost) -> Result<(), SimError> {
    let bad = |field, value: String, expected| SimError::BadProfile {
        profile: profile.name.clone(),
        field,
        value,
        expected,
    };
    let chunks = &profile.policy.chunk_sizes;
    if chunks.is_empty()
        || chunks
            .iter()
            .any(|&c| !c.is_power_of_two() || c < PAGE_SIZE)
    {
        return Err(bad(
            "policy.chunk_sizes",
            format!("{chunks:?}"),
            "powers of two of at least 4096 bytes, at least one",
        ));
    }
    if profile.vram_bytes / PAGE_SIZE >= u32::MAX as u64 {
        return Err(bad(
            "vram_bytes",
            profile.vram_bytes.to_string(),
            "less than 16 TiB",
        ));
    }
    let rates = [
        ("sim.migrate_gbps", cost.migrate_gbps),
        ("sim.vram_gbps", cost.vram_gbps),
        ("sim.remote_gbps", cost.remote_gbps),
        ("sim.cpu_gbps", cost.cpu_gbps),
    ];
    for (field, rate) in rates {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(bad(field, rate.to_string(), "a positive bandwidth in GB/s"));
        }
    }
    let times = [
        ("sim.migration_fixed_us", cost.migration_fixed_us),
        ("sim.gpu_fault_us", cost.gpu_fault_us),
        ("sim.cpu_fault_us", cost.cpu_fault_us),
        ("sim.launch_us", cost.launch_us),
        ("sim.reset_exit_ms", cost.reset_exit_ms),
    ];
    for (field, time) in times {
        if !(time.is_finite() && time >= 0.0) {
            return Err(bad(field, time.to_string(), "a time of zero or more"));
        }
    }
    Ok(())
}

impl Device for SimDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn alloc(&mut self, kind: AllocKind, len: u64) -> Result<Buf> {
        self.op(|gpu, pid| gpu.alloc(pid, kind, len))
    }

    fn free(&mut self, buf: Buf) -> Result<()> {
        self.op(|gpu, pid| gpu.free(pid, buf))
    }

    /// The simulated address: the same for a seed in every run, so a failure that depends on
    /// it repeats without `--place-at` (which the reference device refuses).
    fn address(&self, buf: Buf) -> Option<u64> {
        let gpu = self.lock();
        let alloc = gpu.processes.get(self.pid)?.space.get(buf.id).ok()?;
        (alloc.buf == buf).then_some(alloc.va)
    }

    fn unmap(&mut self, buf: Buf, span: Span) -> Result<()> {
        self.op(|gpu, pid| gpu.unmap(pid, buf, span))
    }

    fn remap(&mut self, buf: Buf) -> Result<()> {
        self.op(|gpu, pid| gpu.remap(pid, buf))
    }

    fn protect(&mut self, buf: Buf, prot: Protection) -> Result<()> {
        self.op(|gpu, pid| gpu.protect(pid, buf, prot))
    }

    fn fork(&mut self) -> Result<Box<dyn Device>> {
        let child = self.op(|gpu, pid| Ok(gpu.fork(pid)))?;
        Ok(self.sibling(child))
    }

    fn advise(&mut self, buf: Buf, span: Span, advice: Advice) -> Result<()> {
        self.op(|gpu, pid| gpu.advise(pid, buf, span, advice))
    }

    fn prefetch(&mut self, buf: Buf, span: Span, to: Location) -> Result<Duration> {
        self.op(|gpu, pid| gpu.prefetch(pid, buf, span, to))
    }

    fn launch_async(&mut self, launch: &Launch) -> Result<Pending> {
        self.op(|gpu, pid| gpu.launch_async(pid, launch))
    }

    fn wait(&mut self, pending: Pending) -> Result<KernelRun> {
        let pid = self.pid;
        let mut gpu = self.lock();
        gpu.ensure_running(pid)?;
        gpu.wait(pid, pending)
    }

    fn cpu_read(&mut self, buf: Buf, span: Span, out: &mut [u32]) -> Result<Duration> {
        self.op(|gpu, pid| gpu.cpu_read(pid, buf, span, out))
    }

    fn cpu_write(&mut self, buf: Buf, span: Span, words: &[u32]) -> Result<Duration> {
        self.op(|gpu, pid| gpu.cpu_write(pid, buf, span, words))
    }

    fn cpu_threads(&mut self, work: &CpuThreads) -> Result<Duration> {
        self.op(|gpu, pid| gpu.cpu_threads(pid, work))
    }

    fn residency(&mut self, buf: Buf, span: Span) -> Option<Result<Vec<Location>>> {
        let gpu = self.lock();
        Some(
            gpu.ensure_running(self.pid)
                .and_then(|()| gpu.residency(self.pid, buf, span)),
        )
    }

    fn take_events(&mut self) -> Option<Vec<MigrationEvent>> {
        if self.breaks().silent_events {
            return None;
        }
        let pid = self.pid;
        Some(std::mem::take(&mut self.lock().processes[pid].events))
    }

    fn vram_used(&mut self) -> Option<u64> {
        let gpu = self.lock();
        Some(gpu.vram.used_bytes() + gpu.faults.leaked)
    }

    fn vram_free(&mut self) -> Option<u64> {
        let gpu = self.lock();
        Some((gpu.vram.free_frames() * crate::device::PAGE_SIZE).saturating_sub(gpu.faults.leaked))
    }

    fn eviction_transient(&mut self) -> Option<EvictionTransient> {
        Some(self.lock().vram.transient)
    }

    fn levels(&mut self) -> Vec<Level> {
        let gpu = self.lock();
        vec![
            Level::vram(gpu.vram.used_bytes() + gpu.faults.leaked, PAGE_SIZE),
            Level::count(
                "live device allocations",
                gpu.vram.devmem.len() as u64,
                "allocations",
            ),
        ]
    }

    fn migration_time(&mut self) -> Option<Duration> {
        Some(self.lock().clock.migrating())
    }

    fn evict_all(&mut self) -> Option<Result<Duration>> {
        Some(self.op(|gpu, _| Ok(gpu.evict_all())))
    }

    fn spawn_process(&mut self) -> Result<Box<dyn Device>> {
        let child = self.op(|gpu, _| Ok(gpu.add_process(Space::new())))?;
        Ok(self.sibling(child))
    }

    fn wait_exit(&mut self, limit: Duration) -> Result<ProcessExit> {
        Ok(self.lock().exit_status(self.pid, limit))
    }

    fn gpu_reset(&mut self, _permit: &Destructive) -> Result<()> {
        let pid = self.pid;
        let mut gpu = self.lock();
        gpu.ensure_running(pid)?;
        gpu.reset();
        Ok(())
    }

    fn mark_helper(&mut self, buf: Buf) {
        let pid = self.pid;
        let mut gpu = self.lock();
        // An allocation that is not there has nothing to leave alone.
        if let Ok(object) = gpu.processes[pid].space.get(buf.id).map(|a| a.object) {
            gpu.objects[object].helper = true;
        }
    }

    fn injected(&mut self) -> Vec<crate::device::Injected> {
        self.lock().faults.injected()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::testutil::*;
    use super::*;
    use crate::device::{MigrationEvent, Trigger};

    #[test]
    fn the_reference_device_needs_a_cost_model() {
        let mut p = profile();
        p.sim = None;
        let err = SimDevice::new(&p, SEED, Breaks::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "profile `test` has no `sim:` cost model; the reference device needs one"
        );
    }

    #[test]
    fn a_profile_the_model_cannot_follow_is_refused_by_field() {
        let mut p = profile();
        p.policy.chunk_sizes = vec![2 << 20, 3000];
        let err = SimDevice::new(&p, SEED, Breaks::default()).unwrap_err();
        assert!(err.to_string().contains("policy.chunk_sizes"), "{err}");
        let mut p = profile();
        if let Some(c) = p.sim.as_mut() {
            c.migrate_gbps = 0.0;
        }
        let err = SimDevice::new(&p, SEED, Breaks::default()).unwrap_err();
        assert!(err.to_string().contains("sim.migrate_gbps"), "{err}");
    }

    #[test]
    fn info_reports_the_profile() {
        let dev = device_with(|p| p.xnack = false, Breaks::default());
        let info = dev.info();
        assert_eq!(info.backend, "sim");
        assert_eq!(info.name, "Reference device (profile test)");
        assert_eq!(
            (info.arch.as_str(), info.vram_bytes, info.gpus),
            ("sim", 16 * MIB, 1)
        );
        let lacks: Vec<Need> = Need::DEVICE
            .into_iter()
            .filter(|&n| !info.caps.has(n))
            .collect();
        assert_eq!(
            lacks,
            [Need::Xnack],
            "the profile turned XNACK off, nothing else"
        );
    }

    #[test]
    fn a_device_can_move_to_another_thread() {
        fn send<T: Send>(_: &T) {}
        send(&device());
    }

    /// ns of one migration of `bytes` in the test cost model.
    fn migration(bytes: u64) -> f64 {
        let c = cost();
        c.migration_fixed_us * 1e3 + bytes as f64 / c.migrate_gbps
    }

    fn assert_ns(got: Duration, want: f64) {
        let got = got.as_nanos() as f64;
        assert!(
            (got - want).abs() <= 1.0,
            "got {got} ns, cost model says {want} ns"
        );
    }

    #[test]
    fn durations_and_event_times_come_from_the_cost_model() {
        let c = cost();
        let bytes = 2 * MIB;
        let mut dev = device();
        let buf = dev.alloc(AllocKind::Managed, bytes).unwrap();
        // GPU first touch: launch, one fault, one 2 MiB migration, 2 MiB written in VRAM.
        let run = gpu_fill(&mut dev, buf, buf.all(), 1);
        let fault = (c.launch_us + c.gpu_fault_us) * 1e3;
        assert_ns(
            run.elapsed,
            fault + migration(bytes) + bytes as f64 / c.vram_gbps,
        );
        assert_eq!(events(&mut dev)[0].at_ns, fault as u64);
        // CPU read of it: one CPU fault, the migration back, the bytes at CPU speed.
        let mut words = vec![0u32; (bytes / 4) as usize];
        let took = dev.cpu_read(buf, buf.all(), &mut words).unwrap();
        assert_ns(
            took,
            c.cpu_fault_us * 1e3 + migration(bytes) + bytes as f64 / c.cpu_gbps,
        );
        // In place: the bytes cross the link.
        let shared = dev.alloc(AllocKind::Shared, 4096).unwrap();
        let run = gpu_fill(&mut dev, shared, shared.all(), 1);
        assert_ns(run.elapsed, fault + 4096.0 / c.remote_gbps);
        // Prefetch: only the migration.
        assert_ns(
            dev.prefetch(buf, buf.all(), Location::Vram).unwrap(),
            migration(bytes),
        );
    }

    /// A little of everything, with a race in it; what it saw.
    fn scenario(seed: u64) -> (Vec<MigrationEvent>, u64) {
        let mut dev = SimDevice::new(&profile(), seed, Breaks::default()).unwrap();
        let a = dev.alloc(AllocKind::Managed, 8 * MIB).unwrap();
        let b = dev.alloc(AllocKind::Malloc, 6 * MIB).unwrap();
        cpu_fill(&mut dev, a, a.all(), 1);
        let fill = |buf| Launch::Fill {
            buf,
            span: buf.all(),
            seed,
            generation: 2,
        };
        let pending = dev.launch_async(&fill(a)).unwrap();
        dev.prefetch(a, Span::pages(0, 1024), Location::System)
            .unwrap();
        dev.wait(pending).unwrap();
        dev.launch(&fill(b)).unwrap();
        let _ = dev.alloc(AllocKind::DeviceBuffer, 8 * MIB).unwrap();
        cpu_words(&mut dev, a, Span::pages(700, 1));
        let events = dev.take_events().unwrap_or_default();
        let now = dev.lock().clock.now_ns();
        (events, now)
    }

    #[test]
    fn the_same_seed_gives_the_same_events_and_clock() {
        let (events, now) = scenario(3);
        assert!(events.iter().any(|e| e.trigger == Trigger::Eviction));
        assert_eq!((events.clone(), now), scenario(3));
        assert_ne!(events, scenario(4).0, "the race splits elsewhere");
    }
}
