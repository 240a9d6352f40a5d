//! `dmirror`: the suite on the Linux kernel's own device-private test driver (lib/test_hmm.c,
//! `/dev/hmm_dmirror0` and `1`, `CONFIG_TEST_HMM`), in the VM lab (lab/vm). No GPU: the real
//! mm migrate_device code that drm_pagemap stands on, driven through the driver's ioctls.
//!
//! How the Device trait maps onto it:
//! - allocations are memory of this process (anonymous private, shared, file, heap); the
//!   device has no allocator of its own, so `device` buffers do not exist here;
//! - a kernel runs on the CPU over data the device moves: a fill computes the pattern and the
//!   device WRITEs it, a verify has the device READ and compares (`kernels`). READ and WRITE
//!   map pages in place through hmm_range_fault and never migrate: the profile says so
//!   (`fixtures/profiles/dmirror.yaml`, `policy.gpu_fault_migrates: false`);
//! - prefetch to VRAM and to system are MIGRATE_TO_DEV and MIGRATE_TO_SYS;
//! - residency is SNAPSHOT: a page is in "VRAM" when the driver's device holds it
//!   device-private (DEV_PRIVATE_LOCAL), in system memory otherwise;
//! - a CPU access is a plain load or store; on a device-private page the kernel faults and the
//!   driver's migrate_to_ram brings that one page back;
//! - RELEASE evicts every device-private page: [`DmirrorDevice::release`], and every device
//!   ends with it so that the next case starts from empty device memory.
//!
//! What it cannot observe or do (capabilities off, the cases that need them skip with that
//! reason): migration events, VRAM in use, eviction transients, reset, device buffers, fork, a
//! second process, CPU work beside a running kernel (kernels run to completion at launch).
//!
//! The only `unsafe` is in `ffi` (and the host memory it shares with hip, `device::memory`);
//! `uapi` is the header as data and `kernels` the page commands each kernel makes (the
//! arithmetic, shared with vsvm, is `device::kernels::words`), both tested without the driver.

pub mod backend;
mod device;
#[allow(unsafe_code)]
mod ffi;
pub mod kernels;
pub mod uapi;

use std::path::{Path, PathBuf};

pub use device::{info, DmirrorDevice, DEVMEM_CHUNK_BYTES};

use super::host;
use super::{Device, DeviceError, DeviceInfo};

/// The node `--backend dmirror` opens unless `--device` names another.
pub const DEFAULT_NODE: &str = "/dev/hmm_dmirror0";

/// The node `--device` names: `N` for `/dev/hmm_dmirrorN`, or a path. `None`: the default.
pub fn node(device: Option<&str>) -> Result<PathBuf, String> {
    match device {
        None => Ok(PathBuf::from(DEFAULT_NODE)),
        Some(d) if !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(PathBuf::from(format!("/dev/hmm_dmirror{d}")))
        }
        Some(d) if d.contains('/') => Ok(PathBuf::from(d)),
        Some(d) => Err(format!(
            "--device: expected a test driver number (0, 1) or the path of its node \
             ({DEFAULT_NODE}), got `{d}`"
        )),
    }
}

/// The driver's node, found and openable: each case opens its own device on it.
#[derive(Clone, Debug)]
pub struct Node(PathBuf);

impl Node {
    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn info(&self) -> DeviceInfo {
        info(&self.0)
    }

    /// A fresh device on this node (one per case).
    pub fn open(&self) -> Result<Box<dyn Device>, DeviceError> {
        DmirrorDevice::open(&self.0).map(|d| Box::new(d) as Box<dyn Device>)
    }

    /// One line for the start of a run.
    pub fn describe(&self) -> String {
        format!(
            "Linux HMM test driver at {} ({} on {})",
            self.0.display(),
            "device-private memory",
            host::kernel_release()
        )
    }
}

/// What `--backend dmirror` found.
#[derive(Debug)]
pub enum Probe {
    Node(Node),
    /// No node: every case skips with this reason.
    Missing(String),
}

/// Why every case skips when `node` does not exist.
pub fn missing_reason(node: &Path) -> String {
    format!(
        "no {}: the kernel's test_hmm module (CONFIG_TEST_HMM) is not loaded",
        node.display()
    )
}

/// Looks for the driver's node; `Err` when it is there but cannot be opened (the message says
/// why and what to do).
pub fn probe(node: &Path) -> Result<Probe, String> {
    match std::fs::metadata(node) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Probe::Missing(missing_reason(node)))
        }
        _ => {}
    }
    device::open_node(node)
        .map(|_| Probe::Node(Node(node.to_path_buf())))
        .map_err(|e| e.to_string())
}

/// What a run without the driver reports as its device.
pub fn missing_info(node: &Path) -> DeviceInfo {
    DeviceInfo {
        name: format!("no HMM test driver ({})", node.display()),
        gpus: 0,
        vram_bytes: 0,
        caps: Default::default(),
        ..info(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(None, "/dev/hmm_dmirror0")]
    #[case(Some("1"), "/dev/hmm_dmirror1")]
    #[case(Some("/tmp/x/hmm"), "/tmp/x/hmm")]
    fn device_names_a_node(#[case] device: Option<&str>, #[case] want: &str) {
        assert_eq!(node(device).unwrap(), PathBuf::from(want));
    }

    #[test]
    fn a_device_that_is_neither_a_number_nor_a_path_is_refused() {
        let e = node(Some("0000:c1:00.0")).unwrap_err();
        assert!(e.contains("got `0000:c1:00.0`"), "{e}");
    }

    #[test]
    fn without_the_node_every_case_skips_saying_which_module_is_missing() {
        let gone = Path::new("/nonexistent/hmm_dmirror0");
        match probe(gone).unwrap() {
            Probe::Missing(why) => assert_eq!(
                why,
                "no /nonexistent/hmm_dmirror0: the kernel's test_hmm module (CONFIG_TEST_HMM) \
                 is not loaded"
            ),
            Probe::Node(n) => panic!("found {n:?}"),
        }
    }

    /// A device on a plain file in `dir` as its node: a file that exists is a node to open, and
    /// every driver command on it fails.
    fn fake_node(dir: &Path) -> Box<dyn Device> {
        let fake = dir.join("hmm_dmirror0");
        std::fs::write(&fake, b"").unwrap();
        let Probe::Node(n) = probe(&fake).unwrap() else {
            panic!("a file that exists is a node to open")
        };
        n.open().unwrap()
    }

    /// CPU threads touch the process's own memory and need no driver: a plain file as the node.
    #[test]
    fn cpu_threads_increment_every_page_of_the_process_memory() {
        let dir = tempfile::tempdir().unwrap();
        let mut dev = fake_node(dir.path());
        host::checks::cpu_threads_count_every_touch_and_fault_on_a_hole(dev.as_mut());
    }

    #[test]
    fn a_node_that_is_there_but_not_the_driver_opens_and_fails_at_the_first_command() {
        let dir = tempfile::tempdir().unwrap();
        let mut dev = fake_node(dir.path());
        let buf = dev.alloc(crate::device::AllocKind::Mmap, 4096).unwrap();
        let e = dev
            .residency(buf, buf.all())
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(e.contains("HMM_DMIRROR_SNAPSHOT of pages [0, 1)"), "{e}");
    }
}
