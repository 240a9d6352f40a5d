//! The memory vocabulary every layer shares: the page, and the kinds of allocation a case can
//! make (which decide whether its pages may migrate at all).

use std::fmt;

/// The migration granule of the series: one base page.
pub const PAGE_SIZE: u64 = 4096;
/// 32-bit words in one page; patterns and kernels work in words.
pub const WORDS_PER_PAGE: u64 = PAGE_SIZE / 4;

/// How an allocation is made, which decides whether it may migrate at all.
/// Written and read by [`AllocKind::name`], the one table of its names.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(into = "&'static str", try_from = "String")]
pub enum AllocKind {
    /// hipMallocManaged: an SVM allocation accessible to every GPU.
    Managed,
    /// malloc: private anonymous memory reached by the GPU through HMM.
    Malloc,
    /// mmap(MAP_PRIVATE | MAP_ANONYMOUS): the same, page aligned by construction.
    Mmap,
    /// mmap(MAP_SHARED | MAP_ANONYMOUS): shared memory, never migrated.
    Shared,
    /// A shared mapping of a file: correct in place, never migrated.
    File,
    /// A VRAM buffer object outside SVM, used to put pressure on VRAM.
    DeviceBuffer,
}

impl AllocKind {
    pub const ALL: [AllocKind; 6] = [
        AllocKind::Managed,
        AllocKind::Malloc,
        AllocKind::Mmap,
        AllocKind::Shared,
        AllocKind::File,
        AllocKind::DeviceBuffer,
    ];

    /// The name used in case names and fixtures.
    pub fn name(self) -> &'static str {
        match self {
            AllocKind::Managed => "managed",
            AllocKind::Malloc => "malloc",
            AllocKind::Mmap => "mmap",
            AllocKind::Shared => "shared",
            AllocKind::File => "file",
            AllocKind::DeviceBuffer => "device",
        }
    }

    pub fn from_name(name: &str) -> Option<AllocKind> {
        AllocKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Only private anonymous memory can become device-private (drm_pagemap requires an
    /// anonymous VMA); shared and file mappings stay where they are.
    pub fn migratable(self) -> bool {
        matches!(
            self,
            AllocKind::Managed | AllocKind::Malloc | AllocKind::Mmap
        )
    }
}

impl fmt::Display for AllocKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<AllocKind> for &'static str {
    fn from(k: AllocKind) -> &'static str {
        k.name()
    }
}

impl TryFrom<String> for AllocKind {
    type Error = String;

    fn try_from(name: String) -> Result<AllocKind, String> {
        AllocKind::from_name(&name).ok_or_else(|| {
            let known: Vec<&str> = AllocKind::ALL.iter().map(|k| k.name()).collect();
            format!(
                "unknown allocation kind `{name}`, expected one of {}",
                known.join(", ")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_written_and_read_by_its_one_name() {
        for k in AllocKind::ALL {
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.name()));
            assert_eq!(serde_json::from_str::<AllocKind>(&json).unwrap(), k);
        }
        let e = serde_json::from_str::<AllocKind>("\"vram\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("unknown allocation kind `vram`, expected one of managed"),
            "{e}"
        );
    }
}

/// One allocation of a case and the CPU virtual address it got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Allocation {
    /// The allocation's number on its device, as failure texts name it.
    pub buf: u32,
    pub kind: AllocKind,
    /// Bytes asked for.
    pub len: u64,
    /// The address of its first byte, `0x` hex in the journal.
    #[serde(with = "hex_address")]
    pub address: u64,
}

impl Allocation {
    /// Whether `addr` is one of the allocation's bytes, or of the rest of its last page.
    pub fn holds(&self, addr: u64) -> bool {
        let end = self.address + self.len.div_ceil(PAGE_SIZE).max(1) * PAGE_SIZE;
        (self.address..end).contains(&addr)
    }
}

/// An address as `0x` hex text: what a reader greps the kernel log for, and exact in any JSON
/// reader (a number past 2^53 is not).
mod hex_address {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(addr: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{addr:#x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text = String::deserialize(d)?;
        text.strip_prefix("0x")
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not a 0x hex address")))
    }
}
