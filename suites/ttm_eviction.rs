//! TTM eviction: when VRAM is needed, TTM evicts least-recently-used SVM allocations whole and
//! synchronously to system memory. Every byte must survive, evicted data must migrate again on
//! the next GPU touch, and the transient system memory of each eviction (the series' open
//! issue: a throwaway TTM_PL_SYSTEM resource per eviction) is measured.
//!
//! Pressure is sized from the VRAM free now (other users and the driver hold some), and a case
//! that would need more system memory than the profile allows (`limits.system_memory_bytes`)
//! or than the machine has available skips instead of pushing the host into the OOM killer.

use crate::case::{CaseResult, Ctx, EvidenceSource, Lands, Sample, Stop};
use crate::check;
use crate::device::{AllocKind, Buf, DeviceError, Location, PAGE_SIZE};
use crate::model::profile::EvictionOrder;
use crate::model::timing::{Metric, Unit};
use crate::suites::{Param, Shape};
use crate::util::yaml::Value;

bodies! {
    device_buffers: [Xnack, DeviceBuffers] with [
        Param::real(
            "evict_fraction",
            0.0,
            1.0,
            "how much of the SVM data the buffer must evict, default 0.5"
        ),
    ],
    oversubscribe: [Xnack, GpuFaultMigration] with [
        Param::real("fraction", 0.0, 64.0, "SVM data as a fraction of VRAM, default 1.125"),
        Param::whole(
            "margin_bytes",
            0,
            1 << 50,
            "bytes of SVM data beyond the fraction, default 0"
        ),
    ] fit oversubscribes,
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
    // Timed: each run evicts the allocation, back in VRAM, whole.
    let samples = ctx.timed_checked(
        "eviction of everything",
        |dev| dev.prefetch(buf, all, Location::Vram).map(drop),
        |dev| match dev.evict_all() {
            Some(took) => took,
            None => Err(DeviceError::NotSupported("evict_all")),
        },
        |dev, vram| {
            let lands = Lands {
                buf,
                span: all,
                to: Location::System,
            };
            crate::case::landed(dev, lands, vram).map(|l| l.source)
        },
        Sample::MigrationOrStep,
    )?;
    ctx.migration_metric("evict_all_gbps", all.len, 0, &samples)?;
    ctx.cpu_verify(buf, all, 2)?;
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
    let bo = ctx.alloc(AllocKind::DeviceBuffer, bo_bytes)?;
    ctx.note(format!(
        "{bo_bytes} bytes of VRAM buffers beside {} bytes of SVM data in {vram} bytes of VRAM",
        ctx.size
    ));
    eviction_metrics(ctx, &transient_before)?;
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
    timed_evictions(ctx, buf, bo_bytes, evicted)?;
    ctx.cpu_verify(buf, all, 1)?;
    ctx.dev.free(buf)?;
    Ok(())
}

/// The eviction a VRAM buffer of `bo_bytes` forces, timed with the case's repetitions: each
/// run starts with the SVM data back in VRAM and must evict at least `evicted` bytes of it.
/// Each sample is the eviction's migrations on the device's migration clock, else the
/// allocation's own time.
fn timed_evictions(ctx: &mut Ctx, buf: Buf, bo_bytes: u64, evicted: u64) -> CaseResult {
    let all = buf.all();
    let held = std::cell::Cell::new(None::<Buf>);
    let moved = std::cell::RefCell::new(Vec::new());
    let samples = ctx
        .timed_checked(
            "a VRAM buffer evicts SVM data",
            |dev| {
                if let Some(bo) = held.take() {
                    dev.free(bo)?;
                }
                dev.prefetch(buf, all, Location::Vram).map(drop)
            },
            |dev| {
                let before = dev.eviction_transient();
                let clock = std::time::Instant::now();
                let bo = dev.alloc(AllocKind::DeviceBuffer, bo_bytes)?;
                let took = clock.elapsed();
                held.set(Some(bo));
                let bytes = match (before, dev.eviction_transient()) {
                    (Some(b), Some(a)) => a.bytes_evicted - b.bytes_evicted,
                    _ => evicted,
                };
                moved.borrow_mut().push(bytes);
                Ok(took)
            },
            |dev, _| {
                let bytes = moved.borrow().last().copied().unwrap_or(0);
                if let Some(res) = dev.residency(buf, all) {
                    let res = res.map_err(|e| format!("reading residency: {e}"))?;
                    let out = res.iter().filter(|l| **l == Location::System).count() as u64;
                    if out * PAGE_SIZE < evicted {
                        return Err(format!(
                        "{out} pages of the SVM data are in system memory, {} were to be evicted \
                         (residency)",
                        evicted / PAGE_SIZE
                    ));
                    }
                    return Ok(EvidenceSource::Residency);
                }
                if bytes < evicted {
                    return Err(format!(
                    "{bytes} bytes evicted, at least {evicted} were to be (eviction accounting)"
                ));
                }
                Ok(EvidenceSource::DataOnly)
            },
            Sample::MigrationOrStep,
        )?
        // Never unresolved: an eviction is timed by the device's clock or by itself.
        .samples;
    if let Some(bo) = held.take() {
        ctx.dev.free(bo)?;
    }
    // Every run from the start, warm-ups too, pushed its bytes: the samples are the last ones.
    let moved = moved.into_inner();
    let bytes = &moved[moved.len() - samples.len()..];
    let gbps: Vec<f64> = samples
        .iter()
        .zip(bytes)
        .map(|(d, b)| crate::model::timing::gbps(*b, *d))
        .collect();
    let limits = &ctx.profile.limits;
    let mut metric = Metric::new("eviction_gbps", Unit::GBps, gbps).with_ceiling(
        limits.link_peak_gbps,
        format!("the peak of {}", limits.link),
    );
    if let Some((longest_s, what)) = ctx.slowest_s(evicted, 0) {
        metric = metric.with_floor(evicted as f64 / longest_s / 1e9, what);
    }
    ctx.metric(metric)
}

/// `fraction` and `margin_bytes` of `oversubscribe` together: more SVM data than VRAM.
fn oversubscribes(with: &Value, shape: Shape) -> Result<(), (String, String)> {
    let (fraction, margin) = (
        with.get("fraction")
            .and_then(Value::as_f64)
            .unwrap_or(1.125),
        with.get("margin_bytes")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    );
    if oversubscribed(shape.vram_bytes, fraction, margin) <= shape.vram_bytes {
        return Err((
            "fraction".to_string(),
            format!(
                "{fraction} of {} bytes of VRAM and {margin} bytes more do not oversubscribe it",
                shape.vram_bytes
            ),
        ));
    }
    Ok(())
}

/// The bytes of SVM data `oversubscribe` allocates.
fn oversubscribed(vram: u64, fraction: f64, margin: u64) -> u64 {
    ((vram as f64 * fraction) as u64).saturating_add(margin)
}

/// More SVM data than VRAM, in allocations of the case's size, every one written by the GPU:
/// later ones evict earlier ones. Every byte is then verified by the GPU (migrating back in,
/// evicting again) and by the CPU. Parameter `fraction` of VRAM (1.125 as IGT's evict-malloc;
/// kfdtest's VramOvercommit is VRAM plus a margin: `margin_bytes`).
fn oversubscribe(ctx: &mut Ctx) -> CaseResult {
    let fraction: f64 = ctx.param("fraction", 1.125)?;
    let margin: u64 = ctx.param("margin_bytes", 0)?;
    let vram = ctx.dev.info().vram_bytes;
    let total = oversubscribed(vram, fraction, margin);
    check!(
        total > vram,
        "fixtures: {total} bytes do not oversubscribe {vram} bytes of VRAM"
    );
    let count = total.div_ceil(ctx.size);
    // Every allocation ends in system memory (the CPU verifies it), and one more allocation's
    // worth in transit while one is evicted.
    within_system_memory(ctx, (count + 1) * ctx.size)?;
    let transient_before = ctx.dev.eviction_transient().unwrap_or_default();

    let mut bufs: Vec<Buf> = Vec::with_capacity(count as usize);
    for i in 0..count {
        let buf = ctx.alloc(ctx.kind, ctx.size)?;
        ctx.gpu_fill(buf, buf.all(), generation(i))?;
        bufs.push(buf);
    }
    ctx.note(format!(
        "{count} allocations of {} bytes = {} bytes, {:.1}% of {vram} bytes of VRAM",
        ctx.size,
        count * ctx.size,
        100.0 * (count * ctx.size) as f64 / vram as f64
    ));
    eviction_metrics(ctx, &transient_before)?;
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
fn eviction_metrics(ctx: &mut Ctx, before: &crate::device::EvictionTransient) -> CaseResult {
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
