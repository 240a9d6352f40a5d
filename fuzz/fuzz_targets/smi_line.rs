//! One SMI event line: `parse_line` never panics, and a line parses the same with or without its
//! newline.

#![no_main]

use libfuzzer_sys::fuzz_target;
use svmconf::device::amd::smi::parse_line;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let got = parse_line(&text);
    if !text.ends_with('\n') {
        assert_eq!(got, parse_line(&format!("{text}\n")), "{text:?}");
    }
    if let Err(e) = &got {
        // Every error renders, and quotes at most a bounded part of the line.
        assert!(e.to_string().len() < 2048, "{e}");
    }
});
