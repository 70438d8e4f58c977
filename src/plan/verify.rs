//! Checking a saved plan before it is shown or applied. A plan file is
//! reviewed through `roster show` (or its comment) and executed through
//! `roster apply --plan`; anyone who can edit the file in between must not be
//! able to make the two differ. Pure: the store-side check takes a snapshot.
//!
//! - [`check_saved`] (on every load): the secret policy is within the
//!   config schema's bounds; every step's `changes` are exactly what its
//!   `target` changes (a create lists every field of the target; an update's
//!   `after` values are the target's); the summary counts the steps.
//!   A target step's `changes` show every attribute it writes that differs
//!   from what the target held, with the value written.
//! - [`check_against`] (at apply, under the lock, with the store at the
//!   plan's base): every step's `changes` equal the difference between the
//!   stored resource and the `target` apply will write.
//! - [`file_digest`]: `sha256:HEX` of the plan file's bytes, printed by
//!   `plan --out` and `show`, and required by `apply --expect-digest`.

use serde_json::Value;

use super::{Action, FieldChange, Plan, Step, Summary, diff_fields};
use crate::model::{Argon2Params, Kind, PasswordPolicy, TokenPolicy};
use crate::store::Snapshot;

/// `sha256:HEX` of a saved plan's bytes: pins the whole plan body.
pub fn file_digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `value` against the JSON Schema that schemars generates for `T` (the
/// same bounds a config file is held to).
fn within_schema<T: schemars::JsonSchema + serde::Serialize>(
    what: &str,
    value: &T,
) -> Result<(), String> {
    let schema = serde_json::to_value(schemars::schema_for!(T)).map_err(|e| e.to_string())?;
    let validator = jsonschema::draft202012::new(&schema).map_err(|e| e.to_string())?;
    let instance = serde_json::to_value(value).map_err(|e| e.to_string())?;
    match validator.iter_errors(&instance).next() {
        None => Ok(()),
        Some(e) => Err(format!("secret_policy.{what}{}: {e}", e.instance_path())),
    }
}

fn field_of(target: &Value, field: &str) -> Option<Value> {
    target.get(field).cloned()
}

/// The step's own consistency (no store needed).
fn check_step(step: &Step) -> Result<(), String> {
    match (step.action, &step.target) {
        (Action::Delete, Some(_)) => return Err("a delete has a target".into()),
        (Action::Delete, None) => {
            if step.changes.iter().any(|c| c.after.is_some()) {
                return Err("a delete's changes have values after it".into());
            }
            return Ok(());
        }
        (_, None) => return Err("no target".into()),
        (Action::Create, Some(target)) => {
            let expected = diff_fields(None, Some(target));
            if step.changes != expected {
                return Err("its changes are not the fields of its target".into());
            }
            return Ok(());
        }
        _ => {}
    }
    let target = step.target.as_ref().expect("checked above");
    for c in &step.changes {
        if c.before == c.after {
            return Err(format!("field {}: a change that changes nothing", c.field));
        }
        let after = if c.field == "name" && step.renamed_from.is_some() {
            Some(Value::String(step.name.clone()))
        } else {
            field_of(target, &c.field)
        };
        if c.after != after {
            return Err(format!(
                "field {}: the change shown differs from the target written",
                c.field
            ));
        }
    }
    Ok(())
}

/// A target step's own consistency: what it writes is what it shows. Every
/// attribute a create writes is listed with its value; an update's `after`
/// values are the attributes it writes, and every attribute it writes that
/// differs from what the target held is listed (roster's bookkeeping of
/// `credentials` aside, which drives the secret steps shown instead).
pub(crate) fn check_target_step(step: &crate::target::plan::TargetStep) -> Result<(), String> {
    use crate::target::compare;
    let Some(attrs) = &step.attrs else {
        return match step.action {
            Action::Delete if step.changes.iter().all(|c| c.after.is_none()) => Ok(()),
            Action::Delete => Err("a delete's changes have values after it".into()),
            _ => Err("no attributes to write".into()),
        };
    };
    if step.action == Action::Delete {
        return Err("a delete has attributes to write".into());
    }
    for c in &step.changes {
        if !compare::equal(&c.field, c.after.as_ref(), attrs.get(&c.field)) {
            return Err(format!(
                "attribute {}: the change shown differs from what is written",
                c.field
            ));
        }
    }
    let shown = |k: &str| step.changes.iter().any(|c| c.field == k);
    let empty = crate::target::Attrs::new();
    let before = match step.action {
        Action::Create => &empty,
        _ => step.current.as_ref().unwrap_or(&empty),
    };
    for (k, v) in attrs {
        if k == "credentials" || shown(k) {
            continue;
        }
        if !compare::equal(k, Some(v), before.get(k)) {
            return Err(format!("attribute {k} is written but not shown"));
        }
    }
    Ok(())
}

fn summary_of(plan: &Plan) -> Summary {
    Summary::of_steps(&plan.steps, plan.summary.unmanaged, plan.drift.len())
        .with_targets(&plan.targets)
}

/// Refuse a saved plan whose parts disagree (see the module docs).
pub fn check_saved(plan: &Plan) -> Result<(), String> {
    within_schema::<PasswordPolicy>("password", &plan.secret_policy.password)?;
    within_schema::<TokenPolicy>("token", &plan.secret_policy.token)?;
    within_schema::<Argon2Params>("argon2", &plan.secret_policy.argon2)?;
    for step in &plan.steps {
        check_step(step).map_err(|e| format!("step {}: {e}", step.address))?;
    }
    for t in plan.targets.values() {
        for step in &t.steps {
            check_target_step(step).map_err(|e| format!("step {}: {e}", step.address))?;
        }
    }
    if summary_of(plan) != plan.summary {
        return Err("the summary does not count the plan's steps".into());
    }
    Ok(())
}

/// The stored spec a step starts from, as JSON.
fn stored(snapshot: &Snapshot, step: &Step) -> Option<Value> {
    let name = step.name.as_str();
    let found = match step.kind {
        Kind::Role => snapshot
            .roles
            .get(name)
            .map(|r| serde_json::to_value(&r.spec)),
        Kind::Group => snapshot
            .groups
            .get(name)
            .map(|r| serde_json::to_value(&r.spec)),
        Kind::RoleAssignment => snapshot
            .assignments
            .get(name)
            .map(|r| serde_json::to_value(&r.spec)),
        Kind::User => snapshot
            .users
            .get(name)
            .or_else(|| {
                step.renamed_from
                    .as_ref()
                    .and_then(|old| snapshot.users.get(old))
            })
            .map(|r| serde_json::to_value(&r.spec)),
    };
    found.and_then(Result::ok)
}

/// Refuse a plan whose shown changes are not the difference between what
/// the store holds (at the plan's base) and what apply will write.
pub fn check_against(plan: &Plan, snapshot: &Snapshot) -> Result<(), (String, String)> {
    for step in &plan.steps {
        let before = stored(snapshot, step);
        let mut expected: Vec<FieldChange> = diff_fields(before.as_ref(), step.target.as_ref());
        if let Some(old) = &step.renamed_from {
            expected.insert(
                0,
                FieldChange {
                    field: "name".into(),
                    before: Some(old.clone().into()),
                    after: Some(step.name.clone().into()),
                },
            );
        }
        if expected != step.changes {
            return Err((
                step.address.clone(),
                "its changes are not the difference between the store and what it writes \
                 (the plan file was edited?)"
                    .into(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod target_step_tests {
    use super::*;
    use crate::target::ObjKind;
    use crate::target::plan::TargetStep;

    fn step(action: Action, attrs: Value, current: Value, changes: Vec<FieldChange>) -> TargetStep {
        TargetStep {
            action,
            address: "user.svc@slack".into(),
            kind: ObjKind::User,
            key: "svc".into(),
            remote_ref: Some("id1".into()),
            renamed_from: None,
            changes,
            attrs: serde_json::from_value(attrs).ok(),
            current: serde_json::from_value(current).ok(),
            set_secret: Vec::new(),
            generate_secret: Vec::new(),
            revoke_secret: Vec::new(),
            reason: None,
        }
    }

    fn change(field: &str, before: Option<Value>, after: Option<Value>) -> FieldChange {
        FieldChange {
            field: field.into(),
            before,
            after,
        }
    }

    #[test]
    fn a_target_step_may_write_only_what_it_shows() {
        let shown = step(
            Action::Update,
            serde_json::json!({"display_name": "New", "active": true, "credentials": ["password"]}),
            serde_json::json!({"display_name": "Old", "active": true}),
            vec![change(
                "display_name",
                Some("Old".into()),
                Some("New".into()),
            )],
        );
        assert_eq!(check_target_step(&shown), Ok(()));
        // An attribute written but not listed (hidden from reviewers).
        let hidden = step(
            Action::Update,
            serde_json::json!({"display_name": "New", "active": false}),
            serde_json::json!({"display_name": "Old", "active": true}),
            vec![change(
                "display_name",
                Some("Old".into()),
                Some("New".into()),
            )],
        );
        assert!(check_target_step(&hidden).unwrap_err().contains("active"));
        // A change shown with another value than the one written.
        let forged = step(
            Action::Update,
            serde_json::json!({"display_name": "Evil"}),
            serde_json::json!({"display_name": "Old"}),
            vec![change(
                "display_name",
                Some("Old".into()),
                Some("New".into()),
            )],
        );
        assert!(check_target_step(&forged).unwrap_err().contains("differs"));
        // A create lists every attribute it writes.
        let create = step(
            Action::Create,
            serde_json::json!({"display_name": "New", "email": "x@acme.example"}),
            Value::Null,
            vec![change("display_name", None, Some("New".into()))],
        );
        assert!(check_target_step(&create).unwrap_err().contains("email"));
    }
}
