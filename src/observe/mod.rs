//! What the runner watches on the machine beside the cases: the kernel log (`/dev/kmsg`), the
//! kernel's taint, system memory (`/proc/meminfo`), and where this process's pages are by its page
//! tables (`/proc/self/pagemap`, decoded in [`pagemap`]). The per-GPU observers a hardware
//! backend opens (KFD SMI events, sysfs) are the device's, in `device/amd/`.

pub mod kmsg;
pub mod meminfo;
pub mod pagemap;
pub mod taint;
