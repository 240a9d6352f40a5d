//! What a launch carries while it runs, and what the fault paths tell it: the data the kernels
//! (kernels.rs), the fault paths (fault.rs) and each process's queue (gpu.rs) share, below all
//! three.

use std::time::Duration;

use super::clock::Meter;
use super::store::PAGE_WORDS;
use crate::device::kernels::Launch;
use crate::device::DeviceError;
use crate::model::pattern::Pattern;

/// How long a hung fault storm (`storm-hang`) runs before `wait` gives up.
pub(super) const HANG: Duration = Duration::from_secs(10);

/// Where the GPU found a page's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Home {
    Vram(u32),
    System,
}

/// GPU faults a launch took and what it has cost.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Progress {
    pub meter: Meter,
    pub faults: u64,
}

/// What verify and touch-read gather, written to their result when the kernel ends.
#[derive(Clone, Copy, Debug)]
pub(super) struct Gathered {
    pub bad: u64,
    pub min_bad: u64,
    pub sum: u64,
    /// The `lost-atomic-update` break has dropped its increment.
    pub lost_update: bool,
}

impl Gathered {
    pub fn verify(&mut self, pattern: &Pattern, first: u64, words: &[u32]) {
        let mut expected = [0u32; PAGE_WORDS];
        let expected = &mut expected[..words.len()];
        pattern.fill(first, expected);
        if expected == words {
            return;
        }
        for (i, (e, a)) in expected.iter().zip(words).enumerate() {
            if e != a {
                self.bad += 1;
                self.min_bad = self.min_bad.min(first + i as u64);
            }
        }
    }
}

/// A launch in flight.
#[derive(Debug)]
pub(super) struct Exec {
    pub id: u64,
    pub launch: Launch,
    pub steps: u64,
    pub done: u64,
    pub progress: Progress,
    pub gathered: Gathered,
    /// `storm-hang`: it never makes progress.
    pub hung: bool,
    pub failed: Option<DeviceError>,
}
