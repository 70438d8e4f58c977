//! Checking a saved plan before it is shown or applied. A plan file is
//! reviewed through `roster show` (or its comment) and executed through
//! `roster apply --plan`; anyone who can edit the file in between must not be
//! able to make the two differ. Pure: the store-side check takes a snapshot.
//!
//! - [`check_saved`] (on every load): the secret policy is within the
//!   config schema's bounds; every step's `changes` are exactly what its
//!   `target` changes (a create lists every field of the target; an update's
//!   `after` values are the target's); the summary counts the steps.
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
