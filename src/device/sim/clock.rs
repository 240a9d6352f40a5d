//! The simulated clock and the cost model that advances it (the profile's `sim:` section).
//! Every duration the sim returns is a sum of these charges; events carry the clock's reading.

use std::time::Duration;

use crate::profile::SimCost;

/// How much faster than the cost model the `fast-clock` break counts migrations.
const FAST_CLOCK_SPEEDUP: f64 = 100.0;

/// What one operation (a prefetch, a kernel, a CPU access) has cost so far, in ns.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Meter {
    ns: f64,
}

impl Meter {
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
}

impl Clock {
    pub fn new(cost: SimCost, fast: bool) -> Clock {
        Clock {
            now_ns: 0.0,
            cost,
            migration_speedup: if fast { FAST_CLOCK_SPEEDUP } else { 1.0 },
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.now_ns.round() as u64
    }

    /// Advances the clock by `ns` on behalf of the operation measured by `meter`.
    pub fn charge(&mut self, meter: &mut Meter, ns: f64) {
        self.now_ns += ns;
        meter.ns += ns;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::sim::testutil;

    #[test]
    fn charges_follow_the_cost_model() {
        let cost = testutil::cost();
        let mut clock = Clock::new(cost.clone(), false);
        let mut meter = Meter::default();
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
        let slow = Clock::new(cost.clone(), false).migration_ns(1 << 20);
        let fast = Clock::new(cost, true).migration_ns(1 << 20);
        assert!((slow / fast - FAST_CLOCK_SPEEDUP).abs() < 1e-9);
    }
}
