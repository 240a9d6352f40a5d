//! The crate's layout, checked: which module uses which, read from the sources, with no import
//! cycle at any level and the top-level folders in the order a run flows (README, "Layout").
//!
//! A module's uses are the paths it names in code (`crate::…`, `super::…`, `self::…`, with
//! `{…}` groups), resolved to the deepest module they reach; comments and test code (files named
//! `tests.rs`, `#[cfg(test)]` modules) are left out. Two modules one of which holds the other
//! are not an edge (a folder's `mod.rs` and its children are one unit). Any other use is lifted
//! to the two siblings under the lowest module that holds both, and each module's children must
//! form no cycle. `SVMCONF_GRAPH=1 cargo test --test layout -- --nocapture` prints the graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level modules from the bottom up: each may use only those before it.
const LAYERS: &[&str] = &[
    "util", "model", "fixtures", "observe", "device", "case", "suites", "results", "harness",
    "tools",
];

type Module = Vec<String>;

/// One use of a module by another, with where it was written.
#[derive(Clone, Debug)]
struct Use {
    from: Module,
    to: Module,
    at: String,
}

/// Every module of the crate under `root` (its `src/` and `suites/`), with its source file.
fn modules(root: &Path) -> BTreeMap<Module, PathBuf> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<Module, PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                let mut p = prefix.to_vec();
                p.push(name);
                walk(&path, &p, out);
            } else if let Some(stem) = name.strip_suffix(".rs") {
                let mut m = prefix.to_vec();
                if !matches!(stem, "mod" | "lib" | "main") {
                    m.push(stem.to_string());
                } else if stem == "main" {
                    continue;
                }
                out.insert(m, path);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&root.join("src"), &[], &mut out);
    walk(&root.join("suites"), &["suites".to_string()], &mut out);
    out
}

/// The code of a file without comments, test modules and string literals' contents.
fn code_of(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_start();
        // An inline test module runs to the end of the file, as rustfmt and this crate write it.
        if line.starts_with("#[cfg(test)]") {
            let next = lines[i + 1..].iter().find(|l| !l.trim().is_empty());
            if next.is_some_and(|l| l.trim_start().starts_with("mod ") && l.contains('{')) {
                break;
            }
        }
        if !line.starts_with("//") {
            let code = match line.find("//") {
                Some(c) if !line[..c].contains('"') => &line[..c],
                _ => line,
            };
            out.push((i + 1, strip_strings(code)));
        }
        i += 1;
    }
    out
}

fn strip_strings(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_str = false;
    let mut escaped = false;
    for c in line.chars() {
        if in_str {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
                out.push('"');
            }
            continue;
        }
        if c == '"' {
            in_str = true;
        }
        out.push(c);
    }
    out
}

/// The deepest module of `known` that `base` followed by the names of `path` reaches.
fn resolve(known: &BTreeMap<Module, PathBuf>, base: &[String], path: &[&str]) -> Module {
    let mut m: Module = base.to_vec();
    for seg in path {
        let mut next = m.clone();
        next.push((*seg).to_string());
        if known.contains_key(&next) {
            m = next;
        } else {
            break;
        }
    }
    m
}

/// The uses in one line of `module`: every `crate::`, `super::` and `self::` path, with groups.
fn uses_in(known: &BTreeMap<Module, PathBuf>, module: &[String], line: &str) -> Vec<Module> {
    let mut found = Vec::new();
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !line.is_char_boundary(i) {
            i += 1;
            continue;
        }
        let rest = &line[i..];
        let word_start = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let prefix = ["crate::", "super::", "self::"]
            .into_iter()
            .find(|p| word_start && rest.starts_with(p));
        let Some(prefix) = prefix else {
            i += 1;
            continue;
        };
        // `super` of `a::b` is `a`, whether `a::b` is the file a/b.rs or the folder a/b/.
        let base: Module = match prefix {
            "crate::" => Vec::new(),
            "super::" => module[..module.len().saturating_sub(1)].to_vec(),
            _ => module.to_vec(),
        };
        let (consumed, targets) = parse_tree(known, &base, &rest[prefix.len()..]);
        found.extend(targets);
        i += prefix.len() + consumed.max(1);
    }
    found
}

/// Parses `a::b::{c, d::e}`-style text after a prefix; returns how much it read and the
/// modules each leaf reaches from `base`.
fn parse_tree(
    known: &BTreeMap<Module, PathBuf>,
    base: &[String],
    text: &str,
) -> (usize, Vec<Module>) {
    let mut segs: Vec<&str> = Vec::new();
    let mut pos = 0;
    loop {
        let t = &text[pos..];
        if t.starts_with('{') {
            // A group: split at top-level commas and resolve each item from here.
            let mut depth = 0;
            let mut end = t.len();
            for (k, c) in t.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = k;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let here = resolve(known, base, &segs);
            let mut out = Vec::new();
            let inner = &t[1..end.max(1)];
            let mut depth = 0;
            let mut start = 0;
            let mut items = Vec::new();
            for (k, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        items.push(&inner[start..k]);
                        start = k + 1;
                    }
                    _ => {}
                }
            }
            items.push(&inner[start..]);
            for item in items {
                let item = item.trim();
                if item.is_empty() || item == "self" || item.starts_with("self ") {
                    out.push(here.clone());
                } else {
                    out.extend(parse_tree(known, &here, item).1);
                }
            }
            return (pos + end + 1, out);
        }
        let len = t
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(t.len());
        if len == 0 {
            break;
        }
        segs.push(&t[..len]);
        pos += len;
        if text[pos..].starts_with("::") {
            pos += 2;
        } else {
            break;
        }
    }
    (pos, vec![resolve(known, base, &segs)])
}

/// Every use between two modules neither of which holds the other.
fn graph(root: &Path) -> Vec<Use> {
    let known = modules(root);
    let mut out = Vec::new();
    for (module, file) in &known {
        if module.last().is_some_and(|l| l == "tests") {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let shown = file
            .strip_prefix(root)
            .unwrap_or(file)
            .display()
            .to_string();
        for (n, line) in code_of(&text) {
            for to in uses_in(&known, module, &line) {
                let holds = |a: &Module, b: &Module| b.len() >= a.len() && b[..a.len()] == a[..];
                if !holds(module, &to) && !holds(&to, module) {
                    out.push(Use {
                        from: module.clone(),
                        to,
                        at: format!("{shown}:{n}"),
                    });
                }
            }
        }
    }
    out
}

/// The uses lifted to siblings: for each module, its children's edges, with an example each.
fn sibling_edges(uses: &[Use]) -> BTreeMap<Module, BTreeMap<(String, String), String>> {
    let mut out: BTreeMap<Module, BTreeMap<(String, String), String>> = BTreeMap::new();
    for u in uses {
        let common = u.from.iter().zip(&u.to).take_while(|(a, b)| a == b).count();
        let parent = u.from[..common].to_vec();
        let key = (u.from[common].clone(), u.to[common].clone());
        out.entry(parent)
            .or_default()
            .entry(key)
            .or_insert_with(|| u.at.clone());
    }
    out
}

/// The cycles among siblings: each a list of `a -> b (file:line)` lines.
fn cycles(uses: &[Use]) -> Vec<String> {
    let mut found = Vec::new();
    for (parent, edges) in sibling_edges(uses) {
        let nodes: BTreeSet<&String> = edges.keys().flat_map(|(a, b)| [a, b]).collect();
        // Two nodes are in one cycle when each reaches the other.
        let reach = |from: &String| {
            let mut seen = BTreeSet::new();
            let mut todo = vec![from.clone()];
            while let Some(n) = todo.pop() {
                for (a, b) in edges.keys() {
                    if *a == n && seen.insert(b.clone()) {
                        todo.push(b.clone());
                    }
                }
            }
            seen
        };
        let reaches: BTreeMap<&String, BTreeSet<String>> =
            nodes.iter().map(|n| (*n, reach(n))).collect();
        let mut done = BTreeSet::new();
        for n in &nodes {
            if done.contains(*n) || !reaches[n].contains(*n) {
                continue;
            }
            let members: BTreeSet<&String> = nodes
                .iter()
                .filter(|m| reaches[n].contains(**m) && reaches[*m].contains(*n))
                .copied()
                .collect();
            done.extend(members.iter().map(|m| (*m).clone()));
            let within = if parent.is_empty() {
                "the crate".to_string()
            } else {
                parent.join("::")
            };
            let mut text = format!(
                "cycle in {within} between {}:",
                members
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            for ((a, b), at) in &edges {
                if members.contains(a) && members.contains(b) {
                    text.push_str(&format!("\n    {a} -> {b} ({at})"));
                }
            }
            found.push(text);
        }
    }
    found
}

/// Uses of a top-level module by one below it in [`LAYERS`], and top-level modules not listed.
fn layer_violations(uses: &[Use]) -> Vec<String> {
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut out = BTreeSet::new();
    for u in uses {
        let (Some(a), Some(b)) = (u.from.first(), u.to.first()) else {
            continue;
        };
        match (rank(a), rank(b)) {
            (Some(x), Some(y)) if x < y => {
                out.insert(format!(
                    "{a} uses {b}, which comes after it in the layers ({})",
                    u.at
                ));
            }
            (None, _) => {
                out.insert(format!(
                    "top-level module `{a}` is not in LAYERS ({})",
                    u.at
                ));
            }
            (_, None) => {
                out.insert(format!(
                    "top-level module `{b}` is not in LAYERS ({})",
                    u.at
                ));
            }
            _ => {}
        }
    }
    out.into_iter().collect()
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn no_module_uses_one_that_uses_it_back_at_any_level() {
    let uses = graph(&repo());
    assert!(
        uses.len() > 100,
        "read only {} uses: the reader is broken",
        uses.len()
    );
    if std::env::var_os("SVMCONF_GRAPH").is_some() {
        for (parent, edges) in sibling_edges(&uses) {
            println!(
                "{}:",
                if parent.is_empty() {
                    "crate".into()
                } else {
                    parent.join("::")
                }
            );
            for (a, b) in edges.keys() {
                println!("  {a} -> {b}");
            }
        }
    }
    let found = cycles(&uses);
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

#[test]
fn the_top_level_folders_depend_only_on_those_below_them() {
    let uses = graph(&repo());
    let found = layer_violations(&uses);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// A small crate written out in a temporary folder.
fn fake_crate(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary folder");
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

#[test]
fn a_cycle_through_super_and_a_group_is_found_with_where_it_is_written() {
    let dir = fake_crate(&[
        ("src/lib.rs", "pub mod util;\npub mod model;\n"),
        ("src/util/mod.rs", "pub mod a;\npub mod b;\n"),
        ("src/util/a.rs", "use super::{b::Thing, a_helper};\n"),
        (
            "src/util/b.rs",
            "// crate::util::a in a comment is no use\nfn f() { super::a::go(\"α → \") }\n",
        ),
        ("src/model/mod.rs", "use crate::util::a;\n"),
        ("suites/mod.rs", ""),
    ]);
    let found = cycles(&graph(dir.path()));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("cycle in util between a, b:"),
        "{}",
        found[0]
    );
    assert!(
        found[0].contains("a -> b (src/util/a.rs:1)"),
        "{}",
        found[0]
    );
    assert!(
        found[0].contains("b -> a (src/util/b.rs:2)"),
        "{}",
        found[0]
    );
}

#[test]
fn a_use_across_folders_is_a_use_between_the_folders_and_tests_do_not_count() {
    let dir = fake_crate(&[
        ("src/lib.rs", "pub mod util;\npub mod model;\n"),
        ("src/util/mod.rs", "pub mod text;\n"),
        ("src/util/text.rs", "pub fn t() { crate::model::deep::x() }\n\n#[cfg(test)]\nmod tests {\n    use crate::model::y;\n}\n"),
        ("src/model/mod.rs", "pub mod deep;\n"),
        ("src/model/deep.rs", "use crate::util::text::t;\n"),
        ("src/model/tests.rs", "use crate::util::text;\n"),
        ("suites/mod.rs", ""),
    ]);
    let uses = graph(dir.path());
    let found = cycles(&uses);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("cycle in the crate between model, util:"),
        "{}",
        found[0]
    );
    // util comes first in the layers, so its use of model is the one out of order.
    let layers = layer_violations(&uses);
    assert_eq!(layers.len(), 1, "{layers:?}");
    assert!(layers[0].starts_with("util uses model"), "{}", layers[0]);
}

#[test]
fn a_child_using_its_parent_is_no_cycle() {
    let dir = fake_crate(&[
        ("src/lib.rs", "pub mod device;\n"),
        (
            "src/device/mod.rs",
            "pub mod sim;\npub use sim::SimDevice;\n",
        ),
        (
            "src/device/sim.rs",
            "use super::Device;\nuse crate::device::Buf;\n",
        ),
        ("suites/mod.rs", ""),
    ]);
    let uses = graph(dir.path());
    assert!(uses.is_empty(), "{uses:?}");
}
