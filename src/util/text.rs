//! Text for messages: an I/O error as a clause, and a quoted piece of input cut to a length.

use std::io;

/// An I/O error as a clause of a sentence: `permission denied`, without the errno suffix.
pub fn io_reason(e: &io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error ") {
        Some(i) => &text[..i],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text.to_string(),
    }
}

/// At most `max` characters of `s`, with `...` where it was cut: for error messages that quote
/// input.
pub fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// `s` with control characters and quotes escaped as Rust writes them, then [`clip`]ped: a
/// malformed line from a kernel interface quoted so that it stays on one line.
pub fn quote(s: &str, max: usize) -> String {
    clip(&s.escape_debug().to_string(), max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_reason_reads_as_a_clause() {
        let e = io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(io_reason(&e), "permission denied");
    }

    #[test]
    fn clip_cuts_on_characters_and_says_so() {
        assert_eq!(clip("abcdef", 3), "abc...");
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("\u{e9}\u{e9}\u{e9}", 2), "\u{e9}\u{e9}...");
    }

    #[test]
    fn quote_escapes_before_cutting() {
        assert_eq!(quote("a\nb", 10), "a\\nb");
        assert_eq!(quote("a\tbcdef", 3), "a\\t...");
    }
}
