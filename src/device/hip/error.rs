//! HIP status codes as svmconf reports them: the call that failed, the code, its name and the
//! runtime's text.
//!
//! Codes travel as plain `i32`, never as a Rust enum: ROCm 6 and 7 return codes that HIP 5.4
//! (hip-sys's bindings) does not know (911 and up, 1054 changed meaning), and an unknown value
//! in a Rust enum is undefined behaviour. [`error_name`] names every code of the ROCm 7.x
//! header; the runtime's own `hipGetErrorName` is preferred when it answers.

use std::fmt;

/// A failed HIP call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{call} failed: {name} ({code}){}", text_suffix(.text))]
pub struct HipError {
    /// The HIP function, as written in C: `hipMallocManaged`.
    pub call: &'static str,
    pub code: i32,
    /// `hipErrorOutOfMemory`; from the runtime, else from [`error_name`].
    pub name: String,
    /// The runtime's `hipGetErrorString`, empty when it has none.
    pub text: String,
}

fn text_suffix(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

/// `hipSuccess`.
pub const SUCCESS: i32 = 0;
/// `hipErrorOutOfMemory`.
pub const OUT_OF_MEMORY: i32 = 2;
/// `hipErrorNoDevice`: what hipGetDeviceCount says on a machine without an AMD GPU.
pub const NO_DEVICE: i32 = 100;
/// `hipErrorNotReady`: hipEventQuery's "not yet", not a failure.
pub const NOT_READY: i32 = 600;

/// Every `hipError_t` of the ROCm 7.x header (rocm-systems, projects/hip), by value. Values
/// 0..=1053 are unchanged since HIP 5.4 (hip-sys's bindings; a test checks those names). The
/// aliases the header keeps for old names (hipErrorMemoryAllocation = 2, ...) are left out:
/// one name per value.
const NAMES: &[(i32, &str)] = &[
    (0, "hipSuccess"),
    (1, "hipErrorInvalidValue"),
    (2, "hipErrorOutOfMemory"),
    (3, "hipErrorNotInitialized"),
    (4, "hipErrorDeinitialized"),
    (5, "hipErrorProfilerDisabled"),
    (6, "hipErrorProfilerNotInitialized"),
    (7, "hipErrorProfilerAlreadyStarted"),
    (8, "hipErrorProfilerAlreadyStopped"),
    (9, "hipErrorInvalidConfiguration"),
    (12, "hipErrorInvalidPitchValue"),
    (13, "hipErrorInvalidSymbol"),
    (17, "hipErrorInvalidDevicePointer"),
    (21, "hipErrorInvalidMemcpyDirection"),
    (35, "hipErrorInsufficientDriver"),
    (52, "hipErrorMissingConfiguration"),
    (53, "hipErrorPriorLaunchFailure"),
    (98, "hipErrorInvalidDeviceFunction"),
    (100, "hipErrorNoDevice"),
    (101, "hipErrorInvalidDevice"),
    (200, "hipErrorInvalidImage"),
    (201, "hipErrorInvalidContext"),
    (202, "hipErrorContextAlreadyCurrent"),
    (205, "hipErrorMapFailed"),
    (206, "hipErrorUnmapFailed"),
    (207, "hipErrorArrayIsMapped"),
    (208, "hipErrorAlreadyMapped"),
    (209, "hipErrorNoBinaryForGpu"),
    (210, "hipErrorAlreadyAcquired"),
    (211, "hipErrorNotMapped"),
    (212, "hipErrorNotMappedAsArray"),
    (213, "hipErrorNotMappedAsPointer"),
    (214, "hipErrorECCNotCorrectable"),
    (215, "hipErrorUnsupportedLimit"),
    (216, "hipErrorContextAlreadyInUse"),
    (217, "hipErrorPeerAccessUnsupported"),
    (218, "hipErrorInvalidKernelFile"),
    (219, "hipErrorInvalidGraphicsContext"),
    (300, "hipErrorInvalidSource"),
    (301, "hipErrorFileNotFound"),
    (302, "hipErrorSharedObjectSymbolNotFound"),
    (303, "hipErrorSharedObjectInitFailed"),
    (304, "hipErrorOperatingSystem"),
    (400, "hipErrorInvalidHandle"),
    (401, "hipErrorIllegalState"),
    (500, "hipErrorNotFound"),
    (600, "hipErrorNotReady"),
    (700, "hipErrorIllegalAddress"),
    (701, "hipErrorLaunchOutOfResources"),
    (702, "hipErrorLaunchTimeOut"),
    (704, "hipErrorPeerAccessAlreadyEnabled"),
    (705, "hipErrorPeerAccessNotEnabled"),
    (708, "hipErrorSetOnActiveProcess"),
    (709, "hipErrorContextIsDestroyed"),
    (710, "hipErrorAssert"),
    (712, "hipErrorHostMemoryAlreadyRegistered"),
    (713, "hipErrorHostMemoryNotRegistered"),
    (719, "hipErrorLaunchFailure"),
    (720, "hipErrorCooperativeLaunchTooLarge"),
    (801, "hipErrorNotSupported"),
    (900, "hipErrorStreamCaptureUnsupported"),
    (901, "hipErrorStreamCaptureInvalidated"),
    (902, "hipErrorStreamCaptureMerge"),
    (903, "hipErrorStreamCaptureUnmatched"),
    (904, "hipErrorStreamCaptureUnjoined"),
    (905, "hipErrorStreamCaptureIsolation"),
    (906, "hipErrorStreamCaptureImplicit"),
    (907, "hipErrorCapturedEvent"),
    (908, "hipErrorStreamCaptureWrongThread"),
    (910, "hipErrorGraphExecUpdateFailure"),
    // Not in HIP 5.4: a 5.4-generated Rust enum receiving these would be undefined behaviour.
    (911, "hipErrorInvalidChannelDescriptor"),
    (912, "hipErrorInvalidTexture"),
    (914, "hipErrorInvalidResourceType"),
    (915, "hipErrorInvalidResourceConfiguration"),
    (916, "hipErrorStreamDetached"),
    (999, "hipErrorUnknown"),
    (1052, "hipErrorRuntimeMemory"),
    (1053, "hipErrorRuntimeOther"),
    // HIP 5.4 called 1054 hipErrorTbd (the end marker); ROCm 7 gave it a meaning.
    (1054, "hipErrorInvalidClusterSize"),
];

/// Every value and name of the table, for checks against a runtime.
pub fn known() -> impl Iterator<Item = (i32, &'static str)> {
    NAMES.iter().copied()
}

/// The name of a `hipError_t` value, `None` for a value no header svmconf knows has.
pub fn error_name(code: i32) -> Option<&'static str> {
    NAMES.iter().find(|(c, _)| *c == code).map(|(_, n)| *n)
}

/// The name to report for `code`: what the runtime says when it says something useful, else
/// the table, else a placeholder that still carries the number.
pub fn name_for(code: i32, from_runtime: Option<&str>) -> String {
    // Older runtimes answer a code they do not know with "hipErrorUnknown"; the table may know.
    let vague = |n: &str| n.is_empty() || (n == "hipErrorUnknown" && code != 999);
    match from_runtime {
        Some(n) if !vague(n) => n.to_string(),
        _ => error_name(code)
            .map(str::to_string)
            .unwrap_or_else(|| format!("unknown hipError_t {code}")),
    }
}

/// What hipInit and hipGetDeviceCount said on a machine where no GPU can be used: the skip
/// reason of every case under `--backend hip`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoGpu {
    /// hipInit's failure, if it failed.
    pub init: Option<HipError>,
    /// hipGetDeviceCount's failure, if it failed.
    pub count: Option<HipError>,
    /// The device count it reported (0 when it failed).
    pub devices: i32,
}

impl fmt::Display for NoGpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no AMD GPU found: ")?;
        let said = |e: &HipError| format!("{} ({}{})", e.name, e.code, text_suffix(&e.text));
        match &self.init {
            Some(e) => write!(f, "hipInit returned {}", said(e))?,
            None => f.write_str("hipInit succeeded")?,
        }
        match &self.count {
            Some(e) => write!(f, "; hipGetDeviceCount returned {}", said(e)),
            None => write!(f, "; hipGetDeviceCount reported {} device(s)", self.devices),
        }?;
        f.write_str(
            " (is amdgpu loaded, /dev/kfd readable by this user, HIP_VISIBLE_DEVICES or \
             ROCR_VISIBLE_DEVICES set?)",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cover_old_and_new_codes() {
        assert_eq!(error_name(0), Some("hipSuccess"));
        assert_eq!(error_name(100), Some("hipErrorNoDevice"));
        assert_eq!(error_name(916), Some("hipErrorStreamDetached"));
        assert_eq!(error_name(1054), Some("hipErrorInvalidClusterSize"));
        assert_eq!(error_name(10), None);
        assert_eq!(error_name(-1), None);
    }

    #[test]
    fn every_value_has_one_name() {
        let mut codes: Vec<i32> = NAMES.iter().map(|(c, _)| *c).collect();
        let n = codes.len();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), n, "a value is listed twice");
        assert!(NAMES.iter().all(|(_, name)| name.starts_with("hip")));
    }

    #[test]
    fn the_runtime_name_wins_unless_it_only_says_unknown() {
        assert_eq!(
            name_for(2, Some("hipErrorOutOfMemory")),
            "hipErrorOutOfMemory"
        );
        assert_eq!(
            name_for(916, Some("hipErrorUnknown")),
            "hipErrorStreamDetached"
        );
        assert_eq!(name_for(999, Some("hipErrorUnknown")), "hipErrorUnknown");
        assert_eq!(name_for(100, None), "hipErrorNoDevice");
        assert_eq!(name_for(4242, Some("")), "unknown hipError_t 4242");
    }

    #[test]
    fn a_failed_call_names_the_call_the_code_and_the_text() {
        let e = HipError {
            call: "hipMallocManaged",
            code: 2,
            name: "hipErrorOutOfMemory".into(),
            text: "out of memory".into(),
        };
        assert_eq!(
            e.to_string(),
            "hipMallocManaged failed: hipErrorOutOfMemory (2): out of memory"
        );
    }

    #[test]
    fn no_gpu_says_what_each_call_returned() {
        let err = |call, code: i32| HipError {
            call,
            code,
            name: error_name(code).unwrap().into(),
            text: String::new(),
        };
        let both = NoGpu {
            init: Some(err("hipInit", 101)),
            count: Some(err("hipGetDeviceCount", 100)),
            devices: 0,
        };
        let s = both.to_string();
        assert!(
            s.starts_with(
                "no AMD GPU found: hipInit returned hipErrorInvalidDevice (101); \
                 hipGetDeviceCount returned hipErrorNoDevice (100)"
            ),
            "{s}"
        );
        let zero = NoGpu {
            init: None,
            count: None,
            devices: 0,
        };
        assert!(zero
            .to_string()
            .starts_with("no AMD GPU found: hipInit succeeded; hipGetDeviceCount reported 0"));
    }
}
