//! The `svmconf` binary: the whole conformance suite behind a libtest-style command line.
//! `svmconf --help` lists svmconf's own options; the rest are libtest's.

#![deny(unsafe_code)]

fn main() -> std::process::ExitCode {
    svmconf::run::main_with(std::env::args())
}
