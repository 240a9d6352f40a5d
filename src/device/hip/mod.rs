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
//! `ffi` (the only `unsafe`), `device` ([`HipDevice`], discovery), and [`CODE_OBJECTS`], the
//! kernels of `kernels/` compiled by build.rs for every target of `SVMCONF_HIP_TARGETS`.
//!
//! Observers: [`OBSERVERS`] is the hook where kernel-side evidence (KFD SMI events, sysfs
//! VRAM in use, debugfs reset: `src/device/amd/`) plugs in; see `device::observer`.

pub mod args;
pub mod error;
pub mod pci;
pub mod target;
pub mod xnack;

#[cfg(feature = "hip")]
mod device;
#[cfg(feature = "hip")]
mod ffi;

#[cfg(feature = "hip")]
pub use device::{discover, DiscoverError, Found, HipDevice};

use super::observer::ObserverFactory;
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
/// wins: VRAM in use from sysfs. KFD SMI events need the ioctl in `ffi` and a reader thread
/// (the parsers are in `device::amd::smi`); not opened yet.
pub const OBSERVERS: &[ObserverFactory] = &[crate::device::amd::observers::sysfs_vram];

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
