//! The PostgreSQL connector (`connectors/postgres/roster_postgres.py`)
//! against a real, throw-away PostgreSQL cluster on 127.0.0.1 (harness in
//! `tests/common/postgres.rs`), driven over its stdin/stdout by a small
//! JSON-lines driver, as roster drives it: the handshake, a user's lifecycle
//! checked by logging in over TCP with the password set (SELECT where it may
//! read, no INSERT; write and full rights; rotation; deactivation and
//! reactivation; rename; revocation), the SCRAM verifier the server keeps,
//! idempotent ensures, paging, error classes, and no secret on stderr; then
//! `roster connector test` against it, and the `roster` binary's plan/apply
//! lifecycle with a `warehouse` connector target.

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::connectors::{connector_script, python};
use common::postgres::Postgres;
use serde_json::{Value, json};

/// The longest any one request may take (a real server on loopback).
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
const DB: &str = "warehouse";
const DSN_ENV: &str = "WAREHOUSE_DSN";

/// One connector process, spoken to as roster speaks to it.
struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    next_id: u64,
}

impl Session {
    /// Start the connector with only PATH, HOME, LANG and the DSN variable in
    /// its environment (as roster starts it) and say hello with `config`.
    fn start(dsn: &str, config: Value) -> (Session, Value) {
        let mut s = Session::spawn(dsn);
        let reply = s.call(
            "hello",
            json!({"versions": [1], "target": "warehouse", "config": config}),
        );
        (s, reply)
    }

    fn spawn(dsn: &str) -> Session {
        let mut cmd = Command::new(python());
        cmd.arg(connector_script("postgres", "roster_postgres.py"))
            .env_clear()
            .env(DSN_ENV, dsn)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for var in ["PATH", "HOME", "LANG"] {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        let mut child = cmd.spawn().expect("start the connector");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let pipe = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                s.push_str(&line);
                s.push('\n');
            }
        });
        Session {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
            next_id: 0,
        }
    }

    /// Send one request, read its reply (which must carry the same id and be
    /// the only line the connector wrote).
    fn call(&mut self, op: &str, fields: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut req = json!({"id": id, "op": op});
        for (k, v) in fields.as_object().expect("fields are an object") {
            req[k] = v.clone();
        }
        let stdin = self.stdin.as_mut().expect("session open");
        writeln!(stdin, "{req}").expect("write a request");
        stdin.flush().expect("flush");
        let line = match self.lines.recv_timeout(REPLY_TIMEOUT) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                panic!(
                    "no reply to {op} within {REPLY_TIMEOUT:?}; stderr:\n{}",
                    self.stderr()
                )
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!(
                    "the connector closed stdout during {op}; stderr:\n{}",
                    self.stderr()
                )
            }
        };
        let reply: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("reply to {op} is not JSON ({e}): {line}"));
        assert_eq!(
            reply["id"],
            json!(id),
            "reply to {op} has another id: {line}"
        );
        reply
    }

    /// A request that must succeed.
    fn ok(&mut self, op: &str, fields: Value) -> Value {
        let reply = self.call(op, fields);
        assert_eq!(
            reply["ok"],
            json!(true),
            "{op} failed: {reply}\nstderr:\n{}",
            self.stderr()
        );
        reply
    }

    /// A request that must fail with `class`; returns the message.
    fn fails(&mut self, op: &str, fields: Value, class: &str) -> String {
        let reply = self.call(op, fields);
        assert_eq!(reply["ok"], json!(false), "{op} should fail: {reply}");
        assert_eq!(reply["error"]["class"], json!(class), "{op}: {reply}");
        reply["error"]["message"]
            .as_str()
            .expect("an error message")
            .to_string()
    }

    fn ensure(&mut self, kind: &str, key: &str, reference: Option<&str>, attrs: Value) -> Value {
        self.ok(
            "ensure",
            json!({"kind": kind, "key": key, "ref": reference, "previous_key": null,
                   "attrs": attrs, "idem": format!("test/{kind}/{key}")}),
        )
    }

    fn set_password(&mut self, key: &str, reference: &str, value: &str) {
        self.ok(
            "set_secret",
            json!({"key": key, "ref": reference, "kind": "password", "value": value, "idem": "test/secret"}),
        );
    }

    /// Every item of `kind`, following `next` (bounded); also the page count.
    fn list_all(&mut self, kind: &str) -> (Vec<Value>, usize) {
        let mut items = Vec::new();
        let mut cursor = Value::Null;
        for page in 1..=1000 {
            let reply = self.ok("list", json!({"kind": kind, "cursor": cursor}));
            items.extend(reply["items"].as_array().expect("items").iter().cloned());
            if reply["next"].is_null() {
                return (items, page);
            }
            cursor = reply["next"].clone();
        }
        panic!("list {kind} did not end within 1000 pages");
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Close stdin; the connector must exit (bounded wait). Returns its stderr.
    fn finish(mut self) -> String {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "connector exited with {status}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the connector did not exit within 10 s of stdin closing"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // The stderr reader ends at EOF, which follows the exit.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut last = self.stderr();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            let now = self.stderr();
            if now == last {
                break;
            }
            last = now;
        }
        last
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A background `psql`, killed by pid if still running when dropped.
struct OpenSession(Child);

impl OpenSession {
    /// Wait (bounded) for it to exit: its status and stderr.
    fn wait_exit(&mut self, limit: Duration) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().expect("wait for psql") {
                let mut err = String::new();
                if let Some(mut pipe) = self.0.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut pipe, &mut err);
                }
                return (status, err);
            }
            assert!(
                Instant::now() < deadline,
                "psql still running after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for OpenSession {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Poll `cond` (bounded: 30 s) until it holds.
fn wait_for(cond: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "waited 30 s for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A cluster with database `warehouse`, schemas `analytics` (one table with
/// a row) and `staging` (one table), owned by the superuser.
fn warehouse() -> Postgres {
    let pg = Postgres::start();
    pg.admin("postgres", &format!("CREATE DATABASE {DB}"));
    pg.admin(
        DB,
        "CREATE SCHEMA analytics; CREATE TABLE analytics.events (id int, what text);\
         INSERT INTO analytics.events VALUES (1, 'seed');\
         CREATE SCHEMA staging; CREATE TABLE staging.loads (id int, what text);\
         INSERT INTO staging.loads VALUES (1, 'seed');",
    );
    pg
}

fn config() -> Value {
    json!({"dsn_env": DSN_ENV, "schema_prefix": "", "log_level": "debug"})
}

fn refs(reply: &Value) -> String {
    reply["ref"].as_str().expect("a ref").to_string()
}

/// Whether `user` can log in with `password` (over TCP, SCRAM).
fn logs_in(pg: &Postgres, user: &str, password: &str) -> Result<String, String> {
    pg.psql_as(user, password, DB, "SELECT current_user")
}

fn assert_login_fails(pg: &Postgres, user: &str, password: &str, why: &str) {
    let err = logs_in(pg, user, password).expect_err(why);
    assert!(
        err.contains("password authentication failed") || err.contains("not permitted to log in"),
        "{why}: unexpected error: {err}"
    );
}

#[test]
fn a_user_lifecycle_reaches_a_real_server() {
    let pg = warehouse();
    let dsn = pg.dsn(DB);
    let (mut s, hello) = Session::start(&dsn, config());
    assert_eq!(hello["ok"], json!(true), "{hello}");
    assert_eq!(hello["version"], json!(1));
    assert_eq!(
        hello["capabilities"],
        json!({"kinds": ["user", "group"], "paging": true, "membership": "on_user",
               "secrets": {"password": "roster_generated"}})
    );

    // A group, then a user in it with read rights on analytics.
    let group = s.ensure("group", "etl", None, json!({"description": "ETL jobs"}));
    assert_eq!(group["changed"], json!(true));
    assert_eq!(group["attrs"], json!({"description": "ETL jobs"}));
    let want = json!({"display_name": "Survey sync", "email": "ops@example.com", "active": true,
                      "groups": ["etl"], "set_rights": {"analytics": "read"}});
    let created = s.ensure("user", "survey-sync", None, want.clone());
    assert_eq!(created["changed"], json!(true), "{created}");
    let uref = refs(&created);
    // What it holds, read back; email is not kept by PostgreSQL.
    assert_eq!(
        created["attrs"],
        json!({"display_name": "Survey sync", "active": true, "groups": ["etl"],
               "set_rights": {"analytics": "read"}})
    );
    let again = s.ensure("user", "survey-sync", Some(&uref), want.clone());
    assert_eq!(again["changed"], json!(false), "a second ensure: {again}");
    assert_eq!(again["attrs"], created["attrs"]);
    assert_eq!(
        pg.admin(
            DB,
            "SELECT r.rolcanlogin, m.rolname FROM pg_roles r \
             JOIN pg_auth_members a ON a.member = r.oid JOIN pg_roles m ON m.oid = a.roleid \
             WHERE r.rolname = 'survey-sync'"
        ),
        "t|etl"
    );

    // The password: the server keeps a SCRAM verifier, the user logs in.
    let first = "Fz8-first-password-7Qm2";
    s.set_password("survey-sync", &uref, first);
    let stored = pg.admin(
        DB,
        "SELECT rolpassword FROM pg_authid WHERE rolname = 'survey-sync'",
    );
    assert!(
        stored.starts_with("SCRAM-SHA-256$4096:"),
        "stored: {stored}"
    );
    assert!(!stored.contains(first));
    // The connector sent that verifier, not the password (the harness's
    // server logs every DDL statement: what travelled over the wire).
    let log = pg.server_log();
    assert!(
        log.contains(&format!("PASSWORD '{stored}'")),
        "the server's statement log shows the verifier sent:\n{log}"
    );
    assert!(!log.contains(first), "the password travelled to the server");
    assert_eq!(
        logs_in(&pg, "survey-sync", first).as_deref(),
        Ok("survey-sync")
    );

    // read: SELECT yes, INSERT no; a table made later follows (default privileges).
    assert_eq!(
        pg.psql_as(
            "survey-sync",
            first,
            DB,
            "SELECT count(*) FROM analytics.events"
        ),
        Ok("1".into())
    );
    let denied = pg
        .psql_as(
            "survey-sync",
            first,
            DB,
            "INSERT INTO analytics.events VALUES (2, 'x')",
        )
        .expect_err("read rights must not allow INSERT");
    assert!(denied.contains("permission denied"), "{denied}");
    let other = pg
        .psql_as(
            "survey-sync",
            first,
            DB,
            "SELECT count(*) FROM staging.loads",
        )
        .expect_err("no rights on staging");
    assert!(other.contains("permission denied"), "{other}");
    pg.admin(
        DB,
        "CREATE TABLE analytics.later (id int); INSERT INTO analytics.later VALUES (7)",
    );
    assert_eq!(
        pg.psql_as("survey-sync", first, DB, "SELECT id FROM analytics.later"),
        Ok("7".into())
    );
    // Still exactly read: the new table carries the same grants.
    let listed = s.list_all("user").0;
    let item = listed
        .iter()
        .find(|i| i["key"] == "survey-sync")
        .expect("listed");
    assert_eq!(item["attrs"]["set_rights"], json!({"analytics": "read"}));
    assert_eq!(item["ref"], json!(uref));

    // write: INSERT and UPDATE, not DELETE; full adds DELETE.
    let mut want_write = want.clone();
    want_write["set_rights"] = json!({"analytics": "write", "staging": "read"});
    let w = s.ensure("user", "survey-sync", Some(&uref), want_write.clone());
    assert_eq!(w["changed"], json!(true));
    assert_eq!(
        w["attrs"]["set_rights"],
        json!({"analytics": "write", "staging": "read"})
    );
    pg.psql_as(
        "survey-sync",
        first,
        DB,
        "INSERT INTO analytics.events VALUES (2, 'x')",
    )
    .expect("write allows INSERT");
    pg.psql_as(
        "survey-sync",
        first,
        DB,
        "UPDATE analytics.events SET what = 'y' WHERE id = 2",
    )
    .expect("write allows UPDATE");
    let no_delete = pg
        .psql_as(
            "survey-sync",
            first,
            DB,
            "DELETE FROM analytics.events WHERE id = 2",
        )
        .expect_err("write must not allow DELETE");
    assert!(no_delete.contains("permission denied"), "{no_delete}");
    assert_eq!(
        pg.psql_as(
            "survey-sync",
            first,
            DB,
            "SELECT count(*) FROM staging.loads"
        ),
        Ok("1".into())
    );
    let mut want_full = want.clone();
    want_full["set_rights"] = json!({"analytics": "full"});
    let f = s.ensure("user", "survey-sync", Some(&uref), want_full.clone());
    assert_eq!(f["attrs"]["set_rights"], json!({"analytics": "full"}));
    pg.psql_as(
        "survey-sync",
        first,
        DB,
        "DELETE FROM analytics.events WHERE id = 2",
    )
    .expect("full allows DELETE");
    // staging was dropped from the rights: revoked.
    let revoked = pg
        .psql_as(
            "survey-sync",
            first,
            DB,
            "SELECT count(*) FROM staging.loads",
        )
        .expect_err("staging revoked");
    assert!(revoked.contains("permission denied"), "{revoked}");
    // Back to read.
    let r = s.ensure("user", "survey-sync", Some(&uref), want.clone());
    assert_eq!(r["attrs"]["set_rights"], json!({"analytics": "read"}));
    assert!(
        pg.psql_as(
            "survey-sync",
            first,
            DB,
            "INSERT INTO analytics.events VALUES (3, 'x')"
        )
        .is_err()
    );

    // Rotation: the old password fails, the new one works.
    let second = "Kp4-second-password-9Zx1";
    s.set_password("survey-sync", &uref, second);
    assert_login_fails(&pg, "survey-sync", first, "the old password after rotation");
    assert_eq!(
        logs_in(&pg, "survey-sync", second).as_deref(),
        Ok("survey-sync")
    );

    // Deactivation: no login with the right password, and the session open
    // before it is ended; then reactivation.
    let mut open_session = OpenSession(
        pg.psql_command("survey-sync", second, DB, "SELECT pg_sleep(120)")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start a long psql session"),
    );
    wait_for(
        || {
            pg.admin(
                DB,
                "SELECT count(*) FROM pg_stat_activity WHERE usename = 'survey-sync'",
            ) == "1"
        },
        "the user's session to show in pg_stat_activity",
    );
    let mut inactive = want.clone();
    inactive["active"] = json!(false);
    let d = s.ensure("user", "survey-sync", Some(&uref), inactive.clone());
    assert_eq!(d["changed"], json!(true));
    assert_eq!(d["attrs"]["active"], json!(false));
    let ended = open_session.wait_exit(Duration::from_secs(30));
    assert!(
        !ended.0.success() && ended.1.contains("terminating connection"),
        "the open session must be ended by the deactivation: {} {}",
        ended.0,
        ended.1
    );
    assert_login_fails(&pg, "survey-sync", second, "a deactivated user");
    assert_eq!(
        pg.admin(DB, "SELECT rolcanlogin, rolvaliduntil = '-infinity' FROM pg_roles WHERE rolname = 'survey-sync'"),
        "f|t"
    );
    let d2 = s.ensure("user", "survey-sync", Some(&uref), inactive);
    assert_eq!(d2["changed"], json!(false));
    let back = s.ensure("user", "survey-sync", Some(&uref), want.clone());
    assert_eq!(back["changed"], json!(true));
    assert_eq!(back["attrs"]["active"], json!(true));
    assert_eq!(
        logs_in(&pg, "survey-sync", second).as_deref(),
        Ok("survey-sync")
    );

    // Rename: same role (ref), grants, membership and password kept.
    let renamed = s.ok(
        "ensure",
        json!({"kind": "user", "key": "survey-export", "ref": uref, "previous_key": "survey-sync",
               "attrs": want, "idem": "test/rename"}),
    );
    assert_eq!(renamed["changed"], json!(true));
    assert_eq!(refs(&renamed), uref, "a rename keeps the role");
    assert_eq!(renamed["attrs"]["groups"], json!(["etl"]));
    assert_eq!(renamed["attrs"]["set_rights"], json!({"analytics": "read"}));
    assert_eq!(
        pg.psql_as(
            "survey-export",
            second,
            DB,
            "SELECT count(*) FROM analytics.events"
        ),
        Ok("1".into())
    );
    assert!(
        logs_in(&pg, "survey-sync", second).is_err(),
        "the old name is gone"
    );

    // Leaving the group.
    let mut no_group = want.clone();
    no_group["groups"] = json!([]);
    let ng = s.ensure("user", "survey-export", Some(&uref), no_group);
    assert_eq!(ng["attrs"]["groups"], json!([]));
    assert_eq!(
        pg.admin(DB, "SELECT count(*) FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.member WHERE r.rolname = 'survey-export'"),
        "0"
    );

    // A non-ASCII password (SASLprep as the server and libpq apply it).
    let unicode = "Grüße-Ω-pässwörd-ｆｕｌｌ-42";
    s.set_password("survey-export", &uref, unicode);
    assert_eq!(
        logs_in(&pg, "survey-export", unicode).as_deref(),
        Ok("survey-export")
    );

    // Revocation: no password at all.
    s.ok(
        "revoke_secret",
        json!({"key": "survey-export", "ref": uref, "kind": "password", "idem": "test/revoke"}),
    );
    assert_eq!(
        pg.admin(
            DB,
            "SELECT rolpassword IS NULL FROM pg_authid WHERE rolname = 'survey-export'"
        ),
        "t"
    );
    assert_login_fails(&pg, "survey-export", unicode, "a revoked password");
    let log = pg.server_log();
    for secret in [first, second, unicode] {
        assert!(!log.contains(secret), "a password reached the server's log");
    }

    // Delete: the user (its grants and default privileges revoked first),
    // the group; deleting what is absent succeeds.
    for (kind, key, r) in [
        ("user", "survey-export", uref.clone()),
        ("group", "etl", refs(&group)),
    ] {
        let del = json!({"kind": kind, "key": key, "ref": r, "idem": "test/delete"});
        s.ok("delete", del.clone());
        s.ok("delete", del);
    }
    assert_eq!(
        pg.admin(
            DB,
            "SELECT count(*) FROM pg_roles WHERE rolname IN ('survey-export', 'etl')"
        ),
        "0"
    );

    // Nothing secret on stderr, which logged at debug level all along.
    let stderr = s.finish();
    assert!(
        stderr.contains("debug: request:"),
        "debug logging was on:\n{stderr}"
    );
    for secret in [first, second, unicode, pg.password.as_str()] {
        assert!(
            !stderr.contains(secret),
            "a secret reached stderr:\n{stderr}"
        );
    }
    assert!(
        !stderr.contains("SCRAM-SHA-256$"),
        "a verifier reached stderr"
    );
}

#[test]
fn list_pages_through_every_role_it_may_manage() {
    let pg = warehouse();
    // 120 roster users through the connector, 15 unmarked login roles and a
    // few roles it must never list.
    let (mut s, hello) = Session::start(&pg.dsn(DB), config());
    assert_eq!(hello["ok"], json!(true), "{hello}");
    s.ensure("group", "readers", None, json!({}));
    for i in 0..120 {
        let key = format!("api-{i:03}");
        s.ensure(
            "user",
            &key,
            None,
            json!({"display_name": format!("API {i}"), "active": i % 10 != 0,
                   "groups": if i % 2 == 0 { json!(["readers"]) } else { json!([]) },
                   "set_rights": {"analytics": "read"}}),
        );
    }
    let mut sql = String::new();
    for i in 0..15 {
        sql.push_str(&format!("CREATE ROLE \"hand-made-{i:02}\" LOGIN;"));
    }
    sql.push_str("CREATE ROLE other_admin SUPERUSER LOGIN; CREATE ROLE legacy_group NOLOGIN;");
    pg.admin(DB, &sql);

    let (users, pages) = s.list_all("user");
    assert!(
        pages >= 2,
        "138 users come in more than one page of 100 ({pages})"
    );
    let keys: Vec<&str> = users
        .iter()
        .map(|u| u["key"].as_str().expect("key"))
        .collect();
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), keys.len(), "no user listed twice");
    assert_eq!(
        keys.len(),
        135,
        "120 roster users and 15 hand-made: {keys:?}"
    );
    for never in ["postgres", "other_admin", "readers", "legacy_group"] {
        assert!(
            !keys.contains(&never),
            "{never} must not be listed as a user"
        );
    }
    assert!(keys.iter().all(|k| !k.starts_with("pg_")));
    let u = users
        .iter()
        .find(|u| u["key"] == "api-010")
        .expect("api-010");
    assert_eq!(
        u["attrs"],
        json!({"display_name": "API 10", "active": false, "groups": ["readers"],
               "set_rights": {"analytics": "read"}})
    );
    let h = users
        .iter()
        .find(|u| u["key"] == "hand-made-03")
        .expect("hand-made-03");
    assert_eq!(
        h["attrs"],
        json!({"active": true, "groups": [], "set_rights": {}})
    );
    let (groups, _) = s.list_all("group");
    let gkeys: Vec<&str> = groups
        .iter()
        .map(|g| g["key"].as_str().expect("key"))
        .collect();
    assert_eq!(gkeys, ["legacy_group", "readers"]);
    s.finish();
}

#[test]
fn errors_come_back_in_protocol_classes() {
    let pg = warehouse();
    let dsn = pg.dsn(DB);
    let (mut s, _) = Session::start(&dsn, config());
    s.fails("frobnicate", json!({}), "unsupported");
    s.fails(
        "generate_secret",
        json!({"key": "x", "ref": "1", "kind": "password", "idem": "i"}),
        "unsupported",
    );
    let bad_level = json!({"kind": "user", "key": "x", "ref": null, "attrs": {"set_rights": {"analytics": "admin"}}, "idem": "i"});
    let m = s.fails("ensure", bad_level, "invalid");
    assert!(m.contains("set_rights.analytics"), "{m}");
    let no_schema = json!({"kind": "user", "key": "x", "ref": null, "attrs": {"set_rights": {"nowhere": "read"}}, "idem": "i"});
    let m = s.fails("ensure", no_schema, "invalid");
    assert!(m.contains("nowhere"), "{m}");
    // The failed ensure left nothing behind (one transaction).
    assert_eq!(
        pg.admin(DB, "SELECT count(*) FROM pg_roles WHERE rolname = 'x'"),
        "0"
    );
    let long = "x".repeat(64);
    s.fails(
        "ensure",
        json!({"kind": "user", "key": long, "ref": null, "attrs": {}, "idem": "i"}),
        "invalid",
    );
    s.fails(
        "ensure",
        json!({"kind": "user", "key": "postgres", "ref": null, "attrs": {}, "idem": "i"}),
        "invalid",
    );
    // Someone else's role of the same name is never taken over.
    pg.admin(DB, "CREATE ROLE app_owner LOGIN");
    let m = s.fails(
        "ensure",
        json!({"kind": "user", "key": "app_owner", "ref": null, "attrs": {}, "idem": "i"}),
        "conflict",
    );
    assert!(m.contains("app_owner"), "{m}");
    s.fails(
        "delete",
        json!({"kind": "user", "key": "app_owner", "ref": "1", "idem": "i"}),
        "conflict",
    );
    s.fails(
        "set_secret",
        json!({"key": "app_owner", "ref": "1", "kind": "password", "value": "Zz9-not-set", "idem": "i"}),
        "conflict",
    );
    s.fails(
        "ensure",
        json!({"kind": "user", "key": "y", "ref": null, "attrs": {"groups": ["app_owner"]}, "idem": "i"}),
        "invalid",
    );
    s.fails(
        "list",
        json!({"kind": "user", "cursor": "not a cursor!"}),
        "invalid",
    );
    s.fails("list", json!({"kind": "robot", "cursor": null}), "invalid");
    let stderr = s.finish();
    assert!(!stderr.contains("Zz9-not-set"), "{stderr}");
    assert!(!stderr.contains(&pg.password), "{stderr}");

    // Configuration and connection failures.
    let (mut s, hello) = Session::start(&dsn, json!({"dsn_env": "NOT_SET_ANYWHERE"}));
    assert_eq!(hello["error"]["class"], json!("invalid"), "{hello}");
    s.fails("list", json!({"kind": "user", "cursor": null}), "invalid");
    s.finish();
    let (_, hello) = Session::start(&dsn, json!({"dsn_env": DSN_ENV, "colour": "blue"}));
    assert_eq!(hello["error"]["class"], json!("invalid"), "{hello}");
    let (mut s, hello) = Session::start(&dsn, json!({"dsn_env": DSN_ENV}));
    assert_eq!(hello["ok"], json!(true));
    s.call("hello", json!({"versions": [7], "config": config()}))["error"]["class"]
        .as_str()
        .map(|c| assert_eq!(c, "unsupported"))
        .expect("an error class");
    s.finish();

    let wrong = pg.dsn_for("postgres", "wrong-Pw-3141", DB);
    let (mut s, _) = Session::start(&wrong, config());
    let m = s.fails("list", json!({"kind": "user", "cursor": null}), "auth");
    assert!(!m.contains("wrong-Pw-3141"), "{m}");
    let stderr = s.finish();
    assert!(
        !stderr.contains("wrong-Pw-3141"),
        "the DSN's password reached stderr:\n{stderr}"
    );

    let dead = pg.dsn_for("postgres", &pg.password, DB).replace(
        &format!("port={}", pg.port),
        &format!("port={}", common::postgres::free_port()),
    );
    let (mut s, _) = Session::start(&dead, config());
    let reply = s.call("list", json!({"kind": "user", "cursor": null}));
    assert_eq!(reply["error"]["class"], json!("retryable"), "{reply}");
    assert!(reply["error"]["retry_after"].is_number(), "{reply}");
    s.finish();
}

#[test]
fn schema_prefix_maps_areas_to_prefixed_schemas() {
    let pg = warehouse();
    pg.admin(DB, "CREATE SCHEMA dw_sales; CREATE TABLE dw_sales.orders (id int); INSERT INTO dw_sales.orders VALUES (5)");
    let (mut s, _) = Session::start(
        &pg.dsn(DB),
        json!({"dsn_env": DSN_ENV, "schema_prefix": "dw_", "page_size": 7}),
    );
    let u = s.ensure(
        "user",
        "reporter",
        None,
        json!({"active": true, "set_rights": {"sales": "read"}}),
    );
    assert_eq!(u["attrs"]["set_rights"], json!({"sales": "read"}));
    let uref = refs(&u);
    s.set_password("reporter", &uref, "Rp7-prefix-password-2Lk");
    assert_eq!(
        pg.psql_as(
            "reporter",
            "Rp7-prefix-password-2Lk",
            DB,
            "SELECT id FROM dw_sales.orders"
        ),
        Ok("5".into())
    );
    // A schema outside the prefix is no area: not reported, not touched.
    pg.admin(DB, "GRANT USAGE ON SCHEMA analytics TO reporter");
    let again = s.ensure(
        "user",
        "reporter",
        Some(&uref),
        json!({"active": true, "set_rights": {"sales": "read"}}),
    );
    assert_eq!(again["changed"], json!(false), "{again}");
    assert_eq!(
        pg.admin(
            DB,
            "SELECT has_schema_privilege('reporter', 'analytics', 'USAGE')"
        ),
        "t"
    );
    // Grants made by hand inside an area show as drift ("custom") and are
    // put right by the next ensure.
    pg.admin(DB, "GRANT DELETE ON dw_sales.orders TO reporter");
    let (users, _) = s.list_all("user");
    let listed = users
        .iter()
        .find(|u| u["key"] == "reporter")
        .expect("listed");
    assert_eq!(listed["attrs"]["set_rights"], json!({"sales": "custom"}));
    let fixed = s.ensure(
        "user",
        "reporter",
        Some(&uref),
        json!({"active": true, "set_rights": {"sales": "read"}}),
    );
    assert_eq!(fixed["changed"], json!(true));
    assert_eq!(fixed["attrs"]["set_rights"], json!({"sales": "read"}));
    assert_eq!(
        pg.admin(
            DB,
            "SELECT has_table_privilege('reporter', 'dw_sales.orders', 'DELETE')"
        ),
        "f"
    );
    s.finish();
}

#[test]
fn the_conformance_kit_passes_against_a_real_server() {
    let pg = warehouse();
    let out = Command::new(env!("CARGO_BIN_EXE_roster"))
        .args(["connector", "test", "--env", DSN_ENV, "--config"])
        .arg(json!({"dsn_env": DSN_ENV, "log_level": "debug"}).to_string())
        .arg("--")
        .arg(python())
        .arg(connector_script("postgres", "roster_postgres.py"))
        .env(DSN_ENV, pg.dsn(DB))
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run roster connector test");
    let text = format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the conformance kit failed:\n{text}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("FAIL"),
        "{text}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("PASS"),
        "{text}"
    );
    // The sandbox is gone from the server.
    assert_eq!(
        pg.admin(
            DB,
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'roster-conformance-%'"
        ),
        "0",
        "{text}"
    );
}

/// A roster config with one `warehouse` connector target (the shipped
/// connector, run from the test venv) and a user with a password.
fn write_config(dir: &Path, rotation: u32, active: bool) {
    let py = python();
    let script = connector_script("postgres", "roster_postgres.py");
    let yaml = format!(
        r#"targets:
  warehouse:
    connector:
      command: [{py:?}, {script:?}]
      config: {{dsn_env: {DSN_ENV}, schema_prefix: ""}}
      env: [{DSN_ENV}]
      timeout: 60s
settings:
  default_targets: [warehouse]
groups:
  etl:
    description: ETL jobs
users:
  survey-sync:
    display_name: Survey sync
    email: survey-sync@example.com
    groups: [etl]
    active: {active}
    credentials: {{password: true, rotation: {rotation}}}
    set_rights:
      analytics: read
"#,
        py = py.display().to_string(),
        script = script.display().to_string(),
    );
    std::fs::create_dir_all(dir.join("config")).expect("config dir");
    std::fs::write(dir.join("config/roster.yaml"), yaml).expect("write config");
}

fn roster(dir: &Path, pg: &Postgres, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_roster"))
        .args(args)
        .current_dir(dir)
        .env(DSN_ENV, pg.dsn(DB))
        .env("NO_COLOR", "1")
        .env_remove("ROSTER_STORE")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run roster")
}

fn show(o: &std::process::Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The password roster emitted for `user` in the secrets file `path`.
fn emitted(path: &Path, user: &str) -> String {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("secrets file"))
        .expect("secrets JSON");
    v["secrets"]
        .as_array()
        .expect("secrets")
        .iter()
        .find(|s| s["user"] == user && s["kind"] == "password")
        .and_then(|s| s["value"].as_str())
        .unwrap_or_else(|| panic!("no password for {user} in {v}"))
        .to_string()
}

#[test]
fn plan_and_apply_manage_a_warehouse_user_end_to_end() {
    let pg = warehouse();
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    write_config(d, 0, true);

    let plan = roster(d, &pg, &["plan", "config", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(2), "{}", show(&plan));
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(
        text.contains("user.survey-sync@warehouse"),
        "{}",
        show(&plan)
    );
    let apply = roster(
        d,
        &pg,
        &["apply", "config", "--yes", "--secrets-out", "s1.json"],
    );
    assert_eq!(apply.status.code(), Some(0), "{}", show(&apply));
    let first = emitted(&d.join("s1.json"), "survey-sync");
    assert!(!String::from_utf8_lossy(&apply.stderr).contains(&first));
    assert!(!String::from_utf8_lossy(&apply.stdout).contains(&first));
    assert_eq!(
        logs_in(&pg, "survey-sync", &first).as_deref(),
        Ok("survey-sync")
    );
    assert_eq!(
        pg.psql_as(
            "survey-sync",
            &first,
            DB,
            "SELECT count(*) FROM analytics.events"
        ),
        Ok("1".into())
    );
    assert!(
        pg.psql_as(
            "survey-sync",
            &first,
            DB,
            "INSERT INTO analytics.events VALUES (9, 'x')"
        )
        .is_err()
    );
    assert_eq!(
        pg.admin(DB, "SELECT m.rolname FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.member JOIN pg_roles m ON m.oid = a.roleid WHERE r.rolname = 'survey-sync'"),
        "etl"
    );
    let replan = roster(d, &pg, &["plan", "config", "--detailed-exitcode"]);
    assert_eq!(
        replan.status.code(),
        Some(0),
        "converged: {}",
        show(&replan)
    );

    // Rotation through credentials.rotation.
    write_config(d, 1, true);
    let apply = roster(
        d,
        &pg,
        &["apply", "config", "--yes", "--secrets-out", "s2.json"],
    );
    assert_eq!(apply.status.code(), Some(0), "{}", show(&apply));
    let second = emitted(&d.join("s2.json"), "survey-sync");
    assert_ne!(first, second);
    assert_login_fails(
        &pg,
        "survey-sync",
        &first,
        "the old password after a rotation",
    );
    assert_eq!(
        logs_in(&pg, "survey-sync", &second).as_deref(),
        Ok("survey-sync")
    );

    // Deactivation (the only user: past the removal guard's fraction).
    write_config(d, 1, false);
    let apply = roster(
        d,
        &pg,
        &[
            "apply",
            "config",
            "--yes",
            "--secrets-out",
            "s3.json",
            "--allow-mass-removal",
        ],
    );
    assert_eq!(apply.status.code(), Some(0), "{}", show(&apply));
    assert_login_fails(&pg, "survey-sync", &second, "a deactivated user");
    assert_eq!(
        pg.admin(
            DB,
            "SELECT rolcanlogin, rolvaliduntil = '-infinity' FROM pg_authid WHERE rolname = 'survey-sync'"
        ),
        "f|t",
        "deactivated: NOLOGIN, password expired"
    );
    // An inactive user holds no memberships there: roster dropped the group.
    assert_eq!(
        pg.admin(DB, "SELECT count(*) FROM pg_roles WHERE rolname = 'etl'"),
        "0"
    );
    for out in [&plan, &apply] {
        for secret in [&first, &second] {
            assert!(
                !show(out).contains(secret.as_str()),
                "a password in roster's output"
            );
        }
    }
    let replan = roster(d, &pg, &["plan", "config", "--detailed-exitcode"]);
    assert_eq!(
        replan.status.code(),
        Some(0),
        "converged: {}",
        show(&replan)
    );
}
