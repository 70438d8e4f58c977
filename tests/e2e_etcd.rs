//! End to end on a real etcd: the `roster` binary (`plan`, `apply`) against
//! `etcd://127.0.0.1:PORT/PREFIX` (harness in `tests/common/etcd.rs`): the
//! bundled examples converge; 20 applies started at once against one prefix
//! are serialized by the lock (refused naming the holder with
//! `--lock-timeout 0s`, all applied in turn with `--lock-timeout 60s`) and
//! end in the state a serial run gives (no lost update); a stale saved plan
//! is refused.
//!
//! Talks only to 127.0.0.1; etcd is killed by pid when its guard drops.

#[allow(dead_code)]
#[path = "common/etcd.rs"]
mod etcd_harness;

#[path = "common/cli.rs"]
mod cli;
use cli::{code, copy_dir, show, stderr, stdout};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use etcd_harness::Etcd;
use roster::store::etcd::{EtcdConfig, EtcdStore};
use roster::store::{Snapshot, StateStore};

const EXAMPLES: [&str; 3] = ["avanti", "iris-hr", "avaamo"];
const PROCESSES: usize = 20;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn roster_cmd(dir: &Path, url: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_roster"));
    cmd.args(args)
        .args(["--store", url])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("ROSTER_STORE")
        .env_remove("ROSTER_ETCD_USER")
        .env_remove("ROSTER_ETCD_PASSWORD")
        .env_remove("RUST_LOG");
    cmd
}

fn roster(dir: &Path, url: &str, args: &[&str]) -> Output {
    roster_cmd(dir, url, args).output().expect("run roster")
}

fn read(url: &str) -> Snapshot {
    EtcdStore::open_with(url, EtcdConfig::default())
        .expect("open the etcd store")
        .read()
        .expect("read the etcd store")
}

#[test]
fn the_three_examples_converge_on_etcd() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    for name in EXAMPLES {
        let config = dir.path().join(name);
        copy_dir(&root().join("examples").join(name), &config);
        let url = format!("etcd://{}/roster-{name}", etcd.endpoint());
        let plan = roster(dir.path(), &url, &["plan", name, "--detailed-exitcode"]);
        assert_eq!(code(&plan), 2, "{}", show(&plan));
        let secrets = format!("{name}-secrets.json");
        let apply = roster(
            dir.path(),
            &url,
            &["apply", name, "--yes", "--secrets-out", &secrets],
        );
        assert_eq!(code(&apply), 0, "{}", show(&apply));
        let replan = roster(dir.path(), &url, &["plan", name, "--detailed-exitcode"]);
        assert_eq!(code(&replan), 0, "{}", show(&replan));
        assert!(stdout(&replan).contains("No changes."), "{}", show(&replan));

        let desired = roster::load::load(&[config]).expect("the example loads");
        let snap = read(&url);
        assert_eq!(snap.version.as_ref().map(|v| v.serial), Some(1));
        let users: BTreeSet<&String> = snap.users.keys().collect();
        assert_eq!(users, desired.users.keys().collect(), "{name}: users");
        for (user, spec) in &desired.users {
            assert_eq!(&snap.users[user].spec, spec, "{name}: user {user}");
        }
        for (group, spec) in &desired.groups {
            assert_eq!(&snap.groups[group].spec, spec, "{name}: group {group}");
        }
        for (role, spec) in &desired.roles {
            assert_eq!(&snap.roles[role].spec, spec, "{name}: role {role}");
        }
        assert_eq!(
            snap.assignments.keys().collect::<Vec<_>>(),
            desired.assignments.keys().collect::<Vec<_>>(),
            "{name}: role assignments"
        );
    }
    // The prefixes are independent stores.
    let other = read(&format!("etcd://{}/roster-none", etcd.endpoint()));
    assert_eq!(other, Snapshot::default());
}

/// Shared by every concurrent apply: 4 users, no credentials (nothing to hash).
const BASE: &str = r#"
roles:
  employee-reader:
    permissions: [employee.read]
groups:
  integrations:
    roles: [employee-reader]
users:
  timeclock:
    display_name: Time collection
    groups: [integrations]
  benefits:
    display_name: Benefits sync
    groups: [integrations]
  survey:
    display_name: Engagement survey
    roles: [employee-reader]
  payroll-export:
    display_name: Payroll export
    set_rights: { personal: read }
"#;

fn extra_user(k: usize) -> String {
    format!("extra-{k:02}")
}

/// `DIR/base.yaml` and, for `Some(k)`, `DIR/extra.yaml` with user `extra-k`.
fn config_dir(parent: &Path, name: &str, extra: Option<usize>) -> PathBuf {
    let dir = parent.join(name);
    fs::create_dir_all(&dir).expect("mkdir");
    fs::write(dir.join("base.yaml"), BASE).expect("write base");
    if let Some(k) = extra {
        fs::write(
            dir.join("extra.yaml"),
            format!(
                "users:\n  {}:\n    display_name: Extra {k}\n    groups: [integrations]\n",
                extra_user(k)
            ),
        )
        .expect("write extra");
    }
    dir
}

/// What must be equal between two runs: every resource's spec and whether
/// roster manages it, and the serial (not timestamps or lineages).
fn essence(s: &Snapshot) -> String {
    let users: Vec<_> = s
        .users
        .iter()
        .map(|(n, r)| (n, &r.spec, r.managed))
        .collect();
    let groups: Vec<_> = s.groups.iter().map(|(n, r)| (n, &r.spec)).collect();
    let roles: Vec<_> = s.roles.iter().map(|(n, r)| (n, &r.spec)).collect();
    format!(
        "serial {:?}\nusers {users:#?}\ngroups {groups:#?}\nroles {roles:#?}\nassignments {:?}",
        s.version.as_ref().map(|v| v.serial),
        s.assignments.keys().collect::<Vec<_>>()
    )
}

/// The order in which the extra users were applied, from the store: each
/// apply after the first deactivates the previous one's user (it is not in
/// its config), so sorting by the serial of the last change, with the still
/// active user last, gives the order.
fn applied_order(snap: &Snapshot) -> Vec<usize> {
    let mut extras: Vec<(u64, bool, usize)> = snap
        .users
        .iter()
        .filter_map(|(name, r)| {
            let k = name.strip_prefix("extra-")?.parse().ok()?;
            Some((r.meta.serial, r.spec.active, k))
        })
        .collect();
    extras.sort();
    extras.into_iter().map(|(_, _, k)| k).collect()
}

/// Run 20 applies at once, each with the shared base and its own extra user.
/// Returns the outputs in k order and the pids.
fn race(etcd: &Etcd, prefix: &str, lock_timeout: &str) -> (tempfile::TempDir, Vec<(u32, Output)>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("etcd://{}/{prefix}", etcd.endpoint());
    config_dir(dir.path(), "base", None);
    let first = roster(dir.path(), &url, &["apply", "base", "--yes"]);
    assert_eq!(code(&first), 0, "{}", show(&first));
    let dirs: Vec<String> = (0..PROCESSES)
        .map(|k| {
            let name = format!("c{k:02}");
            config_dir(dir.path(), &name, Some(k));
            name
        })
        .collect();
    let children: Vec<_> = dirs
        .iter()
        .map(|name| {
            roster_cmd(
                dir.path(),
                &url,
                &["apply", name, "--yes", "--lock-timeout", lock_timeout],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start roster apply")
        })
        .collect();
    let outputs = children
        .into_iter()
        .map(|c| {
            let pid = c.id();
            (pid, c.wait_with_output().expect("roster apply ends"))
        })
        .collect();
    (dir, outputs)
}

/// Replay `order` one apply at a time on a fresh prefix; the snapshot.
fn serial_run(etcd: &Etcd, prefix: &str, order: &[usize]) -> Snapshot {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("etcd://{}/{prefix}", etcd.endpoint());
    config_dir(dir.path(), "base", None);
    let a = roster(dir.path(), &url, &["apply", "base", "--yes"]);
    assert_eq!(code(&a), 0, "{}", show(&a));
    for &k in order {
        let name = format!("c{k:02}");
        config_dir(dir.path(), &name, Some(k));
        let a = roster(dir.path(), &url, &["apply", &name, "--yes"]);
        assert_eq!(code(&a), 0, "{}", show(&a));
    }
    read(&url)
}

#[test]
fn twenty_applies_at_once_without_waiting_are_applied_or_refused_naming_the_holder() {
    let etcd = Etcd::start();
    let (_dir, outputs) = race(&etcd, "race0", "0s");
    let pids: BTreeSet<u32> = outputs.iter().map(|(p, _)| *p).collect();
    let mut applied = BTreeSet::new();
    for (k, (pid, out)) in outputs.iter().enumerate() {
        match code(out) {
            0 => {
                assert!(stderr(out).contains("Apply complete: "), "{}", show(out));
                applied.insert(k);
            }
            1 => {
                let err = stderr(out);
                let holder = err
                    .split("the store is locked by pid ")
                    .nth(1)
                    .unwrap_or_else(|| panic!("apply {k} failed otherwise:\n{}", show(out)));
                let holder_pid: u32 = holder
                    .split_whitespace()
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| panic!("no holder pid:\n{}", show(out)));
                assert_ne!(holder_pid, *pid, "{}", show(out));
                assert!(pids.contains(&holder_pid), "holder is one of the 20: {err}");
                assert!(
                    holder.contains(" on ") && holder.contains(" since "),
                    "{err}"
                );
            }
            _ => panic!("apply {k}:\n{}", show(out)),
        }
    }
    assert!(!applied.is_empty(), "at least one apply took the lock");
    let url = format!("etcd://{}/race0", etcd.endpoint());
    let snap = read(&url);
    let order = applied_order(&snap);
    let got: BTreeSet<usize> = order.iter().copied().collect();
    assert_eq!(got, applied, "exactly the applied extras are in the store");
    assert_eq!(
        snap.version.as_ref().map(|v| v.serial),
        Some(1 + applied.len() as u64),
        "one serial per apply"
    );
    let serial = serial_run(&etcd, "serial0", &order);
    assert_eq!(essence(&snap), essence(&serial));
}

#[test]
fn twenty_applies_at_once_with_a_lock_timeout_all_apply_in_turn() {
    let etcd = Etcd::start();
    let (_dir, outputs) = race(&etcd, "race60", "60s");
    for (k, (_, out)) in outputs.iter().enumerate() {
        assert_eq!(code(out), 0, "apply {k}:\n{}", show(out));
    }
    let url = format!("etcd://{}/race60", etcd.endpoint());
    let snap = read(&url);
    let order = applied_order(&snap);
    assert_eq!(order.len(), PROCESSES, "every extra user is in the store");
    assert_eq!(
        snap.version.as_ref().map(|v| v.serial),
        Some(1 + PROCESSES as u64)
    );
    let active: Vec<&String> = snap
        .users
        .iter()
        .filter(|(n, u)| n.starts_with("extra-") && u.spec.active)
        .map(|(n, _)| n)
        .collect();
    assert_eq!(active, vec![&extra_user(order[PROCESSES - 1])]);
    let history = roster(Path::new("."), &url, &["history", "--format", "json"]);
    let entries: serde_json::Value = serde_json::from_str(&stdout(&history)).expect("history");
    assert_eq!(
        entries.as_array().map(Vec::len),
        Some(1 + PROCESSES),
        "one audit entry per apply"
    );
    let serial = serial_run(&etcd, "serial60", &order);
    assert_eq!(essence(&snap), essence(&serial));
}

#[test]
fn a_stale_saved_plan_is_refused_on_etcd() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("etcd://{}/stale", etcd.endpoint());
    config_dir(dir.path(), "base", None);
    let a = roster(dir.path(), &url, &["apply", "base", "--yes"]);
    assert_eq!(code(&a), 0, "{}", show(&a));
    config_dir(dir.path(), "mine", Some(1));
    let p = roster(dir.path(), &url, &["plan", "mine", "--out", "p.json"]);
    assert_eq!(code(&p), 0, "{}", show(&p));
    // Someone else applies first.
    config_dir(dir.path(), "theirs", Some(2));
    let a = roster(dir.path(), &url, &["apply", "theirs", "--yes"]);
    assert_eq!(code(&a), 0, "{}", show(&a));
    let stale = roster(dir.path(), &url, &["apply", "--plan", "p.json", "--yes"]);
    assert_eq!(code(&stale), 1, "{}", show(&stale));
    assert!(
        stderr(&stale).contains(
            "the store changed since this plan was made: serial 2, plan made at serial 1"
        ),
        "{}",
        show(&stale)
    );
    let snap = read(&url);
    assert!(!snap.users.contains_key(&extra_user(1)), "nothing applied");
    assert_eq!(snap.version.as_ref().map(|v| v.serial), Some(2));
    // A fresh plan applies.
    let p = roster(dir.path(), &url, &["plan", "mine", "--out", "p2.json"]);
    assert_eq!(code(&p), 0, "{}", show(&p));
    let ok = roster(dir.path(), &url, &["apply", "--plan", "p2.json", "--yes"]);
    assert_eq!(code(&ok), 0, "{}", show(&ok));
    assert!(read(&url).users[&extra_user(1)].spec.active);
}

/// etcd's current revision (raised by every write, even a lock taken and released).
fn revision(etcd: &etcd_harness::Etcd) -> u64 {
    let resp: serde_json::Value = reqwest::blocking::Client::new()
        .post(format!("{}/v3/kv/range", etcd.base_url()))
        .body(r#"{"key":"AA=="}"#)
        .send()
        .expect("range")
        .json()
        .expect("range JSON");
    resp["header"]["revision"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .expect("revision")
}

#[test]
fn read_only_commands_never_write_to_etcd() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("etcd://{}/readonly", etcd.endpoint());
    config_dir(dir.path(), "base", None);
    let a = roster(dir.path(), &url, &["apply", "base", "--yes"]);
    assert_eq!(code(&a), 0, "{}", show(&a));
    config_dir(dir.path(), "changed", Some(7));
    let before = revision(&etcd);
    for args in [
        &["validate", "changed"][..],
        &["plan", "changed"],
        &["plan", "changed", "--format", "json", "--detailed-exitcode"],
        &["plan", "changed", "--out", "p.json"],
        &["show", "p.json"],
        &["export"],
        &["history"],
    ] {
        let out = roster(dir.path(), &url, args);
        assert!(matches!(code(&out), 0 | 2), "{args:?}: {}", show(&out));
        assert_eq!(
            revision(&etcd),
            before,
            "`roster {}` wrote to etcd",
            args.join(" ")
        );
    }
    // A plan against a prefix that does not exist creates nothing.
    let empty = format!("etcd://{}/never-written", etcd.endpoint());
    let out = roster(dir.path(), &empty, &["plan", "base"]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert_eq!(revision(&etcd), before);
    // The probe sees writes: an apply moves the revision.
    let a = roster(dir.path(), &url, &["apply", "changed", "--yes"]);
    assert_eq!(code(&a), 0, "{}", show(&a));
    assert!(revision(&etcd) > before);
}
