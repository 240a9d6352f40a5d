//! Prefetch: hipMemPrefetchAsync migrates every page of a span to the location asked, and a
//! prefetch of pages already there migrates nothing.

use crate::case::{CaseResult, Ctx, Lands, Timed};
use crate::device::kernels::Launch;
use crate::device::{Buf, Location, Span, Trigger, PAGE_SIZE};
use crate::suites::{Param, Shape};
use crate::util::yaml::Value;
use crate::{check, check_eq};

bodies! {
    round_trip: [],
    partial: [Residency] with [
        Param::page("first_page", "the first page prefetched, default a quarter in"),
        Param::pages("pages", 1, "how many pages are prefetched, default half the allocation"),
    ] fit partial_fits,
    already_resident: [Events],
    rounds: [Xnack] with [
        Param::whole("rounds", 1, 10_000, "rounds of prefetch, GPU write, CPU verify, default 8"),
    ],
    racing_kernel: [Xnack, Concurrency],
}

/// CPU-written data prefetched to VRAM, checked and rewritten by the GPU, prefetched back and
/// checked by the CPU; both directions timed against the link, and the first (cold) migration
/// of a fresh allocation timed on its own.
fn round_trip(ctx: &mut Ctx) -> CaseResult {
    let buf = ctx.alloc(ctx.kind, ctx.size)?;
    let all = buf.all();
    ctx.cpu_fill(buf, all, 1)?;

    let vram = Lands {
        buf,
        span: all,
        to: Location::Vram,
    };
    let cold = ctx.time_one_migration("prefetch to VRAM, the first (cold)", vram, |dev| {
        dev.prefetch(buf, all, Location::Vram)
    })?;
    ctx.gpu_verify(buf, all, 1)?;
    ctx.gpu_fill(buf, all, 2)?;

    let before = ctx.observe();
    ctx.dev.prefetch(buf, all, Location::System)?;
    ctx.expect_location(buf, all, Location::System, "prefetch to system", &before)?;
    ctx.cpu_verify(buf, all, 2)?;

    timed_both_ways(ctx, buf, all)?;
    ctx.cpu_verify(buf, all, 2)?;
    ctx.dev.free(buf)?;
    cold_migrations(ctx, cold)
}

/// The first migration to VRAM of fresh allocations of the case's size, as many as the case's
/// repetitions (`cold`, the case's own, among them): a new range, a new device allocation, new
/// GPU page tables, each time.
fn cold_migrations(ctx: &mut Ctx, cold: Timed) -> CaseResult {
    let mut samples = cold;
    for i in 1..ctx.repeat.reps.max(1) {
        let buf = ctx.alloc(ctx.kind, ctx.size)?;
        let all = buf.all();
        ctx.cpu_fill(buf, all, 1)?;
        let lands = Lands {
            buf,
            span: all,
            to: Location::Vram,
        };
        samples = samples.and(ctx.time_one_migration(
            &format!("prefetch to VRAM of fresh allocation {i} (cold)"),
            lands,
            |dev| dev.prefetch(buf, all, Location::Vram),
        )?);
        ctx.gpu_verify(buf, all, 1)?;
        ctx.dev.free(buf)?;
    }
    ctx.migration_metric("prefetch_to_vram_cold_gbps", ctx.size, 0, &samples)
}

/// Bandwidth of prefetch in each direction, each repetition starting from the other side, and
/// each checked to have moved every page.
fn timed_both_ways(ctx: &mut Ctx, buf: Buf, span: Span) -> CaseResult {
    let to_vram = ctx.timed_migration(
        "prefetch to VRAM",
        Lands {
            buf,
            span,
            to: Location::Vram,
        },
        |dev| dev.prefetch(buf, span, Location::System).map(drop),
        |dev| dev.prefetch(buf, span, Location::Vram),
    )?;
    let to_system = ctx.timed_migration(
        "prefetch to system",
        Lands {
            buf,
            span,
            to: Location::System,
        },
        |dev| dev.prefetch(buf, span, Location::Vram).map(drop),
        |dev| dev.prefetch(buf, span, Location::System),
    )?;
    ctx.migration_metric("prefetch_to_vram_gbps", span.len, 0, &to_vram)?;
    ctx.migration_metric("prefetch_to_system_gbps", span.len, 0, &to_system)
}

/// A prefetch of part of an allocation moves that part only; the rest stays in system memory.
/// `partial`'s span where `with:` does not say: half the allocation, from a quarter in.
fn partial_default(pages: u64) -> (u64, u64) {
    (pages / 4, (pages / 2).max(1))
}

/// `first_page` and `pages` of `partial` together: the span ends inside the allocation.
fn partial_fits(with: &Value, shape: Shape) -> Result<(), (String, String)> {
    let pages = shape.bytes.div_ceil(PAGE_SIZE);
    let (first, count) = partial_default(pages);
    let first = with
        .get("first_page")
        .and_then(Value::as_u64)
        .unwrap_or(first);
    let count = with.get("pages").and_then(Value::as_u64).unwrap_or(count);
    if first + count > pages {
        return Err((
            "pages".to_string(),
            format!(
                "a span of {count} pages from page {first} ends past the allocation's {pages} \
                 pages (at {} bytes)",
                shape.bytes
            ),
        ));
    }
    Ok(())
}

/// Parameters: `first_page`, `pages` (default: half the allocation, from a quarter in), so that
/// both chunk-aligned and unaligned spans are covered.
fn partial(ctx: &mut Ctx) -> CaseResult {
    let buf = ctx.alloc(ctx.kind, ctx.size)?;
    let all = buf.all();
    let pages = buf.pages();
    let (first, count) = partial_default(pages);
    let first: u64 = ctx.param("first_page", first)?;
    let count: u64 = ctx.param("pages", count)?;
    // Checked with the plan (partial_fits); a body run without one is held to it too.
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
        seed: ctx.seed_of(buf),
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
