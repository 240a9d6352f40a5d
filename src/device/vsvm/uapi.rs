//! The uAPI of the vsvm render node (`lab/vm/vsvm/vsvm_drm.h`), as plain data: the structs of
//! its eleven ioctls, their request numbers, the constants, and the residency bytes decoded. No
//! `unsafe` here; `ffi` passes these to the kernel. Also the one core DRM ioctl the backend
//! needs, DRM_IOCTL_VERSION, to make sure a node is vsvm's before sending it vsvm's commands.

use crate::device::Location;

/// `DRM_IOCTL_BASE`: the ioctl type of every DRM command.
pub const DRM_IOCTL_BASE: u8 = b'd';
/// `DRM_COMMAND_BASE`: the first driver-private command number.
pub const DRM_COMMAND_BASE: u8 = 0x40;

/// `DRM_IOWR(nr, size)`: `_IOWR('d', nr, size)` of the generic Linux ioctl encoding (x86, arm,
/// riscv: 8 bits of number, 8 of type, 14 of size, 2 of direction; read | write = 3). Not
/// powerpc, mips or sparc, which encode directions differently; the VM lab is x86_64.
pub const fn iowr(nr: u8, size: usize) -> u32 {
    const READ_WRITE: u32 = 3;
    assert!(size < 1 << 14, "an ioctl struct larger than the size field");
    (READ_WRITE << 30) | ((size as u32) << 16) | ((DRM_IOCTL_BASE as u32) << 8) | nr as u32
}

/// `DRM_VSVM_VERSION`: the uAPI version QUERY reports.
pub const VERSION: u32 = 2;
/// The DRM driver name of the node (`struct drm_driver.name`, DRM_IOCTL_VERSION).
pub const DRIVER_NAME: &str = "vsvm";

/// `DRM_VSVM_LOC_*`: a preferred location, a prefetch target.
pub mod loc {
    pub const NONE: u32 = 0;
    pub const SYSTEM: u32 = 1;
    pub const VRAM: u32 = 2;
}

/// `DRM_VSVM_MIGRATE_*`: what a GPU fault in an interval does (the series' enum
/// amdgpu_svm_migrate_mode).
pub mod migrate {
    /// Follow the preferred location; none means VRAM.
    pub const PREFERRED: u32 = 0;
    pub const TO_VRAM: u32 = 1;
    pub const TO_SYSMEM: u32 = 2;
    /// Map the data where it is.
    pub const NONE: u32 = 3;
}

/// `DRM_VSVM_TRIGGER_*`: the index of the counter arrays of [`Query`].
pub mod trigger {
    pub const GPU_FAULT: usize = 0;
    pub const PREFETCH: usize = 1;
    pub const CPU_FAULT: usize = 2;
    pub const EVICTION: usize = 3;
    pub const COUNT: usize = 4;
}

/// `DRM_VSVM_PLANT_*`: the bits of the module parameter `vsvm.planted`.
pub mod plant {
    pub const COPY_TO_RAM_CORRUPT: u32 = 1 << 0;
    pub const COPY_TO_DEVMEM_SKIP: u32 = 1 << 1;
    pub const RELEASE_LEAK: u32 = 1 << 2;
    pub const BO_MOVE_NO_EVICT: u32 = 1 << 3;
    pub const STALE_VRAM_MAPPING: u32 = 1 << 4;
    pub const RESIDENCY_MISREPORT: u32 = 1 << 5;
    /// `DRM_VSVM_PLANT_COUNT`: how many there are.
    pub const COUNT: u32 = 6;
}

/// `DRM_VSVM_RES_*`: the bits of one residency byte.
pub mod res {
    /// Low nibble, from the CPU page tables: not present.
    pub const NONE: u8 = 0x00;
    /// A system page.
    pub const SYSTEM: u8 = 0x01;
    /// A vsvm device-private page.
    pub const VRAM: u8 = 0x02;
    pub const CPU_MASK: u8 = 0x0f;
    /// The GPU mapping (a bound range) covers the page.
    pub const GPU_MAPPED: u8 = 0x10;
    /// ... and points into VRAM.
    pub const GPU_VRAM: u8 = 0x20;
}

/// `DRM_VSVM_BO_PINNED`: a device buffer TTM never evicts.
pub const BO_PINNED: u32 = 1 << 0;

/// The most pages one RESIDENCY call may ask about (`VSVM_RESIDENCY_MAX`).
pub const RESIDENCY_MAX_PAGES: u64 = 1 << 20;

/// `struct drm_vsvm_query` (out): the device and its counters. Counters are device-wide and
/// only grow; pages are 4 KiB.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Query {
    /// Bytes of VRAM.
    pub vram_total: u64,
    /// Bytes allocated: SVM BOs, device BOs, leaks, quarantine.
    pub vram_used: u64,
    /// Bytes freed while a device page still used them.
    pub vram_quarantined: u64,
    /// Pages migrated to VRAM, by [`trigger`].
    pub to_vram_pages: [u64; trigger::COUNT],
    /// Pages migrated to RAM, by [`trigger`].
    pub to_ram_pages: [u64; trigger::COUNT],
    /// copy_to_devmem calls that moved at least one page, by [`trigger`].
    pub to_vram_migrations: [u64; trigger::COUNT],
    /// copy_to_ram calls that moved at least one page, by [`trigger`].
    pub to_ram_migrations: [u64; trigger::COUNT],
    /// GPU faults that had to (re)bind a range.
    pub gpu_faults: u64,
    /// SVM BOs whose pages drm_pagemap_evict_to_ram() moved out.
    pub svm_evictions: u64,
    /// drm_pagemap_evict_to_ram() errors.
    pub svm_eviction_failures: u64,
    /// Device BOs moved out of VRAM.
    pub bo_evictions: u64,
    pub resets: u64,
    /// The current `vsvm.planted`.
    pub planted: u32,
    /// [`VERSION`].
    pub version: u32,
    /// ttm_tts TTM created for the system destination of evicted SVM BOs: one per eviction
    /// (the series' open issue: bo_move never uses them).
    pub evict_tt_allocs: u64,
    /// Bytes they took, summed: the ttm_tt, its page array (a pointer per page) and the
    /// TTM_PL_SYSTEM resource.
    pub evict_tt_bytes: u64,
    /// Of those, bytes still allocated now.
    pub evict_tt_live_bytes: u64,
    /// The most of those allocated at one time.
    pub evict_tt_peak_bytes: u64,
    /// System pages TTM populated for them (0 while the destination is TTM_PL_SYSTEM).
    pub evict_tt_pages: u64,
    /// Bytes of SVM BOs evicted, summed.
    pub svm_evicted_bytes: u64,
    /// How often each planted bug acted, by bit number ([`plant`]).
    pub planted_fired: [u64; 8],
}

/// `struct drm_vsvm_access`: READ, WRITE and ATOMIC_INC over `[addr, addr + size)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Access {
    /// Start, any alignment (ATOMIC_INC: 4-byte aligned).
    pub addr: u64,
    /// Bytes (ATOMIC_INC: a multiple of 4).
    pub size: u64,
    /// READ: the destination buffer; WRITE: the source; ATOMIC_INC: 0.
    pub ptr: u64,
    /// (out) faults that had to (re)bind a range.
    pub gpu_faults: u64,
    /// (out) pages those faults migrated to VRAM.
    pub migrated_pages: u64,
}

/// `struct drm_vsvm_prefetch`: every range overlapping `[start, start + size)` to `loc`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prefetch {
    pub start: u64,
    pub size: u64,
    /// [`loc::VRAM`] or [`loc::SYSTEM`].
    pub loc: u32,
    /// Must be 0.
    pub flags: u32,
    /// (out) pages moved to `loc`.
    pub migrated_pages: u64,
    /// (out) ranges that could not move (VRAM full, not anonymous, a VMA the GPU cannot map).
    pub failed_ranges: u64,
}

/// `struct drm_vsvm_set_preferred`: the attributes of `[start, start + size)`, page aligned.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetPreferred {
    pub start: u64,
    pub size: u64,
    /// [`loc`].
    pub loc: u32,
    /// [`migrate`].
    pub mode: u32,
}

/// `struct drm_vsvm_residency`: one byte per page of `[start, start + npages * 4096)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Residency {
    /// Page aligned.
    pub start: u64,
    /// 1 ..= [`RESIDENCY_MAX_PAGES`].
    pub npages: u64,
    /// A buffer of `npages` bytes.
    pub ptr: u64,
    /// (out) pages whose CPU residency is VRAM.
    pub vram_pages: u64,
}

/// `struct drm_vsvm_evict_all` (out): everything in VRAM evicted.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvictAll {
    /// SVM BOs moved out of VRAM by this call.
    pub svm_evicted: u64,
    /// Device BOs evicted meanwhile.
    pub bo_evicted: u64,
}

/// `struct drm_vsvm_create_bo`: a device buffer in VRAM, for pressure.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CreateBo {
    /// Bytes, rounded up to pages, at most VRAM.
    pub size: u64,
    /// [`BO_PINNED`] or 0.
    pub flags: u32,
    /// (out) 1 or more.
    pub handle: u32,
}

/// `struct drm_vsvm_free_bo`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FreeBo {
    pub handle: u32,
    /// Must be 0.
    pub pad: u32,
}

/// `struct drm_vsvm_reset` (out).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reset {
    pub svm_evicted: u64,
    /// Resets so far, this one included.
    pub resets: u64,
}

/// `struct drm_version` of the 64-bit ABI (`include/uapi/drm/drm.h`): three ints, the padding
/// the C compiler puts before the first `__kernel_size_t`, then three (length, pointer) pairs.
/// Only the name is asked for: the date and description pointers stay 0 with length 0, and the
/// kernel copies nothing there (drm_copy_field).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DrmVersion {
    pub version_major: i32,
    pub version_minor: i32,
    pub version_patchlevel: i32,
    pub _pad: u32,
    /// (in) bytes at `name`; (out) the length of the driver's name.
    pub name_len: u64,
    pub name: u64,
    pub date_len: u64,
    pub date: u64,
    pub desc_len: u64,
    pub desc: u64,
}

// The header's sizes (lab/vm/vsvm/README.md, "uAPI"): a struct that drifted from it would have
// the kernel read or write past ours.
const _: () = assert!(std::mem::size_of::<Query>() == 312);
const _: () = assert!(std::mem::size_of::<Access>() == 40);
const _: () = assert!(std::mem::size_of::<Prefetch>() == 40);
const _: () = assert!(std::mem::size_of::<SetPreferred>() == 24);
const _: () = assert!(std::mem::size_of::<Residency>() == 32);
const _: () = assert!(std::mem::size_of::<EvictAll>() == 16);
const _: () = assert!(std::mem::size_of::<CreateBo>() == 16);
const _: () = assert!(std::mem::size_of::<FreeBo>() == 8);
const _: () = assert!(std::mem::size_of::<Reset>() == 16);
const _: () = assert!(std::mem::size_of::<DrmVersion>() == 64);

/// A struct one ioctl takes, with that ioctl's request number, derived from the struct's own
/// size so that the two cannot disagree. Implemented only here, for the structs above.
pub trait Command: Copy + Default {
    /// The request number: `DRM_IOWR(nr, struct)`.
    const REQUEST: u32;
    /// The header's name, for error messages.
    const NAME: &'static str;
}

macro_rules! commands {
    ($($ty:ident: $nr:expr, $name:literal;)*) => {
        $(impl Command for $ty {
            const REQUEST: u32 = iowr($nr, std::mem::size_of::<$ty>());
            const NAME: &'static str = $name;
        })*
    };
}

commands! {
    DrmVersion: 0x00, "DRM_IOCTL_VERSION";
    Query: DRM_COMMAND_BASE, "DRM_IOCTL_VSVM_QUERY";
    Prefetch: DRM_COMMAND_BASE + 0x04, "DRM_IOCTL_VSVM_PREFETCH";
    SetPreferred: DRM_COMMAND_BASE + 0x05, "DRM_IOCTL_VSVM_SET_PREFERRED";
    Residency: DRM_COMMAND_BASE + 0x06, "DRM_IOCTL_VSVM_RESIDENCY";
    EvictAll: DRM_COMMAND_BASE + 0x07, "DRM_IOCTL_VSVM_EVICT_ALL";
    CreateBo: DRM_COMMAND_BASE + 0x08, "DRM_IOCTL_VSVM_CREATE_BO";
    FreeBo: DRM_COMMAND_BASE + 0x09, "DRM_IOCTL_VSVM_FREE_BO";
    Reset: DRM_COMMAND_BASE + 0x0a, "DRM_IOCTL_VSVM_RESET";
}

/// The three "GPU kernels" of the device, which share [`Access`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// The GPU reads the span into `ptr`.
    Read = 0x01,
    /// The GPU writes `ptr` over the span.
    Write = 0x02,
    /// The GPU adds one to every u32 of the span with atomic_inc().
    AtomicInc = 0x03,
}

impl Op {
    pub const ALL: [Op; 3] = [Op::Read, Op::Write, Op::AtomicInc];

    /// `DRM_IOWR(DRM_COMMAND_BASE + n, struct drm_vsvm_access)`.
    pub const fn request(self) -> u32 {
        iowr(DRM_COMMAND_BASE + self as u8, std::mem::size_of::<Access>())
    }

    /// The header's name, for error messages.
    pub fn name(self) -> &'static str {
        match self {
            Op::Read => "DRM_IOCTL_VSVM_READ",
            Op::Write => "DRM_IOCTL_VSVM_WRITE",
            Op::AtomicInc => "DRM_IOCTL_VSVM_ATOMIC_INC",
        }
    }
}

/// A residency byte the driver's own rule says it never reports (vsvm_drm.h: "A consistent
/// driver never reports GPU_VRAM without VRAM, nor GPU_MAPPED without SYSTEM or VRAM"), or a
/// CPU residency the header does not define.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inconsistent {
    /// The GPU mapping points into VRAM the CPU page tables do not hold there: the GPU kept a
    /// mapping of VRAM the data left (planted bug 0x10, STALE_VRAM_MAPPING).
    StaleVram,
    /// The GPU maps a page the CPU page tables do not have.
    MappedNotPresent,
    /// A low nibble other than NONE, SYSTEM or VRAM.
    Unknown,
}

impl std::fmt::Display for Inconsistent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Inconsistent::StaleVram => {
                "the GPU maps VRAM that the CPU page tables do not hold the page in (a stale \
                 GPU mapping of VRAM the data left)"
            }
            Inconsistent::MappedNotPresent => {
                "the GPU maps a page that is not present in the CPU page tables"
            }
            Inconsistent::Unknown => "a CPU residency the uAPI does not define",
        })
    }
}

/// Where one residency byte says a page lives. A page not present in the CPU page tables
/// (never touched, swapped out) is in system memory as far as migration goes: it is not in
/// VRAM, and the next touch puts it where the policy says.
pub fn decode(byte: u8) -> Result<Location, Inconsistent> {
    let cpu = byte & res::CPU_MASK;
    let mapped = byte & res::GPU_MAPPED != 0;
    let gpu_vram = byte & res::GPU_VRAM != 0;
    match cpu {
        res::VRAM => Ok(Location::Vram),
        res::SYSTEM if gpu_vram => Err(Inconsistent::StaleVram),
        res::SYSTEM => Ok(Location::System),
        res::NONE if gpu_vram => Err(Inconsistent::StaleVram),
        res::NONE if mapped => Err(Inconsistent::MappedNotPresent),
        res::NONE => Ok(Location::System),
        _ => Err(Inconsistent::Unknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::mem::{offset_of, size_of};

    /// The numbers of the header's table (lab/vm/vsvm/README.md, "uAPI"), as a C program
    /// including vsvm_drm.h prints them on x86_64.
    #[rstest]
    #[case(Query::REQUEST, 0xc138_6440, "QUERY")]
    #[case(Op::Read.request(), 0xc028_6441, "READ")]
    #[case(Op::Write.request(), 0xc028_6442, "WRITE")]
    #[case(Op::AtomicInc.request(), 0xc028_6443, "ATOMIC_INC")]
    #[case(Prefetch::REQUEST, 0xc028_6444, "PREFETCH")]
    #[case(SetPreferred::REQUEST, 0xc018_6445, "SET_PREFERRED")]
    #[case(Residency::REQUEST, 0xc020_6446, "RESIDENCY")]
    #[case(EvictAll::REQUEST, 0xc010_6447, "EVICT_ALL")]
    #[case(CreateBo::REQUEST, 0xc010_6448, "CREATE_BO")]
    #[case(FreeBo::REQUEST, 0xc008_6449, "FREE_BO")]
    #[case(Reset::REQUEST, 0xc010_644a, "RESET")]
    #[case(DrmVersion::REQUEST, 0xc040_6400, "DRM_IOCTL_VERSION")]
    fn ioctl_numbers_are_the_headers(#[case] got: u32, #[case] want: u32, #[case] name: &str) {
        assert_eq!(got, want, "{name}: {got:#x}");
    }

    #[test]
    fn the_names_are_the_headers() {
        assert_eq!(Query::NAME, "DRM_IOCTL_VSVM_QUERY");
        assert_eq!(Reset::NAME, "DRM_IOCTL_VSVM_RESET");
        let names: Vec<&str> = Op::ALL.iter().map(|o| o.name()).collect();
        assert_eq!(
            names,
            [
                "DRM_IOCTL_VSVM_READ",
                "DRM_IOCTL_VSVM_WRITE",
                "DRM_IOCTL_VSVM_ATOMIC_INC"
            ]
        );
    }

    #[test]
    fn struct_sizes_are_the_headers() {
        let sizes = [
            size_of::<Query>(),
            size_of::<Access>(),
            size_of::<Prefetch>(),
            size_of::<SetPreferred>(),
            size_of::<Residency>(),
            size_of::<EvictAll>(),
            size_of::<CreateBo>(),
            size_of::<FreeBo>(),
            size_of::<Reset>(),
        ];
        assert_eq!(sizes, [312, 40, 40, 24, 32, 16, 16, 8, 16]);
    }

    /// The offsets of the README's tables: every field where the kernel reads or writes it.
    #[test]
    fn field_offsets_are_the_headers() {
        assert_eq!(
            [
                offset_of!(Query, vram_total),
                offset_of!(Query, vram_used),
                offset_of!(Query, vram_quarantined),
                offset_of!(Query, to_vram_pages),
                offset_of!(Query, to_ram_pages),
                offset_of!(Query, to_vram_migrations),
                offset_of!(Query, to_ram_migrations),
                offset_of!(Query, gpu_faults),
                offset_of!(Query, svm_evictions),
                offset_of!(Query, svm_eviction_failures),
                offset_of!(Query, bo_evictions),
                offset_of!(Query, resets),
                offset_of!(Query, planted),
                offset_of!(Query, version),
                offset_of!(Query, evict_tt_allocs),
                offset_of!(Query, evict_tt_bytes),
                offset_of!(Query, evict_tt_live_bytes),
                offset_of!(Query, evict_tt_peak_bytes),
                offset_of!(Query, evict_tt_pages),
                offset_of!(Query, svm_evicted_bytes),
                offset_of!(Query, planted_fired),
            ],
            [
                0, 8, 16, 24, 56, 88, 120, 152, 160, 168, 176, 184, 192, 196, 200, 208, 216, 224,
                232, 240, 248
            ]
        );
        assert_eq!(
            [
                offset_of!(Access, addr),
                offset_of!(Access, size),
                offset_of!(Access, ptr),
                offset_of!(Access, gpu_faults),
                offset_of!(Access, migrated_pages),
            ],
            [0, 8, 16, 24, 32]
        );
        assert_eq!(
            [
                offset_of!(Prefetch, start),
                offset_of!(Prefetch, size),
                offset_of!(Prefetch, loc),
                offset_of!(Prefetch, flags),
                offset_of!(Prefetch, migrated_pages),
                offset_of!(Prefetch, failed_ranges),
            ],
            [0, 8, 16, 20, 24, 32]
        );
        assert_eq!(
            [
                offset_of!(SetPreferred, loc),
                offset_of!(SetPreferred, mode)
            ],
            [16, 20]
        );
        assert_eq!(
            [
                offset_of!(Residency, npages),
                offset_of!(Residency, ptr),
                offset_of!(Residency, vram_pages),
            ],
            [8, 16, 24]
        );
        assert_eq!(
            [
                offset_of!(CreateBo, size),
                offset_of!(CreateBo, flags),
                offset_of!(CreateBo, handle)
            ],
            [0, 8, 12]
        );
        assert_eq!(
            [offset_of!(FreeBo, handle), offset_of!(FreeBo, pad)],
            [0, 4]
        );
        assert_eq!(
            [offset_of!(Reset, svm_evicted), offset_of!(Reset, resets)],
            [0, 8]
        );
        assert_eq!(
            [
                offset_of!(DrmVersion, name_len),
                offset_of!(DrmVersion, name),
                offset_of!(DrmVersion, desc),
            ],
            [16, 24, 56]
        );
    }

    #[rstest]
    #[case(res::NONE, Ok(Location::System))]
    #[case(res::SYSTEM, Ok(Location::System))]
    #[case(res::SYSTEM | res::GPU_MAPPED, Ok(Location::System))]
    #[case(res::VRAM, Ok(Location::Vram))]
    #[case(res::VRAM | res::GPU_MAPPED | res::GPU_VRAM, Ok(Location::Vram))]
    #[case(res::VRAM | res::GPU_MAPPED, Ok(Location::Vram))]
    #[case(res::SYSTEM | res::GPU_MAPPED | res::GPU_VRAM, Err(Inconsistent::StaleVram))]
    #[case(res::NONE | res::GPU_MAPPED | res::GPU_VRAM, Err(Inconsistent::StaleVram))]
    #[case(res::NONE | res::GPU_MAPPED, Err(Inconsistent::MappedNotPresent))]
    #[case(0x03, Err(Inconsistent::Unknown))]
    fn residency_bytes_decode_by_the_cpu_page_tables_and_stale_gpu_mappings_are_named(
        #[case] byte: u8,
        #[case] want: Result<Location, Inconsistent>,
    ) {
        assert_eq!(decode(byte), want, "{byte:#04x}");
    }
}
