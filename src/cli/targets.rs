//! Targets on the command line: reading them for a plan, checking a saved
//! plan against them, and `roster import`.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

use super::{Exit, StoreArgs};
use crate::model::Desired;
use crate::plan::Plan;
use crate::store::{Change, ChangeSet, LockOwner, Snapshot, StateStore};
use crate::target::run::{self, Listing, Opened, TargetInfo};
use crate::target::{ObjKind, TargetRecord, record_id};

/// How `roster import` matches remote objects to config entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MatchBy {
    /// The remote name (SCIM `userName` / group `displayName`, a connector's key)
    /// equals the config name, ignoring case.
    #[value(name = "userName")]
    UserName,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The target to import from (a name under `targets:`).
    #[arg(value_name = "TARGET")]
    pub target: String,
    /// Config files and/or directories. Default: `.`.
    #[arg(value_name = "PATH")]
    pub paths: Vec<std::path::PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
    /// How remote objects are matched to config entries.
    #[arg(long = "match", value_enum, default_value_t = MatchBy::UserName)]
    pub match_by: MatchBy,
    /// How long to wait for another apply's lock, e.g. `30s` (default: fail at once).
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = super::parse_duration)]
    pub lock_timeout: std::time::Duration,
}

/// Plan the config's targets into `plan`: each target is opened and listed
/// once (`refresh`), or planned from the state alone.
pub(super) fn plan_targets(
    plan: &mut Plan,
    desired: &Desired,
    snapshot: &Snapshot,
    refresh: bool,
) -> anyhow::Result<Vec<Opened>> {
    if desired.targets.is_empty() && snapshot.targets.is_empty() {
        return Ok(Vec::new());
    }
    if refresh {
        let opened = run::open_all(&desired.targets)?;
        let mut listings = BTreeMap::new();
        for t in &opened {
            listings.insert(t.name.clone(), run::list(t)?);
        }
        let infos: Vec<TargetInfo<'_>> = opened.iter().map(Opened::info).collect();
        run::plan_targets(plan, desired, snapshot, &infos, Some(&listings));
        return Ok(opened);
    }
    let mut infos = Vec::new();
    for (name, config) in &desired.targets {
        let Some(caps) = run::recorded_caps(snapshot, name) else {
            bail!(
                "target {name} has not been applied or imported yet, so the state does not know \
                 what it can do: plan with --refresh=true (the default) until it has"
            );
        };
        infos.push(TargetInfo { name, config, caps });
    }
    run::plan_targets(plan, desired, snapshot, &infos, None);
    plan.limitations.push(
        "planned from the state alone (--refresh=false): what the targets hold now was not read, \
         so changes made on them outside roster are not shown"
            .into(),
    );
    Ok(Vec::new())
}

/// Open the targets of a saved plan, and refuse it when what a target holds
/// of roster's objects changed since it was made.
pub(super) fn open_for_saved(plan: &Plan, snapshot: &Snapshot) -> anyhow::Result<Vec<Opened>> {
    let configs: BTreeMap<String, crate::model::TargetConfig> = plan
        .targets
        .iter()
        .filter_map(|(n, t)| t.config.clone().map(|c| (n.clone(), c)))
        .collect();
    if configs.len() != plan.targets.len() {
        bail!("the saved plan names a target without its declaration; make the plan again");
    }
    let opened = run::open_all(&configs)?;
    let empty = crate::target::TargetState::new();
    for t in &opened {
        let tp = &plan.targets[&t.name];
        let Some(expected) = &tp.fingerprint else {
            continue;
        };
        let Listing { users, groups } = run::list(t)?;
        let all: Vec<&crate::target::RemoteObject> = users.iter().chain(&groups).collect();
        let found =
            crate::target::plan::fingerprint(snapshot.targets.get(&t.name).unwrap_or(&empty), &all);
        if found != *expected {
            bail!(
                "the plan is stale: what target {} holds of roster's objects changed since the plan \
                 was made; make a new plan. Nothing was changed",
                t.name
            );
        }
    }
    Ok(opened)
}

/// `roster import TARGET`: record the target's existing users and groups
/// whose names match the config as managed, writing nothing to the target.
pub(super) fn import_cmd(args: &ImportArgs, quiet: bool) -> anyhow::Result<Exit> {
    let Some(desired) = super::commands::load_or_report(&args.paths, false) else {
        return Ok(Exit::Failure);
    };
    let Some(config) = desired.targets.get(&args.target) else {
        let known: Vec<&str> = desired.targets.keys().map(String::as_str).collect();
        bail!(
            "no target named {} in the config (declared: {})",
            args.target,
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    };
    let store: Arc<dyn StateStore> = super::commands::open_store(&args.store)?;
    let target = run::connect(&args.target, config)?;
    let caps = target
        .open()
        .with_context(|| format!("opening target {}", args.target))?;
    let opened = Opened {
        name: args.target.clone(),
        config: config.clone(),
        target,
        caps,
    };
    let Listing { users, groups } = run::list(&opened)?;
    let owner = LockOwner {
        pid: std::process::id(),
        host: super::commands::host(),
        since: super::commands::now_rfc3339(),
    };
    let lock = store.lock(&owner, args.lock_timeout)?;
    let snapshot = store.read()?;
    let records = snapshot.targets.get(&args.target);
    let wanted = crate::target::project::project(&desired, &args.target, config, &opened.caps);
    let mut changes = Vec::new();
    let mut imported = Vec::new();
    let mut already = 0usize;
    for (kind, objects) in [(ObjKind::User, &users), (ObjKind::Group, &groups)] {
        for o in objects {
            let Some(((_, key), _)) = wanted
                .iter()
                .find(|((k, name), _)| *k == kind && name.eq_ignore_ascii_case(&o.key))
            else {
                continue;
            };
            let id = record_id(kind, key);
            if records.is_some_and(|r| r.contains_key(&id)) {
                already += 1;
                continue;
            }
            imported.push(crate::target::project::address(kind, key, &args.target));
            changes.push(Change::PutTargetRecord {
                target: args.target.clone(),
                id,
                record: TargetRecord {
                    remote_ref: Some(o.remote_ref.clone()),
                    attrs: o.attrs.clone(),
                    updated_at: Some(owner.since.clone()),
                    ..TargetRecord::default()
                },
            });
        }
    }
    if !changes.is_empty() && run::recorded_caps(&snapshot, &args.target) != Some(&opened.caps) {
        changes.push(Change::PutTargetRecord {
            target: args.target.clone(),
            id: crate::target::CAPABILITIES_ID.to_string(),
            record: TargetRecord {
                capabilities: Some(opened.caps.clone()),
                updated_at: Some(owner.since.clone()),
                ..TargetRecord::default()
            },
        });
    }
    let mut out = std::io::stdout().lock();
    if changes.is_empty() {
        writeln!(
            out,
            "Nothing to import from {}: {} object(s) listed, {already} already managed, none other matches the config.",
            args.target,
            users.len() + groups.len()
        )?;
        return Ok(Exit::Success);
    }
    let report = store.commit(
        lock.as_ref(),
        ChangeSet {
            base: snapshot.version_or_new(),
            changes,
            at: owner.since.clone(),
            audit: Some(crate::store::AuditEntry {
                serial: 0,
                at: owner.since.clone(),
                user: super::commands::actor(),
                host: owner.host.clone(),
                ci_run: None,
                plan_digest: String::new(),
                outcome: format!("imported {} from target {}", imported.len(), args.target),
            }),
        },
    )?;
    drop(lock);
    if !quiet {
        for a in &imported {
            writeln!(out, "  imported  {a}")?;
        }
    }
    writeln!(
        out,
        "Imported {} object(s) from {} ({already} already managed); nothing was written to the target. State now at serial {}.",
        imported.len(),
        args.target,
        report.version.serial
    )?;
    Ok(Exit::Success)
}
