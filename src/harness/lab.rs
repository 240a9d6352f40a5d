//! A lab machine described in `lab/hosts/<name>.yaml`: which device and profile it runs, what it
//! allows the suite to do, and what its kernel and environment must be for the run to mean
//! anything. `svmconf --host FILE` takes its defaults from it and checks it before any case.
//!
//! ```yaml
//! name: mi300x-01
//! backend: hip                  # auto, sim, hip
//! profile: mi300x               # fixtures/profiles/NAME.yaml
//! device: {pci_bus_id: "0000:c1:00.0"}   # or {index: 0}; default: the first GPU
//! results: /var/lib/svmconf/results
//! allows:                       # each default false
//!   destructive: true           # GPU reset cases may run (the board may be reset)
//!   sysrq: true                 # task dumps on a timeout
//! kernel:
//!   cmdline: [amdgpu.noretry=0] # words /proc/cmdline must hold
//! environment:
//!   HSA_XNACK: "1"              # variables the run's environment must hold
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::util::yaml::{self, FieldPath, YamlError};

use super::cli::Options;
use super::SetupError;
use crate::device::registry;

/// `lab/hosts/<name>.yaml`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Host {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// `auto`, `sim` or `hip`.
    #[serde(default)]
    pub backend: Option<String>,
    /// A profile name or file.
    pub profile: String,
    #[serde(default)]
    pub device: Option<DeviceSelect>,
    #[serde(default)]
    pub results: Option<PathBuf>,
    #[serde(default)]
    pub allows: Allows,
    #[serde(default)]
    pub kernel: KernelNeeds,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
}

/// Which GPU of the machine the suite runs on.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DeviceSelect {
    #[serde(default)]
    pub index: Option<u32>,
    /// `0000:c1:00.0`, as `lspci -D` and sysfs write it.
    #[serde(default)]
    pub pci_bus_id: Option<String>,
}

/// What the machine's owner allows the suite to do to it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Allows {
    /// GPU reset cases (`--allow-destructive`).
    #[serde(default)]
    pub destructive: bool,
    /// sysrq task dumps on a timeout.
    #[serde(default)]
    pub sysrq: bool,
}

/// What the running kernel must have been booted with.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KernelNeeds {
    /// Words `/proc/cmdline` must hold, `amdgpu.noretry=0`.
    #[serde(default)]
    pub cmdline: Vec<String>,
}

impl Host {
    /// Reads and checks a host file.
    pub fn load(path: &Path) -> Result<Host, YamlError> {
        let text = yaml::read_text(path, path)?;
        Host::parse(&text, path)
    }

    pub fn parse(text: &str, file: &Path) -> Result<Host, YamlError> {
        let host: Host = yaml::parse(text, file)?;
        let at = |field: &str, message: String| {
            let path = field
                .split('.')
                .fold(FieldPath::root(), |p, key| p.key(key));
            YamlError::at(file, text, &path, message)
        };
        if host.name.trim().is_empty() {
            return Err(at("name", "expected the machine's name".into()));
        }
        if let Some(b) = &host.backend {
            let known = crate::device::registry::names();
            if !known.contains(&b.as_str()) {
                return Err(at(
                    "backend",
                    format!(
                        "unknown backend `{b}`, expected one of {}",
                        known.join(", ")
                    ),
                ));
            }
        }
        if let Some(d) = &host.device {
            if d.index.is_some() == d.pci_bus_id.is_some() {
                return Err(at(
                    "device",
                    "expected exactly one of `index` and `pci_bus_id`".into(),
                ));
            }
            if let Some(id) = &d.pci_bus_id {
                if !is_pci_bus_id(id) {
                    return Err(at(
                        "device.pci_bus_id",
                        format!(
                            "`{id}` is not a PCI bus id, expected DDDD:BB:DD.F like 0000:c1:00.0"
                        ),
                    ));
                }
            }
        }
        Ok(host)
    }

    /// Every way this machine is not as its file says: kernel command line words missing,
    /// environment variables absent or different. Empty when all is as said.
    pub fn differences(&self, cmdline: &str, env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
        let words: Vec<&str> = cmdline.split_whitespace().collect();
        let mut out = Vec::new();
        for want in &self.kernel.cmdline {
            if !words.contains(&want.as_str()) {
                out.push(format!(
                    "host `{}`: kernel.cmdline: `{want}` is not on the kernel command line \
                     (/proc/cmdline)",
                    self.name
                ));
            }
        }
        for (name, want) in &self.environment {
            match env(name) {
                Some(v) if &v == want => {}
                Some(v) => out.push(format!(
                    "host `{}`: environment.{name}: expected `{want}`, the run has `{v}`",
                    self.name
                )),
                None => out.push(format!(
                    "host `{}`: environment.{name}: expected `{want}`, the run does not set it",
                    self.name
                )),
            }
        }
        out
    }
}

/// Written in full as sysfs writes it (`0000:c1:00.0`, any case): the form the host file
/// documents.
fn is_pci_bus_id(s: &str) -> bool {
    s.parse::<crate::util::pci::PciAddress>()
        .is_ok_and(|a| a.to_string().eq_ignore_ascii_case(s))
}

/// Takes the defaults of `--host FILE` where the command line leaves them open, and refuses
/// what the host does not allow.
pub(super) fn with_host(mut options: Options) -> Result<(Options, Option<Host>), SetupError> {
    let Some(path) = options.host.clone() else {
        return Ok((options, None));
    };
    let host = Host::load(&path)
        .map_err(|e| SetupError::Plan(format!("--host {}: {e}", path.display())))?;
    if options.backend == registry::AUTO {
        if let Some(b) = &host.backend {
            options.backend = b.clone();
        }
    }
    if options.profile.is_none() {
        options.profile = Some(host.profile.clone());
    }
    if options.device.is_none() {
        options.device = host.device.as_ref().and_then(|d| {
            d.pci_bus_id
                .clone()
                .or_else(|| d.index.map(|i| i.to_string()))
        });
    }
    if !options.results_given {
        if let Some(r) = &host.results {
            options.results = r.clone();
        }
    }
    if options.allow_destructive && !host.allows.destructive {
        return Err(SetupError::Plan(format!(
            "--allow-destructive: host `{}` ({}) does not allow destructive cases \
             (allows.destructive is false)",
            host.name,
            path.display()
        )));
    }
    options.sysrq = host.allows.sysrq;
    Ok((options, Some(host)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const GOOD: &str = "\
name: mi300x-01
backend: hip
profile: mi300x
device: {pci_bus_id: \"0000:c1:00.0\"}
allows:
  destructive: true
kernel:
  cmdline: [amdgpu.noretry=0]
environment:
  HSA_XNACK: \"1\"
";

    #[test]
    fn a_host_reads_back() {
        let h = Host::parse(GOOD, Path::new("h.yaml")).unwrap();
        assert_eq!(h.profile, "mi300x");
        assert!(h.allows.destructive && !h.allows.sysrq);
        assert_eq!(
            h.device.unwrap().pci_bus_id.as_deref(),
            Some("0000:c1:00.0")
        );
    }

    #[rstest]
    #[case(
        "allows:\n  destructive: true",
        "allows:\n  destructve: true",
        "h.yaml:6:3: allows: unknown field `destructve`"
    )]
    #[case(
        "backend: hip",
        "backend: cuda",
        "h.yaml:2:10: backend: unknown backend `cuda`"
    )]
    #[case(
        "{pci_bus_id: \"0000:c1:00.0\"}",
        "{pci_bus_id: \"c1:00.0\"}",
        "device.pci_bus_id: `c1:00.0` is not a PCI bus id"
    )]
    #[case(
        "{pci_bus_id: \"0000:c1:00.0\"}",
        "{index: 0, pci_bus_id: \"0000:c1:00.0\"}",
        "device: expected exactly one"
    )]
    #[case("profile: mi300x\n", "", "missing field `profile`")]
    fn errors_name_file_line_and_field(#[case] from: &str, #[case] to: &str, #[case] want: &str) {
        let text = GOOD.replacen(from, to, 1);
        let e = Host::parse(&text, Path::new("h.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "expected `{want}` in: {e}");
    }

    #[test]
    fn differences_name_the_missing_boot_word_and_variable() {
        let h = Host::parse(GOOD, Path::new("h.yaml")).unwrap();
        let none = |_: &str| None;
        let d = h.differences("BOOT_IMAGE=/vmlinuz root=/dev/sda1", &none);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].contains("`amdgpu.noretry=0` is not on the kernel command line"));
        assert!(d[1].contains("environment.HSA_XNACK: expected `1`, the run does not set it"));
        let set = |n: &str| (n == "HSA_XNACK").then(|| "1".to_string());
        assert!(h.differences("quiet amdgpu.noretry=0", &set).is_empty());
        let wrong = |_: &str| Some("0".to_string());
        assert!(h.differences("amdgpu.noretry=0", &wrong)[0].contains("the run has `0`"));
    }

    #[test]
    fn the_lab_examples_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/hosts");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                Host::load(&path).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n >= 2, "an example per lab machine kind");
    }
}
