//! The driver's planted bugs, for `svmconf planted-matrix`: the module parameter
//! `vsvm.planted` (a bitmask of `uapi::plant`, writable while the kernel runs) and QUERY's
//! `planted_fired`, how often each bug acted, so that a bug no case reached is told apart from
//! a bug the cases missed.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::{ffi, uapi, Roots};

/// Where the running kernel shows `vsvm.planted`.
pub const PARAM: &str = "/sys/module/vsvm/parameters/planted";

/// The parameter and a render node of the driver, both checked to be there.
pub struct Planted {
    param: PathBuf,
    node: PathBuf,
    dev: File,
}

impl Planted {
    /// The parameter at `param` and the render node `--device` names (None: the first vsvm
    /// node). Every error names the file and what is missing.
    pub fn open(param: &Path, device: Option<&str>) -> Result<Planted, String> {
        let roots = Roots::this_machine();
        let node = match super::choice(device, &roots)? {
            super::Choice::Node(n) => n,
            super::Choice::Find => super::find(&roots).ok_or_else(|| super::MISSING.to_string())?,
        };
        let shown = node.display();
        let dev = ffi::open(&node).map_err(|e| format!("{shown}: {e}"))?;
        match ffi::driver_name(&dev) {
            Ok(name) if name == uapi::DRIVER_NAME => {}
            Ok(name) => return Err(format!("{shown} is {name}'s render node, not vsvm's")),
            Err(e) => {
                return Err(format!(
                    "{shown} is not a DRM node (DRM_IOCTL_VERSION: {e})"
                ))
            }
        }
        let planted = Planted {
            param: param.to_path_buf(),
            node,
            dev,
        };
        planted.get()?;
        planted.query()?;
        Ok(planted)
    }

    fn param_error(&self, what: &str, e: std::io::Error) -> String {
        format!(
            "{}: cannot {what} vsvm's planted bugs: {} (the virtual SVM GPU's module parameter; \
             its kernel is built with lab/vm/run --vsvm)",
            self.param.display(),
            crate::util::text::io_reason(&e)
        )
    }

    /// The bits on now.
    pub fn get(&self) -> Result<u32, String> {
        let text = std::fs::read_to_string(&self.param).map_err(|e| self.param_error("read", e))?;
        text.trim().parse().map_err(|_| {
            format!(
                "{}: expected a number, read `{}`",
                self.param.display(),
                text.trim()
            )
        })
    }

    /// Turns on exactly `bits`, and reads them back.
    pub fn set(&self, bits: u32) -> Result<(), String> {
        std::fs::write(&self.param, format!("{bits}\n")).map_err(|e| self.param_error("set", e))?;
        let now = self.get()?;
        if now != bits {
            return Err(format!(
                "{}: wrote {bits:#x}, reads back {now:#x}",
                self.param.display()
            ));
        }
        Ok(())
    }

    /// QUERY: `planted_fired` and VRAM in use.
    pub fn query(&self) -> Result<uapi::Query, String> {
        let q = ffi::query(&self.dev)
            .map_err(|e| format!("{}: DRM_IOCTL_VSVM_QUERY: {e}", self.node.display()))?;
        if q.version != uapi::VERSION {
            return Err(format!(
                "{}: the driver's uAPI is version {}, this svmconf speaks version {} \
                 (planted_fired needs it)",
                self.node.display(),
                q.version,
                uapi::VERSION
            ));
        }
        Ok(q)
    }

    /// The render node asked.
    pub fn node(&self) -> &Path {
        &self.node
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bits_are_the_headers() {
        let all = [
            uapi::plant::COPY_TO_RAM_CORRUPT,
            uapi::plant::COPY_TO_DEVMEM_SKIP,
            uapi::plant::RELEASE_LEAK,
            uapi::plant::BO_MOVE_NO_EVICT,
            uapi::plant::STALE_VRAM_MAPPING,
            uapi::plant::RESIDENCY_MISREPORT,
        ];
        assert_eq!(all.len() as u32, uapi::plant::COUNT);
        for (i, bit) in all.into_iter().enumerate() {
            assert_eq!(bit, 1 << i);
        }
    }

    #[test]
    fn a_machine_without_the_driver_is_named() {
        let e = Planted::open(
            Path::new("/nonexistent/planted"),
            Some("/nonexistent/renderD128"),
        )
        .err()
        .unwrap_or_default();
        assert!(e.contains("/nonexistent/renderD128"), "{e}");
    }
}
