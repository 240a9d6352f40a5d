//! Tests of the kernel log: the record parser, the file source, attribution of records to
//! overlapping cases, and classification.

use super::*;
use rstest::rstest;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

// --- the parser --------------------------------------------------------------------------------

fn rec(level: u8, facility: u8, seq: u64, ts_us: u64, text: &str) -> Record {
    Record {
        level,
        facility,
        seq,
        ts_us,
        text: text.to_string(),
    }
}

#[rstest]
#[case::kernel(
    "6,339,5140900,-;NET: Registered protocol family 10",
    rec(6, 0, 339, 5140900, "NET: Registered protocol family 10")
)]
#[case::facility(
    "30,340,5690716,-;udevd[80]: starting version 181",
    rec(6, 3, 340, 5690716, "udevd[80]: starting version 181")
)]
#[case::trailing_newline("4,1,2,-;warn\n", rec(4, 0, 1, 2, "warn"))]
#[case::dictionary(
    "7,160,424069,-;pci_root PNP0A03:00: host bridge window\n SUBSYSTEM=acpi\n DEVICE=+acpi:PNP0A03:00\n",
    rec(7, 0, 160, 424069, "pci_root PNP0A03:00: host bridge window")
)]
#[case::escapes(
    r"3,9,10,-;tab\x09here \x5c back caf\xc3\xa9",
    rec(3, 0, 9, 10, "tab\there \\ back café")
)]
#[case::escaped_newline(r"4,9,10,-;two\x0alines", rec(4, 0, 9, 10, "two\nlines"))]
#[case::invalid_utf8(r"4,9,10,-;bad \xff byte", rec(4, 0, 9, 10, "bad \u{fffd} byte"))]
#[case::stray_backslash(
    r"4,9,10,-;a \q and \x4 end \x",
    rec(4, 0, 9, 10, r"a \q and \x4 end \x")
)]
#[case::fragment_flag("4,9,10,c;part", rec(4, 0, 9, 10, "part"))]
#[case::extra_fields("6,5,7,-,caller=T123,future;msg", rec(6, 0, 5, 7, "msg"))]
#[case::semicolon_in_message("6,5,7,-;a;b", rec(6, 0, 5, 7, "a;b"))]
#[case::empty_message("6,5,7,-;", rec(6, 0, 5, 7, ""))]
#[case::huge_seq(
    "0,18446744073709551615,18446744073709551615,-;x",
    rec(0, 0, u64::MAX, u64::MAX, "x")
)]
#[case::user_marker(
    "13,41,99,-;svmconf: begin a::b",
    rec(5, 1, 41, 99, "svmconf: begin a::b")
)]
fn parses(#[case] raw: &str, #[case] want: Record) {
    assert_eq!(parse_record(raw), Ok(want));
}

#[rstest]
#[case::empty("", "empty kernel log record")]
#[case::blank("\n", "empty kernel log record")]
#[case::truncated("6,12,345", "`6,12,345` has no `;` before its message (truncated?)")]
#[case::no_timestamp("6,12;msg", "has no timestamp")]
#[case::no_flags("6,12,345;msg", "has no flags")]
#[case::empty_flags("6,12,345,;msg", "has no flags")]
#[case::no_seq(";msg", "has no prefix")]
#[case::word_prefix("x,1,2,-;m", "prefix `x` is not a decimal number in range")]
#[case::signed_prefix("+6,1,2,-;m", "prefix `+6` is not a decimal number in range")]
#[case::seq_overflow(
    "6,18446744073709551616,2,-;m",
    "sequence number `18446744073709551616` is not a decimal number in range"
)]
#[case::negative_ts("6,1,-2,-;m", "timestamp `-2` is not a decimal number in range")]
#[case::facility_too_large("4096,1,2,-;m", "prefix `4096` is not a syslog priority")]
#[case::orphan(
    " SUBSYSTEM=pci",
    "is a dictionary line (it starts with a space) without the record"
)]
#[case::second_line(
    "6,1,2,-;m\nnot a dictionary",
    "line 2 `not a dictionary` is not a dictionary entry"
)]
#[case::no_equals(
    "6,1,2,-;m\n SUBSYSTEM=pci\n DEVICE",
    "line 3 ` DEVICE` is not a dictionary entry"
)]
fn rejects(#[case] raw: &str, #[case] message: &str) {
    let e = parse_record(raw).expect_err(raw);
    assert!(e.to_string().contains(message), "{e}");
}

#[test]
fn a_long_bad_record_is_quoted_short() {
    let raw = format!("6,1,2;{}", "x".repeat(10_000));
    let e = parse_record(&raw).unwrap_err().to_string();
    assert!(e.len() < 400, "{e}");
    assert!(e.contains("xxx..."), "{e}");
}

#[test]
fn records_round_trip_through_the_kmsg_format() {
    let r = rec(4, 1, 77, 123, "odd \\ text\twith é and\nnewline");
    let line = r.to_kmsg_line();
    assert!(line.is_ascii() && !line.contains('\n'), "{line}");
    assert_eq!(
        line,
        r"12,77,123,-;odd \x5c text\x09with \xc3\xa9 and\x0anewline"
    );
    assert_eq!(parse_record(&line), Ok(r));
}

// --- the file source ---------------------------------------------------------------------------

struct LogFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn log_file(initial: &str) -> LogFile {
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join("kmsg.txt");
    std::fs::write(&path, initial).expect("log file");
    LogFile { _dir: dir, path }
}

impl LogFile {
    /// Appends as a kernel would: whole lines in one write.
    fn append(&self, text: &str) {
        let mut f = OpenOptions::new().append(true).open(&self.path).unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    /// Appends a kernel record (facility 0) with this sequence number.
    fn kernel(&self, level: u8, seq: u64, text: &str) {
        self.append(&format!(
            "{}\n",
            rec(level, 0, seq, seq * 10, text).to_kmsg_line()
        ));
    }
}

fn texts(records: &[Record]) -> Vec<&str> {
    records.iter().map(|r| r.text.as_str()).collect()
}

#[test]
fn file_source_returns_only_what_was_appended_since_the_last_read() {
    let f = log_file("6,1,10,-;from before the run\n");
    let mut k = FileKmsg::open(&f.path).unwrap();
    assert_eq!(k.read_new().unwrap(), vec![]);

    f.kernel(4, 2, "first");
    f.kernel(6, 3, "second");
    assert_eq!(texts(&k.read_new().unwrap()), ["first", "second"]);
    assert_eq!(k.read_new().unwrap(), vec![]);

    // A writer mid-line: nothing of that line until it is complete.
    f.append("6,4,40,-;whole\n6,5,50,-;par");
    assert_eq!(texts(&k.read_new().unwrap()), ["whole"]);
    assert_eq!(k.read_new().unwrap(), vec![]);
    f.append("tial\n SUBSYSTEM=pci\n DEVICE=+pci:0000:c1:00.0\n");
    assert_eq!(texts(&k.read_new().unwrap()), ["partial"]);

    // Dictionary lines whose record was already returned are dropped with it.
    f.append(" SUBSYSTEM=late\n6,6,60,-;third\n");
    assert_eq!(texts(&k.read_new().unwrap()), ["third"]);
    assert!(k.take_notes().is_empty());
}

#[test]
fn file_source_from_start_replays_the_whole_file() {
    let f = log_file("6,1,10,-;one\n\n6,2,20,-;two\n");
    let mut k = FileKmsg::from_start(&f.path).unwrap();
    assert_eq!(texts(&k.read_new().unwrap()), ["one", "two"]);
}

#[test]
fn file_source_skips_a_bad_line_and_names_it() {
    let f = log_file("");
    let mut k = FileKmsg::open(&f.path).unwrap();
    f.append("6,1,10,-;good\nthis is not a record\n6,2,20,-;also good\n");
    assert_eq!(texts(&k.read_new().unwrap()), ["good", "also good"]);
    let notes = k.take_notes();
    assert_eq!(notes.len(), 1, "{notes:?}");
    let want = format!(
        "{}:2: kernel log record `this is not a record` has no `;`",
        f.path.display()
    );
    assert!(notes[0].starts_with(&want), "{notes:?}");
}

#[test]
fn file_markers_continue_the_sequence_as_user_notices() {
    let f = log_file("6,41,410,-;before\n");
    let mut k = FileKmsg::open(&f.path).unwrap();
    f.kernel(4, 42, "appended, not yet read");
    k.write_marker("svmconf: begin a::b").unwrap();
    k.write_marker("svmconf: end a::b").unwrap();
    let got = k.read_new().unwrap();
    assert_eq!(
        got,
        vec![
            rec(4, 0, 42, 420, "appended, not yet read"),
            rec(5, USER_FACILITY, 43, 420, "svmconf: begin a::b"),
            rec(5, USER_FACILITY, 44, 420, "svmconf: end a::b"),
        ]
    );
    assert!(got[1].is_marker() && !got[0].is_marker());
}

#[test]
fn a_missing_file_is_an_error_at_open() {
    let f = log_file("");
    let e = FileKmsg::open(&f.path.with_file_name("nothing"))
        .err()
        .expect("error");
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
}

// --- attribution -------------------------------------------------------------------------------

fn file_log(f: &LogFile) -> KernelLog {
    KernelLog::new(Box::new(FileKmsg::open(&f.path).unwrap()))
}

#[test]
fn a_span_gets_the_records_between_its_markers_and_nothing_else() {
    let f = log_file("6,1,10,-;boot\n");
    let log = file_log(&f);
    f.kernel(4, 2, "before the case");
    let span = log.begin("prefetch::to_vram::2MiB");
    assert_eq!(span.case(), "prefetch::to_vram::2MiB");
    f.kernel(4, 4, "during the case");
    let got = log.end(span);
    f.kernel(4, 6, "after the case");
    assert_eq!(texts(&got), ["during the case"]);
    assert_eq!(log.buffered(), 0, "nothing is kept once no span is open");
    assert!(log.notes().is_empty(), "{:?}", log.notes());

    // The markers went into the log for a person reading dmesg.
    let all = std::fs::read_to_string(&f.path).unwrap();
    assert!(
        all.contains(";svmconf: begin prefetch::to_vram::2MiB\n"),
        "{all}"
    );
    assert!(
        all.contains(";svmconf: end prefetch::to_vram::2MiB\n"),
        "{all}"
    );
}

#[test]
fn overlapping_spans_on_two_threads_share_what_they_overlap() {
    let f = log_file("");
    let log = file_log(&f);
    let step = Barrier::new(3);
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| {
            let span = log.begin("a");
            step.wait(); // 1: a open
            step.wait(); // 2: L1 logged
            step.wait(); // 3: b open
            step.wait(); // 4: L2 logged
            let got = log.end(span);
            step.wait(); // 5: a ended
            step.wait(); // 6: L3 logged
            got
        });
        let b = s.spawn(|| {
            step.wait();
            step.wait();
            let span = log.begin("b");
            step.wait();
            step.wait();
            step.wait();
            step.wait();
            log.end(span)
        });
        step.wait();
        f.kernel(4, 100, "L1");
        step.wait();
        step.wait();
        f.kernel(4, 101, "L2");
        step.wait();
        step.wait();
        f.kernel(4, 102, "L3");
        step.wait();
        (a.join().unwrap(), b.join().unwrap())
    });
    // b's begin marker lies inside a's window and a's end marker inside b's: neither shows.
    assert_eq!(texts(&a), ["L1", "L2"]);
    assert_eq!(texts(&b), ["L2", "L3"]);
    assert_eq!(log.buffered(), 0);
}

/// A source whose markers cannot be written, as /dev/kmsg for a user without root; counts the
/// tries.
struct NoMarkers(FileKmsg, Arc<AtomicUsize>);

impl KmsgSource for NoMarkers {
    fn read_new(&mut self) -> io::Result<Vec<Record>> {
        self.0.read_new()
    }
    fn write_marker(&mut self, _: &str) -> io::Result<()> {
        self.1.fetch_add(1, Ordering::Relaxed);
        Err(io::Error::from_raw_os_error(libc::EACCES))
    }
    fn describe(&self) -> String {
        "/dev/kmsg".to_string()
    }
}

#[test]
fn without_markers_records_are_attributed_by_read_order_and_it_is_said_once() {
    let f = log_file("");
    let tries = Arc::new(AtomicUsize::new(0));
    let source = NoMarkers(FileKmsg::open(&f.path).unwrap(), tries.clone());
    let log = KernelLog::new(Box::new(source));
    f.kernel(4, 1, "before");
    let span = log.begin("a");
    f.kernel(4, 2, "during a");
    assert_eq!(texts(&log.end(span)), ["during a"]);
    f.kernel(4, 3, "between");
    let span = log.begin("b");
    f.kernel(4, 4, "during b");
    assert_eq!(texts(&log.end(span)), ["during b"]);

    let notes = log.notes();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].starts_with("cannot write markers to /dev/kmsg: permission denied;"),
        "{notes:?}"
    );
    assert!(!std::fs::read_to_string(&f.path)
        .unwrap()
        .contains("svmconf"));
    assert_eq!(
        tries.load(Ordering::Relaxed),
        1,
        "one failure ends the trying"
    );
}

/// A source where the kernel logs a record just after each marker lands, before anyone reads:
/// what read order alone would attribute wrongly.
struct LateReader {
    file: FileKmsg,
    path: PathBuf,
    seq: u64,
}

impl KmsgSource for LateReader {
    fn read_new(&mut self) -> io::Result<Vec<Record>> {
        self.file.read_new()
    }
    fn write_marker(&mut self, text: &str) -> io::Result<()> {
        self.file.write_marker(text)?;
        self.seq += 10;
        let line = rec(4, 0, self.seq, 0, &format!("logged just after `{text}`"));
        let mut f = OpenOptions::new().append(true).open(&self.path)?;
        f.write_all(format!("{}\n", line.to_kmsg_line()).as_bytes())
    }
    fn describe(&self) -> String {
        "late".to_string()
    }
}

#[test]
fn markers_place_records_logged_around_them_exactly() {
    let f = log_file("");
    let log = KernelLog::new(Box::new(LateReader {
        file: FileKmsg::open(&f.path).unwrap(),
        path: f.path.clone(),
        seq: 0,
    }));
    let span = log.begin("a");
    let got = log.end(span);
    // Read order alone would give the opposite: the first line was read by `begin`, the second
    // by `end`. The markers show the first came after `a` began and the second after it ended.
    assert_eq!(texts(&got), ["logged just after `svmconf: begin a`"]);
}

#[test]
fn lost_records_are_noted_with_the_cases_that_ran() {
    let f = log_file("6,1,10,-;boot\n");
    let log = file_log(&f);
    let span = log.begin("eviction::device::2MiB");
    // The begin marker took seq 2; the kernel's buffer then wrapped past 3..=6.
    f.kernel(3, 7, "after the gap");
    assert_eq!(texts(&log.end(span)), ["after the gap"]);
    assert_eq!(
        log.notes(),
        [
            "kernel log records 3..=6 were lost before they were read while \
          eviction::device::2MiB ran (the kernel's buffer wrapped)"
        ]
    );
}

#[test]
fn a_source_that_stops_reading_is_noted_and_the_span_keeps_what_it_had() {
    let f = log_file("");
    let log = file_log(&f);
    let span = log.begin("a");
    f.kernel(4, 1, "read before the file went away");
    let other = log.begin("b");
    std::fs::remove_file(&f.path).unwrap();
    assert_eq!(texts(&log.end(span)), ["read before the file went away"]);
    let _ = log.end(other);
    // Both ends failed to write and to read the same way: each said once.
    let notes = log.notes();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes[0].starts_with("cannot write markers to "),
        "{notes:?}"
    );
    assert!(notes[1].starts_with("reading "), "{notes:?}");
    assert!(
        notes
            .iter()
            .all(|n| n.contains("no such file or directory")),
        "{notes:?}"
    );
}

#[test]
fn open_names_the_path_and_why_it_cannot_be_read() {
    let f = log_file("");
    let missing = f.path.with_file_name("no-kmsg");
    let e = open(Some(&missing)).err().expect("unavailable");
    assert_eq!(e.path, missing);
    assert_eq!(
        e.to_string(),
        format!(
            "kernel log `{}` is not available: it does not exist",
            missing.display()
        )
    );

    let dir = f.path.parent().unwrap();
    let e = open(Some(dir)).err().expect("unavailable");
    assert!(e.reason.contains("neither a character device"), "{e}");

    let log = open(Some(&f.path)).expect("a file of records opens");
    assert!(log.describe().starts_with(&f.path.display().to_string()));
}

#[rstest]
#[case(libc::EACCES)]
#[case(libc::EPERM)]
fn permission_errors_say_what_reading_needs(#[case] errno: i32) {
    let e = Unavailable::new(Path::new(DEV_KMSG), &io::Error::from_raw_os_error(errno));
    let shown = e.to_string();
    assert!(
        shown.starts_with("kernel log `/dev/kmsg` is not available: "),
        "{shown}"
    );
    assert!(
        shown.contains("CAP_SYSLOG where kernel.dmesg_restrict is 1"),
        "{shown}"
    );
}

#[test]
fn markers_are_one_short_line() {
    assert_eq!(marker(BEGIN, "a::b\nc"), "svmconf: begin a::b?c");
    let long = marker(END, &"é".repeat(2000));
    assert!(
        long.len() <= MARKER_MAX && long.starts_with(END),
        "{}",
        long.len()
    );
}

/// The real /dev/kmsg: the format, the user facility of markers, and that opening skips what
/// was logged before. Where this machine does not let the test read and write it, a skip, and
/// under `CI=true` a failure. The only test of this binary that opens /dev/kmsg; a record
/// another process logs meanwhile is told from the marker by the marker's text.
#[test]
fn dev_kmsg_reads_back_its_own_marker() {
    let mut k = match DevKmsg::open(Path::new(DEV_KMSG)) {
        Ok(k) => k,
        Err(e) => {
            let why = crate::util::text::io_reason(&e);
            crate::needs::missing(
                &format!("a readable {DEV_KMSG} (opening it: {why})"),
                "run as root, or with CAP_SYSLOG where kernel.dmesg_restrict is 1, on a machine \
                 or container that has /dev/kmsg",
            );
            return;
        }
    };
    let text = format!("svmconf: unit test marker {}", std::process::id());
    match k.write_marker(&text) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            crate::needs::missing(
                &format!("a writable {DEV_KMSG}"),
                "run as root (writing /dev/kmsg needs write permission on the node)",
            );
            return;
        }
        Err(e) => panic!("{e}"),
    }
    let records = k.read_new().unwrap();
    let mine = records
        .iter()
        .find(|r| r.text == text)
        .unwrap_or_else(|| panic!("marker not read back: {records:?}"));
    assert_eq!((mine.level, mine.facility), (MARKER_LEVEL, USER_FACILITY));
    assert!(
        records.iter().all(|r| r.seq + 100 >= mine.seq),
        "records from long before the open were read"
    );
}

// --- classification ----------------------------------------------------------------------------

fn allow_list() -> AllowList {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    crate::fixtures::load_with(&root, crate::fixtures::KERNEL_LOG_FILE, AllowList::parse)
        .unwrap_or_else(|e| panic!("{e}"))
        .value
}

#[test]
fn every_named_pattern_compiles() {
    assert_eq!(NAMED_RE.len(), NAMED.len());
}

const GPU: &str = "amdgpu 0000:c1:00.0: amdgpu: ";

#[rstest]
#[case::warn_splat(4, "WARNING: CPU: 3 PID: 1 at drivers/gpu/drm/drm_pagemap.c:412 drm_pagemap_migrate_to_devmem+0x1a4/0x5c0", Some(flag::WARNING))]
#[case::warn_at_info(
    6,
    "WARNING: CPU: 3 PID: 1 at mm/migrate_device.c:123 migrate_vma_setup+0x5/0x10",
    Some(flag::WARNING)
)]
#[case::lockdep(
    4,
    "WARNING: possible circular locking dependency detected",
    Some(flag::WARNING)
)]
#[case::bug_page_fault(
    1,
    "BUG: unable to handle page fault for address: ffffc90000d8f000",
    Some(flag::BUG)
)]
#[case::kasan(
    3,
    "BUG: KASAN: use-after-free in migrate_vma_pages+0x4a/0x120",
    Some(flag::BUG)
)]
#[case::bug_on(4, "kernel BUG at mm/migrate_device.c:578!", Some(flag::BUG))]
#[case::oops(4, "Oops: 0000 [#1] PREEMPT SMP NOPTI", Some(flag::OOPS))]
#[case::oops_gp(4, "Oops: general protection fault, probably for non-canonical address 0xdead000000000122: 0000 [#1] SMP", Some(flag::OOPS))]
#[case::old_gp(4, "general protection fault: 0000 [#1] SMP PTI", Some(flag::OOPS))]
#[case::panic(0, "Kernel panic - not syncing: Fatal exception", Some(flag::OOPS))]
#[case::call_trace(4, "Call Trace:", Some(flag::CALL_TRACE))]
#[case::arm64_trace(6, "Call trace:", Some(flag::CALL_TRACE))]
#[case::gfxhub(
    3,
    "amdgpu 0000:c1:00.0: amdgpu: [gfxhub] page fault (src_id:0 ring:40 vmid:8 pasid:32770)",
    Some(flag::GPU_PAGE_FAULT)
)]
#[case::retry(3, "amdgpu 0000:c1:00.0: amdgpu: [gfxhub0] retry page fault (src_id:0 ring:0 vmid:8 pasid:32770, for process svmconf pid 4242 thread svmconf pid 4242)", Some(flag::GPU_PAGE_FAULT))]
#[case::no_retry(
    3,
    "amdgpu 0000:c1:00.0: amdgpu: [mmhub0] no-retry page fault (src_id:0 ring:40 vmid:0 pasid:0)",
    Some(flag::GPU_PAGE_FAULT)
)]
#[case::fault_at_info(
    6,
    "amdgpu 0000:c1:00.0: amdgpu: [mmhub] no-retry page fault (src_id:0 ring:40 vmid:0 pasid:0)",
    Some(flag::GPU_PAGE_FAULT)
)]
#[case::fault_address(3, "amdgpu 0000:c1:00.0: amdgpu:   in page starting at address 0x00007f0000200000 from IH client 0x1b (UTCL2)", Some(flag::GPU_PAGE_FAULT))]
#[case::fault_status(
    3,
    "amdgpu 0000:c1:00.0: amdgpu: VM_L2_PROTECTION_FAULT_STATUS:0x00841051",
    Some(flag::GPU_PAGE_FAULT)
)]
#[case::gcvm_status(
    3,
    "amdgpu 0000:03:00.0: amdgpu: GCVM_L2_PROTECTION_FAULT_STATUS:0x00800932",
    Some(flag::GPU_PAGE_FAULT)
)]
#[case::splat_line(4, " <TASK>", Some(flag::LEVEL_WARNING))]
#[case::cut_here(4, "------------[ cut here ]------------", Some(flag::LEVEL_WARNING))]
#[case::svm_warning(
    4,
    "amdgpu 0000:c1:00.0: amdgpu: SVM mapping failed, exceeds resident system memory limit",
    Some(flag::LEVEL_WARNING)
)]
#[case::kfd_error(3, "amdgpu: Failed to evict process queues", Some(flag::LEVEL_ERROR))]
#[case::emerg(0, "something dire", Some(flag::LEVEL_ERROR))]
#[case::notice(5, "svmconf-like notice", None)]
#[case::info(
    6,
    "amdgpu 0000:c1:00.0: amdgpu: SMU is initialized successfully!",
    None
)]
#[case::debug(7, "[drm:amdgpu_vm_handle_fault] retry fault handled", None)]
#[case::warning_mid_line(6, "ACPI: no WARNING: here at the start", None)]
#[case::cpu_page_fault_word(6, "x86/mm: Checked W+X mappings: passed, no W+X pages found", None)]
#[case::allowed_workqueue(4, "workqueue: svm_range_restore_work [amdgpu] hogged CPU for >10000us 4 times, consider switching to WQ_UNBOUND", None)]
#[case::allowed_hrtimer(4, "hrtimer: interrupt took 1162584 ns", None)]
#[case::allowed_runlist(4, "amdgpu 0000:c1:00.0: amdgpu: Runlist is getting oversubscribed due to too many queues. Expect reduced ROCm performance.", None)]
fn classifies(#[case] level: u8, #[case] text: &str, #[case] want: Option<&str>) {
    let c = classify(&[rec(level, 0, 7, 70, text)], &allow_list());
    assert_eq!(c.lines.len(), 1);
    assert_eq!(c.lines[0].flag.as_deref(), want, "{text}");
    assert_eq!(
        (c.lines[0].level, c.lines[0].seq, c.lines[0].ts_us),
        (level, 7, 70)
    );
    assert_eq!(c.flagged(), want.is_some());
}

#[rstest]
#[case("workqueue: svm_range_restore_work [amdgpu] hogged CPU for >10000us 4 times, consider switching to WQ_UNBOUND")]
#[case("hrtimer: interrupt took 1162584 ns")]
#[case("amdgpu 0000:c1:00.0: amdgpu: Runlist is getting oversubscribed due to too many queues. Expect reduced ROCm performance.")]
fn allowed_lines_flag_without_the_allow_list(#[case] text: &str) {
    let c = classify(&[rec(4, 0, 1, 1, text)], &AllowList::empty());
    assert_eq!(c.lines[0].flag.as_deref(), Some(flag::LEVEL_WARNING));
    assert_eq!(apply(Status::Pass, &c), Status::DmesgWarn);
}

/// The repository's allow-list must never excuse what the suite exists to catch.
#[test]
fn the_repository_allow_list_excuses_no_named_line() {
    let allow = allow_list();
    assert!(!allow.entries().is_empty());
    for line in [
        "WARNING: CPU: 3 PID: 1 at drivers/gpu/drm/drm_pagemap.c:412 x+0x1/0x2",
        "BUG: unable to handle page fault for address: ffffc90000d8f000",
        "Oops: 0000 [#1] PREEMPT SMP NOPTI",
        "Call Trace:",
        "amdgpu 0000:c1:00.0: amdgpu: [gfxhub0] retry page fault (src_id:0 ring:0 vmid:8 pasid:32770)",
        "amdgpu 0000:c1:00.0: amdgpu: VM_L2_PROTECTION_FAULT_STATUS:0x00841051",
    ] {
        assert!(allow.excuse(line).is_none(), "{line}");
    }
}

#[test]
fn severity_and_named_patterns_of_a_splat() {
    let records = [
        rec(6, 0, 1, 1, "informational"),
        rec(4, 0, 2, 2, "------------[ cut here ]------------"),
        rec(
            4,
            0,
            3,
            3,
            "WARNING: CPU: 3 PID: 1 at mm/migrate_device.c:123 f+0x1/0x2",
        ),
        rec(4, 0, 4, 4, "Call Trace:"),
        rec(
            4,
            0,
            5,
            5,
            "WARNING: CPU: 5 PID: 9 at mm/migrate_device.c:456 g+0x1/0x2",
        ),
    ];
    let c = classify(&records, &AllowList::empty());
    assert_eq!(c.worst, Some(Severity::Warning));
    assert_eq!(c.named, ["WARNING", "call trace"]);

    let mut with_fault = records.to_vec();
    with_fault.push(rec(
        6,
        0,
        6,
        6,
        &format!("{GPU}[gfxhub0] no-retry page fault (src_id:0 ring:40 vmid:8 pasid:32770)"),
    ));
    let c = classify(&with_fault, &AllowList::empty());
    assert_eq!(
        c.worst,
        Some(Severity::Error),
        "a GPU page fault is an error at any level"
    );
    assert_eq!(c.named, ["WARNING", "call trace", "GPU page fault"]);

    let c = classify(&[rec(3, 0, 1, 1, "Call Trace:")], &AllowList::empty());
    assert_eq!(
        c.worst,
        Some(Severity::Error),
        "a trace logged as an error stays one"
    );

    let c = classify(&records[..1], &AllowList::empty());
    assert_eq!((c.worst, c.named.len()), (None, 0));
}

#[rstest]
#[case(Status::Pass, true, Status::DmesgWarn)]
#[case(Status::Fail, true, Status::DmesgFail)]
#[case(Status::Pass, false, Status::Pass)]
#[case(Status::Fail, false, Status::Fail)]
#[case(Status::Skip, true, Status::Skip)]
#[case(Status::Timeout, true, Status::Timeout)]
#[case(Status::Crash, true, Status::Crash)]
#[case(Status::Incomplete, true, Status::Incomplete)]
fn apply_turns_pass_and_fail(#[case] status: Status, #[case] flagged: bool, #[case] want: Status) {
    let level = if flagged { 4 } else { 6 };
    let c = classify(&[rec(level, 0, 1, 1, "a line")], &AllowList::empty());
    assert_eq!(apply(status, &c), want);
}

#[test]
fn an_allowed_line_leaves_a_pass_a_pass() {
    let c = classify(
        &[rec(4, 0, 1, 1, "hrtimer: interrupt took 1162584 ns")],
        &allow_list(),
    );
    assert_eq!(c.lines[0].flag, None);
    assert_eq!(c.worst, None);
    assert_eq!(apply(Status::Pass, &c), Status::Pass);
}

// --- the allow-list file -----------------------------------------------------------------------

const ALLOW: &str = "\
allow:
  - pattern: '^hrtimer: interrupt took \\d+ ns$'
    reason: one slow timer interrupt
";

#[test]
fn an_allow_list_parses() {
    let a = AllowList::parse(ALLOW, Path::new("fixtures/kernel-log.yaml")).unwrap();
    assert_eq!(a.entries().len(), 1);
    assert_eq!(a.entries()[0].reason, "one slow timer interrupt");
    assert!(a.excuse("hrtimer: interrupt took 5 ns").is_some());
    assert!(a.excuse("hrtimer: interrupt took 5 ns, twice").is_none());
}

#[rstest]
#[case::unknown_key(
    "patern: 'x'",
    "fixtures/kernel-log.yaml:2:5: allow[0]: unknown field `patern`, expected `pattern` or `reason`"
)]
#[case::bad_regex(
    "pattern: 'x(' ",
    "fixtures/kernel-log.yaml:2:14: allow[0].pattern: not a regular expression: unclosed group"
)]
#[case::empty_pattern(
    "pattern: ''",
    "fixtures/kernel-log.yaml:2:14: allow[0].pattern: an empty pattern would allow every line"
)]
#[case::empty_reason(
    "reason: one slow timer interrupt",
    "fixtures/kernel-log.yaml:3:13: allow[0].reason: expected why the line is harmless, got nothing"
)]
fn allow_list_errors_name_file_line_column_and_field(#[case] replace: &str, #[case] want: &str) {
    let text = if replace.starts_with("reason") {
        ALLOW.replace(replace, "reason: ' '")
    } else {
        let line = ALLOW.lines().nth(1).unwrap().trim_start_matches("  - ");
        ALLOW.replacen(line, replace, 1)
    };
    let e = AllowList::parse(&text, Path::new("fixtures/kernel-log.yaml")).unwrap_err();
    assert!(e.to_string().starts_with(want), "{e}\n---\n{text}");
}

#[test]
fn allow_list_top_level_keys_are_checked() {
    let e = AllowList::parse("allowed: []\n", Path::new("k.yaml")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("k.yaml:1:1: unknown field `allowed`, expected `allow`"),
        "{e}"
    );
    let e = AllowList::parse("allow:\n  - pattern: x\n", Path::new("k.yaml")).unwrap_err();
    assert!(e.to_string().contains("missing field `reason`"), "{e}");
}

#[test]
fn overlapping_spans_charge_each_record_to_the_case_whose_process_it_names() {
    use super::attribute::Charge;
    let f = log_file("");
    let log = file_log(&f);
    let a = log.begin("a");
    let b = log.begin("b");
    log.claim(&a, 100);
    log.claim(&b, 200);
    f.kernel(
        4,
        10,
        "WARNING: CPU: 0 PID: 200 at mm/migrate_device.c:1 f+0x1/0x2",
    );
    f.kernel(
        4,
        11,
        "WARNING: CPU: 0 PID: 57 at mm/migrate_device.c:2 g+0x1/0x2",
    );
    f.kernel(
        4,
        12,
        "WARNING: CPU: 0 PID: 100 at mm/migrate_device.c:3 h+0x1/0x2",
    );
    let of_a = log.end_attributed(a, Vec::new());
    let charges: Vec<&Charge> = of_a.iter().map(|(_, c)| c).collect();
    assert_eq!(
        charges,
        [
            &Charge::Theirs("b".into()),
            &Charge::Unattributed {
                candidates: vec!["a".into(), "b".into()]
            },
            &Charge::Mine,
        ]
    );
    // b ends after a: a's ended window still counts as a candidate, its pid as a's.
    let of_b = log.end_attributed(b, Vec::new());
    let charges: Vec<&Charge> = of_b.iter().map(|(_, c)| c).collect();
    assert_eq!(
        charges,
        [
            &Charge::Mine,
            &Charge::Unattributed {
                candidates: vec!["b".into(), "a".into()]
            },
            &Charge::Theirs("a".into()),
        ]
    );
    assert_eq!(log.buffered(), 0);
}
