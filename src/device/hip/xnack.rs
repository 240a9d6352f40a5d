//! Whether GPU page faults are retried (XNACK on), and why: the three places that decide it.
//!
//! - The target id the runtime reports for the device (`gfx942:sramecc+:xnack+`) is what this
//!   process runs with: ROCr asks KFD for the process's XNACK mode. It is the verdict.
//! - `HSA_XNACK` in the environment is what the process asked for (`1` on, `0` off); gfx942
//!   switches XNACK per process, so this alone turns it on there.
//! - `/sys/module/amdgpu/parameters/noretry` is the kernel's default: `0` lets GPUs retry
//!   faults, `1` forbids it, `-1` leaves it to the ASIC (gfx906 then runs with retry off, so
//!   it needs `amdgpu.noretry=0` on the kernel command line).
//!
//! The last two only explain the first; a case's need for XNACK is decided by the target id.

use std::fmt;

/// The XNACK state of one device in this process, with what decided it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XnackState {
    /// The processor of the device's target id (`gfx942`).
    pub processor: String,
    /// The target id's `xnack+` / `xnack-`; `None` when it names no XNACK mode.
    pub target: Option<bool>,
    /// `HSA_XNACK` as set in the environment, `None` when unset.
    pub hsa_xnack: Option<String>,
    /// `amdgpu.noretry` as sysfs shows it, `None` when it cannot be read.
    pub noretry: Option<String>,
}

impl XnackState {
    /// Fault-driven migration can happen: the runtime reports `xnack+`.
    pub fn on(&self) -> bool {
        self.target == Some(true)
    }

    /// What to do to turn XNACK on for this processor, given what is set now.
    pub fn how_to_turn_on(&self) -> String {
        let hsa_on = self.hsa_xnack.as_deref().map(str::trim) == Some("1");
        let noretry = self.noretry.as_deref().map(str::trim);
        let mut steps = Vec::new();
        // GC 9.4.x (gfx940-gfx942) and gfx90a choose per process; the others need retry
        // faults enabled for the whole driver first.
        let per_process = matches!(
            self.processor.as_str(),
            "gfx90a" | "gfx940" | "gfx941" | "gfx942"
        );
        if !per_process && noretry != Some("0") {
            steps.push(format!(
                "boot with amdgpu.noretry=0 (it is {})",
                noretry.unwrap_or("unreadable")
            ));
        }
        if !hsa_on {
            steps.push("set HSA_XNACK=1 in the environment of the run".to_string());
        }
        if steps.is_empty() {
            steps.push(
                "HSA_XNACK=1 and amdgpu.noretry=0 are set, yet the runtime reports XNACK off: \
                 check that the kernel supports XNACK on this GPU (dmesg, the KFD topology)"
                    .to_string(),
            );
        }
        steps.join(" and ")
    }
}

impl fmt::Display for XnackState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.target {
            Some(true) => "on",
            Some(false) => "off",
            None => "unknown (the target id names no xnack mode)",
        };
        let hsa = match &self.hsa_xnack {
            Some(v) => format!("HSA_XNACK={}", v.trim()),
            None => "HSA_XNACK unset".to_string(),
        };
        let noretry = match &self.noretry {
            Some(v) => format!("amdgpu.noretry={}", v.trim()),
            None => "amdgpu.noretry unreadable".to_string(),
        };
        write!(f, "XNACK {state} ({hsa}, {noretry})")?;
        if !self.on() {
            write!(f, "; to turn it on: {}", self.how_to_turn_on())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(
        processor: &str,
        target: Option<bool>,
        hsa: Option<&str>,
        noretry: Option<&str>,
    ) -> XnackState {
        XnackState {
            processor: processor.into(),
            target,
            hsa_xnack: hsa.map(String::from),
            noretry: noretry.map(String::from),
        }
    }

    #[test]
    fn the_target_id_decides() {
        assert!(state("gfx942", Some(true), None, None).on());
        assert!(!state("gfx942", Some(false), Some("1"), Some("0")).on());
        assert!(!state("gfx942", None, Some("1"), Some("0")).on());
    }

    #[test]
    fn gfx942_needs_only_the_environment() {
        let s = state("gfx942", Some(false), None, Some("-1\n"));
        assert_eq!(
            s.how_to_turn_on(),
            "set HSA_XNACK=1 in the environment of the run"
        );
        assert_eq!(
            s.to_string(),
            "XNACK off (HSA_XNACK unset, amdgpu.noretry=-1); to turn it on: set HSA_XNACK=1 in \
             the environment of the run"
        );
    }

    #[test]
    fn gfx906_needs_the_kernel_parameter_too() {
        let s = state("gfx906", Some(false), Some("1"), Some("-1"));
        assert_eq!(s.how_to_turn_on(), "boot with amdgpu.noretry=0 (it is -1)");
        let none = state("gfx906", Some(false), None, None);
        assert_eq!(
            none.how_to_turn_on(),
            "boot with amdgpu.noretry=0 (it is unreadable) and set HSA_XNACK=1 in the \
             environment of the run"
        );
    }

    #[test]
    fn on_says_nothing_about_turning_it_on() {
        let s = state("gfx942", Some(true), Some("1"), Some("-1"));
        assert_eq!(s.to_string(), "XNACK on (HSA_XNACK=1, amdgpu.noretry=-1)");
    }
}
