//! What the host can observe of an AMD GPU without touching it through HIP: KFD SMI events,
//! amdgpu's sysfs and module parameters, the series' dynamic-debug trace, and the debugfs reset.
//!
//! Plain Rust with no `unsafe` and no ROCm, built on every machine, so that each parser is
//! tested here against the exact text the kernel writes. The hip backend (src/device/hip/) owns
//! the one ioctl and the file descriptors; it hands the bytes and paths to these modules. Every
//! root (`/sys`, `/sys/kernel/debug`) is a parameter, so tests build fake trees in a tempdir.

pub mod dyndbg;
pub mod eviction;
pub mod modparams;
pub mod observers;
pub mod reset;
pub mod smi;
pub mod smi_reader;
pub mod sysfs;
pub mod trace;

/// Where sysfs is mounted on a real machine.
pub const SYSFS_ROOT: &str = "/sys";
/// Where debugfs is mounted on a real machine (root only).
pub const DEBUGFS_ROOT: &str = "/sys/kernel/debug";

/// What the run asks of amdgpu's observers beyond the GPU's identity.
#[derive(Clone, Debug, Default)]
pub struct ObserverOptions {
    /// The series' dynamic-debug trace to turn on and read as migration evidence, from
    /// `fixtures/amdgpu-trace.yaml` (`--amdgpu-trace`): it writes to the kernel's dynamic debug
    /// control, so it is opt-in.
    pub amdgpu_trace: Option<dyndbg::TracePatterns>,
}
