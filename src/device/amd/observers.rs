//! The amdgpu observers a hardware backend opens for its GPU (its `OBSERVERS` list): each finds
//! its kernel interface for the GPU's PCI bus id and answers what it can see, or opens nothing
//! and says why, so run.json records it and the cases that need it skip with the reason.
//!
//! The KFD SMI observer needs an ioctl, so its factory lives with the backend's FFI
//! (`device::hip`); what it does with the bytes is [`super::smi_reader`].

use std::path::{Path, PathBuf};

use super::reset;
use super::sysfs::{self, DrmCard, PciAddress};
use crate::device::amd::ObserverOptions;
use crate::device::observer::{GpuIdentity, GpuObserver, ObserverFactory, Provides};
use crate::device::{Destructive, DeviceError, Result};

/// The card of `gpu` under `sys_root`, or why there is none.
pub fn card_of(sys_root: &Path, gpu: &GpuIdentity) -> std::result::Result<DrmCard, String> {
    let pci = gpu
        .pci_bus_id
        .parse::<PciAddress>()
        .map_err(|e| format!("the GPU's PCI bus id `{}`: {e}", gpu.pci_bus_id))?;
    sysfs::find_card(sys_root, pci).map_err(|e| e.to_string())
}

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

    fn describe(&self) -> String {
        format!(
            "{} of {} ({})",
            sysfs::VRAM_USED,
            self.card.name(),
            self.card.device_dir().display()
        )
    }

    fn vram_used(&mut self) -> Option<u64> {
        sysfs::read_vram_used(&self.card).ok()
    }
}

/// Opens [`SysfsVram`] under `sys_root` for `gpu`, or says why its card cannot be matched or
/// its counter read.
pub fn sysfs_vram_under(
    sys_root: &Path,
    gpu: &GpuIdentity,
) -> std::result::Result<Box<dyn GpuObserver>, String> {
    let card = card_of(sys_root, gpu)?;
    sysfs::read_vram_used(&card).map_err(|e| e.to_string())?;
    Ok(Box::new(SysfsVram { card }))
}

/// VRAM in use from sysfs, on a real machine.
pub const SYSFS_VRAM: ObserverFactory<ObserverOptions> = ObserverFactory {
    name: "sysfs-vram",
    open: |gpu, _| sysfs_vram_under(Path::new(super::SYSFS_ROOT), gpu),
};

/// The series' trace as migration evidence, when `--amdgpu-trace` asked for it.
pub const AMDGPU_TRACE: ObserverFactory<ObserverOptions> = ObserverFactory {
    name: "amdgpu-trace",
    open: |_, options| {
        let Some(patterns) = &options.amdgpu_trace else {
            return Err("off (--amdgpu-trace turns on the series' dynamic-debug trace)".into());
        };
        let log = crate::observe::kmsg::DevKmsg::open(Path::new(crate::observe::kmsg::DEV_KMSG))
            .map_err(|e| {
                format!(
                    "{}: {}",
                    crate::observe::kmsg::DEV_KMSG,
                    crate::util::text::io_reason(&e)
                )
            })?;
        let control = super::trace::control_file(Path::new(super::DEBUGFS_ROOT));
        super::trace::AmdgpuTrace::open(patterns.clone(), &control, Box::new(log))
            .map(|t| Box::new(t) as Box<dyn GpuObserver>)
    },
};

/// Eviction transients from `MemAvailable`, sampled while cases run.
pub const EVICTION_MEMORY: ObserverFactory<ObserverOptions> = ObserverFactory {
    name: "eviction-memory",
    open: |_, _| {
        let pool = Path::new(super::DEBUGFS_ROOT).join(crate::observe::meminfo::TTM_PAGE_POOL);
        super::eviction::EvictionMemory::open(
            Path::new(crate::observe::meminfo::PROC_MEMINFO),
            Some(pool),
        )
        .map(|o| Box::new(o) as Box<dyn GpuObserver>)
    },
};

/// A full GPU reset through the matched card's debugfs `amdgpu_gpu_recover` ([`reset`]).
pub struct DebugfsReset {
    debugfs_root: PathBuf,
    card: DrmCard,
    path: PathBuf,
}

impl GpuObserver for DebugfsReset {
    fn name(&self) -> &str {
        "debugfs-reset"
    }

    fn provides(&self) -> Provides {
        Provides {
            reset: true,
            ..Provides::default()
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} (read only with --allow-destructive)",
            self.path.display()
        )
    }

    fn gpu_reset(&mut self, permit: &Destructive) -> Option<Result<()>> {
        Some(
            reset::gpu_recover(&self.debugfs_root, &self.card, permit)
                .map_err(|e| DeviceError::Backend(e.to_string())),
        )
    }
}

/// Opens [`DebugfsReset`] for `gpu`: its card matched in `sys_root`, its debugfs directory
/// checked to name that device, and `amdgpu_gpu_recover` there and readable by this process.
/// Opening resets nothing: only a read does.
pub fn debugfs_reset_under(
    sys_root: &Path,
    debugfs_root: &Path,
    gpu: &GpuIdentity,
) -> std::result::Result<Box<dyn GpuObserver>, String> {
    let card = card_of(sys_root, gpu)?;
    let path = reset::recover_path(debugfs_root, &card).map_err(|e| e.to_string())?;
    // Opening a debugfs attribute does not run it; only reading does.
    std::fs::File::open(&path).map_err(|e| {
        format!(
            "`{}`: {}; the reset needs root",
            path.display(),
            crate::util::text::io_reason(&e)
        )
    })?;
    Ok(Box::new(DebugfsReset {
        debugfs_root: debugfs_root.to_path_buf(),
        card,
        path,
    }))
}

/// The debugfs reset, on a real machine.
pub const DEBUGFS_RESET: ObserverFactory<ObserverOptions> = ObserverFactory {
    name: "debugfs-reset",
    open: |gpu, _| {
        debugfs_reset_under(
            Path::new(super::SYSFS_ROOT),
            Path::new(super::DEBUGFS_ROOT),
            gpu,
        )
    },
};

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

    /// debugfs for card 1 naming `pci`, with `amdgpu_gpu_recover` answering `result`.
    fn fake_debugfs(pci: &str, result: &str) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("dri/1");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("name"), format!("amdgpu dev={pci} unique={pci}\n")).unwrap();
        std::fs::write(dir.join("amdgpu_gpu_recover"), result).unwrap();
        root
    }

    #[test]
    fn the_matched_card_answers_vram_in_use() {
        let sys = fake_sys();
        let mut obs = sysfs_vram_under(sys.path(), &gpu("0000:c1:00.0")).unwrap();
        assert!(obs.provides().vram_usage);
        assert_eq!(obs.vram_used(), Some(1 << 20));
        assert!(obs.describe().starts_with("mem_info_vram_used of card1"));
    }

    #[test]
    fn another_bus_id_opens_nothing_and_says_why() {
        let sys = fake_sys();
        let why = sysfs_vram_under(sys.path(), &gpu("0000:c2:00.0"))
            .err()
            .unwrap();
        assert!(why.contains("0000:c2:00.0"), "{why}");
        let why = sysfs_vram_under(sys.path(), &gpu("not a bus id"))
            .err()
            .unwrap();
        assert!(why.contains("`not a bus id`"), "{why}");
    }

    #[test]
    fn the_reset_reads_the_matched_cards_recover_file_and_reports_its_result() {
        let sys = fake_sys();
        let permit = Destructive(());
        let debugfs = fake_debugfs("0000:c1:00.0", "0\n");
        let mut obs =
            debugfs_reset_under(sys.path(), debugfs.path(), &gpu("0000:c1:00.0")).unwrap();
        assert!(obs.provides().reset);
        assert!(obs.gpu_reset(&permit).unwrap().is_ok());

        let failing = fake_debugfs("0000:c1:00.0", "-110\n");
        let mut obs =
            debugfs_reset_under(sys.path(), failing.path(), &gpu("0000:c1:00.0")).unwrap();
        let e = obs.gpu_reset(&permit).unwrap().unwrap_err().to_string();
        assert!(e.contains("-110") && e.contains("ETIMEDOUT"), "{e}");
    }

    #[test]
    fn a_debugfs_naming_another_device_is_never_opened_for_reset() {
        let sys = fake_sys();
        let debugfs = fake_debugfs("0000:03:00.0", "0\n");
        let why = debugfs_reset_under(sys.path(), debugfs.path(), &gpu("0000:c1:00.0"))
            .err()
            .unwrap();
        assert!(why.contains("refusing to reset"), "{why}");
        let empty = tempfile::tempdir().unwrap();
        let why = debugfs_reset_under(sys.path(), empty.path(), &gpu("0000:c1:00.0"))
            .err()
            .unwrap();
        assert!(why.contains("no debugfs directory"), "{why}");
    }
}
