//! The SMI byte stream: the events do not depend on where reads cut the bytes, nothing panics,
//! and every parsed event goes through the migration collector without panicking.
//!
//! Input: the first byte chooses the read size (1..=256), the rest is the stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use svmconf::device::amd::smi::{AddressMap, MigrationCollector, SmiStream};

fuzz_target!(|data: &[u8]| {
    let Some((&size, bytes)) = data.split_first() else {
        return;
    };
    let size = usize::from(size) + 1;

    let mut whole = SmiStream::new();
    let mut want = whole.push(bytes);
    want.extend(whole.finish().map(Err));

    let mut chunked = SmiStream::new();
    let mut got = Vec::new();
    for chunk in bytes.chunks(size) {
        got.extend(chunked.push(chunk));
    }
    got.extend(chunked.finish().map(Err));
    assert_eq!(got, want, "reads of {size} bytes");

    let mut map = AddressMap::new();
    map.insert(1, 0x7f00_0000_0000, 2 << 20);
    map.insert(2, 0x1000_0800, 0x3000);
    map.insert(3, u64::MAX - 0x1000, 0x2000);
    let mut collector = MigrationCollector::new(0x1a2b);
    for event in want.iter().flatten() {
        let _ = collector.observe(event, &map);
    }
});
