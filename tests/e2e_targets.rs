//! Targets through the `roster` binary, on real `scim2-server`s started with
//! the core schemas only (the normal case): two targets in one config with
//! users split between them, one of them failing during apply; adoption of
//! existing remote users with `roster import`; an apply killed with SIGKILL
//! while it writes a target. After each, a re-run converges and a plan shows
//! no changes.
//!
//! Talks only to 127.0.0.1; servers and proxies are stopped when their guards
//! drop; the only process killed is the roster this test started.

#[path = "common/cli.rs"]
mod cli;

#[allow(dead_code)]
#[path = "common/scim.rs"]
mod harness;

#[allow(dead_code)]
#[path = "common/fault_proxy.rs"]
mod fault_proxy;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use cli::{code, roster_command, show, stderr, stdout};
use fault_proxy::{Fault, start_proxy};
use harness::{ScimServer, ServerConfig, TOKEN, TOKEN_ENV, direct};
use serde_json::{Value, json};

fn run(dir: &Path, args: &[&str]) -> Output {
    roster_command(dir)
        .args(args)
        .env(TOKEN_ENV, TOKEN)
        .output()
        .expect("run roster")
}

fn replan_is_clean(dir: &Path, what: &str) {
    let p = run(dir, &["plan", "config", "--detailed-exitcode"]);
    assert_eq!(code(&p), 0, "{what}: {}", show(&p));
    assert!(stdout(&p).contains("No changes"), "{what}: {}", show(&p));
}

fn write(dir: &Path, name: &str, text: &str) {
    let config = dir.join("config");
    std::fs::create_dir_all(&config).expect("config dir");
    std::fs::write(config.join(name), text).expect("write config");
}

fn users(base: &str) -> Vec<Value> {
    let (s, list) = direct("GET", &format!("{base}/Users?count=1000"), None);
    assert_eq!(s, 200, "{list}");
    list["Resources"].as_array().cloned().unwrap_or_default()
}

fn user_names(base: &str) -> Vec<String> {
    let mut v: Vec<String> = users(base)
        .iter()
        .filter_map(|u| u["userName"].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

/// The passwords of a secrets file, by user.
fn issued(path: &Path) -> BTreeMap<String, String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return BTreeMap::new();
    };
    let file: Value = serde_json::from_str(&text).expect("secrets JSON");
    file["secrets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["kind"] == "password")
        .map(|s| {
            (
                s["user"].as_str().unwrap_or_default().to_string(),
                s["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

const ROLES: &str = "roles:\n  payroll-reader:\n    permissions: [payroll.read]\n";

#[test]
fn two_targets_split_users_and_one_failing_during_apply_leaves_the_other_done() {
    let hr = ScimServer::start(ServerConfig::default());
    let ops = ScimServer::start(ServerConfig::default());
    // `ops` is reached through a proxy that can fail every write after the
    // plan's listing.
    let proxy = start_proxy(ops.port, 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let targets = format!(
        "targets:\n  hr:\n    scim:\n      url: {}\n      token_env: {TOKEN_ENV}\n  ops:\n    scim:\n      url: {}\n      token_env: {TOKEN_ENV}\n      retries: 1\nsettings:\n  default_targets: [hr]\n",
        hr.http_base(None),
        proxy.base()
    );
    write(dir.path(), "targets.yaml", &targets);
    write(dir.path(), "roles.yaml", ROLES);
    let users_yaml = |ops_name: &str| {
        format!(
            "users:\n  payroll-export:\n    display_name: Payroll export\n    roles: [payroll-reader]\n  survey-sync:\n    display_name: Survey sync\n  {ops_name}:\n    display_name: Ops monitor\n    targets: [ops]\n  both:\n    display_name: On both\n    targets: [hr, ops]\n"
        )
    };
    write(dir.path(), "users.yaml", &users_yaml("ops-monitor"));
    let out = run(dir.path(), &["apply", "config", "--yes"]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    // Each target received only its users (and the role group they hold).
    assert_eq!(
        user_names(&hr.http_base(None)),
        vec!["both", "payroll-export", "survey-sync"]
    );
    assert_eq!(
        user_names(&ops.http_base(None)),
        vec!["both", "ops-monitor"]
    );
    let (_, groups) = direct("GET", &format!("{}/Groups", hr.http_base(None)), None);
    let names: Vec<&str> = groups["Resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g["displayName"].as_str())
        .collect();
    assert_eq!(names, vec!["roster-role-payroll-reader"], "{groups}");
    replan_is_clean(dir.path(), "after the first apply");

    // Rename the ops user and change a display name on hr; ops refuses
    // every write after the plan read it (2 discovery + 2 listings).
    write(
        dir.path(),
        "users.yaml",
        &users_yaml("ops-watch").replace("Survey sync", "Survey sync (v2)"),
    );
    std::fs::write(
        dir.path().join("config/users.yaml"),
        std::fs::read_to_string(dir.path().join("config/users.yaml"))
            .unwrap()
            .replace(
                "  ops-watch:\n    display_name: Ops monitor\n",
                "  ops-watch:\n    display_name: Ops monitor\n    previous_names: [ops-monitor]\n",
            ),
    )
    .unwrap();
    let mut script = vec![Fault::None; 4];
    script.extend(vec![Fault::Status(503); 40]);
    proxy.script(&script);
    let out = run(dir.path(), &["apply", "config", "--yes"]);
    assert_eq!(code(&out), 1, "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains("FAILED  user.ops-watch@ops"),
        "the failure names the target: {err}"
    );
    assert!(err.contains("503"), "with the server's status: {err}");
    assert!(err.contains("ok      user.survey-sync@hr"), "{err}");
    assert!(!err.contains("ok      user.ops-watch@ops"), "{err}");
    assert!(!show(&out).contains(TOKEN));
    // hr has the change; ops has not.
    let on_hr = users(&hr.http_base(None));
    assert!(
        on_hr
            .iter()
            .any(|u| u["userName"] == "survey-sync" && u["displayName"] == "Survey sync (v2)")
    );
    assert_eq!(
        user_names(&ops.http_base(None)),
        vec!["both", "ops-monitor"]
    );
    // The next plan proposes exactly what is left: the rename on ops.
    proxy.script(&[]);
    let plan = run(dir.path(), &["plan", "config", "--format", "json"]);
    assert_eq!(
        code(&plan),
        0,
        "{}\nstate: {}",
        show(&plan),
        std::fs::read_to_string(dir.path().join(".roster/state.json")).unwrap_or_default()
    );
    let plan: Value = serde_json::from_str(&stdout(&plan)).expect("json plan");
    let hr_steps = plan["targets"]["hr"]["steps"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(hr_steps, 0, "hr is done: {}", plan["targets"]["hr"]);
    let ops_steps: Vec<&str> = plan["targets"]["ops"]["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["address"].as_str())
        .collect();
    assert_eq!(
        ops_steps,
        vec!["user.ops-watch@ops"],
        "{}",
        plan["targets"]["ops"]
    );
    // With the server reachable again, apply converges; the rename kept the id.
    let id_before = users(&ops.http_base(None))
        .iter()
        .find(|u| u["userName"] == "ops-monitor")
        .map(|u| u["id"].clone())
        .expect("ops-monitor");
    let out = run(dir.path(), &["apply", "config", "--yes"]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    let after = users(&ops.http_base(None));
    let renamed = after
        .iter()
        .find(|u| u["userName"] == "ops-watch")
        .expect("renamed on ops");
    assert_eq!(renamed["id"], id_before, "a rename keeps the remote id");
    replan_is_clean(dir.path(), "after the server came back");
}

#[test]
fn import_adopts_existing_remote_users_and_writes_nothing_to_the_target() {
    let server = ScimServer::start(ServerConfig::default());
    let base = server.http_base(None);
    for (name, display) in [
        ("payroll-export", "Payroll (made by hand)"),
        ("human", "A person"),
    ] {
        let (s, body) = direct(
            "POST",
            &format!("{base}/Users"),
            Some(json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": name, "displayName": display, "active": true
            })),
        );
        assert_eq!(s, 201, "{body}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "config.yaml",
        &format!(
            "targets:\n  idp:\n    scim:\n      url: {base}\n      token_env: {TOKEN_ENV}\nsettings:\n  default_targets: [idp]\nusers:\n  payroll-export:\n    display_name: Payroll export\n  survey-sync:\n    display_name: Survey sync\n"
        ),
    );
    // Before the import: the name held unmanaged is left alone (a warning),
    // never created again or overwritten.
    let plan = run(dir.path(), &["plan", "config"]);
    assert_eq!(code(&plan), 0, "{}", show(&plan));
    assert!(
        stderr(&plan).contains("roster import idp"),
        "{}",
        show(&plan)
    );
    assert!(
        !stdout(&plan).contains("+ user.payroll-export@idp"),
        "{}",
        show(&plan)
    );
    let before = users(&base);
    let out = run(dir.path(), &["import", "idp", "config"]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert!(
        stdout(&out).contains("imported  user.payroll-export@idp"),
        "{}",
        show(&out)
    );
    assert!(!stdout(&out).contains("human"), "{}", show(&out));
    assert_eq!(users(&base), before, "import writes nothing to the target");
    // Importing again finds nothing new.
    let again = run(dir.path(), &["import", "idp", "config"]);
    assert!(
        stdout(&again).contains("Nothing to import"),
        "{}",
        show(&again)
    );
    // The next plan shows only the real differences.
    let plan = run(dir.path(), &["plan", "config", "--format", "json"]);
    let plan: Value = serde_json::from_str(&stdout(&plan)).expect("json");
    let steps: Vec<(String, String)> = plan["targets"]["idp"]["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            (
                s["action"].as_str().unwrap_or_default().to_string(),
                s["address"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        vec![
            ("update".to_string(), "user.payroll-export@idp".to_string()),
            ("create".to_string(), "user.survey-sync@idp".to_string()),
        ]
    );
    let fields: Vec<&str> = plan["targets"]["idp"]["steps"][0]["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["field"].as_str())
        .collect();
    assert!(fields.contains(&"display_name"), "{fields:?}");
    assert_eq!(plan["targets"]["idp"]["unmanaged"]["user"], 1);
    let out = run(dir.path(), &["apply", "config", "--yes"]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    replan_is_clean(dir.path(), "after adopting");
    let human = users(&base)
        .into_iter()
        .find(|u| u["userName"] == "human")
        .expect("the unmanaged user is still there");
    assert_eq!(human["displayName"], "A person");
}

#[test]
fn an_apply_killed_while_writing_a_target_converges_and_no_valid_password_was_unseen() {
    let mut server = ScimServer::start(ServerConfig::default());
    let proxy = start_proxy(server.port, 2);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = format!(
        "targets:\n  idp:\n    scim:\n      url: {}\n      token_env: {TOKEN_ENV}\n      concurrency: 1\nsettings:\n  default_targets: [idp]\n  argon2: {{memory_kib: 8192, iterations: 1, parallelism: 1}}\nusers:\n",
        proxy.base()
    );
    for i in 0..12 {
        config.push_str(&format!(
            "  svc-{i:02}:\n    display_name: Service {i}\n    credentials: {{password: true}}\n"
        ));
    }
    write(dir.path(), "config.yaml", &config);
    // Every request is slowed down, so the apply is still writing users
    // when it is killed.
    proxy.script(&vec![Fault::Delay(150); 200]);
    let mut child = roster_command(dir.path())
        .args(["apply", "config", "--yes", "--secrets-out", "run1.json"])
        .env(TOKEN_ENV, TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start roster apply");
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.count("POST /v2/Users") < 4 {
        assert!(Instant::now() < deadline, "the apply never wrote users");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the apply ended early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL the apply");
    child.wait().expect("reap");
    proxy.script(&[]);
    // Requests the proxy was still holding reach the server after the kill,
    // as a late request would: wait (bounded) until the server is settled.
    let mut last = usize::MAX;
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(250));
        let now = user_names(&server.http_base(None)).len();
        if now == last {
            break;
        }
        last = now;
    }
    let created = user_names(&server.http_base(None)).len();
    assert!(
        (1..12).contains(&created),
        "killed mid-way: {created} users"
    );
    let first = issued(&dir.path().join("run1.json"));
    assert_eq!(
        first.len(),
        12,
        "every secret was written before any was sent"
    );
    // Re-run: converges.
    let out = run(
        dir.path(),
        &["apply", "config", "--yes", "--secrets-out", "run2.json"],
    );
    assert_eq!(code(&out), 0, "{}", show(&out));
    replan_is_clean(dir.path(), "after the re-run");
    let second = issued(&dir.path().join("run2.json"));
    // Every password the server holds was written to a secrets output.
    let dump = server.stop_and_dump();
    let held: Vec<&Value> = dump
        .as_array()
        .map(|a| a.iter().collect())
        .or_else(|| {
            dump.as_object().map(|o| {
                o.values()
                    .flat_map(|v| v.as_array().into_iter().flatten())
                    .collect()
            })
        })
        .unwrap_or_default();
    let mut checked = 0;
    for r in held {
        let Some(name) = r["userName"].as_str() else {
            continue;
        };
        let Some(password) = r["password"].as_str() else {
            continue;
        };
        checked += 1;
        assert!(
            first.get(name).map(String::as_str) == Some(password)
                || second.get(name).map(String::as_str) == Some(password),
            "{name}'s password on the server was never emitted"
        );
    }
    assert_eq!(checked, 12, "every user holds an emitted password");
}

/// Everything a server holds, with `meta` (which every write changes).
fn server_state(base: &str) -> (Value, Value) {
    let (s, u) = direct("GET", &format!("{base}/Users?count=1000"), None);
    assert_eq!(s, 200);
    let (s, g) = direct("GET", &format!("{base}/Groups?count=1000"), None);
    assert_eq!(s, 200);
    (u, g)
}

#[test]
fn read_only_commands_never_write_to_a_target() {
    let server = ScimServer::start(ServerConfig::default());
    let base = server.http_base(None);
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "roles.yaml", ROLES);
    write(
        dir.path(),
        "config.yaml",
        &format!(
            "targets:\n  idp:\n    scim:\n      url: {base}\n      token_env: {TOKEN_ENV}\nsettings:\n  default_targets: [idp]\nusers:\n  payroll-export:\n    display_name: Payroll export\n    roles: [payroll-reader]\n    credentials: {{password: true}}\n"
        ),
    );
    let out = run(
        dir.path(),
        &["apply", "config", "--yes", "--secrets-out", "s.json"],
    );
    assert_eq!(code(&out), 0, "{}", show(&out));
    // A change is pending, so plans have something to show.
    write(
        dir.path(),
        "config.yaml",
        &std::fs::read_to_string(dir.path().join("config/config.yaml"))
            .unwrap()
            .replace("Payroll export", "Payroll export (v2)"),
    );
    let before = server_state(&base);
    for args in [
        vec!["validate", "config"],
        vec!["plan", "config"],
        vec!["plan", "config", "--format", "markdown"],
        vec!["plan", "config", "--format", "json", "--detailed-exitcode"],
        vec!["plan", "config", "--refresh=false"],
        vec!["plan", "config", "--out", "saved.json"],
        vec!["show", "saved.json"],
        vec!["export"],
        vec!["history"],
        vec!["report", "access", "config", "--format", "json"],
    ] {
        let out = run(dir.path(), &args);
        assert!(
            code(&out) == 0 || code(&out) == 2,
            "{args:?}: {}",
            show(&out)
        );
        assert_eq!(server_state(&base), before, "{args:?} wrote to the target");
    }
    // The probe sees writes: applying the saved plan changes the server.
    let out = run(dir.path(), &["apply", "--plan", "saved.json", "--yes"]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert_ne!(server_state(&base), before, "the apply did write");
    replan_is_clean(dir.path(), "after the saved plan");
}

#[test]
fn a_refused_password_revocation_on_a_target_is_reported_failed_never_ok() {
    let mut server = ScimServer::start(ServerConfig::default());
    let proxy = start_proxy(server.port, 3);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = |password: bool| {
        format!(
            "targets:\n  idp:\n    scim:\n      url: {}\n      token_env: {TOKEN_ENV}\n      retries: 1\nsettings:\n  default_targets: [idp]\nusers:\n  survey-sync:\n    display_name: Survey sync\n    credentials: {{password: {password}}}\n",
            proxy.base()
        )
    };
    write(dir.path(), "config.yaml", &config(true));
    let out = run(
        dir.path(),
        &["apply", "config", "--yes", "--secrets-out", "s.json"],
    );
    assert_eq!(code(&out), 0, "{}", show(&out));
    let issued = issued(&dir.path().join("s.json"));
    let password = issued
        .get("survey-sync")
        .expect("a password was issued")
        .clone();
    // The password is revoked; the provider refuses every password write.
    write(dir.path(), "config.yaml", &config(false));
    proxy
        .controls
        .refuse_password_writes
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let out = run(dir.path(), &["apply", "config", "--yes"]);
    assert_eq!(code(&out), 1, "{}", show(&out));
    let err = stderr(&out);
    assert!(err.contains("FAILED  user.survey-sync@idp"), "{err}");
    assert!(err.contains("revoking the password"), "{err}");
    assert!(!err.contains("ok      user.survey-sync@idp"), "{err}");
    assert!(!show(&out).contains(&password));
    // The next plan still proposes the revocation on the target.
    let plan = run(dir.path(), &["plan", "config", "--format", "json"]);
    let plan: Value = serde_json::from_str(&stdout(&plan)).expect("json");
    assert_eq!(
        plan["targets"]["idp"]["steps"][0]["revoke_secret"],
        json!(["password"]),
        "{}",
        plan["targets"]["idp"]
    );
    proxy
        .controls
        .refuse_password_writes
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let out = run(dir.path(), &["apply", "config", "--yes"]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    replan_is_clean(dir.path(), "after the revocation");
    let dump = server.stop_and_dump();
    let held = dump
        .as_array()
        .and_then(|a| a.iter().find(|r| r["userName"] == "survey-sync"))
        .expect("in the dump");
    assert_ne!(
        held["password"].as_str(),
        Some(password.as_str()),
        "the issued password no longer works on the server"
    );
}

fn group_members(base: &str, name: &str) -> Vec<String> {
    let (_, list) = direct("GET", &format!("{base}/Groups?count=1000"), None);
    let ids: Vec<String> = list["Resources"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|g| g["displayName"] == name)
        .map(|g| {
            g["members"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["value"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut names: Vec<String> = users(base)
        .iter()
        .filter(|u| ids.iter().any(|i| u["id"] == i.as_str()))
        .filter_map(|u| u["userName"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

fn lifecycle(extension: bool) {
    let what = if extension { "extended" } else { "core-only" };
    let mut server = ScimServer::start(ServerConfig {
        extension,
        ..ServerConfig::default()
    });
    let base = server.http_base(None);
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "roles.yaml",
        "roles:\n  payroll-reader:\n    permissions: [payroll.read]\n  payroll-writer:\n    permissions: [payroll.write]\ngroups:\n  hr-integrations:\n    roles: [payroll-reader]\n",
    );
    let head = format!(
        "targets:\n  idp:\n    scim:\n      url: {base}\n      token_env: {TOKEN_ENV}\nsettings:\n  default_targets: [idp]\n  max_removal_fraction: 1.0\n  argon2: {{memory_kib: 8192, iterations: 1, parallelism: 1}}\n"
    );
    let step = |n: usize, users: &str| -> Output {
        write(dir.path(), "config.yaml", &format!("{head}users:\n{users}"));
        let out = run(
            dir.path(),
            &[
                "apply",
                "config",
                "--yes",
                "--secrets-out",
                &format!("s{n}.json"),
            ],
        );
        assert_eq!(code(&out), 0, "{what} step {n}: {}", show(&out));
        assert!(
            !stderr(&out).contains("FAILED"),
            "{what} step {n}: {}",
            show(&out)
        );
        replan_is_clean(dir.path(), &format!("{what} step {n}"));
        out
    };
    // 1. Create: a group member with a role through the group and set rights.
    step(
        1,
        "  lms-sync:\n    display_name: LMS sync\n    groups: [hr-integrations]\n    set_rights: {personal: read}\n  survey-sync:\n    display_name: Survey sync\n    credentials: {password: true}\n",
    );
    assert_eq!(group_members(&base, "hr-integrations"), vec!["lms-sync"]);
    assert_eq!(
        group_members(&base, "roster-role-payroll-reader"),
        vec!["lms-sync"]
    );
    assert_eq!(
        group_members(&base, "roster-rights-personal-read"),
        vec!["lms-sync"]
    );
    let lms_id = users(&base)
        .iter()
        .find(|u| u["userName"] == "lms-sync")
        .map(|u| u["id"].clone())
        .expect("lms-sync");
    // 2. Update: a display name, a role given directly, set rights raised.
    step(
        2,
        "  lms-sync:\n    display_name: LMS sync (v2)\n    groups: [hr-integrations]\n    roles: [payroll-writer]\n    set_rights: {personal: write}\n  survey-sync:\n    display_name: Survey sync\n    credentials: {password: true}\n",
    );
    assert_eq!(
        group_members(&base, "roster-role-payroll-writer"),
        vec!["lms-sync"]
    );
    assert_eq!(
        group_members(&base, "roster-rights-personal-write"),
        vec!["lms-sync"]
    );
    assert!(
        group_members(&base, "roster-rights-personal-read").is_empty(),
        "the old rights group is gone or empty"
    );
    // 3. Deactivate: inactive on the server, out of every group.
    let survey =
        "  survey-sync:\n    display_name: Survey sync\n    credentials: {password: true}\n";
    let lms = "  lms-sync:\n    display_name: LMS sync (v2)\n    groups: [hr-integrations]\n    roles: [payroll-writer]\n    set_rights: {personal: write}\n";
    step(
        3,
        &format!(
            "{lms}{}",
            survey.replace("Survey sync\n", "Survey sync\n    active: false\n")
        ),
    );
    let s = users(&base)
        .into_iter()
        .find(|u| u["userName"] == "survey-sync")
        .expect("kept");
    assert_eq!(s["active"], false, "{what}: deactivated, not deleted");
    // 4. Reactivate: a new password reaches the server.
    step(4, &format!("{lms}{survey}"));
    let reactivated = issued(&dir.path().join("s4.json"));
    assert!(
        reactivated.contains_key("survey-sync"),
        "{what}: a new password on reactivation"
    );
    // 5. Rotate.
    step(
        5,
        &format!(
            "{lms}{}",
            survey.replace("{password: true}", "{password: true, rotation: 1}")
        ),
    );
    let rotated = issued(&dir.path().join("s5.json"));
    assert_ne!(rotated.get("survey-sync"), reactivated.get("survey-sync"));
    // 6. Rename: the remote id stays.
    step(
        6,
        &format!(
            "{}{}",
            lms.replace(
                "  lms-sync:\n",
                "  lms-export:\n    previous_names: [lms-sync]\n"
            ),
            survey.replace("{password: true}", "{password: true, rotation: 1}")
        ),
    );
    let renamed = users(&base)
        .into_iter()
        .find(|u| u["userName"] == "lms-export")
        .expect("renamed");
    assert_eq!(renamed["id"], lms_id, "{what}: a rename keeps the id");
    assert_eq!(group_members(&base, "hr-integrations"), vec!["lms-export"]);
    // The server holds the rotated password.
    let dump = server.stop_and_dump();
    let held = dump
        .as_array()
        .and_then(|a| a.iter().find(|r| r["userName"] == "survey-sync"))
        .expect("in the dump");
    assert_eq!(
        held["password"].as_str(),
        rotated.get("survey-sync").map(String::as_str)
    );
}

#[test]
fn lifecycle_through_the_cli_on_a_core_schema_only_server() {
    lifecycle(false);
}

#[test]
fn lifecycle_through_the_cli_on_a_server_with_rosters_extension() {
    lifecycle(true);
}

#[test]
fn a_saved_plan_is_stale_when_a_managed_object_changed_on_the_target_not_an_unmanaged_one() {
    let server = ScimServer::start(ServerConfig::default());
    let base = server.http_base(None);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = |display: &str| {
        format!(
            "targets:\n  idp:\n    scim:\n      url: {base}\n      token_env: {TOKEN_ENV}\nsettings:\n  default_targets: [idp]\nusers:\n  survey-sync:\n    display_name: {display}\n"
        )
    };
    write(dir.path(), "config.yaml", &config("Survey sync"));
    let out = run(dir.path(), &["apply", "config", "--yes"]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    write(dir.path(), "config.yaml", &config("Survey sync (v2)"));
    let out = run(dir.path(), &["plan", "config", "--out", "p.json"]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    // A user roster does not manage appears: the plan is still good.
    let (s, _) = direct(
        "POST",
        &format!("{base}/Users"),
        Some(
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "human"}),
        ),
    );
    assert_eq!(s, 201);
    let out = run(dir.path(), &["apply", "--plan", "p.json", "--yes"]);
    assert_eq!(
        code(&out),
        0,
        "an unmanaged user never makes a plan stale: {}",
        show(&out)
    );
    write(dir.path(), "config.yaml", &config("Survey sync (v3)"));
    let out = run(dir.path(), &["plan", "config", "--out", "p2.json"]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    // A managed user is changed by hand: the saved plan is refused.
    let id = users(&base)
        .into_iter()
        .find(|u| u["userName"] == "survey-sync")
        .map(|u| u["id"].as_str().unwrap_or_default().to_string())
        .expect("survey-sync");
    let (s, body) = direct(
        "PATCH",
        &format!("{base}/Users/{id}"),
        Some(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "displayName", "value": "Edited by hand"}]
        })),
    );
    assert!(s == 200 || s == 204, "{s} {body}");
    let before = server_state(&base);
    let out = run(dir.path(), &["apply", "--plan", "p2.json", "--yes"]);
    assert_eq!(code(&out), 1, "{}", show(&out));
    assert!(stderr(&out).contains("stale"), "{}", show(&out));
    assert!(stderr(&out).contains("idp"), "{}", show(&out));
    assert_eq!(server_state(&base), before, "nothing was written");
    // A fresh plan shows the drift and restores the declared value.
    let out = run(dir.path(), &["apply", "config", "--yes"]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert!(
        stdout(&out).contains("changed on idp outside roster"),
        "{}",
        show(&out)
    );
    replan_is_clean(dir.path(), "after the fresh apply");
}
