//! Keeps the three descriptions of every kernel in step: the `.hip` sources in `kernels/`,
//! `kernels::SIGNATURES` with the launch arguments `Launch::args` builds from it, and the word
//! pattern of `kernels/svm_pattern.h` against `pattern::word`.
//!
//! A HIP backend packs arguments by position, so a parameter swapped in a source or in
//! SIGNATURES would launch without complaint and corrupt memory; these checks catch it without
//! a GPU. Each check also has tests that feed it a deliberately wrong input and expect it to
//! name the mismatch.

// A crate root looks for modules beside itself; the parser lives in this test's own folder.
#[path = "kernels/hip_decl.rs"]
mod hip_decl;

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use svmconf::device::kernels::{Arg, Launch, Param, SIGNATURES};
use svmconf::device::{AllocKind, Buf, Span};
use svmconf::model::pattern;

type Signatures<'a> = &'a [(&'a str, &'a str, &'a [Param])];

fn kernels_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels")
}

// ---- (a) the .hip sources against SIGNATURES ----

/// Every disagreement between the sources (file name, text) and the signatures, one line each.
fn check_sources(sources: &[(String, String)], signatures: Signatures) -> Vec<String> {
    let mut problems = Vec::new();
    let mut declared: BTreeMap<String, (String, hip_decl::Kernel)> = BTreeMap::new();
    for (file, text) in sources {
        let parsed = hip_decl::parse(text);
        problems.extend(
            parsed
                .problems
                .iter()
                .map(|p| format!("kernels/{file}: {p}")),
        );
        for kernel in parsed.kernels {
            if let Some((first, k)) = declared.get(&kernel.name) {
                problems.push(format!(
                    "kernels/{file}:{}: {} is declared again (first at kernels/{first}:{})",
                    kernel.line, kernel.name, k.line
                ));
                continue;
            }
            declared.insert(kernel.name.clone(), (file.clone(), kernel));
        }
    }
    for (file, symbol, params) in signatures {
        let wanted = format!(
            "extern \"C\" __global__ void {symbol}({})",
            params
                .iter()
                .map(|p| format!("{} {}", p.ty, p.name))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let Some((found_in, kernel)) = declared.remove(*symbol) else {
            let missing_file = !sources.iter().any(|(f, _)| f == file);
            problems.push(if missing_file {
                format!("kernels/{file} does not exist; SIGNATURES expects it to declare {wanted}")
            } else {
                format!("kernels/{file}: no kernel {symbol}; SIGNATURES expects {wanted}")
            });
            continue;
        };
        let at = format!("kernels/{found_in}:{}", kernel.line);
        if found_in != *file {
            problems.push(format!(
                "{at}: {symbol} is declared here, SIGNATURES says it is in kernels/{file}"
            ));
        }
        if kernel.params.len() != params.len() {
            problems.push(format!(
                "{at}: {symbol} has {} parameters, SIGNATURES has {}: expected {wanted}",
                kernel.params.len(),
                params.len()
            ));
        }
        for (n, (got, want)) in kernel.params.iter().zip(params.iter()).enumerate() {
            if got.ty != want.ty || got.name != want.name {
                problems.push(format!(
                    "{at}: {symbol} parameter {} is `{got}`, SIGNATURES has `{} {}`",
                    n + 1,
                    want.ty,
                    want.name
                ));
            }
        }
    }
    for (name, (file, kernel)) in declared {
        problems.push(format!(
            "kernels/{file}:{}: declares kernel {name}, which SIGNATURES lacks",
            kernel.line
        ));
    }
    problems
}

fn hip_sources() -> Vec<(String, String)> {
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(kernels_dir()).expect("kernels/ is readable") {
        let path = entry.expect("kernels/ entry").path();
        if path.extension().is_some_and(|e| e == "hip") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading kernels/{name}: {e}"));
            sources.push((name, text));
        }
    }
    sources.sort();
    sources
}

#[test]
fn hip_sources_declare_exactly_the_signatures() {
    let sources = hip_sources();
    assert!(!sources.is_empty(), "no .hip files in kernels/");
    let problems = check_sources(&sources, SIGNATURES);
    assert!(
        problems.is_empty(),
        "kernels/*.hip and kernels::SIGNATURES disagree:\n  {}",
        problems.join("\n  ")
    );
}

const FILL_SIG: &[Param] = &[
    Param {
        ty: "uint32_t*",
        name: "buf",
    },
    Param {
        ty: "uint64_t",
        name: "nwords",
    },
    Param {
        ty: "uint32_t",
        name: "generation",
    },
];
const ONE_FILL: Signatures = &[("fill.hip", "svm_fill", FILL_SIG)];

fn one_file(file: &str, text: &str) -> Vec<(String, String)> {
    vec![(file.to_string(), text.to_string())]
}

fn assert_one_problem(problems: Vec<String>, expected: &str) {
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].contains(expected),
        "expected a problem containing {expected:?}, got {:?}",
        problems[0]
    );
}

#[test]
fn a_matching_source_has_no_problem() {
    let src = "extern \"C\" __global__ void svm_fill(uint32_t* buf, uint64_t nwords,\n\
               uint32_t generation) {}";
    assert_eq!(
        check_sources(&one_file("fill.hip", src), ONE_FILL),
        Vec::<String>::new()
    );
}

#[test]
fn a_missing_kernel_is_reported() {
    let src = "extern \"C\" __global__ void svm_fil(uint32_t* buf, uint64_t nwords,\n\
               uint32_t generation) {}";
    let problems = check_sources(&one_file("fill.hip", src), ONE_FILL);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems[0].starts_with("kernels/fill.hip: no kernel svm_fill; SIGNATURES expects extern \"C\" __global__ void svm_fill(uint32_t* buf, uint64_t nwords, uint32_t generation)"), "{}", problems[0]);
    assert_eq!(
        problems[1],
        "kernels/fill.hip:1: declares kernel svm_fil, which SIGNATURES lacks"
    );
}

#[test]
fn a_missing_file_is_reported() {
    assert_one_problem(
        check_sources(&[], ONE_FILL),
        "kernels/fill.hip does not exist",
    );
}

#[test]
fn an_extra_kernel_is_reported() {
    let src = "extern \"C\" __global__ void svm_fill(uint32_t* buf, uint64_t nwords, \
               uint32_t generation) {}\n\n\
               extern \"C\" __global__ void svm_fill_fast(uint32_t* buf) {}";
    assert_one_problem(
        check_sources(&one_file("fill.hip", src), ONE_FILL),
        "kernels/fill.hip:3: declares kernel svm_fill_fast, which SIGNATURES lacks",
    );
}

#[test]
fn swapped_parameters_are_reported_at_each_position() {
    let src = "extern \"C\" __global__ void svm_fill(uint32_t* buf, uint32_t generation, \
               uint64_t nwords) {}";
    let problems = check_sources(&one_file("fill.hip", src), ONE_FILL);
    assert_eq!(
        problems,
        [
            "kernels/fill.hip:1: svm_fill parameter 2 is `uint32_t generation`, SIGNATURES has \
             `uint64_t nwords`",
            "kernels/fill.hip:1: svm_fill parameter 3 is `uint64_t nwords`, SIGNATURES has \
             `uint32_t generation`",
        ]
    );
}

#[test]
fn a_wrong_type_is_reported() {
    let src = "extern \"C\" __global__ void svm_fill(const uint32_t* buf, uint64_t nwords, \
               uint32_t generation) {}";
    assert_one_problem(
        check_sources(&one_file("fill.hip", src), ONE_FILL),
        "svm_fill parameter 1 is `const uint32_t* buf`, SIGNATURES has `uint32_t* buf`",
    );
}

#[test]
fn a_missing_parameter_is_reported() {
    let src = "extern \"C\" __global__ void svm_fill(uint32_t* buf, uint64_t nwords) {}";
    assert_one_problem(
        check_sources(&one_file("fill.hip", src), ONE_FILL),
        "svm_fill has 2 parameters, SIGNATURES has 3",
    );
}

#[test]
fn a_kernel_in_the_wrong_file_or_twice_is_reported() {
    let src = "extern \"C\" __global__ void svm_fill(uint32_t* buf, uint64_t nwords, \
               uint32_t generation) {}";
    assert_one_problem(
        check_sources(&one_file("copy.hip", src), ONE_FILL),
        "kernels/copy.hip:1: svm_fill is declared here, SIGNATURES says it is in kernels/fill.hip",
    );
    let twice = vec![
        ("fill.hip".to_string(), src.to_string()),
        ("more.hip".to_string(), src.to_string()),
    ];
    assert_one_problem(
        check_sources(&twice, ONE_FILL),
        "kernels/more.hip:1: svm_fill is declared again (first at kernels/fill.hip:1)",
    );
}

#[test]
fn a_kernel_without_extern_c_is_reported() {
    let src = "__global__ void svm_fill(uint32_t* buf, uint64_t nwords, uint32_t generation) {}";
    let problems = check_sources(&one_file("fill.hip", src), ONE_FILL);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems[0].starts_with("kernels/fill.hip: line 1: `__global__` without"));
    assert!(problems[1].starts_with("kernels/fill.hip: no kernel svm_fill"));
}

// ---- (b) Launch::args against SIGNATURES ----

/// Every disagreement between a launch's arguments and its kernel's parameters.
fn check_args(symbol: &str, args: &[(&str, Arg)], params: &[Param]) -> Vec<String> {
    let mut problems = Vec::new();
    if args.len() != params.len() {
        problems.push(format!(
            "{symbol}: args() gives {} arguments, SIGNATURES has {} parameters",
            args.len(),
            params.len()
        ));
    }
    for (n, ((name, arg), param)) in args.iter().zip(params).enumerate() {
        let n = n + 1;
        if *name != param.name {
            problems.push(format!(
                "{symbol} argument {n} is named {name}, SIGNATURES has {}",
                param.name
            ));
        }
        let fits = match (param.ty, arg) {
            (ty, Arg::Ptr { mutable, .. }) if ty.ends_with('*') => {
                *mutable != ty.starts_with("const ")
            }
            ("uint64_t", Arg::U64(_)) | ("uint32_t", Arg::U32(_)) => true,
            _ => false,
        };
        if !fits {
            problems.push(format!(
                "{symbol} argument {n} ({name}) is {arg:?}, which does not pass as `{}`",
                param.ty
            ));
        }
    }
    problems
}

/// One launch of every kernel, with distinct values so a swapped argument cannot pass.
fn one_launch_of_each() -> Vec<Launch> {
    let buf = |id| Buf {
        id,
        kind: AllocKind::Managed,
        len: 1 << 24,
    };
    let span = Span::pages(2, 8);
    vec![
        Launch::Fill {
            buf: buf(1),
            span,
            seed: 11,
            generation: 12,
        },
        Launch::Verify {
            buf: buf(1),
            span,
            seed: 11,
            generation: 12,
            result: buf(2),
        },
        Launch::TouchRead {
            buf: buf(1),
            span,
            stride_pages: 3,
            sum: buf(2),
        },
        Launch::TouchWrite {
            buf: buf(1),
            span,
            stride_pages: 3,
            seed: 11,
            generation: 12,
        },
        Launch::FaultStorm {
            buf: buf(1),
            span,
            step: 5,
            offset: 7,
            seed: 11,
            generation: 12,
        },
        Launch::AtomicInc {
            buf: buf(1),
            span,
            iterations: 13,
        },
        Launch::Copy {
            dst: buf(1),
            dst_span: span,
            src: buf(2),
            src_span: Span::pages(20, 8),
        },
    ]
}

#[test]
fn launch_args_follow_the_signatures() {
    let launches = one_launch_of_each();
    let mut problems = Vec::new();
    for launch in &launches {
        match svmconf::device::kernels::signature(launch.symbol()) {
            None => problems.push(format!("{} is not in SIGNATURES", launch.symbol())),
            Some((_, params)) => {
                problems.extend(check_args(launch.symbol(), &launch.args(), params))
            }
        }
    }
    let launched: Vec<_> = launches.iter().map(|l| l.symbol()).collect();
    for (_, symbol, _) in SIGNATURES {
        if !launched.contains(symbol) {
            problems.push(format!(
                "{symbol} is in SIGNATURES but no Launch here makes it"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "Launch::args and SIGNATURES disagree:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn wrong_args_are_reported() {
    let fill = Launch::Fill {
        buf: Buf {
            id: 1,
            kind: AllocKind::Managed,
            len: 4096,
        },
        span: Span::pages(0, 1),
        seed: 1,
        generation: 2,
    };
    let good = fill.args();
    assert_eq!(
        check_args(
            "svm_fill",
            &good,
            svmconf::device::kernels::signature("svm_fill").unwrap().1
        ),
        Vec::<String>::new()
    );

    let mut swapped = good.clone();
    swapped.swap(1, 2);
    let problems = check_args(
        "svm_fill",
        &swapped,
        svmconf::device::kernels::signature("svm_fill").unwrap().1,
    );
    assert!(
        problems.contains(&"svm_fill argument 2 is named first_word, SIGNATURES has nwords".into()),
        "{problems:#?}"
    );

    // The three arguments of the cut-down FILL_SIG, right, then spoiled one way at a time.
    let three = vec![good[0], good[1], ("generation", Arg::U32(2))];
    assert_eq!(
        check_args("svm_fill", &three, FILL_SIG),
        Vec::<String>::new()
    );

    let mut narrowed = three.clone();
    narrowed[1].1 = Arg::U32(4);
    narrowed[2].1 = Arg::U64(2);
    assert_eq!(
        check_args("svm_fill", &narrowed, FILL_SIG),
        [
            "svm_fill argument 2 (nwords) is U32(4), which does not pass as `uint64_t`",
            "svm_fill argument 3 (generation) is U64(2), which does not pass as `uint32_t`",
        ]
    );

    let mut read_only = three.clone();
    if let Arg::Ptr { mutable, .. } = &mut read_only[0].1 {
        *mutable = false;
    }
    let problems = check_args("svm_fill", &read_only, FILL_SIG);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].contains("does not pass as `uint32_t*`"));

    assert_eq!(
        check_args("svm_fill", &three[..2], FILL_SIG),
        ["svm_fill: args() gives 2 arguments, SIGNATURES has 3 parameters"]
    );
}

// ---- (c) kernels/svm_pattern.h against pattern::word ----

/// Reads "seed generation index" lines and prints, for each, svm_key of the index's block,
/// svm_word, and the word through one svm_pattern cursor kept across lines (so its cached key
/// is reused and replaced as the table moves between blocks and patterns).
const PATTERN_PROGRAM: &str = r#"
#include "svm_pattern.h"
#include <inttypes.h>
#include <stdio.h>

int main(void)
{
    uint64_t seed, index;
    uint32_t generation;
    struct svm_pattern cursor = svm_pattern_at(0, 0, 0);
    while (scanf("%" SCNu64 " %" SCNu32 " %" SCNu64, &seed, &generation, &index) == 3) {
        if (cursor.seed != seed || cursor.generation != generation)
            cursor = svm_pattern_at(seed, generation, index);
        printf("%" PRIu32 " %" PRIu32 " %" PRIu32 "\n",
               svm_key(seed, generation, (uint32_t)(index >> 32)),
               svm_word(seed, generation, index), svm_pattern_word(&cursor, index));
    }
    return 0;
}
"#;

/// (seed, generation, index) rows: edge values of each, indices past 2^32 among them, runs
/// across a 2^32-word block boundary, and a spread of pseudo-random rows.
fn pattern_table() -> Vec<(u64, u32, u64)> {
    let mut rows = Vec::new();
    let seeds = [0, 1, 0xdead_beef, 0x0123_4567_89ab_cdef, u64::MAX];
    let generations = [0, 1, 7, u32::MAX];
    let indices = [
        0,
        1,
        1023,
        1024,
        0x7fff_ffff,
        0xffff_ffff,
        1 << 32,
        (1 << 32) + 1,
        (5 << 32) + 12345,
        u64::MAX - 1,
        u64::MAX,
    ];
    for seed in seeds {
        for generation in generations {
            for index in indices {
                rows.push((seed, generation, index));
            }
        }
    }
    for index in (1u64 << 33) - 3..(1u64 << 33) + 3 {
        rows.push((42, 3, index));
    }
    rows.push((42, 3, 5));
    let mut z = 0x5eed_u64;
    let mut next = || {
        // splitmix64: an independent stream of test inputs, not the formula under test.
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = z;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    };
    for _ in 0..2000 {
        let (seed, generation, index) = (next(), next() as u32, next() >> (next() % 64));
        rows.push((seed, generation, index));
    }
    rows
}

/// Every row where the program's output differs from `pattern`.
fn compare_pattern_output(rows: &[(u64, u32, u64)], output: &str) -> Vec<String> {
    let lines: Vec<&str> = output.lines().collect();
    let mut problems = Vec::new();
    if lines.len() != rows.len() {
        problems.push(format!(
            "{} output lines for {} rows",
            lines.len(),
            rows.len()
        ));
    }
    for (&(seed, generation, index), line) in rows.iter().zip(&lines) {
        let got: Vec<u32> = line
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(u32::MAX))
            .collect();
        let key = pattern::key(seed, generation, (index >> 32) as u32);
        let word = pattern::word(seed, generation, index);
        if got != [key, word, word] {
            problems.push(format!(
                "seed {seed:#x} generation {generation} index {index:#x}: svm_pattern.h gives \
                 key/word/cursor word {line:?}, pattern.rs gives {key} {word} {word}"
            ));
        }
    }
    problems
}

/// The first compiler of `candidates` that answers `--version`, `$env` first when set.
fn find_compiler(env: &str, candidates: &[&str]) -> Option<String> {
    let from_env = std::env::var(env).ok().filter(|c| !c.is_empty());
    from_env
        .into_iter()
        .chain(candidates.iter().map(|c| c.to_string()))
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

/// Builds PATTERN_PROGRAM in `language` and runs the table through it.
fn run_pattern_program(compiler: &str, language: &[&str], rows: &[(u64, u32, u64)]) -> String {
    let dir = tempfile::tempdir().expect("temporary directory");
    let source = dir.path().join("pattern_table.c");
    let binary = dir.path().join("pattern_table");
    std::fs::write(&source, PATTERN_PROGRAM).unwrap();
    let build = Command::new(compiler)
        .args(language)
        .args(["-O2", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I"])
        .arg(kernels_dir())
        .arg(&source)
        .arg("-o")
        .arg(&binary)
        .output()
        .unwrap_or_else(|e| panic!("running {compiler}: {e}"));
    assert!(
        build.status.success(),
        "{compiler} {} could not build a host program with kernels/svm_pattern.h:\n{}",
        language.join(" "),
        String::from_utf8_lossy(&build.stderr)
    );
    let mut child = Command::new(&binary)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("running the pattern table program");
    let input: String = rows
        .iter()
        .map(|(s, g, i)| format!("{s} {g} {i}\n"))
        .collect();
    // Written from a thread so a full stdout pipe cannot deadlock the two processes.
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("pattern table output");
    writer.join().unwrap().expect("writing the table");
    assert!(out.status.success(), "pattern table program failed");
    String::from_utf8(out.stdout).expect("ASCII output")
}

/// `package`: the Debian package that provides the first of `candidates`.
fn check_header_with(env: &str, candidates: &[&str], package: &str, language: &[&str]) {
    let Some(compiler) = find_compiler(env, candidates) else {
        let name = if language.contains(&"c++") {
            "C++"
        } else {
            "C"
        };
        common::needs::missing(
            &format!(
                "a {name} compiler (tried ${env}, {})",
                candidates.join(", ")
            ),
            &format!("Debian package {package}"),
        );
        return;
    };
    let rows = pattern_table();
    let output = run_pattern_program(&compiler, language, &rows);
    let problems = compare_pattern_output(&rows, &output);
    assert!(
        problems.is_empty(),
        "kernels/svm_pattern.h ({compiler} {}) and src/model/pattern.rs disagree on {} rows:\n  {}",
        language.join(" "),
        problems.len(),
        problems[..problems.len().min(10)].join("\n  ")
    );
}

#[test]
fn svm_pattern_h_matches_pattern_rs_in_cxx() {
    check_header_with(
        "CXX",
        &["c++", "g++", "clang++"],
        "g++",
        &["-x", "c++", "-std=c++11"],
    );
}

#[test]
fn svm_pattern_h_matches_pattern_rs_in_c() {
    check_header_with(
        "CC",
        &["cc", "gcc", "clang"],
        "gcc",
        &["-x", "c", "-std=c99"],
    );
}

#[test]
fn a_wrong_pattern_word_is_reported() {
    let rows = [(1, 2, 3), (1, 2, 1 << 32)];
    let right = |&(s, g, i): &(u64, u32, u64)| {
        let (k, w) = (pattern::key(s, g, (i >> 32) as u32), pattern::word(s, g, i));
        format!("{k} {w} {w}\n")
    };
    let good: String = rows.iter().map(right).collect();
    assert_eq!(compare_pattern_output(&rows, &good), Vec::<String>::new());

    let w = pattern::word(1, 2, 1 << 32);
    let stale_cursor = format!(
        "{}{} {w} {}\n",
        right(&rows[0]),
        pattern::key(1, 2, 1),
        w ^ 1
    );
    let problems = compare_pattern_output(&rows, &stale_cursor);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].starts_with("seed 0x1 generation 2 index 0x100000000:"));

    assert_eq!(
        compare_pattern_output(&rows, &right(&rows[0])),
        ["1 output lines for 2 rows"]
    );
}
