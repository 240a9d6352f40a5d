//! The trace fixture against lines built from the series' own format strings, in every form a
//! kernel log line reaches us, and the fixture's checks against broken entries.

use super::*;
use crate::fixtures::{load_with, AMDGPU_TRACE_FILE};

fn load_amdgpu_trace(
    root: &std::path::Path,
) -> Result<crate::fixtures::Loaded<TracePatterns>, crate::fixtures::FixtureError> {
    load_with(root, AMDGPU_TRACE_FILE, TracePatterns::parse)
}
use rstest::rstest;

fn fixture() -> TracePatterns {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    load_amdgpu_trace(&root).unwrap().value
}

// The series' format strings, printed as the kernel prints them: pr_fmt's "amdgpu: ", then the
// trace macro's "%s: " with __func__, then the format.

fn populate_mm(start: u64, end: u64) -> String {
    format!(
        "amdgpu: amdgpu_svm_populate_mm: populate_mm: [0x{start:x}-0x{end:x}] size={}",
        end - start
    )
}

fn copy_to_devmem(npages: i64, ret: i32) -> String {
    format!("amdgpu: amdgpu_svm_copy_to_devmem: copy_to_devmem done: npages={npages} ret={ret}")
}

fn copy_to_ram(npages: i64, ret: i32) -> String {
    format!("amdgpu: amdgpu_svm_copy_to_ram: copy_to_ram done: npages={npages} ret={ret}")
}

fn migrate_to_vram_failed(ret: i32, start: u64, end: u64) -> String {
    format!(
        "amdgpu: amdgpu_svm_range_migrate_to_vram: migrate_to_vram failed: ret={ret} \
         [0x{start:x}-0x{end:x}]"
    )
}

fn evict_fence(start: u64, end: u64) -> String {
    format!(
        "amdgpu: amdgpu_svm_evict_fence_enable_signaling: evict fence enable_signaling: \
         [0x{start:x}-0x{end:x}]"
    )
}

const A: u64 = 0x7f3c_0000_0000;
const TWO_MIB: u64 = 2 << 20;

#[test]
fn the_fixture_loads_with_its_control_lines_and_every_kind() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let loaded = load_amdgpu_trace(&root).unwrap();
    assert_eq!(loaded.path, Path::new("fixtures/amdgpu-trace.yaml"));
    assert_eq!(loaded.sha256.len(), 64);
    let t = loaded.value;
    assert_eq!(
        t.control_lines(),
        [
            "file amdgpu_migrate.c +p",
            "file amdgpu_svm_range_migrate.c +p"
        ]
    );
    assert_eq!(
        t.disable_lines(),
        [
            "file amdgpu_migrate.c -p",
            "file amdgpu_svm_range_migrate.c -p"
        ]
    );
    let kinds: Vec<TraceKind> = t.patterns().iter().map(|p| p.kind).collect();
    assert_eq!(
        kinds,
        [
            TraceKind::VramStart,
            TraceKind::VramEnd,
            TraceKind::Ram,
            TraceKind::Failed,
            TraceKind::Eviction
        ]
    );
    for p in t.patterns() {
        assert!(!p.source.is_empty(), "{}", p.kind);
    }
}

struct Want {
    kind: TraceKind,
    addr: Option<u64>,
    npages: Option<u64>,
    bytes: Option<u64>,
    ret: Option<i64>,
}

fn want(
    kind: TraceKind,
    addr: Option<u64>,
    npages: Option<u64>,
    bytes: Option<u64>,
    ret: Option<i64>,
) -> Want {
    Want {
        kind,
        addr,
        npages,
        bytes,
        ret,
    }
}

fn check(got: &TraceEvidence, w: &Want) {
    assert_eq!(
        (got.kind, got.addr, got.npages, got.bytes, got.ret),
        (w.kind, w.addr, w.npages, w.bytes, w.ret),
        "{got:?}"
    );
}

#[rstest]
#[case::vram_start(
    populate_mm(A, A + TWO_MIB),
    want(TraceKind::VramStart, Some(A), Some(512), Some(TWO_MIB), None)
)]
#[case::vram_start_4k(
    populate_mm(A + 0x1000, A + 0x2000),
    want(TraceKind::VramStart, Some(A + 0x1000), Some(1), Some(4096), None)
)]
#[case::vram_end(
    copy_to_devmem(512, 0),
    want(TraceKind::VramEnd, None, Some(512), None, Some(0))
)]
#[case::vram_end_failed(copy_to_devmem(16, -12), want(TraceKind::VramEnd, None, Some(16), None, Some(-12)))]
#[case::ram(
    copy_to_ram(16, 0),
    want(TraceKind::Ram, None, Some(16), None, Some(0))
)]
#[case::failed(
    migrate_to_vram_failed(-16, A, A + 0x10000),
    want(TraceKind::Failed, Some(A), Some(16), Some(0x10000), Some(-16))
)]
#[case::eviction_v1(
    evict_fence(A, A + TWO_MIB),
    want(TraceKind::Eviction, Some(A), Some(512), Some(TWO_MIB), None)
)]
fn every_series_line_is_evidence(#[case] message: String, #[case] w: Want) {
    let t = fixture();
    // The message alone, as /dev/kmsg gives it.
    let got = t.match_message(&message).unwrap().unwrap();
    check(&got, &w);
    assert_eq!(got.message, message);
    // As dmesg prints it, with a time.
    let got = t
        .match_line(&format!("[  812.046301] {message}"))
        .unwrap()
        .unwrap();
    check(&got, &w);
    assert_eq!((got.ts_us, got.level), (Some(812_046_301), None));
    // As `dmesg -r` prints it, with the level too.
    let got = t
        .match_line(&format!("<7>[    3.000001] {message}\n"))
        .unwrap()
        .unwrap();
    check(&got, &w);
    assert_eq!((got.ts_us, got.level), (Some(3_000_001), Some(7)));
    // With dynamic debug's decorations (+tmfl) in front.
    let decorated = format!("[1734] amdgpu:amdgpu_svm_populate_mm:412: {message}");
    check(&t.match_message(&decorated).unwrap().unwrap(), &w);
    // Through dev_printk, naming the device.
    let dev = format!("amdgpu 0000:c1:00.0: {message}");
    let got = t.match_message(&dev).unwrap().unwrap();
    check(&got, &w);
    assert_eq!(got.device, Some("0000:c1:00.0".parse().unwrap()));
}

#[test]
fn a_kmsg_record_keeps_its_level_and_time() {
    let t = fixture();
    let raw = format!("7,5123,812046301,-;{}\n", copy_to_ram(512, 0));
    let record = crate::observe::kmsg::parse_record(&raw).unwrap();
    let got = t.match_record(&record).unwrap().unwrap();
    assert_eq!(got.kind, TraceKind::Ram);
    assert_eq!((got.level, got.ts_us), (Some(7), Some(812_046_301)));
}

#[rstest]
#[case::other_amdgpu_line("amdgpu 0000:c1:00.0: amdgpu: Runlist is getting oversubscribed. Expect reduced ROCm performance.")]
#[case::sdma_copy(
    "amdgpu: amdgpu_svm_copy_memory_gart: SDMA_COPY: RAM->VRAM npages=512 vram_off=0x1f000000"
)]
#[case::release("amdgpu: amdgpu_svm_devmem_release: Release svm_bo=ffff8881 bo=ffff8882")]
#[case::guessed_prefix("[   12.345000] amdgpu_svm: hello")]
#[case::empty("")]
#[case::no_hex_digits("amdgpu: f: populate_mm: [0x-0x10] size=1")]
#[case::uppercase_hex("amdgpu: f: populate_mm: [0x7F00-0x7F10] size=16")]
fn other_lines_are_not_evidence(#[case] line: &str) {
    assert!(fixture().match_line(line).unwrap().is_none(), "{line}");
}

#[rstest]
#[case::time_not_number("[abc] amdgpu: x", "`[abc]` is not a timestamp")]
#[case::time_unterminated("[  12.5 amdgpu: x", "is not a timestamp")]
#[case::time_without_fraction("[12] amdgpu: x", "`[12]` is not a timestamp")]
#[case::time_seven_decimals("[1.1234567] x", "is not a timestamp")]
#[case::time_overflow("[99999999999999999999.0] x", "is not a timestamp")]
#[case::level_not_number("<x>[1.0] x", "`<x>[1.0] x` is not a syslog level")]
#[case::level_empty("<>x", "is not a syslog level")]
#[case::level_unterminated("<7", "is not a syslog level")]
#[case::level_multibyte("<ééééééééééééééééééé", "is not a syslog level")]
#[case::time_multibyte("[ééééééééééééééééééééééééé", "is not a timestamp")]
fn malformed_prefixes_are_refused(#[case] line: &str, #[case] says: &str) {
    let e = fixture().match_line(line).unwrap_err();
    let shown = e.to_string();
    assert!(shown.contains(says), "{shown}");
}

#[rstest]
#[case::addr_overflow(
    "amdgpu: f: populate_mm: [0x1ffffffffffffffffff-0x2] size=5",
    "its `addr` is `1ffffffffffffffffff`"
)]
#[case::end_before_start(
    "amdgpu: f: populate_mm: [0x2000-0x1000] size=4096",
    "its `end` is `0x2000-0x1000`; expected an end address after the start"
)]
#[case::size_overflow(
    "amdgpu: f: populate_mm: [0x1000-0x2000] size=99999999999999999999",
    "its `size` is `99999999999999999999`"
)]
#[case::ret_overflow(
    "amdgpu: f: copy_to_ram done: npages=1 ret=-99999999999999999999",
    "its `ret` is `-99999999999999999999`"
)]
fn malformed_captures_name_the_group(#[case] line: &str, #[case] says: &str) {
    let e = fixture().match_line(line).unwrap_err();
    let shown = e.to_string();
    assert!(matches!(e, DyndbgError::BadCapture { .. }), "{e:?}");
    assert!(shown.contains(says), "{shown}");
}

#[test]
fn numbers_in_groups_take_hex_with_or_without_prefix() {
    assert_eq!(parse_hex("0x10"), Some(16));
    assert_eq!(parse_hex("10"), Some(16));
    assert_eq!(parse_hex("0x"), None);
    assert_eq!(parse_hex("+1"), None);
    assert_eq!(parse_number("0x10"), Some(16));
    assert_eq!(parse_number("10"), Some(10));
    assert_eq!(parse_number("-1"), None);
    assert_eq!(parse_number(""), None);
}

#[rstest]
#[case("12.345678", Some(12_345_678))]
#[case("0.5", Some(500_000))]
#[case("12.000001", Some(12_000_001))]
#[case("12", None)]
#[case(".5", None)]
#[case("1.", None)]
#[case("1.-5", None)]
fn seconds_are_microseconds(#[case] text: &str, #[case] us: Option<u64>) {
    assert_eq!(parse_seconds(text), us);
}

#[test]
fn device_prefix_needs_a_full_pci_name() {
    assert_eq!(
        split_device("amdgpu 0000:c1:00.0: x").0,
        Some("0000:c1:00.0".parse().unwrap())
    );
    assert_eq!(
        split_device("amdgpu c1:00.0: x"),
        (None, "amdgpu c1:00.0: x")
    );
    assert_eq!(split_device("amdgpu: x"), (None, "amdgpu: x"));
    assert_eq!(
        split_device("kfd kfd: amdgpu: x"),
        (None, "kfd kfd: amdgpu: x")
    );
}

// --- the fixture's checks ------------------------------------------------------------------------

const FILE: &str = "fixtures/amdgpu-trace.yaml";

const GOOD: &str = "\
control:
  - file amdgpu_migrate.c +p
patterns:
  - kind: ram
    source: somewhere
    pattern: 'copy_to_ram done: npages=(?P<npages>[0-9]+)'
";

#[test]
fn a_minimal_file_parses() {
    let t = TracePatterns::parse(GOOD, Path::new(FILE)).unwrap();
    assert_eq!(t.patterns().len(), 1);
}

#[rstest]
#[case::unknown_top_key(
    "control: []\npatterns: []\nextra: 1\n",
    "fixtures/amdgpu-trace.yaml:3:1: unknown field `extra`"
)]
#[case::unknown_entry_key(
    "control: []\npatterns:\n  - kind: ram\n    source: s\n    regex: x\n",
    "fixtures/amdgpu-trace.yaml:5:5: patterns[0]: unknown field `regex`"
)]
#[case::unknown_kind(
    "control: []\npatterns:\n  - kind: migrate\n    source: s\n    pattern: x\n",
    "unknown variant `migrate`, expected one of `vram_start`, `vram_end`, `ram`, `eviction`, `failed`"
)]
#[case::bad_regex(
    "control: []\npatterns:\n  - kind: ram\n    source: s\n    pattern: 'copy_to_ram (('\n",
    "fixtures/amdgpu-trace.yaml:5:14: patterns[0].pattern: not a regular expression: unclosed group"
)]
#[case::unknown_group(
    "control: []\npatterns:\n  - kind: ram\n    source: s\n    pattern: '(?P<address>[0-9a-f]+)'\n",
    "patterns[0].pattern: unknown group `address`; expected some of `addr`, `end`, `size`"
)]
#[case::empty_pattern(
    "control: []\npatterns:\n  - kind: ram\n    source: s\n    pattern: ''\n",
    "patterns[0].pattern: an empty pattern would match every line"
)]
#[case::empty_source(
    "control: []\npatterns:\n  - kind: ram\n    source: ' '\n    pattern: x\n",
    "fixtures/amdgpu-trace.yaml:4:13: patterns[0].source: expected where the kernel prints"
)]
#[case::missing_source(
    "control: []\npatterns:\n  - kind: ram\n    pattern: x\n",
    "missing field `source`"
)]
#[case::control_without_keyword(
    "control:\n  - amdgpu_migrate.c +p\npatterns: []\n",
    "fixtures/amdgpu-trace.yaml:2:5: control[0]: `amdgpu_migrate.c +p` is not a dynamic debug query"
)]
#[case::control_without_flags(
    "control:\n  - file amdgpu_migrate.c\npatterns: []\n",
    "control[0]: `file amdgpu_migrate.c` is not a dynamic debug query"
)]
#[case::control_bad_flag(
    "control:\n  - file amdgpu_migrate.c +q\npatterns: []\n",
    "control[0]: `file amdgpu_migrate.c +q` is not a dynamic debug query"
)]
fn broken_entries_are_refused_where_they_are(#[case] text: &str, #[case] says: &str) {
    let e = TracePatterns::parse(text, Path::new(FILE)).unwrap_err();
    let shown = e.to_string();
    assert!(shown.contains(says), "{shown}");
}

#[test]
fn control_queries_the_kernel_takes_are_accepted() {
    for line in [
        "file amdgpu_migrate.c +p",
        "file amdgpu_svm*.c +pfl",
        "module amdgpu func amdgpu_svm_populate_mm +p",
        "format \"populate_mm\" =p",
        "file amdgpu_migrate.c line 100-200 -p",
    ] {
        let text = format!("control:\n  - '{line}'\npatterns: []\n");
        TracePatterns::parse(&text, Path::new(FILE)).unwrap();
    }
}

// --- the control file ----------------------------------------------------------------------------

#[test]
fn control_lines_are_written_one_per_line_to_the_given_file() {
    let t = tempfile::tempdir().unwrap();
    let control = t.path().join("control");
    std::fs::write(&control, "").unwrap();
    let lines = fixture().control_lines().to_vec();
    write_control(&control, &lines).unwrap();
    assert_eq!(
        std::fs::read_to_string(&control).unwrap(),
        "file amdgpu_migrate.c +p\nfile amdgpu_svm_range_migrate.c +p\n"
    );
}

#[test]
fn a_missing_control_file_is_not_created() {
    let t = tempfile::tempdir().unwrap();
    let control = t.path().join(CONTROL);
    let e = write_control(&control, &["file x.c +p".to_string()]).unwrap_err();
    assert!(matches!(e, DyndbgError::OpenControl { .. }), "{e:?}");
    let shown = e.to_string();
    assert!(
        shown.contains("dynamic_debug/control` to change"),
        "{shown}"
    );
    assert!(shown.contains("no such file or directory"), "{shown}");
    assert!(!control.exists());
}

#[test]
fn a_refused_write_names_the_line() {
    // /dev/full refuses every write, as the kernel refuses a query it cannot parse.
    let e = write_control(Path::new("/dev/full"), &["file x.c +p".to_string()]).unwrap_err();
    assert!(matches!(e, DyndbgError::Control { .. }), "{e:?}");
    assert!(e.to_string().contains("refused `file x.c +p`"), "{e}");
}

const LISTING: &str = r#"# filename:lineno [module]function flags format
drivers/gpu/drm/amd/amdgpu/amdgpu_migrate.c:412 [amdgpu]amdgpu_svm_populate_mm =p "populate_mm: [0x%lx-0x%lx] size=%lu\n"
drivers/gpu/drm/amd/amdgpu/amdgpu_migrate.c:301 [amdgpu]amdgpu_svm_copy_to_ram =_ "copy_to_ram done: npages=%ld ret=%d\012"
drivers/gpu/drm/drm_atomic.c:1520 [drm]drm_atomic_check_only =_ "checking %p\n" class:DRM_UT_ATOMIC
garbage line
"#;

#[test]
fn the_control_listing_says_which_sites_are_on() {
    let sites = parse_control_listing(LISTING);
    assert_eq!(sites.len(), 3, "{sites:?}");
    assert_eq!(
        sites[0],
        DyndbgSite {
            file: "drivers/gpu/drm/amd/amdgpu/amdgpu_migrate.c".into(),
            line: 412,
            module: "amdgpu".into(),
            function: "amdgpu_svm_populate_mm".into(),
            flags: "p".into(),
            format: r"populate_mm: [0x%lx-0x%lx] size=%lu\n".into(),
            class: None,
        }
    );
    assert!(sites[0].enabled());
    assert!(!sites[1].enabled());
    assert_eq!(sites[2].class.as_deref(), Some("DRM_UT_ATOMIC"));
}
