//! The dmirror backend's own `unsafe` code: the test driver's ioctls. The mappings an
//! allocation is made of and the CPU's accesses to them are `device::memory`'s. Everything is
//! exposed as safe functions whose invariants make each `unsafe` block sound; each says why.

use std::fs::File;
use std::os::fd::AsRawFd;

use super::uapi::{Command, HmmDmirrorCmd};

const PAGE: usize = 4096;

/// Sends `cmd` to the driver behind `dev`. The caller built `cmd` so that `ptr` points at a
/// buffer of ours as large as the command reads or writes: [`Transfer`] does.
fn ioctl(dev: &File, command: Command, cmd: &mut HmmDmirrorCmd) -> std::io::Result<()> {
    // SAFETY: `dev` is open; the request is `_IOWR` of exactly `struct hmm_dmirror_cmd`, which
    // `cmd` is (repr(C), 40 bytes, size asserted in uapi); the kernel reads and writes only
    // it and, through `ptr`, the buffer `Transfer` guarantees.
    let rc = unsafe {
        libc::ioctl(
            dev.as_raw_fd(),
            command.request() as _,
            cmd as *mut HmmDmirrorCmd,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// One command over `npages` pages at `addr`, with the host buffer it copies through: what the
/// driver writes there (READ, MIGRATE_TO_DEV: npages * 4096 bytes; SNAPSHOT: npages bytes) or
/// reads from it (WRITE).
pub enum Transfer<'a> {
    /// READ or MIGRATE_TO_DEV: the device copies the pages into `out`.
    Into(&'a mut [u32]),
    /// WRITE: the device copies `words` onto the pages.
    From(&'a [u32]),
    /// SNAPSHOT: one byte per page.
    Bytes(&'a mut [u8]),
    /// MIGRATE_TO_SYS and RELEASE copy nothing to or from user memory.
    Nothing,
}

/// Runs `command` on pages `[addr, addr + npages * 4096)`; returns the command as the driver
/// filled it in (cpages, faults). The addresses may be anything: the driver looks them up in
/// our address space and fails with EFAULT or EINVAL where nothing is mapped.
pub fn command(
    dev: &File,
    command: Command,
    addr: u64,
    npages: u64,
    transfer: Transfer<'_>,
) -> std::io::Result<HmmDmirrorCmd> {
    let (ptr, bytes) = match transfer {
        Transfer::Into(out) => (out.as_mut_ptr() as u64, std::mem::size_of_val(out)),
        Transfer::From(words) => (words.as_ptr() as u64, std::mem::size_of_val(words)),
        Transfer::Bytes(out) => (out.as_mut_ptr() as u64, out.len()),
        Transfer::Nothing => (0, 0),
    };
    let needed = match command {
        Command::Read | Command::Write | Command::MigrateToDev => npages as usize * PAGE,
        Command::Snapshot => npages as usize,
        Command::MigrateToSys | Command::Release => 0,
    };
    if bytes < needed {
        return Err(std::io::Error::other(format!(
            "{}: a buffer of {bytes} bytes for {npages} pages, {needed} needed",
            command.name()
        )));
    }
    let mut cmd = super::uapi::cmd(addr, ptr, npages)
        .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    ioctl(dev, command, &mut cmd)?;
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ioctl path up to the kernel, on a file that is not the driver: the kernel answers
    /// ENOTTY, and a buffer too small is refused before any call.
    #[test]
    fn a_command_reaches_the_kernel_only_with_a_buffer_large_enough() {
        let f = tempfile::tempfile().unwrap();
        let mut small = [0u32; 16];
        let e = command(&f, Command::Read, 0x1000, 1, Transfer::Into(&mut small)).unwrap_err();
        assert!(
            e.to_string().contains("64 bytes for 1 pages, 4096 needed"),
            "{e}"
        );
        let mut page = vec![0u32; 1024];
        let e = command(&f, Command::Read, 0x1000, 1, Transfer::Into(&mut page)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTTY), "{e}");
        let e = command(&f, Command::Release, 0x1001, 1, Transfer::Nothing).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "unaligned: {e}");
    }
}
