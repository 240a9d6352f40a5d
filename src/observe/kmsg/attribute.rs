//! Which case a kernel log line belongs to, by what the line names: a process id (`PID: 1234`
//! of a WARNING, the `[T1234]` caller id of CONFIG_PRINTK_CALLER, amdgpu's `pid 1234`) or a user
//! address inside one case's allocations. A line logged while several cases' windows were open
//! is charged to the one it names; one that names none of them is unattributed, and every
//! candidate is listed.

use std::sync::OnceLock;

use regex::Regex;

use crate::model::memory::Allocation;

/// The lowest address a user allocation has (the kernel's default `mmap_min_addr`); smaller
/// numbers in a line are offsets and sizes.
const USER_MIN: u64 = 0x1_0000;
/// The first address past a 47-bit user address space: kernel addresses are not evidence.
const USER_END: u64 = 0x8000_0000_0000;

/// What a line names that could tell whose it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evidence {
    pub pids: Vec<u32>,
    /// User-space addresses.
    pub addresses: Vec<u64>,
}

impl Evidence {
    /// Reads `PID: N`, `pid N`, `pid=N`, `[TN]` or `[  TN]`, and `0x...` user addresses from
    /// `text`.
    pub fn of(text: &str) -> Evidence {
        static PID: OnceLock<Regex> = OnceLock::new();
        static ADDR: OnceLock<Regex> = OnceLock::new();
        let pid = PID.get_or_init(|| {
            Regex::new(r"(?:\bPID: |\bpid[ =]|\[ *T)(\d+)").expect("a valid pattern")
        });
        let addr =
            ADDR.get_or_init(|| Regex::new(r"\b0x([0-9a-fA-F]{5,16})\b").expect("a valid pattern"));
        let mut e = Evidence::default();
        for c in pid.captures_iter(text) {
            if let Ok(p) = c[1].parse::<u32>() {
                if !e.pids.contains(&p) {
                    e.pids.push(p);
                }
            }
        }
        for c in addr.captures_iter(text) {
            if let Ok(a) = u64::from_str_radix(&c[1], 16) {
                if (USER_MIN..USER_END).contains(&a) && !e.addresses.contains(&a) {
                    e.addresses.push(a);
                }
            }
        }
        e
    }
}

/// A case as the kernel log can recognise it: the processes it ran in and its allocations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    pub case: String,
    pub pids: Vec<u32>,
    pub allocations: Vec<Allocation>,
}

impl Owner {
    /// Whether `e` names this case: one of its processes, or an address in its allocations.
    fn named_by(&self, e: &Evidence) -> bool {
        e.pids.iter().any(|p| self.pids.contains(p))
            || e.addresses
                .iter()
                .any(|a| self.allocations.iter().any(|al| al.holds(*a)))
    }
}

/// Whose a line is, seen from one case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Charge {
    /// The case's: it names the case, or no other case was running.
    Mine,
    /// Another case's, which it names.
    Theirs(String),
    /// It names none of the cases running then (a kernel thread's pid, no pid at all): every
    /// candidate, this case first, keeps it.
    Unattributed { candidates: Vec<String> },
}

/// Whose `text` is, for `me`, with `others` the cases whose windows held the line too.
pub fn attribute(text: &str, me: &Owner, others: &[&Owner]) -> Charge {
    if others.is_empty() {
        return Charge::Mine;
    }
    let e = Evidence::of(text);
    if me.named_by(&e) {
        return Charge::Mine;
    }
    if let Some(o) = others.iter().find(|o| o.named_by(&e)) {
        return Charge::Theirs(o.case.clone());
    }
    let mut candidates = vec![me.case.clone()];
    candidates.extend(others.iter().map(|o| o.case.clone()));
    Charge::Unattributed { candidates }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::memory::AllocKind;

    fn owner(case: &str, pids: &[u32], at: &[u64]) -> Owner {
        Owner {
            case: case.into(),
            pids: pids.to_vec(),
            allocations: at
                .iter()
                .enumerate()
                .map(|(i, a)| Allocation {
                    buf: i as u32 + 1,
                    kind: AllocKind::Mmap,
                    len: 8192,
                    address: *a,
                })
                .collect(),
        }
    }

    #[test]
    fn evidence_reads_pids_caller_ids_and_user_addresses_only() {
        let e = Evidence::of(
            "[  T4321] WARNING: CPU: 3 PID: 1234 at mm/migrate_device.c:123 f+0x1f0/0x5c0 \
             page fault for address 0x00007f1234567000 ffff888100000000 0xffff888100000000",
        );
        assert_eq!(e.pids, vec![4321, 1234]);
        assert_eq!(
            e.addresses,
            vec![0x7f12_3456_7000],
            "offsets and kernel addresses left"
        );
        let amd = Evidence::of("for process t pid 77 thread t pid=78");
        assert_eq!(amd.pids, vec![77, 78]);
        assert_eq!(Evidence::of("WARNING: at x.c:1"), Evidence::default());
    }

    #[test]
    fn a_line_goes_to_the_case_its_pid_or_address_names() {
        let a = owner("a", &[100], &[0x7f00_0000_0000]);
        let b = owner("b", &[200], &[0x7f00_1000_0000]);
        let line = "WARNING: CPU: 0 PID: 200 at drivers/gpu/drm/drm_pagemap.c:400 f+0x1/0x2";
        assert_eq!(attribute(line, &a, &[&b]), Charge::Theirs("b".into()));
        assert_eq!(attribute(line, &b, &[&a]), Charge::Mine);
        let by_addr = "BUG: bad page at 0x7f0000001ff8 (pid 9)";
        assert_eq!(attribute(by_addr, &a, &[&b]), Charge::Mine);
        assert_eq!(attribute(by_addr, &b, &[&a]), Charge::Theirs("a".into()));
        let past = "BUG: bad page at 0x7f0000002000";
        assert!(matches!(
            attribute(past, &a, &[&b]),
            Charge::Unattributed { .. }
        ));
    }

    #[test]
    fn a_line_naming_no_running_case_is_unattributed_with_every_candidate() {
        let a = owner("a", &[100], &[]);
        let b = owner("b", &[200], &[]);
        let c = owner("c", &[300], &[]);
        let kworker = "WARNING: CPU: 1 PID: 57 at mm/migrate_device.c:9 g+0x1/0x2";
        assert_eq!(
            attribute(kworker, &b, &[&a, &c]),
            Charge::Unattributed {
                candidates: vec!["b".into(), "a".into(), "c".into()]
            }
        );
        assert_eq!(
            attribute(kworker, &a, &[]),
            Charge::Mine,
            "alone, whatever it names"
        );
    }
}
