//! The conformance cases, one module per migration path, and the registry the runner plans from.
//!
//! A body is registered here once with what it needs from the device; `fixtures/cases.yaml`
//! says which sizes, allocation kinds and parameters each runs with.

pub mod cpu_fault;
pub mod fault_storm;
pub mod first_touch;
pub mod gpu_reset;
pub mod multi_gpu;
pub mod page_state;
pub mod prefetch;
pub mod ttm_eviction;
pub mod vma;

use crate::case::CaseResult;
use crate::case::Ctx;

pub use crate::model::capability::Need;

/// A registered case body.
#[derive(Clone, Copy)]
pub struct Body {
    /// `suite::case`, the name `body:` in the fixtures refers to.
    pub name: &'static str,
    pub run: fn(&mut Ctx) -> CaseResult,
    pub needs: &'static [Need],
}

/// Every body of every suite.
pub fn registry() -> Vec<Body> {
    [
        first_touch::BODIES,
        prefetch::BODIES,
        cpu_fault::BODIES,
        fault_storm::BODIES,
        ttm_eviction::BODIES,
        gpu_reset::BODIES,
        vma::BODIES,
        multi_gpu::BODIES,
        page_state::BODIES,
    ]
    .concat()
}
