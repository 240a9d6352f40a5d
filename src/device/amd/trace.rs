//! The series' dynamic-debug trace as a migration observer (`--amdgpu-trace`): on the new SVM
//! path KFD sends no SMI migration events, so this is the evidence there that pages moved.
//!
//! Opening turns the trace on ([`TracePatterns::control_lines`] written to the dynamic debug
//! control file), checks in the control file's listing that some site took, and reads the
//! kernel log from then on through its own `/dev/kmsg` reader (each opener of `/dev/kmsg` has
//! its own position, so the runner's reader is unaffected). Dropping turns it off again.
//!
//! What the lines can say (`fixtures/amdgpu-trace.yaml`): `populate_mm` gives the range of a
//! migration to VRAM, and the `copy_to_devmem done` after it whether the copy succeeded; those
//! two make a [`MigrationEvent`] on the case's allocations. `copy_to_ram done` gives only a page
//! count, with no address: such pages are reported against [`MigrationEvent::UNATTRIBUTED`],
//! and a check that needs pages back in system memory counts them for the allocation it asks
//! about. No line names its trigger ([`Trigger::Unnamed`]).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use super::dyndbg::{self, TraceKind, TracePatterns};
use super::smi::AddressMap;
use crate::device::observer::{GpuObserver, Provides};
use crate::device::{Buf, Location, MigrationEvent, Trigger, PAGE_SIZE};
use crate::observe::kmsg::KmsgSource;

/// Migrations from the series' trace.
pub struct AmdgpuTrace {
    log: Box<dyn KmsgSource>,
    patterns: TracePatterns,
    /// The control file the trace was turned on in, to turn it off again.
    control: PathBuf,
    map: AddressMap,
    /// Ranges of `populate_mm` lines waiting for their `copy_to_devmem done`: (page, pages).
    started: VecDeque<(u64, u64)>,
}

/// The dynamic debug control file under `debugfs_root`, else the one in /proc.
pub fn control_file(debugfs_root: &Path) -> PathBuf {
    let under = debugfs_root.join(dyndbg::CONTROL);
    if under.exists() {
        under
    } else {
        PathBuf::from(dyndbg::PROC_CONTROL)
    }
}

impl AmdgpuTrace {
    /// Turns the trace on through `control` and reads `log` from now on; an error says why the
    /// trace cannot be evidence here.
    pub fn open(
        patterns: TracePatterns,
        control: &Path,
        log: Box<dyn KmsgSource>,
    ) -> Result<AmdgpuTrace, String> {
        dyndbg::write_control(control, patterns.control_lines()).map_err(|e| e.to_string())?;
        let listing = std::fs::read_to_string(control)
            .map_err(|e| format!("reading back `{}`: {e}", control.display()))?;
        let on = dyndbg::parse_control_listing(&listing)
            .iter()
            .filter(|site| site.enabled())
            .count();
        let trace = AmdgpuTrace {
            log,
            patterns,
            control: control.to_path_buf(),
            map: AddressMap::new(),
            started: VecDeque::new(),
        };
        if on == 0 {
            // Dropping `trace` turns off what was written.
            return Err(format!(
                "`{}` lists no enabled site after `{}`: is the kernel built with the series \
                 and CONFIG_DYNAMIC_DEBUG?",
                control.display(),
                trace.patterns.control_lines().join("`, `")
            ));
        }
        Ok(trace)
    }

    /// One matched line: a finished migration gives its events.
    fn evidence(&mut self, e: dyndbg::TraceEvidence, out: &mut Vec<MigrationEvent>) {
        let failed = e.ret.is_some_and(|r| r != 0);
        match e.kind {
            TraceKind::VramStart => {
                if let (Some(addr), Some(npages)) = (e.addr, e.npages) {
                    self.started.push_back((addr / PAGE_SIZE, npages));
                }
            }
            TraceKind::VramEnd => {
                let Some((page, npages)) = self.started.pop_front() else {
                    eprintln!(
                        "svmconf: amdgpu-trace: `{}` without a populate_mm before it",
                        e.message
                    );
                    return;
                };
                if failed {
                    eprintln!(
                        "svmconf: amdgpu-trace: migration to VRAM failed: {}",
                        e.message
                    );
                    return;
                }
                out.extend(self.map.locate(page, npages).into_iter().map(
                    |(buf, first_page, pages)| MigrationEvent {
                        buf,
                        first_page,
                        pages,
                        from: Location::System,
                        to: Location::Vram,
                        trigger: Trigger::Unnamed,
                        at_ns: e.ts_us.unwrap_or(0) * 1000,
                    },
                ));
            }
            TraceKind::Ram if failed => {
                eprintln!(
                    "svmconf: amdgpu-trace: copy to system memory failed: {}",
                    e.message
                )
            }
            TraceKind::Ram => out.push(MigrationEvent {
                buf: MigrationEvent::UNATTRIBUTED,
                first_page: 0,
                pages: e.npages.unwrap_or(0),
                from: Location::Vram,
                to: Location::System,
                trigger: Trigger::Unnamed,
                at_ns: e.ts_us.unwrap_or(0) * 1000,
            }),
            TraceKind::Failed => {
                eprintln!("svmconf: amdgpu-trace: {}", e.message);
                self.started.pop_back();
            }
            TraceKind::Eviction => {}
        }
    }
}

impl Drop for AmdgpuTrace {
    fn drop(&mut self) {
        // Best effort: a trace left on costs log space, not correctness.
        let _ = dyndbg::write_control(&self.control, &self.patterns.disable_lines());
    }
}

impl GpuObserver for AmdgpuTrace {
    fn name(&self) -> &str {
        "amdgpu-trace"
    }

    fn provides(&self) -> Provides {
        Provides {
            events: true,
            ..Provides::default()
        }
    }

    fn describe(&self) -> String {
        format!(
            "`{}` turned on in `{}`, read from {}",
            self.patterns.control_lines().join("`, `"),
            self.control.display(),
            self.log.describe()
        )
    }

    fn allocated(&mut self, buf: Buf, addr: u64) {
        self.map.insert(buf.id, addr, buf.len);
    }

    fn freed(&mut self, buf: Buf) {
        self.map.remove(buf.id);
    }

    fn take_events(&mut self) -> Option<Vec<MigrationEvent>> {
        let records = match self.log.read_new() {
            Ok(r) => r,
            Err(e) => {
                eprintln!(
                    "svmconf: amdgpu-trace: reading {}: {e}",
                    self.log.describe()
                );
                return Some(Vec::new());
            }
        };
        let mut out = Vec::new();
        for r in &records {
            match self.patterns.match_record(r) {
                Ok(Some(e)) => self.evidence(e, &mut out),
                Ok(None) => {}
                Err(e) => eprintln!("svmconf: amdgpu-trace: {e}"),
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::AllocKind;
    use crate::observe::kmsg::FileKmsg;
    use std::io::Write;

    fn patterns() -> TracePatterns {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/amdgpu-trace.yaml");
        TracePatterns::parse(&std::fs::read_to_string(&file).unwrap(), &file).unwrap()
    }

    /// A control file listing the series' sites, `=p` once "enabled" (a file cannot apply the
    /// writes, so the listing is what the kernel would show after them).
    fn control(dir: &Path, enabled: bool) -> PathBuf {
        let flags = if enabled { "=p" } else { "=_" };
        let path = dir.join("control");
        // A file cannot take the writes as commands: they land over the padding line.
        std::fs::write(
            &path,
            format!(
                "#{:200}\n\
                 # filename:lineno [module]function flags format\n\
                 drivers/gpu/drm/amd/amdgpu/amdgpu_migrate.c:412 [amdgpu]amdgpu_svm_populate_mm \
                 {flags} \"%s: populate_mm: [0x%lx-0x%lx] size=%lu\\012\"\n",
                ""
            ),
        )
        .unwrap();
        path
    }

    fn record(seq: u64, text: &str) -> String {
        format!("7,{seq},{},-;amdgpu: {text}\n", 1000 + seq)
    }

    struct Lab {
        _dir: tempfile::TempDir,
        log: PathBuf,
        control: PathBuf,
    }

    fn lab(enabled: bool) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("kmsg");
        std::fs::write(&log, "").unwrap();
        let control = control(dir.path(), enabled);
        Lab {
            _dir: dir,
            log,
            control,
        }
    }

    /// A trace opened on `lab`, with a 2 MiB malloc allocation `id` at 0x7f3c_0000_0000.
    fn opened(lab: &Lab, id: u32) -> AmdgpuTrace {
        let log = Box::new(FileKmsg::open(&lab.log).unwrap());
        let mut trace = AmdgpuTrace::open(patterns(), &lab.control, log).unwrap();
        let buf = Buf {
            id,
            kind: AllocKind::Malloc,
            len: 1 << 21,
        };
        trace.allocated(buf, 0x7f3c_0000_0000);
        trace
    }

    fn append(path: &Path, lines: &[String]) {
        let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        for l in lines {
            f.write_all(l.as_bytes()).unwrap();
        }
    }

    #[test]
    fn a_migration_to_vram_and_a_copy_back_become_events() {
        let lab = lab(true);
        let mut trace = opened(&lab, 3);
        append(
            &lab.log,
            &[
                record(
                    1,
                    "amdgpu_svm_populate_mm: populate_mm: [0x7f3c00000000-0x7f3c00200000] size=2097152",
                ),
                record(2, "amdgpu_svm_copy_to_devmem: copy_to_devmem done: npages=512 ret=0"),
                record(3, "amdgpu_svm_copy_to_ram: copy_to_ram done: npages=512 ret=0"),
            ],
        );
        let events = trace.take_events().unwrap();
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!((events[0].buf, events[0].pages), (3, 512));
        assert_eq!(events[0].to, Location::Vram);
        assert_eq!(events[0].trigger, Trigger::Unnamed);
        assert_eq!(events[1].buf, MigrationEvent::UNATTRIBUTED);
        assert_eq!((events[1].pages, events[1].to), (512, Location::System));
        // The control file got the trace's lines, and gets the off lines when it closes.
        let written = std::fs::read_to_string(&lab.control).unwrap();
        assert!(
            written.starts_with("file amdgpu_migrate.c +p\n"),
            "{written}"
        );
        drop(trace);
        let written = std::fs::read_to_string(&lab.control).unwrap();
        assert!(
            written.starts_with("file amdgpu_migrate.c -p\n"),
            "{written}"
        );
    }

    #[test]
    fn a_failed_copy_or_a_range_outside_the_case_is_no_evidence() {
        let lab = lab(true);
        let mut trace = opened(&lab, 1);
        append(
            &lab.log,
            &[
                record(
                    1,
                    "amdgpu_svm_populate_mm: populate_mm: [0x7f3c00000000-0x7f3c00200000] size=2097152",
                ),
                record(2, "amdgpu_svm_copy_to_devmem: copy_to_devmem done: npages=512 ret=-16"),
                record(
                    3,
                    "amdgpu_svm_populate_mm: populate_mm: [0x100000-0x200000] size=1048576",
                ),
                record(4, "amdgpu_svm_copy_to_devmem: copy_to_devmem done: npages=256 ret=0"),
                record(5, "amdgpu_svm_copy_to_ram: copy_to_ram done: npages=4 ret=-12"),
            ],
        );
        assert_eq!(trace.take_events(), Some(vec![]));
    }

    #[test]
    fn a_kernel_without_the_series_sites_says_so_and_is_not_opened() {
        let lab = lab(false);
        let log = Box::new(FileKmsg::open(&lab.log).unwrap());
        let why = AmdgpuTrace::open(patterns(), &lab.control, log)
            .err()
            .unwrap();
        assert!(why.contains("lists no enabled site"), "{why}");
        let missing = lab.control.with_file_name("absent");
        let log = Box::new(FileKmsg::open(&lab.log).unwrap());
        let why = AmdgpuTrace::open(patterns(), &missing, log).err().unwrap();
        assert!(why.contains("absent"), "{why}");
    }
}
