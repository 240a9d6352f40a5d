//! The conformance cases, one module per migration path, and the registry the runner plans from.
//!
//! A body is a function of its suite's file, listed once in that file's `bodies!` with what it
//! needs from the device; its name is where it lives (`prefetch::round_trip` is `round_trip` in
//! `suites/prefetch.rs`). `fixtures/cases.yaml` says which sizes, allocation kinds and
//! parameters each runs with.

/// Registers the bodies of one suite file as its `BODIES`: each a function of the file, with
/// the [`Need`]s it has of every device, named `<file>::<function>`; then, optionally, the
/// parameters it reads from `with:` (`with [Param, ...]`) and a check of them together
/// (`fit FUNCTION`), both applied to every case that runs it when the plan is made.
macro_rules! bodies {
    ($($run:ident: [$($need:ident),* $(,)?]
        $(with [$($param:expr),* $(,)?])?
        $(fit $fit:ident)?),* $(,)?) => {
        pub const BODIES: &[$crate::suites::Body] = &[$(
            $crate::suites::Body {
                name: $crate::suites::name_of(concat!(module_path!(), "::", stringify!($run))),
                run: $run,
                needs: &[$($crate::model::capability::Need::$need),*],
                params: &[$($($param),*)?],
                fit: bodies!(@fit $($fit)?),
            }
        ),*];
    };
    (@fit) => { None };
    (@fit $fit:ident) => { Some($fit) };
}

pub mod cpu_fault;
pub mod fault_storm;
pub mod first_touch;
pub mod gpu_reset;
pub mod multi_gpu;
pub mod page_state;
pub mod prefetch;
pub mod ttm_eviction;
pub mod vma;

use crate::case::CaseResult;
use crate::case::Ctx;

pub use crate::fixtures::params::Param;
pub use crate::model::capability::Need;

/// A registered case body.
#[derive(Clone, Copy)]
pub struct Body {
    /// `suite::case`, the name `body:` in the fixtures refers to.
    pub name: &'static str,
    pub run: fn(&mut Ctx) -> CaseResult,
    pub needs: &'static [Need],
    /// What it reads from `with:`.
    pub params: &'static [Param],
    /// A check of its parameters together, for an instance's shape: the key at fault and
    /// what is wrong.
    pub fit: Option<Fit>,
}

/// A check of a body's parameters together ([`Body::fit`]).
pub type Fit = fn(&crate::util::yaml::Value, Shape) -> Result<(), (String, String)>;

/// What a body's parameters are judged against: the instance's allocation size and the
/// profile's VRAM.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub bytes: u64,
    pub vram_bytes: u64,
}

/// The last two segments of a path: `prefetch::round_trip` of
/// `svmconf::suites::prefetch::round_trip`, the name of a body by where it lives.
pub const fn name_of(path: &'static str) -> &'static str {
    let b = path.as_bytes();
    let (mut end, mut seen, mut start) = (b.len(), 0, 0);
    while end >= 2 {
        if b[end - 1] == b':' && b[end - 2] == b':' {
            seen += 1;
            if seen == 2 {
                start = end;
                break;
            }
            end -= 2;
        } else {
            end -= 1;
        }
    }
    match std::str::from_utf8(b.split_at(start).1) {
        Ok(name) => name,
        Err(_) => panic!("a module path is UTF-8"),
    }
}

/// Every body of every suite.
pub fn registry() -> Vec<Body> {
    [
        first_touch::BODIES,
        prefetch::BODIES,
        cpu_fault::BODIES,
        fault_storm::BODIES,
        ttm_eviction::BODIES,
        gpu_reset::BODIES,
        vma::BODIES,
        multi_gpu::BODIES,
        page_state::BODIES,
    ]
    .concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_named_by_its_file_and_function() {
        assert_eq!(
            name_of("svmconf::suites::prefetch::round_trip"),
            "prefetch::round_trip"
        );
        assert_eq!(name_of("vma::mremap"), "vma::mremap");
        assert_eq!(name_of("alone"), "alone");
        let names: Vec<&str> = registry().iter().map(|b| b.name).collect();
        assert!(names.contains(&"prefetch::round_trip"), "{names:?}");
        assert!(names.contains(&"multi_gpu::accessed_by_peer"), "{names:?}");
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            names.len(),
            "two bodies share a name: {names:?}"
        );
    }
}
