//! The kernel's virtual SVM GPU as a [`Backend`]: a fresh device per case on its render node,
//! or, without the node, a run in which every case skips saying which driver is missing. For
//! `--backend auto` it is picked where sysfs shows its render node.

use super::{choice, find, missing_info, probe, Choice, Node, Probe, Roots};
use crate::device::backend::{
    self, Backend, BackendError, Detected, Hardware, Kind, Note, Settings, Target,
};
use crate::device::{Device, DeviceError};

pub const KIND: Kind = Kind {
    name: "vsvm",
    open,
    detect: Some(detect),
};

fn open(s: &Settings) -> Result<Box<dyn Backend>, BackendError> {
    open_on(s, &Roots::this_machine())
}

/// Opens the backend with the render nodes of `roots` (the machine's, or a fake tree).
fn open_on(s: &Settings, roots: &Roots) -> Result<Box<dyn Backend>, BackendError> {
    backend::refuse_foreign(
        s,
        &[],
        "--sim-break, --sim-faults, --amdgpu-trace: not for --backend vsvm (the first two \
         break only the reference device, the last reads amdgpu's trace)",
    )?;
    let chosen = choice(s.device.as_deref(), roots).map_err(BackendError::Refused)?;
    let profile = backend::load_profile(s, "vsvm")?;
    let found = probe(&chosen, roots)
        .map_err(|why| BackendError::Refused(format!("--backend vsvm: {why}")))?;
    let (info, target) = match found {
        Probe::Node(n) => (n.info(), Ok(n)),
        Probe::Missing(why) => (missing_info(&chosen), Err(why)),
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

/// `auto`: the backend where sysfs shows a vsvm render node (or `--device` names one that is
/// there); nothing otherwise, so that another backend or the reference device is tried.
fn detect(s: &Settings) -> Detected {
    detect_on(s, &Roots::this_machine())
}

fn detect_on(s: &Settings, roots: &Roots) -> Detected {
    let here = match choice(s.device.as_deref(), roots) {
        Ok(Choice::Find) => find(roots).is_some(),
        Ok(Choice::Node(path)) => super::open_node(&path).is_ok(),
        // A device another backend takes (a HIP index, a PCI bus id).
        Err(_) => false,
    };
    if !here {
        return Ok(None);
    }
    open_on(s, roots).map(Some)
}

impl Target for Node {
    fn open(&self) -> Result<Box<dyn Device>, DeviceError> {
        Node::open(self)
    }

    fn describe(&self) -> String {
        Node::describe(self)
    }

    fn notes(&self) -> Vec<Note> {
        Node::notes(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn settings(device: Option<&str>) -> Settings {
        Settings {
            backend: Some("vsvm".into()),
            fixtures: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures"),
            device: device.map(String::from),
            seed: 1,
            ..Settings::default()
        }
    }

    fn empty_machine(dir: &Path) -> Roots {
        Roots {
            dev_dri: dir.join("dev/dri"),
            sys_class_drm: dir.join("sys/class/drm"),
            platform_driver: dir.join("sys/bus/platform/drivers/vsvm"),
        }
    }

    #[test]
    fn without_the_node_the_backend_opens_and_every_case_skips_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let b = open_on(&settings(None), &empty_machine(dir.path())).expect("opens");
        assert_eq!(b.name(), "vsvm");
        assert_eq!(b.profile().value.name, "vsvm", "its own profile by default");
        assert_eq!(b.unavailable(), Some(super::super::MISSING));
        assert!(b.hardware());
        assert_eq!(b.default_threads(), Some(1));
        assert!(b.isolates_by_default());
        match b.open(1) {
            Err(backend::OpenError::Unavailable(why)) => assert_eq!(why, super::super::MISSING),
            other => panic!("{:?}", other.map(|_| ())),
        }
        assert_eq!(b.info().backend, "vsvm");
        assert!(b.notes().is_empty());
        // Nothing to ask when there is no device.
        backend::check_capabilities(b.as_ref(), 1).expect("nothing to check");
    }

    #[test]
    fn auto_passes_over_vsvm_where_there_is_no_node_or_the_device_is_anothers() {
        let dir = tempfile::tempdir().unwrap();
        let m = empty_machine(dir.path());
        assert!(detect_on(&settings(None), &m).unwrap().is_none());
        assert!(detect_on(&settings(Some("0000:c1:00.0")), &m)
            .unwrap()
            .is_none());
        assert!(detect_on(&settings(Some("renderD128")), &m)
            .unwrap()
            .is_none());
    }

    #[test]
    fn foreign_options_and_a_device_that_is_no_render_node_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let m = empty_machine(dir.path());
        let s = Settings {
            sim_break: Some("x".into()),
            ..settings(None)
        };
        let e = open_on(&s, &m).err().expect("refused").to_string();
        assert!(e.contains("not for --backend vsvm"), "{e}");
        let e = open_on(&settings(Some("gpu0")), &m)
            .err()
            .expect("refused")
            .to_string();
        assert!(
            e.contains("expected a render node for --backend vsvm"),
            "{e}"
        );
        let file = dir.path().join("renderD128");
        std::fs::write(&file, b"").unwrap();
        let e = open_on(&settings(file.to_str()), &m)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.starts_with("--backend vsvm: "), "{e}");
        assert!(e.contains("is not a DRM node"), "{e}");
    }
}
