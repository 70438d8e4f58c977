//! The shared `StateStore` contract suite: backend-agnostic tests that every
//! store (file, etcd, SCIM) must pass unchanged. It must not know any backend.
//!
//! How to use it: give [`run_all`] (or any single test) a *fresh-store maker*
//! `&dyn Fn() -> Factory`. Every call to the maker must create a new, EMPTY
//! store (a new temp file, a new etcd prefix, a cleared SCIM server…) and
//! return a [`Factory`] for it. Every call to that factory opens a new handle
//! to the SAME store, as a second process would. Each test calls the maker
//! once, so tests never see each other's data, and each test first checks that
//! its store really is empty.
//!
//! Every wait in here is bounded by a timeout; nothing asserts on timing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc;
use std::time::Duration;

use roster::model::{
    AccessLevel, AssignmentSpec, Authentication, CredentialSpec, GroupSpec, Kind, RoleSpec,
    Subject, UserClass, UserSpec,
};
use roster::store::{
    AuditEntry, Change, ChangeSet, LockOwner, NewSecrets, Record, RecordMeta, SecretHashes,
    Snapshot, StateStore, StoreError, Version,
};

/// Opens a new handle to one store.
pub type Factory = Box<dyn Fn() -> Box<dyn StateStore>>;

/// The longest any suite test waits for a lock.
const LOCK_WAIT: Duration = Duration::from_secs(60);

const AT: &str = "2026-01-02T03:04:05Z";

// ---------------------------------------------------------------- fixtures

pub fn owner(host: &str) -> LockOwner {
    LockOwner {
        pid: std::process::id(),
        host: host.into(),
        since: AT.into(),
    }
}

pub fn role_record(description: &str) -> Record<RoleSpec> {
    Record {
        spec: RoleSpec {
            description: Some(description.into()),
            permissions: ["payroll.read".to_string(), "payroll.write".to_string()].into(),
        },
        managed: true,
        meta: RecordMeta {
            created_at: Some(AT.into()),
            ..RecordMeta::default()
        },
    }
}

pub fn group_record() -> Record<GroupSpec> {
    Record {
        spec: GroupSpec {
            description: Some("HR integrations".into()),
            roles: ["payroll-reader".to_string()].into(),
            companies: ["ACME".to_string()].into(),
            pay_groups: ["BIWEEKLY".to_string()].into(),
            protected: true,
        },
        managed: true,
        meta: RecordMeta::default(),
    }
}

pub fn user_spec(display_name: &str) -> UserSpec {
    UserSpec {
        display_name: display_name.into(),
        first_name: Some("Qlear".into()),
        last_name: Some("Site".into()),
        email: Some(format!(
            "{}@acme.example",
            display_name.replace(' ', "-").to_lowercase()
        )),
        active: true,
        class: UserClass::ManagerSelfService,
        authentication: Authentication::Local,
        identity_provider: None,
        groups: ["hr-integrations".to_string()].into(),
        roles: ["payroll-reader".to_string()].into(),
        set_rights: BTreeMap::from([
            ("contract".to_string(), AccessLevel::Write),
            ("personal".to_string(), AccessLevel::Read),
        ]),
        credentials: CredentialSpec {
            password: true,
            token: true,
            rotation: 3,
        },
        protected: false,
        targets: Default::default(),
        target_attrs: Default::default(),
    }
}

/// A user record with every meta field set, secret hashes included.
pub fn user_record(display_name: &str) -> Record<UserSpec> {
    Record {
        spec: user_spec(display_name),
        managed: true,
        meta: RecordMeta {
            created_at: Some(AT.into()),
            updated_at: Some("2026-02-03T04:05:06Z".into()),
            serial: 0,
            applied_digest: Some("ab".repeat(32)),
            deactivated_at: Some("2026-03-04T05:06:07Z".into()),
            secrets: SecretHashes {
                password: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g".into()),
                token: Some("$argon2id$v=19$m=19456,t=2,p=1$dG9rZW5zYWx0$dG9rZW5oYXNo".into()),
                generated_at: Some(AT.into()),
            },
        },
    }
}

pub fn assignment_record() -> Record<AssignmentSpec> {
    Record {
        spec: AssignmentSpec {
            role: "payroll-reader".into(),
            subject: Subject::User("qlearsite".into()),
            positions: ["PAYROLL-CLERK".to_string()].into(),
            companies: BTreeSet::new(),
            pay_groups: ["BIWEEKLY".to_string()].into(),
        },
        managed: true,
        meta: RecordMeta::default(),
    }
}

pub fn put_user(name: &str, record: Record<UserSpec>) -> Change {
    Change::PutUser {
        name: name.into(),
        record,
        renamed_from: None,
        secrets: NewSecrets::default(),
    }
}

pub fn audit(plan_digest: &str) -> AuditEntry {
    AuditEntry {
        serial: 0,
        at: AT.into(),
        user: "ci".into(),
        host: "runner-1".into(),
        ci_run: Some("run-7".into()),
        plan_digest: plan_digest.into(),
        outcome: "applied".into(),
    }
}

pub fn change_set(base: Version, changes: Vec<Change>) -> ChangeSet {
    ChangeSet {
        base,
        changes,
        at: AT.into(),
        audit: None,
    }
}

/// Take the lock on `store` and commit `changes` against `base`.
pub fn commit_locked(
    store: &dyn StateStore,
    base: Version,
    changes: Vec<Change>,
) -> Result<Version, StoreError> {
    let lock = store.lock(&owner("suite-host"), LOCK_WAIT)?;
    let report = store.commit(lock.as_ref(), change_set(base, changes))?;
    Ok(report.version)
}

/// Read `store`, commit `changes` against what was read, return the new version.
pub fn commit_on_top(store: &dyn StateStore, changes: Vec<Change>) -> Version {
    let base = store.read().expect("read before commit").version_or_new();
    commit_locked(store, base, changes).expect("commit")
}

fn assert_empty(store: &dyn StateStore) {
    let snap = store.read().expect("read a fresh store");
    assert_eq!(
        snap,
        Snapshot::default(),
        "the suite needs a fresh, empty store"
    );
}

fn with_serial<T>(mut record: Record<T>, serial: u64) -> Record<T> {
    record.meta.serial = serial;
    record
}

// ---------------------------------------------------------------- tests

/// A fresh store reads as the default snapshot, with no history; reading twice
/// writes nothing.
pub fn empty_read(factory: &Factory) {
    let store = factory();
    assert_empty(store.as_ref());
    assert_empty(factory().as_ref());
    assert!(store.history().expect("history").is_empty());
}

/// The first commit creates a uuid lineage and serial 1; the version reads back.
pub fn first_commit_creates_lineage(factory: &Factory) {
    let store = factory();
    assert_empty(store.as_ref());
    let version = commit_locked(
        store.as_ref(),
        Version {
            lineage: String::new(),
            serial: 0,
        },
        vec![Change::PutRole {
            name: "payroll-reader".into(),
            record: role_record("Read payroll"),
        }],
    )
    .expect("first commit");
    assert_eq!(version.serial, 1);
    let lineage = uuid::Uuid::parse_str(&version.lineage).expect("lineage is a uuid");
    assert_eq!(lineage.get_version_num(), 4, "lineage is a uuid v4");
    let snap = factory().read().expect("read");
    assert_eq!(snap.version, Some(version.clone()));
    // Another commit keeps the lineage and raises the serial.
    let v2 = commit_on_top(factory().as_ref(), vec![]);
    assert_eq!(v2.lineage, version.lineage);
    assert_eq!(v2.serial, 2);
}

/// Every kind, with every meta field (secret hashes included), reads back as
/// written, with `meta.serial` set to the commit's serial, from another handle.
pub fn round_trip_every_kind(factory: &Factory) {
    let store = factory();
    assert_empty(store.as_ref());
    let assignment = assignment_record();
    let assignment_id = assignment.spec.id();
    let version = commit_on_top(
        store.as_ref(),
        vec![
            Change::PutRole {
                name: "payroll-reader".into(),
                record: role_record("Read payroll"),
            },
            Change::PutGroup {
                name: "hr-integrations".into(),
                record: group_record(),
            },
            put_user("qlearsite", user_record("Qlearsite survey")),
            Change::PutAssignment {
                id: assignment_id.clone(),
                record: assignment.clone(),
            },
        ],
    );
    let snap = factory().read().expect("read");
    assert_eq!(snap.version, Some(version.clone()));
    let s = version.serial;
    assert_eq!(
        snap.roles,
        BTreeMap::from([(
            "payroll-reader".to_string(),
            with_serial(role_record("Read payroll"), s)
        )])
    );
    assert_eq!(
        snap.groups,
        BTreeMap::from([(
            "hr-integrations".to_string(),
            with_serial(group_record(), s)
        )])
    );
    assert_eq!(
        snap.users,
        BTreeMap::from([(
            "qlearsite".to_string(),
            with_serial(user_record("Qlearsite survey"), s)
        )])
    );
    assert_eq!(
        snap.assignments,
        BTreeMap::from([(assignment_id, with_serial(assignment, s))])
    );
}

/// An update replaces the record and stamps the new serial on it only.
pub fn update(factory: &Factory) {
    let store = factory();
    assert_empty(store.as_ref());
    commit_on_top(
        store.as_ref(),
        vec![
            Change::PutRole {
                name: "payroll-reader".into(),
                record: role_record("Read payroll"),
            },
            put_user("qlearsite", user_record("Qlearsite survey")),
        ],
    );
    let mut changed = user_record("Qlearsite survey v2");
    changed.spec.active = false;
    changed.spec.credentials.rotation = 4;
    changed.meta.secrets = SecretHashes::default();
    let v2 = commit_on_top(
        factory().as_ref(),
        vec![put_user("qlearsite", changed.clone())],
    );
    assert_eq!(v2.serial, 2);
    let snap = store.read().expect("read");
    assert_eq!(snap.users["qlearsite"], with_serial(changed, 2));
    assert_eq!(snap.roles["payroll-reader"].meta.serial, 1);
}

/// Deleting each kind removes it and nothing else.
pub fn delete(factory: &Factory) {
    let store = factory();
    assert_empty(store.as_ref());
    let assignment = assignment_record();
    let id = assignment.spec.id();
    commit_on_top(
        store.as_ref(),
        vec![
            Change::PutRole {
                name: "payroll-reader".into(),
                record: role_record("Read payroll"),
            },
            Change::PutRole {
                name: "keeper".into(),
                record: role_record("Stays"),
            },
            Change::PutGroup {
                name: "hr-integrations".into(),
                record: group_record(),
            },
            put_user("qlearsite", user_record("Qlearsite survey")),
            Change::PutAssignment {
                id: id.clone(),
                record: assignment,
            },
        ],
    );
    commit_on_top(
        store.as_ref(),
        vec![
            Change::Delete {
                kind: Kind::RoleAssignment,
                name: id,
            },
            Change::Delete {
                kind: Kind::User,
                name: "qlearsite".into(),
            },
            Change::Delete {
                kind: Kind::Group,
                name: "hr-integrations".into(),
            },
            Change::Delete {
                kind: Kind::Role,
                name: "payroll-reader".into(),
            },
        ],
    );
    let snap = factory().read().expect("read");
    assert!(snap.users.is_empty(), "user deleted");
    assert!(snap.groups.is_empty(), "group deleted");
    assert!(snap.assignments.is_empty(), "assignment deleted");
    assert_eq!(
        snap.roles.keys().collect::<Vec<_>>(),
        vec!["keeper"],
        "only the other role is left"
    );
    assert_eq!(snap.version.map(|v| v.serial), Some(2));
}

/// `PutUser.renamed_from` moves the user: the old name is gone.
pub fn rename(factory: &Factory) {
    let store = factory();
    assert_empty(store.as_ref());
    commit_on_top(
        store.as_ref(),
        vec![
            put_user("old-name", user_record("Renamed user")),
            put_user("bystander", user_record("Bystander")),
        ],
    );
    commit_on_top(
        store.as_ref(),
        vec![Change::PutUser {
            name: "new-name".into(),
            record: user_record("Renamed user"),
            renamed_from: Some("old-name".into()),
            secrets: NewSecrets::default(),
        }],
    );
    let snap = factory().read().expect("read");
    assert_eq!(
        snap.users.keys().collect::<Vec<_>>(),
        vec!["bystander", "new-name"]
    );
    assert_eq!(
        snap.users["new-name"],
        with_serial(user_record("Renamed user"), 2)
    );
}

/// A commit against an old serial is refused with `Stale`, one against another
/// lineage with `LineageMismatch`, and neither writes anything.
pub fn stale_commit_refused(factory: &Factory) {
    let store = factory();
    assert_empty(store.as_ref());
    let old = store.read().expect("read").version_or_new();
    let v1 = commit_on_top(
        store.as_ref(),
        vec![put_user("first", user_record("First"))],
    );
    let before = factory().read().expect("read");
    let err = commit_locked(
        factory().as_ref(),
        old,
        vec![put_user("late", user_record("Late"))],
    )
    .expect_err("a stale commit must be refused");
    match err {
        StoreError::Stale { expected, found } => {
            assert_eq!((expected, found), (0, 1));
        }
        other => panic!("expected Stale, got {other}"),
    }
    let err = commit_locked(
        factory().as_ref(),
        Version {
            lineage: "00000000-0000-4000-8000-000000000000".into(),
            serial: v1.serial,
        },
        vec![put_user("other", user_record("Other"))],
    )
    .expect_err("a commit against another lineage must be refused");
    assert!(
        matches!(err, StoreError::LineageMismatch { .. }),
        "expected LineageMismatch, got {err}"
    );
    assert_eq!(
        factory().read().expect("read"),
        before,
        "refused commits wrote nothing"
    );
    assert!(factory().history().expect("history").is_empty());
}

/// While one handle holds the lock, another fails at once naming the holder.
pub fn lock_exclusion(factory: &Factory) {
    let a = factory();
    let b = factory();
    let holder = owner("suite-holder-a");
    let guard = a.lock(&holder, Duration::ZERO).expect("first lock");
    match b.lock(&owner("suite-b"), Duration::ZERO) {
        Err(StoreError::Locked { holder: found }) => {
            assert_eq!(found.pid, holder.pid);
            assert_eq!(found.host, holder.host);
            let message = StoreError::Locked {
                holder: found.clone(),
            }
            .to_string();
            assert!(message.contains("suite-holder-a"), "{message}");
            assert!(message.contains(&holder.pid.to_string()), "{message}");
        }
        Err(other) => panic!("expected Locked naming the holder, got {other}"),
        Ok(_) => panic!("a second lock must fail while the first is held"),
    }
    drop(guard);
}

/// Dropping the guard releases the lock for another handle.
pub fn lock_released_on_drop(factory: &Factory) {
    let a = factory();
    let b = factory();
    let guard = a.lock(&owner("suite-a"), Duration::ZERO).expect("lock");
    drop(guard);
    let again = b
        .lock(&owner("suite-b"), Duration::ZERO)
        .expect("the lock is free once the guard is dropped");
    drop(again);
    // The first handle can take it again too.
    drop(a.lock(&owner("suite-a"), Duration::ZERO).expect("relock"));
}

/// A waiter with a timeout gets the lock once the holder releases it.
pub fn lock_wait_succeeds_after_release(factory: &Factory) {
    let a = factory();
    let b = factory();
    let guard = a.lock(&owner("suite-a"), Duration::ZERO).expect("lock");
    let (ready_tx, ready_rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = ready_tx.send(());
        let got = b.lock(&owner("suite-waiter"), LOCK_WAIT).map(drop);
        got.map_err(|e| e.to_string())
    });
    ready_rx
        .recv_timeout(LOCK_WAIT)
        .expect("waiter thread started");
    // Give the waiter a moment to start waiting; correctness does not depend on it.
    std::thread::sleep(Duration::from_millis(300));
    drop(guard);
    let result = waiter.join().expect("waiter thread panicked");
    assert_eq!(result, Ok(()), "the waiter gets the lock after release");
}

/// Each commit with an audit entry appends it, stamped with the new serial;
/// a commit without one appends nothing.
pub fn history_appended(factory: &Factory) {
    let store = factory();
    assert_empty(store.as_ref());
    let commit_with_audit = |digest: Option<&str>| {
        let base = store.read().expect("read").version_or_new();
        let lock = store.lock(&owner("suite-host"), LOCK_WAIT).expect("lock");
        let mut changes = change_set(base, vec![put_user("someone", user_record("Someone"))]);
        changes.audit = digest.map(audit);
        store.commit(lock.as_ref(), changes).expect("commit")
    };
    commit_with_audit(Some("digest-1"));
    commit_with_audit(None);
    commit_with_audit(Some("digest-3"));
    let history = factory().history().expect("history");
    let mut first = audit("digest-1");
    first.serial = 1;
    let mut third = audit("digest-3");
    third.serial = 3;
    assert_eq!(history, vec![first, third]);
}

/// Unmanaged records are stored and survive commits that touch other records.
pub fn unmanaged_preserved(factory: &Factory) {
    let store = factory();
    assert_empty(store.as_ref());
    let mut legacy = user_record("Legacy integration");
    legacy.managed = false;
    let mut legacy_role = role_record("Made by hand");
    legacy_role.managed = false;
    commit_on_top(
        store.as_ref(),
        vec![
            Change::PutRole {
                name: "hand-made".into(),
                record: legacy_role.clone(),
            },
            put_user("legacy", legacy.clone()),
            put_user("managed", user_record("Managed")),
        ],
    );
    commit_on_top(
        factory().as_ref(),
        vec![
            put_user("managed", user_record("Managed v2")),
            Change::PutRole {
                name: "payroll-reader".into(),
                record: role_record("Read payroll"),
            },
        ],
    );
    let snap = factory().read().expect("read");
    assert_eq!(snap.users["legacy"], with_serial(legacy, 1));
    assert_eq!(snap.roles["hand-made"], with_serial(legacy_role, 1));
    assert!(!snap.users["legacy"].managed);
    assert_eq!(snap.users.len(), 2);
}

/// What one of the concurrent appliers did.
#[derive(Debug)]
enum Outcome {
    Committed(String),
    RefusedByLock,
}

/// 20 threads, each with its own handle, each take the lock (with a timeout),
/// read, and add one user. Every thread either committed or was refused by the
/// lock, and the final state holds exactly the committed users: no lost update.
pub fn concurrent_appliers_lose_no_update(factory: &Factory) {
    const THREADS: usize = 20;
    assert_empty(factory().as_ref());
    let handles: Vec<Box<dyn StateStore>> = (0..THREADS).map(|_| factory()).collect();
    let outcomes: Vec<Result<Outcome, String>> = std::thread::scope(|scope| {
        let joins: Vec<_> = handles
            .into_iter()
            .enumerate()
            .map(|(i, store)| {
                scope.spawn(move || -> Result<Outcome, String> {
                    let name = format!("concurrent-{i:02}");
                    let lock = match store.lock(&owner(&format!("thread-{i}")), LOCK_WAIT) {
                        Ok(lock) => lock,
                        Err(StoreError::Locked { .. } | StoreError::LockedUnknown) => {
                            return Ok(Outcome::RefusedByLock);
                        }
                        Err(e) => return Err(format!("thread {i}: lock: {e}")),
                    };
                    let base = store
                        .read()
                        .map_err(|e| format!("thread {i}: read: {e}"))?
                        .version_or_new();
                    store
                        .commit(
                            lock.as_ref(),
                            change_set(base, vec![put_user(&name, user_record(&name))]),
                        )
                        .map_err(|e| format!("thread {i}: commit under the lock: {e}"))?;
                    Ok(Outcome::Committed(name))
                })
            })
            .collect();
        joins
            .into_iter()
            .map(|j| j.join().unwrap_or_else(|_| Err("thread panicked".into())))
            .collect()
    });
    let mut committed = BTreeSet::new();
    for outcome in outcomes {
        match outcome {
            Ok(Outcome::Committed(name)) => {
                committed.insert(name);
            }
            Ok(Outcome::RefusedByLock) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert!(!committed.is_empty(), "at least one thread committed");
    let snap = factory().read().expect("read");
    let found: BTreeSet<String> = snap.users.keys().cloned().collect();
    assert_eq!(found, committed, "exactly the committed users are stored");
    assert_eq!(
        snap.version.map(|v| v.serial),
        Some(committed.len() as u64),
        "one serial per commit"
    );
}

/// One suite test.
pub type SuiteTest = fn(&Factory);

/// Every test, each on a fresh store from `fresh`.
/// Target records (remote ids, read-back attributes, capabilities) are kept
/// per target, replaced, and forgotten, beside the resources.
fn target_records_round_trip(factory: &Factory) {
    use roster::target::{CAPABILITIES_ID, TargetRecord};
    let store = factory();
    assert_empty(store.as_ref());
    let rec = |r: &str, name: &str| TargetRecord {
        remote_ref: Some(r.into()),
        attrs: serde_json::from_value(serde_json::json!({"display_name": name, "active": true}))
            .unwrap(),
        pending: vec![roster::secret::SecretKind::Password],
        ..TargetRecord::default()
    };
    let caps_record = TargetRecord {
        capabilities: Some(roster::target::Capabilities {
            kinds: [roster::target::ObjKind::User].into(),
            secrets: Default::default(),
            membership: Default::default(),
            user_attrs: None,
            group_attrs: None,
            concurrency: 1,
            limitations: vec!["no passwords".into()],
        }),
        ..TargetRecord::default()
    };
    commit_on_top(
        store.as_ref(),
        vec![
            put_user("survey-sync", user_record("Survey sync")),
            Change::PutTargetRecord {
                target: "slack".into(),
                id: "user/survey-sync".into(),
                record: rec("2819c223", "Survey sync"),
            },
            Change::PutTargetRecord {
                target: "slack".into(),
                id: CAPABILITIES_ID.into(),
                record: caps_record.clone(),
            },
            Change::PutTargetRecord {
                target: "warehouse".into(),
                id: "group/hr".into(),
                record: rec("hr", "HR"),
            },
        ],
    );
    let snap = store.read().unwrap();
    let slack = &snap.targets["slack"];
    assert_eq!(
        slack["user/survey-sync"].remote_ref.as_deref(),
        Some("2819c223")
    );
    assert_eq!(slack["user/survey-sync"].pending.len(), 1);
    assert_eq!(
        slack[CAPABILITIES_ID].capabilities,
        caps_record.capabilities
    );
    assert_eq!(
        snap.targets["warehouse"]["group/hr"].attrs["display_name"],
        "HR"
    );
    commit_on_top(
        store.as_ref(),
        vec![
            Change::PutTargetRecord {
                target: "slack".into(),
                id: "user/survey-sync".into(),
                record: rec("2819c223", "Renamed"),
            },
            Change::DeleteTargetRecord {
                target: "warehouse".into(),
                id: "group/hr".into(),
            },
        ],
    );
    let snap = store.read().unwrap();
    assert_eq!(
        snap.targets["slack"]["user/survey-sync"].attrs["display_name"],
        "Renamed"
    );
    assert!(
        snap.targets.get("warehouse").is_none_or(|t| t.is_empty()),
        "{:?}",
        snap.targets.get("warehouse")
    );
    assert!(snap.users.contains_key("survey-sync"));
}

pub fn run_all(fresh: &dyn Fn() -> Factory) {
    let tests: [(&str, SuiteTest); 14] = [
        ("target_records_round_trip", target_records_round_trip),
        ("empty_read", empty_read),
        ("first_commit_creates_lineage", first_commit_creates_lineage),
        ("round_trip_every_kind", round_trip_every_kind),
        ("update", update),
        ("delete", delete),
        ("rename", rename),
        ("stale_commit_refused", stale_commit_refused),
        ("lock_exclusion", lock_exclusion),
        ("lock_released_on_drop", lock_released_on_drop),
        (
            "lock_wait_succeeds_after_release",
            lock_wait_succeeds_after_release,
        ),
        ("history_appended", history_appended),
        ("unmanaged_preserved", unmanaged_preserved),
        (
            "concurrent_appliers_lose_no_update",
            concurrent_appliers_lose_no_update,
        ),
    ];
    for (name, test) in tests {
        eprintln!("store suite: {name}");
        test(&fresh());
    }
}
