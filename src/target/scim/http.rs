//! The SCIM 2.0 wire layer: one blocking HTTP client with a bearer token,
//! timeouts, bounded retries (backoff with jitter, `Retry-After`), discovery
//! and paginated listing.
//!
//! It knows the protocol (RFC 7644), not roster's mapping. It must never put
//! the bearer token (or any request body) into an error, a log line or Debug
//! output, and never retry a POST blindly: a create whose outcome is unknown
//! is first looked up by its filter. A response cut off mid-way is a
//! failure, never an empty answer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::blocking::Client;
use serde_json::Value;

use crate::secret::Secret;

pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

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
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_attempts: 4,
            retry_budget: Duration::from_secs(20),
            initial_backoff: Duration::from_millis(100),
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
            Some(401) => write!(f, "HTTP 401: the server refused the bearer token")?,
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

/// The SCIM client.
pub struct Http {
    client: Client,
    /// e.g. `https://host/scim/v2`, without a trailing slash.
    pub base: String,
    /// `None`: no `Authorization` header (a server that asks for none).
    token: Option<Secret>,
    pub options: HttpOptions,
    requests: AtomicU64,
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

impl Http {
    pub fn new(
        base: String,
        token: Option<Secret>,
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
            .header("Accept", "application/scim+json, application/json");
        if let Some(token) = &self.token {
            req = req.bearer_auth(token.expose());
        }
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
    /// A page shorter than asked for ends the listing only when the server
    /// gives no `totalResults`; bounded in pages either way.
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
            let total = resp.body["totalResults"].as_u64().map(|t| t as usize);
            let items = resp.body["Resources"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let n = items.len();
            out.extend(items);
            start += n;
            let done = match total {
                Some(t) => out.len() >= t,
                None => n < page,
            };
            if n == 0 || done {
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

    /// Create a resource. On a transport error (no answer, or an answer cut
    /// off) the outcome is unknown: the lookup filter decides whether it
    /// exists now before any new attempt, and a failed lookup ends the
    /// attempts (a POST is never sent again blindly).
    pub fn create(
        &self,
        endpoint: &str,
        body: &Value,
        lookup: &str,
    ) -> Result<Response, Vec<HttpError>> {
        let start = Instant::now();
        let mut errors = Vec::new();
        for attempt in 1..=self.options.max_attempts.max(1) {
            match self.send("POST", endpoint, Some(body), None) {
                Ok(r) => return Ok(r),
                Err(e)
                    if e.status.is_none()
                        && attempt < self.options.max_attempts
                        && start.elapsed() < self.options.retry_budget =>
                {
                    errors.push(e);
                    std::thread::sleep(self.backoff(attempt, None));
                    match self.find(endpoint, lookup) {
                        Ok(found) => {
                            if let Some(existing) = found.into_iter().next() {
                                return Ok(Response {
                                    status: 200,
                                    etag: None,
                                    body: existing,
                                });
                            }
                        }
                        Err(e) => {
                            errors.push(e);
                            return Err(errors);
                        }
                    }
                }
                // A name already in use may be roster's own object from a
                // create whose answer never came back (an apply killed, a
                // POST that arrived late): when it carries the externalId
                // this create sends, it is that object (answered with
                // status 409, so the caller knows this request's body was
                // not what made it).
                Err(e) if e.status == Some(409) && body.get("externalId").is_some() => {
                    match self.find(endpoint, lookup) {
                        Ok(found) => {
                            if let Some(existing) = found
                                .into_iter()
                                .find(|o| o.get("externalId") == body.get("externalId"))
                            {
                                return Ok(Response {
                                    status: 409,
                                    etag: None,
                                    body: existing,
                                });
                            }
                            errors.push(e);
                            return Err(errors);
                        }
                        Err(lookup_error) => {
                            errors.push(e);
                            errors.push(lookup_error);
                            return Err(errors);
                        }
                    }
                }
                Err(e) => {
                    errors.push(e);
                    return Err(errors);
                }
            }
        }
        Err(errors)
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
