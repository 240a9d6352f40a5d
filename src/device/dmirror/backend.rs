//! The kernel's device-private test driver as a [`Backend`]: a fresh device per case on its
//! node, or, without the node, a run in which every case skips saying which module is missing.

use super::{missing_info, node, probe, Node, Probe};
use crate::device::backend::{self, Backend, BackendError, Kind, OpenError, Settings};
use crate::device::Device;
use crate::fixtures::Loaded;
use crate::model::capability::DeviceInfo;
use crate::model::profile::Profile;

pub const KIND: Kind = Kind {
    name: "dmirror",
    open,
    detect: None,
};

struct Dmirror {
    profile: Loaded<Profile>,
    info: DeviceInfo,
    node: Option<Node>,
    unavailable: Option<String>,
}

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
    Ok(Box::new(match found {
        Probe::Node(n) => Dmirror {
            profile,
            info: n.info(),
            node: Some(n),
            unavailable: None,
        },
        Probe::Missing(why) => Dmirror {
            profile,
            info: missing_info(&path),
            node: None,
            unavailable: Some(why),
        },
    }))
}

impl Backend for Dmirror {
    fn name(&self) -> &'static str {
        KIND.name
    }

    fn profile(&self) -> &Loaded<Profile> {
        &self.profile
    }

    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn describe(&self) -> Option<String> {
        self.node.as_ref().map(Node::describe)
    }

    fn hardware(&self) -> bool {
        true
    }

    fn unavailable(&self) -> Option<&str> {
        self.unavailable.as_deref()
    }

    fn open(&self, _seed: u64) -> Result<Box<dyn Device>, OpenError> {
        match (&self.node, &self.unavailable) {
            (Some(node), _) => node
                .open()
                .map_err(|e| OpenError::Failed(format!("cannot open {}: {e}", self.info.name))),
            (None, Some(why)) => Err(OpenError::Unavailable(why.clone())),
            (None, None) => Err(OpenError::Failed(
                "backend dmirror has no node to open".into(),
            )),
        }
    }
}
