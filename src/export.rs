//! Export: a store's resources as roster YAML, so an existing setup can be
//! adopted. Planning the export against the same store shows no changes for
//! managed resources; the unmanaged ones are adopted with `--adopt NAME`. No
//! secrets or hashes.

use std::collections::BTreeMap;

use crate::model::{ConfigFile, Credentials, Group, Role, RoleAssignment, Subject, Template, User};
use crate::store::Snapshot;

fn list(items: &std::collections::BTreeSet<String>) -> Vec<String> {
    items.iter().cloned().collect()
}

/// The snapshot as one config file.
pub fn to_config(snapshot: &Snapshot) -> ConfigFile {
    let roles = snapshot
        .roles
        .iter()
        .map(|(n, r)| {
            (
                n.clone(),
                Role {
                    description: r.spec.description.clone(),
                    permissions: list(&r.spec.permissions),
                },
            )
        })
        .collect();
    let groups = snapshot
        .groups
        .iter()
        .map(|(n, r)| {
            let g = &r.spec;
            (
                n.clone(),
                Group {
                    description: g.description.clone(),
                    roles: list(&g.roles),
                    companies: list(&g.companies),
                    pay_groups: list(&g.pay_groups),
                    protected: g.protected,
                },
            )
        })
        .collect();
    let users: BTreeMap<String, User> = snapshot
        .users
        .iter()
        .map(|(n, r)| {
            let u = &r.spec;
            let fields = Template {
                extends: None,
                active: Some(u.active),
                class: Some(u.class),
                authentication: Some(u.authentication),
                identity_provider: u.identity_provider.clone(),
                groups: (!u.groups.is_empty()).then(|| list(&u.groups)),
                roles: (!u.roles.is_empty()).then(|| list(&u.roles)),
                set_rights: (!u.set_rights.is_empty()).then(|| u.set_rights.clone()),
                credentials: Some(Credentials {
                    password: Some(u.credentials.password),
                    token: Some(u.credentials.token),
                    rotation: Some(u.credentials.rotation),
                    max_age_days: None,
                }),
                protected: u.protected.then_some(true),
                expires_at: None,
                // Targets are declared in the config, not kept in the
                // store: an exported user names none (add them back with
                // the `targets:` declarations).
                targets: None,
                target_attrs: None,
            };
            let user = User {
                display_name: u.display_name.clone(),
                first_name: u.first_name.clone(),
                last_name: u.last_name.clone(),
                email: u.email.clone(),
                previous_names: Vec::new(),
                fields,
            };
            (n.clone(), user)
        })
        .collect();
    let role_assignments = snapshot
        .assignments
        .values()
        .map(|r| {
            let a = &r.spec;
            let (user, group) = match &a.subject {
                Subject::User(u) => (Some(u.clone()), None),
                Subject::Group(g) => (None, Some(g.clone())),
            };
            RoleAssignment {
                role: a.role.clone(),
                user,
                group,
                positions: list(&a.positions),
                companies: list(&a.companies),
                pay_groups: list(&a.pay_groups),
            }
        })
        .collect();
    ConfigFile {
        settings: None,
        templates: BTreeMap::new(),
        roles,
        groups,
        users,
        role_assignments,
        policies: Vec::new(),
        targets: BTreeMap::new(),
    }
}

/// The snapshot as YAML text, with the schema header.
pub fn to_yaml(snapshot: &Snapshot) -> anyhow::Result<String> {
    let config = to_config(snapshot);
    let body = serde_saphyr::to_string(&config)?;
    let unmanaged = snapshot.roles.values().filter(|r| !r.managed).count()
        + snapshot.groups.values().filter(|r| !r.managed).count()
        + snapshot.users.values().filter(|r| !r.managed).count()
        + snapshot.assignments.values().filter(|r| !r.managed).count();
    let mut out =
        String::from("# Exported by `roster export`. Settings are not stored; add yours.\n");
    if unmanaged > 0 {
        out.push_str(&format!(
            "# {unmanaged} resource(s) here are not managed by roster yet; plan and apply this file with --adopt NAME for each to take them over.\n"
        ));
    }
    out.push_str(&body);
    Ok(out)
}
