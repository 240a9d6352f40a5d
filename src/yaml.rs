//! The only module that names the YAML crate. serde_yaml is deprecated upstream; to move to a
//! maintained fork with the same API (serde_norway), change the `use` below and Cargo.toml.

use serde_yaml as backend;

pub use backend::Value;

/// Deserializes a typed value from a YAML value already parsed.
pub fn from_value<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, backend::Error> {
    backend::from_value(v)
}
