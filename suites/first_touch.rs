//! GPU first touch: a kernel writes memory the GPU has never mapped. The GPU faults, the range
//! is formed and migrates to VRAM, unless the preferred location is system memory or the
//! mapping cannot migrate (shared, file), in which case it is mapped in place.

use crate::case::{migrations_at_most, CaseResult, Ctx, Lands, Stop};
use crate::device::{Advice, Location};
use crate::suites::Param;

bodies! {
    gpu_touch: [Xnack] with [
        Param::one_of(
            "preferred",
            &["unset", "vram", "system"],
            "the preferred location advised before the touch, default unset"
        ),
        Param::flag(
            "cpu_written",
            "whether the CPU writes the data before the GPU touches it, default false"
        ),
    ],
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
    // Where it migrates, that first access is also the cold migration, timed on its own.
    let lands = Lands {
        buf,
        span: all,
        to: want,
    };
    // The GPU's write of a generation over the whole allocation, as a launch a timed step runs.
    let seed = ctx.seed_of(buf);
    let fill = |generation| crate::device::kernels::Launch::Fill {
        buf,
        span: all,
        seed,
        generation,
    };
    let cold = if cpu_written {
        let before = ctx.observe();
        ctx.gpu_verify(buf, all, 1)?;
        ctx.expect_location(buf, all, want, &why, &before)?;
        ctx.gpu_fill(buf, all, 2)?;
        None
    } else if migrates {
        let fill = fill(2);
        Some(
            ctx.time_one_migration(&format!("{why}, the first (cold)"), lands, |dev| {
                dev.launch(&fill).map(|run| run.elapsed)
            })?,
        )
    } else {
        let before = ctx.observe();
        ctx.gpu_fill(buf, all, 2)?;
        ctx.expect_location(buf, all, want, &why, &before)?;
        None
    };
    ctx.gpu_verify(buf, all, 2)?;

    if migrates {
        // Time the fault-driven migration alone: each repetition starts from system memory
        // again, and each must end with every page in VRAM.
        let size = ctx.size;
        let fill = fill(3);
        let faults = migrations_at_most(&ctx.profile.policy.chunk_sizes, size);
        let samples = ctx.timed_migration(
            "GPU faults migrate to VRAM",
            Lands {
                buf,
                span: all,
                to: Location::Vram,
            },
            |dev| dev.prefetch(buf, all, Location::System).map(drop),
            |dev| dev.launch(&fill).map(|run| run.elapsed),
        )?;
        if let Some(cold) = cold {
            ctx.migration_metric("first_touch_cold_migrate_gbps", size, faults, &cold)?;
        }
        ctx.migration_metric("first_touch_migrate_gbps", size, faults, &samples)?;
        ctx.gpu_verify(buf, all, 3)?;
    }

    // The CPU reads back what the GPU wrote, wherever it now lives.
    let last = if migrates { 3 } else { 2 };
    ctx.cpu_verify(buf, all, last)?;
    ctx.dev.free(buf)?;
    Ok(())
}
