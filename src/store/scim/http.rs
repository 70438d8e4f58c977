//! The SCIM 2.0 wire layer: one blocking HTTP client with a bearer token,
//! timeouts, bounded retries, discovery, paginated listing, and a batch
//! executor (`/Bulk` when advertised, else bounded concurrent requests).
//!
//! It knows the protocol (RFC 7644), not roster's mapping. It must never put
//! the bearer token (or any request body) into an error, a log line or Debug
//! output, and never retry a POST blindly: a create whose outcome is unknown
//! is first looked up by its filter.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::secret::Secret;

pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";

/// Tunables of the wire layer.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Attempts per request (the first one included).
    pub max_attempts: u32,
    /// Total time one request may spend in retries.
    pub retry_budget: Duration,
    /// The first backoff; doubled each retry, with jitter.
    pub initial_backoff: Duration,
    /// Concurrent requests when `/Bulk` is not used.
    pub concurrency: usize,
    /// Use `/Bulk` when the server advertises it.
    pub use_bulk: bool,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_attempts: 4,
            retry_budget: Duration::from_secs(20),
            initial_backoff: Duration::from_millis(100),
            concurrency: 4,
            use_bulk: true,
        }
    }
}

/// What `/ServiceProviderConfig` advertises.
#[derive(Debug, Clone, Default)]
pub struct Features {
    pub patch: bool,
    pub bulk: bool,
    pub bulk_max_operations: usize,
    pub bulk_max_payload: usize,
    pub etag: bool,
    pub filter: bool,
    pub filter_max_results: usize,
    pub sort: bool,
}

impl Features {
    pub fn from_config(v: &Value) -> Features {
        let supported = |k: &str| v[k]["supported"].as_bool().unwrap_or(false);
        let num = |k: &str, f: &str, d: u64| v[k][f].as_u64().unwrap_or(d) as usize;
        Features {
            patch: supported("patch"),
            bulk: supported("bulk"),
            bulk_max_operations: num("bulk", "maxOperations", 0),
            bulk_max_payload: num("bulk", "maxPayloadSize", 0),
            etag: supported("etag"),
            filter: supported("filter"),
            filter_max_results: num("filter", "maxResults", 0),
            sort: supported("sort"),
        }
    }
}

/// A failed request: transport trouble or an HTTP error status.
#[derive(Debug, Clone)]
pub struct HttpError {
    pub method: String,
    pub path: String,
    /// `None` when no response arrived.
    pub status: Option<u16>,
    pub scim_type: Option<String>,
    pub detail: String,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: ", self.method, self.path)?;
        match self.status {
            Some(401) => write!(
                f,
                "HTTP 401: the server refused the bearer token (check ROSTER_SCIM_TOKEN)"
            )?,
            Some(412) => write!(
                f,
                "HTTP 412: the resource changed on the server since roster read it (ETag mismatch); plan again"
            )?,
            Some(s) => write!(f, "HTTP {s}")?,
            None => write!(f, "no response")?,
        }
        if let Some(t) = &self.scim_type {
            write!(f, " (scimType {t})")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// A successful response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub etag: Option<String>,
    pub body: Value,
}

/// One write in a batch.
#[derive(Debug, Clone)]
pub enum Op {
    /// POST `endpoint` (e.g. `/Users`); `lookup` is a filter that finds the
    /// resource if an earlier attempt created it after all.
    Create {
        endpoint: String,
        body: Value,
        lookup: String,
    },
    Patch {
        path: String,
        ops: Vec<Value>,
        etag: Option<String>,
    },
    Put {
        path: String,
        body: Value,
        etag: Option<String>,
    },
    Delete {
        path: String,
        etag: Option<String>,
    },
}

impl Op {
    fn method(&self) -> &'static str {
        match self {
            Op::Create { .. } => "POST",
            Op::Patch { .. } => "PATCH",
            Op::Put { .. } => "PUT",
            Op::Delete { .. } => "DELETE",
        }
    }
    fn path(&self) -> &str {
        match self {
            Op::Create { endpoint, .. } => endpoint,
            Op::Patch { path, .. } | Op::Put { path, .. } | Op::Delete { path, .. } => path,
        }
    }
}

/// The result of one write: the resource id when known.
pub type OpResult = Result<Option<String>, HttpError>;

/// The SCIM client.
pub struct Http {
    client: Client,
    /// e.g. `https://host/scim/v2`, without a trailing slash.
    pub base: String,
    token: Secret,
    pub options: HttpOptions,
    requests: AtomicU64,
    /// Set when a request of the current batch found the server unreachable
    /// after its retries: the rest of the batch fails fast.
    unreachable: AtomicBool,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("base", &self.base)
            .field("token", &"[redacted]")
            .finish()
    }
}

/// 429 and 503 are retried for every method; 500, 502 and 504 only for
/// idempotent reads and deletes (a PATCH or POST may have taken effect).
fn retryable_status(method: &Method, s: u16) -> bool {
    s == 429
        || s == 503
        || (matches!(*method, Method::GET | Method::DELETE) && matches!(s, 500 | 502 | 504))
}

fn retry_after(resp: &reqwest::blocking::Response) -> Option<Duration> {
    let v = resp.headers().get("retry-after")?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn id_of(v: &Value) -> Option<String> {
    v["id"].as_str().map(str::to_owned)
}

impl Http {
    pub fn new(
        base: String,
        token: Secret,
        ca_pem: Option<Vec<u8>>,
        options: HttpOptions,
    ) -> Result<Http, String> {
        let mut builder = Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .user_agent(concat!("roster/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("cannot read the CA bundle: {e}"))?;
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Http {
            client,
            base,
            token,
            options,
            requests: AtomicU64::new(0),
            unreachable: AtomicBool::new(false),
        })
    }

    /// HTTP requests sent so far (every attempt counts).
    pub fn requests_sent(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn backoff(&self, attempt: u32, hint: Option<Duration>) -> Duration {
        let base = self.options.initial_backoff.as_millis() as u64;
        let exp = base.saturating_mul(1u64 << attempt.min(10));
        let jitter = rand::random_range(0..=exp.max(1));
        let d = Duration::from_millis(exp / 2 + jitter / 2);
        hint.map_or(d, |h| h.max(d))
    }

    fn once(
        &self,
        method: &Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<reqwest::blocking::Response, reqwest::Error> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        // One line per request (method and path only: never a header or body).
        tracing::debug!("SCIM request {method} {path}");
        let mut req = self
            .client
            .request(method.clone(), format!("{}{}", self.base, path))
            .bearer_auth(self.token.expose())
            .header("Accept", "application/scim+json, application/json");
        if let Some(tag) = if_match {
            req = req.header("If-Match", tag);
        }
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/scim+json")
                .body(b.to_string());
        }
        req.send()
    }

    /// Send one request. Retries connection errors (except for POST), 429
    /// and 503, bounded in attempts and total time.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<Response, HttpError> {
        let m = Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET);
        let start = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let last = attempt >= self.options.max_attempts
                || start.elapsed() >= self.options.retry_budget;
            let err = |status: Option<u16>, scim_type: Option<String>, detail: String| HttpError {
                method: method.to_owned(),
                path: path.to_owned(),
                status,
                scim_type,
                detail,
            };
            match self.once(&m, path, body, if_match) {
                Err(e) => {
                    if last || m == Method::POST {
                        let detail = if attempt > 1 {
                            format!("{} (after {attempt} attempts)", transport_detail(&e))
                        } else {
                            transport_detail(&e)
                        };
                        return Err(err(None, None, detail));
                    }
                    std::thread::sleep(self.backoff(attempt, None));
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if retryable_status(&m, status) && !last {
                        let hint = retry_after(&resp);
                        let wait = self.backoff(attempt, hint);
                        let left = self.options.retry_budget.saturating_sub(start.elapsed());
                        std::thread::sleep(wait.min(left));
                        continue;
                    }
                    let etag = resp
                        .headers()
                        .get("etag")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    // A body cut off mid-way is a transport failure, never an empty answer:
                    // a truncated /Schemas must not read as "no extension".
                    let text = match resp.text() {
                        Ok(t) => t,
                        Err(e) => {
                            if last || m == Method::POST {
                                let detail =
                                    format!("the response was cut off: {}", transport_detail(&e));
                                return Err(err(None, None, detail));
                            }
                            std::thread::sleep(self.backoff(attempt, None));
                            continue;
                        }
                    };
                    let body: Value = if text.trim().is_empty() {
                        Value::Null
                    } else {
                        serde_json::from_str(&text).unwrap_or(Value::Null)
                    };
                    if (200..300).contains(&status) {
                        return Ok(Response { status, etag, body });
                    }
                    let scim_type = body["scimType"].as_str().map(str::to_owned);
                    let detail = body["detail"].as_str().unwrap_or("").to_owned();
                    return Err(err(Some(status), scim_type, detail));
                }
            }
        }
    }

    pub fn get(&self, path: &str) -> Result<Response, HttpError> {
        self.send("GET", path, None, None)
    }

    /// Every resource of `endpoint`, page by page (`startIndex`/`count`).
    pub fn list_all(
        &self,
        endpoint: &str,
        page: usize,
        sort_by: Option<&str>,
    ) -> Result<Vec<Value>, HttpError> {
        let page = page.max(1);
        let mut out: Vec<Value> = Vec::new();
        let mut start = 1usize;
        // Bounded: a server that lies about totalResults cannot loop us forever.
        for _ in 0..100_000 {
            let mut path = format!("{endpoint}?startIndex={start}&count={page}");
            if let Some(s) = sort_by {
                path.push_str(&format!("&sortBy={s}"));
            }
            let resp = self.get(&path)?;
            let total = resp.body["totalResults"].as_u64().unwrap_or(0) as usize;
            let items = resp.body["Resources"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let n = items.len();
            out.extend(items);
            start += n;
            if n == 0 || out.len() >= total {
                return Ok(out);
            }
        }
        Ok(out)
    }

    /// Resources of `endpoint` matching `filter` (one page).
    pub fn find(&self, endpoint: &str, filter: &str) -> Result<Vec<Value>, HttpError> {
        let path = format!("{endpoint}?filter={}", encode_query(filter));
        let resp = self.get(&path)?;
        Ok(resp.body["Resources"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Create a resource. On a transport error the outcome is unknown: the
    /// lookup filter decides whether it exists now before any new attempt.
    pub fn create(
        &self,
        endpoint: &str,
        body: &Value,
        lookup: &str,
    ) -> Result<Response, HttpError> {
        let start = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.send("POST", endpoint, Some(body), None) {
                Err(e)
                    if e.status.is_none()
                        && attempt < self.options.max_attempts
                        && start.elapsed() < self.options.retry_budget =>
                {
                    std::thread::sleep(self.backoff(attempt, None));
                    if let Ok(found) = self.find(endpoint, lookup)
                        && let Some(existing) = found.into_iter().next()
                    {
                        return Ok(Response {
                            status: 200,
                            etag: None,
                            body: existing,
                        });
                    }
                }
                other => return other,
            }
        }
    }

    fn run_one(&self, op: &Op) -> OpResult {
        if self.unreachable.load(Ordering::Relaxed) {
            return Err(HttpError {
                method: op.method().into(),
                path: op.path().into(),
                status: None,
                scim_type: None,
                detail: "not sent: the server stopped answering earlier in this batch".into(),
            });
        }
        let result = self.run_op(op);
        if let Err(e) = &result
            && e.status.is_none()
        {
            self.unreachable.store(true, Ordering::Relaxed);
        }
        result
    }

    fn run_op(&self, op: &Op) -> OpResult {
        match op {
            Op::Create {
                endpoint,
                body,
                lookup,
            } => self.create(endpoint, body, lookup).map(|r| id_of(&r.body)),
            Op::Patch { path, ops, etag } => {
                let body = json!({"schemas": [PATCH_OP], "Operations": ops});
                self.send("PATCH", path, Some(&body), etag.as_deref())
                    .map(|r| id_of(&r.body))
            }
            Op::Put { path, body, etag } => self
                .send("PUT", path, Some(body), etag.as_deref())
                .map(|r| id_of(&r.body)),
            Op::Delete { path, etag } => match self.send("DELETE", path, None, etag.as_deref()) {
                Ok(_) => Ok(None),
                Err(e) if e.status == Some(404) => Ok(None),
                Err(e) => Err(e),
            },
        }
    }

    /// Run independent writes: through `/Bulk` when advertised (within its
    /// limits), else concurrently with at most `options.concurrency` at once.
    /// Results come back in the order of `ops`.
    pub fn run(&self, ops: Vec<Op>, features: &Features) -> Vec<OpResult> {
        if ops.is_empty() {
            return Vec::new();
        }
        self.unreachable.store(false, Ordering::Relaxed);
        if self.options.use_bulk
            && features.bulk
            && features.bulk_max_operations > 1
            && ops.len() > 1
        {
            return self.run_bulk(ops, features);
        }
        self.run_concurrent(&ops)
    }

    fn run_concurrent(&self, ops: &[Op]) -> Vec<OpResult> {
        let next = AtomicUsize::new(0);
        let workers = self.options.concurrency.clamp(1, 64).min(ops.len());
        let mut results: Vec<Option<OpResult>> = vec![None; ops.len()];
        let chunks: Vec<Vec<(usize, OpResult)>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    s.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(op) = ops.get(i) else { break };
                            done.push((i, self.run_one(op)));
                        }
                        done
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        for (i, r) in chunks.into_iter().flatten() {
            results[i] = Some(r);
        }
        results
            .into_iter()
            .zip(ops)
            .map(|(r, op)| {
                r.unwrap_or_else(|| {
                    Err(HttpError {
                        method: op.method().into(),
                        path: op.path().into(),
                        status: None,
                        scim_type: None,
                        detail: "the worker running this request stopped".into(),
                    })
                })
            })
            .collect()
    }

    fn bulk_entry(op: &Op, i: usize) -> Value {
        match op {
            Op::Create { endpoint, body, .. } => {
                json!({"method": "POST", "path": endpoint, "bulkId": format!("op{i}"), "data": body})
            }
            Op::Patch { path, ops, etag } => {
                let mut v = json!({"method": "PATCH", "path": path,
                    "data": {"schemas": [PATCH_OP], "Operations": ops}});
                if let Some(t) = etag {
                    v["version"] = json!(t);
                }
                v
            }
            Op::Put { path, body, etag } => {
                let mut v = json!({"method": "PUT", "path": path, "data": body});
                if let Some(t) = etag {
                    v["version"] = json!(t);
                }
                v
            }
            Op::Delete { path, etag } => {
                let mut v = json!({"method": "DELETE", "path": path});
                if let Some(t) = etag {
                    v["version"] = json!(t);
                }
                v
            }
        }
    }

    fn run_bulk(&self, ops: Vec<Op>, features: &Features) -> Vec<OpResult> {
        let max_ops = features.bulk_max_operations.max(1);
        // Stay well below the advertised payload limit.
        let max_payload = if features.bulk_max_payload == 0 {
            usize::MAX
        } else {
            features.bulk_max_payload * 3 / 4
        };
        let entries: Vec<Value> = ops
            .iter()
            .enumerate()
            .map(|(i, op)| Self::bulk_entry(op, i))
            .collect();
        let mut results: Vec<OpResult> = Vec::with_capacity(ops.len());
        let mut start = 0;
        while start < ops.len() {
            let mut end = start;
            let mut size = 200;
            while end < ops.len() && end - start < max_ops {
                let s = entries[end].to_string().len() + 1;
                if end > start && size + s > max_payload {
                    break;
                }
                size += s;
                end += 1;
            }
            results.extend(self.bulk_chunk(&ops[start..end], &entries[start..end]));
            start = end;
        }
        results
    }

    fn bulk_chunk(&self, ops: &[Op], entries: &[Value]) -> Vec<OpResult> {
        if ops.len() == 1 {
            return vec![self.run_one(&ops[0])];
        }
        let body = json!({"schemas": [BULK_REQUEST], "Operations": entries});
        let resp = match self.send("POST", "/Bulk", Some(&body), None) {
            Ok(r) => r,
            // The outcome is unknown (or the server refused the batch as a
            // whole): run the operations one by one, creates checking first.
            Err(e) if e.status.is_none() || e.status == Some(413) => {
                return self.run_concurrent(ops);
            }
            Err(e) => return ops.iter().map(|_| Err(e.clone())).collect(),
        };
        let answers = resp.body["Operations"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        ops.iter()
            .enumerate()
            .map(|(i, op)| {
                let answer = answers.get(i).cloned().unwrap_or(Value::Null);
                let status = answer["status"]
                    .as_str()
                    .and_then(|s| s.parse::<u16>().ok())
                    .or_else(|| answer["status"].as_u64().map(|n| n as u16));
                let Some(status) = status else {
                    return Err(HttpError {
                        method: op.method().into(),
                        path: op.path().into(),
                        status: None,
                        scim_type: None,
                        detail: "the bulk response has no answer for this operation".into(),
                    });
                };
                if (200..300).contains(&status)
                    || (status == 404 && matches!(op, Op::Delete { .. }))
                {
                    let id = answer["location"]
                        .as_str()
                        .and_then(|l| l.rsplit('/').next())
                        .map(str::to_owned);
                    Ok(id)
                } else {
                    let r = &answer["response"];
                    Err(HttpError {
                        method: op.method().into(),
                        path: op.path().into(),
                        status: Some(status),
                        scim_type: r["scimType"].as_str().map(str::to_owned),
                        detail: r["detail"].as_str().unwrap_or("").to_owned(),
                    })
                }
            })
            .collect()
    }
}

fn transport_detail(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    // reqwest's Display names the URL (never the token); add the root cause.
    let mut cause = String::new();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        cause = s.to_string();
        src = s.source();
    }
    if cause.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {cause}")
    }
}

/// Percent-encode a query parameter value.
pub fn encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A SCIM filter string literal.
pub fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}
