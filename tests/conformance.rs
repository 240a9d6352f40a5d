//! `cargo test` runs the conformance suite on the reference device, with the same cases and the
//! same libtest options as `svmconf` (filters, --exact, --list pass through). Results go under
//! the build's temporary folder so a test run leaves the repository clean.

fn main() -> std::process::ExitCode {
    let mut args: Vec<String> = std::env::args().collect();
    let results = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("conformance-results");
    let own = [
        "--backend",
        "sim",
        "--results",
        results.to_str().unwrap_or("results"),
    ];
    args.splice(1..1, own.iter().map(|s| s.to_string()));
    svmconf::tools::main_with(args)
}
