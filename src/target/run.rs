//! Running targets: open the declared ones, read them for a plan, fold their
//! plans into the state store's, and carry out their steps after the state
//! commit. The planning itself is pure (`super::plan`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use super::plan::{Input, TargetPlan, TargetStep};
use super::project::project;
use super::{
    Attrs, Capabilities, EnsureRequest, ObjKind, RemoteObject, SecretMode, Target, TargetError,
    TargetRecord, compare, record_id,
};
use crate::model::{Desired, Kind, TargetConfig};
use crate::plan::{Action, Plan, Step, Summary};
use crate::secret::{self, EmittedSecret, Secret, SecretKind};
use crate::store::{Change, ChangeOutcome, Snapshot};

/// Where target-generated secrets go, at once (the secrets output).
pub type Emitter<'a> = dyn FnMut(&[EmittedSecret]) -> Result<(), String> + Send + 'a;

/// A target opened for this run.
pub struct Opened {
    pub name: String,
    pub config: TargetConfig,
    pub target: Box<dyn Target>,
    pub caps: Capabilities,
}

/// Make the client of one declared target (nothing is sent yet).
pub fn connect(name: &str, config: &TargetConfig) -> Result<Box<dyn Target>, TargetError> {
    match config {
        TargetConfig::Scim(c) => Ok(Box::new(super::scim::ScimTarget::new(name, c)?)),
        TargetConfig::Connector(c) => {
            Ok(Box::new(super::connector::ConnectorTarget::new(name, c)?))
        }
    }
}

/// Open every declared target (discovery, a connector's `hello`).
pub fn open_all(targets: &BTreeMap<String, TargetConfig>) -> Result<Vec<Opened>, TargetError> {
    let mut out = Vec::new();
    for (name, config) in targets {
        let target = connect(name, config)?;
        let caps = target.open().map_err(|e| {
            if e.message.contains(name.as_str()) {
                e
            } else {
                TargetError::new(e.class, format!("target {name}: opening it failed: {e}"))
            }
        })?;
        out.push(Opened {
            name: name.clone(),
            config: config.clone(),
            target,
            caps,
        });
    }
    Ok(out)
}

/// What one target holds now.
#[derive(Debug, Default)]
pub struct Listing {
    pub users: Vec<RemoteObject>,
    pub groups: Vec<RemoteObject>,
}

/// One listing of each kind the target manages (users first: group members
/// are named from them).
pub fn list(t: &Opened) -> Result<Listing, TargetError> {
    let users = t
        .target
        .list(ObjKind::User)
        .map_err(|e| TargetError::new(e.class, format!("target {}: listing users: {e}", t.name)))?;
    let groups = if t.caps.kinds.contains(&ObjKind::Group) {
        t.target.list(ObjKind::Group).map_err(|e| {
            TargetError::new(e.class, format!("target {}: listing groups: {e}", t.name))
        })?
    } else {
        Vec::new()
    };
    Ok(Listing { users, groups })
}

/// What planning needs of a target.
pub struct TargetInfo<'a> {
    pub name: &'a str,
    pub config: &'a TargetConfig,
    pub caps: &'a Capabilities,
}

impl Opened {
    pub fn info(&self) -> TargetInfo<'_> {
        TargetInfo {
            name: &self.name,
            config: &self.config,
            caps: &self.caps,
        }
    }
}

/// The capabilities recorded for `name` (offline planning).
pub fn recorded_caps<'a>(snapshot: &'a Snapshot, name: &str) -> Option<&'a Capabilities> {
    snapshot
        .targets
        .get(name)?
        .get(super::CAPABILITIES_ID)?
        .capabilities
        .as_ref()
}

/// Generated secret kinds per user, from the state-store steps.
fn generated(plan: &Plan) -> BTreeMap<String, Vec<SecretKind>> {
    plan.steps
        .iter()
        .filter(|s| s.kind == Kind::User && !s.generate.is_empty())
        .map(|s| (s.name.clone(), s.generate.clone()))
        .collect()
}

/// Plan every target and fold the result into `plan`. `listings` is `None`
/// when planning offline (`--refresh=false`).
pub fn plan_targets(
    plan: &mut Plan,
    desired: &Desired,
    snapshot: &Snapshot,
    opened: &[TargetInfo<'_>],
    listings: Option<&BTreeMap<String, Listing>>,
) {
    let rotated: BTreeSet<String> = desired
        .users
        .iter()
        .filter(|(n, u)| {
            snapshot
                .users
                .get(*n)
                .is_some_and(|r| r.spec.credentials.rotation != u.credentials.rotation)
        })
        .map(|(n, _)| n.clone())
        .collect();
    let protected: BTreeSet<String> = snapshot
        .users
        .iter()
        .filter(|(_, r)| r.spec.protected)
        .map(|(n, _)| n.clone())
        .chain(
            desired
                .users
                .iter()
                .filter(|(_, u)| u.protected)
                .map(|(n, _)| n.clone()),
        )
        .collect();
    let wants: Vec<_> = opened
        .iter()
        .map(|t| project(desired, t.name, t.config, t.caps))
        .collect();
    let empty = super::TargetState::new();
    let run = |plan: &Plan| -> BTreeMap<String, TargetPlan> {
        let generated = generated(plan);
        opened
            .iter()
            .zip(&wants)
            .map(|(t, want)| {
                let listing = listings.and_then(|l| l.get(t.name));
                let input = Input {
                    name: t.name,
                    kind: t.config.kind(),
                    caps: t.caps,
                    want,
                    records: snapshot.targets.get(t.name).unwrap_or(&empty),
                    observed: listing.map(|l| l.users.as_slice()),
                    observed_groups: listing.map(|l| l.groups.as_slice()),
                    renames: &desired.renames,
                    generated: &generated,
                    rotated: &rotated,
                    protected: &protected,
                    removal: desired.settings.removal,
                };
                let mut tp = super::plan::plan(&input);
                tp.config = Some(t.config.clone());
                (t.name.to_string(), tp)
            })
            .collect()
    };
    let mut targets = run(plan);
    // A user created or reactivated on a target that receives roster's
    // secret needs a fresh one (roster keeps only hashes): generate it in
    // the user's state-store step, then plan the targets again so that
    // every target holding the user receives the same secret.
    let mut needs: BTreeMap<String, BTreeSet<SecretKind>> = BTreeMap::new();
    for t in targets.values() {
        for (user, kinds) in &t.needs {
            needs.entry(user.clone()).or_default().extend(kinds);
        }
    }
    if !needs.is_empty() {
        for (user, kinds) in needs {
            add_generation(plan, desired, snapshot, &user, &kinds);
        }
        targets = run(plan);
    }
    plan.summary.unmanaged += targets
        .values()
        .flat_map(|t| t.unmanaged.values())
        .sum::<usize>();
    plan.targets = targets;
    for (name, records) in &snapshot.targets {
        if !opened.iter().any(|t| t.name == name) {
            let objects = records
                .keys()
                .filter(|id| super::parse_record_id(id).is_some())
                .count();
            plan.limitations.push(format!(
                "target {name} is in the state ({objects} objects) but no longer declared: \
                 roster leaves what it put there as it is"
            ));
        }
    }
    plan.summary = Summary::of_steps(&plan.steps, plan.summary.unmanaged, plan.drift.len())
        .with_targets(&plan.targets);
}

/// Generate `kinds` for `user` in its state-store step (a rotation step when
/// it has none).
fn add_generation(
    plan: &mut Plan,
    desired: &Desired,
    snapshot: &Snapshot,
    user: &str,
    kinds: &BTreeSet<SecretKind>,
) {
    if let Some(step) = plan
        .steps
        .iter_mut()
        .find(|s| s.kind == Kind::User && s.name == user)
    {
        for k in kinds {
            if !step.generate.contains(k) {
                step.generate.push(*k);
            }
        }
        step.generate.sort();
        return;
    }
    let Some(spec) = snapshot
        .users
        .get(user)
        .map(|r| &r.spec)
        .or_else(|| desired.users.get(user))
    else {
        return;
    };
    let step = Step {
        action: Action::Rotate,
        address: format!("user.{user}"),
        kind: Kind::User,
        name: user.to_string(),
        changes: Vec::new(),
        generate: kinds.iter().copied().collect(),
        revoke: Vec::new(),
        renamed_from: None,
        target: serde_json::to_value(spec).ok(),
        adopt: false,
        reason: None,
    };
    let at = plan
        .steps
        .iter()
        .position(|s| s.kind > Kind::User || (s.kind == Kind::User && s.name.as_str() > user))
        .unwrap_or(plan.steps.len());
    plan.steps.insert(at, step);
}

/// The state records to commit with the state-store changes, *before* any
/// target is written: creates and secret requests are recorded as pending,
/// so that a crash between that commit and the target's answer is found by
/// the next plan (the object by its key, the secret rotated).
pub fn intents(plan: &Plan, snapshot: &Snapshot, opened: &[Opened], now: &str) -> Vec<Change> {
    let mut out = Vec::new();
    for t in opened {
        if recorded_caps(snapshot, &t.name) != Some(&t.caps) {
            out.push(Change::PutTargetRecord {
                target: t.name.clone(),
                id: super::CAPABILITIES_ID.to_string(),
                record: TargetRecord {
                    capabilities: Some(t.caps.clone()),
                    updated_at: Some(now.to_string()),
                    ..TargetRecord::default()
                },
            });
        }
    }
    for (name, tp) in &plan.targets {
        let records = snapshot.targets.get(name);
        for s in &tp.steps {
            if s.action == Action::Delete {
                continue;
            }
            let id = record_id(s.kind, &s.key);
            let old_id = s.renamed_from.as_ref().map(|o| record_id(s.kind, o));
            let existing = records.and_then(|r| {
                r.get(&id)
                    .or_else(|| old_id.as_ref().and_then(|o| r.get(o)))
            });
            let mut pending: Vec<SecretKind> =
                existing.map(|r| r.pending.clone()).unwrap_or_default();
            for k in s.set_secret.iter().chain(&s.generate_secret) {
                if !pending.contains(k) {
                    pending.push(*k);
                }
            }
            let moved = old_id
                .as_ref()
                .is_some_and(|o| *o != id && records.is_some_and(|r| r.contains_key(o)));
            let needs_record = existing.is_none()
                || moved
                || pending != existing.map(|r| r.pending.clone()).unwrap_or_default();
            if !needs_record {
                continue;
            }
            let mut record = existing.cloned().unwrap_or_default();
            if existing.is_none() {
                record.remote_ref = s.remote_ref.clone();
            }
            record.pending = pending;
            record.updated_at = Some(now.to_string());
            // A renamed object's record moves to its new key (one record per
            // remote object); the next plan renames it on the target if this
            // apply does not get to.
            if let Some(old) = old_id.filter(|o| *o != id)
                && records.is_some_and(|r| r.contains_key(&old))
            {
                out.push(Change::DeleteTargetRecord {
                    target: name.clone(),
                    id: old,
                });
            }
            out.push(Change::PutTargetRecord {
                target: name.clone(),
                id,
                record,
            });
        }
    }
    out
}

/// What carrying out the target steps produced.
#[derive(Debug, Default)]
pub struct TargetApply {
    pub outcomes: Vec<ChangeOutcome>,
    /// State records to commit.
    pub changes: Vec<Change>,
    /// Secrets targets generated (already emitted).
    pub secrets_emitted: usize,
}

/// Carry out every target's steps, targets in parallel, each target's steps
/// phase by phase with its concurrency. `secrets` are the roster-generated
/// secrets the state-store commit emitted; `emit` receives target-generated
/// ones at once (hashed with `argon2` for the state).
#[allow(clippy::too_many_arguments)]
pub fn apply_targets(
    opened: &[Opened],
    plan: &Plan,
    snapshot: &Snapshot,
    secrets: &[EmittedSecret],
    emit: &Mutex<&mut Emitter<'_>>,
    argon2: &crate::model::Argon2Params,
    now: &str,
    idem_base: &str,
) -> TargetApply {
    let results: Vec<TargetApply> = std::thread::scope(|scope| {
        let handles: Vec<_> = opened
            .iter()
            .filter_map(|t| plan.targets.get(&t.name).map(|tp| (t, tp)))
            .filter(|(_, tp)| !tp.steps.is_empty())
            .map(|(t, tp)| {
                let handle = scope.spawn(move || {
                    let empty = super::TargetState::new();
                    let records = snapshot.targets.get(&t.name).unwrap_or(&empty);
                    apply_one(t, tp, records, secrets, emit, argon2, now, idem_base)
                });
                (tp, handle)
            })
            .collect();
        handles
            .into_iter()
            .map(|(tp, h)| {
                // A worker that panicked did not report: none of its steps
                // counts as done (their intents stay pending in the state).
                h.join().unwrap_or_else(|_| TargetApply {
                    outcomes: tp
                        .steps
                        .iter()
                        .map(|s| ChangeOutcome {
                            address: s.address.clone(),
                            error: Some(
                                "internal error: this target's worker stopped; \
                                         nothing of it is recorded as done"
                                    .into(),
                            ),
                        })
                        .collect(),
                    ..TargetApply::default()
                })
            })
            .collect()
    });
    let mut out = TargetApply::default();
    for r in results {
        out.outcomes.extend(r.outcomes);
        out.changes.extend(r.changes);
        out.secrets_emitted += r.secrets_emitted;
    }
    out
}

/// The result of one step.
struct StepResult {
    outcome: ChangeOutcome,
    changes: Vec<Change>,
    user_ref: Option<(String, String)>,
    emitted: usize,
}

#[allow(clippy::too_many_arguments)]
fn apply_one(
    t: &Opened,
    tp: &TargetPlan,
    records: &super::TargetState,
    secrets: &[EmittedSecret],
    emit: &Mutex<&mut Emitter<'_>>,
    argon2: &crate::model::Argon2Params,
    now: &str,
    idem_base: &str,
) -> TargetApply {
    let mut user_refs: BTreeMap<String, String> = records
        .iter()
        .filter_map(|(id, r)| {
            let (kind, key) = super::parse_record_id(id)?;
            (kind == ObjKind::User).then(|| Some((key.to_string(), r.remote_ref.clone()?)))?
        })
        .collect();
    let mut out = TargetApply::default();
    // Phases: the first kind's ensures, the second's, then removals.
    let phase_of = |s: &TargetStep| -> usize {
        if matches!(s.action, Action::Delete | Action::Deactivate) {
            2
        } else if super::plan::first_phase(&t.caps, s.kind) {
            0
        } else {
            1
        }
    };
    let concurrency = t.caps.concurrency.max(1);
    for phase in 0..3 {
        let steps: Vec<&TargetStep> = tp.steps.iter().filter(|s| phase_of(s) == phase).collect();
        if steps.is_empty() {
            continue;
        }
        let next = Mutex::new(0usize);
        let results = Mutex::new(Vec::new());
        let refs = &user_refs;
        std::thread::scope(|scope| {
            for _ in 0..concurrency.min(steps.len()) {
                scope.spawn(|| {
                    loop {
                        let i = {
                            let mut n = next.lock().unwrap_or_else(|e| e.into_inner());
                            let i = *n;
                            *n += 1;
                            i
                        };
                        let Some(step) = steps.get(i) else { break };
                        let r = run_step(
                            t, step, records, refs, secrets, emit, argon2, now, idem_base,
                        );
                        results
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((i, r));
                    }
                });
            }
        });
        let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
        results.sort_by_key(|(i, _)| *i);
        for (_, r) in results {
            if let Some((k, v)) = r.user_ref {
                user_refs.insert(k, v);
            }
            out.outcomes.push(r.outcome);
            out.changes.extend(r.changes);
            out.secrets_emitted += r.emitted;
        }
    }
    out
}

fn secret_of<'a>(secrets: &'a [EmittedSecret], user: &str, kind: SecretKind) -> Option<&'a Secret> {
    secrets
        .iter()
        .find(|s| s.user == user && s.kind == kind)
        .map(|s| &s.value)
}

#[allow(clippy::too_many_arguments)]
fn run_step(
    t: &Opened,
    step: &TargetStep,
    records: &super::TargetState,
    user_refs: &BTreeMap<String, String>,
    secrets: &[EmittedSecret],
    emit: &Mutex<&mut Emitter<'_>>,
    argon2: &crate::model::Argon2Params,
    now: &str,
    idem_base: &str,
) -> StepResult {
    let idem = format!("{idem_base}/{}", step.address);
    let id = record_id(step.kind, &step.key);
    let old_id = step.renamed_from.as_ref().map(|o| record_id(step.kind, o));
    let mut record: TargetRecord = records
        .get(&id)
        .or_else(|| old_id.as_ref().and_then(|o| records.get(o)))
        .cloned()
        .unwrap_or_default();
    let fail = |record: Option<TargetRecord>, e: String| StepResult {
        outcome: ChangeOutcome {
            address: step.address.clone(),
            error: Some(e),
        },
        // What did happen is still recorded (a ref learnt, a secret set).
        changes: record
            .map(|record| Change::PutTargetRecord {
                target: t.name.clone(),
                id: record_id(step.kind, &step.key),
                record,
            })
            .into_iter()
            .collect(),
        user_ref: None,
        emitted: 0,
    };
    if step.action == Action::Delete {
        if let Some(r) = &step.remote_ref
            && let Err(e) = t.target.delete(step.kind, &step.key, r, &idem)
        {
            return fail(None, e.message);
        }
        return StepResult {
            outcome: ChangeOutcome {
                address: step.address.clone(),
                error: None,
            },
            changes: vec![Change::DeleteTargetRecord {
                target: t.name.clone(),
                id,
            }],
            user_ref: None,
            emitted: 0,
        };
    }
    let mut errors: Vec<String> = Vec::new();
    let password = step
        .set_secret
        .contains(&SecretKind::Password)
        .then(|| secret_of(secrets, &step.key, SecretKind::Password))
        .flatten();
    let mut password_set = false;
    let needs_ensure = !step.changes.is_empty()
        || step.renamed_from.is_some()
        || step.remote_ref.is_none()
        || matches!(step.action, Action::Create);
    if needs_ensure {
        let Some(attrs) = &step.attrs else {
            return fail(None, "the plan is damaged: no attributes".into());
        };
        let req = EnsureRequest {
            kind: step.kind,
            key: &step.key,
            remote_ref: step.remote_ref.as_deref(),
            attrs,
            current: step.current.as_ref(),
            renamed_from: step.renamed_from.as_deref(),
            user_refs,
            password,
            idem: &idem,
        };
        match t.target.ensure(&req) {
            Ok(done) => {
                record.remote_ref = Some(done.remote_ref);
                password_set = done.password_set;
                // What the target did not keep is recorded, never proposed again.
                for c in &step.changes {
                    if !compare::equal(&c.field, attrs.get(&c.field), done.attrs.get(&c.field)) {
                        record.not_kept.insert(c.field.clone());
                    }
                }
                record.attrs = keep_managed(&t.caps, attrs, &done.attrs);
            }
            Err(e) => {
                return fail(
                    Some(record).filter(|r| r.remote_ref.is_some() || !r.pending.is_empty()),
                    e.message,
                );
            }
        }
    } else if let Some(attrs) = &step.attrs
        && record.attrs.is_empty()
    {
        record.attrs = attrs.clone();
    }
    if record.remote_ref.is_none() {
        record.remote_ref = step.remote_ref.clone();
    }
    let Some(remote_ref) = record.remote_ref.clone() else {
        return fail(None, "no remote id known for this object".into());
    };
    let user_ref = (step.kind == ObjKind::User).then(|| (step.key.clone(), remote_ref.clone()));
    for kind in &step.set_secret {
        if *kind == SecretKind::Password && password_set {
            record.pending.retain(|k| k != kind);
            continue;
        }
        let Some(value) = secret_of(secrets, &step.key, *kind) else {
            errors.push(format!("no {kind} was generated for this step"));
            continue;
        };
        match t
            .target
            .set_secret(&step.key, &remote_ref, *kind, value, &idem)
        {
            Ok(()) => record.pending.retain(|k| k != kind),
            Err(e) => errors.push(format!("setting the {kind}: {}", e.message)),
        }
    }
    let mut emitted = 0;
    for kind in &step.generate_secret {
        match t
            .target
            .generate_secret(&step.key, &remote_ref, *kind, &idem)
        {
            Ok(generated) => {
                let hash = secret::hash_secret(&generated.value, argon2);
                let label = format!("{}@{}", step.key, t.name);
                let one = [EmittedSecret {
                    user: label,
                    kind: *kind,
                    value: generated.value,
                    generated_at: now.to_string(),
                }];
                let written = {
                    let mut emit = emit.lock().unwrap_or_else(|e| e.into_inner());
                    (*emit)(&one)
                };
                match (written, hash) {
                    (Ok(()), Ok(hash)) => {
                        emitted += 1;
                        match kind {
                            SecretKind::Password => record.secrets.password = Some(hash),
                            SecretKind::Token => record.secrets.token = Some(hash),
                        }
                        record.secrets.generated_at = Some(now.to_string());
                        record.pending.retain(|k| k != kind);
                    }
                    (Err(e), _) => errors.push(format!(
                        "the {kind} {} generated could not be written to the secrets output ({e}); it stays pending and is rotated by the next apply",
                        t.name
                    )),
                    (_, Err(e)) => errors.push(format!("hashing the generated {kind}: {e}")),
                }
            }
            Err(e) => errors.push(format!("generating the {kind}: {}", e.message)),
        }
    }
    for kind in &step.revoke_secret {
        match t.target.revoke_secret(&step.key, &remote_ref, *kind, &idem) {
            Ok(()) => match kind {
                SecretKind::Password => record.secrets.password = None,
                SecretKind::Token => record.secrets.token = None,
            },
            Err(e) => errors.push(format!("revoking the {kind}: {}", e.message)),
        }
    }
    // roster's own record of the user's credentials follows the config once
    // the secret steps succeeded (the target does not hold it).
    if errors.is_empty()
        && step.kind == ObjKind::User
        && super::plan::is_internal(&t.caps, "credentials")
    {
        match step.attrs.as_ref().and_then(|a| a.get("credentials")) {
            Some(v) => {
                record.attrs.insert("credentials".into(), v.clone());
            }
            None => {
                record.attrs.remove("credentials");
            }
        }
    }
    record.updated_at = Some(now.to_string());
    let mut changes = Vec::new();
    // A rename also forgets the record under the old key.
    if let Some(old) = old_id
        && old != id
    {
        changes.push(Change::DeleteTargetRecord {
            target: t.name.clone(),
            id: old,
        });
    }
    changes.push(Change::PutTargetRecord {
        target: t.name.clone(),
        id,
        record,
    });
    StepResult {
        outcome: ChangeOutcome {
            address: step.address.clone(),
            error: (!errors.is_empty()).then(|| errors.join("; ")),
        },
        changes,
        user_ref,
        emitted,
    }
}

/// The read-back attributes roster records: those it manages (the keys of
/// what it sent), as the target holds them; roster's own bookkeeping
/// (`credentials` where the target has no such attribute) as sent.
fn keep_managed(caps: &Capabilities, sent: &Attrs, held: &Attrs) -> Attrs {
    sent.iter()
        .map(|(k, v)| {
            let value = if super::plan::is_internal(caps, k) {
                v.clone()
            } else {
                held.get(k).cloned().unwrap_or(serde_json::Value::Null)
            };
            (k.clone(), value)
        })
        .collect()
}

/// Whether a target takes roster-generated secrets of `kind`.
pub fn takes_roster_secret(caps: &Capabilities, kind: SecretKind) -> bool {
    caps.secrets.get(&kind) == Some(&SecretMode::RosterGenerated)
}
