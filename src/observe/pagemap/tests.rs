use super::*;
use std::io::Write;

const PRESENT: u64 = 1 << 63;
const SWAP: u64 = 1 << 62;

/// A device-private entry of 7.3 as a privileged reader sees it: type 28 (SWP_DEVICE_WRITE),
/// the device PFN above it.
fn device_word(pfn: u64) -> u64 {
    SWAP | 28 | pfn << 5
}

/// A pagemap of `words` (page 0 at address 0), an iomem listing and a meminfo with `swap_used`
/// bytes of swap in use, in a folder of their own.
struct Fake {
    _dir: tempfile::TempDir,
    sources: Sources,
}

fn fake(words: &[u64], swap_used_kib: Option<u64>, release: &str) -> Fake {
    let dir = tempfile::tempdir().unwrap();
    let pagemap = dir.path().join("pagemap");
    let mut f = File::create(&pagemap).unwrap();
    for w in words {
        f.write_all(&w.to_ne_bytes()).unwrap();
    }
    let iomem = dir.path().join("iomem");
    std::fs::write(
        &iomem,
        "00001000-0009fbff : System RAM\nffc0000000-ffcfffffff : hmm_dmirror\n",
    )
    .unwrap();
    let meminfo = dir.path().join("meminfo");
    let swap = match swap_used_kib {
        Some(used) => format!("SwapTotal:  1048576 kB\nSwapFree: {} kB\n", 1048576 - used),
        None => String::new(),
    };
    std::fs::write(&meminfo, format!("MemTotal: 4000000 kB\n{swap}")).unwrap();
    Fake {
        sources: Sources {
            pagemap,
            iomem,
            meminfo,
            release: release.into(),
        },
        _dir: dir,
    }
}

impl Pagemap {
    /// As a reader with CAP_SYS_ADMIN would open it: a regular file shows no PFN to the probe.
    fn privileged(mut self) -> Pagemap {
        self.privileged = true;
        self
    }
}

#[test]
fn a_privileged_reader_places_device_pages_in_the_devices_region() {
    let f = fake(
        &[PRESENT | 0x1234, device_word(0xffc0001), 0],
        Some(0),
        "7.3.4",
    );
    let mut pm = Pagemap::open_from(f.sources.clone(), "hmm_dmirror").privileged();
    assert_eq!(pm.can_tell(), Ok(()));
    let at = pm.locations(0, 3).unwrap();
    assert_eq!(
        at,
        [Residence::System, Residence::Device, Residence::System]
    );
    let notes = pm.take_notes("SNAPSHOT");
    let decoded: Vec<_> = notes.iter().filter(|n| n.contains(" reads ")).collect();
    assert_eq!(decoded.len(), 1, "{notes:?}");
    assert!(
        decoded[0].contains("reads 0x40000001ff80003c: swap type 28 (SWP_DEVICE_WRITE of 7.3), device PFN 0xffc0001, inside hmm_dmirror [mem 0xffc0000000-0xffcfffffff]"),
        "{notes:?}"
    );
    assert!(pm
        .describe()
        .contains("the swap types of 7.3: device-private 28 (write) and 29 (read)"));
}

#[test]
fn device_memory_the_driver_added_since_opening_is_found() {
    let f = fake(&[device_word(0xffd0001)], Some(0), "7.3.4");
    let mut pm = Pagemap::open_from(f.sources.clone(), "hmm_dmirror").privileged();
    std::fs::write(
        &f.sources.iomem,
        "ffc0000000-ffcfffffff : hmm_dmirror\nffd0000000-ffdfffffff : hmm_dmirror\n",
    )
    .unwrap();
    assert_eq!(pm.locations(0, 1), Ok(vec![Residence::Device]));
}

#[test]
fn a_device_pfn_outside_the_region_is_an_error_naming_the_page() {
    let f = fake(
        &[device_word(0xffc0001), device_word(0x1234)],
        Some(0),
        "7.3.4",
    );
    let mut pm = Pagemap::open_from(f.sources.clone(), "hmm_dmirror").privileged();
    let e = pm.locations(0, 2).unwrap_err();
    assert!(
        e.starts_with("page 1 (at 0x1000) is device-private at PFN 0x1234")
            && e.ends_with("outside hmm_dmirror [mem 0xffc0000000-0xffcfffffff]"),
        "{e}"
    );
}

#[test]
fn the_cross_check_names_the_first_page_that_differs_and_counts_every_one() {
    let words = [
        PRESENT,
        device_word(0xffc0001),
        PRESENT,
        device_word(0xffc0002),
    ];
    let f = fake(&words, Some(0), "7.3.4");
    let mut pm = Pagemap::open_from(f.sources.clone(), "hmm_dmirror").privileged();
    let own = [
        Residence::System,
        Residence::Device,
        Residence::System,
        Residence::Device,
    ];
    assert_eq!(pm.cross_check(0, &own, "SNAPSHOT"), Ok(()));
    let wrong = [
        Residence::System,
        Residence::System,
        Residence::Device,
        Residence::Device,
    ];
    let e = pm.cross_check(0, &wrong, "SNAPSHOT").unwrap_err();
    assert!(
        e.starts_with(
            "the page tables disagree with SNAPSHOT on 2 of 4 pages at 0x0; first: page 1: \
             SNAPSHOT says system, "
        ) && e.contains("says device memory (device-private (writable) at device PFN 0xffc0001, word 0x40000001ff80003c)"),
        "{e}"
    );
    let notes = pm.take_notes("SNAPSHOT");
    assert_eq!(
        notes.last().unwrap(),
        "pagemap: 8 pages compared with SNAPSHOT, 2 mismatches"
    );
    assert!(pm.take_notes("SNAPSHOT").is_empty(), "counts start again");
}

#[test]
fn an_unprivileged_reader_tells_only_while_no_swap_is_in_use() {
    let words = [PRESENT, SWAP, 0];
    let none = fake(&words, Some(0), "7.3.4");
    let mut pm = Pagemap::open_from(none.sources.clone(), "hmm_dmirror");
    assert_eq!(
        pm.locations(0, 3).unwrap(),
        [Residence::System, Residence::Device, Residence::System]
    );
    assert!(
        pm.describe().contains("no swap types or PFNs read"),
        "{}",
        pm.describe()
    );

    let some = fake(&words, Some(4), "7.3.4");
    let mut pm = Pagemap::open_from(some.sources.clone(), "hmm_dmirror");
    let e = pm.locations(0, 3).unwrap_err();
    assert!(
        e.contains("shows this reader no swap types (no CAP_SYS_ADMIN), and with 4096 bytes of swap in use"),
        "{e}"
    );
    assert!(
        pm.describe().starts_with("no residency: "),
        "{}",
        pm.describe()
    );
    // Not cross-checked, said once however often it is asked.
    for _ in 0..3 {
        assert_eq!(
            pm.cross_check(0, &[Residence::System; 3], "RESIDENCY"),
            Ok(())
        );
    }
    let notes = pm.take_notes("RESIDENCY");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].starts_with("pagemap: RESIDENCY not cross-checked: "),
        "{notes:?}"
    );

    let unknown = fake(&words, None, "7.3.4");
    let e = Pagemap::open_from(unknown.sources.clone(), "x")
        .can_tell()
        .unwrap_err();
    assert!(e.ends_with("does not say whether swap is in use"), "{e}");
}

#[test]
fn a_kernel_of_unknown_swap_types_falls_back_to_the_unprivileged_rule() {
    let f = fake(&[device_word(0xffc0001)], Some(4), "6.1.0-31-amd64");
    let pm = Pagemap::open_from(f.sources.clone(), "hmm_dmirror").privileged();
    let e = pm.can_tell().unwrap_err();
    assert!(
        e.contains("kernel 6.1.0-31-amd64: its device-private swap types are not known here")
            && e.contains("4096 bytes of swap in use"),
        "{e}"
    );
    let f = fake(&[device_word(0xffc0001)], Some(0), "6.1.0-31-amd64");
    let mut pm = Pagemap::open_from(f.sources.clone(), "hmm_dmirror").privileged();
    assert_eq!(pm.locations(0, 1).unwrap(), [Residence::Device]);
}

#[test]
fn no_pagemap_and_a_short_read_are_said_not_panicked() {
    let f = fake(&[PRESENT; 2], Some(0), "7.3.4");
    let mut missing = f.sources.clone();
    missing.pagemap = f.sources.pagemap.with_file_name("absent");
    let mut pm = Pagemap::open_from(missing, "hmm_dmirror");
    let e = pm.locations(0, 1).unwrap_err();
    assert!(
        e.starts_with("no page tables to read: ") && e.contains("absent"),
        "{e}"
    );
    assert_eq!(pm.cross_check(0, &[Residence::System], "SNAPSHOT"), Ok(()));
    assert_eq!(pm.take_notes("SNAPSHOT").len(), 1);

    let mut pm = Pagemap::open_from(f.sources.clone(), "hmm_dmirror");
    let e = pm.locations(0, 3).unwrap_err();
    assert!(
        e.contains("short read: 16 of 24 bytes at offset 0x0")
            && e.ends_with("(the 3 pages at 0x0)"),
        "{e}"
    );
    let e = pm.cross_check(0x1000, &[Residence::System; 2], "SNAPSHOT");
    assert_eq!(e, Ok(()), "not compared is not a mismatch");
    assert!(pm.take_notes("SNAPSHOT")[0].contains("short read: 8 of 16 bytes at offset 0x8"));
}

#[test]
fn a_backends_residency_falls_back_where_the_page_tables_cannot_tell_and_fails_where_they_contradict(
) {
    let f = fake(&[PRESENT, device_word(0x1234)], Some(0), "7.3.4");
    let mut pm = Pagemap::open_from(f.sources.clone(), "hmm_dmirror").privileged();
    // A short read: no residency, said once however often asked.
    assert_eq!(pm.residency(0, 3), Ok(None));
    assert_eq!(pm.residency(0, 3), Ok(None));
    let notes = pm.take_notes("x");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].starts_with("pagemap: no residency: ") && notes[0].contains("short read"));
    // A device PFN outside the device's region: a contradiction, not a fallback.
    let e = pm.residency(0, 2).unwrap_err();
    assert!(
        e.starts_with("page 1 (at 0x1000) is device-private at PFN 0x1234"),
        "{e}"
    );
    // Swap in use to an unprivileged reader: nothing to tell.
    let f = fake(&[PRESENT, SWAP], Some(8), "7.3.4");
    let mut pm = Pagemap::open_from(f.sources.clone(), "hmm_dmirror");
    assert_eq!(pm.residency(0, 2), Ok(None));
    assert!(pm.take_notes("x")[0].contains("8192 bytes of swap in use"));
}

#[test]
fn a_page_that_keeps_changing_is_given_up_on_and_one_that_settles_is_read() {
    let decode = |w: Entry| place(w, &LAYOUTS[1], true);
    let mut n = 0u64;
    let flapping = stable(
        || {
            n += 1;
            Ok(vec![
                Entry(PRESENT),
                Entry(if n % 2 == 0 { PRESENT } else { SWAP | 27 }),
            ])
        },
        decode,
    )
    .unwrap_err();
    assert!(
        flapping.starts_with("page 1 changed while it was read, 5 reads running"),
        "{flapping}"
    );
    let mut n = 0u64;
    let settles = stable(
        || {
            n += 1;
            Ok(vec![Entry(if n < 2 { SWAP | 27 } else { device_word(5) })])
        },
        decode,
    );
    assert_eq!(settles, Ok(vec![Entry(device_word(5))]));
    // Soft-dirty flips alone are no change of place.
    let mut n = 0u64;
    let flags = stable(
        || {
            n += 1;
            Ok(vec![Entry(PRESENT | (n % 2) << 55)])
        },
        decode,
    );
    assert!(flags.is_ok());
}

/// This process's own memory, read through the real file: a page written is present, a page
/// never touched is not mapped; and PAGEMAP_SCAN, where the kernel has it, agrees.
#[test]
fn this_processes_own_pages_read_as_they_are() {
    if !Path::new("/proc/self/pagemap").exists() {
        crate::needs::missing("/proc/self/pagemap", "Linux with /proc mounted");
        return;
    }
    let len = 8 * PAGE as usize;
    // SAFETY: a fresh private anonymous mapping of `len` bytes, written only within it and
    // unmapped at the end of the test.
    #[allow(unsafe_code)]
    let addr = unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        std::ptr::write_volatile(p.cast::<u32>(), 7);
        p as u64
    };
    let mut pm = Pagemap::open("hmm_dmirror");
    let pages = pm.pages(addr, 8).unwrap();
    assert!(
        matches!(pages[0].place, Place::System { .. }),
        "{:?}",
        pages[0]
    );
    assert_eq!(pages[1].place, Place::NotPresent, "{:?}", pages[1]);
    if let Some(huge) = pages[0].huge {
        assert!(!huge || pages.len() == 8);
    }
    if pm.privileged {
        assert!(matches!(pages[0].place, Place::System { pfn } if pfn != 0));
    }
    // SAFETY: the mapping made above, no longer used.
    #[allow(unsafe_code)]
    unsafe {
        libc::munmap(addr as *mut libc::c_void, len);
    }
}
