//! The kernel's device-private test driver as a [`Backend`]: a fresh device per case on its
//! node, or, without the node, a run in which every case skips saying which module is missing.

use super::{missing_info, node, probe, Node, Probe};
use crate::device::backend::{self, Backend, BackendError, Hardware, Kind, Settings, Target};
use crate::device::{Device, DeviceError};

pub const KIND: Kind = Kind {
    name: "dmirror",
    open,
    detect: None,
};

fn open(s: &Settings) -> Result<Box<dyn Backend>, BackendError> {
    backend::refuse_foreign(
        s,
        &[],
        "--sim-break, --sim-faults, --amdgpu-trace: not for --backend dmirror (the first two \
         break only the reference device, the last reads amdgpu's trace)",
    )?;
    let path = node(s.device.as_deref()).map_err(BackendError::Refused)?;
    let profile = backend::load_profile(s, "dmirror")?;
    let found =
        probe(&path).map_err(|why| BackendError::Refused(format!("--backend dmirror: {why}")))?;
    let (info, target) = match found {
        Probe::Node(n) => (n.info(), Ok(n)),
        Probe::Missing(why) => (missing_info(&path), Err(why)),
    };
    Ok(Box::new(Hardware {
        name: KIND.name,
        profile,
        info,
        target,
        place_at: s.place_at,
        placed_kinds: crate::device::host::HOST_MAPPED_KINDS,
    }))
}

impl Target for Node {
    fn open(&self) -> Result<Box<dyn Device>, DeviceError> {
        Node::open(self)
    }

    fn describe(&self) -> String {
        Node::describe(self)
    }
}
