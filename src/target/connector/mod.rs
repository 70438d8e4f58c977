//! A target of kind `connector`: an admin's program that speaks roster's
//! connector protocol v1 (JSON Lines on stdin/stdout, docs/connector-protocol.md).
//!
//! [`ConnectorTarget`] starts the program in [`Target::open`] (one process
//! per target and run), sends `hello`, and then one request at a time.
//! Replies of class `retryable` are retried (3 retries; `retry_after`
//! capped at 30 s, else 1 s, 2 s, 4 s). A protocol fault ends the session
//! for good (see [`session`]); every later call fails at once with it.
//!
//! Submodules: `protocol` (the messages), `session` (the process and the
//! conversation), `conformance` (the kit behind `roster connector test`).
//!
//! Must not: send a password in `ensure` (it travels only in `set_secret`);
//! show a secret in an error, a log line or `Debug`.

pub mod conformance;
pub mod protocol;
pub mod session;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use self::protocol::{
    EnsureReply, GenerateReply, HelloReply, ListReply, Op, SecretValue, VERSIONS, WireSecretMode,
};
use self::session::{CallOptions, LogSink, Redactor, Reply, Session, Spawn, lock};
use super::{
    Capabilities, EnsureRequest, Ensured, ErrorClass, Generated, Membership, ObjKind, RemoteObject,
    SecretMode, Target, TargetError,
};
use crate::model::{ConnectorTargetConfig, parse_duration};
use crate::secret::{Secret, SecretKind};

/// The per-request timeout when the config gives none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The `hello` timeout.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Retries of a `retryable` reply.
pub const RETRIES: u32 = 3;
/// The longest `retry_after` honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// The most `list` pages read for one kind.
pub const MAX_PAGES: usize = 100_000;

/// The wait before retry number `attempt` (0-based): `retry_after` capped
/// at 30 s, else 1 s, 2 s, 4 s.
pub fn retry_wait(attempt: u32, retry_after: Option<f64>) -> Duration {
    match retry_after {
        Some(s) if s.is_finite() && s >= 0.0 => {
            Duration::from_secs_f64(s.min(MAX_RETRY_AFTER.as_secs_f64()))
        }
        _ => Duration::from_secs(1u64 << attempt.min(5)),
    }
}

/// Follow `next` cursors: at most [`MAX_PAGES`] pages, and a cursor seen
/// twice is an error (a connector that loops would never end).
pub fn follow_pages<T>(
    what: &str,
    mut page: impl FnMut(Option<&str>) -> Result<(Vec<T>, Option<String>), TargetError>,
) -> Result<Vec<T>, TargetError> {
    let mut all = Vec::new();
    let mut seen = BTreeSet::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let (items, next) = page(cursor.as_deref())?;
        all.extend(items);
        match next {
            None => return Ok(all),
            Some(c) => {
                if !seen.insert(c.clone()) {
                    return Err(TargetError::new(
                        ErrorClass::Fatal,
                        format!(
                            "{what}: the connector returned the cursor `{}` twice (a listing that never ends)",
                            shorten(&c)
                        ),
                    ));
                }
                cursor = Some(c);
            }
        }
    }
    Err(TargetError::new(
        ErrorClass::Fatal,
        format!("{what}: more than {MAX_PAGES} pages"),
    ))
}

/// A request not sent because the session ended: the first error, as it was.
fn not_sent(op: &str, first: &TargetError) -> TargetError {
    TargetError::new(
        first.class,
        format!(
            "{op} not sent, the connector session ended earlier: {}",
            first.message
        ),
    )
}

fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(80).collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out.escape_debug().to_string()
}

/// One connector target.
pub struct ConnectorTarget {
    name: String,
    spawn: Spawn,
    config: std::collections::BTreeMap<String, serde_json::Value>,
    timeout: Duration,
    state: Mutex<State>,
    requests: AtomicU64,
}

enum State {
    NotOpen,
    Open(Box<Session>),
    /// A fault ended the session (or `open` failed): every call fails with it.
    Dead(TargetError),
}

impl std::fmt::Debug for ConnectorTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectorTarget")
            .field("name", &self.name)
            .field("command", &self.spawn.command)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ConnectorTarget {
    /// A connector target; nothing is started until [`Target::open`].
    pub fn new(name: &str, config: &ConnectorTargetConfig) -> Result<Self, TargetError> {
        let invalid = |what: String| {
            TargetError::new(ErrorClass::Invalid, format!("target `{name}`: {what}"))
        };
        if config.command.is_empty() || config.command[0].is_empty() {
            return Err(invalid("`command` must name a program".into()));
        }
        let timeout = match &config.timeout {
            None => DEFAULT_TIMEOUT,
            Some(t) => parse_duration(t).ok_or_else(|| {
                invalid(format!(
                    "`timeout: {t}` is not a duration like 60s, 500ms or 2m"
                ))
            })?,
        };
        if timeout.is_zero() {
            return Err(invalid("`timeout` must be more than 0".into()));
        }
        Ok(ConnectorTarget {
            name: name.to_string(),
            spawn: Spawn {
                name: name.to_string(),
                command: config.command.clone(),
                env: config.env.clone(),
                redactor: Arc::new(Redactor::default()),
                log: session::stderr_sink(),
                capture: None,
            },
            config: config.config.clone(),
            timeout,
            state: Mutex::new(State::NotOpen),
            requests: AtomicU64::new(0),
        })
    }

    /// Relay the connector's stderr here instead of roster's stderr.
    pub fn with_log(mut self, log: LogSink) -> Self {
        self.spawn.log = log;
        self
    }

    /// The connector's process id while a session runs (tests).
    pub fn pid(&self) -> Option<i32> {
        match &*lock(&self.state) {
            State::Open(s) => Some(s.pid()),
            _ => None,
        }
    }

    /// Send one request (retrying `retryable` replies) and read the op's reply.
    fn call<R: DeserializeOwned>(&self, op: &Op<'_>) -> Result<R, TargetError> {
        let name = op.name();
        let receives_secret = matches!(op, Op::GenerateSecret { .. });
        let timeout = if matches!(op, Op::Hello { .. }) {
            HELLO_TIMEOUT
        } else {
            self.timeout
        };
        let opts = CallOptions {
            timeout,
            receives_secret,
        };
        let mut state = lock(&self.state);
        let session = match &mut *state {
            State::Open(s) => s,
            State::Dead(e) => return Err(not_sent(name, e)),
            State::NotOpen => {
                return Err(TargetError::new(
                    ErrorClass::Fatal,
                    format!("target `{}`: {name} before open", self.name),
                ));
            }
        };
        let mut attempt = 0;
        let fault = loop {
            self.requests.fetch_add(1, Ordering::Relaxed);
            let reply = match session.call(name, op, opts) {
                Ok(r) => r,
                Err(e) => break e,
            };
            match reply.error() {
                None => match self.parse(name, &reply, receives_secret) {
                    Ok(r) => return Ok(r),
                    Err(e) => {
                        session.abort(&e);
                        break e;
                    }
                },
                Some(err) if err.class == ErrorClass::Retryable && attempt < RETRIES => {
                    let wait = retry_wait(attempt, err.retry_after);
                    tracing::info!(
                        "target `{}`: {name}: retryable error ({}), retry {} of {RETRIES} in {}",
                        self.name,
                        self.spawn.redactor.redact(&err.message),
                        attempt + 1,
                        session::show_duration(wait),
                    );
                    attempt += 1;
                    std::thread::sleep(wait);
                }
                Some(err) => {
                    let tried = if attempt > 0 {
                        format!(" (after {} attempts)", attempt + 1)
                    } else {
                        String::new()
                    };
                    let message = self.spawn.redactor.redact(&err.message);
                    return Err(TargetError::new(
                        err.class,
                        format!(
                            "target `{}`: {name} failed{tried}: {}: {message}",
                            self.name,
                            err.class.as_str()
                        ),
                    ));
                }
            }
        };
        // A protocol fault: the session is over (killed and reaped on drop).
        *state = State::Dead(fault.clone());
        Err(fault)
    }

    /// Read an ok reply as the op's reply type (a reply without them is a
    /// protocol fault: the caller ends the session).
    fn parse<R: DeserializeOwned>(
        &self,
        op: &str,
        reply: &Reply,
        receives_secret: bool,
    ) -> Result<R, TargetError> {
        serde_json::from_slice::<R>(&reply.line).map_err(|e| {
            // Only the position: the line may hold a secret.
            let why = if receives_secret {
                format!("at line 1 column {}", e.column())
            } else {
                self.spawn.redactor.redact(&e.to_string())
            };
            TargetError::new(
                ErrorClass::Fatal,
                format!(
                    "target `{}`: {op} (request {}): the reply does not have the fields of a `{op}` reply: {why}",
                    self.name, reply.envelope.id
                ),
            )
        })
    }

    fn expect_ok(&self, op: &Op<'_>) -> Result<(), TargetError> {
        #[derive(serde::Deserialize)]
        struct Nothing {}
        self.call::<Nothing>(op).map(|_| ())
    }

    fn hello(&self) -> Result<Capabilities, TargetError> {
        let reply: HelloReply = self.call(&Op::Hello {
            versions: VERSIONS,
            target: &self.name,
            config: &self.config,
        })?;
        let fail = |what: String| {
            TargetError::new(
                ErrorClass::Fatal,
                format!("target `{}`: hello: {what}", self.name),
            )
        };
        if !VERSIONS.contains(&reply.version) {
            return Err(fail(format!(
                "the connector chose protocol version {}, but roster offered {VERSIONS:?}; upgrade roster or use a connector that speaks version 1",
                reply.version
            )));
        }
        let caps = reply.capabilities;
        let kinds: BTreeSet<ObjKind> = caps.kinds.into_iter().collect();
        if !kinds.contains(&ObjKind::User) {
            return Err(fail(
                "the connector's capabilities do not include the kind `user`".into(),
            ));
        }
        let secrets = caps
            .secrets
            .into_iter()
            .map(|(kind, mode)| {
                let mode = match mode {
                    WireSecretMode::RosterGenerated => SecretMode::RosterGenerated,
                    WireSecretMode::TargetGenerated => SecretMode::TargetGenerated,
                };
                (kind, mode)
            })
            .collect();
        Ok(Capabilities {
            kinds,
            secrets,
            membership: caps.membership.unwrap_or(Membership::OnUser),
            user_attrs: None,
            group_attrs: None,
            concurrency: 1,
            limitations: Vec::new(),
        })
    }
}

impl Target for ConnectorTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn open(&self) -> Result<Capabilities, TargetError> {
        {
            let mut state = lock(&self.state);
            match &*state {
                State::NotOpen => {}
                State::Dead(e) => return Err(not_sent("hello", e)),
                State::Open(_) => {
                    return Err(TargetError::new(
                        ErrorClass::Fatal,
                        format!("target `{}`: opened twice", self.name),
                    ));
                }
            }
            match Session::spawn(&self.spawn) {
                Ok(s) => *state = State::Open(Box::new(s)),
                Err(e) => {
                    *state = State::Dead(e.clone());
                    return Err(e);
                }
            }
        }
        let caps = self.hello();
        if let Err(e) = &caps {
            // A connector we cannot speak with is not kept running.
            let mut state = lock(&self.state);
            if let State::Open(s) = std::mem::replace(&mut *state, State::Dead(e.clone())) {
                drop(s);
            }
        }
        caps
    }

    fn list(&self, kind: ObjKind) -> Result<Vec<RemoteObject>, TargetError> {
        let what = format!("target `{}`: list {kind}", self.name);
        follow_pages(&what, |cursor| {
            let reply: ListReply = self.call(&Op::List { kind, cursor })?;
            let items = reply
                .items
                .into_iter()
                .map(|i| RemoteObject {
                    key: i.key,
                    remote_ref: i.remote_ref,
                    attrs: i.attrs,
                })
                .collect();
            Ok((items, reply.next))
        })
    }

    fn ensure(&self, req: &EnsureRequest<'_>) -> Result<Ensured, TargetError> {
        // A password never travels in `ensure`: the core sends it with
        // `set_secret` after (`password_set: false`).
        let reply: EnsureReply = self.call(&Op::Ensure {
            kind: req.kind,
            key: req.key,
            remote_ref: req.remote_ref,
            previous_key: req.renamed_from,
            attrs: req.attrs,
            idem: req.idem,
        })?;
        Ok(Ensured {
            remote_ref: reply.remote_ref,
            attrs: reply.attrs,
            changed: reply.changed,
            password_set: false,
        })
    }

    fn delete(
        &self,
        kind: ObjKind,
        key: &str,
        remote_ref: &str,
        idem: &str,
    ) -> Result<(), TargetError> {
        self.expect_ok(&Op::Delete {
            kind,
            key,
            remote_ref,
            idem,
        })
    }

    fn set_secret(
        &self,
        key: &str,
        remote_ref: &str,
        kind: SecretKind,
        value: &Secret,
        idem: &str,
    ) -> Result<(), TargetError> {
        self.spawn.redactor.add(value.expose());
        self.expect_ok(&Op::SetSecret {
            key,
            remote_ref,
            kind,
            value: SecretValue(value),
            idem,
        })
    }

    fn generate_secret(
        &self,
        key: &str,
        remote_ref: &str,
        kind: SecretKind,
        idem: &str,
    ) -> Result<Generated, TargetError> {
        let reply: GenerateReply = self.call(&Op::GenerateSecret {
            key,
            remote_ref,
            kind,
            idem,
        })?;
        self.spawn.redactor.add(reply.secret.value.expose());
        if reply.secret.kind != kind {
            return Err(TargetError::new(
                ErrorClass::Fatal,
                format!(
                    "target `{}`: generate_secret: asked for a {kind}, the connector generated a {}",
                    self.name, reply.secret.kind
                ),
            ));
        }
        if reply.secret.value.expose().is_empty() {
            return Err(TargetError::new(
                ErrorClass::Fatal,
                format!(
                    "target `{}`: generate_secret: the connector returned an empty {kind}",
                    self.name
                ),
            ));
        }
        Ok(Generated {
            value: reply.secret.value,
            username: reply.username,
        })
    }

    fn revoke_secret(
        &self,
        key: &str,
        remote_ref: &str,
        kind: SecretKind,
        idem: &str,
    ) -> Result<(), TargetError> {
        self.expect_ok(&Op::RevokeSecret {
            key,
            remote_ref,
            kind,
            idem,
        })
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for ConnectorTarget {
    fn drop(&mut self) {
        // Session's own Drop closes stdin, waits up to 5 s, kills the group, reaps.
        let state = std::mem::replace(&mut *lock(&self.state), State::NotOpen);
        drop(state);
    }
}

/// Serialize helper for tests and the kit: the line a request would be.
pub fn request_line<T: Serialize>(id: u64, body: &T) -> String {
    #[derive(Serialize)]
    struct Framed<'a, T: Serialize> {
        id: u64,
        #[serde(flatten)]
        body: &'a T,
    }
    serde_json::to_string(&Framed { id, body }).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_waits_honour_retry_after_capped_else_double() {
        assert_eq!(retry_wait(0, None), Duration::from_secs(1));
        assert_eq!(retry_wait(1, None), Duration::from_secs(2));
        assert_eq!(retry_wait(2, None), Duration::from_secs(4));
        assert_eq!(retry_wait(0, Some(2.5)), Duration::from_millis(2500));
        assert_eq!(retry_wait(0, Some(600.0)), MAX_RETRY_AFTER);
        assert_eq!(retry_wait(1, Some(-1.0)), Duration::from_secs(2));
    }

    #[test]
    fn paging_stops_at_a_repeated_cursor() {
        let mut n = 0;
        let e = follow_pages("target `t`: list user", |_| {
            n += 1;
            Ok((vec![n], Some("again".to_string())))
        })
        .expect_err("a loop");
        assert!(e.message.contains("cursor `again` twice"), "{e}");
        assert_eq!(n, 2);
        let all = follow_pages("x", |c| {
            Ok(match c {
                None => (vec![1, 2], Some("a".into())),
                Some("a") => (vec![3], Some("b".into())),
                _ => (vec![4], None),
            })
        })
        .expect("pages");
        assert_eq!(all, vec![1, 2, 3, 4]);
    }

    #[test]
    fn a_bad_timeout_is_a_clear_error_naming_the_target() {
        let config = ConnectorTargetConfig {
            command: vec!["true".into()],
            config: Default::default(),
            env: vec![],
            timeout: Some("soon".into()),
        };
        let e = ConnectorTarget::new("warehouse", &config).expect_err("invalid");
        assert!(e.message.contains("target `warehouse`"), "{e}");
        assert!(e.message.contains("soon"), "{e}");
    }

    #[test]
    fn the_redactor_cuts_every_secret_longest_first() {
        let r = Redactor::default();
        r.add("abc");
        r.add("abcdef");
        r.add("");
        assert_eq!(r.redact("x abcdef y abc"), "x [redacted] y [redacted]");
        assert!(r.occurs_in(b"..abc.."));
        assert!(!r.occurs_in(b"..ab.."));
    }
}
