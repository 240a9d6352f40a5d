//! What a case body receives and returns.
//!
//! A case is a plain function of a [`Ctx`]: it does one thing to memory, checks the result and
//! returns. It never knows the backend; it asks the device what it can observe and says which
//! evidence it used. The runner owns everything around it (device, journal, timing policy).

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::device::kernels::Launch;
use crate::device::{
    AllocKind, Buf, Destructive, Device, DeviceError, Location, MigrationEvent, Span, Trigger,
    PAGE_SIZE,
};
use crate::model::pattern::Pattern;
use crate::model::profile::Profile;
use crate::model::timing::{Metric, Repeat};

/// Why a case stopped before passing.
#[derive(Debug)]
pub enum Stop {
    Fail(String),
    Skip(String),
}

impl Stop {
    pub fn fail(msg: impl Into<String>) -> Stop {
        Stop::Fail(msg.into())
    }
    pub fn skip(reason: impl Into<String>) -> Stop {
        Stop::Skip(reason.into())
    }
}

impl From<DeviceError> for Stop {
    fn from(e: DeviceError) -> Stop {
        Stop::Fail(format!("device error: {e}"))
    }
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Fail(m) => write!(f, "fail: {m}"),
            Stop::Skip(r) => write!(f, "skip: {r}"),
        }
    }
}

pub type CaseResult = Result<(), Stop>;

/// Fails the case unless the condition holds; the message names the expression.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::case::Stop::Fail(format!(
                "{}: check `{}` failed", format!($($fmt)+), stringify!($cond)
            )));
        }
    };
}

/// Fails the case unless both sides are equal; the message prints both values.
#[macro_export]
macro_rules! check_eq {
    ($left:expr, $right:expr, $($fmt:tt)+) => {
        match (&$left, &$right) {
            (l, r) => if l != r {
                return Err($crate::case::Stop::Fail(format!(
                    "{}: expected `{}` == `{}`, got {:?} and {:?}",
                    format!($($fmt)+), stringify!($left), stringify!($right), l, r
                )));
            }
        }
    };
}

/// How a case knew that a migration happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvidenceSource {
    /// Per-page residency reported by the device.
    Residency,
    /// Migration events with their trigger.
    Events,
    /// VRAM in use went up or down by the expected amount.
    VramUsage,
    /// Nothing observable: only the data was checked.
    DataOnly,
}

/// A parameter set from `fixtures/cases.yaml`: the `with:` map, typed by each body.
pub type Params = crate::util::yaml::Value;

/// Everything a case body may use.
pub struct Ctx<'a> {
    pub dev: &'a mut dyn Device,
    pub profile: &'a Profile,
    /// This case's seed: the run's seed mixed with the case name, so cases are independent.
    pub seed: u64,
    /// The allocation size this instance runs with, in bytes.
    pub size: u64,
    /// The allocation kind this instance runs with.
    pub kind: AllocKind,
    /// The case's `with:` parameters from the fixtures.
    pub params: &'a Params,
    pub repeat: Repeat,
    /// Present only with `--allow-destructive`.
    pub destructive: Option<&'a Destructive>,
    pub(crate) metrics: Vec<Metric>,
    pub(crate) evidence: Vec<String>,
}

impl<'a> Ctx<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        dev: &'a mut dyn Device,
        profile: &'a Profile,
        seed: u64,
        size: u64,
        kind: AllocKind,
        params: &'a Params,
        repeat: Repeat,
        destructive: Option<&'a Destructive>,
    ) -> Ctx<'a> {
        Ctx {
            dev,
            profile,
            seed,
            size,
            kind,
            params,
            repeat,
            destructive,
            metrics: Vec::new(),
            evidence: Vec::new(),
        }
    }

    /// What the case found, in the journal and the report, whatever the verdict.
    pub fn note(&mut self, line: impl Into<String>) {
        self.evidence.push(line.into());
    }

    /// Records a metric; fails the case when it breaks a physical limit.
    pub fn metric(&mut self, metric: Metric) -> CaseResult {
        let verdict = metric.check_limit();
        self.metrics.push(metric);
        verdict.map_err(Stop::Fail)
    }

    pub fn metrics(&self) -> &[Metric] {
        &self.metrics
    }

    pub fn evidence(&self) -> &[String] {
        &self.evidence
    }

    /// Takes what the case recorded, leaving it empty.
    pub fn take_record(&mut self) -> (Vec<Metric>, Vec<String>) {
        (
            std::mem::take(&mut self.metrics),
            std::mem::take(&mut self.evidence),
        )
    }

    /// A typed parameter from `with:`, or the default when absent.
    pub fn param<T: serde::de::DeserializeOwned>(&self, key: &str, default: T) -> Result<T, Stop> {
        match self.params.get(key) {
            None => Ok(default),
            Some(v) => crate::util::yaml::from_value(v.clone())
                .map_err(|e| Stop::fail(format!("fixtures: parameter `{key}`: {e}"))),
        }
    }

    pub fn pattern(&self, generation: u32) -> Pattern {
        Pattern::new(self.seed, generation)
    }

    pub fn alloc(&mut self, kind: AllocKind, len: u64) -> Result<Buf, Stop> {
        self.dev
            .alloc(kind, len)
            .map_err(|e| Stop::fail(format!("allocating {len} bytes of {kind} memory: {e}")))
    }

    /// Times `step` with the case's repetitions: `reset` (untimed) before every run, warm-ups
    /// dropped. Both get the device, so a reset can undo what the step did.
    pub fn timed(
        &mut self,
        mut reset: impl FnMut(&mut dyn Device) -> crate::device::Result<()>,
        mut step: impl FnMut(&mut dyn Device) -> crate::device::Result<Duration>,
    ) -> Result<Vec<Duration>, Stop> {
        let dev = &mut *self.dev;
        let cell = std::cell::RefCell::new(dev);
        crate::model::timing::measure(
            self.repeat,
            || reset(&mut **cell.borrow_mut()),
            || step(&mut **cell.borrow_mut()),
        )
        .map_err(Stop::from)
    }

    // --- data: fill and verify on either side ----------------------------------------------

    /// GPU writes generation `generation` over the span (a GPU first touch where not resident).
    pub fn gpu_fill(&mut self, buf: Buf, span: Span, generation: u32) -> Result<Duration, Stop> {
        let run = self.dev.launch(&Launch::Fill {
            buf,
            span,
            seed: self.seed,
            generation,
        })?;
        Ok(run.elapsed)
    }

    /// GPU writes generation `generation` over the span, and the data ends in VRAM, checked
    /// with [`Ctx::expect_location`]. It gets there by the write's own faults where a device
    /// access migrates what it touches (`policy.gpu_fault_migrates`), and otherwise by a
    /// prefetch after the write, the only way such a device migrates: the cases that start
    /// from data in VRAM then run on both.
    pub fn gpu_fill_into_vram(
        &mut self,
        buf: Buf,
        span: Span,
        generation: u32,
    ) -> Result<(), Stop> {
        let before = self.observe();
        self.gpu_fill(buf, span, generation)?;
        let why = if self.profile.policy.gpu_fault_migrates {
            "GPU first touch"
        } else {
            self.dev.prefetch(buf, span, Location::Vram)?;
            "GPU write, then a prefetch (device accesses map pages in place here)"
        };
        self.expect_location(buf, span, Location::Vram, why, &before)?;
        Ok(())
    }

    /// GPU checks the span against `generation`. On a mismatch the span is read back by the CPU
    /// to diagnose it, and the case fails with the diagnosis.
    pub fn gpu_verify(&mut self, buf: Buf, span: Span, generation: u32) -> Result<Duration, Stop> {
        let result = self.alloc(AllocKind::Managed, 16)?;
        let init = [0u32, 0, u32::MAX, u32::MAX];
        self.dev.cpu_write(result, result.all(), &init)?;
        let run = self.dev.launch(&Launch::Verify {
            buf,
            span,
            seed: self.seed,
            generation,
            result,
        })?;
        let mut out = [0u32; 4];
        self.dev.cpu_read(result, result.all(), &mut out)?;
        self.dev.free(result)?;
        let bad = out[0] as u64 | (out[1] as u64) << 32;
        if bad != 0 {
            let words = self.read_words(buf, span)?;
            // The first line is the diagnosis: it is what reports show of a failure.
            let report = match self.pattern(generation).check(span.first_word(), &words) {
                Err(m) => m.to_string(),
                Ok(()) => format!(
                    "the GPU counted {bad} bad words but the CPU read back correct data: \
                     the GPU saw different bytes than the CPU"
                ),
            };
            return Err(Stop::fail(format!(
                "GPU verify of {span} in allocation {} (generation {generation}): {report}",
                buf.id
            )));
        }
        Ok(run.elapsed)
    }

    /// CPU writes generation `generation` over the span.
    pub fn cpu_fill(&mut self, buf: Buf, span: Span, generation: u32) -> Result<Duration, Stop> {
        let mut words = vec![0u32; span.words() as usize];
        self.pattern(generation).fill(span.first_word(), &mut words);
        Ok(self.dev.cpu_write(buf, span, &words)?)
    }

    /// CPU reads the first word of page `page`, one 4-byte load, and checks it against
    /// `generation`: the smallest CPU access, which faults in what the policy brings back for
    /// one page.
    pub fn cpu_read_first_word(
        &mut self,
        buf: Buf,
        page: u64,
        generation: u32,
    ) -> Result<(), Stop> {
        let mut word = [0u32; 1];
        self.dev
            .cpu_read(buf, Span::new(page * PAGE_SIZE, 4), &mut word)?;
        let want = self.pattern(generation).word(page * PAGE_SIZE / 4);
        if word[0] != want {
            return Err(Stop::fail(format!(
                "the word the CPU read from page {page} of allocation {} is {:#x}, expected \
                 {want:#x} (generation {generation})",
                buf.id, word[0]
            )));
        }
        Ok(())
    }

    /// CPU writes zeros over the span.
    pub fn cpu_zero(&mut self, buf: Buf, span: Span) -> Result<Duration, Stop> {
        Ok(self
            .dev
            .cpu_write(buf, span, &vec![0u32; span.words() as usize])?)
    }

    /// CPU reads the span and checks it against `generation`; a mismatch fails with diagnosis.
    pub fn cpu_verify(&mut self, buf: Buf, span: Span, generation: u32) -> Result<Duration, Stop> {
        let mut words = vec![0u32; span.words() as usize];
        let took = self.dev.cpu_read(buf, span, &mut words)?;
        if let Err(m) = self.pattern(generation).check(span.first_word(), &words) {
            return Err(Stop::fail(format!(
                "CPU verify of {span} in allocation {} (generation {generation}): {m}",
                buf.id
            )));
        }
        Ok(took)
    }

    fn read_words(&mut self, buf: Buf, span: Span) -> Result<Vec<u32>, Stop> {
        let mut words = vec![0u32; span.words() as usize];
        self.dev.cpu_read(buf, span, &mut words)?;
        Ok(words)
    }

    // --- where the pages are ---------------------------------------------------------------

    /// Checks that every page of the span is at `want`, with the best evidence this device has,
    /// and notes which evidence that was. `why` says what should have put them there.
    ///
    /// Residency is checked page by page. Without it, migration events since the snapshot
    /// `since` (from [`Ctx::observe`]) must cover the span. Without either, VRAM in use must have
    /// moved by at least the span since the snapshot. Otherwise only the
    /// data can be checked, and the note says so.
    pub fn expect_location(
        &mut self,
        buf: Buf,
        span: Span,
        want: Location,
        why: &str,
        since: &Observed,
    ) -> Result<EvidenceSource, Stop> {
        if let Some(res) = self.dev.residency(buf, span) {
            let pages = res?;
            let first = span.page_range().start;
            let wrong: Vec<u64> = pages
                .iter()
                .enumerate()
                .filter(|(_, loc)| **loc != want)
                .map(|(i, _)| first + i as u64)
                .collect();
            if !wrong.is_empty() {
                return Err(Stop::fail(format!(
                    "{why}: {} of {} pages of {span} are not in {want} (residency); first: page {}",
                    wrong.len(),
                    pages.len(),
                    wrong[0]
                )));
            }
            self.note(format!(
                "{why}: all {} pages in {want} (verified by residency)",
                pages.len()
            ));
            return Ok(EvidenceSource::Residency);
        }
        if let Some(events) = self.dev.take_events() {
            let want_pages = span.page_range().count() as u64;
            let Coverage {
                moved,
                counted,
                unattributed,
            } = coverage(&events, buf, span, want);
            if moved + counted < want_pages {
                return Err(Stop::fail(format!(
                    "{why}: migration events moved {} of {want_pages} pages of {span} to {want}{}",
                    moved + counted,
                    if unattributed > 0 {
                        format!(", counting {counted} of {unattributed} pages whose events named no allocation")
                    } else {
                        String::new()
                    }
                )));
            }
            self.note(format!(
                "{why}: {want_pages} pages to {want} (verified by migration events{})",
                if counted > 0 {
                    format!(", {counted} pages by count only: the evidence names no address")
                } else {
                    String::new()
                }
            ));
            return Ok(EvidenceSource::Events);
        }
        if let (Some(before), Some(now)) = (since.vram_used, self.dev.vram_used()) {
            let delta = now as i128 - before as i128;
            let ok = match want {
                Location::Vram => delta >= span.len as i128,
                Location::System => delta <= -(span.len as i128),
            };
            if !ok {
                return Err(Stop::fail(format!(
                    "{why}: VRAM in use moved by {delta} bytes, expected at least {} towards {want}",
                    span.len
                )));
            }
            self.note(format!(
                "{why}: VRAM in use moved by {delta} bytes (verified by VRAM usage)"
            ));
            return Ok(EvidenceSource::VramUsage);
        }
        self.note(format!(
            "{why}: residency not observable here; only the data was checked"
        ));
        Ok(EvidenceSource::DataOnly)
    }

    /// Snapshot of what can be observed now, for [`Ctx::expect_location`] later. Drains pending
    /// migration events so that only the step after it is counted.
    pub fn observe(&mut self) -> Observed {
        let drained = self.dev.take_events().unwrap_or_default();
        Observed {
            vram_used: self.dev.vram_used(),
            drained,
        }
    }

    /// Migration events since the last drain, or `None` when the device has none.
    pub fn events(&mut self) -> Option<Vec<MigrationEvent>> {
        self.dev.take_events()
    }

    /// Events of `trigger` for `buf`, in pages. Events that name no trigger count as the case's
    /// own: the case knows what it did.
    pub fn migrated_pages(
        events: &[MigrationEvent],
        buf: Buf,
        trigger: Trigger,
        to: Location,
    ) -> u64 {
        events
            .iter()
            .filter(|e| {
                e.buf == buf.id
                    && (e.trigger == trigger || e.trigger == Trigger::Unnamed)
                    && e.to == to
            })
            .map(|e| e.pages)
            .sum()
    }
}

/// What was observable before a step.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub vram_used: Option<u64>,
    drained: Vec<MigrationEvent>,
}

impl Observed {
    /// Events drained when the snapshot was taken (what happened before the step).
    pub fn before(&self) -> &[MigrationEvent] {
        &self.drained
    }
}

fn overlap_pages(e: &MigrationEvent, span: Span) -> u64 {
    let r = span.page_range();
    let start = e.first_page.max(r.start);
    let end = (e.first_page + e.pages).min(r.end);
    end.saturating_sub(start)
}

/// How far migration events cover a span: pages of the allocation moved to the place asked
/// about, and pages counted for it from events that name no allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Coverage {
    moved: u64,
    /// Unattributed pages counted, up to what `moved` lacks.
    counted: u64,
    unattributed: u64,
}

/// Pages that name no owner (the series' trace of copies to system memory) count for the
/// allocation asked about, since the case knows what it just did; never more than it lacks.
fn coverage(events: &[MigrationEvent], buf: Buf, span: Span, want: Location) -> Coverage {
    let moved: u64 = events
        .iter()
        .filter(|e| e.buf == buf.id && e.to == want)
        .map(|e| overlap_pages(e, span))
        .sum();
    let unattributed: u64 = events
        .iter()
        .filter(|e| e.buf == MigrationEvent::UNATTRIBUTED && e.to == want)
        .map(|e| e.pages)
        .sum();
    let want_pages = span.page_range().count() as u64;
    Coverage {
        moved,
        counted: want_pages.saturating_sub(moved).min(unattributed),
        unattributed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::PAGE_SIZE;

    fn event(buf: u32, first_page: u64, pages: u64, to: Location) -> MigrationEvent {
        MigrationEvent {
            buf,
            first_page,
            pages,
            from: Location::Vram,
            to,
            trigger: Trigger::Unnamed,
            at_ns: 0,
        }
    }

    #[test]
    fn unattributed_pages_fill_only_what_is_missing_and_only_toward_the_place_asked() {
        let buf = Buf {
            id: 1,
            kind: AllocKind::Malloc,
            len: 8 * PAGE_SIZE,
        };
        let sys = Location::System;
        let none = MigrationEvent::UNATTRIBUTED;
        let c = coverage(
            &[event(1, 0, 4, sys), event(none, 0, 16, sys)],
            buf,
            buf.all(),
            sys,
        );
        assert_eq!((c.moved, c.counted, c.unattributed), (4, 4, 16));
        // Too few unattributed pages: the span is not covered.
        let c = coverage(&[event(none, 0, 3, sys)], buf, buf.all(), sys);
        assert!(c.moved + c.counted < 8);
        // Pages toward VRAM, or another allocation's, do not count.
        let c = coverage(
            &[event(none, 0, 8, Location::Vram), event(2, 0, 8, sys)],
            buf,
            buf.all(),
            sys,
        );
        assert_eq!((c.moved, c.counted), (0, 0));
    }

    #[test]
    fn events_without_a_trigger_count_as_the_cases_own() {
        let buf = Buf {
            id: 1,
            kind: AllocKind::Managed,
            len: 4 * PAGE_SIZE,
        };
        let mut e = event(1, 0, 4, Location::Vram);
        assert_eq!(
            Ctx::migrated_pages(&[e], buf, Trigger::Prefetch, Location::Vram),
            4
        );
        e.trigger = Trigger::GpuFault;
        assert_eq!(
            Ctx::migrated_pages(&[e], buf, Trigger::Prefetch, Location::Vram),
            0
        );
    }
}
