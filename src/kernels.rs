//! The kernels a case can launch, one variant per source file in `kernels/`.
//!
//! `kernels/README.md` states each kernel's exact semantics; the sim runs Rust twins of them
//! (`device::sim::kernels`). [`SIGNATURES`] is the argument list each `.hip` source must declare,
//! and a test fails when a source and its twin disagree.

use crate::device::{Buf, Span};

/// Threads per block for every launch; grids are one-dimensional and grid-stride.
pub const BLOCK_THREADS: u32 = 256;

/// A kernel and its arguments. Buffers are spans of allocations; the backend turns them into
/// device pointers (`base + span.offset`) and word counts (`span.len / 4`).
#[derive(Clone, Debug, PartialEq, Eq)]
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
