//! What reading residency from the page tables costs, per MiB of the range: one positioned
//! read of `/proc/self/pagemap` (8 bytes per page), the observer's stable read (two reads and
//! the decoding of every word), and one `PAGEMAP_SCAN` (Linux 6.7+: runs of pages, no swap
//! types), over a range all touched (4 KiB pages, then transparent huge pages where the
//! kernel gives them) and over a range never touched. Each figure is the median of several
//! rounds.
//!
//! `cargo bench --bench pagemap`

use std::fs::File;
use std::time::{Duration, Instant};

use svmconf::observe::pagemap::{scan, Pagemap};

const MIB: usize = 1 << 20;
const PAGE: usize = 4096;
const ROUNDS: usize = 15;

/// A private anonymous mapping of `len` bytes, aligned to 2 MiB, unmapped on drop.
struct Mapping {
    base: *mut libc::c_void,
    len: usize,
    addr: usize,
}

impl Mapping {
    fn new(len: usize, huge: bool) -> Mapping {
        let total = len + 2 * MIB;
        // SAFETY: a fresh anonymous mapping; nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED, "mmap of {total} bytes");
        let addr = (base as usize).next_multiple_of(2 * MIB);
        let advice = if huge {
            libc::MADV_HUGEPAGE
        } else {
            libc::MADV_NOHUGEPAGE
        };
        // SAFETY: advice on a range of the mapping made above.
        unsafe { libc::madvise(addr as *mut libc::c_void, len, advice) };
        Mapping {
            base,
            len: total,
            addr,
        }
    }

    fn touch(&self, len: usize) {
        for off in (0..len).step_by(PAGE) {
            // SAFETY: inside the mapping, which is readable and writable.
            unsafe { std::ptr::write_volatile((self.addr + off) as *mut u8, 1) };
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, no longer used.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn per_mib(d: Duration, len: usize) -> f64 {
    d.as_secs_f64() * 1e6 / (len / MIB) as f64
}

fn time(mut f: impl FnMut()) -> Duration {
    median(
        (0..ROUNDS)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let len = 256 * MIB;
    let pages = (len / PAGE) as u64;
    let file = File::open("/proc/self/pagemap").expect("/proc/self/pagemap");
    let mut pm = Pagemap::open("none");
    println!(
        "pagemap: {} MiB ranges, median of {ROUNDS} rounds, µs per MiB",
        len / MIB
    );
    println!("  {}", pm.describe());
    println!(
        "  {:<34} {:>10} {:>12} {:>10}",
        "range", "read()", "stable read", "SCAN"
    );
    for (what, huge, touched) in [
        ("touched, 4 KiB pages", false, true),
        ("touched, huge pages advised", true, true),
        ("never touched", false, false),
    ] {
        let m = Mapping::new(len, huge);
        if touched {
            m.touch(len);
        }
        let addr = m.addr as u64;
        let read = time(|| {
            pm.words(addr, pages).expect("read");
        });
        let stable = time(|| {
            pm.pages(addr, pages).expect("pages");
        });
        let scanned = match scan::categories(&file, addr, pages) {
            Ok(c) => {
                let huge_pages = c.iter().filter(|c| *c & scan::category::HUGE != 0).count();
                let t = time(|| {
                    scan::categories(&file, addr, pages).expect("scan");
                });
                format!("{:10.1}  ({huge_pages} pages huge)", per_mib(t, len))
            }
            Err(e) => format!("unavailable: {e}"),
        };
        println!(
            "  {what:<34} {:10.1} {:12.1} {scanned}",
            per_mib(read, len),
            per_mib(stable, len)
        );
    }
}
