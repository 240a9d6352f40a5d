//! CPU fault: the CPU touches pages that live in VRAM. Each touch faults, and drm_pagemap
//! migrates the whole device allocation holding the page back to system memory.
//!
//! The data gets to VRAM by a GPU write, and where the device's accesses do not migrate (the
//! kernel's HMM test driver) by a prefetch after it ([`Ctx::gpu_fill_into_vram`]): the CPU
//! side, which is what these cases test, is the same.

use crate::case::{migrations_at_most, CaseResult, Ctx, Lands, Stop};
use crate::device::{Location, Span, PAGE_SIZE};
use crate::suites::Param;
use crate::{check, check_eq};

bodies! {
    read: [Xnack],
    write: [Xnack],
    partial_touch: [Xnack],
    whole_allocation: [Xnack, Residency] with [
        Param::page("page", "the page the CPU touches, default the middle one"),
    ],
}

/// The GPU writes (migrating to VRAM); the CPU reads everything back. The migration back is
/// timed on its own: the first (cold) one, and repetitions of it.
fn read(ctx: &mut Ctx) -> CaseResult {
    let buf = ctx.alloc(ctx.kind, ctx.size)?;
    let all = buf.all();
    ctx.gpu_fill_into_vram(buf, all, 1)?;

    let system = Lands {
        buf,
        span: all,
        to: Location::System,
    };
    let size = ctx.size;
    let mut scratch = vec![0u32; all.words() as usize];
    let cold = ctx.time_one_migration(
        "CPU reads migrate to RAM, the first (cold)",
        system,
        |dev| dev.cpu_read(buf, all, &mut scratch),
    )?;
    ctx.cpu_verify(buf, all, 1)?;

    let faults = migrations_at_most(&ctx.profile.policy.chunk_sizes, size);
    let samples = ctx.timed_migration(
        "CPU reads migrate to RAM",
        system,
        |dev| dev.prefetch(buf, all, Location::Vram).map(drop),
        |dev| dev.cpu_read(buf, all, &mut scratch),
    )?;
    ctx.migration_metric("cpu_fault_cold_migrate_gbps", size, faults, &cold)?;
    ctx.migration_metric("cpu_fault_migrate_gbps", size, faults, &samples)?;
    ctx.cpu_verify(buf, all, 1)?;
    ctx.dev.free(buf)?;
    Ok(())
}

/// The CPU overwrites VRAM-resident data; the GPU must then see the CPU's words.
fn write(ctx: &mut Ctx) -> CaseResult {
    let buf = ctx.alloc(ctx.kind, ctx.size)?;
    let all = buf.all();
    ctx.gpu_fill_into_vram(buf, all, 1)?;
    let before = ctx.observe();
    ctx.cpu_fill(buf, all, 2)?;
    ctx.expect_location(
        buf,
        all,
        Location::System,
        "CPU writes migrate to RAM",
        &before,
    )?;
    ctx.gpu_verify(buf, all, 2)?;
    ctx.cpu_verify(buf, all, 2)?;
    ctx.dev.free(buf)?;
    Ok(())
}

/// The CPU rewrites every other page of VRAM-resident data; the GPU then sees the CPU's pages
/// and its own, interleaved, with nothing lost at the chunk boundaries.
fn partial_touch(ctx: &mut Ctx) -> CaseResult {
    let buf = ctx.alloc(ctx.kind, ctx.size)?;
    let all = buf.all();
    ctx.gpu_fill_into_vram(buf, all, 1)?;
    let pages = buf.pages();
    for page in (0..pages).step_by(2) {
        ctx.cpu_fill(buf, Span::pages(page, 1).clamp(all), 2)?;
    }
    for page in 0..pages {
        let span = Span::pages(page, 1).clamp(all);
        ctx.gpu_verify(buf, span, if page % 2 == 0 { 2 } else { 1 })?;
    }
    ctx.note(format!(
        "{} of {pages} pages rewritten by the CPU, all read back right by the GPU",
        pages.div_ceil(2)
    ));
    ctx.dev.free(buf)?;
    Ok(())
}

/// One CPU read of one word: the pages that come back to system memory must be one whole
/// device allocation (an aligned chunk of the policy's sizes holding the page), not just that
/// page, and every other page must stay in VRAM. Parameter `page`: which page to touch
/// (default: the middle one).
fn whole_allocation(ctx: &mut Ctx) -> CaseResult {
    let buf = ctx.alloc(ctx.kind, ctx.size)?;
    let all = buf.all();
    let pages = buf.pages();
    let touched: u64 = ctx.param("page", pages / 2)?;
    check!(
        touched < pages,
        "fixtures: page {touched} must be below {pages}"
    );
    ctx.gpu_fill_into_vram(buf, all, 1)?;

    // The operation under test: a single word read.
    ctx.cpu_read_first_word(buf, touched, 1)?;

    let Some(residency) = ctx.dev.residency(buf, all) else {
        return Err(Stop::skip("the device cannot report page residency"));
    };
    let residency = residency?;
    let back: Vec<u64> = (0..pages)
        .filter(|p| residency[*p as usize] == Location::System)
        .collect();
    check!(
        back.contains(&touched),
        "the touched page {touched} is in system memory"
    );
    let (lo, hi) = (back[0], back[back.len() - 1] + 1);
    check_eq!(
        back.len() as u64,
        hi - lo,
        "pages back in system memory form one run (pages {back:?})"
    );
    let chunks = &ctx.profile.policy.chunk_sizes;
    let bytes = (hi - lo) * PAGE_SIZE;
    check!(
        chunks.contains(&bytes) || hi - lo == pages,
        "the run of {} pages ({bytes} bytes) is one device allocation of a chunk size {chunks:?}",
        hi - lo
    );
    if chunks.iter().any(|c| *c > PAGE_SIZE && *c <= ctx.size) {
        check!(
            hi - lo > 1,
            "a CPU fault migrates the whole device allocation, not only the page"
        );
    }
    ctx.note(format!("CPU read of page {touched} brought back pages {lo}..{hi} ({bytes} bytes); {} pages stay in VRAM", pages - (hi - lo)));
    ctx.cpu_verify(buf, all, 1)?;
    ctx.dev.free(buf)?;
    Ok(())
}
