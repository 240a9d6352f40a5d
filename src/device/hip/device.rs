//! [`HipDevice`]: one process's view of one AMD GPU through the HIP runtime, and the
//! discovery that finds it.
//!
//! What it observes, honestly:
//! - residency: from the CPU's page tables (`observe::pagemap`), where they can tell: a page
//!   in VRAM is a device-private entry in this process's page tables, in the GPU's region of
//!   `/proc/iomem`. That needs CAP_SYS_ADMIN on a kernel whose swap types svmconf knows, or
//!   no swap in use; elsewhere the capability is off and run.json's `pagemap` note says why.
//!   `hipMemRangeGetAttribute` reports only the *last prefetch location* and the *preferred
//!   location* of a range: what the runtime recorded, not where the pages are. svmconf reads
//!   both back after every prefetch and advice, which proves the runtime took them for that
//!   range, and fails when it reports the other location. A page the GPU maps in place
//!   without migrating it is present system memory to the page tables either way.
//! - events, VRAM in use, eviction transients, reset: only through `super::OBSERVERS`.
//! - kernel time: hipEvents around the launch on the device's own stream; CPU time: a
//!   monotonic clock.
//!
//! A second process (`spawn_process`) is a real one: this binary again, in `--device-server`
//! mode on the same GPU (`--device` with its PCI bus id), driven over pipes by a
//! [`RemoteDevice`]. Not fork: the HIP runtime does not survive fork (its threads, the KFD
//! file descriptor and the GPU mappings are not the child's), and a fresh process is what the
//! cases mean anyway: its own runtime, its own KFD process, ended on its own by a GPU reset.
//!
//! What it cannot do: fork; per-page residency where the page tables cannot tell. Those
//! capabilities are off, and the cases that need them skip with that reason.

use std::collections::HashMap;
use std::ffi::CString;
use std::time::{Duration, Instant};

use super::error::{HipError, NoGpu, OUT_OF_MEMORY};
use super::ffi::{self, advice, attribute, range_attribute, Event, Module, Stream};
use super::pci::DeviceSelector;
use super::target::{TargetId, TargetIdError};
use super::xnack::XnackState;
use super::{args, select_code_object, NoCodeObject, CODE_OBJECTS, OBSERVERS};
use crate::device::amd::ObserverOptions;
use crate::device::host::{self, Alloc};
use crate::device::kernels::{Launch, BLOCK_THREADS};
use crate::device::memory::{Guards, Placer};
use crate::device::observer::{self, open_all, GpuIdentity, GpuObserver, Opened, Provides};
use crate::device::remote::RemoteDevice;
use crate::device::{
    Advice, AllocKind, Buf, Capabilities, CpuThreads, Destructive, Device, DeviceError, DeviceInfo,
    EvictionTransient, KernelRun, Location, MigrationEvent, Need, Pending, ProcessExit, Protection,
    Result, Span, PAGE_SIZE,
};
use crate::observe::pagemap::Pagemap;

/// Allocations are the memory alone: the runtime and KFD need no VMA of their own.
const GUARDS: Guards = Guards::None;

/// amdgpu's module parameter that decides whether GPUs retry faults by default.
const NORETRY: &str = "/sys/module/amdgpu/parameters/noretry";

/// The GPU a run uses, as discovery found it.
#[derive(Clone, Debug)]
pub struct Found {
    pub ordinal: i32,
    /// Devices HIP sees in this process.
    pub devices: i32,
    pub pci_bus_id: String,
    pub name: String,
    /// What the runtime reports for this process: `gfx942:sramecc+:xnack+`.
    pub target: TargetId,
    /// The embedded code object it runs (`gfx942:xnack+`).
    pub code_object: &'static str,
    pub vram_total: u64,
    pub vram_free: u64,
    pub xnack: XnackState,
    /// hipRuntimeGetVersion and hipDriverGetVersion.
    pub versions: (i32, i32),
    /// hipDeviceAttributeManagedMemory: hipMallocManaged works on this device.
    pub managed_memory: bool,
    /// hipDeviceAttributePageableMemoryAccess: the GPU reaches malloc and mmap memory (HMM),
    /// which needs XNACK on.
    pub pageable_memory: bool,
    /// What the run asks of the observers (`--amdgpu-trace`).
    pub observer_options: ObserverOptions,
}

/// Why `--backend hip` cannot run on this machine.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DiscoverError {
    /// No GPU at all: every case skips with this reason.
    #[error("{0}")]
    NoGpu(Box<NoGpu>),
    #[error("--device: no {selector} among the {count} AMD GPU(s) HIP sees: {available}")]
    NotFound {
        selector: String,
        count: usize,
        available: String,
    },
    #[error(transparent)]
    Hip(#[from] HipError),
    #[error(
        "HIP device {ordinal}: the runtime has no hipGetDevicePropertiesR0600, so it is older \
         than ROCm 6.0 (hipRuntimeGetVersion {version}); svmconf runs on ROCm 6.0 to 7.x"
    )]
    Rocm5 { ordinal: i32, version: i32 },
    #[error("HIP device {ordinal} reports target id `{reported}`: {source}")]
    TargetId {
        ordinal: i32,
        reported: String,
        source: TargetIdError,
    },
    #[error(transparent)]
    NoCodeObject(#[from] NoCodeObject),
}

impl Found {
    pub fn identity(&self) -> GpuIdentity {
        GpuIdentity {
            index: self.ordinal as u32,
            pci_bus_id: self.pci_bus_id.clone(),
            target_id: self.target.to_string(),
        }
    }

    /// What the runner knows before any case: capabilities from XNACK and the observers.
    pub fn info(&self) -> DeviceInfo {
        info(self, self.observers().provides)
    }

    /// The observers of this GPU opened once, as a case's device opens them: what they
    /// provide and, per observer, whether it opened and why not.
    pub fn observers(&self) -> Opened {
        open_all(OBSERVERS, &self.identity(), &self.observer_options)
    }

    /// This process's page tables, for this GPU's device-private region (its PCI name in
    /// `/proc/iomem`, as `devm_request_free_mem_region()` names it).
    pub fn pagemap(&self) -> Pagemap {
        Pagemap::open(&self.pci_bus_id)
    }

    /// One line for the start of a run.
    pub fn describe(&self) -> String {
        format!(
            "{} ({}, HIP device {} of {}), {}, code object {}, {} MiB VRAM ({} MiB free), HIP \
             runtime {}, managed memory {}, pageable memory access {}, {}",
            self.name,
            self.pci_bus_id,
            self.ordinal,
            self.devices,
            self.target,
            self.code_object,
            self.vram_total >> 20,
            self.vram_free >> 20,
            self.versions.0,
            yes_no(self.managed_memory),
            yes_no(self.pageable_memory),
            self.xnack
        )
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn info(found: &Found, provides: Provides) -> DeviceInfo {
    DeviceInfo {
        backend: "hip".into(),
        name: format!(
            "{} ({}, HIP device {})",
            found.name, found.pci_bus_id, found.ordinal
        ),
        arch: found.target.to_string(),
        vram_bytes: found.vram_total,
        gpus: found.devices.max(0) as u32,
        // Residency comes from the page tables where they can tell, and a forked child of a
        // HIP process cannot use the GPU; the host observers decide the rest.
        caps: Capabilities::of(&[Need::DeviceBuffers, Need::Processes, Need::Concurrency])
            .with(Need::Residency, found.pagemap().can_tell().is_ok())
            .with(Need::Xnack, found.xnack.on())
            .with(Need::Events, provides.events)
            .with(Need::VramUsage, provides.vram_usage)
            .with(Need::EvictionTransient, provides.eviction_transient)
            .with(Need::Reset, provides.reset),
    }
}

/// Finds the GPU `selector` names. `Err(NoGpu)` on a machine without one: the caller skips
/// every case with that reason; any other error stops the run at setup.
pub fn discover(selector: &DeviceSelector) -> Result<Found, DiscoverError> {
    let init = ffi::init().err();
    let (devices, count) = match ffi::device_count() {
        Ok(n) => (n, None),
        Err(e) => (0, Some(e)),
    };
    if devices <= 0 {
        return Err(DiscoverError::NoGpu(Box::new(NoGpu {
            init,
            count,
            devices,
        })));
    }
    let mut listed = Vec::new();
    for i in 0..devices {
        listed.push((i as u32, ffi::pci_bus_id(i)?));
    }
    let ordinal = selector
        .pick(&listed)
        .ok_or_else(|| DiscoverError::NotFound {
            selector: selector.to_string(),
            count: listed.len(),
            available: listed
                .iter()
                .map(|(i, p)| format!("{i}: {p}"))
                .collect::<Vec<_>>()
                .join(", "),
        })? as i32;
    ffi::set_device(ordinal)?;
    let versions = ffi::versions()?;
    let reported = ffi::arch_name(ordinal)?.ok_or(DiscoverError::Rocm5 {
        ordinal,
        version: versions.0,
    })?;
    let target = TargetId::parse(&reported).map_err(|source| DiscoverError::TargetId {
        ordinal,
        reported: reported.clone(),
        source,
    })?;
    let code_object = select_code_object(&target, CODE_OBJECTS)?.target;
    let (vram_free, vram_total) = ffi::mem_info()?;
    let xnack = XnackState {
        processor: target.processor.clone(),
        target: target.xnack(),
        hsa_xnack: std::env::var("HSA_XNACK").ok(),
        noretry: std::fs::read_to_string(NORETRY).ok(),
    };
    let flag = |attr| ffi::device_attribute(attr, ordinal).map(|v| v != 0);
    Ok(Found {
        managed_memory: flag(attribute::MANAGED_MEMORY)?,
        pageable_memory: flag(attribute::PAGEABLE_MEMORY_ACCESS)?,
        ordinal,
        devices,
        pci_bus_id: listed[ordinal as usize].1.clone(),
        name: ffi::device_name(ordinal)?,
        target,
        code_object,
        vram_total,
        vram_free,
        xnack,
        versions,
        observer_options: ObserverOptions::default(),
    })
}

/// One process's view of one AMD GPU.
pub struct HipDevice {
    info: DeviceInfo,
    ordinal: i32,
    /// What a second process is told to open: this GPU, whatever order HIP lists GPUs in there.
    pci_bus_id: String,
    // Declaration order is drop order: after `Drop::drop` synchronized the stream, the
    // pending events, the module and the stream go before the memory they may refer to.
    pending: HashMap<u64, (Event, Event)>,
    next_pending: u64,
    module: Module,
    stream: Stream,
    allocs: HashMap<u32, Alloc>,
    next_id: u32,
    observers: Vec<Box<dyn GpuObserver>>,
    /// Where system allocations go (`--place-at`); managed memory and VRAM are the HIP
    /// runtime's to place.
    placer: Placer,
    /// The CPU's page tables: residency, and which pages huge entries map.
    pagemap: Pagemap,
}

/// A HIP failure as the Device trait reports it; out of memory keeps its own kind.
fn hip(e: HipError, what: &'static str, bytes: u64) -> DeviceError {
    if e.code == OUT_OF_MEMORY {
        DeviceError::OutOfMemory { what, bytes }
    } else {
        DeviceError::Backend(e.to_string())
    }
}

fn backend(e: HipError) -> DeviceError {
    DeviceError::Backend(e.to_string())
}

fn os(what: String, e: std::io::Error) -> DeviceError {
    DeviceError::Backend(format!("{what}: {e}"))
}

impl HipDevice {
    /// Opens the GPU discovery found: its own stream, the kernels, the observers.
    pub fn open(found: &Found) -> Result<HipDevice> {
        ffi::set_device(found.ordinal).map_err(backend)?;
        let object = select_code_object(&found.target, CODE_OBJECTS)
            .map_err(|e| DeviceError::Backend(e.to_string()))?;
        let module = Module::load(object.bytes).map_err(|e| {
            DeviceError::Backend(format!(
                "loading the {} kernels on {}: {e}",
                object.target, found.target
            ))
        })?;
        let stream = Stream::new().map_err(backend)?;
        let Opened {
            observers,
            provides,
            ..
        } = found.observers();
        Ok(HipDevice {
            info: info(found, provides),
            ordinal: found.ordinal,
            pci_bus_id: found.pci_bus_id.clone(),
            pending: HashMap::new(),
            next_pending: 0,
            module,
            stream,
            allocs: HashMap::new(),
            next_id: 1,
            observers,
            placer: Placer::default(),
            pagemap: Pagemap::open(&found.pci_bus_id),
        })
    }

    /// The address of the first page of `span` of `buf` in this process; `None` for VRAM
    /// that HIP allocated, which is no memory of this process.
    fn page_address(&self, buf: Buf, span: Span) -> Option<Result<u64>> {
        match self.checked(buf, span) {
            Ok(a) if host::HOST_MAPPED_KINDS.contains(&buf.kind) => {
                Some(Ok(a.mem.addr() + span.page_range().start * PAGE_SIZE))
            }
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        }
    }

    /// This device is current on the calling thread (HIP's current device is per thread, and
    /// cases may run on any of libtest's threads).
    fn current(&self) -> Result<()> {
        ffi::set_device(self.ordinal).map_err(backend)
    }

    /// The allocation, with `span` checked to lie inside it.
    fn checked(&self, buf: Buf, span: Span) -> Result<&Alloc> {
        host::checked(&self.allocs, buf, span)
    }

    /// `op` is refused for these kinds.
    fn refuse(buf: Buf, op: &'static str, kinds: &[AllocKind]) -> Result<()> {
        if kinds.contains(&buf.kind) {
            return Err(DeviceError::Unsupported { op, kind: buf.kind });
        }
        Ok(())
    }

    fn racing(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The device id HIP takes for a location: this GPU, or the CPU.
    fn hip_location(&self, to: Location) -> i32 {
        match to {
            Location::Vram => self.ordinal,
            Location::System => ffi::CPU_DEVICE,
        }
    }

    /// Reads a location-valued range attribute back and fails when the runtime reports the
    /// other location than `want` for exactly the range it was just given. -2 (no single
    /// answer) and any other device are reported as they are, never taken as agreement.
    fn expect_attribute(
        &self,
        attr: i32,
        name: &str,
        addr: u64,
        len: u64,
        want: Location,
    ) -> Result<()> {
        let got = ffi::range_attribute(attr, addr, len).map_err(backend)?;
        let expected = self.hip_location(want);
        if got == expected {
            return Ok(());
        }
        let shown = match got {
            ffi::CPU_DEVICE => "the CPU (system)".to_string(),
            -2 => "no single location (hipInvalidDeviceId)".to_string(),
            d => format!("HIP device {d}"),
        };
        Err(DeviceError::Backend(format!(
            "hipMemRangeGetAttribute({name}) of [{addr:#x}, {:#x}) reads {shown} right after \
             svmconf set it to {want}",
            addr + len
        )))
    }

    fn observe<T>(&mut self, f: impl FnMut(&mut Box<dyn GpuObserver>) -> Option<T>) -> Option<T> {
        self.observers.iter_mut().find_map(f)
    }
}

impl Drop for HipDevice {
    fn drop(&mut self) {
        // Work still queued may use the memory freed next; nothing to report it to here.
        let _ = self.stream.synchronize();
    }
}

impl Device for HipDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn alloc(&mut self, kind: AllocKind, len: u64) -> Result<Buf> {
        host::refuse_empty(kind, len)?;
        self.current()?;
        let id = self.next_id;
        let mut file = None;
        let mem = match kind {
            AllocKind::Managed => ffi::managed(len).map_err(|e| hip(e, "managed", len))?,
            AllocKind::DeviceBuffer => ffi::device_buffer(len).map_err(|e| hip(e, "VRAM", len))?,
            AllocKind::Malloc => self
                .placer
                .heap(len, GUARDS)
                .map_err(|e| os(format!("posix_memalign of {len} bytes"), e))?,
            AllocKind::Mmap | AllocKind::Shared => self
                .placer
                .anonymous(len, kind == AllocKind::Shared, GUARDS)
                .map_err(|e| os(format!("mmap of {len} bytes"), e))?,
            AllocKind::File => {
                let (f, mem) = host::file_mapping("svmconf", id, len, GUARDS, &mut self.placer)?;
                file = Some(f);
                mem
            }
        };
        let buf = Buf { id, kind, len };
        let addr = mem.addr();
        self.allocs.insert(id, Alloc { buf, mem, file });
        self.next_id += 1;
        for o in &mut self.observers {
            o.allocated(buf, addr);
        }
        Ok(buf)
    }

    fn address(&self, buf: Buf) -> Option<u64> {
        host::alloc_of(&self.allocs, buf).ok().map(|a| a.mem.addr())
    }

    fn place_at(&mut self, first: u64) -> Result<()> {
        self.placer = Placer::new(Some(first));
        Ok(())
    }

    fn free(&mut self, buf: Buf) -> Result<()> {
        if !self.allocs.contains_key(&buf.id) {
            return Err(DeviceError::NoSuchBuffer(buf.id));
        }
        if self.racing() {
            // A kernel still running may use it; freeing under it would be the GPU fault.
            self.stream.synchronize().map_err(backend)?;
        }
        self.allocs.remove(&buf.id);
        for o in &mut self.observers {
            o.freed(buf);
        }
        Ok(())
    }

    fn unmap(&mut self, buf: Buf, span: Span) -> Result<()> {
        // munmap inside a heap block would corrupt the C heap; VRAM has no CPU mapping.
        Self::refuse(buf, "unmap", &[AllocKind::Malloc, AllocKind::DeviceBuffer])?;
        self.checked(buf, span)?;
        let pages = span.page_range();
        let a = self
            .allocs
            .get_mut(&buf.id)
            .ok_or(DeviceError::NoSuchBuffer(buf.id))?;
        a.mem
            .unmap_pages(pages.start, pages.end - pages.start)
            .map_err(|e| os(format!("unmap of {span} in allocation {}", buf.id), e))
    }

    fn remap(&mut self, buf: Buf) -> Result<()> {
        // The runtime frees managed memory by its address, and heap blocks cannot move.
        Self::refuse(
            buf,
            "remap",
            &[
                AllocKind::Managed,
                AllocKind::Malloc,
                AllocKind::DeviceBuffer,
            ],
        )?;
        let a = self
            .allocs
            .get_mut(&buf.id)
            .ok_or(DeviceError::NoSuchBuffer(buf.id))?;
        a.mem
            .remap()
            .map_err(|e| os(format!("remap of allocation {}", buf.id), e))?;
        let addr = a.mem.addr();
        for o in &mut self.observers {
            o.freed(buf);
            o.allocated(buf, addr);
        }
        Ok(())
    }

    fn protect(&mut self, buf: Buf, prot: Protection) -> Result<()> {
        Self::refuse(
            buf,
            "protect",
            &[AllocKind::Malloc, AllocKind::DeviceBuffer],
        )?;
        let a = self
            .allocs
            .get_mut(&buf.id)
            .ok_or(DeviceError::NoSuchBuffer(buf.id))?;
        a.mem
            .protect(prot == Protection::ReadOnly)
            .map_err(|e| os(format!("mprotect of allocation {}", buf.id), e))
    }

    fn fork(&mut self) -> Result<Box<dyn Device>> {
        Err(DeviceError::NotSupported(
            "fork on the HIP backend (the HIP runtime does not survive fork)",
        ))
    }

    fn advise(&mut self, buf: Buf, span: Span, advice: Advice) -> Result<()> {
        Self::refuse(buf, "advise", &[AllocKind::DeviceBuffer])?;
        let addr = self.checked(buf, span)?.mem.addr() + span.offset;
        if span.len == 0 {
            return Ok(());
        }
        self.current()?;
        let (code, device) = match advice {
            Advice::PreferredLocation(to) => {
                (advice::SET_PREFERRED_LOCATION, self.hip_location(to))
            }
            Advice::UnsetPreferredLocation => (advice::UNSET_PREFERRED_LOCATION, self.ordinal),
            Advice::AccessedBy => (advice::SET_ACCESSED_BY, self.ordinal),
            Advice::ReadMostly => (advice::SET_READ_MOSTLY, self.ordinal),
        };
        ffi::mem_advise(addr, span.len, code, device).map_err(backend)?;
        if let Advice::PreferredLocation(to) = advice {
            self.expect_attribute(
                range_attribute::PREFERRED_LOCATION,
                "PreferredLocation",
                addr,
                span.len,
                to,
            )?;
        }
        Ok(())
    }

    fn prefetch(&mut self, buf: Buf, span: Span, to: Location) -> Result<Duration> {
        Self::refuse(buf, "prefetch", &[AllocKind::DeviceBuffer])?;
        let addr = self.checked(buf, span)?.mem.addr() + span.offset;
        if span.len == 0 {
            return Ok(Duration::ZERO);
        }
        self.current()?;
        let (start, end) = (
            Event::new().map_err(backend)?,
            Event::new().map_err(backend)?,
        );
        start.record(&self.stream).map_err(backend)?;
        ffi::prefetch(addr, span.len, self.hip_location(to), &self.stream).map_err(backend)?;
        end.record(&self.stream).map_err(backend)?;
        end.synchronize().map_err(backend)?;
        let ms = start.elapsed_ms(&end).map_err(backend)?;
        self.expect_attribute(
            range_attribute::LAST_PREFETCH_LOCATION,
            "LastPrefetchLocation",
            addr,
            span.len,
            to,
        )?;
        Ok(Duration::from_secs_f64(f64::from(ms) / 1e3))
    }

    fn launch_async(&mut self, launch: &Launch) -> Result<Pending> {
        self.current()?;
        let mut slots = args::pack(launch, |b| self.allocs.get(&b.id).map(|a| a.mem.addr()))
            .map_err(|e| DeviceError::Backend(e.to_string()))?;
        let symbol = CString::new(launch.symbol())
            .map_err(|_| DeviceError::Backend(format!("kernel name {:?}", launch.symbol())))?;
        let f = self.module.function(&symbol).map_err(backend)?;
        let (start, end) = (
            Event::new().map_err(backend)?,
            Event::new().map_err(backend)?,
        );
        start.record(&self.stream).map_err(backend)?;
        ffi::launch(
            &f,
            launch.grid_blocks(),
            BLOCK_THREADS,
            &self.stream,
            &mut slots,
        )
        .map_err(backend)?;
        end.record(&self.stream).map_err(backend)?;
        let id = self.next_pending;
        self.next_pending += 1;
        self.pending.insert(id, (start, end));
        Ok(Pending(id))
    }

    fn wait(&mut self, pending: Pending) -> Result<KernelRun> {
        let (start, end) = self.pending.remove(&pending.0).ok_or_else(|| {
            DeviceError::Backend(format!("launch {} was never started here", pending.0))
        })?;
        // A kernel that faulted on memory reports here (hipErrorIllegalAddress); usually the
        // runtime aborts the process first, which the runner records as a crash.
        end.synchronize().map_err(backend)?;
        let ms = start.elapsed_ms(&end).map_err(backend)?;
        Ok(KernelRun {
            elapsed: Duration::from_secs_f64(f64::from(ms) / 1e3),
            faults: None,
        })
    }

    fn cpu_read(&mut self, buf: Buf, span: Span, out: &mut [u32]) -> Result<Duration> {
        let racing = self.racing();
        let a = host::checked_mut(&mut self.allocs, buf, span)?;
        host::cpu_words(span, out.len())?;
        let clock = Instant::now();
        a.mem
            .read(span.offset, out, racing)
            .map_err(|r| host::refused(buf, span, "cpu_read", 0, r))?;
        Ok(clock.elapsed())
    }

    fn cpu_write(&mut self, buf: Buf, span: Span, words: &[u32]) -> Result<Duration> {
        let racing = self.racing();
        let a = host::checked_mut(&mut self.allocs, buf, span)?;
        host::cpu_words(span, words.len())?;
        let clock = Instant::now();
        a.mem
            .write(span.offset, words, racing)
            .map_err(|r| host::refused(buf, span, "cpu_write", 0, r))?;
        Ok(clock.elapsed())
    }

    fn cpu_threads(&mut self, work: &CpuThreads) -> Result<Duration> {
        let mem = &self.checked(work.buf, work.buf.all())?.mem;
        host::cpu_threads(work, mem, 0, "cpu_threads")
    }

    /// From the page tables, where they can tell ([`Pagemap::can_tell`]); VRAM that HIP
    /// allocated (`hipMalloc`) is no memory of this process and has none.
    fn residency(&mut self, buf: Buf, span: Span) -> Option<Result<Vec<Location>>> {
        self.pagemap.can_tell().ok()?;
        let addr = match self.page_address(buf, span)? {
            Ok(addr) => addr,
            Err(e) => return Some(Err(e)),
        };
        host::pagemap_residency(&mut self.pagemap, buf, span, addr)
    }

    /// `PAGEMAP_SCAN`'s huge category, on a kernel that has it (6.7+).
    fn huge_mapped(&mut self, buf: Buf, span: Span) -> Option<Result<Vec<bool>>> {
        let addr = match self.page_address(buf, span)? {
            Ok(addr) => addr,
            Err(e) => return Some(Err(e)),
        };
        let pages = span.page_range();
        self.pagemap.huge(addr, pages.end - pages.start).map(Ok)
    }

    fn take_notes(&mut self) -> Vec<String> {
        self.pagemap.take_notes("the HIP runtime's residency")
    }

    fn take_events(&mut self) -> Option<Vec<MigrationEvent>> {
        observer::take_events(&mut self.observers)
    }

    /// The series frees VRAM as drm_gpusvm's garbage collector and TTM's delayed delete get
    /// to it, after hipFree or munmap returns: VRAM in use falls a moment after a free.
    fn release_settles_within(&self) -> std::time::Duration {
        crate::device::LEAK_SETTLE
    }

    fn vram_used(&mut self) -> Option<u64> {
        self.observe(|o| o.vram_used())
    }

    fn vram_free(&mut self) -> Option<u64> {
        self.current().ok()?;
        ffi::mem_info().ok().map(|(free, _)| free)
    }

    fn eviction_transient(&mut self) -> Option<EvictionTransient> {
        self.observe(|o| o.eviction_transient())
    }

    fn spawn_process(&mut self) -> Result<Box<dyn Device>> {
        let args = ["--backend", "hip", "--device", &self.pci_bus_id].map(String::from);
        RemoteDevice::spawn(&args).map(|d| Box::new(d) as Box<dyn Device>)
    }

    fn wait_exit(&mut self, _limit: Duration) -> Result<ProcessExit> {
        Err(DeviceError::NotSupported(
            "waiting for the end of the runner's own process (only a spawned one ends)",
        ))
    }

    fn gpu_reset(&mut self, permit: &Destructive) -> Result<()> {
        self.observe(|o| o.gpu_reset(permit))
            .unwrap_or(Err(DeviceError::NotSupported(
                "a GPU reset without a reset observer (src/device/amd)",
            )))
    }
}

#[cfg(test)]
mod tests {
    use super::super::error::NO_DEVICE;
    use super::*;

    /// The skip path this machine (and CI) takes: the runtime loads, finds no GPU, and says
    /// what each call returned. Where a GPU is present the test says so and checks nothing.
    #[test]
    fn without_a_gpu_discovery_says_what_hip_returned() {
        match discover(&DeviceSelector::First) {
            Err(DiscoverError::NoGpu(no)) => {
                let s = no.to_string();
                assert!(s.starts_with("no AMD GPU found: hipInit "), "{s}");
                assert!(s.contains("hipGetDeviceCount"), "{s}");
                if let Some(e) = &no.count {
                    assert_eq!(e.code, NO_DEVICE, "{s}");
                    assert_eq!(e.name, "hipErrorNoDevice");
                }
            }
            Ok(found) => eprintln!(
                "a GPU is present, the skip path is not tested: {}",
                found.describe()
            ),
            Err(other) => panic!("discovery failed for another reason than no GPU: {other}"),
        }
    }

    #[test]
    fn every_code_object_was_embedded_and_parses() {
        assert!(!CODE_OBJECTS.is_empty());
        for o in CODE_OBJECTS {
            assert!(TargetId::parse(o.target).is_ok(), "{}", o.target);
            // An ELF code object, or a clang offload bundle from hipcc.
            assert!(
                o.bytes.starts_with(b"\x7fELF") || o.bytes.starts_with(b"__CLANG_OFFLOAD_BUNDLE__"),
                "{}: {:?}",
                o.target,
                &o.bytes[..o.bytes.len().min(16)]
            );
        }
    }
}
