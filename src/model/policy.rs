//! Access policies as admins write them (`policies:`). Evaluated by
//! [`crate::policy`] on every user's effective access.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{AccessLevel, Authentication, NAME_PATTERN, UserClass};

/// One access policy: a name, what it is for, and exactly one rule
/// (`forbid`, `exclusive`, `require` or `max_users`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// A stable name, shown in errors as `error[policy.NAME]`.
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub name: String,
    /// Why the policy exists (shown to whoever breaks it).
    pub description: String,
    /// No user may hold access matching this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forbid: Option<AccessMatch>,
    /// Separation of duties: no user may hold access matching two or more of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2))]
    pub exclusive: Option<Vec<AccessMatch>>,
    /// Every active user (that `when` selects) must have this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require: Option<Requirement>,
    /// At most `max` active users may hold the access in `holds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_users: Option<MaxUsers>,
    /// The policy applies only to users that match this (default: every active user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Selector>,
    /// Users, and members of groups, the policy does not apply to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub except: Option<Except>,
}

/// What access a rule is about. Give exactly one of `permission`, `role`, `area`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessMatch {
    /// A permission, `*` matching any characters (e.g. `payroll.*write*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub permission: Option<String>,
    /// A role name, `*` matching any characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub role: Option<String>,
    /// A set-rights area, `*` matching any characters; held at `level` or above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub area: Option<String>,
    /// With `area`: the lowest level that matches (default `read`: any access).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<AccessLevel>,
}

/// What every selected user must have.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    /// Fields that must be set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<RequiredField>,
    /// The authentication the user must use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Authentication>,
    /// The class the user must have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<UserClass>,
}

/// A user field a `require` rule can ask for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RequiredField {
    Email,
    ExpiresAt,
    FirstName,
    LastName,
    IdentityProvider,
}

impl RequiredField {
    pub fn as_str(self) -> &'static str {
        match self {
            RequiredField::Email => "email",
            RequiredField::ExpiresAt => "expires_at",
            RequiredField::FirstName => "first_name",
            RequiredField::LastName => "last_name",
            RequiredField::IdentityProvider => "identity_provider",
        }
    }
}

/// A limit on how many active users hold some access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MaxUsers {
    /// The most active users that may hold it.
    #[schemars(range(min = 0))]
    pub max: u32,
    /// The access counted.
    pub holds: AccessMatch,
}

/// Which users a policy applies to. All given conditions must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// Members of any of these groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Users that extend any of these templates (directly or through another template).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<String>,
    /// Users of this class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<UserClass>,
    /// Users holding this access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holds: Option<AccessMatch>,
}

/// Users and groups a policy does not apply to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Except {
    /// Users exempt by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// Members of these groups are exempt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}
