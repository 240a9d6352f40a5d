//! `hip`: the suite on an AMD GPU through the HIP runtime (ROCm 6.0 to 7.x), for MI300X
//! (gfx942) and MI60 (gfx906).
//!
//! What is always built (no ROCm needed), so `cargo test` checks it everywhere:
//! - [`target`]: target ids and which embedded code object a device runs;
//! - [`args`]: kernel arguments packed exactly per `kernels::SIGNATURES`;
//! - [`error`]: HIP status codes, their names, the "no AMD GPU found" reason;
//! - [`pci`]: `--device` and PCI bus ids;
//! - [`xnack`]: the XNACK state and how to turn it on.
//!
//! Behind the cargo feature `hip` (needs ROCm to link, clang-19 or hipcc to build kernels):
//! `ffi` (the only `unsafe`, with the host memory it shares with dmirror: `device::memory`),
//! `device` (`HipDevice`, discovery), and `CODE_OBJECTS`, the kernels of `kernels/`
//! compiled by build.rs for every target of `SVMCONF_HIP_TARGETS`.
//!
//! Observers: [`OBSERVERS`] is the hook where kernel-side evidence (KFD SMI events, the
//! series' trace, sysfs VRAM in use, debugfs reset: `src/device/amd/`) plugs in; see
//! `device::observer`. Each is recorded in run.json as opened, or not and why.

pub mod args;
pub mod backend;
pub mod error;
pub mod pci;
pub mod target;
pub mod xnack;

#[cfg(feature = "hip")]
mod device;
#[cfg(feature = "hip")]
#[allow(unsafe_code)]
mod ffi;

#[cfg(feature = "hip")]
pub use device::{discover, DiscoverError, Found, HipDevice};

use super::amd::ObserverOptions;
use super::backend::Note;
use super::observer::{GpuIdentity, ObserverFactory, ObserverState};
use super::{Device, DeviceError, DeviceInfo};
use pci::DeviceSelector;
use target::TargetId;

/// Whether this binary has the HIP backend (`--features hip`).
pub const BUILT: bool = cfg!(feature = "hip");

/// A GPU the runner may open a device on, once per case. Without the feature no value of it
/// can exist, so the runner's code is the same either way.
#[cfg(feature = "hip")]
#[derive(Clone, Debug)]
pub struct Gpu(Found);

/// A GPU the runner may open a device on (none can exist without `--features hip`).
#[cfg(not(feature = "hip"))]
#[derive(Clone, Debug)]
pub enum Gpu {}

#[cfg(feature = "hip")]
impl Gpu {
    pub fn info(&self) -> DeviceInfo {
        self.0.info()
    }
    pub fn describe(&self) -> String {
        self.0.describe()
    }
    /// The processor of its target id, `gfx942`: what picks a profile.
    pub fn processor(&self) -> &str {
        &self.0.target.processor
    }
    /// A fresh device on this GPU (one per case).
    pub fn open(&self) -> Result<Box<dyn Device>, DeviceError> {
        HipDevice::open(&self.0).map(|d| Box::new(d) as Box<dyn Device>)
    }
    /// The observers' options for every device opened from now on.
    pub fn set_observer_options(&mut self, options: ObserverOptions) {
        self.0.observer_options = options;
    }
    /// Per observer: opened, and from what, or not, and why (for run.json).
    pub fn observer_states(&self) -> Vec<ObserverState> {
        self.0.observers().states
    }
    /// The page tables' residency: from what, or why not (for run.json).
    pub fn pagemap_note(&self) -> Note {
        let pm = self.0.pagemap();
        Note {
            name: "pagemap".into(),
            available: pm.can_tell().is_ok(),
            detail: pm.describe(),
        }
    }
}

#[cfg(not(feature = "hip"))]
impl Gpu {
    pub fn info(&self) -> DeviceInfo {
        match *self {}
    }
    pub fn describe(&self) -> String {
        match *self {}
    }
    pub fn processor(&self) -> &str {
        match *self {}
    }
    pub fn open(&self) -> Result<Box<dyn Device>, DeviceError> {
        match *self {}
    }
    pub fn set_observer_options(&mut self, _: ObserverOptions) {
        match *self {}
    }
    pub fn observer_states(&self) -> Vec<ObserverState> {
        match *self {}
    }
    pub fn pagemap_note(&self) -> Note {
        match *self {}
    }
}

/// What `--backend hip` found on this machine.
#[derive(Debug)]
pub enum Probe {
    Gpu(Box<Gpu>),
    /// No GPU at all: every case skips with this reason ("no AMD GPU found: ...").
    NoGpu(String),
}

/// Why `--backend hip` cannot even start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("this svmconf was built without `--features hip`")]
    NotBuilt,
    /// A GPU is there but cannot be used: the message says why and what to do.
    #[error("{0}")]
    Unusable(String),
}

/// Looks for the GPU `selector` names.
pub fn probe(selector: &DeviceSelector) -> Result<Probe, ProbeError> {
    #[cfg(feature = "hip")]
    {
        match discover(selector) {
            Ok(found) => Ok(Probe::Gpu(Box::new(Gpu(found)))),
            Err(DiscoverError::NoGpu(no)) => Ok(Probe::NoGpu(no.to_string())),
            Err(e) => Err(ProbeError::Unusable(e.to_string())),
        }
    }
    #[cfg(not(feature = "hip"))]
    {
        let _ = selector;
        Err(ProbeError::NotBuilt)
    }
}

/// What a run with no GPU reports as its device.
pub fn no_gpu_info() -> DeviceInfo {
    DeviceInfo {
        backend: "hip".into(),
        name: "no AMD GPU".into(),
        arch: "none".into(),
        vram_bytes: 0,
        gpus: 0,
        caps: Default::default(),
    }
}

/// The observers every HIP device opens, in order; the first that answers an observation
/// wins (for events: the first with events, see `observer::take_events`): KFD SMI events,
/// the series' trace when asked for, VRAM in use from sysfs, eviction transients from
/// `MemAvailable`, the debugfs reset.
pub const OBSERVERS: &[ObserverFactory<ObserverOptions>] = &[
    KFD_SMI,
    crate::device::amd::observers::AMDGPU_TRACE,
    crate::device::amd::observers::SYSFS_VRAM,
    crate::device::amd::observers::EVICTION_MEMORY,
    crate::device::amd::observers::DEBUGFS_RESET,
];

/// KFD SMI events: `/dev/kfd`, `AMDKFD_IOC_SMI_EVENTS` for the GPU's KFD id (its topology
/// node matched by PCI bus id), the migration events' mask, and a reader thread
/// (`device::amd::smi_reader`). The ioctl is in `ffi`, so without the feature there is none.
pub const KFD_SMI: ObserverFactory<ObserverOptions> = ObserverFactory {
    name: "kfd-smi",
    open: open_kfd_smi,
};

#[cfg(feature = "hip")]
fn open_kfd_smi(
    gpu: &GpuIdentity,
    _: &ObserverOptions,
) -> Result<Box<dyn crate::device::observer::GpuObserver>, String> {
    use crate::device::amd::{smi_reader::KfdSmi, sysfs, SYSFS_ROOT};
    const DEV_KFD: &str = "/dev/kfd";
    let pci: sysfs::PciAddress = gpu
        .pci_bus_id
        .parse()
        .map_err(|e| format!("the GPU's PCI bus id `{}`: {e}", gpu.pci_bus_id))?;
    let node =
        sysfs::find_kfd_node(std::path::Path::new(SYSFS_ROOT), pci).map_err(|e| e.to_string())?;
    let kfd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(DEV_KFD)
        .map_err(|e| format!("{DEV_KFD}: {}", crate::util::text::io_reason(&e)))?;
    let events = ffi::kfd_smi_events(&kfd, node.gpu_id, KfdSmi::mask()).map_err(|e| {
        format!(
            "AMDKFD_IOC_SMI_EVENTS for gpu_id {:#x} (KFD node {}): {e}",
            node.gpu_id, node.node
        )
    })?;
    let source = format!(
        "{DEV_KFD} SMI events of gpu_id {:#x} (KFD node {}), this process's migrations",
        node.gpu_id, node.node
    );
    KfdSmi::new(events, node.gpu_id, std::process::id(), source)
        .map(|o| Box::new(o) as Box<dyn crate::device::observer::GpuObserver>)
        .map_err(|e| format!("starting the SMI reader thread: {e}"))
}

#[cfg(not(feature = "hip"))]
fn open_kfd_smi(
    _: &GpuIdentity,
    _: &ObserverOptions,
) -> Result<Box<dyn crate::device::observer::GpuObserver>, String> {
    Err("built without `--features hip`, which has the ioctl".into())
}

/// One compiled code object: every kernel of `kernels/`, for one target id.
#[derive(Clone, Copy, Debug)]
pub struct CodeObject {
    /// The target id it was built for, as given in `SVMCONF_HIP_TARGETS`: `gfx942:xnack+`.
    pub target: &'static str,
    pub bytes: &'static [u8],
}

/// The code objects build.rs compiled and embedded, in the order of `SVMCONF_HIP_TARGETS`.
#[cfg(feature = "hip")]
pub const CODE_OBJECTS: &[CodeObject] = include!(concat!(env!("OUT_DIR"), "/hip_code_objects.rs"));

/// No embedded code object runs on the device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no kernels for {device}: this svmconf was built for {built}; rebuild with \
     SVMCONF_HIP_TARGETS={processor}:xnack+,{processor}:xnack-,... (cargo build --features hip)"
)]
pub struct NoCodeObject {
    pub device: String,
    pub processor: String,
    pub built: String,
}

/// The code object of `objects` that `device` runs, by the rule in [`target`]'s docs.
pub fn select_code_object<'a>(
    device: &TargetId,
    objects: &'a [CodeObject],
) -> Result<&'a CodeObject, NoCodeObject> {
    // A target build.rs accepted always parses; one that did not is simply never chosen.
    let parsed: Vec<(usize, TargetId)> = objects
        .iter()
        .enumerate()
        .filter_map(|(i, o)| TargetId::parse(o.target).ok().map(|t| (i, t)))
        .collect();
    let ids: Vec<TargetId> = parsed.iter().map(|(_, t)| t.clone()).collect();
    match target::select(device, &ids) {
        Some(k) => Ok(&objects[parsed[k].0]),
        None => Err(NoCodeObject {
            device: device.to_string(),
            processor: device.processor.clone(),
            built: if objects.is_empty() {
                "no target".into()
            } else {
                objects
                    .iter()
                    .map(|o| o.target)
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OBJECTS: &[CodeObject] = &[
        CodeObject {
            target: "gfx906:xnack+",
            bytes: b"906+",
        },
        CodeObject {
            target: "gfx942:xnack+",
            bytes: b"942+",
        },
        CodeObject {
            target: "gfx942:xnack-",
            bytes: b"942-",
        },
    ];

    #[test]
    fn the_device_gets_the_bytes_of_its_target() {
        let dev = TargetId::parse("gfx942:sramecc+:xnack-").unwrap();
        assert_eq!(select_code_object(&dev, OBJECTS).unwrap().bytes, b"942-");
        let dev = TargetId::parse("gfx906:sramecc-:xnack+").unwrap();
        assert_eq!(select_code_object(&dev, OBJECTS).unwrap().bytes, b"906+");
    }

    #[test]
    fn a_device_without_kernels_is_told_how_to_build_them() {
        let dev = TargetId::parse("gfx906:xnack-").unwrap();
        let e = select_code_object(&dev, OBJECTS).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no kernels for gfx906:xnack-: this svmconf was built for gfx906:xnack+, \
             gfx942:xnack+, gfx942:xnack-; rebuild with \
             SVMCONF_HIP_TARGETS=gfx906:xnack+,gfx906:xnack-,... (cargo build --features hip)"
        );
        assert!(select_code_object(&dev, &[]).unwrap_err().built == "no target");
    }
}
