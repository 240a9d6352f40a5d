//! With the cargo feature `hip`: compiles every `kernels/*.hip` into one code object per
//! target id and embeds them (`$OUT_DIR/hip_code_objects.rs`, read by src/device/hip/mod.rs).
//! Without the feature it does nothing, so a plain `cargo build` needs no ROCm.
//!
//! Environment:
//! - `SVMCONF_HIP_TARGETS`: comma-separated target ids, in the order the backend prefers them
//!   on a tie (default [`DEFAULT_TARGETS`]: gfx906 and gfx942, each with XNACK on, off, and a
//!   generic object for a runtime that reports no XNACK mode).
//! - `SVMCONF_HIP_COMPILER`: the compiler to use: a clang (any name containing `clang`) or a
//!   hipcc. Default: the first of `clang-19`, `$ROCM_PATH/llvm/bin/clang`,
//!   `/opt/rocm/llvm/bin/clang`, `hipcc` that exists.
//!
//! clang is run as `clang -x hip --offload-arch=T --cuda-device-only --no-gpu-bundle-output
//! -nogpulib -nogpuinc -O3`: a plain code-object ELF with no device library and no HIP header
//! (the kernels use compiler builtins only, kernels/svm_grid.h). hipcc (`--genco`) gives a
//! clang offload bundle, which hipModuleLoadData accepts as well.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "src/device/hip/target.rs"]
#[allow(dead_code)]
mod target;

const DEFAULT_TARGETS: &str =
    "gfx906:xnack+,gfx906:xnack-,gfx906,gfx942:xnack+,gfx942:xnack-,gfx942";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_HIP").is_none() {
        return;
    }
    println!("cargo:rerun-if-changed=kernels");
    println!("cargo:rerun-if-changed=src/device/hip/target.rs");
    for var in [
        "SVMCONF_HIP_TARGETS",
        "SVMCONF_HIP_COMPILER",
        "ROCM_PATH",
        "PATH",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    if let Err(message) = build() {
        eprintln!("error: svmconf --features hip: {message}");
        std::process::exit(1);
    }
}

fn build() -> Result<(), String> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let out = PathBuf::from(std::env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let list = std::env::var("SVMCONF_HIP_TARGETS").unwrap_or_else(|_| DEFAULT_TARGETS.into());
    let targets =
        target::parse_list(&list).map_err(|e| format!("SVMCONF_HIP_TARGETS=`{list}`: {e}"))?;
    let compiler = find_compiler()?;

    let kernels = root.join("kernels");
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&kernels)
        .map_err(|e| format!("cannot list {}: {e}", kernels.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "hip"))
        .collect();
    sources.sort();
    if sources.is_empty() {
        return Err(format!("no .hip files in {}", kernels.display()));
    }
    // One translation unit of every kernel, so that each code object holds them all.
    let unit = out.join("svm_kernels.hip");
    let text: String = sources
        .iter()
        .map(|s| format!("#include \"{}\"\n", s.display()))
        .collect();
    std::fs::write(&unit, text).map_err(|e| format!("writing {}: {e}", unit.display()))?;

    let mut table = String::from("&[\n");
    for t in &targets {
        let object = out.join(format!("svm_kernels-{}.co", t.file_stem()));
        compile(&compiler, t, &unit, &kernels, &object)?;
        table += &format!(
            "    CodeObject {{ target: {:?}, bytes: include_bytes!({:?}) }},\n",
            t.to_string(),
            object.display().to_string()
        );
    }
    table += "]\n";
    let rs = out.join("hip_code_objects.rs");
    std::fs::write(&rs, table).map_err(|e| format!("writing {}: {e}", rs.display()))
}

/// The compiler and whether it is clang (else hipcc).
struct Compiler {
    path: PathBuf,
    clang: bool,
}

fn find_compiler() -> Result<Compiler, String> {
    let is_clang = |p: &Path| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().contains("clang"))
    };
    if let Ok(chosen) = std::env::var("SVMCONF_HIP_COMPILER") {
        let path = which(&chosen).ok_or_else(|| {
            format!("SVMCONF_HIP_COMPILER=`{chosen}` is not an executable file or on PATH")
        })?;
        let clang = is_clang(&path);
        return Ok(Compiler { path, clang });
    }
    let mut tried = vec!["clang-19".to_string()];
    let mut candidates = vec![PathBuf::from("clang-19")];
    if let Ok(rocm) = std::env::var("ROCM_PATH") {
        candidates.push(Path::new(&rocm).join("llvm/bin/clang"));
    }
    candidates.push(PathBuf::from("/opt/rocm/llvm/bin/clang"));
    candidates.push(PathBuf::from("hipcc"));
    tried.extend(candidates[1..].iter().map(|p| p.display().to_string()));
    for c in candidates {
        if let Some(path) = which(&c.to_string_lossy()) {
            let clang = is_clang(&path);
            return Ok(Compiler { path, clang });
        }
    }
    Err(format!(
        "no compiler for the HIP kernels: tried {}. Install clang-19 and lld-19 (Debian: \
         apt-get install clang-19 lld-19) or ROCm, or set SVMCONF_HIP_COMPILER to a clang or \
         hipcc; build without `--features hip` to run on the reference device only",
        tried.join(", ")
    ))
}

/// `name` as an executable: a path that exists, or the first match on PATH.
fn which(name: &str) -> Option<PathBuf> {
    let p = Path::new(name);
    if p.components().count() > 1 {
        return p.is_file().then(|| p.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|c| c.is_file())
}

fn compile(
    compiler: &Compiler,
    target: &target::TargetId,
    unit: &Path,
    include: &Path,
    object: &Path,
) -> Result<(), String> {
    let mut cmd = Command::new(&compiler.path);
    if compiler.clang {
        cmd.args(["-x", "hip"])
            .arg(format!("--offload-arch={target}"))
            .args([
                "--cuda-device-only",
                "--no-gpu-bundle-output",
                "-nogpulib",
                "-nogpuinc",
            ]);
    } else {
        cmd.arg("--genco").arg(format!("--offload-arch={target}"));
    }
    cmd.args(["-O3", "-Wall", "-Wextra"])
        .arg("-I")
        .arg(include)
        .arg(unit)
        .arg("-o")
        .arg(object);
    let shown = format!("{cmd:?}");
    let output = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", compiler.path.display()))?;
    if !output.status.success() {
        return Err(format!(
            "compiling the kernels for {target} failed ({}):\n  {shown}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    for line in String::from_utf8_lossy(&output.stderr).lines() {
        println!("cargo:warning={target}: {line}");
    }
    Ok(())
}
