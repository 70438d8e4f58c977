//! The executor: carries out a plan against a store.
//!
//! Order of events, which the guarantees rest on:
//!
//! 1. take the store's lock (or, with [`apply_locked`], the caller holds it,
//!    having planned under it);
//! 2. read the store and refuse a stale plan;
//! 3. build the new records, generating the secrets the plan names and
//!    hashing them (argon2id, on all cores);
//! 4. hand the secrets to the emitter, which must have written (and fsynced)
//!    them before it returns;
//! 5. commit.
//!
//! SIGINT/SIGTERM (when the CLI installed [`crate::signal`]) are checked
//! after step 1, before step 4 and before step 5; an interrupted apply
//! returns [`ApplyError::Interrupted`] and drops the lock.
//!
//! If anything before the commit fails, nothing is committed: a crash can
//! leave an emitted secret that never became valid, never a valid secret
//! nobody received.

use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::model::{AssignmentSpec, GroupSpec, Kind, RoleSpec, UserSpec};
use crate::plan::{Action, Plan, Step};
use crate::secret::{self, EmittedSecret, Secret, SecretKind};
use crate::store::{
    AuditEntry, Change, ChangeOutcome, ChangeSet, LockOwner, NewSecrets, Record, RecordMeta,
    StateStore, StoreError, StoreLock, Version, spec_digest,
};

/// How to run an apply.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Who is applying (recorded in the lock).
    pub owner: LockOwner,
    /// How long to wait for another apply's lock.
    pub lock_timeout: Duration,
    /// RFC 3339 time of this apply (timestamps, `generated_at`).
    pub now: String,
    /// The audit entry to record (serial is filled in by the store).
    pub audit: Option<AuditEntry>,
}

/// What an apply did.
#[derive(Debug, Clone)]
pub struct ApplyReport {
    pub version: Version,
    pub outcomes: Vec<ChangeOutcome>,
    /// Secrets handed to the emitter.
    pub secrets_emitted: usize,
}

impl ApplyReport {
    pub fn failed(&self) -> usize {
        self.outcomes.iter().filter(|o| o.error.is_some()).count()
    }
}

/// Why an apply did nothing.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secret(#[from] secret::SecretError),
    #[error("writing the secrets failed, so nothing was applied: {0}")]
    Emit(String),
    #[error("the plan is damaged: step {address}: {detail}")]
    BadPlan { address: String, detail: String },
    #[error("interrupted by {signal} {stage}; the store was not changed and its lock was released")]
    Interrupted {
        signal: crate::signal::Signal,
        /// Where the apply stopped, e.g. "before writing the secrets".
        stage: &'static str,
    },
}

/// Abort at a cancellation point when SIGINT/SIGTERM arrived (see [`crate::signal`]).
fn check_interrupted(stage: &'static str) -> Result<(), ApplyError> {
    match crate::signal::interrupted() {
        Some(signal) => {
            tracing::warn!(%signal, stage, "apply interrupted");
            Err(ApplyError::Interrupted { signal, stage })
        }
        None => Ok(()),
    }
}

fn spec_of<T: DeserializeOwned>(step: &Step) -> Result<T, ApplyError> {
    let target = step.target.clone().ok_or_else(|| ApplyError::BadPlan {
        address: step.address.clone(),
        detail: "no target".into(),
    })?;
    serde_json::from_value(target).map_err(|e| ApplyError::BadPlan {
        address: step.address.clone(),
        detail: e.to_string(),
    })
}

fn meta_for<T>(existing: Option<&Record<T>>, now: &str) -> RecordMeta {
    let mut meta = existing.map(|r| r.meta.clone()).unwrap_or_default();
    if meta.created_at.is_none() {
        meta.created_at = Some(now.to_string());
    }
    meta.updated_at = Some(now.to_string());
    meta
}

fn record<T: serde::Serialize>(spec: T, meta: RecordMeta) -> Record<T> {
    let mut meta = meta;
    meta.applied_digest = Some(spec_digest(&spec));
    Record {
        spec,
        managed: true,
        meta,
    }
}

/// A secret to generate for a user's change.
struct Pending {
    change: usize,
    user: String,
    kind: SecretKind,
    secret: Secret,
}

/// Apply `plan` to `store`. `emit` receives the generated secrets before the
/// commit and must persist them (or fail, which aborts the apply).
pub fn apply(
    store: &dyn StateStore,
    plan: &Plan,
    options: &ApplyOptions,
    emit: &mut dyn FnMut(&[EmittedSecret]) -> Result<(), String>,
) -> Result<ApplyReport, ApplyError> {
    apply_with_progress(store, plan, options, emit, &|_, _, _| {})
}

/// Progress callback: `(stage, done, total)`, stages `hashing secrets`,
/// `committing` (0 of the steps, then all of them). Counts only, never values.
pub type OnProgress<'a> = &'a dyn Fn(&'static str, usize, usize);

/// [`apply`], reporting progress to `on_progress` as it goes.
pub fn apply_with_progress(
    store: &dyn StateStore,
    plan: &Plan,
    options: &ApplyOptions,
    emit: &mut dyn FnMut(&[EmittedSecret]) -> Result<(), String>,
    on_progress: OnProgress<'_>,
) -> Result<ApplyReport, ApplyError> {
    let info = store.info();
    tracing::info!(store = %info.location, steps = plan.steps.len(), "taking the store lock");
    let lock = store.lock(&options.owner, options.lock_timeout)?;
    let report = apply_locked(store, lock.as_ref(), plan, options, emit, on_progress)?;
    drop(lock);
    Ok(report)
}

/// [`apply_with_progress`] for a caller that already holds `store`'s lock
/// (taken with [`StateStore::lock`]), e.g. one that planned under the lock so
/// that no other apply could make its plan stale in between. The lock stays held.
pub fn apply_locked(
    store: &dyn StateStore,
    lock: &dyn StoreLock,
    plan: &Plan,
    options: &ApplyOptions,
    emit: &mut dyn FnMut(&[EmittedSecret]) -> Result<(), String>,
    on_progress: OnProgress<'_>,
) -> Result<ApplyReport, ApplyError> {
    apply_state(store, lock, plan, options, emit, on_progress, &mut |_| {
        Vec::new()
    })
    .map(|(report, _, _)| report)
}

/// [`apply_locked`] that also commits `extra(snapshot)` (target records
/// made from the snapshot it read) with the state-store changes, and hands
/// back the emitted secrets (to send to targets) and that snapshot.
pub fn apply_state(
    store: &dyn StateStore,
    lock: &dyn StoreLock,
    plan: &Plan,
    options: &ApplyOptions,
    emit: &mut dyn FnMut(&[EmittedSecret]) -> Result<(), String>,
    on_progress: OnProgress<'_>,
    extra: &mut dyn FnMut(&crate::store::Snapshot) -> Vec<Change>,
) -> Result<(ApplyReport, Vec<EmittedSecret>, crate::store::Snapshot), ApplyError> {
    check_interrupted("after taking the lock")?;
    let snapshot = store.read()?;
    tracing::debug!(serial = snapshot.version_or_new().serial, "read the store");
    let current = snapshot.version_or_new();
    if !plan.base.lineage.is_empty() && plan.base.lineage != current.lineage {
        return Err(StoreError::LineageMismatch {
            expected: plan.base.lineage.clone(),
            found: current.lineage,
        }
        .into());
    }
    if plan.base.serial != current.serial {
        return Err(StoreError::Stale {
            expected: plan.base.serial,
            found: current.serial,
        }
        .into());
    }
    // What was shown (each step's changes) is what will be written.
    crate::plan::verify::check_against(plan, &snapshot)
        .map_err(|(address, detail)| ApplyError::BadPlan { address, detail })?;
    let now = options.now.as_str();
    let mut changes = Vec::with_capacity(plan.steps.len());
    let mut pending: Vec<Pending> = Vec::new();
    for step in &plan.steps {
        if step.action == Action::Delete {
            changes.push(Change::Delete {
                kind: step.kind,
                name: step.name.clone(),
            });
            continue;
        }
        let change = match step.kind {
            Kind::Role => {
                let spec: RoleSpec = spec_of(step)?;
                Change::PutRole {
                    name: step.name.clone(),
                    record: record(spec, meta_for(snapshot.roles.get(&step.name), now)),
                }
            }
            Kind::Group => {
                let spec: GroupSpec = spec_of(step)?;
                Change::PutGroup {
                    name: step.name.clone(),
                    record: record(spec, meta_for(snapshot.groups.get(&step.name), now)),
                }
            }
            Kind::RoleAssignment => {
                let spec: AssignmentSpec = spec_of(step)?;
                Change::PutAssignment {
                    id: step.name.clone(),
                    record: record(spec, meta_for(snapshot.assignments.get(&step.name), now)),
                }
            }
            Kind::User => {
                let spec: UserSpec = spec_of(step)?;
                let existing = snapshot.users.get(&step.name).or_else(|| {
                    step.renamed_from
                        .as_ref()
                        .and_then(|old| snapshot.users.get(old))
                });
                let mut meta = meta_for(existing, now);
                meta.deactivated_at = if spec.active {
                    None
                } else {
                    meta.deactivated_at.or_else(|| Some(now.to_string()))
                };
                for kind in &step.revoke {
                    match kind {
                        SecretKind::Password => meta.secrets.password = None,
                        SecretKind::Token => meta.secrets.token = None,
                    }
                }
                if meta.secrets.is_empty() {
                    meta.secrets.generated_at = None;
                }
                for kind in &step.generate {
                    let secret = match kind {
                        SecretKind::Password => {
                            secret::generate_password(&plan.secret_policy.password)?
                        }
                        SecretKind::Token => secret::generate_token(&plan.secret_policy.token),
                    };
                    pending.push(Pending {
                        change: changes.len(),
                        user: step.name.clone(),
                        kind: *kind,
                        secret,
                    });
                }
                Change::PutUser {
                    name: step.name.clone(),
                    record: record(spec, meta),
                    renamed_from: step.renamed_from.clone(),
                    secrets: NewSecrets {
                        revoke_password: step.revoke.contains(&SecretKind::Password),
                        ..NewSecrets::default()
                    },
                }
            }
        };
        changes.push(change);
    }

    // Hash on all cores, then attach hashes (and plaintext for stores that set passwords themselves).
    let refs: Vec<&Secret> = pending.iter().map(|p| &p.secret).collect();
    tracing::info!(secrets = refs.len(), "generating and hashing secrets");
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let hashes = if refs.is_empty() {
        Vec::new()
    } else {
        // Progress is reported while the workers run: no pause between batches.
        let total = refs.len();
        secret::hash_all_on(&refs, &plan.secret_policy.argon2, cores, &mut |done| {
            on_progress("hashing secrets", done, total);
        })?
    };
    for (p, hash) in pending.iter().zip(hashes) {
        if let Change::PutUser {
            record, secrets, ..
        } = &mut changes[p.change]
        {
            record.meta.secrets.generated_at = Some(now.to_string());
            let copy = Secret::new(p.secret.expose().to_string());
            match p.kind {
                SecretKind::Password => {
                    record.meta.secrets.password = Some(hash);
                    secrets.password = Some(copy);
                }
                SecretKind::Token => {
                    record.meta.secrets.token = Some(hash);
                    secrets.token = Some(copy);
                }
            }
        }
    }
    let emitted: Vec<EmittedSecret> = pending
        .into_iter()
        .map(|p| EmittedSecret {
            user: p.user,
            kind: p.kind,
            value: p.secret,
            generated_at: now.to_string(),
        })
        .collect();
    if !emitted.is_empty() {
        check_interrupted("before writing the secrets")?;
        emit(&emitted).map_err(ApplyError::Emit)?;
        tracing::debug!(secrets = emitted.len(), "secrets written");
    }
    check_interrupted(if emitted.is_empty() {
        "before the commit"
    } else {
        "after writing the secrets (they never became valid), before the commit"
    })?;
    let extra_changes = extra(&snapshot);
    let extra_count = extra_changes.len();
    changes.extend(extra_changes);
    tracing::trace!(changes = ?changes.iter().map(Change::address).collect::<Vec<_>>(), "committing");
    let steps = changes.len();
    on_progress("committing", 0, steps);
    let report = store.commit(
        lock,
        ChangeSet {
            base: current,
            changes,
            at: now.to_string(),
            audit: options.audit.clone(),
        },
    )?;
    on_progress("committing", steps, steps);
    tracing::info!(serial = report.version.serial, "committed");
    // Target records committed alongside are bookkeeping, not steps.
    let mut outcomes = report.outcomes;
    outcomes.truncate(outcomes.len().saturating_sub(extra_count));
    Ok((
        ApplyReport {
            version: report.version,
            outcomes,
            secrets_emitted: emitted.len(),
        },
        emitted,
        snapshot,
    ))
}
