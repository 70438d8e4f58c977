//! The projection: what each target should hold, computed from the desired
//! state alone (pure). A target receives only what its users need: the users
//! assigned to it and the groups (and, for SCIM, role and rights groups) they
//! hold there.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::{Attrs, Capabilities, Membership, ObjKind, SecretMode};
use crate::model::{Desired, ScimProjection, TargetConfig};
use crate::plan::access::AccessIndex;

/// The attribute names roster sets itself (a user's `target_attrs` may not use them).
pub const GENERIC_ATTRS: &[&str] = &[
    "display_name",
    "first_name",
    "last_name",
    "email",
    "active",
    "groups",
    "roles",
    "permissions",
    "set_rights",
    "credentials",
    "class",
    "authentication",
    "description",
    "members",
    "key",
    "ref",
];

/// An object's identity on a target.
pub type ObjId = (ObjKind, String);

/// The address of an object on a target: `user.NAME@TARGET`.
pub fn address(kind: ObjKind, key: &str, target: &str) -> String {
    format!("{kind}.{key}@{target}")
}

/// What target `name` should hold: every object with its attributes.
pub fn project(
    desired: &Desired,
    name: &str,
    config: &TargetConfig,
    caps: &Capabilities,
) -> BTreeMap<ObjId, Attrs> {
    let index = AccessIndex::new(desired);
    let (roles_mode, rights_mode, role_group, rights_group) = match config {
        TargetConfig::Scim(s) => (
            s.roles,
            s.rights,
            s.role_group.as_str(),
            s.rights_group.as_str(),
        ),
        TargetConfig::Connector(_) => {
            (ScimProjection::Attribute, ScimProjection::Attribute, "", "")
        }
    };
    let connector = matches!(config, TargetConfig::Connector(_));
    let keep_user = |attr: &str| {
        caps.user_attrs
            .as_ref()
            .is_none_or(|set| set.contains(attr))
    };
    let keep_group = |attr: &str| {
        caps.group_attrs
            .as_ref()
            .is_none_or(|set| set.contains(attr))
    };
    let mut out: BTreeMap<ObjId, Attrs> = BTreeMap::new();
    // Group members on this target, by group key (roster groups and projected ones).
    let mut members: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut roster_groups: BTreeSet<&str> = BTreeSet::new();
    for (user, spec) in &desired.users {
        if !spec.targets.contains(name) {
            continue;
        }
        let effective = index.of(user, spec);
        let mut a = Attrs::new();
        let mut put = |k: &str, v: Value| {
            if keep_user(k) {
                a.insert(k.to_string(), v);
            }
        };
        put("display_name", json!(spec.display_name));
        if let Some(v) = &spec.first_name {
            put("first_name", json!(v));
        }
        if let Some(v) = &spec.last_name {
            put("last_name", json!(v));
        }
        if let Some(v) = &spec.email {
            put("email", json!(v));
        }
        put("active", json!(spec.active));
        // An inactive user holds no access on a target (no memberships).
        let groups: Vec<&String> = if spec.active {
            spec.groups.iter().collect()
        } else {
            Vec::new()
        };
        if caps.membership == Membership::OnUser && !groups.is_empty() {
            put("groups", json!(groups));
        }
        for g in &groups {
            roster_groups.insert(g.as_str());
            members
                .entry((*g).clone())
                .or_default()
                .insert(user.clone());
        }
        match roles_mode {
            ScimProjection::Attribute if !effective.roles.is_empty() => {
                put("roles", json!(effective.roles.keys().collect::<Vec<_>>()));
            }
            ScimProjection::Groups => {
                for role in effective.roles.keys() {
                    members
                        .entry(role_group.replace("{role}", role))
                        .or_default()
                        .insert(user.clone());
                }
            }
            _ => {}
        }
        if connector && !effective.permissions.is_empty() {
            put("permissions", json!(effective.permissions));
        }
        match rights_mode {
            ScimProjection::Attribute if !effective.rights.is_empty() => {
                put("set_rights", json!(effective.rights));
            }
            ScimProjection::Groups => {
                for (area, level) in &effective.rights {
                    members
                        .entry(
                            rights_group
                                .replace("{area}", area)
                                .replace("{level}", level.as_str()),
                        )
                        .or_default()
                        .insert(user.clone());
                }
            }
            _ => {}
        }
        let mut creds = Vec::new();
        let wanted = [
            (
                crate::secret::SecretKind::Password,
                spec.credentials.password
                    && spec.authentication == crate::model::Authentication::Local,
            ),
            (crate::secret::SecretKind::Token, spec.credentials.token),
        ];
        for (kind, on) in wanted {
            if on
                && caps
                    .secrets
                    .get(&kind)
                    .is_some_and(|m| *m != SecretMode::None)
            {
                creds.push(kind.as_str());
            }
        }
        put(
            "class",
            serde_json::to_value(spec.class).unwrap_or(Value::Null),
        );
        put(
            "authentication",
            serde_json::to_value(spec.authentication).unwrap_or(Value::Null),
        );
        for (k, v) in spec.target_attrs.get(name).into_iter().flatten() {
            a.insert(k.clone(), v.clone());
        }
        // Always present (it drives which secrets reach the target), even
        // where the target cannot hold it as an attribute: the planner does
        // not compare it there (see `plan::is_internal`).
        // An inactive user holds no secrets on a target: they are revoked.
        if !creds.is_empty() && spec.active {
            a.insert("credentials".into(), json!(creds));
        }
        out.insert((ObjKind::User, user.clone()), a);
    }
    if !caps.kinds.contains(&ObjKind::Group) {
        return out;
    }
    for (group, users) in &members {
        let mut a = Attrs::new();
        let mut put = |k: &str, v: Value| {
            if keep_group(k) {
                a.insert(k.to_string(), v);
            }
        };
        if let Some(spec) = roster_groups
            .contains(group.as_str())
            .then(|| desired.groups.get(group))
            .flatten()
        {
            if let Some(d) = &spec.description {
                put("description", json!(d));
            }
            if !spec.roles.is_empty() {
                put("roles", json!(spec.roles));
            }
        }
        if caps.membership == Membership::OnGroup {
            put("members", json!(users));
        }
        out.insert((ObjKind::Group, group.clone()), a);
    }
    out
}

/// Whether `url` is plain http to a host other than the loopback.
pub fn insecure_remote_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    !matches!(host, "127.0.0.1" | "localhost" | "::1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_to_a_remote_host_is_insecure() {
        assert!(insecure_remote_http("http://scim.example.com/v2"));
        assert!(insecure_remote_http("http://10.0.0.1:8080"));
        assert!(!insecure_remote_http("http://127.0.0.1:8080/scim"));
        assert!(!insecure_remote_http("http://localhost/scim"));
        assert!(!insecure_remote_http("http://[::1]:9000/"));
        assert!(!insecure_remote_http("https://scim.example.com/v2"));
    }
}
