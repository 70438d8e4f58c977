//! Governance, pure: what each user holds and through what (the chains
//! `explain` and the access report show), and the access policies checked on
//! that at validate and plan time. No I/O, no clock: time is a parameter.
//!
//! Effective access comes from [`crate::plan::access::AccessIndex`], the
//! computation the plan's access changes use; this module adds where each
//! grant comes from (templates, groups, role assignments and their scopes).

pub mod explain;
pub mod schedule;
pub mod time;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use serde::Serialize;

use crate::model::{
    AccessLevel, AccessMatch, Desired, Policy, RequiredField, Template, UserGovernance, UserSpec,
};
use crate::plan::access::{AccessIndex, Effective};

/// Where a role or set right comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// Written on the user itself.
    Own,
    /// Inherited from a template (the nearest one in the `extends` chain that gives it).
    Template { name: String },
    /// A group the user is in (through a template when `template` is set).
    Group {
        name: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        template: Option<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        companies: Vec<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        pay_groups: Vec<String>,
    },
    /// A role assignment, to the user or to one of its groups, with its scope.
    Assignment {
        id: String,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        positions: Vec<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        companies: Vec<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        pay_groups: Vec<String>,
    },
}

fn scope(parts: &[(&str, &[String])]) -> String {
    let shown: Vec<String> = parts
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k} {}", v.join(", ")))
        .collect();
    if shown.is_empty() {
        String::new()
    } else {
        format!(" ({})", shown.join("; "))
    }
}

impl Source {
    /// Short form: `own`, `template NAME`, `group NAME`, `assignment ID`.
    pub fn short(&self) -> String {
        match self {
            Source::Own => "own".into(),
            Source::Template { name } => format!("template {name}"),
            Source::Group { name, .. } => format!("group {name}"),
            Source::Assignment { id, .. } => format!("assignment {id}"),
        }
    }

    /// With the scope: `group hr (companies ACME; pay groups BIWEEKLY)`.
    pub fn describe(&self) -> String {
        match self {
            Source::Own | Source::Template { .. } => self.short(),
            Source::Group {
                name,
                template,
                companies,
                pay_groups,
            } => {
                let from = template
                    .as_ref()
                    .map(|t| format!("template {t} → "))
                    .unwrap_or_default();
                format!(
                    "{from}group {name}{}",
                    scope(&[("companies", companies), ("pay groups", pay_groups)])
                )
            }
            Source::Assignment {
                id,
                positions,
                companies,
                pay_groups,
            } => format!(
                "role assignment {id}{}",
                scope(&[
                    ("positions", positions),
                    ("companies", companies),
                    ("pay groups", pay_groups)
                ])
            ),
        }
    }
}

/// One way a user holds something: through `role` (for permissions and
/// roles) from `source`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Path {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub source: Source,
}

impl Path {
    /// `group hr → role payroll-reader`, `own role x`, `template t`.
    pub fn describe(&self) -> String {
        match (&self.role, &self.source) {
            (Some(r), Source::Own) => format!("own role {r}"),
            (Some(r), s) => format!("{} → role {r}", s.describe()),
            (None, Source::Own) => "set on the user".into(),
            (None, s) => s.describe(),
        }
    }
}

/// Something a user holds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Item {
    Permission { name: String },
    SetRight { area: String, level: AccessLevel },
}

impl Item {
    /// `payroll.read` or `bank: write`.
    pub fn label(&self) -> String {
        match self {
            Item::Permission { name } => name.clone(),
            Item::SetRight { area, level } => format!("{area}: {}", level.as_str()),
        }
    }
    /// The HTTP verbs: all of a set-rights level; none for a permission (its
    /// verbs are the target's business).
    pub fn verbs(&self) -> Vec<&'static str> {
        match self {
            Item::Permission { .. } => Vec::new(),
            Item::SetRight { level, .. } => level.verbs().to_vec(),
        }
    }
}

/// An item and every path that gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Held {
    #[serde(flatten)]
    pub item: Item,
    pub paths: Vec<Path>,
}

impl Held {
    pub fn describe_paths(&self) -> String {
        self.paths
            .iter()
            .map(Path::describe)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Everything one user holds, with the chains, built on [`AccessIndex`].
pub struct Access<'a> {
    desired: &'a Desired,
    index: AccessIndex<'a>,
    none: UserGovernance,
}

/// One user's holdings.
#[derive(Debug, Default, Serialize)]
pub struct UserHoldings {
    /// Roles with every path that gives them.
    pub roles: BTreeMap<String, Vec<Path>>,
    /// Permissions then set rights (levels above `none`), each with its paths.
    pub items: Vec<Held>,
}

impl<'a> Access<'a> {
    pub fn new(desired: &'a Desired) -> Self {
        Access {
            desired,
            index: AccessIndex::new(desired),
            none: UserGovernance::default(),
        }
    }

    pub fn governance(&self, name: &str) -> &UserGovernance {
        self.desired.governance.get(name).unwrap_or(&self.none)
    }

    /// The user's `extends` chain, nearest template first.
    pub fn chain(&self, name: &str) -> Vec<&'a str> {
        let mut out: Vec<&'a str> = Vec::new();
        let mut cur = self
            .desired
            .governance
            .get(name)
            .and_then(|g| g.extends.as_deref());
        while let Some(t) = cur {
            let Some(def) = self.desired.templates.get_key_value(t) else {
                break;
            };
            if out.contains(&def.0.as_str()) {
                break;
            }
            out.push(def.0.as_str());
            cur = def.1.extends.as_deref();
        }
        out
    }

    /// The nearest template of `chain` for which `gives` holds: where a
    /// user's role, group or set right came from (`None`: the user itself).
    fn origin(&self, chain: &[&str], gives: impl Fn(&Template) -> bool) -> Option<String> {
        chain
            .iter()
            .find(|t| self.desired.templates.get(**t).is_some_and(&gives))
            .map(|t| t.to_string())
    }

    /// The source of a role grant `via` other than `own` (`group.NAME`, `role_assignment.ID`).
    fn source(&self, chain: &[&str], via: &str) -> Source {
        if let Some(g) = via.strip_prefix("group.") {
            let spec = self.desired.groups.get(g);
            return Source::Group {
                name: g.to_string(),
                template: self.origin(chain, |t| {
                    t.groups.as_ref().is_some_and(|l| l.iter().any(|x| x == g))
                }),
                companies: spec
                    .map(|s| s.companies.iter().cloned().collect())
                    .unwrap_or_default(),
                pay_groups: spec
                    .map(|s| s.pay_groups.iter().cloned().collect())
                    .unwrap_or_default(),
            };
        }
        let id = via.strip_prefix("role_assignment.").unwrap_or(via);
        let a = self.desired.assignments.get(id);
        let list = |f: fn(&crate::model::AssignmentSpec) -> &BTreeSet<String>| {
            a.map(|a| f(a).iter().cloned().collect())
                .unwrap_or_default()
        };
        Source::Assignment {
            id: id.to_string(),
            positions: list(|a| &a.positions),
            companies: list(|a| &a.companies),
            pay_groups: list(|a| &a.pay_groups),
        }
    }

    /// What user `name` holds, with the chains (empty for an inactive user).
    pub fn holdings(&self, name: &str, user: &UserSpec) -> UserHoldings {
        let eff = self.index.of(name, user);
        self.holdings_of(name, &eff)
    }

    fn holdings_of(&self, name: &str, eff: &Effective) -> UserHoldings {
        let chain = self.chain(name);
        let mut out = UserHoldings::default();
        for (role, vias) in &eff.roles {
            let mut paths: Vec<Path> = vias
                .iter()
                .map(|via| {
                    let source = if via == "own" {
                        let from = self.origin(&chain, |t| {
                            t.roles
                                .as_ref()
                                .is_some_and(|l| l.iter().any(|x| x == role))
                        });
                        match from {
                            Some(name) => Source::Template { name },
                            None => Source::Own,
                        }
                    } else {
                        self.source(&chain, via)
                    };
                    Path {
                        role: Some(role.clone()),
                        source,
                    }
                })
                .collect();
            paths.sort();
            out.roles.insert(role.clone(), paths);
        }
        let mut perms: BTreeMap<&str, Vec<Path>> = BTreeMap::new();
        for (role, paths) in &out.roles {
            if let Some(spec) = self.desired.roles.get(role) {
                for p in &spec.permissions {
                    perms.entry(p).or_default().extend(paths.iter().cloned());
                }
            }
        }
        for (p, mut paths) in perms {
            paths.sort();
            out.items.push(Held {
                item: Item::Permission { name: p.into() },
                paths,
            });
        }
        for (area, level) in &eff.rights {
            if *level == AccessLevel::None {
                continue;
            }
            // The nearest template with this area at this level; the user's
            // own level wins in the merge, so a different level is its own.
            let from = self.origin(&chain, |t| {
                t.set_rights
                    .as_ref()
                    .is_some_and(|m| m.get(area) == Some(level))
            });
            let source = match from {
                Some(name) => Source::Template { name },
                None => Source::Own,
            };
            out.items.push(Held {
                item: Item::SetRight {
                    area: area.clone(),
                    level: *level,
                },
                paths: vec![Path { role: None, source }],
            });
        }
        out
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The label of an access match, e.g. `permission payroll.*write*`,
/// `role settings`, `bank: write or above`.
pub fn match_label(m: &AccessMatch) -> String {
    if let Some(p) = &m.permission {
        format!("permission {p}")
    } else if let Some(r) = &m.role {
        format!("role {r}")
    } else if let Some(a) = &m.area {
        let level = m.level.unwrap_or(AccessLevel::Read);
        format!("{a}: {} or above", level.as_str())
    } else {
        "nothing".into()
    }
}

/// What in `h` matches `m`: each as (label, how it is held).
fn matching(m: &AccessMatch, h: &UserHoldings) -> Vec<(String, String)> {
    let describe = |paths: &[Path]| {
        paths
            .iter()
            .map(Path::describe)
            .collect::<Vec<_>>()
            .join("; ")
    };
    let mut out = Vec::new();
    if let Some(pat) = &m.role {
        for (role, paths) in &h.roles {
            if glob(pat, role) {
                let via: Vec<String> = paths.iter().map(|p| p.source.describe()).collect();
                out.push((format!("role {role}"), via.join("; ")));
            }
        }
    }
    for held in &h.items {
        match (&held.item, m) {
            (
                Item::Permission { name },
                AccessMatch {
                    permission: Some(pat),
                    ..
                },
            ) if glob(pat, name) => {
                out.push((name.clone(), describe(&held.paths)));
            }
            (
                Item::SetRight { area, level },
                AccessMatch {
                    area: Some(pat),
                    level: min,
                    ..
                },
            ) if glob(pat, area) && *level >= min.unwrap_or(AccessLevel::Read) => {
                out.push((held.item.label(), describe(&held.paths)));
            }
            _ => {}
        }
    }
    out
}

fn shown(matches: &[(String, String)]) -> String {
    matches
        .iter()
        .map(|(what, via)| format!("{what} (via {via})"))
        .collect::<Vec<_>>()
        .join(" and ")
}

/// A broken policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Index into `Desired::policies`.
    pub policy: usize,
    /// The user it is located at; `None` for `max_users` (located at the policy).
    pub user: Option<String>,
    pub message: String,
    /// For `max_users`: the users that hold the access.
    pub holders: Vec<String>,
}

fn selected(
    policy: &Policy,
    name: &str,
    user: &UserSpec,
    chain: &[&str],
    h: &UserHoldings,
) -> bool {
    let when = policy.when.as_ref();
    if !user.active {
        return false;
    }
    if let Some(e) = &policy.except
        && (e.users.iter().any(|u| u == name) || e.groups.iter().any(|g| user.groups.contains(g)))
    {
        return false;
    }
    if let Some(w) = when {
        if !w.groups.is_empty() && !w.groups.iter().any(|g| user.groups.contains(g)) {
            return false;
        }
        if !w.templates.is_empty() && !w.templates.iter().any(|t| chain.contains(&t.as_str())) {
            return false;
        }
        if w.class.is_some_and(|c| c != user.class) {
            return false;
        }
        if let Some(m) = &w.holds
            && matching(m, h).is_empty()
        {
            return false;
        }
    }
    true
}

/// Check every policy against every user. All violations, in policy then user order.
pub fn check(desired: &Desired) -> Vec<Violation> {
    if desired.policies.is_empty() {
        return Vec::new();
    }
    let access = Access::new(desired);
    let holdings: BTreeMap<&str, UserHoldings> = desired
        .users
        .iter()
        .filter(|(_, u)| u.active)
        .map(|(n, u)| (n.as_str(), access.holdings(n, u)))
        .collect();
    let mut out = Vec::new();
    for (i, policy) in desired.policies.iter().enumerate() {
        let mut holders = Vec::new();
        for (name, h) in &holdings {
            let user = &desired.users[*name];
            if !selected(policy, name, user, &access.chain(name), h) {
                continue;
            }
            let quoted = &policy.name;
            let mut violation = |message: String| {
                out.push(Violation {
                    policy: i,
                    user: Some(name.to_string()),
                    message,
                    holders: Vec::new(),
                })
            };
            if let Some(m) = &policy.forbid {
                let found = matching(m, h);
                if !found.is_empty() {
                    violation(format!(
                        "user {name} holds {} (forbidden by \"{quoted}\")",
                        shown(&found)
                    ));
                }
            }
            if let Some(sides) = &policy.exclusive {
                let found: Vec<(String, String)> = sides
                    .iter()
                    .filter_map(|m| matching(m, h).into_iter().next())
                    .collect();
                if found.len() >= 2 {
                    violation(format!(
                        "user {name} holds {} (separation of duties \"{quoted}\")",
                        shown(&found)
                    ));
                }
            }
            if let Some(req) = &policy.require {
                let gov = access.governance(name);
                let mut missing: Vec<String> = req
                    .fields
                    .iter()
                    .filter(|f| match f {
                        RequiredField::Email => user.email.is_none(),
                        RequiredField::ExpiresAt => gov.expires_at.is_none(),
                        RequiredField::FirstName => user.first_name.is_none(),
                        RequiredField::LastName => user.last_name.is_none(),
                        RequiredField::IdentityProvider => user.identity_provider.is_none(),
                    })
                    .map(|f| format!("has no {}", f.as_str()))
                    .collect();
                if let Some(a) = req.authentication
                    && a != user.authentication
                {
                    missing.push(format!(
                        "uses authentication {}, not {}",
                        enum_str(&user.authentication),
                        enum_str(&a)
                    ));
                }
                if let Some(c) = req.class
                    && c != user.class
                {
                    missing.push(format!(
                        "has class {}, not {}",
                        enum_str(&user.class),
                        enum_str(&c)
                    ));
                }
                if !missing.is_empty() {
                    violation(format!(
                        "user {name} {} (required by \"{quoted}\")",
                        missing.join(" and ")
                    ));
                }
            }
            if let Some(max) = &policy.max_users
                && !matching(&max.holds, h).is_empty()
            {
                holders.push(name.to_string());
            }
        }
        if let Some(max) = &policy.max_users
            && holders.len() > max.max as usize
        {
            let listed: Vec<&str> = holders.iter().take(12).map(String::as_str).collect();
            let more = if holders.len() > listed.len() {
                format!(" and {} more", holders.len() - listed.len())
            } else {
                String::new()
            };
            out.push(Violation {
                policy: i,
                user: None,
                message: format!(
                    "{} active user{} hold{} {}, but \"{}\" allows at most {}: {}{more}",
                    holders.len(),
                    if holders.len() == 1 { "" } else { "s" },
                    if holders.len() == 1 { "s" } else { "" },
                    match_label(&max.holds),
                    policy.name,
                    max.max,
                    listed.join(", ")
                ),
                holders,
            });
        }
    }
    out
}

/// The config spelling of a kebab-case enum value.
fn enum_str<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// `policy.NAME` as a `&'static str` diagnostic code. Each distinct name is
/// stored once for the life of the process (a config has a handful).
pub fn code(name: &str) -> &'static str {
    static CODES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let code = format!("policy.{name}");
    let mut codes = CODES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = codes.get(code.as_str()) {
        return c;
    }
    let leaked: &'static str = Box::leak(code.into_boxed_str());
    codes.insert(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_stars_anywhere() {
        assert!(glob("payroll.*write*", "payroll.earnings.write"));
        assert!(glob("payroll.*write*", "payroll.write"));
        assert!(!glob("payroll.*write*", "payroll.read"));
        assert!(glob("*", ""));
        assert!(glob("bank", "bank"));
        assert!(!glob("bank", "banks"));
        assert!(glob("*.read", "employee.positions.read"));
    }

    #[test]
    fn a_policy_code_is_interned_once() {
        let a = code("payroll-sod");
        let b = code("payroll-sod");
        assert_eq!(a, "policy.payroll-sod");
        assert!(std::ptr::eq(a, b));
    }
}
