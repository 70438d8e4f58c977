//! Rendering plans: text (Terraform-like, coloured only when asked), Markdown
//! for PR comments (bounded in size), and versioned JSON. Plans hold no
//! secrets, so neither does any rendering.
//!
//! Every string from a config or a store is shown through [`crate::escape`]:
//! control and invisible characters as `\u{…}` in every format, Markdown
//! values in code spans or fences they cannot close, other Markdown text
//! with its punctuation escaped. A value can neither forge a plan line on a
//! terminal nor hide one in a rendered comment.

use std::fmt::Write;

use serde_json::Value;

use super::{AccessChange, Action, FieldChange, Plan, Step};
use crate::escape::{self, md_code, md_text};

/// One line of text output, escaped.
fn esc(s: &str) -> String {
    escape::text(s).into_owned()
}

/// The largest Markdown rendering (GitHub comments allow 65,536 characters).
pub const MARKDOWN_LIMIT: usize = 65_000;

struct Paint {
    on: bool,
}

impl Paint {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

fn symbol(action: Action) -> &'static str {
    match action {
        Action::Create => "+",
        Action::Update => "~",
        Action::Rotate => "↻",
        Action::Reactivate => "+",
        Action::Deactivate | Action::Delete => "-",
    }
}

fn action_color(action: Action) -> &'static str {
    match action {
        Action::Create | Action::Reactivate => "32",
        Action::Update | Action::Rotate => "33",
        Action::Deactivate | Action::Delete => "31",
    }
}

fn short_value(v: &Option<Value>) -> String {
    match v {
        None | Some(Value::Null) => "(none)".into(),
        Some(v) => v.to_string(),
    }
}

fn is_scalar(v: &Option<Value>) -> bool {
    !matches!(v, Some(Value::Array(_) | Value::Object(_)))
}

/// A list or map as one line per element (`"x"`, `key: value`), for diffs.
fn element_lines(v: &Option<Value>) -> Vec<String> {
    match v {
        Some(Value::Array(items)) => items.iter().map(Value::to_string).collect(),
        Some(Value::Object(map)) => map.iter().map(|(k, v)| format!("{k}: {v}")).collect(),
        None | Some(Value::Null) => Vec::new(),
        Some(v) => vec![v.to_string()],
    }
}

/// One field change as lines (without indentation): `field: a -> b` for
/// scalars, a create as `field: value`, and a unified diff of the elements
/// for lists and maps.
fn field_lines(c: &FieldChange, create: bool, p: &Paint) -> Vec<String> {
    if create {
        return match &c.after {
            Some(v) => vec![esc(&format!("{}: {v}", c.field))],
            None => Vec::new(),
        };
    }
    if is_scalar(&c.before) && is_scalar(&c.after) {
        return vec![esc(&format!(
            "{}: {} -> {}",
            c.field,
            short_value(&c.before),
            short_value(&c.after)
        ))];
    }
    let (before, after) = (element_lines(&c.before), element_lines(&c.after));
    let (before, after): (Vec<&str>, Vec<&str>) = (
        before.iter().map(String::as_str).collect(),
        after.iter().map(String::as_str).collect(),
    );
    let diff = similar::TextDiff::from_slices(&before, &after);
    let mut out = vec![esc(&format!("{}:", c.field))];
    for change in diff.iter_all_changes() {
        let line = esc(change.value());
        out.push(match change.tag() {
            similar::ChangeTag::Delete => p.paint("31", &format!("  - {line}")),
            similar::ChangeTag::Insert => p.paint("32", &format!("  + {line}")),
            similar::ChangeTag::Equal => format!("    {line}"),
        });
    }
    out
}

fn step_header(s: &Step) -> String {
    let mut extra = Vec::new();
    if !matches!(s.action, Action::Create | Action::Update) {
        extra.push(s.action.as_str().to_string());
    }
    if s.adopt {
        extra.push("adopt".into());
    }
    if let Some(r) = s.reason {
        extra.push(format!("reason: {}", r.as_str()));
    }
    if let Some(old) = &s.renamed_from {
        extra.push(format!("renamed from {old}"));
    }
    if !s.generate.is_empty() {
        let kinds: Vec<&str> = s.generate.iter().map(|k| k.as_str()).collect();
        extra.push(format!("new {}", kinds.join(" + ")));
    }
    if !s.revoke.is_empty() {
        let kinds: Vec<&str> = s.revoke.iter().map(|k| k.as_str()).collect();
        extra.push(format!("revoke {}", kinds.join(" + ")));
    }
    esc(&if extra.is_empty() {
        s.address.clone()
    } else {
        format!("{} ({})", s.address, extra.join("; "))
    })
}

fn target_step_header(s: &crate::target::plan::TargetStep) -> String {
    let mut extra = Vec::new();
    if !matches!(s.action, Action::Create | Action::Update) {
        extra.push(s.action.as_str().to_string());
    }
    if let Some(r) = &s.reason {
        extra.push(format!("reason: {r}"));
    }
    if let Some(old) = &s.renamed_from {
        extra.push(format!("renamed from {old}"));
    }
    let kinds = |v: &[crate::secret::SecretKind]| {
        v.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(" + ")
    };
    if !s.set_secret.is_empty() {
        extra.push(format!("send roster's new {}", kinds(&s.set_secret)));
    }
    if !s.generate_secret.is_empty() {
        extra.push(format!(
            "the target generates a new {}",
            kinds(&s.generate_secret)
        ));
    }
    if !s.revoke_secret.is_empty() {
        extra.push(format!("revoke {}", kinds(&s.revoke_secret)));
    }
    esc(&if extra.is_empty() {
        s.address.clone()
    } else {
        format!("{} ({})", s.address, extra.join("; "))
    })
}

/// The lines of one target's section (escaped, uncolored unless `p` is on).
fn target_lines(name: &str, t: &crate::target::plan::TargetPlan, p: &Paint) -> Vec<String> {
    let mut out = Vec::new();
    out.push(format!(
        "Target {} ({}{}):",
        esc(name),
        esc(&t.kind),
        if t.refreshed {
            ""
        } else {
            ", not read: --refresh=false"
        }
    ));
    for line in &t.limitations {
        out.push(format!("  note: {}", esc(line)));
    }
    for s in &t.steps {
        out.push(format!(
            "  {}",
            p.paint(
                action_color(s.action),
                &format!("{} {}", symbol(s.action), target_step_header(s))
            )
        ));
        if s.action != Action::Delete {
            for c in &s.changes {
                for line in field_lines(c, s.action == Action::Create, p) {
                    out.push(format!("      {line}"));
                }
            }
        }
    }
    for d in &t.drift {
        out.push(format!("  ! {}: {}", esc(&d.address), esc(&d.message)));
    }
    if !t.conflicts.is_empty() {
        let names: Vec<String> = t.conflicts.iter().map(|a| esc(a)).collect();
        out.push(format!(
            "  Held on {} but not managed by roster (left alone; `roster import {}` adopts them): {}",
            esc(name),
            esc(name),
            names.join(", ")
        ));
    }
    if !t.protected.is_empty() {
        let names: Vec<String> = t.protected.iter().map(|a| esc(a)).collect();
        out.push(format!(
            "  Protected, left as they are: {}",
            names.join(", ")
        ));
    }
    if !t.unmanaged.is_empty() {
        let parts: Vec<String> = t
            .unmanaged
            .iter()
            .map(|(k, n)| format!("{n} {}{}", esc(k), if *n == 1 { "" } else { "s" }))
            .collect();
        out.push(format!(
            "  Unmanaged on {} (never touched): {}",
            esc(name),
            parts.join(", ")
        ));
    }
    if t.steps.is_empty() && t.drift.is_empty() {
        out.push(format!("  No changes on {}.", esc(name)));
    }
    out
}

fn access_lines(a: &AccessChange) -> Vec<String> {
    let mut out = Vec::new();
    for g in &a.roles_gained {
        out.push(format!("+ role {} (via {})", g.role, g.via.join(", ")));
    }
    for g in &a.roles_lost {
        out.push(format!("- role {} (was via {})", g.role, g.via.join(", ")));
    }
    for perm in &a.permissions_gained {
        out.push(format!("+ permission {perm}"));
    }
    for perm in &a.permissions_lost {
        out.push(format!("- permission {perm}"));
    }
    for r in &a.set_rights {
        let lvl = |l: Option<crate::model::AccessLevel>| l.map(|l| l.as_str()).unwrap_or("(unset)");
        let mut verbs = Vec::new();
        if !r.verbs_gained.is_empty() {
            verbs.push(format!("+{}", r.verbs_gained.join(" +")));
        }
        if !r.verbs_lost.is_empty() {
            verbs.push(format!("-{}", r.verbs_lost.join(" -")));
        }
        out.push(format!(
            "~ set rights {}: {} -> {} ({})",
            r.area,
            lvl(r.before),
            lvl(r.after),
            verbs.join(" ")
        ));
    }
    out.iter().map(|l| esc(l)).collect()
}

/// The secret policy, when it is not roster's default (the token prefix
/// aside, which every token shows): one line saying what apply will generate
/// and hash with, then one line per weakness below the floors
/// ([`crate::secret::policy`]).
fn policy_lines(plan: &Plan) -> Vec<String> {
    let p = &plan.secret_policy;
    let default = crate::model::Settings::default();
    if p.password == default.password
        && p.token.bytes == default.token.bytes
        && p.argon2 == default.argon2
    {
        return Vec::new();
    }
    let pw = &p.password;
    let classes: Vec<&str> = [
        (pw.lowercase, "lowercase"),
        (pw.uppercase, "uppercase"),
        (pw.digits, "digits"),
        (pw.symbols, "symbols"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, n)| *n)
    .collect();
    let mut out = vec![format!(
        "Secret policy (not the default): passwords of {} characters ({}, {:.0} bits), tokens of {} random bytes, argon2id m={} KiB t={} p={}",
        pw.length,
        classes.join(", "),
        crate::secret::policy::password_bits(pw),
        p.token.bytes,
        p.argon2.memory_kib,
        p.argon2.iterations,
        p.argon2.parallelism
    )];
    for (code, message) in crate::secret::policy::weaknesses(pw, &p.argon2) {
        out.push(format!("warning[{code}]: {message}"));
    }
    out
}

/// The closing line, e.g. `Plan: 2 to create, 1 to update, 3 secrets to generate.`
pub fn summary_line(plan: &Plan) -> String {
    let s = &plan.summary;
    if s.changes() == 0 {
        return if plan.targets.is_empty() {
            "No changes. The store matches the configuration.".into()
        } else {
            "No changes. The state and the targets match the configuration.".into()
        };
    }
    let mut parts = Vec::new();
    for (n, what) in [
        (s.create, "to create"),
        (s.update, "to update"),
        (s.rotate, "to rotate"),
        (s.reactivate, "to reactivate"),
        (s.deactivate, "to deactivate"),
        (s.delete, "to delete"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    let secrets = match s.secrets {
        0 => String::new(),
        1 => ", 1 secret to generate".into(),
        n => format!(", {n} secrets to generate"),
    };
    format!("Plan: {}{secrets}.", parts.join(", "))
}

fn store_line(plan: &Plan) -> String {
    let store = plan
        .store
        .as_ref()
        .map(|s| s.location.as_str())
        .unwrap_or("(unknown store)");
    let store = esc(store);
    if plan.base.serial == 0 {
        format!("store {store} (empty)")
    } else {
        format!("store {store} (serial {})", plan.base.serial)
    }
}

/// Human text.
pub fn text(plan: &Plan, color: bool) -> String {
    let p = Paint { on: color };
    let mut out = String::new();
    let _ = writeln!(out, "roster plan against {}\n", store_line(plan));
    for line in &plan.limitations {
        let _ = writeln!(out, "note: {}", esc(line));
    }
    let policy = policy_lines(plan);
    for line in &policy {
        let _ = writeln!(out, "{line}");
    }
    if !policy.is_empty() {
        out.push('\n');
    }
    for s in &plan.steps {
        let _ = writeln!(
            out,
            "  {}",
            p.paint(
                action_color(s.action),
                &format!("{} {}", symbol(s.action), step_header(s))
            )
        );
        if s.action != Action::Delete {
            for c in &s.changes {
                for line in field_lines(c, s.action == Action::Create, &p) {
                    let _ = writeln!(out, "      {line}");
                }
            }
        }
    }
    if !plan.steps.is_empty() {
        out.push('\n');
    }
    for (name, t) in &plan.targets {
        for line in target_lines(name, t, &p) {
            let _ = writeln!(out, "{line}");
        }
        out.push('\n');
    }
    if !plan.access.is_empty() {
        let _ = writeln!(out, "Effective access changes:");
        for a in &plan.access {
            let _ = writeln!(out, "  user.{}", esc(&a.user));
            for line in access_lines(a) {
                let _ = writeln!(out, "    {line}");
            }
        }
        out.push('\n');
    }
    if !plan.drift.is_empty() {
        let _ = writeln!(out, "Drift (changed outside roster):");
        for d in &plan.drift {
            let _ = writeln!(out, "  ! {}: {}", esc(&d.address), esc(&d.message));
        }
        out.push('\n');
    }
    if !plan.protected.is_empty() {
        let kept: Vec<String> = plan.protected.iter().map(|a| esc(a)).collect();
        let _ = writeln!(
            out,
            "Protected, left as they are (the config would deactivate or remove them): {}\n",
            kept.join(", ")
        );
    }
    if !plan.unmanaged.is_empty() {
        let parts: Vec<String> = plan
            .unmanaged
            .iter()
            .map(|(k, n)| format!("{n} {}{}", esc(k), if *n == 1 { "" } else { "s" }))
            .collect();
        let _ = writeln!(
            out,
            "Unmanaged in the store (never touched): {}\n",
            parts.join(", ")
        );
    }
    out.push_str(&crate::policy::schedule::text(plan));
    let _ = writeln!(out, "{}", p.paint("1", &summary_line(plan)));
    out
}

/// Markdown for a pull-request comment, at most [`MARKDOWN_LIMIT`] characters.
pub fn markdown(plan: &Plan) -> String {
    let s = &plan.summary;
    let mut out = String::new();
    let _ = writeln!(out, "### roster plan\n");
    let location = plan
        .store
        .as_ref()
        .map_or_else(|| md_code("(unknown store)"), |s| md_code(&s.location));
    let at = if plan.base.serial == 0 {
        "empty".to_string()
    } else {
        format!("serial {}", plan.base.serial)
    };
    let _ = writeln!(out, "Against store {location} ({at}).\n");
    let _ = writeln!(out, "**{}**\n", summary_line(plan));
    if s.changes() > 0 || s.unmanaged > 0 || s.drifted > 0 {
        let _ = writeln!(out, "| action | count |\n|---|---:|");
        for (n, what) in [
            (s.create, "create"),
            (s.update, "update"),
            (s.rotate, "rotate"),
            (s.reactivate, "reactivate"),
            (s.deactivate, "deactivate"),
            (s.delete, "delete"),
            (s.secrets, "secrets to generate"),
            (s.drifted, "drifted"),
            (s.unmanaged, "unmanaged (untouched)"),
        ] {
            if n > 0 {
                let _ = writeln!(out, "| {what} | {n} |");
            }
        }
        out.push('\n');
    }
    for line in &plan.limitations {
        let _ = writeln!(out, "> [!NOTE]\n> {}\n", md_text(line));
    }
    let policy = policy_lines(plan);
    if !policy.is_empty() {
        let _ = writeln!(out, "> [!WARNING]");
        for line in &policy {
            let _ = writeln!(out, "> {}  ", md_text(line));
        }
        out.push('\n');
    }
    out.push_str(&crate::policy::schedule::markdown(plan));
    if !plan.protected.is_empty() {
        let kept: Vec<String> = plan.protected.iter().map(|a| md_code(a)).collect();
        let _ = writeln!(
            out,
            "> [!IMPORTANT]\n> Protected, left as they are (the config would deactivate or remove them): {}\n",
            kept.join(", ")
        );
    }
    if !plan.drift.is_empty() {
        let _ = writeln!(
            out,
            "> [!WARNING]\n> {} resource(s) changed outside roster:",
            plan.drift.len()
        );
        for d in plan.drift.iter().take(50) {
            let _ = writeln!(out, "> - {}: {}", md_code(&d.address), md_text(&d.message));
        }
        out.push('\n');
    }
    // Everything below is optional detail, cut to fit the limit.
    let reserve = 400;
    let mut left_out = 0usize;
    if !plan.access.is_empty() {
        let mut section = String::from("#### Effective access changes\n\n");
        for a in &plan.access {
            let mut entry = format!("- {}\n", md_code(&format!("user.{}", a.user)));
            for line in access_lines(a) {
                let _ = writeln!(entry, "  - {}", md_code(&line));
            }
            if out.len() + section.len() + entry.len() + reserve > MARKDOWN_LIMIT / 2 {
                left_out += 1;
                continue;
            }
            section.push_str(&entry);
        }
        if left_out > 0 {
            let _ = writeln!(
                section,
                "- … and {left_out} more users (see the full plan: `roster plan --format json`)"
            );
        }
        out.push_str(&section);
        out.push('\n');
    }
    if !plan.steps.is_empty() {
        let p = Paint { on: false };
        let mut body = String::new();
        let mut steps_left_out = 0usize;
        for st in &plan.steps {
            let mut entry = format!("{} {}\n", symbol(st.action), step_header(st));
            if st.action != Action::Delete {
                for c in &st.changes {
                    for line in field_lines(c, st.action == Action::Create, &p) {
                        let _ = writeln!(entry, "    {line}");
                    }
                }
            }
            if out.len() + body.len() + entry.len() + reserve > MARKDOWN_LIMIT {
                steps_left_out += 1;
                continue;
            }
            body.push_str(&entry);
        }
        // Every line of the body is escaped (no line break inside a value)
        // and the fence is longer than any backtick run in it: nothing in the
        // body can close the block or be read as HTML.
        let fence = escape::md_fence(&body);
        let _ = writeln!(
            out,
            "<details><summary>Details ({} step{})</summary>\n\n{fence}diff\n{body}{fence}\n",
            plan.steps.len(),
            if plan.steps.len() == 1 { "" } else { "s" },
        );
        if steps_left_out > 0 {
            let _ = writeln!(
                out,
                "{steps_left_out} more steps are not shown to keep this comment under GitHub's size limit; run `roster plan` for all of them.\n"
            );
        }
        let _ = writeln!(out, "</details>");
    }
    for (name, t) in &plan.targets {
        let p = Paint { on: false };
        let body: String = target_lines(name, t, &p)
            .into_iter()
            .skip(1)
            .map(|l| l + "\n")
            .collect();
        if out.len() + body.len() + 400 > MARKDOWN_LIMIT {
            let _ = writeln!(
                out,
                "\nTarget {}: {} step(s) not shown to keep this comment under GitHub's size limit; run `roster plan` for all of them.",
                md_code(name),
                t.steps.len()
            );
            continue;
        }
        let fence = escape::md_fence(&body);
        let _ = writeln!(
            out,
            "\n<details><summary>Target {} ({}, {} step{})</summary>\n\n{fence}diff\n{body}{fence}\n</details>",
            md_text(name),
            md_text(&t.kind),
            t.steps.len(),
            if t.steps.len() == 1 { "" } else { "s" },
        );
    }
    out
}

/// Versioned JSON (`format_version` 1): the plan itself.
pub fn json(plan: &Plan) -> String {
    let mut s = serde_json::to_string_pretty(plan).unwrap_or_default();
    s.push('\n');
    s
}
