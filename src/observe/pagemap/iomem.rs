//! The device-private memory regions of `/proc/iomem` (kernel/resource.c, `r_show`): where a
//! device-private PFN must fall. A driver reserves its device-private range with
//! `request_free_mem_region()` or `devm_request_free_mem_region()`, a region at the top level
//! of the tree named as the driver asks (`hmm_dmirror`) or by its device (`vsvm`,
//! `0000:c1:00.0`). A reader without CAP_SYS_ADMIN sees every address as 0.

use std::ops::RangeInclusive;

/// The regions named `name` at the top level of an iomem listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Regions {
    /// Their byte ranges, inclusive as the listing prints them.
    Found(Vec<RangeInclusive<u64>>),
    /// The listing has them, with addresses hidden (all 0: the reader is not privileged).
    Hidden,
    /// No top-level region has that name.
    Missing,
}

/// The top-level regions of `text` named `name`. A line that is not `START-END : NAME` is
/// skipped: the listing's format is the kernel's, and one odd line says nothing of the rest.
pub fn regions(text: &str, name: &str) -> Regions {
    let mut found = Vec::new();
    let mut hidden = false;
    for line in text.lines() {
        if line.starts_with(' ') {
            continue;
        }
        let Some((range, n)) = line.split_once(" : ") else {
            continue;
        };
        if n.trim_end() != name {
            continue;
        }
        let Some((a, b)) = range.trim().split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            continue;
        };
        if a == 0 && b == 0 {
            hidden = true;
        } else if a <= b {
            found.push(a..=b);
        }
    }
    match (found.is_empty(), hidden) {
        (false, _) => Regions::Found(found),
        (true, true) => Regions::Hidden,
        (true, false) => Regions::Missing,
    }
}

impl Regions {
    /// Whether the page at `pfn` lies in one of the regions (`None` where they are unknown).
    pub fn holds_pfn(&self, pfn: u64) -> Option<bool> {
        let Regions::Found(r) = self else {
            return None;
        };
        let Some(addr) = pfn.checked_mul(super::PAGE) else {
            return Some(false);
        };
        Some(
            r.iter()
                .any(|r| r.contains(&addr) && r.contains(&(addr + super::PAGE - 1))),
        )
    }

    /// The regions as the listing prints them: `[mem 0xfc0000000-0xfcfffffff]`.
    pub fn describe(&self, name: &str) -> String {
        match self {
            Regions::Found(r) => {
                let each: Vec<String> = r
                    .iter()
                    .map(|r| format!("[mem {:#x}-{:#x}]", r.start(), r.end()))
                    .collect();
                format!("{name} {}", each.join(" "))
            }
            Regions::Hidden => format!("{name} (addresses hidden from this reader)"),
            Regions::Missing => format!("no region named {name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A privileged listing of the VM lab's guest with the test driver loaded (two chunks of
    /// device 0, one of device 1) and the virtual SVM GPU, and a PCI function whose BARs are
    /// named like the device: only top-level regions count.
    const LISTING: &str = "\
00000000-00000fff : Reserved
00001000-0009fbff : System RAM
00100000-bffdffff : System RAM
  01000000-01ffffff : Kernel code
c0000000-febfffff : PCI Bus 0000:00
  febf0000-febf0fff : 0000:c1:00.0
fffc0000-ffffffff : Reserved
100000000-13fffffff : System RAM
ffc0000000-ffcfffffff : hmm_dmirror
ffd0000000-ffdfffffff : hmm_dmirror
ffe0000000-ffefffffff : hmm_dmirror
fff0000000-fff3ffffff : vsvm
fff4000000-fff7ffffff : 0000:c1:00.0
";

    #[test]
    fn a_device_pfn_must_lie_in_a_top_level_region_of_the_devices_name() {
        let r = regions(LISTING, "hmm_dmirror");
        assert_eq!(r.holds_pfn(0xffc0000), Some(true));
        assert_eq!(r.holds_pfn(0xffeffff), Some(true));
        assert_eq!(r.holds_pfn(0xfff0000), Some(false), "vsvm's, not dmirror's");
        assert_eq!(r.holds_pfn(0x100000), Some(false), "system RAM");
        let amd = regions(LISTING, "0000:c1:00.0");
        assert_eq!(amd, Regions::Found(vec![0xfff4000000..=0xfff7ffffff]));
        assert_eq!(
            amd.holds_pfn(0xfebf0),
            Some(false),
            "a BAR is not device-private memory"
        );
        assert_eq!(
            regions(LISTING, "vsvm").describe("vsvm"),
            "vsvm [mem 0xfff0000000-0xfff3ffffff]"
        );
    }

    #[test]
    fn hidden_and_missing_regions_are_told_apart() {
        let hidden = "00000000-00000000 : System RAM\n00000000-00000000 : hmm_dmirror\n";
        assert_eq!(regions(hidden, "hmm_dmirror"), Regions::Hidden);
        assert_eq!(regions(hidden, "hmm_dmirror").holds_pfn(1), None);
        assert_eq!(regions(LISTING, "nouveau"), Regions::Missing);
        assert_eq!(regions("", "vsvm").describe("vsvm"), "no region named vsvm");
    }

    #[test]
    fn odd_lines_are_skipped_and_huge_pfns_do_not_overflow() {
        let text = "zzzz-1 : vsvm\n10-0 : vsvm\nnot a line\n1000-1fff : vsvm\n";
        let r = regions(text, "vsvm");
        assert_eq!(r, Regions::Found(vec![0x1000..=0x1fff]));
        assert_eq!(r.holds_pfn(1), Some(true));
        assert_eq!(r.holds_pfn(u64::MAX), Some(false));
    }
}
