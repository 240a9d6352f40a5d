//! The kernel log: reading `/dev/kmsg`, attributing its records to the cases that were running
//! when the kernel logged them, and deciding which records turn a pass into dmesg-warn and a
//! fail into dmesg-fail.
//!
//! A case cannot see the kernel log itself: a WARNING in migrate_device or a GPU page fault
//! printed by amdgpu is the kernel's word, logged while the case's data may still come back
//! right. So the runner brackets each case with [`KernelLog::begin`] and [`KernelLog::end`],
//! which write marker records (`svmconf: begin <case>`, as igt_runner does) and return the
//! records logged in between; [`classify`] then flags the ones that matter, and [`apply`] turns
//! the case's status accordingly.
//!
//! # Record format (Documentation/ABI/testing/dev-kmsg)
//! ```text
//! 4,1832,2314125813,-;amdgpu 0000:c1:00.0: amdgpu: Runlist is getting oversubscribed.
//!  SUBSYSTEM=pci
//!  DEVICE=+pci:0000:c1:00.0
//! ```
//! `PREFIX,SEQ,TIMESTAMP,FLAGS[,MORE...];MESSAGE`: prefix is `facility << 3 | level`, the
//! sequence number counts every record since boot, the timestamp is microseconds since boot,
//! flags are `-` or `c` (a fragment). Fields after the flags are future extensions
//! (`caller=T123`) and are ignored. Bytes below space, from 127 up, and `\` itself are escaped
//! as `\xNN` in the message. Lines starting with a space are the record's `KEY=VALUE`
//! dictionary; they are checked but not kept, since a [`LogLine`] has no place for them.
//!
//! # `fixtures/kernel-log.yaml`
//! ```yaml
//! allow:                               # lines that never flag a case
//!   - pattern: 'workqueue: .* hogged CPU'  # a regular expression, searched in the message
//!     reason: why this line is harmless   # required: the next reader must know why
//! ```
//! An entry excuses every record whose message it matches, the named patterns (WARNING, BUG,
//! ...) included: write patterns narrowly.

pub mod attribute;
mod classify;
mod log;
mod record;
mod source;

pub use classify::{apply, classify, flag, AllowEntry, AllowList, Classification, Severity};
pub use log::{open, KernelLog, Span, Unavailable};
pub use record::{parse_record, KmsgError, LogLine, Record, USER_FACILITY};
pub use source::{DevKmsg, FileKmsg, KmsgSource, DEV_KMSG};

// What tests.rs names through `use super::*`: the files' items kept within this module, and
// the std and crate names the code above them used to import here.
#[cfg(test)]
use std::fs::OpenOptions;
#[cfg(test)]
use std::io::{self, Write};
#[cfg(test)]
use std::path::{Path, PathBuf};

#[cfg(test)]
use crate::model::status::Status;

#[cfg(test)]
use classify::{NAMED, NAMED_RE};
#[cfg(test)]
use log::{marker, MARKER_MAX};
#[cfg(test)]
use record::{BEGIN, END};
#[cfg(test)]
use source::MARKER_LEVEL;

#[cfg(test)]
mod tests;
