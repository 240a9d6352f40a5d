//! `cargo test` runs the conformance suite on the reference device, with the same cases and the
//! same libtest options as `svmconf` (filters, --exact, --list pass through). Results go under
//! the build's temporary folder so a test run leaves the repository clean.

fn main() -> std::process::ExitCode {
    // `args_os`: an argument that is not UTF-8 is bad input the suite names, not a panic.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let results = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("conformance-results");
    let own = ["--backend", "sim", "--results"].map(std::ffi::OsString::from);
    args.splice(1..1, own.into_iter().chain([results.into_os_string()]));
    svmconf::tools::main_with(args)
}
