//! `svmconf planted-matrix`: the bugs planted in the virtual SVM GPU (lab/vm/vsvm,
//! `vsvm.planted`), each turned on in turn in the running kernel, against the cases that
//! `fixtures/planted/vsvm.yaml` says catch it. A bug is caught when every case it names fails
//! with the diagnosis the file gives, and the driver says the bug acted (QUERY's
//! `planted_fired`): a bug that never acted was not reached, which is a hole of its own.
//!
//! First every named case runs with no bug on and must pass; then, per bug, its bit is set,
//! its cases run (each in a child process, one at a time, on the vsvm backend), and the bit is
//! cleared again, whatever happened. Runs in the VM lab, where the driver is:
//! `lab/vm/run --vsvm -- svmconf planted-matrix --out /out/planted`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use serde::Deserialize;

use super::kill_matrix::{run_self, short, Outcome};
use crate::device::vsvm::planted::{Planted, PARAM};
use crate::device::vsvm::uapi;
use crate::harness::SetupError;
use crate::results::{CaseRecord, Status};

const USAGE: &str = "svmconf planted-matrix [--plan FILE] [--param FILE] [--device NODE] \
                     [--out DIR] [-- RUN OPTIONS...]";

/// The file: the bugs, in the order they are turned on. A bug that leaves the device changed
/// (VRAM leaked or quarantined) comes after those that need all of it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlantFile {
    pub bugs: Vec<Bug>,
}

/// One planted bug and the cases that must catch it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bug {
    /// A short name, for the table.
    pub name: String,
    /// Its bit number in `vsvm.planted` (`DRM_VSVM_PLANT_*` is `1 << bit`).
    pub bit: u32,
    /// What goes wrong in the driver.
    pub description: String,
    pub catches: Vec<Catch>,
}

/// A case that must catch a bug, and the words its failure must hold.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catch {
    /// The full name of one case.
    pub case: String,
    /// Text the failure must hold, in its reason or in a kernel log line the run attributed
    /// to the case: what was found wrong, so that a case that fails for another reason does
    /// not count.
    pub diagnosis: String,
}

impl PlantFile {
    /// Parses and checks `text` of `file`: known bits, each once, cases named in full.
    pub fn parse(text: &str, file: &Path) -> Result<PlantFile, String> {
        let plan: PlantFile = crate::util::yaml::parse(text, file).map_err(|e| e.to_string())?;
        let shown = file.display();
        if plan.bugs.is_empty() {
            return Err(format!("{shown}: no bug"));
        }
        let mut bits = BTreeSet::new();
        for bug in &plan.bugs {
            if bug.bit >= uapi::plant::COUNT {
                return Err(format!(
                    "{shown}: bug `{}`: bit {} is not one of the driver's (0..{})",
                    bug.name,
                    bug.bit,
                    uapi::plant::COUNT
                ));
            }
            if !bits.insert(bug.bit) {
                return Err(format!(
                    "{shown}: bug `{}`: bit {} twice",
                    bug.name, bug.bit
                ));
            }
            if bug.catches.is_empty() {
                return Err(format!("{shown}: bug `{}` names no case", bug.name));
            }
            for c in &bug.catches {
                if c.case.split("::").count() < 3 || c.diagnosis.trim().is_empty() {
                    return Err(format!(
                        "{shown}: bug `{}`: `{}` must be a case's full name with a diagnosis",
                        bug.name, c.case
                    ));
                }
            }
        }
        Ok(plan)
    }

    /// Every case the file names, once.
    fn cases(&self) -> BTreeSet<&str> {
        self.bugs
            .iter()
            .flat_map(|b| b.catches.iter().map(|c| c.case.as_str()))
            .collect()
    }
}

/// Options of the command.
struct Args {
    plan: Option<PathBuf>,
    param: PathBuf,
    device: Option<String>,
    out: Option<PathBuf>,
    extra: Vec<String>,
}

fn parse(args: &[String]) -> Result<Args, SetupError> {
    let mut a = Args {
        plan: None,
        param: PathBuf::from(PARAM),
        device: None,
        out: None,
        extra: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| {
            it.next().cloned().ok_or_else(|| {
                SetupError::Plan(format!(
                    "planted-matrix: {flag} needs a value; usage: {USAGE}"
                ))
            })
        };
        match arg.as_str() {
            "--plan" => a.plan = Some(value("--plan")?.into()),
            "--param" => a.param = value("--param")?.into(),
            "--device" => a.device = Some(value("--device")?),
            "--out" => a.out = Some(value("--out")?.into()),
            "--" => {
                a.extra = it.cloned().collect();
                break;
            }
            other => {
                return Err(SetupError::Plan(format!(
                    "planted-matrix: unknown argument `{other}`; usage: {USAGE}"
                )))
            }
        }
    }
    Ok(a)
}

/// How one case fared under one bug.
#[derive(Debug, PartialEq)]
struct Seen {
    case: String,
    status: Status,
    reason: String,
    /// The reason holds the diagnosis the file asks for.
    diagnosed: bool,
}

/// One bug's row: what each case did, how often the bug acted, what is wrong.
struct Row {
    seen: Vec<Seen>,
    fired: u64,
    problems: Vec<String>,
}

/// The verdict on `bug` from its cases' records and how often it acted.
fn judge(bug: &Bug, records: &[Option<CaseRecord>], fired: u64) -> Row {
    let mut problems = Vec::new();
    if fired == 0 {
        problems.push(format!(
            "the bug never acted (planted_fired[{}] did not grow): its cases do not reach it",
            bug.bit
        ));
    }
    let mut seen = Vec::new();
    for (c, record) in bug.catches.iter().zip(records) {
        let Some(r) = record else {
            problems.push(format!("`{}` is not a case of the suite", c.case));
            continue;
        };
        let reason = r.reason.clone().unwrap_or_default();
        let diagnosed = reason.contains(&c.diagnosis)
            || r.kernel_log.iter().any(|l| l.text.contains(&c.diagnosis));
        if !r.status.is_bad_outcome() {
            problems.push(format!(
                "`{}` ended {}: it did not catch the bug",
                c.case, r.status
            ));
        } else if !diagnosed {
            problems.push(format!(
                "`{}` ended {} without the diagnosis `{}`: {}",
                c.case,
                r.status,
                c.diagnosis,
                short(Some(&reason))
            ));
        }
        seen.push(Seen {
            case: c.case.clone(),
            status: r.status,
            reason,
            diagnosed,
        });
    }
    Row {
        seen,
        fired,
        problems,
    }
}

/// One case alone on the vsvm backend, its run folder in `dir`: its record, None when no case
/// has that name.
fn run_case(
    case: &str,
    dir: &Path,
    device: Option<&str>,
    extra: &[String],
) -> Result<Option<CaseRecord>, SetupError> {
    let exe = std::env::current_exe()
        .map_err(|e| SetupError::Plan(format!("planted-matrix: finding this binary: {e}")))?;
    let results = dir.join("results");
    let mut cmd = Command::new(exe);
    cmd.args([
        "--backend",
        "vsvm",
        "--allow-destructive",
        "--test-threads",
        "1",
        "-q",
    ])
    .arg("--results")
    .arg(&results)
    .args(device.map(|d| ["--device", d]).into_iter().flatten())
    .args(extra)
    .args([case, "--exact"])
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let Outcome { records, .. } = run_self(cmd, &results, &format!(" of `{case}`"))
        .map_err(|e| SetupError::Plan(format!("planted-matrix: {e}")))?;
    Ok(records.into_iter().find(|r| r.case == case))
}

/// Clears every bit when dropped: no bug outlives the command, whatever stopped it.
struct Cleared<'a>(&'a Planted);

impl Drop for Cleared<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.0.set(0) {
            eprintln!("svmconf: planted-matrix: {e}");
        }
    }
}

/// `svmconf planted-matrix ...`.
pub fn planted_matrix(args: &[String]) -> Result<ExitCode, SetupError> {
    let args = parse(args)?;
    let file = match &args.plan {
        Some(f) => f.clone(),
        None => super::default_fixture("planted-matrix", "planted/vsvm.yaml")?,
    };
    let text = crate::util::yaml::read_text(&file, &file)
        .map_err(|e| SetupError::Plan(format!("planted-matrix: {e}")))?;
    let plan = PlantFile::parse(&text, &file)
        .map_err(|e| SetupError::Plan(format!("planted-matrix: {e}")))?;
    let planted = Planted::open(&args.param, args.device.as_deref())
        .map_err(|e| SetupError::Plan(format!("planted-matrix: {e}")))?;
    let on = planted
        .get()
        .map_err(|e| SetupError::Plan(format!("planted-matrix: {e}")))?;
    if on != 0 {
        return Err(SetupError::Plan(format!(
            "planted-matrix: {} is {on:#x}: the device already has bugs on, so a clean run \
             would mean nothing (boot without vsvm.planted)",
            args.param.display()
        )));
    }
    let out = match &args.out {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("svmconf-planted-{}", std::process::id())),
    };
    std::fs::create_dir_all(&out).map_err(|e| {
        SetupError::Plan(format!(
            "planted-matrix: {}: {}",
            out.display(),
            crate::util::text::io_reason(&e)
        ))
    })?;
    let result = matrix(&args, &plan, &planted, &out);
    if args.out.is_none() {
        let _ = std::fs::remove_dir_all(&out);
    }
    result
}

fn matrix(
    args: &Args,
    plan: &PlantFile,
    planted: &Planted,
    out: &Path,
) -> Result<ExitCode, SetupError> {
    let fail = |e: String| SetupError::Plan(format!("planted-matrix: {e}"));
    let _cleared = Cleared(planted);
    let device = args.device.as_deref();
    println!(
        "planted matrix: {} bugs of the virtual SVM GPU at {}, each against its cases",
        plan.bugs.len(),
        planted.node().display()
    );
    // The clean run: every named case passes with no bug on.
    let cases = plan.cases();
    let mut noisy = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let dir = out.join(format!("clean/{i:02}"));
        match run_case(case, &dir, device, &args.extra)? {
            Some(r) if r.status == Status::Pass => {}
            Some(r) => noisy.push(format!(
                "{case} {}: {}",
                r.status,
                short(r.reason.as_deref())
            )),
            None => noisy.push(format!("{case}: not a case of the suite")),
        }
    }
    if !noisy.is_empty() {
        for n in &noisy {
            println!("  clean run: {n}");
        }
        return Err(fail(format!(
            "{} of the named cases do not pass with no bug on: nothing they catch would mean \
             anything",
            noisy.len()
        )));
    }
    println!("clean run: {} cases, all pass\n", cases.len());

    let mut report = String::from(
        "# Planted bugs of the virtual SVM GPU, against the cases that name them\n\n\
         | bug | bit | acted | case | status | diagnosis found | reason |\n\
         | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    let mut holes = 0;
    for (b, bug) in plan.bugs.iter().enumerate() {
        let before = planted.query().map_err(fail)?;
        planted.set(1 << bug.bit).map_err(fail)?;
        let mut records = Vec::new();
        for (i, c) in bug.catches.iter().enumerate() {
            let dir = out.join(format!("{b:02}-{}/{i:02}", bug.name));
            records.push(run_case(&c.case, &dir, device, &args.extra)?);
        }
        planted.set(0).map_err(fail)?;
        let after = planted.query().map_err(fail)?;
        let i = bug.bit as usize;
        let fired = after.planted_fired[i] - before.planted_fired[i];
        let row = judge(bug, &records, fired);
        let caught = row.problems.is_empty();
        holes += usize::from(!caught);
        println!(
            "{} {} (bit {}, {:#04x}): {} ({} times it acted; VRAM in use {} -> {} bytes)",
            if caught { "CAUGHT" } else { "HOLE  " },
            bug.name,
            bug.bit,
            1u32 << bug.bit,
            bug.description,
            row.fired,
            before.vram_used,
            after.vram_used
        );
        for s in &row.seen {
            println!("    {}  {}  {}", s.case, s.status, short(Some(&s.reason)));
            report.push_str(&format!(
                "| `{}` | {} | {} | `{}` | {} | {} | {} |\n",
                bug.name,
                bug.bit,
                row.fired,
                s.case,
                s.status,
                if s.diagnosed { "yes" } else { "no" },
                short(Some(&s.reason)).replace('|', "\\|")
            ));
        }
        for p in &row.problems {
            println!("    problem: {p}");
        }
    }
    report.push_str(&format!(
        "\n{} of {} bugs caught by every case that names them, with its diagnosis.\n",
        plan.bugs.len() - holes,
        plan.bugs.len()
    ));
    let md = out.join("planted-matrix.md");
    std::fs::write(&md, report).map_err(|e| {
        fail(format!(
            "{}: {}",
            md.display(),
            crate::util::text::io_reason(&e)
        ))
    })?;
    println!(
        "\nplanted matrix: {} of {} bugs caught as {} says",
        plan.bugs.len() - holes,
        plan.bugs.len(),
        args.plan
            .as_deref()
            .map_or("fixtures/planted/vsvm.yaml".into(), |p| p
                .display()
                .to_string())
    );
    Ok(if holes == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bug() -> Bug {
        Bug {
            name: "corrupt".into(),
            bit: 0,
            description: "d".into(),
            catches: vec![
                Catch {
                    case: "cpu_fault::read::managed::2MiB".into(),
                    diagnosis: "page 0 word 0".into(),
                },
                Catch {
                    case: "prefetch::round_trip::managed::2MiB".into(),
                    diagnosis: "CPU verify".into(),
                },
            ],
        }
    }

    fn record(case: &str, status: Status, reason: &str) -> Option<CaseRecord> {
        Some(CaseRecord {
            case: case.into(),
            status,
            reason: Some(reason.into()),
            ..CaseRecord::blank()
        })
    }

    fn svmconf_log_line(text: &str) -> crate::observe::kmsg::LogLine {
        serde_json::from_value(serde_json::json!({
            "level": 3, "seq": 1, "ts_us": 1, "text": text
        }))
        .expect("a kernel log line")
    }

    #[test]
    fn a_bug_is_caught_only_by_every_case_with_its_diagnosis_and_only_when_it_acted() {
        let b = bug();
        let both = [
            record(&b.catches[0].case, Status::Fail, "page 0 word 0: 0xfffe"),
            record(
                &b.catches[1].case,
                Status::Fail,
                "CPU verify after prefetch",
            ),
        ];
        assert!(judge(&b, &both, 3).problems.is_empty());

        let never = judge(&b, &both, 0);
        assert_eq!(never.problems.len(), 1);
        assert!(
            never.problems[0].contains("never acted"),
            "{:?}",
            never.problems
        );

        let passed = [
            both[0].clone(),
            record(&b.catches[1].case, Status::Pass, ""),
        ];
        let row = judge(&b, &passed, 3);
        assert!(row.problems[0].contains("ended pass"), "{:?}", row.problems);

        let other_reason = [
            both[0].clone(),
            record(&b.catches[1].case, Status::Fail, "timed out somewhere else"),
        ];
        let row = judge(&b, &other_reason, 3);
        assert!(
            row.problems[0].contains("without the diagnosis `CPU verify`"),
            "{:?}",
            row.problems
        );
        assert!(!row.seen[1].diagnosed);

        // The kernel's own words count: a driver error the run attributed to the case.
        let mut logged = record(&b.catches[1].case, Status::DmesgFail, "out of VRAM");
        if let Some(r) = logged.as_mut() {
            r.kernel_log
                .push(svmconf_log_line("CPU verify: from the kernel log"));
        }
        let row = judge(&b, &[both[0].clone(), logged], 3);
        assert!(row.problems.is_empty(), "{:?}", row.problems);

        let missing = [both[0].clone(), None];
        let row = judge(&b, &missing, 3);
        assert!(row.problems[0].contains("not a case"), "{:?}", row.problems);
    }

    #[test]
    fn the_file_is_checked_before_anything_runs() {
        let f = Path::new("vsvm.yaml");
        let ok = "bugs:\n  - name: a\n    bit: 0\n    description: d\n    catches:\n      - {case: a::b::c, diagnosis: x}\n";
        assert_eq!(PlantFile::parse(ok, f).unwrap().bugs.len(), 1);
        let cases = [
            (ok.replace("bit: 0", "bit: 7"), "bit 7 is not one of the driver's"),
            (ok.replace("a::b::c", "a::b"), "must be a case's full name"),
            (ok.replace("diagnosis: x", "diagnosis: ' '"), "with a diagnosis"),
            (
                format!("{ok}  - name: b\n    bit: 0\n    description: d\n    catches: [{{case: a::b::c, diagnosis: x}}]\n"),
                "bit 0 twice",
            ),
            ("bugs: []\n".to_string(), "no bug"),
            (ok.replace("name: a", "nmae: a"), "vsvm.yaml"),
        ];
        for (text, want) in cases {
            let e = PlantFile::parse(&text, f).err().unwrap_or_default();
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn the_catalogue_parses_and_names_every_planted_bug() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/planted/vsvm.yaml");
        let text = std::fs::read_to_string(&file).expect("fixtures/planted/vsvm.yaml");
        let plan = PlantFile::parse(&text, &file).unwrap_or_else(|e| panic!("{e}"));
        let bits: BTreeSet<u32> = plan.bugs.iter().map(|b| b.bit).collect();
        assert_eq!(bits, (0..uapi::plant::COUNT).collect());
    }

    #[test]
    fn bad_arguments_and_a_machine_without_the_driver_are_named() {
        let e = parse(&["--bogus".into()]).err().unwrap().to_string();
        assert!(e.contains("unknown argument `--bogus`"), "{e}");
        let e = planted_matrix(&[
            "--param".into(),
            "/nonexistent/planted".into(),
            "--device".into(),
            "/nonexistent/renderD128".into(),
        ])
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("/nonexistent/renderD128"), "{e}");
    }
}
