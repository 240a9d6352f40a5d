//! The vsvm backend's copy of the driver's uAPI (`src/device/vsvm/uapi.rs`) against the header
//! itself (`lab/vm/vsvm/vsvm_drm.h`): a C program includes the header, prints every ioctl number,
//! struct size, field offset and constant the backend uses, and each must be what the Rust side
//! says. A field added to the header and not to the backend (or the other way round) would
//! have the kernel write past the backend's struct, or the backend read the wrong counter.

mod common;

use std::mem::{offset_of, size_of};
use std::path::Path;
use std::process::Command;

use svmconf::device::vsvm::uapi::{self, Command as _, *};

/// `NAME VALUE` lines the header gives, from a C program compiled with the system compiler.
fn from_the_header(program: &str) -> Option<Vec<(String, u64)>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("a temporary folder");
    let src = dir.path().join("layout.c");
    let exe = dir.path().join("layout");
    std::fs::write(&src, program).expect("writing layout.c");
    let cc = Command::new("cc")
        .arg("-Wall")
        .arg("-Werror")
        .arg("-I")
        .arg(root.join("lab/vm/findings/include"))
        .arg("-I")
        .arg(root.join("lab/vm/vsvm"))
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .output();
    let cc = match cc {
        Ok(out) => out,
        Err(_) => {
            common::needs::missing("cc", "the Debian package gcc");
            return None;
        }
    };
    assert!(
        cc.status.success(),
        "cc could not build the layout program:\n{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let out = Command::new(&exe)
        .output()
        .expect("the layout program runs");
    assert!(out.status.success());
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let (name, value) = l.rsplit_once(' ').expect("NAME VALUE");
                (name.to_string(), value.parse().expect("a number"))
            })
            .collect(),
    )
}

/// The C program: one `printf` per name, numbers as unsigned decimal.
fn program(items: &[(&str, u64)]) -> String {
    let mut c = String::from(
        "#include <stddef.h>\n#include <stdio.h>\n#include \"vsvm_drm.h\"\nint main(void)\n{\n",
    );
    for (name, _) in items {
        c.push_str(&format!(
            "\tprintf(\"%s %llu\\n\", \"{name}\", (unsigned long long)({name}));\n"
        ));
    }
    c.push_str("\treturn 0;\n}\n");
    c
}

#[test]
fn the_backends_uapi_is_the_headers() {
    let q = "struct drm_vsvm_query";
    let owned: Vec<(String, u64)> = vec![
        ("DRM_IOCTL_VSVM_QUERY".into(), Query::REQUEST as u64),
        ("DRM_IOCTL_VSVM_READ".into(), Op::Read.request() as u64),
        ("DRM_IOCTL_VSVM_WRITE".into(), Op::Write.request() as u64),
        (
            "DRM_IOCTL_VSVM_ATOMIC_INC".into(),
            Op::AtomicInc.request() as u64,
        ),
        ("DRM_IOCTL_VSVM_PREFETCH".into(), Prefetch::REQUEST as u64),
        (
            "DRM_IOCTL_VSVM_SET_PREFERRED".into(),
            SetPreferred::REQUEST as u64,
        ),
        ("DRM_IOCTL_VSVM_RESIDENCY".into(), Residency::REQUEST as u64),
        ("DRM_IOCTL_VSVM_EVICT_ALL".into(), EvictAll::REQUEST as u64),
        ("DRM_IOCTL_VSVM_CREATE_BO".into(), CreateBo::REQUEST as u64),
        ("DRM_IOCTL_VSVM_FREE_BO".into(), FreeBo::REQUEST as u64),
        ("DRM_IOCTL_VSVM_RESET".into(), Reset::REQUEST as u64),
        ("DRM_VSVM_VERSION".into(), uapi::VERSION as u64),
        (
            "DRM_VSVM_PLANT_COPY_TO_RAM_CORRUPT".into(),
            plant::COPY_TO_RAM_CORRUPT as u64,
        ),
        (
            "DRM_VSVM_PLANT_COPY_TO_DEVMEM_SKIP".into(),
            plant::COPY_TO_DEVMEM_SKIP as u64,
        ),
        (
            "DRM_VSVM_PLANT_RELEASE_LEAK".into(),
            plant::RELEASE_LEAK as u64,
        ),
        (
            "DRM_VSVM_PLANT_BO_MOVE_NO_EVICT".into(),
            plant::BO_MOVE_NO_EVICT as u64,
        ),
        (
            "DRM_VSVM_PLANT_STALE_VRAM_MAPPING".into(),
            plant::STALE_VRAM_MAPPING as u64,
        ),
        ("DRM_VSVM_PLANT_COUNT".into(), plant::COUNT as u64),
        ("DRM_VSVM_LOC_SYSTEM".into(), loc::SYSTEM as u64),
        ("DRM_VSVM_LOC_VRAM".into(), loc::VRAM as u64),
        ("DRM_VSVM_RES_SYSTEM".into(), res::SYSTEM as u64),
        ("DRM_VSVM_RES_VRAM".into(), res::VRAM as u64),
        ("DRM_VSVM_RES_GPU_MAPPED".into(), res::GPU_MAPPED as u64),
        ("DRM_VSVM_RES_GPU_VRAM".into(), res::GPU_VRAM as u64),
        (format!("sizeof({q})"), size_of::<Query>() as u64),
        (
            format!("offsetof({q}, planted)"),
            offset_of!(Query, planted) as u64,
        ),
        (
            format!("offsetof({q}, version)"),
            offset_of!(Query, version) as u64,
        ),
        (
            format!("offsetof({q}, svm_evictions)"),
            offset_of!(Query, svm_evictions) as u64,
        ),
        (
            format!("offsetof({q}, evict_tt_allocs)"),
            offset_of!(Query, evict_tt_allocs) as u64,
        ),
        (
            format!("offsetof({q}, evict_tt_bytes)"),
            offset_of!(Query, evict_tt_bytes) as u64,
        ),
        (
            format!("offsetof({q}, evict_tt_peak_bytes)"),
            offset_of!(Query, evict_tt_peak_bytes) as u64,
        ),
        (
            format!("offsetof({q}, evict_tt_pages)"),
            offset_of!(Query, evict_tt_pages) as u64,
        ),
        (
            format!("offsetof({q}, svm_evicted_bytes)"),
            offset_of!(Query, svm_evicted_bytes) as u64,
        ),
        (
            format!("offsetof({q}, planted_fired)"),
            offset_of!(Query, planted_fired) as u64,
        ),
        (
            "sizeof(struct drm_vsvm_access)".into(),
            size_of::<Access>() as u64,
        ),
        (
            "offsetof(struct drm_vsvm_access, migrated_pages)".into(),
            offset_of!(Access, migrated_pages) as u64,
        ),
        (
            "sizeof(struct drm_vsvm_prefetch)".into(),
            size_of::<Prefetch>() as u64,
        ),
        (
            "offsetof(struct drm_vsvm_prefetch, failed_ranges)".into(),
            offset_of!(Prefetch, failed_ranges) as u64,
        ),
        (
            "sizeof(struct drm_vsvm_residency)".into(),
            size_of::<Residency>() as u64,
        ),
        (
            "sizeof(struct drm_vsvm_create_bo)".into(),
            size_of::<CreateBo>() as u64,
        ),
        (
            "offsetof(struct drm_vsvm_create_bo, handle)".into(),
            offset_of!(CreateBo, handle) as u64,
        ),
        (
            "sizeof(struct drm_vsvm_reset)".into(),
            size_of::<Reset>() as u64,
        ),
    ];
    let items: Vec<(&str, u64)> = owned.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    let Some(header) = from_the_header(&program(&items)) else {
        return;
    };
    let wrong: Vec<String> = items
        .iter()
        .zip(&header)
        .filter(|((_, ours), (_, theirs))| ours != theirs)
        .map(|((name, ours), (_, theirs))| {
            format!("{name}: the backend says {ours}, the header {theirs}")
        })
        .collect();
    assert_eq!(header.len(), items.len());
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The check can fail: a header with one field more in QUERY is told apart, by name.
#[test]
fn a_header_that_drifted_is_named() {
    let items = [(
        "sizeof(struct drm_vsvm_query) + 8",
        size_of::<Query>() as u64,
    )];
    let Some(header) = from_the_header(&program(&items)) else {
        return;
    };
    assert_ne!(header[0].1, items[0].1, "a drifted size differs");
}
