//! Target declarations (`targets:` in the config): the systems roster
//! provisions into. The state store (roster's memory) is chosen on the
//! command line; targets are reviewed in pull requests like everything else.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The pattern of an environment variable name a target reads.
pub const ENV_NAME_PATTERN: &str = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$";
/// The pattern of a duration: a number and a unit (`ms`, `s`, `m`).
pub const DURATION_PATTERN: &str = r"^[0-9]{1,6}(ms|s|m)$";

/// One resolved target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TargetConfig {
    /// A SCIM 2.0 service provider (RFC 7643/7644); core schemas suffice.
    Scim(ScimTargetConfig),
    /// A program that speaks roster's connector protocol (docs/connector-protocol.md).
    Connector(ConnectorTargetConfig),
}

impl TargetConfig {
    /// `scim` or `connector`.
    pub fn kind(&self) -> &'static str {
        match self {
            TargetConfig::Scim(_) => "scim",
            TargetConfig::Connector(_) => "connector",
        }
    }
}

/// A target as written: exactly one of `scim` or `connector` (a struct
/// rather than an enum, so that a mistake inside one is reported at its
/// place, not as "matches no alternative").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
pub struct TargetDecl {
    /// A SCIM 2.0 service provider (RFC 7643/7644); core schemas suffice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scim: Option<ScimTargetConfig>,
    /// A program that speaks roster's connector protocol (docs/connector-protocol.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector: Option<ConnectorTargetConfig>,
}

impl TargetDecl {
    /// The declared target, when exactly one kind is given.
    pub fn resolve(&self) -> Option<TargetConfig> {
        match (&self.scim, &self.connector) {
            (Some(s), None) => Some(TargetConfig::Scim(s.clone())),
            (None, Some(c)) => Some(TargetConfig::Connector(c.clone())),
            _ => None,
        }
    }
}

/// How roles or set rights reach a SCIM target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScimProjection {
    /// As SCIM Groups named by a pattern, with the users as members (the default).
    #[default]
    Groups,
    /// As the user's multi-valued attribute (`roles` for roles, `entitlements`
    /// for set rights, values `AREA:LEVEL`), where the provider keeps it.
    Attribute,
    /// Not at all.
    None,
}

/// A SCIM 2.0 service provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScimTargetConfig {
    /// The SCIM base URL (`https://…/scim/v2`). Plain `http://` is allowed to
    /// 127.0.0.1/localhost only, unless `allow_insecure_http` is set. No
    /// credentials in it.
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^https?://[^\s@]+$"))]
    pub url: String,
    /// The environment variable that holds the bearer token. The token itself
    /// never appears in a file, flag, URL, plan or log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = ENV_NAME_PATTERN))]
    pub token_env: Option<String>,
    /// Whether the provider accepts password writes (default true). AWS IAM
    /// Identity Center, for one, does not: set `false`.
    #[serde(default = "yes")]
    pub passwords: bool,
    /// How effective roles reach the provider (default `groups`).
    #[serde(default)]
    pub roles: ScimProjection,
    /// How set rights reach the provider (default `groups`).
    #[serde(default)]
    pub rights: ScimProjection,
    /// The name of a role's group: `{role}` is replaced (default `roster-role-{role}`).
    #[serde(default = "default_role_group")]
    #[schemars(length(min = 1, max = 128))]
    pub role_group: String,
    /// The name of a set-rights group: `{area}` and `{level}` are replaced
    /// (default `roster-rights-{area}-{level}`).
    #[serde(default = "default_rights_group")]
    #[schemars(length(min = 1, max = 128))]
    pub rights_group: String,
    /// Resources per listing page (default: the provider's `filter.maxResults`, else 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub page_size: Option<u32>,
    /// Operations per PATCH request (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_patch_operations: Option<u32>,
    /// Use `/Bulk` where the provider supports it (default: what `/ServiceProviderConfig` says).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bulk: Option<bool>,
    /// Requests in flight at once (default 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub concurrency: Option<u32>,
    /// Per request, e.g. `30s` (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub timeout: Option<String>,
    /// Retries of a failed idempotent request (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 20))]
    pub retries: Option<u32>,
    /// A PEM file of CA certificates to trust for this provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub ca_file: Option<String>,
    /// Allow plain `http://` to a host other than 127.0.0.1/localhost.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_insecure_http: bool,
}

fn yes() -> bool {
    true
}
fn default_role_group() -> String {
    "roster-role-{role}".into()
}
fn default_rights_group() -> String {
    "roster-rights-{area}-{level}".into()
}

/// A connector: the admin's own program, speaking roster's exec protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectorTargetConfig {
    /// The program and its arguments, e.g. `[python3, connectors/postgres/roster_postgres.py]`
    /// (relative paths are resolved from the working directory). Never a shell string.
    #[schemars(length(min = 1, max = 64), inner(length(min = 1, max = 4096)))]
    pub command: Vec<String>,
    /// Handed to the connector in `hello` as it is written (no secrets here:
    /// name environment variables instead).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, Value>,
    /// The only environment variables the connector inherits (besides PATH, HOME, LANG).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(regex(pattern = ENV_NAME_PATTERN)))]
    pub env: Vec<String>,
    /// Per request, e.g. `60s` (the default); `hello` has 10 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub timeout: Option<String>,
}

/// Parse a [`DURATION_PATTERN`] duration.
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = digits.parse().ok()?;
    match unit {
        "ms" => Some(std::time::Duration::from_millis(n)),
        "s" => Some(std::time::Duration::from_secs(n)),
        "m" => Some(std::time::Duration::from_secs(n * 60)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_their_units_and_nothing_else() {
        assert_eq!(
            parse_duration("60s"),
            Some(std::time::Duration::from_secs(60))
        );
        assert_eq!(
            parse_duration("250ms"),
            Some(std::time::Duration::from_millis(250))
        );
        assert_eq!(
            parse_duration("2m"),
            Some(std::time::Duration::from_secs(120))
        );
        assert_eq!(parse_duration("60"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("1h"), None);
    }
}
