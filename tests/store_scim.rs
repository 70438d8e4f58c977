//! The SCIM store against a real `scim2-server` on 127.0.0.1: the shared
//! contract suite, the mapping (passwords, token hashes, effective roles),
//! unmanaged resources, drift, errors, a crash mid-commit, and 2,000 users.

#[path = "common/scim.rs"]
mod harness;
#[allow(dead_code, clippy::type_complexity)]
#[path = "common/store_suite.rs"]
mod store_suite;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use harness::{ScimServer, ServerConfig, TOKEN, direct};
use roster::model::{GroupSpec, Kind};
use roster::secret::Secret;
use roster::store::scim::{ScimOptions, ScimStore};
use roster::store::{
    Change, ChangeSet, NewSecrets, OpenOptions, Record, RecordMeta, StateStore, StoreError,
    spec_digest,
};
use serde_json::json;
use store_suite::{owner, user_record};

const WAIT: Duration = Duration::from_secs(30);

fn with_extension() -> ServerConfig {
    ServerConfig {
        extension: true,
        ..ServerConfig::default()
    }
}

fn commit(store: &dyn StateStore, changes: Vec<Change>) -> roster::store::CommitReport {
    let base = store.read().expect("read").version_or_new();
    let lock = store.lock(&owner("test"), WAIT).expect("lock");
    let report = store
        .commit(
            lock.as_ref(),
            ChangeSet {
                base,
                changes,
                at: "2026-01-01T00:00:00Z".into(),
                audit: None,
            },
        )
        .expect("commit");
    for o in &report.outcomes {
        assert_eq!(o.error, None, "{}", o.address);
    }
    report
}

fn put_user_with(name: &str, record: Record<roster::model::UserSpec>, pw: Option<&str>) -> Change {
    Change::PutUser {
        name: name.into(),
        record,
        renamed_from: None,
        secrets: NewSecrets {
            password: pw.map(|p| Secret::new(p.into())),
            token: None,
            revoke_password: false,
        },
    }
}

fn group(roles: &[&str]) -> Record<GroupSpec> {
    Record {
        spec: GroupSpec {
            roles: roles.iter().map(|s| s.to_string()).collect(),
            ..GroupSpec::default()
        },
        managed: true,
        meta: RecordMeta::default(),
    }
}

fn find_user<'a>(dump: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    dump.as_array()
        .and_then(|a| a.iter().find(|r| r["userName"] == name))
        .unwrap_or_else(|| panic!("user {name} not in the server's dump"))
}

#[test]
fn shared_contract_suite() {
    let server = ScimServer::start(ServerConfig {
        extension: true,
        dynamic_tenants: true,
        ..ServerConfig::default()
    });
    let n = AtomicUsize::new(0);
    let fresh = || -> store_suite::Factory {
        let tenant = format!("suite{}", n.fetch_add(1, Ordering::Relaxed));
        let url = server.url(Some(&tenant));
        Box::new(move || {
            Box::new(
                ScimStore::with_token(
                    &url,
                    &OpenOptions::default(),
                    Secret::new(TOKEN.into()),
                    ScimOptions::default(),
                )
                .expect("open"),
            ) as Box<dyn StateStore>
        })
    };
    store_suite::run_all(&fresh);
}

#[test]
fn passwords_token_hashes_and_effective_roles_reach_the_server() {
    let mut server = ScimServer::start(with_extension());
    let store = server.store(None);
    let mut alice = user_record("Alice");
    alice.spec.roles = ["own-role".to_string()].into();
    alice.spec.groups = ["payroll".to_string()].into();
    alice.meta.applied_digest = Some(spec_digest(&alice.spec));
    commit(
        &store,
        vec![
            Change::PutGroup {
                name: "payroll".into(),
                record: group(&["payroll-reader"]),
            },
            put_user_with("alice", alice.clone(), Some("first-Pw-1")),
        ],
    );
    let snap = store.read().expect("read");
    let got = &snap.users["alice"];
    assert_eq!(got.spec, alice.spec);
    assert_eq!(got.meta.applied_digest, Some(spec_digest(&got.spec)));
    assert_eq!(got.meta.secrets, alice.meta.secrets, "token hash stored");
    // On the server: effective roles, entitlements, the token hash in the extension.
    let (_, list) = direct(
        "GET",
        &format!(
            "{}/Users?filter=userName%20eq%20%22alice%22",
            server.http_base(None)
        ),
        None,
    );
    let u = &list["Resources"][0];
    let roles: BTreeSet<&str> = u["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .filter_map(|r| r["value"].as_str())
        .collect();
    assert_eq!(roles, BTreeSet::from(["own-role", "payroll-reader"]));
    assert_eq!(
        u["urn:ietf:params:scim:schemas:extension:roster:2.0:User"]["tokenHash"],
        json!(alice.meta.secrets.token)
    );
    assert!(u.get("password").is_none(), "password is never returned");
    // Group roles change: the member's effective roles follow.
    commit(
        &store,
        vec![Change::PutGroup {
            name: "payroll".into(),
            record: group(&["payroll-writer"]),
        }],
    );
    // Rotation sets a new password.
    let mut rotated = alice.clone();
    rotated.spec.credentials.rotation += 1;
    commit(
        &store,
        vec![put_user_with("alice", rotated, Some("second-Pw-2"))],
    );
    let snap = store.read().expect("read");
    assert_eq!(snap.users["alice"].spec.roles, alice.spec.roles);
    let dump = server.stop_and_dump();
    let u = find_user(&dump, "alice");
    assert_eq!(u["password"], "second-Pw-2", "rotation reached the server");
    let roles: BTreeSet<&str> = u["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .filter_map(|r| r["value"].as_str())
        .collect();
    assert_eq!(roles, BTreeSet::from(["own-role", "payroll-writer"]));
}

#[test]
fn password_set_on_create() {
    let mut server = ScimServer::start(with_extension());
    let store = server.store(None);
    commit(
        &store,
        vec![put_user_with(
            "bob",
            user_record("Bob"),
            Some("create-Pw-9"),
        )],
    );
    let dump = server.stop_and_dump();
    assert_eq!(find_user(&dump, "bob")["password"], "create-Pw-9");
}

#[test]
fn unmanaged_resources_are_counted_and_left_alone() {
    let server = ScimServer::start(with_extension());
    let base = server.http_base(None);
    let (s, _) = direct(
        "POST",
        &format!("{base}/Users"),
        Some(
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "hand-made", "displayName": "Hand made", "active": true}),
        ),
    );
    assert_eq!(s, 201);
    let (s, _) = direct(
        "POST",
        &format!("{base}/Groups"),
        Some(
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "hand-group"}),
        ),
    );
    assert_eq!(s, 201);
    let store = server.store(None);
    let snap = store.read().expect("read");
    assert!(!snap.users["hand-made"].managed);
    assert_eq!(snap.users["hand-made"].spec.display_name, "Hand made");
    assert!(!snap.groups["hand-group"].managed);
    // A change naming the unmanaged user is refused, the others still run.
    let base_v = snap.version_or_new();
    let lock = store.lock(&owner("t"), WAIT).expect("lock");
    let report = store
        .commit(
            lock.as_ref(),
            ChangeSet {
                base: base_v,
                changes: vec![
                    put_user_with("hand-made", user_record("Taken over"), None),
                    Change::Delete {
                        kind: Kind::Group,
                        name: "hand-group".into(),
                    },
                    put_user_with("managed", user_record("Managed"), None),
                ],
                at: "2026-01-01T00:00:00Z".into(),
                audit: None,
            },
        )
        .expect("commit");
    drop(lock);
    let errors: Vec<_> = report.outcomes.iter().map(|o| o.error.is_some()).collect();
    assert_eq!(errors, vec![true, true, false], "{:?}", report.outcomes);
    assert!(
        report.outcomes[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("unmanaged"))
    );
    let snap = store.read().expect("read");
    assert_eq!(snap.users["hand-made"].spec.display_name, "Hand made");
    assert!(snap.groups.contains_key("hand-group"));
    assert_eq!(snap.users.values().filter(|u| !u.managed).count(), 1);
    assert!(snap.users["managed"].managed);
}

#[test]
fn drift_made_on_the_server_shows_in_the_spec() {
    let server = ScimServer::start(with_extension());
    let store = server.store(None);
    let mut rec = user_record("Drifty");
    rec.spec.active = false;
    rec.spec.groups.clear();
    rec.meta.applied_digest = Some(spec_digest(&rec.spec));
    commit(&store, vec![put_user_with("drifty", rec.clone(), None)]);
    let snap = store.read().expect("read");
    let id_list = direct(
        "GET",
        &format!(
            "{}/Users?filter=userName%20eq%20%22drifty%22",
            server.http_base(None)
        ),
        None,
    )
    .1;
    let id = id_list["Resources"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(
        snap.users["drifty"].meta.applied_digest,
        Some(spec_digest(&snap.users["drifty"].spec)),
        "no drift yet"
    );
    let (s, _) = direct(
        "PATCH",
        &format!("{}/Users/{id}", server.http_base(None)),
        Some(
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [
                {"op": "replace", "path": "active", "value": true},
                {"op": "add", "path": "roles", "value": [{"value": "sneaky-admin"}]},
                {"op": "replace", "path": "emails", "value": [{"value": "new@evil.example", "type": "work", "primary": true}]}
            ]}),
        ),
    );
    assert!(s == 200 || s == 204, "direct PATCH: {s}");
    let got = store.read().expect("read").users["drifty"].clone();
    assert!(got.spec.active, "re-activation visible");
    assert!(
        got.spec.roles.contains("sneaky-admin"),
        "added role visible"
    );
    assert_eq!(got.spec.email.as_deref(), Some("new@evil.example"));
    assert_ne!(got.meta.applied_digest, Some(spec_digest(&got.spec)));
    // Re-applying the declared spec converges.
    commit(&store, vec![put_user_with("drifty", rec.clone(), None)]);
    let got = store.read().expect("read").users["drifty"].clone();
    assert_eq!(got.spec, rec.spec);
}

#[test]
fn wrong_token_gives_a_clear_error_without_the_token() {
    let server = ScimServer::start(with_extension());
    let store = ScimStore::with_token(
        &server.url(None),
        &OpenOptions::default(),
        Secret::new("wrong-token-xyz".into()),
        ScimOptions::default(),
    )
    .expect("open");
    let err = store.read().expect_err("a wrong token is refused");
    let msg = err.to_string();
    assert!(msg.contains("401"), "{msg}");
    assert!(msg.contains("ROSTER_SCIM_TOKEN"), "{msg}");
    assert!(!msg.contains("wrong-token-xyz"), "{msg}");
    assert!(!format!("{err:?}").contains("wrong-token-xyz"));
    assert!(!format!("{store:?}").contains("wrong-token-xyz"));
}

#[test]
fn urls_are_checked() {
    let opts = OpenOptions::default();
    let token = || Secret::new("t".into());
    let open = |url: &str| ScimStore::with_token(url, &opts, token(), ScimOptions::default()).err();
    assert!(matches!(
        open("scim+http://scim.example.com/v2"),
        Some(StoreError::InvalidUrl { .. })
    ));
    assert!(open("scim+https://scim.example.com/v2").is_none());
    assert!(open("scim+http://localhost:9/v2").is_none());
    assert!(matches!(
        open("scim+https://user:pw@scim.example.com/v2"),
        Some(StoreError::InvalidUrl { .. })
    ));
    let insecure = OpenOptions {
        allow_insecure_http: true,
        ..OpenOptions::default()
    };
    assert!(
        ScimStore::with_token(
            "scim+http://scim.example.com/v2",
            &insecure,
            token(),
            ScimOptions::default()
        )
        .is_ok()
    );
}

#[test]
fn without_the_extension_limitations_are_reported() {
    let server = ScimServer::start(ServerConfig::default());
    let store = server.store(None);
    let snap = store.read().expect("read");
    assert!(!snap.limitations.is_empty());
    assert!(
        snap.limitations
            .iter()
            .any(|l| l.contains("role assignments"))
    );
    assert!(snap.limitations.iter().any(|l| l.contains("user class")));
    // Core fields are still managed.
    let mut rec = user_record("Core only");
    rec.spec.groups.clear();
    rec.spec.roles.clear();
    rec.meta = RecordMeta::default();
    let report = {
        let base = snap.version_or_new();
        let lock = store.lock(&owner("t"), WAIT).expect("lock");
        store
            .commit(
                lock.as_ref(),
                ChangeSet {
                    base,
                    changes: vec![
                        put_user_with("core", rec.clone(), None),
                        Change::PutRole {
                            name: "r".into(),
                            record: store_suite::role_record("R"),
                        },
                    ],
                    at: "2026-01-01T00:00:00Z".into(),
                    audit: None,
                },
            )
            .expect("commit")
    };
    assert_eq!(report.outcomes[0].error, None);
    assert!(
        report.outcomes[1]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("extension"))
    );
    let snap = store.read().expect("read");
    let got = &snap.users["core"].spec;
    assert_eq!(got.display_name, "Core only");
    assert_eq!(got.email, rec.spec.email);
    assert_eq!(got.set_rights, rec.spec.set_rights);
    assert_eq!(snap.version.map(|v| v.serial), Some(1));
}

fn many_users(n: usize, tag: &str) -> Vec<Change> {
    (0..n)
        .map(|i| {
            let mut rec = user_record(&format!("{tag} {i}"));
            rec.spec.groups = ["bulk-group".to_string()].into();
            put_user_with(&format!("{tag}-{i:04}"), rec, None)
        })
        .collect()
}

#[test]
fn two_thousand_users_round_trip_with_bulk_and_pagination() {
    const N: usize = 2000;
    let server = ScimServer::start(with_extension());
    let store = server.store_with(
        None,
        ScimOptions {
            page_size: 500,
            ..ScimOptions::default()
        },
    );
    let mut changes = vec![Change::PutGroup {
        name: "bulk-group".into(),
        record: group(&["payroll-reader"]),
    }];
    changes.extend(many_users(N, "u"));
    let before = store.requests_sent();
    commit(&store, changes);
    let commit_requests = store.requests_sent() - before;
    // Bulk batches of at most 1000 operations: far fewer requests than users.
    assert!(
        commit_requests < 60,
        "commit took {commit_requests} requests"
    );
    let before = store.requests_sent();
    let snap = store.read().expect("read");
    let read_requests = store.requests_sent() - before;
    assert_eq!(snap.users.len(), N);
    // ⌈2000/500⌉ user pages + 1 group page (the state group is one of the
    // groups); discovery was done by the commit.
    assert_eq!(read_requests, 4 + 1, "read requests");
    // A fresh client adds /ServiceProviderConfig only: the extension is
    // proven by the resources roster wrote, so /Schemas is not asked.
    let fresh = server.store_with(
        None,
        ScimOptions {
            page_size: 500,
            ..ScimOptions::default()
        },
    );
    let again = fresh.read().expect("read");
    assert_eq!(fresh.requests_sent(), 1 + 4 + 1, "fresh read requests");
    assert_eq!(again.users.len(), N);
    assert!(again.limitations.is_empty(), "{:?}", again.limitations);
    let sample = &snap.users["u-1999"];
    assert!(sample.spec.groups.contains("bulk-group"));
    assert_eq!(sample.spec.display_name, "u 1999");
}

#[test]
fn concurrent_requests_when_bulk_is_not_offered() {
    let spc = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": 100},
        "changePassword": {"supported": true},
        "sort": {"supported": true},
        "etag": {"supported": true}
    });
    let server = ScimServer::start(ServerConfig {
        extension: true,
        provider_config: Some(spc.to_string()),
        ..ServerConfig::default()
    });
    let store = server.store(None);
    let mut changes = vec![Change::PutGroup {
        name: "bulk-group".into(),
        record: group(&[]),
    }];
    changes.extend(many_users(120, "c"));
    commit(&store, changes);
    let before = store.requests_sent();
    let snap = store.read().expect("read");
    let read_requests = store.requests_sent() - before;
    assert_eq!(snap.users.len(), 120);
    // maxResults 100 bounds the page: 2 user pages, 1 group page.
    assert_eq!(read_requests, 2 + 1, "read requests");
    assert!(
        snap.users
            .values()
            .all(|u| u.spec.groups.contains("bulk-group"))
    );
}

#[test]
fn server_killed_mid_commit_gives_a_clean_error_and_a_rerun_converges() {
    let mut server = ScimServer::start(with_extension());
    let port = server.port;
    let store = server.store_with(
        None,
        ScimOptions {
            http: roster::store::scim::http::HttpOptions {
                use_bulk: false,
                concurrency: 2,
                max_attempts: 2,
                retry_budget: Duration::from_secs(2),
                ..Default::default()
            },
            ..ScimOptions::default()
        },
    );
    let base = store.read().expect("read").version_or_new();
    let lock = store.lock(&owner("t"), WAIT).expect("lock");
    let result = std::thread::scope(|s| {
        let killer = s.spawn(|| {
            // Kill once the commit is under way (bounded wait).
            for _ in 0..400 {
                if store.requests_sent() > 40 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            server.kill();
        });
        let result = store.commit(
            lock.as_ref(),
            ChangeSet {
                base,
                changes: many_users(300, "k"),
                at: "2026-01-01T00:00:00Z".into(),
                audit: None,
            },
        );
        killer.join().expect("killer thread");
        result
    });
    drop(lock);
    match result {
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("SCIM server"), "{msg}");
            assert!(!msg.contains(TOKEN), "{msg}");
        }
        Ok(report) => assert!(
            report.outcomes.iter().any(|o| o.error.is_some()),
            "a commit cut short reports failures"
        ),
    }
    // Restart (an in-memory server comes back empty) and re-run.
    let server = ScimServer::start(ServerConfig {
        extension: true,
        port: Some(port),
        ..ServerConfig::default()
    });
    let store = server.store(None);
    commit(&store, many_users(300, "k"));
    let snap = store.read().expect("read");
    assert_eq!(snap.users.len(), 300);
    assert_eq!(snap.version.map(|v| v.serial), Some(1));
}
