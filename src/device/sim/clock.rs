//! The simulated clock and the cost model that advances it (the profile's `sim:` section).
//! Every duration the sim returns is a sum of these charges; events carry the clock's reading.

use std::time::Duration;

use super::rng::Rng;
use crate::model::profile::{Noise, SimCost};

/// How much faster than the cost model the `fast-clock` break counts migrations.
const FAST_CLOCK_SPEEDUP: f64 = 100.0;

/// What one operation (a prefetch, a kernel, a CPU access) has cost so far, in ns, and the noise
/// factor drawn for it when it began (1 without noise).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Meter {
    ns: f64,
    factor: f64,
    /// Bytes migrated so far by the operation.
    migrated: u64,
}

impl Default for Meter {
    fn default() -> Self {
        Meter {
            ns: 0.0,
            factor: 1.0,
            migrated: 0,
        }
    }
}

impl Meter {
    /// Bytes the operation has migrated so far.
    pub fn migrated(&self) -> u64 {
        self.migrated
    }

    /// The operation migrated `bytes` more.
    pub fn add_migrated(&mut self, bytes: u64) {
        self.migrated += bytes;
    }

    pub fn duration(&self) -> Duration {
        Duration::from_nanos(self.ns.round() as u64)
    }
}

/// The device clock, shared by every process on the GPU. Bandwidths are GB/s, which is
/// bytes per ns.
#[derive(Clone, Debug)]
pub(super) struct Clock {
    now_ns: f64,
    cost: SimCost,
    migration_speedup: f64,
    /// Time charged to migrations so far, every operation's: the migration clock
    /// ([`crate::device::Device::migration_time`]).
    migrating_ns: f64,
    /// Draws the noise factors; its own stream, so noise never changes what else the sim does.
    noise: NoiseSource,
}

impl Clock {
    pub fn new(cost: SimCost, fast: bool, seed: u64) -> Clock {
        Clock {
            now_ns: 0.0,
            migrating_ns: 0.0,
            noise: NoiseSource::new(cost.noise, seed ^ 0x6e6f_6973_6521),
            migration_speedup: if fast { FAST_CLOCK_SPEEDUP } else { 1.0 },
            cost,
        }
    }

    /// Starts metering one operation, with its noise factor.
    pub fn meter(&mut self) -> Meter {
        Meter {
            ns: 0.0,
            factor: self.noise.factor(),
            migrated: 0,
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.now_ns.round() as u64
    }

    /// Advances the clock by `ns` on behalf of the operation measured by `meter`.
    pub fn charge(&mut self, meter: &mut Meter, ns: f64) {
        let ns = ns * meter.factor;
        self.now_ns += ns;
        meter.ns += ns;
    }

    /// Charges `ns` of migration (a copy and its fixed start) to the operation measured by
    /// `meter`, and counts it on the migration clock.
    pub fn charge_migration(&mut self, meter: &mut Meter, ns: f64) {
        let before = meter.ns;
        self.charge(meter, ns);
        self.migrating_ns += meter.ns - before;
    }

    /// Time spent migrating since the device was made.
    pub fn migrating(&self) -> Duration {
        Duration::from_nanos(self.migrating_ns.round() as u64)
    }

    /// One migration (one devmem allocation's worth) of `bytes`: a fixed start plus the copy.
    pub fn migration_ns(&self, bytes: u64) -> f64 {
        (self.cost.migration_fixed_us * 1e3 + bytes as f64 / self.cost.migrate_gbps)
            / self.migration_speedup
    }

    pub fn gpu_fault_ns(&self) -> f64 {
        self.cost.gpu_fault_us * 1e3
    }

    /// Servicing a CPU fault on a device-private page, the migration not included.
    pub fn cpu_fault_ns(&self) -> f64 {
        self.cost.cpu_fault_us * 1e3
    }

    pub fn launch_ns(&self) -> f64 {
        self.cost.launch_us * 1e3
    }

    /// A kernel touching `bytes` of VRAM.
    pub fn vram_ns(&self, bytes: u64) -> f64 {
        bytes as f64 / self.cost.vram_gbps
    }

    /// A kernel touching `bytes` of system memory mapped in place, over the link.
    pub fn remote_ns(&self, bytes: u64) -> f64 {
        bytes as f64 / self.cost.remote_gbps
    }

    /// The CPU reading or writing `bytes` of system memory.
    pub fn cpu_ns(&self, bytes: u64) -> f64 {
        bytes as f64 / self.cost.cpu_gbps
    }

    /// How long a process aborted by a GPU reset takes to exit.
    pub fn reset_exit(&self) -> Duration {
        Duration::from_secs_f64(self.cost.reset_exit_ms / 1e3)
    }
}

/// The sim's timing noise: a stream of multiplicative factors. Public so that the regression
/// check's sensitivity is measured against the very noise the sim puts on its timings.
#[derive(Clone, Debug)]
pub struct NoiseSource {
    noise: Noise,
    rng: Rng,
}

impl NoiseSource {
    pub fn new(noise: Noise, seed: u64) -> NoiseSource {
        NoiseSource {
            noise,
            rng: Rng::new(seed),
        }
    }

    /// A log-normal factor with mean 1 and coefficient of variation `noise.cv`, times the
    /// outlier factor with probability `noise.outlier_rate`.
    pub fn factor(&mut self) -> f64 {
        let noise = &self.noise;
        if noise.is_none() {
            return 1.0;
        }
        let rng = &mut self.rng;
        let sigma2 = (1.0 + noise.cv * noise.cv).ln();
        let z = standard_normal(rng);
        let mut f = (z * sigma2.sqrt() - sigma2 / 2.0).exp();
        if unit(rng) < noise.outlier_rate {
            f *= noise.outlier_factor;
        }
        f
    }
}

/// Uniform in (0, 1).
fn unit(rng: &mut Rng) -> f64 {
    ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// Box–Muller.
fn standard_normal(rng: &mut Rng) -> f64 {
    let (u1, u2) = (unit(rng), unit(rng));
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::sim::testutil;

    #[test]
    fn charges_follow_the_cost_model() {
        let cost = testutil::cost();
        let mut clock = Clock::new(cost.clone(), false, 1);
        let mut meter = clock.meter();
        let two_mib = 2 << 20;
        let want = cost.migration_fixed_us * 1e3 + two_mib as f64 / cost.migrate_gbps;
        assert_eq!(clock.migration_ns(two_mib), want);
        clock.charge(&mut meter, clock.migration_ns(two_mib));
        clock.charge(&mut meter, clock.gpu_fault_ns());
        assert_eq!(meter.duration().as_nanos() as f64, (want + 5e3).round());
        assert_eq!(clock.now_ns(), meter.duration().as_nanos() as u64);
        assert_eq!(clock.vram_ns(1000), 1.0);
    }

    #[test]
    fn fast_clock_counts_migrations_a_hundred_times_faster() {
        let cost = testutil::cost();
        let slow = Clock::new(cost.clone(), false, 1).migration_ns(1 << 20);
        let fast = Clock::new(cost, true, 1).migration_ns(1 << 20);
        assert!((slow / fast - FAST_CLOCK_SPEEDUP).abs() < 1e-9);
    }

    #[test]
    fn noise_has_the_asked_spread_and_mean_one() {
        let mut cost = testutil::cost();
        cost.noise = Noise {
            cv: 0.05,
            outlier_rate: 0.0,
            outlier_factor: 1.0,
        };
        let mut clock = Clock::new(cost, false, 7);
        let xs: Vec<f64> = (0..20_000).map(|_| clock.meter().factor).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let sd = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64).sqrt();
        assert!((mean - 1.0).abs() < 0.002, "{mean}");
        assert!((sd / mean - 0.05).abs() < 0.002, "{}", sd / mean);
    }

    #[test]
    fn outliers_come_at_their_rate() {
        let mut cost = testutil::cost();
        cost.noise = Noise {
            cv: 0.0,
            outlier_rate: 0.1,
            outlier_factor: 3.0,
        };
        let mut clock = Clock::new(cost, false, 7);
        let n = (0..10_000).filter(|_| clock.meter().factor > 2.0).count();
        assert!((900..1100).contains(&n), "{n}");
    }

    #[test]
    fn without_noise_every_factor_is_one() {
        let mut clock = Clock::new(testutil::cost(), false, 7);
        assert!((0..100).all(|_| clock.meter().factor == 1.0));
    }
}
