//! The `svmconf` binary: the whole conformance suite behind a libtest-style command line.
//! `svmconf --help` lists svmconf's own options and libtest's.

#![deny(unsafe_code)]

fn main() -> std::process::ExitCode {
    // `args_os`: an argument that is not UTF-8 is bad input svmconf names, not a panic.
    svmconf::tools::main_with(std::env::args_os())
}
