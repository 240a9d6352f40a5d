//! What the runner watches on the machine beside the cases: the kernel log (`/dev/kmsg`), the
//! kernel's taint, and system memory (`/proc/meminfo`). The per-GPU observers a hardware
//! backend opens (KFD SMI events, sysfs) are the device's, in `device/amd/`.

pub mod kmsg;
pub mod meminfo;
pub mod taint;
