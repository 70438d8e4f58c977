//! 20 `roster apply` processes at once on one file store (issue 8, item 2).
//!
//! Each process applies its own config (a base plus one user of its own).
//! Whatever the interleaving, the outcome must be exactly a serialization:
//! the successful applies got consecutive serials, the history records
//! exactly them, the final state is the config of the last one (no lost or
//! mixed update), and every refused apply says why: the lock holder (pid and
//! host) or a stale plan, never a half-done change.

mod reliability_support;

use std::collections::BTreeSet;
use std::process::{Child, Stdio};

use reliability_support::{Work, hashes, load_state, read_secrets, text};
use serde_json::Value;

const N: usize = 20;

fn config(tag: &str, i: usize) -> String {
    format!(
        "settings:\n  argon2: {{ memory_kib: 8192, iterations: 1 }}\n  max_removal_fraction: 1.0\n\
         roles:\n  reader:\n    permissions: [payroll.read]\n\
         users:\n  shared:\n    display_name: Written by apply {tag}-{i}\n    roles: [reader]\n\
         \x20 own-{i}:\n    display_name: Only apply {i}\n    credentials: {{ token: true }}\n"
    )
}

struct Round {
    successes: Vec<(usize, u64)>,
    locked: usize,
    stale: usize,
}

fn round(work: &Work, lock_timeout: &str, tag: &str) -> Round {
    for i in 0..N {
        let dir = work.path(&format!("config-{tag}-{i}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("main.yaml"), config(tag, i)).expect("write config");
    }
    let children: Vec<(usize, Child)> = (0..N)
        .map(|i| {
            let cfg = format!("config-{tag}-{i}");
            let secrets = format!("secrets/{tag}-{i}.json");
            let child = work
                .command(&[
                    "apply",
                    &cfg,
                    "--yes",
                    "--allow-mass-removal",
                    "--lock-timeout",
                    lock_timeout,
                    "--secrets-out",
                    &secrets,
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn roster");
            (i, child)
        })
        .collect();
    let pids: BTreeSet<u32> = children.iter().map(|(_, c)| c.id()).collect();
    let host = gethostname();
    let mut r = Round {
        successes: Vec::new(),
        locked: 0,
        stale: 0,
    };
    for (i, child) in children {
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() {
            let serial = stderr
                .split("Store now at serial ")
                .nth(1)
                .and_then(|s| s.trim_end().trim_end_matches('.').parse::<u64>().ok())
                .unwrap_or_else(|| panic!("apply {i}: no serial reported: {}", text(&out)));
            r.successes.push((i, serial));
            continue;
        }
        assert_eq!(out.status.code(), Some(1), "apply {i}: {}", text(&out));
        if stderr.contains("the store is locked by pid ") {
            // The message names a holder that is one of the 20, on this host.
            let pid: u32 = stderr
                .split("the store is locked by pid ")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("apply {i}: unparsable holder: {stderr}"));
            assert!(
                pids.contains(&pid),
                "apply {i}: holder pid {pid} is not one of ours"
            );
            assert!(
                stderr.contains(&format!(" on {host} since ")),
                "apply {i}: {stderr}"
            );
            r.locked += 1;
        } else if stderr.contains("the store changed since this plan was made") {
            r.stale += 1;
        } else {
            panic!("apply {i} failed for another reason: {}", text(&out));
        }
        // A refused apply wrote no secrets file.
        assert!(
            !work.path(&format!("secrets/{tag}-{i}.json")).exists(),
            "apply {i} was refused but wrote secrets"
        );
    }
    r
}

fn gethostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_string()
}

fn check_serialized(work: &Work, r: &Round, serial_before: u64, history_before: usize, tag: &str) {
    assert!(!r.successes.is_empty(), "{tag}: no apply succeeded");
    assert_eq!(r.successes.len() + r.locked + r.stale, N);
    let mut serials: Vec<u64> = r.successes.iter().map(|(_, s)| *s).collect();
    serials.sort();
    let expected: Vec<u64> = (serial_before + 1..=serial_before + serials.len() as u64).collect();
    assert_eq!(serials, expected, "{tag}: serials are not consecutive");
    let state: Value = load_state(work).expect("state exists");
    assert_eq!(state["serial"].as_u64(), expected.last().copied());
    let history = state["history"].as_array().expect("history");
    assert_eq!(
        history.len(),
        history_before + r.successes.len(),
        "{tag}: history does not record exactly the successful applies"
    );
    // The final state is the config of the last successful apply, whole.
    let (last, _) = *r.successes.iter().max_by_key(|(_, s)| *s).unwrap();
    let users = state["users"].as_object().expect("users");
    assert_eq!(
        users["shared"]["spec"]["display_name"].as_str(),
        Some(format!("Written by apply {tag}-{last}").as_str()),
        "{tag}: lost update"
    );
    assert_eq!(users[&format!("own-{last}")]["spec"]["active"], true);
    let active: Vec<&String> = users
        .iter()
        .filter(|(n, u)| n.starts_with("own-") && u["spec"]["active"] == true)
        .map(|(n, _)| n)
        .collect();
    assert_eq!(active.len(), 1, "{tag}: mixed update: {active:?} active");
    // Every token hash in the store verifies against the secrets file of the
    // apply that generated it.
    for ((user, kind), hash) in hashes(&state) {
        let i: usize = user.trim_start_matches("own-").parse().expect("user index");
        let found = [tag, "a", "b"].iter().any(|t| {
            read_secrets(&work.path(&format!("secrets/{t}-{i}.json"))).is_some_and(|s| {
                s.get(&(user.clone(), kind.clone()))
                    .is_some_and(|v| roster::secret::verify_secret(v, &hash))
            })
        });
        assert!(
            found,
            "{tag}: the {kind} hash of {user} has no emitted secret"
        );
    }
    let cfg = work.path(&format!("config-{tag}-{last}"));
    let plan = work.run(&["plan", cfg.to_str().unwrap(), "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
}

#[test]
fn twenty_concurrent_applies_serialize_without_lost_updates() {
    let work = Work::new();
    // Round a: no waiting, most are refused with the holder's name.
    let a = round(&work, "0s", "a");
    check_serialized(&work, &a, 0, 0, "a");
    let serial = load_state(&work).unwrap()["serial"].as_u64().unwrap();
    let history = a.successes.len();
    // Round b: everybody waits for the lock; the ones that planned against an
    // older serial are refused as stale, never applied over a newer state.
    let b = round(&work, "60s", "b");
    assert_eq!(b.locked, 0, "round b waited for the lock");
    check_serialized(&work, &b, serial, history, "b");
    eprintln!(
        "concurrency: round a (lock-timeout 0s): {} applied, {} locked out, {} stale; \
         round b (60s): {} applied, {} stale",
        a.successes.len(),
        a.locked,
        a.stale,
        b.successes.len(),
        b.stale
    );
}
