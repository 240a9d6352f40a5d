//! A full GPU reset through debugfs, for the reset cases: reading
//! `/sys/kernel/debug/dri/<N>/amdgpu_gpu_recover` schedules amdgpu's recovery, waits for it, and
//! returns its result.
//!
//! Behind a [`Destructive`] permit, and only for the card [`super::sysfs::find_card`] matched to
//! the device under test: before reading, the debugfs directory's `name` file must say that it
//! is that very PCI device, so a stale minor or a second GPU is never reset by mistake.
//!
//! # What the kernel provides
//! - drm_debugfs.c: `drm_debugfs_register()` names a minor's directory by `minor->index`, the
//!   N of `cardN`. Since Linux 6.7 the files live in `dri/<dev->unique>` (the PCI address,
//!   `0000:c1:00.0`) and `dri/N` is a symlink to it; before, `dri/N` was the directory itself.
//!   Both carry `name`: `"%s dev=%s [master=%s] unique=%s\n"`, `amdgpu dev=0000:c1:00.0
//!   unique=0000:c1:00.0`.
//! - amdgpu_fence.c: `amdgpu_gpu_recover` (0444, not on SR-IOV VFs) is a
//!   `DEFINE_DEBUGFS_ATTRIBUTE` with format `"%lld\n"`; its read runs the reset work and returns
//!   the reset domain's result, 0 or a negative errno.
//! - debugfs is root only; the read blocks for the whole reset (seconds).

use std::io;
use std::path::{Path, PathBuf};

use crate::device::Destructive;
use crate::util::text::io_reason;

use super::sysfs::{DrmCard, PciAddress};

/// The DRM folder, under the debugfs root.
pub const DRI_DIR: &str = "dri";
/// The file whose read resets the GPU.
pub const GPU_RECOVER: &str = "amdgpu_gpu_recover";
/// The file that names a DRM device's debugfs directory.
pub const NAME_FILE: &str = "name";

#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error(
        "no debugfs directory for {card} ({pci}): tried {}; is debugfs mounted at the root \
         given, and is this run root?",
        tried.iter().map(|p| format!("`{}`", p.display())).collect::<Vec<_>>().join(", ")
    )]
    NoDebugfsDir {
        card: String,
        pci: PciAddress,
        tried: Vec<PathBuf>,
    },
    #[error(
        "refusing to reset: `{}` says `{found}`, which is not {card} ({pci}), the device \
         under test",
        path.display()
    )]
    WrongDevice {
        path: PathBuf,
        found: String,
        card: String,
        pci: PciAddress,
    },
    #[error(
        "refusing to reset: cannot read `{}` to check that it is {card} ({pci}): {}",
        path.display(),
        io_reason(source)
    )]
    Unverifiable {
        path: PathBuf,
        card: String,
        pci: PciAddress,
        source: io::Error,
    },
    #[error(
        "`{}` has no `{GPU_RECOVER}`: amdgpu does not offer a debugfs reset here (an SR-IOV \
         virtual function?)",
        dir.display()
    )]
    NoRecoverFile { dir: PathBuf },
    #[error("reading `{}` to reset the GPU failed: {}", path.display(), io_reason(source))]
    Read { path: PathBuf, source: io::Error },
    #[error("`{}` returned `{text}`; expected the reset's result, one decimal number", path.display())]
    Malformed { path: PathBuf, text: String },
    #[error("the GPU reset through `{}` failed: {code} ({})", path.display(), errno_text(*code))]
    Failed { path: PathBuf, code: i64 },
}

/// `-110` as `ETIMEDOUT: Connection timed out`.
fn errno_text(code: i64) -> String {
    match i32::try_from(-code) {
        Ok(n) if n > 0 => {
            let e = nix::errno::Errno::from_raw(n);
            format!("{e:?}: {}", e.desc())
        }
        _ => "not an errno".to_string(),
    }
}

/// Whether a `name` file's text is the amdgpu device at `pci`: the driver is the first word,
/// then `dev=` (and `unique=`) carry the PCI address.
fn names_device(text: &str, pci: PciAddress) -> bool {
    let mut words = text.split_whitespace();
    if words.next() != Some("amdgpu") {
        return false;
    }
    let mut dev = None;
    let mut unique = None;
    for w in words {
        if let Some(v) = w.strip_prefix("dev=") {
            dev = v.parse::<PciAddress>().ok();
        } else if let Some(v) = w.strip_prefix("unique=") {
            unique = v.parse::<PciAddress>().ok();
        }
    }
    dev == Some(pci) && unique.map_or(true, |u| u == pci)
}

/// The `amdgpu_gpu_recover` of `card`, after checking that every debugfs directory for it
/// names that PCI device. `debugfs_root` is `/sys/kernel/debug` on a real machine.
pub fn recover_path(debugfs_root: &Path, card: &DrmCard) -> Result<PathBuf, ResetError> {
    let dri = debugfs_root.join(DRI_DIR);
    // The PCI-named directory first (6.7 and later), then the minor's (a symlink to the same
    // directory there, the directory itself before).
    let candidates = [
        dri.join(card.pci().to_string()),
        dri.join(card.minor().to_string()),
    ];
    let mut chosen = None;
    for dir in &candidates {
        if !dir.is_dir() {
            continue;
        }
        let name = dir.join(NAME_FILE);
        let text = std::fs::read(&name).map_err(|source| ResetError::Unverifiable {
            path: name.clone(),
            card: card.name().to_string(),
            pci: card.pci(),
            source,
        })?;
        let text = String::from_utf8_lossy(&text).trim().to_string();
        if !names_device(&text, card.pci()) {
            return Err(ResetError::WrongDevice {
                path: name,
                found: text.escape_debug().to_string(),
                card: card.name().to_string(),
                pci: card.pci(),
            });
        }
        chosen.get_or_insert(dir.clone());
    }
    let Some(dir) = chosen else {
        return Err(ResetError::NoDebugfsDir {
            card: card.name().to_string(),
            pci: card.pci(),
            tried: candidates.to_vec(),
        });
    };
    let file = dir.join(GPU_RECOVER);
    if !file.exists() {
        return Err(ResetError::NoRecoverFile { dir });
    }
    Ok(file)
}

/// Resets the GPU of `card` and waits for the reset to finish. VRAM contents are lost, and KFD
/// keeps every process that used the GPU evicted until it exits: call this from a process that
/// holds no GPU work (the runner), never from the case's own HIP process.
pub fn gpu_recover(
    debugfs_root: &Path,
    card: &DrmCard,
    _permit: &Destructive,
) -> Result<(), ResetError> {
    let path = recover_path(debugfs_root, card)?;
    // One read, once: the read itself is the reset.
    let bytes = std::fs::read(&path).map_err(|source| ResetError::Read {
        path: path.clone(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let digits = text.strip_suffix('\n').unwrap_or(&text);
    let code: i64 = digits.parse().map_err(|_| ResetError::Malformed {
        path: path.clone(),
        text: text.escape_debug().to_string(),
    })?;
    if code != 0 {
        return Err(ResetError::Failed { path, code });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::sysfs::{find_card, testtree};
    use super::*;

    const C1: &str = "0000:c1:00.0";
    const OTHER: &str = "0000:03:00.0";

    fn sysfs_with_two_cards(root: &Path) -> DrmCard {
        testtree::card(root, 0, OTHER, true);
        testtree::card(root, 1, C1, true);
        find_card(root, C1.parse().unwrap()).unwrap()
    }

    fn name_line(slot: &str) -> String {
        format!("amdgpu dev={slot} unique={slot}\n")
    }

    /// Linux 6.7 and later: files in `dri/<pci>`, `dri/<minor>` links to it (render minors too).
    fn debugfs_new(root: &Path) {
        for (slot, minors) in [(OTHER, [0, 128]), (C1, [1, 129])] {
            let dir = root.join("dri").join(slot);
            testtree::write(&dir.join("name"), &name_line(slot));
            testtree::write(&dir.join(GPU_RECOVER), "0\n");
            for m in minors {
                std::os::unix::fs::symlink(&dir, root.join("dri").join(m.to_string())).unwrap();
            }
        }
    }

    /// Before 6.7: `dri/<minor>` directories, amdgpu's files in the primary minor's.
    fn debugfs_old(root: &Path) {
        for (slot, minor) in [(OTHER, 0), (C1, 1)] {
            let dir = root.join("dri").join(minor.to_string());
            testtree::write(&dir.join("name"), &name_line(slot));
            testtree::write(&dir.join(GPU_RECOVER), "0\n");
            testtree::write(
                &root
                    .join("dri")
                    .join((128 + minor).to_string())
                    .join("name"),
                &name_line(slot),
            );
        }
    }

    #[test]
    fn new_kernels_reset_through_the_pci_named_directory() {
        let sys = tempfile::tempdir().unwrap();
        let dbg = tempfile::tempdir().unwrap();
        let card = sysfs_with_two_cards(sys.path());
        debugfs_new(dbg.path());
        let p = recover_path(dbg.path(), &card).unwrap();
        assert_eq!(p, dbg.path().join("dri").join(C1).join(GPU_RECOVER));
        gpu_recover(dbg.path(), &card, &Destructive(())).unwrap();
    }

    #[test]
    fn old_kernels_reset_through_the_minors_directory() {
        let sys = tempfile::tempdir().unwrap();
        let dbg = tempfile::tempdir().unwrap();
        let card = sysfs_with_two_cards(sys.path());
        debugfs_old(dbg.path());
        let p = recover_path(dbg.path(), &card).unwrap();
        assert_eq!(p, dbg.path().join("dri/1").join(GPU_RECOVER));
    }

    #[test]
    fn a_minor_that_names_another_device_is_refused() {
        let sys = tempfile::tempdir().unwrap();
        let dbg = tempfile::tempdir().unwrap();
        let card = sysfs_with_two_cards(sys.path());
        // dri/1 is the other GPU's: the minors were renumbered, or the card lookup is stale.
        testtree::write(&dbg.path().join("dri/1/name"), &name_line(OTHER));
        testtree::write(&dbg.path().join("dri/1").join(GPU_RECOVER), "0\n");
        let e = recover_path(dbg.path(), &card).unwrap_err();
        assert!(matches!(e, ResetError::WrongDevice { .. }), "{e:?}");
        let shown = e.to_string();
        assert!(shown.starts_with("refusing to reset:"), "{shown}");
        assert!(shown.contains("dev=0000:03:00.0"), "{shown}");
        assert!(shown.contains("card1 (0000:c1:00.0)"), "{shown}");
        let e = gpu_recover(dbg.path(), &card, &Destructive(())).unwrap_err();
        assert!(matches!(e, ResetError::WrongDevice { .. }), "{e:?}");
    }

    #[test]
    fn a_pci_directory_that_disagrees_with_its_minor_is_refused() {
        let sys = tempfile::tempdir().unwrap();
        let dbg = tempfile::tempdir().unwrap();
        let card = sysfs_with_two_cards(sys.path());
        testtree::write(
            &dbg.path().join("dri").join(C1).join("name"),
            &name_line(C1),
        );
        testtree::write(&dbg.path().join("dri/1/name"), &name_line(OTHER));
        let e = recover_path(dbg.path(), &card).unwrap_err();
        assert!(
            matches!(e, ResetError::WrongDevice { ref path, .. } if path.ends_with("dri/1/name")),
            "{e:?}"
        );
    }

    #[test]
    fn the_other_cards_lookup_resets_only_the_other_card() {
        let sys = tempfile::tempdir().unwrap();
        let dbg = tempfile::tempdir().unwrap();
        sysfs_with_two_cards(sys.path());
        debugfs_new(dbg.path());
        let other = find_card(sys.path(), OTHER.parse().unwrap()).unwrap();
        let p = recover_path(dbg.path(), &other).unwrap();
        assert_eq!(p, dbg.path().join("dri").join(OTHER).join(GPU_RECOVER));
    }

    #[test]
    fn names_device_reads_the_kernels_line() {
        let c1: PciAddress = C1.parse().unwrap();
        assert!(names_device(
            "amdgpu dev=0000:c1:00.0 unique=0000:c1:00.0",
            c1
        ));
        assert!(names_device(
            "amdgpu dev=0000:c1:00.0 master=0000:c1:00.0 unique=0000:c1:00.0",
            c1
        ));
        assert!(names_device("amdgpu dev=0000:c1:00.0", c1));
        assert!(!names_device(
            "amdgpu dev=0000:03:00.0 unique=0000:03:00.0",
            c1
        ));
        assert!(!names_device(
            "amdgpu dev=0000:c1:00.0 unique=0000:03:00.0",
            c1
        ));
        assert!(!names_device(
            "i915 dev=0000:c1:00.0 unique=0000:c1:00.0",
            c1
        ));
        assert!(!names_device("amdgpu", c1));
        assert!(!names_device("", c1));
        assert!(!names_device("amdgpu dev=garbage", c1));
    }

    #[test]
    fn another_driver_is_refused() {
        let sys = tempfile::tempdir().unwrap();
        let dbg = tempfile::tempdir().unwrap();
        let card = sysfs_with_two_cards(sys.path());
        testtree::write(
            &dbg.path().join("dri/1/name"),
            "i915 dev=0000:c1:00.0 unique=0000:c1:00.0\n",
        );
        let e = recover_path(dbg.path(), &card).unwrap_err();
        assert!(e.to_string().contains("says `i915 dev="), "{e}");
    }

    #[test]
    fn without_a_name_file_nothing_is_reset() {
        let sys = tempfile::tempdir().unwrap();
        let dbg = tempfile::tempdir().unwrap();
        let card = sysfs_with_two_cards(sys.path());
        testtree::write(&dbg.path().join("dri/1").join(GPU_RECOVER), "0\n");
        let e = recover_path(dbg.path(), &card).unwrap_err();
        assert!(matches!(e, ResetError::Unverifiable { .. }), "{e:?}");
        let shown = e.to_string();
        assert!(
            shown.contains("read `") && shown.contains("dri/1/name` to check"),
            "{shown}"
        );
        assert!(shown.ends_with("no such file or directory"), "{shown}");
    }

    #[test]
    fn no_debugfs_lists_what_was_tried() {
        let sys = tempfile::tempdir().unwrap();
        let dbg = tempfile::tempdir().unwrap();
        let card = sysfs_with_two_cards(sys.path());
        let shown = recover_path(dbg.path(), &card).unwrap_err().to_string();
        assert!(shown.contains("dri/0000:c1:00.0`, `"), "{shown}");
        assert!(shown.contains("dri/1`"), "{shown}");
    }

    #[test]
    fn no_recover_file_says_so() {
        let sys = tempfile::tempdir().unwrap();
        let dbg = tempfile::tempdir().unwrap();
        let card = sysfs_with_two_cards(sys.path());
        testtree::write(&dbg.path().join("dri/1/name"), &name_line(C1));
        let e = recover_path(dbg.path(), &card).unwrap_err();
        assert!(matches!(e, ResetError::NoRecoverFile { .. }), "{e:?}");
    }

    #[test]
    fn the_resets_result_is_its_errno() {
        let sys = tempfile::tempdir().unwrap();
        let dbg = tempfile::tempdir().unwrap();
        let card = sysfs_with_two_cards(sys.path());
        debugfs_old(dbg.path());
        let file = dbg.path().join("dri/1").join(GPU_RECOVER);
        std::fs::write(&file, "-110\n").unwrap();
        let e = gpu_recover(dbg.path(), &card, &Destructive(())).unwrap_err();
        assert!(matches!(e, ResetError::Failed { code: -110, .. }), "{e:?}");
        assert!(
            e.to_string()
                .contains("-110 (ETIMEDOUT: Connection timed out)"),
            "{e}"
        );
        std::fs::write(&file, "reset\n").unwrap();
        let e = gpu_recover(dbg.path(), &card, &Destructive(())).unwrap_err();
        assert!(e.to_string().contains("returned `reset\\n`"), "{e}");
        std::fs::write(&file, "0").unwrap();
        gpu_recover(dbg.path(), &card, &Destructive(())).unwrap();
    }
}
