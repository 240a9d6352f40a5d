//! Multi-GPU migration: VRAM-to-VRAM migration and access by a peer GPU. The series supports one
//! GPU, so on its devices these cases skip with that reason; they run where a profile's policy
//! and the device allow two GPUs.

use crate::case::{CaseResult, Ctx, Stop};

bodies! {
    vram_to_vram: [MultiGpu],
    accessed_by_peer: [MultiGpu],
}

fn vram_to_vram(ctx: &mut Ctx) -> CaseResult {
    peer(ctx)
}

fn accessed_by_peer(ctx: &mut Ctx) -> CaseResult {
    peer(ctx)
}

/// The Device trait addresses one GPU; a second device handle comes with the first policy that
/// migrates between GPUs. Until then a device that has two says so rather than passing.
fn peer(ctx: &mut Ctx) -> CaseResult {
    Err(Stop::skip(format!(
        "{} reports {} GPUs, but svmconf has no peer-GPU operations yet",
        ctx.dev.info().name,
        ctx.dev.info().gpus
    )))
}
