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

    /// Where it reads from, for run.json: `/sys/class/drm/card1/device/mem_info_vram_used`.
    fn describe(&self) -> String;

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

/// An observer, or why it cannot be opened for this GPU.
pub type OpenResult = std::result::Result<Box<dyn GpuObserver>, String>;

/// Opens one kind of observer for one GPU, or says why it cannot be opened there. `O` is what
/// the run asks of a vendor's observers beyond the GPU's identity (amdgpu:
/// `device::amd::ObserverOptions`).
pub struct ObserverFactory<O> {
    /// The observer's name in run.json, whether it opens or not: `kfd-smi`.
    pub name: &'static str,
    pub open: fn(&GpuIdentity, &O) -> OpenResult,
}

impl<O> Clone for ObserverFactory<O> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<O> Copy for ObserverFactory<O> {}

impl<O> std::fmt::Debug for ObserverFactory<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// One factory's outcome, for run.json: opened and what from, or not and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObserverState {
    pub name: &'static str,
    pub available: bool,
    pub detail: String,
}

/// The observers a backend opened for its GPU.
pub struct Opened {
    pub observers: Vec<Box<dyn GpuObserver>>,
    /// The union of what they provide.
    pub provides: Provides,
    /// Every factory's outcome, in order.
    pub states: Vec<ObserverState>,
}

/// Opens every factory's observer for `gpu`; those that cannot open are left out, with why.
pub fn open_all<O>(factories: &[ObserverFactory<O>], gpu: &GpuIdentity, options: &O) -> Opened {
    let mut opened = Opened {
        observers: Vec::new(),
        provides: Provides::default(),
        states: Vec::new(),
    };
    for f in factories {
        match (f.open)(gpu, options) {
            Ok(o) => {
                let p = o.provides();
                let all = &mut opened.provides;
                all.events |= p.events;
                all.vram_usage |= p.vram_usage;
                all.eviction_transient |= p.eviction_transient;
                all.reset |= p.reset;
                opened.states.push(ObserverState {
                    name: f.name,
                    available: true,
                    detail: o.describe(),
                });
                opened.observers.push(o);
            }
            Err(why) => opened.states.push(ObserverState {
                name: f.name,
                available: false,
                detail: why,
            }),
        }
    }
    opened
}

/// Migration events of the event observers, drained together: the first observer with events
/// gives them, so KFD SMI events win where both they and the series' trace are there, and the
/// trace speaks on the new path, where SMI has no migration events. `None` when no observer
/// sees events.
pub fn take_events(observers: &mut [Box<dyn GpuObserver>]) -> Option<Vec<MigrationEvent>> {
    let mut answered = None;
    for o in observers.iter_mut() {
        match (o.take_events(), &answered) {
            (Some(events), None) => answered = Some(events),
            (Some(events), Some(first)) if first.is_empty() => answered = Some(events),
            _ => {}
        }
    }
    answered
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{Location, Trigger};

    /// An observer answering VRAM in use, and events when it has some.
    struct Fake {
        vram: u64,
        events: Option<Vec<MigrationEvent>>,
    }
    impl GpuObserver for Fake {
        fn name(&self) -> &str {
            "fake"
        }
        fn provides(&self) -> Provides {
            Provides {
                vram_usage: true,
                events: self.events.is_some(),
                ..Provides::default()
            }
        }
        fn describe(&self) -> String {
            format!("{} bytes", self.vram)
        }
        fn vram_used(&mut self) -> Option<u64> {
            Some(self.vram)
        }
        fn take_events(&mut self) -> Option<Vec<MigrationEvent>> {
            self.events.as_mut().map(std::mem::take)
        }
    }

    fn gpu() -> GpuIdentity {
        GpuIdentity {
            index: 0,
            pci_bus_id: "0000:c1:00.0".into(),
            target_id: "gfx942:xnack+".into(),
        }
    }

    const VRAM: ObserverFactory<()> = ObserverFactory {
        name: "vram",
        open: |_, _| {
            Ok(Box::new(Fake {
                vram: 42,
                events: None,
            }))
        },
    };
    const ABSENT: ObserverFactory<()> = ObserverFactory {
        name: "absent",
        open: |gpu, _| Err(format!("nothing for {}", gpu.pci_bus_id)),
    };

    fn event(buf: u32) -> MigrationEvent {
        MigrationEvent {
            buf,
            first_page: 0,
            pages: 1,
            from: Location::System,
            to: Location::Vram,
            trigger: Trigger::Prefetch,
            at_ns: 0,
        }
    }

    #[test]
    fn what_observers_provide_is_unioned_and_defaults_say_not_observed() {
        let none = open_all(&[], &gpu(), &());
        assert!(none.observers.is_empty() && none.provides == Provides::default());
        let mut some = open_all(&[ABSENT, VRAM], &gpu(), &());
        assert!(some.provides.vram_usage && !some.provides.events && !some.provides.reset);
        assert_eq!(some.observers.len(), 1);
        assert_eq!(some.observers[0].vram_used(), Some(42));
        assert_eq!(some.observers[0].eviction_transient(), None);
        assert_eq!(take_events(&mut some.observers), None);
    }

    #[test]
    fn every_factory_is_recorded_opened_or_with_why_not() {
        let opened = open_all(&[ABSENT, VRAM], &gpu(), &());
        assert_eq!(
            opened.states,
            vec![
                ObserverState {
                    name: "absent",
                    available: false,
                    detail: "nothing for 0000:c1:00.0".into(),
                },
                ObserverState {
                    name: "vram",
                    available: true,
                    detail: "42 bytes".into(),
                },
            ]
        );
    }

    #[test]
    fn the_first_observer_with_events_gives_them_and_all_are_drained() {
        let fake = |events: Option<Vec<MigrationEvent>>| -> Box<dyn GpuObserver> {
            Box::new(Fake { vram: 0, events })
        };
        // SMI quiet (the new path), the trace speaking: the trace's events.
        let mut obs = vec![fake(Some(vec![])), fake(Some(vec![event(2)]))];
        assert_eq!(take_events(&mut obs), Some(vec![event(2)]));
        assert_eq!(take_events(&mut obs), Some(vec![]), "drained");
        // Both speaking: the first, and the second is drained too, not kept for later.
        let mut obs = vec![fake(Some(vec![event(1)])), fake(Some(vec![event(2)]))];
        assert_eq!(take_events(&mut obs), Some(vec![event(1)]));
        assert_eq!(take_events(&mut obs), Some(vec![]));
        // Only observers without events: none.
        let mut obs = vec![fake(None)];
        assert_eq!(take_events(&mut obs), None);
    }
}
