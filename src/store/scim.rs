//! The SCIM 2.0 state store (`scim+https://HOST/PATH`, RFC 7643/7644).
//!
//! Mapping (documented for operators in `schemas/scim/README.md`):
//! - a roster user is a SCIM `User`: userName = name, externalId =
//!   `roster:user:NAME`, displayName, name.givenName/familyName, one primary
//!   work email, `active`, `roles` = the effective roles (own roles and the
//!   roles of the user's groups), `entitlements` = set rights as `area:level`,
//!   `password` written on create/rotation/reactivation (never read back)
//!   and, on revocation, replaced by a random value nobody receives;
//! - a roster group is a SCIM `Group` (externalId `roster:group:NAME`) whose
//!   `members` are the managed users whose `groups` contain it;
//! - everything the core schema cannot hold goes into roster's extension
//!   schemas (`urn:ietf:params:scim:schemas:extension:roster:2.0:User` and
//!   `…:Group`), used only when the server advertises them in `/Schemas`;
//! - the role catalogue, the role assignments and the history live in the
//!   extension of one managed Group `roster-state`, whose externalId
//!   `roster:state:LINEAGE:SERIAL` is the store version (works without the
//!   extension too). Each commit rewrites it with `If-Match`;
//! - the lock is a managed, inactive User `roster-lock` (externalId
//!   `roster:lock`): userName is unique on every SCIM server, so its creation
//!   succeeds for one apply only (409 for the others). Its displayName holds
//!   the owner; it is deleted on drop and taken over after a TTL.
//!
//! Resources whose externalId does not start with `roster:` are not roster's:
//! they are read (as `managed: false`) and never modified or deleted. This
//! module must never log or return the bearer token or a password.

pub mod http;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use self::http::{Features, Http, HttpError, HttpOptions, Op, OpResult, quote};
use super::{
    AuditEntry, Change, ChangeOutcome, ChangeSet, CommitReport, LockOwner, NewSecrets, Record,
    RecordMeta, SecretHashes, Snapshot, StateStore, StoreError, StoreInfo, StoreLock, Version,
};
use crate::model::{
    AccessLevel, AssignmentSpec, CredentialSpec, GroupSpec, Kind, RoleSpec, UserSpec,
};
use crate::secret::Secret;

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const USER_EXT: &str = "urn:ietf:params:scim:schemas:extension:roster:2.0:User";
pub const GROUP_EXT: &str = "urn:ietf:params:scim:schemas:extension:roster:2.0:Group";
/// The environment variable holding the bearer token.
pub const TOKEN_ENV: &str = "ROSTER_SCIM_TOKEN";
/// The managed Group holding the version, the role catalogue and the history.
pub const STATE_GROUP: &str = "roster-state";
/// The managed User whose existence is the apply lock.
pub const LOCK_USER: &str = "roster-lock";
/// History entries kept in the state group (oldest dropped first).
pub const HISTORY_KEEP: usize = 500;

/// Tunables of the SCIM store.
#[derive(Debug, Clone)]
pub struct ScimOptions {
    pub http: HttpOptions,
    /// Resources per list request (bounded by the server's filter.maxResults).
    pub page_size: usize,
    /// A lock older than this is considered abandoned and taken over.
    pub lock_ttl: Duration,
}

impl Default for ScimOptions {
    fn default() -> Self {
        ScimOptions {
            http: HttpOptions::default(),
            page_size: 500,
            lock_ttl: Duration::from_secs(3600),
        }
    }
}

/// What the server supports, discovered once.
#[derive(Debug, Clone)]
struct Discovery {
    features: Features,
    extension: bool,
}

/// `scim+http(s)://HOST/PATH`.
#[derive(Debug)]
pub struct ScimStore {
    http: Http,
    location: String,
    options: ScimOptions,
    /// `/ServiceProviderConfig`, fetched once.
    features: OnceLock<Features>,
    /// Whether the server holds roster's extension schemas: from `/Schemas`,
    /// or proven by extension attributes on resources roster already wrote.
    extension: OnceLock<bool>,
}

/// A server resource as read: id, ETag and JSON.
#[derive(Debug, Clone)]
struct Raw {
    id: String,
    etag: Option<String>,
    json: Value,
}

/// The state group as read.
#[derive(Debug, Clone, Default)]
struct StateRes {
    raw: Option<Raw>,
    lineage: String,
    serial: u64,
    roles: BTreeMap<String, Record<RoleSpec>>,
    assignments: BTreeMap<String, Record<AssignmentSpec>>,
    history: Vec<AuditEntry>,
}

/// Everything read from the server, with the raw resources behind the snapshot.
#[derive(Debug)]
struct Read {
    snapshot: Snapshot,
    state: StateRes,
    users: BTreeMap<String, Raw>,
    groups: BTreeMap<String, Raw>,
}

impl Read {
    /// Whether a managed record carries a serial the state has not reached:
    /// the read overlapped a commit (or one was interrupted).
    fn newer_records_than_state(&self) -> bool {
        let s = &self.snapshot;
        let newer = |managed: bool, serial: u64| managed && serial > self.state.serial;
        s.users.values().any(|r| newer(r.managed, r.meta.serial))
            || s.groups.values().any(|r| newer(r.managed, r.meta.serial))
    }
}

#[derive(Debug)]
struct ScimLock<'a> {
    store: &'a ScimStore,
    id: String,
}

impl StoreLock for ScimLock<'_> {}

impl Drop for ScimLock<'_> {
    /// Release the lock. DELETE is idempotent, so any failure (a 5xx, a
    /// connection dropped mid-response) is retried a few times: a lock left
    /// behind would refuse every apply until its TTL. 404 means released.
    fn drop(&mut self) {
        let path = format!("/Users/{}", self.id);
        let mut last = None;
        for attempt in 0..5u32 {
            match self.store.http.send("DELETE", &path, None, None) {
                Ok(_) => return,
                Err(e) if e.status == Some(404) => return,
                Err(e) => last = Some(e),
            }
            std::thread::sleep(std::time::Duration::from_millis(200 << attempt));
        }
        if let Some(e) = last {
            tracing::warn!(
                "could not release the SCIM lock {}: {e}; delete the user `{LOCK_USER}` to release it",
                self.store.location
            );
        }
    }
}

fn remote(location: &str, e: HttpError) -> StoreError {
    StoreError::Remote(format!("SCIM server {location}: {e}"))
}

fn corrupt(what: impl Into<String>, detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        detail: detail.into(),
    }
}

/// Serialize an enum to its string form (`kebab-case` names of the model).
fn enum_str<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn parse_enum<T: DeserializeOwned>(s: &str) -> Option<T> {
    serde_json::from_value(Value::String(s.to_owned())).ok()
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().or_else(|| x["value"].as_str()))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn values(set: &BTreeSet<String>) -> Value {
    Value::Array(set.iter().map(|s| json!({"value": s})).collect())
}

fn opt_str(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn raw_of(v: Value) -> Option<Raw> {
    let id = v["id"].as_str()?.to_owned();
    let etag = v["meta"]["version"].as_str().map(str::to_owned);
    Some(Raw { id, etag, json: v })
}

/// The effective roles of a user: its own roles and those of its groups.
fn effective_roles(
    user: &UserSpec,
    groups: &BTreeMap<String, Record<GroupSpec>>,
) -> BTreeSet<String> {
    let mut roles = user.roles.clone();
    for g in &user.groups {
        if let Some(rec) = groups.get(g) {
            roles.extend(rec.spec.roles.iter().cloned());
        }
    }
    roles
}

impl ScimStore {
    /// Open `url` (`scim+https://…` or `scim+http://…`), with the bearer token
    /// from `ROSTER_SCIM_TOKEN`.
    pub fn open(url: &str, options: &super::OpenOptions) -> Result<ScimStore, StoreError> {
        let token = std::env::var(TOKEN_ENV).map_err(|_| StoreError::InvalidUrl {
            url: url.into(),
            reason: format!("set the bearer token in the environment variable {TOKEN_ENV}"),
        })?;
        ScimStore::with_token(url, options, Secret::new(token), ScimOptions::default())
    }

    /// Open `url` with an explicit token and tunables.
    pub fn with_token(
        url: &str,
        options: &super::OpenOptions,
        token: Secret,
        scim: ScimOptions,
    ) -> Result<ScimStore, StoreError> {
        let invalid = |reason: &str| StoreError::InvalidUrl {
            url: url.into(),
            reason: reason.into(),
        };
        let rest = url
            .strip_prefix("scim+")
            .ok_or_else(|| invalid("expected scim+https://HOST/PATH"))?;
        let parsed = reqwest::Url::parse(rest).map_err(|e| invalid(&e.to_string()))?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(invalid(
                "credentials in the URL are not accepted; use ROSTER_SCIM_TOKEN",
            ));
        }
        let host = parsed.host_str().unwrap_or("").to_owned();
        match parsed.scheme() {
            "https" => {}
            "http" => {
                let loopback = matches!(host.as_str(), "127.0.0.1" | "localhost" | "[::1]" | "::1");
                if !loopback && !options.allow_insecure_http {
                    return Err(invalid(
                        "scim+http:// is only allowed to 127.0.0.1/localhost (use scim+https:// or allow insecure HTTP)",
                    ));
                }
            }
            _ => return Err(invalid("expected scim+https:// or scim+http://")),
        }
        if host.is_empty() {
            return Err(invalid("the host is empty"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(invalid("a query or fragment is not allowed"));
        }
        let base = parsed.as_str().trim_end_matches('/').to_owned();
        let ca = match &options.ca_file {
            Some(p) => Some(std::fs::read(p).map_err(|error| StoreError::Io {
                path: p.display().to_string(),
                error,
            })?),
            None => None,
        };
        let location = format!("scim+{base}");
        let http = Http::new(base, token, ca, scim.http.clone()).map_err(|e| invalid(&e))?;
        Ok(ScimStore {
            http,
            location,
            options: scim,
            features: OnceLock::new(),
            extension: OnceLock::new(),
        })
    }

    /// HTTP requests sent so far (for tests and diagnostics).
    pub fn requests_sent(&self) -> u64 {
        self.http.requests_sent()
    }

    fn err(&self, e: HttpError) -> StoreError {
        remote(&self.location, e)
    }

    fn features(&self) -> Result<&Features, StoreError> {
        if let Some(f) = self.features.get() {
            return Ok(f);
        }
        let config = self
            .http
            .get("/ServiceProviderConfig")
            .map_err(|e| self.err(e))?;
        Ok(self
            .features
            .get_or_init(|| Features::from_config(&config.body)))
    }

    /// Whether the extension schemas are there. `proven` is true when the
    /// resources just read already carry both extensions' attributes (a server
    /// cannot return attributes of a schema it does not hold), which spares
    /// the `/Schemas` request; otherwise `/Schemas` decides.
    fn extension(&self, proven: bool) -> Result<bool, StoreError> {
        if let Some(e) = self.extension.get() {
            return Ok(*e);
        }
        if proven {
            return Ok(*self.extension.get_or_init(|| true));
        }
        let schemas = self.http.get("/Schemas").map_err(|e| self.err(e))?;
        let ids: BTreeSet<String> = schemas.body["Resources"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| opt_str(&s["id"])).collect())
            .unwrap_or_default();
        let found = ids.contains(USER_EXT) && ids.contains(GROUP_EXT);
        Ok(*self.extension.get_or_init(|| found))
    }

    fn discover(&self) -> Result<Discovery, StoreError> {
        Ok(Discovery {
            features: self.features()?.clone(),
            extension: self.extension(false)?,
        })
    }

    fn page_size(&self, f: &Features) -> usize {
        let mut p = self.options.page_size.max(1);
        if f.filter_max_results > 0 {
            p = p.min(f.filter_max_results);
        }
        p
    }

    fn list(&self, endpoint: &str, sort: &str, f: &Features) -> Result<Vec<Value>, StoreError> {
        let sort_by = f.sort.then_some(sort);
        self.http
            .list_all(endpoint, self.page_size(f), sort_by)
            .map_err(|e| self.err(e))
    }

    fn parse_state(&self, raw: Raw) -> Result<StateRes, StoreError> {
        let what = format!("the {STATE_GROUP} group of {}", self.location);
        let ext_id = raw.json["externalId"].as_str().unwrap_or("");
        let rest = ext_id
            .strip_prefix("roster:state:")
            .ok_or_else(|| corrupt(&what, format!("externalId {ext_id:?}")))?;
        let (lineage, serial) = rest
            .rsplit_once(':')
            .ok_or_else(|| corrupt(&what, format!("externalId {ext_id:?}")))?;
        let serial: u64 = serial
            .parse()
            .map_err(|_| corrupt(&what, format!("serial {serial:?} is not a number")))?;
        let ext = &raw.json[GROUP_EXT];
        let mut state = StateRes {
            lineage: lineage.to_owned(),
            serial,
            ..StateRes::default()
        };
        if let Some(catalog) = ext["catalog"].as_str() {
            #[derive(serde::Deserialize)]
            struct Catalog {
                #[serde(default)]
                roles: BTreeMap<String, Record<RoleSpec>>,
                #[serde(default)]
                assignments: BTreeMap<String, Record<AssignmentSpec>>,
            }
            let c: Catalog = serde_json::from_str(catalog).map_err(|e| {
                corrupt(&what, format!("catalog: {}", super::redact_json_error(&e)))
            })?;
            state.roles = c.roles;
            state.assignments = c.assignments;
        }
        if let Some(h) = ext["history"].as_str() {
            state.history = serde_json::from_str(h).map_err(|e| {
                corrupt(&what, format!("history: {}", super::redact_json_error(&e)))
            })?;
        }
        state.raw = Some(raw);
        Ok(state)
    }

    fn read_state(&self) -> Result<StateRes, StoreError> {
        let found = self
            .http
            .find("/Groups", &format!("displayName eq {}", quote(STATE_GROUP)))
            .map_err(|e| self.err(e))?;
        let managed: Vec<Raw> = found
            .into_iter()
            .filter(|g| {
                g["externalId"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("roster:state:"))
            })
            .filter_map(raw_of)
            .collect();
        match managed.len() {
            0 => Ok(StateRes::default()),
            1 => self.parse_state(managed.into_iter().next().unwrap_or_else(|| unreachable!())),
            n => Err(corrupt(
                format!("{} ({STATE_GROUP})", self.location),
                format!("{n} managed {STATE_GROUP} groups exist; delete the extra ones"),
            )),
        }
    }

    /// Read the whole server: the groups (the state group among them) first,
    /// then the users. Once roster has written to a server with its extension,
    /// that is `/ServiceProviderConfig` + ⌈groups/page⌉ + ⌈users/page⌉
    /// requests. The state group is not read a second time: a commit records
    /// its new serial last and stamps every record it writes with that serial,
    /// so a read that overlaps a commit sees a record newer than the state
    /// and is read once more; if it still does (a commit that was interrupted
    /// leaves such records behind) the plan converges them, and a saved plan
    /// made from a read that a commit overtook names a serial that apply
    /// refuses as stale.
    fn read_all(&self) -> Result<Read, StoreError> {
        let features = self.features()?.clone();
        let read = self.read_once(&features)?;
        if read.newer_records_than_state() {
            tracing::debug!(
                serial = read.state.serial,
                "records newer than the store's serial: reading again"
            );
            return self.read_once(&features);
        }
        Ok(read)
    }

    fn read_once(&self, features: &Features) -> Result<Read, StoreError> {
        let group_list = self.list("/Groups", "displayName", features)?;
        let user_list = self.list("/Users", "userName", features)?;
        let is_state = |g: &Value| {
            g["displayName"].as_str() == Some(STATE_GROUP)
                && g["externalId"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("roster:state:"))
        };
        let (states, group_list): (Vec<Value>, Vec<Value>) =
            group_list.into_iter().partition(|g| is_state(g));
        let mut states: Vec<Raw> = states.into_iter().filter_map(raw_of).collect();
        let state = match states.len() {
            0 => StateRes::default(),
            1 => self.parse_state(states.remove(0))?,
            n => {
                return Err(corrupt(
                    format!("{} ({STATE_GROUP})", self.location),
                    format!("{n} managed {STATE_GROUP} groups exist; delete the extra ones"),
                ));
            }
        };
        let proven = state
            .raw
            .as_ref()
            .is_some_and(|r| r.json[GROUP_EXT].is_object())
            && user_list.iter().any(|u| {
                u["externalId"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("roster:user:"))
                    && u[USER_EXT].is_object()
            });
        let d = Discovery {
            features: features.clone(),
            extension: self.extension(proven)?,
        };
        self.read_with(&d, state, user_list, group_list)
    }

    fn read_with(
        &self,
        d: &Discovery,
        state: StateRes,
        user_list: Vec<Value>,
        group_list: Vec<Value>,
    ) -> Result<Read, StoreError> {
        let mut users: BTreeMap<String, Raw> = BTreeMap::new();
        let mut unmanaged_users: BTreeMap<String, Raw> = BTreeMap::new();
        for u in user_list {
            let Some(raw) = raw_of(u) else { continue };
            let Some(name) = opt_str(&raw.json["userName"]) else {
                continue;
            };
            let ext_id = raw.json["externalId"].as_str().unwrap_or("");
            if ext_id == "roster:lock" {
                continue;
            } else if ext_id.starts_with("roster:user:") {
                users.insert(name, raw);
            } else {
                unmanaged_users.insert(name, raw);
            }
        }
        let mut groups: BTreeMap<String, Raw> = BTreeMap::new();
        let mut unmanaged_groups: BTreeMap<String, Raw> = BTreeMap::new();
        for g in group_list {
            let Some(raw) = raw_of(g) else { continue };
            let Some(name) = opt_str(&raw.json["displayName"]) else {
                continue;
            };
            let ext_id = raw.json["externalId"].as_str().unwrap_or("");
            if ext_id.starts_with("roster:state:") {
                continue;
            } else if ext_id.starts_with("roster:group:") {
                groups.insert(name, raw);
            } else {
                unmanaged_groups.insert(name, raw);
            }
        }
        let mut snapshot = Snapshot {
            version: state.raw.as_ref().map(|_| Version {
                lineage: state.lineage.clone(),
                serial: state.serial,
            }),
            roles: state.roles.clone(),
            assignments: state.assignments.clone(),
            ..Snapshot::default()
        };
        for (name, raw) in &groups {
            snapshot
                .groups
                .insert(name.clone(), group_record(raw, true, d.extension));
        }
        for (name, raw) in &unmanaged_groups {
            if !groups.contains_key(name) {
                snapshot
                    .groups
                    .insert(name.clone(), group_record(raw, false, d.extension));
            }
        }
        // Group membership: user id -> managed group names.
        let mut member_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (name, raw) in &groups {
            for m in strings(&raw.json["members"]) {
                member_of.entry(m).or_default().insert(name.clone());
            }
        }
        for (name, raw, managed) in users
            .iter()
            .map(|(n, r)| (n, r, true))
            .chain(unmanaged_users.iter().map(|(n, r)| (n, r, false)))
        {
            let gs = member_of.get(&raw.id).cloned().unwrap_or_default();
            let rec = user_record(raw, managed, d.extension, gs, &snapshot.groups);
            snapshot.users.entry(name.clone()).or_insert(rec);
        }
        snapshot.limitations = limitations(d);
        Ok(Read {
            snapshot,
            state,
            users,
            groups,
        })
    }
}

/// One line per field roster cannot manage on this server.
fn limitations(d: &Discovery) -> Vec<String> {
    let mut out = Vec::new();
    if !d.extension {
        for what in [
            "user class",
            "user authentication",
            "user identity_provider",
            "user credentials (password/token flags and rotation counter)",
            "user protected",
            "user secret hashes (the token hash has no place in the core schema)",
            "group description, roles, companies and pay_groups",
            "group protected",
            "roles (the role catalogue)",
            "role assignments",
            "applied digests (drift cannot be told from a change roster made)",
        ] {
            out.push(format!(
                "{what}: not stored, the SCIM server does not advertise roster's extension schemas ({USER_EXT}, {GROUP_EXT})"
            ));
        }
    }
    if !d.features.patch && !d.features.etag {
        out.push("concurrent edits: the server supports neither PATCH nor ETags, so a modify may overwrite a change made meanwhile".into());
    }
    if !d.features.filter {
        out.push("create retries: the server has no filter support, so a create whose outcome is unknown cannot be checked".into());
    }
    out
}

fn meta_from(ext: &Value) -> RecordMeta {
    RecordMeta {
        created_at: opt_str(&ext["createdAt"]),
        updated_at: opt_str(&ext["updatedAt"]),
        serial: ext["serial"].as_u64().unwrap_or(0),
        applied_digest: opt_str(&ext["appliedDigest"]),
        deactivated_at: opt_str(&ext["deactivatedAt"]),
        secrets: SecretHashes {
            password: opt_str(&ext["passwordHash"]),
            token: opt_str(&ext["tokenHash"]),
            generated_at: opt_str(&ext["secretsGeneratedAt"]),
        },
    }
}

fn group_record(raw: &Raw, managed: bool, extension: bool) -> Record<GroupSpec> {
    let ext = if extension {
        &raw.json[GROUP_EXT]
    } else {
        &Value::Null
    };
    let spec = GroupSpec {
        description: opt_str(&ext["description"]),
        roles: strings(&ext["roles"]),
        companies: strings(&ext["companies"]),
        pay_groups: strings(&ext["payGroups"]),
        protected: ext["protected"].as_bool().unwrap_or(false),
    };
    let mut meta = meta_from(ext);
    meta.secrets = SecretHashes::default();
    meta.deactivated_at = None;
    Record {
        spec,
        managed,
        meta,
    }
}

fn user_record(
    raw: &Raw,
    managed: bool,
    extension: bool,
    groups: BTreeSet<String>,
    all_groups: &BTreeMap<String, Record<GroupSpec>>,
) -> Record<UserSpec> {
    let j = &raw.json;
    let ext = if extension {
        &j[USER_EXT]
    } else {
        &Value::Null
    };
    // Membership of a managed group on the server is the truth; groups the
    // user names that are not on the server come from the extension.
    let mut groups = groups;
    groups.extend(
        strings(&ext["memberOf"])
            .into_iter()
            .filter(|g| !all_groups.get(g).is_some_and(|r| r.managed)),
    );
    let core_roles = strings(&j["roles"]);
    let own = strings(&ext["ownRoles"]);
    let group_roles: BTreeSet<String> = groups
        .iter()
        .filter_map(|g| all_groups.get(g))
        .flat_map(|g| g.spec.roles.iter().cloned())
        .collect();
    // A role on the server that no group explains is the user's own; an own
    // role removed on the server is gone (drift shows either way).
    let roles = core_roles
        .iter()
        .filter(|r| own.contains(*r) || !group_roles.contains(*r))
        .cloned()
        .collect();
    let emails = j["emails"].as_array().cloned().unwrap_or_default();
    let email = emails
        .iter()
        .find(|e| e["primary"].as_bool() == Some(true))
        .or_else(|| emails.first())
        .and_then(|e| opt_str(&e["value"]));
    let set_rights: BTreeMap<String, AccessLevel> = strings(&j["entitlements"])
        .iter()
        .filter_map(|e| {
            let (area, level) = e.rsplit_once(':')?;
            Some((area.to_owned(), parse_enum::<AccessLevel>(level)?))
        })
        .collect();
    let spec = UserSpec {
        targets: BTreeSet::new(),
        target_attrs: BTreeMap::new(),
        display_name: opt_str(&j["displayName"])
            .or_else(|| opt_str(&j["userName"]))
            .unwrap_or_default(),
        first_name: opt_str(&j["name"]["givenName"]),
        last_name: opt_str(&j["name"]["familyName"]),
        email,
        active: j["active"].as_bool().unwrap_or(true),
        class: ext["class"]
            .as_str()
            .and_then(parse_enum)
            .unwrap_or_default(),
        authentication: ext["authentication"]
            .as_str()
            .and_then(parse_enum)
            .unwrap_or_default(),
        identity_provider: opt_str(&ext["identityProvider"]),
        groups,
        roles,
        set_rights,
        credentials: CredentialSpec {
            password: ext["passwordEnabled"].as_bool().unwrap_or(false),
            token: ext["tokenEnabled"].as_bool().unwrap_or(false),
            rotation: ext["rotation"].as_u64().unwrap_or(0) as u32,
        },
        protected: ext["protected"].as_bool().unwrap_or(false),
    };
    Record {
        spec,
        managed,
        meta: meta_from(ext),
    }
}

/// Insert `key: value` unless the value is null.
fn put(m: &mut Map<String, Value>, key: &str, value: Value) {
    if !value.is_null() {
        m.insert(key.to_owned(), value);
    }
}

/// The bookkeeping fields; `appliedDigest` is the caller's (see `spec_digest`).
fn meta_ext(m: &mut Map<String, Value>, meta: &RecordMeta, serial: u64) {
    put(m, "appliedDigest", json!(meta.applied_digest));
    put(m, "serial", json!(serial));
    put(m, "createdAt", json!(meta.created_at));
    put(m, "updatedAt", json!(meta.updated_at));
}

/// Whether a user's change must make the password the server holds
/// unusable: the plan revokes it, or (a server without roster's extension,
/// where roster cannot know whether a password was issued) the user no
/// longer may have one: inactive, `sso`, or `credentials.password: false`.
fn revokes_password(secrets: &NewSecrets, record: &Record<UserSpec>, extension: bool) -> bool {
    let s = &record.spec;
    let may_have = s.active
        && s.credentials.password
        && s.authentication == crate::model::Authentication::Local;
    secrets.revoke_password || (!extension && !may_have)
}

/// The full SCIM representation of a managed user (without password).
fn user_json(
    name: &str,
    rec: &Record<UserSpec>,
    effective: &BTreeSet<String>,
    extension: bool,
    serial: u64,
) -> Value {
    let s = &rec.spec;
    let mut m = Map::new();
    let mut schemas = vec![json!(USER_SCHEMA)];
    put(&mut m, "userName", json!(name));
    if rec.managed {
        put(&mut m, "externalId", json!(format!("roster:user:{name}")));
    }
    put(&mut m, "displayName", json!(s.display_name));
    let mut n = Map::new();
    put(&mut n, "givenName", json!(s.first_name));
    put(&mut n, "familyName", json!(s.last_name));
    if !n.is_empty() {
        m.insert("name".into(), Value::Object(n));
    }
    if let Some(e) = &s.email {
        m.insert(
            "emails".into(),
            json!([{"value": e, "type": "work", "primary": true}]),
        );
    }
    m.insert("active".into(), json!(s.active));
    if !effective.is_empty() {
        m.insert("roles".into(), values(effective));
    }
    if !s.set_rights.is_empty() {
        let ents: BTreeSet<String> = s
            .set_rights
            .iter()
            .map(|(area, level)| format!("{area}:{}", enum_str(level)))
            .collect();
        m.insert("entitlements".into(), values(&ents));
    }
    if extension {
        schemas.push(json!(USER_EXT));
        let mut x = Map::new();
        put(&mut x, "class", json!(enum_str(&s.class)));
        put(&mut x, "authentication", json!(enum_str(&s.authentication)));
        put(&mut x, "identityProvider", json!(s.identity_provider));
        if !s.groups.is_empty() {
            put(&mut x, "memberOf", json!(s.groups));
        }
        if !s.roles.is_empty() {
            put(&mut x, "ownRoles", json!(s.roles));
        }
        put(&mut x, "passwordEnabled", json!(s.credentials.password));
        put(&mut x, "tokenEnabled", json!(s.credentials.token));
        put(&mut x, "rotation", json!(s.credentials.rotation));
        put(&mut x, "protected", json!(s.protected));
        put(&mut x, "passwordHash", json!(rec.meta.secrets.password));
        put(&mut x, "tokenHash", json!(rec.meta.secrets.token));
        put(
            &mut x,
            "secretsGeneratedAt",
            json!(rec.meta.secrets.generated_at),
        );
        put(&mut x, "deactivatedAt", json!(rec.meta.deactivated_at));
        meta_ext(&mut x, &rec.meta, serial);
        m.insert(USER_EXT.into(), Value::Object(x));
    }
    m.insert("schemas".into(), Value::Array(schemas));
    Value::Object(m)
}

/// The full SCIM representation of a managed group (members excluded).
fn group_json(name: &str, rec: &Record<GroupSpec>, extension: bool, serial: u64) -> Value {
    let s = &rec.spec;
    let mut m = Map::new();
    let mut schemas = vec![json!(GROUP_SCHEMA)];
    put(&mut m, "displayName", json!(name));
    if rec.managed {
        put(&mut m, "externalId", json!(format!("roster:group:{name}")));
    }
    if extension {
        schemas.push(json!(GROUP_EXT));
        let mut x = Map::new();
        put(&mut x, "description", json!(s.description));
        if !s.roles.is_empty() {
            put(&mut x, "roles", json!(s.roles));
        }
        if !s.companies.is_empty() {
            put(&mut x, "companies", json!(s.companies));
        }
        if !s.pay_groups.is_empty() {
            put(&mut x, "payGroups", json!(s.pay_groups));
        }
        put(&mut x, "protected", json!(s.protected));
        meta_ext(&mut x, &rec.meta, serial);
        m.insert(GROUP_EXT.into(), Value::Object(x));
    }
    m.insert("schemas".into(), Value::Array(schemas));
    Value::Object(m)
}

/// Attributes roster owns on a managed resource; the others are left alone.
const USER_ATTRS: &[&str] = &[
    "userName",
    "externalId",
    "displayName",
    "name",
    "emails",
    "active",
    "roles",
    "entitlements",
    USER_EXT,
];
const GROUP_ATTRS: &[&str] = &["displayName", "externalId", GROUP_EXT];

/// Minimal PATCH operations turning `current` into `desired` over `attrs`.
/// Complex attributes are patched per sub-attribute (so that removed
/// sub-attributes are removed), multi-valued ones replaced whole.
fn patch_ops(current: &Value, desired: &Value, attrs: &[&str]) -> Vec<Value> {
    let mut ops = Vec::new();
    for attr in attrs {
        let (cur, want) = (&current[*attr], &desired[*attr]);
        if cur == want {
            continue;
        }
        match (cur, want) {
            (Value::Object(c), Value::Object(w)) => {
                let sep = if attr.starts_with("urn:") { ":" } else { "." };
                let keys: BTreeSet<&String> = c.keys().chain(w.keys()).collect();
                for k in keys {
                    let path = format!("{attr}{sep}{k}");
                    match (c.get(k), w.get(k)) {
                        (a, Some(b)) if a != Some(b) => {
                            ops.push(json!({"op": "replace", "path": path, "value": b}))
                        }
                        (Some(_), None) => ops.push(json!({"op": "remove", "path": path})),
                        _ => {}
                    }
                }
            }
            (_, Value::Null) => ops.push(json!({"op": "remove", "path": attr})),
            _ => ops.push(json!({"op": "replace", "path": attr, "value": want})),
        }
    }
    ops
}

/// A `PutUser` awaiting the group writes: index, name, record, old name, secrets.
type UserChange = (usize, String, Record<UserSpec>, Option<String>, NewSecrets);

/// Where one change's outcome goes, and what the write was for.
#[derive(Debug, Clone)]
enum Target {
    /// Index into the outcomes.
    Change(usize),
    /// A write derived from other changes (effective roles), reported under this address.
    Derived(String),
}

impl ScimStore {
    #[allow(clippy::too_many_arguments)]
    /// Build the write that makes the server resource `current` (if any) into `desired`.
    fn write_op(
        &self,
        f: &Features,
        endpoint: &str,
        lookup: String,
        current: Option<&Raw>,
        desired: Value,
        attrs: &[&str],
        extra: Vec<Value>,
    ) -> Option<Op> {
        match current {
            None => Some(Op::Create {
                endpoint: endpoint.into(),
                body: desired,
                lookup,
            }),
            Some(raw) => {
                let path = format!("{endpoint}/{}", raw.id);
                let etag = if f.etag { raw.etag.clone() } else { None };
                if f.patch {
                    let mut ops = patch_ops(&raw.json, &desired, attrs);
                    ops.extend(extra);
                    (!ops.is_empty()).then_some(Op::Patch { path, ops, etag })
                } else {
                    let mut body = desired;
                    for op in extra {
                        if let (Some(p), Some(v)) = (op["path"].as_str(), op.get("value")) {
                            body[p] = v.clone();
                        }
                    }
                    // Keep what roster does not own (e.g. members of a group).
                    if let Some(members) = raw.json.get("members") {
                        body["members"] = members.clone();
                    }
                    Some(Op::Put { path, body, etag })
                }
            }
        }
    }

    fn do_commit(&self, changes: ChangeSet) -> Result<CommitReport, StoreError> {
        let read = self.read_all()?;
        let d = self.discover()?;
        let f = &d.features;
        let found = read.snapshot.version_or_new();
        let base = &changes.base;
        if !base.lineage.is_empty() && base.lineage != found.lineage {
            return Err(StoreError::LineageMismatch {
                expected: base.lineage.clone(),
                found: if found.lineage.is_empty() {
                    "(none: the store is empty)".into()
                } else {
                    found.lineage
                },
            });
        }
        if base.serial != found.serial {
            return Err(StoreError::Stale {
                expected: base.serial,
                found: found.serial,
            });
        }
        let serial = found.serial + 1;
        let lineage = if found.lineage.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            found.lineage.clone()
        };
        let mut outcomes: Vec<ChangeOutcome> = Vec::new();
        let mut roles = read.state.roles.clone();
        let mut assignments = read.state.assignments.clone();
        let managed_groups = |s: &Snapshot| -> BTreeMap<String, Record<GroupSpec>> {
            s.groups
                .iter()
                .filter(|(_, r)| r.managed)
                .map(|(n, r)| (n.clone(), r.clone()))
                .collect()
        };
        let mut groups = managed_groups(&read.snapshot);
        let mut users: BTreeMap<String, Record<UserSpec>> = read
            .snapshot
            .users
            .iter()
            .filter(|(_, r)| r.managed)
            .map(|(n, r)| (n.clone(), r.clone()))
            .collect();
        let mut user_ids: BTreeMap<String, String> = read
            .users
            .iter()
            .map(|(n, r)| (n.clone(), r.id.clone()))
            .collect();
        let mut group_ids: BTreeMap<String, String> = read
            .groups
            .iter()
            .map(|(n, r)| (n.clone(), r.id.clone()))
            .collect();

        let no_ext = |what: &str| {
            format!(
                "not stored: this SCIM server does not advertise roster's extension schema, so {what} cannot be kept"
            )
        };
        let refuse_unmanaged = |kind: &str, name: &str| {
            format!(
                "an unmanaged {kind} named {name:?} exists on the server; roster never modifies it"
            )
        };

        // Catalogue, groups and deletions first; users after groups so that
        // effective roles use the new groups.
        let mut group_ops: Vec<(Target, Option<String>, Op)> = Vec::new();
        let mut user_changes: Vec<UserChange> = Vec::new();
        let mut user_deletes: Vec<(usize, String)> = Vec::new();
        for change in changes.changes {
            let idx = outcomes.len();
            outcomes.push(ChangeOutcome {
                address: change.address(),
                error: None,
            });
            match change {
                Change::PutRole { name, mut record } => {
                    if !d.extension {
                        outcomes[idx].error = Some(no_ext("the role catalogue"));
                        continue;
                    }
                    record.meta.serial = serial;
                    roles.insert(name, record);
                }
                Change::PutAssignment { id, mut record } => {
                    if !d.extension {
                        outcomes[idx].error = Some(no_ext("role assignments"));
                        continue;
                    }
                    record.meta.serial = serial;
                    assignments.insert(id, record);
                }
                Change::PutGroup { name, mut record } => {
                    if read.snapshot.groups.get(&name).is_some_and(|g| !g.managed) {
                        outcomes[idx].error = Some(refuse_unmanaged("group", &name));
                        continue;
                    }
                    record.meta.serial = serial;
                    let desired = group_json(&name, &record, d.extension, serial);
                    let lookup = format!("displayName eq {}", quote(&name));
                    if let Some(op) = self.write_op(
                        f,
                        "/Groups",
                        lookup,
                        read.groups.get(&name),
                        desired,
                        GROUP_ATTRS,
                        Vec::new(),
                    ) {
                        group_ops.push((Target::Change(idx), Some(name.clone()), op));
                    }
                    if record.managed {
                        groups.insert(name, record);
                    } else {
                        groups.remove(&name);
                    }
                }
                Change::PutUser {
                    name,
                    record,
                    renamed_from,
                    secrets,
                } => user_changes.push((idx, name, record, renamed_from, secrets)),
                Change::PutTargetRecord { .. } | Change::DeleteTargetRecord { .. } => {
                    outcomes[idx].error = Some("a SCIM store keeps no target records".to_string());
                }
                Change::Delete { kind, name } => match kind {
                    Kind::Role => {
                        roles.remove(&name);
                    }
                    Kind::RoleAssignment => {
                        assignments.remove(&name);
                    }
                    Kind::Group => {
                        if let Some(raw) = read.groups.get(&name) {
                            let etag = if f.etag { raw.etag.clone() } else { None };
                            let path = format!("/Groups/{}", raw.id);
                            group_ops.push((Target::Change(idx), None, Op::Delete { path, etag }));
                        } else if read.snapshot.groups.contains_key(&name) {
                            outcomes[idx].error = Some(refuse_unmanaged("group", &name));
                        }
                        groups.remove(&name);
                        group_ids.remove(&name);
                    }
                    Kind::User => user_deletes.push((idx, name)),
                },
            }
        }

        let apply = |outcomes: &mut Vec<ChangeOutcome>, target: &Target, r: &OpResult| {
            if let Err(e) = r {
                let msg = e.to_string();
                match target {
                    Target::Change(i) => outcomes[*i].error = Some(msg),
                    Target::Derived(address) => outcomes.push(ChangeOutcome {
                        address: address.clone(),
                        error: Some(msg),
                    }),
                }
            }
        };

        // Groups.
        let (targets, ops): (Vec<_>, Vec<_>) =
            group_ops.into_iter().map(|(t, n, op)| ((t, n), op)).unzip();
        let results = self.http.run(ops, f);
        for ((target, name), r) in targets.iter().zip(&results) {
            apply(&mut outcomes, target, r);
            match (name, r) {
                (Some(n), Ok(Some(id))) => {
                    group_ids.insert(n.clone(), id.clone());
                }
                (Some(n), Err(_)) if !read.groups.contains_key(n) => {
                    groups.remove(n);
                }
                _ => {}
            }
        }

        // Users.
        let mut user_ops: Vec<(Target, Option<String>, Op)> = Vec::new();
        let mut touched: BTreeSet<String> = BTreeSet::new();
        for (idx, name) in user_deletes {
            touched.insert(name.clone());
            if let Some(raw) = read.users.get(&name) {
                let etag = if f.etag { raw.etag.clone() } else { None };
                let path = format!("/Users/{}", raw.id);
                user_ops.push((Target::Change(idx), None, Op::Delete { path, etag }));
            } else if read.snapshot.users.contains_key(&name) {
                outcomes[idx].error = Some(refuse_unmanaged("user", &name));
            }
            users.remove(&name);
            user_ids.remove(&name);
        }
        for (idx, name, mut record, renamed_from, secrets) in user_changes {
            touched.insert(name.clone());
            if read.snapshot.users.get(&name).is_some_and(|u| !u.managed) {
                outcomes[idx].error = Some(refuse_unmanaged("user", &name));
                continue;
            }
            let mut current = read.users.get(&name);
            if let Some(old) = &renamed_from {
                touched.insert(old.clone());
                if current.is_none() {
                    current = read.users.get(old);
                }
                users.remove(old);
                if let Some(id) = user_ids.remove(old) {
                    user_ids.insert(name.clone(), id);
                }
            }
            record.meta.serial = serial;
            let effective = effective_roles(&record.spec, &groups);
            let mut desired = user_json(&name, &record, &effective, d.extension, serial);
            let mut extra = Vec::new();
            if let Some(pw) = &secrets.password {
                if current.is_none() {
                    desired["password"] = json!(pw.expose());
                } else {
                    extra.push(json!({"op": "replace", "path": "password", "value": pw.expose()}));
                }
            } else if current.is_some() && revokes_password(&secrets, &record, d.extension) {
                // Revocation must revoke where the secret lives: the server
                // keeps the issued password, so it is replaced by a random
                // value nobody ever sees (generated, sent, dropped). A server
                // that refuses the write fails the change (FAILED, not ok).
                let unknowable =
                    crate::secret::generate_password(&Default::default()).map_err(|e| {
                        StoreError::Remote(format!("generating a random password: {e}"))
                    })?;
                extra.push(
                    json!({"op": "replace", "path": "password", "value": unknowable.expose()}),
                );
            }
            let lookup = format!("userName eq {}", quote(&name));
            if let Some(op) =
                self.write_op(f, "/Users", lookup, current, desired, USER_ATTRS, extra)
            {
                user_ops.push((Target::Change(idx), Some(name.clone()), op));
            }
            if record.managed {
                users.insert(name, record);
            } else {
                users.remove(&name);
            }
        }
        // Users whose effective roles moved because a group's roles did.
        for (name, rec) in &users {
            if touched.contains(name) {
                continue;
            }
            let Some(raw) = read.users.get(name) else {
                continue;
            };
            let effective = effective_roles(&rec.spec, &groups);
            if strings(&raw.json["roles"]) != effective {
                let desired = json!({"roles": values(&effective)});
                let ops = if effective.is_empty() {
                    vec![json!({"op": "remove", "path": "roles"})]
                } else {
                    vec![json!({"op": "replace", "path": "roles", "value": desired["roles"]})]
                };
                let path = format!("/Users/{}", raw.id);
                let etag = if f.etag { raw.etag.clone() } else { None };
                let op = if f.patch {
                    Op::Patch { path, ops, etag }
                } else {
                    let mut body = raw.json.clone();
                    body["roles"] = desired["roles"].clone();
                    if let Some(m) = body.as_object_mut() {
                        m.remove("meta");
                    }
                    Op::Put { path, body, etag }
                };
                user_ops.push((Target::Derived(format!("user.{name}")), None, op));
            }
        }
        let (targets, ops): (Vec<_>, Vec<_>) =
            user_ops.into_iter().map(|(t, n, op)| ((t, n), op)).unzip();
        let results = self.http.run(ops, f);
        for ((target, name), r) in targets.iter().zip(&results) {
            apply(&mut outcomes, target, r);
            if let (Some(n), Ok(Some(id))) = (name, r) {
                user_ids.insert(n.clone(), id.clone());
            }
        }

        // Memberships: each managed group holds exactly the managed users that
        // name it; unmanaged members are left alone.
        let managed_ids: BTreeSet<&String> = read.users.values().map(|r| &r.id).collect();
        let mut member_ops: Vec<(Target, Option<String>, Op)> = Vec::new();
        for (gname, gid) in &group_ids {
            if !groups.contains_key(gname) {
                continue;
            }
            let want: BTreeSet<String> = users
                .iter()
                .filter(|(_, u)| u.spec.groups.contains(gname))
                .filter_map(|(n, _)| user_ids.get(n).cloned())
                .collect();
            let have: BTreeSet<String> = read
                .groups
                .get(gname)
                .map(|r| strings(&r.json["members"]))
                .unwrap_or_default();
            let add: Vec<Value> = want
                .difference(&have)
                .map(|id| json!({"value": id}))
                .collect();
            let remove: Vec<&String> = have
                .iter()
                .filter(|id| !want.contains(*id) && managed_ids.contains(id))
                .collect();
            if add.is_empty() && remove.is_empty() {
                continue;
            }
            let path = format!("/Groups/{gid}");
            let op = if f.patch {
                let mut ops = Vec::new();
                if !add.is_empty() {
                    ops.push(json!({"op": "add", "path": "members", "value": add}));
                }
                for id in remove {
                    ops.push(
                        json!({"op": "remove", "path": format!("members[value eq {}]", quote(id))}),
                    );
                }
                Op::Patch {
                    path,
                    ops,
                    etag: None,
                }
            } else {
                let current = self.http.get(&path).map_err(|e| self.err(e))?;
                let mut body = current.body;
                let keep: Vec<Value> = have
                    .iter()
                    .filter(|id| !managed_ids.contains(id))
                    .map(|id| json!({"value": id}))
                    .chain(want.iter().map(|id| json!({"value": id})))
                    .collect();
                body["members"] = Value::Array(keep);
                if let Some(m) = body.as_object_mut() {
                    m.remove("meta");
                }
                Op::Put {
                    path,
                    body,
                    etag: current.etag,
                }
            };
            member_ops.push((
                Target::Derived(format!("group.{gname} (members)")),
                None,
                op,
            ));
        }
        let (targets, ops): (Vec<_>, Vec<_>) = member_ops
            .into_iter()
            .map(|(t, n, op)| ((t, n), op))
            .unzip();
        let results = self.http.run(ops, f);
        for ((target, _), r) in targets.iter().zip(&results) {
            apply(&mut outcomes, target, r);
        }

        // The state group: version, catalogue, history — the commit point.
        let mut history = read.state.history.clone();
        if let Some(mut audit) = changes.audit {
            audit.serial = serial;
            history.push(audit);
        }
        if history.len() > HISTORY_KEEP {
            history.drain(..history.len() - HISTORY_KEEP);
        }
        self.write_state(
            &d,
            &read.state,
            &lineage,
            serial,
            &roles,
            &assignments,
            &history,
        )?;
        Ok(CommitReport {
            version: Version { lineage, serial },
            outcomes,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn write_state(
        &self,
        d: &Discovery,
        state: &StateRes,
        lineage: &str,
        serial: u64,
        roles: &BTreeMap<String, Record<RoleSpec>>,
        assignments: &BTreeMap<String, Record<AssignmentSpec>>,
        history: &[AuditEntry],
    ) -> Result<(), StoreError> {
        let mut body = json!({
            "schemas": [GROUP_SCHEMA],
            "displayName": STATE_GROUP,
            "externalId": format!("roster:state:{lineage}:{serial}"),
        });
        if d.extension {
            let catalog = json!({"roles": roles, "assignments": assignments});
            body["schemas"] = json!([GROUP_SCHEMA, GROUP_EXT]);
            body[GROUP_EXT] = json!({
                "description": "roster's store state: do not edit",
                "catalog": catalog.to_string(),
                "history": serde_json::to_string(history).unwrap_or_else(|_| "[]".into()),
                "serial": serial,
            });
        }
        let result = match &state.raw {
            None => self
                .http
                .create(
                    "/Groups",
                    &body,
                    &format!("displayName eq {}", quote(STATE_GROUP)),
                )
                .map(|_| ()),
            Some(raw) => {
                let path = format!("/Groups/{}", raw.id);
                let etag = raw.etag.as_deref();
                if d.features.patch {
                    let ops = patch_ops(&raw.json, &body, &["externalId", GROUP_EXT]);
                    let patch = json!({"schemas": [http::PATCH_OP], "Operations": ops});
                    self.http
                        .send("PATCH", &path, Some(&patch), etag)
                        .map(|_| ())
                } else {
                    self.http.send("PUT", &path, Some(&body), etag).map(|_| ())
                }
            }
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.status == Some(412) => {
                let now = self.read_state().map(|s| s.serial).unwrap_or(state.serial);
                Err(StoreError::Stale {
                    expected: state.serial,
                    found: now,
                })
            }
            Err(e) => Err(StoreError::Remote(format!(
                "SCIM server {}: the changes were sent but the new store version was not recorded ({e}); plan and apply again to converge",
                self.location
            ))),
        }
    }

    fn try_lock(&self, owner: &LockOwner) -> Result<Result<String, Raw>, StoreError> {
        let body = json!({
            "schemas": [USER_SCHEMA],
            "userName": LOCK_USER,
            "externalId": "roster:lock",
            "active": false,
            "displayName": serde_json::to_string(owner).unwrap_or_default(),
        });
        let lookup = format!("userName eq {}", quote(LOCK_USER));
        match self.http.send("POST", "/Users", Some(&body), None) {
            Ok(r) => opt_str(&r.body["id"])
                .map(Ok)
                .ok_or_else(|| corrupt(&self.location, "the lock user was created without an id")),
            Err(e) if e.status == Some(409) || e.status.is_none() => {
                let found = self.http.find("/Users", &lookup).map_err(|e| self.err(e))?;
                match found.into_iter().find_map(raw_of) {
                    Some(raw) => {
                        // After a transport error the lock may be ours.
                        if e.status.is_none() && raw.json["displayName"] == body["displayName"] {
                            return Ok(Ok(raw.id));
                        }
                        Ok(Err(raw))
                    }
                    None if e.status.is_none() => Err(self.err(e)),
                    None => Ok(Err(Raw {
                        id: String::new(),
                        etag: None,
                        json: Value::Null,
                    })),
                }
            }
            Err(e) => Err(self.err(e)),
        }
    }
}

fn lock_owner(raw: &Raw) -> Option<LockOwner> {
    raw.json["displayName"]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
}

fn older_than(since: &str, ttl: Duration) -> bool {
    let Ok(t) = time::OffsetDateTime::parse(since, &time::format_description::well_known::Rfc3339)
    else {
        return false;
    };
    let age = time::OffsetDateTime::now_utc() - t;
    age > time::Duration::try_from(ttl).unwrap_or(time::Duration::MAX)
}

impl StateStore for ScimStore {
    fn info(&self) -> StoreInfo {
        StoreInfo {
            kind: "scim".into(),
            location: self.location.clone(),
        }
    }

    fn read(&self) -> Result<Snapshot, StoreError> {
        Ok(self.read_all()?.snapshot)
    }

    fn lock(
        &self,
        owner: &LockOwner,
        timeout: Duration,
    ) -> Result<Box<dyn StoreLock + '_>, StoreError> {
        self.discover()?;
        let deadline = Instant::now() + timeout;
        loop {
            match self.try_lock(owner)? {
                Ok(id) => return Ok(Box::new(ScimLock { store: self, id })),
                Err(held) => {
                    let holder = lock_owner(&held);
                    let created = held.json["meta"]["created"].as_str().unwrap_or("");
                    if !held.id.is_empty() && older_than(created, self.options.lock_ttl) {
                        let who = holder
                            .as_ref()
                            .map_or_else(|| "an unknown holder".to_string(), |h| h.to_string());
                        tracing::warn!("taking over the abandoned SCIM lock held by {who}");
                        let path = format!("/Users/{}", held.id);
                        match self.http.send("DELETE", &path, None, held.etag.as_deref()) {
                            Ok(_) => continue,
                            Err(e) if e.status == Some(404) || e.status == Some(412) => continue,
                            Err(e) => return Err(self.err(e)),
                        }
                    }
                    if Instant::now() >= deadline {
                        return Err(match holder {
                            Some(holder) => StoreError::Locked { holder },
                            None => StoreError::LockedUnknown,
                        });
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    std::thread::sleep(Duration::from_millis(100).min(left));
                }
            }
        }
    }

    fn commit(
        &self,
        _lock: &dyn StoreLock,
        changes: ChangeSet,
    ) -> Result<CommitReport, StoreError> {
        self.do_commit(changes)
    }

    fn history(&self) -> Result<Vec<AuditEntry>, StoreError> {
        self.discover()?;
        Ok(self.read_state()?.history)
    }
}

/// Current time, exposed for callers that stamp lock owners.
pub fn lock_owner_now() -> LockOwner {
    LockOwner {
        pid: std::process::id(),
        host: gethostname::gethostname().to_string_lossy().into_owned(),
        since: now_rfc3339(),
    }
}
