//! `roster`: parse arguments, run, map the outcome to an exit status.

use clap::Parser;

fn main() {
    let cli = roster::cli::Cli::parse();
    std::process::exit(roster::cli::run(cli).code());
}
