//! HIP as a [`Backend`]: the GPU `--device` names (else the first) and the profile whose `arch`
//! is its processor, or, without a GPU, a run in which every case skips with what HIP said
//! (planned with `--profile`, else the reference profile, since no device says which).

use std::path::Path;

use super::pci::DeviceSelector;
use super::{no_gpu_info, probe, Gpu, Probe, ProbeError};
use crate::device::amd::ObserverOptions;
use crate::device::backend::{
    self, Backend, BackendError, Detected, Hardware, Kind, Note, Settings, Target,
};
use crate::device::{AllocKind, Device, DeviceError};
use crate::fixtures;

pub const KIND: Kind = Kind {
    name: "hip",
    open,
    detect: Some(detect),
};

const NOT_BUILT: &str = "--backend hip: this svmconf was built without `--features hip`; rebuild \
     it with `cargo build --release --features hip` on a machine with ROCm (libamdhip64) and \
     clang-19 or hipcc, or run on the reference device with --backend sim";

/// The GPU `--device` names, else the first.
fn selector(s: &Settings) -> Result<DeviceSelector, BackendError> {
    Ok(match &s.device {
        None => DeviceSelector::First,
        Some(d) => DeviceSelector::parse(d).ok_or_else(|| {
            BackendError::Refused(format!(
                "--device: expected a HIP device index (0, 1, ...) or a PCI bus id \
                 (0000:c1:00.0), got `{d}`"
            ))
        })?,
    })
}

fn open(s: &Settings) -> Result<Box<dyn Backend>, BackendError> {
    match probe(&selector(s)?) {
        Ok(found) => with(s, found),
        Err(ProbeError::NotBuilt) => Err(BackendError::Refused(NOT_BUILT.into())),
        Err(ProbeError::Unusable(why)) => {
            Err(BackendError::Refused(format!("--backend hip: {why}")))
        }
    }
}

/// `auto` takes a GPU HIP finds; no GPU, or no HIP in this build, leaves it to the next.
fn detect(s: &Settings) -> Detected {
    match probe(&selector(s)?) {
        Ok(Probe::Gpu(gpu)) => with(s, Probe::Gpu(gpu)).map(Some),
        Ok(Probe::NoGpu(_)) | Err(ProbeError::NotBuilt) => Ok(None),
        // A GPU is there: running the reference device instead would hide that.
        Err(ProbeError::Unusable(why)) => Err(BackendError::Refused(format!(
            "--backend auto found an AMD GPU it cannot use: {why}; run with --backend sim for \
             the reference device"
        ))),
    }
}

fn with(s: &Settings, found: Probe) -> Result<Box<dyn Backend>, BackendError> {
    backend::refuse_foreign(
        s,
        &["--amdgpu-trace"],
        "--sim-break, --sim-faults: only the reference device (--backend sim) can be broken on \
         purpose",
    )?;
    let (profile, info, target) = match found {
        Probe::Gpu(gpu) => {
            let profile = backend::profile_for(s, gpu.processor(), KIND.name)?;
            let mut gpu = *gpu;
            if s.amdgpu_trace {
                let trace = fixtures::load_with(
                    &s.fixtures,
                    fixtures::AMDGPU_TRACE_FILE,
                    crate::device::amd::dyndbg::TracePatterns::parse,
                )?;
                gpu.set_observer_options(ObserverOptions {
                    amdgpu_trace: Some(trace.value),
                });
            }
            (profile, gpu.info(), Ok(gpu))
        }
        Probe::NoGpu(why) => (backend::load_profile(s, "sim")?, no_gpu_info(), Err(why)),
    };
    Ok(Box::new(Hardware {
        name: KIND.name,
        profile,
        info,
        target,
        place_at: s.place_at,
        placed_kinds: &[
            AllocKind::Mmap,
            AllocKind::Malloc,
            AllocKind::Shared,
            AllocKind::File,
        ],
    }))
}

impl Target for Gpu {
    fn open(&self) -> Result<Box<dyn Device>, DeviceError> {
        Gpu::open(self)
    }

    fn describe(&self) -> String {
        Gpu::describe(self)
    }

    /// The amdgpu module parameters, then each observer: opened, and from what, or not, and why.
    fn notes(&self) -> Vec<Note> {
        std::iter::once(amdgpu_module_params(Path::new(
            crate::device::amd::SYSFS_ROOT,
        )))
        .chain(self.observer_states().into_iter().map(|s| Note {
            name: s.name.into(),
            available: s.available,
            detail: s.detail,
        }))
        .chain(std::iter::once(Gpu::pagemap_note(self)))
        .collect()
    }
}

/// The amdgpu module parameters, for run.json: the ones results depend on first, then the rest.
fn amdgpu_module_params(sys_root: &Path) -> Note {
    use crate::device::amd::modparams::{read_module_params, ParamValue};
    match read_module_params(sys_root) {
        Ok(p) => {
            let shown = |v: &ParamValue| match v {
                ParamValue::Value(v) => v.clone(),
                ParamValue::Unreadable(why) => format!("({why})"),
            };
            let notable: Vec<String> = p
                .notable()
                .into_iter()
                .map(|(n, v)| format!("{}={}", n.name, v.map_or("(absent)".into(), shown)))
                .collect();
            let rest: Vec<String> = p
                .params
                .iter()
                .filter(|(k, _)| !notable.iter().any(|n| n.starts_with(&format!("{k}="))))
                .map(|(k, v)| format!("{k}={}", shown(v)))
                .collect();
            Note {
                name: "amdgpu_module_params".into(),
                available: true,
                detail: format!("{}; others: {}", notable.join(" "), rest.join(" ")),
            }
        }
        Err(e) => Note {
            name: "amdgpu_module_params".into(),
            available: false,
            detail: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_json_gets_the_notable_module_parameters_first_and_says_when_there_are_none() {
        let sys = tempfile::tempdir().expect("a temporary folder");
        let params = sys.path().join("module/amdgpu/parameters");
        std::fs::create_dir_all(&params).expect("the parameters folder");
        std::fs::write(params.join("noretry"), "0\n").expect("a parameter");
        std::fs::write(params.join("lockup_timeout"), "10000\n").expect("a parameter");
        let note = amdgpu_module_params(sys.path());
        assert!(note.available);
        assert!(note.detail.starts_with("noretry=0 "), "{}", note.detail);
        assert!(
            note.detail.ends_with("others: lockup_timeout=10000"),
            "{}",
            note.detail
        );
        let none = amdgpu_module_params(&sys.path().join("elsewhere"));
        assert!(
            !none.available && none.detail.contains("elsewhere"),
            "{}",
            none.detail
        );
    }
}
