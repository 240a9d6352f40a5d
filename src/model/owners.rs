//! Whose data a page holds: every allocation of a run that could have written it.
//!
//! Each allocation of a case fills and verifies with its own seed, derived from the case's seed
//! and the allocation's ordinal within the case ([`allocation_seed`]): the first allocation a
//! case makes is ordinal 0, the next 1, and so on, the same in every run of the case with the
//! same seed. Every word the suite ever writes is therefore a word of one (case, allocation,
//! generation), and a page that holds none of the checked allocation's own words can still be
//! traced: to another allocation of the same case, or to another case of the run. Device memory
//! handed to one user while it still holds another's data (a device page reused by a migration
//! that did not copy into it) is a leak between users of device memory, and the diagnosis names
//! it as such ([`crate::model::pattern::Diagnosis::Foreign`]).
//!
//! The candidates are bounded: the first [`ALLOCATIONS_PER_CASE`] ordinals of every case of the
//! run (the run's cases are set once at the start with [`set_run_cases`], in the runner and in
//! each case's child process alike, from the same plan), and generations `0..=`
//! [`FOREIGN_GENERATIONS`] of each; pages in the first 16 GiB of their allocation.

use std::sync::{Arc, RwLock};

/// How many allocation ordinals of each case of the run are candidate owners of a foreign page.
/// The suite's cases make a handful of allocations each; a case that makes more still diagnoses
/// its own extra allocations (the case's table holds them all), not another case's.
pub const ALLOCATIONS_PER_CASE: u32 = 32;

/// The generations `0..=FOREIGN_GENERATIONS` of every candidate owner are tried. Cases write a
/// few generations each (`prefetch::rounds` one per round, 8 by default); 64 leaves room, as
/// [`crate::model::pattern::GENERATIONS_BACK`] does for a page's own generations.
pub const FOREIGN_GENERATIONS: u32 = 64;

/// The seed of the allocation with `ordinal` (0 for the case's first allocation) in the case
/// whose seed is `case_seed`: splitmix64 of the two, so that neighbouring ordinals and cases get
/// unrelated patterns.
pub fn allocation_seed(case_seed: u64, ordinal: u32) -> u64 {
    let mut z = case_seed ^ (ordinal as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One allocation that may have written a page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The case it belongs to; `None` for the case being checked.
    pub case: Option<Arc<str>>,
    /// Its ordinal within that case.
    pub allocation: u32,
    /// Its seed: [`allocation_seed`] of the case's seed and the ordinal.
    pub seed: u64,
}

/// The allocations a foreign page is traced to, searched in order: the first that explains a
/// page names it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owners {
    list: Vec<Owner>,
}

impl Owners {
    /// No candidates: the diagnosis says nothing of whose data a page holds.
    pub fn none() -> Owners {
        Owners::default()
    }

    pub fn push(&mut self, owner: Owner) {
        self.list.push(owner);
    }

    /// Adds ordinals `ordinals` of the case whose seed is `case_seed` (`case` `None`: the case
    /// being checked), skipping seeds already listed.
    pub fn add_case(
        &mut self,
        case: Option<Arc<str>>,
        case_seed: u64,
        ordinals: std::ops::Range<u32>,
    ) {
        for allocation in ordinals {
            let seed = allocation_seed(case_seed, allocation);
            if !self.list.iter().any(|o| o.seed == seed) {
                self.list.push(Owner {
                    case: case.clone(),
                    allocation,
                    seed,
                });
            }
        }
    }

    /// The candidates of a case: its own allocations (`own`: ordinal and seed, from its table,
    /// any number), the first [`ALLOCATIONS_PER_CASE`] ordinals of its seed, then the first
    /// [`ALLOCATIONS_PER_CASE`] of every other case of the run ([`run_cases`]).
    pub fn for_case(case_seed: u64, own: impl IntoIterator<Item = (u32, u64)>) -> Owners {
        let mut owners = Owners::none();
        for (allocation, seed) in own {
            if !owners.list.iter().any(|o| o.seed == seed) {
                owners.push(Owner {
                    case: None,
                    allocation,
                    seed,
                });
            }
        }
        owners.add_case(None, case_seed, 0..ALLOCATIONS_PER_CASE);
        for (name, seed) in run_cases().iter() {
            if *seed != case_seed {
                owners.add_case(Some(Arc::clone(name)), *seed, 0..ALLOCATIONS_PER_CASE);
            }
        }
        owners
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn get(&self, index: usize) -> Option<&Owner> {
        self.list.get(index)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Owner> {
        self.list.iter()
    }
}

/// The cases of the run under way: name and case seed of each.
type RunCases = Arc<[(Arc<str>, u64)]>;

static RUN_CASES: RwLock<Option<RunCases>> = RwLock::new(None);

/// Sets the cases of the run (name and case seed of each), for every diagnosis after it. The
/// runner sets them from its plan before any case runs; a case's child process sets them from
/// the same plan, so that a page is traced alike in either.
pub fn set_run_cases(cases: impl IntoIterator<Item = (String, u64)>) {
    let cases: RunCases = cases
        .into_iter()
        .map(|(name, seed)| (Arc::from(name), seed))
        .collect();
    // A poisoned lock only means a panic elsewhere while setting: the value is still whole.
    *RUN_CASES.write().unwrap_or_else(|p| p.into_inner()) = Some(cases);
}

/// The cases of the run, empty until [`set_run_cases`].
pub fn run_cases() -> RunCases {
    RUN_CASES
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .unwrap_or_else(|| Arc::from(Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_seeds_differ_between_ordinals_and_cases() {
        let mut seen = std::collections::HashSet::new();
        for case_seed in [0, 1, 2, u64::MAX] {
            for ordinal in 0..ALLOCATIONS_PER_CASE {
                assert!(seen.insert(allocation_seed(case_seed, ordinal)));
            }
        }
        // Deterministic: a repro gets the same words.
        assert_eq!(allocation_seed(7, 3), allocation_seed(7, 3));
    }

    #[test]
    fn a_case_lists_its_own_allocations_first_and_once() {
        let own = [(0, allocation_seed(5, 0)), (40, allocation_seed(5, 40))];
        let owners = Owners::for_case(5, own);
        assert_eq!(owners.get(0).map(|o| o.allocation), Some(0));
        assert_eq!(owners.get(1).map(|o| o.allocation), Some(40));
        let of_this_case = owners.iter().filter(|o| o.case.is_none()).count();
        assert_eq!(of_this_case, ALLOCATIONS_PER_CASE as usize + 1);
    }
}
