//! `vsvm`: the suite on the kernel's virtual SVM GPU (lab/vm/vsvm, `CONFIG_DRM_VSVM`), a DRM
//! render node with no hardware behind it, in the VM lab (`lab/vm/run --vsvm`). Unlike the HMM
//! test driver, it is the DRM SVM stack the series builds on: drm_gpusvm ranges of 2 MiB,
//! 64 KiB and 4 KiB, drm_pagemap migration into device-private "VRAM", and TTM, which evicts
//! SVM BOs to make room.
//!
//! How the Device trait maps onto it:
//! - allocations are memory of this process (anonymous private, shared, file, heap), each a
//!   VMA of its own aligned to the largest range chunk it holds; `device` buffers are
//!   CREATE_BO (VRAM pressure; their contents are not accessible);
//! - a kernel runs on the CPU over data the device moves: a fill computes the pattern and the
//!   GPU WRITEs it, a verify has the GPU READ and compares, an atomic increment is the GPU's
//!   ATOMIC_INC (`kernels`). Every access is a GPU fault that migrates per the range's
//!   preferred location, as the profile says (`fixtures/profiles/vsvm.yaml`);
//! - prefetch is PREFETCH; preferred location is SET_PREFERRED; residency is RESIDENCY; VRAM
//!   in use and the transient system memory of SVM evictions (the series' open issue) are
//!   QUERY; `evict_all` is EVICT_ALL, and every device ends with it;
//! - a CPU access is a plain load or store: on a VRAM page the kernel faults and drm_pagemap's
//!   migrate_to_ram brings back the page's whole device allocation.
//!
//! What it cannot observe or do (capabilities off, the cases that need them skip with that
//! reason; `device::CAPS` says why for each): migration events, fork, a second process, CPU
//! work beside a running kernel. Its reset is the driver's RESET, which keeps SVM data.
//!
//! `planted` turns the driver's planted bugs on and off for `svmconf planted-matrix`.
//!
//! The only `unsafe` is in `ffi` (and the host memory it shares with hip and dmirror,
//! `device::memory`); `uapi` is the header as data and `kernels` the adapter that turns the
//! shared launch interpreter's word reads and writes (`device::kernels::words`) into READ,
//! WRITE and ATOMIC_INC commands, both tested without the driver.

pub mod backend;
mod device;
#[allow(unsafe_code)]
mod ffi;
pub mod kernels;
pub mod planted;
pub mod uapi;

use std::path::{Path, PathBuf};

pub use device::{info, locations, open_node, placement, VsvmDevice, CAPS, CHUNK_SIZES};

use super::backend::Note;
use super::host;
use super::{Device, DeviceError, DeviceInfo};

/// Why every case skips when no render node of vsvm is found.
pub const MISSING: &str = "no vsvm render node: the kernel's virtual SVM GPU (CONFIG_DRM_VSVM, \
                           lab/vm/run --vsvm) is not loaded";

/// Where the machine shows its render nodes: the device nodes, the sysfs class of DRM, and the
/// platform driver's folder. A fake tree in the tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Roots {
    /// `/dev/dri`.
    pub dev_dri: PathBuf,
    /// `/sys/class/drm`: `renderD<N>/device` is the device behind each node.
    pub sys_class_drm: PathBuf,
    /// `/sys/bus/platform/drivers/vsvm`: the devices bound to a platform driver of that name.
    pub platform_driver: PathBuf,
}

impl Roots {
    pub fn this_machine() -> Roots {
        Roots {
            dev_dri: PathBuf::from("/dev/dri"),
            sys_class_drm: PathBuf::from("/sys/class/drm"),
            platform_driver: PathBuf::from("/sys/bus/platform/drivers/vsvm"),
        }
    }
}

/// Which node `--device` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    /// None: the first render node whose device is vsvm's.
    Find,
    /// This node, which must be vsvm's.
    Node(PathBuf),
}

/// The node `--device` names: `renderD<N>` (under `roots.dev_dri`) or a path; `None`: find it.
pub fn choice(device: Option<&str>, roots: &Roots) -> Result<Choice, String> {
    match device {
        None => Ok(Choice::Find),
        Some(d) if render_number(d).is_some() => Ok(Choice::Node(roots.dev_dri.join(d))),
        Some(d) if d.contains('/') => Ok(Choice::Node(PathBuf::from(d))),
        Some(d) => Err(format!(
            "--device: expected a render node for --backend vsvm (renderD128 or \
             /dev/dri/renderD128), got `{d}`"
        )),
    }
}

/// `N` of a file named `renderD<N>`.
fn render_number(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("renderD")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The render node of the first vsvm device sysfs shows, as its path under `roots.dev_dri`.
pub fn find(roots: &Roots) -> Option<PathBuf> {
    let entries = std::fs::read_dir(&roots.sys_class_drm).ok()?;
    let mut nodes: Vec<(u32, String)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            render_number(&name).map(|n| (n, name))
        })
        .collect();
    nodes.sort();
    nodes
        .into_iter()
        .find(|(_, name)| is_vsvm(&roots.sys_class_drm.join(name).join("device"), roots))
        .map(|(_, name)| roots.dev_dri.join(name))
}

/// Whether the device at `device` (a node's `device` link) is vsvm's. The driver registers a
/// platform *device* named `vsvm` and no platform driver (`vsvm_init`, vgem's pattern), so on
/// its kernel the device has no `driver` link and `/sys/bus/platform/drivers/vsvm` does not
/// exist; what says so there is the device's modalias, `platform:vsvm`. A `driver` link named
/// vsvm, or the device listed under the platform driver's folder, say so too, for a driver
/// that binds one.
fn is_vsvm(device: &Path, roots: &Roots) -> bool {
    let driver_named = std::fs::read_link(device.join("driver"))
        .ok()
        .and_then(|target| target.file_name().map(|n| n == uapi::DRIVER_NAME))
        .unwrap_or(false);
    let modalias = std::fs::read_to_string(device.join("modalias"))
        .map(|m| m.trim() == format!("platform:{}", uapi::DRIVER_NAME))
        .unwrap_or(false);
    driver_named || modalias || bound_to_platform_driver(device, &roots.platform_driver)
}

/// Whether `device` is one of the devices listed (as links) in the platform driver's folder.
fn bound_to_platform_driver(device: &Path, driver: &Path) -> bool {
    let Ok(device) = device.canonicalize() else {
        return false;
    };
    let Ok(entries) = std::fs::read_dir(driver) else {
        return false;
    };
    entries
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_symlink()).unwrap_or(false))
        .any(|e| e.path().canonicalize().is_ok_and(|p| p == device))
}

/// A vsvm render node, found and opened once: each case opens its own device on it.
#[derive(Clone, Debug)]
pub struct Node {
    path: PathBuf,
    /// What QUERY said when the node was found (boxed: QUERY is 312 bytes).
    query: Box<uapi::Query>,
}

impl Node {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn info(&self) -> DeviceInfo {
        info(&self.path, self.query.vram_total)
    }

    /// A fresh device on this node (one per case).
    pub fn open(&self) -> Result<Box<dyn Device>, DeviceError> {
        VsvmDevice::open(&self.path).map(|d| Box::new(d) as Box<dyn Device>)
    }

    /// One line for the start of a run.
    pub fn describe(&self) -> String {
        format!(
            "vsvm virtual SVM GPU at {} ({} MiB of VRAM, planted bugs {:#x}, on {})",
            self.path.display(),
            self.query.vram_total >> 20,
            self.query.planted,
            host::kernel_release()
        )
    }

    /// What the device said of itself, for run.json: a run with planted bugs says so.
    pub fn notes(&self) -> Vec<Note> {
        let q = &self.query;
        vec![Note {
            name: "vsvm".into(),
            available: true,
            detail: format!(
                "{}: QUERY version {}, {} bytes of VRAM, {} in use, {} quarantined, planted bugs \
                 {:#x} (/sys/module/vsvm/parameters/planted), {} resets so far",
                self.path.display(),
                q.version,
                q.vram_total,
                q.vram_used,
                q.vram_quarantined,
                q.planted,
                q.resets
            ),
        }]
    }
}

/// What `--backend vsvm` found.
#[derive(Debug)]
pub enum Probe {
    Node(Node),
    /// No node: every case skips with this reason.
    Missing(String),
}

/// Why every case skips when the node `--device` names does not exist.
pub fn missing_node_reason(node: &Path) -> String {
    format!(
        "no {}: the kernel's virtual SVM GPU (CONFIG_DRM_VSVM, lab/vm/run --vsvm) is not loaded",
        node.display()
    )
}

/// Looks for the node `choice` asks for; `Err` when one is there but cannot be opened or is
/// not vsvm's (the message says why and what to do).
pub fn probe(choice: &Choice, roots: &Roots) -> Result<Probe, String> {
    let path = match choice {
        Choice::Find => match find(roots) {
            Some(path) => path,
            None => return Ok(Probe::Missing(MISSING.into())),
        },
        Choice::Node(path) => match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Probe::Missing(missing_node_reason(path)))
            }
            _ => path.clone(),
        },
    };
    let dev = open_node(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "{e}: sysfs shows a vsvm render node that is not in {} (is devtmpfs mounted?)",
                roots.dev_dri.display()
            )
        } else {
            e.to_string()
        }
    })?;
    let query = ffi::query(&dev).map_err(|e| {
        format!(
            "{}: {}: {e}",
            path.display(),
            <uapi::Query as uapi::Command>::NAME
        )
    })?;
    if query.version != uapi::VERSION {
        return Err(format!(
            "{}: the driver's uAPI is version {}, this svmconf speaks version {}",
            path.display(),
            query.version,
            uapi::VERSION
        ));
    }
    Ok(Probe::Node(Node {
        path,
        query: Box::new(query),
    }))
}

/// What a run without the device reports as its device.
pub fn missing_info(choice: &Choice) -> DeviceInfo {
    let name = match choice {
        Choice::Find => "no vsvm render node".to_string(),
        Choice::Node(p) => format!("no vsvm render node ({})", p.display()),
    };
    DeviceInfo {
        name,
        gpus: 0,
        vram_bytes: 0,
        caps: Default::default(),
        ..info(Path::new(""), 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A fake machine in `dir`: `/dev/dri`, `/sys/class/drm`, `/sys/devices/...` and the
    /// platform driver folder, all empty.
    fn roots(dir: &Path) -> Roots {
        let r = Roots {
            dev_dri: dir.join("dev/dri"),
            sys_class_drm: dir.join("sys/class/drm"),
            platform_driver: dir.join("sys/bus/platform/drivers/vsvm"),
        };
        std::fs::create_dir_all(&r.dev_dri).unwrap();
        std::fs::create_dir_all(&r.sys_class_drm).unwrap();
        r
    }

    /// A device `sys/devices/<dev>` with the nodes `names` (`card0`, `renderD128`) linked
    /// from the class folder, as the kernel lays them out.
    fn device(dir: &Path, r: &Roots, dev: &str, names: &[&str]) -> PathBuf {
        let path = dir.join("sys/devices").join(dev);
        for name in names {
            let node = path.join("drm").join(name);
            std::fs::create_dir_all(&node).unwrap();
            symlink(&path, node.join("device")).unwrap();
            symlink(&node, r.sys_class_drm.join(name)).unwrap();
        }
        path
    }

    /// The driver link a bound device has, to `sys/bus/.../drivers/<driver>`.
    fn bind(dir: &Path, dev: &Path, driver: &str) {
        let drv = dir.join("sys/bus/pci/drivers").join(driver);
        std::fs::create_dir_all(&drv).unwrap();
        symlink(&drv, dev.join("driver")).unwrap();
    }

    #[test]
    fn with_no_render_node_every_case_skips_saying_which_driver_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let r = roots(dir.path());
        let amd = device(
            dir.path(),
            &r,
            "pci0000:00/0000:00:01.0",
            &["card0", "renderD128"],
        );
        bind(dir.path(), &amd, "amdgpu");
        match probe(&Choice::Find, &r).unwrap() {
            Probe::Missing(why) => assert_eq!(
                why,
                "no vsvm render node: the kernel's virtual SVM GPU (CONFIG_DRM_VSVM, \
                 lab/vm/run --vsvm) is not loaded"
            ),
            Probe::Node(n) => panic!("found {n:?}"),
        }
        // Nothing at all under /sys/class/drm: the same.
        let none = Roots {
            sys_class_drm: dir.path().join("nonexistent"),
            ..r.clone()
        };
        assert!(matches!(probe(&Choice::Find, &none), Ok(Probe::Missing(_))));
        let info = missing_info(&Choice::Find);
        assert_eq!(
            (info.backend.as_str(), info.gpus, info.vram_bytes),
            ("vsvm", 0, 0)
        );
        assert_eq!(info.caps, Default::default());
    }

    /// On vsvm's kernel the platform device has no driver: its modalias says what it is.
    #[test]
    fn the_node_of_the_platform_device_vsvm_is_found_by_its_modalias() {
        let dir = tempfile::tempdir().unwrap();
        let r = roots(dir.path());
        let amd = device(
            dir.path(),
            &r,
            "pci0000:00/0000:00:01.0",
            &["card0", "renderD128"],
        );
        bind(dir.path(), &amd, "amdgpu");
        std::fs::write(amd.join("modalias"), "pci:v00001002d000074A1\n").unwrap();
        let vsvm = device(dir.path(), &r, "platform/vsvm", &["card1", "renderD129"]);
        std::fs::write(vsvm.join("modalias"), "platform:vsvm\n").unwrap();
        assert_eq!(find(&r), Some(r.dev_dri.join("renderD129")));
    }

    #[test]
    fn a_driver_link_named_vsvm_or_a_link_in_the_platform_driver_folder_finds_it_too() {
        let dir = tempfile::tempdir().unwrap();
        let r = roots(dir.path());
        let other = device(dir.path(), &r, "platform/vgem", &["renderD128"]);
        std::fs::write(other.join("modalias"), "platform:vgem\n").unwrap();
        let bound = device(dir.path(), &r, "platform/vsvm.0", &["renderD131"]);
        bind(dir.path(), &bound, "vsvm");
        assert_eq!(find(&r), Some(r.dev_dri.join("renderD131")));

        let dir = tempfile::tempdir().unwrap();
        let r = roots(dir.path());
        let listed = device(dir.path(), &r, "platform/vsvm.1", &["renderD130"]);
        std::fs::create_dir_all(&r.platform_driver).unwrap();
        symlink(&listed, r.platform_driver.join("vsvm.1")).unwrap();
        assert_eq!(find(&r), Some(r.dev_dri.join("renderD130")));
    }

    #[test]
    fn the_lowest_numbered_vsvm_node_is_taken_and_cards_are_not_render_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let r = roots(dir.path());
        for (dev, card, node) in [
            ("platform/a", "card1", "renderD1000"),
            ("platform/b", "card2", "renderD999"),
        ] {
            let d = device(dir.path(), &r, dev, &[card, node]);
            std::fs::write(d.join("modalias"), "platform:vsvm").unwrap();
        }
        assert_eq!(find(&r), Some(r.dev_dri.join("renderD999")));
        let cards = roots(&dir.path().join("cards"));
        let d = device(
            &dir.path().join("cards"),
            &cards,
            "platform/vsvm",
            &["card0"],
        );
        std::fs::write(d.join("modalias"), "platform:vsvm").unwrap();
        assert_eq!(find(&cards), None);
    }

    #[rstest::rstest]
    #[case(None, Ok(Choice::Find))]
    #[case(Some("renderD129"), Ok(Choice::Node("/dev/dri/renderD129".into())))]
    #[case(Some("/tmp/x/renderD1"), Ok(Choice::Node("/tmp/x/renderD1".into())))]
    fn device_names_a_render_node(
        #[case] device: Option<&str>,
        #[case] want: Result<Choice, String>,
    ) {
        assert_eq!(choice(device, &Roots::this_machine()), want);
    }

    #[rstest::rstest]
    #[case("0")]
    #[case("0000:c1:00.0")]
    #[case("renderD")]
    #[case("renderDx")]
    #[case("card0")]
    fn a_device_that_is_not_a_render_node_is_refused(#[case] device: &str) {
        let e = choice(Some(device), &Roots::this_machine()).unwrap_err();
        assert!(e.contains(&format!("got `{device}`")), "{e}");
        assert!(e.contains("--backend vsvm"), "{e}");
    }

    #[test]
    fn a_named_node_that_is_not_there_skips_and_one_that_is_not_vsvm_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let r = roots(dir.path());
        let gone = r.dev_dri.join("renderD200");
        match probe(&Choice::Node(gone.clone()), &r).unwrap() {
            Probe::Missing(why) => assert_eq!(why, missing_node_reason(&gone)),
            Probe::Node(n) => panic!("found {n:?}"),
        }
        assert!(missing_node_reason(&gone).ends_with(
            "renderD200: the kernel's virtual SVM GPU (CONFIG_DRM_VSVM, lab/vm/run --vsvm) is \
             not loaded"
        ));
        let file = r.dev_dri.join("renderD128");
        std::fs::write(&file, b"").unwrap();
        let e = probe(&Choice::Node(file), &r).unwrap_err();
        assert!(e.contains("renderD128 is not a DRM node"), "{e}");
    }

    #[test]
    fn a_node_sysfs_shows_but_dev_lacks_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let r = roots(dir.path());
        let d = device(dir.path(), &r, "platform/vsvm", &["renderD128"]);
        std::fs::write(d.join("modalias"), "platform:vsvm").unwrap();
        let e = probe(&Choice::Find, &r).unwrap_err();
        assert!(e.contains("is devtmpfs mounted?"), "{e}");
    }

    /// The profile is the driver's: its chunks, its VRAM, and what preflight asks of the
    /// device is what the device reports with the driver's defaults (and not with others).
    #[test]
    fn the_profile_describes_the_driver_and_its_device_passes_preflight() {
        use crate::harness::preflight::{check, Host};
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let p = crate::fixtures::load_profile(&root, "vsvm")
            .unwrap_or_else(|e| panic!("{e}"))
            .value;
        assert_eq!(
            (p.arch.as_str(), p.vram_bytes, p.gpus),
            ("vsvm", 64 << 20, 1)
        );
        assert_eq!(p.policy.chunk_sizes, CHUNK_SIZES);
        let pol = &p.policy;
        assert!(pol.gpu_fault_migrates && pol.preferred_system_maps_in_place);
        assert!(pol.cpu_fault_migrates_whole_allocation && pol.evict_lru_whole);
        assert!(!pol.shared_and_file_migrate);
        assert!(!pol.reset_loses_vram && !pol.reset_ends_processes);
        assert!(p.sim.is_none());
        let host = Host::new("7.3.4", "/nonexistent/amdgpu/parameters");
        let node = Path::new("/dev/dri/renderD128");
        check(&p, &info(node, 64 << 20), &host).expect("the default device is the profile's");
        let other = check(&p, &info(node, 128 << 20), &host).expect_err("vram_mb=128 is not");
        assert_eq!(other.len(), 1, "{other:?}");
        let cases = crate::fixtures::load_cases(&root).unwrap_or_else(|e| panic!("{e}"));
        assert!(cases.value.instances(&p).unwrap().len() > 60);
    }

    #[test]
    fn a_found_node_describes_itself_and_notes_its_planted_bugs() {
        let n = Node {
            path: "/dev/dri/renderD128".into(),
            query: Box::new(uapi::Query {
                vram_total: 64 << 20,
                planted: uapi::plant::RELEASE_LEAK,
                version: uapi::VERSION,
                ..Default::default()
            }),
        };
        assert!(n.describe().starts_with(
            "vsvm virtual SVM GPU at /dev/dri/renderD128 (64 MiB of VRAM, planted bugs 0x4, on "
        ));
        let notes = n.notes();
        assert!(notes[0].detail.contains("planted bugs 0x4"), "{notes:?}");
        assert_eq!(n.info().vram_bytes, 64 << 20);
        assert_eq!(n.path(), Path::new("/dev/dri/renderD128"));
    }
}
