//! CPU mapping changes under migrated memory: partial munmap, mremap, fork, read-only mappings
//! and file-backed mappings. drm_gpusvm does not split a partially unmapped range: it destroys it
//! and evicts what is left to RAM; the rest of the allocation must stay correct everywhere.
//! The data gets to VRAM as in cpu_fault ([`Ctx::gpu_fill_into_vram`]).

use crate::case::{CaseResult, Ctx, Stop};
use crate::device::kernels::Launch;
use crate::device::{DeviceError, Location, Protection, Span};
use crate::{check, check_eq};

bodies! {
    partial_unmap: [Xnack],
    mremap: [Xnack],
    fork_cow: [Xnack, Fork],
    readonly_gpu_write: [Xnack],
    in_place: [],
}

/// The middle quarter of VRAM-resident memory is unmapped. What is left is right on the GPU and
/// on the CPU, and the unmapped part is really gone (a CPU access faults).
fn partial_unmap(ctx: &mut Ctx) -> CaseResult {
    let buf = ctx.alloc(ctx.kind, ctx.size)?;
    let all = buf.all();
    let pages = buf.pages();
    check!(
        pages >= 4,
        "fixtures: partial unmap needs at least 4 pages, the size gives {pages}"
    );
    ctx.gpu_fill_into_vram(buf, all, 1)?;
    let hole = Span::pages(pages / 4 + 1, (pages / 4).max(1));
    let head = Span::new(0, hole.offset);
    let tail = Span::new(hole.end(), all.len - hole.end());

    ctx.dev.unmap(buf, hole)?;
    for (name, span) in [("before the hole", head), ("after the hole", tail)] {
        ctx.gpu_verify(buf, span, 1)?;
        ctx.gpu_fill(buf, span, 2)?;
        ctx.cpu_verify(buf, span, 2)?;
        ctx.note(format!("{name} {span}: right on GPU and CPU"));
    }
    let mut word = [0u32; 1];
    match ctx.dev.cpu_read(buf, Span::new(hole.offset, 4), &mut word) {
        Err(DeviceError::Segfault { .. }) => {
            ctx.note(format!("CPU access to the hole {hole} faults"))
        }
        Ok(_) => {
            return Err(Stop::fail(format!(
                "the unmapped span {hole} is still readable: {:#x}",
                word[0]
            )))
        }
        Err(e) => {
            return Err(Stop::fail(format!(
                "CPU access to the hole {hole}: expected SIGSEGV, got {e}"
            )))
        }
    }
    ctx.dev.free(buf)?;
    Ok(())
}

/// VRAM-resident memory is moved to a new address; the data follows, for GPU and CPU.
fn mremap(ctx: &mut Ctx) -> CaseResult {
    let buf = ctx.alloc(ctx.kind, ctx.size)?;
    let all = buf.all();
    ctx.gpu_fill_into_vram(buf, all, 1)?;
    ctx.dev.remap(buf)?;
    ctx.gpu_verify(buf, all, 1)?;
    ctx.gpu_fill(buf, all, 2)?;
    ctx.cpu_verify(buf, all, 2)?;
    ctx.dev.free(buf)?;
    Ok(())
}

/// fork() with pages in VRAM: parent and child each see their own copy afterwards, whichever
/// side writes, and neither sees the other's writes.
fn fork_cow(ctx: &mut Ctx) -> CaseResult {
    let buf = ctx.alloc(ctx.kind, ctx.size)?;
    let all = buf.all();
    ctx.gpu_fill_into_vram(buf, all, 1)?;
    let mut child = ctx.dev.fork()?;
    let mut child_ctx = ctx.forked(&mut *child);

    child_ctx.cpu_verify(buf, all, 1).map_err(in_child)?;
    ctx.gpu_fill(buf, all, 2)?; // the parent writes after the fork
    child_ctx.cpu_verify(buf, all, 1).map_err(in_child)?;
    child_ctx.cpu_fill(buf, all, 3).map_err(in_child)?; // the child writes its copy
    ctx.gpu_verify(buf, all, 2)?;
    ctx.cpu_verify(buf, all, 2)?;
    child_ctx.cpu_verify(buf, all, 3).map_err(in_child)?;
    ctx.note("parent and child kept separate copies through GPU and CPU writes on both sides");
    ctx.dev.free(buf)?;
    Ok(())
}

fn in_child(stop: Stop) -> Stop {
    match stop {
        Stop::Fail(m) => Stop::Fail(format!("in the forked child: {m}")),
        skip => skip,
    }
}

/// A GPU write to a read-only mapping is a GPU memory fault at the first page written, and the
/// data is unchanged; GPU reads still work.
fn readonly_gpu_write(ctx: &mut Ctx) -> CaseResult {
    let buf = ctx.alloc(ctx.kind, ctx.size)?;
    let all = buf.all();
    ctx.cpu_fill(buf, all, 1)?;
    ctx.dev.protect(buf, Protection::ReadOnly)?;
    match ctx.dev.launch(&Launch::Fill {
        buf,
        span: all,
        seed: ctx.seed_of(buf),
        generation: 2,
    }) {
        Err(DeviceError::GpuMemoryFault {
            buf: at,
            offset,
            reason,
        }) => {
            check_eq!(at, buf.id, "the fault names the read-only allocation");
            check_eq!(offset, 0, "the fault is at the first page written");
            ctx.note(format!("GPU write faulted at offset {offset:#x}: {reason}"));
        }
        Ok(run) => {
            return Err(Stop::fail(format!(
                "a GPU write to a read-only mapping completed in {:?}",
                run.elapsed
            )))
        }
        Err(e) => return Err(Stop::fail(format!("expected a GPU memory fault, got {e}"))),
    }
    ctx.gpu_verify(buf, all, 1)?;
    ctx.dev.protect(buf, Protection::ReadWrite)?;
    ctx.cpu_verify(buf, all, 1)?;
    ctx.dev.free(buf)?;
    Ok(())
}

/// Shared and file-backed mappings are used in place by the GPU: never migrated, by fault or
/// by prefetch, and always right.
fn in_place(ctx: &mut Ctx) -> CaseResult {
    let buf = ctx.alloc(ctx.kind, ctx.size)?;
    let all = buf.all();
    ctx.cpu_fill(buf, all, 1)?;
    let before = ctx.observe();
    ctx.gpu_fill(buf, all, 2)?;
    ctx.expect_location(
        buf,
        all,
        Location::System,
        &format!("GPU writes to {} memory stay in place", ctx.kind),
        &before,
    )?;
    ctx.dev.prefetch(buf, all, Location::Vram)?;
    ctx.expect_location(
        buf,
        all,
        Location::System,
        &format!("a prefetch of {} memory leaves it in place", ctx.kind),
        &before,
    )?;
    ctx.cpu_verify(buf, all, 2)?;
    ctx.gpu_verify(buf, all, 2)?;
    ctx.dev.free(buf)?;
    Ok(())
}
