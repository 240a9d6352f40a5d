//! The only module that names the YAML crate. serde_yaml is deprecated upstream; to move to a
//! maintained fork with the same API (serde_norway), change the `use` below and Cargo.toml.
//!
//! Everything a fixture loader needs from YAML is here: typed parsing with errors that name the
//! file, line, column and field ([`parse`]), and finding where a field sits in a text
//! ([`locate`]) so that checks made after parsing can point at the line too ([`YamlError::at`]).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_yaml as backend;

pub use backend::Value;

/// Deserializes a typed value from a YAML value already parsed.
pub fn from_value<T: DeserializeOwned>(v: Value) -> Result<T, backend::Error> {
    backend::from_value(v)
}

/// An empty mapping, the value of an absent `with:`.
pub fn empty_map() -> Value {
    Value::Mapping(backend::Mapping::new())
}

/// A YAML text that does not fit its schema, or a value in it that a check rejected.
///
/// Displays as `FILE:LINE:COLUMN: FIELD: MESSAGE`, the form editors and CI logs turn into links;
/// the parts that are unknown are left out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct YamlError {
    /// The file as the user should see it (relative to the repository where possible).
    pub file: PathBuf,
    /// 1-based line and column of the offending node, where known.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Dotted path of the offending field, `cases[3].sizes[1]`, where known.
    pub field: Option<String>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, ":{line}:{column}")?;
        }
        f.write_str(": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl YamlError {
    /// An error about the field at `path` in `text`, located by [`locate`]; for checks made
    /// after parsing (a reference to an unknown name, a duplicate).
    /// A field the text does not hold (a value implied by another, a default) is placed at the
    /// nearest of its parents that it does hold, so that no such error goes without a line.
    pub fn at(file: &Path, text: &str, path: &FieldPath, message: impl Into<String>) -> YamlError {
        let mut near = path.clone();
        let place = loop {
            match locate(text, &near) {
                Some(place) => break Some(place),
                None if near.0.pop().is_some() => {}
                None => break None,
            }
        };
        YamlError {
            file: file.to_path_buf(),
            line: place.map(|p| p.line),
            column: place.map(|p| p.column),
            field: (!path.is_root()).then(|| path.to_string()),
            message: message.into(),
        }
    }

    fn from_backend(e: backend::Error, file: &Path) -> YamlError {
        let location = e.location();
        let mut text = e.to_string();
        // The backend appends its own " at line L column C"; the location is printed in front
        // instead, where editors look for it.
        if let Some(loc) = &location {
            let suffix = format!(" at line {} column {}", loc.line(), loc.column());
            if let Some(i) = text.find(&suffix) {
                text.replace_range(i..i + suffix.len(), "");
            }
        }
        let (field, message) = split_field(&text);
        YamlError {
            file: file.to_path_buf(),
            line: location.as_ref().map(|l| l.line()),
            column: location.as_ref().map(|l| l.column()),
            field,
            message,
        }
    }
}

/// Splits the backend's `cases[3].sizes: message` into the field and the message. A prefix
/// with a space or a backtick is part of the message (`invalid type: ...`), not a field.
fn split_field(text: &str) -> (Option<String>, String) {
    if let Some((head, tail)) = text.split_once(": ") {
        let looks_like_path = !head.is_empty()
            && head != "."
            && !head.contains(|c: char| c.is_whitespace() || c == '`' || c == '"');
        if looks_like_path {
            return (Some(head.to_string()), tail.to_string());
        }
    }
    (None, text.to_string())
}

/// Parses `text` (read from `file`) into `T`. Unknown keys are rejected wherever the schema
/// type says `deny_unknown_fields`; the error names the file, line, column and field.
///
/// Before the backend sees it, the text must be of a fixture's shape ([`check_shape`]): a
/// file of megabytes, or nested thousands deep, is refused at once with its place, where the
/// backend would take minutes to say no.
pub fn parse<T: DeserializeOwned>(text: &str, file: &Path) -> Result<T, YamlError> {
    check_shape(text, file)?;
    backend::from_str(text).map_err(|e| {
        let mut err = YamlError::from_backend(e, file);
        if err.line.is_none() {
            if let Some((line, column)) = second_document(text) {
                err.line = Some(line);
                err.column = Some(column);
                err.message = format!(
                    "a second YAML document starts here; a fixture is one document ({})",
                    err.message
                );
            }
        }
        err
    })
}

/// The most bytes a YAML file svmconf reads may have: the largest fixture is a few KiB.
pub const MAX_BYTES: usize = 1 << 20;

/// The deepest nesting a YAML file svmconf reads may have: fixtures nest a few levels.
pub const MAX_DEPTH: usize = 64;

/// Refuses a text larger than [`MAX_BYTES`] or nested deeper than [`MAX_DEPTH`], naming the
/// place where the limit is passed. Nesting is counted as the backend would build it: flow
/// collections (`[`, `{`) open across lines, and block sequence entries (`- - -`) on one line,
/// outside quotes and comments. (Block nesting by indentation cannot go deep without the lines
/// growing with it, which the size limit bounds.)
pub fn check_shape(text: &str, file: &Path) -> Result<(), YamlError> {
    let refuse = |line, column, message: String| YamlError {
        file: file.to_path_buf(),
        line: Some(line),
        column: Some(column),
        field: None,
        message,
    };
    if text.len() > MAX_BYTES {
        return Err(refuse(1, 1, too_large(text.len() as u64)));
    }
    let too_deep = |depth| format!("nested {depth} levels deep; at most {MAX_DEPTH} are read");
    let mut flow = 0usize;
    for (n, line) in text.lines().enumerate() {
        let mut block = 0usize;
        let mut start_of_node = true;
        let mut quote: Option<char> = None;
        let mut previous = ' ';
        for (i, c) in line.char_indices() {
            let column = line[..i].chars().count() + 1;
            match quote {
                Some(q) => {
                    if c == q {
                        quote = None;
                    }
                }
                None => match c {
                    '#' if previous.is_whitespace() => break,
                    '"' | '\'' => quote = Some(c),
                    '[' | '{' => {
                        flow += 1;
                        if flow + block > MAX_DEPTH {
                            return Err(refuse(n + 1, column, too_deep(flow + block)));
                        }
                    }
                    ']' | '}' => flow = flow.saturating_sub(1),
                    '-' | '?' if start_of_node && flow == 0 => {
                        let next = line[i + 1..].chars().next();
                        if next.map_or(true, char::is_whitespace) {
                            block += 1;
                            if flow + block > MAX_DEPTH {
                                return Err(refuse(n + 1, column, too_deep(flow + block)));
                            }
                        }
                    }
                    _ => {}
                },
            }
            if !c.is_whitespace() && !matches!(c, '-' | '?') {
                start_of_node = false;
            }
            previous = c;
        }
    }
    Ok(())
}

/// Reads the YAML file at `path` (`shown` in messages) as text for [`parse`]: a file larger than
/// [`MAX_BYTES`] is refused before it is read, and one that is not UTF-8 is placed at the first
/// byte that is not.
pub fn read_text(path: &Path, shown: &Path) -> Result<String, YamlError> {
    let bytes = read_bytes(path, shown).map_err(|e| match e {
        Read::Io(e) => unplaced(
            shown,
            format!("cannot read: {}", crate::util::text::io_reason(&e)),
        ),
        Read::Refused(e) => e,
    })?;
    utf8(bytes, shown)
}

/// Why [`read_bytes`] read nothing.
#[derive(Debug)]
pub enum Read {
    /// The file could not be read.
    Io(std::io::Error),
    /// It is not a YAML file svmconf reads: too large.
    Refused(YamlError),
}

/// The bytes of the file at `path`, refused unread when larger than [`MAX_BYTES`].
pub fn read_bytes(path: &Path, shown: &Path) -> Result<Vec<u8>, Read> {
    let len = std::fs::metadata(path).map_err(Read::Io)?.len();
    if len > MAX_BYTES as u64 {
        return Err(Read::Refused(YamlError {
            line: Some(1),
            column: Some(1),
            ..unplaced(shown, too_large(len))
        }));
    }
    std::fs::read(path).map_err(Read::Io)
}

/// `bytes` as text, or an error placed at the first byte that is not UTF-8.
pub fn utf8(bytes: Vec<u8>, shown: &Path) -> Result<String, YamlError> {
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let bad = e.as_bytes()[valid.len()];
        // Valid UTF-8 up to there: lines and columns in characters, as editors count them.
        let before = std::str::from_utf8(valid).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        YamlError {
            line: Some(line),
            column: Some(column),
            ..unplaced(
                shown,
                format!(
                    "byte {bad:#04x} at offset {} is not UTF-8; a YAML file svmconf reads is \
                     UTF-8 text",
                    valid.len()
                ),
            )
        }
    })
}

fn unplaced(shown: &Path, message: String) -> YamlError {
    YamlError {
        file: shown.to_path_buf(),
        line: None,
        column: None,
        field: None,
        message,
    }
}

fn too_large(len: u64) -> String {
    format!("{len} bytes; a YAML file svmconf reads may have at most {MAX_BYTES} (1 MiB)")
}

/// Where a second document of `text` starts (a `---` line after content), 1-based.
fn second_document(text: &str) -> Option<(usize, usize)> {
    let mut content = false;
    for (n, line) in text.lines().enumerate() {
        let marker = line == "---" || line.starts_with("--- ") || line == "...";
        if marker && content {
            return Some((n + 1, 1));
        }
        let t = line.trim();
        if !marker && !t.is_empty() && !t.starts_with('#') {
            content = true;
        }
    }
    None
}

/// One step of a [`FieldPath`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// The path of a field inside a document, written as the backend writes it:
/// `cases[3].sizes[1]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldPath(pub Vec<Seg>);

impl FieldPath {
    /// The document itself.
    pub fn root() -> FieldPath {
        FieldPath(Vec::new())
    }

    pub fn key(mut self, key: impl Into<String>) -> FieldPath {
        self.0.push(Seg::Key(key.into()));
        self
    }

    pub fn index(mut self, index: usize) -> FieldPath {
        self.0.push(Seg::Index(index));
        self
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// 1-based line and column of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    pub line: usize,
    pub column: usize,
}

/// Where the node at `path` starts in `text`, or `None` when the text does not parse or has no
/// such node.
///
/// The backend keeps no positions in its values, but it does attach the position of the node
/// being read to any error raised while reading it. So the text is walked along `path`, and an
/// error is raised on purpose at the target node to learn where it is.
pub fn locate(text: &str, path: &FieldPath) -> Option<Place> {
    let err = match (Walk { path: &path.0 }).deserialize(backend::Deserializer::from_str(text)) {
        Ok(()) => return None,
        Err(e) => e,
    };
    if !err.to_string().contains(HERE) {
        return None;
    }
    err.location().map(|l| Place {
        line: l.line(),
        column: l.column(),
    })
}

/// The message of the error raised on purpose at the target node.
const HERE: &str = "svmconf-locate-target";

struct Walk<'p> {
    path: &'p [Seg],
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match self.path.first() {
            None => d.deserialize_any(Here),
            Some(Seg::Key(_)) => d.deserialize_map(self),
            Some(Seg::Index(_)) => d.deserialize_seq(self),
        }
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping or a sequence on the way to a field")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some(Seg::Key(want)) = self.path.first() else {
            return Ok(());
        };
        // Keys that are not strings (numbers, say) are read as values and never match.
        while let Some(key) = map.next_key::<Value>()? {
            if key.as_str() == Some(want.as_str()) {
                return map.next_value_seed(Walk {
                    path: &self.path[1..],
                });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some(Seg::Index(want)) = self.path.first() else {
            return Ok(());
        };
        for _ in 0..*want {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(Walk {
            path: &self.path[1..],
        })?;
        Ok(())
    }
}

/// Fails on whatever node it is given, so that the error carries that node's position.
struct Here;

impl<'de> Visitor<'de> for Here {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any node")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(HERE))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(HERE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        name: String,
        limits: Limits,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Limits {
        peak: f64,
    }

    const FILE: &str = "fixtures/profiles/x.yaml";

    #[test]
    fn unknown_top_level_key_names_file_line_column_and_key() {
        let text = "name: x\nlimits: {peak: 1.0}\nvram_byts: 4096\n";
        let e = parse::<Doc>(text, Path::new(FILE)).unwrap_err();
        let shown = e.to_string();
        assert!(
            shown.starts_with(
                "fixtures/profiles/x.yaml:3:1: unknown field `vram_byts`, expected `name` or `limits`"
            ),
            "{shown}"
        );
        assert!(!shown.contains(" at line "), "{shown}");
    }

    #[test]
    fn nested_error_names_the_field_path() {
        let text = "name: x\nlimits:\n  peak: fast\n";
        let e = parse::<Doc>(text, Path::new(FILE)).unwrap_err();
        assert_eq!((e.line, e.column), (Some(3), Some(9)), "{e}");
        assert_eq!(e.field.as_deref(), Some("limits.peak"), "{e}");
        assert!(e.message.contains("expected f64"), "{e}");
    }

    #[test]
    fn unknown_nested_key_names_its_parent() {
        let text = "name: x\nlimits:\n  peek: 1.0\n";
        let e = parse::<Doc>(text, Path::new(FILE)).unwrap_err();
        assert_eq!((e.line, e.column), (Some(3), Some(3)), "{e}");
        assert_eq!(e.field.as_deref(), Some("limits"), "{e}");
        assert!(e.message.starts_with("unknown field `peek`"), "{e}");
    }

    #[test]
    fn syntax_error_is_located() {
        let e = parse::<Doc>("name: [x\n", Path::new(FILE)).unwrap_err();
        assert!(e.line.is_some(), "{e}");
        assert!(
            e.to_string().starts_with("fixtures/profiles/x.yaml:"),
            "{e}"
        );
    }

    const DOC: &str = "\
sizes:
  4KiB: 4096
  vram/4: {vram_fraction: 0.25}
cases:
  - name: a::b
    sizes: [4KiB, 3MiB]
  - name: c::d
    sizes:
      - 4KiB
      - vram/4
";

    #[rstest]
    #[case(FieldPath::root().key("sizes").key("vram/4"), Some((3, 11)))]
    #[case(FieldPath::root().key("cases").index(0).key("sizes").index(1), Some((6, 19)))]
    #[case(FieldPath::root().key("cases").index(1), Some((7, 5)))]
    #[case(FieldPath::root().key("cases").index(1).key("sizes").index(1), Some((10, 9)))]
    #[case(FieldPath::root().key("cases").index(2), None)]
    #[case(FieldPath::root().key("nothing"), None)]
    fn locate_finds_nodes(#[case] path: FieldPath, #[case] want: Option<(usize, usize)>) {
        assert_eq!(
            locate(DOC, &path).map(|p| (p.line, p.column)),
            want,
            "{path}"
        );
    }

    /// The seam holds only if nothing else reaches past it.
    /// Nesting past the limit is refused where it is passed, before the backend reads a byte:
    /// 100,000 levels in each form a document can nest on one line.
    #[rstest]
    #[case::flow_sequences("cases: ", "[", "]", (1, 72))]
    #[case::flow_mappings("cases: ", "{a: ", "}", (1, 264))]
    #[case::block_sequences("cases:\n", "- ", "", (2, 129))]
    fn deep_nesting_is_refused_at_its_place(
        #[case] head: &str,
        #[case] open: &str,
        #[case] close: &str,
        #[case] at: (usize, usize),
    ) {
        let n = 100_000;
        let text = format!("{head}{}1{}\n", open.repeat(n), close.repeat(n));
        let e = parse::<Doc>(&text, Path::new("deep.yaml")).expect_err("refused");
        assert_eq!((e.line, e.column), (Some(at.0), Some(at.1)), "{e}");
        assert_eq!(e.message, "nested 65 levels deep; at most 64 are read");
        // The limit is the limit: 64 levels read on.
        let text = format!("{head}{}1{}\n", open.repeat(63), close.repeat(63));
        assert!(check_shape(&text, Path::new("ok.yaml")).is_ok(), "{text}");
    }

    #[rstest]
    #[case::quoted("name: \"[[[[\"\nlimits: {a: 1}\n")]
    #[case::commented("name: x # [[[[[[[[\n")]
    #[case::negative_numbers("- -1\n- -2\n")]
    fn brackets_and_dashes_that_do_not_nest_are_not_counted(#[case] text: &str) {
        let deep = text.replace("[[[[", &"[".repeat(100));
        assert!(check_shape(&deep, Path::new("ok.yaml")).is_ok(), "{deep}");
    }

    #[test]
    fn a_file_past_the_size_limit_is_refused_unread_and_as_text() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("big.yaml");
        let text = format!("# {}\n", "x".repeat(MAX_BYTES));
        std::fs::write(&path, &text).expect("write");
        let e = read_text(&path, Path::new("big.yaml")).expect_err("refused");
        assert_eq!(
            e.to_string(),
            format!(
                "big.yaml:1:1: {} bytes; a YAML file svmconf reads may have at most 1048576 (1 MiB)",
                text.len()
            )
        );
        let e = parse::<Doc>(&text, Path::new("big.yaml")).expect_err("refused");
        assert_eq!((e.line, e.column), (Some(1), Some(1)));
    }

    #[test]
    fn text_that_is_not_utf8_is_placed_at_its_first_bad_byte() {
        let e = utf8(b"name: x\nlimits: caf\xe9\n".to_vec(), Path::new("t.yaml")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.yaml:2:12: byte 0xe9 at offset 19 is not UTF-8; a YAML file svmconf reads is \
             UTF-8 text"
        );
        let dir = tempfile::tempdir().expect("a temporary folder");
        let e = read_text(&dir.path().join("none.yaml"), Path::new("none.yaml")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "none.yaml: cannot read: no such file or directory"
        );
    }

    #[test]
    fn an_error_at_a_field_the_text_lacks_is_placed_at_its_nearest_parent() {
        let text = "name: x\nlimits:\n  peak: 1\n";
        let path = FieldPath::root().key("limits").key("floor");
        let e = YamlError::at(Path::new("t.yaml"), text, &path, "implied");
        assert_eq!(e.to_string(), "t.yaml:3:3: limits.floor: implied");
    }

    #[test]
    fn a_second_document_is_placed_at_its_start() {
        let text = "# a comment\n---\nname: x\nlimits: {peak: 1}\n---\nname: y\n";
        let e = parse::<Doc>(text, Path::new("two.yaml")).expect_err("refused");
        assert_eq!((e.line, e.column), (Some(5), Some(1)), "{e}");
        assert!(
            e.message.starts_with("a second YAML document starts here"),
            "{e}"
        );
    }

    #[test]
    fn only_this_module_names_the_yaml_crate() {
        fn walk(dir: &Path, found: &mut Vec<String>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, found);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && !path.ends_with("src/util/yaml.rs")
                {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    for (i, line) in text.lines().enumerate() {
                        let code = line.trim_start();
                        if !code.starts_with("//") && code.contains("serde_yaml") {
                            found.push(format!("{}:{}: {}", path.display(), i + 1, code));
                        }
                    }
                }
            }
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut found = Vec::new();
        for dir in ["src", "suites", "tests"] {
            walk(&root.join(dir), &mut found);
        }
        assert!(
            found.is_empty(),
            "use crate::util::yaml instead:\n{}",
            found.join("\n")
        );
    }

    #[test]
    fn field_path_reads_like_the_backend() {
        let p = FieldPath::root()
            .key("cases")
            .index(3)
            .key("sizes")
            .index(1);
        assert_eq!(p.to_string(), "cases[3].sizes[1]");
    }
}
