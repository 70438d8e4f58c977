//! Targets: the systems roster provisions access into (a SCIM service
//! provider, a connector program), as opposed to the state store, which is
//! roster's own memory.
//!
//! Every target speaks the same small, generic interface, [`Target`]: it
//! lists the objects it can see, makes one object match a set of attributes
//! (`ensure`), deletes one, and sets or generates a secret. Objects are users
//! and groups, identified by their *key* (roster's name) and the target's own
//! opaque *ref* (a SCIM id, a DN, a role name). Attributes are the generic
//! projection roster computes from the config ([`project`]); a target maps
//! them to its own schema and back, so the planner compares like with like.
//!
//! The generic attribute names (see `docs/connector-protocol.md`):
//!
//! | kind | attribute | value |
//! |---|---|---|
//! | user | `display_name`, `first_name`, `last_name`, `email` | string |
//! | user | `active` | bool |
//! | user | `groups` | roster group names the user is in (on this target) |
//! | user | `roles` | effective role names (direct, through groups and assignments) |
//! | user | `permissions` | effective permissions |
//! | user | `set_rights` | `{AREA: none\|read\|write\|full}` |
//! | user | `credentials` | the secret kinds the user holds: `password`, `token` |
//! | user | `class`, `authentication` | as in the config |
//! | user | anything from the user's `target_attrs.TARGET` | as written |
//! | group | `description` | string |
//! | group | `members` | user keys (only where the target keeps membership on groups) |
//! | group | `roles` | role names |

pub mod compare;
pub mod connector;
pub mod plan;
pub mod project;
pub mod run;

pub use project::insecure_remote_http;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::secret::{Secret, SecretKind};
use crate::store::SecretHashes;

/// What roster knows of one object it manages on a target, kept in the state
/// store: planning needs nothing else from the target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRecord {
    /// The target's id; `None` while a create was sent but its result is
    /// not recorded (a crash in between): the next plan finds the object by
    /// its key.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub remote_ref: Option<String>,
    /// What the target held after roster's last write (read back).
    #[serde(default)]
    pub attrs: Attrs,
    /// Attributes the target did not keep after a write (it computes them,
    /// or drops them): never proposed again.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub not_kept: BTreeSet<String>,
    /// Hashes of secrets this target generated (mode `target_generated`).
    #[serde(default, skip_serializing_if = "SecretHashes::is_empty")]
    pub secrets: SecretHashes,
    /// Secret kinds whose `generate_secret` was sent and whose result is not
    /// recorded: the next plan rotates them rather than trust an unknown one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<SecretKind>,
    /// RFC 3339 time of roster's last write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// The state serial of roster's last write.
    #[serde(default)]
    pub serial: u64,
    /// Only in the record [`CAPABILITIES_ID`]: what the target said it can
    /// do when roster last opened it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
}

/// The id of the record that keeps a target's capabilities.
pub const CAPABILITIES_ID: &str = "capabilities";

/// Everything roster knows of one target, keyed by [`record_id`].
pub type TargetState = BTreeMap<String, TargetRecord>;

/// The key of an object's record in a [`TargetState`]: `KIND/KEY`.
pub fn record_id(kind: ObjKind, key: &str) -> String {
    format!("{kind}/{key}")
}

/// The kind and key of a [`record_id`].
pub fn parse_record_id(id: &str) -> Option<(ObjKind, &str)> {
    let (kind, key) = id.split_once('/')?;
    let kind = match kind {
        "user" => ObjKind::User,
        "group" => ObjKind::Group,
        _ => return None,
    };
    Some((kind, key))
}

/// Generic attributes of one object, ordered (deterministic output).
pub type Attrs = BTreeMap<String, Value>;

/// The kinds of objects a target holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjKind {
    User,
    Group,
}

impl ObjKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjKind::User => "user",
            ObjKind::Group => "group",
        }
    }
}

impl fmt::Display for ObjKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One object as a target holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteObject {
    /// roster's name for it (a SCIM `userName` / group `displayName`).
    pub key: String,
    /// The target's own id for it (opaque to roster).
    #[serde(rename = "ref")]
    pub remote_ref: String,
    /// Its attributes, mapped to the generic names.
    pub attrs: Attrs,
}

/// Who generates a user's secrets on a target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretMode {
    /// roster generates the secret (OS CSPRNG, the config's policy), emits it,
    /// then sends it with [`Target::set_secret`].
    #[default]
    RosterGenerated,
    /// The target generates it ([`Target::generate_secret`]); roster emits it
    /// at once and keeps only its hash.
    TargetGenerated,
    /// The target holds no secrets (e.g. a SCIM provider with `passwords: false`).
    None,
}

/// Where a target keeps group membership.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Membership {
    /// On the user (its `groups` attribute): groups are ensured before users.
    #[default]
    OnUser,
    /// On the group (its `members` attribute, as SCIM does): users are
    /// ensured before groups, which name them.
    OnGroup,
}

/// What a target can do, learnt when it is opened (SCIM discovery, a
/// connector's `hello`). Recorded in the state, so that a plan can be made
/// offline (`--refresh=false`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// The kinds it manages.
    pub kinds: BTreeSet<ObjKind>,
    /// Per secret kind (users only): who generates it. A kind absent here is
    /// not held by the target.
    pub secrets: BTreeMap<SecretKind, SecretMode>,
    pub membership: Membership,
    /// The user attributes it can hold, when it says (SCIM: from `/Schemas`);
    /// `None` = everything is sent. Attributes outside this set are not sent
    /// and are listed once as a limitation.
    pub user_attrs: Option<BTreeSet<String>>,
    /// The same for groups.
    pub group_attrs: Option<BTreeSet<String>>,
    /// How many requests may run at once (1 for a connector).
    pub concurrency: usize,
    /// Things the target cannot do, shown once in every plan.
    pub limitations: Vec<String>,
}

/// A request to make one object match `attrs`.
#[derive(Debug, Clone)]
pub struct EnsureRequest<'a> {
    pub kind: ObjKind,
    pub key: &'a str,
    /// The target's id, when roster knows the object already.
    pub remote_ref: Option<&'a str>,
    /// The full projection roster wants.
    pub attrs: &'a Attrs,
    /// What the target held when the plan was made (or last read back), for
    /// targets that send differences (SCIM PATCH of membership).
    pub current: Option<&'a Attrs>,
    /// The key the object had before a rename.
    pub renamed_from: Option<&'a str>,
    /// Refs of the users on this target, by key (to name group members).
    pub user_refs: &'a BTreeMap<String, String>,
    /// A password roster generated (and already emitted) to set with the
    /// object in the same write, where the target can (SCIM `password` on
    /// create); otherwise roster calls [`Target::set_secret`] after.
    pub password: Option<&'a Secret>,
    /// Plan digest + step: lets a target recognise a replay.
    pub idem: &'a str,
}

/// The outcome of an `ensure`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ensured {
    pub remote_ref: String,
    /// What the target holds now (read back), mapped to the generic names.
    pub attrs: Attrs,
    pub changed: bool,
    /// Whether `EnsureRequest::password` was set by this write.
    pub password_set: bool,
}

/// A secret the target generated.
pub struct Generated {
    pub value: Secret,
    /// A username the target generated with it, if any.
    pub username: Option<String>,
}

impl fmt::Debug for Generated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generated")
            .field("value", &"[redacted]")
            .field("username", &self.username)
            .finish()
    }
}

/// The class of a target error (the connector protocol's `error.class`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    Retryable,
    Conflict,
    NotFound,
    Invalid,
    Auth,
    Unsupported,
    Fatal,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Retryable => "retryable",
            ErrorClass::Conflict => "conflict",
            ErrorClass::NotFound => "not_found",
            ErrorClass::Invalid => "invalid",
            ErrorClass::Auth => "auth",
            ErrorClass::Unsupported => "unsupported",
            ErrorClass::Fatal => "fatal",
        }
    }
}

/// A failed target request. Its message never holds a secret or credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TargetError {
    pub class: ErrorClass,
    /// What failed, with every failed request of the step (status and the
    /// server's detail), secrets and credentials redacted.
    pub message: String,
}

impl TargetError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        TargetError {
            class,
            message: message.into(),
        }
    }
}

/// A system roster provisions into. Implementations: `scim` (a SCIM 2.0
/// service provider) and `connector` (an exec-protocol program).
///
/// [`Target::open`] is called once, before anything else. The other methods
/// may be called from several threads at once up to
/// [`Capabilities::concurrency`]. Retries of retryable failures happen
/// inside the implementation, within its budget.
pub trait Target: Send + Sync {
    /// The target's name in the config.
    fn name(&self) -> &str;
    /// Discover what the target can do (SCIM `/ServiceProviderConfig` and
    /// `/Schemas`, a connector's `hello`).
    fn open(&self) -> Result<Capabilities, TargetError>;
    /// Every object of `kind` the target can see, managed by roster or not,
    /// all pages.
    fn list(&self, kind: ObjKind) -> Result<Vec<RemoteObject>, TargetError>;
    /// Make one object match `req.attrs` (create it when `req.remote_ref` is
    /// `None`), and read back what the target kept.
    fn ensure(&self, req: &EnsureRequest<'_>) -> Result<Ensured, TargetError>;
    /// Delete one object; deleting an absent object succeeds.
    fn delete(
        &self,
        kind: ObjKind,
        key: &str,
        remote_ref: &str,
        idem: &str,
    ) -> Result<(), TargetError>;
    /// Set a user's secret to a value roster generated (and already emitted).
    fn set_secret(
        &self,
        key: &str,
        remote_ref: &str,
        kind: SecretKind,
        value: &Secret,
        idem: &str,
    ) -> Result<(), TargetError>;
    /// Have the target generate a user's secret; a replayed `idem` must not
    /// mint a second one.
    fn generate_secret(
        &self,
        key: &str,
        remote_ref: &str,
        kind: SecretKind,
        idem: &str,
    ) -> Result<Generated, TargetError>;
    /// Make a user's password unusable (revocation) on a target that keeps
    /// passwords roster sent: SCIM sets an unknowable random value.
    fn revoke_secret(
        &self,
        key: &str,
        remote_ref: &str,
        kind: SecretKind,
        idem: &str,
    ) -> Result<(), TargetError>;
    /// How many requests this handle has sent (tests and benchmarks).
    fn requests(&self) -> u64;
}
