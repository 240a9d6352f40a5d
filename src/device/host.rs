//! What the backends whose allocations are memory of this process (hip, dmirror, vsvm) do
//! alike around [`Memory`]: making an allocation (none of no bytes, file allocations), finding
//! one and checking a span against it, the CPU's accesses and their refusals in the trait's
//! terms; and the kernel the kernel-driver backends (dmirror, vsvm) run on, for their
//! description of themselves.
//!
//! Safe code over `device::memory`, kept out of that FFI module so that it stays the memory
//! and its `unsafe` alone.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::time::Duration;

use crate::device::memory::{Guards, Memory, Placer, Refused};
use crate::device::{AllocKind, Buf, CpuOp, CpuThreads, DeviceError, Location, Result, Span};
use crate::observe::pagemap::{Pagemap, Residence};

/// An allocation as a backend keeps it, by id: [`checked`] measures spans against it.
pub trait Allocation {
    /// The handle the allocation was made as: its id, kind and length.
    fn buf(&self) -> Buf;
}

/// An allocation that is one [`Memory`] of this process and nothing else (hip, dmirror), and
/// what keeps it alive.
pub struct Alloc {
    pub buf: Buf,
    pub mem: Memory,
    /// The file behind a `file` allocation (already unlinked).
    pub file: Option<File>,
}

impl Allocation for Alloc {
    fn buf(&self) -> Buf {
        self.buf
    }
}

/// A backend's own residency of the pages of `span` of `buf`, mapped at `addr` in this
/// process, compared page by page with the CPU's page tables (`pagemap`); `by` names the
/// backend's source (`HMM_DMIRROR_SNAPSHOT`). A page they disagree on is the backend's error:
/// one of the two is wrong, and the case fails saying both.
pub fn cross_check(
    pagemap: &mut Pagemap,
    buf: Buf,
    span: Span,
    addr: u64,
    own: &[Location],
    by: &str,
) -> Result<()> {
    let own: Vec<Residence> = own.iter().map(|l| residence(*l)).collect();
    pagemap
        .cross_check(addr, &own, by)
        .map_err(|e| DeviceError::Backend(format!("allocation {}, {span}: {e}", buf.id)))
}

/// The pages of `span` of `buf`, mapped at `addr`, by the page tables alone; `None` where they
/// cannot tell or cannot be read now (said once in the case's evidence), so that the case
/// falls back to the evidence it has.
pub fn pagemap_residency(
    pagemap: &mut Pagemap,
    buf: Buf,
    span: Span,
    addr: u64,
) -> Option<Result<Vec<Location>>> {
    let pages = span.page_range();
    match pagemap.residency(addr, pages.end - pages.start) {
        Ok(Some(r)) => Some(Ok(r.into_iter().map(location).collect())),
        Ok(None) => None,
        Err(e) => Some(Err(DeviceError::Backend(format!(
            "allocation {}, {span}: {e}",
            buf.id
        )))),
    }
}

fn residence(l: Location) -> Residence {
    match l {
        Location::System => Residence::System,
        Location::Vram => Residence::Device,
    }
}

fn location(r: Residence) -> Location {
    match r {
        Residence::System => Location::System,
        Residence::Device => Location::Vram,
    }
}

/// An allocation of no bytes is refused: there is nothing to allocate.
pub fn refuse_empty(kind: AllocKind, len: u64) -> Result<()> {
    if len == 0 {
        return Err(DeviceError::Backend(format!(
            "allocating 0 bytes of {kind} memory: there is nothing to allocate"
        )));
    }
    Ok(())
}

/// The allocation `buf` names; an error when it was freed or never made.
pub fn alloc_of<A>(allocs: &HashMap<u32, A>, buf: Buf) -> Result<&A> {
    allocs.get(&buf.id).ok_or(DeviceError::NoSuchBuffer(buf.id))
}

/// The allocation `buf` names, to change.
pub fn alloc_mut<A>(allocs: &mut HashMap<u32, A>, buf: Buf) -> Result<&mut A> {
    allocs
        .get_mut(&buf.id)
        .ok_or(DeviceError::NoSuchBuffer(buf.id))
}

/// The allocation `buf` names, with `span` checked to lie inside it (its length as it was
/// made, whatever the handle says).
pub fn checked<A: Allocation>(allocs: &HashMap<u32, A>, buf: Buf, span: Span) -> Result<&A> {
    let a = alloc_of(allocs, buf)?;
    inside(a.buf(), span)?;
    Ok(a)
}

/// [`checked`], for a CPU copy (exclusive).
pub fn checked_mut<A: Allocation>(
    allocs: &mut HashMap<u32, A>,
    buf: Buf,
    span: Span,
) -> Result<&mut A> {
    let a = alloc_mut(allocs, buf)?;
    inside(a.buf(), span)?;
    Ok(a)
}

/// `span` must end inside the allocation `made`.
fn inside(made: Buf, span: Span) -> Result<()> {
    if span.end() > made.len {
        return Err(DeviceError::OutOfBounds {
            buf: made.id,
            span,
            len: made.len,
        });
    }
    Ok(())
}

/// The CPU side of `span` must be exactly `n` words, as on the reference device.
pub fn cpu_words(span: Span, n: usize) -> Result<()> {
    if span.words() != n as u64 || span.offset % 4 != 0 {
        return Err(DeviceError::Backend(format!(
            "CPU access of {span} ({} words, word-aligned) with {n} words",
            span.words()
        )));
    }
    Ok(())
}

/// What a CPU access is called where one is refused, by the backends that name no operation.
pub const CPU_ACCESS: &str = "a CPU access";

/// Every allocation kind this process maps itself, managed memory included: what a backend
/// whose device works on host mappings (dmirror, vsvm) places (`--place-at`).
pub const HOST_MAPPED_KINDS: &[AllocKind] = &[
    AllocKind::Managed,
    AllocKind::Mmap,
    AllocKind::Malloc,
    AllocKind::Shared,
    AllocKind::File,
];

/// What a refused CPU access `op` of `span` in `buf` is, in the trait's terms; `skew` is the
/// allocation's offset in its memory, which the memory's offsets include.
pub fn refused(buf: Buf, span: Span, op: &'static str, skew: u64, r: Refused) -> DeviceError {
    match r {
        // Memory the CPU has no mapping of (another allocator's VRAM): said, not assumed away,
        // where no allocation is such memory.
        Refused::NotHost => DeviceError::Unsupported { op, kind: buf.kind },
        Refused::Misaligned(offset) => DeviceError::Backend(format!(
            "{op} at offset {:#x} of allocation {}: not a word-aligned address",
            offset.saturating_sub(skew),
            buf.id
        )),
        Refused::Unmapped(offset) => DeviceError::Segfault {
            buf: buf.id,
            offset: offset.saturating_sub(skew),
        },
        Refused::ReadOnly => DeviceError::Segfault {
            buf: buf.id,
            offset: span.offset,
        },
        Refused::Outside => DeviceError::OutOfBounds {
            buf: buf.id,
            span,
            len: buf.len,
        },
    }
}

/// The CPU threads of `work` over `mem`, in which the allocation starts `skew` bytes in: each
/// touch an atomic of [`Memory`]'s, a refused one reported as [`refused`] says, for `op`.
pub fn cpu_threads(
    work: &CpuThreads,
    mem: &Memory,
    skew: u64,
    op: &'static str,
) -> Result<Duration> {
    let ran = work.run(|offset, touch| match touch {
        CpuOp::Read => mem.read_word(skew + offset).map(drop),
        CpuOp::AtomicInc => mem.atomic_inc(skew + offset),
    })?;
    ran.map_err(|(p, e)| refused(work.buf, Span::pages(p, 1), op, skew, e))
}

/// A shared mapping of `len` bytes of a fresh file in the temporary folder, named `prefix`
/// and then this process and allocation `id`, and unlinked at once so that nothing is left
/// behind whatever happens to the process. Mapped where `placer` puts it.
pub fn file_mapping(
    prefix: &str,
    id: u32,
    len: u64,
    guards: Guards,
    placer: &mut Placer,
) -> Result<(File, Memory)> {
    // Devices of one process number their allocations from 1 each; the counter keeps two of
    // them from picking the same name.
    static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("{prefix}-{}-{id}-{n}", std::process::id()));
    let shown = path.display().to_string();
    let os = |what: String, e: std::io::Error| DeviceError::Backend(format!("{what}: {e}"));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| os(format!("creating {shown} for a file allocation"), e))?;
    let _ = std::fs::remove_file(&path);
    file.set_len(len)
        .map_err(|e| os(format!("growing {shown} to {len} bytes"), e))?;
    let mem = placer
        .file(&file, len, guards)
        .map_err(|e| os(format!("mmap of {shown}"), e))?;
    Ok((file, mem))
}

/// The release of the kernel this process runs on (`Linux 6.12.0`), for a kernel-driver
/// backend's description of itself.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| format!("Linux {}", s.trim()))
        .unwrap_or_else(|_| "an unknown kernel".into())
}

/// What each backend's tests check of a device of it over host memory that needs no driver.
#[cfg(test)]
pub(crate) mod checks {
    use crate::device::{AllocKind, Buf, CpuOp, CpuThreads, Device, DeviceError, Span, PAGE_SIZE};

    /// Allocation 3, four pages, as a handle alone: for the tests of what a backend makes of
    /// one (its errors, its decoding of the driver's answers) with no memory behind it.
    pub(crate) const BUF: Buf = Buf {
        id: 3,
        kind: AllocKind::Mmap,
        len: 4 * PAGE_SIZE,
    };

    /// CPU threads over a four-page allocation of `dev` add one to the first word of every page
    /// each touches, and a thread reading a page unmapped since is refused with a segfault at
    /// its offset. Returns the allocation, page 2 unmapped.
    pub(crate) fn cpu_threads_count_every_touch_and_fault_on_a_hole(dev: &mut dyn Device) -> Buf {
        let buf = dev.alloc(AllocKind::Mmap, 4 * PAGE_SIZE).unwrap();
        dev.cpu_threads(&CpuThreads {
            buf,
            op: CpuOp::AtomicInc,
            pages: vec![vec![0, 1, 2, 3], vec![3, 2, 1, 0], vec![1, 3]],
        })
        .unwrap();
        let mut words = vec![0u32; 4 * 1024];
        dev.cpu_read(buf, buf.all(), &mut words).unwrap();
        let firsts: Vec<u32> = (0..4).map(|p| words[p * 1024]).collect();
        assert_eq!(firsts, [2, 3, 2, 3]);
        dev.unmap(buf, Span::pages(2, 1)).unwrap();
        let e = dev
            .cpu_threads(&CpuThreads {
                buf,
                op: CpuOp::Read,
                pages: vec![vec![0, 1, 2]],
            })
            .unwrap_err();
        assert!(
            matches!(e, DeviceError::Segfault { offset: 8192, .. }),
            "{e:?}"
        );
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::PAGE_SIZE;

    const BUF: Buf = Buf {
        id: 5,
        kind: AllocKind::Mmap,
        len: 2 * PAGE_SIZE,
    };

    impl Allocation for Buf {
        fn buf(&self) -> Buf {
            *self
        }
    }

    #[test]
    fn a_span_is_checked_against_the_allocation_as_it_was_made() {
        let allocs = HashMap::from([(5, BUF)]);
        assert!(checked(&allocs, BUF, Span::pages(1, 1)).is_ok());
        let longer = Buf {
            len: 8 << 20,
            ..BUF
        };
        let e = checked(&allocs, longer, Span::pages(1, 2)).unwrap_err();
        assert_eq!(
            e,
            DeviceError::OutOfBounds {
                buf: 5,
                span: Span::pages(1, 2),
                len: 2 * PAGE_SIZE
            }
        );
        let gone = Buf { id: 6, ..BUF };
        assert_eq!(
            checked(&allocs, gone, Span::new(0, 0)).unwrap_err(),
            DeviceError::NoSuchBuffer(6)
        );
    }

    #[test]
    fn refusals_are_reported_at_allocation_offsets() {
        let span = Span::new(8, 4);
        let e = refused(BUF, span, "a CPU access", 0x3000, Refused::Unmapped(0x4000));
        assert_eq!(
            e,
            DeviceError::Segfault {
                buf: 5,
                offset: 0x1000
            }
        );
        let e = refused(BUF, span, "cpu_read", 0, Refused::Misaligned(6)).to_string();
        assert_eq!(
            e,
            "cpu_read at offset 0x6 of allocation 5: not a word-aligned address"
        );
        assert!(cpu_words(span, 1).is_ok());
        assert!(cpu_words(span, 2).is_err());
        assert!(cpu_words(Span::new(2, 4), 1).is_err(), "not word-aligned");
    }
}
