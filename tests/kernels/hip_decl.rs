//! Finds the kernel declarations of a `.hip` source: every `extern "C" __global__ void
//! NAME(PARAMS)`, with each parameter's C type and name.
//!
//! A hand parser over a small token stream, enough for the declarations in `kernels/`: comments
//! and preprocessor lines are dropped, a declaration may span lines, and any `__global__` that
//! is not in that exact form is a problem rather than something skipped, so a kernel cannot
//! hide from the signature check by being declared differently.

/// A kernel as its source declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kernel {
    pub name: String,
    pub params: Vec<CParam>,
    /// 1-based line of the `__global__`.
    pub line: usize,
}

/// One parameter: its type with spaces normalised (`const uint32_t*`) and its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CParam {
    pub ty: String,
    pub name: String,
}

impl std::fmt::Display for CParam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.ty, self.name)
    }
}

/// What a source declares: the kernels, and each declaration that could not be read, as
/// `line N: what is wrong`.
#[derive(Debug, Default)]
pub struct Parsed {
    pub kernels: Vec<Kernel>,
    pub problems: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Str(String),
    Punct(char),
}

pub fn parse(source: &str) -> Parsed {
    let toks = tokenize(source);
    let mut parsed = Parsed::default();
    for (at, (tok, line)) in toks.iter().enumerate() {
        if *tok != Tok::Ident("__global__".into()) {
            continue;
        }
        match declaration(&toks, at) {
            Ok(kernel) => parsed.kernels.push(Kernel {
                line: *line,
                ..kernel
            }),
            Err(why) => parsed.problems.push(format!("line {line}: {why}")),
        }
    }
    parsed
}

/// The declaration around the `__global__` at `toks[at]`.
fn declaration(toks: &[(Tok, usize)], at: usize) -> Result<Kernel, String> {
    const FORM: &str = "expected `extern \"C\" __global__ void NAME(PARAMS)`";
    let tok = |i: usize| toks.get(i).map(|(t, _)| t);
    let extern_c = at >= 2
        && tok(at - 2) == Some(&Tok::Ident("extern".into()))
        && tok(at - 1) == Some(&Tok::Str("C".into()));
    if !extern_c {
        return Err(format!(
            "`__global__` without `extern \"C\"` right before it (the symbol would be mangled); \
             {FORM}"
        ));
    }
    let name = match (tok(at + 1), tok(at + 2), tok(at + 3)) {
        (Some(Tok::Ident(v)), Some(Tok::Ident(name)), Some(Tok::Punct('('))) if v == "void" => {
            name.clone()
        }
        _ => return Err(FORM.into()),
    };
    let mut params = Vec::new();
    let mut current: Vec<&Tok> = Vec::new();
    let mut depth = 0;
    let mut i = at + 4;
    loop {
        match tok(i) {
            None => return Err(format!("{name}: parameter list never closed")),
            Some(Tok::Punct(')')) if depth == 0 => break,
            Some(Tok::Punct(',')) if depth == 0 => {
                params.push(param(&name, params.len() + 1, &current)?);
                current.clear();
            }
            Some(t) => {
                match t {
                    Tok::Punct('(') => depth += 1,
                    Tok::Punct(')') => depth -= 1,
                    _ => {}
                }
                current.push(t);
            }
        }
        i += 1;
    }
    let void_only = current.len() == 1 && *current[0] == Tok::Ident("void".into());
    if !(params.is_empty() && (current.is_empty() || void_only)) {
        params.push(param(&name, params.len() + 1, &current)?);
    }
    Ok(Kernel {
        name,
        params,
        line: 0,
    })
}

/// One parameter's tokens: a type (identifiers and `*`) and a name, the last identifier.
fn param(kernel: &str, n: usize, toks: &[&Tok]) -> Result<CParam, String> {
    let text = || {
        toks.iter()
            .map(|t| match t {
                Tok::Ident(s) => s.clone(),
                Tok::Str(s) => format!("{s:?}"),
                Tok::Punct(c) => c.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let Some((Tok::Ident(name), ty)) = toks.split_last().map(|(l, r)| (*l, r)) else {
        return Err(format!("{kernel} parameter {n} `{}` has no name", text()));
    };
    let mut out = String::new();
    for t in ty {
        match t {
            Tok::Punct('*') => out.push('*'),
            Tok::Ident(word) => {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(word);
            }
            _ => {
                return Err(format!(
                    "{kernel} parameter {n} `{}` is not `TYPE NAME`",
                    text()
                ))
            }
        }
    }
    if out.is_empty() {
        return Err(format!(
            "{kernel} parameter {n} `{}` has a name but no type",
            text()
        ));
    }
    Ok(CParam {
        ty: out,
        name: name.clone(),
    })
}

/// Identifiers (numbers included), string literals and single punctuation characters, each
/// with its 1-based line; comments and preprocessor lines are dropped.
fn tokenize(source: &str) -> Vec<(Tok, usize)> {
    let chars: Vec<char> = source.chars().collect();
    let mut toks = Vec::new();
    let mut line = 1;
    let mut line_start = true;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '\n' {
            line += 1;
            line_start = true;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '#' && line_start {
            // A directive runs to the end of the line, continued by a trailing backslash.
            while i < chars.len() && chars[i] != '\n' {
                if chars[i] == '\\' && chars.get(i + 1) == Some(&'\n') {
                    line += 1;
                    i += 1;
                }
                i += 1;
            }
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                if chars[i] == '\n' {
                    line += 1;
                }
                i += 1;
            }
            i += 2;
        } else if c == '"' || c == '\'' {
            let start_line = line;
            let mut text = String::new();
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    text.push(chars[i]);
                    i += 1;
                }
                if chars[i] == '\n' {
                    line += 1;
                }
                text.push(chars[i]);
                i += 1;
            }
            i += 1;
            line_start = false;
            toks.push((
                if c == '"' {
                    Tok::Str(text)
                } else {
                    Tok::Punct('\'')
                },
                start_line,
            ));
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            line_start = false;
            toks.push((Tok::Ident(chars[start..i].iter().collect()), line));
        } else {
            line_start = false;
            toks.push((Tok::Punct(c), line));
            i += 1;
        }
    }
    toks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(kernel: &Kernel) -> Vec<String> {
        kernel.params.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn reads_a_declaration_split_over_lines_with_comments() {
        let src = "// a comment with extern \"C\" __global__ void fake(int x)\n\
                   #include \"svm_grid.h\"\n\
                   #define X(a) \\\n  extern \"C\" __global__ void macro_kernel(a)\n\
                   /* block\n comment */\n\
                   extern   \"C\"\n__global__\tvoid svm_copy( uint32_t *dst,\n\
                   \x20  const uint32_t  * src, // trailing\n uint64_t nwords)\n{ }\n";
        let parsed = parse(src);
        assert_eq!(parsed.problems, Vec::<String>::new());
        assert_eq!(parsed.kernels.len(), 1);
        let k = &parsed.kernels[0];
        assert_eq!((k.name.as_str(), k.line), ("svm_copy", 8));
        assert_eq!(
            params(k),
            ["uint32_t* dst", "const uint32_t* src", "uint64_t nwords"]
        );
    }

    #[test]
    fn reads_every_kernel_of_a_file_and_empty_lists() {
        let src = "extern \"C\" __global__ void a(void) {}\n\
                   extern \"C\" __global__ void b() {}\n\
                   extern \"C\" __global__ void c(unsigned long long* sum) {}\n";
        let parsed = parse(src);
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        let names: Vec<_> = parsed.kernels.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert!(parsed.kernels[0].params.is_empty() && parsed.kernels[1].params.is_empty());
        assert_eq!(params(&parsed.kernels[2]), ["unsigned long long* sum"]);
    }

    #[test]
    fn a_kernel_without_extern_c_is_a_problem_not_skipped() {
        let parsed = parse("\n__global__ void svm_fill(uint32_t* buf) {}\n");
        assert!(parsed.kernels.is_empty());
        assert_eq!(parsed.problems.len(), 1);
        assert!(
            parsed.problems[0].starts_with("line 2: `__global__` without `extern \"C\"`"),
            "{:?}",
            parsed.problems
        );
    }

    #[test]
    fn a_kernel_in_another_form_is_a_problem() {
        for src in [
            "extern \"C\" __global__ int svm_fill(uint32_t* buf) {}",
            "extern \"C\" __global__ __attribute__((x)) void svm_fill(uint32_t* buf) {}",
            "extern \"C\" __global__ void svm_fill(uint32_t*, uint64_t n) {}",
            "extern \"C\" __global__ void svm_fill(uint32_t* buf",
        ] {
            let parsed = parse(src);
            assert!(parsed.kernels.is_empty(), "{src}: {:?}", parsed.kernels);
            assert_eq!(parsed.problems.len(), 1, "{src}: {:?}", parsed.problems);
        }
    }
}
