//! The `svmconf` binary: the whole conformance suite behind a libtest-style command line.
//! `svmconf --help` lists svmconf's own options; the rest are libtest's.

fn main() -> std::process::ExitCode {
    svmconf::tools::main_with(std::env::args())
}
