//! Small helpers every layer may use, depending on nothing else in the crate: the one module
//! that names the YAML crate, and error text for I/O.

pub mod pci;
pub mod text;
pub mod yaml;
