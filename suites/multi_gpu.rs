//! Multi-GPU migration: VRAM-to-VRAM migration and access by a peer GPU. The series supports one
//! GPU, so on its devices these cases skip with that reason; they run where a profile's policy
//! and the device allow two GPUs.

use crate::case::{CaseResult, Ctx, Stop};
use crate::suites::{Body, Need};

pub const BODIES: &[Body] = &[
    Body {
        name: "multi_gpu::vram_to_vram",
        run: peer,
        needs: &[Need::MultiGpu],
    },
    Body {
        name: "multi_gpu::accessed_by_peer",
        run: peer,
        needs: &[Need::MultiGpu],
    },
];

/// The Device trait addresses one GPU; a second device handle comes with the first policy that
/// migrates between GPUs. Until then a device that has two says so rather than passing.
fn peer(ctx: &mut Ctx) -> CaseResult {
    Err(Stop::skip(format!(
        "{} reports {} GPUs, but svmconf has no peer-GPU operations yet",
        ctx.dev.info().name,
        ctx.dev.info().gpus
    )))
}
