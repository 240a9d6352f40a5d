//! Loading and checking everything under `fixtures/`: device profiles and the case matrix.
//!
//! Every error names the file, and where it can the line, column and field, with what was
//! expected: a typo in a fixture is the most common way a nightly run goes wrong, and the person
//! who reads the message is not the one who wrote the file. Each loaded file comes with its
//! SHA-256 so that `run.json` records exactly which fixtures a run used.
//!
//! # `fixtures/profiles/NAME.yaml`
//! One [`Profile`] per file, `name` equal to the file stem. Checked beyond its schema: VRAM a
//! positive multiple of the page size, at least one GPU, positive finite limits and costs, sim
//! bandwidths within the physical limits they are checked against, chunk sizes descending
//! powers of two that are multiples of 4096 and end with 4096.
//!
//! # `fixtures/cases.yaml`
//! ```yaml
//! sizes:                          # named sizes, the only names cases may use
//!   4KiB: 4096                    # bytes: a positive multiple of 4
//!   2MiB: 2097152
//!   vram/4: {vram_fraction: 0.25} # of the profile's VRAM, in (0, 1], rounded down to 4 KiB
//! defaults:                       # optional; each key optional
//!   kinds: [managed]              # default [managed]
//!   sizes: [2MiB]                 # default none: then every case lists its sizes
//!   repeat: {warmup: 1, reps: 5}  # default {warmup: 1, reps: 5}
//!   timeout_s: 300                # per-case limit under process isolation; default 300
//! cases:
//!   - name: first_touch::untouched  # suite::case, snake_case segments; unique
//!     body: first_touch::gpu_touch  # the registered body; default: the name
//!     sizes: [4KiB, vram/4]         # default: defaults.sizes
//!     kinds: [managed, malloc]      # managed malloc mmap shared file device; default: defaults.kinds
//!     with: {preferred: unset}      # free-form parameters, typed by the body; default {}
//!     repeat: {warmup: 1, reps: 3}  # default: defaults.repeat; reps >= 1
//!     needs: [residency]            # what the device must have (suites::Need names)
//!     timeout_s: 600                # default: defaults.timeout_s; > 0
//! ```
//! A case expands over its kinds × sizes. An instance is named `NAME::SIZE` when the case lists
//! no `kinds` (it runs on the default kinds, and the kind is named too if those are several),
//! and `NAME::KIND::SIZE` when it does. Instance names are unique across the matrix.
//!
//! # `fixtures/kernel-log.yaml`
//! The kernel log lines that never flag a case, each with its reason; the format and the checks
//! (a pattern that compiles and is not empty, a reason) are in [`crate::kmsg`].
//!
//! # `fixtures/amdgpu-trace.yaml`
//! The amdgpu series' dynamic-debug trace lines that count as migration evidence, and the
//! control lines that turn them on; the format and its checks (control lines that are dynamic
//! debug queries, patterns that compile, capture only known groups and say their source) are in
//! [`crate::device::amd::dyndbg`].

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::device::amd::dyndbg::TracePatterns;
use crate::device::{AllocKind, PAGE_SIZE};
use crate::kmsg::AllowList;
use crate::profile::{Expect, Profile, VRAM_TOLERANCE_PCT};
use crate::results::{io_reason, FixtureDigest};
use crate::timing::Repeat;
use crate::yaml::{self, FieldPath, Value, YamlError};

/// The folder of device profiles, inside the fixtures root.
pub const PROFILES_DIR: &str = "profiles";
/// The case matrix, inside the fixtures root.
pub const CASES_FILE: &str = "cases.yaml";
/// The kernel log allow-list, inside the fixtures root.
pub const KERNEL_LOG_FILE: &str = "kernel-log.yaml";
/// The amdgpu series' trace patterns, inside the fixtures root.
pub const AMDGPU_TRACE_FILE: &str = "amdgpu-trace.yaml";

/// A fixture file as loaded: its value, where it came from and its digest.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded<T> {
    pub value: T,
    /// Relative to the fixtures root's parent (`fixtures/profiles/sim.yaml`) when the file lies
    /// under the root, else as given.
    pub path: PathBuf,
    /// SHA-256 of the file's bytes, lowercase hex.
    pub sha256: String,
}

impl<T> Loaded<T> {
    /// What `run.json` records of this file.
    pub fn digest(&self) -> FixtureDigest {
        FixtureDigest {
            path: self.path.display().to_string(),
            sha256: self.sha256.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("cannot read `{}`: {}", path.display(), io_reason(source))]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot list the profiles in `{}`: {}", dir.display(), io_reason(source))]
    ListProfiles { dir: PathBuf, source: io::Error },
    #[error(
        "no profile named `{name}` in `{}` (available: {}); give a name or a path to a .yaml file",
        dir.display(),
        if known.is_empty() { "none".to_string() } else { known.join(", ") }
    )]
    UnknownProfile {
        name: String,
        dir: PathBuf,
        known: Vec<String>,
    },
    /// A place in a YAML file: what its schema rejects (syntax, types, unknown keys, a value
    /// out of range) and what the checks after parsing reject (unknown names, duplicates).
    #[error(transparent)]
    Yaml(#[from] YamlError),
    /// What only a profile reveals, when a case is expanded for it.
    #[error("{}: case `{case}`: {field}: {message}", file.display())]
    Instance {
        file: PathBuf,
        case: String,
        field: String,
        message: String,
    },
}

// --- reading ---------------------------------------------------------------------------------

/// A fixture file's text, with the name it is shown by and its digest.
pub(crate) struct Source {
    pub(crate) text: String,
    /// The path shown to the user and recorded in run.json.
    pub(crate) shown: PathBuf,
    pub(crate) sha256: String,
}

pub(crate) fn read_source(root: &Path, file: &Path) -> Result<Source, FixtureError> {
    let shown = shown_path(root, file);
    let bytes = std::fs::read(file).map_err(|source| FixtureError::Read {
        path: shown.clone(),
        source,
    })?;
    let sha256 = hex(&Sha256::digest(&bytes));
    let text = String::from_utf8(bytes).map_err(|_| FixtureError::Read {
        path: shown.clone(),
        source: io::Error::new(io::ErrorKind::InvalidData, "expected UTF-8 text"),
    })?;
    Ok(Source {
        text,
        shown,
        sha256,
    })
}

/// `file` relative to the parent of `root` (so `fixtures/...`), or as given when it lies
/// elsewhere: messages and run.json then read the same on every machine.
pub(crate) fn shown_path(root: &Path, file: &Path) -> PathBuf {
    let root_name = root
        .canonicalize()
        .ok()
        .and_then(|r| r.file_name().map(PathBuf::from))
        .or_else(|| root.file_name().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("fixtures"));
    if let Ok(rest) = file.strip_prefix(root) {
        return root_name.join(rest);
    }
    if let (Ok(r), Ok(f)) = (root.canonicalize(), file.canonicalize()) {
        if let Ok(rest) = f.strip_prefix(&r) {
            return root_name.join(rest);
        }
    }
    file.to_path_buf()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

// --- profiles --------------------------------------------------------------------------------

/// Loads a profile by name (`sim`: `ROOT/profiles/sim.yaml`) or by file (anything with a `/` or
/// ending in `.yaml`), and checks it beyond its schema.
pub fn load_profile(root: &Path, name_or_file: &str) -> Result<Loaded<Profile>, FixtureError> {
    let file = if name_or_file.contains('/') || name_or_file.ends_with(".yaml") {
        PathBuf::from(name_or_file)
    } else {
        let dir = root.join(PROFILES_DIR);
        let file = dir.join(format!("{name_or_file}.yaml"));
        if !file.is_file() {
            return Err(FixtureError::UnknownProfile {
                name: name_or_file.to_string(),
                dir: shown_path(root, &dir),
                known: profile_names(root)?,
            });
        }
        file
    };
    let src = read_source(root, &file)?;
    let profile: Profile = yaml::parse(&src.text, &src.shown)?;
    check_profile(&profile, &src, &file)?;
    Ok(Loaded {
        value: profile,
        path: src.shown,
        sha256: src.sha256,
    })
}

/// The names of the profiles under `ROOT/profiles`, sorted.
pub fn profile_names(root: &Path) -> Result<Vec<String>, FixtureError> {
    let dir = root.join(PROFILES_DIR);
    let list_err = |source| FixtureError::ListProfiles {
        dir: shown_path(root, &dir),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(list_err)? {
        let path = entry.map_err(list_err)?.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                names.push(stem.to_string());
            }
        }
    }
    names.sort();
    Ok(names)
}

fn check_profile(p: &Profile, src: &Source, file: &Path) -> Result<(), YamlError> {
    let at = |path: FieldPath, msg: String| YamlError::at(&src.shown, &src.text, &path, msg);
    let root = FieldPath::root;

    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if p.name != stem {
        return Err(at(
            root().key("name"),
            format!(
                "profile name `{}` does not match its file name; expected `{stem}`",
                p.name
            ),
        ));
    }
    if p.arch.trim().is_empty() {
        return Err(at(
            root().key("arch"),
            "expected the architecture the device reports (`gfx942`, `sim`), got nothing".into(),
        ));
    }
    if p.vram_bytes == 0 || p.vram_bytes % PAGE_SIZE != 0 {
        return Err(at(
            root().key("vram_bytes"),
            format!(
                "expected a positive multiple of {PAGE_SIZE} (the page size), got {}",
                p.vram_bytes
            ),
        ));
    }
    if p.gpus == 0 {
        return Err(at(
            root().key("gpus"),
            "expected at least 1 GPU, got 0".into(),
        ));
    }
    for (field, value) in [
        ("link_peak_gbps", p.limits.link_peak_gbps),
        ("memory_peak_gbps", p.limits.memory_peak_gbps),
    ] {
        if !(value.is_finite() && value > 0.0) {
            return Err(at(
                root().key("limits").key(field),
                format!("expected a positive finite GB/s figure, got {value}"),
            ));
        }
    }
    if p.limits.system_memory_bytes == Some(0) {
        return Err(at(
            root().key("limits").key("system_memory_bytes"),
            "expected a positive number of bytes (leave it out for no bound), got 0".into(),
        ));
    }
    check_chunk_sizes(&p.policy.chunk_sizes).map_err(|(i, msg)| {
        let path = root().key("policy").key("chunk_sizes");
        at(i.map_or(path.clone(), |i| path.index(i)), msg)
    })?;
    if p.policy.max_gpus == 0 {
        return Err(at(
            root().key("policy").key("max_gpus"),
            "expected at least 1, got 0".into(),
        ));
    }
    if let Some(sim) = &p.sim {
        let costs = [
            ("migrate_gbps", sim.migrate_gbps),
            ("migration_fixed_us", sim.migration_fixed_us),
            ("gpu_fault_us", sim.gpu_fault_us),
            ("cpu_fault_us", sim.cpu_fault_us),
            ("launch_us", sim.launch_us),
            ("vram_gbps", sim.vram_gbps),
            ("remote_gbps", sim.remote_gbps),
            ("cpu_gbps", sim.cpu_gbps),
            ("reset_exit_ms", sim.reset_exit_ms),
        ];
        for (field, value) in costs {
            if !(value.is_finite() && value > 0.0) {
                return Err(at(
                    root().key("sim").key(field),
                    format!("expected a positive finite figure, got {value}"),
                ));
            }
        }
        let n = &sim.noise;
        let noise = [
            (
                "cv",
                n.cv,
                (0.0..=1.0).contains(&n.cv),
                "a coefficient of variation in [0, 1]",
            ),
            (
                "outlier_rate",
                n.outlier_rate,
                (0.0..=1.0).contains(&n.outlier_rate),
                "a probability in [0, 1]",
            ),
            (
                "outlier_factor",
                n.outlier_factor,
                n.outlier_factor.is_finite() && n.outlier_factor >= 1.0,
                "a factor of at least 1",
            ),
        ];
        for (field, value, ok, want) in noise {
            if !ok {
                return Err(at(
                    root().key("sim").key("noise").key(field),
                    format!("expected {want}, got {value}"),
                ));
            }
        }
        // The sim's figures are checked against these limits like real ones: a cost model
        // faster than its own link would fail every timed case as a measurement error.
        let within = [
            (
                "migrate_gbps",
                sim.migrate_gbps,
                p.limits.link_peak_gbps,
                "link_peak_gbps",
            ),
            (
                "remote_gbps",
                sim.remote_gbps,
                p.limits.link_peak_gbps,
                "link_peak_gbps",
            ),
            (
                "vram_gbps",
                sim.vram_gbps,
                p.limits.memory_peak_gbps,
                "memory_peak_gbps",
            ),
        ];
        for (field, value, limit, limit_name) in within {
            if value > limit {
                return Err(at(
                    root().key("sim").key(field),
                    format!(
                        "{value} GB/s is above limits.{limit_name} ({limit} GB/s); \
                         expected at most the physical limit"
                    ),
                ));
            }
        }
    }
    if let Some(expect) = &p.expect {
        check_expect(p, expect, &|field: FieldPath, msg: String| {
            let mut path = root().key("expect");
            path.0.extend(field.0);
            at(path, msg)
        })?;
    }
    Ok(())
}

/// Checks `expect:`: values a device could match, and no contradiction of the profile's own
/// `arch`, `xnack` and `vram_bytes` (two fields saying different things is a typo in one).
fn check_expect(
    p: &Profile,
    e: &Expect,
    at: &dyn Fn(FieldPath, String) -> YamlError,
) -> Result<(), YamlError> {
    let field = |name: &str| FieldPath::root().key(name);
    if let Some(arch) = &e.arch {
        let processor = arch.split(':').next().unwrap_or_default();
        let own = p.arch.split(':').next().unwrap_or_default();
        if processor.trim().is_empty() {
            return Err(at(
                field("arch"),
                "expected the processor the device reports (`gfx942`, `gfx942:xnack+`), got \
                 nothing"
                    .into(),
            ));
        }
        if processor != own {
            return Err(at(
                field("arch"),
                format!(
                    "`{arch}` is another processor than the profile's arch `{}`; expected \
                     `{own}`, with target features if any",
                    p.arch
                ),
            ));
        }
    }
    if let Some(xnack) = e.xnack {
        if xnack != p.xnack {
            return Err(at(
                field("xnack"),
                format!(
                    "{xnack} contradicts the profile's `xnack: {}`; expected the same",
                    p.xnack
                ),
            ));
        }
    }
    let tolerance = e.vram_tolerance_pct.unwrap_or(VRAM_TOLERANCE_PCT);
    if let Some(pct) = e.vram_tolerance_pct {
        if !(pct.is_finite() && pct > 0.0 && pct < 50.0) {
            return Err(at(
                field("vram_tolerance_pct"),
                format!("expected a percentage above 0 and below 50, got {pct}"),
            ));
        }
    }
    if let Some(gib) = e.vram_gib {
        if !(gib.is_finite() && gib > 0.0) {
            return Err(at(
                field("vram_gib"),
                format!("expected a positive size in GiB, got {gib}"),
            ));
        }
        let own = p.vram_bytes as f64 / f64::from(1u32 << 30);
        if (own - gib).abs() > gib * tolerance / 100.0 {
            return Err(at(
                field("vram_gib"),
                format!(
                    "{gib} GiB is not within {tolerance}% of the profile's vram_bytes ({own} \
                     GiB); expected the same size"
                ),
            ));
        }
    }
    if let Some(release) = &e.kernel_release {
        if let Err(err) = regex::Regex::new(release) {
            return Err(at(
                field("kernel_release"),
                format!("not a regular expression: {}", regex_error_text(&err)),
            ));
        }
    }
    for name in e.module_params.keys() {
        let plain = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !plain {
            return Err(at(
                field("module_params").key(name.as_str()),
                format!(
                    "`{name}` is not a module parameter name; expected a file name under \
                     /sys/module/amdgpu/parameters (`noretry`)"
                ),
            ));
        }
    }
    Ok(())
}

/// Checks chunk sizes; on error, the index of the offending entry (None: the whole list).
fn check_chunk_sizes(sizes: &[u64]) -> Result<(), (Option<usize>, String)> {
    const EXPECTED: &str = "expected descending powers of two, multiples of 4096, ending with 4096";
    let Some(&last) = sizes.last() else {
        return Err((None, format!("{EXPECTED}, got an empty list")));
    };
    for (i, &s) in sizes.iter().enumerate() {
        if !s.is_power_of_two() || s % PAGE_SIZE != 0 {
            return Err((
                Some(i),
                format!("{s} is not a power of two multiple of 4096; {EXPECTED}"),
            ));
        }
        if i > 0 && s >= sizes[i - 1] {
            return Err((
                Some(i),
                format!("{s} does not descend from {}; {EXPECTED}", sizes[i - 1]),
            ));
        }
    }
    if last != PAGE_SIZE {
        return Err((
            Some(sizes.len() - 1),
            format!("the list ends with {last}; {EXPECTED}"),
        ));
    }
    Ok(())
}

// --- the case matrix: schema -----------------------------------------------------------------

/// `fixtures/cases.yaml`: named sizes, defaults and the cases.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseMatrix {
    #[serde(default)]
    pub sizes: SizeTable,
    #[serde(default)]
    pub defaults: Defaults,
    pub cases: Vec<CaseSpec>,
    /// Where the matrix came from, for errors found when it is expanded.
    #[serde(skip)]
    file: PathBuf,
}

/// What a case uses when it does not say.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    #[serde(default = "default_kinds", deserialize_with = "kinds")]
    pub kinds: Vec<AllocKind>,
    #[serde(default)]
    pub sizes: Vec<String>,
    #[serde(default)]
    pub repeat: Repeat,
    /// Seconds a case may run before the runner ends it (process isolation only).
    #[serde(default = "default_timeout_s")]
    pub timeout_s: f64,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            kinds: default_kinds(),
            sizes: Vec::new(),
            repeat: Repeat::default(),
            timeout_s: default_timeout_s(),
        }
    }
}

/// Generous for a 64 MiB fault storm on a slow link; a hang is the case this catches.
pub const DEFAULT_TIMEOUT_S: f64 = 300.0;

fn default_timeout_s() -> f64 {
    DEFAULT_TIMEOUT_S
}

fn default_kinds() -> Vec<AllocKind> {
    vec![AllocKind::Managed]
}

/// One entry of `cases:` as written.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CaseSpec {
    #[serde(deserialize_with = "case_name")]
    pub name: String,
    #[serde(default, deserialize_with = "some_case_name")]
    pub body: Option<String>,
    #[serde(default)]
    pub sizes: Option<Vec<String>>,
    #[serde(default, deserialize_with = "some_kinds")]
    pub kinds: Option<Vec<AllocKind>>,
    #[serde(default)]
    pub with: Option<Value>,
    #[serde(default)]
    pub repeat: Option<Repeat>,
    #[serde(default, deserialize_with = "needs")]
    pub needs: Vec<String>,
    #[serde(default)]
    pub timeout_s: Option<f64>,
}

/// A size as written: bytes, or a fraction of the profile's VRAM.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SizeSpec {
    Bytes(u64),
    VramFraction(f64),
}

impl SizeSpec {
    /// Bytes on a device with `vram_bytes` of VRAM; fractions round down to whole pages.
    pub fn resolve(self, vram_bytes: u64) -> u64 {
        match self {
            SizeSpec::Bytes(b) => b,
            SizeSpec::VramFraction(f) => {
                let bytes = (vram_bytes as f64 * f).floor() as u64;
                bytes / PAGE_SIZE * PAGE_SIZE
            }
        }
    }
}

impl fmt::Display for SizeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeSpec::Bytes(b) => write!(f, "{b} bytes"),
            SizeSpec::VramFraction(x) => write!(f, "{x} of VRAM"),
        }
    }
}

/// The `sizes:` table, in file order (the order error messages list the names in).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SizeTable(pub Vec<(String, SizeSpec)>);

impl SizeTable {
    pub fn get(&self, name: &str) -> Option<SizeSpec> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, s)| *s)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(n, _)| n.as_str())
    }
}

/// One case × kind × size, ready to run.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseInstance {
    /// `NAME::SIZE` or `NAME::KIND::SIZE`.
    pub name: String,
    /// The case as written in the matrix.
    pub case: String,
    /// The registered body that runs it.
    pub body: String,
    pub kind: AllocKind,
    pub size_name: String,
    /// Bytes, VRAM fractions resolved against the profile.
    pub size: u64,
    /// The `with:` map; an empty map when absent.
    pub params: Value,
    pub repeat: Repeat,
    pub needs: Vec<String>,
    /// Seconds the case may run under process isolation.
    pub timeout_s: f64,
}

// --- the kernel log allow-list ---------------------------------------------------------------

/// Loads `ROOT/kernel-log.yaml`, the kernel log lines that never flag a case.
pub fn load_kernel_log_allow_list(root: &Path) -> Result<Loaded<AllowList>, FixtureError> {
    let src = read_source(root, &root.join(KERNEL_LOG_FILE))?;
    let allow = AllowList::parse(&src.text, &src.shown)?;
    Ok(Loaded {
        value: allow,
        path: src.shown,
        sha256: src.sha256,
    })
}

// --- the amdgpu trace patterns ----------------------------------------------------------------

/// Loads `ROOT/amdgpu-trace.yaml`, the series' trace lines read as migration evidence.
pub fn load_amdgpu_trace(root: &Path) -> Result<Loaded<TracePatterns>, FixtureError> {
    let src = read_source(root, &root.join(AMDGPU_TRACE_FILE))?;
    let patterns = TracePatterns::parse(&src.text, &src.shown)?;
    Ok(Loaded {
        value: patterns,
        path: src.shown,
        sha256: src.sha256,
    })
}

// --- the case matrix: loading and checks -----------------------------------------------------

/// A regex error as a clause for a fixture error: the regex crate's last line (`unclosed
/// group`), without its `error: ` and the caret diagram above it.
pub(crate) fn regex_error_text(err: &regex::Error) -> String {
    let text = err.to_string();
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(&text)
        .trim();
    last.strip_prefix("error: ").unwrap_or(last).to_string()
}

/// Loads `ROOT/cases.yaml` and checks every reference and name in it.
pub fn load_cases(root: &Path) -> Result<Loaded<CaseMatrix>, FixtureError> {
    let src = read_source(root, &root.join(CASES_FILE))?;
    let matrix = parse_cases(&src.text, &src.shown)?;
    Ok(Loaded {
        value: matrix,
        path: src.shown,
        sha256: src.sha256,
    })
}

/// Parses and checks a case matrix held in memory; `file` is what messages call it. For tests
/// of the runner that need a matrix without a fixtures folder.
pub fn parse_cases(text: &str, file: &Path) -> Result<CaseMatrix, FixtureError> {
    let mut matrix: CaseMatrix = yaml::parse(text, file)?;
    matrix.file = file.to_path_buf();
    matrix.check(text)?;
    Ok(matrix)
}

/// One planned instance, before sizes are resolved.
struct Planned<'m> {
    case_index: usize,
    spec: &'m CaseSpec,
    kind: AllocKind,
    /// Index into the case's own size list, or into `defaults.sizes`.
    size_index: usize,
    size_name: &'m str,
    name: String,
}

impl CaseMatrix {
    /// Expands every case over its kinds × sizes for `profile`.
    pub fn instances(&self, profile: &Profile) -> Result<Vec<CaseInstance>, FixtureError> {
        let mut out = Vec::new();
        for p in self.plan() {
            let spec = self.sizes.get(p.size_name).ok_or_else(|| {
                self.instance_error(&p, {
                    let known: Vec<&str> = self.sizes.names().collect();
                    format!(
                        "unknown size `{}` (known: {})",
                        p.size_name,
                        known.join(", ")
                    )
                })
            })?;
            let size = spec.resolve(profile.vram_bytes);
            if size == 0 {
                return Err(self.instance_error(
                    &p,
                    format!(
                        "size `{}` ({spec}) is 0 bytes on profile `{}` with {} bytes of VRAM \
                         once rounded down to 4 KiB; expected at least one page",
                        p.size_name, profile.name, profile.vram_bytes
                    ),
                ));
            }
            let params = match &p.spec.with {
                Some(v) if !v.is_null() => v.clone(),
                _ => yaml::empty_map(),
            };
            out.push(CaseInstance {
                name: p.name,
                case: p.spec.name.clone(),
                body: p.spec.body.clone().unwrap_or_else(|| p.spec.name.clone()),
                kind: p.kind,
                size_name: p.size_name.to_string(),
                size,
                params,
                repeat: p.spec.repeat.unwrap_or(self.defaults.repeat),
                needs: p.spec.needs.clone(),
                timeout_s: p.spec.timeout_s.unwrap_or(self.defaults.timeout_s),
            });
        }
        Ok(out)
    }

    /// The matrix's file as shown in messages.
    pub fn file(&self) -> &Path {
        &self.file
    }

    fn instance_error(&self, p: &Planned, message: String) -> FixtureError {
        let field = match &p.spec.sizes {
            Some(_) => format!("cases[{}].sizes[{}]", p.case_index, p.size_index),
            None => format!("defaults.sizes[{}]", p.size_index),
        };
        FixtureError::Instance {
            file: self.file.clone(),
            case: p.spec.name.clone(),
            field,
            message,
        }
    }

    /// Every instance in order: cases as written, then kinds, then sizes.
    fn plan(&self) -> Vec<Planned<'_>> {
        let mut out = Vec::new();
        for (case_index, spec) in self.cases.iter().enumerate() {
            let kinds = spec.kinds.as_deref().unwrap_or(&self.defaults.kinds);
            // The kind is part of the name whenever it could tell two instances apart.
            let kind_in_name = spec.kinds.is_some() || self.defaults.kinds.len() > 1;
            let sizes = spec.sizes.as_deref().unwrap_or(&self.defaults.sizes);
            for &kind in kinds {
                for (size_index, size_name) in sizes.iter().enumerate() {
                    let name = if kind_in_name {
                        format!("{}::{kind}::{size_name}", spec.name)
                    } else {
                        format!("{}::{size_name}", spec.name)
                    };
                    out.push(Planned {
                        case_index,
                        spec,
                        kind,
                        size_index,
                        size_name,
                        name,
                    });
                }
            }
        }
        out
    }

    /// The checks that need the whole document: references to sizes, duplicates, empty lists.
    fn check(&self, text: &str) -> Result<(), YamlError> {
        let at = |path: FieldPath, msg: String| YamlError::at(&self.file, text, &path, msg);
        let root = FieldPath::root;
        let known = || self.sizes.names().collect::<Vec<_>>().join(", ");
        let check_size_list = |path: FieldPath, list: &[String], owner: &str| {
            let mut seen = HashSet::new();
            for (i, name) in list.iter().enumerate() {
                if self.sizes.get(name).is_none() {
                    return Err(at(
                        path.clone().index(i),
                        format!("unknown size `{name}`{owner} (known: {})", known()),
                    ));
                }
                if !seen.insert(name) {
                    return Err(at(
                        path.clone().index(i),
                        format!("size `{name}` is listed twice{owner}"),
                    ));
                }
            }
            Ok(())
        };
        let check_repeat = |path: FieldPath, r: &Repeat| {
            if r.reps == 0 {
                return Err(at(
                    path.key("reps"),
                    "expected at least 1 recorded repetition, got 0".into(),
                ));
            }
            Ok(())
        };

        check_size_list(
            root().key("defaults").key("sizes"),
            &self.defaults.sizes,
            "",
        )?;
        if self.defaults.kinds.is_empty() {
            return Err(at(
                root().key("defaults").key("kinds"),
                format!("expected at least one kind ({})", kind_names()),
            ));
        }
        check_repeat(root().key("defaults").key("repeat"), &self.defaults.repeat)?;
        let check_timeout = |path: FieldPath, t: f64| {
            if !(t.is_finite() && t > 0.0) {
                return Err(at(
                    path,
                    format!("expected a positive number of seconds, got {t}"),
                ));
            }
            Ok(())
        };
        check_timeout(
            root().key("defaults").key("timeout_s"),
            self.defaults.timeout_s,
        )?;

        let mut first_of_name: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, case) in self.cases.iter().enumerate() {
            let here = root().key("cases").index(i);
            let owner = format!(" in case `{}`", case.name);
            if let Some(&j) = first_of_name.get(case.name.as_str()) {
                return Err(at(
                    here.key("name"),
                    format!(
                        "duplicate case name `{}`, first used by cases[{j}]",
                        case.name
                    ),
                ));
            }
            first_of_name.insert(&case.name, i);
            match &case.sizes {
                Some(list) if list.is_empty() => {
                    return Err(at(
                        here.key("sizes"),
                        format!("expected at least one size{owner} (known: {})", known()),
                    ))
                }
                Some(list) => check_size_list(here.clone().key("sizes"), list, &owner)?,
                None if self.defaults.sizes.is_empty() => {
                    return Err(at(
                        here,
                        format!(
                            "case `{}` lists no `sizes` and `defaults.sizes` is empty; \
                             expected at least one size (known: {})",
                            case.name,
                            known()
                        ),
                    ))
                }
                None => {}
            }
            if let Some(kinds) = &case.kinds {
                if kinds.is_empty() {
                    return Err(at(
                        here.key("kinds"),
                        format!("expected at least one kind{owner} ({})", kind_names()),
                    ));
                }
                let mut seen = HashSet::new();
                for (k, kind) in kinds.iter().enumerate() {
                    if !seen.insert(kind) {
                        return Err(at(
                            here.clone().key("kinds").index(k),
                            format!("kind `{kind}` is listed twice{owner}"),
                        ));
                    }
                }
            }
            if let Some(with) = &case.with {
                if !(with.is_mapping() || with.is_null()) {
                    return Err(at(
                        here.clone().key("with"),
                        format!(
                            "expected a mapping of parameters{owner}, like {{preferred: unset}}"
                        ),
                    ));
                }
            }
            if let Some(r) = &case.repeat {
                check_repeat(here.clone().key("repeat"), r)?;
            }
            if let Some(t) = case.timeout_s {
                check_timeout(here.clone().key("timeout_s"), t)?;
            }
        }

        let mut first_instance: BTreeMap<String, &str> = BTreeMap::new();
        for p in self.plan() {
            if let Some(other) = first_instance.get(&p.name) {
                return Err(at(
                    root().key("cases").index(p.case_index),
                    format!(
                        "instance `{}` of case `{}` has the same name as an instance of case \
                         `{other}`; expected unique instance names",
                        p.name, p.spec.name
                    ),
                ));
            }
            first_instance.insert(p.name.clone(), &p.spec.name);
        }
        Ok(())
    }
}

// --- field deserializers: each rejects a bad value inside the backend's call for that node,
// which is what makes the backend attach the node's line and column to the error.

/// Reads a string node and checks it; the error, if any, points at the node.
fn checked_str<'de, D, T>(
    d: D,
    expecting: &'static str,
    check: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct V<F>(F, &'static str);

    impl<'de, T, F: FnOnce(&str) -> Result<T, String>> Visitor<'de> for V<F> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.1)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.0)(v).map_err(E::custom)
        }
    }

    d.deserialize_str(V(check, expecting))
}

/// A `suite::case` name: two or more snake_case segments.
fn is_case_name(s: &str) -> bool {
    let segments: Vec<&str> = s.split("::").collect();
    segments.len() >= 2
        && segments.iter().all(|seg| {
            seg.starts_with(|c: char| c.is_ascii_lowercase())
                && seg
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}

fn case_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    checked_str(d, "a case name like `prefetch::to_vram`", |s| {
        if is_case_name(s) {
            Ok(s.to_string())
        } else {
            Err(format!(
                "`{s}` is not a case name; expected suite::case with snake_case segments \
                 (lowercase letters, digits, `_`), like `prefetch::to_vram`"
            ))
        }
    })
}

fn some_case_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    case_name(d).map(Some)
}

/// Every allocation kind's fixture name: `managed, malloc, ...`.
fn kind_names() -> String {
    AllocKind::ALL.map(AllocKind::name).join(", ")
}

struct KindName(AllocKind);

impl<'de> Deserialize<'de> for KindName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "an allocation kind", |s| {
            AllocKind::from_name(s)
                .map(KindName)
                .ok_or_else(|| format!("unknown kind `{s}`, expected one of {}", kind_names()))
        })
    }
}

fn kinds<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<AllocKind>, D::Error> {
    Ok(Vec::<KindName>::deserialize(d)?
        .into_iter()
        .map(|k| k.0)
        .collect())
}

fn some_kinds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<AllocKind>>, D::Error> {
    kinds(d).map(Some)
}

/// The names a case may list under `needs:`: those of [`crate::suites::Need`], the one list
/// the runner checks devices against.
pub fn capability_names() -> Vec<String> {
    crate::suites::Need::ALL
        .iter()
        .map(|n| n.name().to_string())
        .collect()
}

struct NeedName(String);

impl<'de> Deserialize<'de> for NeedName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "a capability name", |s| {
            let known = capability_names();
            if known.iter().any(|k| k == s) {
                Ok(NeedName(s.to_string()))
            } else {
                Err(format!(
                    "unknown capability `{s}`, expected one of {}",
                    known.join(", ")
                ))
            }
        })
    }
}

fn needs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Vec::<NeedName>::deserialize(d)?
        .into_iter()
        .map(|n| n.0)
        .collect())
}

impl<'de> Deserialize<'de> for SizeTable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(SizeTableVisitor)
    }
}

struct SizeTableVisitor;

impl<'de> Visitor<'de> for SizeTableVisitor {
    type Value = SizeTable;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping of size names to sizes, like `4KiB: 4096`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SizeTable, A::Error> {
        let mut table: Vec<(String, SizeSpec)> = Vec::new();
        while let Some(name) = map.next_key_seed(SizeName { table: &table })? {
            let spec = map.next_value::<SizeSpec>()?;
            table.push((name, spec));
        }
        Ok(SizeTable(table))
    }
}

/// A new key of the size table: a usable name, not seen before.
struct SizeName<'t> {
    table: &'t [(String, SizeSpec)],
}

impl<'de> DeserializeSeed<'de> for SizeName<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        checked_str(d, "a size name like `2MiB`", |name| {
            if name.is_empty() || name.contains("::") || name.contains(char::is_whitespace) {
                return Err(format!(
                    "`{name}` is not a size name; expected a name without spaces or `::`, \
                     like `2MiB`"
                ));
            }
            if self.table.iter().any(|(n, _)| n == name) {
                return Err(format!(
                    "size `{name}` is defined twice; expected each name once"
                ));
            }
            Ok(name.to_string())
        })
    }
}

impl<'de> Deserialize<'de> for SizeSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SizeSpecVisitor)
    }
}

struct SizeSpecVisitor;

const SIZE_EXPECTED: &str =
    "a size in bytes (a positive multiple of 4) or {vram_fraction: F} with F in (0, 1]";

impl<'de> Visitor<'de> for SizeSpecVisitor {
    type Value = SizeSpec;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SIZE_EXPECTED)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<SizeSpec, E> {
        if v == 0 || v % 4 != 0 {
            return Err(E::custom(format!("expected {SIZE_EXPECTED}, got {v}")));
        }
        Ok(SizeSpec::Bytes(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<SizeSpec, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(format!("expected {SIZE_EXPECTED}, got {v}"))),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SizeSpec, A::Error> {
        let mut fraction = None;
        while let Some(key) = map.next_key::<String>()? {
            if key != "vram_fraction" {
                return Err(de::Error::unknown_field(&key, &["vram_fraction"]));
            }
            if fraction.is_some() {
                return Err(de::Error::duplicate_field("vram_fraction"));
            }
            fraction = Some(map.next_value::<VramFraction>()?.0);
        }
        fraction
            .map(SizeSpec::VramFraction)
            .ok_or_else(|| de::Error::missing_field("vram_fraction"))
    }
}

struct VramFraction(f64);

impl<'de> Deserialize<'de> for VramFraction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_f64(VramFractionVisitor)
    }
}

struct VramFractionVisitor;

impl<'de> Visitor<'de> for VramFractionVisitor {
    type Value = VramFraction;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a fraction of VRAM in (0, 1]")
    }

    fn visit_f64<E: de::Error>(self, f: f64) -> Result<VramFraction, E> {
        if f > 0.0 && f <= 1.0 {
            Ok(VramFraction(f))
        } else {
            Err(E::custom(format!(
                "expected a fraction of VRAM in (0, 1], got {f}"
            )))
        }
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<VramFraction, E> {
        self.visit_f64(v as f64)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<VramFraction, E> {
        self.visit_f64(v as f64)
    }
}

#[cfg(test)]
mod tests;
