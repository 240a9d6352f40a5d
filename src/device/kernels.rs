//! The kernels a case can launch, one variant per source file in `kernels/`.
//!
//! `kernels/README.md` states each kernel's exact semantics; the sim runs Rust twins of them
//! (`device::sim::kernels`). [`SIGNATURES`] is the argument list each `.hip` source must declare,
//! and a test fails when a source and its twin disagree. The kernel-driver backends, whose
//! devices run no code, run them on the CPU through the device's accesses ([`words`]).

pub mod words;

use crate::device::{Buf, Span, PAGE_SIZE, WORDS_PER_PAGE};

/// Threads per block for every launch; grids are one-dimensional and grid-stride.
pub const BLOCK_THREADS: u32 = 256;

/// The most blocks a grid is launched with. Every kernel is grid-stride, so a larger span only
/// means more iterations per thread; the cap keeps the grid (16.7 M threads) inside every HIP
/// and CUDA device's one-dimensional limits.
pub const MAX_GRID_BLOCKS: u32 = 65_535;

/// A kernel and its arguments. Buffers are spans of allocations; [`Launch::args`] turns them
/// into device pointers (`base + span.offset`), word counts (`span.len / 4`) and, for the page
/// kernels (touch, fault storm), whole-page counts (`span.len / 4096`: a partial last page is
/// not touched).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Launch {
    /// `buf[i] = pattern(seed, generation, first_word + i)` for every word of the span.
    Fill {
        buf: Buf,
        span: Span,
        seed: u64,
        generation: u32,
    },
    /// Counts words of the span that differ from the pattern into `result[0]` and the lowest
    /// differing word index (allocation-relative) into `result[1]` (u64::MAX when none).
    /// `result` is two u64 (16 bytes) at the start of its allocation; the kernel adds to
    /// `result[0]` and takes the minimum into `result[1]`, so the caller zeroes and sets them.
    Verify {
        buf: Buf,
        span: Span,
        seed: u64,
        generation: u32,
        result: Buf,
    },
    /// Reads the first word of every `stride_pages`-th page of the span and adds them all into
    /// the u64 at the start of `sum`.
    TouchRead {
        buf: Buf,
        span: Span,
        stride_pages: u64,
        sum: Buf,
    },
    /// Writes the pattern over every word of every `stride_pages`-th page of the span.
    TouchWrite {
        buf: Buf,
        span: Span,
        stride_pages: u64,
        seed: u64,
        generation: u32,
    },
    /// Writes the pattern over each page of the span, page `(i * step + offset) % pages` by
    /// thread block `i`: every page once, in a scattered order. `step` must be coprime to the
    /// span's page count.
    FaultStorm {
        buf: Buf,
        span: Span,
        step: u64,
        offset: u64,
        seed: u64,
        generation: u32,
    },
    /// Adds `iterations` to every u32 counter of the span, one system-scope atomic at a time.
    AtomicInc {
        buf: Buf,
        span: Span,
        iterations: u32,
    },
    /// Copies `src` span to `dst` span word by word (the spans have the same length).
    Copy {
        dst: Buf,
        dst_span: Span,
        src: Buf,
        src_span: Span,
    },
}

/// The page fault-storm thread block `i` writes among `pages`: `(i * step + offset) % pages`,
/// without overflow (`Launch::FaultStorm`; `kernels/fault_storm.hip` computes the same).
pub fn storm_page(i: u64, step: u64, offset: u64, pages: u64) -> u64 {
    ((i as u128 * step as u128 + offset as u128) % pages as u128) as u64
}

impl Launch {
    /// The kernel's symbol in its `.hip` source.
    pub fn symbol(&self) -> &'static str {
        match self {
            Launch::Fill { .. } => "svm_fill",
            Launch::Verify { .. } => "svm_verify",
            Launch::TouchRead { .. } => "svm_touch_read",
            Launch::TouchWrite { .. } => "svm_touch_write",
            Launch::FaultStorm { .. } => "svm_fault_storm",
            Launch::AtomicInc { .. } => "svm_atomic_inc",
            Launch::Copy { .. } => "svm_copy",
        }
    }

    /// The launch arguments in [`SIGNATURES`] order, each under its parameter name there.
    ///
    /// Pointers are a buffer and a byte offset into it (the span's start; 0 for `result` and
    /// `sum`, which sit at the start of their allocation). Word counts are `span.len / 4` and
    /// `first_word` is `span.offset / 4`, so patterns are indexed by allocation-relative word.
    /// Page counts are whole pages, `span.len / 4096`: a page kernel writes whole pages, and a
    /// partial page at the end of the span is left alone rather than written past.
    pub fn args(&self) -> Vec<(&'static str, Arg)> {
        let ptr = |buf: Buf, offset: u64| Arg::Ptr {
            buf,
            offset,
            mutable: true,
        };
        let ptr_const = |buf: Buf, offset: u64| Arg::Ptr {
            buf,
            offset,
            mutable: false,
        };
        match *self {
            Launch::Fill {
                buf,
                span,
                seed,
                generation,
            } => vec![
                ("buf", ptr(buf, span.offset)),
                ("nwords", Arg::U64(span.words())),
                ("first_word", Arg::U64(span.first_word())),
                ("seed", Arg::U64(seed)),
                ("generation", Arg::U32(generation)),
            ],
            Launch::Verify {
                buf,
                span,
                seed,
                generation,
                result,
            } => vec![
                ("buf", ptr_const(buf, span.offset)),
                ("nwords", Arg::U64(span.words())),
                ("first_word", Arg::U64(span.first_word())),
                ("seed", Arg::U64(seed)),
                ("generation", Arg::U32(generation)),
                ("result", ptr(result, 0)),
            ],
            Launch::TouchRead {
                buf,
                span,
                stride_pages,
                sum,
            } => vec![
                ("buf", ptr_const(buf, span.offset)),
                ("npages", Arg::U64(whole_pages(span))),
                ("stride_pages", Arg::U64(stride_pages)),
                ("sum", ptr(sum, 0)),
            ],
            Launch::TouchWrite {
                buf,
                span,
                stride_pages,
                seed,
                generation,
            } => vec![
                ("buf", ptr(buf, span.offset)),
                ("npages", Arg::U64(whole_pages(span))),
                ("stride_pages", Arg::U64(stride_pages)),
                ("first_word", Arg::U64(span.first_word())),
                ("seed", Arg::U64(seed)),
                ("generation", Arg::U32(generation)),
            ],
            Launch::FaultStorm {
                buf,
                span,
                step,
                offset,
                seed,
                generation,
            } => vec![
                ("buf", ptr(buf, span.offset)),
                ("npages", Arg::U64(whole_pages(span))),
                ("step", Arg::U64(step)),
                ("offset", Arg::U64(offset)),
                ("first_word", Arg::U64(span.first_word())),
                ("seed", Arg::U64(seed)),
                ("generation", Arg::U32(generation)),
            ],
            Launch::AtomicInc {
                buf,
                span,
                iterations,
            } => vec![
                ("counters", ptr(buf, span.offset)),
                ("ncounters", Arg::U64(span.words())),
                ("iterations", Arg::U32(iterations)),
            ],
            Launch::Copy {
                dst,
                dst_span,
                src,
                src_span,
            } => vec![
                ("dst", ptr(dst, dst_span.offset)),
                ("src", ptr_const(src, src_span.offset)),
                ("nwords", Arg::U64(copy_words(dst_span, src_span))),
            ],
        }
    }

    /// Blocks of [`BLOCK_THREADS`] to launch: enough for one unit of work per thread (per
    /// block for the fault storm), capped at [`MAX_GRID_BLOCKS`], at least one. The unit is a
    /// word (fill, verify, copy), a counter (atomic_inc), a touched page (touch_read), a word
    /// of a touched page (touch_write) or a page (fault_storm, one block per page).
    pub fn grid_blocks(&self) -> u32 {
        let per_thread = |work: u64| work.div_ceil(BLOCK_THREADS as u64);
        let blocks = match *self {
            Launch::Fill { span, .. }
            | Launch::Verify { span, .. }
            | Launch::AtomicInc { span, .. } => per_thread(span.words()),
            Launch::Copy {
                dst_span, src_span, ..
            } => per_thread(copy_words(dst_span, src_span)),
            Launch::TouchRead {
                span, stride_pages, ..
            } => per_thread(touched_pages(span, stride_pages)),
            Launch::TouchWrite {
                span, stride_pages, ..
            } => per_thread(touched_pages(span, stride_pages) * WORDS_PER_PAGE),
            Launch::FaultStorm { span, .. } => whole_pages(span),
        };
        blocks.clamp(1, MAX_GRID_BLOCKS as u64) as u32
    }
}

/// One launch argument, as the HIP backend packs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    /// A device pointer: `buf`'s base address plus `offset` bytes. `mutable` is false for a
    /// `const` parameter, which the kernel only reads.
    Ptr {
        buf: Buf,
        offset: u64,
        mutable: bool,
    },
    /// A `uint64_t` parameter.
    U64(u64),
    /// A `uint32_t` parameter.
    U32(u32),
}

/// Whole pages of a span: the `npages` of the page kernels.
fn whole_pages(span: Span) -> u64 {
    span.len / PAGE_SIZE
}

/// Words a copy moves: the shorter span bounds it, so spans of different lengths (a case bug)
/// never make the kernel read or write past either.
fn copy_words(dst_span: Span, src_span: Span) -> u64 {
    dst_span.words().min(src_span.words())
}

/// Pages a strided touch reaches: 0, stride, 2 * stride, ... below the span's whole pages.
fn touched_pages(span: Span, stride_pages: u64) -> u64 {
    match stride_pages {
        0 => 0,
        stride => whole_pages(span).div_ceil(stride),
    }
}

/// One kernel parameter as the `.hip` source declares it: C type and name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Param {
    pub ty: &'static str,
    pub name: &'static str,
}

const fn p(ty: &'static str, name: &'static str) -> Param {
    Param { ty, name }
}

/// The source file and parameter list of the kernel `symbol`, from [`SIGNATURES`].
pub fn signature(symbol: &str) -> Option<(&'static str, &'static [Param])> {
    SIGNATURES
        .iter()
        .find(|(_, s, _)| *s == symbol)
        .map(|(file, _, params)| (*file, *params))
}

/// The source file, symbol and parameter list of every kernel, in launch-argument order.
/// The HIP backend packs arguments in this order; the sim twin takes the same values.
pub const SIGNATURES: &[(&str, &str, &[Param])] = &[
    (
        "fill.hip",
        "svm_fill",
        &[
            p("uint32_t*", "buf"),
            p("uint64_t", "nwords"),
            p("uint64_t", "first_word"),
            p("uint64_t", "seed"),
            p("uint32_t", "generation"),
        ],
    ),
    (
        "verify.hip",
        "svm_verify",
        &[
            p("const uint32_t*", "buf"),
            p("uint64_t", "nwords"),
            p("uint64_t", "first_word"),
            p("uint64_t", "seed"),
            p("uint32_t", "generation"),
            p("unsigned long long*", "result"),
        ],
    ),
    (
        "touch.hip",
        "svm_touch_read",
        &[
            p("const uint32_t*", "buf"),
            p("uint64_t", "npages"),
            p("uint64_t", "stride_pages"),
            p("unsigned long long*", "sum"),
        ],
    ),
    (
        "touch.hip",
        "svm_touch_write",
        &[
            p("uint32_t*", "buf"),
            p("uint64_t", "npages"),
            p("uint64_t", "stride_pages"),
            p("uint64_t", "first_word"),
            p("uint64_t", "seed"),
            p("uint32_t", "generation"),
        ],
    ),
    (
        "fault_storm.hip",
        "svm_fault_storm",
        &[
            p("uint32_t*", "buf"),
            p("uint64_t", "npages"),
            p("uint64_t", "step"),
            p("uint64_t", "offset"),
            p("uint64_t", "first_word"),
            p("uint64_t", "seed"),
            p("uint32_t", "generation"),
        ],
    ),
    (
        "atomic_inc.hip",
        "svm_atomic_inc",
        &[
            p("uint32_t*", "counters"),
            p("uint64_t", "ncounters"),
            p("uint32_t", "iterations"),
        ],
    ),
    (
        "copy.hip",
        "svm_copy",
        &[
            p("uint32_t*", "dst"),
            p("const uint32_t*", "src"),
            p("uint64_t", "nwords"),
        ],
    ),
];

#[cfg(test)]
mod tests {

    #[test]
    fn the_storm_page_wraps_without_overflow() {
        assert_eq!(storm_page(3, 5, 1, 7), (3 * 5 + 1) % 7);
        let m = u64::MAX;
        assert_eq!(storm_page(m, m, 5, 7), ((m % 7) * (m % 7) + 5) % 7);
    }

    use super::*;
    use crate::device::AllocKind;

    const BUF: Buf = Buf {
        id: 1,
        kind: AllocKind::Managed,
        len: 1 << 30,
    };

    fn fill(span: Span) -> Launch {
        Launch::Fill {
            buf: BUF,
            span,
            seed: 1,
            generation: 2,
        }
    }

    #[test]
    fn span_offset_becomes_pointer_offset_and_first_word() {
        let args = fill(Span::new(4 * PAGE_SIZE + 8, 64)).args();
        assert_eq!(
            args[..3],
            [
                (
                    "buf",
                    Arg::Ptr {
                        buf: BUF,
                        offset: 4 * PAGE_SIZE + 8,
                        mutable: true
                    }
                ),
                ("nwords", Arg::U64(16)),
                ("first_word", Arg::U64(4 * WORDS_PER_PAGE + 2)),
            ]
        );
    }

    #[test]
    fn page_kernels_count_whole_pages_only() {
        let storm = Launch::FaultStorm {
            buf: BUF,
            span: Span::new(0, 3 * PAGE_SIZE + 4),
            step: 1,
            offset: 0,
            seed: 0,
            generation: 0,
        };
        assert_eq!(storm.args()[1], ("npages", Arg::U64(3)));
        assert_eq!(storm.grid_blocks(), 3);
    }

    #[test]
    fn grid_covers_the_work_up_to_the_cap() {
        assert_eq!(fill(Span::new(0, 4)).grid_blocks(), 1);
        assert_eq!(fill(Span::new(0, 0)).grid_blocks(), 1);
        assert_eq!(fill(Span::pages(0, 1)).grid_blocks(), 4);
        assert_eq!(fill(Span::new(0, 256 * 4 + 4)).grid_blocks(), 2);
        assert_eq!(fill(Span::new(0, 1 << 40)).grid_blocks(), MAX_GRID_BLOCKS);
        let touch = |stride_pages| Launch::TouchRead {
            buf: BUF,
            span: Span::pages(0, 1000),
            stride_pages,
            sum: BUF,
        };
        // 1000 pages at stride 3: pages 0, 3, ..., 999 = 334 threads = 2 blocks.
        assert_eq!(touch(3).grid_blocks(), 2);
        assert_eq!(touch(0).grid_blocks(), 1);
    }

    #[test]
    fn every_launch_symbol_has_a_signature() {
        assert_eq!(signature("svm_touch_write").unwrap().0, "touch.hip");
        assert_eq!(signature("svm_nonesuch"), None);
    }
}
