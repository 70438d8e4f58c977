//! `roster explain USER`: every permission and set right a user holds and the
//! chain that gives it (user → template → group → role → permission), the
//! policies it breaks, and its expiry. Pure: a function of the desired state.

use serde::Serialize;

use super::{Access, Held, Item, Path, Source, UserHoldings, glob};
use crate::model::{Desired, Expiry, UserSpec};

/// What `explain` shows about one user.
#[derive(Debug, Serialize)]
pub struct Explanation {
    pub user: String,
    pub display_name: String,
    pub active: bool,
    /// The `extends` chain, nearest template first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Expiry>,
    /// Permissions and set rights (filtered by `--permission`), with their chains.
    pub holds: Vec<ExplainedItem>,
    /// Messages of the policies this user breaks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<String>,
}

/// One permission or set right, with each full chain.
#[derive(Debug, Serialize)]
pub struct ExplainedItem {
    #[serde(flatten)]
    pub held: Held,
    /// `user x → group g → role r → permission p`, one per path.
    pub chains: Vec<String>,
    /// The HTTP verbs of a set-rights level.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verbs: Vec<&'static str>,
}

/// The chain of one path from `user` to `item`.
pub fn chain(user: &str, item: &Item, path: &Path) -> String {
    let mut parts = vec![format!("user {user}")];
    match &path.source {
        Source::Own => {}
        Source::Template { name } => parts.push(format!("template {name}")),
        Source::Group { template, .. } => {
            if let Some(t) = template {
                parts.push(format!("template {t}"));
            }
            let mut s = path.source.describe();
            if let Some(rest) = template.as_ref().and_then(|t| {
                s.strip_prefix(&format!("template {t} → "))
                    .map(str::to_string)
            }) {
                s = rest;
            }
            parts.push(s);
        }
        Source::Assignment { .. } => parts.push(path.source.describe()),
    }
    if let Some(r) = &path.role {
        parts.push(format!("role {r}"));
    }
    parts.push(match item {
        Item::Permission { name } => format!("permission {name}"),
        Item::SetRight { .. } => format!("set right {}", item.label()),
    });
    parts.join(" → ")
}

/// Explain `name`, keeping only items matching `filter` (a permission or
/// area, `*` allowed) when given. `None` when there is no such user.
pub fn explain(desired: &Desired, name: &str, filter: Option<&str>) -> Option<Explanation> {
    let user: &UserSpec = desired.users.get(name)?;
    let access = Access::new(desired);
    let UserHoldings { items, .. } = access.holdings(name, user);
    let gov = access.governance(name);
    let holds = items
        .into_iter()
        .filter(|h| match (&h.item, filter) {
            (_, None) => true,
            (Item::Permission { name }, Some(f)) => glob(f, name),
            (Item::SetRight { area, .. }, Some(f)) => {
                let label = h.item.label();
                glob(f, area) || glob(f, &label) || glob(f, &label.replace(": ", ":"))
            }
        })
        .map(|held| ExplainedItem {
            chains: held
                .paths
                .iter()
                .map(|p| chain(name, &held.item, p))
                .collect(),
            verbs: held.item.verbs(),
            held,
        })
        .collect();
    let violations = super::check(desired)
        .into_iter()
        .filter(|v| v.user.as_deref() == Some(name) || v.holders.iter().any(|h| h == name))
        .map(|v| format!("policy.{}: {}", desired.policies[v.policy].name, v.message))
        .collect();
    Some(Explanation {
        user: name.to_string(),
        display_name: user.display_name.clone(),
        active: user.active,
        templates: access.chain(name).iter().map(|t| t.to_string()).collect(),
        expires_at: gov.expires_at.clone(),
        holds,
        violations,
    })
}

/// Human output.
pub fn text(e: &Explanation, filter: Option<&str>) -> String {
    let mut out = format!(
        "user {} ({}): {}\n",
        e.user,
        crate::escape::text(&e.display_name),
        if e.active { "active" } else { "inactive" }
    );
    if !e.templates.is_empty() {
        out.push_str(&format!("extends: {}\n", e.templates.join(" → ")));
    }
    if let Some(x) = &e.expires_at {
        out.push_str(&format!("expires_at: {} ({})\n", x.text, x.location));
    }
    if !e.active {
        out.push_str("An inactive user holds nothing.\n");
    } else if e.holds.is_empty() {
        match filter {
            Some(f) => out.push_str(&format!("holds nothing matching `{f}`\n")),
            None => out.push_str("holds nothing\n"),
        }
    }
    for item in &e.holds {
        let verbs = if item.verbs.is_empty() {
            String::new()
        } else {
            format!(" ({})", item.verbs.join(", "))
        };
        let kind = match item.held.item {
            Item::Permission { .. } => "permission",
            Item::SetRight { .. } => "set right",
        };
        out.push_str(&format!("\n{kind} {}{verbs}\n", item.held.item.label()));
        for c in &item.chains {
            out.push_str(&format!("  {c}\n"));
        }
    }
    if !e.violations.is_empty() {
        out.push_str("\nbreaks:\n");
        for v in &e.violations {
            out.push_str(&format!("  {}\n", crate::escape::text(v)));
        }
    }
    out
}
