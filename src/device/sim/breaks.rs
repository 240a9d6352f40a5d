//! Switches that each break one migration path of the reference device on purpose, so that the
//! suite's cases can be shown to fail, with the right diagnosis, when the path they cover is
//! broken (`--backend sim --break stale-migrate-to-ram`). `Breaks::default()` breaks nothing.

use std::fmt;

use super::SimError;

/// Declares the switches once: the field, its kebab-case name and its one-line description.
macro_rules! breaks {
    ($($field:ident = $name:literal : $doc:literal,)+) => {
        /// Which migration paths are broken on purpose.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct Breaks {
            $(#[doc = $doc] pub $field: bool,)+
        }

        impl Breaks {
            /// Every break: its name and what it does.
            pub const NAMES: &'static [(&'static str, &'static str)] = &[$(($name, $doc),)+];

            fn flag_mut(&mut self, name: &str) -> Option<&mut bool> {
                match name {
                    $($name => Some(&mut self.$field),)+
                    _ => None,
                }
            }

            /// The names of the breaks that are on, in [`Breaks::NAMES`] order.
            pub fn active(&self) -> Vec<&'static str> {
                let mut on = Vec::new();
                $(if self.$field { on.push($name); })+
                on
            }
        }
    };
}

breaks! {
    corrupt_migrate_to_ram = "corrupt-migrate-to-ram":
        "a CPU-fault migration to RAM flips one bit of one word in the first page it copies",
    stale_migrate_to_ram = "stale-migrate-to-ram":
        "a CPU-fault migration to RAM copies nothing: system pages keep the generation they held before going to VRAM",
    zero_on_first_touch = "zero-on-first-touch":
        "a GPU-fault migration to VRAM copies nothing: devmem pages keep what the arena held (zeros when fresh)",
    misplace_prefetch = "misplace-prefetch":
        "a prefetch to VRAM copies page i+1 into page i for the first page of each migration of two or more pages",
    ignore_prefetch = "ignore-prefetch":
        "prefetch moves nothing but still returns the duration the migration would have taken",
    ignore_preferred_system = "ignore-preferred-system":
        "preferred location system is ignored: GPU faults migrate those pages to VRAM",
    lose_page_on_eviction = "lose-page-on-eviction":
        "the first page of each evicted devmem allocation comes back to RAM zeroed",
    evict_mru = "evict-mru":
        "TTM evicts the most recently used SVM allocation instead of the least",
    lost_atomic_update = "lost-atomic-update":
        "an AtomicInc launch loses one increment on the first page it migrated to VRAM",
    reset_keeps_processes = "reset-keeps-processes":
        "a GPU reset ends no process",
    no_vram_after_reset = "no-vram-after-reset":
        "after a GPU reset no VRAM can be allocated: nothing migrates and device buffers fail",
    fast_clock = "fast-clock":
        "the clock counts migrations 100x faster than the cost model, so bandwidths exceed the link",
    cow_shares_pages = "cow-shares-pages":
        "fork shares private allocations with the parent instead of copying: a child write shows in the parent",
    readonly_gpu_write_allowed = "readonly-gpu-write-allowed":
        "GPU writes to read-only mappings succeed",
    shared_migrates = "shared-migrates":
        "shared and file-backed allocations migrate like private ones",
    partial_unmap_keeps_range = "partial-unmap-keeps-range":
        "a partial unmap zeroes the remaining VRAM pages of the affected devmem allocations instead of evicting them",
    storm_hang = "storm-hang":
        "a FaultStorm launch never completes: wait times out after a simulated 10 s",
    silent_events = "silent-events":
        "migration events are not answered although the capabilities say they are: the run is refused before it starts",
}

impl Breaks {
    /// Parses a comma-separated list of names (`"corrupt-migrate-to-ram,ignore-prefetch"`);
    /// an empty list breaks nothing.
    pub fn parse(list: &str) -> Result<Breaks, SimError> {
        let mut breaks = Breaks::default();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match breaks.flag_mut(name) {
                Some(flag) => *flag = true,
                None => {
                    return Err(SimError::UnknownBreak {
                        name: name.to_string(),
                        valid: Breaks::NAMES
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
                }
            }
        }
        Ok(breaks)
    }
}

impl fmt::Display for Breaks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on = self.active();
        if on.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&on.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::device::kernels::Launch;
    use crate::device::sim::testutil::*;
    use crate::device::sim::SimDevice;
    use crate::device::{
        Advice, AllocKind, Buf, Destructive, Device, DeviceError, Location, Protection, Span,
        Trigger, PAGE_SIZE,
    };
    use crate::model::pattern::Diagnosis;
    use crate::model::timing::gbps;

    use super::*;

    #[test]
    fn parses_a_comma_separated_list_and_names_the_valid_ones_on_error() {
        let b = Breaks::parse("corrupt-migrate-to-ram, ignore-prefetch").unwrap();
        assert!(b.corrupt_migrate_to_ram && b.ignore_prefetch && !b.storm_hang);
        assert_eq!(b.to_string(), "corrupt-migrate-to-ram,ignore-prefetch");
        assert_eq!(Breaks::parse("").unwrap(), Breaks::default());
        assert_eq!(Breaks::default().to_string(), "none");
        let err = Breaks::parse("ignore-prefetch,lose-everything").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("`lose-everything`") && msg.contains("storm-hang"),
            "{msg}"
        );
        for (name, what) in Breaks::NAMES {
            assert_eq!(Breaks::parse(name).unwrap().active(), vec![*name]);
            assert!(!what.is_empty());
        }
        assert_eq!(Breaks::NAMES.len(), 18);
    }

    /// Both devices, the reference and the broken one, for a side-by-side run.
    fn both(name: &str) -> [SimDevice; 2] {
        [device(), broken(name)]
    }

    fn cpu_mismatch(
        dev: &mut dyn Device,
        buf: Buf,
        generation: u32,
    ) -> Option<Box<crate::model::pattern::Mismatch>> {
        let words = cpu_words(dev, buf, buf.all());
        pattern(generation).check(0, &words).err()
    }

    #[test]
    fn corrupt_migrate_to_ram_flips_one_bit_on_the_cpu_fault() {
        let [mut good, mut bad] = both("corrupt-migrate-to-ram");
        for dev in [&mut good, &mut bad] {
            let buf = dev.alloc(AllocKind::Managed, 64 << 10).unwrap();
            gpu_fill(dev, buf, buf.all(), 1);
            let m = cpu_mismatch(dev, buf, 1);
            if dev.breaks().corrupt_migrate_to_ram {
                let m = m.expect("corrupted");
                assert_eq!(m.bad_words, 1);
                let w = m.first_bad[0];
                assert_eq!(w.page, 0);
                assert_eq!((w.expected ^ w.actual).count_ones(), 1);
            } else {
                assert!(m.is_none());
            }
        }
    }

    #[test]
    fn stale_migrate_to_ram_shows_the_older_generation() {
        let [mut good, mut bad] = both("stale-migrate-to-ram");
        for (dev, seen) in [(&mut good, 2), (&mut bad, 1)] {
            let buf = dev.alloc(AllocKind::Managed, 64 << 10).unwrap();
            cpu_fill(dev, buf, buf.all(), 1);
            gpu_fill(dev, buf, buf.all(), 2);
            cpu_check(dev, buf, buf.all(), seen);
        }
    }

    #[test]
    fn zero_on_first_touch_migrates_zeros() {
        let [mut good, mut bad] = both("zero-on-first-touch");
        for (dev, intact) in [(&mut good, true), (&mut bad, false)] {
            let buf = dev.alloc(AllocKind::Managed, 64 << 10).unwrap();
            cpu_fill(dev, buf, buf.all(), 1);
            let sum = dev.alloc(AllocKind::Mmap, 8).unwrap();
            dev.launch(&Launch::TouchRead {
                buf,
                span: buf.all(),
                stride_pages: 1,
                sum,
            })
            .unwrap();
            assert_eq!(count(dev, buf, Location::Vram), 16);
            let words = cpu_words(dev, buf, buf.all());
            assert_eq!(words.iter().all(|w| *w == 0), !intact);
            assert_eq!(cpu_words(dev, sum, sum.all()) == [0, 0], !intact);
        }
    }

    #[test]
    fn misplace_prefetch_puts_the_next_page_in_the_first() {
        let [mut good, mut bad] = both("misplace-prefetch");
        for dev in [&mut good, &mut bad] {
            let buf = dev.alloc(AllocKind::Managed, 64 << 10).unwrap();
            cpu_fill(dev, buf, buf.all(), 1);
            dev.prefetch(buf, buf.all(), Location::Vram).unwrap();
            let words = cpu_words(dev, buf, buf.all());
            let misplaced = words[..1024] == words[1024..2048];
            assert_eq!(misplaced, dev.breaks().misplace_prefetch);
            pattern(1).check(1024, &words[1024..]).unwrap();
        }
    }

    #[test]
    fn ignore_prefetch_moves_nothing_in_the_same_time() {
        let [mut good, mut bad] = both("ignore-prefetch");
        let mut took = Vec::new();
        for dev in [&mut good, &mut bad] {
            let buf = dev.alloc(AllocKind::Managed, 2 * MIB).unwrap();
            took.push(dev.prefetch(buf, buf.all(), Location::Vram).unwrap());
            let want = if dev.breaks().ignore_prefetch {
                Location::System
            } else {
                Location::Vram
            };
            assert_eq!(count(dev, buf, want), 512);
        }
        assert_eq!(took[0], took[1]);
        assert!(took[0] > Duration::ZERO);
    }

    #[test]
    fn ignore_preferred_system_migrates_on_fault() {
        let [mut good, mut bad] = both("ignore-preferred-system");
        for (dev, want) in [(&mut good, Location::System), (&mut bad, Location::Vram)] {
            let buf = dev.alloc(AllocKind::Managed, 2 * MIB).unwrap();
            dev.advise(buf, buf.all(), Advice::PreferredLocation(Location::System))
                .unwrap();
            gpu_fill(dev, buf, buf.all(), 1);
            assert_eq!(count(dev, buf, want), 512);
        }
    }

    #[test]
    fn lose_page_on_eviction_zeroes_the_first_evicted_page() {
        let [mut good, mut bad] = both("lose-page-on-eviction");
        for dev in [&mut good, &mut bad] {
            let buf = dev.alloc(AllocKind::Managed, 2 * MIB).unwrap();
            gpu_fill(dev, buf, buf.all(), 1);
            let _pressure = dev.alloc(AllocKind::DeviceBuffer, 16 * MIB).unwrap();
            assert_eq!(count(dev, buf, Location::System), 512);
            match cpu_mismatch(dev, buf, 1) {
                None => assert!(!dev.breaks().lose_page_on_eviction),
                Some(m) => {
                    assert!(dev.breaks().lose_page_on_eviction);
                    assert_eq!(m.bad_words, 1024);
                    assert!(m.first_bad.iter().all(|w| w.page == 0 && w.actual == 0));
                }
            }
        }
    }

    #[test]
    fn evict_mru_evicts_the_allocation_just_used() {
        let [mut good, mut bad] = both("evict-mru");
        for (dev, victim) in [(&mut good, 0), (&mut bad, 1)] {
            let bufs: Vec<Buf> = (0..2)
                .map(|_| dev.alloc(AllocKind::Managed, 8 * MIB).unwrap())
                .collect();
            for &b in &bufs {
                gpu_fill(dev, b, b.all(), 1);
            }
            events(dev);
            let _pressure = dev.alloc(AllocKind::DeviceBuffer, 2 * MIB).unwrap();
            let ev = events(dev);
            let evicted: Vec<(u32, u64)> = ev
                .iter()
                .filter(|e| e.trigger == Trigger::Eviction)
                .map(|e| (e.buf, e.first_page))
                .collect();
            let want = if victim == 0 {
                (bufs[0].id, 0)
            } else {
                (bufs[1].id, 1536)
            };
            assert_eq!(evicted, vec![want]);
        }
    }

    #[test]
    fn lost_atomic_update_drops_one_increment_on_a_migrated_page() {
        let [mut good, mut bad] = both("lost-atomic-update");
        for (dev, lost) in [(&mut good, 0), (&mut bad, 1)] {
            let buf = dev.alloc(AllocKind::Managed, 64 << 10).unwrap();
            let launch = Launch::AtomicInc {
                buf,
                span: buf.all(),
                iterations: 3,
            };
            dev.launch(&launch).unwrap();
            // Already in VRAM: nothing migrates this time, nothing more is lost.
            dev.launch(&launch).unwrap();
            let words = cpu_words(dev, buf, buf.all());
            assert_eq!(words.iter().filter(|w| **w != 6).count(), lost);
            assert_eq!(words[0], 6 - lost as u32);
        }
    }

    #[test]
    fn reset_keeps_processes_aborts_nobody() {
        let [mut good, mut bad] = both("reset-keeps-processes");
        for dev in [&mut good, &mut bad] {
            let buf = dev.alloc(AllocKind::Managed, 4096).unwrap();
            gpu_fill(dev, buf, buf.all(), 1);
            dev.gpu_reset(&Destructive(())).unwrap();
            let kept = dev.breaks().reset_keeps_processes;
            assert_eq!(dev.alloc(AllocKind::Managed, 4096).is_ok(), kept);
            let exit = dev.wait_exit(Duration::from_secs(1)).unwrap();
            assert_eq!(exit == crate::device::ProcessExit::StillRunning, kept);
        }
    }

    #[test]
    fn no_vram_after_reset_keeps_everything_in_system_memory() {
        let [mut good, mut bad] = both("no-vram-after-reset");
        for dev in [&mut good, &mut bad] {
            dev.gpu_reset(&Destructive(())).unwrap();
            let broken = dev.breaks().no_vram_after_reset;
            let mut fresh = dev.spawn_process().unwrap();
            let buf = fresh.alloc(AllocKind::Managed, 2 * MIB).unwrap();
            gpu_fill(fresh.as_mut(), buf, buf.all(), 1);
            let want = if broken {
                Location::System
            } else {
                Location::Vram
            };
            assert_eq!(count(fresh.as_mut(), buf, want), 512);
            assert_eq!(fresh.alloc(AllocKind::DeviceBuffer, 4096).is_err(), broken);
        }
    }

    #[test]
    fn fast_clock_reports_migrations_above_the_link() {
        let [mut good, mut bad] = both("fast-clock");
        let link = profile().limits.link_peak_gbps;
        for dev in [&mut good, &mut bad] {
            let buf = dev.alloc(AllocKind::Managed, 2 * MIB).unwrap();
            let took = dev.prefetch(buf, buf.all(), Location::Vram).unwrap();
            assert_eq!(gbps(2 * MIB, took) > link, dev.breaks().fast_clock);
        }
    }

    #[test]
    fn cow_shares_pages_leaks_child_writes_to_the_parent() {
        let [mut good, mut bad] = both("cow-shares-pages");
        for dev in [&mut good, &mut bad] {
            let buf = dev.alloc(AllocKind::Malloc, 64 << 10).unwrap();
            cpu_fill(dev, buf, buf.all(), 1);
            let mut child = dev.fork().unwrap();
            cpu_fill(child.as_mut(), buf, buf.all(), 2);
            let seen = if dev.breaks().cow_shares_pages { 2 } else { 1 };
            cpu_check(dev, buf, buf.all(), seen);
            // What the parent's own check reports: every page newer than it wrote.
            let m = cpu_mismatch(dev, buf, 1);
            if dev.breaks().cow_shares_pages {
                let m = m.expect("the child's write leaked");
                assert_eq!((m.counts.newer, m.bad_pages), (16, 16), "{m}");
                let newer = Diagnosis::Newer { generation: 2 };
                assert!(m.diagnoses().all(|d| *d == newer), "{m}");
            } else {
                assert!(m.is_none());
            }
        }
    }

    #[test]
    fn readonly_gpu_write_allowed_writes_through_the_protection() {
        let [mut good, mut bad] = both("readonly-gpu-write-allowed");
        for dev in [&mut good, &mut bad] {
            let buf = dev.alloc(AllocKind::Managed, 64 << 10).unwrap();
            dev.protect(buf, Protection::ReadOnly).unwrap();
            let fill = Launch::Fill {
                buf,
                span: buf.all(),
                seed: SEED,
                generation: 1,
            };
            let result = dev.launch(&fill);
            if dev.breaks().readonly_gpu_write_allowed {
                assert!(result.is_ok());
                cpu_check(dev, buf, buf.all(), 1);
            } else {
                assert!(matches!(
                    result,
                    Err(DeviceError::GpuMemoryFault { offset: 0, .. })
                ));
            }
        }
    }

    #[test]
    fn shared_migrates_moves_shared_and_file_mappings() {
        let [mut good, mut bad] = both("shared-migrates");
        for dev in [&mut good, &mut bad] {
            let want = if dev.breaks().shared_migrates {
                Location::Vram
            } else {
                Location::System
            };
            for kind in [AllocKind::Shared, AllocKind::File] {
                let buf = dev.alloc(kind, 64 << 10).unwrap();
                gpu_fill(dev, buf, buf.all(), 1);
                assert_eq!(count(dev, buf, want), 16, "{kind}");
            }
        }
    }

    #[test]
    fn partial_unmap_keeps_range_loses_the_rest_of_the_data() {
        let [mut good, mut bad] = both("partial-unmap-keeps-range");
        for dev in [&mut good, &mut bad] {
            let buf = dev.alloc(AllocKind::Managed, 2 * MIB).unwrap();
            gpu_fill(dev, buf, buf.all(), 1);
            dev.unmap(buf, Span::pages(256, 256)).unwrap();
            let kept = Span::pages(0, 256);
            let res = residency_of(dev, buf, kept);
            let words = cpu_words(dev, buf, kept);
            if dev.breaks().partial_unmap_keeps_range {
                assert!(res.iter().all(|l| *l == Location::Vram));
                assert!(words.iter().all(|w| *w == 0));
            } else {
                assert!(res.iter().all(|l| *l == Location::System));
                pattern(1).check(0, &words).unwrap();
            }
        }
    }

    #[test]
    fn storm_hang_times_out_after_ten_simulated_seconds() {
        let [mut good, mut bad] = both("storm-hang");
        for dev in [&mut good, &mut bad] {
            let buf = dev.alloc(AllocKind::Managed, 16 * PAGE_SIZE).unwrap();
            let storm = Launch::FaultStorm {
                buf,
                span: buf.all(),
                step: 3,
                offset: 1,
                seed: SEED,
                generation: 1,
            };
            let result = dev.launch(&storm);
            if dev.breaks().storm_hang {
                assert_eq!(result, Err(DeviceError::Timeout(Duration::from_secs(10))));
                dev.prefetch(buf, buf.all(), Location::Vram).unwrap();
                assert!(events(dev)[0].at_ns >= 10_000_000_000);
            } else {
                assert_eq!(result.unwrap().faults, Some(1));
            }
        }
    }
}
