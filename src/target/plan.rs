//! Planning per target (pure: no I/O, no clock). Inputs: what the target
//! should hold (the projection), what roster recorded of it in the state, and
//! — unless planning offline — what the target holds now (one listing).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::project::{ObjId, address};
use super::{
    Attrs, Capabilities, Membership, ObjKind, RemoteObject, SecretMode, TargetState, compare,
    parse_record_id, record_id,
};
use crate::model::Removal;
use crate::plan::{Action, Drift, FieldChange};
use crate::secret::SecretKind;

/// One step on a target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetStep {
    pub action: Action,
    /// `user.NAME@TARGET`, `group.NAME@TARGET`.
    pub address: String,
    pub kind: ObjKind,
    pub key: String,
    /// The target's id of the object (absent for a create).
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub remote_ref: Option<String>,
    /// The object's key before this step renames it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renamed_from: Option<String>,
    /// Attribute changes (from what the target holds, or roster recorded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<FieldChange>,
    /// The attributes to ensure (absent for a delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attrs: Option<Attrs>,
    /// What the target held when planned (PATCH bases on it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<Attrs>,
    /// Secrets roster generates (in the user's state-store step) and sends here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set_secret: Vec<SecretKind>,
    /// Secrets the target generates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generate_secret: Vec<SecretKind>,
    /// Secrets made unusable here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoke_secret: Vec<SecretKind>,
    /// Why the step happens when the config did not change (`drift`,
    /// `missing`, `pending secret`, `rotation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl TargetStep {
    /// A step on object `kind`/`key` of target `target`, nothing else set.
    fn new(action: Action, kind: ObjKind, key: &str, target: &str) -> TargetStep {
        TargetStep {
            action,
            address: address(kind, key, target),
            kind,
            key: key.to_string(),
            remote_ref: None,
            renamed_from: None,
            changes: Vec::new(),
            attrs: None,
            current: None,
            set_secret: Vec::new(),
            generate_secret: Vec::new(),
            revoke_secret: Vec::new(),
            reason: None,
        }
    }
}

/// The plan for one target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetPlan {
    /// `scim` or `connector`.
    pub kind: String,
    /// The target's declaration (no secrets: a token is named by its
    /// variable), so that a saved plan can be applied without the config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<crate::model::TargetConfig>,
    /// Whether the target was read (false: planned from the state alone, `--refresh=false`).
    pub refreshed: bool,
    /// sha256 of the managed objects the target held when planned; a saved
    /// plan is stale when it changed. Absent when not refreshed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<TargetStep>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<Drift>,
    /// Users roster manages on the target (the removal guard's base).
    #[serde(default)]
    pub managed_users: usize,
    /// Objects the target holds that roster does not manage, per kind.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unmanaged: BTreeMap<String, usize>,
    /// What this target cannot hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limitations: Vec<String>,
    /// Objects the config names that exist on the target unmanaged: left
    /// alone until `roster import` adopts them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
    /// Protected users the config would deactivate or delete here: left as they are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protected: Vec<String>,
    /// Users that need a fresh roster-generated secret for this target (a
    /// create or reactivation here) that the state-store plan does not
    /// generate: the caller adds it and plans again.
    #[serde(skip)]
    pub needs: BTreeMap<String, BTreeSet<SecretKind>>,
}

/// Everything the planner of one target needs.
pub struct Input<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub caps: &'a Capabilities,
    /// The projection.
    pub want: &'a BTreeMap<ObjId, Attrs>,
    /// What roster recorded.
    pub records: &'a TargetState,
    /// What the target holds now; `None` plans from the state alone.
    pub observed: Option<&'a [RemoteObject]>,
    pub observed_groups: Option<&'a [RemoteObject]>,
    /// Old user name -> new (previous_names).
    pub renames: &'a BTreeMap<String, String>,
    /// Users whose roster-generated secrets the state-store plan generates.
    pub generated: &'a BTreeMap<String, Vec<SecretKind>>,
    /// Users whose rotation counter changed (target-generated secrets rotate too).
    pub rotated: &'a BTreeSet<String>,
    /// Protected users (from the state and the config).
    pub protected: &'a BTreeSet<String>,
    pub removal: Removal,
}

/// The attributes an ensure of a deactivated user carries: what was recorded,
/// inactive, with no access.
fn deactivated(attrs: &Attrs) -> Attrs {
    let mut a = attrs.clone();
    a.insert("active".into(), Value::Bool(false));
    for k in [
        "groups",
        "roles",
        "permissions",
        "set_rights",
        "credentials",
    ] {
        a.remove(k);
    }
    a
}

fn secret_kinds(attrs: &Attrs) -> Vec<SecretKind> {
    let mut v = Vec::new();
    if let Some(Value::Array(items)) = attrs.get("credentials") {
        for i in items {
            match i.as_str() {
                Some("password") => v.push(SecretKind::Password),
                Some("token") => v.push(SecretKind::Token),
                _ => {}
            }
        }
    }
    v
}

/// Whether attribute `name` is roster's own bookkeeping rather than something
/// compared with the target: `credentials` (which secret kinds a user holds)
/// drives the secret steps; a target is sent it, but what it reports back
/// (many cannot) is never compared, and roster records what it sent.
pub fn is_internal(_caps: &Capabilities, name: &str) -> bool {
    name == "credentials"
}

fn is_active(attrs: &Attrs) -> bool {
    attrs
        .get("active")
        .and_then(compare::as_bool)
        .unwrap_or(true)
}

/// sha256 over the managed objects a listing holds (ref and canonical attributes).
pub fn fingerprint(records: &TargetState, observed: &[&RemoteObject]) -> String {
    let refs: BTreeSet<&str> = records
        .values()
        .filter_map(|r| r.remote_ref.as_deref())
        .collect();
    let mut managed: Vec<(&str, String)> = observed
        .iter()
        .filter(|o| refs.contains(o.remote_ref.as_str()))
        .map(|o| {
            let canon: BTreeMap<&String, Value> = o
                .attrs
                .iter()
                .map(|(k, v)| (k, compare::canonical(k, v)))
                .collect();
            (
                o.remote_ref.as_str(),
                format!(
                    "{}\u{0}{}",
                    o.key,
                    serde_json::to_string(&canon).unwrap_or_default()
                ),
            )
        })
        .collect();
    managed.sort();
    let mut h = Sha256::new();
    for (r, body) in managed {
        h.update(r.as_bytes());
        h.update([0]);
        h.update(body.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

fn field_changes(names: &[String], before: &Attrs, after: &Attrs) -> Vec<FieldChange> {
    names
        .iter()
        .map(|n| FieldChange {
            field: n.clone(),
            before: before.get(n).filter(|v| !compare::is_empty(v)).cloned(),
            after: after.get(n).filter(|v| !compare::is_empty(v)).cloned(),
        })
        .collect()
}

/// Make `step` the create of `want`: every attribute shown (roster's own
/// bookkeeping aside) and the user's secrets in the target's mode.
fn make_create(
    step: &mut TargetStep,
    want: &Attrs,
    input: &Input<'_>,
    wanted: &[SecretKind],
    needs: &mut BTreeMap<String, BTreeSet<SecretKind>>,
) {
    step.action = Action::Create;
    let shown: Vec<String> = want
        .keys()
        .filter(|k| !is_internal(input.caps, k))
        .cloned()
        .collect();
    step.changes = field_changes(&shown, &Attrs::new(), want);
    let generated = input.generated.get(&step.key);
    for k in wanted {
        match input.caps.secrets.get(k).copied() {
            Some(SecretMode::RosterGenerated) => {
                if generated.is_some_and(|g| g.contains(k)) {
                    step.set_secret.push(*k);
                } else {
                    needs.entry(step.key.clone()).or_default().insert(*k);
                }
            }
            Some(SecretMode::TargetGenerated) => step.generate_secret.push(*k),
            _ => {}
        }
    }
}

/// Plan one target.
pub fn plan(input: &Input<'_>) -> TargetPlan {
    let name = input.name;
    let mut out = TargetPlan {
        kind: input.kind.to_string(),
        refreshed: input.observed.is_some(),
        limitations: input.caps.limitations.clone(),
        ..TargetPlan::default()
    };
    // The listing, by ref and by key.
    let listing: Option<Vec<&RemoteObject>> = input.observed.map(|users| {
        users
            .iter()
            .chain(input.observed_groups.unwrap_or_default())
            .collect()
    });
    let mut by_ref: BTreeMap<(ObjKind, &str), &RemoteObject> = BTreeMap::new();
    let mut by_key: BTreeMap<(ObjKind, String), &RemoteObject> = BTreeMap::new();
    if let Some(users) = input.observed {
        for o in users {
            by_ref.insert((ObjKind::User, o.remote_ref.as_str()), o);
            by_key.insert((ObjKind::User, o.key.to_lowercase()), o);
        }
    }
    if let Some(groups) = input.observed_groups {
        for o in groups {
            by_ref.insert((ObjKind::Group, o.remote_ref.as_str()), o);
            by_key.insert((ObjKind::Group, o.key.to_lowercase()), o);
        }
    }
    if let Some(all) = &listing {
        out.fingerprint = Some(fingerprint(input.records, all));
    }
    let refreshed = input.observed.is_some();
    out.managed_users = input
        .records
        .keys()
        .filter(|id| matches!(parse_record_id(id), Some((ObjKind::User, _))))
        .count();
    let mode = |kind: SecretKind| input.caps.secrets.get(&kind).copied();
    let mut seen_refs: BTreeSet<(ObjKind, String)> = BTreeSet::new();
    let mut used_records: BTreeSet<String> = BTreeSet::new();
    let mut not_kept: BTreeSet<String> = BTreeSet::new();
    for (id, r) in input.records {
        if let Some((kind, _)) = parse_record_id(id) {
            not_kept.extend(r.not_kept.iter().map(|a| format!("{kind}.{a}")));
        }
    }
    let mut steps_first = Vec::new();
    let mut steps_second = Vec::new();
    let mut removals = Vec::new();

    for ((kind, key), want) in input.want {
        let kind = *kind;
        // The record: under this key, or under a previous name (rename).
        let mut rec_id = record_id(kind, key);
        let mut renamed_from = None;
        if !input.records.contains_key(&rec_id)
            && kind == ObjKind::User
            && let Some((old, _)) = input
                .renames
                .iter()
                .find(|(old, new)| *new == key && input.records.contains_key(&record_id(kind, old)))
        {
            rec_id = record_id(kind, old);
            renamed_from = Some(old.clone());
        }
        let rec = input.records.get(&rec_id);
        let addr = address(kind, key, name);
        let mut step = TargetStep {
            renamed_from: renamed_from.clone(),
            attrs: Some(want.clone()),
            ..TargetStep::new(Action::Update, kind, key, name)
        };
        let wanted_secrets = secret_kinds(want);
        match rec {
            Some(rec) => {
                used_records.insert(rec_id.clone());
                // What the target holds: the listing (by ref, or by key for a
                // create whose result was not recorded), else the record.
                let found: Option<&RemoteObject> = if refreshed {
                    match &rec.remote_ref {
                        Some(r) => by_ref.get(&(kind, r.as_str())).copied(),
                        None => by_key
                            .get(&(kind, renamed_from.as_deref().unwrap_or(key).to_lowercase()))
                            .copied(),
                    }
                } else {
                    None
                };
                if let Some(f) = found {
                    seen_refs.insert((kind, f.remote_ref.clone()));
                }
                let remote_ref = found
                    .map(|f| f.remote_ref.clone())
                    .or_else(|| rec.remote_ref.clone());
                let have: Attrs = match found {
                    Some(f) => f.attrs.clone(),
                    None => rec.attrs.clone(),
                };
                if refreshed && found.is_none() {
                    // Gone from the target (deleted outside roster), or a
                    // create that never happened: create it again.
                    if rec.remote_ref.is_some() {
                        out.drift.push(Drift {
                            address: addr.clone(),
                            message: format!("not found on {name}: it was deleted outside roster"),
                        });
                    }
                    step.reason = Some("missing".into());
                    make_create(&mut step, want, input, &wanted_secrets, &mut out.needs);
                    if first_phase(input.caps, kind) {
                        steps_first.push(step);
                    } else {
                        steps_second.push(step);
                    }
                    continue;
                }
                step.remote_ref = remote_ref;
                // The target still holds it under another name: a rename
                // that was recorded but not (yet) done there.
                if let Some(f) = found
                    && !f.key.eq_ignore_ascii_case(key)
                    && step.renamed_from.is_none()
                {
                    step.renamed_from = Some(f.key.clone());
                }
                let ignore = &rec.not_kept;
                // Compared: what roster wants, and what it set before and no
                // longer wants (never an attribute roster never set).
                let mut names: Vec<String> = want
                    .keys()
                    .chain(rec.attrs.keys())
                    .filter(|k| !ignore.contains(*k) && !is_internal(input.caps, k))
                    .filter(|k| !compare::equal(k, want.get(*k), have.get(*k)))
                    .cloned()
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                names.retain(|k| want.contains_key(k) || rec.attrs.contains_key(k));
                if refreshed {
                    let drifted: Vec<&String> = rec
                        .attrs
                        .keys()
                        .filter(|k| !ignore.contains(*k) && !is_internal(input.caps, k))
                        .filter(|k| !compare::equal(k, rec.attrs.get(*k), have.get(*k)))
                        .collect();
                    if !drifted.is_empty() {
                        out.drift.push(Drift {
                            address: addr.clone(),
                            message: format!(
                                "changed on {name} outside roster: {}",
                                drifted
                                    .iter()
                                    .map(|s| s.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        });
                    }
                }
                step.changes = field_changes(&names, &have, want);
                step.current = Some(have.clone());
                // What the target does not keep is written back as it holds
                // it (a no-op), never as roster would want it: a plan writes
                // only what it shows.
                if let Some(attrs) = step.attrs.as_mut() {
                    for k in ignore {
                        match have.get(k) {
                            Some(v) if attrs.contains_key(k) => {
                                attrs.insert(k.clone(), v.clone());
                            }
                            None => {
                                attrs.remove(k);
                            }
                            Some(_) => {}
                        }
                    }
                }
                let was_active = is_active(&have);
                let now_active = is_active(want);
                if kind == ObjKind::User && !was_active && now_active {
                    step.action = Action::Reactivate;
                } else if kind == ObjKind::User && was_active && !now_active {
                    step.action = Action::Deactivate;
                }
                // Secrets.
                if kind == ObjKind::User {
                    let generated = input
                        .generated
                        .get(key.as_str())
                        .cloned()
                        .unwrap_or_default();
                    let held = secret_kinds(&rec.attrs);
                    for k in &wanted_secrets {
                        match mode(*k) {
                            Some(SecretMode::RosterGenerated) => {
                                if generated.contains(k) {
                                    step.set_secret.push(*k);
                                } else if rec.pending.contains(k)
                                    || step.action == Action::Reactivate
                                {
                                    // Not known to have reached the target, or
                                    // reactivated: a fresh secret is needed.
                                    out.needs.entry(key.clone()).or_default().insert(*k);
                                }
                            }
                            Some(SecretMode::TargetGenerated) => {
                                let pending = rec.pending.contains(k);
                                let missing = match k {
                                    SecretKind::Password => rec.secrets.password.is_none(),
                                    SecretKind::Token => rec.secrets.token.is_none(),
                                };
                                let rotate = input.rotated.contains(key.as_str())
                                    || step.action == Action::Reactivate;
                                if pending || missing || rotate {
                                    step.generate_secret.push(*k);
                                    if pending {
                                        step.reason = Some("pending secret".into());
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                    for k in held {
                        if !wanted_secrets.contains(&k) {
                            step.revoke_secret.push(k);
                        }
                    }
                }
                let secrets_only = step.changes.is_empty()
                    && step.renamed_from.is_none()
                    && (!step.set_secret.is_empty()
                        || !step.generate_secret.is_empty()
                        || !step.revoke_secret.is_empty());
                if secrets_only {
                    step.action = Action::Rotate;
                }
                if step.changes.is_empty()
                    && step.renamed_from.is_none()
                    && step.set_secret.is_empty()
                    && step.generate_secret.is_empty()
                    && step.revoke_secret.is_empty()
                    && rec.remote_ref.is_some()
                {
                    continue;
                }
                if step.action == Action::Deactivate {
                    removals.push(step);
                } else if first_phase(input.caps, kind) {
                    steps_first.push(step);
                } else {
                    steps_second.push(step);
                }
            }
            None => {
                if refreshed && let Some(found) = by_key.get(&(kind, key.to_lowercase())) {
                    seen_refs.insert((kind, found.remote_ref.clone()));
                    out.conflicts.push(addr);
                    continue;
                }
                make_create(&mut step, want, input, &wanted_secrets, &mut out.needs);
                if first_phase(input.caps, kind) {
                    steps_first.push(step);
                } else {
                    steps_second.push(step);
                }
            }
        }
    }

    // Managed objects the projection no longer holds.
    for (id, rec) in input.records {
        if used_records.contains(id) {
            continue;
        }
        let Some((kind, key)) = parse_record_id(id) else {
            continue;
        };
        let found = if refreshed {
            rec.remote_ref
                .as_deref()
                .and_then(|r| by_ref.get(&(kind, r)).copied())
                .or_else(|| by_key.get(&(kind, key.to_lowercase())).copied())
        } else {
            None
        };
        if let Some(f) = found {
            seen_refs.insert((kind, f.remote_ref.clone()));
        }
        if refreshed && found.is_none() {
            // Already gone: the record is forgotten by the next apply.
            removals.push(TargetStep {
                reason: Some("missing".into()),
                ..TargetStep::new(Action::Delete, kind, key, name)
            });
            continue;
        }
        let have = found.map(|f| f.attrs.clone()).unwrap_or(rec.attrs.clone());
        let remote_ref = found
            .map(|f| f.remote_ref.clone())
            .or(rec.remote_ref.clone());
        let addr = address(kind, key, name);
        if kind == ObjKind::User && input.protected.contains(key) {
            out.protected.push(addr);
            continue;
        }
        let delete = kind == ObjKind::Group || input.removal == Removal::Delete;
        if delete {
            removals.push(TargetStep {
                remote_ref,
                current: Some(have),
                ..TargetStep::new(Action::Delete, kind, key, name)
            });
            continue;
        }
        let mut target = deactivated(&rec.attrs);
        for k in &rec.not_kept {
            match have.get(k) {
                Some(v) if target.contains_key(k) => {
                    target.insert(k.clone(), v.clone());
                }
                None => {
                    target.remove(k);
                }
                Some(_) => {}
            }
        }
        let names: Vec<String> = target
            .keys()
            .chain(have.keys().filter(|k| rec.attrs.contains_key(*k)))
            .filter(|k| !rec.not_kept.contains(*k) && !is_internal(input.caps, k))
            .filter(|k| !compare::equal(k, target.get(*k), have.get(*k)))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if names.is_empty() && secret_kinds(&rec.attrs).is_empty() {
            continue;
        }
        let revoke_secret = secret_kinds(&rec.attrs);
        removals.push(TargetStep {
            remote_ref,
            changes: field_changes(&names, &have, &target),
            attrs: Some(target),
            current: Some(have),
            revoke_secret,
            ..TargetStep::new(Action::Deactivate, kind, key, name)
        });
    }
    // Groups are deleted after users leave them; users deactivated last.
    removals.sort_by_key(|s| (s.action == Action::Deactivate, s.kind == ObjKind::User));

    // Unmanaged: objects on the target that roster neither manages nor wants.
    for (kind, objects) in [
        (ObjKind::User, input.observed),
        (ObjKind::Group, input.observed_groups),
    ] {
        for o in objects.unwrap_or_default() {
            if !seen_refs.contains(&(kind, o.remote_ref.clone())) {
                *out.unmanaged.entry(kind.as_str().to_string()).or_default() += 1;
            }
        }
    }
    if !not_kept.is_empty() {
        out.limitations.push(format!(
            "{name} does not keep {} (recorded after a write; not proposed again)",
            not_kept.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    out.steps = steps_first;
    out.steps.extend(steps_second);
    out.steps.extend(removals);
    out
}

/// Whether objects of `kind` are ensured in the first phase: the kind the
/// other one names (groups first when users name them, users first when
/// groups list members).
pub fn first_phase(caps: &Capabilities, kind: ObjKind) -> bool {
    match caps.membership {
        Membership::OnUser => kind == ObjKind::Group,
        Membership::OnGroup => kind == ObjKind::User,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::TargetRecord;
    use serde_json::json;

    fn caps(membership: Membership, mode: SecretMode) -> Capabilities {
        Capabilities {
            kinds: [ObjKind::User, ObjKind::Group].into(),
            secrets: [(SecretKind::Password, mode)].into(),
            membership,
            user_attrs: None,
            group_attrs: None,
            concurrency: 1,
            limitations: Vec::new(),
        }
    }

    fn attrs(v: Value) -> Attrs {
        serde_json::from_value(v).expect("object")
    }

    fn remote(key: &str, r: &str, a: Value) -> RemoteObject {
        RemoteObject {
            key: key.into(),
            remote_ref: r.into(),
            attrs: attrs(a),
        }
    }

    fn record(r: &str, a: Value) -> TargetRecord {
        TargetRecord {
            remote_ref: Some(r.into()),
            attrs: attrs(a),
            ..TargetRecord::default()
        }
    }

    struct Case {
        caps: Capabilities,
        want: BTreeMap<ObjId, Attrs>,
        records: TargetState,
        users: Option<Vec<RemoteObject>>,
        groups: Option<Vec<RemoteObject>>,
        renames: BTreeMap<String, String>,
        generated: BTreeMap<String, Vec<SecretKind>>,
        removal: Removal,
    }

    impl Case {
        fn new(caps: Capabilities) -> Case {
            Case {
                caps,
                want: BTreeMap::new(),
                records: TargetState::new(),
                users: Some(Vec::new()),
                groups: Some(Vec::new()),
                renames: BTreeMap::new(),
                generated: BTreeMap::new(),
                removal: Removal::Deactivate,
            }
        }
        fn run(&self) -> TargetPlan {
            self.run_protecting(&BTreeSet::new())
        }
        fn run_protecting(&self, protected: &BTreeSet<String>) -> TargetPlan {
            let none = BTreeSet::new();
            let p = plan(&Input {
                name: "slack",
                kind: "scim",
                caps: &self.caps,
                want: &self.want,
                records: &self.records,
                observed: self.users.as_deref(),
                observed_groups: self.groups.as_deref(),
                renames: &self.renames,
                generated: &self.generated,
                rotated: &none,
                protected,
                removal: self.removal,
            });
            // Every step writes only what it shows (what a saved plan is
            // checked for).
            for step in &p.steps {
                assert_eq!(
                    crate::plan::verify::check_target_step(step),
                    Ok(()),
                    "{step:?}"
                );
            }
            p
        }
    }

    fn actions(p: &TargetPlan) -> Vec<(Action, &str)> {
        p.steps
            .iter()
            .map(|s| (s.action, s.address.as_str()))
            .collect()
    }

    #[test]
    fn an_empty_target_gets_creates_in_dependency_order() {
        let mut c = Case::new(caps(Membership::OnGroup, SecretMode::RosterGenerated));
        c.want.insert(
            (ObjKind::Group, "roster-role-payroll".into()),
            attrs(json!({"members": ["svc"]})),
        );
        c.want.insert(
            (ObjKind::User, "svc".into()),
            attrs(json!({"display_name": "Svc", "active": true, "credentials": ["password"]})),
        );
        c.generated.insert("svc".into(), vec![SecretKind::Password]);
        let p = c.run();
        assert_eq!(
            actions(&p),
            vec![
                (Action::Create, "user.svc@slack"),
                (Action::Create, "group.roster-role-payroll@slack")
            ]
        );
        assert_eq!(p.steps[0].set_secret, vec![SecretKind::Password]);
        assert!(p.needs.is_empty());
        // Without a generated secret, the create asks for one.
        c.generated.clear();
        let p = c.run();
        assert!(p.steps[0].set_secret.is_empty());
        assert_eq!(
            p.needs.get("svc"),
            Some(&BTreeSet::from([SecretKind::Password]))
        );
    }

    #[test]
    fn a_converged_target_plans_nothing_even_with_server_quirks() {
        let mut c = Case::new(caps(Membership::OnGroup, SecretMode::RosterGenerated));
        c.want.insert(
            (ObjKind::User, "svc".into()),
            attrs(json!({"display_name": "Svc", "email": "svc@acme.example", "active": true})),
        );
        c.records.insert(
            "user/svc".into(),
            record(
                "id1",
                json!({"display_name": "Svc", "email": "svc@acme.example", "active": true}),
            ),
        );
        c.users = Some(vec![remote(
            "SVC",
            "id1",
            json!({"display_name": "Svc", "email": "SVC@acme.example", "active": "True", "first_name": ""}),
        )]);
        let p = c.run();
        assert!(p.steps.is_empty(), "{:?}", p.steps);
        assert!(p.drift.is_empty());
        assert!(p.unmanaged.is_empty());
        assert!(p.fingerprint.is_some());
    }

    #[test]
    fn drift_on_the_target_is_shown_and_restored_and_unkept_values_are_not_proposed() {
        let mut c = Case::new(caps(Membership::OnGroup, SecretMode::RosterGenerated));
        c.want.insert(
            (ObjKind::User, "svc".into()),
            attrs(json!({"display_name": "Svc", "email": "svc@acme.example", "active": true})),
        );
        let mut rec = record(
            "id1",
            json!({"display_name": "Computed", "email": "svc@acme.example", "active": true}),
        );
        rec.not_kept.insert("display_name".into());
        c.records.insert("user/svc".into(), rec);
        c.users = Some(vec![remote(
            "svc",
            "id1",
            json!({"display_name": "Computed", "email": "other@acme.example", "active": true}),
        )]);
        let p = c.run();
        assert_eq!(actions(&p), vec![(Action::Update, "user.svc@slack")]);
        let fields: Vec<&str> = p.steps[0]
            .changes
            .iter()
            .map(|c| c.field.as_str())
            .collect();
        assert_eq!(fields, vec!["email"]);
        assert_eq!(p.drift.len(), 1);
        assert!(p.drift[0].message.contains("email"));
        assert!(
            p.limitations
                .iter()
                .any(|l| l.contains("user.display_name"))
        );
    }

    #[test]
    fn removed_users_are_deactivated_groups_deleted_and_unmanaged_left_alone() {
        let mut c = Case::new(caps(Membership::OnGroup, SecretMode::RosterGenerated));
        c.records.insert(
            "user/old".into(),
            record("u1", json!({"display_name": "Old", "active": true})),
        );
        c.records
            .insert("group/g".into(), record("g1", json!({"members": ["old"]})));
        c.users = Some(vec![
            remote("old", "u1", json!({"display_name": "Old", "active": true})),
            remote(
                "human",
                "u2",
                json!({"display_name": "A person", "active": true}),
            ),
        ]);
        c.groups = Some(vec![remote("g", "g1", json!({"members": ["old"]}))]);
        let p = c.run();
        assert_eq!(
            actions(&p),
            vec![
                (Action::Delete, "group.g@slack"),
                (Action::Deactivate, "user.old@slack")
            ]
        );
        assert_eq!(
            p.steps[1].attrs.as_ref().and_then(|a| a.get("active")),
            Some(&json!(false))
        );
        assert_eq!(p.unmanaged.get("user"), Some(&1));
        c.removal = Removal::Delete;
        let p = c.run();
        assert_eq!(p.steps[1].action, Action::Delete);
    }

    #[test]
    fn a_config_name_held_unmanaged_is_a_conflict_not_a_create() {
        let mut c = Case::new(caps(Membership::OnGroup, SecretMode::RosterGenerated));
        c.want.insert(
            (ObjKind::User, "svc".into()),
            attrs(json!({"display_name": "Svc", "active": true})),
        );
        c.users = Some(vec![remote("svc", "x", json!({"display_name": "Theirs"}))]);
        let p = c.run();
        assert!(p.steps.is_empty());
        assert_eq!(p.conflicts, vec!["user.svc@slack"]);
        assert!(p.unmanaged.is_empty());
    }

    #[test]
    fn a_rename_keeps_the_remote_id() {
        let mut c = Case::new(caps(Membership::OnGroup, SecretMode::RosterGenerated));
        c.want.insert(
            (ObjKind::User, "new".into()),
            attrs(json!({"display_name": "Svc", "active": true})),
        );
        c.renames.insert("old".into(), "new".into());
        c.records.insert(
            "user/old".into(),
            record("id1", json!({"display_name": "Svc", "active": true})),
        );
        c.users = Some(vec![remote(
            "old",
            "id1",
            json!({"display_name": "Svc", "active": true}),
        )]);
        let p = c.run();
        assert_eq!(actions(&p), vec![(Action::Update, "user.new@slack")]);
        assert_eq!(p.steps[0].renamed_from.as_deref(), Some("old"));
        assert_eq!(p.steps[0].remote_ref.as_deref(), Some("id1"));
    }

    #[test]
    fn target_generated_secrets_are_asked_for_once_and_again_when_pending() {
        let mut c = Case::new(caps(Membership::OnUser, SecretMode::TargetGenerated));
        let want = json!({"display_name": "Svc", "active": true, "credentials": ["password"]});
        c.want
            .insert((ObjKind::User, "svc".into()), attrs(want.clone()));
        let p = c.run();
        assert_eq!(p.steps[0].generate_secret, vec![SecretKind::Password]);
        let mut rec = record("id1", want.clone());
        rec.secrets.password = Some("$argon2id$x".into());
        c.records.insert("user/svc".into(), rec.clone());
        c.users = Some(vec![remote("svc", "id1", want.clone())]);
        assert!(c.run().steps.is_empty());
        rec.pending = vec![SecretKind::Password];
        c.records.insert("user/svc".into(), rec);
        let p = c.run();
        assert_eq!(actions(&p), vec![(Action::Rotate, "user.svc@slack")]);
        assert_eq!(p.steps[0].generate_secret, vec![SecretKind::Password]);
    }

    #[test]
    fn offline_plans_compare_with_the_state() {
        let mut c = Case::new(caps(Membership::OnGroup, SecretMode::RosterGenerated));
        c.want.insert(
            (ObjKind::User, "svc".into()),
            attrs(json!({"display_name": "New", "active": true})),
        );
        c.records.insert(
            "user/svc".into(),
            record("id1", json!({"display_name": "Old", "active": true})),
        );
        c.users = None;
        c.groups = None;
        let p = c.run();
        assert!(!p.refreshed);
        assert!(p.fingerprint.is_none());
        assert_eq!(actions(&p), vec![(Action::Update, "user.svc@slack")]);
    }

    #[test]
    fn a_protected_user_removed_from_the_config_is_left_as_it_is_on_the_target() {
        let mut c = Case::new(caps(Membership::OnGroup, SecretMode::RosterGenerated));
        c.records.insert(
            "user/keep".into(),
            record("u1", json!({"display_name": "Keep", "active": true})),
        );
        c.users = Some(vec![remote(
            "keep",
            "u1",
            json!({"display_name": "Keep", "active": true}),
        )]);
        let p = c.run_protecting(&BTreeSet::from(["keep".to_string()]));
        assert!(p.steps.is_empty(), "{:?}", p.steps);
        assert_eq!(p.protected, vec!["user.keep@slack"]);
        let p = c.run();
        assert_eq!(actions(&p), vec![(Action::Deactivate, "user.keep@slack")]);
    }
}
