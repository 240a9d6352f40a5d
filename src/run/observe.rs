//! What the runner watches around each case besides the case itself: the kernel log, the
//! kernel's taint, and the expectations file's word on the case.

use crate::expectations::{Expectations, Expected, ExpectedKind};
use crate::results::{CaseRecord, Observer};

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
    /// What run.json says of each source.
    pub notes: Vec<Observer>,
    /// fixtures/expectations/<profile>.yaml, where there is one.
    pub expectations: Option<Expectations>,
}

/// What was read when a case began.
pub struct Watch;

impl Observers {
    pub fn expected(&self, case: &str) -> Option<&Expected> {
        self.expectations.as_ref()?.lookup(case)
    }

    pub fn apply_expectation(&self, record: &mut CaseRecord) {
        if let Some(e) = &self.expectations {
            e.apply(record);
        }
    }

    pub fn begin(&self, _case: &str) -> Watch {
        Watch
    }

    /// Adds the kernel's evidence to `record`; returns why the run must stop, if it must.
    pub fn end(&self, _watch: Watch, _record: &mut CaseRecord) -> Option<String> {
        None
    }
}
