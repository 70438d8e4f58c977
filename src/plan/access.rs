//! Effective access: for each user, the roles (own ∪ groups' ∪ role
//! assignments'), permissions and set rights it has, and what a plan changes
//! about them, with the source of each grant. Pure.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::union_by_name;
use crate::model::{AccessLevel, AssignmentSpec, Desired, GroupSpec, RoleSpec, Subject, UserSpec};
use crate::store::Snapshot;

/// A role and where it comes from (`own`, `group.NAME`, `role_assignment.ID`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub role: String,
    pub via: Vec<String>,
}

/// A set-rights change for one area, with the HTTP verbs each level allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RightChange {
    pub area: String,
    pub before: Option<AccessLevel>,
    pub after: Option<AccessLevel>,
    pub verbs_gained: Vec<String>,
    pub verbs_lost: Vec<String>,
}

/// What a plan changes about one user's effective access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessChange {
    pub user: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles_gained: Vec<Grant>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles_lost: Vec<Grant>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions_gained: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions_lost: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set_rights: Vec<RightChange>,
}

impl AccessChange {
    /// Whether nothing is gained or lost (only the source of a grant moved).
    pub fn is_empty(&self) -> bool {
        self.roles_gained.is_empty()
            && self.roles_lost.is_empty()
            && self.permissions_gained.is_empty()
            && self.permissions_lost.is_empty()
            && self.set_rights.is_empty()
    }
}

/// One side (before or after) of the world, by reference.
struct World<'a> {
    roles: BTreeMap<&'a str, &'a RoleSpec>,
    groups: BTreeMap<&'a str, &'a GroupSpec>,
    /// Assignments by subject.
    by_subject: BTreeMap<&'a Subject, Vec<&'a AssignmentSpec>>,
}

/// A user's effective access: each role with where it comes from (`own`,
/// `group.NAME`, `role_assignment.ID`), the permissions of those roles and
/// the set rights. Empty for an inactive user.
#[derive(Debug, Default, PartialEq)]
pub struct Effective {
    pub roles: BTreeMap<String, BTreeSet<String>>,
    pub permissions: BTreeSet<String>,
    pub rights: BTreeMap<String, AccessLevel>,
}

/// Effective access of the desired state's users, for governance (policies,
/// `explain`, the access report): the same computation the plan's access
/// changes use.
pub struct AccessIndex<'a>(World<'a>);

impl<'a> AccessIndex<'a> {
    pub fn new(desired: &'a Desired) -> Self {
        AccessIndex(World::new(
            desired.roles.iter(),
            desired.groups.iter(),
            desired.assignments.values(),
        ))
    }

    /// The effective access of user `name` (empty when it is inactive).
    pub fn of(&self, name: &str, user: &UserSpec) -> Effective {
        self.0.effective(name, Some(user))
    }
}

impl<'a> World<'a> {
    fn new(
        roles: impl Iterator<Item = (&'a String, &'a RoleSpec)>,
        groups: impl Iterator<Item = (&'a String, &'a GroupSpec)>,
        assignments: impl Iterator<Item = &'a AssignmentSpec>,
    ) -> Self {
        let mut by_subject: BTreeMap<&Subject, Vec<&AssignmentSpec>> = BTreeMap::new();
        for a in assignments {
            by_subject.entry(&a.subject).or_default().push(a);
        }
        World {
            roles: roles.map(|(n, r)| (n.as_str(), r)).collect(),
            groups: groups.map(|(n, g)| (n.as_str(), g)).collect(),
            by_subject,
        }
    }

    fn effective(&self, name: &str, user: Option<&UserSpec>) -> Effective {
        let mut e = Effective::default();
        let Some(u) = user.filter(|u| u.active) else {
            return e;
        };
        let mut add = |role: &str, via: String| {
            e.roles.entry(role.to_string()).or_default().insert(via);
        };
        for r in &u.roles {
            add(r, "own".into());
        }
        for a in self
            .by_subject
            .get(&Subject::User(name.to_string()))
            .into_iter()
            .flatten()
        {
            add(&a.role, format!("role_assignment.{}", a.id()));
        }
        for g in &u.groups {
            if let Some(gs) = self.groups.get(g.as_str()) {
                for r in &gs.roles {
                    add(r, format!("group.{g}"));
                }
            }
            for a in self
                .by_subject
                .get(&Subject::Group(g.clone()))
                .into_iter()
                .flatten()
            {
                add(&a.role, format!("role_assignment.{}", a.id()));
            }
        }
        for role in e.roles.keys() {
            if let Some(r) = self.roles.get(role.as_str()) {
                e.permissions.extend(r.permissions.iter().cloned());
            }
        }
        e.rights = u.set_rights.clone();
        e
    }
}

fn verbs(level: Option<AccessLevel>) -> BTreeSet<&'static str> {
    level
        .map(|l| l.verbs().iter().copied().collect())
        .unwrap_or_default()
}

/// The effective-access changes between the store and the desired state.
pub fn changes(desired: &Desired, actual: &Snapshot) -> Vec<AccessChange> {
    let after = World::new(
        desired.roles.iter(),
        desired.groups.iter(),
        desired.assignments.values(),
    );
    let before = World::new(
        actual.roles.iter().map(|(n, r)| (n, &r.spec)),
        actual.groups.iter().map(|(n, r)| (n, &r.spec)),
        actual.assignments.values().map(|r| &r.spec),
    );
    let old_name: BTreeMap<&str, &str> = desired
        .renames
        .iter()
        .map(|(o, n)| (n.as_str(), o.as_str()))
        .collect();
    // When roles, groups and assignments are the same on both sides, a user
    // whose own access fields are unchanged has unchanged effective access:
    // skip building it (the common case of a plan with few changes).
    let same_world = same_specs(&desired.roles, &actual.roles)
        && same_specs(&desired.groups, &actual.groups)
        && same_specs(&desired.assignments, &actual.assignments);
    let mut out = Vec::new();
    // Every desired user and every managed stored user, in name order, with
    // both sides: one walk over the two sorted maps instead of a lookup per user.
    let managed = actual.users.iter().filter(|(_, r)| r.managed);
    for (name, d, r) in union_by_name(desired.users.iter(), managed) {
        let name = name.as_str();
        let renamed_from = if r.is_none() {
            old_name.get(name).copied()
        } else {
            None
        };
        if d.is_none() && desired.renames.contains_key(name) {
            continue; // the old name of a renamed user: shown under the new name
        }
        if same_world
            && let (Some(d), Some(r)) = (d, r)
            && same_access_fields(d, &r.spec)
        {
            continue;
        }
        let stored_name = match renamed_from {
            Some(old) if !actual.users.contains_key(name) => old,
            _ => name,
        };
        let b = before.effective(stored_name, actual.users.get(stored_name).map(|r| &r.spec));
        let a = after.effective(name, desired.users.get(name));
        if a == b {
            continue;
        }
        let grants = |from: &Effective, other: &Effective| -> Vec<Grant> {
            from.roles
                .iter()
                .filter(|(r, _)| !other.roles.contains_key(*r))
                .map(|(r, via)| Grant {
                    role: r.clone(),
                    via: via.iter().cloned().collect(),
                })
                .collect()
        };
        let mut areas: BTreeSet<&String> = a.rights.keys().collect();
        areas.extend(b.rights.keys());
        let set_rights = areas
            .into_iter()
            .filter(|k| a.rights.get(*k) != b.rights.get(*k))
            .map(|k| {
                let (vb, va) = (
                    verbs(b.rights.get(k).copied()),
                    verbs(a.rights.get(k).copied()),
                );
                RightChange {
                    area: k.clone(),
                    before: b.rights.get(k).copied(),
                    after: a.rights.get(k).copied(),
                    verbs_gained: va.difference(&vb).map(|s| s.to_string()).collect(),
                    verbs_lost: vb.difference(&va).map(|s| s.to_string()).collect(),
                }
            })
            .collect();
        let change = AccessChange {
            user: name.to_string(),
            roles_gained: grants(&a, &b),
            roles_lost: grants(&b, &a),
            permissions_gained: a.permissions.difference(&b.permissions).cloned().collect(),
            permissions_lost: b.permissions.difference(&a.permissions).cloned().collect(),
            set_rights,
        };
        if !change.is_empty() {
            out.push(change);
        }
    }
    out
}

/// Whether `desired` and the specs of `actual` hold the same names and values.
fn same_specs<T: PartialEq>(
    desired: &BTreeMap<String, T>,
    actual: &BTreeMap<String, crate::store::Record<T>>,
) -> bool {
    desired.len() == actual.len()
        && desired
            .iter()
            .zip(actual)
            .all(|((dn, d), (an, a))| dn == an && *d == a.spec)
}

/// Whether the fields [`World::effective`] reads from a user are equal.
fn same_access_fields(a: &UserSpec, b: &UserSpec) -> bool {
    a.active == b.active
        && a.roles == b.roles
        && a.groups == b.groups
        && a.set_rights == b.set_rights
}
