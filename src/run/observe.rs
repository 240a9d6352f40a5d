//! What the runner watches around each case besides the case itself: the kernel log, the
//! kernel's taint, and the expectations file's word on the case.

use crate::results::{CaseRecord, Observer};

/// The expectations file's entry for a case.
pub struct Expected {
    kind: &'static str,
    reason: String,
}

impl Expected {
    pub fn is_fail(&self) -> bool {
        self.kind == "fail"
    }

    /// The reason a skip-listed case is not run.
    pub fn skip_reason(&self) -> Option<String> {
        (self.kind == "skip").then(|| format!("skipped by the expectations file: {}", self.reason))
    }
}

/// Everything watched, opened once per run.
#[derive(Default)]
pub struct Observers {
    /// What run.json says of each source.
    pub notes: Vec<Observer>,
}

/// What was read when a case began.
pub struct Watch;

impl Observers {
    pub fn expected(&self, _case: &str) -> Option<Expected> {
        None
    }

    pub fn apply_expectation(&self, _record: &mut CaseRecord) {}

    pub fn begin(&self, _case: &str) -> Watch {
        Watch
    }

    /// Adds the kernel's evidence to `record`; returns why the run must stop, if it must.
    pub fn end(&self, _watch: Watch, _record: &mut CaseRecord) -> Option<String> {
        None
    }
}
