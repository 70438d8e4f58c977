//! The state store: where roster keeps (or finds) the actual state.
//!
//! One trait, [`StateStore`], several backends chosen by URL (see [`open`]):
//! `file:PATH` (the embedded default), `scim+http(s)://…` and `etcd://…`.
//! Every backend passes the same test suite (`tests/common/store_suite.rs`).
//!
//! A store hands out a [`Snapshot`] at a [`Version`], takes an exclusive lock,
//! and commits a [`ChangeSet`] made against a version, refusing a stale one.

pub mod etcd;
pub mod file;
pub mod scim;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::{AssignmentSpec, GroupSpec, Kind, RoleSpec, UserSpec};
use crate::secret::Secret;
use crate::target::{TargetRecord, TargetState};

/// The store URL used when neither `--store` nor `ROSTER_STORE` is given.
pub const DEFAULT_STORE_URL: &str = "file:.roster/state.json";

/// What a store is, for saved plans and messages. Never holds credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreInfo {
    /// `file`, `scim` or `etcd`.
    pub kind: String,
    /// Where it is: the URL without any credentials.
    pub location: String,
}

/// The version a snapshot was read at: the store's lineage (a uuid chosen when
/// the store was first written) and its serial (raised by every commit).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Version {
    pub lineage: String,
    pub serial: u64,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lineage {} serial {}", self.lineage, self.serial)
    }
}

/// Hashes of a user's current secrets (argon2id PHC strings). Never rendered.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretHashes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// RFC 3339 time the current secrets were generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_at: Option<String>,
}

impl SecretHashes {
    pub fn is_empty(&self) -> bool {
        self.password.is_none() && self.token.is_none()
    }
}

impl fmt::Debug for SecretHashes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretHashes")
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .field("generated_at", &self.generated_at)
            .finish()
    }
}

/// Bookkeeping kept beside each stored resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordMeta {
    /// RFC 3339 creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// RFC 3339 time of the last change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// The store serial of the last change.
    #[serde(default)]
    pub serial: u64,
    /// sha256 (hex) of the spec roster last wrote; a spec that no longer
    /// matches it was changed outside roster (drift).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_digest: Option<String>,
    /// Users only: RFC 3339 time of deactivation, while deactivated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deactivated_at: Option<String>,
    /// Users only: hashes of the current secrets.
    #[serde(default, skip_serializing_if = "SecretHashes::is_empty")]
    pub secrets: SecretHashes,
}

/// One stored resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record<T> {
    /// The resource's fields as the store holds them now.
    pub spec: T,
    /// Whether roster manages it. Unmanaged resources are counted, never touched.
    pub managed: bool,
    #[serde(default)]
    pub meta: RecordMeta,
}

/// Everything a store holds, at one version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: Option<Version>,
    #[serde(default)]
    pub roles: BTreeMap<String, Record<RoleSpec>>,
    #[serde(default)]
    pub groups: BTreeMap<String, Record<GroupSpec>>,
    #[serde(default)]
    pub users: BTreeMap<String, Record<UserSpec>>,
    /// Keyed by [`AssignmentSpec::id`].
    #[serde(default)]
    pub assignments: BTreeMap<String, Record<AssignmentSpec>>,
    /// What this store cannot hold (e.g. a SCIM server without roster's
    /// extension): one line each, shown in every plan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limitations: Vec<String>,
    /// Per target: what roster put there (remote ids, read-back attributes).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub targets: BTreeMap<String, TargetState>,
}

impl Snapshot {
    /// The version a commit against this snapshot must name as its base.
    pub fn version_or_new(&self) -> Version {
        self.version.clone().unwrap_or(Version {
            lineage: String::new(),
            serial: 0,
        })
    }
}

/// Plaintext secrets that a store must set itself (a SCIM server keeps its own
/// password). Stores that keep hashes only ignore them.
#[derive(Debug, Default)]
pub struct NewSecrets {
    pub password: Option<Secret>,
    pub token: Option<Secret>,
    /// The user's password is revoked: a store that holds passwords itself
    /// (SCIM) must make the one it holds unusable (replace it with an
    /// unknowable random value), not only forget its hash.
    pub revoke_password: bool,
}

/// One change in a commit.
#[derive(Debug)]
pub enum Change {
    PutRole {
        name: String,
        record: Record<RoleSpec>,
    },
    PutGroup {
        name: String,
        record: Record<GroupSpec>,
    },
    PutUser {
        name: String,
        record: Record<UserSpec>,
        /// The user's old name when this change renames it.
        renamed_from: Option<String>,
        secrets: NewSecrets,
    },
    PutAssignment {
        id: String,
        record: Record<AssignmentSpec>,
    },
    Delete {
        kind: Kind,
        name: String,
    },
    /// Record what roster put on a target (`id` from [`crate::target::record_id`]).
    PutTargetRecord {
        target: String,
        id: String,
        record: TargetRecord,
    },
    /// Forget an object on a target (deleted there, or the target is gone).
    DeleteTargetRecord {
        target: String,
        id: String,
    },
}

impl Change {
    /// The address of the resource it changes, e.g. `user.qlearsite`.
    pub fn address(&self) -> String {
        match self {
            Change::PutRole { name, .. } => format!("role.{name}"),
            Change::PutGroup { name, .. } => format!("group.{name}"),
            Change::PutUser { name, .. } => format!("user.{name}"),
            Change::PutAssignment { id, .. } => format!("role_assignment.{id}"),
            Change::Delete { kind, name } => format!("{}.{name}", kind.as_str()),
            Change::PutTargetRecord { target, id, .. }
            | Change::DeleteTargetRecord { target, id } => {
                format!("{}@{target}", id.replacen('/', ".", 1))
            }
        }
    }
}

/// Who ran an apply, recorded in the store's history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub serial: u64,
    pub at: String,
    pub user: String,
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_run: Option<String>,
    pub plan_digest: String,
    pub outcome: String,
}

/// Changes made against one version, committed under the lock.
#[derive(Debug)]
pub struct ChangeSet {
    /// The version the changes were planned against; a store at another version refuses them.
    pub base: Version,
    /// In dependency order: roles, groups, users, assignments; deletions in reverse.
    pub changes: Vec<Change>,
    /// RFC 3339 time of this apply.
    pub at: String,
    pub audit: Option<AuditEntry>,
}

/// What happened to one change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeOutcome {
    pub address: String,
    /// `None` when it was applied; the reason when it failed.
    pub error: Option<String>,
}

/// The result of a commit: the new version and each change's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitReport {
    pub version: Version,
    pub outcomes: Vec<ChangeOutcome>,
}

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockOwner {
    pub pid: u32,
    pub host: String,
    /// RFC 3339 time the lock was taken.
    pub since: String,
}

impl fmt::Display for LockOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} on {} since {}", self.pid, self.host, self.since)
    }
}

/// A held lock; dropping it releases the lock.
pub trait StoreLock: fmt::Debug {}

/// Errors from any store. Messages never contain secrets or credentials.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is shown without user info or query (see [`redact_urls`]).
    #[error("invalid store URL {:?}: {reason}", redact_urls(url))]
    InvalidUrl { url: String, reason: String },
    #[error("the store is locked by {holder}")]
    Locked { holder: LockOwner },
    #[error("the store is locked by another apply (holder unknown)")]
    LockedUnknown,
    #[error(
        "the store changed since this plan was made: serial {found}, plan made at serial {expected}"
    )]
    Stale { expected: u64, found: u64 },
    #[error("the store's lineage is {found}, but the plan was made against lineage {expected}")]
    LineageMismatch { expected: String, found: String },
    /// The cause is part of the message (not a `source`), so that error
    /// chains print it once.
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{what} is corrupt: {detail}")]
    Corrupt { what: String, detail: String },
    #[error("{0}")]
    Remote(String),
}

/// A state store backend.
pub trait StateStore: Send + Sync {
    /// What and where the store is.
    fn info(&self) -> StoreInfo;
    /// Read everything at one consistent version. Never writes.
    fn read(&self) -> Result<Snapshot, StoreError>;
    /// Take the exclusive apply lock, waiting up to `timeout`.
    fn lock(
        &self,
        owner: &LockOwner,
        timeout: Duration,
    ) -> Result<Box<dyn StoreLock + '_>, StoreError>;
    /// Commit changes made against `changes.base` while holding `lock`.
    /// Refuses with [`StoreError::Stale`] when the store has moved on.
    fn commit(&self, lock: &dyn StoreLock, changes: ChangeSet) -> Result<CommitReport, StoreError>;
    /// The audit trail, oldest first.
    fn history(&self) -> Result<Vec<AuditEntry>, StoreError>;
}

/// A JSON decoding error of stored data, fit for a message: serde quotes the
/// offending value (`invalid type: string "…", expected u64`, ``unknown
/// variant `…` ``, ``unknown field `…` ``), and in a store that value can be a
/// secret hash placed in another field. Every double-quoted part is replaced
/// by `"…"` and every backtick-quoted part by `` `…` ``, except the names
/// serde takes from roster's own types: what follows `expected`, and the
/// field of `missing field` / `duplicate field`. Line and column are kept.
pub fn redact_json_error(e: &serde_json::Error) -> String {
    redact_quoted(&e.to_string())
}

fn redact_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '"' {
            let mut escaped = false;
            for d in chars.by_ref() {
                if d == '"' && !escaped {
                    break;
                }
                escaped = d == '\\' && !escaped;
            }
            out.push_str("…\"");
        } else if c == '`' {
            let before = &out[..out.len() - 1];
            let ours = before.contains("expected")
                || before.ends_with("missing field ")
                || before.ends_with("duplicate field ");
            let mut quoted = String::new();
            for d in chars.by_ref() {
                if d == '`' {
                    break;
                }
                quoted.push(d);
            }
            out.push_str(if ours { &quoted } else { "…" });
            out.push('`');
        }
    }
    out
}

/// `text` with every URL's user info and query string (and fragment)
/// replaced by `***`: `scim+https://admin:hunter2@host/x?token=t` becomes
/// `scim+https://***@host/x?***`. A URL ends at whitespace or a quote,
/// bracket or angle bracket; its user info is everything before the last `@`
/// (a password may hold `/`).
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || "\"'`<>(){}".contains(c))
            .unwrap_or(tail.len());
        let (url, after) = tail.split_at(end);
        let (main, query) = match url.find(['?', '#']) {
            Some(q) => (&url[..q], Some(&url[q..q + 1])),
            None => (url, None),
        };
        match main.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&main[at..]);
            }
            None => out.push_str(main),
        }
        if let Some(sep) = query {
            out.push_str(sep);
            out.push_str("***");
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// sha256 (hex) of a spec as roster wrote it: the `applied_digest` a store
/// keeps so that the planner can tell drift from its own changes.
pub fn spec_digest<T: Serialize>(spec: &T) -> String {
    use sha2::{Digest, Sha256};
    let bytes = serde_json::to_vec(spec).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

/// Options for opening a store beyond its URL.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Allow `scim+http://` to hosts other than loopback.
    pub allow_insecure_http: bool,
    /// A PEM CA bundle to trust for `https` stores.
    pub ca_file: Option<std::path::PathBuf>,
    /// A PEM client certificate for `etcd+https` stores that require one.
    pub client_cert: Option<std::path::PathBuf>,
    /// The PEM private key of `client_cert`.
    pub client_key: Option<std::path::PathBuf>,
}

/// Open the store a URL names.
pub fn open(url: &str, options: &OpenOptions) -> Result<Box<dyn StateStore>, StoreError> {
    if url.starts_with("scim+http://") || url.starts_with("scim+https://") {
        return Ok(Box::new(scim::ScimStore::open(url, options)?));
    }
    if let Some(path) = url.strip_prefix("file:") {
        if path.is_empty() {
            return Err(StoreError::InvalidUrl {
                url: url.into(),
                reason: "the path is empty".into(),
            });
        }
        return Ok(Box::new(file::FileStore::new(path)));
    }
    if url.starts_with("etcd://") || url.starts_with("etcd+https://") {
        return Ok(Box::new(etcd::EtcdStore::open(url, options)?));
    }
    Err(StoreError::InvalidUrl {
        url: url.into(),
        reason: "expected file:PATH, scim+https://HOST/PATH or etcd://HOST:PORT/PREFIX".into(),
    })
}

#[cfg(test)]
mod redact_tests {
    #[test]
    fn backtick_quoted_stored_values_are_redacted_in_errors() {
        const HASH: &str = "$argon2id$v=19$m=8192,t=1,p=1$c2FsdHNhbHQ$aGFzaA";
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct S {
            class: crate::model::Kind,
            n: u32,
        }
        for json in [
            format!(r#"{{"class": "{HASH}", "n": 1}}"#),
            format!(r#"{{"{HASH}": 1}}"#),
            format!(r#"{{"class": "role", "n": 1, "{HASH}": 2}}"#),
        ] {
            let e = serde_json::from_str::<S>(&json).unwrap_err();
            let msg = super::redact_json_error(&e);
            assert!(!msg.contains("argon2"), "{msg}");
            assert!(msg.contains("`…`"), "{msg}");
            assert!(msg.contains("line 1 column"), "{msg}");
        }
        let e = serde_json::from_str::<S>(r#"{"class": "role"}"#).unwrap_err();
        assert!(
            super::redact_json_error(&e).contains("missing field `n`"),
            "{e}"
        );
        let e = serde_json::from_str::<S>(&format!(r#"{{"{HASH}": 1}}"#)).unwrap_err();
        assert!(
            super::redact_json_error(&e).contains("expected `class` or `n`"),
            "{e}"
        );
    }

    #[test]
    fn user_info_and_query_strings_of_urls_are_redacted_in_messages() {
        for (text, want) in [
            (
                "invalid store URL \"scim+https://admin:hunter2@scim.example/v2\": bad",
                "invalid store URL \"scim+https://***@scim.example/v2\": bad",
            ),
            (
                "etcd://root:pa/ss@10.0.0.1:2379/roster is bad",
                "etcd://***@10.0.0.1:2379/roster is bad",
            ),
            (
                "error sending request for url (https://h/x?token=abc&y=1)",
                "error sending request for url (https://h/x?***)",
            ),
            ("https://h:99999/#frag", "https://h:99999/#***"),
            ("no url here", "no url here"),
        ] {
            assert_eq!(super::redact_urls(text), want);
        }
    }

    #[test]
    fn json_errors_of_stored_data_lose_their_quoted_values() {
        let e =
            serde_json::from_str::<u64>(r#""$argon2id$v=19$m=8192,t=1,p=1$c2FsdHNhbHQ$aGFzaA""#)
                .unwrap_err();
        let msg = super::redact_json_error(&e);
        assert!(!msg.contains("argon2"), "{msg}");
        assert!(
            msg.starts_with("invalid type: string \"…\", expected u64"),
            "{msg}"
        );
        assert!(msg.contains("line 1 column"), "{msg}");
    }
}
