//! [`VsvmDevice`]: one process's view of the vsvm virtual GPU.
//!
//! Allocations are memory of this process, each a VMA of its own whose first byte is aligned
//! to the largest range chunk it can hold ([`placement`]). The GPU reaches them through the
//! driver's GPU fault path: READ, WRITE and ATOMIC_INC fault every range in (migrating it as
//! its attributes say), then access it through the GPU mapping. PREFETCH migrates ranges,
//! SET_PREFERRED sets the attributes, RESIDENCY says per page where the CPU page tables and
//! the GPU mapping put it, QUERY counts VRAM, EVICT_ALL empties it, and CREATE_BO puts it
//! under pressure. A CPU access is a plain load or store: on a VRAM page the kernel faults and
//! drm_pagemap's migrate_to_ram brings the page's whole device allocation back.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use super::ffi::{self, Transfer};
use super::kernels::{self, GpuIo};
use super::uapi::{self, Command as _, Op};
use crate::device::host::{self, Allocation, CPU_ACCESS};
use crate::device::kernels::words::Finished;
use crate::device::kernels::Launch;
use crate::device::memory::{Guards, Memory, Placer};
use crate::device::{
    Advice, AllocKind, Buf, Capabilities, CpuThreads, Destructive, Device, DeviceError, DeviceInfo,
    EvictionTransient, KernelRun, Location, MigrationEvent, Need, Pending, ProcessExit, Protection,
    Result, Span, PAGE_SIZE,
};
use crate::observe::pagemap::Pagemap;

/// The range chunk sizes of the driver (`vsvm_chunk_sizes` in vsvm_svm.c), largest first: a
/// GPU fault forms the largest aligned one that fits the VMA and the attribute interval.
pub const CHUNK_SIZES: [u64; 3] = [2 << 20, 64 << 10, 4 << 10];

/// What the backend says the device can do: every capability is one the driver answers.
///
/// - `xnack`: every GPU fault is resolved (vsvm_svm_fault retries and migrates);
/// - `residency`: RESIDENCY, page by page, from the CPU page tables;
/// - `vram_usage`: QUERY's `vram_used`;
/// - `device_buffers`: CREATE_BO and FREE_BO, which TTM makes room for by evicting SVM BOs;
/// - `eviction_transient`: QUERY's `evict_tt_*`, what TTM allocated for the system destination
///   of each evicted SVM BO (vsvm_ttm_tt_create), which bo_move never uses;
/// - `reset`: RESET, the driver's reset hook: SVM BOs evicted to RAM first, device buffers'
///   contents dropped, every GPU mapping torn down, no process ended (the profile's
///   `reset_loses_vram: false`, `reset_ends_processes: false`, which `gpu_reset::data_kept`
///   checks; `holder_ends` needs a second process, which the driver refuses).
///
/// Not claimed, each for what the driver cannot give:
/// - `events`: QUERY counts migrated pages device-wide by trigger, but a migration event is
///   pages of one allocation at an address (`MigrationEvent`), and no ioctl says which pages
///   moved; inventing an address, or reporting every count against no allocation, would make
///   the cases that read events judge evidence that is not there;
/// - `fork`, `processes`: the driver mirrors the mm of the process that opened the node (its
///   SVM ioctls answer EACCES in another), as the HMM test driver does;
/// - `concurrency`: kernels run to completion inside `launch_async`.
pub const CAPS: [Need; 6] = [
    Need::Xnack,
    Need::Residency,
    Need::VramUsage,
    Need::EvictionTransient,
    Need::Reset,
    Need::DeviceBuffers,
];

/// Every allocation lies between guard pages of its own, a VMA no other mapping is merged
/// into, so that every range the driver forms lies inside one allocation, as a GPU runtime's
/// allocations are separate (see [`placement`] for its alignment).
const GUARDS: Guards = Guards::Pages;

/// What the runner knows of the device at `node` before any case, with the VRAM QUERY said.
pub fn info(node: &Path, vram_bytes: u64) -> DeviceInfo {
    DeviceInfo {
        backend: "vsvm".into(),
        name: format!("vsvm virtual SVM GPU ({})", node.display()),
        arch: "vsvm".into(),
        vram_bytes,
        gpus: 1,
        caps: Capabilities::of(&CAPS),
    }
}

/// Where an allocation of `len` bytes goes in its mapping: the alignment of its first byte
/// and how many bytes to map so that an address with that alignment is inside with the whole
/// allocation after it. The alignment is the largest driver chunk the allocation holds whole,
/// so that ranges start where the allocation's own offsets say a chunk starts (as on a GPU,
/// whose allocator aligns large allocations): the cases compute chunks from allocation
/// offsets. The mapping is one VMA, between guards, so the slack before and after the
/// allocation is part of it; a range at the allocation's end may reach into the slack after it
/// (pages nothing touches, which migrate as zeroes), never into another allocation.
pub fn placement(len: u64) -> (u64, u64) {
    let bytes = len.max(1).next_multiple_of(PAGE_SIZE);
    let align = CHUNK_SIZES
        .into_iter()
        .find(|c| *c <= bytes)
        .unwrap_or(PAGE_SIZE);
    (align, bytes + align - PAGE_SIZE)
}

/// How far past `addr` the next address aligned to `align` is.
fn skew_to(addr: u64, align: u64) -> u64 {
    (align - addr % align) % align
}

/// What an allocation is made of.
enum Backing {
    /// Memory of this process: the allocation starts `skew` bytes into `mem`.
    Host {
        mem: Memory,
        skew: u64,
        /// The file behind a `file` allocation (already unlinked).
        _file: Option<File>,
    },
    /// A device buffer (CREATE_BO), by its handle.
    Bo(u32),
}

/// One allocation and what keeps it alive.
struct Alloc {
    buf: Buf,
    backing: Backing,
}

impl Allocation for Alloc {
    fn buf(&self) -> Buf {
        self.buf
    }
}

impl Alloc {
    /// The host memory and the allocation's byte offset in it; a device buffer has none, so
    /// `op` is refused on it.
    fn host(&self, op: &'static str) -> Result<(&Memory, u64)> {
        match &self.backing {
            Backing::Host { mem, skew, .. } => Ok((mem, *skew)),
            Backing::Bo(_) => Err(DeviceError::Unsupported {
                op,
                kind: self.buf.kind,
            }),
        }
    }

    fn host_mut(&mut self, op: &'static str) -> Result<(&mut Memory, u64)> {
        match &mut self.backing {
            Backing::Host { mem, skew, .. } => Ok((mem, *skew)),
            Backing::Bo(_) => Err(DeviceError::Unsupported {
                op,
                kind: self.buf.kind,
            }),
        }
    }

    /// The address of the allocation's byte `offset`, for the driver.
    fn addr(&self, op: &'static str, offset: u64) -> Result<u64> {
        let (mem, skew) = self.host(op)?;
        Ok(mem.addr() + skew + offset)
    }

    /// The first page of `[first, end)` (allocation pages) unmapped from the process.
    fn hole_in(&self, first: u64, end: u64) -> Option<u64> {
        let (mem, skew) = self.host("").ok()?;
        let s = skew / PAGE_SIZE;
        mem.hole_in(first + s, end + s).map(|p| p - s)
    }
}

/// One process's view of the vsvm device.
pub struct VsvmDevice {
    info: DeviceInfo,
    dev: File,
    allocs: HashMap<u32, Alloc>,
    next_id: u32,
    /// Launches already run (synchronously), waiting to be collected.
    finished: Finished,
    /// Where host allocations go (`--place-at`).
    placer: Placer,
    /// The CPU's page tables, against which every RESIDENCY is cross-checked.
    pagemap: Pagemap,
}

/// The name of the virtual SVM GPU's device-private memory in `/proc/iomem`: its device's,
/// as `devm_request_free_mem_region()` gives it (lab/vm/vsvm/vsvm_vram.c).
pub const IOMEM_REGION: &str = "vsvm";

impl VsvmDevice {
    /// Opens the render node for this process (the driver mirrors the opener's mm) after
    /// making sure it is vsvm's, and asks it its VRAM.
    pub fn open(node: &Path) -> Result<VsvmDevice> {
        let dev = open_node(node).map_err(|e| DeviceError::Backend(e.to_string()))?;
        let q = ffi::query(&dev).map_err(|e| {
            DeviceError::Backend(format!("{}: {}: {e}", node.display(), uapi::Query::NAME))
        })?;
        Ok(VsvmDevice::over(dev, info(node, q.vram_total)))
    }

    /// A device on an open node, whatever it is (the tests give it a plain file).
    pub(super) fn over(dev: File, info: DeviceInfo) -> VsvmDevice {
        VsvmDevice {
            info,
            dev,
            allocs: HashMap::new(),
            next_id: 1,
            finished: Finished::default(),
            placer: Placer::default(),
            pagemap: Pagemap::open(IOMEM_REGION),
        }
    }

    /// RESIDENCY of the pages of `span`, cross-checked with the page tables.
    fn residency_checked(&mut self, buf: Buf, span: Span) -> Result<Vec<Location>> {
        let bytes = self.residency_bytes(buf, span)?;
        self.cross_check(buf, span, &bytes)
    }

    /// RESIDENCY `bytes` of `span` as locations, compared with the page tables.
    fn cross_check(&mut self, buf: Buf, span: Span, bytes: &[u8]) -> Result<Vec<Location>> {
        let own = locations(buf, span.page_range().start, bytes)?;
        let pages = span.page_range();
        let addr = host::alloc_of(&self.allocs, buf)?.addr("residency", pages.start * PAGE_SIZE)?;
        host::cross_check(
            &mut self.pagemap,
            buf,
            span,
            addr,
            &own,
            uapi::Residency::NAME,
        )?;
        Ok(own)
    }

    /// FREE_BO of a device buffer; a host allocation is unmapped by its drop.
    fn free_now(&mut self, buf: Buf) -> Result<()> {
        let a = self
            .allocs
            .remove(&buf.id)
            .ok_or(DeviceError::NoSuchBuffer(buf.id))?;
        match a.backing {
            Backing::Bo(handle) => ffi::free_bo(&self.dev, handle).map_err(|e| {
                DeviceError::Backend(format!(
                    "{} of allocation {} (handle {handle}): {e}",
                    uapi::FreeBo::NAME,
                    buf.id
                ))
            }),
            Backing::Host { .. } => Ok(()),
        }
    }

    /// QUERY: VRAM and the device-wide migration counters now.
    pub fn query(&self) -> Result<uapi::Query> {
        ffi::query(&self.dev)
            .map_err(|e| DeviceError::Backend(format!("{}: {e}", uapi::Query::NAME)))
    }

    /// EVICT_ALL: every SVM BO of every process evicted to RAM through TTM, and every unpinned
    /// device buffer out of VRAM; returns how long it took.
    pub fn evict_everything(&mut self) -> Result<Duration> {
        let clock = Instant::now();
        ffi::evict_all(&self.dev)
            .map_err(|e| DeviceError::Backend(format!("{}: {e}", uapi::EvictAll::NAME)))?;
        Ok(clock.elapsed())
    }

    /// RESET, the driver's model of the series' reset hook: SVM data evicted to RAM (kept),
    /// device buffers out of VRAM (contents lost), every GPU mapping of every open file torn
    /// down. Not [`Device::gpu_reset`], which is a GPU's reset (VRAM lost, processes ended).
    pub fn reset(&mut self) -> Result<uapi::Reset> {
        ffi::reset(&self.dev)
            .map_err(|e| DeviceError::Backend(format!("{}: {e}", uapi::Reset::NAME)))
    }

    fn alloc_mut(&mut self, buf: Buf) -> Result<&mut Alloc> {
        host::alloc_mut(&mut self.allocs, buf)
    }

    /// The allocation, with `span` checked to lie inside it.
    fn checked(&self, buf: Buf, span: Span) -> Result<&Alloc> {
        host::checked(&self.allocs, buf, span)
    }

    /// The allocation's mapping, for `op` to change it: not the C heap's (munmap or mprotect
    /// inside a heap block would corrupt it), not a device buffer's.
    fn mapping_mut(&mut self, buf: Buf, op: &'static str) -> Result<(&mut Memory, u64)> {
        if buf.kind == AllocKind::Malloc {
            return Err(DeviceError::Unsupported { op, kind: buf.kind });
        }
        self.alloc_mut(buf)?.host_mut(op)
    }

    /// The address of `bytes` bytes at `offset` of `buf` for a GPU access, refused before the
    /// driver sees it where they leave the allocation or meet a page unmapped from the process
    /// (whose address space may hold another mapping by now).
    fn gpu_target(&self, buf: Buf, offset: u64, bytes: u64) -> Result<u64> {
        let span = Span::new(offset, bytes);
        let a = self.checked(buf, span)?;
        let addr = a.addr("a GPU access", offset)?;
        let pages = span.page_range();
        if let Some(hole) = a.hole_in(pages.start, pages.end) {
            return Err(DeviceError::GpuMemoryFault {
                buf: buf.id,
                offset: hole * PAGE_SIZE,
                reason: "the device accessed a page unmapped from the process".into(),
            });
        }
        Ok(addr)
    }

    /// RESIDENCY of the pages of `span`: one byte per page (uapi::res).
    fn residency_bytes(&self, buf: Buf, span: Span) -> Result<Vec<u8>> {
        let a = self.checked(buf, span)?;
        let pages = span.page_range();
        let start = a.addr("residency", pages.start * PAGE_SIZE)?;
        let mut bytes = vec![0u8; (pages.end - pages.start) as usize];
        for (i, chunk) in bytes
            .chunks_mut(uapi::RESIDENCY_MAX_PAGES as usize)
            .enumerate()
        {
            let at = start + i as u64 * uapi::RESIDENCY_MAX_PAGES * PAGE_SIZE;
            ffi::residency(&self.dev, at, chunk).map_err(|e| {
                let first = pages.start + i as u64 * uapi::RESIDENCY_MAX_PAGES;
                DeviceError::Backend(format!(
                    "{} of pages [{first}, {}) of allocation {}: {e}",
                    uapi::Residency::NAME,
                    first + chunk.len() as u64,
                    buf.id
                ))
            })?;
        }
        Ok(bytes)
    }

    /// A device access `op` of `bytes` bytes at `offset` of `buf`, through `transfer`.
    fn access(&self, buf: Buf, offset: u64, transfer: Transfer<'_>, op: Op) -> Result<u64> {
        let bytes = match &transfer {
            Transfer::Into(out) => out.len() as u64 * 4,
            Transfer::From(words) => words.len() as u64 * 4,
            Transfer::Increment { bytes } => *bytes,
        };
        let addr = self.gpu_target(buf, offset, bytes)?;
        ffi::access(&self.dev, addr, transfer)
            .map(|a| a.gpu_faults)
            .map_err(|e| failed(op, buf, Span::new(offset, bytes), e))
    }
}

/// A failed access: one the process's mapping refused (no VMA, a write to a read-only one,
/// pages that cannot be faulted in) is the GPU's memory fault, at the start of the command
/// (the driver does not say where in it); anything else is the driver's error.
fn failed(op: Op, buf: Buf, span: Span, e: std::io::Error) -> DeviceError {
    let what = format!("{} of {span} of allocation {}: {e}", op.name(), buf.id);
    match e.raw_os_error() {
        Some(libc::EFAULT | libc::EPERM | libc::ENOENT) => DeviceError::GpuMemoryFault {
            buf: buf.id,
            offset: span.offset,
            reason: what,
        },
        Some(libc::EACCES) => DeviceError::Backend(format!(
            "{what} (the node answers only the process that opened it)"
        )),
        _ => DeviceError::Backend(what),
    }
}

/// Opens `node` read-write and makes sure the driver behind it is vsvm, saying what to do when
/// either fails: another driver's node would take vsvm's command numbers as its own commands.
pub fn open_node(node: &Path) -> std::io::Result<File> {
    let shown = node.display();
    let dev = ffi::open(node).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
            " (render nodes are the render group's: run as root or in that group)"
        } else {
            ""
        };
        std::io::Error::new(e.kind(), format!("{shown}: {e}{hint}"))
    })?;
    let name = ffi::driver_name(&dev).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("{shown} is not a DRM node (DRM_IOCTL_VERSION: {e})"),
        )
    })?;
    if name != uapi::DRIVER_NAME {
        return Err(std::io::Error::other(format!(
            "{shown} is a render node of driver `{name}`, not {}",
            uapi::DRIVER_NAME
        )));
    }
    Ok(dev)
}

/// The Device's GPU work goes through the driver's access commands, byte-exact.
impl GpuIo for VsvmDevice {
    fn read(&mut self, buf: Buf, offset: u64, out: &mut [u32]) -> Result<u64> {
        self.access(buf, offset, Transfer::Into(out), Op::Read)
    }

    fn write(&mut self, buf: Buf, offset: u64, words: &[u32]) -> Result<u64> {
        self.access(buf, offset, Transfer::From(words), Op::Write)
    }

    fn atomic_inc(&mut self, buf: Buf, span: Span) -> Result<u64> {
        let bytes = span.len;
        self.access(
            buf,
            span.offset,
            Transfer::Increment { bytes },
            Op::AtomicInc,
        )
    }
}

impl Drop for VsvmDevice {
    fn drop(&mut self) {
        // Unmapping an allocation frees its VRAM pages and freeing a device buffer its VRAM; a
        // heap block goes back to malloc with its pages mapped, so EVICT_ALL then brings
        // whatever is left to RAM: the next case starts from empty VRAM. Nothing to report an
        // error to here.
        for (_, a) in self.allocs.drain() {
            if let Backing::Bo(handle) = a.backing {
                let _ = ffi::free_bo(&self.dev, handle);
            }
        }
        let _ = self.evict_everything();
    }
}

impl Device for VsvmDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn alloc(&mut self, kind: AllocKind, len: u64) -> Result<Buf> {
        host::refuse_empty(kind, len)?;
        let id = self.next_id;
        let oom = |e: std::io::Error| DeviceError::Backend(format!("{kind} of {len} bytes: {e}"));
        let (align, mapped) = placement(len);
        let (mem, file) = match kind {
            // No runtime allocator: managed memory is what the process maps itself.
            AllocKind::Managed | AllocKind::Mmap => (
                self.placer.anonymous(mapped, false, GUARDS).map_err(oom)?,
                None,
            ),
            AllocKind::Malloc => (self.placer.heap(mapped, GUARDS).map_err(oom)?, None),
            AllocKind::Shared => (
                self.placer.anonymous(mapped, true, GUARDS).map_err(oom)?,
                None,
            ),
            AllocKind::File => {
                let (f, mem) =
                    host::file_mapping("svmconf-vsvm", id, mapped, GUARDS, &mut self.placer)?;
                (mem, Some(f))
            }
            AllocKind::DeviceBuffer => {
                let handle =
                    ffi::create_bo(&self.dev, len, 0).map_err(|e| match e.raw_os_error() {
                        Some(libc::ENOSPC) => DeviceError::OutOfMemory {
                            what: "VRAM",
                            bytes: len,
                        },
                        Some(libc::EINVAL) if len > self.info.vram_bytes => {
                            DeviceError::OutOfMemory {
                                what: "VRAM",
                                bytes: len,
                            }
                        }
                        _ => DeviceError::Backend(format!(
                            "{} of {len} bytes: {e}",
                            uapi::CreateBo::NAME
                        )),
                    })?;
                let buf = Buf { id, kind, len };
                self.allocs.insert(
                    id,
                    Alloc {
                        buf,
                        backing: Backing::Bo(handle),
                    },
                );
                self.next_id += 1;
                return Ok(buf);
            }
        };
        let skew = skew_to(mem.addr(), align);
        let buf = Buf { id, kind, len };
        self.allocs.insert(
            id,
            Alloc {
                buf,
                backing: Backing::Host {
                    mem,
                    skew,
                    _file: file,
                },
            },
        );
        self.next_id += 1;
        Ok(buf)
    }

    fn address(&self, buf: Buf) -> Option<u64> {
        self.allocs.get(&buf.id)?.addr("address", 0).ok()
    }

    fn place_at(&mut self, first: u64) -> Result<()> {
        self.placer = Placer::new(Some(first));
        Ok(())
    }

    /// Cross-checks a host allocation mapped whole with the page tables first: every case
    /// frees what it made, so every case's last word on where its pages are is checked twice.
    fn free(&mut self, buf: Buf) -> Result<()> {
        let whole = {
            let a = host::alloc_of(&self.allocs, buf)?;
            matches!(a.backing, Backing::Host { .. }) && a.hole_in(0, buf.pages()).is_none()
        };
        // A RESIDENCY the driver refuses here (a PROT_NONE mapping) is no cross-check to make.
        let checked = match whole.then(|| self.residency_bytes(buf, buf.all())) {
            Some(Ok(bytes)) => self.cross_check(buf, buf.all(), &bytes).map(drop),
            _ => Ok(()),
        };
        self.free_now(buf)?;
        checked
    }

    fn take_notes(&mut self) -> Vec<String> {
        self.pagemap.take_notes(uapi::Residency::NAME)
    }

    fn unmap(&mut self, buf: Buf, span: Span) -> Result<()> {
        self.checked(buf, span)?;
        let pages = span.page_range();
        let (mem, skew) = self.mapping_mut(buf, "unmap")?;
        mem.unmap_pages(pages.start + skew / PAGE_SIZE, pages.end - pages.start)
            .map_err(|e| {
                DeviceError::Backend(format!("unmap of {span} in allocation {}: {e}", buf.id))
            })
    }

    fn remap(&mut self, buf: Buf) -> Result<()> {
        // The slack moves with the allocation; the new address keeps its contents, not
        // necessarily its alignment.
        let (mem, _) = self.mapping_mut(buf, "remap")?;
        mem.remap()
            .map_err(|e| DeviceError::Backend(format!("remap of allocation {}: {e}", buf.id)))
    }

    fn protect(&mut self, buf: Buf, prot: Protection) -> Result<()> {
        let (mem, _) = self.mapping_mut(buf, "protect")?;
        mem.protect(prot == Protection::ReadOnly)
            .map_err(|e| DeviceError::Backend(format!("mprotect of allocation {}: {e}", buf.id)))
    }

    fn fork(&mut self) -> Result<Box<dyn Device>> {
        Err(DeviceError::NotSupported(
            "fork on the vsvm backend (the driver mirrors the mm of the process that opened \
             the node; its SVM ioctls answer EACCES in a child)",
        ))
    }

    /// SET_PREFERRED of the pages of `span`, mode PREFERRED: a GPU fault follows the preferred
    /// location (none or VRAM: migrate to VRAM; system: migrate to system memory). The driver
    /// keeps no accessed-by or read-mostly attribute, so those are refused rather than
    /// silently ignored.
    fn advise(&mut self, buf: Buf, span: Span, advice: Advice) -> Result<()> {
        let loc = match advice {
            Advice::PreferredLocation(Location::Vram) => uapi::loc::VRAM,
            Advice::PreferredLocation(Location::System) => uapi::loc::SYSTEM,
            Advice::UnsetPreferredLocation => uapi::loc::NONE,
            Advice::AccessedBy => {
                return Err(DeviceError::NotSupported(
                    "accessed-by advice on vsvm (the driver keeps no such attribute)",
                ))
            }
            Advice::ReadMostly => {
                return Err(DeviceError::NotSupported(
                    "read-mostly advice on vsvm (the driver keeps no such attribute)",
                ))
            }
        };
        let a = self.checked(buf, span)?;
        let pages = span.page_range();
        if pages.is_empty() {
            return Ok(());
        }
        let start = a.addr("advise", pages.start * PAGE_SIZE)?;
        let size = (pages.end - pages.start) * PAGE_SIZE;
        ffi::set_preferred(&self.dev, start, size, loc, uapi::migrate::PREFERRED).map_err(|e| {
            DeviceError::Backend(format!(
                "{} of pages [{}, {}) of allocation {}: {e}",
                uapi::SetPreferred::NAME,
                pages.start,
                pages.end,
                buf.id
            ))
        })
    }

    /// PREFETCH of the pages of `span`. The driver moves whole ranges (up to a chunk either
    /// side of the span) and counts what could not move rather than failing; residency says
    /// where every page ended.
    fn prefetch(&mut self, buf: Buf, span: Span, to: Location) -> Result<Duration> {
        let a = self.checked(buf, span)?;
        let pages = span.page_range();
        if pages.is_empty() {
            return Ok(Duration::ZERO);
        }
        let start = a.addr("prefetch", pages.start * PAGE_SIZE)?;
        if let Some(hole) = a.hole_in(pages.start, pages.end) {
            return Err(DeviceError::Segfault {
                buf: buf.id,
                offset: hole * PAGE_SIZE,
            });
        }
        let loc = match to {
            Location::Vram => uapi::loc::VRAM,
            Location::System => uapi::loc::SYSTEM,
        };
        let size = (pages.end - pages.start) * PAGE_SIZE;
        let clock = Instant::now();
        ffi::prefetch(&self.dev, start, size, loc).map_err(|e| {
            DeviceError::Backend(format!(
                "{} of pages [{}, {}) of allocation {} to {to}: {e}",
                uapi::Prefetch::NAME,
                pages.start,
                pages.end,
                buf.id
            ))
        })?;
        Ok(clock.elapsed())
    }

    fn launch_async(&mut self, launch: &Launch) -> Result<Pending> {
        let clock = Instant::now();
        let faults = kernels::run(self, launch);
        Ok(self.finished.keep(clock, faults))
    }

    fn wait(&mut self, pending: Pending) -> Result<KernelRun> {
        self.finished.take(pending)
    }

    fn cpu_read(&mut self, buf: Buf, span: Span, out: &mut [u32]) -> Result<Duration> {
        self.checked(buf, span)?;
        host::cpu_words(span, out.len())?;
        let (mem, skew) = self.alloc_mut(buf)?.host_mut(CPU_ACCESS)?;
        let clock = Instant::now();
        // Nothing runs beside the CPU: kernels run to completion in launch_async.
        mem.read(skew + span.offset, out, false)
            .map_err(|r| host::refused(buf, span, CPU_ACCESS, skew, r))?;
        Ok(clock.elapsed())
    }

    fn cpu_write(&mut self, buf: Buf, span: Span, words: &[u32]) -> Result<Duration> {
        self.checked(buf, span)?;
        host::cpu_words(span, words.len())?;
        let (mem, skew) = self.alloc_mut(buf)?.host_mut(CPU_ACCESS)?;
        let clock = Instant::now();
        mem.write(skew + span.offset, words, false)
            .map_err(|r| host::refused(buf, span, CPU_ACCESS, skew, r))?;
        Ok(clock.elapsed())
    }

    fn cpu_threads(&mut self, work: &CpuThreads) -> Result<Duration> {
        let buf = work.buf;
        let (mem, skew) = self.checked(buf, buf.all())?.host(CPU_ACCESS)?;
        host::cpu_threads(work, mem, skew, CPU_ACCESS)
    }

    /// RESIDENCY, cross-checked page by page with the page tables.
    fn residency(&mut self, buf: Buf, span: Span) -> Option<Result<Vec<Location>>> {
        Some(self.residency_checked(buf, span))
    }

    /// None: see [`CAPS`] (`events`). QUERY's counters are device-wide counts by trigger; no
    /// ioctl says which pages of which allocation a migration moved.
    fn take_events(&mut self) -> Option<Vec<MigrationEvent>> {
        None
    }

    /// drm_gpusvm's garbage collector and the deferred put of an SVM BO run after munmap
    /// returns, and TTM deletes the BO later still: VRAM in use falls a moment after a free.
    fn release_settles_within(&self) -> std::time::Duration {
        crate::device::LEAK_SETTLE
    }

    fn vram_used(&mut self) -> Option<u64> {
        self.query().ok().map(|q| q.vram_used)
    }

    /// What QUERY says is not allocated. The driver hands out 2 MiB of an SVM BO only as one
    /// aligned 2 MiB chunk, so fragmented VRAM may take less than this in large ranges.
    fn vram_free(&mut self) -> Option<u64> {
        self.query()
            .ok()
            .map(|q| q.vram_total.saturating_sub(q.vram_used))
    }

    /// QUERY's SVM evictions and the `evict_tt_*` counters: TTM's system destination of each
    /// evicted SVM BO, the series' open issue. TTM's page pool is not the driver's to report.
    fn eviction_transient(&mut self) -> Option<EvictionTransient> {
        self.query().ok().map(|q| EvictionTransient {
            evictions: q.svm_evictions,
            bytes_evicted: q.svm_evicted_bytes,
            transient_bytes_total: q.evict_tt_bytes,
            transient_bytes_peak: q.evict_tt_peak_bytes,
            pool_pages: None,
            transient_pages: Some(q.evict_tt_pages),
        })
    }

    /// EVICT_ALL, device-wide, as TTM empties VRAM before a reset.
    fn evict_all(&mut self) -> Option<Result<Duration>> {
        Some(self.evict_everything())
    }

    fn spawn_process(&mut self) -> Result<Box<dyn Device>> {
        Err(DeviceError::NotSupported(
            "a second process on the vsvm backend",
        ))
    }

    fn wait_exit(&mut self, _limit: Duration) -> Result<ProcessExit> {
        Err(DeviceError::NotSupported(
            "waiting for the end of the runner's own process (only a spawned one ends)",
        ))
    }

    /// RESET, checked to have happened: QUERY's count of resets grows by exactly one.
    fn gpu_reset(&mut self, _permit: &Destructive) -> Result<()> {
        let before = self.query()?.resets;
        let done = self.reset()?;
        if done.resets != before + 1 {
            return Err(DeviceError::Backend(format!(
                "{}: the driver counts {} resets after one more from {before}",
                uapi::Reset::NAME,
                done.resets
            )));
        }
        Ok(())
    }
}

/// RESIDENCY bytes of pages from `first_page` as locations; a byte the driver's own rule says
/// it never reports is an error that names the page and the byte.
pub fn locations(buf: Buf, first_page: u64, bytes: &[u8]) -> Result<Vec<Location>> {
    bytes
        .iter()
        .enumerate()
        .map(|(i, b)| {
            uapi::decode(*b).map_err(|why| {
                DeviceError::Backend(format!(
                    "{}: page {} of allocation {} reads {b:#04x}: {why}",
                    uapi::Residency::NAME,
                    first_page + i as u64,
                    buf.id
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::host::checks::BUF;
    use crate::device::vsvm::uapi::res;

    /// A device on a plain file: every driver command fails (ENOTTY), everything the CPU does
    /// to the process's own memory works.
    fn fake() -> VsvmDevice {
        let f = tempfile::tempfile().unwrap();
        VsvmDevice::over(f, info(Path::new("/nonexistent/renderD128"), 64 << 20))
    }

    #[test]
    fn the_capabilities_are_what_the_driver_answers() {
        let i = info(Path::new("/dev/dri/renderD128"), 64 << 20);
        let has: Vec<Need> = Need::DEVICE
            .into_iter()
            .filter(|&n| i.caps.has(n))
            .collect();
        assert_eq!(
            has,
            [
                Need::Xnack,
                Need::Residency,
                Need::VramUsage,
                Need::EvictionTransient,
                Need::Reset,
                Need::DeviceBuffers
            ]
        );
        assert_eq!((i.backend.as_str(), i.arch.as_str()), ("vsvm", "vsvm"));
        assert_eq!((i.vram_bytes, i.gpus), (64 << 20, 1));
    }

    #[test]
    fn events_are_not_answered_and_the_rest_is_asked_of_the_driver() {
        let mut dev = fake();
        assert_eq!(dev.take_events(), None);
        assert_eq!(dev.eviction_transient(), None);
        assert_eq!(dev.huge_mapped(BUF, BUF.all()).map(drop), None);
        // Asked of the driver, which a plain file is not: no answer now, but an answer there.
        assert_eq!(dev.vram_used(), None);
        assert!(matches!(dev.evict_all(), Some(Err(_))));
    }

    /// Each allocation starts at an address aligned to the largest chunk it holds, with room
    /// for all of it after that address.
    #[rstest::rstest]
    #[case(16, 4 << 10, 4 << 10)]
    #[case(4 << 10, 4 << 10, 4 << 10)]
    #[case(64 << 10, 64 << 10, (128 << 10) - (4 << 10))]
    #[case((2 << 20) - 1, 2 << 20, (4 << 20) - (4 << 10))]
    #[case((2 << 20) - (4 << 10), 64 << 10, (2 << 20) + (56 << 10))]
    #[case(2 << 20, 2 << 20, (4 << 20) - (4 << 10))]
    #[case((2 << 20) + (4 << 10), 2 << 20, 4 << 20)]
    fn placement_aligns_to_the_largest_chunk_the_allocation_holds(
        #[case] len: u64,
        #[case] align: u64,
        #[case] mapped: u64,
    ) {
        assert_eq!(placement(len), (align, mapped));
        for addr in [0x7f00_0000_1000u64, 0x7f00_0020_0000, 0x7f00_001f_f000] {
            let s = skew_to(addr, align);
            assert_eq!((addr + s) % align, 0);
            assert!(s + len.next_multiple_of(PAGE_SIZE) <= mapped);
        }
    }

    #[rstest::rstest]
    #[case(AllocKind::Managed, 2 << 20)]
    #[case(AllocKind::Mmap, (2 << 20) + 4096)]
    #[case(AllocKind::Malloc, 8 << 20)]
    #[case(AllocKind::Shared, 64 << 10)]
    #[case(AllocKind::File, 64 << 10)]
    #[case(AllocKind::Malloc, 16)]
    fn every_host_kind_is_aligned_and_the_cpu_reads_back_what_it_wrote(
        #[case] kind: AllocKind,
        #[case] len: u64,
    ) {
        let mut dev = fake();
        let buf = dev.alloc(kind, len).unwrap();
        let addr = host::alloc_of(&dev.allocs, buf)
            .unwrap()
            .addr("", 0)
            .unwrap();
        assert_eq!(addr % placement(len).0, 0, "{kind} of {len} at {addr:#x}");
        let span = Span::new(len / 8 * 4, 8);
        dev.cpu_write(buf, span, &[7, 9]).unwrap();
        let mut out = [0u32; 2];
        dev.cpu_read(buf, span, &mut out).unwrap();
        assert_eq!(out, [7, 9]);
        dev.free(buf).unwrap();
        assert!(matches!(dev.free(buf), Err(DeviceError::NoSuchBuffer(_))));
    }

    /// CPU threads touch the process's own memory and need no driver.
    #[test]
    fn cpu_threads_increment_every_page_and_a_hole_is_a_segfault_at_its_offset() {
        let mut dev = fake();
        let buf = host::checks::cpu_threads_count_every_touch_and_fault_on_a_hole(&mut dev);
        let mut one = [0u32];
        let e = dev
            .cpu_read(buf, Span::new(2 * PAGE_SIZE + 4, 4), &mut one)
            .unwrap_err();
        assert!(
            matches!(e, DeviceError::Segfault { offset: 8192, .. }),
            "{e:?}"
        );
    }

    #[test]
    fn a_gpu_access_to_a_hole_is_a_memory_fault_before_the_driver_is_asked() {
        let mut dev = fake();
        let buf = dev.alloc(AllocKind::Managed, 4 * PAGE_SIZE).unwrap();
        dev.unmap(buf, Span::pages(1, 1)).unwrap();
        let e = dev
            .launch(&Launch::Fill {
                buf,
                span: buf.all(),
                seed: 1,
                generation: 1,
            })
            .unwrap_err();
        assert!(
            matches!(&e, DeviceError::GpuMemoryFault { offset: 4096, reason, .. }
                if reason.contains("unmapped")),
            "{e:?}"
        );
        let e = dev.prefetch(buf, buf.all(), Location::Vram).unwrap_err();
        assert!(
            matches!(e, DeviceError::Segfault { offset: 4096, .. }),
            "{e:?}"
        );
    }

    #[test]
    fn commands_on_a_node_that_is_not_the_driver_name_the_ioctl_and_the_pages() {
        let mut dev = fake();
        let buf = dev.alloc(AllocKind::Managed, 4 * PAGE_SIZE).unwrap();
        let e = dev
            .residency(buf, buf.all())
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("DRM_IOCTL_VSVM_RESIDENCY of pages [0, 4) of allocation 1"),
            "{e}"
        );
        let e = dev
            .launch(&Launch::Fill {
                buf,
                span: Span::new(8, 16),
                seed: 1,
                generation: 1,
            })
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("DRM_IOCTL_VSVM_WRITE of [0x8, 0x18) of allocation 1"),
            "{e}"
        );
        let e = dev.prefetch(buf, buf.all(), Location::Vram).unwrap_err();
        assert!(
            e.to_string()
                .contains("DRM_IOCTL_VSVM_PREFETCH of pages [0, 4)"),
            "{e}"
        );
        let e = dev
            .advise(buf, buf.all(), Advice::PreferredLocation(Location::System))
            .unwrap_err();
        assert!(
            e.to_string().contains("DRM_IOCTL_VSVM_SET_PREFERRED"),
            "{e}"
        );
        let e = dev.alloc(AllocKind::DeviceBuffer, 4096).unwrap_err();
        assert!(
            e.to_string()
                .contains("DRM_IOCTL_VSVM_CREATE_BO of 4096 bytes"),
            "{e}"
        );
    }

    #[test]
    fn advice_the_driver_has_no_attribute_for_is_refused() {
        let mut dev = fake();
        let buf = dev.alloc(AllocKind::Managed, PAGE_SIZE).unwrap();
        for advice in [Advice::AccessedBy, Advice::ReadMostly] {
            let e = dev.advise(buf, buf.all(), advice).unwrap_err();
            assert!(matches!(e, DeviceError::NotSupported(_)), "{e}");
        }
    }

    #[test]
    fn a_refused_access_is_a_memory_fault_and_other_errors_are_the_drivers() {
        let span = Span::pages(2, 1);
        for errno in [libc::EPERM, libc::EFAULT, libc::ENOENT] {
            let e = failed(
                Op::Write,
                BUF,
                span,
                std::io::Error::from_raw_os_error(errno),
            );
            assert!(
                matches!(&e, DeviceError::GpuMemoryFault { buf: 3, offset, reason }
                    if *offset == 2 * PAGE_SIZE
                        && reason.contains("DRM_IOCTL_VSVM_WRITE of [0x2000, 0x3000)")),
                "{e}"
            );
        }
        let e = failed(
            Op::Read,
            BUF,
            span,
            std::io::Error::from_raw_os_error(libc::EACCES),
        );
        assert!(
            e.to_string().contains("only the process that opened it"),
            "{e}"
        );
        let e = failed(
            Op::Read,
            BUF,
            span,
            std::io::Error::from_raw_os_error(libc::EBUSY),
        );
        assert!(matches!(e, DeviceError::Backend(_)), "{e}");
    }

    #[test]
    fn residency_bytes_become_locations_and_a_stale_gpu_mapping_is_named() {
        let bytes = [
            res::NONE,
            res::VRAM | res::GPU_MAPPED | res::GPU_VRAM,
            res::SYSTEM | res::GPU_MAPPED,
            res::VRAM,
        ];
        use Location::*;
        assert_eq!(
            locations(BUF, 0, &bytes).unwrap(),
            [System, Vram, System, Vram]
        );
        let e = locations(
            BUF,
            10,
            &[res::SYSTEM, res::SYSTEM | res::GPU_MAPPED | res::GPU_VRAM],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("page 11 of allocation 3 reads 0x31"), "{e}");
        assert!(e.contains("stale GPU mapping"), "{e}");
    }

    #[test]
    fn mapping_changes_are_refused_on_the_c_heap_and_everything_host_on_a_device_buffer() {
        let mut dev = fake();
        let heap = dev.alloc(AllocKind::Malloc, PAGE_SIZE).unwrap();
        for e in [
            dev.unmap(heap, heap.all()).unwrap_err(),
            dev.remap(heap).unwrap_err(),
            dev.protect(heap, Protection::ReadOnly).unwrap_err(),
        ] {
            assert!(matches!(e, DeviceError::Unsupported { .. }), "{e}");
        }
        // A device buffer's handle, as CREATE_BO would give it.
        let bo = Buf {
            id: 77,
            kind: AllocKind::DeviceBuffer,
            len: PAGE_SIZE,
        };
        dev.allocs.insert(
            77,
            Alloc {
                buf: bo,
                backing: Backing::Bo(1),
            },
        );
        let mut w = [0u32];
        for e in [
            dev.cpu_read(bo, Span::new(0, 4), &mut w).unwrap_err(),
            dev.launch(&Launch::Fill {
                buf: bo,
                span: bo.all(),
                seed: 1,
                generation: 1,
            })
            .unwrap_err(),
            dev.prefetch(bo, bo.all(), Location::Vram).unwrap_err(),
            dev.residency(bo, bo.all()).unwrap().unwrap_err(),
            dev.protect(bo, Protection::ReadOnly).unwrap_err(),
        ] {
            assert!(matches!(e, DeviceError::Unsupported { .. }), "{e}");
        }
        let e = dev.free(bo).unwrap_err().to_string();
        assert!(
            e.contains("DRM_IOCTL_VSVM_FREE_BO of allocation 77 (handle 1)"),
            "{e}"
        );
    }

    #[test]
    fn a_plain_file_is_refused_as_a_node_before_any_vsvm_command() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("renderD128");
        std::fs::write(&fake, b"").unwrap();
        let e = open_node(&fake).unwrap_err().to_string();
        assert!(e.contains("is not a DRM node (DRM_IOCTL_VERSION"), "{e}");
        let e = VsvmDevice::open(&dir.path().join("renderD129"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("renderD129"), "{e}");
    }

    #[test]
    fn fork_and_processes_are_refused_with_why_and_a_reset_is_asked_of_the_driver() {
        let mut dev = fake();
        for e in [
            dev.fork().err().unwrap(),
            dev.spawn_process().err().unwrap(),
        ] {
            assert!(matches!(e, DeviceError::NotSupported(_)), "{e}");
        }
        // A plain file is no driver: the reset is asked of it (QUERY first) and fails so.
        let e = dev.gpu_reset(&Destructive(())).unwrap_err().to_string();
        assert!(e.contains("DRM_IOCTL_VSVM_QUERY"), "{e}");
        assert!(dev.reset().is_err(), "RESET is asked of the driver");
    }
}
