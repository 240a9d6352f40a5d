//! The transient system memory of TTM evictions, measured from outside the kernel while they
//! happen: a thread samples `MemAvailable` every millisecond, and each time a case asks, the
//! window since it last asked is read as one eviction step.
//!
//! Within a window that starts with `MemAvailable` at `start`, dips to `min` and ends at `end`:
//! - `start - end` is memory still held at the end: the evicted data, now in system memory;
//! - `(start - min) - (start - end)` is memory held only for a while: the transient, the
//!   series' open issue (a throwaway TTM_PL_SYSTEM resource per eviction).
//!
//! Changes under [`NOISE_FLOOR`] count as nothing, so the rest of the machine breathing is not
//! an eviction. This is an estimate and says so in run.json: anything else allocating on the
//! machine during the window is counted too, and a dip shorter than the sampling period can be
//! missed. TTM's global page pool (debugfs `ttm/page_pool`) is read at each window's end where
//! readable: pages the pool kept are system memory that eviction took and did not give back.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::device::observer::{GpuObserver, Provides};
use crate::device::EvictionTransient;
use crate::observe::meminfo;

/// Changes of `MemAvailable` smaller than this are the machine, not an eviction.
pub const NOISE_FLOOR: u64 = 4 << 20;

/// How often the thread samples.
pub const PERIOD: Duration = Duration::from_millis(1);

#[derive(Debug)]
struct Window {
    start: u64,
    min: u64,
    samples: u64,
    /// Why sampling stopped, if it did.
    failed: Option<String>,
}

struct Shared {
    meminfo: PathBuf,
    stop: AtomicBool,
    window: Mutex<Window>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sample(&self) -> Result<u64, String> {
        let now = meminfo::mem_available(&self.meminfo).map_err(|e| e.to_string())?;
        let mut w = self.lock();
        w.min = w.min.min(now);
        w.samples += 1;
        Ok(now)
    }
}

/// One window read as an eviction step: (bytes still held, transient bytes).
pub fn window_step(start: u64, min: u64, end: u64) -> (u64, u64) {
    let min = min.min(end).min(start);
    let held = start.saturating_sub(end);
    let dip = start - min;
    let transient = dip - held.min(dip);
    let floor = |b: u64| if b < NOISE_FLOOR { 0 } else { b };
    (floor(held), floor(transient))
}

/// Eviction transients estimated from `MemAvailable`, for the whole machine.
pub struct EvictionMemory {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    pool: Option<PathBuf>,
    totals: EvictionTransient,
}

impl EvictionMemory {
    /// Samples `meminfo` (normally `/proc/meminfo`) from now on; `pool` is TTM's page pool
    /// file, read where it is readable.
    pub fn open(meminfo: &Path, pool: Option<PathBuf>) -> Result<EvictionMemory, String> {
        let first = meminfo::mem_available(meminfo).map_err(|e| e.to_string())?;
        let shared = Arc::new(Shared {
            meminfo: meminfo.to_path_buf(),
            stop: AtomicBool::new(false),
            window: Mutex::new(Window {
                start: first,
                min: first,
                samples: 1,
                failed: None,
            }),
        });
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("meminfo".into())
            .spawn(move || {
                while !theirs.stop.load(Ordering::Relaxed) {
                    if let Err(why) = theirs.sample() {
                        theirs.lock().failed = Some(why);
                        return;
                    }
                    std::thread::sleep(PERIOD);
                }
            })
            .map_err(|e| format!("starting the sampler thread: {e}"))?;
        let pool = pool.filter(|p| std::fs::read_to_string(p).is_ok());
        Ok(EvictionMemory {
            shared,
            thread: Some(thread),
            pool,
            totals: EvictionTransient::default(),
        })
    }

    fn pool_pages(&self) -> Option<u64> {
        let text = std::fs::read_to_string(self.pool.as_ref()?).ok()?;
        meminfo::parse_ttm_pool_total(&text).map(|(pages, _)| pages)
    }
}

impl Drop for EvictionMemory {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl GpuObserver for EvictionMemory {
    fn name(&self) -> &str {
        "eviction-memory"
    }

    fn provides(&self) -> Provides {
        Provides {
            eviction_transient: true,
            ..Provides::default()
        }
    }

    fn describe(&self) -> String {
        format!(
            "estimated from MemAvailable of {} sampled every {} ms (changes under {} MiB are \
             noise; anything else allocating meanwhile counts too){}",
            self.shared.meminfo.display(),
            PERIOD.as_millis(),
            NOISE_FLOOR >> 20,
            match &self.pool {
                Some(p) => format!("; TTM's page pool from {}", p.display()),
                None => "; TTM's page pool not readable".into(),
            }
        )
    }

    /// The totals, after reading the window since the last call as one step.
    fn eviction_transient(&mut self) -> Option<EvictionTransient> {
        let end = match self.shared.sample() {
            Ok(v) => v,
            Err(why) => {
                eprintln!("svmconf: eviction-memory: {why}");
                return None;
            }
        };
        let mut w = self.shared.lock();
        if let Some(why) = &w.failed {
            eprintln!("svmconf: eviction-memory: sampling stopped: {why}");
        }
        let (held, transient) = window_step(w.start, w.min, end);
        w.start = end;
        w.min = end;
        drop(w);
        let pool_pages = self.pool_pages();
        let t = &mut self.totals;
        if held > 0 {
            t.evictions += 1;
            t.bytes_evicted += held;
        }
        t.transient_bytes_total += transient;
        t.transient_bytes_peak = t.transient_bytes_peak.max(transient);
        t.pool_pages = pool_pages;
        Some(*t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_window_splits_into_what_stays_and_what_came_and_went() {
        // 1 GiB evicted, 1 GiB more taken for a while.
        assert_eq!(
            window_step(10_000 * MIB, 8_000 * MIB, 9_000 * MIB),
            (1000 * MIB, 1000 * MIB)
        );
        // Nothing stays, a dip: all transient.
        assert_eq!(window_step(100 * MIB, 50 * MIB, 100 * MIB), (0, 50 * MIB));
        // Memory freed during the window: nothing held, nothing transient.
        assert_eq!(window_step(100 * MIB, 100 * MIB, 200 * MIB), (0, 0));
        // The machine breathing: under the floor.
        assert_eq!(window_step(100 * MIB, 99 * MIB, 99 * MIB), (0, 0));
    }

    fn write_meminfo(path: &Path, kib: u64) {
        let tmp = path.with_extension("new");
        std::fs::write(
            &tmp,
            format!("MemTotal: 99999999 kB\nMemAvailable: {kib} kB\n"),
        )
        .unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[test]
    fn a_dip_between_two_asks_is_seen_by_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meminfo");
        let pool = dir.path().join("page_pool");
        write_meminfo(&path, 10_000 * 1024);
        std::fs::write(&pool, "unused\n").unwrap();
        let mut obs = EvictionMemory::open(&path, Some(pool.clone())).unwrap();
        assert_eq!(obs.eviction_transient(), Some(EvictionTransient::default()));

        // The "eviction": 3000 MiB taken, then 2000 given back; the thread must see the dip.
        write_meminfo(&path, 7_000 * 1024);
        let deadline = Instant::now() + Duration::from_secs(5);
        while obs.shared.lock().min > 7_000 * MIB && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        write_meminfo(&path, 9_000 * 1024);
        std::fs::write(&pool, "total\t:      256 of  3072000\n").unwrap();
        let t = obs.eviction_transient().unwrap();
        assert_eq!(t.evictions, 1);
        assert_eq!(t.bytes_evicted, 1000 * MIB);
        assert_eq!(t.transient_bytes_total, 2000 * MIB);
        assert_eq!(t.transient_bytes_peak, 2000 * MIB);
        assert_eq!(t.pool_pages, Some(256));
        // Nothing more happened: the totals stay.
        assert_eq!(
            obs.eviction_transient().unwrap().transient_bytes_total,
            2000 * MIB
        );
    }

    #[test]
    fn an_unreadable_meminfo_opens_nothing_and_says_why() {
        let why = EvictionMemory::open(Path::new("/nonexistent/meminfo"), None)
            .err()
            .unwrap();
        assert!(why.contains("/nonexistent/meminfo"), "{why}");
    }
}
