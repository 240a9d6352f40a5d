//! What the host can observe of an AMD GPU without touching it through HIP, starting with KFD
//! SMI events.
//!
//! Plain Rust with no `unsafe` and no ROCm, built on every machine, so that each parser is
//! tested here against the exact text the kernel writes. The hip backend (src/device/hip/) owns
//! the one ioctl and the file descriptors; it hands the bytes to these modules.

pub mod smi;
