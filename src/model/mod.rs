//! The suite's vocabulary, free of any device or runner: data patterns and their diagnosis,
//! device profiles and the reference policy, timing statistics and the baseline comparison,
//! and how a suite is split into shards.

pub mod capability;
pub mod changepoint;
pub mod memory;
pub mod owners;
pub mod pattern;
pub mod profile;
pub mod regress;
pub mod shard;
pub mod status;
pub mod timing;
