//! The reference device as a [`Backend`]: a fresh [`SimDevice`] per case from the profile and
//! the case's seed, broken on purpose where `--sim-break` or `--sim-faults` say so.

use std::path::PathBuf;

use super::faults::Plan;
use super::{Breaks, SimDevice};
use crate::device::backend::{self, Backend, BackendError, Kind, OpenError, Settings};
use crate::device::Device;
use crate::fixtures::Loaded;
use crate::model::capability::DeviceInfo;
use crate::model::profile::Profile;

pub const KIND: Kind = Kind {
    name: "sim",
    open,
    detect: None,
};

struct Sim {
    profile: Loaded<Profile>,
    info: DeviceInfo,
    breaks: Breaks,
    /// `--sim-faults`: put in force on every device a case opens.
    faults: Option<Plan>,
    /// Where the fault plan's kernel_log rules write.
    kmsg: Option<PathBuf>,
}

fn open(s: &Settings) -> Result<Box<dyn Backend>, BackendError> {
    if let Some(d) = &s.device {
        return Err(BackendError::Refused(format!(
            "--device {d}: only --backend hip (or auto finding a GPU), dmirror and vsvm have \
             devices to choose"
        )));
    }
    if let Some(at) = s.place_at {
        return Err(BackendError::Refused(format!(
            "--place-at {at:#x}: the reference device places its allocations at simulated \
             addresses that are the same in every run, so a failure that depends on them repeats \
             without it; it is for --backend hip, dmirror and vsvm"
        )));
    }
    if s.amdgpu_trace {
        return Err(BackendError::Refused(
            "--amdgpu-trace: the reference device's migrations do not happen in the kernel, so \
             there is no trace to read; it is for --backend hip"
                .into(),
        ));
    }
    let profile = backend::load_profile(s, "sim")?;
    let breaks = Breaks::parse(s.sim_break.as_deref().unwrap_or(""))
        .map_err(|e| BackendError::Refused(format!("--sim-break: {e}")))?;
    let dev = SimDevice::new(&profile.value, s.seed, breaks)
        .map_err(|e| BackendError::Refused(format!("--profile {}: {e}", profile.value.name)))?;
    let faults = match &s.sim_faults {
        None => None,
        Some(file) => {
            let largest_chunk = profile.value.policy.chunk_sizes.iter().max().copied();
            let migration_pages = largest_chunk.map_or(super::faults::MIGRATION_PAGES, |c| {
                c / crate::device::PAGE_SIZE
            });
            let plan = Plan::load_for(file, migration_pages)
                .map_err(|e| BackendError::Refused(format!("--sim-faults: {e}")))?;
            if plan.logs() && s.kmsg.is_none() {
                return Err(BackendError::Refused(format!(
                    "--sim-faults {}: its kernel_log rules write kernel log lines; give the \
                     file they go to and the runner reads with --kmsg FILE",
                    file.display()
                )));
            }
            Some(plan)
        }
    };
    Ok(Box::new(Sim {
        info: dev.info().clone(),
        profile,
        breaks,
        faults,
        kmsg: s.kmsg.clone(),
    }))
}

impl Backend for Sim {
    fn name(&self) -> &'static str {
        KIND.name
    }

    fn profile(&self) -> &Loaded<Profile> {
        &self.profile
    }

    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn hardware(&self) -> bool {
        false
    }

    fn open(&self, seed: u64) -> Result<Box<dyn Device>, OpenError> {
        let mut dev = SimDevice::new(&self.profile.value, seed, self.breaks)
            .map_err(|e| OpenError::Failed(format!("cannot open the reference device: {e}")))?;
        if let Some(plan) = &self.faults {
            dev.set_faults(plan.clone(), seed, self.kmsg.clone());
        }
        Ok(Box::new(dev))
    }

    /// The second process of a case gets the device as the profile and breaks make it; the
    /// fault plan stays with the case's own.
    fn open_served(&self, seed: u64) -> Result<Box<dyn Device>, OpenError> {
        SimDevice::new(&self.profile.value, seed, self.breaks)
            .map(|d| Box::new(d) as Box<dyn Device>)
            .map_err(|e| OpenError::Failed(e.to_string()))
    }
}
