//! The committed JSON Schema (`schemas/roster.schema.json`) must equal the one
//! generated from the model types; every example file must validate against
//! the committed schema; and `README.md` must mention every
//! property the schema defines, so neither the schema nor the reference can
//! drift from the code.
//!
//! Read-only: never rewrites the schema (the failure message says how).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn committed_schema_text() -> String {
    let path = root().join("schemas/roster.schema.json");
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn committed_schema() -> Value {
    serde_json::from_str(&committed_schema_text()).expect("the committed schema is JSON")
}

#[test]
fn committed_schema_is_up_to_date() {
    let generated = roster::model::schema_text();
    let committed = committed_schema_text();
    if generated != committed {
        let diff = similar::TextDiff::from_lines(&committed, &generated)
            .unified_diff()
            .header("schemas/roster.schema.json (committed)", "generated")
            .to_string();
        panic!(
            "schemas/roster.schema.json is out of date with the model types.\n\
             Update it with:\n\n    cargo run -q -- schema > schemas/roster.schema.json\n\n{diff}"
        );
    }
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yaml_files(&p, out);
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            out.push(p);
        }
    }
}

#[test]
fn examples_validate_against_the_committed_schema() {
    let validator =
        jsonschema::validator_for(&committed_schema()).expect("the committed schema compiles");
    let mut files = Vec::new();
    yaml_files(&root().join("examples"), &mut files);
    // examples/ci holds CI templates, not roster configs (tests/tooling.rs checks them).
    files.retain(|f| !f.starts_with(root().join("examples/ci")));
    assert!(
        files.len() >= 9,
        "expected the example files, found {files:?}"
    );
    let mut problems = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(root()).expect("under the repo").display();
        let text = fs::read_to_string(f).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let value = match roster::load::yaml::parse(&text) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!(
                    "{rel}:{}:{}: {}",
                    e.pos.line, e.pos.column, e.message
                ));
                continue;
            }
        };
        for e in validator.iter_errors(&value) {
            problems.push(format!("{rel}: {} at {}", e, e.instance_path()));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every key of every `properties` object in the schema.
fn property_names(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = map.get("properties") {
                out.extend(props.keys().cloned());
            }
            for child in map.values() {
                property_names(child, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| property_names(i, out)),
        _ => {}
    }
}

#[test]
fn reference_documents_every_schema_property() {
    let path = root().join("README.md");
    let doc = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut names = BTreeSet::new();
    property_names(&roster::model::config_schema(), &mut names);
    assert!(names.len() > 20, "few properties found: {names:?}");
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !doc.contains(&format!("`{n}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md does not mention (as `name`) these schema properties: {missing:?}"
    );
}

#[test]
fn reference_documents_every_enum_value() {
    let path = root().join("README.md");
    let doc = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut values = BTreeSet::new();
    enum_values(&roster::model::config_schema(), &mut values);
    assert!(values.contains("manager-self-service"), "{values:?}");
    let missing: Vec<&String> = values
        .iter()
        .filter(|n| !doc.contains(&format!("`{n}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md does not mention these allowed values: {missing:?}"
    );
}

/// Every string an `enum` or `const` allows.
fn enum_values(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(s)) = map.get("const") {
                out.insert(s.clone());
            }
            if let Some(Value::Array(items)) = map.get("enum") {
                out.extend(items.iter().filter_map(Value::as_str).map(str::to_string));
            }
            for child in map.values() {
                enum_values(child, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| enum_values(i, out)),
        _ => {}
    }
}

/// Every diagnostic code (`"family.name"` string literals) used in `src/load`.
fn diagnostic_codes() -> BTreeSet<String> {
    let mut codes = BTreeSet::new();
    let dir = root().join("src/load");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    for f in files {
        let text = fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for literal in text.split('"').skip(1).step_by(2) {
            let is_code = literal.split_once('.').is_some_and(|(family, name)| {
                !family.is_empty()
                    && !name.is_empty()
                    && family.chars().all(|c| c.is_ascii_lowercase())
                    && name.chars().all(|c| c.is_ascii_lowercase() || c == '-')
            });
            if is_code {
                codes.insert(literal.to_string());
            }
        }
    }
    codes
}

#[test]
fn reference_lists_every_diagnostic_code() {
    let path = root().join("README.md");
    let doc = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let codes = diagnostic_codes();
    assert!(codes.contains("schema.unknown-field"), "{codes:?}");
    let missing: Vec<&String> = codes
        .iter()
        .filter(|c| !doc.contains(&format!("| `{c}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "the diagnostic code table in README.md lacks: {missing:?}"
    );
}
