//! The KFD SMI observer: a reader thread that keeps the kernel's 1 KiB event fifo drained, and
//! the observer that turns what it read into migration evidence about the case's allocations.
//!
//! The kernel side (`kfd_smi_events.c`): `read()` on the fd `AMDKFD_IOC_SMI_EVENTS` returned
//! never blocks; it returns whatever the fifo holds, or `EAGAIN` when it is empty, and `poll()`
//! says when there is something. An event that finds the fifo full is dropped without a trace,
//! and a migration of a few hundred MiB in 2 MiB ranges writes more than 1 KiB of events, so a
//! thread waits in `poll()` and reads as soon as the kernel writes. A case asking for its events
//! right after a migration drains the fd itself first, under the same lock, so an event the
//! kernel wrote before the migration call returned is never left behind in the fifo.
//!
//! The fd comes from the backend's FFI (the ioctl is there); this module takes any file that
//! behaves the same way (non-blocking reads, `poll()`), so a pipe stands in for the kernel in
//! the tests.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::smi::{AddressMap, MigrationCollector, SmiEvent, SmiStream};
use super::smi::{KFD_SMI_FIFO_SIZE, MIGRATION_EVENTS};
use crate::device::observer::{GpuObserver, Provides};
use crate::device::{Buf, MigrationEvent};

/// How long the reader thread waits in `poll()` before looking at its stop flag: the most a
/// closing observer waits for its thread.
const POLL_MS: u16 = 50;

/// What was read and not yet taken.
#[derive(Debug, Default)]
struct Inbox {
    stream: SmiStream,
    events: Vec<SmiEvent>,
    /// Lines that are not SMI events, and read errors, as messages.
    problems: Vec<String>,
    /// The fd said end of file (a pipe whose writer closed; the kernel's fd never does) or failed.
    ended: Option<String>,
}

struct Shared {
    file: File,
    inbox: Mutex<Inbox>,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inbox> {
        // A panic elsewhere while holding the lock left whole values behind; keep reading.
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads until the fd has nothing more; what it read goes to the inbox.
    fn drain(&self) {
        let mut inbox = self.lock();
        if inbox.ended.is_some() {
            return;
        }
        let mut buf = [0u8; KFD_SMI_FIFO_SIZE];
        loop {
            match (&self.file).read(&mut buf) {
                Ok(0) => {
                    if let Some(e) = inbox.stream.finish() {
                        inbox.problems.push(e.to_string());
                    }
                    inbox.ended = Some("end of file".into());
                    return;
                }
                Ok(n) => {
                    for parsed in inbox.stream.push(&buf[..n]) {
                        match parsed {
                            Ok(event) => inbox.events.push(event),
                            Err(e) => inbox.problems.push(e.to_string()),
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    inbox.ended = Some(crate::util::text::io_reason(&e));
                    return;
                }
            }
        }
    }
}

/// A thread keeping one SMI fd drained; stopped and joined when dropped.
pub struct SmiReader {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl SmiReader {
    /// Starts reading `file`, which must not block on `read()` when empty (the SMI fd does
    /// not; a pipe needs `O_NONBLOCK`).
    pub fn start(file: File) -> io::Result<SmiReader> {
        let shared = Arc::new(Shared {
            file,
            inbox: Mutex::new(Inbox::default()),
            stop: AtomicBool::new(false),
        });
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("kfd-smi".into())
            .spawn(move || {
                while !theirs.stop.load(Ordering::Relaxed) {
                    let mut fds = [PollFd::new(theirs.file.as_fd(), PollFlags::POLLIN)];
                    match poll(&mut fds, PollTimeout::from(POLL_MS)) {
                        Ok(0) => continue,
                        Ok(_) => theirs.drain(),
                        Err(nix::errno::Errno::EINTR) => continue,
                        Err(e) => {
                            theirs.lock().ended = Some(format!("poll: {}", e.desc()));
                            return;
                        }
                    }
                    let inbox = theirs.lock();
                    if inbox.ended.is_some() {
                        return;
                    }
                }
            })?;
        Ok(SmiReader {
            shared,
            thread: Some(thread),
        })
    }

    /// Every event read so far, after reading what the fd holds now; and the lines that were
    /// not events.
    pub fn take(&self) -> (Vec<SmiEvent>, Vec<String>) {
        self.shared.drain();
        let mut inbox = self.shared.lock();
        (
            std::mem::take(&mut inbox.events),
            std::mem::take(&mut inbox.problems),
        )
    }

    /// Why reading stopped, if it did.
    pub fn ended(&self) -> Option<String> {
        self.shared.lock().ended.clone()
    }
}

impl Drop for SmiReader {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Migration evidence from KFD SMI events, for one GPU and this process.
pub struct KfdSmi {
    reader: SmiReader,
    map: AddressMap,
    collector: MigrationCollector,
    pid: u32,
    source: String,
}

impl KfdSmi {
    /// Observes the events read from `file` (the fd of `AMDKFD_IOC_SMI_EVENTS` for the GPU with
    /// KFD id `gpu_id`, its mask already written) that belong to process `pid`. `source` says
    /// where they come from, for run.json.
    pub fn new(file: File, gpu_id: u32, pid: u32, source: String) -> io::Result<KfdSmi> {
        Ok(KfdSmi {
            reader: SmiReader::start(file)?,
            map: AddressMap::new(),
            collector: MigrationCollector::new(gpu_id),
            pid,
            source,
        })
    }

    /// The events this observer asks the kernel for.
    pub fn mask() -> [u8; 8] {
        super::smi::mask_bytes(&MIGRATION_EVENTS)
    }
}

/// The process an event is about, for the events that name one.
fn pid_of(event: &SmiEvent) -> Option<u32> {
    match *event {
        SmiEvent::MigrateStart { pid, .. }
        | SmiEvent::MigrateEnd { pid, .. }
        | SmiEvent::PageFaultStart { pid, .. }
        | SmiEvent::PageFaultEnd { pid, .. }
        | SmiEvent::QueueEviction { pid, .. }
        | SmiEvent::QueueRestore { pid, .. }
        | SmiEvent::UnmapFromGpu { pid, .. }
        | SmiEvent::VmFault { pid, .. }
        | SmiEvent::ProcessStart { pid, .. }
        | SmiEvent::ProcessEnd { pid, .. } => Some(pid),
        _ => None,
    }
}

impl GpuObserver for KfdSmi {
    fn name(&self) -> &str {
        "kfd-smi"
    }

    fn provides(&self) -> Provides {
        Provides {
            events: true,
            ..Provides::default()
        }
    }

    fn describe(&self) -> String {
        self.source.clone()
    }

    fn allocated(&mut self, buf: Buf, addr: u64) {
        self.map.insert(buf.id, addr, buf.len);
    }

    fn freed(&mut self, buf: Buf) {
        self.map.remove(buf.id);
    }

    /// Finished migrations of this process over the case's allocations. What cannot be
    /// evidence (a line that is not an event, a migration that failed, one to another GPU) is
    /// written to stderr, which the case's output keeps, and the rest still counts.
    fn take_events(&mut self) -> Option<Vec<MigrationEvent>> {
        let (events, problems) = self.reader.take();
        for p in problems {
            eprintln!("svmconf: kfd-smi: {p}");
        }
        let mut out = Vec::new();
        for event in events {
            if pid_of(&event).is_some_and(|pid| pid != self.pid) {
                continue;
            }
            match self.collector.observe(&event, &self.map) {
                Ok(mut moved) => out.append(&mut moved),
                Err(e) => eprintln!("svmconf: kfd-smi: {e}"),
            }
        }
        if let Some(why) = self.reader.ended() {
            eprintln!("svmconf: kfd-smi: reading stopped: {why}; later migrations are not seen");
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::amd::smi::SmiError;
    use crate::device::{Location, Trigger, PAGE_SIZE};
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use std::io::Write;
    use std::time::{Duration, Instant};

    const GPU: u32 = 0x3a2f;
    const PID: u32 = 4242;

    /// A pipe standing in for the SMI fd: the read end without blocking, as the kernel's is.
    fn pipe() -> (File, File) {
        let (r, w) = std::io::pipe().unwrap();
        let r = File::from(std::os::fd::OwnedFd::from(r));
        let flags = OFlag::from_bits_truncate(fcntl(&r, FcntlArg::F_GETFL).unwrap());
        fcntl(&r, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).unwrap();
        (r, File::from(std::os::fd::OwnedFd::from(w)))
    }

    fn buf(id: u32, len: u64) -> Buf {
        Buf {
            id,
            len,
            kind: crate::device::AllocKind::Managed,
        }
    }

    /// A migration of `npages` from `addr`, start and end, as MIGRATE_START/END lines.
    fn migration(pid: u32, addr: u64, npages: u64, to: u32, trigger: i32) -> String {
        let (from, page) = (if to == 0 { GPU } else { 0 }, addr / PAGE_SIZE);
        format!(
            "5 1000 -{pid} @{page:x}({npages:x}) {from:x}->{to:x} 0:{GPU:x} {trigger}\n\
             6 2000 -{pid} @{page:x}({npages:x}) {from:x}->{to:x} {trigger} 0\n"
        )
    }

    #[test]
    fn events_written_before_the_take_are_there_without_waiting_for_the_thread() {
        let (r, mut w) = pipe();
        let mut smi = KfdSmi::new(r, GPU, PID, "test".into()).unwrap();
        let b = buf(1, 16 * PAGE_SIZE);
        smi.allocated(b, 0x7f00_0000_0000);
        w.write_all(migration(PID, 0x7f00_0000_0000, 16, GPU, 0).as_bytes())
            .unwrap();
        let events = smi.take_events().unwrap();
        assert_eq!(
            events,
            vec![MigrationEvent {
                buf: 1,
                first_page: 0,
                pages: 16,
                from: Location::System,
                to: Location::Vram,
                trigger: Trigger::Prefetch,
                at_ns: 1000,
            }]
        );
        assert_eq!(smi.take_events(), Some(vec![]), "taken once");
    }

    #[test]
    fn the_thread_keeps_reading_more_than_the_kernel_fifo_holds() {
        // 200 migrations are about 18 KiB of lines: far more than the kernel's 1 KiB fifo, so
        // they only all arrive if someone reads while they are written. A pipe holds 64 KiB, so
        // the writer paces itself by what the reader has taken from the pipe.
        let (r, mut w) = pipe();
        let mut smi = KfdSmi::new(r, GPU, PID, "test".into()).unwrap();
        let base = 0x7f00_0000_0000u64;
        smi.allocated(buf(1, 200 * 512 * PAGE_SIZE), base);
        let writer = std::thread::spawn(move || {
            for i in 0..200u64 {
                let line = migration(PID, base + i * 512 * PAGE_SIZE, 512, GPU, 1);
                w.write_all(line.as_bytes()).unwrap();
                if i % 10 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        writer.join().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut pages = 0;
        while pages < 200 * 512 && Instant::now() < deadline {
            pages += smi
                .take_events()
                .unwrap()
                .iter()
                .map(|e| e.pages)
                .sum::<u64>();
        }
        assert_eq!(pages, 200 * 512);
    }

    #[test]
    fn other_processes_failures_and_unknown_lines_are_not_evidence() {
        let (r, mut w) = pipe();
        let mut smi = KfdSmi::new(r, GPU, PID, "test".into()).unwrap();
        let base = 0x7f00_0000_0000u64;
        smi.allocated(buf(1, 4 * PAGE_SIZE), base);
        let page = base / PAGE_SIZE;
        let text = format!(
            "{}\
             6 3000 -{PID} @{page:x}(4) 0->{GPU:x} 1 -12\n\
             this is not an event\n\
             63 a future event\n\
             {}",
            migration(PID + 1, base, 4, GPU, 0),
            migration(PID, base, 4, 0, 2),
        );
        w.write_all(text.as_bytes()).unwrap();
        let events = smi.take_events().unwrap();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].to, Location::System);
        assert_eq!(events[0].trigger, Trigger::CpuFault);
    }

    #[test]
    fn a_freed_allocation_has_no_more_events_and_an_ended_fd_is_said() {
        let (r, mut w) = pipe();
        let mut smi = KfdSmi::new(r, GPU, PID, "test".into()).unwrap();
        let b = buf(1, 4 * PAGE_SIZE);
        smi.allocated(b, 0x7f00_0000_0000);
        smi.freed(b);
        w.write_all(migration(PID, 0x7f00_0000_0000, 4, GPU, 0).as_bytes())
            .unwrap();
        drop(w);
        assert_eq!(smi.take_events(), Some(vec![]));
        assert_eq!(smi.reader.ended().as_deref(), Some("end of file"));
    }

    #[test]
    fn a_line_cut_by_the_end_is_a_problem_not_an_event() {
        let (r, mut w) = pipe();
        let reader = SmiReader::start(r).unwrap();
        w.write_all(b"6 2000 -1 @7f0000000(4) 0->3a2f").unwrap();
        drop(w);
        let deadline = Instant::now() + Duration::from_secs(5);
        while reader.ended().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let (events, problems) = reader.take();
        assert!(events.is_empty());
        assert_eq!(problems.len(), 1, "{problems:?}");
        let cut = SmiError::Unterminated {
            text: "6 2000 -1 @7f0000000(4) 0->3a2f".into(),
        };
        assert_eq!(problems[0], cut.to_string());
    }

    #[test]
    fn dropping_the_reader_stops_its_thread_promptly() {
        let (r, _w) = pipe();
        let reader = SmiReader::start(r).unwrap();
        let t = Instant::now();
        drop(reader);
        assert!(t.elapsed() < Duration::from_secs(2));
    }
}
