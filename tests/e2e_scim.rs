//! End to end on a real SCIM server: the `roster` binary (`plan`, `apply`)
//! against `scim2-server` on 127.0.0.1 (harness in `tests/common/scim.rs`),
//! run as an operator would run it: the bundled examples converge, a full
//! user lifecycle reaches the server (passwords checked in the server's own
//! dump), drift and unmanaged users, a wrong token, the server killed in the
//! middle of an apply, and the request count of a plan over many users.
//!
//! Talks only to 127.0.0.1; every server is stopped by pid when its guard drops.

#[allow(dead_code)]
#[path = "common/scim.rs"]
mod harness;

#[path = "common/cli.rs"]
mod cli;
use cli::{code, copy_dir, show, stderr, stdout};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use harness::{ScimServer, ServerConfig, TOKEN, direct};
use roster::store::StateStore;
use serde_json::{Value, json};

const EXAMPLES: [&str; 3] = ["avanti", "iris-hr", "avaamo"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn with_extension() -> ServerConfig {
    ServerConfig {
        extension: true,
        ..ServerConfig::default()
    }
}

/// A tempdir to run roster in, with a store URL and a token.
struct Env {
    dir: tempfile::TempDir,
    url: String,
    token: String,
}

impl Env {
    fn new(url: String) -> Env {
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
            url,
            token: TOKEN.to_string(),
        }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    /// Copy `examples/NAME` to `NAME` in the tempdir.
    fn example(&self, name: &str) -> PathBuf {
        let to = self.path(name);
        copy_dir(&root().join("examples").join(name), &to);
        to
    }
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_roster"));
        cmd.args(args)
            .args(["--store", &self.url])
            .current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .env("ROSTER_SCIM_TOKEN", &self.token)
            .env_remove("ROSTER_STORE")
            .env_remove("RUST_LOG");
        cmd
    }
    fn roster(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run roster")
    }
}

/// `(user, kind) -> value` from a JSON secrets file.
fn secrets(path: &Path) -> BTreeMap<(String, String), String> {
    let v: Value = serde_json::from_str(&fs::read_to_string(path).expect("secrets file"))
        .expect("secrets JSON");
    v["secrets"]
        .as_array()
        .expect("secrets array")
        .iter()
        .map(|s| {
            (
                (
                    s["user"].as_str().expect("user").to_string(),
                    s["kind"].as_str().expect("kind").to_string(),
                ),
                s["value"].as_str().expect("value").to_string(),
            )
        })
        .collect()
}

/// Every user resource on the server (one page is enough for these tests).
fn server_users(server: &ScimServer, tenant: Option<&str>) -> Vec<Value> {
    let (status, list) = direct(
        "GET",
        &format!("{}/Users?count=1000", server.http_base(tenant)),
        None,
    );
    assert_eq!(status, 200, "{list}");
    list["Resources"].as_array().cloned().unwrap_or_default()
}

fn server_user(server: &ScimServer, name: &str) -> Value {
    let (status, list) = direct(
        "GET",
        &format!(
            "{}/Users?filter=userName%20eq%20%22{name}%22",
            server.http_base(None)
        ),
        None,
    );
    assert_eq!(status, 200, "{list}");
    list["Resources"][0].clone()
}

fn plan_apply_replan(env: &Env, config: &str, secrets_out: &str) {
    let plan = env.roster(&["plan", config, "--detailed-exitcode"]);
    assert_eq!(code(&plan), 2, "{}", show(&plan));
    let apply = env.roster(&["apply", config, "--yes", "--secrets-out", secrets_out]);
    assert_eq!(code(&apply), 0, "{}", show(&apply));
    let replan = env.roster(&["plan", config, "--detailed-exitcode"]);
    assert_eq!(code(&replan), 0, "{}", show(&replan));
    assert!(stdout(&replan).contains("No changes."), "{}", show(&replan));
}

#[test]
fn the_three_examples_converge_to_exactly_the_declared_state() {
    let server = ScimServer::start(ServerConfig {
        extension: true,
        dynamic_tenants: true,
        ..ServerConfig::default()
    });
    for name in EXAMPLES {
        let env = Env::new(server.url(Some(name)));
        let config = env.example(name);
        plan_apply_replan(&env, name, "secrets.json");
        let desired = roster::load::load(&[config]).expect("the example loads");
        // The server holds exactly the declared users (and roster's state group), no lock.
        let on_server: BTreeSet<String> = server_users(&server, Some(name))
            .iter()
            .filter_map(|u| u["userName"].as_str().map(str::to_owned))
            .collect();
        let declared: BTreeSet<String> = desired.users.keys().cloned().collect();
        assert_eq!(on_server, declared, "{name}: users on the server");
        // Every declared field reads back as declared.
        let snap = server.store(Some(name)).read().expect("read the store");
        for (user, spec) in &desired.users {
            let got = &snap.users[user];
            assert!(got.managed, "{name}: {user} is managed");
            assert_eq!(&got.spec, spec, "{name}: user {user}");
        }
        for (group, spec) in &desired.groups {
            assert_eq!(&snap.groups[group].spec, spec, "{name}: group {group}");
        }
        assert_eq!(snap.roles.len(), desired.roles.len(), "{name}: roles");
        assert_eq!(
            snap.assignments.keys().collect::<Vec<_>>(),
            desired.assignments.keys().collect::<Vec<_>>(),
            "{name}: role assignments"
        );
        // The generated secrets went to the file only: the server never returns a password.
        let emitted = secrets(&env.path("secrets.json"));
        assert!(!emitted.is_empty(), "{name}: secrets were generated");
        for u in server_users(&server, Some(name)) {
            assert!(u.get("password").is_none(), "{name}: password returned");
        }
    }
}

/// `text` without the lines from the line starting with `from` up to (not
/// including) the line starting with `to`.
fn cut_block(text: &str, from: &str, to: &str) -> String {
    let start = text.find(from).expect("block start");
    let end = start + text[start..].find(to).expect("block end");
    format!("{}{}", &text[..start], &text[end..])
}

#[test]
fn lifecycle_create_modify_deactivate_reactivate_rotate_reaches_the_server() {
    let mut server = ScimServer::start(with_extension());
    let env = Env::new(server.url(None));
    env.example("iris-hr");
    let users_file = env.path("iris-hr/users.yaml");
    let original = fs::read_to_string(&users_file).expect("users.yaml");

    // Create.
    plan_apply_replan(&env, "iris-hr", "s1.json");
    let s1 = secrets(&env.path("s1.json"));
    assert_eq!(server_user(&server, "qlearsite")["active"], true);
    assert_eq!(server_user(&server, "old-survey-tool")["active"], false);

    // Modify: a new email address.
    let modified = original.replace(
        "email: qlearsite-api@acme.example",
        "email: qlearsite-v2@acme.example",
    );
    assert_ne!(modified, original);
    fs::write(&users_file, &modified).expect("write");
    let plan = env.roster(&["plan", "iris-hr"]);
    assert!(
        stdout(&plan).contains("~ user.qlearsite"),
        "{}",
        show(&plan)
    );
    assert!(
        stdout(&plan).contains("Plan: 1 to update."),
        "{}",
        show(&plan)
    );
    let a = env.roster(&["apply", "iris-hr", "--yes"]);
    assert_eq!(code(&a), 0, "{}", show(&a));
    assert_eq!(
        server_user(&server, "qlearsite")["emails"][0]["value"],
        "qlearsite-v2@acme.example"
    );

    // Deactivate: the user is removed from the files.
    let without = cut_block(&modified, "  pension-provider:", "  bi-warehouse:");
    fs::write(&users_file, &without).expect("write");
    let plan = env.roster(&["plan", "iris-hr"]);
    assert!(
        stdout(&plan).contains("- user.pension-provider (deactivate; revoke password)"),
        "{}",
        show(&plan)
    );
    let a = env.roster(&["apply", "iris-hr", "--yes"]);
    assert_eq!(code(&a), 0, "{}", show(&a));
    assert_eq!(server_user(&server, "pension-provider")["active"], false);
    let replan = env.roster(&["plan", "iris-hr", "--detailed-exitcode"]);
    assert_eq!(code(&replan), 0, "{}", show(&replan));

    // Reactivate: put it back; a new password is issued.
    fs::write(&users_file, &modified).expect("write");
    let plan = env.roster(&["plan", "iris-hr"]);
    assert!(
        stdout(&plan).contains("+ user.pension-provider (reactivate; new password)"),
        "{}",
        show(&plan)
    );
    let a = env.roster(&["apply", "iris-hr", "--yes", "--secrets-out", "s3.json"]);
    assert_eq!(code(&a), 0, "{}", show(&a));
    let s3 = secrets(&env.path("s3.json"));
    assert_eq!(s3.len(), 1);
    assert_eq!(server_user(&server, "pension-provider")["active"], true);

    // Rotate: raise credentials.rotation.
    let rotated = modified.replace("credentials: {rotation: 1}", "credentials: {rotation: 2}");
    assert_ne!(rotated, modified);
    fs::write(&users_file, &rotated).expect("write");
    let plan = env.roster(&["plan", "iris-hr"]);
    assert!(
        stdout(&plan).contains("↻ user.payroll-bureau (rotate; new password)"),
        "{}",
        show(&plan)
    );
    let a = env.roster(&["apply", "iris-hr", "--yes", "--secrets-out", "s4.json"]);
    assert_eq!(code(&a), 0, "{}", show(&a));
    let s4 = secrets(&env.path("s4.json"));
    assert_eq!(s4.len(), 1);
    let replan = env.roster(&["plan", "iris-hr", "--detailed-exitcode"]);
    assert_eq!(code(&replan), 0, "{}", show(&replan));

    // The server holds the newest password of each user.
    let mut newest = s1.clone();
    newest.extend(s3.clone());
    newest.extend(s4.clone());
    let dump = server.stop_and_dump();
    let dumped = |name: &str| -> Value {
        dump.as_array()
            .and_then(|a| a.iter().find(|r| r["userName"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("{name} not in the dump"))
    };
    let mut checked = 0;
    for ((user, kind), value) in &newest {
        if kind != "password" {
            continue;
        }
        assert_eq!(
            dumped(user)["password"].as_str(),
            Some(value.as_str()),
            "the server holds {user}'s newest password"
        );
        checked += 1;
    }
    assert_eq!(checked, 3, "qlearsite, payroll-bureau, pension-provider");
    let old = &s1[&("pension-provider".to_string(), "password".to_string())];
    assert_ne!(
        dumped("pension-provider")["password"].as_str(),
        Some(old.as_str())
    );
    let old = &s1[&("payroll-bureau".to_string(), "password".to_string())];
    assert_ne!(
        dumped("payroll-bureau")["password"].as_str(),
        Some(old.as_str())
    );
}

#[test]
fn drift_on_the_server_is_shown_and_corrected_and_unmanaged_users_are_left_alone() {
    let server = ScimServer::start(with_extension());
    let base = server.http_base(None);
    let env = Env::new(server.url(None));
    env.example("iris-hr");
    plan_apply_replan(&env, "iris-hr", "s1.json");

    // Hand edits on the server: re-activate a deactivated user, add a role, change an email.
    let patch = |name: &str, op: Value| {
        let id = server_user(&server, name)["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let (s, body) = direct(
            "PATCH",
            &format!("{base}/Users/{id}"),
            Some(
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [op]}),
            ),
        );
        assert!(s == 200 || s == 204, "PATCH {name}: {s} {body}");
    };
    patch(
        "old-survey-tool",
        json!({"op": "replace", "path": "active", "value": true}),
    );
    patch(
        "qlearsite",
        json!({"op": "add", "path": "roles", "value": [{"value": "sneaky-admin"}]}),
    );
    patch(
        "bi-warehouse",
        json!({"op": "replace", "path": "emails",
               "value": [{"value": "someone@evil.example", "type": "work", "primary": true}]}),
    );
    // Users and a group made by hand: not roster's.
    for (endpoint, body) in [
        (
            "Users",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                   "userName": "hand-made", "displayName": "Hand made", "active": true}),
        ),
        (
            "Users",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                   "userName": "hand-made-2", "displayName": "Hand made 2", "active": false}),
        ),
        (
            "Groups",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                   "displayName": "hand-group"}),
        ),
    ] {
        let (s, b) = direct("POST", &format!("{base}/{endpoint}"), Some(body));
        assert_eq!(s, 201, "{b}");
    }
    let before_hand = server_user(&server, "hand-made");

    let plan = env.roster(&["plan", "iris-hr", "--detailed-exitcode"]);
    assert_eq!(code(&plan), 2, "{}", show(&plan));
    let text = stdout(&plan);
    let drift = text
        .split("Drift (changed outside roster):")
        .nth(1)
        .unwrap_or_else(|| panic!("no Drift section:\n{text}"));
    let drift = drift.split("\n\n").next().unwrap_or("");
    for user in ["old-survey-tool", "qlearsite", "bi-warehouse"] {
        assert!(
            drift.contains(&format!("user.{user}")),
            "{user} not under Drift:\n{text}"
        );
    }
    assert!(
        text.contains("Unmanaged in the store (never touched): 1 group, 2 users")
            || text.contains("Unmanaged in the store (never touched): 2 users, 1 group"),
        "{text}"
    );
    let json_plan = env.roster(&["plan", "iris-hr", "--format", "json"]);
    let v: Value = serde_json::from_str(&stdout(&json_plan)).expect("plan JSON");
    assert_eq!(v["summary"]["drifted"], 3, "{}", v["summary"]);

    let a = env.roster(&["apply", "iris-hr", "--yes"]);
    assert_eq!(code(&a), 0, "{}", show(&a));
    assert_eq!(server_user(&server, "old-survey-tool")["active"], false);
    let roles: Vec<Value> = server_user(&server, "qlearsite")["roles"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !roles.iter().any(|r| r["value"] == "sneaky-admin"),
        "{roles:?}"
    );
    assert_eq!(
        server_user(&server, "bi-warehouse")["emails"][0]["value"],
        "bi-loader@acme.example"
    );
    // The hand-made resources are untouched.
    let after_hand = server_user(&server, "hand-made");
    assert_eq!(after_hand, before_hand);
    assert_eq!(server_user(&server, "hand-made-2")["active"], false);
    let (_, groups) = direct("GET", &format!("{base}/Groups"), None);
    assert!(
        groups["Resources"]
            .as_array()
            .expect("groups")
            .iter()
            .any(|g| g["displayName"] == "hand-group")
    );
    let replan = env.roster(&["plan", "iris-hr", "--detailed-exitcode"]);
    assert_eq!(code(&replan), 0, "{}", show(&replan));
    assert!(
        stdout(&replan).contains("Unmanaged in the store (never touched)"),
        "{}",
        show(&replan)
    );
}

#[test]
fn a_wrong_or_missing_token_fails_clearly_without_showing_the_token() {
    let server = ScimServer::start(with_extension());
    let mut env = Env::new(server.url(None));
    env.example("iris-hr");
    env.token = "wrong-token-3c9d".into();
    for args in [
        vec!["plan", "iris-hr"],
        vec!["apply", "iris-hr", "--yes", "--secrets-out", "s.json"],
    ] {
        let out = env.roster(&args);
        assert_eq!(code(&out), 1, "{}", show(&out));
        let err = stderr(&out);
        assert!(err.contains("401"), "{}", show(&out));
        assert!(err.contains("ROSTER_SCIM_TOKEN"), "{}", show(&out));
        assert!(!err.contains("wrong-token-3c9d"), "{}", show(&out));
        assert!(!stdout(&out).contains("wrong-token-3c9d"));
        assert!(!err.contains("panicked"), "{}", show(&out));
    }
    assert!(!env.path("s.json").exists(), "nothing generated");
    let out = env
        .command(&["plan", "iris-hr"])
        .env_remove("ROSTER_SCIM_TOKEN")
        .output()
        .expect("run roster");
    assert_eq!(code(&out), 1, "{}", show(&out));
    assert!(stderr(&out).contains("ROSTER_SCIM_TOKEN"), "{}", show(&out));
}

/// A config of `n` users without credentials (so nothing to hash or emit).
fn many_users_config(n: usize) -> String {
    let mut yaml = String::from(
        "roles:\n  reader:\n    permissions: [employee.read]\ngroups:\n  bulk:\n    roles: [reader]\nusers:\n",
    );
    for i in 0..n {
        yaml.push_str(&format!(
            "  bulk-{i:05}:\n    display_name: Bulk user {i}\n    email: bulk-{i:05}@acme.example\n    groups: [bulk]\n"
        ));
    }
    yaml
}

fn total_users(server: &ScimServer) -> Option<u64> {
    let (status, list) = direct(
        "GET",
        &format!("{}/Users?count=0", server.http_base(None)),
        None,
    );
    (status == 200).then(|| list["totalResults"].as_u64())?
}

/// What an interrupted apply printed: exit code and stderr (stdout went to a file).
struct Interrupted {
    code: i32,
    stderr: String,
    interrupted: bool,
}

/// Run `roster apply CONFIG --yes` with its SCIM request log on, and call
/// `interrupt` as soon as it sends its first `/Bulk` request (the users).
fn apply_interrupted(
    env: &Env,
    config: &str,
    mut interrupt: impl FnMut(&mut std::process::Child),
) -> Interrupted {
    use std::io::BufRead;
    let out = fs::File::create(env.path("apply-stdout.txt")).expect("stdout file");
    let mut child = env
        .command(&["apply", config, "--yes"])
        .env("RUST_LOG", "roster::store::scim::http=debug")
        .stdout(Stdio::from(out))
        .stderr(Stdio::piped())
        .spawn()
        .expect("start roster apply");
    let err = child.stderr.take().expect("stderr pipe");
    let mut stderr = String::new();
    let mut interrupted = false;
    // Ends when the process closes stderr, i.e. when it exits.
    for line in std::io::BufReader::new(err).lines() {
        let line = line.unwrap_or_default();
        if !interrupted && line.contains("SCIM request POST /Bulk") {
            interrupted = true;
            interrupt(&mut child);
        }
        stderr.push_str(&line);
        stderr.push('\n');
    }
    let status = child.wait().expect("roster apply ends");
    Interrupted {
        code: status.code().unwrap_or(-1),
        stderr,
        interrupted,
    }
}

fn many_env(server: &ScimServer, n: usize) -> Env {
    let env = Env::new(server.url(None));
    fs::create_dir(env.path("many")).expect("mkdir");
    fs::write(env.path("many/users.yaml"), many_users_config(n)).expect("write");
    env
}

const INTERRUPTED_USERS: usize = 1200;

#[test]
fn server_killed_during_an_apply_gives_a_clean_error_and_a_rerun_converges() {
    let mut server = ScimServer::start(with_extension());
    let port = server.port;
    let env = many_env(&server, INTERRUPTED_USERS);
    let run = apply_interrupted(&env, "many", |_| server.kill());
    assert!(run.interrupted, "no /Bulk request seen:\n{}", run.stderr);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("error: SCIM server"), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(!run.stderr.contains(TOKEN), "{}", run.stderr);

    // scim2-server keeps everything in memory: it comes back empty, and a
    // re-run creates everything again.
    let server = ScimServer::start(ServerConfig {
        extension: true,
        port: Some(port),
        ..ServerConfig::default()
    });
    let plan = env.roster(&["plan", "many", "--format", "json"]);
    assert_eq!(code(&plan), 0, "{}", show(&plan));
    let v: Value = serde_json::from_str(&stdout(&plan)).expect("plan JSON");
    assert_eq!(
        v["summary"]["create"],
        INTERRUPTED_USERS + 2,
        "{}",
        v["summary"]
    );
    let a = env.roster(&["apply", "many", "--yes"]);
    assert_eq!(code(&a), 0, "{}", show(&a));
    let replan = env.roster(&["plan", "many", "--detailed-exitcode"]);
    assert_eq!(code(&replan), 0, "{}", show(&replan));
    assert_eq!(
        total_users(&server),
        Some(INTERRUPTED_USERS as u64),
        "no lock user left"
    );
}

#[test]
fn an_apply_killed_mid_way_leaves_its_lock_naming_it_and_a_rerun_converges() {
    let server = ScimServer::start(with_extension());
    let env = many_env(&server, INTERRUPTED_USERS);
    let mut pid = 0;
    let run = apply_interrupted(&env, "many", |child| {
        pid = child.id();
        child.kill().expect("kill roster");
    });
    assert!(run.interrupted, "no /Bulk request seen:\n{}", run.stderr);
    assert_ne!(run.code, 0, "killed");

    // The lock user outlives a killed apply (on a server, no lease expires it):
    // the next apply is refused, naming the dead holder.
    let refused = env.roster(&["apply", "many", "--yes"]);
    assert_eq!(code(&refused), 1, "{}", show(&refused));
    assert!(
        stderr(&refused).contains(&format!("the store is locked by pid {pid} on ")),
        "{}",
        show(&refused)
    );
    // The operator removes the abandoned lock (README, "Stores"), then re-runs.
    let lock = server_user(&server, "roster-lock");
    let (s, _) = direct(
        "DELETE",
        &format!(
            "{}/Users/{}",
            server.http_base(None),
            lock["id"].as_str().expect("id")
        ),
        None,
    );
    assert_eq!(s, 204);
    let a = env.roster(&["apply", "many", "--yes"]);
    assert_eq!(code(&a), 0, "{}", show(&a));
    let replan = env.roster(&["plan", "many", "--detailed-exitcode"]);
    assert_eq!(code(&replan), 0, "{}", show(&replan));
    assert_eq!(total_users(&server), Some(INTERRUPTED_USERS as u64));
}

/// The SCIM requests one `roster plan` sends, from its debug log.
fn plan_requests(env: &Env, config: &str) -> Vec<String> {
    let out = env
        .command(&["plan", config, "--detailed-exitcode"])
        .env("RUST_LOG", "roster::store::scim::http=debug")
        .output()
        .expect("run roster plan");
    assert_eq!(code(&out), 0, "{}", show(&out));
    stderr(&out)
        .lines()
        .filter_map(|l| l.split_once("SCIM request ").map(|(_, r)| r.to_owned()))
        .collect()
}

#[test]
fn a_plan_over_two_thousand_users_pages_through_them() {
    const N: usize = 2000;
    const PAGE: usize = 500;
    let server = ScimServer::start(with_extension());
    let env = Env::new(server.url(None));
    fs::create_dir(env.path("many")).expect("mkdir");
    fs::write(env.path("many/users.yaml"), many_users_config(N)).expect("write");
    let a = env.roster(&["apply", "many", "--yes"]);
    assert_eq!(code(&a), 0, "{}", show(&a));
    let requests = plan_requests(&env, "many");
    let pages = requests
        .iter()
        .filter(|r| r.starts_with("GET /Users?startIndex="))
        .count();
    assert_eq!(pages, N.div_ceil(PAGE), "{requests:#?}");
    // /ServiceProviderConfig, one page of groups (the state group among them),
    // the user pages: /Schemas is not needed, the resources roster wrote
    // prove the extension.
    assert_eq!(requests.len(), N.div_ceil(PAGE) + 2, "{requests:#?}");
    assert_eq!(requests[0], "GET /ServiceProviderConfig", "{requests:#?}");
    assert!(
        requests.iter().all(|r| r.starts_with("GET ")),
        "{requests:#?}"
    );
}

/// Everything the server holds, as it answers a full listing (with `meta`).
fn server_contents(server: &ScimServer) -> Value {
    let (s1, users) = direct(
        "GET",
        &format!("{}/Users?count=1000", server.http_base(None)),
        None,
    );
    let (s2, groups) = direct(
        "GET",
        &format!("{}/Groups?count=1000", server.http_base(None)),
        None,
    );
    assert_eq!((s1, s2), (200, 200));
    json!({ "users": users, "groups": groups })
}

#[test]
fn read_only_commands_never_write_to_the_scim_server() {
    let server = ScimServer::start(with_extension());
    let env = Env::new(server.url(None));
    env.example("iris-hr");
    let a = env.roster(&["apply", "iris-hr", "--yes", "--secrets-out", "s.json"]);
    assert_eq!(code(&a), 0, "{}", show(&a));
    let users = env.path("iris-hr/users.yaml");
    let text = fs::read_to_string(&users).expect("read");
    fs::write(
        &users,
        text.replace(
            "credentials: {password: true}",
            "credentials: {password: true, rotation: 3}",
        ),
    )
    .expect("write");
    let before = server_contents(&server);
    for args in [
        &["validate", "iris-hr"][..],
        &["plan", "iris-hr"],
        &[
            "plan",
            "iris-hr",
            "--format",
            "markdown",
            "--detailed-exitcode",
        ],
        &["plan", "iris-hr", "--out", "p.json"],
        &["show", "p.json"],
        &["export"],
        &["history"],
    ] {
        let out = env.roster(args);
        assert!(matches!(code(&out), 0 | 2), "{args:?}: {}", show(&out));
        assert_eq!(
            server_contents(&server),
            before,
            "`roster {}` wrote to the server",
            args.join(" ")
        );
    }
    // The probe sees writes: an apply changes what the server holds.
    let a = env.roster(&["apply", "iris-hr", "--yes", "--secrets-out", "s2.json"]);
    assert_eq!(code(&a), 0, "{}", show(&a));
    assert_ne!(server_contents(&server), before);
}

/// A change the server side refuses after the commit point (here: a user the
/// files declare already exists on the server, made by hand; adopting it is
/// asked for with `--adopt`, but the store will not take over a user it did
/// not create) is reported as FAILED, the apply exits 1, and the audit
/// trail gets a second entry with the real counts that names the serial it
/// corrects. Without `--adopt` the clash is refused before anything changes.
#[test]
fn a_change_refused_after_the_commit_point_is_corrected_in_the_audit_trail() {
    let server = ScimServer::start(with_extension());
    let base = server.http_base(None);
    let env = Env::new(server.url(None));
    env.example("iris-hr");
    let (s, b) = direct(
        "POST",
        &format!("{base}/Users"),
        Some(
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": "qlearsite", "displayName": "Made by hand", "active": true}),
        ),
    );
    assert_eq!(s, 201, "{b}");

    let refused = env.roster(&["apply", "iris-hr", "--yes", "--secrets-out", "s0.json"]);
    assert_eq!(code(&refused), 1, "{}", show(&refused));
    assert!(
        stderr(&refused).contains("--adopt user.qlearsite"),
        "{}",
        show(&refused)
    );
    let a = env.roster(&[
        "apply",
        "iris-hr",
        "--yes",
        "--secrets-out",
        "s.json",
        "--adopt",
        "user.qlearsite",
    ]);
    assert_eq!(code(&a), 1, "{}", show(&a));
    assert!(
        stderr(&a).contains("FAILED  user.qlearsite"),
        "{}",
        show(&a)
    );
    assert_eq!(
        server_user(&server, "qlearsite")["displayName"],
        "Made by hand"
    );

    let history = env.roster(&["history", "--format", "json"]);
    assert_eq!(code(&history), 0, "{}", show(&history));
    let entries: Value = serde_json::from_str(&stdout(&history)).expect("history JSON");
    let outcomes: Vec<&str> = entries
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["outcome"].as_str())
        .collect();
    assert_eq!(outcomes.len(), 2, "{entries:#}");
    let serial = entries[0]["serial"].as_u64().expect("serial of the apply");
    assert!(
        outcomes[1].contains("failed 1")
            && outcomes[1].contains(&format!("corrects serial {serial}")),
        "{entries:#}"
    );
}

/// Issue 16: revocation must revoke where the secret lives. A user whose
/// `credentials.password` became false, and a deactivated user, kept their
/// issued passwords active on the SCIM server while roster reported
/// `revoke password` `ok`. Now the server's password is replaced by a random
/// value nobody received: the issued one no longer works there. Checked with
/// and without roster's extension (without it, roster cannot tell whether a
/// password was issued, so every user that may not have one gets one nobody
/// knows).
#[test]
fn revoked_passwords_are_replaced_on_the_scim_server() {
    for extension in [true, false] {
        let mut server = ScimServer::start(ServerConfig {
            extension,
            ..ServerConfig::default()
        });
        let env = Env::new(server.url(None));
        env.example("iris-hr");
        let users_file = env.path("iris-hr/users.yaml");
        let original = fs::read_to_string(&users_file).expect("users.yaml");
        let a = env.roster(&["apply", "iris-hr", "--yes", "--secrets-out", "s1.json"]);
        assert_eq!(code(&a), 0, "{}", show(&a));
        let s1 = secrets(&env.path("s1.json"));
        let issued = |user: &str| s1[&(user.to_string(), "password".to_string())].clone();
        // qlearsite: password turned off; pension-provider: deactivated.
        let changed = cut_block(&original, "  pension-provider:", "  bi-warehouse:").replace(
            "credentials: {password: true}\n    set_rights:\n      personal: read\n      contract: read",
            "credentials: {password: false}\n    set_rights:\n      personal: read\n      contract: read",
        );
        assert_ne!(changed, original);
        fs::write(&users_file, &changed).expect("write");
        let plan = env.roster(&["plan", "iris-hr"]);
        if extension {
            assert!(
                stdout(&plan).contains("~ user.qlearsite (revoke password)"),
                "{}",
                show(&plan)
            );
        }
        let a = env.roster(&["apply", "iris-hr", "--yes", "--secrets-out", "s2.json"]);
        assert_eq!(code(&a), 0, "{}", show(&a));
        assert!(!stderr(&a).contains("FAILED"), "{}", show(&a));
        // Without the extension the server cannot hold the credentials flags
        // (a limitation every plan states), so turning a password off is not
        // a change roster can see there; a deactivation is.
        let revoked: &[&str] = if extension {
            assert!(
                stderr(&a).contains("ok      user.qlearsite"),
                "{}",
                show(&a)
            );
            &["qlearsite", "pension-provider"]
        } else {
            &["pension-provider"]
        };
        let dump = server.stop_and_dump();
        for user in revoked.iter().copied() {
            let held = dump
                .as_array()
                .and_then(|a| a.iter().find(|r| r["userName"] == user))
                .unwrap_or_else(|| panic!("{user} not in the dump"))["password"]
                .as_str()
                .map(str::to_string);
            assert!(
                held.as_deref() != Some(issued(user).as_str()),
                "extension {extension}: {user}'s issued password still works on the server"
            );
            // Replaced, not left empty: a random value of the default policy.
            assert!(
                held.is_some_and(|p| p.len() >= 32),
                "extension {extension}: {user}"
            );
        }
    }
}
