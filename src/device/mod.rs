//! The Device trait: what a case may do to memory and what it may observe, in the vocabulary of
//! the series (residency, range, devmem allocation, prefetch, preferred location, evict,
//! migrate-to-ram, trigger) rather than of one vendor's API.
//!
//! A case holds a `&mut dyn Device` and never learns which backend is behind it. Everything a
//! backend cannot observe is an `Option` (`None` = not observable here) so the case can skip or
//! fall back to other evidence, and say which it used.

pub mod amd;
pub mod backend;
pub mod dmirror;
pub mod hip;
pub mod host;
pub mod kernels;
// Host memory of the hip, dmirror and vsvm backends: an FFI module, where `unsafe` is allowed
// (its own doc says what it holds; an outer doc here would move its links to this scope).
#[allow(unsafe_code)]
pub mod memory;
pub mod observer;
pub mod reference;
pub mod registry;
pub mod remote;
pub mod sim;
pub mod vsvm;

use std::fmt;
use std::time::Duration;

use crate::device::kernels::Launch;

pub use crate::model::capability::{Capabilities, DeviceInfo, Need};
pub use crate::model::memory::{AllocKind, PAGE_SIZE, WORDS_PER_PAGE};

/// Where a page lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Location {
    System,
    Vram,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Location::System => "system",
            Location::Vram => "vram",
        })
    }
}

/// An allocation handle. Cheap to copy; only meaningful to the device that made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Buf {
    pub id: u32,
    pub kind: AllocKind,
    pub len: u64,
}

impl Buf {
    /// The whole allocation.
    pub fn all(self) -> Span {
        Span::new(0, self.len)
    }

    pub fn pages(self) -> u64 {
        self.len.div_ceil(PAGE_SIZE)
    }
}

/// A byte span inside one allocation, relative to its start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Span {
    pub offset: u64,
    pub len: u64,
}

impl Span {
    pub const fn new(offset: u64, len: u64) -> Span {
        Span { offset, len }
    }

    /// Pages `first .. first + count` of an allocation.
    pub const fn pages(first: u64, count: u64) -> Span {
        Span::new(first * PAGE_SIZE, count * PAGE_SIZE)
    }

    pub fn end(self) -> u64 {
        self.offset + self.len
    }

    /// The first word index covered, the base index of patterns over this span.
    pub fn first_word(self) -> u64 {
        self.offset / 4
    }

    pub fn words(self) -> u64 {
        self.len / 4
    }

    /// The part of this span inside `outer` (empty when they do not meet).
    pub fn clamp(self, outer: Span) -> Span {
        let start = self.offset.max(outer.offset);
        let end = self.end().min(outer.end()).max(start);
        Span::new(start, end - start)
    }

    /// Page indices touched by the span, partial pages included.
    pub fn page_range(self) -> std::ops::Range<u64> {
        if self.len == 0 {
            return 0..0;
        }
        self.offset / PAGE_SIZE..self.end().div_ceil(PAGE_SIZE)
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x})", self.offset, self.end())
    }
}

/// Memory advice, as hipMemAdvise passes it to the SVM attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Advice {
    PreferredLocation(Location),
    UnsetPreferredLocation,
    AccessedBy,
    ReadMostly,
}

/// Page protection of a CPU mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Protection {
    ReadWrite,
    ReadOnly,
}

/// What caused a migration, with the KFD SMI trigger numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Prefetch = 0,
    GpuFault = 1,
    CpuFault = 2,
    Eviction = 3,
    /// The evidence does not say (the series' trace names no trigger): a case counts it as
    /// caused by what it did.
    Unnamed = 255,
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Trigger::Prefetch => "prefetch",
            Trigger::GpuFault => "gpu-fault",
            Trigger::CpuFault => "cpu-fault",
            Trigger::Unnamed => "unnamed",
            Trigger::Eviction => "eviction",
        })
    }
}

/// One migration the device saw, in pages of one allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MigrationEvent {
    pub buf: u32,
    pub first_page: u64,
    pub pages: u64,
    pub from: Location,
    pub to: Location,
    pub trigger: Trigger,
    /// Device clock at the start of the migration.
    pub at_ns: u64,
}

impl MigrationEvent {
    /// The `buf` of pages known to have moved without knowing whose (the series' trace of a
    /// copy to system memory gives a count, no address).
    pub const UNATTRIBUTED: u32 = u32::MAX;
}

/// System memory taken and given back while TTM evicted SVM allocations (the series' open
/// issue: a throwaway TTM_PL_SYSTEM destination per eviction that bo_move never uses).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EvictionTransient {
    pub evictions: u64,
    pub bytes_evicted: u64,
    /// Sum of the transient allocations over all evictions.
    pub transient_bytes_total: u64,
    /// The most transient memory held at one time.
    pub transient_bytes_peak: u64,
    /// Pages TTM's page pool holds now, where the device can read it: system memory eviction
    /// may have taken and not given back.
    pub pool_pages: Option<u64>,
    /// System pages TTM populated for those destinations, where the device can tell them from
    /// the bookkeeping (the ttm_tt and its page array) that `transient_bytes_total` counts.
    #[serde(default)]
    pub transient_pages: Option<u64>,
}

/// A level a device keeps ([`Device::levels`]): what it is, its value now, and how far above
/// its value before a case it may end without being a leak.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Level {
    pub name: String,
    pub value: u64,
    pub slack: u64,
    /// `bytes`, or what is counted (`allocations`).
    pub unit: String,
}

impl Level {
    /// VRAM in use, `bytes` now, allocated in granules of `granularity` bytes.
    pub fn vram(bytes: u64, granularity: u64) -> Level {
        Level {
            name: "VRAM in use".into(),
            value: bytes,
            slack: granularity,
            unit: "bytes".into(),
        }
    }

    /// A count that must come back exactly.
    pub fn count(name: &str, value: u64, unit: &str) -> Level {
        Level {
            name: name.into(),
            value,
            slack: 0,
            unit: unit.into(),
        }
    }
}

/// The levels of `after` that grew beyond their slack since `before`, described: a leak.
pub fn leaks(before: &[Level], after: &[Level]) -> Vec<String> {
    after
        .iter()
        .filter_map(|a| {
            let b = before.iter().find(|b| b.name == a.name)?;
            (a.value > b.value + a.slack).then(|| {
                format!(
                    "{} is {} {}, {} more than before the case's first allocation ({}; {} \
                     allowed by the device's granularity)",
                    a.name,
                    a.value,
                    a.unit,
                    a.value - b.value,
                    b.value,
                    a.slack
                )
            })
        })
        .collect()
}

/// What a DRM SVM driver's free may take to give its VRAM back ([`Device::release_settles_within`]):
/// its deferred release (drm_gpusvm's garbage collector, a deferred put) and TTM's delayed
/// delete run on workqueues, seconds later on a loaded emulated machine.
pub const LEAK_SETTLE: Duration = Duration::from_secs(5);

/// What is still a leak once the device has had `settle` to give back what it releases late:
/// `read` is called for the levels now, again every 50 ms while some level is over its
/// slack. Returns the leaks (empty: none) and how long it waited.
pub fn settled_leaks(
    before: &[Level],
    mut read: impl FnMut() -> Vec<Level>,
    settle: Duration,
) -> (Vec<String>, Duration) {
    let clock = std::time::Instant::now();
    loop {
        let found = leaks(before, &read());
        if found.is_empty() || clock.elapsed() >= settle {
            return (found, clock.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50).min(settle));
    }
}

/// How a process that held the GPU ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcessExit {
    Exited(i32),
    Signaled(i32),
    /// Still running when the limit expired.
    StillRunning,
}

/// The result of one kernel launch, timed with device events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KernelRun {
    pub elapsed: Duration,
    /// GPU page faults the launch took, where the device counts them.
    pub faults: Option<u64>,
}

/// A launch started with [`Device::launch_async`]; finish it with [`Device::wait`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a pending launch must be waited for"]
pub struct Pending(pub u64);

/// Proof that the user allowed destructive operations (`--allow-destructive`). Only the runner
/// makes one.
#[derive(Debug)]
pub struct Destructive(pub(crate) ());

/// CPU accesses from several threads at once, each thread with its own list of pages.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct CpuThreads {
    pub buf: Buf,
    pub op: CpuOp,
    /// Per thread, the page indices it touches in order.
    pub pages: Vec<Vec<u64>>,
}

impl CpuThreads {
    /// Runs the threads on this machine's CPUs, each touching its pages in order with `touch`
    /// (the word offset of the page's first word, and what to do there); returns the wall time
    /// they took, or the first page a thread was refused at with why. Every thread runs to its
    /// end or its first refusal. A page outside `buf` is refused before any thread starts.
    pub fn run<E: Send>(
        &self,
        touch: impl Fn(u64, CpuOp) -> std::result::Result<(), E> + Sync,
    ) -> Result<std::result::Result<Duration, (u64, E)>> {
        let buf = self.buf;
        if let Some(&p) = self.pages.iter().flatten().find(|p| **p >= buf.pages()) {
            return Err(DeviceError::OutOfBounds {
                buf: buf.id,
                span: Span::pages(p, 1),
                len: buf.len,
            });
        }
        let touch = &touch;
        let clock = std::time::Instant::now();
        let results: Vec<Option<std::result::Result<(), (u64, E)>>> = std::thread::scope(|s| {
            let threads: Vec<_> = self
                .pages
                .iter()
                .map(|pages| {
                    s.spawn(move || {
                        for &p in pages {
                            touch(p * PAGE_SIZE, self.op).map_err(|e| (p, e))?;
                        }
                        Ok(())
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().ok()).collect()
        });
        let took = clock.elapsed();
        for r in results {
            match r {
                Some(Ok(())) => {}
                Some(Err(refused)) => return Ok(Err(refused)),
                None => {
                    return Err(DeviceError::Backend(
                        "a CPU thread of cpu_threads panicked".into(),
                    ))
                }
            }
        }
        Ok(Ok(took))
    }
}

/// What each touch of a CPU thread does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CpuOp {
    /// Read the page's first word.
    Read,
    /// Add one to the page's first word with a system-scope atomic.
    AtomicInc,
}

/// A text fixed in the source. Spelled through this alias in [`DeviceError`] because serde
/// takes a plain `&'static str` field as borrowed from its input, which an error read from a
/// pipe cannot be; `remote::intern` makes the `&'static str` again.
pub type FixedText = &'static str;

/// Serde: a device in a second process sends its errors as they are (`remote`).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DeviceError {
    #[error("out of {what} memory: asked for {bytes} bytes")]
    OutOfMemory {
        #[serde(deserialize_with = "remote::intern")]
        what: FixedText,
        bytes: u64,
    },
    #[error("{span} is outside allocation {buf} of {len} bytes")]
    OutOfBounds { buf: u32, span: Span, len: u64 },
    #[error("allocation {0} does not exist (freed or never made)")]
    NoSuchBuffer(u32),
    #[error("{op} is not supported for {kind} allocations")]
    Unsupported {
        #[serde(deserialize_with = "remote::intern")]
        op: FixedText,
        kind: AllocKind,
    },
    #[error("{0} is not supported by this device")]
    NotSupported(#[serde(deserialize_with = "remote::intern")] FixedText),
    #[error("CPU access to unmapped address at offset {offset:#x} of allocation {buf} (SIGSEGV)")]
    Segfault { buf: u32, offset: u64 },
    #[error("GPU memory fault at offset {offset:#x} of allocation {buf}: {reason}")]
    GpuMemoryFault {
        buf: u32,
        offset: u64,
        reason: String,
    },
    #[error("the process was aborted by the GPU reset; it must exit")]
    ProcessAborted,
    #[error("device operation timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Backend(String),
}

pub type Result<T, E = DeviceError> = std::result::Result<T, E>;

/// How one rule of a fault plan fared while a case ran (`--sim-faults`; see
/// `device::sim::faults`): what the journal keeps per case, so that a plan that never fired
/// is told apart from one the suite missed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Injected {
    /// The rule's index in the plan's `rules`, from 0.
    pub rule: usize,
    /// Its kind, as the plan spells it: `wrong_page`.
    pub kind: String,
    /// Occurrences it matched: direction, trigger, pages and helpers fit.
    pub matched: u64,
    /// Occurrences it broke: matched, then `nth` and `probability` passed.
    pub fired: u64,
}

/// One process's view of one GPU.
///
/// Methods that act take `&mut self`; durations come from the device's own clock (device
/// events for GPU work, a monotonic clock for CPU work, the simulated clock on `sim`).
pub trait Device: Send {
    fn info(&self) -> &DeviceInfo;

    // --- allocations -------------------------------------------------------------------------
    fn alloc(&mut self, kind: AllocKind, len: u64) -> Result<Buf>;
    fn free(&mut self, buf: Buf) -> Result<()>;
    /// The CPU virtual address of the allocation's first byte now, where the device knows one:
    /// what a failure names bad pages by beside their index, and what the kernel log names.
    fn address(&self, _buf: Buf) -> Option<u64> {
        None
    }
    /// Places this device's later host allocations from `first` on (`--place-at`): the first
    /// starts there, each later one after the one before (see [`memory::Placer`]). Refused where
    /// the device does not choose where its memory goes.
    fn place_at(&mut self, _first: u64) -> Result<()> {
        Err(DeviceError::NotSupported(
            "placing allocations at an address (--place-at)",
        ))
    }
    /// munmap part of an allocation; later accesses to that part are errors.
    fn unmap(&mut self, buf: Buf, span: Span) -> Result<()>;
    /// mremap the allocation to a new address, same length; contents follow.
    fn remap(&mut self, buf: Buf) -> Result<()>;
    /// mprotect the CPU mapping (and with it what the GPU may do).
    fn protect(&mut self, buf: Buf, prot: Protection) -> Result<()>;
    /// fork(): a child process whose private allocations are copy-on-write copies.
    fn fork(&mut self) -> Result<Box<dyn Device>>;

    // --- policy ------------------------------------------------------------------------------
    fn advise(&mut self, buf: Buf, span: Span, advice: Advice) -> Result<()>;
    /// Migrate every page of `span` to `to`; returns the device-timed duration.
    fn prefetch(&mut self, buf: Buf, span: Span, to: Location) -> Result<Duration>;

    // --- GPU work ----------------------------------------------------------------------------
    fn launch(&mut self, launch: &Launch) -> Result<KernelRun> {
        let pending = self.launch_async(launch)?;
        self.wait(pending)
    }
    /// Start a kernel and return at once: what the CPU or a prefetch does before `wait` races it.
    fn launch_async(&mut self, launch: &Launch) -> Result<Pending>;
    fn wait(&mut self, pending: Pending) -> Result<KernelRun>;

    // --- CPU work ----------------------------------------------------------------------------
    /// CPU reads of `span` into `out` (one word per 4 bytes), taking CPU faults as they come.
    fn cpu_read(&mut self, buf: Buf, span: Span, out: &mut [u32]) -> Result<Duration>;
    /// CPU writes of `words` over `span`.
    fn cpu_write(&mut self, buf: Buf, span: Span, words: &[u32]) -> Result<Duration>;
    /// Touches from several CPU threads at once.
    fn cpu_threads(&mut self, work: &CpuThreads) -> Result<Duration>;

    // --- observation: each `None` when this device cannot see it -----------------------------
    /// Per page of `span`, where it lives now.
    fn residency(&mut self, buf: Buf, span: Span) -> Option<Result<Vec<Location>>>;
    /// Migration events since the last call.
    fn take_events(&mut self) -> Option<Vec<MigrationEvent>>;
    /// Bytes of VRAM in use, device-wide.
    fn vram_used(&mut self) -> Option<u64>;
    /// Bytes of VRAM a new allocation could take now (hipMemGetInfo's free): what eviction
    /// pressure is sized from, since other users of the GPU and the driver hold some.
    fn vram_free(&mut self) -> Option<u64>;
    /// Transient system memory of TTM evictions since the device was opened.
    fn eviction_transient(&mut self) -> Option<EvictionTransient>;
    /// The levels this device keeps that must come back to where they were once a case has
    /// freed everything it allocated (VRAM in use, live device allocations, transient system
    /// memory), each with the slack its granularity allows. The runner compares them before a
    /// case's first allocation and after its last free; growth beyond the slack is a leak.
    fn levels(&mut self) -> Vec<Level> {
        self.vram_used()
            .map(|bytes| Level::vram(bytes, PAGE_SIZE))
            .into_iter()
            .collect()
    }
    /// How long after a free this device may still be giving the memory back (a deferred
    /// release on a workqueue): the leak check waits up to this for [`Device::levels`] to
    /// come back within their slack. Zero where a free gives everything back before it
    /// returns.
    fn release_settles_within(&self) -> Duration {
        Duration::ZERO
    }
    /// The migration clock: device time spent copying pages between system memory and VRAM
    /// since the device was opened, every process's, fault handling and kernel work excluded.
    /// Its difference across an operation is what the operation's migrations took. `None`
    /// where the device cannot separate migrations from the rest of an operation; a case then
    /// times the operation less the same operation on resident data ([`crate::case::Ctx::timed_migration`]).
    fn migration_time(&mut self) -> Option<Duration> {
        None
    }
    /// Evicts every SVM page in VRAM to system memory now, every process's, as TTM does when
    /// it empties VRAM (before a reset, on suspend); returns how long it took. `None` where
    /// the device cannot be asked to (a GPU evicts under pressure only).
    fn evict_all(&mut self) -> Option<Result<Duration>> {
        None
    }
    /// Per page of `span`, whether the CPU maps it with a huge (PMD, 2 MiB) entry now: a
    /// transparent huge page. `None` where the device cannot tell.
    fn huge_mapped(&mut self, _buf: Buf, _span: Span) -> Option<Result<Vec<bool>>> {
        None
    }

    // --- processes and reset -----------------------------------------------------------------
    /// A fresh process on the same GPU (its own address space, the same VRAM).
    fn spawn_process(&mut self) -> Result<Box<dyn Device>>;
    /// Wait up to `limit` for this process to end (only for processes from `spawn_process`).
    fn wait_exit(&mut self, limit: Duration) -> Result<ProcessExit>;
    /// Full GPU reset. VRAM contents are lost and processes holding the GPU are ended.
    fn gpu_reset(&mut self, permit: &Destructive) -> Result<()>;

    // --- fault injection (the reference device) --------------------------------------------
    /// Says that allocation `buf` is the suite's own machinery (a GPU verify's result buffer),
    /// not data under test: a fault plan's rules leave its migrations, faults and free alone
    /// unless they ask for helpers, so that `nth` counts the case's own traffic only. Nothing
    /// on a device without fault injection.
    fn mark_helper(&mut self, _buf: Buf) {}
    /// How each rule of the fault plan in force has fared on this device so far, in plan
    /// order; empty where no plan is in force or the device injects no faults.
    fn injected(&mut self) -> Vec<Injected> {
        Vec::new()
    }

    // --- evidence ------------------------------------------------------------------------------
    /// Lines for the case's evidence from the device's own observers since the last call:
    /// what the page tables could not tell (said once), how many pages they cross-checked.
    fn take_notes(&mut self) -> Vec<String> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// VRAM given back by a deferred release after the free returned is no leak; VRAM still
    /// held once the device had its time is, and the check says how long it waited.
    #[test]
    fn a_late_release_settles_and_a_leak_does_not() {
        let before = [Level::vram(0, 4096)];
        let mut reads = vec![8192, 8192, 0].into_iter();
        let (found, waited) = settled_leaks(
            &before,
            || vec![Level::vram(reads.next().unwrap_or(0), 4096)],
            Duration::from_secs(5),
        );
        assert!(found.is_empty(), "{found:?}");
        assert!(waited >= Duration::from_millis(100), "{waited:?}");

        let (found, waited) = settled_leaks(
            &before,
            || vec![Level::vram(8192, 4096)],
            Duration::from_millis(200),
        );
        assert_eq!(found.len(), 1);
        assert!(
            found[0].starts_with("VRAM in use is 8192 bytes, 8192 more"),
            "{found:?}"
        );
        assert!(waited >= Duration::from_millis(200), "{waited:?}");

        let mut calls = 0;
        let (found, waited) = settled_leaks(
            &before,
            || {
                calls += 1;
                vec![Level::vram(4096, 4096)]
            },
            Duration::from_secs(5),
        );
        assert!(found.is_empty() && calls == 1 && waited < Duration::from_millis(50));
    }
    use std::sync::atomic::{AtomicU64, Ordering};

    fn work(pages: Vec<Vec<u64>>) -> CpuThreads {
        CpuThreads {
            buf: Buf {
                id: 1,
                kind: AllocKind::Managed,
                len: 4 * PAGE_SIZE,
            },
            op: CpuOp::AtomicInc,
            pages,
        }
    }

    #[test]
    fn cpu_threads_touch_every_page_of_every_thread_with_the_op() {
        let touched = AtomicU64::new(0);
        let ran = work(vec![vec![0, 1, 2, 3]; 3]).run(|offset, op| {
            assert_eq!(op, CpuOp::AtomicInc);
            touched.fetch_add(offset / PAGE_SIZE + 1, Ordering::SeqCst);
            Ok::<(), ()>(())
        });
        assert!(matches!(ran, Ok(Ok(_))), "{ran:?}");
        assert_eq!(touched.load(Ordering::SeqCst), 3 * (1 + 2 + 3 + 4));
    }

    #[test]
    fn cpu_threads_report_the_page_refused_and_refuse_pages_outside_before_starting() {
        let ran = work(vec![vec![0, 1], vec![2, 3]]).run(|offset, _| {
            if offset == 2 * PAGE_SIZE {
                Err("unmapped")
            } else {
                Ok(())
            }
        });
        assert!(matches!(ran, Ok(Err((2, "unmapped")))), "{ran:?}");
        let touched = AtomicU64::new(0);
        let ran = work(vec![vec![0], vec![4]]).run(|_, _| {
            touched.fetch_add(1, Ordering::SeqCst);
            Ok::<(), ()>(())
        });
        assert!(
            matches!(ran, Err(DeviceError::OutOfBounds { .. })),
            "{ran:?}"
        );
        assert_eq!(touched.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_cpu_thread_that_panics_is_an_error_not_a_pass() {
        let ran = work(vec![vec![0]])
            .run(|_, _| -> std::result::Result<(), ()> { panic!("the touch panicked") });
        assert!(matches!(ran, Err(DeviceError::Backend(_))), "{ran:?}");
    }
}
