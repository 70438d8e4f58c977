//! `roster report access`: the periodic access review. One row per (user,
//! target, permission or set right) with how it is held, the user's secrets
//! (kinds and age only) and expiry, plus summaries. Built purely from the
//! desired state, the store's snapshot and `now`; rendered as JSON, CSV
//! (RFC 4180, formula-injection safe), Markdown or one self-contained HTML
//! page. No secret and no hash is ever read into it.

mod html;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use serde::Serialize;

use crate::model::{AccessLevel, AccessMatch, Desired, Policy};
use crate::policy::schedule::max_age_days;
use crate::policy::time::{DAY, days_between, format, parse};
use crate::policy::{Access, Item, glob};
use crate::store::Snapshot;

pub use html::html;

/// The whole review.
#[derive(Debug, Serialize)]
pub struct Report {
    /// When it was made (RFC 3339): `--now`, or the clock.
    pub generated_at: String,
    /// The state store it reflects (no credentials).
    pub store: String,
    pub state_serial: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub state_lineage: String,
    pub rows: Vec<Row>,
    pub summaries: Summaries,
}

/// One (user, target, permission or set right).
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub user: String,
    pub display_name: String,
    pub active: bool,
    pub class: String,
    pub authentication: String,
    /// Where the user lives: without `targets:`, the state store.
    pub target: String,
    /// `permission`, `set_right`, or `none` for a user that holds nothing.
    pub kind: &'static str,
    /// `payroll.read`, `bank: write`, or empty.
    pub access: String,
    /// The HTTP verbs of a set-rights level.
    pub verbs: Vec<&'static str>,
    /// How it is held: `own`, `template NAME`, `group NAME (scope)`, `role
    /// assignment ID (scope)`, each with the role for permissions.
    pub held_via: Vec<String>,
    /// Kinds of secrets the state holds for the user (`password`, `token`).
    pub secrets: Vec<&'static str>,
    /// Age of the user's secrets in whole days at `generated_at` of the report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_age_days: Option<i64>,
    /// When the secrets were last generated (rotation), from the state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_rotation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    pub protected: bool,
}

/// The summaries on top of the review.
#[derive(Debug, Default, Serialize)]
pub struct Summaries {
    /// Role -> active users holding it.
    pub users_per_role: BTreeMap<String, Vec<String>>,
    /// Sensitive access (what the policies name) -> active users holding it.
    pub sensitive: BTreeMap<String, Vec<String>>,
    /// Users the config has inactive (or no longer has) that the state still
    /// shows active or holding secrets or access.
    pub inactive_with_access: Vec<InactiveHolder>,
    /// Users whose secrets are past their age limit.
    pub secrets_past_age: Vec<OldSecret>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InactiveHolder {
    pub user: String,
    /// What the state still gives it, e.g. `active`, `password`, `roles a, b`.
    pub holds: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OldSecret {
    pub user: String,
    pub age_days: i64,
    pub max_age_days: u32,
    pub last_rotation: String,
}

fn enum_str<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn matches_of(p: &Policy) -> Vec<&AccessMatch> {
    let mut v: Vec<&AccessMatch> = Vec::new();
    v.extend(p.forbid.iter());
    v.extend(p.exclusive.iter().flatten());
    v.extend(p.max_users.iter().map(|m| &m.holds));
    v
}

fn sensitive(m: &AccessMatch, item: &Item) -> bool {
    match (item, m) {
        (
            Item::Permission { name },
            AccessMatch {
                permission: Some(p),
                ..
            },
        ) => glob(p, name),
        (
            Item::SetRight { area, level },
            AccessMatch {
                area: Some(a),
                level: min,
                ..
            },
        ) => glob(a, area) && *level >= min.unwrap_or(AccessLevel::Read),
        _ => false,
    }
}

/// Build the review of `desired` against the store's `snapshot` at `now`.
pub fn build(desired: &Desired, snapshot: &Snapshot, store: &str, now: i64) -> Report {
    let access = Access::new(desired);
    let version = snapshot.version_or_new();
    let mut rows = Vec::new();
    let mut summaries = Summaries::default();
    let matches: Vec<&AccessMatch> = desired.policies.iter().flat_map(matches_of).collect();
    let role_matches: Vec<&String> = matches.iter().filter_map(|m| m.role.as_ref()).collect();
    for (name, user) in &desired.users {
        let gov = access.governance(name);
        let stored = snapshot.users.get(name);
        let secrets_meta = stored.map(|r| &r.meta.secrets);
        let mut secrets = Vec::new();
        if secrets_meta.is_some_and(|s| s.password.is_some()) {
            secrets.push("password");
        }
        if secrets_meta.is_some_and(|s| s.token.is_some()) {
            secrets.push("token");
        }
        let last_rotation = secrets_meta
            .filter(|s| !s.is_empty())
            .and_then(|s| s.generated_at.clone());
        let generated = last_rotation.as_deref().and_then(|g| parse(g).ok());
        let secret_age_days = generated.map(|g| days_between(g, now));
        if let (Some(g), Some(max), true) = (generated, max_age_days(desired, name), user.active)
            && g.saturating_add(i64::from(max) * DAY) <= now
        {
            summaries.secrets_past_age.push(OldSecret {
                user: name.clone(),
                age_days: days_between(g, now),
                max_age_days: max,
                last_rotation: last_rotation.clone().unwrap_or_default(),
            });
        }
        let base = Row {
            user: name.clone(),
            display_name: user.display_name.clone(),
            active: user.active,
            class: enum_str(&user.class),
            authentication: enum_str(&user.authentication),
            target: store.to_string(),
            kind: "none",
            access: String::new(),
            verbs: Vec::new(),
            held_via: Vec::new(),
            secrets,
            secret_age_days,
            last_rotation,
            expires_at: gov.expires_at.as_ref().map(|e| e.text.clone()),
            protected: user.protected,
        };
        let holdings = access.holdings(name, user);
        for role in holdings.roles.keys() {
            summaries
                .users_per_role
                .entry(role.clone())
                .or_default()
                .push(name.clone());
            if role_matches.iter().any(|p| glob(p, role)) {
                summaries
                    .sensitive
                    .entry(format!("role {role}"))
                    .or_default()
                    .push(name.clone());
            }
        }
        if holdings.items.is_empty() {
            rows.push(base);
            continue;
        }
        for held in holdings.items {
            if matches.iter().any(|m| sensitive(m, &held.item)) {
                summaries
                    .sensitive
                    .entry(held.item.label())
                    .or_default()
                    .push(name.clone());
            }
            rows.push(Row {
                kind: match held.item {
                    Item::Permission { .. } => "permission",
                    Item::SetRight { .. } => "set_right",
                },
                access: held.item.label(),
                verbs: held.item.verbs(),
                held_via: held.paths.iter().map(|p| p.describe()).collect(),
                ..base.clone()
            });
        }
    }
    // From the state: users the config does not keep active that still hold something.
    for (name, r) in snapshot.users.iter().filter(|(_, r)| r.managed) {
        let wanted_active = desired
            .users
            .get(name)
            .is_some_and(|u| u.active && !crate::policy::schedule::expired(desired, name, now));
        if wanted_active {
            continue;
        }
        let s = &r.spec;
        let mut holds = Vec::new();
        if s.active {
            holds.push("active".to_string());
        }
        if r.meta.secrets.password.is_some() {
            holds.push("password".into());
        }
        if r.meta.secrets.token.is_some() {
            holds.push("token".into());
        }
        if s.active {
            let list = |v: &BTreeSet<String>| v.iter().cloned().collect::<Vec<_>>().join(", ");
            if !s.roles.is_empty() {
                holds.push(format!("roles {}", list(&s.roles)));
            }
            if !s.groups.is_empty() {
                holds.push(format!("groups {}", list(&s.groups)));
            }
            let rights: Vec<String> = s
                .set_rights
                .iter()
                .filter(|(_, l)| **l != AccessLevel::None)
                .map(|(a, l)| format!("{a}: {}", l.as_str()))
                .collect();
            if !rights.is_empty() {
                holds.push(format!("set rights {}", rights.join(", ")));
            }
        }
        if !holds.is_empty() {
            summaries.inactive_with_access.push(InactiveHolder {
                user: name.clone(),
                holds,
            });
        }
    }
    Report {
        generated_at: format(now),
        store: store.to_string(),
        state_serial: version.serial,
        state_lineage: version.lineage,
        rows,
        summaries,
    }
}

/// Pretty JSON with a trailing newline.
pub fn json(r: &Report) -> String {
    let mut s = serde_json::to_string_pretty(r).unwrap_or_else(|_| "{}".into());
    s.push('\n');
    s
}

/// The columns of the CSV and the tables, in order.
pub const COLUMNS: [&str; 15] = [
    "user",
    "display_name",
    "active",
    "class",
    "authentication",
    "target",
    "kind",
    "access",
    "verbs",
    "held_via",
    "secrets",
    "secret_age_days",
    "last_rotation",
    "expires_at",
    "protected",
];

/// A row's cells, in [`COLUMNS`] order.
pub fn cells(r: &Row) -> [String; 15] {
    [
        r.user.clone(),
        r.display_name.clone(),
        r.active.to_string(),
        r.class.clone(),
        r.authentication.clone(),
        r.target.clone(),
        r.kind.to_string(),
        r.access.clone(),
        r.verbs.join(" "),
        r.held_via.join("; "),
        r.secrets.join(" "),
        r.secret_age_days.map(|d| d.to_string()).unwrap_or_default(),
        r.last_rotation.clone().unwrap_or_default(),
        r.expires_at.clone().unwrap_or_default(),
        r.protected.to_string(),
    ]
}

/// One CSV field: formula-injection guard (a leading `=`, `+`, `-`, `@`,
/// tab or CR gets a `'` in front, as spreadsheets expect), then RFC 4180
/// quoting when needed.
pub fn csv_field(value: &str) -> String {
    let guarded = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_string()
    };
    if guarded.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

/// RFC 4180: one header row, CRLF line ends.
pub fn csv(r: &Report) -> String {
    let mut out = COLUMNS.join(",");
    out.push_str("\r\n");
    for row in &r.rows {
        let line: Vec<String> = cells(row).iter().map(|c| csv_field(c)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

/// A table cell: control characters as `\u{…}`, Markdown (and `|`)
/// backslash-escaped, so no value forms HTML, a link or a new row.
fn md_cell(s: &str) -> String {
    crate::escape::md_text(s)
}

/// Markdown: the summaries, then the table.
pub fn markdown(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Access review\n");
    let _ = writeln!(
        out,
        "Made {} from store `{}` at state serial {}. {} rows.\n",
        r.generated_at,
        md_cell(&r.store),
        r.state_serial,
        r.rows.len()
    );
    let s = &r.summaries;
    let _ = writeln!(out, "## Users per role\n");
    if s.users_per_role.is_empty() {
        let _ = writeln!(out, "No roles are held.\n");
    } else {
        let _ = writeln!(out, "| role | users |\n|---|---|");
        for (role, users) in &s.users_per_role {
            let _ = writeln!(
                out,
                "| {} | {} |",
                md_cell(role),
                md_cell(&users.join(", "))
            );
        }
        out.push('\n');
    }
    let _ = writeln!(out, "## Sensitive access (named by policies)\n");
    if s.sensitive.is_empty() {
        let _ = writeln!(out, "Nobody holds access a policy names.\n");
    } else {
        let _ = writeln!(out, "| access | users |\n|---|---|");
        for (what, users) in &s.sensitive {
            let _ = writeln!(
                out,
                "| {} | {} |",
                md_cell(what),
                md_cell(&users.join(", "))
            );
        }
        out.push('\n');
    }
    let _ = writeln!(out, "## Inactive users still holding access in the state\n");
    if s.inactive_with_access.is_empty() {
        let _ = writeln!(out, "None.\n");
    } else {
        for h in &s.inactive_with_access {
            let _ = writeln!(
                out,
                "- {}: {}",
                md_cell(&h.user),
                md_cell(&h.holds.join("; "))
            );
        }
        out.push('\n');
    }
    let _ = writeln!(out, "## Secrets past their age limit\n");
    if s.secrets_past_age.is_empty() {
        let _ = writeln!(out, "None.\n");
    } else {
        for o in &s.secrets_past_age {
            let _ = writeln!(
                out,
                "- {}: {} days old (limit {}), last rotated {}",
                md_cell(&o.user),
                o.age_days,
                o.max_age_days,
                md_cell(&o.last_rotation)
            );
        }
        out.push('\n');
    }
    let _ = writeln!(out, "## Access\n");
    let _ = writeln!(out, "| {} |", COLUMNS.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(COLUMNS.len()));
    for row in &r.rows {
        let c: Vec<String> = cells(row).iter().map(|c| md_cell(c)).collect();
        let _ = writeln!(out, "| {} |", c.join(" | "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_guarded_against_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("+1"), "'+1");
        assert_eq!(csv_field("-1"), "'-1");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("\tx"), "'\tx");
        assert_eq!(csv_field("\rx"), "\"'\rx\"");
        assert_eq!(csv_field(""), "");
    }
}
