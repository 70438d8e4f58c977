//! The desired state as admins write it (`ConfigFile`), and its resolved form
//! (`Desired`) that the planner works on.
//!
//! The serde + schemars types here are the contract: `schemas/roster.schema.json`
//! is generated from them. This module does no I/O.

pub mod policy;
pub mod spec;
pub mod target;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use policy::*;
pub use spec::*;
pub use target::*;

/// The pattern every name (a key of `roles`, `groups`, `users`, `templates`) follows.
pub const NAME_PATTERN: &str = r"^[a-z0-9][a-z0-9._-]{0,63}$";

/// The pattern of a permission (`payroll.read`, `employee.positions.write`):
/// 1 to [`MAX_PERMISSION`] letters, digits, `.`, `_`, `:`, `/`, `*` and `-`,
/// starting with a letter or digit.
pub const PERMISSION_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9._:/*-]*$";
/// The pattern of free-text values that are written to stores as identifiers
/// (set-rights areas, identity providers, companies, pay groups, positions):
/// no control characters (no newlines, tabs, escapes).
pub const NO_CONTROL_PATTERN: &str = r"^[^\x00-\x1F\x7F]*$";
/// The longest a permission may be.
pub const MAX_PERMISSION: u32 = 128;

/// Whether `s` is a valid roster name (see [`NAME_PATTERN`]).
pub fn is_valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=64).contains(&b.len())
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
        })
}

/// One roster config file. Every top-level map is optional; a config is the
/// union of all its files, and a name may be defined in one file only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "roster configuration",
    description = "Declarative API users, groups, roles, role assignments and set rights, reconciled by roster."
)]
pub struct ConfigFile {
    /// Settings for the whole config (limits, removal policy, credential policies). At most one file may hold them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Settings>,
    /// Reusable user templates, keyed by name. A user with `extends: NAME` inherits a template's fields.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("propertyNames" = {"pattern": NAME_PATTERN}))]
    pub templates: BTreeMap<String, Template>,
    /// Roles: named sets of permissions, keyed by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("propertyNames" = {"pattern": NAME_PATTERN}))]
    pub roles: BTreeMap<String, Role>,
    /// Groups: named sets of users that carry roles and a scope (companies, pay groups), keyed by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("propertyNames" = {"pattern": NAME_PATTERN}))]
    pub groups: BTreeMap<String, Group>,
    /// API users (service accounts), keyed by a stable name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("propertyNames" = {"pattern": NAME_PATTERN}))]
    pub users: BTreeMap<String, User>,
    /// Roles granted to one user or one group, optionally limited to a scope.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub role_assignments: Vec<RoleAssignment>,
    /// Access policies checked on every user's effective access at validate and plan time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<Policy>,
    /// The systems users are provisioned into (SCIM providers, connectors), keyed by name.
    /// Without targets, roster manages its state store alone.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("propertyNames" = {"pattern": NAME_PATTERN}, "maxProperties" = 64))]
    pub targets: BTreeMap<String, TargetDecl>,
}

/// Config-wide settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The most users that may be active at once (IRIS HR allows 10 active API users).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_active_users: Option<u32>,
    /// What removing a user from the files does: `deactivate` (default) or `delete`.
    #[serde(default)]
    pub removal: Removal,
    /// A plan that would deactivate or delete more than this share of the managed users is refused
    /// unless `--allow-mass-removal` is given. Default 0.25.
    #[serde(default = "default_removal_fraction")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_removal_fraction: f64,
    /// How generated passwords look.
    #[serde(default)]
    pub password: PasswordPolicy,
    /// How generated access tokens look.
    #[serde(default)]
    pub token: TokenPolicy,
    /// argon2id cost parameters for stored secret hashes.
    #[serde(default)]
    pub argon2: Argon2Params,
    /// Plans list users whose `expires_at` and secrets whose age limit fall within this many days (default 14).
    #[serde(default = "default_expiry_warning_days")]
    #[schemars(range(min = 0, max = 3650))]
    pub expiry_warning_days: u32,
    /// Secrets older than this many days (from when they were generated) are rotated by the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 36500))]
    pub max_secret_age_days: Option<u32>,
    /// The targets of users that name none (names under `targets:`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("maxItems" = 64, "items" = {"type": "string", "pattern": NAME_PATTERN}))]
    pub default_targets: Vec<String>,
}

fn default_expiry_warning_days() -> u32 {
    14
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_active_users: None,
            removal: Removal::default(),
            max_removal_fraction: default_removal_fraction(),
            password: PasswordPolicy::default(),
            token: TokenPolicy::default(),
            argon2: Argon2Params::default(),
            expiry_warning_days: default_expiry_warning_days(),
            max_secret_age_days: None,
            default_targets: Vec::new(),
        }
    }
}

fn default_removal_fraction() -> f64 {
    0.25
}

/// What removing a user from the files does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Removal {
    /// Removed users are deactivated and kept (the default).
    #[default]
    Deactivate,
    /// Removed users are deleted from the store.
    Delete,
}

/// The shape of generated passwords.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordPolicy {
    /// Length in characters (16 to 256, default 32).
    #[serde(default = "default_password_length")]
    #[schemars(range(min = 16, max = 256))]
    pub length: u32,
    /// Use lowercase letters (default true).
    #[serde(default = "yes")]
    pub lowercase: bool,
    /// Use uppercase letters (default true).
    #[serde(default = "yes")]
    pub uppercase: bool,
    /// Use digits (default true).
    #[serde(default = "yes")]
    pub digits: bool,
    /// Use the symbols `!#%+-.:=?@^_~` (default true).
    #[serde(default = "yes")]
    pub symbols: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        PasswordPolicy {
            length: 32,
            lowercase: true,
            uppercase: true,
            digits: true,
            symbols: true,
        }
    }
}

fn default_password_length() -> u32 {
    32
}
fn yes() -> bool {
    true
}

/// The shape of generated access tokens: `PREFIX` + base64url of `bytes` random bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenPolicy {
    /// A recognizable prefix so secret scanners can find leaked tokens (default `rst_`).
    #[serde(default = "default_token_prefix")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{0,16}$"))]
    pub prefix: String,
    /// Random bytes in the token (16 to 128, default 32).
    #[serde(default = "default_token_bytes")]
    #[schemars(range(min = 16, max = 128))]
    pub bytes: u32,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        TokenPolicy {
            prefix: default_token_prefix(),
            bytes: default_token_bytes(),
        }
    }
}

fn default_token_prefix() -> String {
    "rst_".to_string()
}
fn default_token_bytes() -> u32 {
    32
}

/// argon2id parameters (OWASP: m=19456 KiB, t=2, p=1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Argon2Params {
    /// Memory cost in KiB (default 19456).
    #[serde(default = "default_m")]
    #[schemars(range(min = 8192, max = 1048576))]
    pub memory_kib: u32,
    /// Iterations (default 2).
    #[serde(default = "default_t")]
    #[schemars(range(min = 1, max = 16))]
    pub iterations: u32,
    /// Lanes (default 1).
    #[serde(default = "default_p")]
    #[schemars(range(min = 1, max = 16))]
    pub parallelism: u32,
}

impl Default for Argon2Params {
    fn default() -> Self {
        Argon2Params {
            memory_kib: default_m(),
            iterations: default_t(),
            parallelism: default_p(),
        }
    }
}
fn default_m() -> u32 {
    19456
}
fn default_t() -> u32 {
    2
}
fn default_p() -> u32 {
    1
}

/// A role: a named set of permissions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// What the role is for (at most 1,024 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// Permissions such as `payroll.read` (at most 1,024; each 1 to 128 letters, digits, `.`, `_`, `:`, `/`, `*` and `-`, starting with a letter or digit).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024), inner(length(min = 1, max = 128), regex(pattern = PERMISSION_PATTERN)))]
    pub permissions: Vec<Permission>,
}

/// A permission string such as `payroll.read` or `employee.positions.write`.
pub type Permission = String;

/// A group: a named set of users carrying roles and a scope.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// What the group is for (at most 1,024 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// Roles every member of the group gets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024), inner(length(max = 64)))]
    pub roles: Vec<String>,
    /// Companies the group's members may access (each 1 to 128 characters, no control characters).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024), inner(length(min = 1, max = 128), regex(pattern = NO_CONTROL_PATTERN)))]
    pub companies: Vec<String>,
    /// Pay groups the group's members may access (each 1 to 128 characters, no control characters).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024), inner(length(min = 1, max = 128), regex(pattern = NO_CONTROL_PATTERN)))]
    pub pay_groups: Vec<String>,
    /// A protected group is never deleted, even when removed from the files.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protected: bool,
}

/// A user's class (Avanti "User Class").
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum UserClass {
    /// A regular user (the default).
    #[default]
    Regular,
    /// A manager self-service user.
    ManagerSelfService,
}

/// Who owns the user's login.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Authentication {
    /// The password is managed by roster (the default).
    #[default]
    Local,
    /// An identity provider owns the login: roster never generates a password.
    Sso,
}

/// A set-rights access level for one area (IRIS HR "Set Rights").
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum AccessLevel {
    /// No access.
    None,
    /// GET only.
    Read,
    /// GET, POST, PUT, PATCH.
    Write,
    /// GET, POST, PUT, PATCH, DELETE.
    Full,
}

impl AccessLevel {
    /// The HTTP verbs this level allows.
    pub fn verbs(self) -> &'static [&'static str] {
        match self {
            AccessLevel::None => &[],
            AccessLevel::Read => &["GET"],
            AccessLevel::Write => &["GET", "POST", "PUT", "PATCH"],
            AccessLevel::Full => &["GET", "POST", "PUT", "PATCH", "DELETE"],
        }
    }
    /// The level's name as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessLevel::None => "none",
            AccessLevel::Read => "read",
            AccessLevel::Write => "write",
            AccessLevel::Full => "full",
        }
    }
}

/// Which credentials roster generates for a user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// Generate a password (not allowed for `authentication: sso`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<bool>,
    /// Generate an access token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<bool>,
    /// Raise this counter to rotate (reset password / regenerate token). Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub rotation: Option<u32>,
    /// Rotate secrets older than this many days (overrides `settings.max_secret_age_days`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 36500))]
    pub max_age_days: Option<u32>,
}

/// The fields a user and a template share (everything but identity).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// Another template this one inherits from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub extends: Option<String>,
    /// Whether the user is active (default true). `false` deactivates the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// `regular` (default) or `manager-self-service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<UserClass>,
    /// `local` (default: roster manages the password) or `sso`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Authentication>,
    /// The identity provider of an `sso` user (1 to 128 characters, no control characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = NO_CONTROL_PATTERN))]
    pub identity_provider: Option<String>,
    /// Groups the user belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxItems" = 1024, "items" = {"type": "string", "maxLength": 64}))]
    pub groups: Option<Vec<String>>,
    /// Roles granted to the user directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxItems" = 1024, "items" = {"type": "string", "maxLength": 64}))]
    pub roles: Option<Vec<String>>,
    /// Access level per area (`none`, `read`, `write`, `full`). An area is 1 to 64 characters, no control characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 1024, "propertyNames" = {"minLength": 1, "maxLength": 64, "pattern": NO_CONTROL_PATTERN}))]
    pub set_rights: Option<BTreeMap<String, AccessLevel>>,
    /// Which credentials roster generates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,
    /// A protected user is never deactivated or deleted, even when removed from the files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected: Option<bool>,
    /// When the access ends (RFC 3339 date `2026-06-30` or date-time `2026-06-30T17:00:00Z`):
    /// from then on plans deactivate the user and revoke its secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2}))?$"
    ))]
    pub expires_at: Option<String>,
    /// The targets the user is provisioned into (names under `targets:`);
    /// overrides `settings.default_targets` (a user's list overrides its template's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxItems" = 64, "items" = {"type": "string", "pattern": NAME_PATTERN}))]
    pub targets: Option<Vec<String>>,
    /// Extra attributes per target, handed to that target as they are written
    /// (e.g. a connector's `target_attrs: {warehouse: {connection_limit: 5}}`).
    /// Merged per target and attribute over the template's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 64, "propertyNames" = {"pattern": NAME_PATTERN}, "additionalProperties" = {"type": "object", "maxProperties": 64, "propertyNames": {"pattern": "^[a-z][a-z0-9_]{0,63}$"}}))]
    pub target_attrs: Option<BTreeMap<String, BTreeMap<String, serde_json::Value>>>,
}

/// An API user (service account).
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The name people see, e.g. "Qlearsite engagement survey" (1 to 256 characters).
    #[schemars(length(min = 1, max = 256))]
    pub display_name: String,
    /// Given name (at most 256 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub first_name: Option<String>,
    /// Family name (at most 256 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub last_name: Option<String>,
    /// Email address, unique across all users (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 254), regex(pattern = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"))]
    pub email: Option<String>,
    /// Names this user had before; the user is renamed, not recreated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(regex(pattern = NAME_PATTERN)))]
    pub previous_names: Vec<String>,
    #[serde(flatten)]
    pub fields: Template,
}

impl<'de> Deserialize<'de> for User {
    /// Read through a flat struct of the same fields: serde's `flatten`
    /// buffers every entry into an intermediate map first, which cost 9% of
    /// loading 100k users (serializing and the schema keep `flatten`).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<User, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Flat {
            display_name: String,
            first_name: Option<String>,
            last_name: Option<String>,
            email: Option<String>,
            #[serde(default)]
            previous_names: Vec<String>,
            extends: Option<String>,
            active: Option<bool>,
            class: Option<UserClass>,
            authentication: Option<Authentication>,
            identity_provider: Option<String>,
            groups: Option<Vec<String>>,
            roles: Option<Vec<String>>,
            set_rights: Option<BTreeMap<String, AccessLevel>>,
            credentials: Option<Credentials>,
            protected: Option<bool>,
            targets: Option<Vec<String>>,
            target_attrs: Option<BTreeMap<String, BTreeMap<String, serde_json::Value>>>,
            expires_at: Option<String>,
        }
        let f = Flat::deserialize(d)?;
        Ok(User {
            display_name: f.display_name,
            first_name: f.first_name,
            last_name: f.last_name,
            email: f.email,
            previous_names: f.previous_names,
            fields: Template {
                extends: f.extends,
                active: f.active,
                class: f.class,
                authentication: f.authentication,
                identity_provider: f.identity_provider,
                groups: f.groups,
                roles: f.roles,
                set_rights: f.set_rights,
                credentials: f.credentials,
                protected: f.protected,
                targets: f.targets,
                target_attrs: f.target_attrs,
                expires_at: f.expires_at,
            },
        })
    }
}

/// A role granted to exactly one user or one group, optionally limited to a scope.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleAssignment {
    /// The role granted.
    #[schemars(length(max = 64))]
    pub role: String,
    /// The user it is granted to (exactly one of `user` / `group`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub user: Option<String>,
    /// The group it is granted to (exactly one of `user` / `group`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub group: Option<String>,
    /// Employee positions the role applies to (each 1 to 128 characters, no control characters).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024), inner(length(min = 1, max = 128), regex(pattern = NO_CONTROL_PATTERN)))]
    pub positions: Vec<String>,
    /// Companies the role applies to (each 1 to 128 characters, no control characters).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024), inner(length(min = 1, max = 128), regex(pattern = NO_CONTROL_PATTERN)))]
    pub companies: Vec<String>,
    /// Pay groups the role applies to (each 1 to 128 characters, no control characters).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024), inner(length(min = 1, max = 128), regex(pattern = NO_CONTROL_PATTERN)))]
    pub pay_groups: Vec<String>,
}

/// The JSON Schema of a config file, as committed in `schemas/roster.schema.json`.
pub fn config_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(ConfigFile);
    serde_json::to_value(schema).expect("a generated schema is valid JSON")
}

/// The schema as committed: pretty JSON with a trailing newline.
pub fn schema_text() -> String {
    let mut s = serde_json::to_string_pretty(&config_schema()).expect("a schema serializes");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field of a user survives serialize -> deserialize, so the flat
    /// reader of `User` cannot fall behind `Template` (a field it forgot is
    /// an unknown field to it, and this fails).
    #[test]
    fn a_user_with_every_field_round_trips() {
        let user = User {
            display_name: "Payroll export".into(),
            first_name: Some("Payroll".into()),
            last_name: Some("Export".into()),
            email: Some("payroll-export@acme.example".into()),
            previous_names: vec!["payroll-old".into()],
            fields: Template {
                extends: Some("local-base".into()),
                active: Some(false),
                class: Some(UserClass::ManagerSelfService),
                authentication: Some(Authentication::Sso),
                identity_provider: Some("okta".into()),
                groups: Some(vec!["hr-integrations".into()]),
                roles: Some(vec!["payroll-reader".into()]),
                set_rights: Some(BTreeMap::from([("payroll".into(), AccessLevel::Read)])),
                credentials: Some(Credentials {
                    password: Some(true),
                    token: Some(false),
                    rotation: Some(3),
                    max_age_days: Some(90),
                }),
                protected: Some(true),
                expires_at: Some("2026-06-30".into()),
                targets: Some(vec!["slack".into()]),
                target_attrs: Some(BTreeMap::from([(
                    "warehouse".into(),
                    BTreeMap::from([("connection_limit".into(), serde_json::json!(5))]),
                )])),
            },
        };
        let json = serde_json::to_value(&user).expect("serialize");
        let back: User = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, user);
        let unknown = serde_json::json!({"display_name": "x", "colour": "red"});
        assert!(serde_json::from_value::<User>(unknown).is_err());
    }
}
