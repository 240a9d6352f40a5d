//! The amdgpu observers a hardware backend opens for its GPU (its `OBSERVERS` list): each finds
//! its kernel interface for the GPU's PCI bus id and answers what it can see, or opens nothing
//! and leaves the capability off, so the cases that need it skip with the reason.

use std::path::{Path, PathBuf};

use super::sysfs::{self, DrmCard, PciAddress};
use crate::device::observer::{GpuIdentity, GpuObserver, Provides};

/// VRAM in use, device-wide, from the matched card's `mem_info_vram_used`.
pub struct SysfsVram {
    card: DrmCard,
}

impl GpuObserver for SysfsVram {
    fn name(&self) -> &str {
        "sysfs-vram"
    }

    fn provides(&self) -> Provides {
        Provides {
            vram_usage: true,
            ..Provides::default()
        }
    }

    fn vram_used(&mut self) -> Option<u64> {
        sysfs::read_vram_used(&self.card).ok()
    }
}

/// Opens [`SysfsVram`] under `sys_root` for `gpu`; nothing when its card cannot be matched or
/// its counter read.
pub fn sysfs_vram_under(sys_root: &Path, gpu: &GpuIdentity) -> Vec<Box<dyn GpuObserver>> {
    let Ok(pci) = gpu.pci_bus_id.parse::<PciAddress>() else {
        return Vec::new();
    };
    match sysfs::find_card(sys_root, pci) {
        Ok(card) if sysfs::read_vram_used(&card).is_ok() => vec![Box::new(SysfsVram { card })],
        _ => Vec::new(),
    }
}

/// The factory for a real machine.
pub fn sysfs_vram(gpu: &GpuIdentity) -> Vec<Box<dyn GpuObserver>> {
    sysfs_vram_under(&PathBuf::from(super::SYSFS_ROOT), gpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(pci: &str) -> GpuIdentity {
        GpuIdentity {
            index: 0,
            pci_bus_id: pci.into(),
            target_id: "gfx942:sramecc+:xnack+".into(),
        }
    }

    /// /sys with one amdgpu card at 0000:c1:00.0 using 1 MiB of VRAM.
    fn fake_sys() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let dev = root.path().join("devices/pci0000:c0/0000:c1:00.0");
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(
            dev.join("uevent"),
            "DRIVER=amdgpu\nPCI_SLOT_NAME=0000:c1:00.0\n",
        )
        .unwrap();
        std::fs::write(dev.join("mem_info_vram_used"), "1048576\n").unwrap();
        let card = root.path().join("class/drm/card1");
        std::fs::create_dir_all(&card).unwrap();
        std::os::unix::fs::symlink(&dev, card.join("device")).unwrap();
        std::fs::write(card.join("dev"), "226:1\n").unwrap();
        root
    }

    #[test]
    fn the_matched_card_answers_vram_in_use() {
        let sys = fake_sys();
        let mut obs = sysfs_vram_under(sys.path(), &gpu("0000:c1:00.0"));
        assert_eq!(obs.len(), 1, "the card at the GPU's bus id is found");
        assert!(obs[0].provides().vram_usage);
        assert_eq!(obs[0].vram_used(), Some(1 << 20));
    }

    #[test]
    fn another_bus_id_opens_nothing() {
        let sys = fake_sys();
        assert!(sysfs_vram_under(sys.path(), &gpu("0000:c2:00.0")).is_empty());
        assert!(sysfs_vram_under(sys.path(), &gpu("not a bus id")).is_empty());
    }
}
