//! Device profiles (`fixtures/profiles/*.yaml`): what a device is, the physical limits its
//! figures are checked against, and, for the reference device, the policy and cost model the
//! sim follows. Each rule of the reference policy is a field here, so that a different kernel
//! is described in a profile rather than hard-coded.

use serde::{Deserialize, Serialize};

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
            eviction_transient_system: true,
            reset_loses_vram: true,
            reset_ends_processes: true,
            partial_unmap_evicts: true,
            max_gpus: 1,
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
}
