//! The seam between the harness and the backends, as deqp-runner's `TestCommand` is between its
//! runner and its test kinds: the harness opens a [`Backend`] once per run from the user's
//! [`Settings`], asks it what it is, and asks it for a fresh [`Device`] per case. Every backend
//! is a [`Kind`] in [`crate::device::registry::KINDS`]; nothing outside `device/` names one.

use std::path::{Path, PathBuf};

use super::{AllocKind, Device};
use crate::fixtures::{self, FixtureError, Loaded};
use crate::model::capability::{Capabilities, DeviceInfo, Need};
use crate::model::profile::Profile;

/// What the user asked of the device layer (the command line, a lab host file).
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// `--backend NAME`; `None` is `auto`: the first backend that finds its hardware here,
    /// else the reference device.
    pub backend: Option<String>,
    /// The fixtures folder profiles are loaded from.
    pub fixtures: PathBuf,
    /// `--profile NAME|FILE`; `None`: the backend's own default.
    pub profile: Option<String>,
    /// `--device`, as written; each backend that has devices to choose parses it.
    pub device: Option<String>,
    /// The run's seed.
    pub seed: u64,
    /// `--sim-break`, `--sim-faults`: the reference device broken on purpose. Refused by the
    /// backends whose device cannot be.
    pub sim_break: Option<String>,
    pub sim_faults: Option<PathBuf>,
    /// `--amdgpu-trace`: amdgpu's dynamic-debug trace as migration evidence.
    pub amdgpu_trace: bool,
    /// `--kmsg FILE`: where the kernel log is read (and where the sim's fault plans log).
    pub kmsg: Option<PathBuf>,
    /// `--place-at ADDR`: where each case's first host allocation goes, the rest after it.
    pub place_at: Option<u64>,
}

/// What opening a backend for a run can refuse: bad input, all reported before anything runs.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// A fixture (a profile) that cannot be loaded.
    #[error(transparent)]
    Fixtures(#[from] FixtureError),
    /// Anything else, as one sentence that names the flag and what to do.
    #[error("{0}")]
    Refused(String),
}

/// Why a case gets no device.
#[derive(Debug)]
pub enum OpenError {
    /// This backend has no device here (no GPU found): the case skips with the reason.
    Unavailable(String),
    /// The device could not be opened: the case fails with the message.
    Failed(String),
}

/// One backend opened for a run: what it is, and a device per case.
pub trait Backend: Send + Sync {
    /// `sim`, `hip`, `dmirror`: what `--backend` takes, and what run folders and repro lines say.
    fn name(&self) -> &'static str;

    /// The profile the run's cases are planned and judged with.
    fn profile(&self) -> &Loaded<Profile>;

    /// The device, for run.json and the console.
    fn info(&self) -> &DeviceInfo;

    /// One line for the start of the run about what was found, where there is more to say
    /// than [`DeviceInfo::name`].
    fn describe(&self) -> Option<String> {
        None
    }

    /// Whether the device is real (a GPU, a kernel driver): one device that every case shares
    /// (its VRAM in use, its evictions, its migrations), and a kernel whose log and taint are
    /// worth watching. The reference device is not: each case has a device of its own.
    fn hardware(&self) -> bool;

    /// Each case in a child process of its own unless `--isolate` says otherwise: where a case
    /// can hang or crash in a driver, the runner must outlive it.
    fn isolates_by_default(&self) -> bool {
        self.hardware()
    }

    /// Cases at a time unless `--test-threads` says otherwise; `None`: as many as CPUs.
    fn default_threads(&self) -> Option<usize> {
        self.hardware().then_some(1)
    }

    /// Why no case can run on this backend here (no GPU found): each skips with it.
    fn unavailable(&self) -> Option<&str> {
        None
    }

    /// Whether `--place-at` places allocations of `kind` on this backend: what decides whether
    /// a repro line carries the address one got.
    fn places(&self, _kind: AllocKind) -> bool {
        false
    }

    /// A fresh device for one case with the case's seed.
    fn open(&self, seed: u64) -> Result<Box<dyn Device>, OpenError>;

    /// A device for a case's second process (`--device-server`), on the same hardware.
    fn open_served(&self, seed: u64) -> Result<Box<dyn Device>, OpenError> {
        self.open(seed)
    }

    /// What the backend's observers could and could not open, for run.json.
    fn notes(&self) -> Vec<Note> {
        Vec::new()
    }
}

/// What a hardware backend finds once per run and opens a device on per case: a GPU, a
/// driver's node.
pub trait Target: Send + Sync {
    /// A fresh device on it, for one case.
    fn open(&self) -> Result<Box<dyn Device>, super::DeviceError>;
    /// One line for the start of a run.
    fn describe(&self) -> String;
    /// What its observers could and could not open, for run.json.
    fn notes(&self) -> Vec<Note> {
        Vec::new()
    }
}

/// A hardware backend: its target where one was found, else why every case skips.
pub struct Hardware<T> {
    pub name: &'static str,
    pub profile: Loaded<Profile>,
    pub info: DeviceInfo,
    pub target: Result<T, String>,
    /// `--place-at`: each device opened places its host allocations from there.
    pub place_at: Option<u64>,
    /// The allocation kinds its devices place: those made of host memory this process maps.
    pub placed_kinds: &'static [AllocKind],
}

impl<T: Target> Backend for Hardware<T> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn profile(&self) -> &Loaded<Profile> {
        &self.profile
    }

    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn describe(&self) -> Option<String> {
        self.target.as_ref().ok().map(Target::describe)
    }

    fn hardware(&self) -> bool {
        true
    }

    fn unavailable(&self) -> Option<&str> {
        self.target.as_ref().err().map(String::as_str)
    }

    fn places(&self, kind: AllocKind) -> bool {
        self.placed_kinds.contains(&kind)
    }

    fn open(&self, _seed: u64) -> Result<Box<dyn Device>, OpenError> {
        let failed = |e| OpenError::Failed(format!("cannot open {}: {e}", self.info.name));
        match &self.target {
            Ok(target) => {
                let mut dev = target.open().map_err(failed)?;
                if let Some(at) = self.place_at {
                    dev.place_at(at).map_err(failed)?;
                }
                Ok(dev)
            }
            Err(why) => Err(OpenError::Unavailable(why.clone())),
        }
    }

    fn notes(&self) -> Vec<Note> {
        self.target.as_ref().map(Target::notes).unwrap_or_default()
    }
}

/// One observer's state for run.json: opened, and from what, or not, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub name: String,
    pub available: bool,
    pub detail: String,
}

/// One backend the binary knows.
#[derive(Clone, Copy)]
pub struct Kind {
    /// What `--backend` takes.
    pub name: &'static str,
    /// Opens it for a run.
    pub open: fn(&Settings) -> Result<Box<dyn Backend>, BackendError>,
    /// For `--backend auto`: opens it when its hardware is here (`Ok(None)` when not); `None`
    /// for a backend that auto never picks on its own.
    pub detect: Option<fn(&Settings) -> Detected>,
}

/// What `auto` asks of a backend: opened where its hardware is here, `None` where it is not.
pub type Detected = Result<Option<Box<dyn Backend>>, BackendError>;

/// Loads the profile `--profile` names, else `default`, with the flag in the message.
pub fn load_profile(settings: &Settings, default: &str) -> Result<Loaded<Profile>, BackendError> {
    let name = settings.profile.as_deref().unwrap_or(default);
    fixtures::load_profile(&settings.fixtures, name)
        .map_err(|e| BackendError::Refused(format!("--profile {name}: {e}")))
}

/// The profile under the fixtures whose `arch` is `processor` (`gfx942`: mi300x), unless
/// `--profile` names one.
pub fn profile_for(
    settings: &Settings,
    processor: &str,
    backend: &str,
) -> Result<Loaded<Profile>, BackendError> {
    if settings.profile.is_some() {
        return load_profile(settings, "");
    }
    let root: &Path = &settings.fixtures;
    let names = fixtures::profile_names(root)?;
    for name in &names {
        let p = fixtures::load_profile(root, name)?;
        if p.value.arch == processor {
            return Ok(p);
        }
    }
    Err(BackendError::Refused(format!(
        "--backend {backend}: no profile in {} has `arch: {processor}` (profiles: {}); pass \
         --profile NAME|FILE",
        root.join(fixtures::PROFILES_DIR).display(),
        names.join(", ")
    )))
}

/// Refuses the options that break or trace another backend's device.
pub fn refuse_foreign(
    settings: &Settings,
    own: &[&str],
    message: &str,
) -> Result<(), BackendError> {
    let given = [
        ("--sim-break", settings.sim_break.is_some()),
        ("--sim-faults", settings.sim_faults.is_some()),
        ("--amdgpu-trace", settings.amdgpu_trace),
    ];
    if given.iter().any(|(flag, on)| *on && !own.contains(flag)) {
        return Err(BackendError::Refused(message.to_string()));
    }
    Ok(())
}

/// Where the [`Capabilities`] a device declares and what
/// its observation methods answer disagree, one sentence each: a capability said and not
/// given would fail cases that need it, one given and not said would skip them for nothing.
/// Allocates one page of managed memory to ask about.
pub fn capability_mismatches(caps: Capabilities, dev: &mut dyn Device) -> Vec<String> {
    use crate::model::memory::{AllocKind, PAGE_SIZE};
    let name = dev.info().name.clone();
    let mut out = Vec::new();
    let agree = |out: &mut Vec<String>, what: &str, said: bool, answers: bool| {
        if said != answers {
            out.push(format!(
                "{name}: capabilities say {what} is {}, but the device {}",
                if said { "there" } else { "not there" },
                if answers {
                    "answers"
                } else {
                    "does not answer"
                }
            ));
        }
    };
    match dev.alloc(AllocKind::Managed, PAGE_SIZE) {
        Ok(buf) => {
            let residency = dev.residency(buf, super::Span::pages(0, 1)).is_some();
            agree(&mut out, "residency", caps.has(Need::Residency), residency);
            let _ = dev.free(buf);
        }
        Err(e) => out.push(format!("{name}: cannot allocate a page to ask about: {e}")),
    }
    let events = dev.take_events().is_some();
    agree(&mut out, "events", caps.has(Need::Events), events);
    let vram = dev.vram_used().is_some();
    agree(&mut out, "vram_usage", caps.has(Need::VramUsage), vram);
    let transient = dev.eviction_transient().is_some();
    agree(
        &mut out,
        "eviction_transient",
        caps.has(Need::EvictionTransient),
        transient,
    );
    out
}

/// Refuses a run on a backend whose [`Capabilities`] are not what its device answers: the skip
/// reasons come from the capabilities, and the checks from the answers, so a disagreement
/// would skip what could run or leave a check blind. Asked once per run, of a device opened
/// with the run's seed, before anything is written. Where no device opens, the cases say why.
pub fn check_capabilities(backend: &dyn Backend, seed: u64) -> Result<(), BackendError> {
    if backend.unavailable().is_some() {
        return Ok(());
    }
    let Ok(mut dev) = backend.open(seed) else {
        return Ok(());
    };
    let wrong = capability_mismatches(backend.info().caps, dev.as_mut());
    if wrong.is_empty() {
        return Ok(());
    }
    Err(BackendError::Refused(format!(
        "--backend {}: what the device says it can observe is not what it answers, so skip \
         reasons and checks would be wrong (a defect of the backend): {}",
        backend.name(),
        wrong.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::registry::{names, open, AUTO, KINDS};

    fn settings(backend: Option<&str>) -> Settings {
        Settings {
            backend: backend.map(String::from),
            fixtures: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures"),
            seed: 1,
            ..Settings::default()
        }
    }

    #[test]
    fn every_backend_has_its_own_name_and_auto_is_none_of_them() {
        let mut seen = std::collections::BTreeSet::new();
        for k in KINDS {
            assert!(seen.insert(k.name), "two backends are called {}", k.name);
            assert_ne!(k.name, AUTO);
        }
        assert_eq!(names().len(), KINDS.len() + 1);
    }

    #[test]
    fn an_unknown_backend_is_refused_with_the_known_ones() {
        let e = open(&settings(Some("cuda")))
            .err()
            .expect("refused")
            .to_string();
        assert!(
            e.starts_with("--backend: unknown backend `cuda` (known: auto, "),
            "{e}"
        );
        for k in KINDS {
            assert!(e.contains(k.name), "{e}");
        }
    }

    #[test]
    fn auto_without_hardware_is_the_reference_device_with_its_defaults() {
        let b = open(&settings(None)).expect("the reference device opens");
        assert_eq!(b.name(), crate::device::reference::name());
        assert!(!b.hardware());
        assert!(!b.isolates_by_default());
        assert_eq!(b.default_threads(), None);
        assert!(b.unavailable().is_none());
        let mut dev = b.open(7).expect("a device per case");
        assert_eq!(dev.info().backend, crate::device::reference::name());
        let wrong = capability_mismatches(dev.info().caps, dev.as_mut());
        assert!(wrong.is_empty(), "{wrong:?}");
    }

    #[test]
    fn a_backend_opened_by_name_reports_that_name_and_its_info_agrees() {
        for k in KINDS {
            let s = Settings {
                profile: Some("sim".into()),
                ..settings(Some(k.name))
            };
            match open(&s) {
                Ok(b) => {
                    assert_eq!(b.name(), k.name);
                    // Where the backend has its device here, what it says it can do is what
                    // it does.
                    if let Ok(mut dev) = b.open(1) {
                        let wrong = capability_mismatches(dev.info().caps, dev.as_mut());
                        assert!(wrong.is_empty(), "{wrong:?}");
                    }
                    assert_eq!(b.info().backend, k.name);
                    // Hardware shares one device: one case at a time, each in a process.
                    if b.hardware() {
                        assert_eq!(b.default_threads(), Some(1), "{}", k.name);
                        assert!(b.isolates_by_default(), "{}", k.name);
                    }
                }
                // A backend not built in (hip without the feature) says so; nothing else fails.
                Err(e) => assert!(e.to_string().contains(k.name), "{}: {e}", k.name),
            }
        }
    }

    #[test]
    fn a_foreign_option_is_refused_with_the_backends_message() {
        let s = Settings {
            sim_break: Some("x".into()),
            ..settings(None)
        };
        assert!(refuse_foreign(&s, &["--sim-break"], "no").is_ok());
        let e = refuse_foreign(&s, &[], "only the reference device").unwrap_err();
        assert_eq!(e.to_string(), "only the reference device");
    }

    #[test]
    fn a_device_that_says_more_or_less_than_it_answers_is_named() {
        let b = open(&settings(None)).expect("the reference device opens");
        let mut dev = b.open(3).expect("a device");
        // The reference device answers every observation: saying less of two is two mismatches.
        let mut said = dev.info().caps;
        said.set(Need::Events, false);
        said.set(Need::Residency, false);
        let wrong = capability_mismatches(said, dev.as_mut());
        assert_eq!(wrong.len(), 2, "{wrong:?}");
        assert!(
            wrong[0].contains("residency is not there, but the device answers"),
            "{wrong:?}"
        );
        assert!(
            wrong[1].contains("events is not there, but the device answers"),
            "{wrong:?}"
        );
    }

    /// A hardware backend whose device is the reference device, saying what `caps` say.
    struct Claims(Box<dyn Backend>);

    impl Target for Claims {
        fn open(&self) -> Result<Box<dyn Device>, super::super::DeviceError> {
            Ok(self
                .0
                .open(1)
                .map_err(|_| ())
                .expect("the reference device opens"))
        }
        fn describe(&self) -> String {
            "the reference device under another name".into()
        }
    }

    fn claiming(caps: Capabilities, target: Result<Claims, String>) -> Hardware<Claims> {
        let sim = open(&settings(None)).expect("the reference device opens");
        let mut info = sim.info().clone();
        info.caps = caps;
        Hardware {
            name: "claims",
            profile: sim.profile().clone(),
            info,
            target,
            place_at: None,
            placed_kinds: &[],
        }
    }

    #[test]
    fn a_run_is_refused_on_a_backend_that_says_other_than_its_device_answers() {
        let sim = || open(&settings(None)).expect("the reference device opens");
        let honest = sim().info().caps;
        check_capabilities(sim().as_ref(), 1).expect("the reference device is honest");
        let ok = claiming(honest, Ok(Claims(sim())));
        check_capabilities(&ok, 1).expect("the same claims, the same answers");

        let modest = claiming(honest.with(Need::Events, false), Ok(Claims(sim())));
        let e = check_capabilities(&modest, 1).expect_err("says no events, answers them");
        assert_eq!(
            e.to_string(),
            "--backend claims: what the device says it can observe is not what it answers, so \
             skip reasons and checks would be wrong (a defect of the backend): Reference device \
             (profile sim): capabilities say events is not there, but the device answers"
        );
        // Without a device there is nothing to ask: the cases say why they skip.
        let absent = claiming(honest.with(Need::Events, false), Err("no GPU".into()));
        check_capabilities(&absent, 1).expect("nothing to ask");
    }
}
