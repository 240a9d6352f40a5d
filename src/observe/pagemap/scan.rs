//! The `PAGEMAP_SCAN` ioctl on `/proc/self/pagemap` (Linux 6.7+; include/uapi/linux/fs.h,
//! fs/proc/task_mmu.c `do_pagemap_scan`): a range's pages as runs of one set of categories, in
//! one call. It tells present, swapped (device-private entries among them), huge (a PMD maps
//! the page) and file pages apart without privilege, but no swap type and no PFN.

use std::fs::File;
use std::os::fd::AsRawFd;

use super::PAGE;

/// `PAGE_IS_*` categories.
pub mod category {
    pub const FILE: u64 = 1 << 2;
    pub const PRESENT: u64 = 1 << 3;
    pub const SWAPPED: u64 = 1 << 4;
    pub const HUGE: u64 = 1 << 6;
    /// What a scan asks to be told.
    pub const ASKED: u64 = FILE | PRESENT | SWAPPED | HUGE;
}

/// `struct pm_scan_arg`.
#[repr(C)]
#[derive(Default)]
struct ScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

/// `struct page_region`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Region {
    start: u64,
    end: u64,
    categories: u64,
}

/// `_IOWR('f', 16, struct pm_scan_arg)`.
const PAGEMAP_SCAN: u64 =
    (3 << 30) | ((std::mem::size_of::<ScanArg>() as u64) << 16) | (0x66 << 8) | 16;

/// Regions asked for per call; a range with more runs takes more calls.
const REGIONS: usize = 512;

/// The categories ([`category::ASKED`]) of each page of `[addr, addr + pages * 4096)`; a page
/// in no category (not mapped, never touched) is 0.
pub fn categories(pagemap: &File, addr: u64, pages: u64) -> std::io::Result<Vec<u64>> {
    let end = addr + pages * PAGE;
    let mut out = vec![0u64; pages as usize];
    let mut regions = vec![Region::default(); REGIONS];
    let mut start = addr;
    while start < end {
        let mut arg = ScanArg {
            size: std::mem::size_of::<ScanArg>() as u64,
            start,
            end,
            vec: regions.as_mut_ptr() as u64,
            vec_len: REGIONS as u64,
            category_anyof_mask: category::ASKED,
            return_mask: category::ASKED,
            ..ScanArg::default()
        };
        // SAFETY: `arg` is a pm_scan_arg of the size it says, `vec` points at `vec_len`
        // writable page_regions that outlive the call, and the fd is a pagemap file.
        let n = unsafe { libc::ioctl(pagemap.as_raw_fd(), PAGEMAP_SCAN as _, &mut arg) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        for r in &regions[..n as usize] {
            if r.start < start || r.end > end || r.start >= r.end || r.start % PAGE != 0 {
                return Err(std::io::Error::other(format!(
                    "PAGEMAP_SCAN returned the region [{:#x}, {:#x}) outside the range asked \
                     [{start:#x}, {end:#x})",
                    r.start, r.end
                )));
            }
            for page in (r.start - addr) / PAGE..(r.end - addr).div_ceil(PAGE) {
                out[page as usize] = r.categories;
            }
        }
        if arg.walk_end == end {
            break;
        }
        if arg.walk_end <= start || arg.walk_end > end {
            return Err(std::io::Error::other(format!(
                "PAGEMAP_SCAN stopped at {:#x}, not past {start:#x} within [{addr:#x}, {end:#x})",
                arg.walk_end
            )));
        }
        start = arg.walk_end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ioctl_number_is_the_headers() {
        // _IOWR('f', 16, struct pm_scan_arg) with a 96-byte struct, as <linux/fs.h> expands it.
        assert_eq!(std::mem::size_of::<ScanArg>(), 96);
        assert_eq!(std::mem::size_of::<Region>(), 24);
        assert_eq!(PAGEMAP_SCAN, 0xc060_6610);
    }
}
