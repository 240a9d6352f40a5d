//! What a device is and can do, and what a case needs of it: one vocabulary, from which every
//! skip reason comes.

use crate::model::profile::Profile;

/// What a backend is and can do, known before any case runs.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct DeviceInfo {
    /// `sim`, `hip`, `cuda`, `dmirror`.
    pub backend: String,
    /// Human name: "Reference device (profile sim)", "AMD Instinct MI300X".
    pub name: String,
    /// Architecture or target id: `gfx942:sramecc+:xnack+`, `sim`.
    pub arch: String,
    pub vram_bytes: u64,
    pub gpus: u32,
    pub caps: Capabilities,
}

/// What the device can observe or do. A case names what it needs; the runner skips it with the
/// capability's reason when the device lacks it.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Capabilities {
    /// GPU page faults are retried (XNACK on): fault-driven migration can happen at all.
    pub xnack: bool,
    /// `residency()` answers.
    pub residency: bool,
    /// `take_events()` answers.
    pub events: bool,
    /// `vram_used()` answers.
    pub vram_usage: bool,
    /// `eviction_transient()` answers.
    pub eviction_transient: bool,
    /// `gpu_reset()` is implemented (permission is separate).
    pub reset: bool,
    /// VRAM buffer objects can be allocated to force TTM eviction.
    pub device_buffers: bool,
    /// `fork()` is implemented.
    pub fork: bool,
    /// `spawn_process()` is implemented.
    pub processes: bool,
    /// CPU accesses and kernels can run concurrently (racing cases).
    pub concurrency: bool,
}

/// What a body needs from the device; the runner skips the case with the need's reason when the
/// device lacks it, and the case never has to ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// GPU page faults are retried: fault-driven migration can happen at all.
    Xnack,
    /// Per-page residency can be read.
    Residency,
    /// Migration events with triggers can be read.
    Events,
    /// VRAM in use can be read.
    VramUsage,
    /// CPU work and kernels can run at the same time.
    Concurrency,
    /// VRAM buffer objects can be allocated to put pressure on VRAM.
    DeviceBuffers,
    /// Transient system memory of evictions can be measured.
    EvictionTransient,
    Fork,
    /// A second process on the same GPU can be started.
    Processes,
    Reset,
    /// The user allowed destructive operations (`--allow-destructive`).
    Destructive,
    /// Two GPUs and a policy that migrates between them.
    MultiGpu,
    /// A GPU access to system memory migrates it (`policy.gpu_fault_migrates`): the case puts
    /// its data in VRAM by touching it, or checks that a touch does.
    GpuFaultMigration,
}

impl Need {
    pub const ALL: [Need; 13] = [
        Need::Xnack,
        Need::Residency,
        Need::Events,
        Need::VramUsage,
        Need::Concurrency,
        Need::DeviceBuffers,
        Need::EvictionTransient,
        Need::Fork,
        Need::Processes,
        Need::Reset,
        Need::Destructive,
        Need::MultiGpu,
        Need::GpuFaultMigration,
    ];

    /// The name used in `needs:` of the fixtures.
    pub fn name(self) -> &'static str {
        match self {
            Need::Xnack => "xnack",
            Need::Residency => "residency",
            Need::Events => "events",
            Need::VramUsage => "vram_usage",
            Need::Concurrency => "concurrency",
            Need::DeviceBuffers => "device_buffers",
            Need::EvictionTransient => "eviction_transient",
            Need::Fork => "fork",
            Need::Processes => "processes",
            Need::Reset => "reset",
            Need::Destructive => "destructive",
            Need::MultiGpu => "multi_gpu",
            Need::GpuFaultMigration => "gpu_fault_migration",
        }
    }

    pub fn from_name(name: &str) -> Option<Need> {
        Need::ALL.into_iter().find(|n| n.name() == name)
    }

    /// `None` when the device has it; otherwise the skip reason, saying how to get it.
    pub fn unmet(self, dev: &DeviceInfo, profile: &Profile, destructive: bool) -> Option<String> {
        let c = &dev.caps;
        let missing = |what: &str| Some(format!("{} cannot {what}", dev.name));
        match self {
            Need::Xnack if !c.xnack => Some(
                "XNACK is off, so GPU page faults are not retried and fault-driven migration \
                 cannot happen; turn it on (gfx942: HSA_XNACK=1; gfx906: boot with \
                 amdgpu.noretry=0 and set HSA_XNACK=1)"
                    .into(),
            ),
            Need::Residency if !c.residency => missing("report page residency"),
            Need::Events if !c.events => missing("report migration events"),
            Need::VramUsage if !c.vram_usage => missing("report VRAM in use"),
            Need::Concurrency if !c.concurrency => missing("run CPU work beside a kernel"),
            Need::DeviceBuffers if !c.device_buffers => missing("allocate VRAM buffer objects"),
            Need::EvictionTransient if !c.eviction_transient => {
                missing("measure the transient system memory of eviction")
            }
            Need::Fork if !c.fork => missing("fork a process that keeps its SVM mappings"),
            Need::Processes if !c.processes => missing("start a second process on the GPU"),
            Need::Reset if !c.reset => missing("reset the GPU"),
            Need::Destructive if !destructive => Some(
                "destructive (resets the GPU): rerun with --allow-destructive on a machine whose \
                 GPU may be reset"
                    .into(),
            ),
            Need::MultiGpu if dev.gpus < 2 || profile.policy.max_gpus < 2 => Some(format!(
                "needs two GPUs that migrate between each other; the series supports one GPU \
                 (no VRAM-to-VRAM migration): device has {} GPU(s), policy.max_gpus = {}",
                dev.gpus, profile.policy.max_gpus
            )),
            Need::GpuFaultMigration if !profile.policy.gpu_fault_migrates => Some(format!(
                "needs device accesses that migrate what they touch; on {} they map it in place \
                 and only a prefetch migrates (profile {}: policy.gpu_fault_migrates = false)",
                dev.name, profile.name
            )),
            _ => None,
        }
    }
}
