//! YAML reading: text -> `serde_json::Value` (the fast path every load takes),
//! and, only when there is something to report, a span tree that maps a JSON
//! pointer back to the line and column it came from.
//!
//! Strict YAML: `yes`/`on` are strings, not booleans; duplicate keys are
//! errors; input budgets stop alias bombs and absurd nesting.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_saphyr::{Budget, DuplicateKeyPolicy, Options, Spanned};

/// A 1-based line and column; 0 means unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

/// The largest config file roster reads (bytes).
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

fn options() -> Options {
    let mut budget = Budget::default();
    // Generous enough for 100k users in one file, small enough to stop bombs.
    budget.max_events = 50_000_000;
    budget.max_nodes = 25_000_000;
    budget.max_depth = 64;
    budget.max_aliases = 10_000;
    budget.max_anchors = 10_000;
    // An alias bomb expands a few anchors into millions of events: stop it early.
    budget.max_recorded_anchor_events = 100_000;
    budget.max_documents = 1;
    budget.max_total_scalar_bytes = MAX_FILE_BYTES as usize;
    let mut opts = Options::default();
    opts.budget = Some(budget);
    opts.strict_booleans = true;
    opts.duplicate_keys = DuplicateKeyPolicy::Error;
    opts.with_snippet = false;
    opts
}

/// A YAML error with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
    /// The error is a repeated mapping key: the file can still be read with
    /// [`parse_first_wins`] and its repeats listed with [`duplicate_keys`].
    pub duplicate: bool,
}

fn yaml_error(e: serde_saphyr::Error, text: &str) -> YamlError {
    let mut duplicate = false;
    let mut pos = e
        .location()
        .map(|l| Pos {
            line: l.line(),
            column: l.column(),
        })
        .unwrap_or_default();
    let mut message = e.to_string();
    // The library appends " at line X column Y"; we print positions ourselves.
    if let Some(i) = message.find(" at line ") {
        message.truncate(i);
    }
    if let Some(rest) = message.strip_prefix("budget breached: ") {
        let limit = rest.split([' ', '{', '(']).next().unwrap_or_default();
        if limit == "Documents" {
            let line = second_document(text).unwrap_or(pos.line);
            pos = Pos { line, column: 1 };
            message = format!(
                "one YAML document per file (found a second `---` at line {line}); split the documents into separate files"
            );
            return YamlError {
                pos,
                message,
                duplicate,
            };
        }
        message = format!(
            "the YAML is too large or expands too far (input budget `{limit}` exceeded): aliases that expand exponentially and absurd nesting are refused"
        );
    } else if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        let key = rest
            .split(", set DuplicateKeyPolicy")
            .next()
            .unwrap_or(rest);
        message = format!("duplicate key `{key}`: a key may appear once in a map");
        duplicate = true;
    }
    YamlError {
        pos,
        message,
        duplicate,
    }
}

/// The line of the separator that starts a file's second YAML document.
fn second_document(text: &str) -> Option<u64> {
    let (mut marker, mut content) = (false, false);
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_end();
        if t == "---" || t.starts_with("--- ") {
            if marker || content {
                return Some(i as u64 + 1);
            }
            marker = true;
            content = t.len() > 3;
            continue;
        }
        let t = t.trim_start();
        if !(t.is_empty() || t.starts_with('#') || t == "...") {
            content = true;
        }
    }
    None
}

/// Parse a file whose only problem was a repeated key: the first of each
/// repeated key wins (the repeats are reported from [`duplicate_keys`]).
pub fn parse_first_wins(text: &str) -> Result<Value, YamlError> {
    let mut opts = options();
    opts.duplicate_keys = DuplicateKeyPolicy::FirstWins;
    match serde_saphyr::from_str_with_options::<Value>(text, opts) {
        Ok(Value::Null) => Ok(Value::Object(Default::default())),
        Ok(v) => Ok(v),
        Err(e) => Err(yaml_error(e, text)),
    }
}

/// A key repeated in one map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateKey {
    /// The path of the map that holds the key.
    pub map: Vec<String>,
    pub key: String,
    pub first: Pos,
    pub repeat: Pos,
}

/// Every key repeated in a map of `text`, in document order.
pub fn duplicate_keys(text: &str) -> Vec<DuplicateKey> {
    let mut opts = options();
    opts.duplicate_keys = DuplicateKeyPolicy::PassThrough;
    let Ok(root) = serde_saphyr::from_str_with_options::<Spanned<Node>>(text, opts) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut stack: Vec<(Vec<String>, &Spanned<Node>)> = vec![(Vec::new(), &root)];
    while let Some((path, node)) = stack.pop() {
        match &node.value {
            Node::Scalar => {}
            Node::Seq(items) => {
                for (i, item) in items.iter().enumerate().rev() {
                    let mut p = path.clone();
                    p.push(i.to_string());
                    stack.push((p, item));
                }
            }
            Node::Map(entries) => {
                let mut seen: std::collections::HashMap<&str, Pos> = Default::default();
                for (k, _) in entries {
                    let at = pos_of_key(k);
                    match seen.get(k.value.0.as_str()) {
                        Some(first) => out.push(DuplicateKey {
                            map: path.clone(),
                            key: k.value.0.clone(),
                            first: *first,
                            repeat: at,
                        }),
                        None => {
                            seen.insert(k.value.0.as_str(), at);
                        }
                    }
                }
                for (k, v) in entries.iter().rev() {
                    let mut p = path.clone();
                    p.push(k.value.0.clone());
                    stack.push((p, v));
                }
            }
        }
    }
    out.sort_by_key(|d| (d.repeat.line, d.repeat.column));
    out
}

/// Parse one YAML document into JSON. An empty document (or only comments) is `{}`.
pub fn parse(text: &str) -> Result<Value, YamlError> {
    if is_blank(text) {
        return Ok(Value::Object(Default::default()));
    }
    match serde_saphyr::from_str_with_options::<Value>(text, options()) {
        Ok(Value::Null) => Ok(Value::Object(Default::default())),
        Ok(v) => Ok(v),
        Err(e) => Err(yaml_error(e, text)),
    }
}

fn is_blank(text: &str) -> bool {
    text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---" || t == "..."
    })
}

/// A YAML node with the positions of itself and of its keys.
#[derive(Debug)]
pub enum Node {
    Scalar,
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<Key>, Spanned<Node>)>),
}

/// A mapping key, as a string.
#[derive(Debug)]
pub struct Key(pub String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a scalar key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Key, E> {
                Ok(Key("null".to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML node")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i128<E: de::Error>(self, _: i128) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u128<E: de::Error>(self, _: u128) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_none<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
                Node::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<Node>>()? {
                    items.push(item);
                }
                Ok(Node::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(k) = map.next_key::<Spanned<Key>>()? {
                    let v = map.next_value::<Spanned<Node>>()?;
                    entries.push((k, v));
                }
                Ok(Node::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// Maps JSON pointers in one file to positions. Built on first use.
pub struct SpanTree {
    root: Option<Spanned<Node>>,
}

impl SpanTree {
    /// Build the span tree of `text` (which must already have parsed).
    pub fn build(text: &str) -> SpanTree {
        let root = if is_blank(text) {
            None
        } else {
            // Repeated keys are kept (the first is found): a file whose only
            // problem is a repeated key is still checked and located.
            let mut opts = options();
            opts.duplicate_keys = DuplicateKeyPolicy::PassThrough;
            serde_saphyr::from_str_with_options::<Spanned<Node>>(text, opts).ok()
        };
        SpanTree { root }
    }

    /// The position of the value at `pointer` (RFC 6901 tokens, already split),
    /// or of its key when `key` is true. Falls back to the nearest ancestor found.
    pub fn locate(&self, tokens: &[String], key: bool) -> Pos {
        let Some(root) = &self.root else {
            return Pos { line: 1, column: 1 };
        };
        let mut node = root;
        let mut best = pos_of(root);
        for (i, tok) in tokens.iter().enumerate() {
            let last = i + 1 == tokens.len();
            match &node.value {
                Node::Map(entries) => match entries.iter().find(|(k, _)| k.value.0 == *tok) {
                    Some((k, v)) => {
                        if last && key {
                            return pos_of_key(k);
                        }
                        node = v;
                        best = pos_of(v);
                        if best.line == 0 {
                            best = pos_of_key(k);
                        }
                    }
                    None => return best,
                },
                Node::Seq(items) => match tok.parse::<usize>().ok().and_then(|i| items.get(i)) {
                    Some(v) => {
                        node = v;
                        best = pos_of(v);
                    }
                    None => return best,
                },
                Node::Scalar => return best,
            }
        }
        best
    }
}

fn pos_of(n: &Spanned<Node>) -> Pos {
    Pos {
        line: n.referenced.line(),
        column: n.referenced.column(),
    }
}
fn pos_of_key(k: &Spanned<Key>) -> Pos {
    Pos {
        line: k.referenced.line(),
        column: k.referenced.column(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_values_and_keys() {
        let text = "users:\n  alice:\n    display_name: A\n    groups: [x, y]\n";
        let t = SpanTree::build(text);
        let toks = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            t.locate(&toks(&["users", "alice", "display_name"]), true),
            Pos { line: 3, column: 5 }
        );
        assert_eq!(
            t.locate(&toks(&["users", "alice", "display_name"]), false),
            Pos {
                line: 3,
                column: 19
            }
        );
        assert_eq!(
            t.locate(&toks(&["users", "alice", "groups", "1"]), false),
            Pos {
                line: 4,
                column: 17
            }
        );
        // Unknown tail: nearest ancestor.
        assert_eq!(
            t.locate(&toks(&["users", "alice", "nope"]), false),
            Pos { line: 3, column: 5 }
        );
    }

    #[test]
    fn strict_yaml() {
        assert_eq!(parse("a: yes\n").unwrap()["a"], Value::String("yes".into()));
        let e = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(e.pos.line, 2, "{e:?}");
        assert_eq!(parse("# only a comment\n").unwrap(), serde_json::json!({}));
        assert_eq!(parse("").unwrap(), serde_json::json!({}));
    }
}
