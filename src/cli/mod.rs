//! The command line: clap types and thin commands. Each command parses its
//! arguments into options and calls one operation in the library; exit codes
//! are decided in one place ([`Exit`]).

mod commands;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use commands::run;

/// roster: declarative API users and access, reconciled from YAML in git.
#[derive(Debug, Parser)]
#[command(name = "roster", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats for validate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ValidateFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check config files against the schema and the semantic rules.
    Validate(ValidateArgs),
    /// Print the JSON Schema of config files.
    Schema,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Config files and/or directories (read recursively). Default: `.`.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ValidateFormat::Text)]
    pub format: ValidateFormat,
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
}

impl Exit {
    pub fn code(self) -> i32 {
        match self {
            Exit::Success => 0,
            Exit::Failure => 1,
            Exit::Changes => 2,
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
