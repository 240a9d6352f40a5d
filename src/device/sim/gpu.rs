//! The one GPU every process shares: VRAM (arena, devmem allocations, LRU), the memory objects,
//! the clock, and the process table with each process's address space, events and pending
//! launches. Processes come from `spawn_process` and `fork`; a GPU reset loses VRAM and aborts
//! the processes that hold the GPU.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::breaks::Breaks;
use super::clock::Clock;
use super::exec::Exec;
use super::faults::Kind;
use super::object::{Mapper, ObjId, Object, Pid};
use super::rng::Rng;
use super::slab::Slab;
use super::space::Space;
use super::vram::Vram;
use crate::device::{
    AllocKind, DeviceError, KernelRun, Location, MigrationEvent, ProcessExit, Result, Trigger,
};
use crate::model::profile::{Policy, Profile, SimCost};

/// SIGABRT: how the ROCm runtime ends a process whose hardware-exception event nobody claims.
const SIGABRT: i32 = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ProcState {
    Running,
    /// Ended by a GPU reset: every call fails, `wait_exit` reports SIGABRT.
    Aborted,
    /// Its `SimDevice` was dropped.
    Ended,
}

#[derive(Debug)]
pub(super) struct Process {
    pub space: Space,
    pub state: ProcState,
    pub events: Vec<MigrationEvent>,
    /// Launches not yet waited for, in stream order: only the front one runs.
    pub queue: VecDeque<Exec>,
    /// Results of launches completed ahead of their `wait`.
    pub finished: BTreeMap<u64, Result<KernelRun>>,
    pub next_launch: u64,
    /// This process's interleavings (racing kernels, CPU threads).
    pub rng: Rng,
    /// It launched a kernel or prefetched: it has a KFD context, which a reset ends.
    pub used_gpu: bool,
}

#[derive(Debug)]
pub(super) struct Gpu {
    /// The reference policy, chunk sizes largest first.
    pub policy: Policy,
    pub xnack: bool,
    pub breaks: Breaks,
    /// The fault plan in force (`--sim-faults`): nothing by default.
    pub faults: super::faults::Faults,
    pub seed: u64,
    pub clock: Clock,
    pub vram: Vram,
    pub objects: Slab<Object>,
    pub processes: Vec<Process>,
    pub resets: u64,
}

impl Gpu {
    pub fn new(profile: &Profile, cost: SimCost, seed: u64, breaks: Breaks) -> Gpu {
        let mut policy = profile.policy.clone();
        policy.chunk_sizes.sort_unstable_by(|a, b| b.cmp(a));
        policy.chunk_sizes.dedup();
        Gpu {
            policy,
            xnack: profile.xnack,
            breaks,
            faults: super::faults::Faults::none(),
            seed,
            clock: Clock::new(cost, breaks.fast_clock, seed),
            vram: Vram::new(profile.vram_bytes),
            objects: Slab::default(),
            processes: Vec::new(),
            resets: 0,
        }
    }

    pub fn add_process(&mut self, space: Space) -> Pid {
        let pid = self.processes.len();
        self.processes.push(Process {
            space,
            state: ProcState::Running,
            events: Vec::new(),
            queue: VecDeque::new(),
            finished: BTreeMap::new(),
            next_launch: 1,
            rng: Rng::new(self.seed ^ (pid as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F)),
            used_gpu: false,
        });
        pid
    }

    pub fn ensure_running(&self, pid: Pid) -> Result<()> {
        match self.processes[pid].state {
            ProcState::Running => Ok(()),
            ProcState::Aborted | ProcState::Ended => Err(DeviceError::ProcessAborted),
        }
    }

    /// Whether allocations of `kind` can become device-private at all.
    pub fn migratable(&self, kind: AllocKind) -> bool {
        match kind {
            AllocKind::Managed | AllocKind::Malloc | AllocKind::Mmap => true,
            AllocKind::Shared | AllocKind::File => {
                self.policy.shared_and_file_migrate || self.breaks.shared_migrates
            }
            AllocKind::DeviceBuffer => false,
        }
    }

    /// Records a migration for `who`, starting at the clock's current reading.
    pub fn emit(
        &mut self,
        who: Mapper,
        first_page: u64,
        pages: u64,
        to: Location,
        trigger: Trigger,
    ) {
        let from = match to {
            Location::Vram => Location::System,
            Location::System => Location::Vram,
        };
        let at_ns = self.clock.now_ns();
        self.processes[who.pid].events.push(MigrationEvent {
            buf: who.buf,
            first_page,
            pages,
            from,
            to,
            trigger,
            at_ns,
        });
    }

    /// fork(): private allocations are copied now (copy-on-write that has already copied,
    /// resident in system memory), shared and file mappings are the same object. Device
    /// buffers are not inherited: the child is a new GPU process.
    pub fn fork(&mut self, parent: Pid) -> Pid {
        let child = self.add_process(Space::continuing(&self.processes[parent].space));
        let inherited: Vec<(u32, AllocKind, ObjId)> = self.processes[parent]
            .space
            .allocs
            .values()
            .filter(|a| a.buf.kind != AllocKind::DeviceBuffer)
            .map(|a| (a.buf.id, a.buf.kind, a.object))
            .collect();
        for (id, kind, object) in inherited {
            let mapper = Mapper {
                pid: child,
                buf: id,
            };
            let shared = matches!(kind, AllocKind::Shared | AllocKind::File);
            let object = if shared || self.breaks.cow_shares_pages {
                self.objects[object].mappers.push(mapper);
                object
            } else {
                let copy = self.vram.snapshot(&self.objects[object], mapper);
                self.objects.insert(copy)
            };
            let alloc = self.processes[parent].space.allocs[&id].forked(object);
            self.processes[child].space.allocs.insert(id, alloc);
        }
        child
    }

    /// The process ends: its memory is released and its pending launches dropped.
    pub fn end_process(&mut self, pid: Pid, state: ProcState) {
        let ids: Vec<u32> = self.processes[pid].space.allocs.keys().copied().collect();
        for id in ids {
            // Every id was just listed, so releasing it cannot fail.
            let _ = self.release(pid, id);
        }
        let process = &mut self.processes[pid];
        process.state = state;
        process.queue.clear();
        process.finished.clear();
    }

    /// A full GPU reset. With `reset_loses_vram` every VRAM frame becomes seeded garbage; the
    /// GPU page tables are gone, so every GPU mapping must fault again; with
    /// `reset_ends_processes` every process that used the GPU (launched or prefetched: it has
    /// a KFD context) is aborted and its memory released (KFD keeps it evicted until it exits; the runtime aborts it). Devmem
    /// allocations of processes that survive keep their frames, now holding garbage.
    pub fn reset(&mut self) {
        self.resets += 1;
        if self.faults.on(Kind::ResetLosesSystem, false) {
            for obj in self.objects.values_mut() {
                for page in 0..obj.devmem.len() as u64 {
                    obj.sys.page_mut(page).fill(0);
                }
            }
        }
        if self.policy.reset_loses_vram && !self.faults.on(Kind::ResetKeepsVram, false) {
            self.vram
                .lose_contents(self.seed ^ self.resets.wrapping_mul(0xD1B5_4A32_D192_ED03));
        }
        if self.breaks.no_vram_after_reset {
            self.vram.disabled = true;
        }
        for process in &mut self.processes {
            for alloc in process.space.allocs.values_mut() {
                alloc.destroy_all_ranges();
            }
        }
        if !self.policy.reset_ends_processes || self.breaks.reset_keeps_processes {
            return;
        }
        for pid in 0..self.processes.len() {
            let process = &self.processes[pid];
            if process.state == ProcState::Running && process.used_gpu {
                self.end_process(pid, ProcState::Aborted);
            }
        }
    }

    /// How the process stands after waiting `limit`.
    pub fn exit_status(&self, pid: Pid, limit: Duration) -> ProcessExit {
        match self.processes[pid].state {
            ProcState::Aborted if self.clock.reset_exit() <= limit => {
                ProcessExit::Signaled(SIGABRT)
            }
            ProcState::Aborted | ProcState::Running => ProcessExit::StillRunning,
            ProcState::Ended => ProcessExit::Exited(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rstest::rstest;

    use crate::device::sim::testutil::*;
    use crate::device::sim::Breaks;
    use crate::device::{
        AllocKind, Destructive, Device, DeviceError, Location, ProcessExit, Span, Trigger,
    };

    #[test]
    fn fork_copies_private_memory_and_shares_shared_memory() {
        let mut parent = device();
        let private = parent.alloc(AllocKind::Managed, 2 * MIB).unwrap();
        let shared = parent.alloc(AllocKind::Shared, 64 << 10).unwrap();
        gpu_fill(&mut parent, private, private.all(), 1);
        cpu_fill(&mut parent, shared, shared.all(), 1);
        events(&mut parent);
        let mut child = parent.fork().unwrap();
        // Same ids; the child's copy is in system memory, the parent's pages did not move.
        assert_eq!(count(child.as_mut(), private, Location::System), 512);
        assert_eq!(count(&mut parent, private, Location::Vram), 512);
        assert!(events(&mut parent).is_empty());
        cpu_check(child.as_mut(), private, private.all(), 1);
        // Copy-on-write: the child's writes stay in the child.
        gpu_fill(child.as_mut(), private, private.all(), 2);
        gpu_fill(&mut parent, private, Span::pages(0, 1), 3);
        cpu_check(child.as_mut(), private, private.all(), 2);
        cpu_check(&mut parent, private, Span::pages(1, 511), 1);
        // Shared: writes visible both ways.
        cpu_fill(child.as_mut(), shared, shared.all(), 2);
        cpu_check(&mut parent, shared, shared.all(), 2);
        gpu_fill(&mut parent, shared, shared.all(), 3);
        cpu_check(child.as_mut(), shared, shared.all(), 3);
        // The child ending does not take the shared pages with it.
        drop(child);
        cpu_check(&mut parent, shared, shared.all(), 3);
    }

    #[test]
    fn processes_share_vram_the_lru_and_the_clock() {
        let mut first = device();
        let mut second = first.spawn_process().unwrap();
        let a = first.alloc(AllocKind::Managed, 12 * MIB).unwrap();
        gpu_fill(&mut first, a, a.all(), 1);
        let b = second.alloc(AllocKind::Managed, 8 * MIB).unwrap();
        assert_eq!(b.id, 1, "buffer ids are per process");
        gpu_fill(second.as_mut(), b, b.all(), 1);
        assert_eq!(first.vram_used(), Some(16 * MIB));
        assert_eq!(second.vram_used(), Some(16 * MIB));
        // The second process's faults evicted the first's two oldest ranges, reported to it.
        let evicted = events(&mut first);
        let last_fill = evicted
            .iter()
            .filter(|e| e.trigger == Trigger::GpuFault)
            .map(|e| e.at_ns)
            .max();
        assert_eq!(
            moves(&evicted, Trigger::Eviction),
            vec![(0, 512), (512, 512)]
        );
        let theirs = events(second.as_mut());
        assert_eq!(moves(&theirs, Trigger::GpuFault).len(), 4);
        assert!(
            theirs.iter().all(|e| Some(e.at_ns) > last_fill),
            "one clock"
        );
        assert_eq!(first.eviction_transient(), second.eviction_transient());
        cpu_check(&mut first, a, a.all(), 1);
        // A process ending gives its VRAM back.
        drop(second);
        assert_eq!(first.vram_used(), Some(0));
    }

    #[test]
    fn reset_aborts_the_processes_holding_the_gpu_and_a_new_process_migrates() {
        let mut holder = device();
        let mut idle = holder.spawn_process().unwrap();
        let buf = holder.alloc(AllocKind::Managed, 2 * MIB).unwrap();
        gpu_fill(&mut holder, buf, buf.all(), 1);
        idle.gpu_reset(&Destructive(())).unwrap();
        assert_eq!(
            holder.alloc(AllocKind::Managed, 4096),
            Err(DeviceError::ProcessAborted)
        );
        assert_eq!(
            holder.residency(buf, buf.all()),
            Some(Err(DeviceError::ProcessAborted))
        );
        assert_eq!(
            holder.wait_exit(Duration::from_millis(10)),
            Ok(ProcessExit::StillRunning)
        );
        assert_eq!(
            holder.wait_exit(Duration::from_secs(1)),
            Ok(ProcessExit::Signaled(6))
        );
        assert_eq!(
            idle.wait_exit(Duration::from_secs(1)),
            Ok(ProcessExit::StillRunning)
        );
        assert_eq!(
            idle.vram_used(),
            Some(0),
            "the aborted process's memory is gone"
        );
        let mut fresh = idle.spawn_process().unwrap();
        let again = fresh.alloc(AllocKind::Managed, 2 * MIB).unwrap();
        gpu_fill(fresh.as_mut(), again, again.all(), 2);
        assert_eq!(count(fresh.as_mut(), again, Location::Vram), 512);
        cpu_check(fresh.as_mut(), again, again.all(), 2);
        // The caller of the reset is aborted too when it holds allocations.
        fresh.gpu_reset(&Destructive(())).unwrap();
        assert_eq!(
            fresh.alloc(AllocKind::Managed, 4096),
            Err(DeviceError::ProcessAborted)
        );
    }

    #[rstest]
    #[case::loses_vram(true, false)]
    #[case::keeps_vram(false, true)]
    fn a_process_that_survives_a_reset_reads_what_vram_holds(
        #[case] loses: bool,
        #[case] intact: bool,
    ) {
        let mut dev = with_policy(|p| {
            p.reset_ends_processes = false;
            p.reset_loses_vram = loses;
        });
        let buf = dev.alloc(AllocKind::Managed, 64 << 10).unwrap();
        gpu_fill(&mut dev, buf, buf.all(), 1);
        dev.gpu_reset(&Destructive(())).unwrap();
        let words = cpu_words(&mut dev, buf, buf.all());
        assert_eq!(pattern(1).check(0, &words).is_ok(), intact);
        if loses {
            assert!(words.iter().any(|w| *w != 0), "garbage, not zeros");
        }
    }

    #[test]
    fn a_reset_drops_every_gpu_mapping() {
        let mut dev = device_with(|p| p.policy.reset_ends_processes = false, Breaks::default());
        // Shared memory is mapped in place, one 4 KiB range per page at its unaligned address.
        let buf = dev.alloc(AllocKind::Shared, 64 << 10).unwrap();
        assert_eq!(gpu_fill(&mut dev, buf, buf.all(), 1).faults, Some(16));
        assert_eq!(gpu_fill(&mut dev, buf, buf.all(), 1).faults, Some(0));
        dev.gpu_reset(&Destructive(())).unwrap();
        assert_eq!(gpu_fill(&mut dev, buf, buf.all(), 1).faults, Some(16));
    }
}
