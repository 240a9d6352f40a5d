//! The SMI parser against every line shape the kernel has written (kfd_ioctl.h's
//! `KFD_EVENT_FMT_*` and the hand-written formats before them), lines cut or mangled, and the
//! stream split at every byte.

use super::*;
use rstest::rstest;

// --- the ioctl and the mask ----------------------------------------------------------------------

#[test]
fn smi_ioctl_number_and_argument_layout_match_the_header() {
    // _IOWR('K', 0x1F, 8 bytes) = 3 << 30 | 8 << 16 | 'K' << 8 | 0x1F.
    assert_eq!(AMDKFD_IOC_SMI_EVENTS, 0xC008_4B1F);
    assert_eq!(std::mem::size_of::<KfdIoctlSmiEventsArgs>(), 8);
    assert_eq!(std::mem::align_of::<KfdIoctlSmiEventsArgs>(), 4);
    assert_eq!(std::mem::offset_of!(KfdIoctlSmiEventsArgs, gpuid), 0);
    assert_eq!(std::mem::offset_of!(KfdIoctlSmiEventsArgs, anon_fd), 4);
}

#[rstest]
#[case(1, 0x1)]
#[case(5, 0x10)]
#[case(6, 0x20)]
#[case(11, 0x400)]
#[case(13, 0x1000)]
#[case(64, 1 << 63)]
#[case(0, 0)]
#[case(65, 0)]
fn mask_is_one_shifted_by_index_less_one(#[case] index: u32, #[case] mask: u64) {
    assert_eq!(event_mask(index), mask);
}

#[test]
fn event_ids_are_the_headers() {
    let ids: Vec<u32> = SmiEventId::EVENTS.iter().map(|e| *e as u32).collect();
    assert_eq!(ids, (1..=13).collect::<Vec<u32>>());
    assert_eq!(SmiEventId::AllProcess as u32, 64);
    assert_eq!(SmiEventId::from_raw(10), Some(SmiEventId::QueueRestore));
    assert_eq!(SmiEventId::from_raw(14), None);
}

#[test]
fn mask_bytes_are_native_endian_or_of_the_bits() {
    let m = mask_bytes(&[SmiEventId::MigrateStart, SmiEventId::MigrateEnd]);
    assert_eq!(u64::from_ne_bytes(m), 0x30);
    let all = mask_bytes(&MIGRATION_EVENTS);
    assert_eq!(u64::from_ne_bytes(all), 0b111_1111_1100);
}

// --- every format --------------------------------------------------------------------------------

const GPU: u32 = 0x1a2b;

fn start(trigger: MigrateTrigger, prefetch_loc: u32, preferred_loc: u32) -> SmiEvent {
    SmiEvent::MigrateStart {
        ns: 123_456_789,
        pid: 4242,
        start_page: 0x7_f000_0000,
        npages: 0x200,
        from: 0,
        to: GPU,
        prefetch_loc,
        preferred_loc,
        trigger,
    }
}

fn end(from: u32, to: u32, trigger: MigrateTrigger, error: Option<i32>) -> SmiEvent {
    SmiEvent::MigrateEnd {
        ns: 123_999_999,
        pid: 4242,
        start_page: 0x7_f000_0000,
        npages: 0x200,
        from,
        to,
        trigger,
        error,
    }
}

/// Every shape, as `kfd_smi_event_add()` writes it: `"%x "` then the event's format.
pub(super) const LINES: &[&str] = &[
    "1 1092:hip_fill\n",
    "1 1092:two words\n",
    "2 4:1f\n",
    "2 80000000:123456789abcdef0\n",
    "3 1\n",
    "3 2 user trigger\n",
    "3 a job hang on ring:gfx_0.0.0\n",
    "4 1\n",
    "4 2 user trigger\n",
    "5 123456789 -4242 @7f0000000(200) 0->1a2b 1a2b:1a2b 0\n",
    "5 123456789 -4242 @7f0000000(200) 0->1a2b 0:ffffffff 1\n",
    "6 123999999 -4242 @7f0000000(200) 0->1a2b 0\n",
    "6 123999999 -4242 @7f0000000(200) 0->1a2b 0 0\n",
    "6 123999999 -4242 @7f0000000(200) 1a2b->0 3 -16\n",
    "6 123999999 -4242 @7f0000000(200) 1a2b->0 2 0\n",
    "7 1000 -42 @7f0000001(1a2b) W\n",
    "7 1000 -42 @7f0000001(1a2b) R\n",
    "8 1001 -42 @7f0000001(1a2b) M\n",
    "8 1001 -42 @7f0000001(1a2b) U\n",
    "9 2000 -42 1a2b 0\n",
    "9 2000 -42 1a2b 2\n",
    "a 3000 -42 1a2b\n",
    "a 3000 -42 1a2b R\n",
    "a 3000 -42 1a2b 0\n",
    "a 3000 -42 1a2b \0\n",
    "b 4000 -42 @7f0000000(200) 1a2b 1\n",
    "c 2a hip_fill\n",
    "d 2a hip_fill\n",
    "e 5000 -42 1a2b\n",
    "40 x\n",
];

fn expected() -> Vec<SmiEvent> {
    use MigrateTrigger::*;
    vec![
        SmiEvent::VmFault {
            pid: 0x1092,
            task: "hip_fill".into(),
        },
        SmiEvent::VmFault {
            pid: 0x1092,
            task: "two words".into(),
        },
        SmiEvent::ThermalThrottle {
            bitmask: 4,
            counter: 0x1f,
        },
        SmiEvent::ThermalThrottle {
            bitmask: 0x8000_0000,
            counter: 0x1234_5678_9abc_def0,
        },
        SmiEvent::GpuPreReset {
            seq: 1,
            cause: None,
        },
        SmiEvent::GpuPreReset {
            seq: 2,
            cause: Some("user trigger".into()),
        },
        SmiEvent::GpuPreReset {
            seq: 10,
            cause: Some("job hang on ring:gfx_0.0.0".into()),
        },
        SmiEvent::GpuPostReset {
            seq: 1,
            cause: None,
        },
        SmiEvent::GpuPostReset {
            seq: 2,
            cause: Some("user trigger".into()),
        },
        start(Prefetch, GPU, GPU),
        start(PagefaultGpu, 0, 0xffff_ffff),
        end(0, GPU, Prefetch, None),
        end(0, GPU, Prefetch, Some(0)),
        end(GPU, 0, TtmEviction, Some(-16)),
        end(GPU, 0, PagefaultCpu, Some(0)),
        SmiEvent::PageFaultStart {
            ns: 1000,
            pid: 42,
            page: 0x7_f000_0001,
            gpu_id: GPU,
            write: true,
        },
        SmiEvent::PageFaultStart {
            ns: 1000,
            pid: 42,
            page: 0x7_f000_0001,
            gpu_id: GPU,
            write: false,
        },
        SmiEvent::PageFaultEnd {
            ns: 1001,
            pid: 42,
            page: 0x7_f000_0001,
            gpu_id: GPU,
            migrated: true,
        },
        SmiEvent::PageFaultEnd {
            ns: 1001,
            pid: 42,
            page: 0x7_f000_0001,
            gpu_id: GPU,
            migrated: false,
        },
        SmiEvent::QueueEviction {
            ns: 2000,
            pid: 42,
            gpu_id: GPU,
            trigger: QueueEvictionTrigger::Svm,
        },
        SmiEvent::QueueEviction {
            ns: 2000,
            pid: 42,
            gpu_id: GPU,
            trigger: QueueEvictionTrigger::Ttm,
        },
        SmiEvent::QueueRestore {
            ns: 3000,
            pid: 42,
            gpu_id: GPU,
            rescheduled: false,
        },
        SmiEvent::QueueRestore {
            ns: 3000,
            pid: 42,
            gpu_id: GPU,
            rescheduled: true,
        },
        SmiEvent::QueueRestore {
            ns: 3000,
            pid: 42,
            gpu_id: GPU,
            rescheduled: false,
        },
        SmiEvent::QueueRestore {
            ns: 3000,
            pid: 42,
            gpu_id: GPU,
            rescheduled: false,
        },
        SmiEvent::UnmapFromGpu {
            ns: 4000,
            pid: 42,
            start_page: 0x7_f000_0000,
            npages: 0x200,
            gpu_id: GPU,
            trigger: UnmapTrigger::MmuNotifyMigrate,
        },
        SmiEvent::ProcessStart {
            pid: 0x2a,
            task: "hip_fill".into(),
        },
        SmiEvent::ProcessEnd {
            pid: 0x2a,
            task: "hip_fill".into(),
        },
        SmiEvent::Unknown {
            id: 14,
            text: "5000 -42 1a2b".into(),
        },
        SmiEvent::Unknown {
            id: 64,
            text: "x".into(),
        },
    ]
}

#[test]
fn every_format_parses_to_its_fields() {
    let want = expected();
    assert_eq!(LINES.len(), want.len());
    for (line, want) in LINES.iter().zip(want) {
        assert_eq!(parse_line(line), Ok(want), "{line:?}");
    }
}

#[rstest]
#[case::migrate_end_before_error_code("6 9 -1 @10(1) 0->1a2b 1\n", None)]
#[case::migrate_end_success("6 9 -1 @10(1) 0->1a2b 1 0\n", Some(0))]
#[case::migrate_end_ebusy("6 9 -1 @10(1) 0->1a2b 1 -16\n", Some(-16))]
#[case::migrate_end_enomem("6 9 -1 @10(1) 1a2b->0 3 -12", Some(-12))]
fn migrate_end_has_both_shapes(#[case] line: &str, #[case] error: Option<i32>) {
    let got = parse_line(line).unwrap();
    let SmiEvent::MigrateEnd { error: got, .. } = got else {
        panic!("{got:?}");
    };
    assert_eq!(got, error);
}

#[test]
fn without_newline_parses_the_same() {
    for (line, want) in LINES.iter().zip(expected()) {
        let bare = line.strip_suffix('\n').unwrap();
        assert_eq!(parse_line(bare), Ok(want), "{bare:?}");
    }
}

#[test]
fn migrate_triggers_map_onto_the_crates() {
    assert_eq!(
        MigrateTrigger::from_raw(0).to_trigger(),
        Some(Trigger::Prefetch)
    );
    assert_eq!(
        MigrateTrigger::from_raw(1).to_trigger(),
        Some(Trigger::GpuFault)
    );
    assert_eq!(
        MigrateTrigger::from_raw(2).to_trigger(),
        Some(Trigger::CpuFault)
    );
    assert_eq!(
        MigrateTrigger::from_raw(3).to_trigger(),
        Some(Trigger::Eviction)
    );
    assert_eq!(MigrateTrigger::from_raw(4), MigrateTrigger::Other(4));
    assert_eq!(MigrateTrigger::from_raw(4).to_trigger(), None);
    for v in -2..6 {
        assert_eq!(MigrateTrigger::from_raw(v).raw(), v);
        if let Some(t) = MigrateTrigger::from_raw(v).to_trigger() {
            assert_eq!(t as i32, v, "the crate's Trigger carries KFD's numbers");
        }
    }
    assert_eq!(
        QueueEvictionTrigger::from_raw(5),
        QueueEvictionTrigger::CriuRestore
    );
    assert_eq!(
        QueueEvictionTrigger::from_raw(6),
        QueueEvictionTrigger::Other(6)
    );
    assert_eq!(UnmapTrigger::from_raw(2), UnmapTrigger::UnmapFromCpu);
    assert_eq!(UnmapTrigger::from_raw(3), UnmapTrigger::Other(3));
}

// --- bad lines -----------------------------------------------------------------------------------

#[derive(Debug)]
enum Want {
    Empty,
    BadId,
    Truncated(&'static str, &'static str),
    Bad(&'static str, &'static str),
    Trailing(&'static str),
}

#[rstest]
#[case::empty("", Want::Empty)]
#[case::only_newline("\n", Want::Empty)]
#[case::id_not_hex("zz 1 2\n", Want::BadId)]
#[case::id_glued_to_field("5x 1\n", Want::BadId)]
#[case::id_too_big("123456789 1\n", Want::BadId)]
#[case::space_first(" 5 1\n", Want::BadId)]
#[case::id_alone("5", Want::Truncated("MIGRATE_START", "space after the event id"))]
#[case::id_and_space("5 ", Want::Truncated("MIGRATE_START", "timestamp"))]
#[case::cut_in_pid("5 123 -", Want::Truncated("MIGRATE_START", "pid"))]
#[case::cut_in_at("5 123 -42 ", Want::Truncated("MIGRATE_START", "start page"))]
#[case::cut_in_range(
    "5 123 -42 @7f0000000(2",
    Want::Truncated("MIGRATE_START", "`)` after the page count")
)]
#[case::cut_in_arrow(
    "5 123 -42 @7f0000000(200) 0-",
    Want::Truncated("MIGRATE_START", "destination location")
)]
#[case::cut_before_trigger(
    "5 123 -42 @7f0000000(200) 0->1a2b 1a2b:1a2b",
    Want::Truncated("MIGRATE_START", "trigger")
)]
#[case::cut_after_space(
    "6 1 -2 @3(4) 0->1a2b 0 ",
    Want::Truncated("MIGRATE_END", "error code")
)]
#[case::thermal_cut(
    "2 4:",
    Want::Truncated("THERMAL_THROTTLE", "thermal interrupt counter")
)]
#[case::fault_cut("7 1 -2 @3(4) ", Want::Truncated("PAGE_FAULT_START", "access kind"))]
#[case::vmfault_cut("1 1092", Want::Truncated("VMFAULT", "`:` before the task name"))]
#[case::process_cut("c 2a", Want::Truncated("PROCESS_START", "task name"))]
#[case::ns_not_number("5 abc -1 @3(4) 0->1 0:0 0", Want::Bad("MIGRATE_START", "timestamp"))]
#[case::ns_overflow(
    "5 99999999999999999999999 -1 @3(4) 0->1 0:0 0",
    Want::Bad("MIGRATE_START", "timestamp")
)]
#[case::pid_without_minus("5 1 2 @3(4) 0->1 0:0 0", Want::Bad("MIGRATE_START", "pid"))]
#[case::page_overflow(
    "5 1 -2 @10000000000000000(4) 0->1 0:0 0",
    Want::Bad("MIGRATE_START", "start page")
)]
#[case::gpu_id_overflow(
    "5 1 -2 @3(4) 123456789->1 0:0 0",
    Want::Bad("MIGRATE_START", "source location")
)]
#[case::trigger_overflow(
    "5 1 -2 @3(4) 0->1 0:0 99999999999",
    Want::Bad("MIGRATE_START", "trigger")
)]
#[case::trigger_not_number("5 1 -2 @3(4) 0->1 0:0 x", Want::Bad("MIGRATE_START", "trigger"))]
#[case::error_code_not_number("6 1 -2 @3(4) 0->1a2b 0 x", Want::Bad("MIGRATE_END", "error code"))]
#[case::error_code_two_spaces("6 1 -2 @3(4) 0->1a2b 0  -5", Want::Bad("MIGRATE_END", "error code"))]
#[case::arrow_missing(
    "6 1 -2 @3(4) 0 1a2b 0",
    Want::Bad("MIGRATE_END", "destination location")
)]
#[case::access_kind_unknown("7 1 -2 @3(4) X", Want::Bad("PAGE_FAULT_START", "access kind"))]
#[case::resolution_unknown("8 1 -2 @3(4) W", Want::Bad("PAGE_FAULT_END", "resolution"))]
#[case::restore_flag_unknown("a 1 -2 3 Q", Want::Bad("QUEUE_RESTORE", "rescheduled flag"))]
#[case::vmfault_pid_not_hex("1 zz:task", Want::Bad("VMFAULT", "pid"))]
#[case::reset_cause_glued("3 1x", Want::Bad("GPU_PRE_RESET", "reset cause"))]
#[case::migrate_end_tenth_field("6 1 -2 @3(4) 0->1a2b 0 0 7", Want::Trailing("MIGRATE_END"))]
#[case::restore_two_flags("a 1 -2 3 R R", Want::Trailing("QUEUE_RESTORE"))]
#[case::thermal_extra("2 4:1f:3", Want::Trailing("THERMAL_THROTTLE"))]
#[case::fault_extra("8 1 -2 @3(4) MM", Want::Trailing("PAGE_FAULT_END"))]
fn bad_lines_are_refused_with_the_field(#[case] line: &str, #[case] want: Want) {
    let got = parse_line(line).unwrap_err();
    let shown = got.to_string();
    match (&want, &got) {
        (Want::Empty, SmiError::Empty) | (Want::BadId, SmiError::BadEventId { .. }) => {}
        (Want::Truncated(e, f), SmiError::Truncated { event, field, .. })
        | (Want::Bad(e, f), SmiError::BadField { event, field, .. })
            if e == event && f == field =>
        {
            assert!(shown.contains(e) && shown.contains(f), "{shown}");
        }
        (Want::Trailing(e), SmiError::Trailing { event, .. }) if e == event => {}
        _ => panic!("{line:?}: wanted {want:?}, got {got:?}"),
    }
}

#[test]
fn errors_quote_the_line_and_say_what_was_expected() {
    let e = parse_line("7 1 -2 @3(4) X\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "SMI PAGE_FAULT_START line `7 1 -2 @3(4) X`: access kind is `X`, expected `R` (read) \
         or `W` (write)"
    );
    let e = parse_line("5 123 -42 @7f0000000(200) 0->1a2b 1a2b:1a2b").unwrap_err();
    assert_eq!(
        e.to_string(),
        "SMI MIGRATE_START line `5 123 -42 @7f0000000(200) 0->1a2b 1a2b:1a2b` ends before its \
         trigger (truncated?)"
    );
}

#[test]
fn a_long_bad_line_is_quoted_short_and_escaped() {
    let line = format!("1 zz{}\0", "y".repeat(500));
    let shown = parse_line(&line).unwrap_err().to_string();
    assert!(shown.len() < 400, "{shown}");
    assert!(shown.contains("..."), "{shown}");
    let shown = parse_line("7 1 -2 @3(4) \u{1}").unwrap_err().to_string();
    assert!(shown.contains("\\u{1}"), "{shown}");
}

// --- the stream ----------------------------------------------------------------------------------

fn all_bytes() -> Vec<u8> {
    LINES.concat().into_bytes()
}

fn parsed_all() -> Vec<Result<SmiEvent, SmiError>> {
    LINES.iter().map(|l| parse_line(l)).collect()
}

#[test]
fn one_read_with_every_event() {
    let mut s = SmiStream::new();
    assert_eq!(s.push(&all_bytes()), parsed_all());
    assert_eq!(s.pending(), 0);
    assert_eq!(s.finish(), None);
}

#[test]
fn split_at_every_byte_gives_the_same_events() {
    let bytes = all_bytes();
    let want = parsed_all();
    for at in 0..=bytes.len() {
        let mut s = SmiStream::new();
        let mut got = s.push(&bytes[..at]);
        got.extend(s.push(&bytes[at..]));
        assert_eq!(got, want, "split at byte {at}");
        assert_eq!(s.finish(), None, "split at byte {at}");
    }
}

#[test]
fn every_line_split_at_every_byte() {
    for line in LINES {
        let bytes = line.as_bytes();
        for at in 0..=bytes.len() {
            let mut s = SmiStream::new();
            let mut got = s.push(&bytes[..at]);
            if at < bytes.len() {
                assert!(
                    got.is_empty(),
                    "{line:?} at {at}: nothing before the newline"
                );
                assert_eq!(s.pending(), at);
            }
            got.extend(s.push(&bytes[at..]));
            assert_eq!(got, vec![parse_line(line)], "{line:?} split at {at}");
        }
    }
}

#[test]
fn one_byte_per_read_like_old_kernels_eight() {
    let bytes = all_bytes();
    for size in [1, 8] {
        let mut s = SmiStream::new();
        let got: Vec<_> = bytes.chunks(size).flat_map(|c| s.push(c)).collect();
        assert_eq!(got, parsed_all(), "reads of {size} bytes");
    }
}

#[test]
fn a_cut_event_at_the_end_is_unterminated() {
    let mut s = SmiStream::new();
    assert!(s.push(b"5 123 -42 @7f0000000(2").is_empty());
    assert_eq!(s.pending(), 22);
    let e = s.finish().unwrap();
    assert!(matches!(e, SmiError::Unterminated { .. }), "{e:?}");
    assert!(e.to_string().contains("5 123 -42 @7f0000000(2"), "{e}");
    assert_eq!(s.finish(), None);
}

#[test]
fn a_runaway_line_is_dropped_up_to_its_newline_and_the_stream_goes_on() {
    let mut bytes = vec![b'x'; 3000];
    bytes.push(b'\n');
    bytes.extend_from_slice(LINES[9].as_bytes());
    let want = SmiStream::new().push(&bytes);
    assert_eq!(want.len(), 2, "{want:?}");
    assert!(
        matches!(want[0], Err(SmiError::Overlong { .. })),
        "{want:?}"
    );
    assert_eq!(want[1], parse_line(LINES[9]));
    // The error itself, not only its kind, must not depend on where the reads cut.
    for at in 0..=bytes.len() {
        let mut s = SmiStream::new();
        let mut got = s.push(&bytes[..at]);
        got.extend(s.push(&bytes[at..]));
        assert_eq!(got, want, "split at {at}");
    }
}

#[test]
fn empty_lines_are_skipped_and_bad_bytes_replaced() {
    let mut s = SmiStream::new();
    let got = s.push(b"\n\n1 2a:\xff\xfe\n\n");
    assert_eq!(
        got,
        vec![Ok(SmiEvent::VmFault {
            pid: 0x2a,
            task: "\u{fffd}\u{fffd}".into(),
        })]
    );
}

#[test]
fn a_bad_line_does_not_stop_the_next() {
    let mut s = SmiStream::new();
    let got = s.push(b"7 1 -2 @3(4) X\n8 1 -2 @3(4) M\n");
    assert!(got[0].is_err());
    assert!(matches!(
        got[1],
        Ok(SmiEvent::PageFaultEnd { migrated: true, .. })
    ));
}

// --- migration evidence --------------------------------------------------------------------------

const BASE: u64 = 0x7f00_0000_0000; // page 0x7f0000000

fn map() -> AddressMap {
    let mut m = AddressMap::new();
    m.insert(7, BASE, 2 << 20);
    m
}

fn ev(
    buf: u32,
    first_page: u64,
    pages: u64,
    from: Location,
    to: Location,
    trigger: Trigger,
    at_ns: u64,
) -> MigrationEvent {
    MigrationEvent {
        buf,
        first_page,
        pages,
        from,
        to,
        trigger,
        at_ns,
    }
}

#[test]
fn a_start_and_its_end_make_one_event_stamped_at_the_start() {
    let mut c = MigrationCollector::new(GPU);
    let m = map();
    assert_eq!(c.observe(&parse_line(LINES[9]).unwrap(), &m), Ok(vec![]));
    let got = c.observe(&parse_line(LINES[12]).unwrap(), &m).unwrap();
    assert_eq!(
        got,
        vec![ev(
            7,
            0,
            0x200,
            Location::System,
            Location::Vram,
            Trigger::Prefetch,
            123_456_789
        )]
    );
}

#[test]
fn an_end_without_its_start_is_stamped_at_the_end() {
    let mut c = MigrationCollector::new(GPU);
    let got = c.observe(&parse_line(LINES[14]).unwrap(), &map()).unwrap();
    assert_eq!(
        got,
        vec![ev(
            7,
            0,
            0x200,
            Location::Vram,
            Location::System,
            Trigger::CpuFault,
            123_999_999
        )]
    );
}

#[test]
fn an_old_kernels_end_without_error_code_is_a_success() {
    let mut c = MigrationCollector::new(GPU);
    let got = c.observe(&parse_line(LINES[11]).unwrap(), &map()).unwrap();
    assert_eq!(got.len(), 1);
}

#[test]
fn a_failed_migration_is_an_error_not_evidence() {
    let mut c = MigrationCollector::new(GPU);
    let e = c
        .observe(&parse_line(LINES[13]).unwrap(), &map())
        .unwrap_err();
    assert_eq!(
        e,
        ConvertError::Failed {
            start_page: 0x7_f000_0000,
            npages: 0x200,
            from: GPU,
            to: 0,
            error: -16
        }
    );
}

#[test]
fn another_gpus_vram_is_refused() {
    let mut c = MigrationCollector::new(0xbeef);
    let e = c
        .observe(&parse_line(LINES[12]).unwrap(), &map())
        .unwrap_err();
    assert!(
        matches!(
            e,
            ConvertError::ForeignGpu {
                gpu_id: GPU,
                ours: 0xbeef,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("0x1a2b"), "{e}");
}

#[test]
fn an_unknown_trigger_is_refused() {
    let mut c = MigrationCollector::new(GPU);
    let line = "6 9 -1 @7f0000000(1) 0->1a2b 7 0";
    let e = c.observe(&parse_line(line).unwrap(), &map()).unwrap_err();
    assert!(
        matches!(e, ConvertError::UnknownTrigger { value: 7, .. }),
        "{e:?}"
    );
}

#[test]
fn other_events_and_unmapped_memory_give_nothing() {
    let mut c = MigrationCollector::new(GPU);
    for line in [LINES[15], LINES[19], LINES[25]] {
        assert_eq!(c.observe(&parse_line(line).unwrap(), &map()), Ok(vec![]));
    }
    let elsewhere = "6 9 -1 @1000(10) 0->1a2b 0 0";
    assert_eq!(
        c.observe(&parse_line(elsewhere).unwrap(), &map()),
        Ok(vec![])
    );
}

#[test]
fn a_range_over_two_allocations_is_split_and_clipped() {
    let mut m = AddressMap::new();
    // Two 8-page allocations with a 4-page hole between them.
    m.insert(1, 0x10_0000, 8 * 4096);
    m.insert(2, 0x10_0000 + 12 * 4096, 8 * 4096);
    // Pages 0x104..0x112 absolute: the last 4 of buf 1, the hole, the first 6 of buf 2.
    let line = "6 9 -1 @104(e) 0->1a2b 1 0";
    let got = MigrationCollector::new(GPU)
        .observe(&parse_line(line).unwrap(), &m)
        .unwrap();
    assert_eq!(
        got,
        vec![
            ev(
                1,
                4,
                4,
                Location::System,
                Location::Vram,
                Trigger::GpuFault,
                9
            ),
            ev(
                2,
                0,
                6,
                Location::System,
                Location::Vram,
                Trigger::GpuFault,
                9
            ),
        ]
    );
}

#[test]
fn an_unaligned_allocation_counts_every_page_a_kernel_page_touches() {
    let mut m = AddressMap::new();
    m.insert(3, 0x1000_0800, 0x2000);
    assert_eq!(m.locate(0x10000, 1), vec![(3, 0, 1)]);
    assert_eq!(m.locate(0x10001, 1), vec![(3, 0, 2)]);
    assert_eq!(m.locate(0x10002, 1), vec![(3, 1, 1)]);
    assert_eq!(m.locate(0x10003, 1), vec![]);
    m.remove(3);
    assert_eq!(m.locate(0x10000, 4), vec![]);
}

#[test]
fn huge_page_numbers_do_not_overflow() {
    let m = map();
    assert_eq!(m.locate(u64::MAX, u64::MAX), vec![]);
    let mut c = MigrationCollector::new(GPU);
    let line = "6 9 -1 @ffffffffffffffff(ffffffffffffffff) 0->1a2b 0 0";
    assert_eq!(c.observe(&parse_line(line).unwrap(), &m), Ok(vec![]));
}

#[test]
fn forgotten_starts_are_bounded() {
    let mut c = MigrationCollector::new(GPU);
    let m = map();
    for i in 0..(OPEN_MAX as u64 + 10) {
        let line = format!("5 {i} -1 @{i:x}(1) 0->1a2b 0:0 0");
        c.observe(&parse_line(&line).unwrap(), &m).unwrap();
    }
    assert_eq!(c.open.len(), OPEN_MAX);
}
