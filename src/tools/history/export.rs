//! A history for other tools: Apache Otava's CSV input (one file per timed metric of a case,
//! with the `otava.yaml` that names them) and KCIDB JSON (schema v5: a checkout per kernel, a
//! build per night, a test per case and one per figure), and the writing of every output.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::{History, Series};
use crate::model::status::Status;
use crate::model::timing::Unit;

/// One file of the export: its path under the output folder and its bytes.
pub type File = (PathBuf, String);

/// A name safe in a file name, a KCIDB path segment and an Otava test name: letters, digits,
/// `_` and `-`; anything else becomes `_`, and `::` a `.` where `dots` (a KCIDB path).
pub fn slug(name: &str, dots: bool) -> String {
    let name = if dots {
        name.replace("::", ".")
    } else {
        name.replace("::", "-")
    };
    name.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '-' => c,
            '.' if dots => '.',
            '+' => 'p',
            _ => '_',
        })
        .collect()
}

fn group_slug(h: &History) -> String {
    slug(
        &format!("{}-{}-{}", h.key.backend, h.key.profile, h.key.device),
        false,
    )
}

/// The Otava test name of a series: unique within the export.
fn otava_name(h: &History, s: &Series) -> String {
    format!(
        "{}.{}.{}",
        group_slug(h),
        slug(&s.case, false),
        slug(&s.metric, false)
    )
}

/// Otava's input: per series `otava/<group>/<case>.<metric>.csv` with columns `time` (the
/// night's start, RFC 3339), `run`, `kernel`, `svmconf` and `value` (the night's median), and
/// `otava/otava.yaml` declaring each as a CSV test whose metric `value` has the unit's
/// direction (1: higher is better, -1: lower).
pub fn otava(histories: &[History]) -> Vec<File> {
    let mut files = Vec::new();
    let mut config = String::from(
        "# Apache Otava's configuration of svmconf's history: one CSV test per timed metric of\n\
         # a case. OTAVA_CONFIG=otava.yaml otava analyze <test> finds its change points.\n\
         tests:\n",
    );
    for h in histories {
        for s in &h.series {
            let name = otava_name(h, s);
            let rel = PathBuf::from(group_slug(h)).join(format!(
                "{}.{}.csv",
                slug(&s.case, false),
                slug(&s.metric, false)
            ));
            let mut csv = String::from("time,run,kernel,svmconf,value\n");
            for p in &s.points {
                let n = &h.nights[p.night];
                let _ = writeln!(
                    csv,
                    "{},{},{},{},{}",
                    n.info.started,
                    csv_field(&n.info.run_id),
                    csv_field(&n.info.kernel_release),
                    csv_field(&n.info.suite_version),
                    p.median
                );
            }
            let direction = match s.unit.higher_is_better() {
                Some(true) => 1,
                _ => -1,
            };
            let _ = write!(
                config,
                "  {name}:\n    type: csv\n    file: {}\n    time_column: time\n    \
                 attributes: [run, kernel, svmconf]\n    metrics:\n      value:\n        \
                 column: value\n        direction: {direction}\n",
                rel.display()
            );
            files.push((PathBuf::from("otava").join(rel), csv));
        }
    }
    files.push((PathBuf::from("otava/otava.yaml"), config));
    files
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// KCIDB's status of a verdict.
pub fn kcidb_status(s: Status) -> &'static str {
    match s {
        Status::Pass | Status::DmesgWarn | Status::Flake | Status::UnexpectedPass => "PASS",
        Status::Fail | Status::DmesgFail | Status::ExpectedFail | Status::Timeout => "FAIL",
        // The case's process died: the kernel or the suite, unknown which.
        Status::Crash => "ERROR",
        Status::Incomplete | Status::Notrun => "MISS",
        Status::Skip => "SKIP",
    }
}

fn kcidb_unit(u: Unit) -> &'static str {
    match u {
        Unit::GBps => "GB/s",
        Unit::Micros => "us",
        Unit::Seconds => "s",
        Unit::Bytes => "B",
        Unit::Count => "",
    }
}

/// KCIDB JSON (schema v5.3): a checkout per kernel release of a group, a build per night (the
/// kernel as it booted), and per case a test (`svmconf.<case path>`) with its status, duration
/// and misc (svmconf version, seed, repro), and per figure a test `...<metric>` with status
/// DONE and the night's median as its number.
pub fn kcidb(histories: &[History], origin: &str) -> Value {
    let mut checkouts: Vec<Value> = Vec::new();
    let mut builds = Vec::new();
    let mut tests = Vec::new();
    for h in histories {
        let group = group_slug(h);
        for n in &h.nights {
            let checkout_id = format!("{origin}:{}", slug(&n.info.kernel_release, false));
            if !checkouts.iter().any(|c| c["id"] == checkout_id.as_str()) {
                checkouts.push(json!({
                    "id": checkout_id,
                    "origin": origin,
                    "comment": format!("Linux {}", n.info.kernel_release),
                    "misc": { "kernel_release": n.info.kernel_release },
                }));
            }
            let build_id = format!("{origin}:{}", slug(&n.info.run_id, false));
            builds.push(json!({
                "id": build_id,
                "checkout_id": checkout_id,
                "origin": origin,
                "start_time": n.info.started,
                "comment": format!("the kernel under test on {}", n.info.host),
                "misc": {
                    "host": n.info.host,
                    "run_id": n.info.run_id,
                    "group": group,
                },
            }));
            for (k, s) in n.seen.iter().enumerate() {
                let path = format!("svmconf.{}", slug(&s.case, true));
                let id = format!("{build_id}.{k}");
                let mut test = json!({
                    "id": id,
                    "build_id": build_id,
                    "origin": origin,
                    "path": path,
                    "status": kcidb_status(s.status),
                    "duration": s.duration_s,
                    "environment": {
                        "comment": format!("{} on {}", h.key, n.info.host),
                    },
                    "misc": {
                        "svmconf_version": n.info.suite_version,
                        "svmconf_status": s.status.name(),
                        "kernel_release": n.info.kernel_release,
                        "repro": s.repro,
                    },
                });
                if !s.reason.is_empty() {
                    test["log_excerpt"] = Value::from(s.reason.join("\n"));
                }
                tests.push(test);
                for (j, m) in s.metrics.iter().enumerate() {
                    let v = m.value();
                    if !v.is_finite() {
                        continue;
                    }
                    let mut number = json!({ "value": v });
                    if !kcidb_unit(m.unit).is_empty() {
                        number["unit"] = Value::from(kcidb_unit(m.unit));
                    }
                    tests.push(json!({
                        "id": format!("{id}.{j}"),
                        "build_id": build_id,
                        "origin": origin,
                        "path": format!("{path}.{}", slug(&m.name, true)),
                        "status": "DONE",
                        "number": number,
                        "misc": { "samples": m.samples.len() },
                    }));
                }
            }
        }
    }
    json!({
        "version": { "major": 5, "minor": 3 },
        "checkouts": checkouts,
        "builds": builds,
        "tests": tests,
    })
}

/// Writes report.html, the Otava files and kcidb.json under `out`, each atomically; the
/// folder is checked writable before the first file. Returns what was written.
pub fn write_all(
    out: &Path,
    html: &str,
    otava: &[File],
    kcidb: &Value,
) -> Result<Vec<PathBuf>, String> {
    let fail =
        |p: &Path, e: std::io::Error| format!("history: cannot write `{}`: {e}", p.display());
    std::fs::create_dir_all(out).map_err(|e| fail(out, e))?;
    let probe = out.join(".svmconf-write-probe");
    std::fs::write(&probe, b"").map_err(|e| fail(out, e))?;
    let _ = std::fs::remove_file(&probe);
    let kcidb = serde_json::to_string_pretty(kcidb)
        .map_err(|e| format!("history: cannot encode kcidb.json: {e}"))?;
    let mut files: Vec<(PathBuf, &str)> = vec![
        (PathBuf::from("report.html"), html),
        (PathBuf::from("kcidb.json"), kcidb.as_str()),
    ];
    files.extend(otava.iter().map(|(p, s)| (p.clone(), s.as_str())));
    let mut written = Vec::new();
    for (rel, text) in files {
        let path = out.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| fail(parent, e))?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(|e| fail(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| fail(&path, e))?;
        if written.len() < 2 || path.ends_with("otava.yaml") {
            written.push(path);
        }
    }
    Ok(written)
}
