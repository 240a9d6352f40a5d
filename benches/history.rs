//! What `svmconf history` costs over a lab's nights: made-up histories of 100 and 400 nights
//! (32 cases a night, 10 samples per timing; `history-demo`'s plan), each read from its run
//! folders, analysed (verdicts, change points by E-divisive means on every series), and
//! written as report.html, Otava CSV and KCIDB JSON. Prints seconds per stage and the peak
//! resident memory of the process.
//!
//! `cargo bench --bench history`

use std::time::Instant;

use svmconf::tools::history::{self, synthetic, Detect};

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    println!("| nights | cases | write | load | analyse | report + exports | total | peak RSS |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for nights in [100, 400] {
        let dir = tempfile::tempdir()?;
        let plan = synthetic::Plan {
            nights,
            ..synthetic::Plan::default()
        };
        let t = Instant::now();
        let dirs = synthetic::write(&plan, dir.path())?;
        let write = t.elapsed();
        let t0 = Instant::now();
        let loaded = history::load_nights(&dirs).map_err(anyhow::Error::msg)?;
        let load = t0.elapsed();
        let t = Instant::now();
        let detect = Detect::default();
        let histories: Vec<_> = history::group(loaded)
            .into_iter()
            .map(|(k, n)| history::analyse(k, n, &detect))
            .collect();
        let analyse = t.elapsed();
        let t = Instant::now();
        let html = history::html::report(&histories, &detect);
        let otava = history::export::otava(&histories);
        let kcidb = history::export::kcidb(&histories, "svmconf");
        let out = dir.path().join("history");
        history::export::write_all(&out, &html, &otava, &kcidb).map_err(anyhow::Error::msg)?;
        let report = t.elapsed();
        println!(
            "| {nights} | {} | {:.2} s | {:.2} s | {:.2} s | {:.2} s | {:.2} s | {:.0} MiB |",
            synthetic::cases(&plan).len(),
            write.as_secs_f64(),
            load.as_secs_f64(),
            analyse.as_secs_f64(),
            report.as_secs_f64(),
            t0.elapsed().as_secs_f64(),
            peak_rss_kib() as f64 / 1024.0
        );
    }
    Ok(())
}
