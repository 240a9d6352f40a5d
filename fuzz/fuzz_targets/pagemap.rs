//! Pagemap words, `/proc/iomem` listings and kernel releases as a kernel could hand them over:
//! the decoding never panics and says of each word what its bits say; a listing never panics
//! and finds only well-formed regions; the observer reads any file of words, short ones
//! included, and cross-checks any residency against it without panicking.
//!
//! Input: one byte of choices (bits 0-1: the release, 6.12, 7.3 or the text after the words;
//! bit 2: privileged; bits 3-7: how many words), then the words (8 bytes each, native order),
//! then the rest as text: the iomem listing, and the release where bits 0-1 say 3.

#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use svmconf::observe::pagemap::{iomem, place, Entry, Pagemap, Place, Residence, Sources, SwapLayout, LAYOUTS};

const PRESENT: u64 = 1 << 63;
const SWAP: u64 = 1 << 62;
const FRAME: u64 = (1 << 55) - 1;

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let privileged = choice & 4 != 0;
    let n = usize::from(choice >> 3).min(rest.len() / 8);
    let (word_bytes, text) = rest.split_at(n * 8);
    let words: Vec<u64> = word_bytes
        .chunks_exact(8)
        .map(|c| u64::from_ne_bytes(c.try_into().unwrap()))
        .collect();
    let text = String::from_utf8_lossy(text);
    let release = match choice & 3 {
        0 => "6.12.57".to_string(),
        1 => "7.3.4".to_string(),
        _ => text.lines().next().unwrap_or("").to_string(),
    };
    let layout = SwapLayout::of(&release).unwrap_or(&LAYOUTS[1]);

    for &w in &words {
        let p = place(Entry(w), layout, privileged);
        match p {
            Place::System { pfn } => assert!(w & PRESENT != 0 && pfn == w & FRAME, "{w:#x} {p:?}"),
            Place::NotPresent => assert!(w & PRESENT == 0 && w & SWAP == 0, "{w:#x}"),
            Place::SwappedOrDevice => assert!(!privileged && w & SWAP != 0 && w & PRESENT == 0),
            Place::Device { writable, pfn } => {
                let kind = (w & 0x1f) as u8;
                assert!(privileged && w & PRESENT == 0 && w & SWAP != 0);
                assert_eq!(pfn, (w & FRAME) >> 5);
                assert_eq!(writable, kind == layout.device_write);
                assert!(kind == layout.device_write || kind == layout.device_read);
            }
            Place::DeviceExclusive { .. } | Place::Swapped { .. } => {
                assert!(privileged && w & PRESENT == 0 && w & SWAP != 0)
            }
        }
    }

    for name in ["hmm_dmirror", "vsvm", "0000:c1:00.0"] {
        let regions = iomem::regions(&text, name);
        if let iomem::Regions::Found(r) = &regions {
            assert!(r.iter().all(|r| r.start() <= r.end() && *r.end() != 0));
        }
        for &w in &words {
            let _ = regions.holds_pfn((w & FRAME) >> 5);
        }
        assert!(regions.describe(name).len() < 64 + text.len() * 4);
    }

    // The observer over a file of these words, with the text as its iomem and meminfo.
    let dir = std::env::temp_dir().join(format!("svmconf-fuzz-pagemap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pagemap = dir.join("pagemap");
    std::fs::File::create(&pagemap).unwrap().write_all(word_bytes).unwrap();
    std::fs::write(dir.join("iomem"), text.as_bytes()).unwrap();
    std::fs::write(dir.join("meminfo"), text.as_bytes()).unwrap();
    let sources = Sources {
        pagemap,
        iomem: dir.join("iomem"),
        meminfo: dir.join("meminfo"),
        release,
    };
    let mut pm = Pagemap::open_from(sources, "hmm_dmirror");
    let asked = (choice as u64 >> 3) + 1;
    let _ = pm.describe();
    if let Ok(at) = pm.locations(0, asked) {
        assert_eq!(at.len() as u64, asked);
    }
    let own: Vec<Residence> = words
        .iter()
        .map(|w| if w & 1 == 0 { Residence::System } else { Residence::Device })
        .collect();
    let _ = pm.cross_check(4096, &own, "SNAPSHOT");
    for note in pm.take_notes("SNAPSHOT") {
        assert!(!note.is_empty());
    }
});
