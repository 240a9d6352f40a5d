//! The uAPI of the kernel's HMM test driver (`lib/test_hmm_uapi.h`), as plain data: the command
//! struct, the ioctl numbers and the SNAPSHOT bytes. No `unsafe` here; `ffi` passes these to
//! the kernel.

use crate::device::PAGE_SIZE;

/// `struct hmm_dmirror_cmd`: one command of the test driver.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HmmDmirrorCmd {
    /// (in) user address the device reads, writes, migrates or snapshots; page aligned.
    pub addr: u64,
    /// (in) user buffer the data is copied to or from (SNAPSHOT: one byte per page).
    pub ptr: u64,
    /// (in) pages from `addr`; never 0 (the driver refuses an empty range with EINVAL).
    pub npages: u64,
    /// (out) pages copied or migrated.
    pub cpages: u64,
    /// (out) device page faults the command took.
    pub faults: u64,
}

const _: () = assert!(std::mem::size_of::<HmmDmirrorCmd>() == 40);

/// The ioctls svmconf uses, with the `nr` of `_IOWR('H', nr, struct hmm_dmirror_cmd)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// The device reads `npages` at `addr` into `ptr`, faulting them into its page table.
    Read = 0,
    /// The device writes `npages` from `ptr` at `addr`, faulting them in for writing.
    Write = 1,
    /// Migrates the pages to device-private memory, then copies them into `ptr`.
    MigrateToDev = 2,
    /// Migrates the device-private pages of the range back to system memory.
    MigrateToSys = 3,
    /// One byte per page at `ptr`: what the device's page table would map there now.
    Snapshot = 4,
    /// Evicts every device-private page of the device to system memory and frees its memory.
    Release = 7,
}

impl Command {
    pub const ALL: [Command; 6] = [
        Command::Read,
        Command::Write,
        Command::MigrateToDev,
        Command::MigrateToSys,
        Command::Snapshot,
        Command::Release,
    ];

    /// The header's name, for error messages.
    pub fn name(self) -> &'static str {
        match self {
            Command::Read => "HMM_DMIRROR_READ",
            Command::Write => "HMM_DMIRROR_WRITE",
            Command::MigrateToDev => "HMM_DMIRROR_MIGRATE_TO_DEV",
            Command::MigrateToSys => "HMM_DMIRROR_MIGRATE_TO_SYS",
            Command::Snapshot => "HMM_DMIRROR_SNAPSHOT",
            Command::Release => "HMM_DMIRROR_RELEASE",
        }
    }

    /// The ioctl request number: `_IOWR('H', nr, struct hmm_dmirror_cmd)`.
    pub const fn request(self) -> u32 {
        iowr(b'H', self as u8, std::mem::size_of::<HmmDmirrorCmd>())
    }
}

/// `_IOWR(type, nr, size)` of the generic Linux ioctl encoding (x86, arm, riscv: 8 bits of
/// number, 8 of type, 14 of size, 2 of direction; read | write = 3). Not powerpc, mips or sparc,
/// which encode directions differently; the VM lab is x86_64.
pub const fn iowr(ty: u8, nr: u8, size: usize) -> u32 {
    const READ_WRITE: u32 = 3;
    (READ_WRITE << 30) | ((size as u32) << 16) | ((ty as u32) << 8) | nr as u32
}

/// The command for `npages` pages at `addr`, data at `ptr`. `None` when the driver would refuse
/// it (EINVAL): an unaligned address, no pages, or a range that wraps.
pub fn cmd(addr: u64, ptr: u64, npages: u64) -> Option<HmmDmirrorCmd> {
    let end = npages
        .checked_mul(PAGE_SIZE)
        .and_then(|b| addr.checked_add(b));
    if addr % PAGE_SIZE != 0 || npages == 0 || end.is_none() {
        return None;
    }
    Some(HmmDmirrorCmd {
        addr,
        ptr,
        npages,
        cpages: 0,
        faults: 0,
    })
}

/// `HMM_DMIRROR_PROT_*`: the bits of one SNAPSHOT byte.
pub mod prot {
    pub const ERROR: u8 = 0xFF;
    pub const NONE: u8 = 0x00;
    pub const READ: u8 = 0x01;
    pub const WRITE: u8 = 0x02;
    pub const PMD: u8 = 0x04;
    pub const PUD: u8 = 0x08;
    pub const ZERO: u8 = 0x10;
    pub const DEV_PRIVATE_LOCAL: u8 = 0x20;
    pub const DEV_PRIVATE_REMOTE: u8 = 0x30;
    /// The two bits that say whose memory a page is in (ZERO shares the lower one).
    pub const OWNER_MASK: u8 = 0x30;
}

/// Where one SNAPSHOT byte says a page is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageState {
    /// System memory, mapped or not (NONE, READ, WRITE, ZERO, with or without PMD/PUD).
    System,
    /// Device-private memory of the device the SNAPSHOT was asked of.
    Device,
    /// Device-private memory of another test device (`/dev/hmm_dmirror1` when asked of 0).
    OtherDevice,
    /// The driver could not look the page up (`HMM_DMIRROR_PROT_ERROR`).
    Error,
}

/// Decodes one SNAPSHOT byte. The permission bits (READ, WRITE) and the mapping size (PMD,
/// PUD) are or-ed into the owner, so device pages read 0x21 or 0x22, not 0x20.
pub fn decode(byte: u8) -> PageState {
    if byte == prot::ERROR {
        return PageState::Error;
    }
    match byte & prot::OWNER_MASK {
        prot::DEV_PRIVATE_LOCAL => PageState::Device,
        prot::DEV_PRIVATE_REMOTE => PageState::OtherDevice,
        _ => PageState::System,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// The numbers `_IOWR('H', nr, struct hmm_dmirror_cmd)` gives with a 40-byte struct, as a C
    /// program including lib/test_hmm_uapi.h prints them on x86_64.
    #[rstest]
    #[case(Command::Read, 0xC028_4800)]
    #[case(Command::Write, 0xC028_4801)]
    #[case(Command::MigrateToDev, 0xC028_4802)]
    #[case(Command::MigrateToSys, 0xC028_4803)]
    #[case(Command::Snapshot, 0xC028_4804)]
    #[case(Command::Release, 0xC028_4807)]
    fn ioctl_numbers_are_the_headers(#[case] c: Command, #[case] number: u32) {
        assert_eq!(c.request(), number, "{}", c.name());
    }

    #[test]
    fn the_command_struct_is_five_u64_in_order() {
        assert_eq!(std::mem::size_of::<HmmDmirrorCmd>(), 40);
        assert_eq!(std::mem::align_of::<HmmDmirrorCmd>(), 8);
        let offsets = [
            std::mem::offset_of!(HmmDmirrorCmd, addr),
            std::mem::offset_of!(HmmDmirrorCmd, ptr),
            std::mem::offset_of!(HmmDmirrorCmd, npages),
            std::mem::offset_of!(HmmDmirrorCmd, cpages),
            std::mem::offset_of!(HmmDmirrorCmd, faults),
        ];
        assert_eq!(offsets, [0, 8, 16, 24, 32]);
    }

    #[test]
    fn commands_the_driver_refuses_are_not_built() {
        let ok = cmd(0x7f00_0000_0000, 0x1000, 3).unwrap();
        assert_eq!(
            (ok.addr, ok.ptr, ok.npages, ok.cpages, ok.faults),
            (0x7f00_0000_0000, 0x1000, 3, 0, 0)
        );
        assert_eq!(cmd(0x7f00_0000_0010, 0, 1), None, "unaligned");
        assert_eq!(cmd(0x1000, 0, 0), None, "no pages");
        assert_eq!(cmd(u64::MAX - 0xfff, 0, 2), None, "wraps");
        assert_eq!(cmd(0x1000, 0, u64::MAX), None, "overflows");
    }

    #[rstest]
    #[case(prot::NONE, PageState::System)]
    #[case(prot::READ, PageState::System)]
    #[case(prot::WRITE, PageState::System)]
    #[case(prot::WRITE | prot::PMD, PageState::System)]
    #[case(prot::ZERO | prot::READ, PageState::System)]
    #[case(prot::DEV_PRIVATE_LOCAL, PageState::Device)]
    #[case(prot::DEV_PRIVATE_LOCAL | prot::WRITE, PageState::Device)]
    #[case(prot::DEV_PRIVATE_LOCAL | prot::READ | prot::PUD, PageState::Device)]
    #[case(prot::DEV_PRIVATE_REMOTE | prot::WRITE, PageState::OtherDevice)]
    #[case(prot::ERROR, PageState::Error)]
    fn snapshot_bytes_decode_by_owner_whatever_the_permissions(
        #[case] byte: u8,
        #[case] want: PageState,
    ) {
        assert_eq!(decode(byte), want, "{byte:#04x}");
    }
}
