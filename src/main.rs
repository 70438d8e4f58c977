//! `roster`: parse arguments, set up logging, run, map the outcome to an exit status.

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() {
    let cli = roster::cli::Cli::parse();
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(cli.log_level()));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(roster::load::diag::stderr_color())
        .with_target(false)
        .init();
    std::process::exit(roster::cli::run(cli).code());
}
