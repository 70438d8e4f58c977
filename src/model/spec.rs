//! Resolved resources: what a user, group, role or role assignment *is* once
//! templates are merged and defaults applied. The planner compares these; the
//! stores persist them. Sets are ordered so that output is deterministic.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{AccessLevel, Authentication, Policy, Settings, Template, UserClass};

/// A resolved user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSpec {
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub active: bool,
    pub class: UserClass,
    pub authentication: Authentication,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_provider: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub groups: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub roles: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set_rights: BTreeMap<String, AccessLevel>,
    pub credentials: CredentialSpec,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protected: bool,
    /// The targets the user is provisioned into.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub targets: BTreeSet<String>,
    /// Extra attributes per target.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub target_attrs: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
}

/// Which credentials a user has, and the rotation counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialSpec {
    pub password: bool,
    pub token: bool,
    pub rotation: u32,
}

/// A resolved group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub roles: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub companies: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub pay_groups: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protected: bool,
}

/// A resolved role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub permissions: BTreeSet<String>,
}

/// Who a role assignment grants its role to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    User(String),
    Group(String),
}

impl Subject {
    pub fn kind(&self) -> &'static str {
        match self {
            Subject::User(_) => "user",
            Subject::Group(_) => "group",
        }
    }
    pub fn name(&self) -> &str {
        match self {
            Subject::User(n) | Subject::Group(n) => n,
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.kind(), self.name())
    }
}

/// A resolved role assignment. Its identity is (role, subject): see [`AssignmentSpec::id`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentSpec {
    pub role: String,
    pub subject: Subject,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub positions: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub companies: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub pay_groups: BTreeSet<String>,
}

impl AssignmentSpec {
    /// The stable id used in addresses: `ROLE@user.NAME` or `ROLE@group.NAME`.
    pub fn id(&self) -> String {
        assignment_id(&self.role, &self.subject)
    }
}

/// The stable id of the assignment of `role` to `subject`.
pub fn assignment_id(role: &str, subject: &Subject) -> String {
    format!("{role}@{subject}")
}

/// The kinds of resources roster manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Role,
    Group,
    User,
    RoleAssignment,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Role => "role",
            Kind::Group => "group",
            Kind::User => "user",
            Kind::RoleAssignment => "role_assignment",
        }
    }
}

/// The resolved, validated desired state: what the planner reconciles towards.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    pub settings: Settings,
    pub roles: BTreeMap<String, RoleSpec>,
    pub groups: BTreeMap<String, GroupSpec>,
    pub users: BTreeMap<String, UserSpec>,
    /// Keyed by [`AssignmentSpec::id`].
    pub assignments: BTreeMap<String, AssignmentSpec>,
    /// Old name -> current name, from users' `previous_names`.
    pub renames: BTreeMap<String, String>,
    /// A digest of the config files' contents (sha256, hex), recorded in saved plans.
    pub digest: String,
    /// How many config files were read (0: none was found under the paths).
    pub files: usize,
    /// Access policies, in file order.
    pub policies: Vec<Policy>,
    /// Per user: its template, expiry and secret age limit (users with none
    /// of these are absent).
    pub governance: BTreeMap<String, UserGovernance>,
    /// The templates as written (unresolved), to tell which one gave a user what.
    pub templates: BTreeMap<String, Template>,
    /// The declared targets.
    pub targets: BTreeMap<String, super::TargetConfig>,
}

/// What governance needs to know about a user beyond its spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserGovernance {
    /// The template the user extends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    /// When the user's access ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Expiry>,
    /// The user's (or its template's) `credentials.max_age_days`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_secret_age_days: Option<u32>,
}

/// A parsed `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expiry {
    /// As written.
    pub text: String,
    /// The moment, in seconds since the Unix epoch (a date alone means 00:00 UTC).
    pub unix: i64,
    /// Where it is written: `file:line:column`.
    pub location: String,
    /// The template it comes from, when not the user itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}
