//! The conformance kit behind `roster connector test`: runs a connector
//! through every rule of protocol v1 against a sandbox (keys starting with
//! [`PREFIX`], all removed at the end, also after a failure) and reports one
//! line per check: `PASS name` or `FAIL name: reason`.
//!
//! The kit speaks the protocol itself (it must send requests roster never
//! sends: an unknown op, a request without `key`, versions the connector
//! cannot speak), through the same [`Session`] roster uses, so timeouts,
//! stdout purity and the stderr relay are roster's own.
//!
//! The hung-request check cannot make a connector hang. It writes half a
//! `list` request (no newline) so that no connector can answer it, lets a
//! 1 s deadline pass, and checks what matters on both sides: roster killed
//! and reaped the connector's whole process group, and a new session of the
//! connector, started after that SIGKILL, still lists every sandbox object.
//!
//! Must not: touch an object whose key lacks [`PREFIX`]; print a secret
//! (the canary and generated secrets are redacted from the relayed stderr).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::protocol::{HelloReply, ListReply, WireError, WireSecretMode};
use super::session::{CallOptions, Fault, LogSink, Redactor, Session, Spawn, lock};
use super::{HELLO_TIMEOUT, RETRIES, follow_pages, retry_wait};
use crate::secret::SecretKind;
use crate::target::{ErrorClass, ObjKind, TargetError, compare};

/// Every sandbox key starts with this.
pub const PREFIX: &str = "roster-conformance-";
/// How many users the paging check creates (more than any sane page).
pub const PAGE_OBJECTS: usize = 120;
/// The deadline of the hung request.
pub const HANG_TIMEOUT: Duration = Duration::from_secs(1);
/// The target name the kit uses (the `[conformance] ` prefix of relayed logs).
pub const NAME: &str = "conformance";
/// Sessions the kit may start after faults before it gives up on the checks.
const MAX_SESSIONS: u32 = 12;
/// More sessions the final cleanup may start, whatever the checks used.
const CLEANUP_SESSIONS: u32 = 3;

/// What to test.
#[derive(Debug, Clone)]
pub struct KitOptions {
    pub command: Vec<String>,
    /// Only these kinds (default: all the connector declares).
    pub kinds: Option<BTreeSet<ObjKind>>,
    /// Per request (`hello`: 10 s).
    pub timeout: Duration,
    /// The `config` handed over in `hello`.
    pub config: BTreeMap<String, Value>,
    /// Variables the connector inherits besides PATH, HOME, LANG.
    pub env: Vec<String>,
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub name: String,
    /// `None`: passed.
    pub failure: Option<String>,
}

/// Every check, in the order run.
#[derive(Debug, Default, Clone)]
pub struct KitReport {
    pub checks: Vec<CheckResult>,
}

impl KitReport {
    /// Whether every check passed (and there was at least one).
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.failure.is_none())
    }
    /// The check named `name`.
    pub fn get(&self, name: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// A reply: the op's fields, or the connector's error.
enum Answer {
    Ok(Value),
    Err(WireError),
}

type Check = Result<(), String>;
/// A listed object: key, ref, attrs.
type Listed = (String, String, Value);

struct Kit<'a> {
    opts: &'a KitOptions,
    spawn: Spawn,
    capture: Arc<Mutex<Vec<u8>>>,
    session: Option<Session>,
    sessions: u32,
    max_sessions: u32,
    faults: Vec<(Fault, String)>,
    caps: Option<HelloReply>,
    kinds: BTreeSet<ObjKind>,
    refs: BTreeMap<(ObjKind, String), String>,
    run: String,
    secrets_exchanged: bool,
    out: &'a mut dyn Write,
    report: KitReport,
}

/// Run every check; lines go to `out`, the connector's stderr (redacted)
/// to `log`.
pub fn run(opts: &KitOptions, log: LogSink, out: &mut dyn Write) -> std::io::Result<KitReport> {
    let capture = Arc::new(Mutex::new(Vec::new()));
    let spawn = Spawn {
        name: NAME.to_string(),
        command: opts.command.clone(),
        env: opts.env.clone(),
        redactor: Arc::new(Redactor::default()),
        log,
        capture: Some(capture.clone()),
    };
    let mut kit = Kit {
        opts,
        spawn,
        capture,
        session: None,
        sessions: 0,
        max_sessions: MAX_SESSIONS,
        faults: Vec::new(),
        caps: None,
        kinds: BTreeSet::new(),
        refs: BTreeMap::new(),
        run: hex::encode(rand::random::<[u8; 6]>()),
        secrets_exchanged: false,
        out,
        report: KitReport::default(),
    };
    kit.all()?;
    Ok(kit.report)
}

fn user_attrs(i: usize, active: bool) -> Value {
    json!({
        "display_name": format!("roster conformance {i}"),
        "email": format!("{PREFIX}{i}@example.invalid"),
        "active": active,
    })
}

fn group_attrs() -> Value {
    json!({"description": "roster conformance group"})
}

fn attrs_for(kind: ObjKind) -> Value {
    match kind {
        ObjKind::User => user_attrs(1, true),
        ObjKind::Group => group_attrs(),
    }
}

fn key_for(kind: ObjKind) -> String {
    format!("{PREFIX}{kind}-1")
}

/// The names of the attributes whose values differ (tolerantly).
fn differing(want: &Value, have: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let w = want.as_object().unwrap_or(&empty);
    let h = have.as_object().unwrap_or(&empty);
    w.keys()
        .chain(h.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|k| !compare::equal(k, w.get(*k), h.get(*k)))
        .cloned()
        .collect()
}

impl Kit<'_> {
    fn record(&mut self, name: &str, result: Check) -> std::io::Result<()> {
        let failure = result.err().map(|e| self.spawn.redactor.redact(&e));
        match &failure {
            None => writeln!(self.out, "PASS {name}")?,
            Some(why) => writeln!(self.out, "FAIL {name}: {why}")?,
        }
        self.out.flush()?;
        self.report.checks.push(CheckResult {
            name: name.to_string(),
            failure,
        });
        Ok(())
    }

    fn idem(&self, step: &str) -> String {
        format!("{PREFIX}{}/{step}", self.run)
    }

    fn all(&mut self) -> std::io::Result<()> {
        let r = self.handshake();
        let ok = r.is_ok();
        self.record("handshake", r)?;
        if !ok {
            let r = Err("not run: the handshake failed".to_string());
            return self.record("all_other_checks", r);
        }
        let r = self.version_negotiation();
        self.record("version_negotiation", r)?;
        self.clear_sandbox();
        for kind in self.kinds.clone() {
            let r = self.create_list_roundtrip(kind);
            self.record(&format!("create_list_roundtrip/{kind}"), r)?;
            let r = self.ensure_idempotent(kind);
            self.record(&format!("ensure_idempotent/{kind}"), r)?;
        }
        // Users only (`--kind group` leaves them out).
        let users = self.kinds.contains(&ObjKind::User);
        if users {
            let r = self.deactivate_reactivate();
            self.record("deactivate_reactivate", r)?;
            let r = self.paging();
            self.record("paging", r)?;
        }
        for kind in self.kinds.clone() {
            let r = self.delete_absent(kind);
            self.record(&format!("delete_absent/{kind}"), r)?;
        }
        if users {
            self.secrets()?;
        }
        let r = self.unknown_op();
        self.record("unknown_op", r)?;
        let r = self.invalid_request();
        self.record("invalid_request", r)?;
        let r = self.unknown_fields_ignored();
        self.record("unknown_fields_ignored", r)?;
        let r = self.timeout_kill();
        self.record("timeout_kill", r)?;
        for kind in self.kinds.clone() {
            let r = self.delete(kind);
            self.record(&format!("delete/{kind}"), r)?;
        }
        let r = self.cleanup();
        self.record("cleanup", r)?;
        if self.secrets_exchanged {
            let r = self.no_secret_on_stderr();
            self.record("no_secret_on_stderr", r)?;
        }
        let r = self.exit_on_stdin_close();
        self.record("exit_on_stdin_close", r)?;
        let r = self.stdout_purity();
        self.record("stdout_purity", r)
    }

    // --- the conversation ---------------------------------------------

    /// Start a session and say `hello` with `versions`.
    fn open(&mut self, versions: &[u32]) -> Result<(Session, Answer), String> {
        if self.sessions >= self.max_sessions {
            return Err(format!(
                "gave up: {} sessions of the connector were started already",
                self.sessions
            ));
        }
        self.sessions += 1;
        let mut session = Session::spawn(&self.spawn).map_err(|e| e.message)?;
        let body = json!({
            "op": "hello",
            "versions": versions,
            "target": NAME,
            "config": self.opts.config,
        });
        let opts = CallOptions {
            timeout: HELLO_TIMEOUT,
            receives_secret: false,
        };
        let answer = self.exchange(&mut session, "hello", &body, opts)?;
        Ok((session, answer))
    }

    fn exchange(
        &mut self,
        session: &mut Session,
        op: &str,
        body: &Value,
        opts: CallOptions,
    ) -> Result<Answer, String> {
        let mut attempt = 0;
        loop {
            let reply = match session.call(op, body, opts) {
                Ok(r) => r,
                Err(e) => {
                    let fault = session.dead().map_or(Fault::Other, |(f, _)| f);
                    self.faults.push((fault, e.message.clone()));
                    return Err(e.message);
                }
            };
            if let Some(err) = reply.error() {
                if err.class == ErrorClass::Retryable && attempt < RETRIES {
                    std::thread::sleep(retry_wait(attempt, err.retry_after));
                    attempt += 1;
                    continue;
                }
                return Ok(Answer::Err(err.clone()));
            }
            return serde_json::from_slice(&reply.line)
                .map(Answer::Ok)
                .map_err(|e| format!("{op}: unreadable reply: {e}"));
        }
    }

    /// The running session, started (with `hello`) when there is none.
    fn session(&mut self) -> Result<Session, String> {
        if let Some(s) = self.session.take()
            && s.dead().is_none()
        {
            return Ok(s);
        }
        match self.open(super::protocol::VERSIONS)? {
            (s, Answer::Ok(_)) => Ok(s),
            (_, Answer::Err(e)) => Err(format!(
                "a new session's hello failed: {}: {}",
                e.class.as_str(),
                e.message
            )),
        }
    }

    /// One request on the main session (`body` without `id`).
    fn ask(&mut self, body: Value) -> Result<Answer, String> {
        let op = body["op"].as_str().unwrap_or("?").to_string();
        let opts = CallOptions {
            timeout: self.opts.timeout,
            receives_secret: op == "generate_secret",
        };
        let mut session = self.session()?;
        let answer = self.exchange(&mut session, &op, &body, opts);
        self.session = Some(session);
        answer
    }

    /// One request that must succeed.
    fn ok(&mut self, body: Value) -> Result<Value, String> {
        let op = body["op"].as_str().unwrap_or("?").to_string();
        match self.ask(body)? {
            Answer::Ok(v) => Ok(v),
            Answer::Err(e) => Err(format!("{op} replied {}: {}", e.class.as_str(), e.message)),
        }
    }

    /// Every object of `kind`, following cursors, with the number of pages
    /// and whether a `next` cursor was seen.
    fn list_all(&mut self, kind: ObjKind) -> Result<(Vec<Listed>, usize), String> {
        let mut pages = 0;
        let what = format!("list {kind}");
        let paging = self.caps.as_ref().is_some_and(|c| c.capabilities.paging);
        let items = follow_pages(&what, |cursor| {
            pages += 1;
            let v = self
                .ok(json!({"op": "list", "kind": kind, "cursor": cursor}))
                .map_err(|e| TargetError::new(ErrorClass::Fatal, e))?;
            let page: ListReply = serde_json::from_value(v).map_err(|e| {
                TargetError::new(
                    ErrorClass::Fatal,
                    format!("{what}: the reply is not `{{items, next}}`: {e}"),
                )
            })?;
            if page.next.is_some() && !paging {
                return Err(TargetError::new(
                    ErrorClass::Fatal,
                    format!("{what}: the connector declared `paging: false` but returned a `next` cursor"),
                ));
            }
            let items = page
                .items
                .into_iter()
                .map(|i| (i.key, i.remote_ref, Value::Object(i.attrs.into_iter().collect())))
                .collect::<Vec<_>>();
            Ok((items, page.next))
        })
        .map_err(|e| e.message)?;
        Ok((items, pages))
    }

    fn find(&mut self, kind: ObjKind, key: &str) -> Result<Option<(String, Value)>, String> {
        let (items, _) = self.list_all(kind)?;
        let mut found: Vec<_> = items.into_iter().filter(|(k, _, _)| k == key).collect();
        if found.len() > 1 {
            return Err(format!(
                "list {kind} returned `{key}` {} times",
                found.len()
            ));
        }
        Ok(found.pop().map(|(_, r, a)| (r, a)))
    }

    fn ensure(
        &mut self,
        kind: ObjKind,
        key: &str,
        attrs: &Value,
        step: &str,
    ) -> Result<(String, bool, Value), String> {
        let remote_ref = self.refs.get(&(kind, key.to_string())).cloned();
        let v = self.ok(json!({
            "op": "ensure", "kind": kind, "key": key, "ref": remote_ref,
            "previous_key": null, "attrs": attrs, "idem": self.idem(step),
        }))?;
        let Some(r) = v["ref"].as_str().filter(|r| !r.is_empty()) else {
            return Err(format!(
                "ensure {kind} `{key}`: the reply has no `ref` string"
            ));
        };
        let Some(changed) = v["changed"].as_bool() else {
            return Err(format!(
                "ensure {kind} `{key}`: the reply has no `changed` boolean"
            ));
        };
        if let Some(old) = &remote_ref
            && old != r
        {
            return Err(format!(
                "ensure {kind} `{key}` with ref `{old}` replied another ref `{r}`"
            ));
        }
        self.refs.insert((kind, key.to_string()), r.to_string());
        Ok((r.to_string(), changed, v["attrs"].clone()))
    }

    fn need_ref(&self, kind: ObjKind, key: &str) -> Result<String, String> {
        self.refs
            .get(&(kind, key.to_string()))
            .cloned()
            .ok_or_else(|| {
                format!(
                    "not run: needs {kind} `{key}` from create_list_roundtrip/{kind}, which failed"
                )
            })
    }

    // --- the checks -----------------------------------------------------

    fn handshake(&mut self) -> Check {
        let (session, answer) = self.open(super::protocol::VERSIONS)?;
        let reply = match answer {
            Answer::Ok(v) => v,
            Answer::Err(e) => {
                return Err(format!("hello replied {}: {}", e.class.as_str(), e.message));
            }
        };
        let hello: HelloReply = serde_json::from_value(reply).map_err(|e| {
            format!(
                "the hello reply is not `{{version, capabilities}}` as protocol v1 defines: {e}"
            )
        })?;
        if hello.version != 1 {
            return Err(format!(
                "hello chose version {}, roster offered [1]",
                hello.version
            ));
        }
        let declared: BTreeSet<ObjKind> = hello.capabilities.kinds.iter().copied().collect();
        if !declared.contains(&ObjKind::User) {
            return Err("capabilities.kinds must include `user`".into());
        }
        self.kinds = match &self.opts.kinds {
            None => declared.clone(),
            Some(asked) => {
                if let Some(k) = asked.iter().find(|k| !declared.contains(k)) {
                    return Err(format!(
                        "--kind {k}: the connector declares only {:?}",
                        declared.iter().map(|k| k.as_str()).collect::<Vec<_>>()
                    ));
                }
                asked.clone()
            }
        };
        self.caps = Some(hello);
        self.session = Some(session);
        Ok(())
    }

    fn version_negotiation(&mut self) -> Check {
        let (mut session, answer) = self.open(&[99])?;
        self.note_stray(session.close());
        match answer {
            Answer::Err(e) if e.class == ErrorClass::Unsupported => Ok(()),
            Answer::Err(e) => Err(format!(
                "hello with versions [99] replied {}, expected `unsupported`",
                e.class.as_str()
            )),
            Answer::Ok(v) => Err(format!(
                "hello with versions [99] was accepted (version {}); a connector must refuse versions it does not speak with `unsupported`",
                v["version"]
            )),
        }
    }

    /// Remove what an earlier, interrupted run left.
    fn clear_sandbox(&mut self) {
        for kind in self.kinds.clone() {
            if let Ok((items, _)) = self.list_all(kind) {
                for (key, r, _) in items.into_iter().filter(|(k, _, _)| k.starts_with(PREFIX)) {
                    let idem = self.idem(&format!("clear/{key}"));
                    let _ = self.ok(
                        json!({"op": "delete", "kind": kind, "key": key, "ref": r, "idem": idem}),
                    );
                }
            }
        }
    }

    fn create_list_roundtrip(&mut self, kind: ObjKind) -> Check {
        let key = key_for(kind);
        let (r, changed, held) =
            self.ensure(kind, &key, &attrs_for(kind), &format!("create/{kind}"))?;
        if !changed {
            return Err(format!("creating {kind} `{key}` replied `changed: false`"));
        }
        let Some((listed_ref, listed)) = self.find(kind, &key)? else {
            return Err(format!(
                "{kind} `{key}` was created but list does not return it"
            ));
        };
        if listed_ref != r {
            return Err(format!(
                "ensure replied ref `{r}`, list shows `{listed_ref}`"
            ));
        }
        let diff = differing(&held, &listed);
        if !diff.is_empty() {
            return Err(format!(
                "the attrs ensure replied and the attrs list returns differ in {diff:?}"
            ));
        }
        let lost = differing(&attrs_for(kind), &listed);
        if lost.len() == attrs_for(kind).as_object().map_or(0, |o| o.len()) {
            return Err(format!(
                "the connector kept none of the attributes sent ({lost:?})"
            ));
        }
        Ok(())
    }

    fn ensure_idempotent(&mut self, kind: ObjKind) -> Check {
        let key = key_for(kind);
        self.need_ref(kind, &key)?;
        let (_, changed, _) =
            self.ensure(kind, &key, &attrs_for(kind), &format!("again/{kind}"))?;
        if changed {
            return Err(format!(
                "a second ensure of {kind} `{key}` with the same attrs replied `changed: true` (ensure must be declarative)"
            ));
        }
        Ok(())
    }

    fn deactivate_reactivate(&mut self) -> Check {
        let key = key_for(ObjKind::User);
        self.need_ref(ObjKind::User, &key)?;
        for (active, step) in [(false, "deactivate"), (true, "reactivate")] {
            let (_, changed, _) = self.ensure(ObjKind::User, &key, &user_attrs(1, active), step)?;
            if !changed {
                return Err(format!(
                    "{step}: ensure with `active: {active}` replied `changed: false`"
                ));
            }
            let listed = self.find(ObjKind::User, &key)?;
            let shown = listed
                .as_ref()
                .and_then(|(_, a)| a.get("active"))
                .and_then(compare::as_bool);
            if shown != Some(active) {
                return Err(format!(
                    "{step}: list shows `active: {}` after ensure with `active: {active}`",
                    shown.map_or("absent".to_string(), |b| b.to_string())
                ));
            }
        }
        Ok(())
    }

    fn paging(&mut self) -> Check {
        let keys: Vec<String> = (0..PAGE_OBJECTS)
            .map(|i| format!("{PREFIX}page-{i:03}"))
            .collect();
        for (i, key) in keys.iter().enumerate() {
            let attrs =
                json!({"display_name": format!("roster conformance page {i}"), "active": true});
            self.ensure(ObjKind::User, key, &attrs, &format!("page/{i}"))
                .map_err(|e| format!("creating {PAGE_OBJECTS} users: {e}"))?;
        }
        let (items, pages) = self.list_all(ObjKind::User)?;
        let mut seen = BTreeMap::new();
        for (k, _, _) in &items {
            *seen.entry(k.clone()).or_insert(0) += 1;
        }
        if let Some((k, n)) = seen.iter().find(|(_, n)| **n > 1) {
            return Err(format!(
                "list user returned `{k}` {n} times over {pages} page(s)"
            ));
        }
        let missing: Vec<&String> = keys.iter().filter(|k| !seen.contains_key(*k)).collect();
        if !missing.is_empty() {
            return Err(format!(
                "list user over {pages} page(s) missed {} of the {PAGE_OBJECTS} users created, e.g. `{}`",
                missing.len(),
                missing[0]
            ));
        }
        Ok(())
    }

    fn delete_absent(&mut self, kind: ObjKind) -> Check {
        let key = format!("{PREFIX}{kind}-absent");
        let idem = self.idem(&format!("absent/{kind}"));
        self.ok(json!({"op": "delete", "kind": kind, "key": key, "ref": format!("{PREFIX}no-such-ref"), "idem": idem}))
            .map(|_| ())
            .map_err(|e| format!("deleting an absent {kind}: {e} (deleting an absent object must succeed)"))
    }

    fn secrets(&mut self) -> std::io::Result<()> {
        let modes: Vec<(SecretKind, WireSecretMode)> = self
            .caps
            .as_ref()
            .map(|c| {
                c.capabilities
                    .secrets
                    .iter()
                    .map(|(k, m)| (*k, *m))
                    .collect()
            })
            .unwrap_or_default();
        for (kind, mode) in modes {
            match mode {
                WireSecretMode::RosterGenerated => {
                    let r = self.set_secret(kind);
                    self.record(&format!("secret/{kind}/set"), r)?;
                }
                WireSecretMode::TargetGenerated => {
                    let first = self.generate_secret(kind, "generate");
                    let r = first.as_ref().map(|_| ()).map_err(Clone::clone);
                    self.record(&format!("secret/{kind}/generate"), r)?;
                    let r = match &first {
                        Ok(value) => self.replay(kind, value),
                        Err(_) => Err("not run: generate failed".into()),
                    };
                    self.record(&format!("secret/{kind}/replay"), r)?;
                }
            }
            let r = self.revoke(kind);
            self.record(&format!("secret/{kind}/revoke"), r)?;
        }
        Ok(())
    }

    fn set_secret(&mut self, kind: SecretKind) -> Check {
        let key = key_for(ObjKind::User);
        let r = self.need_ref(ObjKind::User, &key)?;
        let canary = format!("{PREFIX}canary-{}", hex::encode(rand::random::<[u8; 16]>()));
        self.spawn.redactor.add(&canary);
        self.secrets_exchanged = true;
        let idem = self.idem(&format!("set/{kind}"));
        self.ok(json!({"op": "set_secret", "key": key, "ref": r, "kind": kind, "value": canary, "idem": idem}))
            .map(|_| ())
    }

    fn generate_secret(
        &mut self,
        kind: SecretKind,
        step: &str,
    ) -> Result<zeroize::Zeroizing<String>, String> {
        let key = key_for(ObjKind::User);
        let r = self.need_ref(ObjKind::User, &key)?;
        let idem = self.idem(&format!("{step}/{kind}"));
        let v = self.ok(
            json!({"op": "generate_secret", "key": key, "ref": r, "kind": kind, "idem": idem}),
        )?;
        self.secrets_exchanged = true;
        let value = v["secret"]["value"].as_str().unwrap_or_default();
        self.spawn.redactor.add(value);
        if value.is_empty() {
            return Err("the reply has no `secret.value` string".into());
        }
        if v["secret"]["kind"] != json!(kind) {
            return Err(format!(
                "asked for a {kind}, `secret.kind` is {}",
                v["secret"]["kind"]
            ));
        }
        Ok(zeroize::Zeroizing::new(value.to_string()))
    }

    /// A replayed `generate_secret` (same idem) must not mint a second secret.
    fn replay(&mut self, kind: SecretKind, first: &str) -> Check {
        let key = key_for(ObjKind::User);
        let r = self.need_ref(ObjKind::User, &key)?;
        let idem = self.idem(&format!("generate/{kind}"));
        let body =
            json!({"op": "generate_secret", "key": key, "ref": r, "kind": kind, "idem": idem});
        match self.ask(body)? {
            Answer::Err(e) if e.class == ErrorClass::Conflict => Ok(()),
            Answer::Err(e) => Err(format!(
                "a replayed generate_secret replied {}: {} (expected the same secret, or `conflict`)",
                e.class.as_str(),
                e.message
            )),
            Answer::Ok(v) => {
                let value = v["secret"]["value"].as_str().unwrap_or_default();
                self.spawn.redactor.add(value);
                if value == first {
                    Ok(())
                } else {
                    Err("a replayed generate_secret (same idem) minted a second secret; reply with the first one, or `conflict`".into())
                }
            }
        }
    }

    fn revoke(&mut self, kind: SecretKind) -> Check {
        let key = key_for(ObjKind::User);
        let r = self.need_ref(ObjKind::User, &key)?;
        let idem = self.idem(&format!("revoke/{kind}"));
        self.ok(json!({"op": "revoke_secret", "key": key, "ref": r, "kind": kind, "idem": idem}))
            .map(|_| ())
    }

    fn unknown_op(&mut self) -> Check {
        match self.ask(json!({"op": format!("{PREFIX}unknown-op"), "kind": "user"}))? {
            Answer::Err(e) if e.class == ErrorClass::Unsupported => Ok(()),
            Answer::Err(e) => Err(format!(
                "an unknown op replied {}, expected `unsupported`",
                e.class.as_str()
            )),
            Answer::Ok(_) => Err("an unknown op replied `ok: true`, expected `unsupported`".into()),
        }
    }

    fn invalid_request(&mut self) -> Check {
        let idem = self.idem("invalid");
        let body = json!({"op": "ensure", "kind": "user", "ref": null, "previous_key": null, "attrs": {}, "idem": idem});
        let answer = self.ask(body)?;
        // The connector must live on after an invalid request.
        self.list_all(ObjKind::User)
            .map_err(|e| format!("after the invalid request: {e}"))?;
        match answer {
            Answer::Err(e) if e.class == ErrorClass::Invalid => Ok(()),
            Answer::Err(e) => Err(format!(
                "an ensure without `key` replied {}, expected `invalid`",
                e.class.as_str()
            )),
            Answer::Ok(_) => {
                Err("an ensure without `key` replied `ok: true`, expected `invalid`".into())
            }
        }
    }

    fn unknown_fields_ignored(&mut self) -> Check {
        self.ok(json!({"op": "list", "kind": "user", "cursor": null, "roster_conformance_future_field": {"since": "v2"}}))
            .map(|_| ())
            .map_err(|e| format!("a request with an unknown field: {e} (unknown fields must be ignored)"))
    }

    fn timeout_kill(&mut self) -> Check {
        let mut session = self.session()?;
        let pid = session.pid();
        let fault = session.send_unfinished(br#"{"id":99999,"op":"list","kind":"us"#, HANG_TIMEOUT);
        drop(session);
        if !fault.message.contains("no reply within") {
            return Err(format!("expected a timeout, got: {}", fault.message));
        }
        // Every process of the group is gone (bounded wait for the kernel).
        let start = Instant::now();
        loop {
            // SAFETY: signal 0 only asks whether the group has a member.
            let alive = unsafe { libc::kill(-pid, 0) } == 0;
            if !alive {
                break;
            }
            if start.elapsed() > Duration::from_secs(5) {
                return Err(format!(
                    "process group {pid} still has processes 5 s after the kill"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // A new session, after the SIGKILL, still sees the sandbox.
        let want: Vec<String> = self
            .refs
            .keys()
            .filter(|(k, _)| *k == ObjKind::User)
            .map(|(_, key)| key.clone())
            .collect();
        let (items, _) = self
            .list_all(ObjKind::User)
            .map_err(|e| format!("a new session after the kill: {e}"))?;
        let have: BTreeSet<&String> = items.iter().map(|(k, _, _)| k).collect();
        if let Some(k) = want.iter().find(|k| !have.contains(k)) {
            return Err(format!(
                "after being killed mid-request the connector lost user `{k}`"
            ));
        }
        Ok(())
    }

    fn delete(&mut self, kind: ObjKind) -> Check {
        let key = key_for(kind);
        let r = self.need_ref(kind, &key)?;
        let idem = self.idem(&format!("delete/{kind}"));
        self.ok(json!({"op": "delete", "kind": kind, "key": key, "ref": r, "idem": idem}))?;
        self.refs.remove(&(kind, key.clone()));
        if self.find(kind, &key)?.is_some() {
            return Err(format!("{kind} `{key}` is still listed after delete"));
        }
        Ok(())
    }

    fn cleanup(&mut self) -> Check {
        // Also room for exit_on_stdin_close.
        self.max_sessions = self.sessions + CLEANUP_SESSIONS + 1;
        self.clear_sandbox();
        let mut left = Vec::new();
        for kind in self.kinds.clone() {
            let (items, _) = self.list_all(kind).map_err(|e| {
                format!("cannot check that the sandbox is empty (objects named {PREFIX}* may be left): {e}")
            })?;
            left.extend(
                items
                    .into_iter()
                    .filter(|(k, _, _)| k.starts_with(PREFIX))
                    .map(|(k, _, _)| format!("{kind} {k}")),
            );
        }
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} sandbox object(s) are left after delete, e.g. {}",
                left.len(),
                left[0]
            ))
        }
    }

    /// Lines on stdout after the last reply break stdout purity too.
    fn note_stray(&mut self, closed: super::session::Closed) {
        if closed.stray_lines > 0 {
            self.faults.push((
                Fault::NotAReply,
                format!(
                    "target `{NAME}`: wrote {} line(s) on stdout after its last reply",
                    closed.stray_lines
                ),
            ));
        }
    }

    fn stdout_purity(&mut self) -> Check {
        match self.faults.iter().find(|(f, _)| f.impure_stdout()) {
            None => Ok(()),
            Some((_, e)) => Err(e.clone()),
        }
    }

    fn no_secret_on_stderr(&mut self) -> Check {
        let raw = lock(&self.capture).clone();
        if self.spawn.redactor.occurs_in(&raw) {
            Err("a secret roster sent or received appeared on the connector's stderr (roster redacts it, but a connector must never log one)".into())
        } else {
            Ok(())
        }
    }

    fn exit_on_stdin_close(&mut self) -> Check {
        let mut session = self.session()?;
        let closed = session.close();
        self.note_stray(closed);
        let (status, on_its_own) = (closed.status, closed.on_its_own);
        if on_its_own {
            Ok(())
        } else {
            Err(format!(
                "the connector did not exit within 5 s of its stdin closing; roster killed it ({})",
                status.map_or("no status".into(), |s| s.to_string())
            ))
        }
    }
}
