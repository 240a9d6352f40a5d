//! Device profiles (`fixtures/profiles/*.yaml`): what a device is, the physical limits its
//! figures are checked against, and, for the reference device, the policy and cost model the
//! sim follows. Each rule of the reference policy is a field here, so that a different kernel
//! is described in a profile rather than hard-coded.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// One device profile.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Short name, the file stem: `sim`, `mi300x`, `mi60`.
    pub name: String,
    pub description: String,
    /// Architecture or target id the device must report (`gfx942`, `gfx906`, `sim`).
    pub arch: String,
    pub vram_bytes: u64,
    pub gpus: u32,
    /// Whether fault-driven cases can run: XNACK on.
    pub xnack: bool,
    pub limits: Limits,
    /// The reference policy; the sim follows it and the suite expects it.
    #[serde(default)]
    pub policy: Policy,
    /// How the sim's clock advances. Required for `--backend sim`.
    #[serde(default)]
    pub sim: Option<SimCost>,
    /// What the device under test and its host must be before a run starts, checked by
    /// [`crate::harness::preflight`]; absent, nothing is checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
}

/// What a run on this profile expects of the device and host; each field optional, each
/// checked only when given. A lab machine that booted the wrong kernel, lost a module
/// parameter or holds another card is told so before any case runs, not by a night of
/// failures.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The processor the device reports (`gfx942`), optionally with target features that must
    /// be on (`gfx942:xnack+`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// XNACK (GPU page-fault retry), from the device's target id where it says, else from the
    /// backend's capabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xnack: Option<bool>,
    /// VRAM in GiB as marketed (192 for an MI300X); the device reports a little less, since
    /// firmware and the driver reserve some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vram_gib: Option<f64>,
    /// How far the reported VRAM may be from `vram_gib`, in percent; default
    /// [`VRAM_TOLERANCE_PCT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vram_tolerance_pct: Option<f64>,
    /// A regular expression the kernel release (`uname -r`) must match, searched anywhere in
    /// it: `^6\.1[5-9]\..*svm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_release: Option<String>,
    /// amdgpu module parameters, by name, as `/sys/module/amdgpu/parameters/NAME` must read.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub module_params: BTreeMap<String, ParamValue>,
}

/// The default of [`Expect::vram_tolerance_pct`]. Firmware, the driver and the display take
/// well under 1% of VRAM on the parts in the lab (an MI300X reports 191.98 of its 192 GiB);
/// a different SKU, a card of another size or a compute partition (CPX: an eighth of the
/// VRAM) is off by a quarter or more. 3% sits far from both.
pub const VRAM_TOLERANCE_PCT: f64 = 3.0;

/// A module parameter's value as a profile writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamValue {
    /// A number: `noretry: 0`; sysfs must show the same integer.
    Int(i64),
    /// `true` or `false`: sysfs shows `Y`/`N` (or `1`/`0`) for bool parameters.
    Bool(bool),
    /// Anything else, compared as text with surrounding whitespace ignored.
    Text(String),
}

impl ParamValue {
    /// Whether the content of a parameter's sysfs file is this value.
    pub fn matches(&self, sysfs: &str) -> bool {
        let found = sysfs.trim();
        match self {
            ParamValue::Int(n) => found.parse::<i64>() == Ok(*n),
            ParamValue::Bool(b) => match found {
                "Y" | "y" | "1" => *b,
                "N" | "n" | "0" => !*b,
                _ => false,
            },
            ParamValue::Text(t) => found == t.trim(),
        }
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Int(n) => write!(f, "{n}"),
            ParamValue::Bool(b) => write!(f, "{}", if *b { "Y" } else { "N" }),
            ParamValue::Text(t) => f.write_str(t),
        }
    }
}

impl Serialize for ParamValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ParamValue::Int(n) => s.serialize_i64(*n),
            ParamValue::Bool(b) => s.serialize_bool(*b),
            ParamValue::Text(t) => s.serialize_str(t),
        }
    }
}

impl<'de> Deserialize<'de> for ParamValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ParamValue, D::Error> {
        d.deserialize_any(ParamVisitor)
    }
}

/// Written out rather than `#[serde(untagged)]`, whose error says only that no variant
/// matched; this one says what a parameter value may be, at the value's line.
struct ParamVisitor;

impl Visitor<'_> for ParamVisitor {
    type Value = ParamValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a module parameter value: an integer, true or false, or a string")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<ParamValue, E> {
        Ok(ParamValue::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ParamValue, E> {
        Ok(ParamValue::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ParamValue, E> {
        i64::try_from(v)
            .map(ParamValue::Int)
            .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ParamValue, E> {
        Ok(ParamValue::Text(v.to_string()))
    }
}

/// Physical limits, per direction. A figure above one of these is a measurement error.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// The host link, for example "PCIe Gen5 x16".
    pub link: String,
    /// Peak of the link in GB/s (10^9 bytes per second), per direction.
    pub link_peak_gbps: f64,
    /// Peak of device memory in GB/s.
    pub memory_peak_gbps: f64,
    /// The most system memory one case may take: eviction cases need their SVM data and the
    /// transients of evicting it in host RAM, and a case that would need more skips rather
    /// than push the lab machine into the OOM killer. None: no bound but what is available.
    #[serde(default)]
    pub system_memory_bytes: Option<u64>,
    /// The slowest figures a path may plausibly show; below them a case fails as too slow,
    /// with or without a baseline. None: no floor (the figures are then judged against a
    /// baseline only, and each timed case says so).
    #[serde(default)]
    pub slowest: Option<Slowest>,
}

/// The slowest plausible migration on this machine (`limits.slowest`): a time per migration
/// of one range (the fixed cost of setting up its device allocation and copy), a copy rate as
/// a fraction of the link's peak, and a time per fault. A figure slower than these bounds is
/// not a noisy night but a broken path.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Slowest {
    /// The slowest copy rate, as a fraction of `link_peak_gbps` (0 < x <= 1).
    pub link_fraction: f64,
    /// The most one migration (one range) may take besides its copy, in µs.
    pub migration_us: f64,
    /// The most servicing one GPU or CPU fault may take besides its migration, in µs.
    pub fault_us: f64,
}

impl Slowest {
    /// The longest `bytes` may plausibly take to migrate in at most `migrations` migrations
    /// with `faults` faults, over a link of `link_peak_gbps`, in seconds.
    pub fn longest_s(&self, bytes: u64, migrations: u64, faults: u64, link_peak_gbps: f64) -> f64 {
        let copy_s = bytes as f64 / (self.link_fraction * link_peak_gbps * 1e9);
        copy_s + (migrations as f64 * self.migration_us + faults as f64 * self.fault_us) * 1e-6
    }
}

/// The reference policy of the series. Defaults are the series as posted (v4, XNACK on).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Range chunk sizes in bytes, largest first. A GPU fault forms a range of the largest that
    /// is aligned, inside the CPU mapping and overlapping no existing range.
    pub chunk_sizes: Vec<u64>,
    /// A GPU access to a system page migrates its range to VRAM (unless preferred is system).
    pub gpu_fault_migrates: bool,
    /// With preferred location system, a GPU fault maps the page in place.
    pub preferred_system_maps_in_place: bool,
    /// A CPU fault migrates the whole devmem allocation back, not just the page.
    pub cpu_fault_migrates_whole_allocation: bool,
    /// Shared and file-backed mappings migrate (false in the series).
    pub shared_and_file_migrate: bool,
    /// TTM evicts least-recently-used SVM allocations whole when VRAM is needed.
    pub evict_lru_whole: bool,
    /// What "recently used" means on TTM's LRU for SVM allocations ([`EvictionOrder`]).
    pub eviction_order: EvictionOrder,
    /// Each eviction allocates a throwaway system resource of the allocation's size.
    pub eviction_transient_system: bool,
    /// A GPU reset loses VRAM contents.
    pub reset_loses_vram: bool,
    /// A GPU reset ends every process holding the GPU.
    pub reset_ends_processes: bool,
    /// A partially unmapped range is destroyed and its remaining device pages evicted to RAM.
    pub partial_unmap_evicts: bool,
    /// Most GPUs one SVM process may migrate between (1: no VRAM-to-VRAM migration).
    pub max_gpus: u32,
    /// A transparent huge page migrates to device memory as one device-private folio, and a
    /// CPU fault on any of its pages brings the whole 2 MiB back, whatever `chunk_sizes` says
    /// (Linux 7.3's migrate_device; 6.12 splits the huge page). False: the series as posted
    /// says nothing of it, and the sim splits.
    pub device_private_huge_pages: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            chunk_sizes: vec![2 << 20, 64 << 10, 4 << 10],
            gpu_fault_migrates: true,
            preferred_system_maps_in_place: true,
            cpu_fault_migrates_whole_allocation: true,
            shared_and_file_migrate: false,
            evict_lru_whole: true,
            eviction_order: EvictionOrder::Access,
            eviction_transient_system: true,
            reset_loses_vram: true,
            reset_ends_processes: true,
            partial_unmap_evicts: true,
            max_gpus: 1,
            device_private_huge_pages: false,
        }
    }
}

/// The order TTM evicts SVM allocations in: its LRU, and what moves an allocation to the LRU's
/// tail.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EvictionOrder {
    /// A GPU access moves the allocation to the tail: least recently *used* goes first.
    #[default]
    Access,
    /// Only the migration that filled it does: least recently *migrated* goes first, however
    /// often the GPU touched it since. The drm_pagemap design as xe and the virtual SVM GPU
    /// have it: a GPU access to a mapped page never reaches TTM.
    Migration,
}

impl EvictionOrder {
    /// The name a profile gives it.
    pub fn name(self) -> &'static str {
        match self {
            EvictionOrder::Access => "access",
            EvictionOrder::Migration => "migration",
        }
    }
}

/// The sim's cost model: how long each thing takes on the simulated clock.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SimCost {
    /// Copy bandwidth of a migration (SDMA through the GART window), GB/s.
    pub migrate_gbps: f64,
    /// Fixed cost of starting one migration (one devmem allocation), µs.
    pub migration_fixed_us: f64,
    /// Cost of servicing one GPU page fault, µs, on top of any migration it causes.
    pub gpu_fault_us: f64,
    /// Cost of one CPU fault on a device-private page, µs, on top of the migration.
    pub cpu_fault_us: f64,
    /// Fixed cost of a kernel launch, µs.
    pub launch_us: f64,
    /// Bandwidth of a GPU kernel over VRAM, GB/s.
    pub vram_gbps: f64,
    /// Bandwidth of a GPU kernel over system memory mapped in place, GB/s.
    pub remote_gbps: f64,
    /// Bandwidth of CPU reads and writes of system memory, GB/s.
    pub cpu_gbps: f64,
    /// How long a process aborted by a GPU reset takes to exit, ms.
    pub reset_exit_ms: f64,
    /// Timing noise, so that the statistics that judge timings meet noise like a real GPU's;
    /// none unless the profile asks.
    #[serde(default)]
    pub noise: Noise,
}

/// Multiplicative noise on each timed operation: a log-normal factor with mean 1 and the given
/// coefficient of variation, and now and then an outlier that takes `outlier_factor` times as
/// long (a clock ramp, a page-table walk, another process).
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Noise {
    /// Coefficient of variation: 0.05 is 5%.
    #[serde(default)]
    pub cv: f64,
    /// Probability that an operation is an outlier, 0..1.
    #[serde(default)]
    pub outlier_rate: f64,
    #[serde(default = "one")]
    pub outlier_factor: f64,
}

fn one() -> f64 {
    1.0
}

impl Default for Noise {
    fn default() -> Self {
        Noise {
            cv: 0.0,
            outlier_rate: 0.0,
            outlier_factor: 1.0,
        }
    }
}

impl Noise {
    pub fn is_none(&self) -> bool {
        self.cv == 0.0 && (self.outlier_rate == 0.0 || self.outlier_factor == 1.0)
    }
}
