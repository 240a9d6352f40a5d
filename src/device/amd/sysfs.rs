//! Finding an AMD GPU's DRM card and KFD topology node by its PCI address, and reading amdgpu's
//! VRAM counters: the names HIP does not give (a DRM minor for debugfs, a KFD gpu id for SMI
//! events) and the device-wide VRAM use a case compares before and after.
//!
//! # What the kernel writes
//! - `/sys/class/drm/cardN`: one per DRM primary node, N the minor; `cardN-DP-1` (connectors),
//!   `renderD128` and `version` sit beside them and are skipped. `cardN/device` links to the PCI
//!   device; its `uevent` has `DRIVER=amdgpu` and `PCI_SLOT_NAME=0000:c1:00.0`.
//! - `cardN/device/mem_info_vram_used`, `mem_info_vram_total`, `mem_info_vis_vram_used`:
//!   `sysfs_emit(buf, "%llu\n", bytes)` (drivers/gpu/drm/amd/amdgpu/amdgpu_vram_mgr.c).
//! - `/sys/class/kfd/kfd/topology/nodes/N/gpu_id`: `"%u\n"`, 0 for CPU nodes; `properties`:
//!   `"%s %u\n"` lines, among them `location_id` (PCI bus << 8 | devfn) and `domain`
//!   (drivers/gpu/drm/amd/amdkfd/kfd_topology.c). A partitioned MI300X has one node per
//!   partition with the partition number OR-ed into `location_id`; only partition 0 matches the
//!   PCI address, and more than one GPU is out of this suite's scope.

use std::io;
use std::path::{Path, PathBuf};

use crate::util::text;
use crate::util::text::io_reason;

/// The DRM class, under the sysfs root.
pub const DRM_CLASS: &str = "class/drm";
/// The KFD topology's nodes, under the sysfs root.
pub const KFD_NODES: &str = "class/kfd/kfd/topology/nodes";

pub use crate::util::pci::PciAddress;

#[derive(Debug, thiserror::Error)]
pub enum SysfsError {
    #[error("cannot read `{}`: {}", path.display(), io_reason(source))]
    Read { path: PathBuf, source: io::Error },
    #[error("`{}` holds `{text}`; expected {expected}", path.display())]
    Malformed {
        path: PathBuf,
        text: String,
        expected: &'static str,
    },
    #[error(
        "no DRM card in `{}` is the PCI device {pci} (cards seen: {})",
        dir.display(),
        if seen.is_empty() { "none".to_string() } else { seen.join(", ") }
    )]
    NoCard {
        dir: PathBuf,
        pci: PciAddress,
        seen: Vec<String>,
    },
    #[error("more than one DRM card in `{}` is the PCI device {pci}: {}", dir.display(), cards.join(", "))]
    Ambiguous {
        dir: PathBuf,
        pci: PciAddress,
        cards: Vec<String>,
    },
    #[error(
        "no KFD topology node in `{}` is the PCI device {pci} (GPU nodes seen: {}); is amdkfd loaded?",
        dir.display(),
        if seen.is_empty() { "none".to_string() } else { seen.join(", ") }
    )]
    NoKfdNode {
        dir: PathBuf,
        pci: PciAddress,
        seen: Vec<String>,
    },
    #[error(
        "more than one KFD topology node in `{}` is the PCI device {pci}: nodes {nodes:?} \
         (a partitioned GPU?)",
        dir.display()
    )]
    AmbiguousKfdNode {
        dir: PathBuf,
        pci: PciAddress,
        nodes: Vec<u32>,
    },
}

fn read(path: &Path) -> Result<String, SysfsError> {
    let bytes = std::fs::read(path).map_err(|source| SysfsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A decimal number on one line, as `"%llu\n"` and `"%u\n"` write it: digits and one newline.
pub fn read_decimal(path: &Path) -> Result<u64, SysfsError> {
    let text = read(path)?;
    let malformed = || SysfsError::Malformed {
        path: path.to_path_buf(),
        text: text::quote(&text, 80),
        expected: "one decimal number of bytes and a newline",
    };
    let digits = text.strip_suffix('\n').unwrap_or(&text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    digits.parse().map_err(|_| malformed())
}

// --- DRM cards -----------------------------------------------------------------------------------

/// A DRM card found by [`find_card`]: only that function makes one, so holding one means the
/// card was matched to a PCI address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrmCard {
    name: String,
    minor: u32,
    pci: PciAddress,
    device_dir: PathBuf,
    driver: Option<String>,
}

impl DrmCard {
    /// `card1`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The primary node's minor, N of `cardN`: the number debugfs names `dri/N` by.
    pub fn minor(&self) -> u32 {
        self.minor
    }

    pub fn pci(&self) -> PciAddress {
        self.pci
    }

    /// `ROOT/class/drm/cardN/device`, where amdgpu's attributes are.
    pub fn device_dir(&self) -> &Path {
        &self.device_dir
    }

    /// The `DRIVER=` of the device's uevent (`amdgpu`), when there is one.
    pub fn driver(&self) -> Option<&str> {
        self.driver.as_deref()
    }
}

/// The number of a `cardN` entry; `None` for connectors, render nodes and anything else.
fn card_minor(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("card")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What a card's `device` says about itself: its PCI address (from `uevent`, else the link's
/// target) and driver. `None` when it is not a PCI device.
fn card_device(device_dir: &Path) -> Result<Option<(PciAddress, Option<String>)>, SysfsError> {
    let uevent_path = device_dir.join("uevent");
    let mut slot = None;
    let mut driver = None;
    match std::fs::read(&uevent_path) {
        Ok(bytes) => {
            for line in String::from_utf8_lossy(&bytes).lines() {
                if let Some(v) = line.strip_prefix("PCI_SLOT_NAME=") {
                    let pci = v.parse().map_err(|_| SysfsError::Malformed {
                        path: uevent_path.clone(),
                        text: text::quote(line, 80),
                        expected: "PCI_SLOT_NAME=DOMAIN:BUS:DEVICE.FUNCTION",
                    })?;
                    slot = Some(pci);
                } else if let Some(v) = line.strip_prefix("DRIVER=") {
                    driver = Some(v.to_string());
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(SysfsError::Read {
                path: uevent_path,
                source,
            })
        }
    }
    if slot.is_none() {
        // No uevent (or one without the slot): the link `device -> ../../../0000:c1:00.0`.
        slot = std::fs::read_link(device_dir)
            .ok()
            .and_then(|target| target.file_name()?.to_str()?.parse().ok());
    }
    Ok(slot.map(|pci| (pci, driver)))
}

/// Every `cardN` of `sys_root` with a PCI device, in minor order.
pub fn list_cards(sys_root: &Path) -> Result<Vec<DrmCard>, SysfsError> {
    let dir = sys_root.join(DRM_CLASS);
    let entries = std::fs::read_dir(&dir).map_err(|source| SysfsError::Read {
        path: dir.clone(),
        source,
    })?;
    let mut cards = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| SysfsError::Read {
            path: dir.clone(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(minor) = card_minor(&name) else {
            continue;
        };
        let device_dir = dir.join(&name).join("device");
        if let Some((pci, driver)) = card_device(&device_dir)? {
            cards.push(DrmCard {
                name,
                minor,
                pci,
                device_dir,
                driver,
            });
        }
    }
    cards.sort_by_key(|c| c.minor);
    Ok(cards)
}

/// The one DRM card of the PCI device `pci`.
pub fn find_card(sys_root: &Path, pci: PciAddress) -> Result<DrmCard, SysfsError> {
    let cards = list_cards(sys_root)?;
    let dir = sys_root.join(DRM_CLASS);
    let mut matching: Vec<DrmCard> = cards.iter().filter(|c| c.pci == pci).cloned().collect();
    match matching.len() {
        1 => Ok(matching.remove(0)),
        0 => Err(SysfsError::NoCard {
            dir,
            pci,
            seen: cards
                .iter()
                .map(|c| format!("{} = {}", c.name, c.pci))
                .collect(),
        }),
        _ => Err(SysfsError::Ambiguous {
            dir,
            pci,
            cards: matching.into_iter().map(|c| c.name).collect(),
        }),
    }
}

// --- VRAM counters -------------------------------------------------------------------------------

/// `mem_info_vram_used`: bytes of VRAM in use, device-wide (every process, the kernel's own).
pub const VRAM_USED: &str = "mem_info_vram_used";
/// `mem_info_vram_total`: bytes of VRAM.
pub const VRAM_TOTAL: &str = "mem_info_vram_total";
/// `mem_info_vis_vram_used`: bytes in use of the CPU-visible part of VRAM.
pub const VIS_VRAM_USED: &str = "mem_info_vis_vram_used";

/// One reading of the three counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct VramUsage {
    pub used: u64,
    pub total: u64,
    pub vis_used: u64,
}

/// Bytes of VRAM in use now.
pub fn read_vram_used(card: &DrmCard) -> Result<u64, SysfsError> {
    read_decimal(&card.device_dir.join(VRAM_USED))
}

/// All three counters; each is read once, so `used` and `vis_used` may be from slightly
/// different moments.
pub fn read_vram(card: &DrmCard) -> Result<VramUsage, SysfsError> {
    Ok(VramUsage {
        used: read_vram_used(card)?,
        total: read_decimal(&card.device_dir.join(VRAM_TOTAL))?,
        vis_used: read_decimal(&card.device_dir.join(VIS_VRAM_USED))?,
    })
}

// --- the KFD topology ----------------------------------------------------------------------------

/// A GPU node of the KFD topology.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KfdNode {
    /// N of `nodes/N`.
    pub node: u32,
    /// What SMI events call this GPU's VRAM, and what `AMDKFD_IOC_SMI_EVENTS` takes.
    pub gpu_id: u32,
    /// `drm_render_minor` of `properties` (128 + n of `renderD128 + n`), where present.
    pub drm_render_minor: Option<u32>,
}

/// `name value` lines of a topology `properties` file.
fn property(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}

/// The KFD topology node of the PCI device `pci`, with its gpu id.
pub fn find_kfd_node(sys_root: &Path, pci: PciAddress) -> Result<KfdNode, SysfsError> {
    let dir = sys_root.join(KFD_NODES);
    let entries = std::fs::read_dir(&dir).map_err(|source| SysfsError::Read {
        path: dir.clone(),
        source,
    })?;
    let mut names: Vec<(u32, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| SysfsError::Read {
            path: dir.clone(),
            source,
        })?;
        if let Ok(node) = entry.file_name().to_string_lossy().parse::<u32>() {
            names.push((node, entry.path()));
        }
    }
    names.sort();
    let mut seen = Vec::new();
    let mut matching = Vec::new();
    for (node, path) in names {
        let gpu_id_path = path.join("gpu_id");
        let gpu_id = read_decimal(&gpu_id_path)?;
        let gpu_id = u32::try_from(gpu_id).map_err(|_| SysfsError::Malformed {
            path: gpu_id_path,
            text: gpu_id.to_string(),
            expected: "a 32-bit gpu id",
        })?;
        if gpu_id == 0 {
            continue; // a CPU node
        }
        let props_path = path.join("properties");
        let props = read(&props_path)?;
        let field = |name: &'static str| {
            property(&props, name).ok_or_else(|| SysfsError::Malformed {
                path: props_path.clone(),
                text: text::quote(props.lines().next().unwrap_or_default(), 80),
                expected: if name == "domain" {
                    "a `domain N` line"
                } else {
                    "a `location_id N` line"
                },
            })
        };
        let location = field("location_id")?;
        let domain = field("domain")?;
        let bus = (location >> 8) & 0xff;
        let devfn = location & 0xff;
        seen.push(format!(
            "node {node} = {:04x}:{bus:02x}:{:02x}.{:x}",
            domain,
            devfn >> 3,
            devfn & 7
        ));
        if domain == u64::from(pci.domain)
            && bus == u64::from(pci.bus)
            && devfn == u64::from(pci.devfn())
        {
            matching.push(KfdNode {
                node,
                gpu_id,
                drm_render_minor: property(&props, "drm_render_minor")
                    .and_then(|m| u32::try_from(m).ok()),
            });
        }
    }
    match matching.len() {
        1 => Ok(matching.remove(0)),
        0 => Err(SysfsError::NoKfdNode { dir, pci, seen }),
        _ => Err(SysfsError::AmbiguousKfdNode {
            dir,
            pci,
            nodes: matching.iter().map(|n| n.node).collect(),
        }),
    }
}

#[cfg(test)]
pub(crate) mod testtree {
    //! Fake sysfs trees for the tests of this folder.

    use std::path::Path;

    pub fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// `class/drm/cardN` with its device: a real tree has `cardN/device` as a link to the PCI
    /// device's directory, so the fake one does too.
    pub fn card(root: &Path, minor: u32, slot: &str, uevent: bool) {
        let pci_dir = root.join("devices/pci0000:00").join(slot);
        std::fs::create_dir_all(&pci_dir).unwrap();
        if uevent {
            write(
                &pci_dir.join("uevent"),
                &format!(
                    "DRIVER=amdgpu\nPCI_CLASS=38000\nPCI_ID=1002:74A1\nPCI_SLOT_NAME={slot}\n\
                     MODALIAS=pci:v00001002d000074A1\n"
                ),
            );
        }
        let card = root.join("class/drm").join(format!("card{minor}"));
        std::fs::create_dir_all(&card).unwrap();
        std::os::unix::fs::symlink(&pci_dir, card.join("device")).unwrap();
    }

    pub fn vram(root: &Path, slot: &str, used: &str, total: &str, vis: &str) {
        let dir = root.join("devices/pci0000:00").join(slot);
        write(&dir.join("mem_info_vram_used"), used);
        write(&dir.join("mem_info_vram_total"), total);
        write(&dir.join("mem_info_vis_vram_used"), vis);
    }
}

#[cfg(test)]
mod tests {
    use super::testtree::*;
    use super::*;
    use rstest::rstest;

    fn pci(s: &str) -> PciAddress {
        s.parse().unwrap()
    }

    #[rstest]
    #[case("0000:c1:00.0", 0, 0xc1, 0, 0)]
    #[case("c1:00.0", 0, 0xc1, 0, 0)]
    #[case("0000:C1:00.0", 0, 0xc1, 0, 0)]
    #[case(" 0001:03:1f.7\n", 1, 3, 0x1f, 7)]
    fn pci_addresses_parse(
        #[case] s: &str,
        #[case] domain: u32,
        #[case] bus: u8,
        #[case] device: u8,
        #[case] function: u8,
    ) {
        assert_eq!(
            pci(s),
            PciAddress {
                domain,
                bus,
                device,
                function
            }
        );
    }

    #[rstest]
    #[case("")]
    #[case("c1:00")]
    #[case("0000:c1:00.8")]
    #[case("0000:c1:20.0")]
    #[case("0000:1c1:00.0")]
    #[case("0000:c1:00.0.0")]
    #[case("x:c1:00.0")]
    #[case("0:0:c1:00.0")]
    #[case("0000:+1:00.0")]
    fn bad_pci_addresses_are_refused(#[case] s: &str) {
        let e = s.parse::<PciAddress>().unwrap_err();
        assert!(e.to_string().contains("0000:c1:00.0"), "{e}");
    }

    #[test]
    fn pci_address_displays_as_sysfs_writes_it() {
        assert_eq!(pci("C1:0.0").to_string(), "0000:c1:00.0");
        assert_eq!(pci("0000:c1:00.0").devfn(), 0);
        assert_eq!(pci("0000:03:1f.7").devfn(), 0xff);
    }

    /// Two GPUs, connectors and render nodes beside them, and a non-PCI card.
    fn two_cards(root: &Path) {
        card(root, 0, "0000:03:00.0", true);
        card(root, 1, "0000:c1:00.0", true);
        for other in ["card0-DP-1", "card1-HDMI-A-1", "renderD128", "renderD129"] {
            std::fs::create_dir_all(root.join("class/drm").join(other)).unwrap();
        }
        write(&root.join("class/drm/version"), "drm 1.1.0 20060810\n");
        std::fs::create_dir_all(root.join("class/drm/card7")).unwrap(); // vkms: no device
    }

    #[rstest]
    #[case("0000:c1:00.0", "card1", 1)]
    #[case("c1:00.0", "card1", 1)]
    #[case("0000:03:00.0", "card0", 0)]
    fn the_card_of_a_pci_address(#[case] addr: &str, #[case] name: &str, #[case] minor: u32) {
        let t = tempfile::tempdir().unwrap();
        two_cards(t.path());
        let c = find_card(t.path(), pci(addr)).unwrap();
        assert_eq!((c.name(), c.minor(), c.pci()), (name, minor, pci(addr)));
        assert_eq!(c.driver(), Some("amdgpu"));
        assert!(c.device_dir().ends_with(format!("class/drm/{name}/device")));
    }

    #[test]
    fn without_uevent_the_link_target_names_the_device() {
        let t = tempfile::tempdir().unwrap();
        card(t.path(), 2, "0000:c1:00.0", false);
        let c = find_card(t.path(), pci("0000:c1:00.0")).unwrap();
        assert_eq!((c.name(), c.driver()), ("card2", None));
    }

    #[test]
    fn no_match_lists_the_cards_seen() {
        let t = tempfile::tempdir().unwrap();
        two_cards(t.path());
        let e = find_card(t.path(), pci("0000:44:00.0")).unwrap_err();
        let shown = e.to_string();
        assert!(matches!(e, SysfsError::NoCard { .. }), "{e:?}");
        assert!(
            shown.contains("card0 = 0000:03:00.0, card1 = 0000:c1:00.0"),
            "{shown}"
        );
        assert!(shown.contains("0000:44:00.0"), "{shown}");
    }

    #[test]
    fn two_cards_of_one_device_are_ambiguous() {
        let t = tempfile::tempdir().unwrap();
        card(t.path(), 0, "0000:c1:00.0", true);
        let again = t.path().join("class/drm/card3");
        std::fs::create_dir_all(&again).unwrap();
        std::os::unix::fs::symlink(
            t.path().join("devices/pci0000:00/0000:c1:00.0"),
            again.join("device"),
        )
        .unwrap();
        let e = find_card(t.path(), pci("0000:c1:00.0")).unwrap_err();
        assert!(e.to_string().contains("card0, card3"), "{e}");
    }

    #[test]
    fn a_missing_drm_class_names_its_path() {
        let t = tempfile::tempdir().unwrap();
        let e = find_card(t.path(), pci("0000:c1:00.0")).unwrap_err();
        let shown = e.to_string();
        assert!(
            shown.contains("class/drm`: no such file or directory"),
            "{shown}"
        );
    }

    #[test]
    fn a_bad_slot_name_is_malformed() {
        let t = tempfile::tempdir().unwrap();
        card(t.path(), 0, "0000:c1:00.0", false);
        write(
            &t.path().join("devices/pci0000:00/0000:c1:00.0/uevent"),
            "PCI_SLOT_NAME=banana\n",
        );
        let e = find_card(t.path(), pci("0000:c1:00.0")).unwrap_err();
        assert!(
            e.to_string()
                .contains("uevent` holds `PCI_SLOT_NAME=banana`"),
            "{e}"
        );
    }

    #[test]
    fn vram_counters_are_read() {
        let t = tempfile::tempdir().unwrap();
        two_cards(t.path());
        vram(
            t.path(),
            "0000:c1:00.0",
            "123456\n",
            "68702699520\n",
            "4096\n",
        );
        let c = find_card(t.path(), pci("0000:c1:00.0")).unwrap();
        assert_eq!(
            read_vram(&c).unwrap(),
            VramUsage {
                used: 123_456,
                total: 68_702_699_520,
                vis_used: 4096
            }
        );
        assert_eq!(read_vram_used(&c).unwrap(), 123_456);
    }

    #[rstest]
    #[case::empty("")]
    #[case::only_newline("\n")]
    #[case::negative("-1\n")]
    #[case::hex("0x10\n")]
    #[case::spaces(" 12\n")]
    #[case::two_newlines("12\n\n")]
    #[case::two_numbers("12 13\n")]
    #[case::overflow("18446744073709551616\n")]
    #[case::text("unknown\n")]
    fn malformed_counters_name_the_file(#[case] text: &str) {
        let t = tempfile::tempdir().unwrap();
        two_cards(t.path());
        vram(t.path(), "0000:c1:00.0", text, "1\n", "1\n");
        let c = find_card(t.path(), pci("0000:c1:00.0")).unwrap();
        let e = read_vram(&c).unwrap_err();
        let shown = e.to_string();
        assert!(matches!(e, SysfsError::Malformed { .. }), "{e:?}");
        assert!(shown.contains("mem_info_vram_used` holds `"), "{shown}");
        assert!(shown.contains("expected one decimal number"), "{shown}");
    }

    #[test]
    fn a_number_without_newline_is_accepted() {
        let t = tempfile::tempdir().unwrap();
        write(&t.path().join("n"), "42");
        assert_eq!(read_decimal(&t.path().join("n")).unwrap(), 42);
    }

    #[test]
    fn a_missing_counter_names_its_path() {
        let t = tempfile::tempdir().unwrap();
        two_cards(t.path());
        let c = find_card(t.path(), pci("0000:c1:00.0")).unwrap();
        let shown = read_vram(&c).unwrap_err().to_string();
        assert!(
            shown.contains("class/drm/card1/device/mem_info_vram_used`: no such file"),
            "{shown}"
        );
    }

    fn node(root: &Path, n: u32, gpu_id: u32, props: &str) {
        let dir = root.join(KFD_NODES).join(n.to_string());
        write(&dir.join("gpu_id"), &format!("{gpu_id}\n"));
        write(&dir.join("properties"), props);
    }

    const CPU_PROPS: &str = "cpu_cores_count 96\nsimd_count 0\nlocation_id 0\ndomain 0\n";

    fn gpu_props(location: u32, domain: u32, render: u32) -> String {
        format!(
            "cpu_cores_count 0\nsimd_count 1216\nvendor_id 4098\ndevice_id 29857\n\
             location_id {location}\ndrm_render_minor {render}\ndomain {domain}\n\
             gfx_target_version 90402\n"
        )
    }

    #[test]
    fn the_kfd_node_of_a_pci_address() {
        let t = tempfile::tempdir().unwrap();
        node(t.path(), 0, 0, CPU_PROPS);
        node(t.path(), 1, 4660, &gpu_props(0x0300, 0, 128));
        node(t.path(), 2, 52651, &gpu_props(0xc100, 0, 129));
        let n = find_kfd_node(t.path(), pci("0000:c1:00.0")).unwrap();
        assert_eq!(
            n,
            KfdNode {
                node: 2,
                gpu_id: 52651,
                drm_render_minor: Some(129)
            }
        );
        let e = find_kfd_node(t.path(), pci("0001:c1:00.0")).unwrap_err();
        let shown = e.to_string();
        assert!(
            shown.contains("node 1 = 0000:03:00.0, node 2 = 0000:c1:00.0"),
            "{shown}"
        );
    }

    #[test]
    fn kfd_node_errors_name_the_file() {
        let t = tempfile::tempdir().unwrap();
        node(t.path(), 1, 4660, "simd_count 1216\n");
        let e = find_kfd_node(t.path(), pci("0000:c1:00.0")).unwrap_err();
        assert!(e.to_string().contains("nodes/1/properties` holds"), "{e}");
        assert!(e.to_string().contains("location_id"), "{e}");
        node(t.path(), 1, 4660, &gpu_props(0xc100, 0, 128));
        write(&t.path().join(KFD_NODES).join("1/gpu_id"), "abc\n");
        let e = find_kfd_node(t.path(), pci("0000:c1:00.0")).unwrap_err();
        assert!(e.to_string().contains("nodes/1/gpu_id` holds `abc"), "{e}");
        let e = find_kfd_node(&t.path().join("nothing"), pci("0000:c1:00.0")).unwrap_err();
        assert!(
            e.to_string().contains("topology/nodes`: no such file"),
            "{e}"
        );
    }

    #[test]
    fn a_partitioned_gpus_other_partitions_do_not_match() {
        // MI300X in CPX mode: one node per partition, the partition number OR-ed into
        // location_id (gfx 9.4.3), so only partition 0 has the PCI function's own devfn.
        let t = tempfile::tempdir().unwrap();
        for (n, partition) in [(1, 0), (2, 1), (3, 2), (4, 3)] {
            node(
                t.path(),
                n,
                100 + n,
                &gpu_props(0xc100 | partition, 0, 128 + n),
            );
        }
        let n = find_kfd_node(t.path(), pci("0000:c1:00.0")).unwrap();
        assert_eq!((n.node, n.gpu_id), (1, 101));
        let n = find_kfd_node(t.path(), pci("0000:c1:00.2")).unwrap();
        assert_eq!((n.node, n.gpu_id), (3, 103));
    }

    #[test]
    fn two_kfd_nodes_of_one_device_are_ambiguous() {
        let t = tempfile::tempdir().unwrap();
        node(t.path(), 1, 1, &gpu_props(0xc100, 0, 128));
        node(t.path(), 2, 2, &gpu_props(0xc100, 0, 129));
        let e = find_kfd_node(t.path(), pci("0000:c1:00.0")).unwrap_err();
        assert!(
            matches!(e, SysfsError::AmbiguousKfdNode { ref nodes, .. } if nodes == &[1, 2]),
            "{e:?}"
        );
    }
}
