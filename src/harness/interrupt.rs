//! Ctrl-C and SIGTERM during a run: the run stops where it is, the journal says it was
//! interrupted (so that `--resume` runs again what was running, where after a crash it records
//! it as incomplete), the case processes go with it, and the last line says how to go on.
//!
//! The signal handler only writes the signal's number to a pipe (all a handler may safely do);
//! a thread of the runner reads it and does the rest, then exits with 128 + the signal, as a
//! shell reports a process the signal ended.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;

use nix::sys::signal::{killpg, sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::Pid;

/// The write end of the pipe the handler writes to; -1 until installed.
static PIPE: AtomicI32 = AtomicI32::new(-1);

/// The process groups of the case processes running now (process isolation).
static GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

extern "C" fn on_signal(signal: libc::c_int) {
    let fd = PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = signal as u8;
        // SAFETY: write(2) is async-signal-safe; the buffer is one byte on this stack.
        #[allow(unsafe_code)]
        unsafe {
            libc::write(fd, std::ptr::addr_of!(byte).cast(), 1);
        }
    }
}

/// A case process's group, to be ended with the run if it is interrupted.
pub fn running(pgid: i32) {
    if let Ok(mut g) = GROUPS.lock() {
        g.push(pgid);
    }
}

/// A case process's group that has ended.
pub fn ended(pgid: i32) {
    if let Ok(mut g) = GROUPS.lock() {
        g.retain(|p| *p != pgid);
    }
}

/// Ends every case process group still running.
fn end_groups() {
    let groups = GROUPS.lock().map(|g| g.clone()).unwrap_or_default();
    for pgid in groups {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
}

/// From now on, SIGINT and SIGTERM end the run: `then` runs on a thread of its own with the
/// signal (to record it, close the record to the cases still running, and say how to go on),
/// then the case processes are ended and the process exits with 128 + the signal. A second
/// signal while `then` runs changes nothing.
pub fn on_interrupt(then: impl FnOnce(Signal) + Send + 'static) -> Result<(), String> {
    let (read, write): (OwnedFd, OwnedFd) =
        nix::unistd::pipe().map_err(|e| format!("a pipe for interrupts: {e}"))?;
    PIPE.store(write.as_raw_fd(), Ordering::Relaxed);
    // The write end lives as long as the process: the handler may write at any time.
    std::mem::forget(write);
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only calls write(2) on a descriptor that stays open.
        #[allow(unsafe_code)]
        unsafe { sigaction(signal, &action) }
            .map_err(|e| format!("handling {}: {e}", signal.as_str()))?;
    }
    std::thread::Builder::new()
        .name("interrupt".into())
        .spawn(move || {
            let mut byte = [0u8; 1];
            let mut file = std::fs::File::from(read);
            if std::io::Read::read_exact(&mut file, &mut byte).is_err() {
                return;
            }
            let signal = Signal::try_from(byte[0] as i32).unwrap_or(Signal::SIGINT);
            // `then` records the interrupt first and keeps the record closed: a case process
            // ended below must not be recorded as a crash.
            then(signal);
            end_groups();
            std::process::exit(128 + signal as i32);
        })
        .map_err(|e| format!("a thread for interrupts: {e}"))?;
    Ok(())
}
