//! `report.html`: a history as one self-contained page (no network, no script): per group the
//! verdict changes with a strip of nights per case, every timed series as an SVG plot of its
//! nightly medians with each night's spread and its change points marked, size sweeps on
//! log-log axes with the fitted exponent, and failures grouped by signature with evidence and
//! repro command.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{describe_trend, figure, Detect, History, Series, Trend};
use crate::model::status::Status;
use crate::model::timing::median;
use crate::tools::scaling;

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:1200px}\
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;margin-top:2em}h3{font-size:1.05em;margin:1.2em 0 .3em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}\
th{background:#f3f3f3}.worse{color:#b00;font-weight:600}.better{color:#070}\
.strip rect.pass{fill:#4a4}.strip rect.fail{fill:#c22}.strip rect.skip{fill:#bbb}.strip rect.none{fill:#eee}\
pre{background:#f7f7f7;padding:.5em;overflow-x:auto;font-size:12px;white-space:pre-wrap}\
svg{background:#fff}.plots{display:flex;flex-wrap:wrap;gap:12px}.plot{border:1px solid #eee;padding:4px}\
.note{color:#555}code{font-size:12px}";

/// The whole page.
pub fn report(histories: &[History], detect: &Detect) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>svmconf history</title><style>{STYLE}</style></head><body>\n\
         <h1>svmconf history</h1>\n<p class=\"note\">Change points: E-divisive means, \
         permutation test at α = {}, {} shuffles, changes under {:.0}% not reported. \
         Each plot shows the nightly median (line), the night's fastest to slowest sample \
         (band) and change points (dashed, red where for the worse).</p>\n",
        detect.options.alpha,
        detect.options.permutations,
        detect.options.min_relative * 100.0
    );
    if histories.len() > 1 {
        out.push_str("<p>Runs of different devices are separate histories:</p><ul>");
        for h in histories {
            let _ = write!(
                out,
                "<li><a href=\"#{}\">{}</a>: {}</li>",
                anchor(&h.key.to_string()),
                esc(&h.key.to_string()),
                super::nights(h.nights.len())
            );
        }
        out.push_str("</ul>\n");
    }
    for h in histories {
        group(&mut out, h);
    }
    out.push_str("</body></html>\n");
    out
}

fn anchor(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

fn group(out: &mut String, h: &History) {
    let _ = write!(
        out,
        "<h2 id=\"{}\">{}</h2>\n<p>{}",
        anchor(&h.key.to_string()),
        esc(&h.key.to_string()),
        super::nights(h.nights.len())
    );
    if let (Some(f), Some(l)) = (h.nights.first(), h.nights.last()) {
        let _ = write!(
            out,
            ", {} (kernel {}) to {} (kernel {})",
            esc(&f.label()),
            esc(&f.info.kernel_release),
            esc(&l.label()),
            esc(&l.info.kernel_release)
        );
    }
    out.push_str(".</p>\n");
    if !h.notes.is_empty() {
        out.push_str("<ul class=\"note\">");
        for n in &h.notes {
            let _ = write!(out, "<li>{}</li>", esc(n));
        }
        out.push_str("</ul>\n");
    }
    verdicts(out, h);
    timings(out, h);
    sweeps(out, h);
    failures(out, h);
}

fn verdicts(out: &mut String, h: &History) {
    let shown: Vec<_> = h
        .cases
        .iter()
        .filter(|c| match c.trend {
            Trend::Steady(s) => s.is_failure(),
            _ => true,
        })
        .collect();
    let _ = write!(
        out,
        "<h3>Verdicts</h3>\n<p id=\"verdict-summary\">{} cases; {} changed verdict or \
         failed every night.</p>\n",
        h.cases.len(),
        shown.len()
    );
    if shown.is_empty() {
        return;
    }
    out.push_str("<table class=\"verdicts\"><tr><th>case</th><th>what happened</th><th>nights (oldest left)</th></tr>\n");
    for c in shown {
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            esc(&c.case),
            esc(&describe_trend(h, &c.trend)),
            strip(&c.verdicts)
        );
    }
    out.push_str("</table>\n");
}

/// One rectangle per night: green pass, red failure, grey skip, pale not run.
fn strip(verdicts: &[Option<Status>]) -> String {
    let w = 6;
    let mut s = format!(
        "<svg class=\"strip\" width=\"{}\" height=\"12\" role=\"img\">",
        verdicts.len() * w
    );
    for (i, v) in verdicts.iter().enumerate() {
        let class = match v {
            None | Some(Status::Notrun) => "none",
            Some(Status::Skip) => "skip",
            Some(s) if s.is_failure() => "fail",
            Some(_) => "pass",
        };
        let title = v.map_or("not run".to_string(), |s| s.name().to_string());
        let _ = write!(
            s,
            "<rect class=\"{class}\" x=\"{}\" y=\"0\" width=\"{}\" height=\"12\"><title>night {}: {title}</title></rect>",
            i * w,
            w - 1,
            i + 1
        );
    }
    s.push_str("</svg>");
    s
}

fn timings(out: &mut String, h: &History) {
    let with: Vec<&Series> = h.series.iter().filter(|s| !s.changes.is_empty()).collect();
    let _ = write!(
        out,
        "<h3>Timings</h3>\n<p id=\"timing-summary\">{} timed series, {} with change points.</p>\n",
        h.series.len(),
        with.len()
    );
    if !with.is_empty() {
        out.push_str("<table class=\"changes\"><tr><th>case</th><th>metric</th><th>first night after</th><th>kernel</th><th>before</th><th>after</th><th>change</th><th>p</th></tr>\n");
        for s in &with {
            for c in &s.changes {
                let n = &h.nights[s.points[c.index].night];
                let _ = write!(
                    out,
                    "<tr class=\"{}\"><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:+.1}%</td><td>{:.3}</td></tr>",
                    if s.worse(c) { "worse" } else { "better" },
                    esc(&s.case),
                    esc(&s.metric),
                    esc(&n.label()),
                    esc(&n.info.kernel_release),
                    esc(&figure(c.before, s.unit)),
                    esc(&figure(c.after, s.unit)),
                    c.relative * 100.0,
                    c.p_value
                );
            }
        }
        out.push_str("</table>\n");
    }
    out.push_str("<div class=\"plots\">\n");
    for s in &with {
        out.push_str(&plot(h, s));
    }
    out.push_str("</div>\n");
    let rest: Vec<&Series> = h.series.iter().filter(|s| s.changes.is_empty()).collect();
    if !rest.is_empty() {
        let _ = write!(
            out,
            "<details><summary>{} series without a change point</summary><div class=\"plots\">",
            rest.len()
        );
        for s in rest {
            out.push_str(&plot(h, s));
        }
        out.push_str("</div></details>\n");
    }
}

const W: f64 = 360.0;
const H: f64 = 170.0;
const LEFT: f64 = 58.0;
const BOTTOM: f64 = 28.0;
const TOP: f64 = 22.0;
const RIGHT: f64 = 10.0;

/// A series as an SVG: band of each night's spread, line of medians, change points dashed.
fn plot(h: &History, s: &Series) -> String {
    let n = h.nights.len().max(2) as f64;
    let lo = s.points.iter().map(|p| p.lo).fold(f64::INFINITY, f64::min);
    let hi = s
        .points
        .iter()
        .map(|p| p.hi)
        .fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() && hi.is_finite() && hi > lo {
        (lo, hi)
    } else {
        (lo.min(0.0), lo.abs().max(1.0) * 2.0)
    };
    let pad = (hi - lo) * 0.05;
    let (lo, hi) = (lo - pad, hi + pad);
    let x = |night: usize| LEFT + (W - LEFT - RIGHT) * night as f64 / (n - 1.0);
    let y = |v: f64| TOP + (H - TOP - BOTTOM) * (1.0 - (v - lo) / (hi - lo));
    let mut svg = format!(
        "<svg class=\"series\" data-case=\"{}\" data-metric=\"{}\" data-changes=\"{}\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\">\
         <title>{} {}</title>\
         <text x=\"{LEFT}\" y=\"13\" font-size=\"11\">{} · {}</text>",
        esc(&s.case),
        esc(&s.metric),
        s.changes.len(),
        esc(&s.case),
        esc(&s.metric),
        esc(&s.case),
        esc(&s.metric)
    );
    // Axes, with the range and the first and last night.
    let _ = write!(
        svg,
        "<line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{b}\" stroke=\"#999\"/>\
         <line x1=\"{LEFT}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#999\"/>\
         <text x=\"{t}\" y=\"{yt}\" font-size=\"10\" text-anchor=\"end\">{}</text>\
         <text x=\"{t}\" y=\"{yb}\" font-size=\"10\" text-anchor=\"end\">{}</text>\
         <text x=\"{LEFT}\" y=\"{xl}\" font-size=\"10\">{}</text>\
         <text x=\"{r}\" y=\"{xl}\" font-size=\"10\" text-anchor=\"end\">{}</text>",
        esc(&figure(hi - pad, s.unit)),
        esc(&figure(lo + pad, s.unit)),
        esc(&h.nights.first().map(|n| n.label()).unwrap_or_default()),
        esc(&h.nights.last().map(|n| n.label()).unwrap_or_default()),
        b = H - BOTTOM,
        r = W - RIGHT,
        t = LEFT - 3.0,
        yt = y(hi - pad) + 4.0,
        yb = y(lo + pad),
        xl = H - BOTTOM + 14.0,
    );
    // The spread: a polygon over the lows and back under the highs.
    if s.points.len() > 1 {
        let mut band = String::new();
        for p in &s.points {
            let _ = write!(band, "{:.1},{:.1} ", x(p.night), y(p.hi));
        }
        for p in s.points.iter().rev() {
            let _ = write!(band, "{:.1},{:.1} ", x(p.night), y(p.lo));
        }
        let _ = write!(
            svg,
            "<polygon class=\"spread\" points=\"{}\" fill=\"#9bd\" fill-opacity=\"0.35\" stroke=\"none\"/>",
            band.trim_end()
        );
    }
    let line: Vec<String> = s
        .points
        .iter()
        .map(|p| format!("{:.1},{:.1}", x(p.night), y(p.median)))
        .collect();
    let _ = write!(
        svg,
        "<polyline class=\"median\" points=\"{}\" fill=\"none\" stroke=\"#246\" stroke-width=\"1.3\"/>",
        line.join(" ")
    );
    for c in &s.changes {
        let night = s.points[c.index].night;
        let cx = (x(night) + x(s.points[c.index - 1].night)) / 2.0;
        let _ = write!(
            svg,
            "<line class=\"changepoint\" x1=\"{cx:.1}\" y1=\"{TOP}\" x2=\"{cx:.1}\" y2=\"{}\" stroke=\"{}\" stroke-dasharray=\"4 3\" stroke-width=\"1.5\">\
             <title>{}: {} -> {} ({:+.1}%, p {:.3})</title></line>",
            H - BOTTOM,
            if s.worse(c) { "#c22" } else { "#393" },
            esc(&h.nights[night].label()),
            esc(&figure(c.before, s.unit)),
            esc(&figure(c.after, s.unit)),
            c.relative * 100.0,
            c.p_value
        );
    }
    svg.push_str("</svg>");
    format!("<div class=\"plot\">{svg}</div>\n")
}

/// Per path and metric, the latest night's medians against size on log-log axes, with the
/// fitted exponent (time ∝ size^k).
fn sweeps(out: &mut String, h: &History) {
    let Some(last) = h.nights.len().checked_sub(1) else {
        return;
    };
    let mut by: BTreeMap<(String, String), Vec<(f64, f64)>> = BTreeMap::new();
    for s in &h.series {
        // The latest night that has the series.
        if let Some(p) = s.points.iter().rev().find(|p| p.night <= last) {
            if s.size > 0 && p.median > 0.0 {
                by.entry((s.path().to_string(), s.metric.clone()))
                    .or_default()
                    .push((s.size as f64, p.median));
            }
        }
    }
    by.retain(|_, pts| {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        pts.dedup_by(|a, b| a.0 == b.0);
        pts.len() >= 3
    });
    let _ = write!(
        out,
        "<h3>Size sweeps</h3>\n<p id=\"sweep-summary\">{} paths measured at 3 sizes or more \
         (each at its latest night), log-log; k is the fitted exponent of the figure against size \
         (figure ∝ size^k: for a time 1 is linear, for a throughput 0 is flat).</p>\n<div class=\"plots\">\n",
        by.len()
    );
    for ((path, metric), pts) in &by {
        out.push_str(&sweep(path, metric, pts));
    }
    out.push_str("</div>\n");
}

fn sweep(path: &str, metric: &str, pts: &[(f64, f64)]) -> String {
    let fit = scaling::fit(pts);
    let lx: Vec<f64> = pts.iter().map(|p| p.0.log10()).collect();
    let ly: Vec<f64> = pts.iter().map(|p| p.1.log10()).collect();
    let (x0, x1) = (lx[0], lx[lx.len() - 1]);
    let y0 = ly.iter().copied().fold(f64::INFINITY, f64::min) - 0.1;
    let y1 = ly.iter().copied().fold(f64::NEG_INFINITY, f64::max) + 0.1;
    let x = |v: f64| LEFT + (W - LEFT - RIGHT) * (v - x0) / (x1 - x0).max(1e-9);
    let y = |v: f64| TOP + (H - TOP - BOTTOM) * (1.0 - (v - y0) / (y1 - y0).max(1e-9));
    let k = fit.map_or("no fit".to_string(), |f| {
        format!("k = {:.2}, R² = {:.3}", f.k, f.r2)
    });
    let mut svg = format!(
        "<svg class=\"sweep\" data-path=\"{}\" data-metric=\"{}\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\">\
         <title>{} {} against size</title>\
         <text x=\"{LEFT}\" y=\"11\" font-size=\"10\">{} · {}</text>\
         <text x=\"{mid}\" y=\"{xl}\" font-size=\"10\" text-anchor=\"middle\" class=\"fit-label\">{}</text>\
         <text x=\"{t}\" y=\"{top_label}\" font-size=\"10\" text-anchor=\"end\">{}</text>\
         <text x=\"{t}\" y=\"{b}\" font-size=\"10\" text-anchor=\"end\">{}</text>\
         <line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{b}\" stroke=\"#999\"/>\
         <line x1=\"{LEFT}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#999\"/>\
         <text x=\"{LEFT}\" y=\"{xl}\" font-size=\"10\">{}</text>\
         <text x=\"{r}\" y=\"{xl}\" font-size=\"10\" text-anchor=\"end\">{} (log)</text>",
        esc(path),
        esc(metric),
        esc(path),
        esc(metric),
        esc(path),
        esc(metric),
        esc(&k),
        esc(&short(10f64.powf(y1 - 0.1))),
        esc(&short(10f64.powf(y0 + 0.1))),
        size_label(pts[0].0),
        size_label(pts[pts.len() - 1].0),
        b = H - BOTTOM,
        r = W - RIGHT,
        xl = H - BOTTOM + 14.0,
        mid = (LEFT + W - RIGHT) / 2.0,
        t = LEFT - 3.0,
        top_label = TOP + 8.0,
    );
    if let Some(f) = fit {
        // ln(t) = a + k ln(s): in log10, log t = (a + k ln s) / ln 10.
        let at = |lx: f64| (f.a + f.k * lx * std::f64::consts::LN_10) / std::f64::consts::LN_10;
        let _ = write!(
            svg,
            "<line class=\"fit\" x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#c80\" stroke-dasharray=\"3 2\"/>",
            x(x0),
            y(at(x0)),
            x(x1),
            y(at(x1))
        );
    }
    for (px, py) in lx.iter().zip(&ly) {
        let _ = write!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#246\"/>",
            x(*px),
            y(*py)
        );
    }
    svg.push_str("</svg>");
    format!("<div class=\"plot\">{svg}</div>\n")
}

/// A figure to three significant digits, without its unit (the axis of a sweep).
fn short(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn size_label(bytes: f64) -> String {
    let b = bytes as u64;
    if b >= 1 << 30 && b % (1 << 30) == 0 {
        format!("{} GiB", b >> 30)
    } else if b >= 1 << 20 && b % (1 << 20) == 0 {
        format!("{} MiB", b >> 20)
    } else if b >= 1 << 10 {
        format!("{:.0} KiB", bytes / 1024.0)
    } else {
        format!("{b} B")
    }
}

fn failures(out: &mut String, h: &History) {
    let _ = write!(
        out,
        "<h3>Failures by signature</h3>\n<p id=\"failure-summary\">{} distinct signatures.</p>\n",
        h.failures.len()
    );
    for g in &h.failures {
        let nights: Vec<usize> = g.cases.values().copied().collect();
        let _ = write!(
            out,
            "<div class=\"failure\"><h4>{}</h4><p>{} cases, on {} nights in all (median {} a \
             case), first {} last {}: {}</p>\n<p>Latest: <code>{}</code> on {} (kernel {})</p>\
             <pre>{}</pre>\n<pre>{}</pre>\n<p>Repro: <code>{}</code></p></div>\n",
            esc(&g.signature),
            g.cases.len(),
            nights.iter().sum::<usize>(),
            median(&nights.iter().map(|&n| n as f64).collect::<Vec<_>>()),
            esc(&h.nights[g.first_night].label()),
            esc(&h.nights[g.last_night].label()),
            esc(&g
                .cases
                .keys()
                .take(8)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")),
            esc(&g.example.case),
            esc(&h.nights[g.example_night].label()),
            esc(&h.nights[g.example_night].info.kernel_release),
            esc(&g.example.reason.join("\n")),
            esc(&g.example.evidence.join("\n")),
            esc(&g.example.repro)
        );
    }
}
