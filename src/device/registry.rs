//! Every backend the binary knows, and how `--backend` picks one. Apart from the backends so
//! that each of them depends on the seam ([`super::backend`]) and nothing depends back.

use super::backend::{Backend, BackendError, Kind, Settings};

/// `--backend auto`.
pub const AUTO: &str = "auto";

/// Every backend, the reference device first: it is what `auto` falls back to.
pub const KINDS: [Kind; 4] = [
    super::sim::backend::KIND,
    super::hip::backend::KIND,
    super::dmirror::backend::KIND,
    super::vsvm::backend::KIND,
];

/// `auto` and every backend's name, as `--backend` takes them.
pub fn names() -> Vec<&'static str> {
    std::iter::once(AUTO)
        .chain(KINDS.iter().map(|k| k.name))
        .collect()
}

/// The backend called `name`.
pub fn kind(name: &str) -> Option<Kind> {
    KINDS.into_iter().find(|k| k.name == name)
}

/// Opens the backend `settings` names, or for `auto` the first that finds its hardware, else
/// the reference device.
pub fn open(settings: &Settings) -> Result<Box<dyn Backend>, BackendError> {
    match settings.backend.as_deref() {
        Some(name) if name != AUTO => match kind(name) {
            Some(k) => (k.open)(settings),
            None => Err(BackendError::Refused(format!(
                "--backend: unknown backend `{name}` (known: {})",
                names().join(", ")
            ))),
        },
        _ => {
            for k in KINDS {
                if let Some(detect) = k.detect {
                    if let Some(found) = detect(settings)? {
                        return Ok(found);
                    }
                }
            }
            (KINDS[0].open)(settings)
        }
    }
}
