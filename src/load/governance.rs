//! Loading the governance parts of a config: `policies:` (checked, then
//! evaluated on effective access by [`crate::policy`]), and per user its
//! `expires_at`, secret age limit and which template gave what.

use std::collections::BTreeMap;

use super::{Ctx, Def, Ptr, Raw, unknown_ref};
use crate::model::{AccessMatch, Desired, Expiry, Policy, Template, UserGovernance};

/// The nearest-first `extends` chain of a user whose own `extends` is `first`.
fn chain(raw: &Raw, first: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = first;
    while let Some(t) = cur {
        if out.iter().any(|x| x == t) || !raw.templates.contains_key(t) {
            break; // a cycle or an unknown template: reported elsewhere
        }
        out.push(t.to_string());
        cur = raw.templates[t]
            .value
            .as_ref()
            .and_then(|v| v.extends.as_deref());
    }
    out
}

fn location(ctx: &Ctx, file: usize, ptr: &[String]) -> String {
    let pos = ctx.pos(file, ptr, false);
    format!("{}:{}:{}", ctx.sources[file].name, pos.line, pos.column)
}

/// A user's governance facts, from its own fields (before the template merge)
/// and its templates: its expiry, its secret age limit and (with
/// `keep_extends`) the template it extends. `None` when there is nothing to record.
pub(super) fn user(
    ctx: &mut Ctx,
    raw: &Raw,
    file: usize,
    ptr: &Ptr,
    own: &Template,
    keep_extends: bool,
) -> Option<UserGovernance> {
    let templates = chain(raw, own.extends.as_deref());
    let tdefs: Vec<(&String, &Def<Template>, &Template)> = templates
        .iter()
        .filter_map(|t| {
            let d = &raw.templates[t];
            d.value.as_ref().map(|v| (t, d, v))
        })
        .collect();
    // expires_at: the user's own, else the nearest template's.
    let site = match &own.expires_at {
        Some(text) => Some((text, file, ptr.clone(), None)),
        None => tdefs.iter().find_map(|(t, d, v)| {
            v.expires_at
                .as_ref()
                .map(|text| (text, d.file, d.ptr.clone(), Some((*t).clone())))
        }),
    };
    let mut expires_at = None;
    if let Some((text, f, p, template)) = site {
        let p = [p, vec!["expires_at".to_string()]].concat();
        match crate::policy::time::parse(text) {
            Ok(unix) => {
                expires_at = Some(Expiry {
                    text: text.clone(),
                    unix,
                    location: location(ctx, f, &p),
                    template,
                })
            }
            // A template's bad date is reported once, at the template.
            Err(e) if template.is_none() => {
                ctx.err(f, p, false, "user.expires-at", e);
            }
            Err(_) => {}
        }
    }
    let max_secret_age_days = own.credentials.and_then(|c| c.max_age_days).or_else(|| {
        tdefs
            .iter()
            .find_map(|(_, _, v)| v.credentials.and_then(|c| c.max_age_days))
    });
    let g = UserGovernance {
        extends: own.extends.clone().filter(|_| keep_extends),
        expires_at,
        max_secret_age_days,
    };
    (g != UserGovernance::default()).then_some(g)
}

/// Report templates whose `expires_at` cannot be read (once each).
pub(super) fn templates(ctx: &mut Ctx, raw: &Raw) {
    for def in raw.templates.values() {
        let Some(text) = def.value.as_ref().and_then(|t| t.expires_at.as_ref()) else {
            continue;
        };
        if let Err(e) = crate::policy::time::parse(text) {
            let p = [def.ptr.clone(), vec!["expires_at".to_string()]].concat();
            ctx.err(def.file, p, false, "user.expires-at", e);
        }
    }
}

fn check_match(ctx: &mut Ctx, file: usize, ptr: Ptr, m: &AccessMatch) -> bool {
    let given = [&m.permission, &m.role, &m.area]
        .iter()
        .filter(|x| x.is_some())
        .count();
    if given != 1 {
        ctx.err(
            file,
            ptr,
            false,
            "policies.match",
            format!(
                "an access match gives {given} of `permission`, `role`, `area`; give exactly one"
            ),
        );
        return false;
    }
    if m.level.is_some() && m.area.is_none() {
        let p = [ptr, vec!["level".to_string()]].concat();
        ctx.err(
            file,
            p,
            true,
            "policies.match",
            "`level` applies to `area` only".into(),
        );
        return false;
    }
    true
}

/// Check the policies' shape and references; the usable ones go into the
/// desired state, with where each is defined.
pub(super) fn policies(ctx: &mut Ctx, raw: &Raw) -> (Vec<Policy>, Vec<(usize, Ptr)>) {
    let mut out = Vec::new();
    let mut sites = Vec::new();
    let mut names: BTreeMap<&str, (usize, Ptr)> = BTreeMap::new();
    for def in &raw.policies {
        let Some(p) = &def.value else { continue };
        let mut ok = true;
        if let Some((f, fp)) = names.get(p.name.as_str()) {
            let (f, fp) = (*f, fp.clone());
            ctx.err(
                def.file,
                [def.ptr.clone(), vec!["name".into()]].concat(),
                false,
                "policies.duplicate",
                format!("policy `{}` is defined more than once", p.name),
            )
            .related
            .push((f, fp, false, "first defined here".into()));
            ok = false;
        } else {
            names.insert(
                &p.name,
                (def.file, [def.ptr.clone(), vec!["name".into()]].concat()),
            );
        }
        let rules = [
            p.forbid.is_some(),
            p.exclusive.is_some(),
            p.require.is_some(),
            p.max_users.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if rules != 1 {
            ctx.err(
                def.file,
                def.ptr.clone(),
                false,
                "policies.rule",
                format!(
                    "policy `{}` has {rules} rules; give exactly one of `forbid`, `exclusive`, `require`, `max_users`",
                    p.name
                ),
            );
            ok = false;
        }
        let at = |field: &str| [def.ptr.clone(), vec![field.to_string()]].concat();
        if let Some(m) = &p.forbid {
            ok &= check_match(ctx, def.file, at("forbid"), m);
        }
        if let Some(sides) = &p.exclusive {
            for (i, m) in sides.iter().enumerate() {
                let ptr = [at("exclusive"), vec![i.to_string()]].concat();
                ok &= check_match(ctx, def.file, ptr, m);
            }
        }
        if let Some(m) = &p.max_users {
            ok &= check_match(
                ctx,
                def.file,
                [at("max_users"), vec!["holds".into()]].concat(),
                &m.holds,
            );
        }
        if let Some(r) = &p.require
            && r.fields.is_empty()
            && r.authentication.is_none()
            && r.class.is_none()
        {
            ctx.err(
                def.file,
                at("require"),
                false,
                "policies.rule",
                format!("`require` of policy `{}` requires nothing", p.name),
            );
            ok = false;
        }
        if let Some(m) = p.when.as_ref().and_then(|w| w.holds.as_ref()) {
            ok &= check_match(
                ctx,
                def.file,
                [at("when"), vec!["holds".into()]].concat(),
                m,
            );
        }
        let mut refs: Vec<(Ptr, &str, &String)> = Vec::new();
        if let Some(w) = &p.when {
            for (i, g) in w.groups.iter().enumerate() {
                refs.push((
                    [at("when"), vec!["groups".into(), i.to_string()]].concat(),
                    "group",
                    g,
                ));
            }
            for (i, t) in w.templates.iter().enumerate() {
                refs.push((
                    [at("when"), vec!["templates".into(), i.to_string()]].concat(),
                    "template",
                    t,
                ));
            }
        }
        if let Some(e) = &p.except {
            for (i, g) in e.groups.iter().enumerate() {
                refs.push((
                    [at("except"), vec!["groups".into(), i.to_string()]].concat(),
                    "group",
                    g,
                ));
            }
            for (i, u) in e.users.iter().enumerate() {
                refs.push((
                    [at("except"), vec!["users".into(), i.to_string()]].concat(),
                    "user",
                    u,
                ));
            }
        }
        for (ptr, what, name) in refs {
            let known = match what {
                "group" => raw.groups.contains_key(name),
                "template" => raw.templates.contains_key(name),
                _ => raw.users.contains_key(name),
            };
            if !known {
                match what {
                    "group" => unknown_ref(ctx, def.file, ptr, what, name, &mut raw.groups.keys()),
                    "template" => {
                        unknown_ref(ctx, def.file, ptr, what, name, &mut raw.templates.keys())
                    }
                    _ => unknown_ref(ctx, def.file, ptr, what, name, &mut raw.users.keys()),
                }
                ok = false;
            }
        }
        if ok {
            out.push(p.clone());
            sites.push((def.file, def.ptr.clone()));
        }
    }
    (out, sites)
}

/// Evaluate the policies and report every violation at its user (or, for
/// `max_users`, at the policy), with the policy as a related note.
pub(super) fn evaluate(
    ctx: &mut Ctx,
    desired: &Desired,
    policy_sites: &[(usize, Ptr)],
    user_sites: &BTreeMap<String, (usize, Ptr)>,
) {
    if ctx.skip_policy_check {
        return;
    }
    for v in crate::policy::check(desired) {
        let policy = &desired.policies[v.policy];
        let (pf, pp) = policy_sites[v.policy].clone();
        let code = crate::policy::code(&policy.name);
        let help = Some(policy.description.clone());
        let site = match &v.user {
            // A user that could not be read in full is not judged (see
            // `check_and_resolve`): its other errors are reported instead.
            Some(u) => match user_sites.get(u) {
                Some(site) => Some(site),
                None => continue,
            },
            None => None,
        };
        match site {
            Some((f, p)) => {
                let e = ctx.err(*f, p.clone(), true, code, v.message);
                e.help = help;
                e.related.push((
                    pf,
                    pp,
                    false,
                    format!("policy `{}` is defined here", policy.name),
                ));
            }
            None => {
                let mut related = Vec::new();
                for u in v.holders.iter().take(12) {
                    if let Some((f, p)) = user_sites.get(u) {
                        related.push((*f, p.clone(), true, format!("{u} holds it")));
                    }
                }
                let at = [pp, vec!["max_users".into(), "max".into()]].concat();
                let e = ctx.err(pf, at, false, code, v.message);
                e.help = help;
                e.related = related;
            }
        }
    }
}
