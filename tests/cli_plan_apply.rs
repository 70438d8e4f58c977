//! End-to-end tests of `roster plan` / `apply` / `show` / `export` / `history`
//! on the embedded file store, run as a user would run them (the real binary,
//! real files in a temporary directory).

#[path = "common/cli.rs"]
mod cli;
use cli::{code, stderr, stdout};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use roster::secret::verify_secret;
use serde_json::Value;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("config")).expect("config dir");
        Env { dir }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn write(&self, name: &str, text: &str) {
        fs::write(self.path("config").join(name), text).expect("write config");
    }
    fn remove(&self, name: &str) {
        fs::remove_file(self.path("config").join(name)).expect("remove config");
    }
    fn roster(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_roster"))
            .args(args)
            .current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .env_remove("ROSTER_STORE")
            .output()
            .expect("run roster")
    }
    fn state(&self) -> Value {
        let text = fs::read_to_string(self.path(".roster/state.json")).expect("state file");
        serde_json::from_str(&text).expect("state is JSON")
    }
}

const BASE: &str = r#"
roles:
  payroll-reader:
    description: Read payroll records
    permissions: [payroll.read]
  employee-reader:
    permissions: [employee.read, employee.positions.read]
groups:
  hr-integrations:
    roles: [payroll-reader]
    companies: [ACME]
    pay_groups: [BIWEEKLY]
users:
  qlearsite:
    display_name: Qlearsite engagement survey
    email: qlearsite-api@acme.example
    groups: [hr-integrations]
    set_rights: { personal: read, contract: read }
    credentials: { password: true }
  timeclock:
    display_name: Time collection
    email: timeclock@acme.example
    roles: [employee-reader]
    credentials: { token: true }
  payroll-export:
    display_name: Payroll export
    credentials: { password: true, token: true }
  benefits:
    display_name: Benefits sync
    roles: [employee-reader]
role_assignments:
  - role: payroll-reader
    user: qlearsite
    positions: [PAYROLL-CLERK]
"#;

fn secrets(path: &Path) -> Vec<(String, String, String)> {
    let v: Value = serde_json::from_str(&fs::read_to_string(path).expect("secrets file"))
        .expect("secrets JSON");
    v["secrets"]
        .as_array()
        .expect("secrets array")
        .iter()
        .map(|s| {
            (
                s["user"].as_str().unwrap().to_string(),
                s["kind"].as_str().unwrap().to_string(),
                s["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn hash_of(state: &Value, user: &str, kind: &str) -> Option<String> {
    state["users"][user]["meta"]["secrets"][kind]
        .as_str()
        .map(str::to_string)
}

#[test]
fn plan_apply_replan_converges_and_secrets_are_emitted_once() {
    let env = Env::new();
    env.write("base.yaml", BASE);
    let plan = env.roster(&["plan", "config", "--detailed-exitcode"]);
    assert_eq!(code(&plan), 2, "{}", stderr(&plan));
    let text = stdout(&plan);
    assert!(text.contains("+ role.payroll-reader"), "{text}");
    assert!(text.contains("+ user.qlearsite (new password)"), "{text}");
    assert!(
        text.contains("+ role permission") || text.contains("+ permission payroll.read"),
        "{text}"
    );
    assert!(
        text.contains("Plan: 8 to create, 4 secrets to generate."),
        "{text}"
    );

    // Without a terminal and without a secrets destination, apply refuses before changing anything.
    let refused = env.roster(&["apply", "config", "--yes"]);
    assert_eq!(code(&refused), 1);
    assert!(
        stderr(&refused).contains("--secrets-out"),
        "{}",
        stderr(&refused)
    );
    assert!(!env.path(".roster/state.json").exists());

    let applied = env.roster(&["apply", "config", "--yes", "--secrets-out", "secrets.json"]);
    assert_eq!(code(&applied), 0, "{}", stderr(&applied));
    let emitted = secrets(&env.path("secrets.json"));
    assert_eq!(emitted.len(), 4);
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(env.path("secrets.json"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let state_mode = fs::metadata(env.path(".roster/state.json"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(state_mode, 0o600);

    let state = env.state();
    assert_eq!(state["serial"], 1);
    for (user, kind, value) in &emitted {
        let hash = hash_of(&state, user, kind).expect("hash stored");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_secret(value, &hash));
        assert!(!verify_secret("not-the-secret", &hash));
    }
    // The state holds hashes only: no plaintext anywhere in it.
    let state_text = fs::read_to_string(env.path(".roster/state.json")).unwrap();
    for (_, _, value) in &emitted {
        assert!(!state_text.contains(value.as_str()));
        assert!(
            !stdout(&applied).contains(value.as_str())
                && !stderr(&applied).contains(value.as_str())
        );
    }

    // Re-plan: no changes; a second apply emits nothing and writes no secrets file.
    let replan = env.roster(&["plan", "config", "--detailed-exitcode"]);
    assert_eq!(code(&replan), 0, "{}", stdout(&replan));
    assert!(stdout(&replan).contains("No changes."));
    let again = env.roster(&["apply", "config", "--yes", "--secrets-out", "secrets2.json"]);
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert!(!env.path("secrets2.json").exists());
    assert_eq!(env.state()["serial"], 1);
}

#[test]
fn changes_show_field_diffs_and_effective_access() {
    let env = Env::new();
    env.write("base.yaml", BASE);
    let a = env.roster(&["apply", "config", "--yes", "--secrets-out", "s1.json"]);
    assert_eq!(code(&a), 0, "{}", stderr(&a));
    env.write(
        "base.yaml",
        &BASE
            .replace(
                "set_rights: { personal: read, contract: read }",
                "set_rights: { personal: write, contract: read }",
            )
            .replace(
                "roles: [employee-reader]\n    credentials: { token: true }",
                "roles: [employee-reader, payroll-reader]\n    credentials: { token: true }",
            ),
    );
    let plan = env.roster(&["plan", "config"]);
    let text = stdout(&plan);
    assert!(text.contains("~ user.qlearsite"), "{text}");
    assert!(text.contains("personal"), "{text}");
    assert!(
        text.contains("~ set rights personal: read -> write (+PATCH +POST +PUT)"),
        "{text}"
    );
    assert!(
        text.contains("user.timeclock\n    + role payroll-reader (via own)"),
        "{text}"
    );
    assert!(text.contains("+ permission payroll.read"), "{text}");
    assert!(text.contains("Plan: 2 to update."), "{text}");

    let md = env.roster(&["plan", "config", "--format", "markdown"]);
    let md = stdout(&md);
    assert!(md.contains("| update | 2 |"), "{md}");
    assert!(
        md.contains("<details><summary>Details (2 steps)</summary>"),
        "{md}"
    );

    let json = env.roster(&["plan", "config", "--format", "json"]);
    let v: Value = serde_json::from_str(&stdout(&json)).expect("plan JSON");
    assert_eq!(v["format_version"], 1);
    assert_eq!(v["summary"]["update"], 2);
    let addresses: Vec<&str> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["address"].as_str().unwrap())
        .collect();
    assert_eq!(addresses, ["user.qlearsite", "user.timeclock"]);
}

#[test]
fn removing_a_user_deactivates_it_and_revokes_its_secrets() {
    let env = Env::new();
    env.write("base.yaml", BASE);
    let extra =
        "users:\n  old-sync:\n    display_name: Old sync\n    credentials: { password: true }\n";
    env.write("extra.yaml", extra);
    assert_eq!(
        code(&env.roster(&["apply", "config", "--yes", "--secrets-out", "s1.json"])),
        0
    );
    assert!(hash_of(&env.state(), "old-sync", "password").is_some());
    env.remove("extra.yaml");
    let plan = env.roster(&["plan", "config"]);
    assert!(
        stdout(&plan).contains("- user.old-sync (deactivate; revoke password)"),
        "{}",
        stdout(&plan)
    );
    assert!(
        stdout(&plan).contains("Plan: 1 to deactivate."),
        "{}",
        stdout(&plan)
    );
    let a = env.roster(&["apply", "config", "--yes"]);
    assert_eq!(code(&a), 0, "{}", stderr(&a));
    let state = env.state();
    assert_eq!(
        state["users"]["old-sync"]["spec"]["active"], false,
        "kept, deactivated"
    );
    assert!(state["users"]["old-sync"]["meta"]["deactivated_at"].is_string());
    assert!(
        hash_of(&state, "old-sync", "password").is_none(),
        "secrets revoked"
    );
    let replan = env.roster(&["plan", "config", "--detailed-exitcode"]);
    assert_eq!(code(&replan), 0, "{}", stdout(&replan));

    // Bringing it back reactivates it with a new password.
    env.write("extra.yaml", extra);
    let plan = env.roster(&["plan", "config"]);
    assert!(
        stdout(&plan).contains("+ user.old-sync (reactivate; new password)"),
        "{}",
        stdout(&plan)
    );
    assert_eq!(
        code(&env.roster(&["apply", "config", "--yes", "--secrets-out", "s2.json"])),
        0
    );
    let emitted = secrets(&env.path("s2.json"));
    assert_eq!(emitted.len(), 1);
    let hash = hash_of(&env.state(), "old-sync", "password").unwrap();
    assert!(verify_secret(&emitted[0].2, &hash));
    let old = secrets(&env.path("s1.json"))
        .into_iter()
        .find(|s| s.0 == "old-sync")
        .unwrap();
    assert!(
        !verify_secret(&old.2, &hash),
        "the old password no longer verifies"
    );
}

#[test]
fn rotation_emits_a_new_secret_and_the_old_one_stops_verifying() {
    let env = Env::new();
    env.write("base.yaml", BASE);
    assert_eq!(
        code(&env.roster(&["apply", "config", "--yes", "--secrets-out", "s1.json"])),
        0
    );
    let first = secrets(&env.path("s1.json"));
    env.write(
        "base.yaml",
        &BASE.replace(
            "credentials: { password: true, token: true }",
            "credentials: { password: true, token: true, rotation: 1 }",
        ),
    );
    let plan = env.roster(&["plan", "config"]);
    assert!(
        stdout(&plan).contains("↻ user.payroll-export (rotate; new password + token)"),
        "{}",
        stdout(&plan)
    );
    assert!(
        stdout(&plan).contains("Plan: 1 to rotate, 2 secrets to generate."),
        "{}",
        stdout(&plan)
    );
    assert_eq!(
        code(&env.roster(&["apply", "config", "--yes", "--secrets-out", "s2.json"])),
        0
    );
    let second = secrets(&env.path("s2.json"));
    assert_eq!(second.len(), 2);
    let state = env.state();
    for (user, kind, value) in &second {
        let hash = hash_of(&state, user, kind).unwrap();
        assert!(verify_secret(value, &hash));
        let old = first.iter().find(|s| &s.0 == user && &s.1 == kind).unwrap();
        assert!(!verify_secret(&old.2, &hash));
    }
}

#[test]
fn a_stale_saved_plan_is_refused_and_a_fresh_one_applies() {
    let env = Env::new();
    env.write("base.yaml", BASE);
    assert_eq!(
        code(&env.roster(&["apply", "config", "--yes", "--secrets-out", "s1.json"])),
        0
    );
    env.write(
        "more.yaml",
        "roles:\n  audit-reader:\n    permissions: [audit.read]\n",
    );
    let p = env.roster(&["plan", "config", "--out", "p.json"]);
    assert_eq!(code(&p), 0, "{}", stderr(&p));
    let show = env.roster(&["show", "p.json"]);
    assert!(
        stdout(&show).contains("+ role.audit-reader"),
        "{}",
        stdout(&show)
    );
    // Someone else applies first.
    env.write(
        "more.yaml",
        "roles:\n  audit-reader:\n    permissions: [audit.read, audit.export]\n",
    );
    assert_eq!(code(&env.roster(&["apply", "config", "--yes"])), 0);
    let stale = env.roster(&["apply", "--plan", "p.json", "--yes"]);
    assert_eq!(code(&stale), 1);
    assert!(
        stderr(&stale).contains(
            "the store changed since this plan was made: serial 2, plan made at serial 1"
        ),
        "{}",
        stderr(&stale)
    );
    let p = env.roster(&["plan", "config", "--out", "p2.json"]);
    assert_eq!(code(&p), 0);
    let ok = env.roster(&["apply", "--plan", "p2.json", "--yes"]);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
}

#[test]
fn a_second_apply_is_refused_while_the_lock_is_held() {
    use roster::store::{LockOwner, StateStore, file::FileStore};
    let env = Env::new();
    env.write(
        "base.yaml",
        BASE.replace("credentials: { password: true, token: true }", "")
            .replace("credentials: { password: true }", "")
            .replace("credentials: { token: true }", "")
            .as_str(),
    );
    let store = FileStore::new(env.path(".roster/state.json"));
    let owner = LockOwner {
        pid: 4242,
        host: "ci-runner-7".into(),
        since: "2026-11-22T10:00:00Z".into(),
    };
    let lock = store.lock(&owner, std::time::Duration::ZERO).expect("lock");
    let blocked = env.roster(&["apply", "config", "--yes"]);
    assert_eq!(code(&blocked), 1);
    assert!(
        stderr(&blocked)
            .contains("the store is locked by pid 4242 on ci-runner-7 since 2026-11-22T10:00:00Z"),
        "{}",
        stderr(&blocked)
    );
    assert!(!env.path(".roster/state.json").exists());
    drop(lock);
    let ok = env.roster(&["apply", "config", "--yes", "--lock-timeout", "5s"]);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
}

#[test]
fn protected_users_are_never_deactivated() {
    let env = Env::new();
    env.write("base.yaml", BASE);
    env.write(
        "keep.yaml",
        "users:\n  break-glass:\n    display_name: Break glass\n    protected: true\n",
    );
    assert_eq!(
        code(&env.roster(&["apply", "config", "--yes", "--secrets-out", "s.json"])),
        0
    );
    env.remove("keep.yaml");
    // Kept as it is, with a warning that says how to proceed; the plan has
    // nothing else to do.
    let plan = env.roster(&["plan", "config"]);
    assert_eq!(code(&plan), 0, "{}", stderr(&plan));
    assert!(
        stderr(&plan).contains("warning: protected, left as it is: user.break-glass"),
        "{}",
        stderr(&plan)
    );
    assert!(stdout(&plan).contains("No changes."), "{}", stdout(&plan));
    // Still declared protected while inactive: kept active.
    env.write("keep.yaml", "users:\n  break-glass:\n    display_name: Break glass\n    protected: true\n    active: false\n");
    let plan = env.roster(&["plan", "config"]);
    assert_eq!(code(&plan), 0, "{}", stderr(&plan));
    // No step for it: only the line that says it is left as it is.
    assert!(
        !stdout(&plan).contains("- user.break-glass"),
        "{}",
        stdout(&plan)
    );
    assert!(
        stdout(&plan).contains(
            "Protected, left as they are (the config would deactivate or remove them): user.break-glass"
        ),
        "{}",
        stdout(&plan)
    );
    assert!(
        stderr(&plan).contains("user.break-glass"),
        "{}",
        stderr(&plan)
    );
}

#[test]
fn the_removal_guard_stops_an_emptied_config() {
    let env = Env::new();
    env.write("base.yaml", BASE);
    assert_eq!(
        code(&env.roster(&["apply", "config", "--yes", "--secrets-out", "s.json"])),
        0
    );
    env.write("base.yaml", "# everything removed by mistake\n");
    let plan = env.roster(&["plan", "config"]);
    assert_eq!(code(&plan), 1);
    assert!(
        stderr(&plan).contains("refusing to deactivate or delete 4 of 4 managed users (100%), more than max_removal_fraction 0.25"),
        "{}",
        stderr(&plan)
    );
    let apply = env.roster(&["apply", "config", "--yes"]);
    assert_eq!(code(&apply), 1);
    assert_eq!(env.state()["serial"], 1, "nothing applied");
    let forced = env.roster(&["plan", "config", "--allow-mass-removal"]);
    assert_eq!(code(&forced), 0, "{}", stderr(&forced));
    assert!(
        stdout(&forced).contains("4 to deactivate"),
        "{}",
        stdout(&forced)
    );
}

#[test]
fn renames_through_previous_names_update_the_same_user() {
    let env = Env::new();
    env.write("base.yaml", BASE);
    assert_eq!(
        code(&env.roster(&["apply", "config", "--yes", "--secrets-out", "s.json"])),
        0
    );
    let hash = hash_of(&env.state(), "qlearsite", "password").unwrap();
    env.write(
        "base.yaml",
        &BASE
            .replace(
                "  qlearsite:\n    display_name",
                "  qlearsite-survey:\n    previous_names: [qlearsite]\n    display_name",
            )
            .replace("user: qlearsite", "user: qlearsite-survey"),
    );
    let plan = env.roster(&["plan", "config"]);
    let text = stdout(&plan);
    assert!(
        text.contains("~ user.qlearsite-survey (renamed from qlearsite)"),
        "{text}"
    );
    assert!(!text.contains("deactivate"), "{text}");
    let a = env.roster(&["apply", "config", "--yes"]);
    assert_eq!(code(&a), 0, "{}", stderr(&a));
    let state = env.state();
    assert!(state["users"]["qlearsite"].is_null());
    assert_eq!(
        hash_of(&state, "qlearsite-survey", "password").as_deref(),
        Some(hash.as_str()),
        "secrets kept"
    );
    assert_eq!(
        code(&env.roster(&["plan", "config", "--detailed-exitcode"])),
        0
    );
}

#[test]
fn export_round_trips_and_history_records_applies() {
    let env = Env::new();
    env.write("base.yaml", BASE);
    assert_eq!(
        code(&env.roster(&["apply", "config", "--yes", "--secrets-out", "s.json"])),
        0
    );
    let export = env.roster(&["export"]);
    assert_eq!(code(&export), 0, "{}", stderr(&export));
    let text = stdout(&export);
    assert!(!text.contains("argon2"), "no hashes in exports");
    fs::create_dir(env.path("exported")).unwrap();
    fs::write(env.path("exported/all.yaml"), &text).unwrap();
    let plan = env.roster(&["plan", "exported", "--detailed-exitcode"]);
    assert_eq!(code(&plan), 0, "{}\n{}", stdout(&plan), stderr(&plan));

    let history = env.roster(&["history", "--format", "json"]);
    let v: Value = serde_json::from_str(&stdout(&history)).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["serial"], 1);
    assert_eq!(v[0]["plan_digest"].as_str().unwrap().len(), 64);
}

#[test]
fn temp_files_of_a_commit_killed_midway_are_removed_by_the_next_commit() {
    let env = Env::new();
    env.write(
        "base.yaml",
        "roles:\n  auditor:\n    permissions: [audit.read]\n",
    );
    assert_eq!(code(&env.roster(&["apply", "config", "--yes"])), 0);
    // What a SIGKILL inside a commit leaves: a temp file holding a state.
    let stale = env.path(".roster/.state.json.tmp-999999");
    fs::write(&stale, "{}").unwrap();
    env.write("more.yaml", "roles:\n  viewer:\n    permissions: [view]\n");
    let a = env.roster(&["apply", "config", "--yes"]);
    assert_eq!(code(&a), 0, "{}", stderr(&a));
    assert!(
        !stale.exists(),
        "the stale temp file was removed under the lock"
    );
    let names: Vec<String> = fs::read_dir(env.path(".roster"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
}

/// Drift is a stored record that differs from what roster last applied.
/// It is reported where the plan changes the record back; a hand edit that
/// already matches the files (the config caught up with it) needs no step
/// and is not reported.
#[test]
fn drift_is_reported_where_the_plan_restores_values() {
    let env = Env::new();
    env.write("access.yaml", BASE);
    let a = env.roster(&["apply", "config", "--yes", "--secrets-out", "s.json"]);
    assert_eq!(code(&a), 0, "{}", stderr(&a));
    let edit_state = |display: &str| {
        let mut state = env.state();
        state["users"]["benefits"]["spec"]["display_name"] = Value::from(display);
        fs::write(
            env.path(".roster/state.json"),
            serde_json::to_string_pretty(&state).expect("state JSON"),
        )
        .expect("write state");
    };

    edit_state("Benefits sync (edited by hand)");
    let p = env.roster(&["plan", "config", "--format", "json"]);
    assert_eq!(code(&p), 0, "{}", stderr(&p));
    let plan: Value = serde_json::from_str(&stdout(&p)).expect("plan JSON");
    let drift: Vec<&str> = plan["drift"]
        .as_array()
        .expect("drift list")
        .iter()
        .filter_map(|d| d["address"].as_str())
        .collect();
    assert_eq!(drift, ["user.benefits"], "{}", plan["drift"]);
    assert_eq!(plan["summary"]["drifted"], 1);

    // The files now say what the hand edit said: nothing to restore.
    env.write(
        "access.yaml",
        &BASE.replace(
            "display_name: Benefits sync\n",
            "display_name: Benefits sync (edited by hand)\n",
        ),
    );
    let p = env.roster(&["plan", "config", "--detailed-exitcode"]);
    assert_eq!(code(&p), 0, "{}", stdout(&p));
    assert!(stdout(&p).contains("No changes"), "{}", stdout(&p));
    assert!(!stdout(&p).contains("Drift"), "{}", stdout(&p));
}

/// `plan` reads the store while the config loads. With an invalid config it
/// reports the config's errors and exits without waiting for the store: here
/// an etcd endpoint that accepts connections and never answers (its requests
/// would take the request timeout, retried). Bounded: the listener
/// thread ends with the test, and roster is killed if it has not exited
/// within 20 s.
#[test]
fn an_invalid_config_is_reported_without_waiting_for_the_store() {
    use std::net::TcpListener;
    use std::time::Duration;
    let env = Env::new();
    env.write("access.yaml", "users:\n  x:\n    display_nam: typo\n");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    let mut child = Command::new(env!("CARGO_BIN_EXE_roster"))
        .args(["plan", "config", "--store"])
        .arg(format!("etcd://127.0.0.1:{port}/roster"))
        .current_dir(env.path(""))
        .env("NO_COLOR", "1")
        .env("ROSTER_ETCD_USER", "roster")
        .env("ROSTER_ETCD_PASSWORD", "t-never-used-4471")
        .env_remove("ROSTER_STORE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run roster");
    let mut held = Vec::new(); // accepted connections, never answered
    let mut status = None;
    for _ in 0..200 {
        while let Ok((conn, _)) = listener.accept() {
            held.push(conn);
        }
        if let Some(s) = child.try_wait().expect("wait") {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if status.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("output");
    let status = status.expect("roster waited for a store that never answers");
    assert_eq!(status.code(), Some(1), "{}", stderr(&out));
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(text.contains("display_nam"), "{text}");
    assert!(!text.contains("t-never-used-4471"), "{text}");
}

/// Issue 16: `roster apply … | true` exited 0 with nothing applied. A closed
/// stdout fails an apply loudly (exit 1, nothing changed); a read-only
/// command still ends successfully.
#[test]
fn apply_with_a_closed_stdout_never_exits_0_for_work_not_done() {
    let env = Env::new();
    env.write("base.yaml", BASE);
    let run_closed = |args: &[&str]| {
        // A pipe whose read end is closed before roster starts: every write
        // to stdout fails with EPIPE, deterministically.
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        Command::new(env!("CARGO_BIN_EXE_roster"))
            .args(args)
            .current_dir(env.dir.path())
            .env("NO_COLOR", "1")
            .env_remove("ROSTER_STORE")
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run roster")
    };
    let out = run_closed(&["apply", "config", "--yes", "--secrets-out", "s.json"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing was changed"),
        "{}",
        stderr(&out)
    );
    assert!(!env.path(".roster/state.json").exists(), "nothing applied");
    assert!(!env.path("s.json").exists());
    let plan = run_closed(&["plan", "config"]);
    assert_eq!(code(&plan), 0, "{}", stderr(&plan));
}

/// Issue 15/16: `apply --plan FILE` applied without showing what it applies;
/// the saved plan is rendered before the prompt, and with --yes too.
#[test]
fn apply_of_a_saved_plan_renders_it_before_applying() {
    let env = Env::new();
    env.write("base.yaml", BASE);
    let p = env.roster(&["plan", "config", "--out", "p.json"]);
    assert_eq!(code(&p), 0, "{}", stderr(&p));
    let ok = env.roster(&[
        "apply",
        "--plan",
        "p.json",
        "--yes",
        "--secrets-out",
        "s.json",
    ]);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    let shown = stdout(&ok);
    for line in ["+ user.qlearsite", "+ role.payroll-reader", "Plan: "] {
        assert!(shown.contains(line), "{line} not shown:\n{shown}");
    }
}

fn edit_plan(env: &Env, file: &str, f: impl FnOnce(&mut Value)) {
    let path = env.path(file);
    let mut v: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    f(&mut v);
    fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

fn step_mut<'a>(plan: &'a mut Value, address: &str) -> &'a mut Value {
    plan["steps"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|s| s["address"] == address)
        .unwrap_or_else(|| panic!("no step {address}"))
}

/// Issue 16: `show` rendered a step's `changes` while `apply --plan` wrote
/// its `target`: adding `everything.admin` to the target's permissions
/// reached the store while `show` showed only the reviewed change. A saved
/// plan whose parts disagree is refused by both, and a plan whose changes
/// are not the difference between the store and the target is refused by
/// apply, with nothing changed.
#[test]
fn a_saved_plan_whose_target_differs_from_its_changes_is_refused() {
    let env = Env::new();
    env.write("base.yaml", BASE);
    let first = env.roster(&["apply", "config", "--yes", "--secrets-out", "s1.json"]);
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    env.write(
        "base.yaml",
        &BASE.replace(
            "permissions: [payroll.read]",
            "permissions: [payroll.read, payroll.export]",
        ),
    );
    let p = env.roster(&["plan", "config", "--out", "p.json"]);
    assert_eq!(code(&p), 0, "{}", stderr(&p));
    let before = fs::read(env.path(".roster/state.json")).unwrap();

    // 1. The target alone edited: refused on load by show and apply.
    fs::copy(env.path("p.json"), env.path("t.json")).unwrap();
    edit_plan(&env, "t.json", |v| {
        step_mut(v, "role.payroll-reader")["target"]["permissions"]
            .as_array_mut()
            .unwrap()
            .push("everything.admin".into());
    });
    for args in [
        vec!["show", "t.json"],
        vec!["apply", "--plan", "t.json", "--yes"],
    ] {
        let out = env.roster(&args);
        assert_eq!(code(&out), 1, "{args:?}: {}", stdout(&out));
        assert!(
            stderr(&out).contains("not a consistent roster plan"),
            "{}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("role.payroll-reader"),
            "{}",
            stderr(&out)
        );
        assert!(!stdout(&out).contains("everything.admin"));
    }

    // 2. Target and changes edited together, `before` claiming the store
    // already has the permission (so the diff shows nothing new): show sees a
    // consistent plan, apply compares with the store and refuses.
    fs::copy(env.path("p.json"), env.path("u.json")).unwrap();
    edit_plan(&env, "u.json", |v| {
        let step = step_mut(v, "role.payroll-reader");
        step["target"]["permissions"] =
            serde_json::json!(["everything.admin", "payroll.export", "payroll.read"]);
        step["changes"][0]["before"] = serde_json::json!(["everything.admin", "payroll.read"]);
        step["changes"][0]["after"] =
            serde_json::json!(["everything.admin", "payroll.export", "payroll.read"]);
    });
    let out = env.roster(&["apply", "--plan", "u.json", "--yes"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the plan is damaged: step role.payroll-reader"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        fs::read(env.path(".roster/state.json")).unwrap(),
        before,
        "nothing written"
    );

    // 3. The untouched plan applies.
    let ok = env.roster(&["apply", "--plan", "p.json", "--yes"]);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    assert_eq!(
        env.state()["roles"]["payroll-reader"]["spec"]["permissions"],
        serde_json::json!(["payroll.export", "payroll.read"])
    );
}

/// Issue 16: editing a saved plan's `secret_policy` made apply generate a
/// 1-character password hashed with m=8,t=1 while `show` displayed none of
/// it. Out-of-schema values are refused; weak values within the schema are
/// shown (with warnings) by `show` and by apply before it asks.
#[test]
fn a_saved_plan_secret_policy_is_checked_and_shown() {
    let env = Env::new();
    env.write("base.yaml", BASE);
    let p = env.roster(&["plan", "config", "--out", "p.json"]);
    assert_eq!(code(&p), 0, "{}", stderr(&p));
    fs::copy(env.path("p.json"), env.path("bad.json")).unwrap();
    edit_plan(&env, "bad.json", |v| {
        v["secret_policy"]["password"]["length"] = 1.into();
        v["secret_policy"]["argon2"]["memory_kib"] = 8.into();
    });
    for args in [
        vec!["show", "bad.json"],
        vec![
            "apply",
            "--plan",
            "bad.json",
            "--yes",
            "--secrets-out",
            "s.json",
        ],
    ] {
        let out = env.roster(&args);
        assert_eq!(code(&out), 1, "{args:?}");
        assert!(
            stderr(&out).contains("secret_policy.password"),
            "{}",
            stderr(&out)
        );
    }
    assert!(!env.path(".roster/state.json").exists());
    assert!(!env.path("s.json").exists());
    edit_plan(&env, "p.json", |v| {
        v["secret_policy"]["password"] = serde_json::json!({"length": 16, "lowercase": false, "uppercase": false, "digits": true, "symbols": false});
        v["secret_policy"]["argon2"] =
            serde_json::json!({"memory_kib": 8192, "iterations": 1, "parallelism": 1});
    });
    for format in ["text", "markdown"] {
        let show = env.roster(&["show", "p.json", "--format", format]);
        assert_eq!(code(&show), 0, "{}", stderr(&show));
        let text = stdout(&show);
        assert!(
            text.contains("passwords of 16 characters (digits, 53 bits)"),
            "{text}"
        );
        assert!(text.contains("m=8192 KiB t=1 p=1"), "{text}");
        assert!(
            text.contains("secrets.weak-password") && text.contains("secrets.weak-argon2"),
            "{text}"
        );
    }
    let out = env.roster(&[
        "apply",
        "--plan",
        "p.json",
        "--yes",
        "--secrets-out",
        "s.json",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("secrets.weak-argon2"),
        "apply shows the policy: {}",
        stdout(&out)
    );
}

/// Issue 16: CI could not pin the reviewed plan. `plan --out` prints a
/// digest over the whole plan file; `apply --plan --expect-digest` refuses
/// any other file before changing anything.
#[test]
fn apply_expect_digest_refuses_a_plan_other_than_the_reviewed_one() {
    let env = Env::new();
    env.write("base.yaml", BASE);
    let p = env.roster(&["plan", "config", "--out", "p.json"]);
    assert_eq!(code(&p), 0, "{}", stderr(&p));
    let line = stderr(&p)
        .lines()
        .find_map(|l| l.strip_prefix("Plan digest: ").map(str::to_string))
        .expect("a digest line");
    let digest = line.trim().to_string();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 7 + 64,
        "{digest}"
    );
    let shown = env.roster(&["show", "p.json"]);
    assert!(stderr(&shown).contains(&digest), "{}", stderr(&shown));
    // A harmless-looking edit (the display name of one user) changes the digest.
    let text = fs::read_to_string(env.path("p.json")).unwrap();
    fs::write(
        env.path("q.json"),
        text.replace("Benefits sync", "Benefits sync "),
    )
    .unwrap();
    let out = env.roster(&[
        "apply",
        "--plan",
        "q.json",
        "--yes",
        "--expect-digest",
        &digest,
        "--secrets-out",
        "s.json",
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("it is not the reviewed plan"),
        "{}",
        stderr(&out)
    );
    assert!(!env.path(".roster/state.json").exists());
    assert!(!env.path("s.json").exists());
    let ok = env.roster(&[
        "apply",
        "--plan",
        "p.json",
        "--yes",
        "--expect-digest",
        &digest,
        "--secrets-out",
        "s.json",
    ]);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
}

/// Issue 16: a config could set the secret policy and argon2 cost below the
/// OWASP floor (16 digits, 8 MiB, 1 iteration) without a word. `validate`
/// warns with documented codes (still valid: exit 0) in every format, and
/// the plan shows the policy.
#[test]
fn a_secret_policy_below_the_floor_is_a_validate_warning_and_shown_in_the_plan() {
    let env = Env::new();
    env.write("base.yaml", BASE);
    env.write(
        "settings.yaml",
        "settings:\n  password: {length: 16, lowercase: false, uppercase: false, digits: true, symbols: false}\n  \
         argon2: {memory_kib: 8192, iterations: 1, parallelism: 1}\n",
    );
    let text = env.roster(&["validate", "config"]);
    assert_eq!(code(&text), 0, "{}", stderr(&text));
    for c in [
        "warning[secrets.weak-password]: settings.password",
        "warning[secrets.weak-argon2]: settings.argon2",
    ] {
        assert!(stderr(&text).contains(c), "{}", stderr(&text));
    }
    let json = env.roster(&["validate", "config", "--format", "json"]);
    assert_eq!(code(&json), 0);
    let v: Value = serde_json::from_str(&stdout(&json)).expect("JSON");
    assert_eq!(v["valid"], true);
    let codes: Vec<&str> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["secrets.weak-password", "secrets.weak-argon2"]);
    let gh = env.roster(&["validate", "config", "--format", "github"]);
    assert_eq!(code(&gh), 0);
    assert!(
        stdout(&gh).contains("::warning title=roster secrets.weak-argon2::"),
        "{}",
        stdout(&gh)
    );
    let plan = env.roster(&["plan", "config"]);
    assert!(
        stdout(&plan).contains(
            "Secret policy (not the default): passwords of 16 characters (digits, 53 bits)"
        ),
        "{}",
        stdout(&plan)
    );
    assert!(
        stdout(&plan).contains("warning[secrets.weak-argon2]"),
        "{}",
        stdout(&plan)
    );
    // The default policy: no warning, no policy line.
    env.remove("settings.yaml");
    let clean = env.roster(&["validate", "config"]);
    assert!(!stderr(&clean).contains("warning"), "{}", stderr(&clean));
    assert!(!stdout(&env.roster(&["plan", "config"])).contains("Secret policy"));
}
