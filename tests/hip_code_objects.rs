//! With `--features hip`: every code object build.rs embedded, read back with llvm-readelf as
//! CI reads it, holds every kernel of `kernels::SIGNATURES` (its symbol and its `.kd`
//! descriptor), carries the target id it was built for, and places each kernel's explicit
//! arguments at the offsets and sizes `args::layout` gives, pointers as global buffers and the
//! rest by value: what hipModuleLaunchKernel relies on when it copies `kernelParams`.
//!
//! Without llvm-readelf (`SVMCONF_READELF`, else `llvm-readelf-19`, else `llvm-readelf`) the
//! tests say so and skip, since the build machine of the lab may lack it; under `CI=true` they
//! fail, and CI installs it (`.ci/hip`). So do they where build.rs wrote only offload bundles
//! (hipcc), which llvm-readelf cannot read.
#![cfg(feature = "hip")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use svmconf::device::hip::args::layout;
use svmconf::device::hip::target::TargetId;
use svmconf::device::hip::{CodeObject, CODE_OBJECTS};
use svmconf::device::kernels::SIGNATURES;
use svmconf::util::yaml::{self, Value};

fn readelf() -> Option<PathBuf> {
    let names = match std::env::var("SVMCONF_READELF") {
        Ok(n) => vec![n],
        Err(_) => vec!["llvm-readelf-19".into(), "llvm-readelf".into()],
    };
    names.into_iter().find_map(|n| {
        let ok = Command::new(&n)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then(|| PathBuf::from(n))
    })
}

/// `llvm-readelf -s --notes` of one code object.
fn dump(tool: &PathBuf, object: &CodeObject) -> String {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("kernels.co");
    std::fs::write(&path, object.bytes).expect("write the code object");
    let out = Command::new(tool)
        .args(["-s", "--notes"])
        .arg(&path)
        .output()
        .expect("llvm-readelf runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The AMDGPU metadata note: the YAML between `---` and `...`.
fn metadata(dump: &str) -> Result<Value, String> {
    let start = dump.find("---\n").ok_or("no AMDGPU metadata note")?;
    let text = &dump[start + 4..];
    let end = text.find("\n...").unwrap_or(text.len());
    yaml::parse(&text[..end], Path::new("llvm-readelf --notes"))
        .map_err(|e| format!("the metadata note is not YAML: {e}"))
}

/// Every way `dump` differs from what `target` and SIGNATURES require, one line each.
fn problems(target: &str, dump: &str) -> Vec<String> {
    let mut out = Vec::new();
    let symbol = |kind: &str, name: &str| {
        dump.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 8 && f[3] == kind && f[7] == name
        })
    };
    for (_, kernel, _) in SIGNATURES {
        if !symbol("FUNC", kernel) {
            out.push(format!("{target}: no FUNC symbol {kernel}"));
        }
        if !symbol("OBJECT", &format!("{kernel}.kd")) {
            out.push(format!("{target}: no kernel descriptor {kernel}.kd"));
        }
    }
    let meta = match metadata(dump) {
        Ok(m) => m,
        Err(e) => return [out, vec![format!("{target}: {e}")]].concat(),
    };
    let want = format!(
        "amdgcn-amd-amdhsa--{}",
        TargetId::parse(target).expect("build.rs checked it")
    );
    let got = meta["amdhsa.target"].as_str().unwrap_or("(none)");
    if got != want {
        out.push(format!("{target}: amdhsa.target is {got}, expected {want}"));
    }
    let kernels = meta["amdhsa.kernels"]
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    for (_, kernel, params) in SIGNATURES {
        let Some(k) = kernels.iter().find(|k| k[".name"].as_str() == Some(kernel)) else {
            out.push(format!("{target}: no metadata for {kernel}"));
            continue;
        };
        let explicit: Vec<&Value> = k[".args"]
            .as_sequence()
            .map(|a| {
                a.iter()
                    .filter(|a| {
                        !a[".value_kind"]
                            .as_str()
                            .unwrap_or("")
                            .starts_with("hidden_")
                    })
                    .collect()
            })
            .unwrap_or_default();
        let laid = layout(params).expect("SIGNATURES types all pack");
        if explicit.len() != laid.len() {
            out.push(format!(
                "{target}: {kernel} has {} explicit arguments, SIGNATURES {}",
                explicit.len(),
                laid.len()
            ));
            continue;
        }
        for ((arg, want), param) in explicit.iter().zip(&laid).zip(params.iter()) {
            let offset = arg[".offset"].as_u64().unwrap_or(u64::MAX);
            let size = arg[".size"].as_u64().unwrap_or(u64::MAX);
            let kind = arg[".value_kind"].as_str().unwrap_or("");
            let want_kind = if param.ty.ends_with('*') {
                "global_buffer"
            } else {
                "by_value"
            };
            if (offset, size) != (want.offset as u64, want.size as u64) || kind != want_kind {
                out.push(format!(
                    "{target}: {kernel} argument {} is {kind} at {offset}+{size}, svmconf packs \
                     {want_kind} at {}+{}",
                    param.name, want.offset, want.size
                ));
            }
        }
    }
    out
}

/// llvm-readelf, or `None` after [`common::needs::missing`] (a failure under `CI=true`).
fn readelf_or_skip() -> Option<PathBuf> {
    let tool = readelf();
    if tool.is_none() {
        common::needs::missing(
            "llvm-readelf (SVMCONF_READELF, else llvm-readelf-19, else llvm-readelf)",
            "Debian package llvm-19, or set SVMCONF_READELF",
        );
    }
    tool
}

/// The dump of the first embedded ELF code object, or `None` after
/// [`common::needs::missing`].
fn first_dump() -> Option<(&'static CodeObject, String)> {
    let tool = readelf_or_skip()?;
    let Some(object) = CODE_OBJECTS
        .iter()
        .find(|o| o.bytes.starts_with(b"\x7fELF"))
    else {
        common::needs::missing(
            "an ELF code object (build.rs wrote only hipcc's offload bundles)",
            "build with clang-19 (Debian package clang-19, SVMCONF_HIP_COMPILER=clang-19)",
        );
        return None;
    };
    Some((object, dump(&tool, object)))
}

#[test]
fn hip_code_objects_hold_every_kernel_for_their_target() {
    let Some(tool) = readelf_or_skip() else {
        return;
    };
    let mut all = Vec::new();
    let mut inspected = 0;
    for object in CODE_OBJECTS {
        if !object.bytes.starts_with(b"\x7fELF") {
            eprintln!(
                "{}: an offload bundle (hipcc), not inspected",
                object.target
            );
            continue;
        }
        inspected += 1;
        all.extend(problems(object.target, &dump(&tool, object)));
    }
    if inspected == 0 {
        common::needs::missing(
            "an ELF code object (build.rs wrote only hipcc's offload bundles)",
            "build with clang-19 (Debian package clang-19, SVMCONF_HIP_COMPILER=clang-19)",
        );
        return;
    }
    assert!(
        all.is_empty(),
        "the code objects are not what svmconf launches:\n  {}",
        all.join("\n  ")
    );
}

#[test]
fn hip_code_object_check_catches_a_missing_descriptor_a_wrong_target_and_a_moved_argument() {
    let Some((object, good)) = first_dump() else {
        return;
    };
    assert_eq!(problems(object.target, &good), Vec::<String>::new());

    let no_kd: String = good
        .lines()
        .filter(|l| !l.ends_with(" svm_fill.kd"))
        .map(|l| format!("{l}\n"))
        .collect();
    let p = problems(object.target, &no_kd);
    assert!(
        p.iter()
            .any(|l| l.ends_with("no kernel descriptor svm_fill.kd")),
        "{p:?}"
    );

    let other = if object.target.starts_with("gfx942") {
        "gfx906"
    } else {
        "gfx942"
    };
    let p = problems(
        &object.target.replacen(&object.target[..6], other, 1),
        &good,
    );
    assert!(p.iter().any(|l| l.contains("amdhsa.target is")), "{p:?}");

    // svm_atomic_inc's `iterations` sits at 16: claim 24 and the layout check must object.
    let moved = move_first_offset_16_of(&good, "svm_atomic_inc");
    let p = problems(object.target, &moved);
    assert!(
        p.iter()
            .any(|l| l.contains("svm_atomic_inc argument iterations")),
        "{p:?}"
    );
}

/// The dump with the first `.offset: 16` of `kernel`'s metadata changed to 24.
fn move_first_offset_16_of(dump: &str, kernel: &str) -> String {
    // Kernels are listed whole, `.args` before `.name`: find the entry that ends with this name.
    let name_at = dump
        .find(&format!(".name:           {kernel}\n"))
        .expect("the kernel is in the metadata");
    // Each kernel's entry opens a YAML list item (`  - .agpr_count` on gfx942; gfx906 has no
    // AGPRs, so its first key differs).
    let entry_start = dump[..name_at].rfind("\n  - .").expect("an entry start") + 1;
    let entry = &dump[entry_start..name_at];
    let changed = entry.replacen(".offset:         16\n", ".offset:         24\n", 1);
    assert_ne!(entry, changed, "{kernel} has an argument at 16");
    format!("{}{}{}", &dump[..entry_start], changed, &dump[name_at..])
}
