//! Time in planning: expiring access and secret age. Pure: `now` is a
//! parameter (the CLI reads the clock once, or takes `--now`).
//!
//! - A user whose `expires_at` has come is planned as inactive: deactivated,
//!   its secrets revoked, the step's reason `expired`.
//! - An active user whose secrets are older than its age limit
//!   (`credentials.max_age_days`, else `settings.max_secret_age_days`), counted
//!   from `generated_at` in the state, gets its secrets rotated, reason `age`.
//! - Every plan lists the users expiring, and the secrets falling due, within
//!   `settings.expiry_warning_days`.

use std::collections::BTreeSet;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::time::{DAY, days_between, format, parse};
use crate::model::{Authentication, Desired, Kind, UserSpec};
use crate::plan::{Action, Plan, PlanError, PlanOptions, Reason, Step, Summary};
use crate::secret::SecretKind;
use crate::store::Snapshot;

/// A user whose access ends within the warning window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expiring {
    pub user: String,
    pub expires_at: String,
    /// Whole days left (0: later today).
    pub days_left: i64,
}

/// A user whose secrets reach their age limit within the warning window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretDue {
    pub user: String,
    pub generated_at: String,
    pub max_age_days: u32,
    /// When they are due (RFC 3339).
    pub due_at: String,
    pub days_left: i64,
}

/// What a plan says about time: the moment it was made for and what is coming.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSchedule {
    /// The moment the plan was made for (RFC 3339): `--now`, or the clock.
    pub now: String,
    pub warning_days: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expiring: Vec<Expiring>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets_due: Vec<SecretDue>,
}

/// The secrets an active user asks for (as the planner counts them).
fn wanted(u: &UserSpec) -> Vec<SecretKind> {
    let mut v = Vec::new();
    if u.credentials.password && u.authentication == Authentication::Local {
        v.push(SecretKind::Password);
    }
    if u.credentials.token {
        v.push(SecretKind::Token);
    }
    v
}

/// The age limit of user `name`, in days.
pub fn max_age_days(desired: &Desired, name: &str) -> Option<u32> {
    desired
        .governance
        .get(name)
        .and_then(|g| g.max_secret_age_days)
        .or(desired.settings.max_secret_age_days)
}

/// Whether user `name`'s access has ended at `now`.
pub fn expired(desired: &Desired, name: &str, now: i64) -> bool {
    desired
        .governance
        .get(name)
        .and_then(|g| g.expires_at.as_ref())
        .is_some_and(|e| e.unix <= now)
}

fn recount(steps: &[Step], summary: &mut Summary) {
    *summary = Summary::of_steps(steps, summary.unmanaged, summary.drifted);
}

/// Make the plan that takes `actual` to `desired` at the moment `now`
/// (seconds since the Unix epoch): [`crate::plan::plan`] plus expiry and
/// secret age.
pub fn plan_at(
    desired: &Desired,
    actual: &Snapshot,
    options: PlanOptions,
    now: i64,
) -> Result<Plan, PlanError> {
    let ended: BTreeSet<&String> = desired
        .users
        .iter()
        .filter(|(n, u)| u.active && expired(desired, n, now))
        .map(|(n, _)| n)
        .collect();
    let mut plan = if ended.is_empty() {
        crate::plan::plan(desired, actual, options)?
    } else {
        // Planned as inactive: the planner deactivates them and revokes their secrets.
        let mut at = desired.clone();
        for n in &ended {
            if let Some(u) = at.users.get_mut(*n) {
                u.active = false;
            }
        }
        // Expiry is declared intent, not a config path gone wrong: it does
        // not count towards `max_removal_fraction` (checked below without it).
        let all = PlanOptions {
            allow_mass_removal: true,
        };
        crate::plan::plan(&at, actual, all)?
    };
    for s in &mut plan.steps {
        if s.kind == Kind::User && ended.contains(&s.name) {
            s.reason = Some(Reason::Expired);
        }
    }
    if !ended.is_empty() && !options.allow_mass_removal {
        let removed = plan
            .steps
            .iter()
            .filter(|s| s.kind == Kind::User && s.reason.is_none())
            .filter(|s| matches!(s.action, Action::Deactivate | Action::Delete))
            .count();
        let managed = actual.users.values().filter(|r| r.managed).count();
        let max = desired.settings.max_removal_fraction;
        if removed > 0 && managed > 0 && removed as f64 / managed as f64 > max {
            return Err(PlanError::MassRemoval {
                count: removed,
                managed,
                percent: removed as f64 / managed as f64 * 100.0,
                max,
            });
        }
    }

    // Secret age, for users that stay active.
    let warn = i64::from(desired.settings.expiry_warning_days) * DAY;
    let mut secrets_due = Vec::new();
    let mut rotations = Vec::new();
    for (name, spec) in &desired.users {
        if !spec.active || ended.contains(name) {
            continue;
        }
        let Some(days) = max_age_days(desired, name) else {
            continue;
        };
        let Some(r) = actual.users.get(name).filter(|r| r.managed) else {
            continue;
        };
        if r.meta.secrets.is_empty() {
            continue;
        }
        let Some(generated) = r.meta.secrets.generated_at.as_deref() else {
            continue;
        };
        let Ok(at) = parse(generated) else { continue };
        let due = at.saturating_add(i64::from(days) * DAY);
        if due <= now {
            rotations.push((name, spec));
        } else if due <= now.saturating_add(warn) {
            secrets_due.push(SecretDue {
                user: name.clone(),
                generated_at: generated.to_string(),
                max_age_days: days,
                due_at: format(due),
                days_left: days_between(now, due),
            });
        }
    }
    for (name, spec) in rotations {
        let kinds = wanted(spec);
        if kinds.is_empty() {
            continue;
        }
        match plan
            .steps
            .iter_mut()
            .find(|s| s.kind == Kind::User && &s.name == name)
        {
            Some(s) if matches!(s.action, Action::Deactivate | Action::Delete) => {}
            Some(s) => {
                for k in kinds {
                    if !s.generate.contains(&k) {
                        s.generate.push(k);
                    }
                }
                s.reason.get_or_insert(Reason::Age);
            }
            None => {
                let step = Step {
                    action: Action::Rotate,
                    address: format!("user.{name}"),
                    kind: Kind::User,
                    name: name.clone(),
                    changes: Vec::new(),
                    generate: kinds,
                    revoke: Vec::new(),
                    renamed_from: None,
                    target: serde_json::to_value(spec).ok(),
                    adopt: false,
                    reason: Some(Reason::Age),
                };
                let at = plan
                    .steps
                    .iter()
                    .position(|s| s.kind > Kind::User || (s.kind == Kind::User && s.name > *name))
                    .unwrap_or(plan.steps.len());
                plan.steps.insert(at, step);
            }
        }
    }
    recount(&plan.steps, &mut plan.summary);

    let expiring = desired
        .users
        .iter()
        .filter(|(n, u)| u.active && !ended.contains(n))
        .filter_map(|(n, _)| {
            let e = desired.governance.get(n)?.expires_at.as_ref()?;
            (e.unix <= now.saturating_add(warn)).then(|| Expiring {
                user: n.clone(),
                expires_at: e.text.clone(),
                days_left: days_between(now, e.unix),
            })
        })
        .collect();
    plan.schedule = Some(PlanSchedule {
        now: format(now),
        warning_days: desired.settings.expiry_warning_days,
        expiring,
        secrets_due,
    });
    Ok(plan)
}

fn days(n: i64) -> String {
    match n {
        0 => "today".into(),
        1 => "in 1 day".into(),
        n => format!("in {n} days"),
    }
}

/// The plan's time notes as text (empty when there is nothing to say).
pub fn text(plan: &Plan) -> String {
    let mut out = String::new();
    let Some(s) = &plan.schedule else {
        return out;
    };
    if !s.expiring.is_empty() {
        let _ = writeln!(
            out,
            "Access expiring within {} days (as of {}):",
            s.warning_days, s.now
        );
        for e in &s.expiring {
            let _ = writeln!(
                out,
                "  user.{}: expires_at {} ({})",
                e.user,
                e.expires_at,
                days(e.days_left)
            );
        }
        out.push('\n');
    }
    if !s.secrets_due.is_empty() {
        let _ = writeln!(
            out,
            "Secrets due for rotation within {} days (as of {}):",
            s.warning_days, s.now
        );
        for d in &s.secrets_due {
            let _ = writeln!(
                out,
                "  user.{}: generated {}, max age {} days, due {} ({})",
                d.user,
                d.generated_at,
                d.max_age_days,
                d.due_at,
                days(d.days_left)
            );
        }
        out.push('\n');
    }
    out
}

/// The plan's time notes as Markdown (empty when there is nothing to say).
pub fn markdown(plan: &Plan) -> String {
    let mut out = String::new();
    let Some(s) = &plan.schedule else {
        return out;
    };
    if !s.expiring.is_empty() {
        let _ = writeln!(
            out,
            "> [!IMPORTANT]\n> Access expiring within {} days (as of {}):",
            s.warning_days, s.now
        );
        for e in s.expiring.iter().take(50) {
            let _ = writeln!(
                out,
                "> - `user.{}`: expires_at {} ({})",
                e.user,
                e.expires_at,
                days(e.days_left)
            );
        }
        out.push('\n');
    }
    if !s.secrets_due.is_empty() {
        let _ = writeln!(
            out,
            "> [!IMPORTANT]\n> Secrets due for rotation within {} days (as of {}):",
            s.warning_days, s.now
        );
        for d in s.secrets_due.iter().take(50) {
            let _ = writeln!(
                out,
                "> - `user.{}`: max age {} days, due {} ({})",
                d.user,
                d.max_age_days,
                d.due_at,
                days(d.days_left)
            );
        }
        out.push('\n');
    }
    out
}

/// Parse `--now`: an RFC 3339 date or date-time.
pub fn parse_now(s: &str) -> Result<i64, String> {
    parse(s)
}
