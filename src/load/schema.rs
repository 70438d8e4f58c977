//! JSON Schema validation of one parsed file, with errors turned into
//! located diagnostics ("unknown field `emial`" + "did you mean `email`?").
//!
//! The schema is generated from the model types (`model::config_schema`) and
//! compiled once per process.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use jsonschema::error::ValidationErrorKind;
use jsonschema::paths::LocationSegment;
use jsonschema::{ValidationError, Validator};
use serde_json::Value;

use super::{Ctx, Ptr, diag};
use crate::model::{NAME_PATTERN, NO_CONTROL_PATTERN, PERMISSION_PATTERN, config_schema};

fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(config_schema)
}

fn validator() -> &'static Validator {
    static VALIDATOR: OnceLock<Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        jsonschema::draft202012::new(schema()).expect("the generated schema compiles")
    })
}

fn tokens(loc: &jsonschema::paths::Location) -> Ptr {
    loc.iter()
        .map(|s| match s {
            LocationSegment::Property(p) => p.to_string(),
            LocationSegment::Index(i) => i.to_string(),
        })
        .collect()
}

/// The schema node that describes the instance at `ptr` (following `$ref`,
/// the non-null branch of `anyOf`, `properties`, `additionalProperties`, `items`).
fn schema_at<'a>(root: &'a Value, ptr: &[String]) -> Option<&'a Value> {
    let mut node = deref(root, root);
    for tok in ptr {
        let next = node
            .get("properties")
            .and_then(|p| p.get(tok))
            .or_else(|| node.get("additionalProperties").filter(|v| v.is_object()))
            .or_else(|| node.get("items").filter(|v| v.is_object()))?;
        node = deref(root, next);
    }
    Some(node)
}

fn deref<'a>(root: &'a Value, mut node: &'a Value) -> &'a Value {
    for _ in 0..16 {
        if let Some(r) = node.get("$ref").and_then(Value::as_str) {
            match r
                .strip_prefix("#/$defs/")
                .and_then(|n| root.get("$defs")?.get(n))
            {
                Some(n) => node = n,
                None => return node,
            }
        } else if let Some(branches) = node.get("anyOf").and_then(Value::as_array) {
            match branches
                .iter()
                .find(|b| b.get("type") != Some(&Value::from("null")))
            {
                Some(b) => node = b,
                None => return node,
            }
        } else {
            return node;
        }
    }
    node
}

fn short(v: &Value) -> String {
    if let Value::String(s) = v {
        // Quote only the start: the value may be megabytes long.
        let head: String = s.chars().take(41).collect();
        let mut quoted = Value::from(head.chars().take(40).collect::<String>()).to_string();
        if head.chars().count() > 40 {
            // Before the closing quote.
            quoted.insert(quoted.len() - 1, '…');
        }
        return quoted;
    }
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// What to take out of an entry that failed the schema so that the rest of
/// it can still be read and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Fix {
    /// The value at the pointer is wrong: leave it out.
    Drop,
    /// The map at the pointer lacks this required field.
    Missing(String),
}

/// Validate one file's JSON. Reports into `ctx` and returns, per pointer, what
/// failed there (the entry is read without it, see `load::prune`).
pub(super) fn validate(value: &Value, file: usize, ctx: &mut Ctx) -> BTreeMap<Ptr, Vec<Fix>> {
    let mut fixes = BTreeMap::new();
    for error in validator().iter_errors(value) {
        let ptr = tokens(error.instance_path());
        report(&error, file, &ptr, ctx, &mut fixes);
    }
    fixes
}

fn fix(fixes: &mut BTreeMap<Ptr, Vec<Fix>>, ptr: Ptr, f: Fix) {
    fixes.entry(ptr).or_default().push(f);
}

fn report(
    error: &ValidationError<'_>,
    file: usize,
    ptr: &Ptr,
    ctx: &mut Ctx,
    fixes: &mut BTreeMap<Ptr, Vec<Fix>>,
) {
    let instance = error.instance();
    match error.kind() {
        ValidationErrorKind::AdditionalProperties { .. }
        | ValidationErrorKind::PropertyNames { .. }
        | ValidationErrorKind::Required { .. } => {}
        ValidationErrorKind::AnyOf { .. } => {}
        _ => fix(fixes, ptr.clone(), Fix::Drop),
    }
    match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let known: Vec<String> = schema_at(schema(), ptr)
                .and_then(|s| s.get("properties"))
                .and_then(Value::as_object)
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            for field in unexpected {
                let mut p = ptr.clone();
                p.push(field.clone());
                fix(fixes, p.clone(), Fix::Drop);
                let help = diag::did_you_mean(field, known.iter().map(String::as_str))
                    .map(|s| format!("did you mean `{s}`?"))
                    .or_else(|| {
                        (!known.is_empty()).then(|| format!("known fields: {}", known.join(", ")))
                    });
                ctx.err(
                    file,
                    p,
                    true,
                    "schema.unknown-field",
                    format!("unknown field `{field}`"),
                )
                .help = help;
            }
        }
        ValidationErrorKind::PropertyNames { error: inner }
            if ptr.last().map(String::as_str) == Some("set_rights") =>
        {
            fix(fixes, ptr.clone(), Fix::Drop);
            let area = short(inner.instance());
            let mut p = ptr.clone();
            p.push(inner.instance().as_str().unwrap_or_default().to_string());
            let (code, message) = match inner.kind() {
                ValidationErrorKind::MinLength { .. } => (
                    "schema.length",
                    "a set-rights area may not be empty".to_string(),
                ),
                ValidationErrorKind::MaxLength { limit } => (
                    "schema.length",
                    format!(
                        "set-rights area {area} is {} characters long; at most {limit} are allowed",
                        inner.instance().as_str().map_or(0, |s| s.chars().count())
                    ),
                ),
                _ => (
                    "schema.pattern",
                    format!(
                        "set-rights area {area} contains a control character (a newline, tab or escape)"
                    ),
                ),
            };
            ctx.err(file, p, true, code, message);
        }
        ValidationErrorKind::PropertyNames { error: inner } => {
            let name = inner
                .instance()
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| short(inner.instance()));
            let mut p = ptr.clone();
            p.push(name.clone());
            ctx.err(
                file,
                p,
                true,
                "name.invalid",
                format!("`{name}` is not a valid name"),
            )
            .help = Some(format!(
                "names are 1 to 64 characters: lowercase letters, digits, `.`, `_` and `-`, starting with a letter or digit ({NAME_PATTERN})"
            ));
        }
        ValidationErrorKind::AnyOf { context } => {
            // Option<T> is `anyOf [T, null]`: report T's errors, not the union.
            let branch = context.iter().find(|errs| {
                !errs.iter().all(|e| {
                    matches!(e.kind(), ValidationErrorKind::Type { .. })
                        && tokens(e.instance_path()) == *ptr
                }) || errs.len() > 1
            });
            match branch {
                Some(errs) if !errs.is_empty() => {
                    for e in errs {
                        report(e, file, &tokens(e.instance_path()), ctx, fixes);
                    }
                }
                _ => {
                    fix(fixes, ptr.clone(), Fix::Drop);
                    let expected = schema_at(schema(), ptr)
                        .and_then(|s| {
                            s.get("type")
                                .or_else(|| s.get("enum").map(|_| &Value::Null))
                        })
                        .map(|t| {
                            if t.is_null() {
                                "one of the allowed values".to_string()
                            } else {
                                t.to_string()
                            }
                        })
                        .unwrap_or_else(|| "another value".into());
                    ctx.err(
                        file,
                        ptr.clone(),
                        false,
                        "schema.type",
                        format!("expected {expected}, found {}", type_name(instance)),
                    );
                }
            }
        }
        ValidationErrorKind::Type { .. } if ptr.is_empty() => {
            let message = format!(
                "a config file's top level must be a map (of settings, templates, roles, groups, users, role_assignments), found {}",
                type_name(instance)
            );
            ctx.err(file, ptr.clone(), false, "schema.type", message);
        }
        ValidationErrorKind::Type { .. } => {
            let expected = schema_at(schema(), ptr)
                .and_then(|s| s.get("type"))
                .map(expected_type)
                .unwrap_or_else(|| "another type".into());
            ctx.err(
                file,
                ptr.clone(),
                false,
                "schema.type",
                format!(
                    "expected {expected}, found {} {}",
                    type_name(instance),
                    short(instance)
                ),
            );
        }
        ValidationErrorKind::Enum { options } => {
            let allowed: Vec<Value> = options.as_array().cloned().unwrap_or_default();
            not_one_of(&allowed, instance, file, ptr, ctx);
        }
        ValidationErrorKind::OneOfNotValid { .. } => {
            // Documented enums are `oneOf` of `const`s.
            let consts: Vec<Value> = schema_at(schema(), ptr)
                .and_then(|s| s.get("oneOf"))
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|b| b.get("const").cloned()).collect())
                .unwrap_or_default();
            if consts.is_empty() {
                ctx.err(
                    file,
                    ptr.clone(),
                    false,
                    "schema.invalid",
                    error.to_string(),
                );
            } else {
                not_one_of(&consts, instance, file, ptr, ctx);
            }
        }
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or("?");
            fix(fixes, ptr.clone(), Fix::Missing(name.to_string()));
            ctx.err(
                file,
                ptr.clone(),
                true,
                "schema.required",
                format!("missing required field `{name}`"),
            );
        }
        ValidationErrorKind::Pattern { .. }
            if ptr.len() >= 2 && ptr[ptr.len() - 2] == "previous_names" =>
        {
            ctx.err(
                file,
                ptr.clone(),
                false,
                "name.invalid",
                format!("previous name {} is not a valid name", short(instance)),
            )
            .help = Some(format!(
                "names are 1 to 64 characters: lowercase letters, digits, `.`, `_` and `-`, starting with a letter or digit ({NAME_PATTERN})"
            ));
        }
        ValidationErrorKind::MaxLength { limit } | ValidationErrorKind::MinLength { limit } => {
            let what = describe(ptr);
            let len = instance.as_str().map_or(0, |s| s.chars().count());
            let message = if len == 0 {
                format!("{what} may not be empty")
            } else if matches!(error.kind(), ValidationErrorKind::MaxLength { .. }) {
                format!("{what} is {len} characters long; at most {limit} are allowed")
            } else {
                format!("{what} is {len} characters long; at least {limit} are needed")
            };
            ctx.err(file, ptr.clone(), false, "schema.length", message);
        }
        ValidationErrorKind::MaxItems { limit } | ValidationErrorKind::MaxProperties { limit } => {
            let what = describe(ptr);
            let len = match &**instance {
                Value::Array(a) => a.len(),
                Value::Object(o) => o.len(),
                _ => 0,
            };
            ctx.err(
                file,
                ptr.clone(),
                false,
                "schema.length",
                format!("{what} has {len} entries; at most {limit} are allowed"),
            );
        }
        ValidationErrorKind::Pattern { pattern } if pattern.as_str() == NO_CONTROL_PATTERN => {
            ctx.err(
                file,
                ptr.clone(),
                false,
                "schema.pattern",
                format!(
                    "{} {} contains a control character (a newline, tab or escape)",
                    describe(ptr),
                    short(instance)
                ),
            );
        }
        ValidationErrorKind::Pattern { pattern } if pattern.as_str() == PERMISSION_PATTERN => {
            if instance.as_str() == Some("") {
                // Reported as empty (minLength).
                return;
            }
            ctx.err(
                file,
                ptr.clone(),
                false,
                "schema.pattern",
                format!(
                    "permission {} may hold only letters, digits, `.`, `_`, `:`, `/`, `*` and `-`, starting with a letter or digit",
                    short(instance)
                ),
            );
        }
        ValidationErrorKind::Pattern { pattern } => {
            let field = ptr.last().map(String::as_str).unwrap_or("value");
            let message = match field {
                "email" => format!(
                    "{} is not an email address (expected name@domain.tld)",
                    short(instance)
                ),
                "prefix" => format!(
                    "token prefix {} may hold at most 16 letters, digits, `_` and `-`",
                    short(instance)
                ),
                _ => format!(
                    "`{field}` {} does not match the pattern {pattern}",
                    short(instance)
                ),
            };
            ctx.err(file, ptr.clone(), false, "schema.pattern", message);
        }
        ValidationErrorKind::Minimum { limit }
        | ValidationErrorKind::ExclusiveMinimum { limit }
        | ValidationErrorKind::Maximum { limit }
        | ValidationErrorKind::ExclusiveMaximum { limit } => {
            let bound = if error.kind().keyword().contains("inimum") {
                "at least"
            } else {
                "at most"
            };
            let field = ptr.last().map(String::as_str).unwrap_or("value");
            let message = format!(
                "`{field}` must be {bound} {limit}, found {}",
                short(instance)
            );
            ctx.err(file, ptr.clone(), false, "schema.range", message);
        }
        _ => {
            ctx.err(
                file,
                ptr.clone(),
                false,
                "schema.invalid",
                error.to_string(),
            );
        }
    }
}

/// How a value is named in a message: `display_name`, or an entry of `permissions`.
fn describe(ptr: &Ptr) -> String {
    match ptr.as_slice() {
        [.., list, i] if i.parse::<usize>().is_ok() => {
            format!("entry #{} of `{list}`", i.parse::<usize>().unwrap_or(0) + 1)
        }
        [.., field] => format!("`{field}`"),
        [] => "the value".into(),
    }
}

fn expected_type(t: &Value) -> String {
    let one = |s: &str| match s {
        "string" => "a string",
        "integer" => "an integer",
        "number" => "a number",
        "boolean" => "a boolean (true or false)",
        "array" => "a list",
        "object" => "a map",
        "null" => "null",
        _ => "a value",
    };
    match t {
        Value::String(s) => one(s).to_string(),
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| *s != "null")
            .map(one)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "a value".into(),
    }
}

fn not_one_of(allowed: &[Value], instance: &Value, file: usize, ptr: &Ptr, ctx: &mut Ctx) {
    let shown: Vec<String> = allowed.iter().map(short).collect();
    let words: Vec<&str> = allowed.iter().filter_map(Value::as_str).collect();
    let help = instance
        .as_str()
        .and_then(|s| diag::did_you_mean(s, words.iter().copied()))
        .map(|s| format!("did you mean `{s}`?"));
    let message = format!("{} is not one of {}", short(instance), shown.join(", "));
    ctx.err(file, ptr.clone(), false, "schema.enum", message)
        .help = help;
}
