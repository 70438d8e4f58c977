//! Connector targets (issue 13): the example connector through the
//! `Target` interface and through the conformance kit, and misbehaving
//! connectors (tests/connectors/*.py: the example behind a hook that breaks
//! one rule). Each misbehaviour gives a clear error naming the target, never
//! hangs (every run here is bounded), and never prints a secret.

#[path = "common/cli.rs"]
mod cli;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use roster::model::ConnectorTargetConfig;
use roster::secret::{Secret, SecretKind};
use roster::target::connector::ConnectorTarget;
use roster::target::{
    Attrs, EnsureRequest, ErrorClass, Membership, ObjKind, SecretMode, Target, TargetError,
};
use serde_json::{Value, json};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn example() -> String {
    root()
        .join("connectors/example/roster_example.py")
        .display()
        .to_string()
}

fn script(name: &str) -> String {
    root()
        .join("tests/connectors")
        .join(name)
        .display()
        .to_string()
}

fn config(command: &str, cfg: Value, timeout: &str) -> ConnectorTargetConfig {
    ConnectorTargetConfig {
        command: vec!["python3".into(), command.into()],
        config: serde_json::from_value(cfg).expect("config object"),
        env: vec![],
        timeout: Some(timeout.into()),
    }
}

/// Run `f` on a thread; fail the test if it takes more than `secs` (a hang).
fn bounded<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("did not finish within {secs} s: a hang"))
}

/// A log sink the tests can read.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);
impl Write for Log {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log")).into_owned()
    }
}

fn open(name: &str, cfg: &ConnectorTargetConfig, log: &Log) -> ConnectorTarget {
    let t = ConnectorTarget::new(name, cfg)
        .expect("config")
        .with_log(Arc::new(Mutex::new(log.clone())));
    t.open().expect("open");
    t
}

fn attrs(v: Value) -> Attrs {
    serde_json::from_value(v).expect("attrs")
}

fn ensure(
    t: &ConnectorTarget,
    kind: ObjKind,
    key: &str,
    r: Option<&str>,
    a: &Attrs,
) -> Result<roster::target::Ensured, TargetError> {
    let refs = BTreeMap::new();
    t.ensure(&EnsureRequest {
        kind,
        key,
        remote_ref: r,
        attrs: a,
        current: None,
        renamed_from: None,
        user_refs: &refs,
        password: None,
        idem: &format!("digest/{kind}.{key}"),
    })
}

/// Whether a process is gone (reaped) or a zombie about to be.
fn gone(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return true;
    }
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

fn wait_gone(pid: i32) -> bool {
    for _ in 0..250 {
        if gone(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn pids(file: &Path) -> (i32, i32) {
    let text = std::fs::read_to_string(file).expect("pid file");
    let mut it = text
        .split_whitespace()
        .map(|p| p.parse::<i32>().expect("pid"));
    (it.next().expect("leader"), it.next().expect("child"))
}

// --- the example connector through the Target interface ----------------------

#[test]
fn the_example_connector_creates_lists_renames_sets_a_secret_and_deletes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db.json");
    let cfg = config(&example(), json!({"path": db}), "30s");
    let log = Log::default();
    bounded(60, move || {
        let db2 = db;
        let t = ConnectorTarget::new("warehouse", &cfg)
            .expect("config")
            .with_log(Arc::new(Mutex::new(log.clone())));
        let caps = t.open().expect("open");
        assert_eq!(caps.concurrency, 1);
        assert_eq!(caps.membership, Membership::OnUser);
        assert!(caps.kinds.contains(&ObjKind::User) && caps.kinds.contains(&ObjKind::Group));
        assert_eq!(
            caps.secrets.get(&SecretKind::Password),
            Some(&SecretMode::RosterGenerated)
        );
        assert!(caps.limitations.is_empty());

        let a = attrs(
            json!({"display_name": "Survey", "email": "s@example.com", "active": true, "groups": ["staff"]}),
        );
        let made = ensure(&t, ObjKind::User, "survey", None, &a).expect("create");
        assert!(made.changed && !made.password_set);
        assert_eq!(made.attrs, a);
        let again = ensure(&t, ObjKind::User, "survey", Some(&made.remote_ref), &a).expect("again");
        assert!(!again.changed, "a second ensure is a no-op");
        assert_eq!(again.remote_ref, made.remote_ref);

        // A password in ensure is not sent: the core sets it with set_secret.
        let pw = Secret::new("Correct-Horse-Battery-Staple-42".into());
        let refs = BTreeMap::new();
        let with_pw = t
            .ensure(&EnsureRequest {
                kind: ObjKind::User,
                key: "survey",
                remote_ref: Some(&made.remote_ref),
                attrs: &a,
                current: None,
                renamed_from: None,
                user_refs: &refs,
                password: Some(&pw),
                idem: "d/pw",
            })
            .expect("ensure");
        assert!(!with_pw.password_set);
        t.set_secret(
            "survey",
            &made.remote_ref,
            SecretKind::Password,
            &pw,
            "d/set",
        )
        .expect("set_secret");
        let stored = std::fs::read_to_string(&db2).expect("db");
        assert!(!stored.contains("Correct-Horse"), "only a hash is stored");
        assert!(stored.contains("pbkdf2_sha256$100000$"), "{stored}");

        // Rename: previous_key.
        let renamed = t
            .ensure(&EnsureRequest {
                kind: ObjKind::User,
                key: "survey2",
                remote_ref: Some(&made.remote_ref),
                attrs: &a,
                current: None,
                renamed_from: Some("survey"),
                user_refs: &refs,
                password: None,
                idem: "d/rename",
            })
            .expect("rename");
        assert!(renamed.changed);
        assert_eq!(
            renamed.remote_ref, made.remote_ref,
            "a rename keeps the object"
        );
        let users = t.list(ObjKind::User).expect("list");
        let keys: Vec<&str> = users.iter().map(|u| u.key.as_str()).collect();
        assert_eq!(keys, vec!["survey2"]);

        // Paging: 120 users come back over 3 pages of 50.
        for i in 0..119 {
            let a = attrs(json!({"display_name": format!("u{i}")}));
            ensure(&t, ObjKind::User, &format!("u{i:03}"), None, &a).expect("create");
        }
        let before = t.requests();
        assert_eq!(t.list(ObjKind::User).expect("list").len(), 120);
        assert_eq!(t.requests() - before, 3, "three pages");

        t.delete(ObjKind::User, "survey2", &made.remote_ref, "d/del")
            .expect("delete");
        t.delete(ObjKind::User, "survey2", &made.remote_ref, "d/del")
            .expect("absent: ok");
        let e = t
            .set_secret("nobody", "x", SecretKind::Password, &pw, "d/x")
            .expect_err("no such user");
        assert_eq!(e.class, ErrorClass::NotFound);
        assert!(
            e.message.contains("target `warehouse`") && e.message.contains("set_secret"),
            "{e}"
        );
        drop(t);
        let text = log.text();
        assert!(
            text.contains("[warehouse] ensure survey: changed"),
            "{text}"
        );
        assert!(!text.contains("Correct-Horse"), "{text}");
    });
}

#[test]
fn a_program_that_cannot_start_names_the_target_and_the_command() {
    let cfg = ConnectorTargetConfig {
        command: vec!["/nonexistent/roster-connector".into(), "--flag".into()],
        config: Default::default(),
        env: vec![],
        timeout: None,
    };
    let t = ConnectorTarget::new("payroll", &cfg).expect("config");
    let e = t.open().expect_err("cannot start");
    assert!(e.message.contains("target `payroll`"), "{e}");
    assert!(
        e.message.contains("/nonexistent/roster-connector --flag"),
        "{e}"
    );
    let again = t.list(ObjKind::User).expect_err("dead");
    assert!(
        again.message.ends_with(&format!(
            "list not sent, the connector session ended earlier: {}",
            e.message
        )),
        "{again}"
    );
}

#[test]
fn the_environment_is_cleared_except_path_home_lang_and_the_listed_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let probe = dir.path().join("probe.py");
    // Replies to hello with the environment names as kinds (so roster refuses
    // it), after writing them to a file.
    std::fs::write(
        &probe,
        "import json, os, sys\nline = sys.stdin.readline()\nopen(sys.argv[1], 'w').write(json.dumps(sorted(os.environ)))\nprint(json.dumps({'id': 1, 'ok': False, 'error': {'class': 'fatal', 'message': 'probe'}}), flush=True)\n",
    )
    .expect("write");
    let out = dir.path().join("env.json");
    // SAFETY: this test binary's other tests do not read these variables.
    unsafe {
        std::env::set_var("ROSTER_TEST_LISTED", "1");
        std::env::set_var("ROSTER_TEST_UNLISTED", "1");
    }
    let cfg = ConnectorTargetConfig {
        command: vec![
            "python3".into(),
            probe.display().to_string(),
            out.display().to_string(),
        ],
        config: Default::default(),
        env: vec!["ROSTER_TEST_LISTED".into()],
        timeout: None,
    };
    let t = ConnectorTarget::new("probe", &cfg).expect("config");
    let e = bounded(30, move || t.open().expect_err("probe refuses"));
    assert_eq!(e.class, ErrorClass::Fatal);
    let names: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("env")).expect("json");
    assert!(
        names.contains(&"ROSTER_TEST_LISTED".to_string()),
        "{names:?}"
    );
    assert!(
        !names.contains(&"ROSTER_TEST_UNLISTED".to_string()),
        "{names:?}"
    );
    // Nothing else of roster's environment (the interpreter's launcher, e.g.
    // a pyenv shim, may add its own variables).
    for n in &names {
        assert!(
            !n.starts_with("CARGO") && !n.starts_with("RUST"),
            "inherited {n}: {names:?}"
        );
    }
    assert!(names.contains(&"PATH".to_string()), "{names:?}");
}

// --- misbehaving connectors through the Target interface ---------------------

#[test]
fn garbage_on_stdout_fails_the_request_quoting_it_and_ends_the_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidf = dir.path().join("pids");
    let cfg = config(
        &script("garbage_stdout.py"),
        json!({"path": dir.path().join("db.json"), "pid_file": pidf}),
        "30s",
    );
    let (e, later) = bounded(60, move || {
        let t = open("garbage", &cfg, &Log::default());
        let e = t.list(ObjKind::User).expect_err("garbage");
        let later = ensure(&t, ObjKind::User, "x", None, &Attrs::new()).expect_err("dead");
        (e, later)
    });
    assert!(
        e.message.contains("target `garbage`: list (request 2)"),
        "{e}"
    );
    assert!(e.message.contains("`DEBUG: listing users`"), "{e}");
    assert_eq!(
        later.message,
        format!(
            "ensure not sent, the connector session ended earlier: {}",
            e.message
        ),
        "later requests fail at once with the first error"
    );
    let (leader, child) = pids(&pidf);
    assert!(
        wait_gone(leader) && wait_gone(child),
        "the process group is gone"
    );
}

#[test]
fn a_reply_line_over_16_mib_fails_the_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        &script("garbage_stdout.py"),
        json!({"path": dir.path().join("db.json"), "huge": true}),
        "30s",
    );
    let e = bounded(60, move || {
        let t = open("huge", &cfg, &Log::default());
        t.list(ObjKind::User).expect_err("too long")
    });
    assert!(e.message.contains("target `huge`: list"), "{e}");
    assert!(e.message.contains("longer than 16 MiB"), "{e}");
    assert!(e.message.len() < 1000, "the line is not quoted whole");
}

#[test]
fn a_crash_mid_session_names_the_exit_status_and_later_requests_fail_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        &script("crash.py"),
        json!({"path": dir.path().join("db.json"), "crash_at": 3}),
        "30s",
    );
    let log = Log::default();
    let log2 = log.clone();
    let (first, second, later) = bounded(60, move || {
        let t = open("flaky", &cfg, &log2);
        let a = attrs(json!({"display_name": "A"}));
        let first = ensure(&t, ObjKind::User, "a", None, &a);
        let second = ensure(&t, ObjKind::User, "b", None, &a);
        let later = t.list(ObjKind::User);
        (first, second, later)
    });
    assert!(first.is_ok(), "{first:?}");
    let e = second.expect_err("crash");
    assert!(
        e.message.contains("target `flaky`: ensure (request 3)"),
        "{e}"
    );
    assert!(e.message.contains("exit status: 3"), "{e}");
    assert!(later.expect_err("dead").message.contains(&e.message));
    assert!(
        log.text().contains("[flaky] crashing at request 3"),
        "{}",
        log.text()
    );
}

#[test]
fn a_hang_is_killed_at_the_timeout_with_its_whole_process_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidf = dir.path().join("pids");
    let cfg = config(
        &script("hang.py"),
        json!({"path": dir.path().join("db.json"), "pid_file": pidf}),
        "1s",
    );
    let e = bounded(60, move || {
        let t = open("stuck", &cfg, &Log::default());
        t.list(ObjKind::User).expect_err("hang")
    });
    assert!(
        e.message
            .contains("target `stuck`: list (request 2): no reply within 1s"),
        "{e}"
    );
    let (leader, child) = pids(&pidf);
    assert!(wait_gone(leader), "the connector {leader} is gone");
    assert!(
        wait_gone(child),
        "its child {child}, in its process group, is gone"
    );
}

#[test]
fn a_connector_that_ignores_the_end_of_its_stdin_is_killed_on_drop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidf = dir.path().join("pids");
    let cfg = config(
        &script("hang.py"),
        json!({"path": dir.path().join("db.json"), "pid_file": pidf, "ignore_eof": true}),
        "30s",
    );
    bounded(60, move || {
        let t = open("stubborn", &cfg, &Log::default());
        assert!(t.pid().is_some());
        drop(t);
    });
    let (leader, child) = pids(&pidf);
    assert!(gone(leader), "dropped: the connector was killed and reaped");
    assert!(wait_gone(child));
}

#[test]
fn secrets_echoed_to_stderr_are_relayed_redacted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        &script("echo_secret.py"),
        json!({"path": dir.path().join("db.json")}),
        "30s",
    );
    let log = Log::default();
    let log2 = log.clone();
    let (generated, debug) = bounded(60, move || {
        let t = open("echo", &cfg, &log2);
        let a = attrs(json!({"display_name": "A"}));
        let made = ensure(&t, ObjKind::User, "a", None, &a).expect("create");
        let pw = Secret::new("pw-canary-5f2a9c".into());
        t.set_secret("a", &made.remote_ref, SecretKind::Password, &pw, "d/set")
            .expect("set");
        let g = t
            .generate_secret("a", &made.remote_ref, SecretKind::Token, "d/gen")
            .expect("generate");
        let debug = format!("{g:?}");
        (g.value.expose().to_string(), debug)
    });
    assert!(generated.starts_with("tok-"));
    assert!(!debug.contains(&generated), "{debug}");
    let text = log.text();
    assert!(
        text.contains("[echo] set_secret: the new password is [redacted]"),
        "{text}"
    );
    assert!(
        text.contains("[echo] generate_secret: minted [redacted]"),
        "{text}"
    );
    assert!(
        !text.contains("pw-canary") && !text.contains(&generated),
        "{text}"
    );
}

#[test]
fn a_reply_with_another_id_fails_the_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidf = dir.path().join("pids");
    let cfg = config(
        &script("wrong_id.py"),
        json!({"path": dir.path().join("db.json"), "pid_file": pidf}),
        "30s",
    );
    let e = bounded(60, move || {
        let t = open("confused", &cfg, &Log::default());
        ensure(&t, ObjKind::User, "a", None, &Attrs::new()).expect_err("wrong id")
    });
    assert!(
        e.message
            .contains("target `confused`: ensure (request 2): replied with id 3 to request 2"),
        "{e}"
    );
    let (leader, _) = pids(&pidf);
    assert!(wait_gone(leader));
}

#[test]
fn a_retryable_error_is_retried_and_a_lasting_one_fails_after_three_retries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        &script("retryable.py"),
        json!({"path": dir.path().join("db.json")}),
        "30s",
    );
    let (made, requests) = bounded(60, move || {
        let t = open("busy", &cfg, &Log::default());
        let made = ensure(
            &t,
            ObjKind::User,
            "a",
            None,
            &attrs(json!({"display_name": "A"})),
        );
        (made, t.requests())
    });
    assert!(made.expect("retried").changed);
    assert_eq!(requests, 3, "hello, the refused ensure, its retry");

    let cfg = config(
        &script("retryable.py"),
        json!({"path": dir.path().join("db2.json"), "always": true}),
        "30s",
    );
    let (e, requests) = bounded(60, move || {
        let t = open("busy", &cfg, &Log::default());
        let e = ensure(&t, ObjKind::User, "a", None, &Attrs::new()).expect_err("always busy");
        // An error reply does not end the session.
        t.list(ObjKind::User).expect("still usable");
        (e, t.requests())
    });
    assert_eq!(e.class, ErrorClass::Retryable);
    assert!(
        e.message.contains(
            "target `busy`: ensure failed (after 4 attempts): retryable: busy, try again"
        ),
        "{e}"
    );
    assert_eq!(requests, 1 + 4 + 1);
}

#[test]
fn an_unknown_protocol_version_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        &script("bad_version.py"),
        json!({"path": dir.path().join("db.json")}),
        "30s",
    );
    let e = bounded(60, move || {
        let t = ConnectorTarget::new("future", &cfg).expect("config");
        t.open().expect_err("version 2")
    });
    assert!(e.message.contains("target `future`: hello"), "{e}");
    assert!(e.message.contains("version 2"), "{e}");
}

// --- the conformance kit -----------------------------------------------------

/// `roster connector test ARGS`, bounded: killed (and the test failed) after `secs`.
fn kit(args: &[&str], secs: u64) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_roster"))
        .arg("connector")
        .arg("test")
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
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
        if start.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("roster connector test {args:?} did not finish within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (o, e) = (o.join().expect("stdout"), e.join().expect("stderr"));
    // No run ever prints the canary or a generated token.
    for text in [&o, &e] {
        assert!(
            !text.contains("roster-conformance-canary"),
            "a canary was printed:\n{text}"
        );
        assert!(
            !text.contains("tok-"),
            "a generated token was printed:\n{text}"
        );
    }
    (status.code().unwrap_or(-1), o, e)
}

fn failed(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("FAIL "))
        .map(|l| l.split(':').next().unwrap_or(l))
        .collect()
}

fn kit_on(script_path: &str, db: &Path, extra: &[&str], secs: u64) -> (i32, String, String) {
    let cfg = json!({"path": db}).to_string();
    let mut args: Vec<&str> = vec!["--config", &cfg];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "python3", script_path]);
    kit(&args, secs)
}

#[test]
fn the_kit_passes_on_the_example_connector_and_leaves_no_sandbox_object() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db.json");
    // An object of someone else's is left alone.
    std::fs::write(&db, r#"{"user": {"alice": {"ref": "r-alice", "attrs": {"display_name": "Alice"}, "secrets": {}}}, "group": {}}"#).expect("seed");
    let (code, out, err) = kit_on(&example(), &db, &[], 120);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(failed(&out).is_empty(), "{out}");
    for check in [
        "handshake",
        "version_negotiation",
        "create_list_roundtrip/user",
        "create_list_roundtrip/group",
        "ensure_idempotent/user",
        "deactivate_reactivate",
        "paging",
        "delete_absent/user",
        "delete_absent/group",
        "secret/password/set",
        "secret/password/revoke",
        "secret/token/set",
        "unknown_op",
        "invalid_request",
        "unknown_fields_ignored",
        "timeout_kill",
        "delete/user",
        "delete/group",
        "cleanup",
        "stdout_purity",
        "no_secret_on_stderr",
        "exit_on_stdin_close",
    ] {
        assert!(
            out.lines().any(|l| l == format!("PASS {check}")),
            "no PASS {check}:\n{out}"
        );
    }
    assert!(out.lines().all(|l| l.starts_with("PASS ")), "{out}");
    assert!(
        err.contains("[conformance] "),
        "the connector's log is relayed: {err}"
    );
    let left: Value =
        serde_json::from_str(&std::fs::read_to_string(&db).expect("db")).expect("json");
    assert_eq!(
        left["user"]
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["alice".to_string()])
    );
    assert_eq!(left["group"], json!({}));

    // --kind limits the kinds tested.
    let (code, out, _) = kit_on(&example(), &db, &["--kind", "user"], 120);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("/group"), "{out}");
    let (code, out, _) = kit_on(&example(), &db, &["--kind", "group"], 120);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("/user") && !out.contains("paging"), "{out}");
    assert!(out.contains("PASS create_list_roundtrip/group"), "{out}");
}

/// Run the kit on a misbehaving connector: it must exit 1 with `FAIL check: ...reason...`.
fn kit_fails(name: &str, timeout: &str, check: &str, reason: &str) -> (String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db.json");
    let (code, out, err) = kit_on(&script(name), &db, &["--timeout", timeout], 240);
    assert_eq!(code, 1, "{name}: {out}\n{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("FAIL {check}: ")))
        .unwrap_or_else(|| panic!("{name}: no FAIL {check}:\n{out}"));
    assert!(line.contains(reason), "{name}: {line}");
    (out, err)
}

#[test]
fn the_kit_fails_garbage_on_stdout_on_stdout_purity() {
    kit_fails(
        "garbage_stdout.py",
        "2s",
        "stdout_purity",
        "`DEBUG: listing users`",
    );
}

#[test]
fn the_kit_fails_a_line_on_stdout_after_the_last_reply() {
    let (out, _) = kit_fails(
        "says_bye.py",
        "2s",
        "stdout_purity",
        "line(s) on stdout after its last reply",
    );
    assert_eq!(failed(&out), vec!["stdout_purity"], "{out}");
}

#[test]
fn the_kit_fails_a_wrong_id_on_stdout_purity() {
    kit_fails("wrong_id.py", "2s", "stdout_purity", "replied with id");
}

#[test]
fn the_kit_fails_a_crash_with_its_exit_status() {
    kit_fails(
        "crash.py",
        "2s",
        "create_list_roundtrip/user",
        "exit status: 3",
    );
}

#[test]
fn the_kit_fails_a_hang_at_its_timeout() {
    kit_fails(
        "hang.py",
        "1s",
        "create_list_roundtrip/user",
        "no reply within 1s",
    );
}

#[test]
fn the_kit_fails_an_unknown_version_at_the_handshake() {
    kit_fails("bad_version.py", "2s", "handshake", "chose version 2");
}

#[test]
fn the_kit_fails_a_secret_on_stderr_and_relays_it_redacted() {
    let (out, err) = kit_fails(
        "echo_secret.py",
        "2s",
        "no_secret_on_stderr",
        "appeared on the connector's stderr",
    );
    assert_eq!(failed(&out), vec!["no_secret_on_stderr"], "{out}");
    assert!(
        err.contains("[conformance] set_secret: the new password is [redacted]"),
        "{err}"
    );
    assert!(
        err.contains("[conformance] generate_secret: minted [redacted]"),
        "{err}"
    );
    assert!(out.contains("PASS secret/token/generate"), "{out}");
    assert!(out.contains("PASS secret/token/replay"), "{out}");
}

#[test]
fn the_kit_fails_a_second_secret_minted_for_a_replayed_idem() {
    let (out, _) = kit_fails(
        "mint_twice.py",
        "2s",
        "secret/token/replay",
        "minted a second secret",
    );
    assert!(out.contains("PASS secret/token/generate"), "{out}");
}

#[test]
fn the_kit_fails_a_listing_that_stops_after_one_page() {
    kit_fails(
        "short_paging.py",
        "2s",
        "paging",
        "over 1 page(s) missed 70 of the 120 users",
    );
}

#[test]
fn the_kit_fails_a_connector_that_does_not_exit_when_its_stdin_closes() {
    let (out, _) = kit_fails(
        "ignores_eof.py",
        "2s",
        "exit_on_stdin_close",
        "did not exit within 5 s",
    );
    assert_eq!(failed(&out), vec!["exit_on_stdin_close"], "{out}");
}

#[test]
fn the_kit_passes_a_connector_that_asks_for_retries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, out, err) = kit_on(
        &script("retryable.py"),
        &dir.path().join("r.json"),
        &["--timeout", "2s"],
        120,
    );
    assert_eq!(code, 0, "{out}\n{err}");
}

#[test]
fn the_kit_refuses_bad_arguments_clearly() {
    let (code, _, err) = kit(&["--kind", "role", "--", "true"], 30);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("`role` is not a kind"), "{err}");
    let (code, _, err) = kit(&["--config", "[1]", "--", "true"], 30);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a JSON object"), "{err}");
    let (code, out, _) = kit(&["--", "/nonexistent/connector"], 30);
    assert_eq!(code, 1);
    assert!(out.contains("FAIL handshake: target `conformance`: cannot start the connector `/nonexistent/connector`"), "{out}");
}

// --- the published protocol: every example in the doc against the schema ----

fn schema_for(def: &str) -> jsonschema::Validator {
    let path = root().join("schemas/connector-protocol.v1.schema.json");
    let mut schema: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("schema")).expect("json");
    let obj = schema.as_object_mut().expect("object");
    obj.remove("anyOf");
    obj.insert("$ref".into(), json!(format!("#/$defs/{def}")));
    jsonschema::draft202012::new(&schema).unwrap_or_else(|e| panic!("{def}: {e}"))
}

fn errors(v: &jsonschema::Validator, msg: &Value) -> Vec<String> {
    v.iter_errors(msg)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// Every `→`/`←` line of the doc's `jsonl` blocks, in order.
fn doc_messages() -> Vec<(bool, Value)> {
    let doc = std::fs::read_to_string(root().join("docs/connector-protocol.md")).expect("doc");
    let mut out = Vec::new();
    let mut inside = false;
    for line in doc.lines() {
        let t = line.trim();
        if t.starts_with("```") {
            inside = t == "```jsonl";
            continue;
        }
        if !inside {
            continue;
        }
        let (request, text) = match (t.strip_prefix("→ "), t.strip_prefix("← ")) {
            (Some(r), _) => (true, r),
            (_, Some(r)) => (false, r),
            _ => panic!("a jsonl line in the doc without → or ←: {t}"),
        };
        let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        out.push((request, v));
    }
    out
}

#[test]
fn every_example_in_the_protocol_doc_matches_the_schema() {
    let messages = doc_messages();
    assert!(messages.len() >= 20, "{} examples", messages.len());
    let any_request = schema_for("request");
    let mut last_op = String::new();
    let mut ops = std::collections::BTreeSet::new();
    for (is_request, msg) in &messages {
        if *is_request {
            last_op = msg["op"].as_str().expect("op").to_string();
            let known = [
                "hello",
                "list",
                "ensure",
                "delete",
                "set_secret",
                "generate_secret",
                "revoke_secret",
            ]
            .contains(&last_op.as_str());
            let e = errors(&any_request, msg);
            assert_eq!(e.is_empty(), known, "{msg}: {e:?}");
            ops.insert(last_op.clone());
        } else {
            let def = if msg["ok"] == json!(true) {
                format!("{last_op}_reply")
            } else {
                "error_reply".to_string()
            };
            let e = errors(&schema_for(&def), msg);
            assert!(e.is_empty(), "{def}: {msg}: {e:?}");
            assert!(schema_for("reply").is_valid(msg), "{msg}");
        }
    }
    for op in [
        "hello",
        "list",
        "ensure",
        "delete",
        "set_secret",
        "generate_secret",
        "revoke_secret",
    ] {
        assert!(ops.contains(op), "the doc has no example of {op}");
    }
}

#[test]
fn broken_messages_are_refused_by_the_schema() {
    let cases: &[(&str, Value)] = &[
        (
            "request",
            json!({"id": 2, "op": "ensure", "kind": "user", "ref": null, "previous_key": null, "attrs": {}, "idem": "d/s"}),
        ),
        (
            "request",
            json!({"id": "2", "op": "list", "kind": "user", "cursor": null}),
        ),
        (
            "request",
            json!({"id": 0, "op": "list", "kind": "user", "cursor": null}),
        ),
        (
            "request",
            json!({"id": 2, "op": "list", "kind": "role", "cursor": null}),
        ),
        ("request", json!({"id": 2, "op": "frobnicate"})),
        (
            "request",
            json!({"id": 5, "op": "set_secret", "key": "a", "ref": "r", "kind": "pin", "value": "x", "idem": "i"}),
        ),
        (
            "request",
            json!({"id": 5, "op": "set_secret", "key": "a", "ref": "r", "kind": "password", "idem": "i"}),
        ),
        (
            "request",
            json!({"id": 1, "op": "hello", "versions": [], "target": "t", "config": {}}),
        ),
        (
            "request",
            json!({"id": 2, "op": "ensure", "kind": "user", "key": "a", "ref": null, "previous_key": null, "attrs": {"active": true, "groups": "staff"}, "idem": "d/s"}),
        ),
        (
            "request",
            json!({"id": 2, "op": "ensure", "kind": "user", "key": "a", "ref": null, "previous_key": null, "attrs": {"set_rights": {"payroll": "admin"}}, "idem": "d/s"}),
        ),
        (
            "hello_reply",
            json!({"id": 1, "ok": true, "version": 1, "capabilities": {"kinds": ["group"], "paging": false, "secrets": {}}}),
        ),
        (
            "hello_reply",
            json!({"id": 1, "ok": true, "version": 1, "capabilities": {"kinds": ["user"], "paging": false, "secrets": {"password": "both"}}}),
        ),
        (
            "hello_reply",
            json!({"id": 1, "ok": true, "capabilities": {"kinds": ["user"], "paging": false, "secrets": {}}}),
        ),
        (
            "hello_reply",
            json!({"id": 1, "ok": true, "version": 1, "capabilities": {"kinds": ["user"], "paging": false, "membership": "both", "secrets": {}}}),
        ),
        (
            "list_reply",
            json!({"id": 2, "ok": true, "items": [{"key": "a", "attrs": {}}], "next": null}),
        ),
        ("list_reply", json!({"id": 2, "ok": true, "items": []})),
        (
            "list_reply",
            json!({"id": 2, "ok": true, "items": [], "next": 3}),
        ),
        (
            "ensure_reply",
            json!({"id": 3, "ok": true, "ref": "r", "attrs": {}}),
        ),
        (
            "ensure_reply",
            json!({"id": 3, "ok": true, "ref": "r", "changed": "yes", "attrs": {}}),
        ),
        (
            "ensure_reply",
            json!({"id": 3, "ok": true, "reff": "r", "changed": true, "attrs": {}}),
        ),
        (
            "generate_secret_reply",
            json!({"id": 6, "ok": true, "secret": {"kind": "password"}}),
        ),
        (
            "generate_secret_reply",
            json!({"id": 6, "ok": true, "secret": {"kind": "password", "value": ""}}),
        ),
        (
            "error_reply",
            json!({"id": 7, "ok": false, "error": {"class": "oops", "message": "m"}}),
        ),
        (
            "error_reply",
            json!({"id": 7, "ok": false, "error": {"class": "retryable", "message": "m", "retry_after": -1}}),
        ),
        (
            "error_reply",
            json!({"id": 7, "ok": false, "error": {"class": "fatal"}}),
        ),
        (
            "error_reply",
            json!({"id": 7, "ok": true, "error": {"class": "fatal", "message": "m"}}),
        ),
        ("reply", json!({"id": 7, "ok": "true"})),
        ("reply", json!({"ok": true})),
    ];
    for (def, msg) in cases {
        assert!(
            !schema_for(def).is_valid(msg),
            "{def} accepted a broken message: {msg}"
        );
    }
}

#[test]
fn the_requests_roster_sends_match_the_schema() {
    use roster::target::connector::protocol::{Op, SecretValue};
    use roster::target::connector::request_line;
    let any = schema_for("request");
    let secret = Secret::new("pw".into());
    let cfg = BTreeMap::from([("path".to_string(), json!("/x"))]);
    let a = attrs(
        json!({"display_name": "A", "active": true, "groups": ["g"], "set_rights": {"payroll": "read"}}),
    );
    let ops = [
        Op::Hello {
            versions: &[1],
            target: "t",
            config: &cfg,
        },
        Op::List {
            kind: ObjKind::Group,
            cursor: None,
        },
        Op::List {
            kind: ObjKind::User,
            cursor: Some("c"),
        },
        Op::Ensure {
            kind: ObjKind::User,
            key: "a",
            remote_ref: None,
            previous_key: None,
            attrs: &a,
            idem: "d/s",
        },
        Op::Ensure {
            kind: ObjKind::User,
            key: "b",
            remote_ref: Some("r"),
            previous_key: Some("a"),
            attrs: &a,
            idem: "d/s",
        },
        Op::Delete {
            kind: ObjKind::Group,
            key: "g",
            remote_ref: "r",
            idem: "d/s",
        },
        Op::SetSecret {
            key: "a",
            remote_ref: "r",
            kind: SecretKind::Password,
            value: SecretValue(&secret),
            idem: "d/s",
        },
        Op::GenerateSecret {
            key: "a",
            remote_ref: "r",
            kind: SecretKind::Token,
            idem: "d/s",
        },
        Op::RevokeSecret {
            key: "a",
            remote_ref: "r",
            kind: SecretKind::Token,
            idem: "d/s",
        },
    ];
    for (i, op) in ops.iter().enumerate() {
        let line = request_line(i as u64 + 1, op);
        let v: Value = serde_json::from_str(&line).expect("json");
        let e = errors(&any, &v);
        assert!(e.is_empty(), "{}: {e:?}", op.name());
        assert_eq!(v["op"], json!(op.name()));
    }
}

#[test]
fn the_readme_shows_the_example_connector_whole_and_it_is_60_lines_at_most() {
    let text = std::fs::read_to_string(example()).expect("example");
    assert!(text.lines().count() <= 60, "{} lines", text.lines().count());
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README");
    assert!(
        readme.contains(&format!("```python\n{text}```\n")),
        "README.md's Connectors section must show connectors/example/roster_example.py as it is"
    );
}

#[test]
fn a_stderr_line_over_64_kib_is_cut() {
    let script = "import json, sys\nsys.stdin.readline()\nprint('L' * 100000, file=sys.stderr, flush=True)\nprint(json.dumps({'id': 1, 'ok': True, 'version': 1, 'capabilities': {'kinds': ['user'], 'paging': False, 'secrets': {}}}), flush=True)\nsys.stdin.read()\n";
    let cfg = ConnectorTargetConfig {
        command: vec!["python3".into(), "-c".into(), script.into()],
        config: Default::default(),
        env: vec![],
        timeout: None,
    };
    let log = Log::default();
    let log2 = log.clone();
    bounded(30, move || drop(open("chatty", &cfg, &log2)));
    let text = log.text();
    let line = text
        .lines()
        .find(|l| l.starts_with("[chatty] L"))
        .expect("relayed");
    assert!(
        line.ends_with(" [line truncated]"),
        "{}",
        &line[line.len() - 40..]
    );
    assert_eq!(line.matches('L').count(), 64 * 1024);
}

#[test]
fn an_ok_reply_without_the_fields_of_its_op_ends_the_session() {
    let script = "import json, sys\nfor line in sys.stdin:\n    req = json.loads(line)\n    if req['op'] == 'hello':\n        print(json.dumps({'id': 1, 'ok': True, 'version': 1, 'capabilities': {'kinds': ['user'], 'paging': False, 'secrets': {}}}), flush=True)\n    else:\n        print(json.dumps({'id': req['id'], 'ok': True}), flush=True)\n";
    let cfg = ConnectorTargetConfig {
        command: vec!["python3".into(), "-c".into(), script.into()],
        config: Default::default(),
        env: vec![],
        timeout: Some("10s".into()),
    };
    let (e, later) = bounded(30, move || {
        let t = open("terse", &cfg, &Log::default());
        let e = t.list(ObjKind::User).expect_err("no items");
        let later = t.list(ObjKind::User).expect_err("dead");
        (e, later)
    });
    assert!(
        e.message.contains(
            "target `terse`: list (request 2): the reply does not have the fields of a `list` reply"
        ),
        "{e}"
    );
    assert!(e.message.contains("missing field `items`"), "{e}");
    assert!(later.message.contains("session ended earlier"), "{later}");
}
