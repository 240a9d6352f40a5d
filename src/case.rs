//! What a case body receives and returns.
//!
//! A case is a plain function of a [`Ctx`]: it does one thing to memory, checks the result and
//! returns. It never knows the backend; it asks the device what it can observe and says which
//! evidence it used. The runner owns everything around it (device, journal, timing policy).

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use serde::Serialize;

use crate::device::kernels::Launch;
use crate::device::{
    AllocKind, Buf, Destructive, Device, DeviceError, Location, MigrationEvent, Span, Trigger,
    PAGE_SIZE,
};
use crate::fixtures::params::Param;
use crate::model::owners::{allocation_seed, Owners};
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

/// One allocation of a case: its ordinal among the case's allocations (0 for the first), the
/// process it was made in (0 for the case's own, see [`Ctx::in_process`]), its buffer, and the
/// seed of every pattern written to or checked in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allocation {
    pub ordinal: u32,
    pub process: u32,
    pub buf: u32,
    pub seed: u64,
}

/// The allocations of a case, shared by the contexts of its other processes so that ordinals
/// are the case's, not a process's.
#[derive(Debug, Default)]
struct Allocations {
    list: Vec<Allocation>,
    /// Processes numbered so far, the case's own (0) not counted.
    processes: u32,
    /// The next ordinal: inherited entries take none.
    ordinals: u32,
}

impl Allocations {
    /// The allocation `buf` of `process` is, made known at its first use when the case
    /// allocated it past [`Ctx::alloc`]. The latest entry wins: a device may reuse a freed id.
    fn of(&mut self, case_seed: u64, process: u32, buf: Buf) -> Allocation {
        let known = self
            .list
            .iter()
            .rev()
            .find(|a| a.process == process && a.buf == buf.id);
        match known {
            Some(a) => *a,
            None => self.add(case_seed, process, buf),
        }
    }

    fn add(&mut self, case_seed: u64, process: u32, buf: Buf) -> Allocation {
        let ordinal = self.ordinals;
        self.ordinals += 1;
        let a = Allocation {
            ordinal,
            process,
            buf: buf.id,
            seed: allocation_seed(case_seed, ordinal),
        };
        self.list.push(a);
        a
    }
}

/// Everything a case body may use.
pub struct Ctx<'a> {
    pub dev: &'a mut dyn Device,
    pub profile: &'a Profile,
    /// This case's seed: the run's seed mixed with the case name, so cases are independent.
    /// Each allocation's patterns use a seed of its own derived from it ([`Ctx::seed_of`]).
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
    allocations: Rc<RefCell<Allocations>>,
    /// Which of the case's processes `dev` is: 0 for the case's own.
    process: u32,
    /// The allocations made through [`Ctx::alloc`] whose address the device knows.
    pub(crate) placed: Vec<crate::model::memory::Allocation>,
    /// The parameters the body declares ([`Ctx::declaring`]); `None` reads any unchecked.
    declared: Option<&'static [Param]>,
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
            allocations: Rc::default(),
            process: 0,
            placed: Vec::new(),
            declared: None,
        }
    }

    /// Holds [`Ctx::param`] to the parameters the body declares: reading another is a defect
    /// of the suite, and a value is checked as the plan checked it.
    pub fn declaring(mut self, params: &'static [Param]) -> Ctx<'a> {
        self.declared = Some(params);
        self
    }

    /// A context for another process of this case (`dev`, from `spawn_process`): its
    /// allocations continue the case's ordinals, so that none shares a pattern with another.
    pub fn in_process<'b>(&self, dev: &'b mut dyn Device) -> Ctx<'b>
    where
        'a: 'b,
    {
        let process = {
            let mut table = self.allocations.borrow_mut();
            table.processes += 1;
            table.processes
        };
        self.beside(dev, process)
    }

    /// A context for a forked child of this context's process (`dev`, from `fork`): the
    /// allocations it inherits keep their ordinals and patterns; new ones continue the case's.
    pub fn forked<'b>(&self, dev: &'b mut dyn Device) -> Ctx<'b>
    where
        'a: 'b,
    {
        let process = {
            let mut table = self.allocations.borrow_mut();
            table.processes += 1;
            let process = table.processes;
            let inherited: Vec<Allocation> = table
                .list
                .iter()
                .filter(|a| a.process == self.process)
                .map(|a| Allocation { process, ..*a })
                .collect();
            table.list.extend(inherited);
            process
        };
        self.beside(dev, process)
    }

    fn beside<'b>(&self, dev: &'b mut dyn Device, process: u32) -> Ctx<'b>
    where
        'a: 'b,
    {
        Ctx {
            dev,
            profile: self.profile,
            seed: self.seed,
            size: self.size,
            kind: self.kind,
            params: self.params,
            repeat: self.repeat,
            destructive: None,
            metrics: Vec::new(),
            evidence: Vec::new(),
            allocations: Rc::clone(&self.allocations),
            process,
            placed: Vec::new(),
            declared: self.declared,
        }
    }

    /// The case's allocations so far, in ordinal order (an inherited one once per process).
    pub fn allocations(&self) -> Vec<Allocation> {
        self.allocations.borrow().list.clone()
    }

    /// The seed of `buf`'s patterns: its allocation's own, from the case's seed and the
    /// allocation's ordinal. Launches built by a case take it from here.
    pub fn seed_of(&self, buf: Buf) -> u64 {
        self.allocations
            .borrow_mut()
            .of(self.seed, self.process, buf)
            .seed
    }

    /// Whose data a bad page may hold: this case's allocations, and the run's other cases'.
    fn owners(&self) -> Owners {
        let table = self.allocations.borrow();
        let own = table.list.iter().map(|a| (a.ordinal, a.seed));
        Owners::for_case(self.seed, own)
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

    /// Takes where the case's allocations landed, leaving it empty.
    pub fn take_placed(&mut self) -> Vec<crate::model::memory::Allocation> {
        std::mem::take(&mut self.placed)
    }

    /// A typed parameter from `with:`, or the default when absent.
    /// Only what the body declares may be read once it is declared ([`Ctx::declaring`]).
    pub fn param<T: serde::de::DeserializeOwned>(&self, key: &str, default: T) -> Result<T, Stop> {
        let declared = match self.declared {
            None => None,
            Some(list) => Some(list.iter().find(|p| p.name == key).ok_or_else(|| {
                Stop::fail(format!(
                    "the body read parameter `{key}`, which its `bodies!` entry does not \
                     declare: a defect of the suite, not of the device"
                ))
            })?),
        };
        match self.params.get(key) {
            None => Ok(default),
            Some(v) => {
                if let Some(p) = declared {
                    p.check(v, self.size)
                        .map_err(|e| Stop::fail(format!("fixtures: {e}")))?;
                }
                crate::util::yaml::from_value(v.clone())
                    .map_err(|e| Stop::fail(format!("fixtures: parameter `{key}`: {e}")))
            }
        }
    }

    /// Generation `generation` of `buf`'s pattern.
    pub fn pattern(&self, buf: Buf, generation: u32) -> Pattern {
        Pattern::new(self.seed_of(buf), generation)
    }

    /// Allocates, gives the allocation the next ordinal of the case (its pattern seed), and
    /// remembers where it landed where the device can tell.
    pub fn alloc(&mut self, kind: AllocKind, len: u64) -> Result<Buf, Stop> {
        let buf = self
            .dev
            .alloc(kind, len)
            .map_err(|e| Stop::fail(format!("allocating {len} bytes of {kind} memory: {e}")))?;
        self.allocations
            .borrow_mut()
            .add(self.seed, self.process, buf);
        if let Some(address) = self.dev.address(buf) {
            self.placed.push(crate::model::memory::Allocation {
                buf: buf.id,
                kind,
                len,
                address,
            });
        }
        Ok(buf)
    }

    /// Checks `words` of `buf`'s `span` against `generation`, tracing foreign pages to the
    /// case's and the run's allocations.
    fn check(
        &self,
        buf: Buf,
        span: Span,
        generation: u32,
        words: &[u32],
    ) -> Result<(), Box<crate::model::pattern::Mismatch>> {
        let pattern = self.pattern(buf, generation);
        if pattern.check(span.first_word(), words).is_ok() {
            return Ok(());
        }
        pattern.check_among(span.first_word(), words, &self.owners())
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

    /// Times the migrations `step` causes, with the case's repetitions: `reset` (untimed)
    /// before every run, warm-ups dropped. Each sample is the migration alone: the device's
    /// migration clock across the step where it has one ([`Device::migration_time`]), else
    /// the step's time less the same step again on the data it left resident. After every run,
    /// warm-ups included, the pages of `lands` must be where it says (residency, else migration
    /// events, else VRAM in use): a run that moved nothing fails the case, however good its
    /// figure. `what` names the step in evidence and failures.
    pub fn timed_migration(
        &mut self,
        what: &str,
        lands: Lands,
        reset: impl FnMut(&mut dyn Device) -> crate::device::Result<()>,
        step: impl FnMut(&mut dyn Device) -> crate::device::Result<Duration>,
    ) -> Result<Timed, Stop> {
        let check = move |dev: &mut dyn Device, vram| landed(dev, lands, vram).map(|l| l.source);
        let reset = departed(what, lands, reset);
        self.timed_checked(what, reset, step, check, Sample::Migration)
    }

    /// Times `step` as [`Ctx::timed`] does, each sample the step's own time, and checks after
    /// every run, as [`Ctx::timed_migration`] does, that the pages of `lands` are where it says.
    pub fn timed_landing(
        &mut self,
        what: &str,
        lands: Lands,
        reset: impl FnMut(&mut dyn Device) -> crate::device::Result<()>,
        step: impl FnMut(&mut dyn Device) -> crate::device::Result<Duration>,
    ) -> Result<Timed, Stop> {
        let check = move |dev: &mut dyn Device, vram| landed(dev, lands, vram).map(|l| l.source);
        self.timed_checked(what, reset, step, check, Sample::Step)
    }

    /// The repetitions of [`Ctx::timed_migration`] with any `check` of the step's effect (it
    /// gets VRAM in use from before the step, and says what it saw or what is wrong), and
    /// `sample` choosing what each sample is.
    pub fn timed_checked<E: Into<Stop>>(
        &mut self,
        what: &str,
        mut reset: impl FnMut(&mut dyn Device) -> Result<(), E>,
        mut step: impl FnMut(&mut dyn Device) -> crate::device::Result<Duration>,
        mut check: impl FnMut(&mut dyn Device, Option<u64>) -> Result<EvidenceSource, String>,
        sample: Sample,
    ) -> Result<Timed, Stop> {
        let dev = &mut *self.dev;
        let cell = std::cell::RefCell::new(dev);
        let mut run = 0u32;
        let mut seen = (MigrationClock::Step, EvidenceSource::DataOnly);
        let mut unresolved = None;
        let samples = crate::model::timing::measure(
            self.repeat,
            || reset(&mut **cell.borrow_mut()).map_err(Into::into),
            || {
                run += 1;
                let mut guard = cell.borrow_mut();
                let (took, how) = migration_of(&mut **guard, &mut step, sample, |dev, vram| {
                    check(dev, vram)
                        .map_err(|e| Stop::fail(format!("{what}, timed run {run}: {e}")))
                })?;
                seen = how;
                if let Some(why) = took.unresolved {
                    unresolved.get_or_insert(format!("{what}, timed run {run}: {why}"));
                }
                Ok(took.samples.first().copied().unwrap_or_default())
            },
        )?;
        self.note(format!(
            "{what}: {run} runs, warm-ups included, each checked ({}); timed by {}",
            describe_evidence(seen.1),
            seen.0.describe()
        ));
        // A series with one unresolved run has no figure: the runs left would be the slower
        // ones, and their figure too low.
        Ok(match unresolved {
            Some(why) => Timed {
                samples: Vec::new(),
                unresolved: Some(why),
            },
            None => Timed {
                samples,
                unresolved: None,
            },
        })
    }

    /// The migrations of one `step`, timed as [`Ctx::timed_migration`] times each run and
    /// checked as it checks them: a first, cold migration.
    pub fn time_one_migration(
        &mut self,
        what: &str,
        lands: Lands,
        mut step: impl FnMut(&mut dyn Device) -> crate::device::Result<Duration>,
    ) -> Result<Timed, Stop> {
        let (took, (clock, evidence)) =
            migration_of(&mut *self.dev, &mut step, Sample::Migration, |dev, vram| {
                landed(dev, lands, vram)
                    .map(|l| l.source)
                    .map_err(|e| Stop::fail(format!("{what}: {e}")))
            })?;
        let time = match (&took.unresolved, took.samples.first()) {
            (None, Some(d)) => format!("migrated in {d:?}"),
            _ => "not timed".to_string(),
        };
        self.note(format!(
            "{what}: every page of {} in {} ({}), {time} (timed by {})",
            lands.span,
            lands.to,
            describe_evidence(evidence),
            clock.describe()
        ));
        Ok(Timed {
            unresolved: took.unresolved.map(|why| format!("{what}: {why}")),
            ..took
        })
    }

    /// Records a migration bandwidth of `bytes` per sample: under the link's peak (a faster
    /// figure is a measurement error) and above the slowest plausible figure of the profile
    /// (`limits.slowest`; a slower one fails as too slow), for a migration of `bytes` taking
    /// `faults` faults. A migration whose time was not resolved ([`Timed::unresolved`]) gets
    /// no figure, and evidence says why.
    pub fn migration_metric(
        &mut self,
        name: &str,
        bytes: u64,
        faults: u64,
        timed: &Timed,
    ) -> CaseResult {
        if let Some(why) = &timed.unresolved {
            self.note(format!("{name}: no figure: {why}"));
            return Ok(());
        }
        let limits = &self.profile.limits;
        let mut metric = Metric::bandwidth(name, bytes, &timed.samples).with_ceiling(
            limits.link_peak_gbps,
            format!("the peak of {}", limits.link),
        );
        match self.slowest_s(bytes, faults) {
            Some((longest, what)) => {
                metric = metric.with_floor(bytes as f64 / longest / 1e9, what);
            }
            None => self.note(format!(
                "{name}: profile {} states no slowest plausible figure (limits.slowest): only a \
                 baseline can say it is too slow",
                self.profile.name
            )),
        }
        self.metric(metric)
    }

    /// The longest `bytes` may plausibly take to migrate with `faults` faults on this profile
    /// (`limits.slowest`), with what that bound is made of; `None` where the profile states
    /// none.
    pub fn slowest_s(&self, bytes: u64, faults: u64) -> Option<(f64, String)> {
        let limits = &self.profile.limits;
        let slowest = limits.slowest?;
        let migrations = migrations_at_most(&self.profile.policy.chunk_sizes, bytes);
        let longest = slowest.longest_s(bytes, migrations, faults, limits.link_peak_gbps);
        Some((
            longest,
            format!(
                "{bytes} bytes in at most {migrations} migrations of {} µs{} at {} of {} \
                 (limits.slowest)",
                slowest.migration_us,
                if faults > 0 {
                    format!(" and {faults} faults of {} µs", slowest.fault_us)
                } else {
                    String::new()
                },
                slowest.link_fraction,
                limits.link
            ),
        ))
    }

    // --- data: fill and verify on either side ----------------------------------------------

    /// GPU writes generation `generation` over the span (a GPU first touch where not resident).
    pub fn gpu_fill(&mut self, buf: Buf, span: Span, generation: u32) -> Result<Duration, Stop> {
        let run = self.dev.launch(&Launch::Fill {
            buf,
            span,
            seed: self.seed_of(buf),
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
    ///
    /// The kernel counts into a result buffer of the suite's own, which migrates like any
    /// other: two u64 it writes (bad words, lowest bad index), then two canaries it never
    /// touches. A result no kernel could write (a count above the span's words, a lowest index
    /// outside it, a count without an index, a canary changed) means the check's own buffer
    /// came back wrong; that is said as such, with what the CPU reads of the data, never as a
    /// count of bad words.
    pub fn gpu_verify(&mut self, buf: Buf, span: Span, generation: u32) -> Result<Duration, Stop> {
        // The suite's own allocation, not the case's: it takes no ordinal, and fault plans
        // leave it alone unless they ask for helpers.
        let result = self
            .dev
            .alloc(AllocKind::Managed, RESULT_WORDS as u64 * 4)?;
        self.dev.mark_helper(result);
        let init = result_init();
        self.dev.cpu_write(result, result.all(), &init)?;
        let run = self.dev.launch(&Launch::Verify {
            buf,
            span,
            seed: self.seed_of(buf),
            generation,
            result,
        })?;
        let mut out = [0u32; RESULT_WORDS];
        self.dev.cpu_read(result, result.all(), &mut out)?;
        self.dev.free(result)?;
        let bad = out[0] as u64 | (out[1] as u64) << 32;
        let lowest = out[2] as u64 | (out[3] as u64) << 32;
        let words = span.first_word()..span.first_word() + span.words();
        let broken = if out[4..] != init[4..] {
            Some(format!(
                "its canaries read {:#x?}, written {:#x?}",
                &out[4..],
                &init[4..]
            ))
        } else if bad > span.words() {
            Some(format!(
                "a count of {bad} bad words in a span of {}",
                span.words()
            ))
        } else if (bad == 0) != (lowest == u64::MAX) {
            Some(format!(
                "a count of {bad} with lowest bad index {lowest:#x}"
            ))
        } else if bad != 0 && !words.contains(&lowest) {
            Some(format!(
                "lowest bad index {lowest:#x} outside the span's words {words:#x?}"
            ))
        } else {
            None
        };
        if bad == 0 && broken.is_none() {
            return Ok(run.elapsed);
        }
        let data = self.read_words(buf, span)?;
        let address = self.dev.address(buf);
        let checked = self
            .check(buf, span, generation, &data)
            .map_err(|m| m.at(address));
        let what = format!(
            "GPU verify of {span} in allocation {} (generation {generation})",
            buf.id
        );
        let helper = |why: String| {
            format!(
                "the check's own result buffer (allocation {}) came back wrong, a migration \
                 defect of the suite's helper page and no count of bad words: {why}; read back \
                 {out:#x?}",
                result.id
            )
        };
        Err(Stop::fail(match (broken, checked) {
            // The first line is the diagnosis: it is what reports show of a failure. Data the
            // CPU reads wrong leads, whatever became of the helper: it is the defect's own
            // signature, the helper's page one more victim of it.
            (None, Err(m)) => format!("{what}: {m}"),
            (Some(why), Err(m)) => format!("{what}: {m}\nAnd {}", helper(why)),
            (None, Ok(())) => format!(
                "{what}: the GPU counted {bad} bad words but the CPU read back correct data: \
                 the GPU saw different bytes than the CPU"
            ),
            (Some(why), Ok(())) => format!(
                "{what}: {}. The CPU reads the data under test correct",
                helper(why)
            ),
        }))
    }

    /// CPU writes generation `generation` over the span.
    pub fn cpu_fill(&mut self, buf: Buf, span: Span, generation: u32) -> Result<Duration, Stop> {
        let mut words = vec![0u32; span.words() as usize];
        self.pattern(buf, generation)
            .fill(span.first_word(), &mut words);
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
        let want = self.pattern(buf, generation).word(page * PAGE_SIZE / 4);
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
        if let Err(m) = self.check(buf, span, generation, &words) {
            let m = m.at(self.dev.address(buf));
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
        let lands = Lands {
            buf,
            span,
            to: want,
        };
        let found = landed(&mut *self.dev, lands, since.vram_used)
            .map_err(|e| Stop::fail(format!("{why}: {e}")))?;
        self.note(match found.source {
            EvidenceSource::Residency => {
                format!(
                    "{why}: all {} pages in {want} (verified by residency)",
                    found.pages
                )
            }
            EvidenceSource::Events => format!(
                "{why}: {} pages to {want} (verified by migration events{})",
                found.pages,
                if found.counted > 0 {
                    format!(
                        ", {} pages by count only: the evidence names no address",
                        found.counted
                    )
                } else {
                    String::new()
                }
            ),
            EvidenceSource::VramUsage => format!(
                "{why}: VRAM in use moved by {} bytes (verified by VRAM usage)",
                found.vram_delta
            ),
            EvidenceSource::DataOnly => {
                format!("{why}: residency not observable here; only the data was checked")
            }
        });
        Ok(found.source)
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

/// Words of the verify kernel's result buffer: the two u64 it writes, two canaries after them.
const RESULT_WORDS: usize = 8;

/// What the verify kernel's result buffer holds before the launch: no bad word, the lowest bad
/// index at its maximum, and the canaries.
fn result_init() -> [u32; RESULT_WORDS] {
    [
        0,
        0,
        u32::MAX,
        u32::MAX,
        0x5356_4d43,
        0x414e_4152,
        0x5945_5321,
        0x0bad_c0de,
    ]
}

/// Where the pages of a timed migration must be after every run of it.
#[derive(Clone, Copy, Debug)]
pub struct Lands {
    pub buf: Buf,
    pub span: Span,
    pub to: Location,
}

/// What each sample of a timed, checked step is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sample {
    /// The migration alone: the device's migration clock, else the step less the same step on
    /// the data it left resident.
    Migration,
    /// The migration alone where the device's migration clock says, else the step's own time
    /// (a step that cannot be repeated on resident data: an eviction).
    MigrationOrStep,
    /// The step's own time.
    Step,
}

/// Which clock timed a sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MigrationClock {
    /// The device's migration clock ([`Device::migration_time`]).
    Device,
    /// The step's time less the same step on the data it left resident.
    Difference,
    /// The step's own time.
    Step,
}

impl MigrationClock {
    fn describe(self) -> &'static str {
        match self {
            MigrationClock::Device => "the device's migration clock: migrations alone",
            MigrationClock::Difference => {
                "the step less the same step on resident data: migrations and their faults"
            }
            MigrationClock::Step => "the step's own time",
        }
    }
}

fn describe_evidence(e: EvidenceSource) -> &'static str {
    match e {
        EvidenceSource::Residency => "by residency",
        EvidenceSource::Events => "by migration events",
        EvidenceSource::VramUsage => "by VRAM in use",
        EvidenceSource::DataOnly => "where the pages are is not observable here",
    }
}

type Landing = (MigrationClock, EvidenceSource);

/// Runs `step` once and returns its sample (what `sample` says it is), with the clock that
/// gave it and the evidence `check` found of the step's effect. Before the step, pending
/// migration events are drained and VRAM in use read, for `check`.
fn migration_of(
    dev: &mut dyn Device,
    step: &mut dyn FnMut(&mut dyn Device) -> crate::device::Result<Duration>,
    sample: Sample,
    check: impl FnOnce(&mut dyn Device, Option<u64>) -> Result<EvidenceSource, Stop>,
) -> Result<(Timed, Landing), Stop> {
    let _ = dev.take_events();
    let vram_before = dev.vram_used();
    let clock_before = dev.migration_time();
    let took = step(dev)?;
    let clock_after = dev.migration_time();
    let evidence = check(dev, vram_before)?;
    let (took, clock) = match (sample, clock_before.zip(clock_after)) {
        (Sample::Step, _) => (Timed::of(took), MigrationClock::Step),
        (_, Some((a, b))) => (Timed::of(b.saturating_sub(a)), MigrationClock::Device),
        (Sample::MigrationOrStep, None) => (Timed::of(took), MigrationClock::Step),
        (Sample::Migration, None) => {
            let resident = step(dev)?;
            (difference(took, resident), MigrationClock::Difference)
        }
    };
    Ok((took, (clock, evidence)))
}

/// The samples of a timed migration, or why it has no figure.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timed {
    pub samples: Vec<Duration>,
    /// Why the migration has no figure: timed as the step less the same step on resident data,
    /// a run where the two were not apart.
    pub unresolved: Option<String>,
}

impl Timed {
    /// One sample.
    pub fn of(sample: Duration) -> Timed {
        Timed {
            samples: vec![sample],
            unresolved: None,
        }
    }

    /// These samples and `more`'s; unresolved where either is.
    pub fn and(mut self, more: Timed) -> Timed {
        self.samples.extend(more.samples);
        self.unresolved = self.unresolved.or(more.unresolved);
        self
    }
}

/// The migration in a step that took `took`, less the same step on the data it left resident,
/// `resident`. Where the step on resident data took as long or longer, the migration is within
/// the step's own variation at this size, and any figure from it would be noise (a zero or a
/// few nanoseconds, an absurd bandwidth): unresolved, and said so.
fn difference(took: Duration, resident: Duration) -> Timed {
    match took.checked_sub(resident) {
        Some(d) if !d.is_zero() => Timed::of(d),
        _ => Timed {
            samples: Vec::new(),
            unresolved: Some(format!(
                "the step took {took:?} and the same step on resident data {resident:?}: the \
                 migration is within the step's own variation at this size"
            )),
        },
    }
}

/// `reset` followed by a check that it did its job: where the device reports residency, no
/// page of `lands` may already be where the timed step is to take it, or the step would time a
/// migration of nothing.
fn departed<'r>(
    what: &'r str,
    lands: Lands,
    mut reset: impl FnMut(&mut dyn Device) -> crate::device::Result<()> + 'r,
) -> impl FnMut(&mut dyn Device) -> Result<(), Stop> + 'r {
    move |dev| {
        reset(dev)?;
        if let Some(res) = dev.residency(lands.buf, lands.span) {
            let already = res?.iter().filter(|l| **l == lands.to).count();
            if already > 0 {
                return Err(Stop::fail(format!(
                    "{what}: before a timed run, the untimed step that moves the pages away left \
                     {already} pages of {} in {} already (residency): it migrated nothing",
                    lands.span, lands.to
                )));
            }
        }
        Ok(())
    }
}

/// What [`landed`] found: by which evidence, over how many pages, how many of them were counted
/// from events that name no allocation, and how far VRAM in use moved where that was the
/// evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Landed {
    pub source: EvidenceSource,
    pub pages: u64,
    pub counted: u64,
    pub vram_delta: i128,
}

/// Whether every page of `lands` is where it says, by the best evidence the device has:
/// residency, else migration events since the last drain, else VRAM in use against
/// `vram_before`; [`EvidenceSource::DataOnly`] when none is observable. The error says how many
/// pages are not, and the first of them where residency tells.
pub fn landed(
    dev: &mut dyn Device,
    lands: Lands,
    vram_before: Option<u64>,
) -> Result<Landed, String> {
    let Lands { buf, span, to } = lands;
    let pages = span.page_range().count() as u64;
    let found = |source| Landed {
        source,
        pages,
        counted: 0,
        vram_delta: 0,
    };
    if let Some(res) = dev.residency(buf, span) {
        let at = res.map_err(|e| format!("reading residency: {e}"))?;
        let first = span.page_range().start;
        let mut wrong = at.iter().enumerate().filter(|(_, l)| **l != to);
        if let Some((i, _)) = wrong.next() {
            return Err(format!(
                "{} of {} pages of {span} are not in {to} (residency); first: page {}",
                1 + wrong.count(),
                at.len(),
                first + i as u64
            ));
        }
        return Ok(found(EvidenceSource::Residency));
    }
    if let Some(events) = dev.take_events() {
        let Coverage {
            moved,
            counted,
            unattributed,
        } = coverage(&events, buf, span, to);
        if moved + counted < pages {
            return Err(format!(
                "migration events moved {} of {pages} pages of {span} to {to}{}",
                moved + counted,
                if unattributed > 0 {
                    format!(
                        ", counting {counted} of {unattributed} pages whose events named no \
                         allocation"
                    )
                } else {
                    String::new()
                }
            ));
        }
        return Ok(Landed {
            counted,
            ..found(EvidenceSource::Events)
        });
    }
    if let (Some(before), Some(now)) = (vram_before, dev.vram_used()) {
        let delta = now as i128 - before as i128;
        let moved = match to {
            Location::Vram => delta >= span.len as i128,
            Location::System => delta <= -(span.len as i128),
        };
        if !moved {
            return Err(format!(
                "VRAM in use moved by {delta} bytes, expected at least {} towards {to}",
                span.len
            ));
        }
        return Ok(Landed {
            vram_delta: delta,
            ..found(EvidenceSource::VramUsage)
        });
    }
    Ok(found(EvidenceSource::DataOnly))
}

/// The most migrations (ranges) `bytes` can take under the policy's chunk sizes (largest
/// first): ranges of the middle size where the largest cannot align, and the smallest size at
/// both ends; never more than one per page.
pub fn migrations_at_most(chunk_sizes: &[u64], bytes: u64) -> u64 {
    let smallest = chunk_sizes.last().copied().unwrap_or(PAGE_SIZE).max(1);
    let middle = chunk_sizes.get(1).copied().unwrap_or(smallest).max(1);
    let pages = bytes.div_ceil(PAGE_SIZE).max(1);
    (bytes.div_ceil(middle) + 2 * (middle / smallest)).min(pages)
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
    use crate::model::owners::allocation_seed;

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
    fn a_migration_the_step_on_resident_data_matches_is_unresolved_not_a_zero() {
        let us = Duration::from_micros;
        assert_eq!(difference(us(700), us(100)), Timed::of(us(600)));
        for (took, resident) in [(us(100), us(100)), (us(100), us(120))] {
            let t = difference(took, resident);
            assert!(t.samples.is_empty(), "{t:?}");
            let why = t.unresolved.unwrap_or_default();
            assert!(
                why.contains("within the step's own variation"),
                "{took:?} less {resident:?}: {why}"
            );
        }
        // One unresolved run leaves the whole series without a figure.
        let both = Timed::of(us(5)).and(difference(us(1), us(2)));
        assert_eq!(both.samples, vec![us(5)]);
        assert!(both.unresolved.is_some());
    }

    /// A prefetch round trip on a device without a migration clock: a figure where the steps
    /// on resident data are quicker, and where they are not, none, with evidence saying why.
    #[test]
    fn a_device_without_a_migration_clock_times_by_difference_or_says_it_cannot() {
        use crate::device::sim::testutil::{self, NoClock};
        for resident_slower in [false, true] {
            let profile = testutil::profile();
            let mut dev = NoClock::new(testutil::device(), resident_slower);
            let params = Params::Null;
            let repeat = Repeat { warmup: 1, reps: 3 };
            let mut ctx = Ctx::new(
                &mut dev,
                &profile,
                1,
                1 << 20,
                AllocKind::Managed,
                &params,
                repeat,
                None,
            );
            let buf = ctx.alloc(AllocKind::Managed, 1 << 20).unwrap();
            let all = buf.all();
            ctx.cpu_fill(buf, all, 1).unwrap();
            let lands = Lands {
                buf,
                span: all,
                to: Location::Vram,
            };
            let timed = ctx
                .timed_migration(
                    "prefetch to VRAM",
                    lands,
                    |dev| dev.prefetch(buf, all, Location::System).map(drop),
                    |dev| dev.prefetch(buf, all, Location::Vram),
                )
                .unwrap();
            ctx.migration_metric("prefetch_to_vram_gbps", all.len, 0, &timed)
                .unwrap();
            let (metrics, evidence) = ctx.take_record();
            let evidence = evidence.join("\n");
            assert!(
                evidence.contains("timed by the step less the same step on resident data"),
                "{evidence}"
            );
            if resident_slower {
                assert!(metrics.is_empty(), "{metrics:?}");
                assert!(
                    evidence.contains(
                        "prefetch_to_vram_gbps: no figure: prefetch to VRAM, timed run 1: the \
                         step took"
                    ) && evidence.contains("within the step's own variation at this size"),
                    "{evidence}"
                );
            } else {
                assert_eq!(metrics.len(), 1, "{evidence}");
                assert_eq!(metrics[0].samples.len(), 3, "{:?}", metrics[0]);
                assert!(!evidence.contains("no figure"), "{evidence}");
            }
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

    /// A sim device, its profile and parameters, and a case context of seed `seed` over it.
    fn with_ctx(seed: u64, body: impl FnOnce(&mut Ctx)) {
        use crate::device::sim::testutil;
        let profile = testutil::profile();
        let mut dev = testutil::device();
        let params = crate::util::yaml::empty_map();
        let mut ctx = Ctx::new(
            &mut dev,
            &profile,
            seed,
            4 * PAGE_SIZE,
            AllocKind::Managed,
            &params,
            Repeat::default(),
            None,
        );
        body(&mut ctx);
    }

    /// A body reads only what it declares, and a value as the plan checks it.
    #[test]
    fn a_parameter_the_body_does_not_declare_is_a_defect_of_the_suite() {
        use crate::device::sim::testutil;
        const DECLARED: &[Param] = &[Param::whole("rounds", 1, 8, "rounds")];
        let profile = testutil::profile();
        let mut dev = testutil::device();
        let params: Params =
            crate::util::yaml::parse("{rounds: 9, other: 1}", std::path::Path::new("with.yaml"))
                .unwrap();
        let ctx = Ctx::new(
            &mut dev,
            &profile,
            1,
            4 * PAGE_SIZE,
            AllocKind::Managed,
            &params,
            Repeat::default(),
            None,
        );
        assert_eq!(
            ctx.param("other", 0u32).ok(),
            Some(1),
            "undeclared: unchecked"
        );
        let ctx = ctx.declaring(DECLARED);
        let said = |r: Result<u32, Stop>| r.map_err(|e| e.to_string()).unwrap_err();
        assert!(
            said(ctx.param("other", 0)).contains("does not declare: a defect of the suite"),
            "{}",
            said(ctx.param("other", 0))
        );
        assert!(
            said(ctx.param("rounds", 1)).contains("`rounds` is a whole number from 1 to 8"),
            "{}",
            said(ctx.param("rounds", 1))
        );
    }

    /// Each allocation fills and verifies with its own seed, on the CPU and on the GPU alike,
    /// so another allocation's words fail the check; the table lists them by ordinal.
    #[test]
    fn each_allocation_has_its_own_pattern_on_cpu_and_gpu() {
        with_ctx(7, |ctx| {
            let a = ctx.alloc(AllocKind::Managed, 4 * PAGE_SIZE).unwrap();
            let b = ctx.alloc(AllocKind::Managed, 4 * PAGE_SIZE).unwrap();
            ctx.gpu_fill(a, a.all(), 1).unwrap();
            ctx.cpu_fill(b, b.all(), 1).unwrap();
            ctx.cpu_verify(a, a.all(), 1).unwrap();
            ctx.gpu_verify(b, b.all(), 1).unwrap();
            let table = ctx.allocations();
            let ordinals: Vec<(u32, u32)> = table.iter().map(|t| (t.ordinal, t.buf)).collect();
            assert_eq!(ordinals, [(0, a.id), (1, b.id)]);
            assert_eq!(table[1].seed, allocation_seed(7, 1));
            assert_ne!(table[0].seed, table[1].seed);
            // b's words in a: not a's pattern.
            let mut words = vec![0u32; b.all().words() as usize];
            ctx.dev.cpu_read(b, b.all(), &mut words).unwrap();
            ctx.dev.cpu_write(a, a.all(), &words).unwrap();
            assert!(ctx.cpu_verify(a, a.all(), 1).is_err());
        });
    }

    /// One allocation's page written into another's, as a device page reused without being
    /// copied into would hold it: the GPU verify names the allocation, the page and the
    /// generation, and counts it as a leak.
    #[test]
    fn another_allocations_page_is_named_in_the_failure() {
        with_ctx(7, |ctx| {
            let a = ctx.alloc(AllocKind::Managed, 4 * PAGE_SIZE).unwrap();
            let b = ctx.alloc(AllocKind::Managed, 4 * PAGE_SIZE).unwrap();
            ctx.gpu_fill_into_vram(a, a.all(), 2).unwrap();
            ctx.gpu_fill(b, b.all(), 5).unwrap();
            let mut page = vec![0u32; (PAGE_SIZE / 4) as usize];
            ctx.dev.cpu_read(b, Span::pages(3, 1), &mut page).unwrap();
            ctx.dev.cpu_write(a, Span::pages(1, 1), &page).unwrap();
            let Err(Stop::Fail(why)) = ctx.gpu_verify(a, a.all(), 2) else {
                panic!("another allocation's page passed the verify");
            };
            assert!(
                why.contains("1 foreign (another allocation's data: a leak between users"),
                "{why}"
            );
            assert!(
                why.contains(
                    "page 1 (0x7f0000001000): foreign (holds page 3 of the 2nd allocation of this case, \
                     generation 5"
                ),
                "{why}"
            );
        });
    }

    /// A case's other processes continue its ordinals; a forked child keeps the ordinals (and
    /// patterns) of what it inherits.
    #[test]
    fn other_processes_continue_the_ordinals_and_a_fork_inherits_them() {
        with_ctx(9, |ctx| {
            let a = ctx.alloc(AllocKind::Managed, PAGE_SIZE).unwrap();
            ctx.cpu_fill(a, a.all(), 1).unwrap();
            let mut child = ctx.dev.fork().unwrap();
            let mut forked = ctx.forked(&mut *child);
            forked.cpu_verify(a, a.all(), 1).unwrap();
            assert_eq!(forked.seed_of(a), ctx.seed_of(a));
            let mut other = ctx.dev.spawn_process().unwrap();
            let mut beside = ctx.in_process(&mut *other);
            let c = beside.alloc(AllocKind::Managed, PAGE_SIZE).unwrap();
            let table = ctx.allocations();
            let got: Vec<(u32, u32)> = table.iter().map(|t| (t.ordinal, t.process)).collect();
            assert_eq!(got, [(0, 0), (0, 1), (1, 2)]);
            assert_eq!(beside.seed_of(c), allocation_seed(9, 1));
        });
    }

    /// The run's other cases are candidates too: a page of another case's allocation is named
    /// by the case's name.
    #[test]
    fn another_cases_page_is_named_by_its_case() {
        crate::model::owners::set_run_cases([
            ("here::case".to_string(), 7),
            ("there::case".to_string(), 8),
        ]);
        with_ctx(7, |ctx| {
            let a = ctx.alloc(AllocKind::Managed, 4 * PAGE_SIZE).unwrap();
            ctx.cpu_fill(a, a.all(), 1).unwrap();
            let mut page = vec![0u32; (PAGE_SIZE / 4) as usize];
            Pattern::new(allocation_seed(8, 3), 4).fill(2 * PAGE_SIZE / 4, &mut page);
            ctx.dev.cpu_write(a, Span::pages(0, 1), &page).unwrap();
            let Err(Stop::Fail(why)) = ctx.cpu_verify(a, a.all(), 1) else {
                panic!("another case's page passed the verify");
            };
            let line =
                ": foreign (holds page 2 of the 4th allocation of case there::case, generation 4";
            assert!(why.contains(line), "{why}");
        });
        crate::model::owners::set_run_cases([]);
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

    #[test]
    fn the_most_migrations_take_misalignment_into_account_and_never_exceed_the_pages() {
        let chunks = [2 << 20, 64 << 10, 4 << 10];
        assert_eq!(migrations_at_most(&chunks, 4096), 1);
        assert_eq!(migrations_at_most(&chunks, 64 << 10), 16);
        assert_eq!(migrations_at_most(&chunks, 2 << 20), 32 + 32);
        assert_eq!(migrations_at_most(&[4096], 8192), 2);
    }

    #[test]
    fn a_level_above_its_slack_is_a_leak_and_within_it_is_not() {
        use crate::device::{leaks, Level};
        let before = [
            Level::vram(1 << 20, 4096),
            Level::count("live", 0, "allocations"),
        ];
        let ok = [
            Level::vram((1 << 20) + 4096, 4096),
            Level::count("live", 0, "allocations"),
        ];
        assert!(leaks(&before, &ok).is_empty());
        let bad = [
            Level::vram((1 << 20) + 8192, 4096),
            Level::count("live", 1, "allocations"),
        ];
        let found = leaks(&before, &bad);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("VRAM in use is 1056768 bytes, 8192 more"),
            "{found:?}"
        );
        assert!(
            found[1].contains("live is 1 allocations, 1 more"),
            "{found:?}"
        );
    }
}
