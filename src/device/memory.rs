//! Host memory as the hip and dmirror backends allocate it: the heap blocks and mappings an
//! allocation is made of, how its mapping changes (unmap, remap, protect), and the CPU's
//! accesses to it. One of the crate's FFI modules (libc's allocators and mapping calls, raw
//! accesses): everything is exposed as the safe [`Memory`], whose invariants make each `unsafe`
//! block sound; each block says why in one line.
//!
//! # Who accesses the memory, and how
//!
//! The memory is shared with agents Rust does not see: the GPU (on hip, a kernel may still be
//! running while the CPU reads and writes: the `concurrency` cases), the test driver (dmirror,
//! during its ioctls), and the threads of `cpu_threads`, which share one `&Memory`, so
//! [`Memory`] is `Sync`. What may race is therefore decided by the receiver:
//! - `&self` reaches the memory only with atomics: [`Memory::read_word`] is a relaxed atomic
//!   load, [`Memory::atomic_inc`] a sequentially consistent atomic add. CPU threads racing each
//!   other on one word are defined behaviour, and so are the GPU's system-scope atomics beside
//!   them. No plain or volatile access can be made through a shared reference.
//! - `&mut self` is needed for the bulk copies [`Memory::read`] and [`Memory::write`]: the
//!   exclusive borrow rules out every other CPU access through this value while they run. Their
//!   `racing` says whether the GPU may access the memory meanwhile (a kernel in flight): then
//!   every word is a volatile access, which the compiler neither elides nor merges, the form
//!   Rust has for memory an agent outside the program changes; otherwise one plain copy.
//! - Every change of the mapping ([`Memory::unmap_pages`], [`Memory::remap`],
//!   [`Memory::protect`]) takes `&mut self`, so no access is in flight on the CPU meanwhile.
//!
//! Word accesses are `u32` at 4-byte aligned addresses. That is checked on every access, not
//! assumed: an address that is not word-aligned is [`Refused::Misaligned`] before any access.

use std::ffi::{c_int, c_void};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// Bytes of a page: the unit of mappings, holes, protection and guards.
pub const PAGE: usize = 4096;

/// Bytes of a word, the unit of every CPU access: a `u32` at a 4-byte aligned address.
const WORD: u64 = std::mem::size_of::<u32>() as u64;

/// `len` bytes rounded up to whole pages, at least one.
pub fn page_round(len: u64) -> usize {
    (len as usize).div_ceil(PAGE).max(1) * PAGE
}

fn os_error(call: &str) -> std::io::Error {
    let e = std::io::Error::last_os_error();
    std::io::Error::new(e.kind(), format!("{call}: {e}"))
}

/// Whether an allocation lies between guard pages of its own.
///
/// With [`Guards::Pages`], an allocation lies between two guard pages that nothing can access
/// (PROT_NONE, one page each), so that its mapping is a VMA no other mapping of the process is
/// ever merged into. The dmirror backend needs them: without them the kernel's test driver
/// oopses under the suite (lab/vm/README.md, "Findings"): lib/test_hmm.c of Linux 6.12 forgets
/// its entry for a page it migrated whenever that page's range is invalidated, and when the
/// device next reads or writes the page it maps the device-private page itself instead of the
/// page behind it. Such invalidations come from outside the allocation: splitting any VMA that
/// covers a whole 2 MiB block sends one for the whole block (`split_huge_pmd_address`), and the
/// driver clears one page past the end of every range. A VMA of its own, between guards,
/// leaves the allocation only the invalidations its own case makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guards {
    /// The allocation alone (hip).
    None,
    /// A PROT_NONE page below the allocation and another after its last page (dmirror).
    Pages,
}

impl Guards {
    /// Bytes of each of the two guards.
    fn bytes(self) -> usize {
        match self {
            Guards::None => 0,
            Guards::Pages => PAGE,
        }
    }
}

/// Why a CPU access was refused before touching memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Memory the CPU has no mapping of (hipMalloc's VRAM).
    NotHost,
    /// The byte at this offset was unmapped (`unmap_pages`).
    Unmapped(u64),
    /// A write to a read-only mapping.
    ReadOnly,
    /// Past the end of the allocation (callers check bounds first; this is the backstop).
    Outside,
    /// The word at this offset is not at a 4-byte aligned address.
    Misaligned(u64),
}

/// Where an allocation's memory came from, which decides how it is freed and what may change.
#[derive(Clone, Copy)]
enum Backing {
    /// posix_memalign from the C heap.
    Heap,
    /// Heap memory placed at a chosen address (`--place-at`): an anonymous private mapping,
    /// since malloc takes no address, that refuses what a heap block refuses (unmap, move,
    /// protect) so a case does the same to it as to malloc's memory.
    PlacedHeap,
    /// mmap: anonymous private or shared, or a shared file mapping.
    Mapping,
    /// Another allocator's (the HIP runtime's): see [`Memory::foreign`].
    Foreign {
        /// The CPU may access it (managed memory), or not (VRAM).
        host: bool,
        /// Gives it back; called once, by drop.
        release: unsafe fn(NonNull<u8>),
    },
}

/// One allocation of this process: its address, length and what the CPU may do with it now.
/// Accesses check the range, the alignment, the unmapped pages and the protection first, so a
/// refused access is an error instead of a SIGSEGV (module doc: which accesses may race).
pub struct Memory {
    /// The first byte the device and the CPU are given; with guards, one is below it and
    /// another after the last page.
    base: NonNull<u8>,
    /// Bytes of the allocation: the request rounded up to pages, but for VRAM.
    len: usize,
    /// Bytes of each guard: 0 or [`PAGE`].
    guard: usize,
    backing: Backing,
    /// Page ranges `[first, end)` unmapped with `unmap_pages`.
    holes: Vec<(u64, u64)>,
    read_only: bool,
}

// SAFETY: a Memory owns its block or mapping (no other value frees or changes it), nothing in
// it is tied to the thread that made it, and a foreign release may run on any thread (the
// contract of `Memory::foreign`).
unsafe impl Send for Memory {}
// SAFETY: through `&self` the memory is reached only by atomics (read_word, atomic_inc) and the
// mapping cannot change; plain copies and every change of the mapping take `&mut self`.
unsafe impl Sync for Memory {}

impl Memory {
    /// Page-aligned memory from the C heap: malloc's kind of memory, aligned so that the
    /// allocation's page i is one real page the device can address. Guards are the first and
    /// the last page of the block, made inaccessible here and accessible again before the block
    /// goes back to malloc.
    pub fn heap(len: u64, guards: Guards) -> std::io::Result<Memory> {
        let (len, guard) = (page_round(len), guards.bytes());
        let mut p: *mut c_void = std::ptr::null_mut();
        // SAFETY: `p` is a valid location; PAGE is a power of two multiple of sizeof(void*).
        let rc = unsafe { libc::posix_memalign(&mut p, PAGE, guard + len + guard) };
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        let m = Memory::wrap(p, len, guard, Backing::Heap)?;
        if guard > 0 {
            m.protect_guards(libc::PROT_NONE)?;
        }
        Ok(m)
    }

    /// mmap(MAP_ANONYMOUS | MAP_PRIVATE or MAP_SHARED).
    pub fn anonymous(len: u64, shared: bool, guards: Guards) -> std::io::Result<Memory> {
        let flags = libc::MAP_ANONYMOUS
            | if shared {
                libc::MAP_SHARED
            } else {
                libc::MAP_PRIVATE
            };
        Memory::map(page_round(len), flags, -1, guards, None)
    }

    /// mmap(MAP_SHARED) of `file`, which must be at least `len` bytes long.
    pub fn file(file: &File, len: u64, guards: Guards) -> std::io::Result<Memory> {
        Memory::map(
            page_round(len),
            libc::MAP_SHARED,
            file.as_raw_fd(),
            guards,
            None,
        )
    }

    /// Memory another allocator made (the HIP runtime): `len` bytes at `base`, freed by
    /// `release`. It has no guards, cannot be moved, and when `host` is false every CPU access
    /// is refused ([`Refused::NotHost`]).
    ///
    /// # Safety
    ///
    /// The `len` bytes at `base` are this Memory's from now on: nothing else frees, moves,
    /// unmaps or reprotects them while it lives. When `host`, they are a mapping of this process
    /// the CPU may read and write, all of them, which may also be unmapped or reprotected page
    /// by page. `release(base)` gives them back; it is called once, by drop, on any thread.
    pub unsafe fn foreign(
        base: NonNull<u8>,
        len: usize,
        host: bool,
        release: unsafe fn(NonNull<u8>),
    ) -> Memory {
        Memory {
            base,
            len,
            guard: 0,
            backing: Backing::Foreign { host, release },
            holes: Vec::new(),
            read_only: false,
        }
    }

    /// The mapping, with its guards: without, one mmap where the kernel chooses; with, a
    /// reservation of all three, inaccessible, then the mapping put over all of it but the
    /// guards.
    ///
    /// With `at`, the block (guards included) starts exactly there, or the mapping fails
    /// without replacing anything: MAP_FIXED_NOREPLACE.
    fn map(
        len: usize,
        flags: c_int,
        fd: c_int,
        guards: Guards,
        at: Option<u64>,
    ) -> std::io::Result<Memory> {
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let guard = guards.bytes();
        if let Some(at) = at {
            let p = map_at(at, guard + len + guard, prot, flags, fd)?;
            let m = Memory::wrap(p, len, guard, Backing::Mapping)?;
            if guard > 0 {
                m.protect_guards(libc::PROT_NONE)?;
            }
            return Ok(m);
        }
        if guard == 0 {
            // SAFETY: a new mapping at an address the kernel chooses; nothing of ours is replaced.
            let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, 0) };
            if p == libc::MAP_FAILED {
                return Err(os_error("mmap"));
            }
            return Memory::wrap(p, len, 0, Backing::Mapping);
        }
        let p = reserve(guard + len + guard, "mmap (reservation)")?;
        let at = p.cast::<u8>().wrapping_add(guard).cast::<c_void>();
        // SAFETY: replaces part of our own fresh reservation (MAP_FIXED), nothing else.
        let m = unsafe { libc::mmap(at, len, prot, flags | libc::MAP_FIXED, fd, 0) };
        if m == libc::MAP_FAILED {
            let e = os_error("mmap");
            // SAFETY: the reservation is ours and nothing else uses it.
            unsafe { libc::munmap(p, guard + len + guard) };
            return Err(e);
        }
        Memory::wrap(p, len, guard, Backing::Mapping)
    }

    /// Sets the protection of both guards of heap memory and of placed mappings (other
    /// mappings have theirs from `reserve`).
    fn protect_guards(&self, prot: c_int) -> std::io::Result<()> {
        for guard in [
            self.base.as_ptr().wrapping_sub(self.guard),
            self.base.as_ptr().wrapping_add(self.len),
        ] {
            // SAFETY: each guard is whole pages of this allocation's own block, which nothing
            // else uses; the allocation's pages are not touched.
            if unsafe { libc::mprotect(guard.cast(), self.guard, prot) } != 0 {
                return Err(os_error("mprotect (guard page)"));
            }
        }
        Ok(())
    }

    /// `p` is where the block starts: a guard of `guard` bytes, then `len` bytes, then a guard.
    fn wrap(p: *mut c_void, len: usize, guard: usize, backing: Backing) -> std::io::Result<Memory> {
        if p.is_null() {
            return Err(std::io::Error::other(
                "the allocator returned a null pointer",
            ));
        }
        Ok(Memory {
            base: NonNull::new(p.cast::<u8>().wrapping_add(guard))
                .expect("a non-null allocation plus its guard is not null"),
            len,
            guard,
            backing,
            holes: Vec::new(),
            read_only: false,
        })
    }

    /// The address the device is given.
    pub fn addr(&self) -> u64 {
        self.base.as_ptr() as u64
    }

    /// Pages unmapped with `unmap_pages` that meet pages `[first, end)`: the first such page.
    pub fn hole_in(&self, first: u64, end: u64) -> Option<u64> {
        self.holes
            .iter()
            .find(|(a, b)| *a < end && first < *b)
            .map(|(a, _)| (*a).max(first))
    }

    /// Checks that the CPU may access `[offset, offset + bytes)`: host memory, inside, starting
    /// at a word-aligned address, mapped, and for a write writable.
    fn accessible(&self, offset: u64, bytes: u64, write: bool) -> Result<(), Refused> {
        if let Backing::Foreign { host: false, .. } = self.backing {
            return Err(Refused::NotHost);
        }
        if offset
            .checked_add(bytes)
            .map_or(true, |end| end > self.len as u64)
        {
            return Err(Refused::Outside);
        }
        if (self.addr() + offset) % WORD != 0 {
            return Err(Refused::Misaligned(offset));
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

    /// The word at `offset`, as a pointer (dereferenced only after `accessible`).
    fn word(&self, offset: u64) -> *mut u32 {
        self.base.as_ptr().wrapping_add(offset as usize).cast()
    }

    /// Reads words at `offset` into `out`: plain CPU loads (on dmirror they fault device-private
    /// pages back to system memory). `racing`: a kernel may be writing the same memory now, so
    /// every word is a volatile read; otherwise one plain copy.
    pub fn read(&mut self, offset: u64, out: &mut [u32], racing: bool) -> Result<(), Refused> {
        self.accessible(offset, out.len() as u64 * WORD, false)?;
        let src = self.word(offset);
        if racing {
            for (i, w) in out.iter_mut().enumerate() {
                // SAFETY: word i of a range checked above (inside, word-aligned, mapped,
                // readable); volatile because the GPU may write it meanwhile.
                *w = unsafe { src.add(i).read_volatile() };
            }
        } else {
            // SAFETY: the range checked above (inside, word-aligned, mapped, readable);
            // `&mut self` excludes every other CPU access and no GPU work is in flight.
            unsafe { std::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), out.len()) };
        }
        Ok(())
    }

    /// Writes `words` at `offset`: plain CPU stores; `racing` as for [`Memory::read`].
    pub fn write(&mut self, offset: u64, words: &[u32], racing: bool) -> Result<(), Refused> {
        self.accessible(offset, words.len() as u64 * WORD, true)?;
        let dst = self.word(offset);
        if racing {
            for (i, w) in words.iter().enumerate() {
                // SAFETY: word i of a range checked above (inside, word-aligned, mapped,
                // writable); volatile because the GPU may access it meanwhile.
                unsafe { dst.add(i).write_volatile(*w) };
            }
        } else {
            // SAFETY: the range checked above (inside, word-aligned, mapped, writable);
            // `&mut self` excludes every other CPU access and no GPU work is in flight.
            unsafe { std::ptr::copy_nonoverlapping(words.as_ptr(), dst, words.len()) };
        }
        Ok(())
    }

    /// Reads the word at `offset` with a relaxed atomic load: other threads and the GPU may
    /// write it meanwhile.
    pub fn read_word(&self, offset: u64) -> Result<u32, Refused> {
        self.accessible(offset, WORD, false)?;
        // SAFETY: inside, word-aligned, mapped and readable (checked), and stays so while
        // `&self` lives; every CPU access through `&self` is atomic; a relaxed 4-byte load is
        // sound on read-only memory too (std::sync::atomic, "read-only memory").
        let a = unsafe { AtomicU32::from_ptr(self.word(offset)) };
        Ok(a.load(Ordering::Relaxed))
    }

    /// Adds one to the word at `offset` with a sequentially consistent atomic.
    pub fn atomic_inc(&self, offset: u64) -> Result<(), Refused> {
        self.accessible(offset, WORD, true)?;
        // SAFETY: inside, word-aligned, mapped and writable (checked), and stays so while
        // `&self` lives; every CPU access through `&self` is atomic, the GPU's are system-scope
        // atomics.
        let a = unsafe { AtomicU32::from_ptr(self.word(offset)) };
        a.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// munmap of whole pages `[first, first + count)`; later accesses there are refused. Only
    /// for mappings: a heap block belongs to malloc, and VRAM has no CPU mapping.
    pub fn unmap_pages(&mut self, first: u64, count: u64) -> std::io::Result<()> {
        let end = first.saturating_add(count);
        let mapped = matches!(
            self.backing,
            Backing::Mapping | Backing::Foreign { host: true, .. }
        );
        if end.saturating_mul(PAGE as u64) > self.len as u64 || !mapped {
            return Err(std::io::Error::other(format!(
                "pages [{first}, {end}) are not all part of this mapping of {} pages",
                self.len / PAGE
            )));
        }
        let at = self.base.as_ptr().wrapping_add(first as usize * PAGE);
        // SAFETY: whole pages of this allocation's own mapping (checked), which only this value
        // accesses; accesses to them are refused from now on (a hole), and drop releases the
        // whole range again, harmlessly.
        let rc = unsafe { libc::munmap(at.cast(), count as usize * PAGE) };
        if rc != 0 {
            return Err(os_error("munmap"));
        }
        self.holes.push((first, end));
        Ok(())
    }

    /// Moves the mapping to a new address (mremap with MREMAP_FIXED onto a fresh reservation,
    /// so it really moves), with guards there if it had them; contents follow. Only for memory
    /// made with mmap.
    pub fn remap(&mut self) -> std::io::Result<()> {
        if !matches!(self.backing, Backing::Mapping) {
            return Err(std::io::Error::other(
                "only memory made with mmap can be moved",
            ));
        }
        // The new place has its own guards: the reservation's first and last page, left as
        // they are.
        let guard = self.guard;
        let reserved = reserve(guard + self.len + guard, "mmap (reservation for mremap)")?;
        let target = reserved.cast::<u8>().wrapping_add(guard).cast::<c_void>();
        // SAFETY: moves our whole mapping onto our own reservation, between its guards; the
        // old range is unmapped by the kernel and `base` is updated before any further access.
        let moved = unsafe {
            libc::mremap(
                self.base.as_ptr().cast(),
                self.len,
                self.len,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                target,
            )
        };
        if moved == libc::MAP_FAILED {
            let e = os_error("mremap");
            // SAFETY: the reservation is ours and unused.
            unsafe { libc::munmap(reserved, guard + self.len + guard) };
            return Err(e);
        }
        if guard > 0 {
            for old in [
                self.base.as_ptr().wrapping_sub(guard),
                self.base.as_ptr().wrapping_add(self.len),
            ] {
                // SAFETY: an old guard, ours, which nothing uses; the mapping beside it is gone.
                unsafe { libc::munmap(old.cast(), guard) };
            }
        }
        self.base = NonNull::new(moved.cast()).ok_or_else(|| os_error("mremap"))?;
        Ok(())
    }

    /// mprotect of the whole allocation (not its guards): read-only, or read-write again. Only
    /// for mappings, as [`Memory::unmap_pages`].
    pub fn protect(&mut self, read_only: bool) -> std::io::Result<()> {
        if matches!(
            self.backing,
            Backing::Heap | Backing::PlacedHeap | Backing::Foreign { host: false, .. }
        ) {
            return Err(std::io::Error::other(
                "only memory mapped for the CPU by itself can be protected",
            ));
        }
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

/// Where a device puts its host allocations: where the kernel chooses (the default), or from a
/// recorded address on (`--place-at`), so that a failure that depends on where an allocation
/// lands (its virtual page numbers, its 2 MiB alignment) repeats.
///
/// Placed, the first allocation starts at the address given, and each later one after the
/// previous one's last page, its guards and a gap of one page: [`PLACEMENT_GAP`]. A range that
/// is already taken is an error naming it, never a mapping moved elsewhere or one replaced.
#[derive(Clone, Debug, Default)]
pub struct Placer {
    /// Where the next allocation's first page goes; `None`: where the kernel chooses.
    next: Option<u64>,
}

/// Bytes left unmapped between two placed allocations (past their guards): the kernel never
/// merges their mappings, as it does not merge two of its own choosing.
pub const PLACEMENT_GAP: u64 = PAGE as u64;

/// The lowest and highest address a placement may ask for: above the kernel's default
/// `mmap_min_addr` (64 KiB) and below the top of a 47-bit user address space (x86-64 with
/// 4-level page tables; the lowest of the architectures the lab runs).
pub const PLACEABLE: std::ops::Range<u64> = 0x1_0000..0x7fff_ffff_f000;

impl Placer {
    /// Allocations from `first` on; `None`: where the kernel chooses.
    pub fn new(first: Option<u64>) -> Placer {
        Placer { next: first }
    }

    /// Whether allocations are placed.
    pub fn placing(&self) -> bool {
        self.next.is_some()
    }

    /// Anonymous memory as [`Memory::anonymous`], at the next address when placing.
    pub fn anonymous(&mut self, len: u64, shared: bool, guards: Guards) -> std::io::Result<Memory> {
        let Some(at) = self.next else {
            return Memory::anonymous(len, shared, guards);
        };
        let flags = libc::MAP_ANONYMOUS
            | if shared {
                libc::MAP_SHARED
            } else {
                libc::MAP_PRIVATE
            };
        let m = Memory::map(
            page_round(len),
            flags,
            -1,
            guards,
            Some(at - guards.bytes() as u64),
        )?;
        self.after(&m);
        Ok(m)
    }

    /// Heap memory as [`Memory::heap`]; when placing, an anonymous private mapping at the next
    /// address that refuses what a heap block refuses (malloc takes no address).
    pub fn heap(&mut self, len: u64, guards: Guards) -> std::io::Result<Memory> {
        if !self.placing() {
            return Memory::heap(len, guards);
        }
        let mut m = self.anonymous(len, false, guards)?;
        m.backing = Backing::PlacedHeap;
        Ok(m)
    }

    /// A shared mapping of `file` as [`Memory::file`], at the next address when placing.
    pub fn file(&mut self, file: &File, len: u64, guards: Guards) -> std::io::Result<Memory> {
        let Some(at) = self.next else {
            return Memory::file(file, len, guards);
        };
        let at = Some(at - guards.bytes() as u64);
        let m = Memory::map(
            page_round(len),
            libc::MAP_SHARED,
            file.as_raw_fd(),
            guards,
            at,
        )?;
        self.after(&m);
        Ok(m)
    }

    /// The next allocation goes after `m`, its guard, the gap and a guard of its own as large
    /// as `m`'s (a device gives all its allocations the same guards).
    fn after(&mut self, m: &Memory) {
        self.next = Some(m.addr() + (m.len + m.guard) as u64 + PLACEMENT_GAP + m.guard as u64);
    }
}

/// mmap of `len` bytes exactly at `at` with MAP_FIXED_NOREPLACE: an error that names the range
/// when any of it is mapped already (EEXIST), or when the kernel put it elsewhere (kernels
/// before 4.17 take the flag for a plain hint).
fn map_at(
    at: u64,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
) -> std::io::Result<*mut c_void> {
    let end = at + len as u64;
    // SAFETY: a new mapping at `at` that replaces nothing (MAP_FIXED_NOREPLACE fails instead).
    let p = unsafe {
        libc::mmap(
            at as *mut c_void,
            len,
            prot,
            flags | libc::MAP_FIXED_NOREPLACE,
            fd,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        let e = std::io::Error::last_os_error();
        let why = if e.raw_os_error() == Some(libc::EEXIST) {
            "something of this process is mapped there already".to_string()
        } else {
            e.to_string()
        };
        return Err(std::io::Error::new(
            e.kind(),
            format!("cannot place {len} bytes at {at:#x}..{end:#x} (--place-at): {why}"),
        ));
    }
    if p as u64 != at {
        // SAFETY: the mapping just made, elsewhere, which nothing uses.
        unsafe { libc::munmap(p, len) };
        return Err(std::io::Error::other(format!(
            "cannot place {len} bytes at {at:#x}..{end:#x} (--place-at): the kernel mapped them \
             at {:#x} instead (MAP_FIXED_NOREPLACE needs Linux 4.17)",
            p as u64
        )));
    }
    Ok(p)
}

impl Drop for Memory {
    /// Each backing is released by its own allocator, exactly once. Errors cannot be reported
    /// from drop; a leak is the worst outcome.
    fn drop(&mut self) {
        // The block starts at its first guard.
        let start = self.base.as_ptr().wrapping_sub(self.guard).cast::<c_void>();
        match self.backing {
            Backing::Heap => {
                // The pages go back to the kernel before the block goes back to malloc, which
                // keeps a freed block mapped for its next allocation (below its mmap threshold,
                // which glibc raises as large blocks are freed): pages a device migrated would
                // stay in its memory after the free, and a leak check could not tell a
                // driver's leak from malloc's cache. Advice only: a failure leaves the pages
                // where they are, as malloc would.
                // SAFETY: the block's own pages, which nothing reads after the free (drop);
                // MADV_DONTNEED on private anonymous memory only drops their contents.
                unsafe {
                    libc::madvise(
                        self.base.as_ptr().cast::<c_void>(),
                        self.len,
                        libc::MADV_DONTNEED,
                    )
                };
                if self.guard == 0
                    || self
                        .protect_guards(libc::PROT_READ | libc::PROT_WRITE)
                        .is_ok()
                {
                    // SAFETY: the block posix_memalign gave, accessible again as it gave it,
                    // freed once; no access follows (drop).
                    unsafe { libc::free(start) };
                }
            }
            Backing::Mapping | Backing::PlacedHeap => {
                // SAFETY: our own mapping and guards, unmapped once; no access follows (drop).
                unsafe { libc::munmap(start, self.guard + self.len + self.guard) };
            }
            Backing::Foreign { release, .. } => {
                // SAFETY: `release` gives back this memory (`Memory::foreign`'s contract) and
                // is called once, here; no access follows (drop).
                unsafe { release(self.base) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    const P: u64 = PAGE as u64;

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
        (perms_at(addr - P), perms_at(addr + len))
    }

    fn none() -> (Option<String>, Option<String>) {
        (Some("---p".to_string()), Some("---p".to_string()))
    }

    /// Reads the byte at `addr` in a forked child; the signal that ended it, if one did.
    fn signal_reading(addr: u64) -> Option<c_int> {
        // SAFETY: the child only makes system calls (prctl, setrlimit, _exit) and one load
        // before it ends, as fork in a threaded process requires.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: prctl and setrlimit (no core dump of the expected fault) only read their
            // arguments; the volatile load of a byte outside any Rust allocation reads it or ends
            // the child with SIGSEGV (what is tested) before a value exists; _exit ends the child
            // without running anything of the parent's.
            unsafe {
                libc::prctl(libc::PR_SET_DUMPABLE, 0);
                libc::setrlimit(libc::RLIMIT_CORE, &no_core);
                std::ptr::read_volatile(addr as *const u8);
                libc::_exit(0);
            }
        }
        let mut status = 0;
        // SAFETY: waits for our own child; `status` is a valid int.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(rc, pid, "waitpid: {}", std::io::Error::last_os_error());
        if libc::WIFSIGNALED(status) {
            return Some(libc::WTERMSIG(status));
        }
        assert_eq!(libc::WEXITSTATUS(status), 0);
        None
    }

    #[test]
    fn words_written_read_back_plain_and_racing() {
        for mut m in [
            Memory::anonymous(2 * P, false, Guards::None).unwrap(),
            Memory::anonymous(2 * P, true, Guards::Pages).unwrap(),
            Memory::heap(2 * P, Guards::None).unwrap(),
            Memory::heap(2 * P, Guards::Pages).unwrap(),
        ] {
            let words: Vec<u32> = (0..2048).map(|i| i * 3 + 1).collect();
            m.write(0, &words, false).unwrap();
            let mut out = vec![0u32; 2048];
            m.read(0, &mut out, true).unwrap();
            assert_eq!(out, words);
            m.write(P - 8, &[7, 8, 9, 10], true).unwrap();
            let mut out = [0u32; 4];
            m.read(P - 8, &mut out, false).unwrap();
            assert_eq!(out, [7, 8, 9, 10], "across the page boundary");
            assert_eq!(m.read_word(P + 4), Ok(10));
            m.atomic_inc(P + 4).unwrap();
            assert_eq!(m.read_word(P + 4), Ok(11));
            assert_eq!(m.read_word(2 * P - 4), Ok(words[2047]), "the last word");
            assert_eq!(m.read_word(2 * P), Err(Refused::Outside));
            assert_eq!(m.write(2 * P - 4, &[1, 2], false), Err(Refused::Outside));
        }
    }

    #[test]
    fn an_access_off_a_word_boundary_is_refused_and_touches_nothing() {
        let mut m = Memory::anonymous(P, false, Guards::None).unwrap();
        m.write(0, &[0x1111_1111, 0x2222_2222], false).unwrap();
        for offset in [1, 2, 3, 6] {
            let refused = Err(Refused::Misaligned(offset));
            assert_eq!(m.write(offset, &[0xffff_ffff], false), refused);
            assert_eq!(m.write(offset, &[0xffff_ffff], true), refused);
            assert_eq!(m.read(offset, &mut [0], false), refused);
            assert_eq!(m.read(offset, &mut [0], true), refused);
            assert_eq!(m.read_word(offset), Err(Refused::Misaligned(offset)));
            assert_eq!(m.atomic_inc(offset), refused);
        }
        let mut out = [0u32; 2];
        m.read(0, &mut out, false).unwrap();
        assert_eq!(
            out,
            [0x1111_1111, 0x2222_2222],
            "no misaligned write landed"
        );
        // An empty access at a misaligned offset is refused too: the address is checked.
        assert_eq!(m.read(1, &mut [], false), Err(Refused::Misaligned(1)));
    }

    #[test]
    fn the_alignment_checked_is_the_address_not_only_the_offsets() {
        let base = Memory::anonymous(P, false, Guards::None).unwrap();
        let at = NonNull::new(base.base.as_ptr().wrapping_add(2)).unwrap();
        // SAFETY: 64 bytes of `base`'s page, readable and writable, which nothing else touches
        // while `m` lives; `forget` leaves them to `base`, dropped after `m`.
        let mut m = unsafe { Memory::foreign(at, 64, true, forget) };
        assert_eq!(m.read_word(0), Err(Refused::Misaligned(0)));
        assert_eq!(m.write(2, &[1], false), Ok(()));
        assert_eq!(m.read_word(2), Ok(1));
        drop(m);
        drop(base);
    }

    /// A foreign release that leaves the memory to its owner (the test's own mapping).
    unsafe fn forget(_: NonNull<u8>) {}

    #[test]
    fn guards_are_inaccessible_and_the_allocation_between_them_is_not() {
        for shared in [false, true] {
            let len = 2 * P;
            let mut m = Memory::anonymous(len, shared, Guards::Pages).unwrap();
            assert_eq!(guards(m.addr(), len), none(), "shared {shared}");
            assert!(perms_at(m.addr()).unwrap().starts_with("rw"));
            m.remap().unwrap();
            assert_eq!(guards(m.addr(), len), none(), "after the move");
        }
        let f = tempfile::tempfile().unwrap();
        f.set_len(P).unwrap();
        let m = Memory::file(&f, P, Guards::Pages).unwrap();
        assert_eq!(guards(m.addr(), P), none());
        assert_eq!(perms_at(m.addr()).as_deref(), Some("rw-s"));
        let mut m = Memory::heap(3 * P, Guards::Pages).unwrap();
        assert_eq!(guards(m.addr(), 3 * P), none(), "heap");
        assert_eq!(m.addr() % P, 0);
        m.write(0, &[5], false).unwrap();
        m.write(3 * P - 4, &[6], false).unwrap();
        assert_eq!((m.read_word(0), m.read_word(3 * P - 4)), (Ok(5), Ok(6)));
        drop(m);
        // malloc has its block back whole: a new allocation of it can be written everywhere.
        let mut again = Memory::heap(3 * P, Guards::None).unwrap();
        again.write(0, &[6], false).unwrap();
        again.write(3 * P - 4, &[6], false).unwrap();
    }

    /// The guards as a process sees them: the first and last byte of the allocation read fine,
    /// the bytes just outside end the reader with SIGSEGV.
    #[test]
    fn a_read_of_a_guard_faults_and_a_read_inside_does_not() {
        for m in [
            Memory::anonymous(2 * P, false, Guards::Pages).unwrap(),
            Memory::heap(2 * P, Guards::Pages).unwrap(),
        ] {
            assert_eq!(signal_reading(m.addr()), None);
            assert_eq!(signal_reading(m.addr() + 2 * P - 1), None);
            assert_eq!(signal_reading(m.addr() - 1), Some(libc::SIGSEGV));
            assert_eq!(signal_reading(m.addr() + 2 * P), Some(libc::SIGSEGV));
        }
    }

    #[test]
    fn a_move_changes_the_address_and_keeps_the_contents() {
        for guards in [Guards::None, Guards::Pages] {
            let mut m = Memory::anonymous(2 * P, false, guards).unwrap();
            m.write(P, &[7, 8], false).unwrap();
            let before = m.addr();
            m.remap().unwrap();
            assert_ne!(m.addr(), before, "{guards:?}");
            assert!(perms_at(m.addr() + P).unwrap().starts_with("rw"));
            let mut out = [0u32; 2];
            m.read(P, &mut out, false).unwrap();
            assert_eq!(out, [7, 8], "contents follow the move ({guards:?})");
        }
        let mut heap = Memory::heap(P, Guards::None).unwrap();
        let before = heap.addr();
        assert!(heap.remap().is_err(), "a heap block cannot move");
        assert_eq!(heap.addr(), before);
    }

    #[test]
    fn protection_refuses_writes_until_lifted() {
        let mut m = Memory::anonymous(2 * P, false, Guards::Pages).unwrap();
        m.write(0, &[3], false).unwrap();
        m.protect(true).unwrap();
        assert_eq!(perms_at(m.addr()).as_deref(), Some("r--p"));
        assert_eq!(guards(m.addr(), 2 * P), none(), "the guards keep theirs");
        assert_eq!(m.write(0, &[1], false), Err(Refused::ReadOnly));
        assert_eq!(m.atomic_inc(0), Err(Refused::ReadOnly));
        assert_eq!(m.read_word(0), Ok(3), "reads go on");
        m.protect(false).unwrap();
        assert_eq!(perms_at(m.addr()).as_deref(), Some("rw-p"));
        m.write(0, &[4], false).unwrap();
        assert_eq!(m.read_word(0), Ok(4));
        let mut heap = Memory::heap(P, Guards::None).unwrap();
        assert!(
            heap.protect(true).is_err(),
            "malloc's memory is not ours to protect"
        );
        heap.write(0, &[1], false).unwrap();
    }

    #[test]
    fn unmapped_pages_are_refused_and_heap_blocks_cannot_be_unmapped() {
        let mut m = Memory::anonymous(4 * P, false, Guards::None).unwrap();
        m.unmap_pages(2, 1).unwrap();
        assert_eq!(m.hole_in(0, 2), None);
        assert_eq!(m.hole_in(1, 4), Some(2));
        assert_eq!(m.read_word(2 * P + 8), Err(Refused::Unmapped(2 * P)));
        assert_eq!(m.write(P, &[0; 2048], false), Err(Refused::Unmapped(2 * P)));
        assert_eq!(m.read_word(3 * P), Ok(0), "the page after the hole");
        assert!(m.unmap_pages(3, 2).is_err(), "past the end");
        let mut heap = Memory::heap(2 * P, Guards::None).unwrap();
        assert!(heap.unmap_pages(0, 1).is_err());
        heap.write(0, &[1], false).unwrap();
    }

    /// A free stretch of address space to place into: reserved, then given back.
    fn free_range(len: u64) -> u64 {
        let p = reserve(len as usize, "mmap (test range)").unwrap();
        // SAFETY: the reservation just made, which nothing uses.
        unsafe { libc::munmap(p, len as usize) };
        p as u64
    }

    #[test]
    fn placed_allocations_start_at_the_address_and_follow_each_other() {
        let at = free_range(64 * P) + 8 * P;
        let mut placer = Placer::new(Some(at));
        let mut a = placer.anonymous(3 * P, false, Guards::Pages).unwrap();
        assert_eq!(a.addr(), at);
        assert_eq!(guards(a.addr(), 3 * P), none());
        let b = placer.heap(P, Guards::Pages).unwrap();
        assert_eq!(
            b.addr(),
            at + 3 * P + P + PLACEMENT_GAP + P,
            "after a's guard and the gap"
        );
        assert_eq!(perms_at(at + 3 * P + P), None, "the gap is left unmapped");
        let f = tempfile::tempfile().unwrap();
        f.set_len(P).unwrap();
        let c = placer.file(&f, P, Guards::Pages).unwrap();
        assert_eq!(c.addr(), b.addr() + P + P + PLACEMENT_GAP + P);
        assert_eq!(perms_at(c.addr()).as_deref(), Some("rw-s"));
        a.write(0, &[1, 2], false).unwrap();
        assert_eq!(a.read_word(4), Ok(2));
        let mut b = b;
        assert!(
            b.unmap_pages(0, 1).is_err(),
            "placed heap memory is refused as malloc's is"
        );
        assert!(b.protect(true).is_err());
        assert!(b.remap().is_err());
        drop((a, b, c));
        assert_eq!(perms_at(at), None, "dropping unmaps them");
        let mut unplaced = Placer::new(None);
        assert!(!unplaced.placing());
        let m = unplaced.heap(P, Guards::None).unwrap();
        assert!(matches!(m.backing, Backing::Heap));
    }

    #[test]
    fn a_placement_over_a_mapping_fails_naming_the_address_and_replaces_nothing() {
        let mut taken = Memory::anonymous(4 * P, false, Guards::None).unwrap();
        taken.write(P, &[42], false).unwrap();
        let at = taken.addr() + P;
        let e = Placer::new(Some(at))
            .anonymous(P, false, Guards::None)
            .err()
            .expect("the range is taken");
        let text = e.to_string();
        assert!(text.contains(&format!("{at:#x}")), "{text}");
        assert!(text.contains("--place-at"), "{text}");
        assert!(text.contains("mapped there already"), "{text}");
        assert_eq!(taken.read_word(P), Ok(42), "the mapping there is untouched");
        // With guards, the lower guard is what meets the mapping: placed just past `taken`'s
        // 4 pages, the guard below the allocation falls on its last page.
        let e = Placer::new(Some(taken.addr() + 4 * P))
            .anonymous(P, false, Guards::Pages)
            .err();
        assert!(e.is_some(), "a guard over the last page of another mapping");
    }

    static RELEASED: AtomicUsize = AtomicUsize::new(0);

    /// Counts its calls and unmaps the test's one-page mapping.
    unsafe fn count_and_unmap(p: NonNull<u8>) {
        RELEASED.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the caller's contract: `p` is the one page `foreign_memory` mapped.
        unsafe { libc::munmap(p.as_ptr().cast(), PAGE) };
    }

    #[test]
    fn foreign_memory_is_released_once_by_its_allocator_and_vram_refused() {
        let map = || {
            // SAFETY: a new mapping at an address the kernel chooses.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    PAGE,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(p, libc::MAP_FAILED);
            NonNull::new(p.cast::<u8>()).unwrap()
        };
        // SAFETY: the page is ours alone and readable and writable; count_and_unmap unmaps it.
        let mut host = unsafe { Memory::foreign(map(), PAGE, true, count_and_unmap) };
        host.write(4, &[9], false).unwrap();
        assert_eq!(host.read_word(4), Ok(9));
        assert!(
            host.remap().is_err(),
            "another allocator's memory stays where it is"
        );
        // SAFETY: as above; with `host` false the CPU never touches it.
        let mut vram = unsafe { Memory::foreign(map(), PAGE, false, count_and_unmap) };
        assert_eq!(vram.read_word(0), Err(Refused::NotHost));
        assert_eq!(vram.write(0, &[1], false), Err(Refused::NotHost));
        assert_eq!(vram.atomic_inc(0), Err(Refused::NotHost));
        assert!(vram.unmap_pages(0, 1).is_err());
        assert!(vram.protect(true).is_err());
        let before = RELEASED.load(Ordering::SeqCst);
        drop(host);
        drop(vram);
        assert_eq!(RELEASED.load(Ordering::SeqCst) - before, 2);
    }

    /// `&Memory` from many threads: atomic increments of one word add up, and loads of it beside
    /// them see only values it had.
    #[test]
    fn threads_sharing_memory_count_every_increment() {
        let m = Memory::anonymous(P, false, Guards::Pages).unwrap();
        let (threads, each) = (4, 10_000);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    for _ in 0..each {
                        m.atomic_inc(8).unwrap();
                    }
                });
            }
            s.spawn(|| {
                let mut last = 0;
                for _ in 0..each {
                    let now = m.read_word(8).unwrap();
                    assert!(now >= last && now <= threads * each, "{last} then {now}");
                    last = now;
                }
            });
        });
        assert_eq!(m.read_word(8), Ok(threads * each));
    }
}
