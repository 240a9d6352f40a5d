//! Kernel log lines against the amdgpu trace fixture, and dynamic debug's control listing:
//! nothing panics, and a dmesg line's prefixes never change what its message is evidence of.

#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use svmconf::device::amd::dyndbg::{parse_control_listing, split_log_line, TracePatterns};

static PATTERNS: LazyLock<TracePatterns> = LazyLock::new(|| {
    let text = include_str!("../../fixtures/amdgpu-trace.yaml");
    TracePatterns::parse(text, Path::new("fixtures/amdgpu-trace.yaml")).unwrap()
});

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse_control_listing(&text);
    let line = text.lines().next().unwrap_or_default();
    if let Ok(parts) = split_log_line(line) {
        let whole = PATTERNS.match_line(line);
        let bare = PATTERNS.match_message(parts.message);
        if let (Ok(Some(w)), Ok(Some(b))) = (&whole, &bare) {
            assert_eq!((w.kind, w.addr, w.npages, w.ret), (b.kind, b.addr, b.npages, b.ret), "{line:?}");
        }
        // With a time in front, the same line is the same evidence.
        let timed = PATTERNS.match_line(&format!("[   12.345678] {line}"));
        if let (Ok(Some(w)), Ok(Some(t))) = (&whole, &timed) {
            if parts.ts_us.is_none() && parts.level.is_none() {
                assert_eq!((w.kind, w.addr, w.npages), (t.kind, t.addr, t.npages), "{line:?}");
            }
        }
    }
});
