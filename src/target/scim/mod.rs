//! The SCIM 2.0 target (RFC 7643/7644): converges users and groups on a
//! service provider that offers the core schemas alone, and uses what
//! `/Schemas` advertises beyond them (the enterprise extension, roster's own
//! extension) where it is there. Reference for operators: `docs/scim-target.md`.
//!
//! Mapping (generic attribute → SCIM):
//! - user: key → `userName`; `externalId` = `roster:user:KEY` (sent, never
//!   required); `display_name` → `displayName`; `first_name`/`last_name` →
//!   `name.givenName`/`familyName`; `email` → one primary work email;
//!   `active`; `roles` → `roles` values (roles projected as an attribute);
//!   `set_rights` → `entitlements` values `AREA:LEVEL`; `class`,
//!   `authentication`, `permissions`, `credentials` → roster's extension
//!   (only where advertised); core and enterprise simple attributes
//!   (`title`, `department`, …) under their SCIM names (a user's
//!   `target_attrs`); the password is written, never read;
//! - group: key → `displayName`; `externalId` = `roster:group:KEY`;
//!   `members` = user keys ↔ member ids; `description` → roster's extension.
//!
//! Updates are PATCHes of what differs from what the target held
//! (`EnsureRequest::current`); membership is add/remove of the difference,
//! chunked to `max_patch_operations`, never a replace of all members; a
//! server without PATCH (or one that answers a PATCH with 501/400) gets a PUT
//! of the whole resource, as read just before, with `If-Match` where ETags
//! are offered. Every failed request of a step is reported with its status
//! and the server's detail. Never logs or returns the token or a password.

pub mod http;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde_json::{Map, Value, json};

use self::http::{Features, Http, HttpError, HttpOptions, PATCH_OP, quote};
use super::compare;
use super::{
    Attrs, Capabilities, EnsureRequest, Ensured, ErrorClass, Generated, Membership, ObjKind,
    RemoteObject, SecretMode, Target, TargetError,
};
use crate::model::{ScimProjection, ScimTargetConfig, parse_duration};
use crate::secret::{Secret, SecretKind};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_USER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// roster's own extension schemas (`schemas/scim/roster-schemas.json`):
/// optional, for other consumers of class, authentication and credentials.
pub const USER_EXT: &str = "urn:ietf:params:scim:schemas:extension:roster:2.0:User";
pub const GROUP_EXT: &str = "urn:ietf:params:scim:schemas:extension:roster:2.0:Group";

/// Page size when neither the config nor `filter.maxResults` says.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Operations per PATCH when the config does not say.
pub const DEFAULT_MAX_PATCH_OPERATIONS: usize = 100;
/// Requests in flight when the config does not say.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// Retries of a failed idempotent request when the config does not say.
pub const DEFAULT_RETRIES: u32 = 5;

/// Core User attributes passed through under their own names (a user's
/// `target_attrs`), when the server's core schema lists them.
const CORE_PASSTHROUGH: &[&str] = &[
    "nickName",
    "profileUrl",
    "title",
    "userType",
    "preferredLanguage",
    "locale",
    "timezone",
];
/// Enterprise extension attributes passed through, when it is advertised.
const ENTERPRISE_PASSTHROUGH: &[&str] = &[
    "employeeNumber",
    "costCenter",
    "organization",
    "division",
    "department",
];

/// What `open` learnt, with the config's overrides applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimOptions {
    /// Resources per listing page.
    pub page_size: usize,
    /// PATCH is used (else PUT of the whole resource).
    pub patch: bool,
    /// `/Bulk` is offered and wanted (the per-object writes of the Target
    /// interface do not use it; recorded for the plan's limitations).
    pub bulk: bool,
    /// `If-Match` is sent with PUTs.
    pub etag: bool,
    /// Filters work (a create whose outcome is unknown is looked up).
    pub filter: bool,
    /// `sortBy` is sent with listings (stable paging).
    pub sort: bool,
    pub max_patch_operations: usize,
    pub concurrency: usize,
    /// roster's user extension is advertised.
    pub extension: bool,
    /// The enterprise user extension is advertised.
    pub enterprise: bool,
    /// Generic user attributes this server can hold.
    pub user_attrs: BTreeSet<String>,
    /// Generic group attributes this server can hold.
    pub group_attrs: BTreeSet<String>,
    pub limitations: Vec<String>,
}

/// Where a generic user attribute lives in a SCIM User.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loc {
    /// A top-level attribute.
    Top(&'static str),
    /// A sub-attribute of `name`.
    Name(&'static str),
    /// One primary work email.
    Email,
    /// A multi-valued attribute of `{value}` objects (`roles`).
    Values(&'static str),
    /// `entitlements` values `AREA:LEVEL`.
    Entitlements,
    /// An attribute of roster's extension.
    Ext(&'static str),
    /// `passwordEnabled`/`tokenEnabled` of roster's extension.
    Credentials,
    /// An attribute of the enterprise extension.
    Enterprise(&'static str),
}

fn user_loc(name: &str) -> Option<Loc> {
    Some(match name {
        "display_name" => Loc::Top("displayName"),
        "first_name" => Loc::Name("givenName"),
        "last_name" => Loc::Name("familyName"),
        "email" => Loc::Email,
        "active" => Loc::Top("active"),
        "roles" => Loc::Values("roles"),
        "set_rights" => Loc::Entitlements,
        "class" => Loc::Ext("class"),
        "authentication" => Loc::Ext("authentication"),
        "permissions" => Loc::Ext("permissions"),
        "credentials" => Loc::Credentials,
        other => {
            if let Some(a) = CORE_PASSTHROUGH.iter().find(|a| **a == other) {
                Loc::Top(a)
            } else if let Some(a) = ENTERPRISE_PASSTHROUGH.iter().find(|a| **a == other) {
                Loc::Enterprise(a)
            } else {
                return None;
            }
        }
    })
}

/// Every generic user attribute this module can map, in a fixed order.
fn mapped_user_attrs() -> impl Iterator<Item = &'static str> {
    [
        "display_name",
        "first_name",
        "last_name",
        "email",
        "active",
        "roles",
        "set_rights",
        "class",
        "authentication",
        "permissions",
        "credentials",
    ]
    .into_iter()
    .chain(CORE_PASSTHROUGH.iter().copied())
    .chain(ENTERPRISE_PASSTHROUGH.iter().copied())
}

fn values_of(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a
            .iter()
            .filter_map(|x| match x {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o.get("value").and_then(scalar_string),
                other => scalar_string(other),
            })
            .filter(|s| !s.is_empty())
            .collect(),
        Value::String(s) if !s.is_empty() => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn value_objects(items: &[String]) -> Value {
    Value::Array(items.iter().map(|s| json!({ "value": s })).collect())
}

/// The SCIM value of a generic attribute at `loc` (`Null` = nothing).
fn to_scim(loc: Loc, v: &Value) -> Value {
    if compare::is_empty(v) && loc != Loc::Credentials {
        return Value::Null;
    }
    match loc {
        Loc::Top("active") => json!(compare::as_bool(v).unwrap_or(true)),
        Loc::Top(_) | Loc::Name(_) | Loc::Ext(_) | Loc::Enterprise(_) => v.clone(),
        Loc::Email => {
            let e = scalar_string(v).unwrap_or_default();
            json!([{ "value": e, "type": "work", "primary": true }])
        }
        Loc::Values(_) => value_objects(&values_of(v)),
        Loc::Entitlements => {
            let items: Vec<String> = match v {
                Value::Object(m) => m
                    .iter()
                    .filter_map(|(area, level)| Some(format!("{area}:{}", level.as_str()?)))
                    .collect(),
                other => values_of(other),
            };
            value_objects(&items)
        }
        Loc::Credentials => {
            let kinds = values_of(v);
            json!({
                "passwordEnabled": kinds.iter().any(|k| k == "password"),
                "tokenEnabled": kinds.iter().any(|k| k == "token"),
            })
        }
    }
}

/// The generic value at `loc` of a SCIM User (`None` = absent).
fn from_scim(loc: Loc, j: &Value) -> Option<Value> {
    let present = |v: &Value| (!compare::is_empty(v)).then(|| v.clone());
    match loc {
        Loc::Top("active") => {
            let v = &j["active"];
            if v.is_null() {
                None
            } else {
                Some(compare::as_bool(v).map(Value::Bool).unwrap_or(v.clone()))
            }
        }
        Loc::Top(a) => present(&j[a]),
        Loc::Name(a) => present(&j["name"][a]),
        Loc::Email => {
            let emails = j["emails"].as_array()?;
            let primary = |e: &&Value| compare::as_bool(&e["primary"]) == Some(true);
            let e = emails
                .iter()
                .find(primary)
                .or_else(|| {
                    emails.iter().find(|e| {
                        e["type"]
                            .as_str()
                            .is_some_and(|t| t.eq_ignore_ascii_case("work"))
                    })
                })
                .or_else(|| emails.first())?;
            scalar_string(&e["value"])
                .filter(|s| !s.is_empty())
                .map(Value::String)
        }
        Loc::Values(a) => {
            let v = values_of(&j[a]);
            (!v.is_empty()).then(|| json!(v))
        }
        Loc::Entitlements => {
            let rights: Map<String, Value> = values_of(&j["entitlements"])
                .into_iter()
                .filter_map(|e| {
                    let (area, level) = e.rsplit_once(':')?;
                    let level = level.to_ascii_lowercase();
                    matches!(level.as_str(), "none" | "read" | "write" | "full")
                        .then(|| (area.to_owned(), Value::String(level)))
                })
                .collect();
            (!rights.is_empty()).then_some(Value::Object(rights))
        }
        Loc::Ext(a) => present(&j[USER_EXT][a]),
        Loc::Credentials => {
            let x = &j[USER_EXT];
            if x["passwordEnabled"].is_null() && x["tokenEnabled"].is_null() {
                return None;
            }
            let mut kinds = Vec::new();
            if compare::as_bool(&x["passwordEnabled"]) == Some(true) {
                kinds.push("password");
            }
            if compare::as_bool(&x["tokenEnabled"]) == Some(true) {
                kinds.push("token");
            }
            Some(json!(kinds))
        }
        Loc::Enterprise(a) => present(&j[ENTERPRISE_USER][a]),
    }
}

/// The PATCH path of `loc` (credentials: two paths, see [`patch_ops_for`]).
fn patch_path(loc: Loc) -> String {
    match loc {
        Loc::Top(a) | Loc::Values(a) => a.to_owned(),
        Loc::Name(a) => format!("name.{a}"),
        Loc::Email => "emails".into(),
        Loc::Entitlements => "entitlements".into(),
        Loc::Ext(a) => format!("{USER_EXT}:{a}"),
        Loc::Credentials => USER_EXT.into(),
        Loc::Enterprise(a) => format!("{ENTERPRISE_USER}:{a}"),
    }
}

/// PATCH operations setting `loc` to `want` (which differs from what the
/// server holds): `remove` only when roster sets the attribute to nothing.
fn patch_ops_for(loc: Loc, want: &Value) -> Vec<Value> {
    if let Loc::Credentials = loc {
        // Both flags, false included: "no credentials" is a value here.
        let kinds = values_of(want);
        return ["password", "token"]
            .iter()
            .map(|k| {
                json!({"op": "replace", "path": format!("{USER_EXT}:{k}Enabled"),
                    "value": kinds.iter().any(|x| x == k)})
            })
            .collect();
    }
    let v = to_scim(loc, want);
    if v.is_null() {
        vec![json!({"op": "remove", "path": patch_path(loc)})]
    } else {
        vec![json!({"op": "replace", "path": patch_path(loc), "value": v})]
    }
}

/// Put `v` at `loc` of a SCIM User body (`Null` removes it).
fn set_in(body: &mut Value, loc: Loc, v: Value) {
    let Some(obj) = body.as_object_mut() else {
        return;
    };
    let (container, key): (Option<&str>, &str) = match loc {
        Loc::Top(a) | Loc::Values(a) => (None, a),
        Loc::Name(a) => (Some("name"), a),
        Loc::Email => (None, "emails"),
        Loc::Entitlements => (None, "entitlements"),
        Loc::Ext(a) => (Some(USER_EXT), a),
        Loc::Enterprise(a) => (Some(ENTERPRISE_USER), a),
        Loc::Credentials => {
            let ext = obj.entry(USER_EXT).or_insert_with(|| json!({}));
            if let (Some(x), Value::Object(flags)) = (ext.as_object_mut(), v) {
                x.extend(flags);
            }
            return;
        }
    };
    let target = match container {
        None => obj,
        Some(c) => {
            let entry = obj.entry(c).or_insert_with(|| json!({}));
            if !entry.is_object() {
                *entry = json!({});
            }
            match entry.as_object_mut() {
                Some(m) => m,
                None => return,
            }
        }
    };
    if v.is_null() {
        target.remove(key);
    } else {
        target.insert(key.to_owned(), v);
    }
}

/// Add an extension URN to a body's `schemas` when it carries that extension.
fn fix_schemas(body: &mut Value, core: &str) {
    let mut schemas: Vec<Value> = vec![json!(core)];
    for urn in [USER_EXT, GROUP_EXT, ENTERPRISE_USER] {
        if body.get(urn).is_some_and(Value::is_object) {
            schemas.push(json!(urn));
        }
    }
    body["schemas"] = Value::Array(schemas);
}

fn external_id(kind: ObjKind, key: &str) -> String {
    format!("roster:{}:{key}", kind.as_str())
}

fn endpoint(kind: ObjKind) -> &'static str {
    match kind {
        ObjKind::User => "/Users",
        ObjKind::Group => "/Groups",
    }
}

/// The SCIM attribute naming an object of `kind` (`userName`, `displayName`).
fn key_attr(kind: ObjKind) -> &'static str {
    match kind {
        ObjKind::User => "userName",
        ObjKind::Group => "displayName",
    }
}

/// The class of a failed request.
fn class_of(e: &HttpError) -> ErrorClass {
    match e.status {
        None => ErrorClass::Retryable,
        Some(401 | 403) => ErrorClass::Auth,
        Some(404) => ErrorClass::NotFound,
        Some(409 | 412) => ErrorClass::Conflict,
        Some(400 | 413 | 422) => ErrorClass::Invalid,
        Some(501) => ErrorClass::Unsupported,
        Some(408 | 429 | 500 | 502 | 503 | 504) => ErrorClass::Retryable,
        Some(_) => ErrorClass::Fatal,
    }
}

/// `member ids` of a SCIM Group.
fn member_ids(j: &Value) -> Vec<String> {
    values_of(&j["members"])
}

/// A SCIM resource body ready to PUT back: without `meta` and `id`'s noise.
fn put_body(mut current: Value, core: &str) -> Value {
    if let Some(m) = current.as_object_mut() {
        m.remove("meta");
        m.remove("password");
    }
    fix_schemas(&mut current, core);
    current
}

/// The SCIM target.
pub struct ScimTarget {
    name: String,
    http: Http,
    config: ScimTargetConfig,
    /// The token's variable, to name it when the server refuses the token.
    token_env: Option<String>,
    opened: OnceLock<(ScimOptions, Capabilities)>,
    /// User id → userName, learnt from listings and writes (to name group
    /// members by key).
    names: Mutex<BTreeMap<String, String>>,
}

impl std::fmt::Debug for ScimTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScimTarget")
            .field("name", &self.name)
            .field("http", &self.http)
            .finish()
    }
}

/// The failures of one step, joined: every failed request with its status
/// and detail.
struct Failures(Vec<HttpError>);

impl ScimTarget {
    /// A target for `config`. The bearer token is read from the environment
    /// variable `config.token_env` names (never from a file or flag); plain
    /// `http://` is refused to hosts other than loopback unless
    /// `allow_insecure_http`. Sends nothing yet.
    pub fn new(name: &str, config: &ScimTargetConfig) -> Result<ScimTarget, TargetError> {
        let invalid = |reason: String| {
            TargetError::new(
                ErrorClass::Invalid,
                format!("target {name} (scim): {reason}"),
            )
        };
        let token = match &config.token_env {
            Some(var) => match std::env::var(var) {
                Ok(t) if !t.trim().is_empty() => Some(Secret::new(t)),
                Ok(_) => {
                    return Err(invalid(format!(
                        "the environment variable {var} (token_env) is empty; set it to the bearer token"
                    )));
                }
                Err(_) => {
                    return Err(invalid(format!(
                        "the environment variable {var} (token_env) is not set; set it to the bearer token"
                    )));
                }
            },
            None => None,
        };
        let url = crate::store::redact_urls(&config.url);
        let parsed =
            reqwest::Url::parse(&config.url).map_err(|e| invalid(format!("url {url:?}: {e}")))?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(invalid(format!(
                "url {url:?}: credentials in the URL are not accepted; name the token's environment variable in token_env"
            )));
        }
        let host = parsed.host_str().unwrap_or("").to_owned();
        if host.is_empty() {
            return Err(invalid(format!("url {url:?}: the host is empty")));
        }
        match parsed.scheme() {
            "https" => {}
            "http" => {
                let loopback = matches!(host.as_str(), "127.0.0.1" | "localhost" | "[::1]" | "::1");
                if !loopback && !config.allow_insecure_http {
                    return Err(invalid(format!(
                        "url {url:?}: plain http:// is only allowed to 127.0.0.1/localhost/::1; use https:// or set allow_insecure_http: true"
                    )));
                }
            }
            other => {
                return Err(invalid(format!(
                    "url {url:?}: the scheme {other}:// is not http:// or https://"
                )));
            }
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(invalid(format!(
                "url {url:?}: a query or fragment is not allowed"
            )));
        }
        let base = parsed.as_str().trim_end_matches('/').to_owned();
        let ca = match &config.ca_file {
            Some(p) => Some(
                std::fs::read(p)
                    .map_err(|e| invalid(format!("ca_file {p:?} cannot be read: {e}")))?,
            ),
            None => None,
        };
        let mut options = HttpOptions::default();
        if let Some(t) = &config.timeout {
            options.request_timeout = parse_duration(t)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| invalid(format!("timeout {t:?} is not a duration like 30s")))?;
        }
        options.max_attempts = config.retries.unwrap_or(DEFAULT_RETRIES) + 1;
        options.retry_budget = Duration::from_secs(60).max(options.request_timeout * 2);
        let http = Http::new(base, token, ca, options).map_err(invalid)?;
        Ok(ScimTarget {
            name: name.to_owned(),
            http,
            config: config.clone(),
            token_env: config.token_env.clone(),
            opened: OnceLock::new(),
            names: Mutex::new(BTreeMap::new()),
        })
    }

    /// The options `open` settled on (`None` before it).
    pub fn options(&self) -> Option<&ScimOptions> {
        self.opened.get().map(|(o, _)| o)
    }

    fn error(&self, class: ErrorClass, what: &str, failures: &Failures) -> TargetError {
        let mut msg = String::new();
        for (i, e) in failures.0.iter().enumerate() {
            if i > 0 {
                msg.push_str("; then ");
            }
            msg.push_str(&e.to_string());
            if e.status == Some(401) {
                match &self.token_env {
                    Some(v) => msg.push_str(&format!(" (check the token in {v})")),
                    None => msg.push_str(" (the target names no token_env)"),
                }
            }
        }
        TargetError::new(class, format!("{what}: {msg}"))
    }

    fn fail(&self, what: &str, errors: Vec<HttpError>) -> TargetError {
        let class = errors.last().map_or(ErrorClass::Fatal, class_of);
        self.error(class, what, &Failures(errors))
    }

    fn opened(&self) -> Result<&(ScimOptions, Capabilities), TargetError> {
        if let Some(o) = self.opened.get() {
            return Ok(o);
        }
        let found = self.discover()?;
        Ok(self.opened.get_or_init(|| found))
    }

    /// `/ServiceProviderConfig` and `/Schemas`: two requests.
    fn discover(&self) -> Result<(ScimOptions, Capabilities), TargetError> {
        let what = format!("target {} (scim {})", self.name, self.http.base);
        let mut limitations = Vec::new();
        let features = match self.http.get("/ServiceProviderConfig") {
            Ok(r) => Features::from_config(&r.body),
            Err(e) if matches!(e.status, Some(404 | 501)) => {
                limitations.push(format!(
                    "no /ServiceProviderConfig (HTTP {}): PATCH, filters and ETags assumed, page size {DEFAULT_PAGE_SIZE}",
                    e.status.unwrap_or_default()
                ));
                Features {
                    patch: true,
                    filter: true,
                    ..Features::default()
                }
            }
            Err(e) => return Err(self.fail(&what, vec![e])),
        };
        let schemas: Vec<Value> = match self.http.get("/Schemas") {
            Ok(r) => r.body["Resources"]
                .as_array()
                .cloned()
                .or_else(|| r.body.as_array().cloned())
                .unwrap_or_default(),
            Err(e) if matches!(e.status, Some(404 | 501)) => {
                limitations.push(format!(
                    "no /Schemas (HTTP {}): the core User and Group attributes are assumed",
                    e.status.unwrap_or_default()
                ));
                Vec::new()
            }
            Err(e) => return Err(self.fail(&what, vec![e])),
        };
        let attrs_of = |id: &str| -> Option<BTreeSet<String>> {
            schemas
                .iter()
                .find(|s| s["id"].as_str() == Some(id))
                .map(|s| {
                    s["attributes"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x["name"].as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default()
                })
        };
        let core = attrs_of(USER_SCHEMA);
        let core_has = |a: &str| core.as_ref().is_none_or(|c| c.is_empty() || c.contains(a));
        let ext = attrs_of(USER_EXT);
        let group_ext = attrs_of(GROUP_EXT);
        let enterprise = attrs_of(ENTERPRISE_USER);
        let c = &self.config;

        let mut user_attrs: BTreeSet<String> =
            ["display_name", "first_name", "last_name", "email", "active"]
                .into_iter()
                .map(str::to_owned)
                .collect();
        match c.roles {
            ScimProjection::Attribute if core_has("roles") => {
                user_attrs.insert("roles".into());
            }
            ScimProjection::Attribute => limitations.push(
                "roles: the server's core User schema has no roles attribute, so roles are not sent (use roles: groups)".into(),
            ),
            _ => {}
        }
        match c.rights {
            ScimProjection::Attribute if core_has("entitlements") => {
                user_attrs.insert("set_rights".into());
            }
            ScimProjection::Attribute => limitations.push(
                "set rights: the server's core User schema has no entitlements attribute, so set rights are not sent (use rights: groups)".into(),
            ),
            _ => {}
        }
        for a in CORE_PASSTHROUGH {
            if core_has(a) {
                user_attrs.insert((*a).to_owned());
            }
        }
        if let Some(e) = &enterprise {
            for a in ENTERPRISE_PASSTHROUGH {
                if e.is_empty() || e.contains(*a) {
                    user_attrs.insert((*a).to_owned());
                }
            }
        }
        let mut not_held: Vec<&str> = Vec::new();
        let ext_has = |a: &str| ext.as_ref().is_some_and(|e| e.contains(a));
        for (generic, needs) in [
            ("class", &["class"][..]),
            ("authentication", &["authentication"][..]),
            ("credentials", &["passwordEnabled", "tokenEnabled"][..]),
            ("permissions", &["permissions"][..]),
        ] {
            if needs.iter().all(|a| ext_has(a)) {
                user_attrs.insert(generic.to_owned());
            } else {
                not_held.push(generic);
            }
        }
        if !not_held.is_empty() {
            let why = if ext.is_some() {
                format!("roster's extension ({USER_EXT}) has no place for them")
            } else {
                "no roster extension schema on this server".to_string()
            };
            limitations.push(format!("{why}: {} are not sent", not_held.join(", ")));
        }
        let mut group_attrs: BTreeSet<String> = BTreeSet::from(["members".to_string()]);
        if group_ext
            .as_ref()
            .is_some_and(|g| g.contains("description"))
        {
            group_attrs.insert("description".into());
        } else {
            limitations.push(
                "group description: the core Group schema has no description and roster's group extension is not advertised, so it is not sent".into(),
            );
        }
        if !c.passwords {
            limitations.push("passwords: false: no password is sent to this target".into());
        }

        let page_size = c
            .page_size
            .map(|p| p as usize)
            .or((features.filter_max_results > 0).then_some(features.filter_max_results))
            .unwrap_or(DEFAULT_PAGE_SIZE)
            .max(1);
        let bulk = c.bulk.unwrap_or(features.bulk) && features.bulk;
        if bulk {
            limitations.push(
                "bulk: /Bulk is offered, but roster writes one object per request (at the configured concurrency)".into(),
            );
        }
        if !features.patch {
            limitations.push(
                "no PATCH: every update is a PUT of the whole resource (read just before)".into(),
            );
        }
        if !features.patch && !features.etag {
            limitations.push(
                "neither PATCH nor ETags: an update may overwrite a change made on the server meanwhile".into(),
            );
        }
        if !features.filter {
            limitations.push(
                "no filters: a create whose answer was lost cannot be looked up, so it fails instead of being retried".into(),
            );
        }
        let concurrency = c
            .concurrency
            .map_or(DEFAULT_CONCURRENCY, |n| n as usize)
            .max(1);
        let options = ScimOptions {
            page_size,
            patch: features.patch,
            bulk,
            etag: features.etag,
            filter: features.filter,
            sort: features.sort,
            max_patch_operations: c
                .max_patch_operations
                .map_or(DEFAULT_MAX_PATCH_OPERATIONS, |n| n as usize)
                .max(1),
            concurrency,
            extension: ext.is_some(),
            enterprise: enterprise.is_some(),
            user_attrs: user_attrs.clone(),
            group_attrs: group_attrs.clone(),
            limitations: limitations.clone(),
        };
        let mut secrets = BTreeMap::new();
        if c.passwords {
            secrets.insert(SecretKind::Password, SecretMode::RosterGenerated);
        }
        let caps = Capabilities {
            kinds: BTreeSet::from([ObjKind::User, ObjKind::Group]),
            secrets,
            membership: Membership::OnGroup,
            user_attrs: Some(user_attrs),
            group_attrs: Some(group_attrs),
            concurrency,
            limitations,
        };
        Ok((options, caps))
    }

    fn remember(&self, id: &str, user_name: &str) {
        if let Ok(mut names) = self.names.lock() {
            names.insert(id.to_owned(), user_name.to_owned());
        }
    }

    /// Generic attributes of a SCIM User.
    fn user_attrs(&self, j: &Value) -> Attrs {
        mapped_user_attrs()
            .filter_map(|name| {
                let loc = user_loc(name)?;
                from_scim(loc, j).map(|v| (name.to_owned(), v))
            })
            .collect()
    }

    /// Generic attributes of a SCIM Group: members by key (members whose id
    /// is unknown are left out).
    fn group_attrs(&self, j: &Value, refs: &BTreeMap<String, String>) -> Attrs {
        let mut out = Attrs::new();
        if let Some(d) = scalar_string(&j[GROUP_EXT]["description"]).filter(|s| !s.is_empty()) {
            out.insert("description".into(), Value::String(d));
        }
        let ids = member_ids(j);
        let mut members: Vec<String> = Vec::with_capacity(ids.len());
        let mut unknown: Vec<&String> = Vec::new();
        if let Ok(names) = self.names.lock() {
            for id in &ids {
                match names.get(id) {
                    Some(n) => members.push(n.clone()),
                    None => unknown.push(id),
                }
            }
        }
        if !unknown.is_empty() && !refs.is_empty() {
            // Users the request named by ref that no listing showed yet.
            let by_id: BTreeMap<&String, &String> = refs.iter().map(|(k, id)| (id, k)).collect();
            members.extend(
                unknown
                    .iter()
                    .filter_map(|id| by_id.get(id).map(|k| (*k).clone())),
            );
        }
        members.sort();
        members.dedup();
        if !members.is_empty() {
            out.insert("members".into(), json!(members));
        }
        out
    }

    fn attrs_of(&self, kind: ObjKind, j: &Value) -> Attrs {
        self.attrs_with(kind, j, &BTreeMap::new())
    }

    fn attrs_with(&self, kind: ObjKind, j: &Value, refs: &BTreeMap<String, String>) -> Attrs {
        match kind {
            ObjKind::User => self.user_attrs(j),
            ObjKind::Group => self.group_attrs(j, refs),
        }
    }

    /// The attributes of `req` this server can hold.
    fn sendable<'a>(
        &self,
        o: &ScimOptions,
        kind: ObjKind,
        attrs: &'a Attrs,
    ) -> Vec<(&'a str, &'a Value)> {
        let held = match kind {
            ObjKind::User => &o.user_attrs,
            ObjKind::Group => &o.group_attrs,
        };
        attrs
            .iter()
            .filter(|(k, _)| held.contains(*k) && (kind == ObjKind::Group || user_loc(k).is_some()))
            .map(|(k, v)| (k.as_str(), v))
            .collect()
    }

    /// The ids of member keys, from the request's refs and what listings
    /// taught; the keys without a known id second.
    fn member_refs(
        &self,
        keys: &[String],
        user_refs: &BTreeMap<String, String>,
    ) -> (Vec<String>, Vec<String>) {
        let mut ids = Vec::new();
        let mut missing = Vec::new();
        for k in keys {
            match user_refs.get(k) {
                Some(id) => ids.push(id.clone()),
                None => missing.push(k.clone()),
            }
        }
        if !missing.is_empty()
            && let Ok(names) = self.names.lock()
        {
            // Keys the request has no ref for: what listings taught.
            let by_name: BTreeMap<&String, &String> = names.iter().map(|(id, n)| (n, id)).collect();
            missing.retain(|k| match by_name.get(k) {
                Some(id) => {
                    ids.push((*id).clone());
                    false
                }
                None => true,
            });
        }
        (ids, missing)
    }

    /// The ids of the members to add: every one must be known.
    fn ids_to_add(
        &self,
        what: &str,
        keys: &[String],
        user_refs: &BTreeMap<String, String>,
    ) -> Result<Vec<String>, TargetError> {
        let (ids, missing) = self.member_refs(keys, user_refs);
        if missing.is_empty() {
            return Ok(ids);
        }
        Err(TargetError::new(
            ErrorClass::Invalid,
            format!(
                "{what}: no remote id for the member(s) {} (not created on this target); nothing was sent",
                missing.join(", ")
            ),
        ))
    }

    /// Read back a written resource: the response body when it is the
    /// resource, else one GET.
    fn read_back(&self, path: &str, body: Value, errors: &mut Vec<HttpError>) -> Option<Value> {
        if body["id"].is_string() {
            return Some(body);
        }
        match self.http.get(path) {
            Ok(r) => Some(r.body),
            Err(e) => {
                errors.push(e);
                None
            }
        }
    }

    /// Refuse an object that carries another roster object's externalId.
    fn check_owner(
        &self,
        what: &str,
        kind: ObjKind,
        req: &EnsureRequest<'_>,
        j: &Value,
    ) -> Result<(), TargetError> {
        let Some(ext) = j["externalId"].as_str() else {
            return Ok(());
        };
        let prefix = format!("roster:{}:", kind.as_str());
        let Some(owner) = ext.strip_prefix(&prefix) else {
            return Ok(());
        };
        if owner == req.key || req.renamed_from == Some(owner) {
            return Ok(());
        }
        Err(TargetError::new(
            ErrorClass::Conflict,
            format!(
                "{what}: the object {} is roster's {kind} {owner:?} (externalId {ext:?}), not {:?}; the recorded remote id is wrong (check the state, or import the target again)",
                j["id"].as_str().unwrap_or("?"),
                req.key
            ),
        ))
    }

    fn create(
        &self,
        o: &ScimOptions,
        what: &str,
        req: &EnsureRequest<'_>,
    ) -> Result<Ensured, TargetError> {
        let kind = req.kind;
        let mut body = json!({
            key_attr(kind): req.key,
            "externalId": external_id(kind, req.key),
        });
        let mut later_members: Vec<String> = Vec::new();
        match kind {
            ObjKind::User => {
                for (name, v) in self.sendable(o, kind, req.attrs) {
                    if let Some(loc) = user_loc(name) {
                        set_in(&mut body, loc, to_scim(loc, v));
                    }
                }
                if let Some(pw) = req.password
                    && self.config.passwords
                {
                    body["password"] = json!(pw.expose());
                }
                fix_schemas(&mut body, USER_SCHEMA);
            }
            ObjKind::Group => {
                for (name, v) in self.sendable(o, kind, req.attrs) {
                    if name == "description" && !compare::is_empty(v) {
                        body[GROUP_EXT] = json!({ "description": v });
                    }
                }
                let keys = values_of(req.attrs.get("members").unwrap_or(&Value::Null));
                let ids = self.ids_to_add(what, &keys, req.user_refs)?;
                if ids.len() <= o.max_patch_operations {
                    body["members"] = value_objects(&ids);
                } else {
                    // Large groups are created empty and filled in chunks.
                    later_members = ids;
                }
                fix_schemas(&mut body, GROUP_SCHEMA);
            }
        }
        let lookup = format!("{} eq {}", key_attr(kind), quote(req.key));
        let resp = self
            .http
            .create(endpoint(kind), &body, &lookup)
            .map_err(|errors| self.fail(what, errors))?;
        // 409: roster's own object from an earlier create was found; this
        // request's password was not what it holds.
        let password_set =
            kind == ObjKind::User && body.get("password").is_some() && resp.status != 409;
        drop(body);
        let mut errors = Vec::new();
        let Some(id) = resp.body["id"].as_str().map(str::to_owned) else {
            return Err(TargetError::new(
                ErrorClass::Fatal,
                format!(
                    "{what}: the server answered the create (HTTP {}) without the new resource's id",
                    resp.status
                ),
            ));
        };
        let path = format!("{}/{id}", endpoint(kind));
        let mut j = resp.body;
        if !later_members.is_empty() {
            let ops: Vec<Value> = later_members
                .iter()
                .map(|m| json!({"op": "add", "path": "members", "value": [{"value": m}]}))
                .collect();
            j = self
                .patch_chunks(o, &path, ops, &mut errors)
                .ok_or_else(|| {
                    self.fail(
                        &format!("{what} (created as {id}, members not all added)"),
                        std::mem::take(&mut errors),
                    )
                })?;
        }
        let j = self.read_back(&path, j, &mut errors).ok_or_else(|| {
            self.fail(
                &format!("{what} (created as {id})"),
                std::mem::take(&mut errors),
            )
        })?;
        if kind == ObjKind::User {
            self.remember(&id, req.key);
        }
        Ok(Ensured {
            remote_ref: id,
            attrs: self.attrs_with(kind, &j, req.user_refs),
            changed: true,
            password_set,
        })
    }

    /// PATCH `ops` in chunks of `max_patch_operations` (an `add` of several
    /// members counts one per member); the last answer's body, or `None`
    /// after a failure (pushed to `errors`).
    fn patch_chunks(
        &self,
        o: &ScimOptions,
        path: &str,
        ops: Vec<Value>,
        errors: &mut Vec<HttpError>,
    ) -> Option<Value> {
        let mut last = Value::Null;
        for chunk in chunk_ops(ops, o.max_patch_operations) {
            let body = json!({"schemas": [PATCH_OP], "Operations": chunk});
            match self.http.send("PATCH", path, Some(&body), None) {
                Ok(r) => last = r.body,
                Err(e) => {
                    errors.push(e);
                    return None;
                }
            }
        }
        Some(last)
    }

    fn update(
        &self,
        o: &ScimOptions,
        what: &str,
        req: &EnsureRequest<'_>,
        id: &str,
    ) -> Result<Ensured, TargetError> {
        let kind = req.kind;
        let path = format!("{}/{id}", endpoint(kind));
        let mut errors: Vec<HttpError> = Vec::new();
        // What the target holds: the request's, else one GET.
        let fetched;
        let current: &Attrs = match req.current {
            Some(c) => c,
            None => {
                let r = self.http.get(&path).map_err(|e| self.fail(what, vec![e]))?;
                self.check_owner(what, kind, req, &r.body)?;
                fetched = self.attrs_with(kind, &r.body, req.user_refs);
                &fetched
            }
        };
        let renamed = req.renamed_from.is_some_and(|old| old != req.key);
        let mut ops: Vec<Value> = Vec::new();
        if renamed {
            ops.push(json!({"op": "replace", "path": key_attr(kind), "value": req.key}));
            ops.push(
                json!({"op": "replace", "path": "externalId", "value": external_id(kind, req.key)}),
            );
        }
        // Members to add and remove (groups), by id.
        let mut add_ids: Vec<String> = Vec::new();
        let mut remove_ids: Vec<String> = Vec::new();
        for (name, want) in self.sendable(o, kind, req.attrs) {
            if compare::equal(name, Some(want), current.get(name)) {
                continue;
            }
            match (kind, name) {
                (ObjKind::Group, "members") => {
                    let want: BTreeSet<String> = values_of(want).into_iter().collect();
                    let have: BTreeSet<String> = current
                        .get("members")
                        .map(values_of)
                        .unwrap_or_default()
                        .into_iter()
                        .collect();
                    let add: Vec<String> = want.difference(&have).cloned().collect();
                    let remove: Vec<String> = have.difference(&want).cloned().collect();
                    add_ids = self.ids_to_add(what, &add, req.user_refs)?;
                    // A member to remove was listed, so its id is normally
                    // known; one that is not is left alone.
                    remove_ids = self.member_refs(&remove, req.user_refs).0;
                    for m in &add_ids {
                        ops.push(json!({"op": "add", "path": "members", "value": [{"value": m}]}));
                    }
                    for m in &remove_ids {
                        ops.push(json!({"op": "remove", "path": format!("members[value eq {}]", quote(m))}));
                    }
                }
                (ObjKind::Group, "description") => {
                    if compare::is_empty(want) {
                        ops.push(
                            json!({"op": "remove", "path": format!("{GROUP_EXT}:description")}),
                        );
                    } else {
                        ops.push(json!({"op": "replace", "path": format!("{GROUP_EXT}:description"), "value": want}));
                    }
                }
                (ObjKind::User, _) => {
                    if let Some(loc) = user_loc(name) {
                        ops.extend(patch_ops_for(loc, want));
                    }
                }
                _ => {}
            }
        }
        let password = req
            .password
            .filter(|_| kind == ObjKind::User && self.config.passwords);
        if let Some(pw) = password {
            ops.push(json!({"op": "replace", "path": "password", "value": pw.expose()}));
        }
        if ops.is_empty() {
            return Ok(Ensured {
                remote_ref: id.to_owned(),
                attrs: current.clone(),
                changed: false,
                password_set: false,
            });
        }
        let mut written = None;
        if o.patch {
            written = self.patch_chunks(o, &path, ops, &mut errors);
            let fall_back = errors
                .last()
                .is_some_and(|e| matches!(e.status, Some(400 | 501)));
            if written.is_none() && !fall_back {
                return Err(self.fail(what, errors));
            }
        } else {
            drop(ops);
        }
        let body = match written {
            Some(b) => b,
            None => {
                // PUT of the whole resource, as the server holds it now.
                let fresh = match self.http.get(&path) {
                    Ok(r) => r,
                    Err(e) => {
                        errors.push(e);
                        return Err(self.fail(what, errors));
                    }
                };
                self.check_owner(what, kind, req, &fresh.body)?;
                let etag = if o.etag {
                    fresh
                        .etag
                        .clone()
                        .or_else(|| fresh.body["meta"]["version"].as_str().map(str::to_owned))
                } else {
                    None
                };
                let mut body = put_body(
                    fresh.body,
                    match kind {
                        ObjKind::User => USER_SCHEMA,
                        ObjKind::Group => GROUP_SCHEMA,
                    },
                );
                body[key_attr(kind)] = json!(req.key);
                if renamed {
                    body["externalId"] = json!(external_id(kind, req.key));
                }
                match kind {
                    ObjKind::User => {
                        // A PUT writes the whole resource: every attribute roster sets.
                        for (name, v) in self.sendable(o, kind, req.attrs) {
                            if let Some(loc) = user_loc(name) {
                                set_in(&mut body, loc, to_scim(loc, v));
                            }
                        }
                        if let Some(pw) = password {
                            body["password"] = json!(pw.expose());
                        }
                        fix_schemas(&mut body, USER_SCHEMA);
                    }
                    ObjKind::Group => {
                        let mut members: Vec<String> = member_ids(&body)
                            .into_iter()
                            .filter(|m| !remove_ids.contains(m))
                            .collect();
                        for m in &add_ids {
                            if !members.contains(m) {
                                members.push(m.clone());
                            }
                        }
                        body["members"] = value_objects(&members);
                        if let Some(d) = req.attrs.get("description")
                            && o.group_attrs.contains("description")
                        {
                            if compare::is_empty(d) {
                                if let Some(x) =
                                    body.get_mut(GROUP_EXT).and_then(Value::as_object_mut)
                                {
                                    x.remove("description");
                                }
                            } else {
                                set_group_description(&mut body, d);
                            }
                        }
                        fix_schemas(&mut body, GROUP_SCHEMA);
                    }
                }
                let sent = self.http.send("PUT", &path, Some(&body), etag.as_deref());
                drop(body);
                match sent {
                    Ok(r) => r.body,
                    Err(e) => {
                        errors.push(e);
                        return Err(self.fail(what, errors));
                    }
                }
            }
        };
        let j = self.read_back(&path, body, &mut errors).ok_or_else(|| {
            self.fail(
                &format!("{what} (written, not read back)"),
                std::mem::take(&mut errors),
            )
        })?;
        self.check_owner(what, kind, req, &j)?;
        if kind == ObjKind::User {
            self.remember(id, req.key);
        }
        Ok(Ensured {
            remote_ref: id.to_owned(),
            attrs: self.attrs_with(kind, &j, req.user_refs),
            changed: true,
            password_set: password.is_some(),
        })
    }

    /// Write a password (PATCH, or PUT of the whole user).
    fn write_password(
        &self,
        what: &str,
        remote_ref: &str,
        value: &Secret,
    ) -> Result<(), TargetError> {
        let (o, _) = self.opened()?;
        if !self.config.passwords {
            return Err(TargetError::new(
                ErrorClass::Unsupported,
                format!("{what}: this target is configured with passwords: false"),
            ));
        }
        let path = format!("/Users/{remote_ref}");
        let mut errors = Vec::new();
        if o.patch {
            let body = json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "replace", "path": "password", "value": value.expose()}
            ]});
            match self.http.send("PATCH", &path, Some(&body), None) {
                Ok(_) => return Ok(()),
                Err(e) => {
                    let fall_back = matches!(e.status, Some(400 | 501));
                    errors.push(e);
                    if !fall_back {
                        return Err(self.fail(what, errors));
                    }
                }
            }
        }
        let fresh = match self.http.get(&path) {
            Ok(r) => r,
            Err(e) => {
                errors.push(e);
                return Err(self.fail(what, errors));
            }
        };
        let etag = if o.etag {
            fresh
                .etag
                .clone()
                .or_else(|| fresh.body["meta"]["version"].as_str().map(str::to_owned))
        } else {
            None
        };
        let mut body = put_body(fresh.body, USER_SCHEMA);
        body["password"] = json!(value.expose());
        let sent = self.http.send("PUT", &path, Some(&body), etag.as_deref());
        drop(body);
        match sent {
            Ok(_) => Ok(()),
            Err(e) => {
                errors.push(e);
                Err(self.fail(what, errors))
            }
        }
    }
}

fn set_group_description(body: &mut Value, d: &Value) {
    if !body.get(GROUP_EXT).is_some_and(Value::is_object) {
        body[GROUP_EXT] = json!({});
    }
    body[GROUP_EXT]["description"] = d.clone();
}

/// Split PATCH operations into requests of at most `max` units (a member
/// added or removed, or one attribute operation, is one unit); the member
/// additions of one request are merged into a single `add`.
fn chunk_ops(ops: Vec<Value>, max: usize) -> Vec<Vec<Value>> {
    let max = max.max(1);
    let mut out: Vec<Vec<Value>> = Vec::new();
    for group in ops.chunks(max) {
        let mut merged: Vec<Value> = Vec::new();
        let mut adds: Vec<Value> = Vec::new();
        for op in group {
            if op["op"] == "add" && op["path"] == "members" {
                adds.extend(op["value"].as_array().cloned().unwrap_or_default());
            } else {
                merged.push(op.clone());
            }
        }
        if !adds.is_empty() {
            merged.insert(0, json!({"op": "add", "path": "members", "value": adds}));
        }
        out.push(merged);
    }
    out
}

impl Target for ScimTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn open(&self) -> Result<Capabilities, TargetError> {
        Ok(self.opened()?.1.clone())
    }

    fn list(&self, kind: ObjKind) -> Result<Vec<RemoteObject>, TargetError> {
        let (o, _) = self.opened()?;
        let sort = o.sort.then_some(key_attr(kind));
        let items = self
            .http
            .list_all(endpoint(kind), o.page_size, sort)
            .map_err(|e| self.fail(&format!("listing {}", endpoint(kind)), vec![e]))?;
        if kind == ObjKind::User
            && let Ok(mut names) = self.names.lock()
        {
            for j in &items {
                if let (Some(id), Some(n)) = (j["id"].as_str(), j["userName"].as_str()) {
                    names.insert(id.to_owned(), n.to_owned());
                }
            }
        }
        Ok(items
            .iter()
            .filter_map(|j| {
                let id = j["id"].as_str()?;
                let key = j[key_attr(kind)].as_str()?;
                Some(RemoteObject {
                    key: key.to_owned(),
                    remote_ref: id.to_owned(),
                    attrs: self.attrs_of(kind, j),
                })
            })
            .collect())
    }

    fn ensure(&self, req: &EnsureRequest<'_>) -> Result<Ensured, TargetError> {
        let (o, _) = self.opened()?;
        let what = format!("{}.{}", req.kind, req.key);
        match req.remote_ref {
            None => self.create(o, &what, req),
            Some(id) => self.update(o, &what, req, id),
        }
    }

    fn delete(
        &self,
        kind: ObjKind,
        key: &str,
        remote_ref: &str,
        _idem: &str,
    ) -> Result<(), TargetError> {
        self.opened()?;
        let path = format!("{}/{remote_ref}", endpoint(kind));
        match self.http.send("DELETE", &path, None, None) {
            Ok(_) => {}
            Err(e) if e.status == Some(404) => {}
            Err(e) => return Err(self.fail(&format!("{kind}.{key}"), vec![e])),
        }
        if kind == ObjKind::User
            && let Ok(mut names) = self.names.lock()
        {
            names.remove(remote_ref);
        }
        Ok(())
    }

    fn set_secret(
        &self,
        key: &str,
        remote_ref: &str,
        kind: SecretKind,
        value: &Secret,
        _idem: &str,
    ) -> Result<(), TargetError> {
        let what = format!("user.{key} ({})", kind.as_str());
        if kind != SecretKind::Password {
            return Err(TargetError::new(
                ErrorClass::Unsupported,
                format!("{what}: a SCIM target holds passwords only"),
            ));
        }
        self.write_password(&what, remote_ref, value)
    }

    fn generate_secret(
        &self,
        key: &str,
        _remote_ref: &str,
        kind: SecretKind,
        _idem: &str,
    ) -> Result<Generated, TargetError> {
        Err(TargetError::new(
            ErrorClass::Unsupported,
            format!(
                "user.{key} ({}): a SCIM server does not generate secrets; roster generates them",
                kind.as_str()
            ),
        ))
    }

    fn revoke_secret(
        &self,
        key: &str,
        remote_ref: &str,
        kind: SecretKind,
        _idem: &str,
    ) -> Result<(), TargetError> {
        let what = format!("user.{key} (revoke {})", kind.as_str());
        if kind != SecretKind::Password {
            return Err(TargetError::new(
                ErrorClass::Unsupported,
                format!("{what}: a SCIM target holds passwords only"),
            ));
        }
        // The server keeps the issued password: replace it by a random value
        // nobody ever sees (generated from the OS CSPRNG, sent, dropped).
        let unknowable = crate::secret::generate_password(&Default::default()).map_err(|e| {
            TargetError::new(
                ErrorClass::Fatal,
                format!("{what}: generating a random password: {e}"),
            )
        })?;
        self.write_password(&what, remote_ref, &unknowable)
    }

    fn requests(&self) -> u64 {
        self.http.requests_sent()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_count_each_member_once_and_merge_additions() {
        let ops: Vec<Value> = (0..5)
            .map(|i| json!({"op": "add", "path": "members", "value": [{"value": format!("u{i}")}]}))
            .chain(
                (0..3).map(
                    |i| json!({"op": "remove", "path": format!("members[value eq \"r{i}\"]")}),
                ),
            )
            .collect();
        let chunks = chunk_ops(ops, 3);
        assert_eq!(chunks.len(), 3);
        assert_eq!(
            chunks[0].len(),
            1,
            "three additions merged: {:?}",
            chunks[0]
        );
        assert_eq!(chunks[0][0]["value"].as_array().map(Vec::len), Some(3));
        assert_eq!(chunks[1].len(), 2, "two additions merged, one removal");
        assert_eq!(chunks[2].len(), 2);
        assert!(chunks[2].iter().all(|o| o["op"] == "remove"));
    }

    #[test]
    fn user_mapping_round_trips_and_reads_tolerantly() {
        let attrs: Attrs = serde_json::from_value(json!({
            "display_name": "Ops Bot", "first_name": "Ops", "last_name": "Bot",
            "email": "Ops@Example.com", "active": false, "roles": ["b", "a"],
            "set_rights": {"hr": "read", "pay": "full"}, "class": "service",
            "credentials": ["password"], "title": "bot", "department": "IT"
        }))
        .expect("attrs");
        let mut body = json!({"userName": "ops"});
        for (k, v) in &attrs {
            let loc = user_loc(k).expect(k);
            set_in(&mut body, loc, to_scim(loc, v));
        }
        fix_schemas(&mut body, USER_SCHEMA);
        assert_eq!(body["name"]["givenName"], "Ops");
        assert_eq!(body["emails"][0]["primary"], true);
        assert_eq!(body["entitlements"][0]["value"], "hr:read");
        assert_eq!(body[USER_EXT]["passwordEnabled"], true);
        assert_eq!(body[USER_EXT]["tokenEnabled"], false);
        assert_eq!(body[ENTERPRISE_USER]["department"], "IT");
        let schemas = body["schemas"].as_array().expect("schemas");
        assert_eq!(schemas.len(), 3, "{schemas:?}");
        for name in attrs.keys() {
            let back = from_scim(user_loc(name).expect(name), &body);
            assert!(
                compare::equal(name, attrs.get(name), back.as_ref()),
                "{name}: {:?} came back as {back:?}",
                attrs.get(name)
            );
        }
        // Tolerant reading: "True", 1, a non-primary email of another case.
        let j = json!({"active": "True", "emails": [{"value": "A@X.io", "type": "Work"}]});
        assert_eq!(from_scim(Loc::Top("active"), &j), Some(json!(true)));
        assert_eq!(from_scim(Loc::Email, &j), Some(json!("A@X.io")));
        assert_eq!(
            from_scim(Loc::Top("active"), &json!({"active": 0})),
            Some(json!(false))
        );
        assert_eq!(
            from_scim(Loc::Name("givenName"), &json!({"name": {"givenName": ""}})),
            None
        );
    }

    #[test]
    fn a_patch_removes_only_what_roster_sets_to_nothing() {
        assert_eq!(
            patch_ops_for(Loc::Name("givenName"), &json!("")),
            vec![json!({"op": "remove", "path": "name.givenName"})]
        );
        assert_eq!(
            patch_ops_for(Loc::Top("active"), &json!(false)),
            vec![json!({"op": "replace", "path": "active", "value": false})]
        );
        let creds = patch_ops_for(Loc::Credentials, &json!([]));
        assert_eq!(creds.len(), 2);
        assert!(
            creds
                .iter()
                .all(|o| o["op"] == "replace" && o["value"] == false)
        );
    }
}
