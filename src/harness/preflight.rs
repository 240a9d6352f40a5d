//! Preflight: before a run, the device under test and its host against the profile's
//! `expect:` section, every difference a sentence that names the profile field, what it
//! expects and what was found.
//!
//! A nightly run on a machine that booted another kernel, lost `amdgpu.noretry=0` or runs
//! XNACK off would still produce results: a night of skips and failures that say nothing about
//! the series. The runner prints the differences and stops unless `--no-preflight`.
//!
//! Where each value comes from:
//! - `arch`: the processor of [`DeviceInfo::arch`], the target id (`gfx942:sramecc+:xnack+`);
//!   target features the profile names must be in it too;
//! - `xnack`: the target id's `xnack+`/`xnack-` where it has one (what the hardware runs),
//!   else the backend's [`Need::Xnack`](crate::device::Need) among its [`Capabilities`](crate::device::Capabilities);
//! - `vram_gib`: [`DeviceInfo::vram_bytes`], within `vram_tolerance_pct`
//!   ([`VRAM_TOLERANCE_PCT`] by default, justified there);
//! - `kernel_release`: [`Host::kernel_release`], `uname -r`;
//! - `module_params`: the files under [`Host::module_params`], `/sys/module/amdgpu/parameters`.

use std::fmt;
use std::path::{Path, PathBuf};

use regex::Regex;

use crate::device::{DeviceInfo, Need};
use crate::model::profile::{Profile, VRAM_TOLERANCE_PCT};
use crate::util::text::io_reason;

use super::SetupError;
use crate::device::backend::Backend;

/// Where amdgpu's module parameters are.
pub const AMDGPU_PARAMS: &str = "/sys/module/amdgpu/parameters";
/// The running kernel's release, as `uname -r` prints it.
pub const OSRELEASE: &str = "/proc/sys/kernel/osrelease";

const GIB: f64 = (1u64 << 30) as f64;

/// What preflight reads of the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// `uname -r`.
    pub kernel_release: String,
    /// The folder of amdgpu's module parameters, one file each.
    pub module_params: PathBuf,
}

impl Host {
    pub fn new(kernel_release: impl Into<String>, module_params: impl Into<PathBuf>) -> Host {
        Host {
            kernel_release: kernel_release.into(),
            module_params: module_params.into(),
        }
    }

    /// This machine: [`OSRELEASE`] (empty when unreadable: then a release pattern does not
    /// match, and says what it found) and [`AMDGPU_PARAMS`].
    pub fn this_machine() -> Host {
        let release = std::fs::read_to_string(OSRELEASE).unwrap_or_default();
        Host::new(release.trim(), AMDGPU_PARAMS)
    }
}

/// What was found where the profile expects something else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// A value, and where it came from: `the device's target id gfx90a:sramecc+:xnack-`.
    Value { value: String, from: String },
    /// Nothing could be read from `path`.
    NotReadable { path: PathBuf, reason: String },
}

/// One way the machine is not what the profile expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// The profile's name.
    pub profile: String,
    /// The field in the profile: `expect.module_params.noretry`.
    pub field: String,
    /// What the profile expects, as a person reads it: `gfx942`, `192 GiB within 3%`.
    pub expected: String,
    pub found: Found,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (profile, field, expected) = (&self.profile, &self.field, &self.expected);
        match &self.found {
            Found::Value { value, from } => write!(
                f,
                "profile `{profile}`: {field} differs: expected {expected}, found {value} \
                 ({from})"
            ),
            Found::NotReadable { path, reason } => write!(
                f,
                "profile `{profile}`: {field} is not readable: expected {expected}, but `{}` \
                 cannot be read ({reason})",
                path.display()
            ),
        }
    }
}

/// Compares `device` and `host` with `profile.expect`; `Err` holds every difference, in the
/// order of the fields. A profile without `expect:` passes.
pub fn check(profile: &Profile, device: &DeviceInfo, host: &Host) -> Result<(), Vec<Difference>> {
    let Some(expect) = &profile.expect else {
        return Ok(());
    };
    let mut diffs = Vec::new();
    let mut differ = |field: &str, expected: String, found: Found| {
        diffs.push(Difference {
            profile: profile.name.clone(),
            field: format!("expect.{field}"),
            expected,
            found,
        });
    };
    let target = || format!("the device's target id {}", device.arch);

    if let Some(arch) = &expect.arch {
        let (want, want_features) = split_target(arch);
        let (have, have_features) = split_target(&device.arch);
        let features_on = want_features.iter().all(|f| have_features.contains(f));
        if want != have || !features_on {
            let value = if want == have { &device.arch } else { have };
            differ(
                "arch",
                arch.clone(),
                Found::Value {
                    value: value.to_string(),
                    from: target(),
                },
            );
        }
    }

    if let Some(want) = expect.xnack {
        let (have, from) = xnack(device);
        if have != want {
            differ(
                "xnack",
                on_off(want).to_string(),
                Found::Value {
                    value: on_off(have).to_string(),
                    from,
                },
            );
        }
    }

    if let Some(gib) = expect.vram_gib {
        let pct = expect.vram_tolerance_pct.unwrap_or(VRAM_TOLERANCE_PCT);
        let want = gib * GIB;
        let have = device.vram_bytes as f64;
        if (have - want).abs() > want * pct / 100.0 {
            differ(
                "vram_gib",
                format!("{gib} GiB within {pct}%"),
                Found::Value {
                    value: format!("{:.2} GiB", have / GIB),
                    from: format!("{} bytes reported by {}", device.vram_bytes, device.name),
                },
            );
        }
    }

    if let Some(pattern) = &expect.kernel_release {
        let matches = Regex::new(pattern)
            .map(|re| re.is_match(&host.kernel_release))
            .unwrap_or(false);
        if !matches {
            differ(
                "kernel_release",
                format!("a release matching `{pattern}`"),
                Found::Value {
                    value: format!("`{}`", host.kernel_release),
                    from: "uname -r".to_string(),
                },
            );
        }
    }

    for (name, want) in &expect.module_params {
        let path = host.module_params.join(name);
        let field = format!("module_params.{name}");
        match std::fs::read_to_string(&path) {
            Ok(text) if want.matches(&text) => {}
            Ok(text) => differ(
                &field,
                want.to_string(),
                Found::Value {
                    value: text.trim().to_string(),
                    from: path.display().to_string(),
                },
            ),
            Err(e) => differ(
                &field,
                want.to_string(),
                Found::NotReadable {
                    path: path.clone(),
                    reason: not_readable(&e, &host.module_params),
                },
            ),
        }
    }

    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs)
    }
}

/// `gfx942:sramecc+:xnack+` into `gfx942` and its features.
fn split_target(id: &str) -> (&str, Vec<&str>) {
    let mut parts = id.split(':');
    let processor = parts.next().unwrap_or_default();
    (processor, parts.filter(|p| !p.is_empty()).collect())
}

/// The XNACK state and where it was read.
fn xnack(device: &DeviceInfo) -> (bool, String) {
    let (_, features) = split_target(&device.arch);
    for (feature, on) in [("xnack+", true), ("xnack-", false)] {
        if features.contains(&feature) {
            return (on, format!("the device's target id {}", device.arch));
        }
    }
    (
        device.caps.has(Need::Xnack),
        format!(
            "the {} backend's capabilities; the target id {} does not say",
            device.backend, device.arch
        ),
    )
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// Why a parameter file cannot be read, with the likely cause when the whole folder is missing.
fn not_readable(e: &std::io::Error, dir: &Path) -> String {
    let reason = io_reason(e);
    if e.kind() == std::io::ErrorKind::NotFound && !dir.is_dir() {
        format!("{reason}; is the amdgpu module loaded?")
    } else {
        reason
    }
}

/// Stops the run before anything is written where the device is not what the profile says,
/// or the machine not what its host file says.
pub(super) fn stop_unless_ready(
    opened: &dyn Backend,
    lab_host: Option<&super::lab::Host>,
) -> Result<(), SetupError> {
    let machine = Host::this_machine();
    let mut list: Vec<String> = match check(&opened.profile().value, opened.info(), &machine) {
        Ok(()) => Vec::new(),
        Err(differences) => differences.iter().map(|d| d.to_string()).collect(),
    };
    if let Some(h) = lab_host {
        let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
        list.extend(h.differences(&cmdline, &|name| std::env::var(name).ok()));
    }
    if list.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = list.iter().map(|d| format!("  - {d}")).collect();
    Err(SetupError::Preflight(format!(
        "preflight: {} is not what profile `{}` expects:\n{}\nfix the machine, the profile \
         or the host file, or rerun with --no-preflight",
        opened.info().name,
        opened.profile().value.name,
        list.join("\n")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::sim::SimDevice;
    use crate::device::{Capabilities, Device, Need};
    use crate::model::profile::{Expect, ParamValue};
    use rstest::rstest;

    fn repo_profile(name: &str) -> Profile {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        crate::fixtures::load_profile(&root, name)
            .unwrap_or_else(|e| panic!("{e}"))
            .value
    }

    /// An MI300X as the hip backend reports it: 191.98 GiB of the 192 on the box.
    fn mi300x() -> DeviceInfo {
        DeviceInfo {
            backend: "hip".into(),
            name: "AMD Instinct MI300X".into(),
            arch: "gfx942:sramecc+:xnack+".into(),
            vram_bytes: 206_141_652_992,
            gpus: 1,
            caps: Capabilities::of(&[Need::Xnack]),
        }
    }

    struct Params {
        _dir: tempfile::TempDir,
        host: Host,
    }

    fn host(release: &str, params: &[(&str, &str)]) -> Params {
        let dir = tempfile::tempdir().unwrap();
        for (name, value) in params {
            std::fs::write(dir.path().join(name), format!("{value}\n")).unwrap();
        }
        let host = Host::new(release, dir.path());
        Params { _dir: dir, host }
    }

    fn lab() -> Params {
        host(
            "6.15.0-svm-v4",
            &[("noretry", "0"), ("svm_default_granularity", "9")],
        )
    }

    fn expecting(e: Expect) -> Profile {
        let mut p = repo_profile("mi300x");
        p.expect = Some(e);
        p
    }

    fn shown(r: Result<(), Vec<Difference>>) -> Vec<String> {
        r.err()
            .unwrap_or_default()
            .iter()
            .map(Difference::to_string)
            .collect()
    }

    #[test]
    fn the_lab_mi300x_passes_its_profile() {
        let h = lab();
        assert_eq!(check(&repo_profile("mi300x"), &mi300x(), &h.host), Ok(()));
    }

    #[test]
    fn the_sim_passes_its_profile_with_what_it_reports() {
        let p = repo_profile("sim");
        let sim = SimDevice::new(&p, 1, Default::default()).unwrap();
        // No amdgpu and any kernel: the sim's profile asks for neither.
        let nothing = Host::new("", "/nonexistent/amdgpu/parameters");
        assert_eq!(check(&p, sim.info(), &nothing), Ok(()));
        assert!(p.expect.is_some());
    }

    #[test]
    fn a_profile_without_expect_passes_anything() {
        let mut p = repo_profile("mi300x");
        p.expect = None;
        let mut d = mi300x();
        d.arch = "gfx90a".into();
        assert_eq!(check(&p, &d, &host("", &[]).host), Ok(()));
    }

    #[rstest]
    #[case::other_card(
        |d: &mut DeviceInfo| d.arch = "gfx90a:sramecc+:xnack+".into(),
        "profile `mi300x`: expect.arch differs: expected gfx942, found gfx90a \
         (the device's target id gfx90a:sramecc+:xnack+)"
    )]
    #[case::xnack_off(
        |d: &mut DeviceInfo| d.arch = "gfx942:sramecc+:xnack-".into(),
        "profile `mi300x`: expect.xnack differs: expected on, found off \
         (the device's target id gfx942:sramecc+:xnack-)"
    )]
    #[case::xnack_from_caps(
        |d: &mut DeviceInfo| { d.arch = "gfx942".into(); d.caps.set(Need::Xnack, false); },
        "profile `mi300x`: expect.xnack differs: expected on, found off \
         (the hip backend's capabilities; the target id gfx942 does not say)"
    )]
    #[case::cpx_partition(
        |d: &mut DeviceInfo| d.vram_bytes = 206_141_652_992 / 8,
        "profile `mi300x`: expect.vram_gib differs: expected 192 GiB within 3%, found 24.00 GiB \
         (25767706624 bytes reported by AMD Instinct MI300X)"
    )]
    #[case::four_percent_short(
        |d: &mut DeviceInfo| d.vram_bytes = (192u64 << 30) / 100 * 96,
        "profile `mi300x`: expect.vram_gib differs: expected 192 GiB within 3%, found 184.32 GiB"
    )]
    fn a_device_difference_is_one_sentence(
        #[case] change: fn(&mut DeviceInfo),
        #[case] want: &str,
    ) {
        let mut d = mi300x();
        change(&mut d);
        let h = lab();
        let got = shown(check(&repo_profile("mi300x"), &d, &h.host));
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].starts_with(want), "{}", got[0]);
    }

    #[rstest]
    #[case::vram_just_inside(192u64 << 30, None, true)]
    #[case::reserved(206_141_652_992, None, true)]
    #[case::three_percent_short((192u64 << 30) / 1000 * 971, None, true)]
    #[case::three_percent_over((192u64 << 30) / 1000 * 1029, None, true)]
    #[case::wider_tolerance((192u64 << 30) / 100 * 90, Some(12.0), true)]
    #[case::narrower_tolerance((192u64 << 30) / 100 * 99, Some(0.5), false)]
    fn vram_tolerance(#[case] bytes: u64, #[case] pct: Option<f64>, #[case] ok: bool) {
        let p = expecting(Expect {
            vram_gib: Some(192.0),
            vram_tolerance_pct: pct,
            ..Expect::default()
        });
        let mut d = mi300x();
        d.vram_bytes = bytes;
        assert_eq!(check(&p, &d, &lab().host).is_ok(), ok);
    }

    #[rstest]
    #[case::processor("gfx942", "gfx942:sramecc+:xnack+", true)]
    #[case::feature_on("gfx942:xnack+", "gfx942:sramecc+:xnack+", true)]
    #[case::feature_off("gfx942:xnack+", "gfx942:sramecc+:xnack-", false)]
    #[case::feature_absent("gfx942:sramecc+", "gfx942", false)]
    #[case::other("gfx942", "gfx9420", false)]
    fn arch_matching(#[case] want: &str, #[case] have: &str, #[case] ok: bool) {
        let p = expecting(Expect {
            arch: Some(want.into()),
            ..Expect::default()
        });
        let mut d = mi300x();
        d.arch = have.into();
        assert_eq!(check(&p, &d, &lab().host).is_ok(), ok, "{want} vs {have}");
    }

    #[rstest]
    #[case::matches("^6\\.1[5-9]\\..*-svm", "6.15.0-svm-v4", true)]
    #[case::searched_anywhere("svm", "6.15.0-svm-v4", true)]
    #[case::other_kernel("-svm", "6.8.0-51-generic", false)]
    #[case::unknown_release("-svm", "", false)]
    fn kernel_release(#[case] pattern: &str, #[case] release: &str, #[case] ok: bool) {
        let p = expecting(Expect {
            kernel_release: Some(pattern.into()),
            ..Expect::default()
        });
        let h = host(release, &[]);
        let got = check(&p, &mi300x(), &h.host);
        assert_eq!(got.is_ok(), ok);
        if !ok {
            let want = format!(
                "profile `mi300x`: expect.kernel_release differs: expected a release matching \
                 `{pattern}`, found `{release}` (uname -r)"
            );
            assert_eq!(shown(got), [want]);
        }
    }

    #[rstest]
    #[case::int_same(ParamValue::Int(0), "0", true)]
    #[case::int_default(ParamValue::Int(0), "-1", false)]
    #[case::int_negative(ParamValue::Int(-1), "-1", true)]
    #[case::bool_yes(ParamValue::Bool(true), "Y", true)]
    #[case::bool_one(ParamValue::Bool(true), "1", true)]
    #[case::bool_no(ParamValue::Bool(false), "N", true)]
    #[case::bool_wrong(ParamValue::Bool(true), "N", false)]
    #[case::text(ParamValue::Text("auto".into()), "auto", true)]
    #[case::text_wrong(ParamValue::Text("auto".into()), "off", false)]
    fn module_param_values(#[case] want: ParamValue, #[case] sysfs: &str, #[case] ok: bool) {
        assert_eq!(want.matches(&format!("{sysfs}\n")), ok);
    }

    #[test]
    fn a_module_parameter_that_differs_says_so_and_where() {
        let h = host("6.15.0", &[("noretry", "-1")]);
        let got = shown(check(&repo_profile("mi60"), &mi60(), &h.host));
        let path = h.host.module_params.join("noretry");
        assert_eq!(
            got,
            [format!(
                "profile `mi60`: expect.module_params.noretry differs: expected 0, found -1 ({})",
                path.display()
            )]
        );
    }

    #[test]
    fn a_module_parameter_that_cannot_be_read_says_not_readable() {
        let h = host("6.15.0", &[("svm_default_granularity", "9")]);
        let got = shown(check(&repo_profile("mi60"), &mi60(), &h.host));
        let path = h.host.module_params.join("noretry");
        assert_eq!(
            got,
            [format!(
                "profile `mi60`: expect.module_params.noretry is not readable: expected 0, but \
                 `{}` cannot be read (no such file or directory)",
                path.display()
            )]
        );

        let nothing = Host::new("6.15.0", "/nonexistent/amdgpu/parameters");
        let got = shown(check(&repo_profile("mi60"), &mi60(), &nothing));
        assert!(got[0].ends_with("(no such file or directory; is the amdgpu module loaded?)"));
    }

    fn mi60() -> DeviceInfo {
        DeviceInfo {
            backend: "hip".into(),
            name: "AMD Instinct MI60".into(),
            arch: "gfx906:sramecc+:xnack+".into(),
            vram_bytes: 34_342_961_152,
            gpus: 1,
            caps: Capabilities::default(),
        }
    }

    #[test]
    fn every_difference_is_reported_not_just_the_first() {
        let p = expecting(Expect {
            arch: Some("gfx942".into()),
            xnack: Some(true),
            vram_gib: Some(192.0),
            kernel_release: Some("-svm".into()),
            module_params: [("noretry".to_string(), ParamValue::Int(0))].into(),
            ..Expect::default()
        });
        let got = check(&p, &mi60(), &host("6.8.0", &[]).host).unwrap_err();
        let fields: Vec<&str> = got.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "expect.arch",
                "expect.vram_gib",
                "expect.kernel_release",
                "expect.module_params.noretry"
            ]
        );
    }
}
