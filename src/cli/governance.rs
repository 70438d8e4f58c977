//! Governance commands: `explain` and `report access`.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::{Exit, paths_or_cwd};
use crate::load::{self, diag};
use crate::policy::explain;

/// Output formats for explain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExplainFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The user to explain.
    pub user: String,
    /// Config files and/or directories. Default: `.`.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Only this permission or set-rights area (`*` matches any characters), e.g. `payroll.*`, `bank`.
    #[arg(long, value_name = "P")]
    pub permission: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ExplainFormat::Text)]
    pub format: ExplainFormat,
}

/// Load the config without failing on policy violations (they are what
/// `explain` and the report show); any other problem is reported.
fn load_for_review(paths: &[PathBuf]) -> Option<crate::model::Desired> {
    match load::load_without_policy_check(&paths_or_cwd(paths)) {
        Ok(d) => Some(d),
        Err(diags) => {
            eprint!("{}", diags.render_text(diag::stderr_color()));
            None
        }
    }
}

pub fn explain_cmd(args: &ExplainArgs) -> anyhow::Result<Exit> {
    let Some(desired) = load_for_review(&args.paths) else {
        return Ok(Exit::Failure);
    };
    let Some(e) = explain::explain(&desired, &args.user, args.permission.as_deref()) else {
        let hint = diag::did_you_mean(&args.user, desired.users.keys().map(String::as_str))
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        anyhow::bail!("no user `{}` in the config{hint}", args.user);
    };
    let text = match args.format {
        ExplainFormat::Text => explain::text(&e, args.permission.as_deref()),
        ExplainFormat::Json => {
            let mut s = serde_json::to_string_pretty(&e)?;
            s.push('\n');
            s
        }
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(Exit::Success)
}

/// Output formats for the access report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// One self-contained page: summaries, a sortable and filterable table.
    Html,
    /// RFC 4180, one header row, safe against formula injection.
    Csv,
    Json,
    Markdown,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(subcommand)]
    pub report: ReportKind,
}

#[derive(Debug, clap::Subcommand)]
pub enum ReportKind {
    /// The access review: who holds what, how, with which secrets and expiry.
    Access(AccessReportArgs),
}

#[derive(Debug, Args)]
pub struct AccessReportArgs {
    /// Config files and/or directories. Default: `.`.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub store: super::StoreArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Html)]
    pub format: ReportFormat,
    /// Write the report to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Report as of this moment (RFC 3339 date or date-time) instead of the clock.
    #[arg(long, value_name = "TIME", value_parser = super::parse_now)]
    pub now: Option<i64>,
}

pub fn report_cmd(args: &ReportArgs) -> anyhow::Result<Exit> {
    use anyhow::Context;
    let ReportKind::Access(args) = &args.report;
    let now = super::now_or_clock(args.now);
    let store = super::commands::open_store(&args.store)?;
    let Some(desired) = load_for_review(&args.paths) else {
        return Ok(Exit::Failure);
    };
    let info = store.info();
    let snapshot = store
        .read()
        .with_context(|| format!("reading {}", info.location))?;
    let report = crate::report::build(&desired, &snapshot, &info.location, now);
    let text = match args.format {
        ReportFormat::Html => crate::report::html(&report),
        ReportFormat::Csv => crate::report::csv(&report),
        ReportFormat::Json => crate::report::json(&report),
        ReportFormat::Markdown => crate::report::markdown(&report),
    };
    match &args.out {
        Some(path) => {
            std::fs::write(path, text.as_bytes())
                .with_context(|| format!("writing the report to {}", path.display()))?;
            eprintln!(
                "Wrote the access review ({} rows, state serial {}) to {}",
                report.rows.len(),
                report.state_serial,
                path.display()
            );
        }
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
    }
    Ok(Exit::Success)
}
