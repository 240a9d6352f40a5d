//! Fault storms: many GPU faults at once over scattered pages, CPU threads faulting the same
//! pages, and GPU and CPU incrementing the same counters. No hang, no lost update.

use crate::case::{CaseResult, Ctx, Lands, Stop};
use crate::check;
use crate::device::kernels::Launch;
use crate::device::{CpuOp, CpuThreads, Location, Span, WORDS_PER_PAGE};
use crate::model::timing::Metric;
use crate::suites::Param;

bodies! {
    scattered: [Xnack, GpuFaultMigration] with [
        Param::pages("min_pages", 1, "the fewest pages a storm may have, default 16384"),
    ],
    cpu_threads: [Xnack] with [
        Param::whole("threads", 1, 1024, "CPU threads faulting at once, default 4"),
        Param::one_of(
            "order",
            &["scattered", "same"],
            "each thread in its own page order, or all in page order, default scattered"
        ),
    ],
    ping_pong: [Xnack, Concurrency] with [
        Param::whole("rounds", 1, 10_000, "turns of GPU and CPU, default 4"),
        Param::whole("threads", 1, 1024, "CPU threads incrementing, default 2"),
    ],
}

/// A step coprime to `n`, so `(i * step + offset) % n` visits every page once, scattered.
/// Above two pages the step is at least 2, so neighbouring blocks never fault neighbouring pages.
fn coprime_step(n: u64, seed: u64) -> u64 {
    if n <= 2 {
        return 1;
    }
    let gcd = |mut a: u64, mut b: u64| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    // n - 1 is always coprime to n, so the search ends.
    let mut step = 2 + seed % (n - 2);
    while gcd(step, n) != 1 {
        step = if step + 1 >= n { 2 } else { step + 1 };
    }
    step
}

/// Every page of the allocation written by a different thread block, in a scattered order, so
/// the GPU faults on all of them at once. Timed as microseconds per fault.
fn scattered(ctx: &mut Ctx) -> CaseResult {
    let min_pages: u64 = ctx.param("min_pages", 16384)?;
    let buf = ctx.alloc(ctx.kind, ctx.size)?;
    let all = buf.all();
    let pages = buf.pages();
    check!(
        pages >= min_pages,
        "fixtures: a storm needs at least {min_pages} pages, the size gives {pages}"
    );
    let step = coprime_step(pages, ctx.seed);
    let offset = ctx.seed % pages;
    let seed = ctx.seed_of(buf);
    let storm = |generation| Launch::FaultStorm {
        buf,
        span: all,
        step,
        offset,
        seed,
        generation,
    };

    let before = ctx.observe();
    let run = ctx.dev.launch(&storm(1))?;
    ctx.expect_location(
        buf,
        all,
        Location::Vram,
        "a fault storm migrates every page",
        &before,
    )?;
    ctx.gpu_verify(buf, all, 1)?;
    let faults = run.faults.unwrap_or(pages);
    ctx.note(format!(
        "storm over {pages} pages (step {step}, offset {offset}): {faults} GPU faults"
    ));
    check!(
        faults > 0,
        "the storm took GPU faults on memory it had never touched"
    );

    let launches = [storm(2)];
    let samples = ctx.timed_landing(
        "a fault storm migrates every page",
        Lands {
            buf,
            span: all,
            to: Location::Vram,
        },
        |dev| dev.prefetch(buf, all, Location::System).map(drop),
        |dev| dev.launch(&launches[0]).map(|r| r.elapsed),
    )?;
    let mut metric = Metric::per_item_us("storm_us_per_fault", faults, &samples.samples);
    if let Some((longest_s, what)) = ctx.slowest_s(all.len, faults) {
        metric = metric.with_floor(longest_s * 1e6 / faults as f64, what);
    }
    ctx.metric(metric)?;
    ctx.cpu_verify(buf, all, 2)?;
    ctx.dev.free(buf)?;
    Ok(())
}

/// Several CPU threads increment the first word of every VRAM-resident page, so their CPU
/// faults on the same pages race. Parameters `threads` (default 4) and `order`: `scattered`
/// (default), each thread in its own order, or `same`, all in page order, so that every
/// thread faults on the same page at the same time.
fn cpu_threads(ctx: &mut Ctx) -> CaseResult {
    let threads: u64 = ctx.param("threads", 4)?;
    let order_name: String = ctx.param("order", "scattered".to_string())?;
    let same = match order_name.as_str() {
        "scattered" => false,
        "same" => true,
        other => {
            return Err(Stop::fail(format!(
                "fixtures: order must be `scattered` or `same`, not `{other}`"
            )))
        }
    };
    let buf = ctx.alloc(ctx.kind, ctx.size)?;
    let all = buf.all();
    let pages = buf.pages();
    // Every word is the pattern; each page's first word is also its counter, starting from its
    // pattern value, so the whole page is known after the increments.
    ctx.cpu_fill(buf, all, 1)?;
    let before = ctx.observe();
    ctx.dev.prefetch(buf, all, Location::Vram)?;
    ctx.expect_location(buf, all, Location::Vram, "prefetch to VRAM", &before)?;

    let order = |t: u64| -> Vec<u64> {
        if same {
            return (0..pages).collect();
        }
        let step = coprime_step(pages, ctx.seed.wrapping_add(t * 0x9E37));
        (0..pages).map(|i| (i * step + t) % pages).collect()
    };
    let work = CpuThreads {
        buf,
        op: CpuOp::AtomicInc,
        pages: (0..threads).map(order).collect(),
    };
    let before = ctx.observe();
    let took = ctx.dev.cpu_threads(&work)?;
    ctx.note(format!(
        "{threads} CPU threads x {pages} pages ({order_name} order) in {took:?}"
    ));
    ctx.expect_location(
        buf,
        all,
        Location::System,
        "the CPU threads' faults bring every page back",
        &before,
    )?;

    let mut words = read_all(ctx, buf, all)?;
    let pattern = ctx.pattern(buf, 1);
    let mut miscounted = Vec::new();
    for page in 0..pages {
        let at = (page * WORDS_PER_PAGE) as usize;
        let start = pattern.word(at as u64);
        let seen = words[at].wrapping_sub(start);
        if seen as u64 != threads {
            miscounted.push((page, seen));
        }
        // The counter is judged above; with it taken out, the page must be the pattern.
        words[at] = start;
    }
    // Every other word of every page came back through the same migrations.
    if let Err(m) = pattern.check(0, &words) {
        return Err(Stop::fail(format!(
            "after {threads} CPU threads' faults, allocation {} (generation 1, each page's first \
             word, the counter, aside): {m}",
            buf.id
        )));
    }
    if let Some(&(page, seen)) = miscounted.first() {
        return Err(Stop::fail(format!(
            "{} of {pages} pages did not see {threads} increments; first: page {page} saw {seen}",
            miscounted.len()
        )));
    }
    ctx.note(format!(
        "{pages} pages: each counted {threads} increments, every other word intact"
    ));
    ctx.dev.free(buf)?;
    Ok(())
}

/// GPU and CPU take turns incrementing the same counters, then do it at the same time; every
/// increment must land. Parameters `rounds` (default 4), `threads` (default 2).
fn ping_pong(ctx: &mut Ctx) -> CaseResult {
    let rounds: u32 = ctx.param("rounds", 4)?;
    let threads: u64 = ctx.param("threads", 2)?;
    let buf = ctx.alloc(ctx.kind, ctx.size)?;
    let all = buf.all();
    let pages = buf.pages();
    ctx.cpu_zero(buf, all)?;
    let inc = Launch::AtomicInc {
        buf,
        span: all,
        iterations: 1,
    };
    let every_page = CpuThreads {
        buf,
        op: CpuOp::AtomicInc,
        pages: vec![(0..pages).collect(); threads as usize],
    };

    for _ in 0..rounds {
        ctx.dev.launch(&inc)?; // the GPU faults the counters to VRAM
        ctx.dev.cpu_threads(&every_page)?; // the CPU faults them back
    }
    // The same increments at the same time: a kernel in flight while the CPU threads run.
    let pending = ctx.dev.launch_async(&inc)?;
    ctx.dev.cpu_threads(&every_page)?;
    ctx.dev.wait(pending)?;

    let words = read_all(ctx, buf, all)?;
    let gpu = rounds as u64 + 1;
    let cpu = (rounds as u64 + 1) * threads;
    let mut lost = 0u64;
    let mut first_bad = None;
    for (i, w) in words.iter().enumerate() {
        let want = gpu
            + if i as u64 % WORDS_PER_PAGE == 0 {
                cpu
            } else {
                0
            };
        if *w as u64 != want {
            lost += want.saturating_sub(*w as u64);
            first_bad.get_or_insert((i, want, *w));
        }
    }
    if let Some((i, want, got)) = first_bad {
        return Err(Stop::fail(format!(
            "{lost} increments lost; first at word {i} (page {}, offset {:#x}): expected {want}, got {got}",
            i as u64 / WORDS_PER_PAGE,
            (i as u64 % WORDS_PER_PAGE) * 4
        )));
    }
    ctx.note(format!(
        "{} counters, {gpu} GPU and {cpu} CPU increments each, none lost",
        words.len()
    ));
    ctx.dev.free(buf)?;
    Ok(())
}

fn read_all(ctx: &mut Ctx, buf: crate::device::Buf, span: Span) -> Result<Vec<u32>, Stop> {
    let mut words = vec![0u32; span.words() as usize];
    ctx.dev.cpu_read(buf, span, &mut words)?;
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::coprime_step;
    use rstest::rstest;

    #[rstest]
    #[case(1)]
    #[case(2)]
    #[case(16384)]
    #[case(16385)]
    #[case(513)]
    fn the_storm_order_visits_every_page_once(#[case] n: u64) {
        for seed in [0, 1, 7, 0x5eed, u64::MAX] {
            let step = coprime_step(n, seed);
            let mut seen = vec![false; n as usize];
            for i in 0..n {
                seen[((i * step + 3) % n) as usize] = true;
            }
            assert!(seen.iter().all(|s| *s), "n {n} seed {seed} step {step}");
        }
    }
}
