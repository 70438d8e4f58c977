//! Showing strings that come from a config (which a pull request's author
//! controls) without letting them act as markup: terminal control sequences,
//! forged lines, Markdown or HTML. Pure: no I/O.
//!
//! - [`text`]: control characters (C0, DEL, C1) and invisible format
//!   characters (bidi overrides, zero-width, line separators) as `\u{…}`.
//! - [`snippet_line`]: the same characters replaced by a visible character of
//!   the same UTF-8 length, so byte offsets into a source line still hold.
//! - [`md_code`]: a Markdown code span that the value cannot close.
//! - [`md_text`]: Markdown inline text with every ASCII punctuation escaped.
//! - [`md_fence`]: a code fence longer than any backtick run in a block.

use std::borrow::Cow;

/// Whether `c` must not reach a terminal or a rendered comment as itself.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{E0000}'..='\u{E007F}'
        )
}

/// `s` with every unsafe character written `\u{1b}` (Rust's notation).
pub fn text(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A source line for a snippet: unsafe characters (tabs kept) replaced by a
/// character of the same UTF-8 length (`?`, `¿`, `�`), so that annotation
/// offsets stay right and nothing reaches the terminal raw.
pub fn snippet_line(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c != '\t' && is_unsafe(c)) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| {
                if c == '\t' || !is_unsafe(c) {
                    return c.to_string();
                }
                match c.len_utf8() {
                    1 => "?".to_string(),
                    2 => "\u{BF}".to_string(),
                    3 => "\u{FFFD}".to_string(),
                    _ => "????".to_string(),
                }
            })
            .collect(),
    )
}

/// The longest run of `` ` `` in `s`.
fn longest_backtick_run(s: &str) -> usize {
    let (mut best, mut run) = (0, 0);
    for c in s.chars() {
        if c == '`' {
            run += 1;
            best = best.max(run);
        } else {
            run = 0;
        }
    }
    best
}

/// `s` as a Markdown code span that shows exactly [`text`]`(s)`: the fence is
/// one backtick longer than any run inside, and a value that starts or ends
/// with a backtick or a space is padded (CommonMark strips one space on each
/// side). Inside a code span neither HTML nor Markdown is interpreted, and
/// with control characters escaped no line break can end it.
pub fn md_code(s: &str) -> String {
    let s = text(s);
    let fence = "`".repeat(longest_backtick_run(&s) + 1);
    let pad = s.starts_with(['`', ' ']) || s.ends_with(['`', ' ']) || s.is_empty();
    let sp = if pad { " " } else { "" };
    format!("{fence}{sp}{s}{sp}{fence}")
}

/// `s` as Markdown inline text: [`text`] escaping, then every character that
/// can start inline markup (`` \ ` * _ [ ] < > & ! ~ | ``) backslash-escaped,
/// and a leading block marker (`#`, `+`, `-`, `=`, `1.`, `1)`) too, so no
/// emphasis, link, image, HTML tag, entity, list or heading is formed.
pub fn md_text(s: &str) -> String {
    let s = text(s);
    let mut out = String::with_capacity(s.len() + 8);
    let lead = s.len() - s.trim_start().len();
    let digits = s[lead..].chars().take_while(char::is_ascii_digit).count();
    for (i, c) in s.char_indices() {
        let inline = matches!(
            c,
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '&' | '!' | '~' | '|'
        );
        let block_start = i == lead && matches!(c, '#' | '+' | '-' | '=');
        let list_number = digits > 0 && i == lead + digits && matches!(c, '.' | ')');
        if inline || block_start || list_number {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A backtick fence for a fenced code block holding `body`: at least three
/// backticks and longer than any run of backticks in it, so no line of the
/// body can close the block.
pub fn md_fence(body: &str) -> String {
    "`".repeat((longest_backtick_run(body) + 1).max(3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_format_characters_are_escaped() {
        assert_eq!(
            text("a\x1b[1Ab\n\u{9b}c\u{202e}"),
            "a\\u{1b}[1Ab\\u{a}\\u{9b}c\\u{202e}"
        );
        assert!(matches!(text("payroll.read"), Cow::Borrowed(_)));
    }

    #[test]
    fn snippet_lines_keep_their_byte_length() {
        for s in ["a\x1bb", "x\u{9b}y", "p\u{202e}q", "tab\tkept"] {
            let n = snippet_line(s);
            assert_eq!(n.len(), s.len(), "{s:?}");
            assert!(!n.chars().any(|c| c != '\t' && is_unsafe(c)), "{n:?}");
        }
    }

    #[test]
    fn code_spans_cannot_be_closed_by_the_value() {
        assert_eq!(md_code("payroll.read"), "`payroll.read`");
        assert_eq!(md_code("a`b"), "``a`b``");
        assert_eq!(md_code("`x"), "`` `x ``");
        assert_eq!(md_code("a\n\n<!--"), "`a\\u{a}\\u{a}<!--`");
    }

    #[test]
    fn markdown_text_forms_no_markup() {
        assert_eq!(md_text("since (serial 1); ok"), "since (serial 1); ok");
        assert_eq!(
            md_text("<!-- **x** [a](b)"),
            "\\<\\!-- \\*\\*x\\*\\* \\[a\\](b)"
        );
        assert_eq!(md_text("# h"), "\\# h");
        assert_eq!(md_text("12. item"), "12\\. item");
    }
}
