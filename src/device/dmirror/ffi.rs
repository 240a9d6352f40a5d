//! The only `unsafe` code of the dmirror backend: the test driver's ioctls, the mappings an
//! allocation is made of, and the CPU's accesses to them. Everything is exposed as safe
//! functions and types whose invariants make each `unsafe` block sound; each says why.

use std::ffi::c_void;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use super::uapi::{Command, HmmDmirrorCmd};

const PAGE: usize = 4096;

fn os_error(call: &str) -> std::io::Error {
    let e = std::io::Error::last_os_error();
    std::io::Error::new(e.kind(), format!("{call}: {e}"))
}

/// Sends `cmd` to the driver behind `dev`. The caller built `cmd` so that `ptr` points at a
/// buffer of ours as large as the command reads or writes: [`Transfer`] does.
fn ioctl(dev: &File, command: Command, cmd: &mut HmmDmirrorCmd) -> std::io::Result<()> {
    // SAFETY: `dev` is open; the request is `_IOWR` of exactly `struct hmm_dmirror_cmd`, which
    // `cmd` is (repr(C), 40 bytes, size asserted in uapi); the kernel reads and writes only
    // it and, through `ptr`, the buffer `Transfer` guarantees.
    let rc = unsafe {
        libc::ioctl(
            dev.as_raw_fd(),
            command.request() as _,
            cmd as *mut HmmDmirrorCmd,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// One command over `npages` pages at `addr`, with the host buffer it copies through: what the
/// driver writes there (READ, MIGRATE_TO_DEV: npages * 4096 bytes; SNAPSHOT: npages bytes) or
/// reads from it (WRITE).
pub enum Transfer<'a> {
    /// READ or MIGRATE_TO_DEV: the device copies the pages into `out`.
    Into(&'a mut [u32]),
    /// WRITE: the device copies `words` onto the pages.
    From(&'a [u32]),
    /// SNAPSHOT: one byte per page.
    Bytes(&'a mut [u8]),
    /// MIGRATE_TO_SYS and RELEASE copy nothing to or from user memory.
    Nothing,
}

/// Runs `command` on pages `[addr, addr + npages * 4096)`; returns the command as the driver
/// filled it in (cpages, faults). The addresses may be anything: the driver looks them up in
/// our address space and fails with EFAULT or EINVAL where nothing is mapped.
pub fn command(
    dev: &File,
    command: Command,
    addr: u64,
    npages: u64,
    transfer: Transfer<'_>,
) -> std::io::Result<HmmDmirrorCmd> {
    let (ptr, bytes) = match transfer {
        Transfer::Into(out) => (out.as_mut_ptr() as u64, std::mem::size_of_val(out)),
        Transfer::From(words) => (words.as_ptr() as u64, std::mem::size_of_val(words)),
        Transfer::Bytes(out) => (out.as_mut_ptr() as u64, out.len()),
        Transfer::Nothing => (0, 0),
    };
    let needed = match command {
        Command::Read | Command::Write | Command::MigrateToDev => npages as usize * PAGE,
        Command::Snapshot => npages as usize,
        Command::MigrateToSys | Command::Release => 0,
    };
    if bytes < needed {
        return Err(std::io::Error::other(format!(
            "{}: a buffer of {bytes} bytes for {npages} pages, {needed} needed",
            command.name()
        )));
    }
    let mut cmd = super::uapi::cmd(addr, ptr, npages)
        .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    ioctl(dev, command, &mut cmd)?;
    Ok(cmd)
}

/// Why a CPU access was refused before touching memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The byte at this offset was unmapped (`unmap`).
    Unmapped(u64),
    /// A write to a read-only mapping.
    ReadOnly,
    /// Past the end of the allocation (callers check bounds first; this is the backstop).
    Outside,
}

/// Where an allocation's memory came from, which decides how it is freed and moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backing {
    /// posix_memalign from the C heap.
    Heap,
    /// mmap: anonymous private or shared, or a shared file mapping.
    Mapping,
}

/// One allocation of this process: its address, length and what the CPU may do with it now.
/// Accesses check the range, the unmapped pages and the protection first, so a refused access
/// is an error instead of a SIGSEGV.
///
/// Every allocation lies between two guard pages of its own that nothing can access
/// (PROT_NONE, `GUARD` bytes each), so that its mapping is a VMA no other mapping of the
/// process is ever merged into. Without them the kernel's test driver oopses under the suite
/// (lab/vm/README.md, "Findings"): lib/test_hmm.c of Linux 6.12 forgets its entry for a page it
/// migrated whenever that page's range is invalidated, and when the device next reads or
/// writes the page it maps the device-private page itself instead of the page behind it. Such
/// invalidations come from outside the allocation: splitting any VMA that covers a whole 2 MiB
/// block sends one for the whole block (`split_huge_pmd_address`), and the driver clears one
/// page past the end of every range. A VMA of its own, between guards, leaves the allocation
/// only the invalidations its own case makes.
pub struct Memory {
    /// The first byte the device and the CPU are given; a guard page is below it and another
    /// after the last page.
    base: NonNull<u8>,
    /// Bytes mapped: the request rounded up to pages.
    len: usize,
    backing: Backing,
    /// Page ranges `[first, end)` unmapped with `unmap`.
    holes: Vec<(u64, u64)>,
    read_only: bool,
}

// SAFETY: the memory is process-wide; shared references only do volatile or atomic accesses
// (cpu_threads), and everything that changes the mapping takes `&mut self`.
unsafe impl Send for Memory {}
// SAFETY: as above.
unsafe impl Sync for Memory {}

fn page_round(len: u64) -> usize {
    (len as usize).div_ceil(PAGE).max(1) * PAGE
}

/// Bytes of each of the two guards of every allocation (see [`Memory`]).
const GUARD: usize = PAGE;

impl Memory {
    /// Page-aligned memory from the C heap: malloc's kind of memory, aligned so that the
    /// allocation's page i is one real page the device can address. The guards are the first
    /// and the last page of the block, made inaccessible here and accessible again before the
    /// block goes back to malloc.
    pub fn heap(len: u64) -> std::io::Result<Memory> {
        let len = page_round(len);
        let mut p: *mut c_void = std::ptr::null_mut();
        // SAFETY: `p` is a valid location; PAGE is a power of two multiple of sizeof(void*).
        let rc = unsafe { libc::posix_memalign(&mut p, PAGE, GUARD + len + GUARD) };
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        let m = Memory::wrap(p, len, Backing::Heap)?;
        m.protect_guards(libc::PROT_NONE)?;
        Ok(m)
    }

    /// mmap(MAP_ANONYMOUS | MAP_PRIVATE or MAP_SHARED).
    pub fn anonymous(len: u64, shared: bool) -> std::io::Result<Memory> {
        let flags = libc::MAP_ANONYMOUS
            | if shared {
                libc::MAP_SHARED
            } else {
                libc::MAP_PRIVATE
            };
        Memory::map(page_round(len), flags, -1)
    }

    /// mmap(MAP_SHARED) of `file`, which must be at least `len` bytes long.
    pub fn file(file: &File, len: u64) -> std::io::Result<Memory> {
        Memory::map(page_round(len), libc::MAP_SHARED, file.as_raw_fd())
    }

    /// The guards and the mapping: a reservation of all three, inaccessible, then the mapping
    /// put over all of it but the guards.
    fn map(len: usize, flags: libc::c_int, fd: libc::c_int) -> std::io::Result<Memory> {
        let p = reserve(GUARD + len + GUARD, "mmap (reservation)")?;
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        // SAFETY: replaces part of our own fresh reservation (MAP_FIXED), nothing else.
        let m = unsafe {
            libc::mmap(
                p.cast::<u8>().add(GUARD).cast(),
                len,
                prot,
                flags | libc::MAP_FIXED,
                fd,
                0,
            )
        };
        if m == libc::MAP_FAILED {
            let e = os_error("mmap");
            // SAFETY: the reservation is ours and nothing else uses it.
            unsafe { libc::munmap(p, GUARD + len + GUARD) };
            return Err(e);
        }
        Memory::wrap(p, len, Backing::Mapping)
    }

    /// Sets the protection of both guards of heap memory (mappings have theirs from
    /// `reserve`).
    fn protect_guards(&self, prot: libc::c_int) -> std::io::Result<()> {
        for guard in [
            self.base.as_ptr().wrapping_sub(GUARD),
            self.base.as_ptr().wrapping_add(self.len),
        ] {
            // SAFETY: each guard is a whole page of this allocation's own block, which nothing
            // else uses; the allocation's pages are not touched.
            if unsafe { libc::mprotect(guard.cast(), GUARD, prot) } != 0 {
                return Err(os_error("mprotect (guard page)"));
            }
        }
        Ok(())
    }

    /// `p` is where the allocation starts: a guard, then `len` bytes, then a guard.
    fn wrap(p: *mut c_void, len: usize, backing: Backing) -> std::io::Result<Memory> {
        if p.is_null() {
            return Err(std::io::Error::other(
                "the allocator returned a null pointer",
            ));
        }
        Ok(Memory {
            base: NonNull::new(p.cast::<u8>().wrapping_add(GUARD))
                .expect("a non-null allocation plus its guard is not null"),
            len,
            backing,
            holes: Vec::new(),
            read_only: false,
        })
    }

    /// The address the device is given.
    pub fn addr(&self) -> u64 {
        self.base.as_ptr() as u64
    }

    /// Pages unmapped with `unmap` that meet pages `[first, end)`: the first such page.
    pub fn hole_in(&self, first: u64, end: u64) -> Option<u64> {
        self.holes
            .iter()
            .find(|(a, b)| *a < end && first < *b)
            .map(|(a, _)| (*a).max(first))
    }

    /// Checks that `[offset, offset + bytes)` lies inside and is mapped, and for a write that
    /// the mapping is writable.
    fn accessible(&self, offset: u64, bytes: u64, write: bool) -> Result<(), Refused> {
        if offset
            .checked_add(bytes)
            .map_or(true, |end| end > self.len as u64)
        {
            return Err(Refused::Outside);
        }
        let (first, end) = (offset / PAGE as u64, (offset + bytes).div_ceil(PAGE as u64));
        if let Some(hole) = self.hole_in(first, end) {
            return Err(Refused::Unmapped(hole * PAGE as u64));
        }
        if write && self.read_only {
            return Err(Refused::ReadOnly);
        }
        Ok(())
    }

    /// Reads words at `offset` into `out`: plain CPU loads, which fault device-private pages
    /// back to system memory (the driver's migrate_to_ram).
    pub fn read(&self, offset: u64, out: &mut [u32]) -> Result<(), Refused> {
        self.accessible(offset, out.len() as u64 * 4, false)?;
        // SAFETY: the range is inside the mapping, mapped and readable (checked above); no
        // kernel runs concurrently (the backend's kernels are synchronous), so nothing else
        // writes it; offsets are word aligned (callers check).
        unsafe {
            let src = self.base.as_ptr().add(offset as usize).cast::<u32>();
            std::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), out.len());
        }
        Ok(())
    }

    /// Writes `words` at `offset`; plain CPU stores.
    pub fn write(&self, offset: u64, words: &[u32]) -> Result<(), Refused> {
        self.accessible(offset, words.len() as u64 * 4, true)?;
        // SAFETY: inside, mapped and writable (checked above); nothing else accesses it now.
        unsafe {
            let dst = self.base.as_ptr().add(offset as usize).cast::<u32>();
            std::ptr::copy_nonoverlapping(words.as_ptr(), dst, words.len());
        }
        Ok(())
    }

    /// Reads the word at `offset` (volatile: other threads may write it).
    pub fn read_word(&self, offset: u64) -> Result<u32, Refused> {
        self.accessible(offset, 4, false)?;
        // SAFETY: inside, mapped, readable (checked), 4-byte aligned (page offsets).
        Ok(unsafe {
            self.base
                .as_ptr()
                .add(offset as usize)
                .cast::<u32>()
                .read_volatile()
        })
    }

    /// Adds one to the word at `offset` with a sequentially consistent atomic.
    pub fn atomic_inc(&self, offset: u64) -> Result<(), Refused> {
        self.accessible(offset, 4, true)?;
        // SAFETY: inside, mapped, writable (checked); 4-byte aligned; every concurrent access
        // to it during cpu_threads is atomic too.
        let a = unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(offset as usize).cast()) };
        a.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// munmap of whole pages `[first, first + count)`; later accesses there are refused.
    pub fn unmap_pages(&mut self, first: u64, count: u64) -> std::io::Result<()> {
        let end = first + count;
        if end as usize * PAGE > self.len || self.backing != Backing::Mapping {
            return Err(std::io::Error::other(format!(
                "pages [{first}, {end}) are not all part of this mapping of {} pages",
                self.len / PAGE
            )));
        }
        // SAFETY: the pages are part of this mapping (checked); accesses to them are refused
        // from now on (recorded as a hole), and Drop unmaps the whole range again, harmlessly.
        let rc = unsafe {
            libc::munmap(
                self.base.as_ptr().add(first as usize * PAGE).cast(),
                count as usize * PAGE,
            )
        };
        if rc != 0 {
            return Err(os_error("munmap"));
        }
        self.holes.push((first, end));
        Ok(())
    }

    /// Moves the mapping to a new address (mremap with MREMAP_FIXED onto a fresh reservation,
    /// so it really moves); contents follow. Only for mmap-made memory.
    pub fn remap(&mut self) -> std::io::Result<()> {
        if self.backing != Backing::Mapping {
            return Err(std::io::Error::other(
                "only memory made with mmap can be moved",
            ));
        }
        // The new place has its own guards: the reservation's first and last page, left as
        // they are.
        let reserved = reserve(GUARD + self.len + GUARD, "mmap (reservation for mremap)")?;
        // SAFETY: moves our mapping onto our own reservation, between its guards; the old
        // range is unmapped by the kernel and `base` is updated before any further access.
        let moved = unsafe {
            libc::mremap(
                self.base.as_ptr().cast(),
                self.len,
                self.len,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                reserved.cast::<u8>().add(GUARD).cast::<c_void>(),
            )
        };
        if moved == libc::MAP_FAILED {
            let e = os_error("mremap");
            // SAFETY: the reservation is ours and unused.
            unsafe { libc::munmap(reserved, GUARD + self.len + GUARD) };
            return Err(e);
        }
        // SAFETY: the old guards are ours and nothing uses them; the mapping between them is
        // gone.
        unsafe {
            libc::munmap(self.base.as_ptr().sub(GUARD).cast(), GUARD);
            libc::munmap(self.base.as_ptr().add(self.len).cast(), GUARD);
        }
        self.base = NonNull::new(moved.cast()).ok_or_else(|| os_error("mremap"))?;
        Ok(())
    }

    /// mprotect of the whole allocation: read-only, or read-write again.
    pub fn protect(&mut self, read_only: bool) -> std::io::Result<()> {
        let prot = if read_only {
            libc::PROT_READ
        } else {
            libc::PROT_READ | libc::PROT_WRITE
        };
        // SAFETY: changes the protection of our own mapping; writes are refused by
        // `accessible` while it is read-only. Unmapped holes make it fail with ENOMEM, reported.
        let rc = unsafe { libc::mprotect(self.base.as_ptr().cast(), self.len, prot) };
        if rc != 0 {
            return Err(os_error("mprotect"));
        }
        self.read_only = read_only;
        Ok(())
    }
}

/// `len` bytes of fresh address space nothing can access (PROT_NONE), at an address the kernel
/// chooses.
fn reserve(len: usize, call: &str) -> std::io::Result<*mut c_void> {
    // SAFETY: a new mapping at an address the kernel chooses; nothing of ours is replaced.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(os_error(call));
    }
    Ok(p)
}

impl Drop for Memory {
    fn drop(&mut self) {
        // The allocation starts at its first guard.
        let p = self.base.as_ptr().wrapping_sub(GUARD).cast::<c_void>();
        // SAFETY: each backing is released by its own allocator, exactly once, and no access
        // can follow (drop); malloc gets its whole block back accessible, as it gave it.
        // Errors cannot be reported from drop; a leak is the worst outcome.
        unsafe {
            match self.backing {
                Backing::Heap => {
                    if self
                        .protect_guards(libc::PROT_READ | libc::PROT_WRITE)
                        .is_ok()
                    {
                        libc::free(p);
                    }
                }
                Backing::Mapping => {
                    libc::munmap(p, GUARD + self.len + GUARD);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ioctl path up to the kernel, on a file that is not the driver: the kernel answers
    /// ENOTTY, and a buffer too small is refused before any call.
    #[test]
    fn a_command_reaches_the_kernel_only_with_a_buffer_large_enough() {
        let f = tempfile::tempfile().unwrap();
        let mut small = [0u32; 16];
        let e = command(&f, Command::Read, 0x1000, 1, Transfer::Into(&mut small)).unwrap_err();
        assert!(
            e.to_string().contains("64 bytes for 1 pages, 4096 needed"),
            "{e}"
        );
        let mut page = vec![0u32; 1024];
        let e = command(&f, Command::Read, 0x1000, 1, Transfer::Into(&mut page)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTTY), "{e}");
        let e = command(&f, Command::Release, 0x1001, 1, Transfer::Nothing).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "unaligned: {e}");
    }

    #[test]
    fn cpu_accesses_check_holes_and_protection_first() {
        let mut m = Memory::anonymous(4 * PAGE as u64, false).unwrap();
        m.write(0, &[1, 2, 3]).unwrap();
        m.atomic_inc(4).unwrap();
        let mut out = [0u32; 3];
        m.read(0, &mut out).unwrap();
        assert_eq!(out, [1, 3, 3]);
        m.unmap_pages(2, 1).unwrap();
        assert_eq!(
            m.read_word(2 * PAGE as u64 + 8),
            Err(Refused::Unmapped(2 * PAGE as u64))
        );
        assert_eq!(m.read_word(4 * PAGE as u64), Err(Refused::Outside));
        let mut m = Memory::anonymous(PAGE as u64, false).unwrap();
        m.write(0, &[7]).unwrap();
        m.remap().unwrap();
        assert_eq!(m.read_word(0), Ok(7), "contents follow the move");
        m.protect(true).unwrap();
        assert_eq!(m.write(0, &[1]), Err(Refused::ReadOnly));
    }

    /// The permissions of the mapping of this process that holds `addr`, from /proc/self/maps.
    fn perms_at(addr: u64) -> Option<String> {
        std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .find_map(|line| {
                let (range, rest) = line.split_once(' ')?;
                let (lo, hi) = range.split_once('-')?;
                let (lo, hi) = (
                    u64::from_str_radix(lo, 16).ok()?,
                    u64::from_str_radix(hi, 16).ok()?,
                );
                (lo <= addr && addr < hi).then(|| rest[..4].to_string())
            })
    }

    /// The guards of memory at `addr` of `len` bytes: the permissions below and above it.
    fn guards(addr: u64, len: u64) -> (Option<String>, Option<String>) {
        (perms_at(addr - PAGE as u64), perms_at(addr + len))
    }

    #[test]
    fn every_allocation_lies_between_two_inaccessible_guard_pages_even_after_a_move() {
        let none = || (Some("---p".to_string()), Some("---p".to_string()));
        for shared in [false, true] {
            let len = 2 * PAGE as u64;
            let mut m = Memory::anonymous(len, shared).unwrap();
            assert_eq!(guards(m.addr(), len), none(), "shared {shared}");
            assert!(perms_at(m.addr()).unwrap().starts_with("rw"));
            m.remap().unwrap();
            assert_eq!(guards(m.addr(), len), none(), "after the move");
        }
        let f = tempfile::tempfile().unwrap();
        f.set_len(PAGE as u64).unwrap();
        let m = Memory::file(&f, PAGE as u64).unwrap();
        assert_eq!(guards(m.addr(), PAGE as u64), none());
        assert_eq!(perms_at(m.addr()).as_deref(), Some("rw-s"));
        let m = Memory::heap(3 * PAGE as u64).unwrap();
        assert_eq!(guards(m.addr(), 3 * PAGE as u64), none(), "heap");
        assert_eq!(m.addr() % PAGE as u64, 0);
        m.write(0, &[5]).unwrap();
        assert_eq!(m.read_word(0), Ok(5));
        drop(m);
        // malloc has its block back whole: a new allocation of it can be written everywhere.
        let again = Memory::heap(3 * PAGE as u64).unwrap();
        again.write(0, &[6]).unwrap();
    }
}
