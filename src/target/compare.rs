//! Tolerant comparison of generic attributes, as real servers return them:
//! null, `""`, absent, `[]` and `{}` are equal; lists are sets (order and
//! repeats ignored, objects keyed by their `value`); `email` and names are
//! compared case-insensitively; `active` may be a boolean, `"true"`/`"True"`
//! or 1/0.

use std::collections::BTreeSet;

use serde_json::Value;

use super::Attrs;

/// Attributes compared without regard to case.
const CASELESS: &[&str] = &["email", "user_name"];

/// Whether `v` counts as "nothing" (null, `""`, `[]`, `{}`).
pub fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.iter().all(is_empty),
        Value::Object(o) => o.values().all(is_empty),
        _ => false,
    }
}

/// A truthy reading of `active`-like values: `true`, `"true"` (any case), 1.
pub fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        Value::Number(n) => n.as_i64().map(|n| n != 0),
        _ => None,
    }
}

/// The canonical form of one value under attribute `name`.
pub fn canonical(name: &str, v: &Value) -> Value {
    if is_empty(v) {
        return Value::Null;
    }
    let caseless = CASELESS.contains(&name);
    match v {
        Value::String(s) if caseless => Value::String(s.to_lowercase()),
        Value::Array(items) => {
            let set: BTreeSet<String> = items
                .iter()
                .filter(|i| !is_empty(i))
                .map(|i| {
                    let i = match i {
                        Value::Object(o) => o.get("value").cloned().unwrap_or(i.clone()),
                        other => other.clone(),
                    };
                    match canonical(name, &i) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    }
                })
                .collect();
            Value::Array(set.into_iter().map(Value::String).collect())
        }
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(_, v)| !is_empty(v))
                .map(|(k, v)| (k.clone(), canonical(k, v)))
                .collect(),
        ),
        other if name == "active" => as_bool(other).map(Value::Bool).unwrap_or(other.clone()),
        other => other.clone(),
    }
}

/// Whether two values of attribute `name` are equal, tolerantly.
pub fn equal(name: &str, a: Option<&Value>, b: Option<&Value>) -> bool {
    let null = Value::Null;
    canonical(name, a.unwrap_or(&null)) == canonical(name, b.unwrap_or(&null))
}

/// The attributes (names, sorted) whose values differ between `want` and
/// `have`, over the names in `want` plus those in `have` that `want` sets to
/// nothing implicitly; names in `ignore` are skipped.
pub fn differing(want: &Attrs, have: &Attrs, ignore: &BTreeSet<String>) -> Vec<String> {
    want.keys()
        .filter(|k| !ignore.contains(*k))
        .filter(|k| !equal(k, want.get(*k), have.get(*k)))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(v: Value) -> Attrs {
        serde_json::from_value(v).expect("object")
    }

    #[test]
    fn nothing_in_every_form_is_equal() {
        for (a, b) in [
            (json!(null), json!("")),
            (json!([]), json!(null)),
            (json!({}), json!("")),
            (json!([""]), json!(null)),
        ] {
            assert!(equal("x", Some(&a), Some(&b)), "{a} vs {b}");
            assert!(equal("x", Some(&a), None), "{a} vs absent");
        }
        assert!(!equal("x", Some(&json!("a")), None));
    }

    #[test]
    fn lists_are_sets_keyed_by_value() {
        assert!(equal(
            "roles",
            Some(&json!(["b", "a", "a"])),
            Some(&json!([{"value": "a", "display": "A"}, {"value": "b", "type": "x"}]))
        ));
        assert!(!equal(
            "roles",
            Some(&json!(["a"])),
            Some(&json!(["a", "b"]))
        ));
    }

    #[test]
    fn emails_ignore_case_and_active_accepts_strings_and_numbers() {
        assert!(equal(
            "email",
            Some(&json!("Ops@Example.com")),
            Some(&json!("ops@example.com"))
        ));
        assert!(!equal(
            "display_name",
            Some(&json!("Ops")),
            Some(&json!("ops"))
        ));
        for t in [json!("True"), json!("true"), json!(1)] {
            assert!(equal("active", Some(&json!(true)), Some(&t)), "{t}");
        }
        assert!(equal("active", Some(&json!(false)), Some(&json!(0))));
        assert!(!equal("active", Some(&json!(false)), Some(&json!("true"))));
    }

    #[test]
    fn differing_names_only_what_differs_and_skips_ignored() {
        let want = attrs(json!({"display_name": "A", "email": "a@x", "active": true}));
        let have = attrs(json!({"display_name": "B", "email": "A@X", "active": "True"}));
        assert_eq!(
            differing(&want, &have, &BTreeSet::new()),
            vec!["display_name"]
        );
        let ignore = BTreeSet::from(["display_name".to_string()]);
        assert!(differing(&want, &have, &ignore).is_empty());
    }
}
