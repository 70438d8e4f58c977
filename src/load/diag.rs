//! Diagnostics: located errors, their stable codes, and how they are shown
//! (`file:line:column: error[code]: message` plus a source snippet, or JSON).
//! Text output escapes control characters of config content (as `\u{…}` in
//! messages, replaced in snippets) so that a config cannot forge lines or
//! send escape sequences to the terminal.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
use serde::Serialize;

/// One problem found while loading, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The file, as given on the command line (or found under a directory).
    pub file: String,
    /// 1-based; 0 when the problem is the file as a whole.
    pub line: u64,
    pub column: u64,
    pub message: String,
    /// A stable code, e.g. `schema.unknown-field` (see the README's list).
    pub code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// Other places that matter (e.g. the first definition of a duplicate).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<Related>,
}

/// Another location a diagnostic refers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Related {
    pub file: String,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl Diagnostic {
    /// `file:line:column` (or just `file` when there is no position).
    pub fn location(&self) -> String {
        if self.line == 0 {
            self.file.clone()
        } else {
            format!("{}:{}:{}", self.file, self.line, self.column)
        }
    }
}

/// Everything wrong with a config, with the texts needed to show snippets.
#[derive(Debug, Default)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
    /// File name -> its text (only for files that were read as text).
    pub sources: BTreeMap<String, String>,
}

impl Diagnostics {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sort by file, line, column, then message, so output is stable.
    pub fn sort(&mut self) {
        self.items.sort_by(|a, b| {
            (&a.file, a.line, a.column, &a.message).cmp(&(&b.file, b.line, b.column, &b.message))
        });
        self.items.dedup();
    }

    /// Human output: each error with a snippet, then a summary per file.
    pub fn render_text(&self, color: bool) -> String {
        let renderer = if color {
            Renderer::styled()
        } else {
            Renderer::plain()
        };
        let mut out = String::new();
        use crate::escape::text as esc;
        for d in &self.items {
            out.push_str(&format!(
                "{}: error[{}]: {}\n",
                esc(&d.location()),
                d.code,
                esc(&d.message)
            ));
            if let Some(snippet) = self.snippet(&renderer, d) {
                out.push_str(&snippet);
                out.push('\n');
            }
            for r in &d.related {
                let loc = if r.line == 0 {
                    r.file.clone()
                } else {
                    format!("{}:{}:{}", r.file, r.line, r.column)
                };
                out.push_str(&format!("  = note: {}: {}\n", esc(&loc), esc(&r.message)));
            }
            if let Some(help) = &d.help {
                out.push_str(&format!("  = help: {}\n", esc(help)));
            }
            out.push('\n');
        }
        let mut per_file: BTreeMap<&str, usize> = BTreeMap::new();
        for d in &self.items {
            *per_file.entry(&d.file).or_default() += 1;
        }
        let files: Vec<String> = per_file
            .iter()
            .map(|(f, n)| format!("{}: {n}", esc(f)))
            .collect();
        let n = self.items.len();
        out.push_str(&format!(
            "{n} error{} in {} file{} ({})\n",
            if n == 1 { "" } else { "s" },
            per_file.len(),
            if per_file.len() == 1 { "" } else { "s" },
            files.join(", ")
        ));
        out
    }

    fn snippet(&self, renderer: &Renderer, d: &Diagnostic) -> Option<String> {
        if d.line == 0 {
            return None;
        }
        let text = self.sources.get(&d.file)?;
        let line = text.lines().nth(usize::try_from(d.line - 1).ok()?)?;
        let line: String = line.chars().take(200).collect();
        let line = crate::escape::snippet_line(&line).into_owned();
        let col = usize::try_from(d.column.max(1) - 1).ok()?;
        let start: usize = line.chars().take(col).map(char::len_utf8).sum();
        if start > line.len() {
            return None;
        }
        let rest = &line[start..];
        let quoted = rest.starts_with(['"', '\'']).then(|| {
            let q = rest.as_bytes()[0] as char;
            rest[1..].find(q).map(|i| i + 2).unwrap_or(rest.len())
        });
        let token_len = quoted.unwrap_or_else(|| {
            rest.char_indices()
                .find(|(_, c)| c.is_whitespace() || matches!(c, ',' | ']' | '}' | ':'))
                .map(|(i, _)| i)
                .unwrap_or(rest.len())
                .max(rest.chars().next().map(char::len_utf8).unwrap_or(0))
        });
        let report = &[Group::with_level(Level::ERROR).element(
            Snippet::source(line.as_str())
                .line_start(usize::try_from(d.line).ok()?)
                .annotation(AnnotationKind::Primary.span(start..start + token_len)),
        )];
        Some(renderer.render(report))
    }

    /// Machine output: `{"valid": bool, "errors": [...]}`.
    pub fn render_json(&self) -> String {
        let errors: Vec<_> = self
            .items
            .iter()
            .map(|d| {
                let mut v = serde_json::json!({
                    "file": d.file, "line": d.line, "column": d.column,
                    "message": d.message, "code": d.code,
                });
                if let Some(h) = &d.help {
                    v["help"] = h.clone().into();
                }
                if !d.related.is_empty() {
                    v["related"] = serde_json::to_value(&d.related).unwrap_or_default();
                }
                v
            })
            .collect();
        let v = serde_json::json!({ "valid": self.items.is_empty(), "errors": errors });
        serde_json::to_string_pretty(&v).unwrap_or_default()
    }
}

/// Whether to colour output written to stderr/stdout: only on a terminal, never with `NO_COLOR`.
pub fn use_color(stream_is_terminal: bool) -> bool {
    stream_is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Convenience: colour decision for stdout.
pub fn stdout_color() -> bool {
    use_color(std::io::stdout().is_terminal())
}

/// Convenience: colour decision for stderr.
pub fn stderr_color() -> bool {
    use_color(std::io::stderr().is_terminal())
}

/// The closest of `candidates` to `word`, if close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let max = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, _)| *d <= max)
        .min()
        .map(|(_, c)| c)
}
