//! TTM eviction: when VRAM is needed, TTM evicts least-recently-used SVM allocations whole and
//! synchronously to system memory. Every byte must survive, evicted data must migrate again on
//! the next GPU touch, and the transient system memory of each eviction (the series' open
//! issue: a throwaway TTM_PL_SYSTEM resource per eviction) is measured.
//!
//! Pressure is sized from the VRAM free now (other users and the driver hold some), and a case
//! that would need more system memory than the profile allows (`limits.system_memory_bytes`)
//! or than the machine has available skips instead of pushing the host into the OOM killer.

use std::time::Instant;

use crate::case::{CaseResult, Ctx, Stop};
use crate::check;
use crate::device::{AllocKind, Buf, Location, PAGE_SIZE};
use crate::model::profile::EvictionOrder;
use crate::model::timing::{Metric, Unit};

bodies! {
    device_buffers: [Xnack, DeviceBuffers],
    oversubscribe: [Xnack, GpuFaultMigration],
    lru_order: [Xnack, DeviceBuffers, Residency],
    evict_all: [Xnack],
}

/// VRAM emptied of SVM data at once (TTM before a reset or on suspend; the HMM test driver's
/// RELEASE): every page of the allocation is back in system memory with its data, and it
/// migrates to VRAM again afterwards, where a second eviction keeps what the GPU wrote there.
/// Skips where the device cannot be asked to evict everything (a GPU evicts under pressure
/// only: `ttm_eviction::device_buffers`).
fn evict_all(ctx: &mut Ctx) -> CaseResult {
    let buf = ctx.alloc(ctx.kind, ctx.size)?;
    let all = buf.all();
    ctx.cpu_fill(buf, all, 1)?;
    for (round, generation) in [(1, 1), (2, 2)] {
        let before = ctx.observe();
        ctx.dev.prefetch(buf, all, Location::Vram)?;
        ctx.expect_location(buf, all, Location::Vram, "prefetch to VRAM", &before)?;
        if round == 2 {
            ctx.gpu_verify(buf, all, 1)?;
            ctx.gpu_fill(buf, all, generation)?;
        }
        let before = ctx.observe();
        let took = match ctx.dev.evict_all() {
            Some(took) => took?,
            None => {
                return Err(Stop::skip(format!(
                    "{} cannot be asked to evict all of VRAM; a GPU evicts under pressure \
                     (ttm_eviction::device_buffers)",
                    ctx.dev.info().name
                )))
            }
        };
        ctx.expect_location(
            buf,
            all,
            Location::System,
            &format!("eviction of everything, round {round}"),
            &before,
        )?;
        ctx.cpu_verify(buf, all, generation)?;
        ctx.note(format!(
            "round {round}: every page evicted in {took:?}, data intact"
        ));
    }
    ctx.dev.free(buf)?;
    Ok(())
}

/// SVM data resident in VRAM, then a VRAM buffer object that fits only if some of it goes: the
/// SVM data is evicted to system memory intact, and migrates back on the next GPU touch once the
/// buffer is freed. Parameter `evict_fraction`: how much of the SVM data must make room
/// (default 0.5).
fn device_buffers(ctx: &mut Ctx) -> CaseResult {
    let fraction: f64 = ctx.param("evict_fraction", 0.5)?;
    check!(
        fraction > 0.0 && fraction <= 1.0,
        "fixtures: evict_fraction {fraction} must be in (0, 1]"
    );
    let vram = ctx.dev.info().vram_bytes;
    let evicted = ((ctx.size as f64 * fraction) as u64)
        .next_multiple_of(PAGE_SIZE)
        .min(ctx.size);
    // The data, and a transient as large as what is evicted.
    within_system_memory(ctx, ctx.size + evicted)?;
    let buf = ctx.alloc(ctx.kind, ctx.size)?;
    let all = buf.all();
    let before = ctx.observe();
    ctx.gpu_fill(buf, all, 1)?;
    ctx.expect_location(buf, all, Location::Vram, "GPU first touch", &before)?;
    let transient_before = ctx.dev.eviction_transient().unwrap_or_default();

    // The operation under test: a VRAM buffer object that does not fit beside the SVM data.
    let bo_bytes = free_vram(ctx, ctx.size) + evicted;
    let before = ctx.observe();
    let wall = Instant::now();
    let bo = ctx.alloc(AllocKind::DeviceBuffer, bo_bytes)?;
    let took = wall.elapsed();
    ctx.note(format!(
        "{bo_bytes} bytes of VRAM buffers beside {} bytes of SVM data in {vram} bytes of VRAM",
        ctx.size
    ));
    eviction_metrics(ctx, &transient_before, took.as_secs_f64())?;
    let after = ctx.dev.eviction_transient();
    if let Some(t) = after {
        check!(
            t.bytes_evicted - transient_before.bytes_evicted >= evicted,
            "at least {evicted} bytes of SVM data were evicted"
        );
    }
    ctx.cpu_verify(buf, all, 1)?;
    ctx.expect_location(
        buf,
        all,
        Location::System,
        "evicted data read by the CPU",
        &before,
    )?;

    // Room again: the next GPU touch migrates the data back.
    ctx.dev.free(bo)?;
    let before = ctx.observe();
    ctx.gpu_verify(buf, all, 1)?;
    ctx.expect_location(
        buf,
        all,
        Location::Vram,
        "evicted data migrates again on the next GPU touch",
        &before,
    )?;
    ctx.cpu_verify(buf, all, 1)?;
    ctx.dev.free(buf)?;
    Ok(())
}

/// More SVM data than VRAM, in allocations of the case's size, every one written by the GPU:
/// later ones evict earlier ones. Every byte is then verified by the GPU (migrating back in,
/// evicting again) and by the CPU. Parameter `fraction` of VRAM (1.125 as IGT's evict-malloc;
/// kfdtest's VramOvercommit is VRAM plus a margin: `margin_bytes`).
fn oversubscribe(ctx: &mut Ctx) -> CaseResult {
    let fraction: f64 = ctx.param("fraction", 1.125)?;
    let margin: u64 = ctx.param("margin_bytes", 0)?;
    let vram = ctx.dev.info().vram_bytes;
    let total = (vram as f64 * fraction) as u64 + margin;
    check!(
        total > vram,
        "fixtures: {total} bytes do not oversubscribe {vram} bytes of VRAM"
    );
    let count = total.div_ceil(ctx.size);
    // Every allocation ends in system memory (the CPU verifies it), and one more allocation's
    // worth in transit while one is evicted.
    within_system_memory(ctx, (count + 1) * ctx.size)?;
    let transient_before = ctx.dev.eviction_transient().unwrap_or_default();

    let wall = Instant::now();
    let mut bufs: Vec<Buf> = Vec::with_capacity(count as usize);
    for i in 0..count {
        let buf = ctx.alloc(ctx.kind, ctx.size)?;
        ctx.gpu_fill(buf, buf.all(), generation(i))?;
        bufs.push(buf);
    }
    let took = wall.elapsed();
    ctx.note(format!(
        "{count} allocations of {} bytes = {} bytes, {:.1}% of {vram} bytes of VRAM",
        ctx.size,
        count * ctx.size,
        100.0 * (count * ctx.size) as f64 / vram as f64
    ));
    eviction_metrics(ctx, &transient_before, took.as_secs_f64())?;
    if let Some(t) = ctx.dev.eviction_transient() {
        check!(
            t.evictions > transient_before.evictions,
            "oversubscribing VRAM evicted something"
        );
    }

    // Every byte, on the GPU first (which migrates evicted data back in), then on the CPU.
    for (i, buf) in bufs.iter().enumerate() {
        ctx.gpu_verify(*buf, buf.all(), generation(i as u64))?;
    }
    for (i, buf) in bufs.iter().enumerate() {
        ctx.cpu_verify(*buf, buf.all(), generation(i as u64))?;
    }
    for buf in bufs {
        ctx.dev.free(buf)?;
    }
    Ok(())
}

/// VRAM a new buffer could take now: what the device says is free, else its size less what is
/// in use, else less `ours` (the case's own data, when the device reports neither).
fn free_vram(ctx: &mut Ctx, ours: u64) -> u64 {
    if let Some(free) = ctx.dev.vram_free() {
        return free;
    }
    let vram = ctx.dev.info().vram_bytes;
    vram.saturating_sub(ctx.dev.vram_used().unwrap_or(ours))
}

/// Skips unless `bytes` of system memory fit the profile's bound and what the machine has
/// available now.
fn within_system_memory(ctx: &Ctx, bytes: u64) -> CaseResult {
    let profile = ctx.profile;
    if let Some(limit) = profile.limits.system_memory_bytes {
        if bytes > limit {
            return Err(Stop::skip(format!(
                "needs {bytes} bytes of system memory; profile {} allows {limit} \
                 (limits.system_memory_bytes)",
                profile.name
            )));
        }
    }
    let meminfo = std::path::Path::new(crate::observe::meminfo::PROC_MEMINFO);
    if let Ok(available) = crate::observe::meminfo::mem_available(meminfo) {
        if bytes > available {
            return Err(Stop::skip(format!(
                "needs {bytes} bytes of system memory; this machine has {available} available \
                 (MemAvailable)"
            )));
        }
    }
    Ok(())
}

/// Each allocation its own generation, so a page evicted into the wrong allocation shows up.
fn generation(i: u64) -> u32 {
    1 + i as u32
}

/// Records evictions since `before` with the transient system memory they took.
fn eviction_metrics(
    ctx: &mut Ctx,
    before: &crate::device::EvictionTransient,
    seconds: f64,
) -> CaseResult {
    ctx.metric(Metric::exact("eviction_wall_s", Unit::Seconds, seconds))?;
    let Some(now) = ctx.dev.eviction_transient() else {
        ctx.note("the transient system memory of eviction is not observable here");
        return Ok(());
    };
    let evictions = now.evictions - before.evictions;
    let evicted = now.bytes_evicted - before.bytes_evicted;
    let transient = now.transient_bytes_total - before.transient_bytes_total;
    ctx.metric(Metric::exact("evictions", Unit::Count, evictions as f64))?;
    ctx.metric(Metric::exact("evicted_bytes", Unit::Bytes, evicted as f64))?;
    ctx.metric(Metric::exact(
        "eviction_transient_bytes_total",
        Unit::Bytes,
        transient as f64,
    ))?;
    ctx.metric(Metric::exact(
        "eviction_transient_bytes_peak",
        Unit::Bytes,
        now.transient_bytes_peak as f64,
    ))?;
    if let Some(pages) = now.pool_pages {
        ctx.metric(Metric::exact("ttm_pool_pages", Unit::Count, pages as f64))?;
    }
    if let (Some(now), Some(then)) = (now.transient_pages, before.transient_pages) {
        ctx.metric(Metric::exact(
            "eviction_transient_pages",
            Unit::Count,
            now.saturating_sub(then) as f64,
        ))?;
    }
    if evictions > 0 && evicted > 0 {
        // The series' open issue as figures its discussion can use.
        ctx.metric(Metric::exact(
            "eviction_transient_bytes_per_eviction",
            Unit::Bytes,
            transient as f64 / evictions as f64,
        ))?;
        ctx.metric(Metric::exact(
            "eviction_transient_bytes_per_mib_evicted",
            Unit::Bytes,
            transient as f64 / (evicted as f64 / (1u64 << 20) as f64),
        ))?;
        ctx.note(format!(
            "{evictions} evictions moved {evicted} bytes and took {transient} bytes of transient system memory ({:.2} per evicted byte; the series' open issue)",
            transient as f64 / evicted.max(1) as f64
        ));
    }
    Ok(())
}

/// Three allocations in VRAM, the first touched again last; a VRAM buffer then needs the room of
/// one allocation. TTM must evict one allocation whole and leave the others in VRAM: by the
/// profile's `eviction_order`, the least recently used (the second) or, where a GPU access never
/// reaches TTM's LRU, the least recently migrated (the first).
fn lru_order(ctx: &mut Ctx) -> CaseResult {
    let vram = ctx.dev.info().vram_bytes;
    let size = ctx.size;
    check!(
        3 * size <= vram,
        "fixtures: three allocations of {size} bytes must fit in {vram} bytes of VRAM"
    );
    within_system_memory(ctx, 4 * size)?;
    let mut bufs = Vec::new();
    for i in 0..3 {
        let buf = ctx.alloc(ctx.kind, size)?;
        ctx.gpu_fill(buf, buf.all(), generation(i))?;
        bufs.push(buf);
    }
    ctx.gpu_verify(bufs[0], bufs[0].all(), generation(0))?; // the first is now the most recent

    // The operation under test: a VRAM buffer that fits only if one allocation's worth goes.
    // An allocation may span several ranges (devmem allocations); the victims are all of one
    // allocation's, so exactly it must go.
    let bo_bytes = free_vram(ctx, 3 * size) + size;
    let bo = ctx.alloc(AllocKind::DeviceBuffer, bo_bytes)?;
    let (victim, order) = match ctx.profile.policy.eviction_order {
        EvictionOrder::Access => (1, "least recently used"),
        EvictionOrder::Migration => (0, "least recently migrated"),
    };
    let roles = [
        "migrated first, then used again last",
        "migrated second",
        "migrated third",
    ];
    for (i, buf) in bufs.iter().enumerate() {
        let want = if i == victim {
            Location::System
        } else {
            Location::Vram
        };
        let Some(residency) = ctx.dev.residency(*buf, buf.all()) else {
            return Err(Stop::skip("the device cannot report page residency"));
        };
        let residency = residency?;
        let wrong = residency.iter().filter(|l| **l != want).count();
        check!(
            wrong == 0,
            "allocation {i} ({}): {wrong} of {} pages are not in {want} (eviction_order {}: \
             the {order}, allocation {victim}, goes whole and alone)",
            roles[i],
            residency.len(),
            ctx.profile.policy.eviction_order.name()
        );
    }
    ctx.note(format!(
        "TTM evicted the {order} allocation whole and only it"
    ));
    ctx.dev.free(bo)?;
    for (i, buf) in bufs.iter().enumerate() {
        ctx.cpu_verify(*buf, buf.all(), generation(i as u64))?;
        ctx.dev.free(*buf)?;
    }
    Ok(())
}
