//! GPU first touch: a kernel writes memory the GPU has never mapped. The GPU faults, the range
//! is formed and migrates to VRAM, unless the preferred location is system memory or the
//! mapping cannot migrate (shared, file), in which case it is mapped in place.

use crate::case::{CaseResult, Ctx, Stop};
use crate::device::{Advice, Location};
use crate::model::timing::Metric;

bodies! {
    gpu_touch: [Xnack],
}

/// Parameters (`with:`): `preferred`: unset | vram | system; `cpu_written`: whether the CPU
/// writes the memory first (so the GPU faults on populated pages rather than empty ones).
fn gpu_touch(ctx: &mut Ctx) -> CaseResult {
    let preferred: String = ctx.param("preferred", "unset".to_string())?;
    let cpu_written: bool = ctx.param("cpu_written", false)?;
    let buf = ctx.alloc(ctx.kind, ctx.size)?;
    let all = buf.all();

    if cpu_written {
        ctx.cpu_fill(buf, all, 1)?;
    }
    let advice = match preferred.as_str() {
        "unset" => None,
        "vram" => Some(Location::Vram),
        "system" => Some(Location::System),
        other => {
            return Err(Stop::fail(format!(
                "fixtures: `preferred: {other}`, expected unset, vram or system"
            )))
        }
    };
    if let Some(loc) = advice {
        ctx.dev.advise(buf, all, Advice::PreferredLocation(loc))?;
    }

    let migrates = ctx.kind.migratable() && advice != Some(Location::System);
    // Over CPU-written memory the touch is a verify, whose kernel writes its count of bad words
    // to a result buffer of its own: a GPU write that migrates too, after the allocation. An
    // allocation that leaves no room in VRAM for that page has its oldest range evicted by it,
    // and no device could leave every page in VRAM.
    if migrates && cpu_written {
        let vram = ctx.dev.info().vram_bytes;
        let page = ctx
            .profile
            .policy
            .chunk_sizes
            .last()
            .copied()
            .unwrap_or(4096);
        if ctx.size + page > vram {
            return Err(Stop::skip(format!(
                "{} bytes and the verify kernel's result page do not fit in {vram} bytes of \
                 VRAM together: the result's migration evicts part of the allocation",
                ctx.size
            )));
        }
    }
    let want = if migrates {
        Location::Vram
    } else {
        Location::System
    };
    let why = if migrates {
        "GPU first touch migrates the range to VRAM".to_string()
    } else if !ctx.kind.migratable() {
        format!("{} memory is mapped in place, never migrated", ctx.kind)
    } else {
        "preferred location system maps the pages in place".to_string()
    };

    // The operation under test: the GPU's first access to every page. Over CPU-written memory
    // it is a read, so a migration that copied nothing cannot hide behind a later write.
    let before = ctx.observe();
    if cpu_written {
        ctx.gpu_verify(buf, all, 1)?;
        ctx.expect_location(buf, all, want, &why, &before)?;
        ctx.gpu_fill(buf, all, 2)?;
    } else {
        ctx.gpu_fill(buf, all, 2)?;
        ctx.expect_location(buf, all, want, &why, &before)?;
    }
    ctx.gpu_verify(buf, all, 2)?;

    if migrates {
        // Time the fault-driven migration: each repetition starts from system memory again.
        let size = ctx.size;
        let seed = ctx.seed;
        let samples = ctx.timed(
            |dev| dev.prefetch(buf, all, Location::System).map(drop),
            |dev| {
                let fill = crate::device::kernels::Launch::Fill {
                    buf,
                    span: all,
                    seed,
                    generation: 3,
                };
                dev.launch(&fill).map(|run| run.elapsed)
            },
        )?;
        let peak = ctx.profile.limits.link_peak_gbps;
        let link = ctx.profile.limits.link.clone();
        ctx.metric(
            Metric::bandwidth("first_touch_migrate_gbps", size, &samples)
                .with_ceiling(peak, format!("the peak of {link}")),
        )?;
        ctx.gpu_verify(buf, all, 3)?;
    }

    // The CPU reads back what the GPU wrote, wherever it now lives.
    let last = if migrates { 3 } else { 2 };
    ctx.cpu_verify(buf, all, last)?;
    ctx.dev.free(buf)?;
    Ok(())
}
