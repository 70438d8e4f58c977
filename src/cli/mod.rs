//! The command line: clap types and thin commands. Each command parses its
//! arguments into options and calls one operation in the library; exit codes
//! are decided in one place ([`Exit`]).

mod commands;
mod connector;
mod governance;
mod targets;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use commands::run;
pub use governance::{
    AccessReportArgs, ExplainArgs, ExplainFormat, ReportArgs, ReportFormat, ReportKind,
};
pub use targets::{ImportArgs, MatchBy};

/// `roster --version`: the version, the git commit and the build date (from build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("ROSTER_GIT_COMMIT"),
    ", built ",
    env!("ROSTER_BUILD_DATE"),
    ")"
);

/// roster: declarative API users and access, reconciled from YAML in git.
#[derive(Debug, Parser)]
#[command(name = "roster", version = VERSION, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More log output on stderr (-v info, -vv debug, -vvv trace). `RUST_LOG` overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

impl Cli {
    /// The log filter the flags ask for, used when `RUST_LOG` is not set.
    pub fn log_level(&self) -> &'static str {
        match (self.quiet, self.verbose) {
            (true, _) => "error",
            (false, 0) => "warn",
            (false, 1) => "info",
            (false, 2) => "debug",
            _ => "trace",
        }
    }
}

/// Output formats for validate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ValidateFormat {
    Text,
    Json,
    /// GitHub Actions workflow commands (`::error file=...,line=...,col=...::message`):
    /// each error becomes an annotation on the pull request.
    Github,
    /// A GitLab Code Quality report (JSON): errors shown in the merge request.
    Gitlab,
}

/// Output formats for plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Text,
    Markdown,
    Json,
}

/// Output formats for lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check config files against the schema and the semantic rules.
    Validate(ValidateArgs),
    /// Show what apply would change in the store.
    Plan(PlanArgs),
    /// Change the store to match the config (or apply a saved plan).
    Apply(ApplyArgs),
    /// Render a saved plan file.
    Show(ShowArgs),
    /// Record a target's existing users and groups that the config names as managed
    /// (writes nothing to the target).
    Import(ImportArgs),
    /// Write the store's resources as roster YAML, to adopt an existing setup.
    Export(ExportArgs),
    /// List the store's audit trail: who applied what, when.
    History(HistoryArgs),
    /// Show every permission and set right a user holds, and the chain that gives it.
    Explain(ExplainArgs),
    /// Write a review report (`report access`: who holds what, for auditors).
    Report(ReportArgs),
    /// Print the JSON Schema of config files.
    Schema,
    /// Scaffold a starter config (schema, .gitignore, CI workflow) in a directory.
    Init(InitArgs),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// Print the man page (or write every page to a directory).
    Man(ManArgs),
    /// Connector tools (`connector test`: the conformance kit for connector authors).
    Connector(connector::ConnectorArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to create the config (created if missing). Default: `.`.
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The shape of the starter config, after one of the bundled examples.
    #[arg(long, value_enum, default_value_t = crate::init::Shape::IrisHr)]
    pub from: crate::init::Shape,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write roster.1 and one page per subcommand into this directory instead of stdout.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Where the state lives.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// State store URL: file:PATH or etcd://HOST:PORT/PREFIX (systems to provision are
    /// `targets:` in the config).
    #[arg(long, env = "ROSTER_STORE", default_value = crate::store::DEFAULT_STORE_URL)]
    pub store: String,
    /// Allow plain etcd:// with credentials to a host other than loopback (the password
    /// travels in clear text).
    #[arg(long)]
    pub allow_insecure_http: bool,
    /// A PEM CA bundle to trust for https stores.
    #[arg(long, value_name = "FILE", env = "ROSTER_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// A PEM client certificate for etcd+https:// (mutual TLS).
    #[arg(
        long,
        value_name = "FILE",
        env = "ROSTER_CLIENT_CERT",
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,
    /// The PEM private key of --client-cert.
    #[arg(
        long,
        value_name = "FILE",
        env = "ROSTER_CLIENT_KEY",
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Config files and/or directories. Default: `.`.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// Save the plan, to apply exactly it later with `roster apply --plan`.
    #[arg(long, value_name = "PLANFILE")]
    pub out: Option<PathBuf>,
    /// Exit 0 when there are no changes, 2 when there are, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Allow deactivating or deleting more than `max_removal_fraction` of the managed users.
    #[arg(long)]
    pub allow_mass_removal: bool,
    /// Accept paths under which no *.yaml/*.yml file is found (an empty config; a plan then
    /// removes every managed resource). Without it that is an error.
    #[arg(long)]
    pub allow_empty: bool,
    /// Take over a resource that exists in the store unmanaged and that the config names
    /// (`user.NAME`, `group.NAME`, ... or a bare NAME); repeatable. Without it such a clash is
    /// an error: roster never modifies a resource it does not manage unless asked.
    #[arg(long, value_name = "NAME")]
    pub adopt: Vec<String>,
    /// Plan as of this moment (RFC 3339 date or date-time) instead of the clock: expiry and secret age.
    #[arg(long, value_name = "TIME", value_parser = parse_now)]
    pub now: Option<i64>,
    /// Read what each target holds now (one listing per kind). `--refresh=false` plans from
    /// the state alone, offline, and says so in the plan.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub refresh: bool,
}

/// Parse `--now`.
pub fn parse_now(s: &str) -> Result<i64, String> {
    crate::policy::schedule::parse_now(s)
}

/// `--now`, or the clock, read once.
pub(crate) fn now_or_clock(now: Option<i64>) -> i64 {
    now.unwrap_or_else(|| time::OffsetDateTime::now_utc().unix_timestamp())
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Config files and/or directories. Default: `.` (ignored with --plan).
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Apply exactly this saved plan; refused if the store changed since.
    #[arg(long, value_name = "PLANFILE")]
    pub plan: Option<PathBuf>,
    /// With --plan: refuse unless the plan file's digest (printed by `plan --out` and `show`)
    /// is this `sha256:HEX`, so CI applies exactly the reviewed plan.
    #[arg(long, value_name = "DIGEST", requires = "plan")]
    pub expect_digest: Option<String>,
    /// Do not ask for confirmation (required without a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// How long to wait for another apply's lock, e.g. `30s`, `2m` (default: fail at once).
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub lock_timeout: std::time::Duration,
    /// Allow deactivating or deleting more than `max_removal_fraction` of the managed users.
    #[arg(long)]
    pub allow_mass_removal: bool,
    /// Plan as of this moment (RFC 3339 date or date-time) instead of the clock: expiry and secret age.
    #[arg(long, value_name = "TIME", value_parser = parse_now)]
    pub now: Option<i64>,
    /// Write generated secrets to this new file (mode 0600; never overwritten).
    #[arg(long, value_name = "FILE")]
    pub secrets_out: Option<PathBuf>,
    /// Format of the secrets output.
    #[arg(long, value_enum, default_value_t = crate::secret::SecretsFormat::Json)]
    pub secrets_format: crate::secret::SecretsFormat,
    /// Encrypt the secrets to this age recipient (repeatable); with --secrets-out the file is
    /// age-armored, otherwise the armored text goes to stdout.
    #[arg(long, value_name = "AGE_RECIPIENT")]
    pub secrets_recipient: Vec<String>,
    /// Allow printing generated secrets to the terminal in a CI run (detected by `CI` or a CI
    /// run URL): say so only when the terminal is not recorded in a build log.
    #[arg(long)]
    pub terminal_is_private: bool,
    /// Accept paths under which no *.yaml/*.yml file is found (an empty config; a plan then
    /// removes every managed resource). Without it that is an error.
    #[arg(long)]
    pub allow_empty: bool,
    /// Take over a resource that exists in the store unmanaged and that the config names
    /// (`user.NAME`, `group.NAME`, ... or a bare NAME); repeatable. Without it such a clash is
    /// an error: roster never modifies a resource it does not manage unless asked.
    #[arg(long, value_name = "NAME")]
    pub adopt: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A plan saved with `roster plan --out`.
    pub planfile: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    pub format: ListFormat,
}

/// Parse `0`, `45s`, `2m`, `1h` into a duration.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 30s, 2m or 1h"))?;
    let secs = match unit {
        "s" | "" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(format!("`{s}` is not a duration like 30s, 2m or 1h")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Config files and/or directories (read recursively). Default: `.`.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ValidateFormat::Text)]
    pub format: ValidateFormat,
    /// Accept paths under which no *.yaml/*.yml file is found (an empty config; a plan then
    /// removes every managed resource). Without it that is an error.
    #[arg(long)]
    pub allow_empty: bool,
    /// Warn about `expires_at` dates before this moment (RFC 3339) instead of the clock.
    #[arg(long, value_name = "TIME", value_parser = parse_now)]
    pub now: Option<i64>,
}

/// How a command ended; mapped to the process exit status in `main`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0.
    Success,
    /// 1: invalid input or an error.
    Failure,
    /// 2: `--detailed-exitcode` and the plan has changes.
    Changes,
    /// 128 + N: an apply stopped cleanly on signal N (130 SIGINT, 143 SIGTERM).
    Interrupted(crate::signal::Signal),
}

impl Exit {
    pub fn code(self) -> i32 {
        match self {
            Exit::Success => 0,
            Exit::Failure => 1,
            Exit::Changes => 2,
            Exit::Interrupted(signal) => signal.exit_code(),
        }
    }
}

/// Default to `.` when no path is given.
pub(crate) fn paths_or_cwd(paths: &[PathBuf]) -> Vec<PathBuf> {
    if paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        paths.to_vec()
    }
}
