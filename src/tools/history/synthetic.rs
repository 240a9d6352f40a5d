//! A made-up history: run folders as the lab leaves them, one a night, with defects planted
//! at known nights, for the demonstrations and tests of `history`, the Otava agreement in CI,
//! the bisect recipe and the cost of a long history. Nothing here is measured: every figure
//! is drawn from a seeded noise model (within a night and between nights), and every verdict
//! from the plan below.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::model::status::Status;
use crate::model::timing::{Metric, Unit};
use crate::results::{CaseRecord, RunInfo, JOURNAL_FILE};

/// What the made-up nights hold.
#[derive(Clone, Debug)]
pub struct Plan {
    pub nights: usize,
    /// Cases a night: paths × sizes, each with a timed bandwidth metric.
    pub paths: usize,
    /// Samples a night of each metric.
    pub samples: usize,
    /// Coefficient of variation of the samples within a night.
    pub cv: f64,
    /// Coefficient of variation of the nightly level (a reboot changes more than a repetition).
    pub night_cv: f64,
    /// From this night on (0-based), path 0 is `step` slower (0.1: 10% less bandwidth).
    pub step_at: Option<usize>,
    pub step: f64,
    /// From this night on, [`BROKEN`] fails (a data corruption) every night.
    pub broken_at: Option<usize>,
    /// [`FLAKY`] fails on nights with this probability (a flake).
    pub flaky: f64,
    /// A night in the middle with every sample 3x slower on every path (a noisy machine).
    pub outlier_night: Option<usize>,
    pub seed: u64,
}

impl Default for Plan {
    fn default() -> Plan {
        Plan {
            nights: 100,
            paths: 8,
            samples: 10,
            cv: 0.05,
            night_cv: 0.02,
            step_at: Some(60),
            step: 0.10,
            broken_at: Some(75),
            flaky: 0.05,
            outlier_night: Some(30),
            seed: 1,
        }
    }
}

/// The index in [`cases`] of the case that breaks at `broken_at`: the second path's first size.
pub const BROKEN: usize = SIZES.len();
/// The index in [`cases`] of the flaky case: the third path's first size.
pub const FLAKY: usize = 2 * SIZES.len();

/// The sizes each path is measured at.
pub const SIZES: [u64; 4] = [64 << 10, 2 << 20, 16 << 20, 64 << 20];

const PATHS: [&str; 8] = [
    "prefetch::round_trip::managed",
    "first_touch::gpu_written::managed",
    "cpu_fault::read::managed",
    "ttm_eviction::evict_all::managed",
    "prefetch::to_vram::malloc",
    "fault_storm::gpu_threads::managed",
    "cpu_fault::write::managed",
    "prefetch::to_system::managed",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

fn size_name(b: u64) -> String {
    if b >= 1 << 20 {
        format!("{}MiB", b >> 20)
    } else {
        format!("{}KiB", b >> 10)
    }
}

/// Case names of a night: every path at every size.
pub fn cases(plan: &Plan) -> Vec<(String, usize, u64)> {
    let mut v = Vec::new();
    for (p, path) in PATHS.iter().enumerate().take(plan.paths.min(PATHS.len())) {
        for &s in &SIZES {
            v.push((format!("{path}::{}", size_name(s)), p, s));
        }
    }
    v
}

/// The kernel release of night `i`: a new build every night, as a nightly tree is.
pub fn kernel_of(night: usize) -> String {
    format!("7.3.0-nightly{:03}", night + 1)
}

/// Writes the plan's nights under `out` (`out/night-001`, ...); returns their folders.
pub fn write(plan: &Plan, out: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut rng = Rng(plan.seed);
    let cases = cases(plan);
    let mut dirs = Vec::new();
    for night in 0..plan.nights {
        let dir = out.join(format!("night-{:03}", night + 1));
        std::fs::create_dir_all(&dir)?;
        let day = time::OffsetDateTime::from_unix_timestamp(1_767_225_600 + night as i64 * 86_400)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
            + time::Duration::hours(2);
        let started = crate::results::rfc3339(day);
        let level = 1.0 + plan.night_cv * rng.normal();
        let mut journal = std::io::BufWriter::new(std::fs::File::create(dir.join(JOURNAL_FILE))?);
        for (i, (case, path, size)) in cases.iter().enumerate() {
            let mut speed = 10.0 * level * (*size as f64 / (64 << 20) as f64).powf(0.08);
            if *path == 0 && plan.step_at.is_some_and(|s| night >= s) {
                speed *= 1.0 - plan.step;
            }
            if plan.outlier_night == Some(night) {
                speed /= 3.0;
            }
            let samples: Vec<f64> = (0..plan.samples)
                .map(|_| (speed * (1.0 + plan.cv * rng.normal())).max(0.01))
                .collect();
            let fails = (i == BROKEN && plan.broken_at.is_some_and(|b| night >= b))
                || (i == FLAKY && rng.unit() < plan.flaky);
            let status = if fails { Status::Fail } else { Status::Pass };
            let reason = fails.then(|| {
                format!(
                    "CPU verify of [0x0, {size:#x}) in allocation 1 (generation 1): 1 bad word in 1 \
                     of {} pages: 1 corrupt\n  page 7 word 3: expected 0x5eed0007 got 0x5eed0107 \
                     (expected ^ actual = 0x100)",
                    size / 4096
                )
            });
            let record = CaseRecord {
                case: case.clone(),
                status,
                reason,
                started: started.clone(),
                duration_s: 0.2,
                seed: plan.seed,
                kind: "managed".into(),
                size: *size,
                metrics: vec![Metric::new("migrate_gbps", Unit::GBps, samples)],
                evidence: vec![format!("{case}: made up by svmconf history-demo")],
                repro: format!("svmconf '{case}' --exact --seed {}", plan.seed),
                ..CaseRecord::blank()
            };
            let line = serde_json::to_string(&record).map_err(std::io::Error::other)?;
            writeln!(journal, "{line}")?;
        }
        journal.flush()?;
        let info = RunInfo {
            run_id: format!("{}-demo-night{:03}", day.date(), night + 1),
            suite_version: env!("CARGO_PKG_VERSION").to_string(),
            started: started.clone(),
            finished: Some(started),
            host: "demo".into(),
            kernel_release: kernel_of(night),
            backend: "sim".into(),
            device: serde_json::json!({ "name": "made-up nightly device" }),
            profile: "sim".into(),
            seed: plan.seed,
            command_line: vec!["svmconf".into(), "history-demo".into()],
            fixtures: Vec::new(),
            shard: None,
            observers: Vec::new(),
            baseline: None,
            plan: cases.iter().map(|c| c.0.clone()).collect(),
        };
        info.write(&dir).map_err(std::io::Error::other)?;
        dirs.push(dir);
    }
    Ok(dirs)
}
