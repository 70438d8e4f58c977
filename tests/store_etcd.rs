//! The etcd store against real etcd processes on 127.0.0.1: the shared suite,
//! expiry of a dead holder's lock, chunked commits and paginated reads, stale
//! commits, a three-member cluster losing a member, and authentication.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::etcd::{Etcd, b64, enable_auth, gateway_post};
use common::store_suite::{
    self, Factory, change_set, commit_locked, commit_on_top, owner, put_user, user_record,
};
use roster::store::etcd::{EtcdConfig, EtcdStore, PASSWORD_ENV, USER_ENV};
use roster::store::{Change, LockOwner, OpenOptions, StateStore, StoreError};
use serde_json::json;

fn open(url: &str) -> Box<dyn StateStore> {
    Box::new(EtcdStore::open_with(url, EtcdConfig::default()).expect("open etcd store"))
}

#[test]
fn etcd_store_passes_the_shared_suite() {
    let etcd = Etcd::start();
    let endpoint = etcd.endpoint();
    let counter = AtomicUsize::new(0);
    let fresh = || -> Factory {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let url = format!("etcd://{endpoint}/suite/{n}");
        Box::new(move || open(&url))
    };
    store_suite::run_all(&fresh);
}

#[test]
fn open_routes_etcd_urls_and_rejects_bad_ones() {
    let etcd = Etcd::start();
    let url = format!("etcd://{}/opened", etcd.endpoint());
    let store = roster::store::open(&url, &OpenOptions::default()).expect("open etcd://");
    assert_eq!(store.info().kind, "etcd");
    assert_eq!(store.info().location, url);
    assert_eq!(store.read().expect("read"), Default::default());
    let err = roster::store::open("etcd://127.0.0.1:2379", &OpenOptions::default())
        .err()
        .expect("a URL without a prefix is refused");
    assert!(err.to_string().contains("PREFIX"), "{err}");
}

/// A holder that crashed (its lease is not kept alive) blocks the lock only
/// until its lease expires; then the next lock succeeds.
#[test]
fn lock_of_a_killed_holder_expires_with_its_lease() {
    let etcd = Etcd::start();
    let base = etcd.base_url();
    let store = EtcdStore::open_with(
        &format!("etcd://{}/killed", etcd.endpoint()),
        EtcdConfig::default(),
    )
    .expect("open");
    // The crashed apply: a 2 s lease, the lock key on it, and no keepalive.
    let grant =
        gateway_post(&base, "/v3/lease/grant", &json!({"TTL": "2"}), None).expect("grant a lease");
    let lease = grant["ID"].as_str().expect("lease id").to_string();
    let dead = LockOwner {
        pid: 999_999,
        host: "crashed-host".into(),
        since: "2026-01-01T00:00:00Z".into(),
    };
    let mut value = serde_json::to_value(&dead).expect("owner json");
    value["lease"] = json!(lease.parse::<i64>().expect("numeric lease"));
    let key = format!("{}lock", store.prefix());
    gateway_post(
        &base,
        "/v3/kv/put",
        &json!({"key": b64(key.as_bytes()), "value": b64(value.to_string().as_bytes()), "lease": lease}),
        None,
    )
    .expect("put the dead holder's lock");
    match store.lock(&owner("next-apply"), Duration::ZERO) {
        Err(StoreError::Locked { holder }) => assert_eq!(holder, dead),
        Err(e) => panic!("expected Locked by the dead holder, got {e}"),
        Ok(_) => panic!("the dead holder's lease has not expired yet"),
    }
    let guard = store
        .lock(&owner("next-apply"), Duration::from_secs(30))
        .expect("the lock is free once the dead holder's lease expires");
    let version = store
        .commit(
            guard.as_ref(),
            change_set(
                store.read().expect("read").version_or_new(),
                vec![put_user("after-crash", user_record("After crash"))],
            ),
        )
        .expect("commit under the new lock");
    assert_eq!(version.version.serial, 1);
}

/// Our lock key disappears when the guard drops (its lease is revoked).
#[test]
fn dropping_the_guard_deletes_the_lock_key() {
    let etcd = Etcd::start();
    let store = EtcdStore::open_with(
        &format!("etcd://{}/drop", etcd.endpoint()),
        EtcdConfig::default(),
    )
    .expect("open");
    let key = format!("{}lock", store.prefix());
    let range = || {
        gateway_post(
            &etcd.base_url(),
            "/v3/kv/range",
            &json!({"key": b64(key.as_bytes())}),
            None,
        )
        .expect("range the lock key")
    };
    let guard = store.lock(&owner("dropper"), Duration::ZERO).expect("lock");
    let held = range();
    let kv = &held["kvs"][0];
    assert!(
        kv["lease"].as_str().is_some(),
        "the lock key has a lease: {held}"
    );
    drop(guard);
    assert!(range().get("kvs").is_none(), "the lock key is gone");
}

fn many_users(n: usize) -> Vec<Change> {
    (0..n)
        .map(|i| put_user(&format!("user-{i:05}"), user_record(&format!("User {i}"))))
        .collect()
}

/// 10,000 users go in chunks under one lock; a paginated read returns them all
/// at the new serial.
#[test]
fn chunked_commit_of_10000_users_then_paginated_read() {
    let etcd = Etcd::start();
    let url = format!("etcd://{}/big", etcd.endpoint());
    let writer = open(&url);
    let version = commit_locked(
        writer.as_ref(),
        writer.read().expect("read").version_or_new(),
        many_users(10_000),
    )
    .expect("chunked commit");
    assert_eq!(version.serial, 1);
    let reader = EtcdStore::open_with(
        &url,
        EtcdConfig {
            page_size: 700,
            ..EtcdConfig::default()
        },
    )
    .expect("open reader");
    let snap = reader.read().expect("paginated read");
    assert_eq!(snap.version, Some(version));
    assert_eq!(snap.users.len(), 10_000);
    assert!(snap.users.values().all(|u| u.meta.serial == 1));
    assert_eq!(
        snap.users["user-09999"].spec.display_name, "User 9999",
        "the last page is there"
    );
}

/// A commit that crashed between chunks left some resources written and the
/// serial unchanged: the next read sees them at the old version, and both a
/// fresh plan and the plan saved before the crash converge.
#[test]
fn crash_between_chunks_is_visible_and_converges() {
    let etcd = Etcd::start();
    let url = format!("etcd://{}/crash", etcd.endpoint());
    let store = EtcdStore::open_with(&url, EtcdConfig::default()).expect("open");
    let v1 = commit_on_top(&store, vec![put_user("existing", user_record("Existing"))]);
    // What the first chunk of a commit to serial 2 writes, then the process died.
    for i in 0..3 {
        let mut record = user_record(&format!("User {i}"));
        record.meta.serial = 2;
        let key = format!("{}r/user/user-{i:05}", store.prefix());
        gateway_post(
            &etcd.base_url(),
            "/v3/kv/put",
            &json!({"key": b64(key.as_bytes()), "value": b64(&serde_json::to_vec(&record).expect("json"))}),
            None,
        )
        .expect("write the first chunk");
    }
    let seen = store.read().expect("read after the crash");
    assert_eq!(seen.version, Some(v1.clone()), "the serial did not move");
    assert_eq!(seen.users.len(), 4, "the written chunk is visible");
    // The plan saved before the crash (base v1) still applies, and converges.
    let v2 = commit_locked(&store, v1, many_users(6)).expect("re-run the saved plan");
    assert_eq!(v2.serial, 2);
    let after = store.read().expect("read");
    assert_eq!(after.users.len(), 7);
    assert!(
        after
            .users
            .iter()
            .filter(|(n, _)| n.starts_with("user-"))
            .all(|(_, u)| u.meta.serial == 2)
    );
}

/// Two appliers read the same version; the second commit is refused as stale
/// even though it holds the lock, and writes nothing.
#[test]
fn commit_against_a_stale_version_is_refused() {
    let etcd = Etcd::start();
    let url = format!("etcd://{}/stale", etcd.endpoint());
    let a = roster::store::open(&url, &OpenOptions::default()).expect("open a");
    let b = roster::store::open(&url, &OpenOptions::default()).expect("open b");
    commit_on_top(a.as_ref(), vec![put_user("seed", user_record("Seed"))]);
    let seen_by_a = a.read().expect("read a").version_or_new();
    let seen_by_b = b.read().expect("read b").version_or_new();
    commit_locked(
        a.as_ref(),
        seen_by_a,
        vec![put_user("from-a", user_record("A"))],
    )
    .expect("a commits first");
    let before = b.read().expect("read");
    let err = commit_locked(
        b.as_ref(),
        seen_by_b,
        vec![put_user("from-b", user_record("B"))],
    )
    .expect_err("b's plan is stale");
    assert!(
        matches!(
            err,
            StoreError::Stale {
                expected: 1,
                found: 2
            }
        ),
        "expected Stale 1 -> 2, got {err}"
    );
    assert_eq!(b.read().expect("read"), before, "nothing was written");
}

/// Read, add the users that are missing, commit; repeated until nothing is
/// missing. Errors while the cluster recovers must be clean (they name an
/// endpoint); the loop is bounded.
fn converge(store: &dyn StateStore, wanted: &BTreeSet<String>) -> Vec<String> {
    let mut errors = Vec::new();
    for _ in 0..15 {
        let attempt = || -> Result<usize, StoreError> {
            let snap = store.read()?;
            let missing: Vec<Change> = wanted
                .iter()
                .filter(|n| !snap.users.contains_key(*n))
                .map(|n| put_user(n, user_record(n)))
                .collect();
            let count = missing.len();
            if count > 0 {
                commit_locked(store, snap.version_or_new(), missing)?;
            }
            Ok(count)
        };
        match attempt() {
            Ok(0) => return errors,
            Ok(_) => {}
            Err(e) => {
                let text = e.to_string();
                assert!(
                    text.contains("127.0.0.1:")
                        || matches!(e, StoreError::Stale { .. } | StoreError::Locked { .. }),
                    "an error names the endpoint: {text}"
                );
                errors.push(text);
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
    panic!("did not converge; errors: {errors:#?}");
}

/// A three-member cluster loses its first member in the middle of a chunked
/// commit: the store fails over to the others (or fails cleanly), and a re-run
/// converges.
#[test]
fn three_member_cluster_survives_a_killed_member() {
    let mut members = Etcd::cluster(3);
    let url = format!(
        "etcd://{}/cluster",
        members
            .iter()
            .map(Etcd::endpoint)
            .collect::<Vec<_>>()
            .join(",")
    );
    let wanted: BTreeSet<String> = (0..1500).map(|i| format!("user-{i:05}")).collect();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let writer_url = url.clone();
    let writer_wanted = wanted.clone();
    let writer = std::thread::spawn(move || {
        let store = open(&writer_url);
        let changes: Vec<Change> = writer_wanted
            .iter()
            .map(|n| put_user(n, user_record(n)))
            .collect();
        let _ = started_tx.send(());
        commit_locked(
            store.as_ref(),
            roster::store::Version {
                lineage: String::new(),
                serial: 0,
            },
            changes,
        )
        .map_err(|e| e.to_string())
    });
    started_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("writer started");
    std::thread::sleep(Duration::from_millis(200));
    members[0].kill();
    let first = writer.join().expect("writer thread panicked");
    if let Err(e) = &first {
        assert!(
            e.contains("127.0.0.1:"),
            "a clean error names endpoints: {e}"
        );
    }
    // Re-run (through the same URL, dead member first) until converged.
    let store = open(&url);
    let errors = converge(store.as_ref(), &wanted);
    let snap = store.read().expect("read after convergence");
    let found: BTreeSet<String> = snap.users.keys().cloned().collect();
    assert_eq!(found, wanted);
    eprintln!("first commit: {first:?}; errors while converging: {errors:?}");
    // And the surviving members agree.
    for m in &members[1..] {
        let direct = open(&format!("etcd://{}/cluster", m.endpoint()));
        assert_eq!(
            direct.read().expect("read a survivor").users.len(),
            wanted.len()
        );
    }
}

#[test]
fn authentication_with_user_and_password() {
    const PASSWORD: &str = "s3cret-root-pw-9f27";
    const WRONG: &str = "wrong-pw-71c3e";
    // A 1 s token TTL, so tokens expire between operations and are renewed.
    let etcd = Etcd::start_with(&["--auth-token", "simple", "--auth-token-ttl", "1"]);
    enable_auth(&etcd.base_url(), PASSWORD);
    let url = format!("etcd://{}/authed", etcd.endpoint());
    let env = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let open_with_env = |vars: BTreeMap<String, String>| {
        let config = EtcdConfig::from_options(&OpenOptions::default(), |k| vars.get(k).cloned())
            .expect("config from the environment");
        EtcdStore::open_with(&url, config).expect("open")
    };

    let good = open_with_env(env(&[(USER_ENV, "root"), (PASSWORD_ENV, PASSWORD)]));
    assert!(
        !format!("{good:?}").contains(PASSWORD),
        "Debug never shows the password"
    );
    let v1 = commit_on_top(&good, vec![put_user("authed", user_record("Authed"))]);
    // Let the token expire; the next calls authenticate again.
    std::thread::sleep(Duration::from_millis(2500));
    let snap = good.read().expect("read with a renewed token");
    assert_eq!(snap.version, Some(v1));
    assert_eq!(good.history().expect("history"), vec![]);

    let wrong = open_with_env(env(&[(USER_ENV, "root"), (PASSWORD_ENV, WRONG)]));
    let err = wrong.read().expect_err("a wrong password is refused");
    let text = err.to_string();
    assert!(
        text.contains("authentication as user \"root\" failed"),
        "{text}"
    );
    assert!(
        text.contains(&etcd.endpoint()),
        "names the endpoint: {text}"
    );
    assert!(!text.contains(WRONG) && !text.contains(PASSWORD), "{text}");

    let anonymous = open_with_env(env(&[]));
    let err = anonymous.read().expect_err("no credentials: refused");
    assert!(err.to_string().contains(USER_ENV), "{err}");

    let half = EtcdConfig::from_options(&OpenOptions::default(), |k| {
        (k == USER_ENV).then(|| "root".to_string())
    })
    .expect_err("a user without a password is refused");
    assert!(half.to_string().contains(PASSWORD_ENV), "{half}");
}

/// `etcd+https://` with a private CA and a client certificate (etcd runs with
/// `--client-cert-auth`); without the client certificate it fails clearly.
#[test]
fn tls_with_ca_and_client_certificate() {
    let tls = common::etcd::TlsFiles::generate();
    let etcd = Etcd::start_tls(&tls);
    let url = format!("etcd+https://{}/tls", etcd.endpoint());
    let options = OpenOptions {
        ca_file: Some(tls.ca.clone()),
        client_cert: Some(tls.client_cert.clone()),
        client_key: Some(tls.client_key.clone()),
        ..OpenOptions::default()
    };
    let config = EtcdConfig::from_options(&options, |_| None).expect("config");
    let store = EtcdStore::open_with(&url, config).expect("open over TLS");
    let v1 = commit_on_top(&store, vec![put_user("tls-user", user_record("TLS user"))]);
    assert_eq!(store.read().expect("read over TLS").version, Some(v1));

    let no_client_cert = OpenOptions {
        ca_file: Some(tls.ca.clone()),
        ..OpenOptions::default()
    };
    let config = EtcdConfig::from_options(&no_client_cert, |_| None).expect("config");
    let err = EtcdStore::open_with(&url, config)
        .expect("open")
        .read()
        .expect_err("etcd requires a client certificate");
    assert!(err.to_string().contains(&etcd.endpoint()), "{err}");
}

/// Issue 16: a hash placed in another field of etcd-stored data came back in
/// ``unknown variant `$argon2id$…` ``; every quoted stored value is redacted.
#[test]
fn hashes_in_other_fields_of_etcd_data_are_redacted_in_errors() {
    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA";
    let etcd = Etcd::start();
    let url = format!("etcd://{}/redact", etcd.endpoint());
    let store = EtcdStore::open_with(&url, EtcdConfig::default()).expect("open");
    commit_on_top(&store, vec![put_user("a", user_record("A"))]);
    let key = format!("{}r/user/a", store.prefix());
    let good = serde_json::to_value(user_record("A")).unwrap();
    let plant: [&dyn Fn(&mut serde_json::Value); 3] = [
        &|v| v["spec"]["class"] = HASH.into(),
        &|v| v["spec"]["set_rights"] = json!({"salary": HASH}),
        &|v| v["spec"]["authentication"] = HASH.into(),
    ];
    for (i, f) in plant.iter().enumerate() {
        let mut v = good.clone();
        f(&mut v);
        gateway_post(
            &etcd.base_url(),
            "/v3/kv/put",
            &json!({"key": b64(key.as_bytes()), "value": b64(&serde_json::to_vec(&v).unwrap())}),
            None,
        )
        .expect("plant the hash");
        let err = store.read().expect_err("corrupt data").to_string();
        assert!(
            !err.contains("argon2") && !err.contains("c2FsdHNh"),
            "{i}: {err}"
        );
        assert!(err.contains("is corrupt"), "{i}: {err}");
    }
}

/// Issue 16: plain `etcd://` sent the password and auth token in clear text
/// to any host, and TLS flags on it were silently ignored.
#[test]
fn plain_etcd_with_credentials_to_a_remote_host_or_tls_flags_is_refused() {
    let creds = |k: &str| match k {
        k if k == USER_ENV => Some("root".to_string()),
        k if k == PASSWORD_ENV => Some("pa/ss-CANARY".to_string()),
        _ => None,
    };
    let open = |url: &str, options: &OpenOptions, with_creds: bool| {
        let config = if with_creds {
            EtcdConfig::from_options(options, creds)
        } else {
            EtcdConfig::from_options(options, |_| None)
        }
        .expect("config");
        EtcdStore::open_with(url, config).map(|_| ())
    };
    let plain = OpenOptions::default();
    let remote = "etcd://10.1.2.3:2379/roster";
    let err = open(remote, &plain, true)
        .expect_err("credentials in clear text")
        .to_string();
    assert!(
        err.contains("clear text") && err.contains("etcd+https://"),
        "{err}"
    );
    assert!(!err.contains("CANARY"), "{err}");
    // Loopback, no credentials, or an explicit opt-in: allowed.
    open("etcd://127.0.0.1:2379/roster", &plain, true).expect("loopback");
    open("etcd://localhost:2379/roster", &plain, true).expect("loopback");
    open(remote, &plain, false).expect("no credentials");
    let insecure = OpenOptions {
        allow_insecure_http: true,
        ..OpenOptions::default()
    };
    open(remote, &insecure, true).expect("--allow-insecure-http");
    // One remote endpoint among loopback ones is remote.
    open("etcd://127.0.0.1:2379,10.1.2.3:2379/roster", &plain, true).expect_err("a remote member");
    // TLS flags with a plain URL are an error, not ignored, even on loopback.
    for options in [
        OpenOptions {
            ca_file: Some("ca.pem".into()),
            ..OpenOptions::default()
        },
        OpenOptions {
            client_cert: Some("c.pem".into()),
            client_key: Some("k.pem".into()),
            ..OpenOptions::default()
        },
    ] {
        let err = open("etcd://127.0.0.1:2379/roster", &options, false)
            .expect_err("TLS flags on etcd://")
            .to_string();
        assert!(err.contains("need etcd+https://"), "{err}");
    }
}

/// Issue 16: store URLs with user info, a bad port or a password holding `/`
/// were echoed whole in errors. The binary redacts user info and query
/// strings from every URL it prints.
#[test]
fn store_urls_in_errors_never_show_user_info_or_query_strings() {
    let dir = tempfile::tempdir().expect("tempdir");
    for url in [
        "scim+https://admin:hunter2CANARY@scim.example/v2",
        "scim+https://scim.example:99999/v2?token=hunter2CANARY",
        "etcd://root:pa/ss-hunter2CANARY@10.0.0.1:2379/roster",
        "etcd://root:hunter2CANARY@10.0.0.1:70000/roster",
        "etcd+https://10.0.0.1:2379/roster?password=hunter2CANARY",
        "nosuch://u:hunter2CANARY@h/",
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_roster"))
            .args(["export", "--store", url])
            .current_dir(dir.path())
            .env("ROSTER_SCIM_TOKEN", "t")
            .env_remove("ROSTER_STORE")
            .output()
            .expect("run roster");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(1), "{url}: {all}");
        assert!(
            !all.contains("CANARY") && !all.contains("hunter2"),
            "{url}: {all}"
        );
        assert!(all.contains("***"), "{url}: {all}");
    }
}
