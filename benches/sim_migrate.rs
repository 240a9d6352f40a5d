//! How fast the reference device really moves bytes, in wall-clock time: prefetch of 64 MiB to
//! VRAM and back, and a GPU first touch of 64 MiB (one fault and one 2 MiB migration per
//! range), each repeated; then the peak resident memory of the process. The sim copies every
//! migrated byte, so this is the ceiling on how big a case the suite can run on it.
//!
//! It runs on the default profile, `fixtures/profiles/sim.yaml`.
//!
//! `cargo bench --bench sim_migrate`

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use svmconf::device::kernels::Launch;
use svmconf::device::sim::{Breaks, SimDevice};
use svmconf::device::{AllocKind, Device, Location};
use svmconf::model::pattern::Pattern;
use svmconf::model::profile::Profile;
use svmconf::model::timing::{gbps, Stats};

const SIZE: u64 = 64 << 20;
const REPS: usize = 10;

/// The default profile, the one the suite runs with: `fixtures/profiles/sim.yaml`.
fn profile() -> Result<Profile> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    Ok(svmconf::fixtures::load_profile(&root, "sim")?.value)
}

fn wall<T>(f: impl FnOnce() -> Result<T>) -> Result<Duration> {
    let start = Instant::now();
    f()?;
    Ok(start.elapsed())
}

fn report(what: &str, samples: &[Duration]) {
    let rates: Vec<f64> = samples.iter().map(|d| gbps(SIZE, *d)).collect();
    if let Some(s) = Stats::of(&rates) {
        println!(
            "{what:<28} {:>7.2} GB/s wall-clock (median of {}, min {:.2}, max {:.2})",
            s.median, s.n, s.min, s.max
        );
    }
}

/// Peak resident set of this process (VmHWM), in MiB.
fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

fn main() -> Result<()> {
    let mut dev = SimDevice::new(&profile()?, 1, Breaks::default()).context("profile sim")?;
    let buf = dev.alloc(AllocKind::Managed, SIZE)?;
    let sum = dev.alloc(AllocKind::Managed, 8)?;
    let mut words = vec![0u32; (SIZE / 4) as usize];
    Pattern::new(1, 1).fill(0, &mut words);
    dev.cpu_write(buf, buf.all(), &words)?;
    drop(words);
    let first_touch = Launch::TouchRead {
        buf,
        span: buf.all(),
        stride_pages: 1,
        sum,
    };
    let (mut to_vram, mut to_ram, mut touch) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..REPS {
        to_vram.push(wall(|| {
            Ok(dev.prefetch(buf, buf.all(), Location::Vram)?)
        })?);
        to_ram.push(wall(|| {
            Ok(dev.prefetch(buf, buf.all(), Location::System)?)
        })?);
        touch.push(wall(|| Ok(dev.launch(&first_touch)?))?);
        dev.prefetch(buf, buf.all(), Location::System)?;
    }
    println!("sim migrations of {} MiB, {REPS} repetitions", SIZE >> 20);
    report("prefetch to VRAM", &to_vram);
    report("prefetch to system", &to_ram);
    report("GPU first touch (faults)", &touch);
    match peak_rss_mib() {
        Some(mib) => println!("peak RSS (VmHWM)             {mib:>7} MiB"),
        None => println!("peak RSS (VmHWM)             unavailable"),
    }
    Ok(())
}
