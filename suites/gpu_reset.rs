//! GPU reset with SVM memory resident in VRAM. On a GPU VRAM contents are lost; KFD keeps the
//! processes that held the GPU evicted until they exit and the ROCm runtime aborts them. A
//! process started after the reset must migrate to VRAM and work as before. A device whose
//! reset keeps its holders and their data (the virtual SVM GPU evicts SVM memory to RAM first)
//! must give every byte back and work as before in the same process. Destructive: only with
//! `--allow-destructive`.

use std::time::Duration;

use crate::case::{CaseResult, Ctx, Stop};
use crate::check;
use crate::device::{AllocKind, Destructive, Location, ProcessExit};
use crate::suites::Param;

bodies! {
    holder_ends: [Destructive, Reset, Processes, Xnack, GpuFaultMigration] with [
        Param::whole(
            "exit_limit_ms",
            1,
            3_600_000,
            "how long the holder may take to end after the reset, default 10000"
        ),
    ],
    data_kept: [Destructive, Reset, Xnack],
}

/// The permit to reset the GPU, which only `--allow-destructive` gives; without it the case
/// skips.
fn permit<'a>(ctx: &Ctx<'a>) -> Result<&'a Destructive, Stop> {
    ctx.destructive
        .ok_or_else(|| Stop::skip("destructive: rerun with --allow-destructive"))
}

/// Where the profile says a reset keeps the processes that held the GPU and what they had in
/// VRAM (`reset_ends_processes: false`, `reset_loses_vram: false`): data the holder had
/// prefetched to VRAM and data it kept in system memory are intact after the reset, on the
/// GPU and on the CPU, and the GPU migrates and writes as before. Where a reset ends the
/// holders or loses VRAM, `holder_ends` is the reset's case and this one skips.
fn data_kept(ctx: &mut Ctx) -> CaseResult {
    let permit = permit(ctx)?;
    let policy = &ctx.profile.policy;
    if policy.reset_ends_processes || policy.reset_loses_vram {
        return Err(Stop::skip(format!(
            "profile {}: a reset ends the processes that held the GPU or loses VRAM \
             (reset_ends_processes {}, reset_loses_vram {}): gpu_reset::holder_ends checks it",
            ctx.profile.name, policy.reset_ends_processes, policy.reset_loses_vram
        )));
    }
    let held = ctx.alloc(ctx.kind, ctx.size)?;
    let all = held.all();
    ctx.cpu_fill(held, all, 1)?;
    let before = ctx.observe();
    ctx.dev.prefetch(held, all, Location::Vram)?;
    ctx.expect_location(
        held,
        all,
        Location::Vram,
        "prefetch to VRAM before the reset",
        &before,
    )?;
    let kept = ctx.alloc(AllocKind::Malloc, ctx.size)?;
    ctx.cpu_fill(kept, kept.all(), 1)?;

    // The operation under test.
    ctx.dev.gpu_reset(permit)?;

    ctx.gpu_verify(held, all, 1)?;
    ctx.cpu_verify(held, all, 1)?;
    ctx.cpu_verify(kept, kept.all(), 1)?;
    // The GPU works as before: it migrates again and its writes land.
    let before = ctx.observe();
    ctx.dev.prefetch(held, all, Location::Vram)?;
    ctx.expect_location(
        held,
        all,
        Location::Vram,
        "prefetch to VRAM after the reset",
        &before,
    )?;
    ctx.gpu_fill(held, all, 2)?;
    ctx.cpu_verify(held, all, 2)?;
    ctx.note("VRAM and system data intact across the reset; the GPU migrates and writes after it");
    ctx.dev.free(kept)?;
    ctx.dev.free(held)?;
    Ok(())
}

/// A holder process keeps data in VRAM and in system memory, and a bystander process that never
/// used the GPU keeps data in system memory; the GPU resets; the holder must end within
/// `exit_limit_ms` (default 10000), the bystander's memory must be intact, and a fresh process
/// then migrates and verifies.
fn holder_ends(ctx: &mut Ctx) -> CaseResult {
    let limit = Duration::from_millis(ctx.param("exit_limit_ms", 10_000)?);
    let permit = permit(ctx)?;
    let size = ctx.size;

    // The bystander: system memory only, no kernel, no prefetch. A reset is the GPU's business.
    let mut bystander = ctx.dev.spawn_process()?;
    let mut quiet = ctx.in_process(&mut *bystander);
    let bystanders = quiet.alloc(AllocKind::Malloc, size)?;
    quiet.cpu_fill(bystanders, bystanders.all(), 3)?;

    let mut holder_process = ctx.dev.spawn_process()?;
    let mut holder = ctx.in_process(&mut *holder_process);
    let in_vram = holder.alloc(AllocKind::Managed, size)?;
    holder.gpu_fill(in_vram, in_vram.all(), 1)?;
    let in_system = holder.alloc(AllocKind::Malloc, size)?;
    holder.dev.advise(
        in_system,
        in_system.all(),
        crate::device::Advice::PreferredLocation(Location::System),
    )?;
    holder.gpu_fill(in_system, in_system.all(), 1)?;
    if let Some(r) = holder.dev.residency(in_vram, in_vram.all()) {
        check!(
            r?.iter().all(|l| *l == Location::Vram),
            "the holder's data is in VRAM before the reset"
        );
    }

    // The operation under test.
    ctx.dev.gpu_reset(permit)?;

    match holder.dev.wait_exit(limit)? {
        ProcessExit::StillRunning => {
            return Err(Stop::fail(format!(
                "the process holding VRAM was still running {limit:?} after the GPU reset: KFD \
                 should keep it evicted and the runtime abort it"
            )))
        }
        ProcessExit::Signaled(sig) => {
            ctx.note(format!("holder ended by signal {sig} after the reset"))
        }
        ProcessExit::Exited(code) => {
            ctx.note(format!("holder exited with status {code} after the reset"))
        }
    }

    // The bystander's memory is as it left it. Where the runtime ends every process that
    // initialized it, whatever it did, there is no bystander to ask, and the note says so.
    match quiet.dev.wait_exit(Duration::ZERO)? {
        ProcessExit::StillRunning => {
            quiet
                .cpu_verify(bystanders, bystanders.all(), 3)
                .map_err(|stop| match stop {
                    Stop::Fail(why) => Stop::Fail(format!(
                        "the reset changed the memory of a process that never used the GPU: {why}"
                    )),
                    other => other,
                })?;
            ctx.note("a process that never used the GPU kept its memory across the reset");
        }
        ended => ctx.note(format!(
            "the bystander process ended with the reset ({ended:?}): this runtime ends every \
             process that initialized it, so its memory could not be checked"
        )),
    }

    // A process started after the reset migrates and computes as before.
    let mut fresh = ctx.dev.spawn_process()?;
    let mut after = ctx.in_process(&mut *fresh);
    let buf = after.alloc(AllocKind::Managed, size)?;
    let before = after.observe();
    after.gpu_fill(buf, buf.all(), 2)?;
    after.expect_location(
        buf,
        buf.all(),
        Location::Vram,
        "a process after the reset migrates to VRAM",
        &before,
    )?;
    after.gpu_verify(buf, buf.all(), 2)?;
    after.cpu_verify(buf, buf.all(), 2)?;
    let (_, notes) = after.take_record();
    for n in notes {
        ctx.note(format!("fresh process: {n}"));
    }
    Ok(())
}
