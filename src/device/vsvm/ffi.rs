//! The vsvm backend's own `unsafe` code: the render node's ioctls. The mappings an allocation
//! is made of and the CPU's accesses to them are `device::memory`'s. Everything is exposed as
//! safe functions whose invariants make each `unsafe` block sound; each says why.
//!
//! Every pointer the kernel is given to write through is built here from a Rust slice of the
//! right length ([`Transfer`], the residency buffer, the version name), never taken from the
//! caller. The addresses the device accesses (`addr`, `start`) are another matter: they are the
//! process's own memory, which the driver reaches through its GPU mapping as a device would,
//! and the driver itself refuses what is not mapped (ENOENT) or not writable (EPERM). The
//! device backend only ever names the pages of its own allocations there, which Rust reaches
//! only through `device::memory` (atomics, volatile or exclusive copies), and never while an
//! ioctl runs: every call here is synchronous.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;

use super::uapi::{self, Access, Command, Op};

/// Issues `request` with `arg`: the one place the process calls ioctl on the node.
///
/// # Safety
///
/// `request` is `_IOWR` of exactly `T` (so the kernel reads and writes `size_of::<T>()` bytes
/// at `arg` and no more), and every user pointer inside `*arg` points at memory the kernel may
/// read or write for as long as the call runs, as large as the command uses.
unsafe fn raw<T>(dev: &File, request: u32, arg: &mut T) -> std::io::Result<()> {
    // SAFETY: the caller's contract (above): `arg` is a live, exclusive `T` that the request
    // encodes, and the pointers in it are valid for the command.
    let rc = unsafe { libc::ioctl(dev.as_raw_fd(), request as _, arg as *mut T) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The commands whose struct holds no user pointer: the kernel reads and writes the struct and
/// nothing else of this process (what the device does at `start` aside, module doc).
trait Plain: Command {}

impl Plain for uapi::Query {}
impl Plain for uapi::Prefetch {}
impl Plain for uapi::SetPreferred {}
impl Plain for uapi::EvictAll {}
impl Plain for uapi::CreateBo {}
impl Plain for uapi::FreeBo {}
impl Plain for uapi::Reset {}

/// A command of a [`Plain`] struct: `arg` as filled in by the driver.
fn plain<T: Plain>(dev: &File, mut arg: T) -> std::io::Result<T> {
    // SAFETY: T::REQUEST is derived from size_of::<T>() (uapi::Command), and a Plain struct
    // holds no pointer for the kernel to follow: the kernel touches only `arg`.
    unsafe { raw(dev, T::REQUEST, &mut arg) }?;
    Ok(arg)
}

/// Opens `node` read-write (and close-on-exec, as std opens every file).
pub fn open(node: &Path) -> std::io::Result<File> {
    OpenOptions::new().read(true).write(true).open(node)
}

/// The DRM driver's name behind `dev` (DRM_IOCTL_VERSION): what makes a node vsvm's before
/// any vsvm command is sent to it, since another driver's render node would take the same
/// numbers as commands of its own.
pub fn driver_name(dev: &File) -> std::io::Result<String> {
    let mut name = [0u8; 64];
    let mut arg = uapi::DrmVersion {
        name_len: name.len() as u64,
        name: name.as_mut_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: the request is DRM_IOWR(0x00, struct drm_version) of the 64-bit ABI, which
    // DrmVersion is (64 bytes, asserted in uapi); the kernel writes at most `name_len` bytes
    // at `name`, which is `name`, alive for the call; date and desc have length 0 and a null
    // pointer, so nothing is written there.
    unsafe { raw(dev, uapi::DrmVersion::REQUEST, &mut arg) }?;
    let len = (arg.name_len as usize).min(name.len());
    Ok(String::from_utf8_lossy(&name[..len]).into_owned())
}

/// QUERY: the device's VRAM and counters.
pub fn query(dev: &File) -> std::io::Result<uapi::Query> {
    plain(dev, uapi::Query::default())
}

/// The host buffer a device access copies through.
pub enum Transfer<'a> {
    /// READ: the device copies the span into `out` (as many bytes as `out` has).
    Into(&'a mut [u32]),
    /// WRITE: the device copies `words` over the span.
    From(&'a [u32]),
    /// ATOMIC_INC over `bytes` bytes: no buffer.
    Increment { bytes: u64 },
}

impl Transfer<'_> {
    fn op(&self) -> Op {
        match self {
            Transfer::Into(_) => Op::Read,
            Transfer::From(_) => Op::Write,
            Transfer::Increment { .. } => Op::AtomicInc,
        }
    }
}

/// READ, WRITE or ATOMIC_INC (which, `transfer` says) of the span at `addr`, as long as the
/// buffer (or `bytes`); returns the command as the driver filled it in (gpu_faults,
/// migrated_pages). An empty span is not sent (the driver refuses it with EINVAL).
pub fn access(dev: &File, addr: u64, transfer: Transfer<'_>) -> std::io::Result<Access> {
    let op = transfer.op();
    let (ptr, size) = match transfer {
        Transfer::Into(out) => (out.as_mut_ptr() as u64, std::mem::size_of_val(out) as u64),
        Transfer::From(words) => (words.as_ptr() as u64, std::mem::size_of_val(words) as u64),
        Transfer::Increment { bytes } => (0, bytes),
    };
    let mut arg = Access {
        addr,
        size,
        ptr,
        ..Default::default()
    };
    if size == 0 {
        return Ok(arg);
    }
    // SAFETY: the request is DRM_IOWR(0x40 + op, struct drm_vsvm_access), which Access is (40
    // bytes, asserted in uapi). READ writes exactly `size` bytes at `ptr`, the whole of the
    // `out` slice borrowed mutably for the call; WRITE reads `size` bytes at `ptr`, the
    // `words` slice borrowed for the call; ATOMIC_INC has no `ptr`. What the device does at
    // `addr` is the module doc's: the process's own memory, reached as a device reaches it.
    unsafe { raw(dev, op.request(), &mut arg) }?;
    Ok(arg)
}

/// PREFETCH of `[start, start + size)` to `loc`; returns the driver's counts (pages moved,
/// ranges that could not move).
pub fn prefetch(dev: &File, start: u64, size: u64, loc: u32) -> std::io::Result<uapi::Prefetch> {
    plain(
        dev,
        uapi::Prefetch {
            start,
            size,
            loc,
            ..Default::default()
        },
    )
}

/// SET_PREFERRED of `[start, start + size)` (page aligned).
pub fn set_preferred(
    dev: &File,
    start: u64,
    size: u64,
    loc: u32,
    mode: u32,
) -> std::io::Result<()> {
    plain(
        dev,
        uapi::SetPreferred {
            start,
            size,
            loc,
            mode,
        },
    )
    .map(drop)
}

/// RESIDENCY of the pages from `start` (page aligned), one byte per page into `out` (1 to
/// [`uapi::RESIDENCY_MAX_PAGES`] of them); returns how many are in VRAM.
pub fn residency(dev: &File, start: u64, out: &mut [u8]) -> std::io::Result<u64> {
    let mut arg = uapi::Residency {
        start,
        npages: out.len() as u64,
        ptr: out.as_mut_ptr() as u64,
        vram_pages: 0,
    };
    if out.is_empty() {
        return Ok(0);
    }
    // SAFETY: the request is DRM_IOWR(0x46, struct drm_vsvm_residency), which Residency is
    // (32 bytes, asserted in uapi); the kernel writes `npages` bytes at `ptr`, which is the
    // whole `out` slice, borrowed mutably for the call, and faults or migrates nothing.
    unsafe { raw(dev, uapi::Residency::REQUEST, &mut arg) }?;
    Ok(arg.vram_pages)
}

/// EVICT_ALL: every SVM BO and every unpinned device BO out of VRAM, device-wide.
pub fn evict_all(dev: &File) -> std::io::Result<uapi::EvictAll> {
    plain(dev, uapi::EvictAll::default())
}

/// CREATE_BO of `size` bytes with `flags`; returns its handle.
pub fn create_bo(dev: &File, size: u64, flags: u32) -> std::io::Result<u32> {
    plain(
        dev,
        uapi::CreateBo {
            size,
            flags,
            handle: 0,
        },
    )
    .map(|bo| bo.handle)
}

/// FREE_BO of `handle`.
pub fn free_bo(dev: &File, handle: u32) -> std::io::Result<()> {
    plain(dev, uapi::FreeBo { handle, pad: 0 }).map(drop)
}

/// RESET: SVM BOs evicted to RAM, device BOs out, every GPU mapping of every file torn down.
pub fn reset(dev: &File) -> std::io::Result<uapi::Reset> {
    plain(dev, uapi::Reset::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ioctl path up to the kernel, on a file that is not a DRM node: the kernel answers
    /// ENOTTY to every command, and an empty span is answered here without a call.
    #[test]
    fn a_command_on_a_file_that_is_not_the_node_is_refused_by_the_kernel() {
        let f = tempfile::tempfile().unwrap();
        let notty = |r: std::io::Result<()>| {
            let e = r.unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::ENOTTY), "{e}");
        };
        notty(driver_name(&f).map(drop));
        notty(query(&f).map(drop));
        let mut page = vec![0u32; 1024];
        notty(access(&f, 0x1000, Transfer::Into(&mut page)).map(drop));
        notty(access(&f, 0x1000, Transfer::From(&page)).map(drop));
        notty(access(&f, 0x1000, Transfer::Increment { bytes: 4096 }).map(drop));
        notty(prefetch(&f, 0x1000, 4096, uapi::loc::VRAM).map(drop));
        notty(set_preferred(
            &f,
            0x1000,
            4096,
            uapi::loc::SYSTEM,
            uapi::migrate::PREFERRED,
        ));
        let mut bytes = [0u8; 4];
        notty(residency(&f, 0x1000, &mut bytes).map(drop));
        notty(evict_all(&f).map(drop));
        notty(create_bo(&f, 4096, 0).map(drop));
        notty(free_bo(&f, 1));
        notty(reset(&f).map(drop));
        let empty = access(&f, 0x1000, Transfer::Into(&mut [])).unwrap();
        assert_eq!((empty.size, empty.gpu_faults), (0, 0));
        assert_eq!(residency(&f, 0x1000, &mut []).unwrap(), 0);
    }
}
