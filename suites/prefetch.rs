//! Prefetch: hipMemPrefetchAsync migrates every page of a span to the location asked, and a
//! prefetch of pages already there migrates nothing.

use crate::case::{CaseResult, Ctx};
use crate::device::kernels::Launch;
use crate::device::{Buf, Location, Span, Trigger, PAGE_SIZE};
use crate::model::timing::Metric;
use crate::{check, check_eq};

bodies! {
    round_trip: [],
    partial: [Residency],
    already_resident: [Events],
    rounds: [Xnack],
    racing_kernel: [Xnack, Concurrency],
}

/// CPU-written data prefetched to VRAM, checked and rewritten by the GPU, prefetched back and
/// checked by the CPU; both directions timed against the link.
fn round_trip(ctx: &mut Ctx) -> CaseResult {
    let vram_before = ctx.dev.vram_used();
    let buf = ctx.alloc(ctx.kind, ctx.size)?;
    let all = buf.all();
    ctx.cpu_fill(buf, all, 1)?;

    let before = ctx.observe();
    ctx.dev.prefetch(buf, all, Location::Vram)?;
    ctx.expect_location(buf, all, Location::Vram, "prefetch to VRAM", &before)?;
    ctx.gpu_verify(buf, all, 1)?;
    ctx.gpu_fill(buf, all, 2)?;

    let before = ctx.observe();
    ctx.dev.prefetch(buf, all, Location::System)?;
    ctx.expect_location(buf, all, Location::System, "prefetch to system", &before)?;
    ctx.cpu_verify(buf, all, 2)?;

    timed_both_ways(ctx, buf, all)?;
    ctx.cpu_verify(buf, all, 2)?;
    ctx.dev.free(buf)?;
    // Freed, its VRAM is given back (within a page table's worth: the driver may keep some).
    if let (Some(before), Some(after)) = (vram_before, ctx.dev.vram_used()) {
        check!(
            after <= before + VRAM_SLACK,
            "after the free, VRAM in use is {after} bytes, {} more than before the allocation \
             ({before}): the allocation's VRAM was not given back",
            after.saturating_sub(before)
        );
    }
    Ok(())
}

/// VRAM in use that may stay after a free without it being a leak: page tables and the like.
const VRAM_SLACK: u64 = 1 << 20;

/// Bandwidth of prefetch in each direction, each repetition starting from the other side.
fn timed_both_ways(ctx: &mut Ctx, buf: Buf, span: Span) -> CaseResult {
    let to_vram = ctx.timed(
        |dev| dev.prefetch(buf, span, Location::System).map(drop),
        |dev| dev.prefetch(buf, span, Location::Vram),
    )?;
    let to_system = ctx.timed(
        |dev| dev.prefetch(buf, span, Location::Vram).map(drop),
        |dev| dev.prefetch(buf, span, Location::System),
    )?;
    let peak = ctx.profile.limits.link_peak_gbps;
    let link = format!("the peak of {}", ctx.profile.limits.link);
    ctx.metric(
        Metric::bandwidth("prefetch_to_vram_gbps", span.len, &to_vram).with_ceiling(peak, &link),
    )?;
    ctx.metric(
        Metric::bandwidth("prefetch_to_system_gbps", span.len, &to_system).with_ceiling(peak, link),
    )
}

/// A prefetch of part of an allocation moves that part only; the rest stays in system memory.
/// Parameters: `first_page`, `pages` (a page count, or 0 for "half the allocation, from its
/// middle quarter"), so that both chunk-aligned and unaligned spans are covered.
fn partial(ctx: &mut Ctx) -> CaseResult {
    let buf = ctx.alloc(ctx.kind, ctx.size)?;
    let all = buf.all();
    let pages = buf.pages();
    let first: u64 = ctx.param("first_page", pages / 4)?;
    let count: u64 = ctx.param("pages", pages / 2)?;
    check!(
        first + count <= pages && count > 0,
        "fixtures: span of {count} pages at page {first} must lie inside {pages} pages"
    );
    let span = Span::pages(first, count);
    ctx.cpu_fill(buf, all, 1)?;

    let before = ctx.observe();
    ctx.dev.prefetch(buf, span, Location::Vram)?;
    ctx.expect_location(buf, span, Location::Vram, "the prefetched span", &before)?;
    if first > 0 {
        let head = Span::pages(0, first);
        ctx.expect_location(
            buf,
            head,
            Location::System,
            "pages before the span stay",
            &before,
        )?;
    }
    if first + count < pages {
        let tail = Span::new(span.end(), all.len - span.end());
        ctx.expect_location(
            buf,
            tail,
            Location::System,
            "pages after the span stay",
            &before,
        )?;
    }
    ctx.note(format!(
        "prefetched {span} of {} pages: the allocation is now mixed",
        pages
    ));

    // Both halves are still one allocation to the GPU and to the CPU.
    ctx.gpu_verify(buf, all, 1)?;
    ctx.cpu_verify(buf, all, 1)?;
    ctx.dev.free(buf)?;
    Ok(())
}

/// A second prefetch to where the pages already are must migrate nothing.
fn already_resident(ctx: &mut Ctx) -> CaseResult {
    let buf = ctx.alloc(ctx.kind, ctx.size)?;
    let all = buf.all();
    ctx.cpu_fill(buf, all, 1)?;
    ctx.dev.prefetch(buf, all, Location::Vram)?;
    let first = ctx.events().unwrap_or_default();
    let moved = Ctx::migrated_pages(&first, buf, Trigger::Prefetch, Location::Vram);
    check_eq!(moved, buf.pages(), "the first prefetch migrates every page");

    // The operation under test: the same prefetch again.
    ctx.dev.prefetch(buf, all, Location::Vram)?;
    let again = ctx.events().unwrap_or_default();
    let moved_again: u64 = again
        .iter()
        .filter(|e| e.buf == buf.id)
        .map(|e| e.pages)
        .sum();
    check_eq!(
        moved_again,
        0,
        "a prefetch of resident pages migrates nothing; events: {again:?}"
    );
    ctx.note("second prefetch to VRAM: no migration event".to_string());
    ctx.gpu_verify(buf, all, 1)?;
    ctx.dev.free(buf)?;
    Ok(())
}

/// Rounds of prefetch to VRAM, GPU write, CPU verify (the CPU fault brings the data back), as
/// kfdtest's MigrateTest does. Parameter: `rounds` (default 8).
fn rounds(ctx: &mut Ctx) -> CaseResult {
    let rounds: u32 = ctx.param("rounds", 8)?;
    let buf = ctx.alloc(ctx.kind, ctx.size)?;
    let all = buf.all();
    ctx.cpu_fill(buf, all, 1)?;
    for round in 0..rounds {
        let generation = 2 + round;
        let before = ctx.observe();
        ctx.dev.prefetch(buf, all, Location::Vram)?;
        ctx.expect_location(
            buf,
            all,
            Location::Vram,
            &format!("round {round}: prefetch"),
            &before,
        )?;
        ctx.gpu_fill(buf, all, generation)?;
        ctx.cpu_verify(buf, all, generation)?;
    }
    ctx.dev.free(buf)?;
    Ok(())
}

/// A kernel rewrites the allocation while prefetches move it both ways underneath: no write
/// may be lost, whichever side each page was on when it was written.
fn racing_kernel(ctx: &mut Ctx) -> CaseResult {
    let buf = ctx.alloc(ctx.kind, ctx.size)?;
    let all = buf.all();
    ctx.cpu_fill(buf, all, 1)?;
    let half = Span::new(0, (all.len / 2).next_multiple_of(PAGE_SIZE).min(all.len));

    let pending = ctx.dev.launch_async(&Launch::Fill {
        buf,
        span: all,
        seed: ctx.seed,
        generation: 2,
    })?;
    ctx.dev.prefetch(buf, all, Location::Vram)?;
    ctx.dev.prefetch(buf, half, Location::System)?;
    let run = ctx.dev.wait(pending)?;
    ctx.note(format!(
        "kernel ran {:?} against two prefetches",
        run.elapsed
    ));

    ctx.gpu_verify(buf, all, 2)?;
    ctx.cpu_verify(buf, all, 2)?;
    ctx.dev.free(buf)?;
    Ok(())
}
