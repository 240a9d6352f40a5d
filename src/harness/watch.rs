//! What the runner watches around each case besides the case itself: the kernel log, the
//! kernel's taint, and the expectations file's word on the case.

use crate::harness::expectations::{Expectations, Expected, ExpectedKind};
use crate::observe::kmsg::attribute::Charge;
use crate::observe::kmsg::{self, AllowList, KernelLog, Span};
use crate::observe::taint::{self, Taint, TaintSource};
use crate::results::{CaseRecord, Observer, Status};

use std::path::PathBuf;

use super::cli::{self, Options};
use super::{Plan, SetupError};

/// What run.json and stderr say when cases that share this process run while the kernel log is
/// watched: a line could not be told from another case's by the process that logged it, so
/// each case's attempts run alone.
pub const ONE_AT_A_TIME: &str = "cases run one at a time while the kernel log is watched: they \
     share this process (--isolate none), so a kernel log line could not be charged to the case \
     that caused it by its pid; --isolate process lets them run side by side";

/// The most kernel log lines a record keeps: flagged lines first, then the rest in order.
pub const KERNEL_LOG_LINES: usize = 200;

impl Expected {
    pub fn is_fail(&self) -> bool {
        self.kind == ExpectedKind::Fail
    }

    /// The reason a skip-listed case is not run.
    pub fn skip_reason(&self) -> Option<String> {
        (self.kind == ExpectedKind::Skip)
            .then(|| format!("skipped by the expectations file: {}", self.reason))
    }
}

/// Everything watched, opened once per run.
#[derive(Default)]
pub struct Observers {
    /// fixtures/expectations/<profile>.yaml, where there is one.
    pub expectations: Option<Expectations>,
    pub kernel_log: Option<KernelLog>,
    /// fixtures/kernel-log.yaml: lines that are not a defect of the system under test.
    pub allow: Option<AllowList>,
    pub taint: Option<TaintSource>,
}

/// What was read when a case began.
pub struct Watch {
    span: Option<Span>,
    taint: Option<Taint>,
}

impl Observers {
    pub fn expected(&self, case: &str) -> Option<&Expected> {
        self.expectations.as_ref()?.lookup(case)
    }

    pub fn apply_expectation(&self, record: &mut CaseRecord) {
        if let Some(e) = &self.expectations {
            e.apply(record);
        }
    }

    pub fn begin(&self, case: &str) -> Watch {
        Watch {
            span: self.kernel_log.as_ref().map(|k| k.begin(case)),
            taint: self.taint.as_ref().and_then(|t| t.read().ok()),
        }
    }

    /// Says that the case watched by `watch` runs in process `pid`.
    pub fn claim(&self, watch: &Watch, pid: u32) {
        if let (Some(log), Some(span)) = (&self.kernel_log, &watch.span) {
            log.claim(span, pid);
        }
    }

    /// Adds the kernel's evidence to `record`: its log lines, flagged, and the taint it gained,
    /// either of which turns a pass into dmesg-warn and a failure into dmesg-fail. Returns why
    /// the run must stop, if it must.
    pub fn end(&self, watch: Watch, record: &mut CaseRecord) -> Option<String> {
        if let (Some(log), Some(span)) = (&self.kernel_log, watch.span) {
            let mut records = Vec::new();
            let mut shared = Vec::new();
            for (r, charge) in log.end_attributed(span, record.allocations.clone()) {
                match charge {
                    Charge::Mine => records.push(r),
                    Charge::Theirs(_) => {}
                    Charge::Unattributed { candidates } => {
                        shared.push((r.seq, candidates));
                        records.push(r);
                    }
                }
            }
            let empty = AllowList::empty();
            let mut c = kmsg::classify(&records, self.allow.as_ref().unwrap_or(&empty));
            for line in &mut c.lines {
                if let Some((_, candidates)) = shared.iter().find(|(seq, _)| *seq == line.seq) {
                    line.attribution = Some(unattributed_note(&candidates[1..]));
                }
            }
            if c.flagged() {
                let what = c
                    .named
                    .first()
                    .map(|n| format!("logged a {n}"))
                    .unwrap_or_else(|| "logged a warning".into());
                let unattributed = c
                    .lines
                    .iter()
                    .filter(|l| l.flag.is_some())
                    .all(|l| l.attribution.is_some());
                let what = if unattributed {
                    format!("{what} that names no case running then (not attributed)")
                } else {
                    what
                };
                kernel_finding(record, &what);
            }
            let (mut flagged, rest): (Vec<_>, Vec<_>) =
                c.lines.into_iter().partition(|l| l.flag.is_some());
            flagged.extend(rest);
            flagged.truncate(KERNEL_LOG_LINES);
            record.kernel_log = flagged;
        }
        let (Some(source), Some(before)) = (&self.taint, watch.taint) else {
            return None;
        };
        let after = source.read().ok()?;
        let change = taint::change(before, after)?;
        let stop = change.bad.then(|| {
            format!(
                "the kernel gained taint {} ({})",
                change.gained.join(", "),
                source.path().display()
            )
        });
        if change.bad {
            kernel_finding(
                record,
                &format!("gained taint {}", change.gained.join(", ")),
            );
        }
        record.taint = Some(change);
        stop
    }

    /// What run.json says of the kernel log at the end: gaps, markers not written.
    pub fn late_notes(&self) -> Vec<Observer> {
        self.kernel_log
            .iter()
            .flat_map(|k| k.notes())
            .map(|detail| Observer {
                name: "kernel_log".into(),
                available: true,
                detail,
            })
            .collect()
    }
}

/// What a line charged to several cases says of the others: unattributed lines are kept by
/// every candidate and count against each, so a warning no case can be cleared of is never
/// lost; the note tells the reader the case may be innocent.
fn unattributed_note(others: &[String]) -> String {
    format!(
        "not attributed: logged while {} ran too, and it names none of them by pid or address",
        others.join(", ")
    )
}

/// The kernel complained while the case ran (`what`: "logged a WARNING", "gained taint W"):
/// the status says so, and a pass says why it is no longer one.
fn kernel_finding(record: &mut CaseRecord, what: &str) {
    if record.status == Status::Pass {
        record.reason = Some(format!("passed, but the kernel {what} while it ran"));
    }
    record.status = record.status.with_kernel_finding();
}

/// Opens what the runner watches beside the cases: the kernel log (with its allow-list) and
/// the taint, by default on GPUs only. Says what it could not open, and why, once.
pub(super) fn open(
    options: &Options,
    hardware: bool,
    plan: &mut Plan,
) -> Result<(Observers, Vec<Observer>), SetupError> {
    let mut notes = Vec::new();
    let mut watched = Observers::default();
    let kmsg = match &options.kmsg {
        Some(p) => Some(p.clone()),
        None if hardware => Some(PathBuf::from(cli::DEV_KMSG)),
        None => None,
    };
    match kmsg {
        None => notes.push(Observer {
            name: "kernel_log".into(),
            available: false,
            detail: "not watched: the reference device's migrations do not happen in the \
                     kernel (--kmsg FILE watches a file of kmsg records)"
                .into(),
        }),
        Some(path) => match kmsg::open(Some(&path)) {
            Ok(log) => {
                let allow = crate::fixtures::load_with(
                    &super::fixtures_root(options),
                    crate::fixtures::KERNEL_LOG_FILE,
                    AllowList::parse,
                )?;
                plan.fixtures.push(allow.digest());
                notes.push(Observer {
                    name: "kernel_log".into(),
                    available: true,
                    detail: log.describe(),
                });
                watched.allow = Some(allow.value);
                watched.kernel_log = Some(log);
            }
            Err(e) => {
                let detail = format!("{e}; no case has kernel log evidence");
                say!("svmconf: kernel log: {detail}");
                notes.push(Observer {
                    name: "kernel_log".into(),
                    available: false,
                    detail,
                })
            }
        },
    }
    let tainted = match &options.tainted {
        Some(p) => Some(p.clone()),
        None if hardware => Some(PathBuf::from(cli::PROC_TAINTED)),
        None => None,
    };
    match tainted.map(|p| crate::observe::taint::TaintSource::new(&p)) {
        None => notes.push(Observer {
            name: "taint".into(),
            available: false,
            detail: "not watched on the reference device (--tainted FILE watches a file)".into(),
        }),
        Some(source) => match source.read() {
            Ok(t) => {
                notes.push(Observer {
                    name: "taint".into(),
                    available: true,
                    detail: format!("{} was {t} at the start", source.path().display()),
                });
                watched.taint = Some(source);
            }
            Err(e) => {
                let detail = format!("{e}; no case is checked for taint");
                say!("svmconf: taint: {detail}");
                notes.push(Observer {
                    name: "taint".into(),
                    available: false,
                    detail,
                })
            }
        },
    }
    Ok((watched, notes))
}
