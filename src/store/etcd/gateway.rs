//! A small client for etcd v3's JSON gateway (`/v3/...` over HTTP/1.1 with
//! reqwest, blocking): range, txn and lease calls, endpoint failover and
//! authentication. Keys and values travel base64-encoded; int64 fields come
//! back as JSON strings.
//!
//! It knows nothing about roster's key layout. It must never put the password
//! or the auth token into an error, a log line or Debug output.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use crate::secret::Secret;
use crate::store::StoreError;

/// How many passes over all endpoints a request makes before giving up, and
/// the pause between passes (enough for a cluster to elect a new leader).
const PASSES: usize = 3;
const PASS_PAUSE: Duration = Duration::from_millis(700);

/// A user name and password for `/v3/auth/authenticate`.
pub struct Credentials {
    pub user: String,
    pub password: Secret,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"[redacted]")
            .finish()
    }
}

/// One key-value pair as the gateway returns it (key and value decoded).
#[derive(Debug, Clone, Default)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub lease: i64,
}

/// One page of a range.
#[derive(Debug)]
pub struct RangePage {
    /// The store revision the page was read at.
    pub revision: i64,
    pub kvs: Vec<KeyValue>,
    /// Whether keys beyond `limit` are left.
    pub more: bool,
}

/// The outcome of a transaction.
#[derive(Debug)]
pub struct TxnResult {
    pub succeeded: bool,
    /// The revision after the transaction (its own revision when it wrote).
    pub revision: i64,
    /// The `kvs` of every range op in the branch that ran, in order.
    pub ranges: Vec<Vec<KeyValue>>,
}

/// One comparison in a transaction.
pub enum Compare<'a> {
    CreateRevision(&'a [u8], i64),
    ModRevision(&'a [u8], i64),
}

/// One operation in a transaction.
pub enum Op<'a> {
    Put {
        key: &'a [u8],
        value: &'a [u8],
        lease: i64,
    },
    Delete(&'a [u8]),
    Get(&'a [u8]),
}

/// The gateway client: endpoints, HTTP client, credentials and the current token.
pub struct Gateway {
    endpoints: Vec<String>,
    preferred: AtomicUsize,
    http: reqwest::blocking::Client,
    credentials: Option<Credentials>,
    token: Mutex<Option<Secret>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("endpoints", &self.endpoints)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

/// A failure at one endpoint: whether another endpoint may do better.
enum Failure {
    /// Connection failed, timed out, or the member cannot serve (no leader, lost quorum).
    TryNext(String),
    /// The auth token was refused: authenticate again.
    BadToken(String),
    /// A definite answer from etcd: stop.
    Fatal(String),
}

fn de_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        S(String),
        N(i64),
    }
    match Int::deserialize(d)? {
        Int::N(n) => Ok(n),
        Int::S(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

#[derive(Deserialize, Default)]
struct RawKv {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default, deserialize_with = "de_i64")]
    create_revision: i64,
    #[serde(default, deserialize_with = "de_i64")]
    mod_revision: i64,
    #[serde(default, deserialize_with = "de_i64")]
    lease: i64,
}

#[derive(Deserialize, Default)]
struct RawHeader {
    #[serde(default, deserialize_with = "de_i64")]
    revision: i64,
}

#[derive(Deserialize)]
struct RawRange {
    #[serde(default)]
    header: RawHeader,
    #[serde(default)]
    kvs: Vec<RawKv>,
    #[serde(default)]
    more: bool,
}

fn decode_kvs(raw: Vec<RawKv>) -> Result<Vec<KeyValue>, String> {
    raw.into_iter()
        .map(|kv| {
            Ok(KeyValue {
                key: B64
                    .decode(&kv.key)
                    .map_err(|e| format!("a key is not base64: {e}"))?,
                value: B64
                    .decode(&kv.value)
                    .map_err(|e| format!("a value is not base64: {e}"))?,
                create_revision: kv.create_revision,
                mod_revision: kv.mod_revision,
                lease: kv.lease,
            })
        })
        .collect()
}

/// The error text of a reqwest error with its causes, without the URL's query.
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Whether an etcd error means "this member cannot serve now, ask another".
fn member_unavailable(code: i64, message: &str) -> bool {
    code == 14 // gRPC Unavailable
        || [
            "no leader",
            "request timed out",
            "leader changed",
            "not capable",
            "too many requests",
            "server stopped",
            "raft: stopped",
        ]
        .iter()
        .any(|m| message.contains(m))
}

impl Gateway {
    /// `endpoints` are base URLs such as `http://127.0.0.1:2379`.
    pub fn new(
        endpoints: Vec<String>,
        http: reqwest::blocking::Client,
        credentials: Option<Credentials>,
    ) -> Self {
        Gateway {
            endpoints,
            preferred: AtomicUsize::new(0),
            http,
            credentials,
            token: Mutex::new(None),
        }
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// POST `body` to `path` on one endpoint. No failover, no auth retry.
    fn post_once(&self, endpoint: &str, path: &str, body: &Value) -> Result<Value, Failure> {
        let mut request = self.http.post(format!("{endpoint}{path}")).json(body);
        if path != "/v3/auth/authenticate" {
            let token = self.token.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(token) = token.as_ref() {
                let mut value = HeaderValue::from_str(token.expose())
                    .map_err(|_| Failure::Fatal("the auth token is not a valid header".into()))?;
                value.set_sensitive(true);
                request = request.header(AUTHORIZATION, value);
            }
        }
        let response = request.send().map_err(|e| {
            let e = e.without_url();
            if e.is_connect() || e.is_timeout() || e.is_request() {
                Failure::TryNext(describe(&e))
            } else {
                Failure::Fatal(describe(&e))
            }
        })?;
        let status = response.status();
        let text = response
            .text()
            .map_err(|e| Failure::TryNext(describe(&e.without_url())))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            let detail = format!("HTTP {status}: the reply is not JSON ({e})");
            if status.is_server_error() {
                Failure::TryNext(detail)
            } else {
                Failure::Fatal(detail)
            }
        })?;
        if status.is_success() && value.get("error").is_none() {
            return Ok(value);
        }
        let message = value
            .get("message")
            .or_else(|| value.get("error"))
            .and_then(Value::as_str)
            .unwrap_or("no message")
            .to_string();
        let code = value.get("code").and_then(Value::as_i64).unwrap_or(0);
        if self.credentials.is_none() && message.contains("user name is empty") {
            return Err(Failure::Fatal(format!(
                "etcd requires authentication: set ROSTER_ETCD_USER and ROSTER_ETCD_PASSWORD \
                 (etcd said: {message})"
            )));
        }
        if code == 16 || message.contains("invalid auth token") {
            Err(Failure::BadToken(message))
        } else if member_unavailable(code, &message) || status.as_u16() == 503 {
            Err(Failure::TryNext(format!("HTTP {status}: {message}")))
        } else {
            Err(Failure::Fatal(format!("HTTP {status}: {message}")))
        }
    }

    /// Get a token from `endpoint` and keep it. Errors name the user, never the password.
    fn authenticate(&self, endpoint: &str) -> Result<(), Failure> {
        let Some(creds) = &self.credentials else {
            return Err(Failure::Fatal(
                "etcd requires authentication: set ROSTER_ETCD_USER and ROSTER_ETCD_PASSWORD"
                    .into(),
            ));
        };
        let body = json!({"name": creds.user, "password": creds.password.expose()});
        let reply = self.post_once(endpoint, "/v3/auth/authenticate", &body);
        let reply = match reply {
            Ok(v) => v,
            Err(Failure::Fatal(m) | Failure::BadToken(m)) => {
                return Err(Failure::Fatal(format!(
                    "authentication as user {:?} failed: {m}",
                    creds.user
                )));
            }
            Err(other) => return Err(other),
        };
        let token = reply
            .get("token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Failure::Fatal(format!(
                    "authentication as user {:?} returned no token (is auth enabled?)",
                    creds.user
                ))
            })?;
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = Some(Secret::new(token.into()));
        Ok(())
    }

    /// POST to `path`, failing over between endpoints and (re)authenticating
    /// as needed. Errors name the endpoint(s) and the call.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, StoreError> {
        let n = self.endpoints.len();
        let mut tried: Vec<String> = Vec::new();
        for pass in 0..PASSES {
            if pass > 0 {
                std::thread::sleep(PASS_PAUSE);
            }
            let start = self.preferred.load(Ordering::Relaxed);
            for k in 0..n {
                let i = (start + k) % n;
                let endpoint = &self.endpoints[i];
                let needs_token = self.credentials.is_some()
                    && self
                        .token
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .is_none();
                let mut result = if needs_token {
                    self.authenticate(endpoint)
                        .and_then(|()| self.post_once(endpoint, path, body))
                } else {
                    self.post_once(endpoint, path, body)
                };
                if let Err(Failure::BadToken(_)) = &result {
                    // Expired or unknown token: authenticate again, once.
                    result = self
                        .authenticate(endpoint)
                        .and_then(|()| self.post_once(endpoint, path, body));
                }
                match result {
                    Ok(v) => {
                        self.preferred.store(i, Ordering::Relaxed);
                        return Ok(v);
                    }
                    Err(Failure::TryNext(m)) => {
                        tracing::debug!(endpoint = %endpoint, path, "etcd endpoint failed: {m}");
                        tried.push(format!("{endpoint}: {m}"));
                    }
                    Err(Failure::BadToken(m) | Failure::Fatal(m)) => {
                        return Err(StoreError::Remote(format!(
                            "etcd at {endpoint}: POST {path}: {m}"
                        )));
                    }
                }
            }
        }
        tried.dedup();
        Err(StoreError::Remote(format!(
            "no etcd endpoint could serve POST {path} ({} tries): {}",
            PASSES * n,
            tried.join("; ")
        )))
    }

    fn bad_reply(&self, path: &str, detail: impl std::fmt::Display) -> StoreError {
        StoreError::Remote(format!(
            "etcd ({}) POST {path}: unexpected reply: {detail}",
            self.endpoints.join(",")
        ))
    }

    /// Keys in `[key, range_end)` (`range_end` empty: `key` only), at
    /// `revision` (0: the latest), at most `limit` (0: no limit).
    pub fn range(
        &self,
        key: &[u8],
        range_end: &[u8],
        limit: i64,
        revision: i64,
    ) -> Result<RangePage, StoreError> {
        let mut body = json!({"key": B64.encode(key)});
        if !range_end.is_empty() {
            body["range_end"] = json!(B64.encode(range_end));
        }
        if limit > 0 {
            body["limit"] = json!(limit.to_string());
        }
        if revision > 0 {
            body["revision"] = json!(revision.to_string());
        }
        let path = "/v3/kv/range";
        let reply = self.post(path, &body)?;
        let raw: RawRange = serde_json::from_value(reply).map_err(|e| self.bad_reply(path, e))?;
        Ok(RangePage {
            revision: raw.header.revision,
            kvs: decode_kvs(raw.kvs).map_err(|e| self.bad_reply(path, e))?,
            more: raw.more,
        })
    }

    /// Run a transaction: `success` when every compare holds, else `failure`.
    pub fn txn(
        &self,
        compare: &[Compare<'_>],
        success: &[Op<'_>],
        failure: &[Op<'_>],
    ) -> Result<TxnResult, StoreError> {
        let compare: Vec<Value> = compare
            .iter()
            .map(|c| match c {
                Compare::CreateRevision(key, rev) => json!({
                    "key": B64.encode(key), "target": "CREATE", "result": "EQUAL",
                    "create_revision": rev.to_string(),
                }),
                Compare::ModRevision(key, rev) => json!({
                    "key": B64.encode(key), "target": "MOD", "result": "EQUAL",
                    "mod_revision": rev.to_string(),
                }),
            })
            .collect();
        let ops = |ops: &[Op<'_>]| -> Vec<Value> {
            ops.iter()
                .map(|op| match op {
                    Op::Put { key, value, lease } => {
                        let mut put = json!({"key": B64.encode(key), "value": B64.encode(value)});
                        if *lease != 0 {
                            put["lease"] = json!(lease.to_string());
                        }
                        json!({ "request_put": put })
                    }
                    Op::Delete(key) => json!({"request_delete_range": {"key": B64.encode(key)}}),
                    Op::Get(key) => json!({"request_range": {"key": B64.encode(key)}}),
                })
                .collect()
        };
        let body = json!({"compare": compare, "success": ops(success), "failure": ops(failure)});
        let path = "/v3/kv/txn";
        let reply = self.post(path, &body)?;
        let succeeded = reply
            .get("succeeded")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let header: RawHeader = reply
            .get("header")
            .map(|h| serde_json::from_value(h.clone()))
            .transpose()
            .map_err(|e| self.bad_reply(path, e))?
            .unwrap_or_default();
        let mut ranges = Vec::new();
        if let Some(responses) = reply.get("responses").and_then(Value::as_array) {
            for r in responses {
                if let Some(range) = r.get("response_range") {
                    let raw: RawRange = serde_json::from_value(range.clone())
                        .map_err(|e| self.bad_reply(path, e))?;
                    ranges.push(decode_kvs(raw.kvs).map_err(|e| self.bad_reply(path, e))?);
                }
            }
        }
        Ok(TxnResult {
            succeeded,
            revision: header.revision,
            ranges,
        })
    }

    /// Grant a lease of `ttl` seconds; returns its id.
    pub fn lease_grant(&self, ttl: i64) -> Result<i64, StoreError> {
        let path = "/v3/lease/grant";
        let reply = self.post(path, &json!({"TTL": ttl.to_string()}))?;
        #[derive(Deserialize)]
        struct Grant {
            #[serde(rename = "ID", deserialize_with = "de_i64")]
            id: i64,
        }
        let grant: Grant = serde_json::from_value(reply).map_err(|e| self.bad_reply(path, e))?;
        Ok(grant.id)
    }

    /// Refresh a lease; returns its remaining TTL (0: the lease is gone).
    pub fn lease_keepalive(&self, id: i64) -> Result<i64, StoreError> {
        let path = "/v3/lease/keepalive";
        let reply = self.post(path, &json!({"ID": id.to_string()}))?;
        #[derive(Deserialize)]
        struct Result_ {
            #[serde(rename = "TTL", default, deserialize_with = "de_i64")]
            ttl: i64,
        }
        let result = reply
            .get("result")
            .cloned()
            .ok_or_else(|| self.bad_reply(path, "no result"))?;
        let r: Result_ = serde_json::from_value(result).map_err(|e| self.bad_reply(path, e))?;
        Ok(r.ttl)
    }

    /// Revoke a lease, deleting the keys attached to it. A lease that is
    /// already gone is not an error.
    pub fn lease_revoke(&self, id: i64) -> Result<(), StoreError> {
        match self.post("/v3/lease/revoke", &json!({"ID": id.to_string()})) {
            Ok(_) => Ok(()),
            Err(StoreError::Remote(m)) if m.contains("requested lease not found") => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The smallest key greater than every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): etcd's "to the end of the keyspace".
    vec![0]
}
