//! `--shard K/N`: splitting the suite across machines, and which part a case belongs to.
//!
//! A case's shard is a function of its name alone ([`shard_of`]), not of its position in the
//! plan: adding a case to the matrix moves no other case to another shard, and every machine of
//! a nightly lab agrees on the split without talking to the others. Shards of one suite are put
//! back together with [`crate::results::merge()`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// `--shard K/N`: the K-th of N parts, 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ShardSpec {
    pub index: u32,
    pub count: u32,
}

/// A `--shard` value that is not `K/N` with `1 <= K <= N`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("--shard: {problem} in `{given}`; expected K/N with 1 <= K <= N, like `--shard 2/4`")]
pub struct ShardError {
    pub given: String,
    pub problem: &'static str,
}

impl ShardSpec {
    /// The whole suite as one shard: what a run without `--shard` holds.
    pub const WHOLE: ShardSpec = ShardSpec { index: 1, count: 1 };

    /// Parses `K/N`, as given to `--shard`.
    pub fn parse(s: &str) -> Result<ShardSpec, ShardError> {
        let err = |problem| ShardError {
            given: s.to_string(),
            problem,
        };
        let (k, n) = s.split_once('/').ok_or_else(|| err("no `/`"))?;
        let index = number(k).ok_or_else(|| err("the index K is not a whole number"))?;
        let count = number(n).ok_or_else(|| err("the count N is not a whole number"))?;
        if count == 0 {
            return Err(err("the count N is 0"));
        }
        if index == 0 {
            return Err(err("the index K is 0 (shards count from 1)"));
        }
        if index > count {
            return Err(err("the index K is above the count N"));
        }
        Ok(ShardSpec { index, count })
    }

    /// Whether `case` belongs to this shard.
    pub fn holds(&self, case: &str) -> bool {
        shard_of(case, self.count) == self.index
    }
}

/// Digits only: `u32::from_str` would also take `+3`, which no one means.
fn number(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl FromStr for ShardSpec {
    type Err = ShardError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ShardSpec::parse(s)
    }
}

impl fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The shard (1-based, of `count`) that `case` belongs to: FNV-1a 64 of the name's UTF-8
/// bytes, modulo `count`, plus one. A `count` of 0 is taken as 1.
///
/// This function must never change. Shards of one nightly run on different machines, perhaps
/// built from different commits, and results from different nights are compared per shard; a new
/// hash would silently run some cases twice and others never. The test
/// `fixed_names_stay_in_their_shards` pins it.
pub fn shard_of(case: &str, count: u32) -> u32 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = case
        .bytes()
        .fold(OFFSET_BASIS, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    // The remainder is below `count`, itself a u32: the cast cannot truncate.
    (hash % u64::from(count.max(1))) as u32 + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("1/1", 1, 1)]
    #[case("2/4", 2, 4)]
    #[case("4/4", 4, 4)]
    #[case("007/10", 7, 10)]
    fn parses_k_of_n(#[case] s: &str, #[case] index: u32, #[case] count: u32) {
        let spec = ShardSpec::parse(s).unwrap();
        assert_eq!(spec, ShardSpec { index, count });
        assert_eq!(s.parse::<ShardSpec>().unwrap(), spec);
    }

    #[rstest]
    #[case("0/3", "the index K is 0 (shards count from 1)")]
    #[case("4/3", "the index K is above the count N")]
    #[case("1/0", "the count N is 0")]
    #[case("0/0", "the count N is 0")]
    #[case("x", "no `/`")]
    #[case("", "no `/`")]
    #[case("1/", "the count N is not a whole number")]
    #[case("/3", "the index K is not a whole number")]
    #[case("+1/3", "the index K is not a whole number")]
    #[case("1/-3", "the count N is not a whole number")]
    #[case("1/3/5", "the count N is not a whole number")]
    #[case(" 1/3", "the index K is not a whole number")]
    #[case("1/99999999999", "the count N is not a whole number")]
    fn rejects_what_is_not_k_of_n(#[case] s: &str, #[case] problem: &str) {
        let e = ShardSpec::parse(s).unwrap_err();
        assert_eq!(e.problem, problem, "{s}");
        assert_eq!(
            e.to_string(),
            format!(
                "--shard: {problem} in `{s}`; expected K/N with 1 <= K <= N, like `--shard 2/4`"
            )
        );
    }

    #[test]
    fn displays_as_it_parses() {
        assert_eq!(ShardSpec { index: 3, count: 8 }.to_string(), "3/8");
        assert_eq!(ShardSpec::WHOLE.to_string(), "1/1");
    }

    /// Pins the hash: if this fails, shard_of changed and shards of different builds disagree.
    /// The figures are FNV-1a 64 as published (the empty string hashes to the offset basis).
    #[rstest]
    #[case("", 0xcbf2_9ce4_8422_2325)]
    #[case("a", 0xaf63_dc4c_8601_ec8c)]
    #[case("foobar", 0x8594_4171_f739_67e8)]
    fn hash_is_fnv1a_64(#[case] s: &str, #[case] hash: u64) {
        for count in [2u32, 3, 7, 1000, u32::MAX] {
            assert_eq!(
                shard_of(s, count),
                (hash % u64::from(count)) as u32 + 1,
                "{s:?} of {count}"
            );
        }
    }

    #[rstest]
    #[case("prefetch::to_vram::2MiB", 4, 1)]
    #[case("prefetch::to_system::malloc::4KiB", 4, 4)]
    #[case("eviction::lru_whole::vram_2x", 4, 3)]
    #[case("first_touch::untouched::malloc::4KiB", 4, 3)]
    #[case("reset::loses_vram::2MiB", 3, 2)]
    #[case("multi_gpu::peer::2MiB", 7, 4)]
    fn fixed_names_stay_in_their_shards(
        #[case] case: &str,
        #[case] count: u32,
        #[case] shard: u32,
    ) {
        assert_eq!(shard_of(case, count), shard, "{case} of {count}");
        let spec = ShardSpec {
            index: shard,
            count,
        };
        assert!(spec.holds(case));
    }

    #[test]
    fn every_case_lands_in_exactly_one_shard() {
        let names: Vec<String> = (0..500).map(|i| format!("suite::case_{i}::4KiB")).collect();
        for count in [1u32, 2, 5, 16] {
            let mut sizes = vec![0usize; count as usize];
            for name in &names {
                let holders: Vec<u32> = (1..=count)
                    .filter(|&index| ShardSpec { index, count }.holds(name))
                    .collect();
                assert_eq!(holders.len(), 1, "{name} of {count}: {holders:?}");
                sizes[holders[0] as usize - 1] += 1;
            }
            // A usable split: no shard is empty or holds more than twice its share.
            let share = names.len() / count as usize;
            assert!(
                sizes.iter().all(|&n| n > 0 && n <= 2 * share),
                "{count}: {sizes:?}"
            );
        }
    }

    #[test]
    fn count_zero_is_one_shard() {
        assert_eq!(shard_of("prefetch::to_vram::2MiB", 0), 1);
    }
}
