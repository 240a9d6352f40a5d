//! Where kernel-side observers plug into a hardware backend.
//!
//! A GPU runtime (HIP) sees allocations, launches and prefetches, but not what the kernel did
//! with the pages: migration events (KFD SMI), VRAM in use (sysfs `mem_info_vram_used`), a
//! reset through debugfs. Those come from per-vendor observers (`src/device/amd/` for amdgpu),
//! written apart from the backends. A backend holds a list of [`GpuObserver`]s, tells them
//! which allocation lives at which address, and answers the [`Device`](super::Device)
//! observation methods from the first observer that answers; its
//! [`Capabilities`](super::Capabilities) say what the observers provide, so a case that needs
//! events skips until an observer gives them.

use super::{Buf, Destructive, EvictionTransient, MigrationEvent, Result};

/// Which GPU an observer watches: what a kernel interface is keyed by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuIdentity {
    /// The backend's device index (HIP device ordinal).
    pub index: u32,
    /// `0000:c1:00.0`: the device's folder under `/sys/bus/pci/devices/`.
    pub pci_bus_id: String,
    /// The runtime's target id, `gfx942:sramecc+:xnack+`.
    pub target_id: String,
}

/// What an observer can answer; the backend's capabilities are the union over its observers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Provides {
    pub events: bool,
    pub vram_usage: bool,
    pub eviction_transient: bool,
    pub reset: bool,
}

/// One source of kernel-side evidence about one GPU. Every method has a default that says
/// "not observed here", so an observer implements only what it sees.
pub trait GpuObserver: Send {
    /// A short name for run.json and errors: `kfd-smi`, `sysfs-vram`.
    fn name(&self) -> &str;

    /// What this observer answers; read once, when the backend is opened.
    fn provides(&self) -> Provides;

    /// An allocation now covers `[addr, addr + buf.len)` in this process: events carry
    /// addresses, cases speak of (allocation, page).
    fn allocated(&mut self, _buf: Buf, _addr: u64) {}

    /// The allocation is gone (freed, or moved by `remap`, in which case `allocated` follows).
    fn freed(&mut self, _buf: Buf) {}

    /// Migrations since the last call, in pages of known allocations.
    fn take_events(&mut self) -> Option<Vec<MigrationEvent>> {
        None
    }

    /// Bytes of VRAM in use, device-wide.
    fn vram_used(&mut self) -> Option<u64> {
        None
    }

    /// Transient system memory of TTM evictions since the observer was opened.
    fn eviction_transient(&mut self) -> Option<EvictionTransient> {
        None
    }

    /// Resets the GPU (debugfs `amdgpu_gpu_recover`); `None` when this observer cannot.
    fn gpu_reset(&mut self, _permit: &Destructive) -> Option<Result<()>> {
        None
    }
}

/// Opens the observers of one GPU. The list of these a backend consults is its hook; see the
/// backend's module docs for where it is.
pub type ObserverFactory = fn(&GpuIdentity) -> Vec<Box<dyn GpuObserver>>;

/// The observers of every factory, and the union of what they provide.
pub fn open_all(
    factories: &[ObserverFactory],
    gpu: &GpuIdentity,
) -> (Vec<Box<dyn GpuObserver>>, Provides) {
    let observers: Vec<Box<dyn GpuObserver>> = factories.iter().flat_map(|f| f(gpu)).collect();
    let mut all = Provides::default();
    for o in &observers {
        let p = o.provides();
        all.events |= p.events;
        all.vram_usage |= p.vram_usage;
        all.eviction_transient |= p.eviction_transient;
        all.reset |= p.reset;
    }
    (observers, all)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Vram(u64);
    impl GpuObserver for Vram {
        fn name(&self) -> &str {
            "test-vram"
        }
        fn provides(&self) -> Provides {
            Provides {
                vram_usage: true,
                ..Provides::default()
            }
        }
        fn vram_used(&mut self) -> Option<u64> {
            Some(self.0)
        }
    }

    fn vram(_: &GpuIdentity) -> Vec<Box<dyn GpuObserver>> {
        vec![Box::new(Vram(42))]
    }

    #[test]
    fn what_observers_provide_is_unioned_and_defaults_say_not_observed() {
        let gpu = GpuIdentity {
            index: 0,
            pci_bus_id: "0000:c1:00.0".into(),
            target_id: "gfx942:xnack+".into(),
        };
        let (none, p) = open_all(&[], &gpu);
        assert!(none.is_empty() && p == Provides::default());
        let (mut obs, p) = open_all(&[vram], &gpu);
        assert!(p.vram_usage && !p.events && !p.reset);
        assert_eq!(obs[0].vram_used(), Some(42));
        assert_eq!(obs[0].take_events(), None);
    }
}
