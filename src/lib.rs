//! svmconf: a hardware-in-the-loop conformance suite for GPU shared virtual memory migration.
//!
//! The cases live in `suites/` (one file per migration path) and run against a [`device::Device`]:
//! the reference device `sim` here, real GPUs through the other backends. The runner in [`run`]
//! plans, runs and records them; [`results`] turns the journal into reports.

pub mod baseline;
pub mod case;
pub mod device;
pub mod expectations;
pub mod fixtures;
pub mod kernels;
pub mod kmsg;
pub mod lab;
pub mod meminfo;
pub mod pattern;
pub mod preflight;
pub mod profile;
pub mod regress;
pub mod results;
pub mod run;
pub mod scaling;
pub mod sensitivity;
pub mod shard;
pub mod taint;
pub mod timing;
pub mod yaml;

/// What a unit test does when the machine lacks a tool or device it needs: fail under `CI=true`,
/// else print a skip line. The integration tests share the file.
#[cfg(test)]
#[path = "../tests/common/needs.rs"]
pub(crate) mod needs;

#[path = "../suites/mod.rs"]
pub mod suites;
