//! `roster connector test`: the conformance kit for connector authors (a
//! thin wrapper over `target::connector::conformance`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::Exit;
use crate::target::ObjKind;
use crate::target::connector::{conformance, session};

#[derive(Debug, Args)]
pub struct ConnectorArgs {
    #[command(subcommand)]
    pub command: ConnectorCommand,
}

#[derive(Debug, Subcommand)]
pub enum ConnectorCommand {
    /// Run a connector through every rule of the connector protocol against a sandbox
    /// (keys starting with `roster-conformance-`, removed at the end); one PASS/FAIL line
    /// per check, exit 0 only when all pass.
    Test(ConnectorTestArgs),
}

#[derive(Debug, Args)]
pub struct ConnectorTestArgs {
    /// Only these kinds, comma-separated: `user`, `group` (default: every kind the connector
    /// declares).
    #[arg(long, value_name = "KINDS", value_parser = parse_kinds)]
    pub kind: Option<BTreeSet<ObjKind>>,
    /// Per request, e.g. `60s` (the default), `500ms`, `2m` (hello: 10 s).
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout, default_value = "60s")]
    pub timeout: Duration,
    /// The target's `config` object handed to the connector in hello, as JSON.
    #[arg(long, value_name = "JSON", value_parser = parse_config)]
    pub config: Option<BTreeMap<String, Value>>,
    /// An environment variable the connector inherits (besides PATH, HOME, LANG); repeatable.
    #[arg(long, value_name = "NAME")]
    pub env: Vec<String>,
    /// The connector's program and arguments (no shell); put `--` before it when it starts
    /// with `-`. Flags for roster go before it.
    #[arg(
        value_name = "COMMAND",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

fn parse_kinds(s: &str) -> Result<BTreeSet<ObjKind>, String> {
    s.split(',')
        .map(|k| match k.trim() {
            "user" => Ok(ObjKind::User),
            "group" => Ok(ObjKind::Group),
            other => Err(format!(
                "`{other}` is not a kind: use user, group or user,group"
            )),
        })
        .collect()
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    match crate::model::parse_duration(s) {
        Some(d) if !d.is_zero() => Ok(d),
        _ => Err(format!("`{s}` is not a duration like 60s, 500ms or 2m")),
    }
}

fn parse_config(s: &str) -> Result<BTreeMap<String, Value>, String> {
    serde_json::from_str(s).map_err(|e| format!("not a JSON object: {e}"))
}

pub fn connector_cmd(args: &ConnectorArgs) -> anyhow::Result<Exit> {
    match &args.command {
        ConnectorCommand::Test(t) => test(t),
    }
}

fn test(args: &ConnectorTestArgs) -> anyhow::Result<Exit> {
    if let Some(name) = args.env.iter().find(|n| !is_env_name(n)) {
        anyhow::bail!("--env {name}: not an environment variable name");
    }
    let opts = conformance::KitOptions {
        command: args.command.clone(),
        kinds: args.kind.clone(),
        timeout: args.timeout,
        config: args.config.clone().unwrap_or_default(),
        env: args.env.clone(),
    };
    let mut out = std::io::stdout().lock();
    let report = conformance::run(&opts, session::stderr_sink(), &mut out)?;
    let failed = report.checks.iter().filter(|c| c.failure.is_some()).count();
    eprintln!(
        "{} of {} checks passed",
        report.checks.len() - failed,
        report.checks.len()
    );
    Ok(if report.passed() {
        Exit::Success
    } else {
        Exit::Failure
    })
}

/// `^[A-Za-z_][A-Za-z0-9_]{0,127}$` (the config's `env` pattern).
fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && s.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
