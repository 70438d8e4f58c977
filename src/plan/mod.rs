//! The planner: a pure function of (Desired, Actual) -> Plan.
//!
//! Pure: no I/O, no clock, no RNG. Everything apply needs is in the plan
//! (target specs, which secrets to generate, the policies to generate them
//! with), so a saved plan leaves no choice to execution time. Output order is
//! deterministic: dependencies first (roles, groups, users, role
//! assignments), removals after, in reverse.

pub mod access;
pub mod render;
pub mod verify;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{
    Argon2Params, Authentication, Desired, Kind, PasswordPolicy, Removal, TokenPolicy, UserSpec,
};
use crate::secret::SecretKind;
use crate::store::{Record, Snapshot, StoreInfo, Version, spec_digest};

pub use access::AccessChange;

/// The plan format version (saved plans and `--format json`).
pub const FORMAT_VERSION: u32 = 1;

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    Rotate,
    Reactivate,
    Deactivate,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Rotate => "rotate",
            Action::Reactivate => "reactivate",
            Action::Deactivate => "deactivate",
            Action::Delete => "delete",
        }
    }
}

/// One field's change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub action: Action,
    /// e.g. `user.qlearsite`, `role_assignment.payroll-reader@user.qlearsite`.
    pub address: String,
    pub kind: Kind,
    pub name: String,
    /// Field-level changes (empty for delete).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<FieldChange>,
    /// Secrets apply will generate for this user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generate: Vec<SecretKind>,
    /// Secret hashes apply will remove (revocation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoke: Vec<SecretKind>,
    /// The user's previous name, when this step renames it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renamed_from: Option<String>,
    /// The resource as it will be stored (absent for delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Value>,
    /// The resource was not managed by roster until now (adoption).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt: bool,
    /// Why a step the config does not ask for directly happens (expiry, secret age).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
}

/// Why a step happens beyond the config's fields (see `crate::policy::schedule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The user's `expires_at` has come.
    Expired,
    /// The user's secrets are older than their age limit.
    Age,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Expired => "expired",
            Reason::Age => "age",
        }
    }
}

/// A managed resource whose stored values differ from what roster last wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    pub address: String,
    pub message: String,
}

/// Counts per action.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub rotate: usize,
    pub reactivate: usize,
    pub deactivate: usize,
    pub delete: usize,
    /// Secrets apply will generate.
    pub secrets: usize,
    /// Resources in the store that roster does not manage (never touched).
    pub unmanaged: usize,
    pub drifted: usize,
}

impl Summary {
    pub fn changes(&self) -> usize {
        self.create + self.update + self.rotate + self.reactivate + self.deactivate + self.delete
    }

    /// The counts of `steps`, with the given unmanaged and drifted counts.
    pub fn of_steps(steps: &[Step], unmanaged: usize, drifted: usize) -> Summary {
        let mut summary = Summary {
            unmanaged,
            drifted,
            ..Summary::default()
        };
        for s in steps {
            match s.action {
                Action::Create => summary.create += 1,
                Action::Update => summary.update += 1,
                Action::Rotate => summary.rotate += 1,
                Action::Reactivate => summary.reactivate += 1,
                Action::Deactivate => summary.deactivate += 1,
                Action::Delete => summary.delete += 1,
            }
            summary.secrets += s.generate.len();
        }
        summary
    }

    /// Add the steps and drift of `targets` (their unmanaged objects are
    /// counted by the caller, like the store's).
    pub fn with_targets(
        mut self,
        targets: &BTreeMap<String, crate::target::plan::TargetPlan>,
    ) -> Summary {
        for t in targets.values() {
            for s in &t.steps {
                match s.action {
                    Action::Create => self.create += 1,
                    Action::Update => self.update += 1,
                    Action::Rotate => self.rotate += 1,
                    Action::Reactivate => self.reactivate += 1,
                    Action::Deactivate => self.deactivate += 1,
                    Action::Delete => self.delete += 1,
                }
                self.secrets += s.generate_secret.len();
            }
            self.drifted += t.drift.len();
        }
        self
    }
}

/// The policies apply generates and hashes secrets with (no secrets here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretPolicy {
    pub password: PasswordPolicy,
    pub token: TokenPolicy,
    pub argon2: Argon2Params,
}

/// A plan: everything apply will do, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: u32,
    /// The store the plan was made against (filled in by the caller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreInfo>,
    /// The store version the plan was made against.
    pub base: Version,
    /// sha256 of the config files the plan was made from.
    pub config_digest: String,
    pub summary: Summary,
    pub steps: Vec<Step>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<Drift>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access: Vec<AccessChange>,
    /// Unmanaged resources per kind.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unmanaged: BTreeMap<String, usize>,
    /// What the store cannot hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limitations: Vec<String>,
    /// Protected resources the config would deactivate or delete: left as
    /// they are (addresses). To remove one, first apply `protected: false`
    /// (with `active: false` in the same edit to deactivate a user).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protected: Vec<String>,
    pub secret_policy: SecretPolicy,
    /// The moment the plan was made for, and the expiries and secret ages
    /// coming within the warning window (see `crate::policy::schedule`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<crate::policy::schedule::PlanSchedule>,
    /// Per target: its steps, drift and what it holds unmanaged.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub targets: BTreeMap<String, crate::target::plan::TargetPlan>,
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        !self.steps.is_empty() || self.targets.values().any(|t| !t.steps.is_empty())
    }
}

/// Options that change what a plan may do.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanOptions {
    /// Allow deactivating/deleting more than `max_removal_fraction` of the managed users.
    pub allow_mass_removal: bool,
}

/// Why no plan could be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "refusing to deactivate or delete {count} of {managed} managed users ({percent:.0}%), more than max_removal_fraction {max}: if this is intended, pass --allow-mass-removal; if not, check that the config path is right"
    )]
    MassRemoval {
        count: usize,
        managed: usize,
        percent: f64,
        max: f64,
    },
}

fn to_map<T: Serialize>(spec: &T) -> serde_json::Map<String, Value> {
    match serde_json::to_value(spec) {
        Ok(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    }
}

/// Field-level differences between two specs (absent fields count as null).
pub fn diff_fields<T: Serialize>(before: Option<&T>, after: Option<&T>) -> Vec<FieldChange> {
    let b = before.map(to_map).unwrap_or_default();
    let a = after.map(to_map).unwrap_or_default();
    let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| b.get(*k) != a.get(*k))
        .map(|k| FieldChange {
            field: k.clone(),
            before: b.get(k).cloned(),
            after: a.get(k).cloned(),
        })
        .collect()
}

fn target<T: Serialize>(spec: &T) -> Option<Value> {
    serde_json::to_value(spec).ok()
}

/// The secrets a user asks for.
fn wanted_secrets(u: &UserSpec) -> Vec<SecretKind> {
    let mut v = Vec::new();
    if u.credentials.password && u.authentication == Authentication::Local {
        v.push(SecretKind::Password);
    }
    if u.credentials.token {
        v.push(SecretKind::Token);
    }
    v
}

/// Which hashes a stored user record holds.
fn held_secrets<T>(r: &Record<T>) -> Vec<SecretKind> {
    let mut v = Vec::new();
    if r.meta.secrets.password.is_some() {
        v.push(SecretKind::Password);
    }
    if r.meta.secrets.token.is_some() {
        v.push(SecretKind::Token);
    }
    v
}

struct Builder<'a> {
    actual: &'a Snapshot,
    steps: Vec<Step>,
    removals: Vec<Step>,
    drift: Vec<Drift>,
    protected: Vec<String>,
}

impl Builder<'_> {
    fn check_drift<T: Serialize>(&mut self, address: &str, r: &Record<T>) {
        if let Some(d) = &r.meta.applied_digest
            && r.managed
            && *d != spec_digest(&r.spec)
        {
            self.drift.push(Drift {
                address: address.to_string(),
                message: format!(
                    "changed outside roster since its last apply (serial {}); this plan restores the declared values",
                    r.meta.serial
                ),
            });
        }
    }

    /// Create/update/delete for kinds without activation (roles, groups, assignments).
    fn simple<T: Serialize + PartialEq>(
        &mut self,
        kind: Kind,
        desired: &BTreeMap<String, T>,
        actual: &BTreeMap<String, Record<T>>,
        protected: impl Fn(&T) -> bool,
    ) {
        for (name, spec) in desired {
            let address = format!("{}.{name}", kind.as_str());
            match actual.get(name) {
                None => self.steps.push(Step {
                    action: Action::Create,
                    address,
                    kind,
                    name: name.clone(),
                    changes: diff_fields(None, Some(spec)),
                    generate: vec![],
                    revoke: vec![],
                    renamed_from: None,
                    target: target(spec),
                    adopt: false,
                    reason: None,
                }),
                Some(r) => {
                    if &r.spec != spec || !r.managed {
                        self.check_drift(&address, r);
                        self.steps.push(Step {
                            action: Action::Update,
                            address,
                            kind,
                            name: name.clone(),
                            changes: diff_fields(Some(&r.spec), Some(spec)),
                            generate: vec![],
                            revoke: vec![],
                            renamed_from: None,
                            target: target(spec),
                            adopt: !r.managed,
                            reason: None,
                        });
                    }
                }
            }
        }
        for (name, r) in actual {
            if !r.managed || desired.contains_key(name) {
                continue;
            }
            let address = format!("{}.{name}", kind.as_str());
            if protected(&r.spec) {
                self.protected.push(address);
                continue;
            }
            self.removals.push(Step {
                action: Action::Delete,
                address,
                kind,
                name: name.clone(),
                changes: diff_fields(Some(&r.spec), None),
                generate: vec![],
                revoke: vec![],
                renamed_from: None,
                target: None,
                adopt: false,
                reason: None,
            });
        }
    }

    /// Whether group `g` exists after this plan (declared, or kept: unmanaged or protected).
    fn group_stays(&self, desired: &Desired, g: &str) -> bool {
        desired.groups.contains_key(g)
            || self
                .actual
                .groups
                .get(g)
                .is_some_and(|r| !r.managed || r.spec.protected)
    }

    /// Whether role `r` exists after this plan (declared, or unmanaged).
    fn role_stays(&self, desired: &Desired, r: &str) -> bool {
        desired.roles.contains_key(r) || self.actual.roles.get(r).is_some_and(|s| !s.managed)
    }

    /// Whether a user that the config no longer declares names a group or
    /// role that will not exist after this plan.
    fn dangles(&self, desired: &Desired, user: &crate::model::UserSpec) -> bool {
        user.groups.iter().any(|g| !self.group_stays(desired, g))
            || user.roles.iter().any(|r| !self.role_stays(desired, r))
    }

    /// Take those groups and roles out of the user.
    fn drop_dangling(&self, desired: &Desired, user: &mut crate::model::UserSpec) {
        user.groups.retain(|g| self.group_stays(desired, g));
        user.roles.retain(|r| self.role_stays(desired, r));
    }

    fn users(&mut self, desired: &Desired) -> usize {
        let actual = &self.actual.users;
        let mut removed = 0;
        // Sources of renames that will be consumed by an update.
        let mut renamed: BTreeMap<&str, &str> = BTreeMap::new();
        for (old, new) in &desired.renames {
            if actual.get(old).is_some_and(|r| r.managed) && !actual.contains_key(new) {
                renamed.insert(old, new);
            }
        }
        let rename_of: BTreeMap<&str, &str> = renamed.iter().map(|(o, n)| (*n, *o)).collect();
        // One walk over the two name-ordered maps: creates and updates go to
        // the steps and removals to the removals, each in name order.
        for (name, spec, stored) in union_by_name(desired.users.iter(), actual.iter()) {
            let Some(spec) = spec else {
                let Some(r) = stored else { continue };
                if !r.managed || renamed.contains_key(name.as_str()) {
                    continue;
                }
                let address = format!("user.{name}");
                let deleting = desired.settings.removal == Removal::Delete;
                // A kept (deactivated) user must not point at groups and roles
                // this plan deletes: the store stays consistent and `export`
                // writes a config that validates.
                if !deleting && !r.spec.active {
                    if self.dangles(desired, &r.spec) {
                        let mut after = r.spec.clone();
                        self.drop_dangling(desired, &mut after);
                        self.removals.push(Step {
                            action: Action::Update,
                            address,
                            kind: Kind::User,
                            name: name.clone(),
                            changes: diff_fields(Some(&r.spec), Some(&after)),
                            generate: vec![],
                            revoke: vec![],
                            renamed_from: None,
                            target: target(&after),
                            reason: None,
                            adopt: false,
                        });
                    }
                    continue; // already deactivated
                }
                if r.spec.protected {
                    self.protected.push(address);
                    continue;
                }
                removed += 1;
                let step = if deleting {
                    Step {
                        action: Action::Delete,
                        address,
                        kind: Kind::User,
                        name: name.clone(),
                        changes: diff_fields(Some(&r.spec), None),
                        generate: vec![],
                        revoke: held_secrets(r),
                        renamed_from: None,
                        target: None,
                        adopt: false,
                        reason: None,
                    }
                } else {
                    let mut after = r.spec.clone();
                    after.active = false;
                    self.drop_dangling(desired, &mut after);
                    Step {
                        action: Action::Deactivate,
                        address,
                        kind: Kind::User,
                        name: name.clone(),
                        changes: diff_fields(Some(&r.spec), Some(&after)),
                        generate: vec![],
                        revoke: held_secrets(r),
                        renamed_from: None,
                        target: target(&after),
                        adopt: false,
                        reason: None,
                    }
                };
                self.removals.push(step);
                continue;
            };
            // Most users are unchanged: their address is made only when used.
            let address = || format!("user.{name}");
            let from = rename_of.get(name.as_str()).copied();
            let current = stored.or_else(|| from.and_then(|o| actual.get(o)));
            let Some(r) = current else {
                self.steps.push(Step {
                    action: Action::Create,
                    address: address(),
                    kind: Kind::User,
                    name: name.clone(),
                    changes: diff_fields(None, Some(spec)),
                    generate: if spec.active {
                        wanted_secrets(spec)
                    } else {
                        vec![]
                    },
                    revoke: vec![],
                    renamed_from: None,
                    target: target(spec),
                    adopt: false,
                    reason: None,
                });
                continue;
            };
            let was = &r.spec;
            // Drift matters only where this plan changes something: a record
            // edited outside roster to exactly the declared values needs no step.
            if was != spec {
                self.check_drift(&address(), r);
            }
            let held = held_secrets(r);
            let wanted = wanted_secrets(spec);
            let (action, generate, revoke) = if spec.active && !was.active {
                (Action::Reactivate, wanted.clone(), held.clone())
            } else if !spec.active {
                // `protected: false` with `active: false` in one edit
                // deactivates: only a user still declared protected is kept.
                if was.active && spec.protected {
                    self.protected.push(address());
                    continue;
                }
                (
                    if was.active {
                        Action::Deactivate
                    } else {
                        Action::Update
                    },
                    vec![],
                    held.clone(),
                )
            } else {
                let rotated = spec.credentials.rotation > was.credentials.rotation;
                let generate: Vec<SecretKind> = wanted
                    .iter()
                    .copied()
                    .filter(|k| rotated || !held.contains(k))
                    .collect();
                let revoke: Vec<SecretKind> = held
                    .iter()
                    .copied()
                    .filter(|k| !wanted.contains(k))
                    .collect();
                let only_rotation = rotated && {
                    let mut w = was.clone();
                    w.credentials.rotation = spec.credentials.rotation;
                    w == *spec
                };
                let action = if rotated && only_rotation && from.is_none() {
                    Action::Rotate
                } else {
                    Action::Update
                };
                (action, generate, revoke)
            };
            let revoke: Vec<SecretKind> = revoke.into_iter().filter(|k| held.contains(k)).collect();
            let renamed_from = if actual.contains_key(name) {
                None
            } else {
                from.map(str::to_string)
            };
            // Most users are unchanged: compare the specs before serializing them.
            let mut changes = if was == spec {
                Vec::new()
            } else {
                diff_fields(Some(was), Some(spec))
            };
            if let Some(old) = &renamed_from {
                changes.insert(
                    0,
                    FieldChange {
                        field: "name".into(),
                        before: Some(old.clone().into()),
                        after: Some(name.clone().into()),
                    },
                );
            }
            if changes.is_empty() && generate.is_empty() && revoke.is_empty() && r.managed {
                continue;
            }
            if action == Action::Deactivate {
                removed += 1;
            }
            self.steps.push(Step {
                action,
                address: address(),
                kind: Kind::User,
                name: name.clone(),
                changes,
                generate,
                revoke,
                renamed_from,
                target: target(spec),
                adopt: !r.managed,
                reason: None,
            });
        }
        removed
    }
}

/// The names of two name-ordered sequences merged, each with its entry on
/// either side (at least one is `Some`).
pub(crate) fn union_by_name<'a, A: 'a, B: 'a>(
    left: impl Iterator<Item = (&'a String, &'a A)>,
    right: impl Iterator<Item = (&'a String, &'a B)>,
) -> impl Iterator<Item = (&'a String, Option<&'a A>, Option<&'a B>)> {
    let mut left = left.peekable();
    let mut right = right.peekable();
    std::iter::from_fn(move || match (left.peek(), right.peek()) {
        (None, None) => None,
        (Some(_), None) => left.next().map(|(n, a)| (n, Some(a), None)),
        (None, Some(_)) => right.next().map(|(n, b)| (n, None, Some(b))),
        (Some((ln, _)), Some((rn, _))) => match ln.cmp(rn) {
            std::cmp::Ordering::Less => left.next().map(|(n, a)| (n, Some(a), None)),
            std::cmp::Ordering::Greater => right.next().map(|(n, b)| (n, None, Some(b))),
            std::cmp::Ordering::Equal => {
                let (n, a) = left.next()?;
                let (_, b) = right.next()?;
                Some((n, Some(a), Some(b)))
            }
        },
    })
}

/// Make the plan that takes `actual` to `desired`.
pub fn plan(desired: &Desired, actual: &Snapshot, options: PlanOptions) -> Result<Plan, PlanError> {
    let mut b = Builder {
        actual,
        steps: Vec::new(),
        removals: Vec::new(),
        drift: Vec::new(),
        protected: Vec::new(),
    };
    b.simple(Kind::Role, &desired.roles, &actual.roles, |_| false);
    b.simple(Kind::Group, &desired.groups, &actual.groups, |g| {
        g.protected
    });
    let removed_users = b.users(desired);
    b.simple(
        Kind::RoleAssignment,
        &desired.assignments,
        &actual.assignments,
        |_| false,
    );
    // Protected resources the config would remove are left as they are
    // (reported in the plan); everything else is planned.
    let managed_users = actual.users.values().filter(|r| r.managed).count();
    let max = desired.settings.max_removal_fraction;
    if removed_users > 0 && !options.allow_mass_removal && managed_users > 0 {
        let fraction = removed_users as f64 / managed_users as f64;
        if fraction > max {
            return Err(PlanError::MassRemoval {
                count: removed_users,
                managed: managed_users,
                percent: fraction * 100.0,
                max,
            });
        }
    }
    // Removals run after everything else, dependants first.
    b.removals.sort_by_key(|s| std::cmp::Reverse(s.kind));
    let mut steps = b.steps;
    steps.sort_by_key(|s| s.kind);
    steps.extend(b.removals);

    let mut unmanaged = BTreeMap::new();
    let counts = [
        (
            Kind::Role,
            actual.roles.values().filter(|r| !r.managed).count(),
        ),
        (
            Kind::Group,
            actual.groups.values().filter(|r| !r.managed).count(),
        ),
        (
            Kind::User,
            actual.users.values().filter(|r| !r.managed).count(),
        ),
        (
            Kind::RoleAssignment,
            actual.assignments.values().filter(|r| !r.managed).count(),
        ),
    ];
    for (kind, n) in counts {
        // Adopted resources are no longer unmanaged.
        let adopted = steps.iter().filter(|s| s.kind == kind && s.adopt).count();
        if n > adopted {
            unmanaged.insert(kind.as_str().to_string(), n - adopted);
        }
    }
    let summary = Summary::of_steps(&steps, unmanaged.values().sum(), b.drift.len());
    let access = access::changes(desired, actual);
    tracing::debug!(steps = steps.len(), drift = b.drift.len(), "planned");
    Ok(Plan {
        format_version: FORMAT_VERSION,
        store: None,
        base: actual.version_or_new(),
        config_digest: desired.digest.clone(),
        summary,
        steps,
        drift: b.drift,
        access,
        unmanaged,
        limitations: actual.limitations.clone(),
        protected: b.protected,
        secret_policy: SecretPolicy {
            password: desired.settings.password.clone(),
            token: desired.settings.token.clone(),
            argon2: desired.settings.argon2,
        },
        schedule: None,
        targets: BTreeMap::new(),
    })
}

/// A digest of the plan's content (sha256 of its JSON), for the audit trail.
pub fn plan_digest(plan: &Plan) -> String {
    spec_digest(plan)
}
