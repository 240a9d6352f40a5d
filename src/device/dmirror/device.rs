//! [`DmirrorDevice`]: one process's view of the test driver's device.
//!
//! Allocations are memory of this process. The device reaches them through its own page table
//! (READ, WRITE: hmm_range_fault, never a migration), migrates them with MIGRATE_TO_DEV and
//! MIGRATE_TO_SYS, and SNAPSHOT says per page whether it is device-private now. A CPU access
//! is a plain load or store: on a device-private page the kernel faults and the driver's
//! migrate_to_ram brings that one page back.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::Path;
use std::time::{Duration, Instant};

use super::ffi::{self, Transfer};
use super::kernels::{self, PageIo, BATCH_PAGES};
use super::uapi::{self, Command, PageState};
use crate::device::host::{self, Alloc, CPU_ACCESS};
use crate::device::kernels::words::Finished;
use crate::device::kernels::Launch;
use crate::device::memory::{Guards, Placer};
use crate::device::{
    Advice, AllocKind, Buf, Capabilities, CpuThreads, Destructive, Device, DeviceError, DeviceInfo,
    EvictionTransient, KernelRun, Location, MigrationEvent, Need, Pending, ProcessExit, Protection,
    Result, Span, PAGE_SIZE, WORDS_PER_PAGE,
};
use crate::observe::pagemap::Pagemap;

/// How often MIGRATE_TO_DEV is issued, at most, for a batch whose pages did not all reach the
/// device ([`DmirrorDevice::migrate`] says how it asks again).
const MIGRATE_TRIES: u32 = 4;

/// The device memory the driver adds at a time (`DEVMEM_CHUNK_SIZE`, 256 MiB): it grows by
/// such chunks as pages migrate, so there is no fixed VRAM; this is what sizes `vram/4`.
pub const DEVMEM_CHUNK_BYTES: u64 = 256 << 20;

/// Every allocation lies between guard pages of its own, a VMA no other mapping is merged
/// into: without them the test driver oopses under the suite ([`Guards::Pages`] says why).
const GUARDS: Guards = Guards::Pages;

/// What the runner knows of the device at `node` before any case.
pub fn info(node: &Path) -> DeviceInfo {
    DeviceInfo {
        backend: "dmirror".into(),
        name: format!("Linux HMM test driver ({})", node.display()),
        arch: "dmirror".into(),
        vram_bytes: DEVMEM_CHUNK_BYTES,
        gpus: 1,
        // Its faults are always resolved: a device access never fails for want of retry. It
        // reports neither events, VRAM use, eviction transients, nor resets, and has no buffer
        // objects. The driver mirrors the mm of the process that opened it, so a forked child
        // would need its own open and a second process to drive it; kernels run to completion
        // inside launch_async, so nothing runs beside them.
        caps: Capabilities::of(&[Need::Xnack, Need::Residency]),
    }
}

/// One process's view of the test driver's device.
pub struct DmirrorDevice {
    info: DeviceInfo,
    dev: File,
    allocs: HashMap<u32, Alloc>,
    next_id: u32,
    /// Launches already run (synchronously), waiting to be collected.
    finished: Finished,
    /// Where host allocations go (`--place-at`).
    placer: Placer,
    /// The CPU's page tables, against which every SNAPSHOT is cross-checked.
    pagemap: Pagemap,
    /// Evidence lines of this device's own since the last `take_notes`: batches asked again.
    notes: Vec<String>,
}

/// The name `lib/test_hmm.c` gives its device-private memory in `/proc/iomem`
/// (`request_free_mem_region(..., "hmm_dmirror")`).
pub const IOMEM_REGION: &str = "hmm_dmirror";

/// What SNAPSHOT is called in a cross-check.
const SNAPSHOT: &str = "HMM_DMIRROR_SNAPSHOT";

impl DmirrorDevice {
    /// Opens the driver's node for this process (the driver mirrors the opener's mm).
    pub fn open(node: &Path) -> Result<DmirrorDevice> {
        let dev = open_node(node).map_err(|e| DeviceError::Backend(e.to_string()))?;
        Ok(DmirrorDevice {
            info: info(node),
            dev,
            allocs: HashMap::new(),
            next_id: 1,
            placer: Placer::default(),
            finished: Finished::default(),
            pagemap: Pagemap::open(IOMEM_REGION),
            notes: Vec::new(),
        })
    }

    fn alloc_of(&self, buf: Buf) -> Result<&Alloc> {
        host::alloc_of(&self.allocs, buf)
    }

    /// The allocation, for `op` to change its mapping ([`refuse_heap`]: munmap or mprotect
    /// inside a heap block would corrupt the C heap).
    fn mapping_mut(&mut self, buf: Buf, op: &'static str) -> Result<&mut Alloc> {
        refuse_heap(buf, op)?;
        host::alloc_mut(&mut self.allocs, buf)
    }

    /// The allocation, with `span` checked to lie inside it.
    fn checked(&self, buf: Buf, span: Span) -> Result<&Alloc> {
        host::checked(&self.allocs, buf, span)
    }

    /// Evicts every device-private page of the device (every process's) to system memory and
    /// gives its memory back: HMM_DMIRROR_RELEASE, the closest this device has to TTM
    /// evicting everything before a reset.
    pub fn release(&mut self) -> Result<Duration> {
        let clock = Instant::now();
        // Any aligned address will do: the driver looks at none.
        ffi::command(&self.dev, Command::Release, PAGE_SIZE, 1, Transfer::Nothing)
            .map_err(|e| DeviceError::Backend(format!("{}: {e}", Command::Release.name())))?;
        Ok(clock.elapsed())
    }

    /// Runs `command` over whole pages `[first, first + n)` of `buf`, in batches.
    ///
    /// Migration is best effort in mm: a page someone holds for a moment (khugepaged, a racing
    /// fault, a folio lock) is skipped, and migrates when asked again, as drivers ask again. A
    /// MIGRATE_TO_DEV batch that left pages behind is asked again from where its first try
    /// started: MIGRATE_TO_SYS of the whole batch, then MIGRATE_TO_DEV of the whole batch, at
    /// most [`MIGRATE_TRIES`] times. Asking again for the pages left behind alone oopses the
    /// test driver: a page mm skipped because its folio lock was taken is unmapped later by
    /// `try_to_migrate()`, whose invalidation makes `dmirror_do_update()` drop the mirror
    /// entry of the page after it too (lab/vm/README.md, finding 2); on a retry that page is
    /// device-private already, and the next READ of it maps the ZONE_DEVICE page itself and
    /// copies through it (finding 1). In a batch that starts all in system memory, as a batch
    /// does after its MIGRATE_TO_SYS, every page such an invalidation reaches is mapped only
    /// after it. A page that never migrates stays where it is after the last try, for the
    /// case's residency check to name.
    fn migrate(&mut self, buf: Buf, pages: std::ops::Range<u64>, command: Command) -> Result<()> {
        let a = self.alloc_of(buf)?;
        if let Some(hole) = a.mem.hole_in(pages.start, pages.end) {
            return Err(DeviceError::Segfault {
                buf: buf.id,
                offset: hole * PAGE_SIZE,
            });
        }
        let base = a.mem.addr();
        let mut scratch = Vec::new();
        let mut retried = Vec::new();
        let mut page = pages.start;
        while page < pages.end {
            let n = (pages.end - page).min(BATCH_PAGES);
            let addr = base + page * PAGE_SIZE;
            if command == Command::MigrateToDev {
                scratch.resize((n * WORDS_PER_PAGE) as usize, 0u32);
            }
            let mut tries = 1;
            loop {
                let transfer = if command == Command::MigrateToDev {
                    Transfer::Into(&mut scratch)
                } else {
                    Transfer::Nothing
                };
                match ffi::command(&self.dev, command, addr, n, transfer) {
                    Ok(_) => {}
                    // MIGRATE_TO_DEV reads the migrated pages back for verification and fails
                    // with ENOENT where one did not migrate and was never mirrored: residency
                    // says which pages moved.
                    Err(e)
                        if command == Command::MigrateToDev
                            && e.raw_os_error() == Some(libc::ENOENT) => {}
                    Err(e) => return Err(failed(command, buf, page, n, e)),
                }
                // Shared and file pages never become device-private: nothing to ask again.
                if command != Command::MigrateToDev
                    || tries == MIGRATE_TRIES
                    || !buf.kind.migratable()
                {
                    break;
                }
                let batch = Span::new(page * PAGE_SIZE, n * PAGE_SIZE);
                let behind = self
                    .snapshot(buf, batch)?
                    .iter()
                    .filter(|l| **l != Location::Vram)
                    .count();
                if behind == 0 {
                    if tries > 1 {
                        retried.push(format!("all on try {tries}"));
                    }
                    break;
                }
                if tries == 1 {
                    retried.push(format!(
                        "{behind} of pages [{page}, {}) left behind on the first try",
                        page + n
                    ));
                }
                let back = Command::MigrateToSys;
                ffi::command(&self.dev, back, addr, n, Transfer::Nothing)
                    .map_err(|e| failed(back, buf, page, n, e))?;
                tries += 1;
            }
            page += n;
        }
        if !retried.is_empty() {
            self.notes.push(format!(
                "dmirror: {} of allocation {} asked again, as a whole batch after \
                 MIGRATE_TO_SYS: {}",
                command.name(),
                buf.id,
                retried.join("; ")
            ));
        }
        Ok(())
    }

    /// One device command over pages of `buf`, copying through `transfer`.
    fn transfer(
        &self,
        command: Command,
        buf: Buf,
        first_page: u64,
        n: u64,
        transfer: Transfer<'_>,
    ) -> Result<u64> {
        let a = self.alloc_of(buf)?;
        if first_page + n > buf.pages() {
            return Err(DeviceError::OutOfBounds {
                buf: buf.id,
                span: Span::pages(first_page, n),
                len: buf.len,
            });
        }
        if let Some(hole) = a.mem.hole_in(first_page, first_page + n) {
            return Err(DeviceError::GpuMemoryFault {
                buf: buf.id,
                offset: hole * PAGE_SIZE,
                reason: "the device accessed a page unmapped from the process".into(),
            });
        }
        let addr = a.mem.addr() + first_page * PAGE_SIZE;
        ffi::command(&self.dev, command, addr, n, transfer)
            .map(|cmd| cmd.faults)
            .map_err(|e| failed(command, buf, first_page, n, e))
    }
}

/// Malloc memory's mapping is the C heap's: `op` may not change it.
fn refuse_heap(buf: Buf, op: &'static str) -> Result<()> {
    if buf.kind == AllocKind::Malloc {
        return Err(DeviceError::Unsupported { op, kind: buf.kind });
    }
    Ok(())
}

/// A failed command: a device access the process's mapping refused (EFAULT, EPERM, EACCES) is
/// the device's memory fault, as a GPU's would be; anything else is the driver's error.
fn failed(command: Command, buf: Buf, first_page: u64, n: u64, e: std::io::Error) -> DeviceError {
    let what = format!(
        "{} of pages [{first_page}, {}) of allocation {}: {e}",
        command.name(),
        first_page + n,
        buf.id
    );
    let access = matches!(command, Command::Read | Command::Write);
    match e.raw_os_error() {
        Some(libc::EFAULT | libc::EPERM | libc::EACCES) if access => DeviceError::GpuMemoryFault {
            buf: buf.id,
            offset: first_page * PAGE_SIZE,
            reason: what,
        },
        _ => DeviceError::Backend(what),
    }
}

/// Opens `node` read-write, saying what to do when that is refused.
pub fn open_node(node: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(node)
        .map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                " (the test driver's nodes are root's: run as root, or chmod the node)"
            } else {
                ""
            };
            std::io::Error::new(e.kind(), format!("{}: {e}{hint}", node.display()))
        })
}

/// Pages `[0, n)` as runs `[start, end)` of one location, in order.
fn runs(locations: &[Location]) -> Vec<std::ops::Range<u64>> {
    let mut out = Vec::new();
    let mut start = 0;
    for p in 1..=locations.len() {
        if p == locations.len() || locations[p] != locations[start] {
            out.push(start as u64..p as u64);
            start = p;
        }
    }
    out
}

/// A device READ or WRITE never spans pages in device memory and pages that are not: one
/// command per run of one place (SNAPSHOT says which). Where the driver finds a page it has not
/// mirrored yet, it faults in every page from there to the end of the command, and for its own
/// device-private pages among them it maps the device-private page instead of the page behind
/// it, then copies through it: Linux 6.12's lib/test_hmm.c oopses (dmirror_do_fault has no
/// BACKING_PAGE; lab/vm/README.md, "Findings"). A command over device-private pages alone
/// finds them mirrored since their migration, and one over other pages alone faults in only
/// those.
impl PageIo for DmirrorDevice {
    fn read_pages(&mut self, buf: Buf, first_page: u64, out: &mut [u32]) -> Result<u64> {
        let mut faults = 0;
        for run in self.runs_of(buf, first_page, out.len() as u64 / WORDS_PER_PAGE)? {
            let words = words_of(&run);
            let pages = run.end - run.start;
            let into = Transfer::Into(&mut out[words]);
            faults += self.transfer(Command::Read, buf, first_page + run.start, pages, into)?;
        }
        Ok(faults)
    }

    fn write_pages(&mut self, buf: Buf, first_page: u64, words: &[u32]) -> Result<u64> {
        let mut faults = 0;
        for run in self.runs_of(buf, first_page, words.len() as u64 / WORDS_PER_PAGE)? {
            let pages = run.end - run.start;
            let from = Transfer::From(&words[words_of(&run)]);
            faults += self.transfer(Command::Write, buf, first_page + run.start, pages, from)?;
        }
        Ok(faults)
    }
}

impl DmirrorDevice {
    /// Pages `[first_page, first_page + n)` of `buf` as runs of one place, relative to
    /// `first_page` (see the PageIo implementation).
    fn runs_of(&self, buf: Buf, first_page: u64, n: u64) -> Result<Vec<std::ops::Range<u64>>> {
        let places = self.snapshot(buf, Span::pages(first_page, n).clamp(buf.all()))?;
        Ok(runs(&places))
    }
}

/// The words of pages `run` of a transfer.
fn words_of(run: &std::ops::Range<u64>) -> std::ops::Range<usize> {
    (run.start * WORDS_PER_PAGE) as usize..(run.end * WORDS_PER_PAGE) as usize
}

impl Drop for DmirrorDevice {
    fn drop(&mut self) {
        // The next case starts with no device-private page left from this one; nothing to
        // report an error to here.
        let _ = self.release();
    }
}

impl Device for DmirrorDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn alloc(&mut self, kind: AllocKind, len: u64) -> Result<Buf> {
        host::refuse_empty(kind, len)?;
        let id = self.next_id;
        let mut file = None;
        let oom = |e: std::io::Error| DeviceError::Backend(format!("{kind} of {len} bytes: {e}"));
        let mem = match kind {
            // No runtime allocator here: managed memory is what the process maps itself.
            AllocKind::Managed | AllocKind::Mmap => {
                self.placer.anonymous(len, false, GUARDS).map_err(oom)?
            }
            AllocKind::Malloc => self.placer.heap(len, GUARDS).map_err(oom)?,
            AllocKind::Shared => self.placer.anonymous(len, true, GUARDS).map_err(oom)?,
            AllocKind::File => {
                let (f, mem) =
                    host::file_mapping("svmconf-dmirror", id, len, GUARDS, &mut self.placer)?;
                file = Some(f);
                mem
            }
            AllocKind::DeviceBuffer => {
                return Err(DeviceError::NotSupported(
                    "device buffers on the HMM test driver (its memory is only device-private \
                     pages of a process)",
                ))
            }
        };
        let buf = Buf { id, kind, len };
        self.allocs.insert(id, Alloc { buf, mem, file });
        self.next_id += 1;
        Ok(buf)
    }

    fn address(&self, buf: Buf) -> Option<u64> {
        host::alloc_of(&self.allocs, buf).ok().map(|a| a.mem.addr())
    }

    fn place_at(&mut self, first: u64) -> Result<()> {
        self.placer = Placer::new(Some(first));
        Ok(())
    }

    /// Cross-checks the whole allocation with the page tables first, where it is still mapped
    /// whole: every case frees what it made, so every case's last word on where its pages are
    /// is checked twice.
    fn free(&mut self, buf: Buf) -> Result<()> {
        let addr = {
            let a = self.alloc_of(buf)?;
            a.mem
                .hole_in(0, buf.pages())
                .is_none()
                .then(|| a.mem.addr())
        };
        // A SNAPSHOT the driver refuses here (a PROT_NONE mapping) is no cross-check to make.
        let checked = match (addr, self.snapshot(buf, buf.all())) {
            (Some(addr), Ok(own)) => {
                host::cross_check(&mut self.pagemap, buf, buf.all(), addr, &own, SNAPSHOT)
            }
            _ => Ok(()),
        };
        self.allocs
            .remove(&buf.id)
            .ok_or(DeviceError::NoSuchBuffer(buf.id))?;
        checked
    }

    fn unmap(&mut self, buf: Buf, span: Span) -> Result<()> {
        refuse_heap(buf, "unmap")?;
        self.checked(buf, span)?;
        let pages = span.page_range();
        self.mapping_mut(buf, "unmap")?
            .mem
            .unmap_pages(pages.start, pages.end - pages.start)
            .map_err(|e| {
                DeviceError::Backend(format!("unmap of {span} in allocation {}: {e}", buf.id))
            })
    }

    fn remap(&mut self, buf: Buf) -> Result<()> {
        self.mapping_mut(buf, "remap")?
            .mem
            .remap()
            .map_err(|e| DeviceError::Backend(format!("remap of allocation {}: {e}", buf.id)))
    }

    fn protect(&mut self, buf: Buf, prot: Protection) -> Result<()> {
        self.mapping_mut(buf, "protect")?
            .mem
            .protect(prot == Protection::ReadOnly)
            .map_err(|e| DeviceError::Backend(format!("mprotect of allocation {}: {e}", buf.id)))
    }

    fn fork(&mut self) -> Result<Box<dyn Device>> {
        Err(DeviceError::NotSupported(
            "fork on the dmirror backend (the driver mirrors the mm of the process that opened it)",
        ))
    }

    /// The driver keeps no memory attributes, and its device maps every page it touches where
    /// it is: what preferred location system and accessed-by ask for already holds, so those
    /// are accepted; a preference for device memory or read-mostly would change nothing, so
    /// they are refused rather than silently ignored.
    fn advise(&mut self, buf: Buf, span: Span, advice: Advice) -> Result<()> {
        self.checked(buf, span)?;
        match advice {
            Advice::PreferredLocation(Location::System)
            | Advice::UnsetPreferredLocation
            | Advice::AccessedBy => Ok(()),
            Advice::PreferredLocation(Location::Vram) => Err(DeviceError::NotSupported(
                "preferred location VRAM on the HMM test driver (its accesses never migrate)",
            )),
            Advice::ReadMostly => Err(DeviceError::NotSupported(
                "read-mostly advice on the HMM test driver (it keeps no memory attributes)",
            )),
        }
    }

    fn prefetch(&mut self, buf: Buf, span: Span, to: Location) -> Result<Duration> {
        self.checked(buf, span)?;
        let pages = span.page_range();
        if pages.is_empty() {
            return Ok(Duration::ZERO);
        }
        let command = match to {
            Location::Vram => Command::MigrateToDev,
            Location::System => Command::MigrateToSys,
        };
        let clock = Instant::now();
        self.migrate(buf, pages, command)?;
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
        let a = host::checked_mut(&mut self.allocs, buf, span)?;
        host::cpu_words(span, out.len())?;
        let clock = Instant::now();
        // Nothing runs beside the CPU: kernels run to completion in launch_async.
        a.mem
            .read(span.offset, out, false)
            .map_err(|r| host::refused(buf, span, CPU_ACCESS, 0, r))?;
        Ok(clock.elapsed())
    }

    fn cpu_write(&mut self, buf: Buf, span: Span, words: &[u32]) -> Result<Duration> {
        let a = host::checked_mut(&mut self.allocs, buf, span)?;
        host::cpu_words(span, words.len())?;
        let clock = Instant::now();
        a.mem
            .write(span.offset, words, false)
            .map_err(|r| host::refused(buf, span, CPU_ACCESS, 0, r))?;
        Ok(clock.elapsed())
    }

    fn cpu_threads(&mut self, work: &CpuThreads) -> Result<Duration> {
        let mem = &self.checked(work.buf, work.buf.all())?.mem;
        host::cpu_threads(work, mem, 0, CPU_ACCESS)
    }

    /// SNAPSHOT, cross-checked page by page with the page tables.
    fn residency(&mut self, buf: Buf, span: Span) -> Option<Result<Vec<Location>>> {
        Some(self.residency_checked(buf, span))
    }

    fn take_events(&mut self) -> Option<Vec<MigrationEvent>> {
        None
    }

    fn vram_used(&mut self) -> Option<u64> {
        None
    }

    fn vram_free(&mut self) -> Option<u64> {
        None
    }

    fn eviction_transient(&mut self) -> Option<EvictionTransient> {
        None
    }

    /// SNAPSHOT's PMD bit: hmm_range_fault found the page mapped by a huge PMD.
    fn huge_mapped(&mut self, buf: Buf, span: Span) -> Option<Result<Vec<bool>>> {
        Some(
            self.snapshot_bytes(buf, span)
                .map(|bytes| bytes.iter().map(|b| b & uapi::prot::PMD != 0).collect()),
        )
    }

    /// RELEASE: the driver migrates every device-private page of its device back.
    fn evict_all(&mut self) -> Option<Result<Duration>> {
        Some(self.release())
    }

    fn spawn_process(&mut self) -> Result<Box<dyn Device>> {
        Err(DeviceError::NotSupported(
            "a second process on the dmirror backend",
        ))
    }

    fn wait_exit(&mut self, _limit: Duration) -> Result<ProcessExit> {
        Err(DeviceError::NotSupported(
            "waiting for the end of the runner's own process (only a spawned one ends)",
        ))
    }

    fn gpu_reset(&mut self, _permit: &Destructive) -> Result<()> {
        Err(DeviceError::NotSupported(
            "a reset of the HMM test driver (it has none)",
        ))
    }

    fn take_notes(&mut self) -> Vec<String> {
        let mut notes = std::mem::take(&mut self.notes);
        notes.extend(self.pagemap.take_notes(SNAPSHOT));
        notes
    }
}

impl DmirrorDevice {
    /// SNAPSHOT of the pages of `span`, cross-checked with the page tables.
    fn residency_checked(&mut self, buf: Buf, span: Span) -> Result<Vec<Location>> {
        let own = self.snapshot(buf, span)?;
        let addr = self.alloc_of(buf)?.mem.addr() + span.page_range().start * PAGE_SIZE;
        host::cross_check(&mut self.pagemap, buf, span, addr, &own, SNAPSHOT)?;
        Ok(own)
    }

    /// SNAPSHOT of the pages of `span`, decoded.
    fn snapshot(&self, buf: Buf, span: Span) -> Result<Vec<Location>> {
        let bytes = self.snapshot_bytes(buf, span)?;
        locations(buf, span.page_range().start, &bytes)
    }

    /// SNAPSHOT of the pages of `span`: one byte per page (uapi::prot).
    fn snapshot_bytes(&self, buf: Buf, span: Span) -> Result<Vec<u8>> {
        self.checked(buf, span)?;
        let pages = span.page_range();
        let mut bytes = vec![0u8; (pages.end - pages.start) as usize];
        let mut page = pages.start;
        while page < pages.end {
            let n = (pages.end - page).min(BATCH_PAGES);
            let at = (page - pages.start) as usize;
            let out = &mut bytes[at..at + n as usize];
            self.transfer(Command::Snapshot, buf, page, n, Transfer::Bytes(out))?;
            page += n;
        }
        Ok(bytes)
    }
}

/// SNAPSHOT bytes of pages from `first_page` as locations; a page of another device or one the
/// driver could not look up is an error that names it.
pub fn locations(buf: Buf, first_page: u64, bytes: &[u8]) -> Result<Vec<Location>> {
    bytes
        .iter()
        .enumerate()
        .map(|(i, b)| match uapi::decode(*b) {
            PageState::System => Ok(Location::System),
            PageState::Device => Ok(Location::Vram),
            other => Err(DeviceError::Backend(format!(
                "HMM_DMIRROR_SNAPSHOT: page {} of allocation {} reads {b:#04x} ({})",
                first_page + i as u64,
                buf.id,
                if other == PageState::Error {
                    "the driver could not look it up"
                } else {
                    "device-private memory of another test device"
                }
            ))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::dmirror::uapi::prot;
    use crate::device::host::checks::BUF;

    #[test]
    fn snapshot_bytes_become_residency_and_strange_pages_are_named() {
        let bytes = [
            prot::NONE,
            prot::DEV_PRIVATE_LOCAL | prot::WRITE,
            prot::ZERO | prot::READ,
            prot::WRITE | prot::PMD,
        ];
        let got = locations(BUF, 10, &bytes).unwrap();
        use Location::*;
        assert_eq!(got, [System, Vram, System, System]);
        let e = locations(
            BUF,
            10,
            &[prot::READ, prot::DEV_PRIVATE_REMOTE | prot::READ],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("page 11 of allocation 3 reads 0x31"), "{e}");
        assert!(e.contains("another test device"), "{e}");
        let e = locations(BUF, 0, &[prot::ERROR]).unwrap_err().to_string();
        assert!(e.contains("could not look it up"), "{e}");
    }

    #[test]
    fn a_refused_device_access_is_a_memory_fault_and_other_errors_are_the_drivers() {
        let e = failed(
            Command::Write,
            BUF,
            2,
            1,
            std::io::Error::from_raw_os_error(libc::EPERM),
        );
        assert!(
            matches!(&e, DeviceError::GpuMemoryFault { buf: 3, offset, reason }
                if *offset == 2 * PAGE_SIZE && reason.contains("HMM_DMIRROR_WRITE of pages [2, 3)")),
            "{e}"
        );
        let e = failed(
            Command::MigrateToDev,
            BUF,
            0,
            4,
            std::io::Error::from_raw_os_error(libc::EFAULT),
        );
        assert!(matches!(e, DeviceError::Backend(_)), "{e}");
    }

    #[test]
    fn a_missing_node_is_reported_with_its_path() {
        let e = DmirrorDevice::open(Path::new("/nonexistent/hmm_dmirror9"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("/nonexistent/hmm_dmirror9"), "{e}");
    }

    #[test]
    fn device_accesses_split_where_the_pages_change_place() {
        use Location::{System as S, Vram as V};
        assert_eq!(runs(&[S, S, V, V, V, S]), vec![0..2, 2..5, 5..6]);
        assert_eq!(runs(&[V]), vec![0..1]);
        assert!(runs(&[]).is_empty());
    }

    #[test]
    fn the_capabilities_are_what_the_driver_can_do() {
        let i = info(Path::new("/dev/hmm_dmirror0"));
        let has: Vec<Need> = Need::DEVICE
            .into_iter()
            .filter(|&n| i.caps.has(n))
            .collect();
        assert_eq!(has, [Need::Xnack, Need::Residency]);
        assert_eq!(
            (i.backend.as_str(), i.arch.as_str()),
            ("dmirror", "dmirror")
        );
    }
}
