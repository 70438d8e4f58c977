//! The LDAP connector (`connectors/ldap/roster_ldap.py`) against a real,
//! throw-away slapd on 127.0.0.1, driven over its JSON-lines protocol
//! (protocol v1) by a small driver here: users, groups and membership,
//! server-generated passwords that really bind, rotation, replays,
//! deactivation, paging and error classes; then roster's conformance kit
//! and `roster apply` through a connector target against the same server.

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::slapd::{self, Slapd};
use serde_json::{Value, json};

const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);
const PW_ENV: &str = "ROSTER_TEST_LDAP_BIND_PW";

fn script() -> PathBuf {
    common::connectors::connector_script("ldap", "roster_ldap.py")
}

/// One connector process spoken to line by line, as roster would: the
/// environment cleared but PATH, HOME, LANG and the bind password's variable.
struct Driver {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    next_id: u64,
}

impl Driver {
    fn spawn(bind_password: &str) -> Driver {
        let mut cmd = Command::new(common::connectors::python());
        cmd.arg(script()).env_clear();
        for var in ["PATH", "HOME", "LANG"] {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        let mut child = cmd
            .env(PW_ENV, bind_password)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the LDAP connector");
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
        let stderr_pipe = child.stderr.take().expect("stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                s.push_str(&line);
                s.push('\n');
            }
        });
        Driver {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
            next_id: 1,
        }
    }

    /// Sends `req` (its `id` filled in) and returns the reply, checking that
    /// it is one JSON object with the same id.
    fn call(&mut self, mut req: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        req["id"] = json!(id);
        let stdin = self.stdin.as_mut().expect("the session is open");
        writeln!(stdin, "{req}").expect("write a request");
        stdin.flush().expect("flush a request");
        let line = match self.lines.recv_timeout(REPLY_TIMEOUT) {
            Ok(l) => l,
            Err(RecvTimeoutError::Timeout) => {
                panic!("no reply to {} within {REPLY_TIMEOUT:?}", req["op"])
            }
            Err(RecvTimeoutError::Disconnected) => panic!(
                "the connector closed stdout before answering {}; stderr:\n{}",
                req["op"],
                self.stderr()
            ),
        };
        let reply: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("reply to {} is not JSON ({e})", req["op"]));
        assert_eq!(
            reply["id"],
            json!(id),
            "reply to {} carries another id",
            req["op"]
        );
        reply
    }

    /// A call that must succeed.
    fn ok(&mut self, req: Value) -> Value {
        let op = req["op"].clone();
        let reply = self.call(req);
        assert_eq!(
            reply["ok"],
            json!(true),
            "{op} failed: {}",
            error_text(&reply)
        );
        reply
    }

    /// A call that must fail with `class`.
    fn fails(&mut self, req: Value, class: &str) -> String {
        let op = req["op"].clone();
        let reply = self.call(req);
        assert_eq!(reply["ok"], json!(false), "{op} should fail with {class}");
        assert_eq!(
            reply["error"]["class"],
            json!(class),
            "{op}: wrong error class: {}",
            error_text(&reply)
        );
        reply["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Closes stdin and waits (bounded) for the connector to exit by itself.
    fn finish(mut self) -> String {
        drop(self.stdin.take());
        let deadline = Instant::now() + EXIT_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the connector") {
                assert!(status.success(), "the connector exited with {status}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the connector did not exit within {EXIT_TIMEOUT:?} of stdin closing"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Let the stderr reader drain what is left.
        std::thread::sleep(Duration::from_millis(100));
        self.stderr()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The error of a failed reply, for assertion messages (never a secret: a
/// failed reply carries none).
fn error_text(reply: &Value) -> String {
    if reply["ok"] == json!(true) {
        "ok".into()
    } else {
        reply["error"].to_string()
    }
}

fn config(s: &Slapd, page_size: u32) -> Value {
    json!({
        "url": s.url,
        "bind_dn": slapd::ADMIN_DN,
        "bind_password_env": PW_ENV,
        "base_dn": slapd::BASE_DN,
        "users_ou": "ou=people",
        "groups_ou": slapd::GROUPS_OU,
        "page_size": page_size,
    })
}

fn hello(d: &mut Driver, s: &Slapd, page_size: u32) -> Value {
    d.ok(json!({"op": "hello", "versions": [1], "target": "directory", "config": config(s, page_size)}))
}

fn user_dn(key: &str) -> String {
    format!("uid={key},{}", slapd::USERS_OU)
}

fn ensure_user(d: &mut Driver, key: &str, attrs: Value, idem: &str) -> Value {
    d.ok(
        json!({"op": "ensure", "kind": "user", "key": key, "ref": null, "previous_key": null,
                "attrs": attrs, "idem": idem}),
    )
}

fn generate(d: &mut Driver, key: &str, idem: &str) -> String {
    let reply = d.ok(
        json!({"op": "generate_secret", "key": key, "ref": null, "kind": "password", "idem": idem}),
    );
    assert_eq!(reply["secret"]["kind"], json!("password"));
    let value = reply["secret"]["value"]
        .as_str()
        .expect("a generated password")
        .to_string();
    assert!(!value.is_empty(), "the generated password is empty");
    value
}

/// Every item of `kind`, following `next` (bounded), with the page count.
fn list_all(d: &mut Driver, kind: &str) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut cursor = Value::Null;
    for page in 1..=1000 {
        let reply = d.ok(json!({"op": "list", "kind": kind, "cursor": cursor}));
        items.extend(reply["items"].as_array().expect("items").iter().cloned());
        match &reply["next"] {
            Value::Null => return (items, page),
            Value::String(_) => cursor = reply["next"].clone(),
            other => panic!("next is neither null nor a string: {other}"),
        }
    }
    panic!("list {kind} did not end within 1000 pages");
}

fn find<'a>(items: &'a [Value], key: &str) -> Option<&'a Value> {
    items.iter().find(|i| i["key"] == json!(key))
}

#[test]
fn users_groups_passwords_and_deactivation_against_slapd() {
    let s = Slapd::start();
    let mut d = Driver::spawn(s.admin_password());
    let caps = hello(&mut d, &s, 100);
    assert_eq!(caps["version"], json!(1));
    assert_eq!(
        caps["capabilities"],
        json!({"kinds": ["user", "group"], "paging": true, "membership": "on_group",
               "secrets": {"password": "target_generated"}})
    );

    // Create a user; a second identical ensure changes nothing.
    let attrs = json!({"display_name": "Survey Sync", "first_name": "Survey", "last_name": "Sync",
                       "email": "Survey-Sync@Example.test", "active": true,
                       "roles": ["reader"], "credentials": ["password"]});
    let created = ensure_user(&mut d, "survey-sync", attrs.clone(), "p1/user.survey-sync");
    assert_eq!(created["changed"], json!(true));
    let uref = created["ref"].as_str().expect("a ref").to_string();
    assert_eq!(created["attrs"]["display_name"], json!("Survey Sync"));
    assert_eq!(created["attrs"]["first_name"], json!("Survey"));
    assert_eq!(created["attrs"]["last_name"], json!("Sync"));
    assert_eq!(created["attrs"]["email"], json!("Survey-Sync@Example.test"));
    assert_eq!(created["attrs"]["active"], json!(true));
    assert!(
        created["attrs"].get("roles").is_none(),
        "roles are not kept by LDAP: {}",
        created["attrs"]
    );
    let again = ensure_user(&mut d, "survey-sync", attrs.clone(), "p2/user.survey-sync");
    assert_eq!(
        again["changed"],
        json!(false),
        "a repeated ensure must be a no-op"
    );
    assert_eq!(again["ref"], json!(uref));
    let raw = s.search(
        &user_dn("survey-sync"),
        "(objectClass=*)",
        &["cn", "sn", "mail", "objectClass"],
    );
    assert!(raw.contains("cn: Survey Sync"), "{raw}");
    assert!(raw.contains("sn: Sync"), "{raw}");
    assert!(raw.contains("objectClass: inetOrgPerson"), "{raw}");

    // A changed attribute is written; a dropped one is removed; a user
    // description (which roster does not set) is left as an admin wrote it.
    s.modify(&format!(
        "dn: {}\nchangetype: modify\nadd: description\ndescription: kept by the admin\n",
        user_dn("survey-sync")
    ));
    let mut changed_attrs = attrs.clone();
    changed_attrs["email"] = json!("ops@example.test");
    changed_attrs["first_name"] = Value::Null;
    let upd = ensure_user(
        &mut d,
        "survey-sync",
        changed_attrs.clone(),
        "p3/user.survey-sync",
    );
    assert_eq!(upd["changed"], json!(true));
    assert_eq!(upd["attrs"]["email"], json!("ops@example.test"));
    assert!(upd["attrs"].get("first_name").is_none(), "{}", upd["attrs"]);
    let raw = s.search(
        &user_dn("survey-sync"),
        "(objectClass=*)",
        &["givenName", "description"],
    );
    assert!(!raw.contains("givenName:"), "{raw}");
    assert!(raw.contains("description: kept by the admin"), "{raw}");

    // A group with the user as member: a groupOfNames whose member is the user's DN.
    ensure_user(&mut d, "other", json!({"active": true}), "p3/user.other");
    let g = d.ok(json!({"op": "ensure", "kind": "group", "key": "exporters", "ref": null, "previous_key": null,
                        "attrs": {"description": "export jobs", "members": ["survey-sync", "other"]}, "idem": "p3/group"}));
    assert_eq!(g["changed"], json!(true));
    assert_eq!(g["attrs"]["members"], json!(["other", "survey-sync"]));
    let raw = s.search(
        &format!("cn=exporters,{}", slapd::GROUPS_OU),
        "(objectClass=*)",
        &["member", "objectClass"],
    );
    assert!(raw.contains("objectClass: groupOfNames"), "{raw}");
    assert!(
        raw.contains(&format!("member: {}", user_dn("survey-sync"))),
        "{raw}"
    );
    let g2 = d.ok(json!({"op": "ensure", "kind": "group", "key": "exporters", "ref": g["ref"], "previous_key": null,
                         "attrs": {"description": "export jobs", "members": ["other", "survey-sync"]}, "idem": "p4/group"}));
    assert_eq!(g2["changed"], json!(false));
    // Emptying the group keeps the placeholder member groupOfNames requires.
    let g3 = d.ok(json!({"op": "ensure", "kind": "group", "key": "exporters", "ref": g["ref"], "previous_key": null,
                         "attrs": {"description": "export jobs", "members": []}, "idem": "p5/group"}));
    assert_eq!(g3["changed"], json!(true));
    assert_eq!(g3["attrs"]["members"], json!([]));
    let raw = s.search(
        &format!("cn=exporters,{}", slapd::GROUPS_OU),
        "(objectClass=*)",
        &["member"],
    );
    assert!(
        raw.contains(&format!("member: {}", slapd::GROUPS_OU)),
        "{raw}"
    );
    d.ok(json!({"op": "ensure", "kind": "group", "key": "exporters", "ref": g["ref"], "previous_key": null,
                "attrs": {"description": "export jobs", "members": ["survey-sync"]}, "idem": "p6/group"}));
    let (groups, _) = list_all(&mut d, "group");
    assert_eq!(
        find(&groups, "exporters").expect("the group is listed")["attrs"]["members"],
        json!(["survey-sync"])
    );

    // No password yet: nothing binds.
    let dn = user_dn("survey-sync");
    assert!(!s.binds(&dn, "not-a-password"));

    // generate_secret: slapd generates the password, and it binds.
    let first = generate(&mut d, "survey-sync", "p7/secret.survey-sync");
    assert!(s.binds(&dn, &first), "the generated password must bind");

    // A replay of the same idem mints nothing: conflict, and the password stands.
    let msg = d.fails(
        json!({"op": "generate_secret", "key": "survey-sync", "ref": uref, "kind": "password", "idem": "p7/secret.survey-sync"}),
        "conflict",
    );
    assert!(msg.contains("already generated"), "{msg}");
    assert!(
        s.binds(&dn, &first),
        "a replay must not replace the password"
    );

    // Rotation: a new idem mints a new password; the old one stops binding.
    let second = generate(&mut d, "survey-sync", "p8/secret.survey-sync");
    assert_ne!(first, second);
    assert!(s.binds(&dn, &second), "the rotated password must bind");
    assert!(
        !s.binds(&dn, &first),
        "the old password must no longer bind"
    );

    // Deactivation locks the entry (ppolicy): the password no longer binds.
    let mut inactive = changed_attrs.clone();
    inactive["active"] = json!(false);
    let off = ensure_user(
        &mut d,
        "survey-sync",
        inactive.clone(),
        "p9/user.survey-sync",
    );
    assert_eq!(off["changed"], json!(true));
    assert_eq!(off["attrs"]["active"], json!(false));
    assert!(!s.binds(&dn, &second), "a deactivated user must not bind");
    let off2 = ensure_user(
        &mut d,
        "survey-sync",
        inactive.clone(),
        "p10/user.survey-sync",
    );
    assert_eq!(off2["changed"], json!(false));
    // Rotating a deactivated user's password does not unlock it.
    let third = generate(&mut d, "survey-sync", "p11/secret.survey-sync");
    assert!(
        !s.binds(&dn, &third),
        "rotation must not reactivate a deactivated user"
    );
    let (users, _) = list_all(&mut d, "user");
    assert_eq!(
        find(&users, "survey-sync").expect("listed")["attrs"]["active"],
        json!(false)
    );

    // Reactivation restores binding with the current password.
    let on = ensure_user(
        &mut d,
        "survey-sync",
        changed_attrs.clone(),
        "p12/user.survey-sync",
    );
    assert_eq!(on["changed"], json!(true));
    assert_eq!(on["attrs"]["active"], json!(true));
    assert!(s.binds(&dn, &third), "a reactivated user binds again");
    assert!(!s.binds(&dn, &second));

    // revoke_secret removes the password; revoking again is fine.
    d.ok(json!({"op": "revoke_secret", "key": "survey-sync", "ref": uref, "kind": "password", "idem": "p13/revoke"}));
    assert!(!s.binds(&dn, &third), "a revoked password must not bind");
    d.ok(json!({"op": "revoke_secret", "key": "survey-sync", "ref": uref, "kind": "password", "idem": "p14/revoke"}));

    // Deleting the user drops it from its group; deleting again succeeds.
    d.ok(json!({"op": "delete", "kind": "user", "key": "survey-sync", "ref": uref, "idem": "p15/delete"}));
    d.ok(json!({"op": "delete", "kind": "user", "key": "survey-sync", "ref": uref, "idem": "p16/delete"}));
    let (groups, _) = list_all(&mut d, "group");
    assert_eq!(
        find(&groups, "exporters").expect("still listed")["attrs"]["members"],
        json!([])
    );
    d.ok(json!({"op": "delete", "kind": "group", "key": "exporters", "ref": g["ref"], "idem": "p17/delete"}));
    let (groups, _) = list_all(&mut d, "group");
    assert!(find(&groups, "exporters").is_none());

    let stderr = d.finish();
    for secret in [&first, &second, &third, &s.admin_password().to_string()] {
        assert!(
            !stderr.contains(secret.as_str()),
            "a secret appeared on the connector's stderr"
        );
    }
    assert!(
        stderr.contains("generated a password for user survey-sync"),
        "the log names what it did:\n{stderr}"
    );
}

#[test]
fn list_pages_through_more_than_one_page() {
    let s = Slapd::start();
    let mut d = Driver::spawn(s.admin_password());
    hello(&mut d, &s, 3);
    let keys: Vec<String> = (0..11).map(|i| format!("pager-{i:02}")).collect();
    for k in &keys {
        ensure_user(
            &mut d,
            k,
            json!({"display_name": format!("Pager {k}"), "active": true}),
            &format!("p/{k}"),
        );
    }
    let (items, pages) = list_all(&mut d, "user");
    assert!(
        pages >= 4,
        "11 users at 3 per page take at least 4 pages, got {pages}"
    );
    let mut listed: Vec<String> = items
        .iter()
        .map(|i| i["key"].as_str().expect("key").to_string())
        .collect();
    listed.sort();
    assert_eq!(listed, keys, "every user exactly once");
    for i in &items {
        assert!(
            i["ref"].as_str().is_some_and(|r| !r.is_empty()),
            "an item without ref: {i}"
        );
        assert_eq!(
            i["attrs"]["display_name"],
            json!(format!("Pager {}", i["key"].as_str().unwrap_or_default()))
        );
    }
    // Paging survives other requests between pages: a group list, a write,
    // and a fresh user list started over while one is half-way.
    d.ok(
        json!({"op": "ensure", "kind": "group", "key": "pagers", "ref": null,
                "attrs": {"members": ["pager-00", "pager-10"]}, "idem": "p/group"}),
    );
    let first_page = d.ok(json!({"op": "list", "kind": "user", "cursor": null}));
    assert_eq!(first_page["items"].as_array().map(Vec::len), Some(3));
    let (groups, _) = list_all(&mut d, "group");
    assert_eq!(
        find(&groups, "pagers").expect("listed")["attrs"]["members"],
        json!(["pager-00", "pager-10"])
    );
    ensure_user(&mut d, "pager-11", json!({"active": true}), "p/pager-11");
    let mut rest = Vec::new();
    let mut cursor = first_page["next"].clone();
    for _ in 0..100 {
        if cursor.is_null() {
            break;
        }
        let page = d.ok(json!({"op": "list", "kind": "user", "cursor": cursor}));
        rest.extend(page["items"].as_array().expect("items").iter().cloned());
        cursor = page["next"].clone();
    }
    assert!(cursor.is_null(), "the interrupted listing did not end");
    let mut seen: Vec<String> = first_page["items"]
        .as_array()
        .expect("items")
        .iter()
        .chain(rest.iter())
        .map(|i| i["key"].as_str().expect("key").to_string())
        .collect();
    seen.sort();
    seen.dedup();
    assert!(
        seen.len() >= 11,
        "a listing with other requests between pages lost users: {seen:?}"
    );
    let half = d.ok(json!({"op": "list", "kind": "user", "cursor": null}));
    assert!(half["next"].is_string());
    let (again, _) = list_all(&mut d, "user");
    assert_eq!(
        again.len(),
        12,
        "a listing started over sees every user once"
    );

    // A cursor from another kind, or garbage, is refused clearly.
    let reply = d.ok(json!({"op": "list", "kind": "user", "cursor": null}));
    let cursor = reply["next"].clone();
    assert!(cursor.is_string());
    d.fails(
        json!({"op": "list", "kind": "group", "cursor": cursor}),
        "invalid",
    );
    d.fails(
        json!({"op": "list", "kind": "user", "cursor": "not-a-cursor"}),
        "invalid",
    );
    d.finish();
}

#[test]
fn errors_map_to_protocol_classes() {
    let mut s = Slapd::start();

    // Before hello nothing else runs; unknown ops are unsupported.
    let mut d = Driver::spawn(s.admin_password());
    d.fails(
        json!({"op": "list", "kind": "user", "cursor": null}),
        "invalid",
    );
    d.fails(json!({"op": "frobnicate"}), "unsupported");
    d.fails(
        json!({"op": "hello", "versions": [2], "target": "t", "config": config(&s, 10)}),
        "unsupported",
    );
    let mut bad = config(&s, 10);
    bad.as_object_mut().expect("object").remove("users_ou");
    let msg = d.fails(
        json!({"op": "hello", "versions": [1], "target": "t", "config": bad}),
        "invalid",
    );
    assert!(msg.contains("users_ou"), "{msg}");
    let mut bad = config(&s, 10);
    bad["bind_password_env"] = json!("ROSTER_TEST_LDAP_UNSET_VARIABLE");
    let msg = d.fails(
        json!({"op": "hello", "versions": [1], "target": "t", "config": bad}),
        "invalid",
    );
    assert!(msg.contains("ROSTER_TEST_LDAP_UNSET_VARIABLE"), "{msg}");
    let mut bad = config(&s, 10);
    bad["groups_ou"] = json!("ou=missing");
    let msg = d.fails(
        json!({"op": "hello", "versions": [1], "target": "t", "config": bad}),
        "invalid",
    );
    assert!(msg.contains("ou=missing"), "{msg}");
    d.finish();

    // A wrong bind password is an auth error, and is not echoed.
    let mut d = Driver::spawn("wrong-bind-password-7c1");
    let msg = d.fails(
        json!({"op": "hello", "versions": [1], "target": "t", "config": config(&s, 10)}),
        "auth",
    );
    assert!(!msg.contains("wrong-bind-password-7c1"), "{msg}");
    let stderr = d.finish();
    assert!(!stderr.contains("wrong-bind-password-7c1"));

    let mut d = Driver::spawn(s.admin_password());
    hello(&mut d, &s, 10);
    d.fails(json!({"op": "set_secret", "key": "x", "ref": null, "kind": "password", "value": "v", "idem": "i"}), "unsupported");
    d.fails(json!({"op": "generate_secret", "key": "nobody", "ref": null, "kind": "password", "idem": "i"}), "not_found");
    d.fails(json!({"op": "generate_secret", "key": "nobody", "ref": null, "kind": "token", "idem": "i"}), "unsupported");
    d.fails(json!({"op": "ensure", "kind": "printer", "key": "x", "ref": null, "attrs": {}, "idem": "i"}), "invalid");
    d.fails(json!({"op": "ensure", "kind": "group", "key": "g", "ref": null, "attrs": {"members": "alice"}, "idem": "i"}), "invalid");
    // Unknown request fields are ignored.
    let r = d.ok(json!({"op": "ensure", "kind": "user", "key": "fwd", "ref": null, "attrs": {}, "idem": "i", "future": {"x": 1}}));
    assert_eq!(r["changed"], json!(true));
    d.ok(json!({"op": "delete", "kind": "group", "key": "never-was", "ref": null, "idem": "i"}));

    // Rename: the entry moves to the new uid and its group follows.
    d.ok(json!({"op": "ensure", "kind": "group", "key": "team", "ref": null, "attrs": {"members": ["fwd"]}, "idem": "i"}));
    let renamed = d.ok(json!({"op": "ensure", "kind": "user", "key": "fwd-2", "ref": r["ref"], "previous_key": "fwd",
                              "attrs": {}, "idem": "i2"}));
    assert_eq!(renamed["changed"], json!(true));
    assert_eq!(renamed["ref"], r["ref"], "a rename keeps the ref");
    let (users, _) = list_all(&mut d, "user");
    assert!(find(&users, "fwd").is_none() && find(&users, "fwd-2").is_some());
    let (groups, _) = list_all(&mut d, "group");
    assert_eq!(
        find(&groups, "team").expect("listed")["attrs"]["members"],
        json!(["fwd-2"])
    );

    // Keys with DN metacharacters are escaped in the DN and read back as written.
    let odd = "ops+eu,\"night\"";
    let r = ensure_user(&mut d, odd, json!({"display_name": "Odd = key"}), "i6");
    assert_eq!(r["changed"], json!(true));
    assert_eq!(r["attrs"]["display_name"], json!("Odd = key"));
    let r2 = ensure_user(&mut d, odd, json!({"display_name": "Odd = key"}), "i7");
    assert_eq!(r2["changed"], json!(false));
    let g = d.ok(json!({"op": "ensure", "kind": "group", "key": "odd;group", "ref": null, "attrs": {"members": [odd]}, "idem": "i8"}));
    assert_eq!(g["attrs"]["members"], json!([odd]));
    let (users, _) = list_all(&mut d, "user");
    assert!(find(&users, odd).is_some(), "{users:?}");
    let (groups, _) = list_all(&mut d, "group");
    assert_eq!(
        find(&groups, "odd;group").expect("listed")["attrs"]["members"],
        json!([odd])
    );

    // Entries roster cannot address are not listed; members that are not
    // roster users stay in a group roster manages.
    s.modify(&format!(
        "dn: cn=Legacy Person,{users}\nobjectClass: inetOrgPerson\ncn: Legacy Person\nsn: Person\nuid: legacy\n\n\
         dn: cn=shared,{groups}\nobjectClass: groupOfNames\ncn: shared\nmember: cn=printer,ou=devices,{base}\n",
        users = slapd::USERS_OU,
        groups = slapd::GROUPS_OU,
        base = slapd::BASE_DN
    ));
    let (users, _) = list_all(&mut d, "user");
    assert!(
        find(&users, "legacy").is_none() && find(&users, "Legacy Person").is_none(),
        "{users:?}"
    );
    let (groups, _) = list_all(&mut d, "group");
    assert_eq!(
        find(&groups, "shared").expect("listed")["attrs"]["members"],
        json!([])
    );
    let r = d.ok(json!({"op": "ensure", "kind": "group", "key": "shared", "ref": null, "attrs": {"members": [odd]}, "idem": "i10"}));
    assert_eq!(r["attrs"]["members"], json!([odd]));
    let raw = s.search(
        &format!("cn=shared,{}", slapd::GROUPS_OU),
        "(objectClass=*)",
        &["member"],
    );
    assert!(
        raw.contains(&format!("member: cn=printer,ou=devices,{}", slapd::BASE_DN)),
        "{raw}"
    );
    let r = d.ok(json!({"op": "ensure", "kind": "group", "key": "shared", "ref": null, "attrs": {"members": []}, "idem": "i11"}));
    assert_eq!(r["attrs"]["members"], json!([]));
    let raw = s.search(
        &format!("cn=shared,{}", slapd::GROUPS_OU),
        "(objectClass=*)",
        &["member"],
    );
    assert!(raw.contains("member: cn=printer"), "{raw}");
    assert!(
        !raw.contains(&format!("member: {}", slapd::GROUPS_OU)),
        "no placeholder while a foreign member holds the group: {raw}"
    );

    // A rename onto a DN that is taken is a conflict.
    d.ok(json!({"op": "ensure", "kind": "user", "key": "fwd-3", "ref": r["ref"], "previous_key": "fwd-2",
                "attrs": {}, "idem": "i3"}));
    d.ok(json!({"op": "ensure", "kind": "user", "key": "fwd-4", "ref": null, "attrs": {}, "idem": "i4"}));
    d.fails(json!({"op": "ensure", "kind": "user", "key": "fwd-4", "ref": r["ref"], "previous_key": "fwd-3",
                   "attrs": {}, "idem": "i5"}), "conflict");

    // The server gone: retryable, not fatal; the session survives it.
    s.stop();
    let reply = d.call(json!({"op": "list", "kind": "user", "cursor": null}));
    assert_eq!(reply["ok"], json!(false));
    assert_eq!(
        reply["error"]["class"],
        json!("retryable"),
        "{}",
        error_text(&reply)
    );
    let reply = d.call(json!({"op": "ensure", "kind": "user", "key": "late", "ref": null, "attrs": {}, "idem": "i9"}));
    assert_eq!(
        reply["error"]["class"],
        json!("retryable"),
        "{}",
        error_text(&reply)
    );
    d.finish();
}

/// Not the rootdn: a service account with only the grants the README lists
/// (`manage` on the two OUs) does everything the connector needs.
#[test]
fn a_service_account_with_the_readme_grants_suffices() {
    let s = Slapd::start();
    let mut d = Driver::spawn(s.service_password());
    let mut cfg = config(&s, 2);
    cfg["bind_dn"] = json!(slapd::SERVICE_DN);
    d.ok(json!({"op": "hello", "versions": [1], "target": "directory", "config": cfg}));
    let u = ensure_user(
        &mut d,
        "svc-acl",
        json!({"display_name": "ACL", "active": true}),
        "a/1",
    );
    assert_eq!(u["changed"], json!(true));
    for k in ["svc-acl-2", "svc-acl-3"] {
        ensure_user(&mut d, k, json!({}), "a/2");
    }
    d.ok(
        json!({"op": "ensure", "kind": "group", "key": "acl-group", "ref": null,
                "attrs": {"members": ["svc-acl"]}, "idem": "a/3"}),
    );
    let dn = user_dn("svc-acl");
    let first = generate(&mut d, "svc-acl", "a/4");
    assert!(s.binds(&dn, &first));
    d.fails(json!({"op": "generate_secret", "key": "svc-acl", "ref": u["ref"], "kind": "password", "idem": "a/4"}), "conflict");
    let second = generate(&mut d, "svc-acl", "a/5");
    assert!(s.binds(&dn, &second) && !s.binds(&dn, &first));
    ensure_user(
        &mut d,
        "svc-acl",
        json!({"display_name": "ACL", "active": false}),
        "a/6",
    );
    assert!(
        !s.binds(&dn, &second),
        "deactivated by the service account: no bind"
    );
    let third = generate(&mut d, "svc-acl", "a/7");
    assert!(!s.binds(&dn, &third), "still locked after a rotation");
    ensure_user(
        &mut d,
        "svc-acl",
        json!({"display_name": "ACL", "active": true}),
        "a/8",
    );
    assert!(s.binds(&dn, &third));
    let (users, pages) = list_all(&mut d, "user");
    assert_eq!(users.len(), 3);
    assert!(pages >= 2);
    d.ok(json!({"op": "revoke_secret", "key": "svc-acl", "ref": u["ref"], "kind": "password", "idem": "a/9"}));
    assert!(!s.binds(&dn, &third));
    d.ok(
        json!({"op": "delete", "kind": "user", "key": "svc-acl", "ref": u["ref"], "idem": "a/10"}),
    );
    let (groups, _) = list_all(&mut d, "group");
    assert_eq!(
        find(&groups, "acl-group").expect("listed")["attrs"]["members"],
        json!([])
    );
    let stderr = d.finish();
    for secret in [&first, &second, &third] {
        assert!(!stderr.contains(secret.as_str()));
    }
    assert!(!stderr.contains(s.service_password()));

    // Outside its grants the service account gets `auth`, not a crash.
    let mut d = Driver::spawn(s.service_password());
    let mut cfg = config(&s, 2);
    cfg["bind_dn"] = json!(slapd::SERVICE_DN);
    cfg["users_ou"] = json!(format!("ou=policies,{}", slapd::BASE_DN));
    d.ok(json!({"op": "hello", "versions": [1], "target": "directory", "config": cfg}));
    d.fails(json!({"op": "ensure", "kind": "user", "key": "intruder", "ref": null, "attrs": {}, "idem": "a/11"}), "auth");
    d.finish();
}

/// roster's own conformance kit against the connector and a real slapd.
#[test]
fn conformance_kit_passes_against_slapd() {
    let s = Slapd::start();
    let out = Command::new(env!("CARGO_BIN_EXE_roster"))
        .args(["connector", "test", "--env", PW_ENV, "--config"])
        .arg(config(&s, 7).to_string())
        .arg("--")
        .arg(common::connectors::python())
        .arg(script())
        .env(PW_ENV, s.admin_password())
        .env("NO_COLOR", "1")
        .output()
        .expect("run roster connector test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the kit failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(!stdout.contains("FAIL"), "{stdout}");
    for check in [
        "PASS handshake",
        "PASS paging",
        "PASS secret/password/generate",
        "PASS secret/password/replay",
        "PASS deactivate_reactivate",
        "PASS no_secret_on_stderr",
        "PASS cleanup",
    ] {
        assert!(stdout.contains(check), "missing {check}:\n{stdout}");
    }
    assert!(!stdout.contains(s.admin_password()) && !stderr.contains(s.admin_password()));
    // The sandbox is gone from the directory.
    let left = s.search(
        slapd::BASE_DN,
        "(|(uid=roster-conformance-*)(cn=roster-conformance-*))",
        &["1.1"],
    );
    assert!(
        left.trim().is_empty(),
        "the kit left objects behind:\n{left}"
    );
}

fn roster_in(dir: &Path, s: &Slapd, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_roster"))
        .current_dir(dir)
        .args(args)
        .env(PW_ENV, s.admin_password())
        .env("NO_COLOR", "1")
        .env_remove("ROSTER_STORE")
        .env_remove("RUST_LOG")
        .output()
        .expect("run roster")
}

fn write_config(dir: &Path, s: &Slapd, user_extra: &str) {
    let cfg = format!(
        "targets:\n  directory:\n    connector:\n      command: [{py}, {script}]\n      config: {config}\n      env: [{PW_ENV}]\n      timeout: 60s\nsettings:\n  default_targets: [directory]\ngroups:\n  ldap-readers:\n    description: Reads the directory\nusers:\n  svc-ldap:\n    display_name: LDAP service account\n    email: svc-ldap@example.test\n    groups: [ldap-readers]\n{user_extra}",
        py = serde_json::to_string(&common::connectors::python().display().to_string())
            .expect("json"),
        script = serde_json::to_string(&script().display().to_string()).expect("json"),
        config = config(s, 50),
    );
    std::fs::create_dir_all(dir.join("config")).expect("config dir");
    std::fs::write(dir.join("config/roster.yaml"), cfg).expect("write the config");
}

/// The secrets in a secrets output file: (user, kind, value).
fn emitted(path: &Path) -> Vec<(String, String, String)> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("the secrets file"))
        .expect("secrets JSON");
    v["secrets"]
        .as_array()
        .expect("secrets array")
        .iter()
        .map(|s| {
            let field = |k: &str| s[k].as_str().unwrap_or_default().to_string();
            (field("user"), field("kind"), field("value"))
        })
        .collect()
}

/// The password the directory target generated for `user`.
fn from_target(path: &Path, user: &str) -> String {
    let all = emitted(path);
    let names: Vec<String> = all.iter().map(|(u, k, _)| format!("{u} {k}")).collect();
    let mut hits = all
        .into_iter()
        .filter(|(u, k, _)| u == &format!("{user}@directory") && k == "password");
    let (_, _, value) = hits
        .next()
        .unwrap_or_else(|| panic!("no password of {user}@directory among {names:?}"));
    assert!(
        hits.next().is_none(),
        "two passwords of {user}@directory: {names:?}"
    );
    value
}

#[test]
fn plan_and_apply_through_the_ldap_connector() {
    let s = Slapd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let dn = user_dn("svc-ldap");
    write_config(dir.path(), &s, "    credentials: {password: true}\n");
    let applied = roster_in(
        dir.path(),
        &s,
        &["apply", "config", "--yes", "--secrets-out", "s1.json"],
    );
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&applied.stdout),
        String::from_utf8_lossy(&applied.stderr)
    );
    assert!(applied.status.success(), "apply failed:\n{out}");
    let first = from_target(&dir.path().join("s1.json"), "svc-ldap");
    assert!(
        s.binds(&dn, &first),
        "the password the server generated and roster emitted binds"
    );
    assert!(
        !out.contains(&first),
        "the password appeared in roster's output"
    );
    let state =
        std::fs::read_to_string(dir.path().join(".roster/state.json")).expect("the state file");
    assert!(!state.contains(&first), "the state holds the password");
    assert!(
        state.contains("$argon2id$"),
        "the state holds no argon2id hash"
    );
    let hashes = argon2_hashes(&serde_json::from_str(&state).expect("state JSON"));
    assert!(
        hashes
            .iter()
            .any(|h| roster::secret::verify_secret(&first, h)),
        "no argon2id hash in the state verifies the emitted password ({} hashes)",
        hashes.len()
    );

    // The user and its group (a groupOfNames with the user's DN) are in the directory.
    let raw = s.search(&dn, "(objectClass=*)", &["cn", "mail"]);
    assert!(
        raw.contains("cn: LDAP service account") && raw.contains("mail: svc-ldap@example.test"),
        "{raw}"
    );
    let raw = s.search(
        &format!("cn=ldap-readers,{}", slapd::GROUPS_OU),
        "(objectClass=*)",
        &["member", "description"],
    );
    assert!(raw.contains(&format!("member: {dn}")), "{raw}");
    assert!(raw.contains("description: Reads the directory"), "{raw}");

    // Re-plan: nothing to do.
    let replan = roster_in(dir.path(), &s, &["plan", "config", "--detailed-exitcode"]);
    assert_eq!(
        replan.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&replan.stdout),
        String::from_utf8_lossy(&replan.stderr)
    );

    // Rotation.
    write_config(
        dir.path(),
        &s,
        "    credentials: {password: true, rotation: 1}\n",
    );
    let rotated = roster_in(
        dir.path(),
        &s,
        &["apply", "config", "--yes", "--secrets-out", "s2.json"],
    );
    assert!(
        rotated.status.success(),
        "{}{}",
        String::from_utf8_lossy(&rotated.stdout),
        String::from_utf8_lossy(&rotated.stderr)
    );
    let second = from_target(&dir.path().join("s2.json"), "svc-ldap");
    assert_ne!(first, second);
    assert!(s.binds(&dn, &second));
    assert!(
        !s.binds(&dn, &first),
        "the old password still binds after rotation"
    );
    let state =
        std::fs::read_to_string(dir.path().join(".roster/state.json")).expect("the state file");
    assert!(
        !state.contains(&second),
        "the state holds the rotated password"
    );
    let hashes = argon2_hashes(&serde_json::from_str(&state).expect("state JSON"));
    assert!(
        hashes
            .iter()
            .any(|h| roster::secret::verify_secret(&second, h))
    );

    // Deactivation through roster: the current password stops binding.
    write_config(
        dir.path(),
        &s,
        "    credentials: {password: true, rotation: 1}\n    active: false\n",
    );
    let off = roster_in(
        dir.path(),
        &s,
        &[
            "apply",
            "config",
            "--yes",
            "--allow-mass-removal",
            "--secrets-out",
            "s3.json",
        ],
    );
    assert!(
        off.status.success(),
        "{}{}",
        String::from_utf8_lossy(&off.stdout),
        String::from_utf8_lossy(&off.stderr)
    );
    assert!(
        !s.binds(&dn, &second),
        "a user deactivated by roster still binds"
    );
    let replan = roster_in(dir.path(), &s, &["plan", "config", "--detailed-exitcode"]);
    assert_eq!(
        replan.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&replan.stdout),
        String::from_utf8_lossy(&replan.stderr)
    );
}

/// Every `$argon2id$` string anywhere in a JSON value.
fn argon2_hashes(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) if s.starts_with("$argon2id$") => vec![s.clone()],
        Value::Array(a) => a.iter().flat_map(argon2_hashes).collect(),
        Value::Object(o) => o.values().flat_map(argon2_hashes).collect(),
        _ => Vec::new(),
    }
}
