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

/// What the device can observe or do: the device's half of [`Need`], one bit per need the
/// device itself meets ([`Need::DEVICE`]). A case names what it needs; the runner skips it with
/// the need's reason when the device lacks it. There is no second list: a capability *is* a need
/// the device has.
///
/// In `run.json` it is an object of every device need's name and whether the device has it, in
/// [`Need::DEVICE`] order, so a reader needs no table to know what was absent.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities(u32);

impl Capabilities {
    /// A device that has exactly these.
    ///
    /// # Panics
    /// On a need that is not the device's to meet (`destructive`, `multi_gpu`,
    /// `gpu_fault_migration`): they are the run's and the profile's, never a device's.
    pub fn of(needs: &[Need]) -> Capabilities {
        needs
            .iter()
            .fold(Capabilities::default(), |c, &n| c.with(n, true))
    }

    /// Whether the device has `need`. Always false for a need that is not a device's.
    pub fn has(self, need: Need) -> bool {
        self.0 & need.bit() != 0
    }

    /// The same, with `need` present or absent as `on` says.
    ///
    /// # Panics
    /// As [`Capabilities::of`].
    #[must_use]
    pub fn with(self, need: Need, on: bool) -> Capabilities {
        assert!(
            need.is_device(),
            "`{}` is not something a device has: it is the run's or the profile's",
            need.name()
        );
        Capabilities(if on {
            self.0 | need.bit()
        } else {
            self.0 & !need.bit()
        })
    }

    /// Sets `need` present or absent.
    pub fn set(&mut self, need: Need, on: bool) {
        *self = self.with(need, on);
    }
}

impl std::fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries(
                Need::DEVICE
                    .iter()
                    .filter(|n| self.has(**n))
                    .map(|n| n.name()),
            )
            .finish()
    }
}

impl serde::Serialize for Capabilities {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(Need::DEVICE.len()))?;
        for need in Need::DEVICE {
            map.serialize_entry(need.name(), &self.has(need))?;
        }
        map.end()
    }
}

impl<'de> serde::Deserialize<'de> for Capabilities {
    /// Every device need must be there, true or false: a missing one is an error that names it,
    /// not a silent "absent". Names this version does not know are skipped, so a newer run's
    /// `run.json` still reads.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let map = std::collections::BTreeMap::<String, bool>::deserialize(d)?;
        let mut caps = Capabilities::default();
        for need in Need::DEVICE {
            match map.get(need.name()) {
                Some(&on) => caps.set(need, on),
                None => return Err(D::Error::missing_field(need.name())),
            }
        }
        Ok(caps)
    }
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

    /// The needs a device meets or not, in the order `run.json` lists them; the others are the
    /// run's (`destructive`) and the profile's (`multi_gpu`, `gpu_fault_migration`).
    pub const DEVICE: [Need; 10] = [
        Need::Xnack,
        Need::Residency,
        Need::Events,
        Need::VramUsage,
        Need::EvictionTransient,
        Need::Reset,
        Need::DeviceBuffers,
        Need::Fork,
        Need::Processes,
        Need::Concurrency,
    ];

    /// Whether this is a need a device meets or not ([`Need::DEVICE`]).
    pub fn is_device(self) -> bool {
        Need::DEVICE.contains(&self)
    }

    fn bit(self) -> u32 {
        1 << self as u32
    }

    pub fn from_name(name: &str) -> Option<Need> {
        Need::ALL.into_iter().find(|n| n.name() == name)
    }

    /// `None` when the device, the profile or the run has it; otherwise the skip reason, saying
    /// how to get it.
    pub fn unmet(self, dev: &DeviceInfo, profile: &Profile, destructive: bool) -> Option<String> {
        let cannot = |what: &str| Some(format!("{} cannot {what}", dev.name));
        match self {
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
            Need::Destructive | Need::MultiGpu | Need::GpuFaultMigration => None,
            _ if dev.caps.has(self) => None,
            Need::Xnack => Some(
                "XNACK is off, so GPU page faults are not retried and fault-driven migration \
                 cannot happen; turn it on (gfx942: HSA_XNACK=1; gfx906: boot with \
                 amdgpu.noretry=0 and set HSA_XNACK=1)"
                    .into(),
            ),
            Need::Residency => cannot("report page residency"),
            Need::Events => cannot("report migration events"),
            Need::VramUsage => cannot("report VRAM in use"),
            Need::Concurrency => cannot("run CPU work beside a kernel"),
            Need::DeviceBuffers => cannot("allocate VRAM buffer objects"),
            Need::EvictionTransient => cannot("measure the transient system memory of eviction"),
            Need::Fork => cannot("fork a process that keeps its SVM mappings"),
            Need::Processes => cannot("start a second process on the GPU"),
            Need::Reset => cannot("reset the GPU"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::profile::{Limits, Policy};

    fn device(caps: Capabilities) -> DeviceInfo {
        DeviceInfo {
            backend: "sim".into(),
            name: "Test device".into(),
            arch: "sim".into(),
            vram_bytes: 1 << 30,
            gpus: 1,
            caps,
        }
    }

    fn profile(policy: Policy) -> Profile {
        Profile {
            name: "test".into(),
            description: String::new(),
            arch: "sim".into(),
            vram_bytes: 1 << 30,
            gpus: 1,
            xnack: true,
            limits: Limits {
                link: "PCIe Gen4 x16".into(),
                link_peak_gbps: 31.5,
                memory_peak_gbps: 1024.0,
                system_memory_bytes: None,
                slowest: None,
            },
            policy,
            sim: None,
            expect: None,
        }
    }

    #[test]
    fn every_device_need_is_met_exactly_when_the_device_has_it() {
        let p = profile(Policy::default());
        for need in Need::DEVICE {
            let without = device(Capabilities::of(&Need::DEVICE).with(need, false));
            let reason = need.unmet(&without, &p, false);
            let reason = reason.unwrap_or_else(|| panic!("{} lacked but met", need.name()));
            assert!(
                reason.contains("Test device") || need == Need::Xnack,
                "{}: {reason}",
                need.name()
            );
            // Only the need taken away is unmet.
            for other in Need::DEVICE.into_iter().filter(|&o| o != need) {
                assert_eq!(other.unmet(&without, &p, false), None, "{}", other.name());
            }
            let with = device(Capabilities::of(&[need]));
            assert_eq!(need.unmet(&with, &p, false), None, "{}", need.name());
        }
    }

    #[test]
    fn each_lacking_need_has_its_own_reason() {
        let p = profile(Policy::default());
        let none = device(Capabilities::default());
        let mut reasons: Vec<String> = Need::DEVICE
            .iter()
            .filter_map(|n| n.unmet(&none, &p, false))
            .collect();
        assert_eq!(reasons.len(), Need::DEVICE.len());
        reasons.sort();
        reasons.dedup();
        assert_eq!(reasons.len(), Need::DEVICE.len(), "{reasons:?}");
        assert!(reasons.iter().any(|r| r.contains("HSA_XNACK=1")));
    }

    #[test]
    fn the_runs_and_the_profiles_needs_are_not_the_devices() {
        let all = device(Capabilities::of(&Need::DEVICE));
        let p = profile(Policy::default());
        let destructive = Need::Destructive
            .unmet(&all, &p, false)
            .expect("not allowed");
        assert!(destructive.contains("--allow-destructive"), "{destructive}");
        assert_eq!(Need::Destructive.unmet(&all, &p, true), None);
        let one_gpu = Need::MultiGpu.unmet(&all, &p, true).expect("one GPU");
        assert!(one_gpu.contains("device has 1 GPU(s), policy.max_gpus = 1"));
        let in_place = profile(Policy {
            gpu_fault_migrates: false,
            ..Policy::default()
        });
        let why = Need::GpuFaultMigration.unmet(&all, &in_place, true);
        assert!(why
            .expect("maps in place")
            .contains("gpu_fault_migrates = false"));
        assert_eq!(Need::GpuFaultMigration.unmet(&all, &p, true), None);
        // A device lacking everything still meets them: they are not its to meet.
        let none = device(Capabilities::default());
        assert_eq!(Need::GpuFaultMigration.unmet(&none, &p, true), None);
        assert_eq!(Need::Destructive.unmet(&none, &p, true), None);
        for need in [Need::Destructive, Need::MultiGpu, Need::GpuFaultMigration] {
            assert!(!need.is_device());
            assert!(!Capabilities::of(&Need::DEVICE).has(need));
        }
        assert_eq!(
            Need::ALL.iter().filter(|n| n.is_device()).count(),
            Need::DEVICE.len()
        );
    }

    #[test]
    #[should_panic(expected = "`destructive` is not something a device has")]
    fn a_device_cannot_claim_the_runs_permission() {
        let _ = Capabilities::of(&[Need::Destructive]);
    }

    #[test]
    fn in_run_json_every_device_need_is_named_true_or_false_in_order() {
        let caps = Capabilities::of(&[Need::Xnack, Need::Concurrency]);
        let json = serde_json::to_string(&caps).expect("serialises");
        assert_eq!(
            json,
            "{\"xnack\":true,\"residency\":false,\"events\":false,\"vram_usage\":false,\
             \"eviction_transient\":false,\"reset\":false,\"device_buffers\":false,\
             \"fork\":false,\"processes\":false,\"concurrency\":true}"
        );
        let back: Capabilities = serde_json::from_str(&json).expect("reads back");
        assert_eq!(back, caps);
        assert_eq!(format!("{caps:?}"), "{\"xnack\", \"concurrency\"}");
        // A newer run's extra name is skipped; a missing one is named.
        let newer = json.replacen('{', "{\"peer_access\":true,", 1);
        assert_eq!(
            serde_json::from_str::<Capabilities>(&newer).ok(),
            Some(caps)
        );
        let older = json.replace("\"fork\":false,", "");
        let e = serde_json::from_str::<Capabilities>(&older).expect_err("fork is missing");
        assert!(e.to_string().contains("missing field `fork`"), "{e}");
    }
}
