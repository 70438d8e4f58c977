//! `roster plan` / `apply` with a `connector` target, as a user runs them:
//! the example connector (connectors/example) holding users and groups in a
//! JSON file, and the misbehaving connectors of tests/connectors during an
//! apply. Every run is bounded; no run prints a secret.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn show(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

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
    /// The config: `users` (YAML under `users:`), the target run by `script`
    /// with `extra` added to its `config`.
    fn write(&self, script: &Path, extra: &str, timeout: &str, users: &str) {
        let text = format!(
            "targets:\n  warehouse:\n    connector:\n      command: [python3, {}]\n      config: {{path: {}{extra}}}\n      timeout: {timeout}\nsettings:\n  default_targets: [warehouse]\ngroups:\n  staff:\n    description: Staff\nusers:\n{users}",
            script.display(),
            self.path("warehouse.json").display(),
        );
        fs::write(self.path("config/a.yaml"), text).expect("write config");
    }
    /// `roster ARGS`, killed (and the test failed) after 120 s.
    fn roster(&self, args: &[&str]) -> Run {
        let mut child = Command::new(env!("CARGO_BIN_EXE_roster"))
            .args(args)
            .current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .env_remove("ROSTER_STORE")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("roster");
        let mut out = child.stdout.take().expect("stdout");
        let mut err = child.stderr.take().expect("stderr");
        let o = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let e = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            if start.elapsed() > Duration::from_secs(120) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("roster {args:?} did not finish within 120 s: a hang");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Run {
            code: status.code().unwrap_or(-1),
            stdout: o.join().expect("stdout"),
            stderr: e.join().expect("stderr"),
        }
    }
    fn warehouse(&self) -> Value {
        let text = fs::read_to_string(self.path("warehouse.json")).expect("warehouse.json");
        serde_json::from_str(&text).expect("json")
    }
    /// The values in a secrets file.
    fn secrets(&self, file: &str) -> Vec<(String, String)> {
        let text = fs::read_to_string(self.path(file)).expect("secrets file");
        let v: Value = serde_json::from_str(&text).expect("json");
        v["secrets"]
            .as_array()
            .expect("secrets")
            .iter()
            .map(|s| {
                (
                    s["user"].as_str().expect("user").to_string(),
                    s["value"].as_str().expect("value").to_string(),
                )
            })
            .collect()
    }
}

fn example() -> PathBuf {
    root().join("connectors/example/roster_example.py")
}

fn script(name: &str) -> PathBuf {
    root().join("tests/connectors").join(name)
}

/// Whether `password` matches the example connector's stored PBKDF2 hash
/// (checked by Python's hashlib; the password goes on stdin).
fn pbkdf2_matches(stored: &str, password: &str) -> bool {
    let check = "import hashlib, sys\nalgo, n, salt, digest = sys.argv[1].split('$')\npw = sys.stdin.read()\nok = hashlib.pbkdf2_hmac('sha256', pw.encode(), bytes.fromhex(salt), int(n)).hex() == digest\nsys.exit(0 if ok else 1)\n";
    let mut child = Command::new("python3")
        .args(["-c", check, stored])
        .stdin(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(password.as_bytes())
        .expect("write");
    child.wait().expect("wait").success()
}

fn assert_no_secret(run: &Run, secrets: &[(String, String)]) {
    for (_, value) in secrets {
        assert!(
            !run.all().contains(value.as_str()),
            "a secret was printed: {}",
            run.show()
        );
    }
}

const USERS: &str = "  lms:\n    display_name: LMS\n    email: lms@example.com\n    groups: [staff]\n    credentials: { password: true }\n  survey:\n    display_name: Survey\n";

#[test]
fn plan_and_apply_through_the_example_connector_create_update_deactivate_rotate_and_converge() {
    let env = Env::new();
    env.write(&example(), "", "30s", USERS);

    let plan = env.roster(&["plan", "config", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{}", plan.show());
    assert!(
        plan.stdout
            .contains("+ user.lms@warehouse (send roster's new password)"),
        "{}",
        plan.show()
    );

    let apply = env.roster(&["apply", "config", "--yes", "--secrets-out", "s1.json"]);
    assert_eq!(apply.code, 0, "{}", apply.show());
    let s1 = env.secrets("s1.json");
    assert_eq!(s1.len(), 1);
    assert_no_secret(&apply, &s1);
    assert!(
        apply.stderr.contains("[warehouse] set_secret lms: changed"),
        "{}",
        apply.show()
    );
    let w = env.warehouse();
    assert_eq!(w["user"]["lms"]["attrs"]["display_name"], "LMS");
    assert_eq!(
        w["user"]["lms"]["attrs"]["groups"],
        serde_json::json!(["staff"])
    );
    assert_eq!(w["group"]["staff"]["attrs"]["description"], "Staff");
    let hash = w["user"]["lms"]["secrets"]["password"]
        .as_str()
        .expect("hash")
        .to_string();
    assert!(
        pbkdf2_matches(&hash, &s1[0].1),
        "the connector holds the emitted password"
    );

    let again = env.roster(&["plan", "config", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "re-plan after apply: {}", again.show());

    // Update.
    env.write(
        &example(),
        "",
        "30s",
        &USERS.replace("display_name: LMS", "display_name: Learning"),
    );
    let plan = env.roster(&["plan", "config", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{}", plan.show());
    assert!(
        plan.stdout.contains("~ user.lms@warehouse"),
        "{}",
        plan.show()
    );
    let apply = env.roster(&["apply", "config", "--yes"]);
    assert_eq!(apply.code, 0, "{}", apply.show());
    assert_eq!(
        env.warehouse()["user"]["lms"]["attrs"]["display_name"],
        "Learning"
    );

    // Deactivate.
    let users =
        USERS.replace("display_name: LMS", "display_name: Learning") + "    active: false\n";
    env.write(&example(), "", "30s", &users);
    let apply = env.roster(&["apply", "config", "--yes", "--allow-mass-removal"]);
    assert_eq!(apply.code, 0, "{}", apply.show());
    assert_eq!(env.warehouse()["user"]["survey"]["attrs"]["active"], false);
    let again = env.roster(&["plan", "config", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{}", again.show());

    // Rotate.
    let users = users.replace("{ password: true }", "{ password: true, rotation: 1 }");
    env.write(&example(), "", "30s", &users);
    let apply = env.roster(&["apply", "config", "--yes", "--secrets-out", "s2.json"]);
    assert_eq!(apply.code, 0, "{}", apply.show());
    let s2 = env.secrets("s2.json");
    assert_eq!(s2.len(), 1);
    assert_ne!(s2[0].1, s1[0].1);
    assert_no_secret(&apply, &s1);
    assert_no_secret(&apply, &s2);
    let hash = env.warehouse()["user"]["lms"]["secrets"]["password"]
        .as_str()
        .expect("hash")
        .to_string();
    assert!(pbkdf2_matches(&hash, &s2[0].1), "the new password is set");
    assert!(!pbkdf2_matches(&hash, &s1[0].1), "the old one no longer is");

    let last = env.roster(&["plan", "config", "--detailed-exitcode"]);
    assert_eq!(last.code, 0, "{}", last.show());
    assert!(
        !fs::read_to_string(env.path(".roster/state.json"))
            .expect("state")
            .contains(&s2[0].1)
    );
}

#[test]
fn a_connector_crashing_mid_apply_fails_what_it_did_not_do_and_a_rerun_converges() {
    let env = Env::new();
    // Requests: hello, list users, list groups, ensure staff, ensure lms,
    // then the 6th (lms's password) crashes the connector.
    env.write(&script("crash.py"), ", crash_at: 6", "30s", USERS);
    let apply = env.roster(&["apply", "config", "--yes", "--secrets-out", "s1.json"]);
    assert_eq!(apply.code, 1, "{}", apply.show());
    let s1 = env.secrets("s1.json");
    assert_no_secret(&apply, &s1);
    assert!(
        apply.stderr.contains("[warehouse] crashing at request 6"),
        "{}",
        apply.show()
    );
    let failed: Vec<&str> = apply
        .stderr
        .lines()
        .filter(|l| l.trim_start().starts_with("FAILED"))
        .collect();
    assert_eq!(failed.len(), 2, "{}", apply.show());
    for line in &failed {
        assert!(
            line.contains("target `warehouse`") && line.contains("exit status: 3"),
            "{line}"
        );
    }
    assert!(
        failed.iter().any(|l| l.contains("user.lms@warehouse")),
        "{}",
        apply.show()
    );
    assert!(
        failed.iter().any(|l| l.contains("user.survey@warehouse")),
        "{}",
        apply.show()
    );
    // Nothing reported done that was not: what is `ok` is in the file, what
    // failed is not (lms exists, but without the password it failed to get).
    assert!(
        apply.stderr.contains("ok      group.staff@warehouse"),
        "{}",
        apply.show()
    );
    let w = env.warehouse();
    assert!(w["group"]["staff"].is_object());
    assert!(w["user"]["survey"].is_null(), "{w}");
    assert_eq!(w["user"]["lms"]["secrets"], serde_json::json!({}), "{w}");
    let done: Vec<&str> = apply
        .stderr
        .lines()
        .filter(|l| l.trim_start().starts_with("ok"))
        .collect();
    assert!(
        !done
            .iter()
            .any(|l| l.contains("@warehouse") && !l.contains("group.staff@warehouse")),
        "{done:?}"
    );

    // The connector is fixed: the next apply does exactly what is left.
    env.write(&example(), "", "30s", USERS);
    let plan = env.roster(&["plan", "config", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{}", plan.show());
    assert!(
        plan.stdout.contains("user.survey@warehouse"),
        "{}",
        plan.show()
    );
    assert!(
        !plan.stdout.contains("group.staff@warehouse"),
        "{}",
        plan.show()
    );
    let apply = env.roster(&["apply", "config", "--yes", "--secrets-out", "s2.json"]);
    assert_eq!(apply.code, 0, "{}", apply.show());
    let s2 = env.secrets("s2.json");
    assert_no_secret(&apply, &s2);
    let w = env.warehouse();
    assert!(w["user"]["survey"].is_object());
    let hash = w["user"]["lms"]["secrets"]["password"]
        .as_str()
        .expect("hash")
        .to_string();
    assert!(
        pbkdf2_matches(&hash, &s2[0].1),
        "the re-run set a fresh password"
    );
    let last = env.roster(&["plan", "config", "--detailed-exitcode"]);
    assert_eq!(last.code, 0, "converged: {}", last.show());
}

#[test]
fn a_hung_babbling_confused_or_unknown_version_connector_fails_the_apply_naming_the_target() {
    for (name, reason) in [
        ("hang.py", "no reply within 1s"),
        ("garbage_stdout.py", "`DEBUG: listing users`"),
        ("wrong_id.py", "replied with id"),
        ("bad_version.py", "version 2"),
    ] {
        let env = Env::new();
        env.write(&script(name), "", "1s", USERS);
        let apply = env.roster(&["apply", "config", "--yes", "--secrets-out", "s.json"]);
        assert_eq!(apply.code, 1, "{name}: {}", apply.show());
        assert!(
            apply.stderr.contains("warehouse"),
            "{name}: {}",
            apply.show()
        );
        assert!(apply.stderr.contains(reason), "{name}: {}", apply.show());
        if name == "wrong_id.py" {
            // It fails at the first ensure: the state-store steps are
            // committed, the target's are FAILED, and a re-run converges.
            assert!(
                apply.stderr.contains("FAILED  group.staff@warehouse"),
                "{}",
                apply.show()
            );
            env.write(&example(), "", "30s", USERS);
            let rerun = env.roster(&["apply", "config", "--yes", "--secrets-out", "s2.json"]);
            assert_eq!(rerun.code, 0, "{}", rerun.show());
            let last = env.roster(&["plan", "config", "--detailed-exitcode"]);
            assert_eq!(last.code, 0, "{}", last.show());
        } else {
            assert!(
                !apply.stderr.contains("  ok "),
                "{name}: nothing done: {}",
                apply.show()
            );
        }
    }
}

#[test]
fn a_connector_echoing_secrets_on_stderr_never_gets_them_printed() {
    // echo_secret.py logs every secret it gets or makes on stderr; its
    // tokens are target_generated.
    let env = Env::new();
    let users = USERS.replace("{ password: true }", "{ password: true, token: true }");
    env.write(&script("echo_secret.py"), "", "30s", &users);
    let apply = env.roster(&["apply", "config", "--yes", "--secrets-out", "s1.json"]);
    assert_eq!(apply.code, 0, "{}", apply.show());
    let s1 = env.secrets("s1.json");
    let users: Vec<&str> = s1.iter().map(|(u, _)| u.as_str()).collect();
    assert!(users.contains(&"lms"), "roster's password: {users:?}");
    assert!(
        users.contains(&"lms@warehouse"),
        "the target's token: {users:?}"
    );
    let token = &s1
        .iter()
        .find(|(u, _)| u == "lms@warehouse")
        .expect("token")
        .1;
    assert!(token.starts_with("tok-"), "the connector's own token");
    assert_no_secret(&apply, &s1);
    assert!(
        apply
            .stderr
            .contains("[warehouse] set_secret: the new password is [redacted]"),
        "{}",
        apply.show()
    );
    assert!(
        apply
            .stderr
            .contains("[warehouse] generate_secret: minted [redacted]"),
        "{}",
        apply.show()
    );
    let state = fs::read_to_string(env.path(".roster/state.json")).expect("state");
    assert!(
        !state.contains(token.as_str()),
        "only the token's hash is kept"
    );
    let again = env.roster(&["plan", "config", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{}", again.show());
}

#[test]
fn a_lost_generate_secret_reply_is_pending_and_the_next_apply_generates_again() {
    // loses_generated.py mints a token, then dies before replying.
    let env = Env::new();
    let users = "  lms:\n    display_name: LMS\n    credentials: { token: true }\n";
    let marker = env.path("marker");
    env.write(
        &script("loses_generated.py"),
        &format!(", marker: {}", marker.display()),
        "30s",
        users,
    );
    let first = env.roster(&["apply", "config", "--yes", "--secrets-out", "s1.json"]);
    assert_eq!(first.code, 1, "{}", first.show());
    assert!(marker.exists(), "the connector minted and died");
    assert!(
        first.stderr.contains("FAILED  user.lms@warehouse"),
        "{}",
        first.show()
    );
    // The state says the request is pending; the next plan generates again.
    let state: Value =
        serde_json::from_str(&fs::read_to_string(env.path(".roster/state.json")).unwrap()).unwrap();
    assert_eq!(
        state["targets"]["warehouse"]["user/lms"]["pending"],
        serde_json::json!(["token"]),
        "{}",
        state["targets"]["warehouse"]
    );
    let plan = env.roster(&["plan", "config", "--format", "json"]);
    let plan: Value = serde_json::from_str(&plan.stdout).expect("json plan");
    let step = &plan["targets"]["warehouse"]["steps"][0];
    assert_eq!(
        step["generate_secret"],
        serde_json::json!(["token"]),
        "{step}"
    );
    assert_eq!(step["reason"], "pending secret", "{step}");
    let second = env.roster(&["apply", "config", "--yes", "--secrets-out", "s2.json"]);
    assert_eq!(second.code, 0, "{}", second.show());
    let s2 = env.secrets("s2.json");
    assert!(
        s2.iter()
            .any(|(u, v)| u == "lms@warehouse" && v.starts_with("tok-")),
        "{s2:?}"
    );
    assert_no_secret(&second, &s2);
    let again = env.roster(&["plan", "config", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{}", again.show());
}
