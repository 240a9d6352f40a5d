//! One word of `/proc/PID/pagemap` (Documentation/admin-guide/mm/pagemap.rst; fs/proc/task_mmu.c,
//! `pte_to_pagemap_entry`), and where it says its page is.
//!
//! The swap types of device-private entries are not fixed: `SWP_DEVICE_WRITE` is
//! `MAX_SWAPFILES + SWP_HWPOISON_NUM + SWP_MIGRATION_NUM`, which with every option on comes to
//! `32 - SWP_DEVICE_NUM - SWP_PTE_MARKER_NUM`, and `SWP_DEVICE_NUM` was 4 in 6.12 (write, read,
//! exclusive write, exclusive read) and is 3 in 7.3 (write, read, exclusive). [`SwapLayout`]
//! holds the layouts this module knows; a kernel it does not know is said, not guessed.

/// One word of `/proc/PID/pagemap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry(pub u64);

const PRESENT: u64 = 1 << 63;
const SWAP: u64 = 1 << 62;
const FILE: u64 = 1 << 61;
const GUARD: u64 = 1 << 58;
const UFFD_WP: u64 = 1 << 57;
const EXCLUSIVE: u64 = 1 << 56;
const SOFT_DIRTY: u64 = 1 << 55;
/// Bits 0-54: a present page's PFN, or a swap entry's type and offset.
const FRAME: u64 = (1 << 55) - 1;
/// `MAX_SWAPFILES_SHIFT`: the swap type's bits.
const TYPE_BITS: u32 = 5;

impl Entry {
    pub fn present(self) -> bool {
        self.0 & PRESENT != 0
    }

    pub fn swapped(self) -> bool {
        self.0 & SWAP != 0
    }

    /// A file page or shared anonymous memory.
    pub fn file_or_shared(self) -> bool {
        self.0 & FILE != 0
    }

    /// Mapped by this process alone.
    pub fn exclusive(self) -> bool {
        self.0 & EXCLUSIVE != 0
    }

    pub fn soft_dirty(self) -> bool {
        self.0 & SOFT_DIRTY != 0
    }

    pub fn uffd_wp(self) -> bool {
        self.0 & UFFD_WP != 0
    }

    pub fn guard(self) -> bool {
        self.0 & GUARD != 0
    }

    /// A present page's PFN; 0 where the reader may not see PFNs.
    pub fn pfn(self) -> Option<u64> {
        self.present().then_some(self.0 & FRAME)
    }

    /// A swap entry's type and offset (for a device-private entry, the device PFN); both 0
    /// where the reader may not see them.
    pub fn swap(self) -> Option<(u8, u64)> {
        (self.swapped() && !self.present()).then(|| {
            let frame = self.0 & FRAME;
            ((frame & ((1 << TYPE_BITS) - 1)) as u8, frame >> TYPE_BITS)
        })
    }
}

/// The swap types a kernel gives device-private and device-exclusive entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwapLayout {
    /// The kernel series it holds for, as `uname -r` starts.
    pub kernel: &'static str,
    pub device_write: u8,
    pub device_read: u8,
    /// Device-exclusive entries (atomics on the device, the page still in system memory).
    pub device_exclusive: &'static [u8],
}

/// The layouts known, each read from its kernel's include/linux/swap.h with
/// CONFIG_DEVICE_PRIVATE, CONFIG_MIGRATION, CONFIG_MEMORY_FAILURE and CONFIG_PTE_MARKER on.
pub const LAYOUTS: &[SwapLayout] = &[
    // 6.12: SWP_DEVICE_NUM 4, MAX_SWAPFILES 23.
    SwapLayout {
        kernel: "6.12",
        device_write: 27,
        device_read: 28,
        device_exclusive: &[29, 30],
    },
    // 7.3: SWP_DEVICE_NUM 3 (one SWP_DEVICE_EXCLUSIVE), MAX_SWAPFILES 24.
    SwapLayout {
        kernel: "7.3",
        device_write: 28,
        device_read: 29,
        device_exclusive: &[30],
    },
];

impl SwapLayout {
    /// The layout of the kernel `release` (`uname -r`), or why there is none.
    pub fn of(release: &str) -> Result<&'static SwapLayout, String> {
        let series = |r: &str| {
            let mut parts = r.split(|c: char| !c.is_ascii_digit());
            let major = parts.next().unwrap_or("");
            let minor = parts.next().unwrap_or("");
            format!("{major}.{minor}")
        };
        let wanted = series(release);
        LAYOUTS.iter().find(|l| l.kernel == wanted).ok_or_else(|| {
            format!(
                "kernel {release}: its device-private swap types are not known here (known: {}); \
                 pagemap still tells present from not present, not whose a page is",
                LAYOUTS
                    .iter()
                    .map(|l| l.kernel)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }
}

/// Where a page is, as its pagemap word says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// Present in system memory (a huge or a small page; PFN 0 to an unprivileged reader).
    System { pfn: u64 },
    /// A device-private entry: the page is in device memory, `pfn` the device PFN.
    Device { writable: bool, pfn: u64 },
    /// A device-exclusive entry: in system memory, held by the device for atomics.
    DeviceExclusive { pfn: u64 },
    /// Swapped or device-private, the reader may not tell which (no CAP_SYS_ADMIN).
    SwappedOrDevice,
    /// A swap entry of another kind: swapped out, being migrated, poisoned, a marker.
    Swapped { kind: u8 },
    /// Not mapped: never touched, or unmapped.
    NotPresent,
}

/// Where `entry` says its page is, with `layout` for the swap types, where the reader may
/// see them (`privileged`).
pub fn place(entry: Entry, layout: &SwapLayout, privileged: bool) -> Place {
    if let Some(pfn) = entry.pfn() {
        return Place::System { pfn };
    }
    let Some((kind, offset)) = entry.swap() else {
        return Place::NotPresent;
    };
    if !privileged {
        return Place::SwappedOrDevice;
    }
    if kind == layout.device_write || kind == layout.device_read {
        Place::Device {
            writable: kind == layout.device_write,
            pfn: offset,
        }
    } else if layout.device_exclusive.contains(&kind) {
        Place::DeviceExclusive { pfn: offset }
    } else {
        Place::Swapped { kind }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// A swap PTE's pagemap word as `pte_to_pagemap_entry` makes it for a privileged reader:
    /// `type | offset << MAX_SWAPFILES_SHIFT`, PM_SWAP, and PM_MMAP_EXCLUSIVE never (it is set
    /// for present pages only).
    fn swap_word(kind: u8, offset: u64) -> Entry {
        Entry(SWAP | u64::from(kind) | offset << TYPE_BITS)
    }

    #[test]
    fn a_present_page_gives_its_pfn_and_flags() {
        let e = Entry(PRESENT | EXCLUSIVE | SOFT_DIRTY | 0x1_2345);
        assert!(e.present() && !e.swapped() && e.exclusive() && e.soft_dirty());
        assert_eq!(e.pfn(), Some(0x1_2345));
        assert_eq!(e.swap(), None);
        assert_eq!(place(e, &LAYOUTS[1], true), Place::System { pfn: 0x1_2345 });
    }

    #[rstest]
    #[case::v6_12_write("6.12.57+deb13-amd64", 27, Place::Device { writable: true, pfn: 0xfcf0123 })]
    #[case::v6_12_read("6.12.57+deb13-amd64", 28, Place::Device { writable: false, pfn: 0xfcf0123 })]
    #[case::v6_12_exclusive("6.12.57+deb13-amd64", 30, Place::DeviceExclusive { pfn: 0xfcf0123 })]
    #[case::v7_3_write("7.3.1-svm", 28, Place::Device { writable: true, pfn: 0xfcf0123 })]
    #[case::v7_3_read("7.3.1-svm", 29, Place::Device { writable: false, pfn: 0xfcf0123 })]
    #[case::v7_3_exclusive("7.3.1-svm", 30, Place::DeviceExclusive { pfn: 0xfcf0123 })]
    #[case::v7_3_migration("7.3.1-svm", 27, Place::Swapped { kind: 27 })]
    #[case::v7_3_real_swap("7.3.1-svm", 0, Place::Swapped { kind: 0 })]
    fn device_private_entries_follow_the_running_kernels_swap_types(
        #[case] release: &str,
        #[case] kind: u8,
        #[case] want: Place,
    ) {
        let layout = SwapLayout::of(release).expect("a known kernel");
        let e = swap_word(kind, 0xfcf0123);
        assert!(e.swapped() && !e.present());
        assert_eq!(e.swap(), Some((kind, 0xfcf0123)));
        assert_eq!(place(e, layout, true), want);
    }

    /// Words a privileged reader got from Linux 7.3.4 in the VM lab (`lab/vm/run --vsvm --
    /// svmconf --backend dmirror ... --- svmconf --backend vsvm ...`), each with the region
    /// `/proc/iomem` gave its driver then: the test driver's device-private pages, and the
    /// virtual SVM GPU's.
    #[rstest]
    #[case::dmirror(0x4000_0001_f9ff_fffc, 0xfcfffff, 0xfcf0000000..=0xfcffffffff)]
    #[case::dmirror_second(0x4000_0001_f9ff_c01c, 0xfcffe00, 0xfcf0000000..=0xfcffffffff)]
    #[case::vsvm(0x4000_0001_f9b0_001c, 0xfcd8000, 0xfcd8000000..=0xfcdfffffff)]
    fn words_from_linux_7_3_decode_to_its_device_private_pages(
        #[case] word: u64,
        #[case] pfn: u64,
        #[case] region: std::ops::RangeInclusive<u64>,
    ) {
        let layout = SwapLayout::of("7.3.4").unwrap();
        let e = Entry(word);
        assert!(e.swapped() && !e.present() && !e.exclusive());
        assert_eq!(e.swap(), Some((28, pfn)), "SWP_DEVICE_WRITE of 7.3");
        assert_eq!(
            place(e, layout, true),
            Place::Device {
                writable: true,
                pfn
            }
        );
        assert!(region.contains(&(pfn * 4096)));
        // The same word read on 6.12's layout would be a read-only device page: the layout
        // matters, which is why an unknown kernel is said, not guessed.
        let old = SwapLayout::of("6.12.57").unwrap();
        assert_eq!(
            place(e, old, true),
            Place::Device {
                writable: false,
                pfn
            }
        );
    }

    /// A word a privileged reader got from Linux 6.12.118 in the VM lab (`lab/vm/run --kernel
    /// 6.12 -- svmconf --backend dmirror --profile dmirror-6.12 ...`): the test driver's page
    /// at the top of its region `[mem 0xfcf0000000-0xfcffffffff]`, swap type 27, where 7.3
    /// says 28 for the same page.
    #[test]
    fn a_word_from_linux_6_12_decodes_on_its_own_layout() {
        let e = Entry(0x4000_0001_f9ff_fffb);
        assert_eq!(e.swap(), Some((27, 0xfcfffff)), "SWP_DEVICE_WRITE of 6.12");
        let pfn = 0xfcfffff;
        let on_6_12 = SwapLayout::of("6.12.118").unwrap();
        assert_eq!(
            place(e, on_6_12, true),
            Place::Device {
                writable: true,
                pfn
            }
        );
        assert!((0xfcf0000000..=0xfcffffffffu64).contains(&(pfn * 4096)));
        // 27 on 7.3 is a migration entry, no device page at all.
        let on_7_3 = SwapLayout::of("7.3.4").unwrap();
        assert_eq!(place(e, on_7_3, true), Place::Swapped { kind: 27 });
    }

    #[test]
    fn an_unprivileged_reader_sees_swapped_or_device_and_no_more() {
        // show_pfn false: the frame bits are zero.
        let e = Entry(SWAP);
        assert_eq!(place(e, &LAYOUTS[1], false), Place::SwappedOrDevice);
        assert_eq!(place(Entry(0), &LAYOUTS[1], false), Place::NotPresent);
        assert_eq!(
            place(Entry(PRESENT), &LAYOUTS[1], false),
            Place::System { pfn: 0 }
        );
    }

    #[test]
    fn an_unknown_kernel_is_said_not_guessed() {
        let e = SwapLayout::of("6.1.0-31-amd64").unwrap_err();
        assert!(
            e.starts_with("kernel 6.1.0-31-amd64: its device-private swap types are not known")
                && e.contains("(known: 6.12, 7.3)"),
            "{e}"
        );
    }

    /// The layouts follow from the definitions they were read from: SWP_DEVICE_WRITE is 32
    /// less SWP_DEVICE_NUM less SWP_PTE_MARKER_NUM, the others after it.
    #[test]
    fn the_layouts_agree_with_swap_h() {
        for (l, device_num) in LAYOUTS.iter().zip([4u8, 3]) {
            assert_eq!(l.device_write, 32 - device_num - 1, "{}", l.kernel);
            assert_eq!(l.device_read, l.device_write + 1, "{}", l.kernel);
            let exclusive: Vec<u8> = (l.device_write + 2..l.device_write + device_num).collect();
            assert_eq!(l.device_exclusive, exclusive.as_slice(), "{}", l.kernel);
        }
    }
}
