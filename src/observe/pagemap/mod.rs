//! Where a page of this process lives, by the kernel's own page tables: `/proc/self/pagemap`,
//! read word by word ([`word`]) and scanned with `PAGEMAP_SCAN` ([`scan`]).
//!
//! A page migrated to device-private memory (ZONE_DEVICE, by the mm migrate_device core every
//! driver on it uses: amdgpu with the series, dmirror, the virtual SVM GPU, xe, nouveau) is a
//! non-present PTE holding a device-private swap entry: bit 62 (swapped) set, bit 63 (present)
//! clear. A reader with CAP_SYS_ADMIN also sees the entry's swap type and its offset, the
//! device PFN, which `/proc/iomem` places inside the device's region ([`iomem`]); anyone else
//! sees zeros there, and can tell "swapped or device-private" from "present", not which. With
//! no swap in use, a non-present swap entry of a mapped page cannot be swapped out: it is
//! device-private, or a migration entry, which a stable read does not see.
//!
//! What it cannot see: a page the GPU maps in place without migrating it (a remote mapping of
//! system memory) is present system memory whether the GPU touched it or not.
//!
//! [`Pagemap`] is what a backend opens. It never fails to open: what it cannot tell, and why,
//! is said once in the case's evidence ([`Pagemap::take_notes`]), and the backend falls back to
//! the evidence it has.

pub mod iomem;
#[allow(unsafe_code)]
pub mod scan;
pub mod word;

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub use iomem::Regions;
pub use word::{place, Entry, Place, SwapLayout, LAYOUTS};

/// The kernel's page size on every machine the suite runs on.
pub(crate) const PAGE: u64 = 4096;

/// Reads of a range before a page that keeps changing is given up on.
const STABLE_TRIES: u32 = 4;

/// Where the observer reads from: this process's files, or a test's.
#[derive(Clone, Debug)]
pub struct Sources {
    pub pagemap: PathBuf,
    pub iomem: PathBuf,
    pub meminfo: PathBuf,
    /// `uname -r`: which swap-type layout applies.
    pub release: String,
}

impl Sources {
    /// This process's pagemap, and the running kernel's iomem, meminfo and release.
    pub fn this_process() -> Sources {
        Sources {
            pagemap: "/proc/self/pagemap".into(),
            iomem: "/proc/iomem".into(),
            meminfo: crate::observe::meminfo::PROC_MEMINFO.into(),
            release: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|r| r.trim().to_string())
                .unwrap_or_default(),
        }
    }
}

/// Which side of the bus a page is on, as the page tables say: what a backend's residency is
/// compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Residence {
    /// Present in system memory, swapped out, or not mapped: not in device memory.
    System,
    /// A device-private entry: in device memory.
    Device,
}

impl std::fmt::Display for Residence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Residence::System => "system",
            Residence::Device => "device memory",
        })
    }
}

/// One page as the page tables say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub word: Entry,
    pub place: Place,
    /// A huge (PMD) entry maps it; `None` where that cannot be told (no `PAGEMAP_SCAN`).
    pub huge: Option<bool>,
}

/// How the pages of one range compared with a backend's own residency.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Pages compared with a backend's own residency.
    pub compared: u64,
    pub mismatches: u64,
    /// Pages placed by the page tables alone, as a backend's residency.
    pub placed: u64,
}

/// The observer of one process's page tables, for one device.
pub struct Pagemap {
    sources: Sources,
    /// The device's region name in `/proc/iomem`: `hmm_dmirror`, `vsvm`, `0000:c1:00.0`.
    region: String,
    file: Result<File, String>,
    layout: Result<&'static SwapLayout, String>,
    /// The reader sees PFNs and swap types (CAP_SYS_ADMIN when the file was opened).
    privileged: bool,
    /// Whether `PAGEMAP_SCAN` answered; `None` until first asked.
    scan: Option<bool>,
    regions: Regions,
    /// Bytes of swap in use when opened; `None` where meminfo did not say.
    swap_used: Option<u64>,
    said: BTreeSet<String>,
    notes: Vec<String>,
    tally: Tally,
    /// The first device-private word read, decoded, for the evidence.
    shown_device_word: bool,
    /// `/proc/iomem` was read again for the range being read now.
    refreshed: bool,
}

impl Pagemap {
    /// This process's page tables, for the device whose device-private region `/proc/iomem`
    /// names `region`.
    pub fn open(region: &str) -> Pagemap {
        Pagemap::open_from(Sources::this_process(), region)
    }

    /// As [`Pagemap::open`], from `sources`.
    pub fn open_from(sources: Sources, region: &str) -> Pagemap {
        let file = File::open(&sources.pagemap).map_err(|e| {
            format!(
                "{}: {}",
                sources.pagemap.display(),
                crate::util::text::io_reason(&e)
            )
        });
        let layout = SwapLayout::of(&sources.release);
        let privileged = file.as_ref().map(sees_pfns).unwrap_or(false);
        let regions = read_regions(&sources.iomem, region);
        let swap_used = std::fs::read_to_string(&sources.meminfo)
            .ok()
            .and_then(|t| {
                let p = Path::new(&sources.meminfo);
                let total = crate::observe::meminfo::parse_field(&t, "SwapTotal", p).ok()?;
                let free = crate::observe::meminfo::parse_field(&t, "SwapFree", p).ok()?;
                Some(total.saturating_sub(free))
            });
        Pagemap {
            sources,
            region: region.to_string(),
            file,
            layout,
            privileged,
            scan: None,
            regions,
            swap_used,
            said: BTreeSet::new(),
            notes: Vec::new(),
            tally: Tally::default(),
            shown_device_word: false,
            refreshed: false,
        }
    }

    /// Whether [`Pagemap::locations`] can tell system memory from device memory here, and if
    /// not, why. A privileged reader on a kernel whose swap types are known reads them; any
    /// other reader can tell only while no swap is in use.
    pub fn can_tell(&self) -> Result<(), String> {
        let file = self.sources.pagemap.display();
        if let Err(e) = &self.file {
            return Err(format!("no page tables to read: {e}"));
        }
        if self.decodes_types() {
            return Ok(());
        }
        let unseen = match (&self.layout, self.privileged) {
            (Err(unknown), true) => format!("{file}: {unknown}"),
            _ => format!("{file} shows this reader no swap types (no CAP_SYS_ADMIN)"),
        };
        match self.swap_used {
            Some(0) => Ok(()),
            Some(used) => Err(format!(
                "{unseen}, and with {used} bytes of swap in use a non-present page may be \
                 swapped out rather than in device memory"
            )),
            None => Err(format!(
                "{unseen}, and {} does not say whether swap is in use",
                self.sources.meminfo.display()
            )),
        }
    }

    /// Whether swap types are read: privileged, on a kernel whose layout is known.
    fn decodes_types(&self) -> bool {
        self.privileged && self.layout.is_ok()
    }

    /// One line for run.json: what it reads and what it can tell.
    pub fn describe(&self) -> String {
        let file = self.sources.pagemap.display();
        if let Err(why) = self.can_tell() {
            return format!("no residency: {why}");
        }
        let how = match (self.decodes_types(), &self.layout) {
            (true, Ok(l)) => format!(
                "swap types and PFNs visible (CAP_SYS_ADMIN), the swap types of {}: \
                 device-private {} (write) and {} (read); device PFNs checked against {}",
                l.kernel,
                l.device_write,
                l.device_read,
                self.regions.describe(&self.region)
            ),
            (_, Err(unknown)) if self.privileged => format!(
                "no swap types read ({unknown}): a non-present page is device memory, as no \
                 swap is in use"
            ),
            _ => "no swap types or PFNs read (no CAP_SYS_ADMIN): a non-present page is device \
                  memory, as no swap is in use"
                .to_string(),
        };
        format!("residency from the CPU page tables: {file}; {how}")
    }

    /// The pages of `[addr, addr + pages * 4096)`, read until two reads agree on where every
    /// page is.
    pub fn pages(&mut self, addr: u64, pages: u64) -> Result<Vec<Page>, String> {
        self.refreshed = false;
        let layout = self
            .layout
            .as_ref()
            .map_or(&LAYOUTS[LAYOUTS.len() - 1], |l| *l);
        let types = self.decodes_types();
        let decode = |w: Entry| place(w, layout, types);
        let words = stable(|| self.words(addr, pages), decode)
            .map_err(|e| format!("{e} (the {pages} pages at {addr:#x})"))?;
        let huge = self.huge(addr, pages);
        Ok(words
            .iter()
            .enumerate()
            .map(|(i, w)| Page {
                word: *w,
                place: decode(*w),
                huge: huge.as_ref().map(|h| h[i]),
            })
            .collect())
    }

    /// The words of the range, as one positioned read (no second read, no decoding).
    pub fn words(&self, addr: u64, pages: u64) -> Result<Vec<Entry>, String> {
        let file = self.file.as_ref().map_err(Clone::clone)?;
        let path = self.sources.pagemap.display();
        let offset = addr / PAGE * 8;
        let mut bytes = vec![0u8; (pages * 8) as usize];
        let mut got = 0;
        while got < bytes.len() {
            match file.read_at(&mut bytes[got..], offset + got as u64) {
                Ok(0) => {
                    return Err(format!(
                        "{path}: short read: {got} of {} bytes at offset {offset:#x}",
                        bytes.len()
                    ))
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(format!(
                        "{path}: reading {} bytes at offset {offset:#x}: {}",
                        bytes.len(),
                        crate::util::text::io_reason(&e)
                    ))
                }
            }
        }
        Ok(bytes
            .chunks_exact(8)
            .map(|c| Entry(u64::from_ne_bytes(c.try_into().expect("8 bytes"))))
            .collect())
    }

    /// Per page, whether a huge entry maps it, by `PAGEMAP_SCAN`; `None` where the kernel has
    /// no such ioctl (before 6.7) or refused it, said once.
    pub fn huge(&mut self, addr: u64, pages: u64) -> Option<Vec<bool>> {
        if self.scan == Some(false) {
            return None;
        }
        let file = self.file.as_ref().ok()?;
        match scan::categories(file, addr, pages) {
            Ok(c) => {
                self.scan = Some(true);
                Some(c.iter().map(|c| c & scan::category::HUGE != 0).collect())
            }
            Err(e) => {
                self.scan = Some(false);
                self.say(format!(
                    "pagemap: PAGEMAP_SCAN on {} failed ({}): which pages huge entries map is \
                     not told",
                    self.sources.pagemap.display(),
                    crate::util::text::io_reason(&e)
                ));
                None
            }
        }
    }

    /// Where each page of the range is, as a backend's residency; `Err` where the page tables
    /// cannot tell ([`Pagemap::can_tell`]), cannot be read, or name a device PFN outside the
    /// device's region.
    pub fn locations(&mut self, addr: u64, pages: u64) -> Result<Vec<Residence>, String> {
        self.can_tell()?;
        let read = self.pages(addr, pages)?;
        let mut out = Vec::with_capacity(read.len());
        for (i, p) in read.iter().enumerate() {
            out.push(self.location(i as u64, addr, p)?);
        }
        self.tally.placed += pages;
        Ok(out)
    }

    /// As [`Pagemap::locations`], for a backend whose residency this is: `Ok(None)` where the
    /// page tables cannot tell or cannot be read, said once in the evidence, so that the case
    /// falls back to the evidence it has; `Err` only where they contradict themselves (a device
    /// PFN outside the device's region).
    pub fn residency(&mut self, addr: u64, pages: u64) -> Result<Option<Vec<Residence>>, String> {
        if let Err(why) = self.can_tell() {
            self.say(format!("pagemap: no residency: {why}"));
            return Ok(None);
        }
        let read = match self.pages(addr, pages) {
            Ok(read) => read,
            Err(why) => {
                self.say(format!("pagemap: no residency: {why}"));
                return Ok(None);
            }
        };
        let mut out = Vec::with_capacity(read.len());
        for (i, p) in read.iter().enumerate() {
            out.push(self.location(i as u64, addr, p)?);
        }
        self.tally.placed += pages;
        Ok(Some(out))
    }

    /// Where page `i` of the range at `addr` is, checking a device PFN against the region.
    fn location(&mut self, i: u64, addr: u64, p: &Page) -> Result<Residence, String> {
        Ok(match p.place {
            Place::Device { pfn, .. } => {
                let unplaced = !matches!(self.regions, Regions::Hidden)
                    && self.regions.holds_pfn(pfn) != Some(true);
                if unplaced && !self.refreshed {
                    // A driver adds device memory as pages migrate (the test driver 256 MiB
                    // at a time): a PFN outside the regions seen so far is looked for again
                    // in the listing as it is now, once per range read.
                    self.regions = read_regions(&self.sources.iomem, &self.region);
                    self.refreshed = true;
                }
                self.show_device_word(addr + i * PAGE, p);
                if self.regions.holds_pfn(pfn) == Some(false) {
                    return Err(format!(
                        "page {i} (at {:#x}) is device-private at PFN {pfn:#x} ({:#018x}), \
                         outside {}",
                        addr + i * PAGE,
                        p.word.0,
                        self.regions.describe(&self.region)
                    ));
                }
                Residence::Device
            }
            Place::SwappedOrDevice => Residence::Device,
            Place::System { .. }
            | Place::DeviceExclusive { .. }
            | Place::Swapped { .. }
            | Place::NotPresent => Residence::System,
        })
    }

    /// The first device-private word, decoded, for the evidence.
    fn show_device_word(&mut self, at: u64, p: &Page) {
        if self.shown_device_word {
            return;
        }
        self.shown_device_word = true;
        let Place::Device { writable, pfn } = p.place else {
            return;
        };
        let (kind, _) = p.word.swap().unwrap_or_default();
        let layout = self.layout.as_ref().map(|l| l.kernel).unwrap_or("?");
        self.say(format!(
            "pagemap: the device-private page at {at:#x} reads {:#018x}: swap type {kind} \
             (SWP_DEVICE_{} of {layout}), device PFN {pfn:#x}, {}",
            p.word.0,
            if writable { "WRITE" } else { "READ" },
            match self.regions.holds_pfn(pfn) {
                Some(true) => format!("inside {}", self.regions.describe(&self.region)),
                Some(false) => format!("OUTSIDE {}", self.regions.describe(&self.region)),
                None => format!("not placed ({})", self.regions.describe(&self.region)),
            }
        ));
    }

    /// Compares `own`, a backend's residency of the range at `addr` read by `by` (`SNAPSHOT`),
    /// with the page tables, page by page. `Err` names the first page they disagree on and how
    /// many do; where the page tables cannot tell, that is said once and nothing is compared.
    pub fn cross_check(&mut self, addr: u64, own: &[Residence], by: &str) -> Result<(), String> {
        if let Err(why) = self.can_tell() {
            self.say(format!("pagemap: {by} not cross-checked: {why}"));
            return Ok(());
        }
        let read = match self.pages(addr, own.len() as u64) {
            Ok(r) => r,
            Err(why) => {
                self.say(format!("pagemap: {by} not cross-checked: {why}"));
                return Ok(());
            }
        };
        let mut first = None;
        let mut mismatches = 0;
        for (i, (p, want)) in read.iter().zip(own).enumerate() {
            let at = match self.location(i as u64, addr, p) {
                Ok(at) => at,
                Err(e) => {
                    self.tally.mismatches += 1;
                    return Err(format!("the page tables contradict {by}: {e}"));
                }
            };
            if at != *want {
                mismatches += 1;
                first.get_or_insert((i, at, *p));
            }
        }
        self.tally.compared += own.len() as u64;
        self.tally.mismatches += mismatches;
        match first {
            None => Ok(()),
            Some((i, at, p)) => Err(format!(
                "the page tables disagree with {by} on {mismatches} of {} pages at {addr:#x}; \
                 first: page {i}: {by} says {}, {} says {at} ({}, word {:#018x})",
                own.len(),
                own[i],
                self.sources.pagemap.display(),
                describe_place(p.place),
                p.word.0
            )),
        }
    }

    /// Says `line` in the evidence, once per observer.
    fn say(&mut self, line: String) {
        if self.said.insert(line.clone()) {
            self.notes.push(line);
        }
    }

    /// Lines for the case's evidence since the last call: what could not be told, once, how
    /// many pages were cross-checked with `by`, and how many placed by the page tables alone.
    pub fn take_notes(&mut self, by: &str) -> Vec<String> {
        let mut out = std::mem::take(&mut self.notes);
        let t = std::mem::take(&mut self.tally);
        if t.compared > 0 || t.mismatches > 0 {
            out.push(format!(
                "pagemap: {} pages compared with {by}, {} mismatches",
                t.compared, t.mismatches
            ));
        }
        if t.placed > 0 {
            out.push(format!(
                "pagemap: {} pages placed by the page tables ({})",
                t.placed,
                self.sources.pagemap.display()
            ));
        }
        out
    }
}

/// The regions named `name` in the listing at `iomem` now; none where it cannot be read.
fn read_regions(iomem: &Path, name: &str) -> Regions {
    match std::fs::read_to_string(iomem) {
        Ok(text) => iomem::regions(&text, name),
        Err(_) => Regions::Missing,
    }
}

/// Reads through `read` until two reads in a row agree on where every page is (`decode`), at
/// most [`STABLE_TRIES`] times: a page that changes while it is read (a migration in flight)
/// has no one place.
fn stable(
    mut read: impl FnMut() -> Result<Vec<Entry>, String>,
    decode: impl Fn(Entry) -> Place,
) -> Result<Vec<Entry>, String> {
    let mut last = read()?;
    let mut change = (0, Entry(0), Entry(0));
    for _ in 0..STABLE_TRIES {
        let again = read()?;
        match last
            .iter()
            .zip(&again)
            .position(|(a, b)| decode(*a) != decode(*b))
        {
            None => return Ok(again),
            Some(p) => change = (p, last[p], again[p]),
        }
        last = again;
    }
    let (p, before, after) = change;
    Err(format!(
        "page {p} changed while it was read, {} reads running (last {:#018x} then {:#018x})",
        STABLE_TRIES + 1,
        before.0,
        after.0
    ))
}

/// Whether a pagemap read through `file` shows PFNs: the word of a page this process has just
/// written is present, and its PFN is 0 for a reader without CAP_SYS_ADMIN.
fn sees_pfns(file: &File) -> bool {
    let probe = Box::new([1u8; PAGE as usize]);
    let addr = std::hint::black_box(probe.as_ptr()) as u64;
    let mut word = [0u8; 8];
    let ok = file.read_exact_at(&mut word, addr / PAGE * 8).is_ok();
    drop(probe);
    let e = Entry(u64::from_ne_bytes(word));
    ok && e.pfn().is_some_and(|pfn| pfn != 0)
}

/// A place in words, for a mismatch.
pub fn describe_place(p: Place) -> String {
    match p {
        Place::System { pfn: 0 } => "present in system memory".into(),
        Place::System { pfn } => format!("present in system memory at PFN {pfn:#x}"),
        Place::Device { writable, pfn } => format!(
            "device-private ({}) at device PFN {pfn:#x}",
            if writable { "writable" } else { "read-only" }
        ),
        Place::DeviceExclusive { pfn } => {
            format!("device-exclusive in system memory at PFN {pfn:#x}")
        }
        Place::SwappedOrDevice => "not present: swapped or device-private".into(),
        Place::Swapped { kind } => format!("a swap entry of type {kind}, not device-private"),
        Place::NotPresent => "not mapped".into(),
    }
}

#[cfg(test)]
mod tests;
