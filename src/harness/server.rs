//! `--device-server`: a case's second process, serving the device its runner would open to the
//! `RemoteDevice` that started it (`device/remote.rs`).

use std::process::ExitCode;

use super::cli::Options;
use super::{open_backend, SetupError};
use crate::device::backend::OpenError;
use crate::device::{registry, remote, Device};

/// `--device-server`: a second process of a case. Opens the device the runner would open for
/// the same backend and selection, and serves it over stdin and stdout to the
/// `RemoteDevice` that started this process, until stdin ends.
pub(super) fn serve(options: &Options) -> Result<ExitCode, SetupError> {
    // A server whose parent died must not go on holding the GPU.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    // stdout carries the protocol alone: whatever else prints (discovery's line, a library's
    // message) goes to stderr, which is the parent's.
    let protocol = nix::unistd::dup(std::io::stdout())
        .and_then(|fd| nix::unistd::dup2_stdout(std::io::stderr()).map(|()| fd))
        .map_err(|e| {
            SetupError::Plan(format!(
                "{}: cannot set stdout aside for the protocol: {e}",
                remote::SERVER_FLAG
            ))
        })?;
    let mut dev = open_served(options)?;
    let output = std::io::BufWriter::new(std::fs::File::from(protocol));
    remote::serve(dev.as_mut(), std::io::stdin().lock(), output)
        .map_err(|e| SetupError::Plan(format!("{}: {e}", remote::SERVER_FLAG)))?;
    Ok(ExitCode::SUCCESS)
}

/// The device a `--device-server` serves: the one the runner would open for the same backend,
/// profile, selection and seed.
fn open_served(options: &Options) -> Result<Box<dyn Device>, SetupError> {
    let flag = remote::SERVER_FLAG;
    if options.backend == registry::AUTO {
        return Err(SetupError::Plan(format!(
            "{flag}: name the backend (--backend {}): a second process must open the device its \
             parent runs on, not look for one",
            registry::KINDS.map(|k| k.name).join(", ")
        )));
    }
    let opened = open_backend(options)?;
    opened.open_served(options.seed).map_err(|e| {
        SetupError::Plan(match e {
            OpenError::Unavailable(why) => format!("{flag} --backend {}: {why}", opened.name()),
            OpenError::Failed(why) => format!("{flag}: {why}"),
        })
    })
}
