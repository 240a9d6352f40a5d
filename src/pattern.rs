//! Data patterns and mismatch diagnosis.
//!
//! Every 32-bit word is a function of (seed, generation, word index) that differs between every
//! word, page and generation, and that can be inverted: from a wrong value the diagnosis finds
//! which word of which generation it was, and so tells a stale page (an earlier generation) from
//! a misplaced one (another page's words), a page never copied (zeros) and a torn one.
//!
//! The formula is implemented twice more, in `kernels/svm_pattern.h` for the GPU and in the
//! sim's kernel twins (which call this module); a test keeps the three in step.

use crate::device::WORDS_PER_PAGE;

/// Multiplier of the first mixing step, odd so that it is invertible modulo 2^32.
const M1: u32 = 0x9E37_79B1;
/// Multiplier of the second mixing step, odd so that it is invertible modulo 2^32.
const M2: u32 = 0x85EB_CA6B;

/// The per-(seed, generation, 16 GiB block) key: splitmix64 of the three, folded to 32 bits.
pub fn key(seed: u64, generation: u32, block: u32) -> u32 {
    let mut z =
        seed ^ (((generation as u64) << 32) | block as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z ^ (z >> 32)) as u32
}

/// The low 32 bits of the word index, mixed with the key by a bijection on u32.
#[inline]
pub fn mix(key: u32, low: u32) -> u32 {
    let mut x = low ^ key;
    x = x.wrapping_mul(M1);
    x ^= x >> 16;
    x = x.wrapping_mul(M2);
    x ^= x >> 13;
    x
}

/// The inverse of [`mix`]: `unmix(k, mix(k, i)) == i`.
#[inline]
pub fn unmix(key: u32, value: u32) -> u32 {
    let mut x = value;
    // x ^= x >> 13 is undone by applying it until the shifts run out (13, 26).
    x ^= x >> 13;
    x ^= x >> 26;
    x = x.wrapping_mul(inverse(M2));
    x ^= x >> 16;
    x = x.wrapping_mul(inverse(M1));
    x ^ key
}

/// Multiplicative inverse of an odd number modulo 2^32 (Newton's iteration).
const fn inverse(a: u32) -> u32 {
    let mut x = a; // correct to 3 bits for odd a
    let mut i = 0;
    while i < 5 {
        x = x.wrapping_mul(2u32.wrapping_sub(a.wrapping_mul(x)));
        i += 1;
    }
    x
}

/// The word at `index` (allocation-relative word index) of `generation` under `seed`.
#[inline]
pub fn word(seed: u64, generation: u32, index: u64) -> u32 {
    mix(key(seed, generation, (index >> 32) as u32), index as u32)
}

/// A pattern: one seed, one generation. Cases bump the generation at every write so that a
/// page left behind by a migration shows up as an earlier generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pattern {
    pub seed: u64,
    pub generation: u32,
}

impl Pattern {
    pub const fn new(seed: u64, generation: u32) -> Pattern {
        Pattern { seed, generation }
    }

    pub fn word(&self, index: u64) -> u32 {
        word(self.seed, self.generation, index)
    }

    /// Fills `out` with the words starting at allocation word index `first_word`.
    pub fn fill(&self, first_word: u64, out: &mut [u32]) {
        let mut index = first_word;
        for chunk in chunks_by_block(first_word, out) {
            let k = key(self.seed, self.generation, (index >> 32) as u32);
            for (i, w) in chunk.iter_mut().enumerate() {
                *w = mix(k, (index + i as u64) as u32);
            }
            index += chunk.len() as u64;
        }
    }

    /// The allocation-relative page that holds word `index`.
    pub fn page_of(index: u64) -> u64 {
        index / WORDS_PER_PAGE
    }
}

/// Splits `out` where the high 32 bits of the word index change, so one key serves a chunk.
fn chunks_by_block(first_word: u64, out: &mut [u32]) -> impl Iterator<Item = &mut [u32]> {
    let mut rest = out;
    let mut index = first_word;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let to_boundary = ((index | 0xFFFF_FFFF) - index + 1) as usize;
        let take = to_boundary.min(rest.len());
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(take);
        rest = tail;
        index += take as u64;
        Some(head)
    })
}

#[cfg(test)]
mod core_tests {
    use super::*;

    #[test]
    fn mix_inverts() {
        for k in [0, 1, 0xdead_beef, u32::MAX] {
            for i in [0u32, 1, 1023, 1024, 0x8000_0000, u32::MAX] {
                assert_eq!(unmix(k, mix(k, i)), i, "key {k:#x} index {i:#x}");
            }
        }
    }

    #[test]
    fn fill_matches_word_across_a_block_boundary() {
        let p = Pattern::new(7, 3);
        let first = (1u64 << 32) - 5;
        let mut out = [0u32; 10];
        p.fill(first, &mut out);
        for (i, w) in out.iter().enumerate() {
            assert_eq!(*w, p.word(first + i as u64));
        }
    }
}

/// A pattern mismatch: how many words and pages are bad, the first bad words, and what each
/// bad page looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub bad_words: u64,
    pub first_bad: Vec<BadWord>,
}

/// One wrong word, located by allocation-relative page and byte offset within the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadWord {
    pub page: u64,
    pub offset: u64,
    pub expected: u32,
    pub actual: u32,
}

/// How many bad words a report names.
pub const FIRST_BAD_WORDS: usize = 8;

impl Pattern {
    /// Checks `words` (starting at allocation word index `first_word`) against the pattern.
    pub fn check(&self, first_word: u64, words: &[u32]) -> Result<(), Mismatch> {
        let mut expected = vec![0u32; words.len()];
        self.fill(first_word, &mut expected);
        let mut m = Mismatch {
            bad_words: 0,
            first_bad: Vec::new(),
        };
        for (i, (e, a)) in expected.iter().zip(words).enumerate() {
            if e != a {
                m.bad_words += 1;
                if m.first_bad.len() < FIRST_BAD_WORDS {
                    let index = first_word + i as u64;
                    m.first_bad.push(BadWord {
                        page: index / WORDS_PER_PAGE,
                        offset: (index % WORDS_PER_PAGE) * 4,
                        expected: *e,
                        actual: *a,
                    });
                }
            }
        }
        if m.bad_words == 0 {
            Ok(())
        } else {
            Err(m)
        }
    }
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} bad words", self.bad_words)?;
        for b in &self.first_bad {
            writeln!(
                f,
                "  page {} offset {:#05x}: expected {:#010x}, actual {:#010x}",
                b.page, b.offset, b.expected, b.actual
            )?;
        }
        Ok(())
    }
}
