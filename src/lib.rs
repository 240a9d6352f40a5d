//! svmconf: a hardware-in-the-loop conformance suite for GPU shared virtual memory migration.
//!
//! The folders follow a run, each depending only on those above it in this list:
//! [`util`] and [`model`] (the vocabulary), [`fixtures`] (the YAML under `fixtures/`),
//! [`observe`] (kernel log, taint, memory), [`device`] (the Device trait and one folder per
//! backend), [`case`] (what a case body receives), `suites/` (the cases), [`results`] (the
//! journal and every report derived from it), [`harness`] (plan, run, record) and [`tools`]
//! (the commands around the suite, and the entry point).

// `unsafe` only in the FFI modules, which allow it (device::memory, device::hip::ffi,
// device::dmirror::ffi, device::vsvm::ffi), and every unsafe block there says why it is sound.
#![deny(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod case;
pub mod device;
pub mod fixtures;
pub mod harness;
pub mod model;
pub mod observe;
pub mod results;
pub mod tools;
pub mod util;

/// What a unit test does when the machine lacks a tool or device it needs: fail under `CI=true`,
/// else print a skip line. The integration tests share the file.
#[cfg(test)]
#[path = "../tests/common/needs.rs"]
pub(crate) mod needs;

#[path = "../suites/mod.rs"]
pub mod suites;
