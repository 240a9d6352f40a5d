//! The VM lab's refusals: each bad input ends `lab/vm/run` with its own status and a message
//! that names it, before anything is installed, downloaded or built. (Booting a kernel is
//! `.ci/run`'s VM step; these need no kernel and no network.)

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::needs;
use rstest::rstest;

fn lab(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/vm/run"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("lab/vm/run runs")
}

fn said(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[rstest]
#[case::unknown_kernel(&["--kernel", "9.9"], 2, "--kernel 9.9: expected 7.3 or 6.12")]
#[case::missing_tree(
    &["--kernel-tree", "/nonexistent/linux"],
    5,
    "--kernel-tree /nonexistent/linux: no such folder"
)]
#[case::driver_without_its_framework(
    &["--vsvm", "--kernel", "6.12"],
    6,
    "--vsvm: linux-source-6.12 has no drm_gpusvm"
)]
fn a_bad_kernel_choice_is_refused_with_its_status(
    #[case] args: &[&str],
    #[case] status: i32,
    #[case] message: &str,
) {
    let cache = tempfile::tempdir().expect("a temporary folder");
    let out = lab(args, &[("XDG_CACHE_HOME", cache.path())]);
    assert_eq!(out.status.code(), Some(status), "{}", said(&out));
    assert!(said(&out).contains(message), "{}", said(&out));
    assert_eq!(
        std::fs::read_dir(cache.path()).expect("readable").count(),
        0,
        "nothing is written to the cache"
    );
}

#[test]
fn a_tree_that_is_no_kernel_or_was_built_in_place_is_refused() {
    let cache = tempfile::tempdir().expect("a temporary folder");
    let tree = tempfile::tempdir().expect("a temporary folder");
    let path = tree.path().to_str().expect("UTF-8").to_string();
    let out = lab(
        &["--kernel-tree", &path],
        &[("XDG_CACHE_HOME", cache.path())],
    );
    assert_eq!(out.status.code(), Some(5), "{}", said(&out));
    assert!(
        said(&out).contains("not a readable kernel tree"),
        "{}",
        said(&out)
    );

    for f in ["Makefile", "Kconfig", ".config"] {
        std::fs::write(tree.path().join(f), "").expect("write");
    }
    std::fs::create_dir_all(tree.path().join("arch/x86")).expect("mkdir");
    let out = lab(
        &["--kernel-tree", &path],
        &[("XDG_CACHE_HOME", cache.path())],
    );
    assert_eq!(out.status.code(), Some(5), "{}", said(&out));
    assert!(
        said(&out).contains("has an in-tree build (.config)"),
        "{}",
        said(&out)
    );
}

/// A tree without the framework the virtual SVM GPU is built on cannot have it: status 6.
#[test]
fn the_virtual_gpu_is_refused_on_a_tree_without_drm_gpusvm() {
    let cache = tempfile::tempdir().expect("a temporary folder");
    let tree = tempfile::tempdir().expect("a temporary folder");
    std::fs::write(
        tree.path().join("Makefile"),
        "kernelversion:\n\t@echo 6.12.0\n",
    )
    .expect("write");
    std::fs::write(tree.path().join("Kconfig"), "").expect("write");
    std::fs::create_dir_all(tree.path().join("arch/x86")).expect("mkdir");
    let path = tree.path().to_str().expect("UTF-8").to_string();
    let out = lab(
        &["--kernel-tree", &path, "--vsvm"],
        &[("XDG_CACHE_HOME", cache.path())],
    );
    assert_eq!(out.status.code(), Some(6), "{}", said(&out));
    assert!(
        said(&out).contains("has no drivers/gpu/drm/drm_gpusvm.c"),
        "{}",
        said(&out)
    );
}

/// An archive that does not answer, and nothing cached: status 4, naming the archive and what
/// apt said, and nothing of the machine's own apt configuration used or changed.
#[test]
fn a_download_that_fails_ends_the_lab_with_status_4() {
    if Command::new("apt-get").arg("--version").output().is_err() {
        needs::missing("apt-get", "a Debian or Ubuntu machine");
        return;
    }
    let cache = tempfile::tempdir().expect("a temporary folder");
    let apt = tempfile::tempdir().expect("a temporary folder");
    std::fs::create_dir_all(apt.path().join("sources.list.d")).expect("mkdir");
    std::fs::write(
        apt.path().join("sources.list.d/debian.sources"),
        "Types: deb\nURIs: http://127.0.0.1:9/debian\nSuites: trixie\nComponents: main\n\n\
         Types: deb\nURIs: http://127.0.0.1:9/debian-security\nSuites: trixie-security\n\
         Components: main\n",
    )
    .expect("write");
    let out = lab(
        &["--build-only"],
        &[
            ("XDG_CACHE_HOME", cache.path()),
            ("SVMCONF_LAB_APT_ETC", apt.path()),
        ],
    );
    assert_eq!(out.status.code(), Some(4), "{}", said(&out));
    let said = said(&out);
    assert!(
        said.contains(
            "linux-source-7.3 not found in trixie-backports at http://127.0.0.1:9/debian"
        ) && said.contains("none cached"),
        "{said}"
    );
    let list = std::fs::read_to_string(cache.path().join("svmconf/vm/apt/sources.list"))
        .expect("the lab's own sources list");
    assert_eq!(
        list.trim(),
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] \
         http://127.0.0.1:9/debian trixie-backports main"
    );
}
