//! The reference device as the tools around the suite see it (the sensitivity table, the
//! kill matrix, the scaling sweep): its name, its timing noise and its fault plans, whichever
//! backend implements it.

pub use super::sim::faults::Plan as FaultPlan;
pub use super::sim::NoiseSource;

/// Its name, as `--backend` takes it.
pub fn name() -> &'static str {
    super::registry::KINDS[0].name
}
