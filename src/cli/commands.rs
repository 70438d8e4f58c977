//! The commands themselves: thin wrappers over the library.

use std::io::Write;

use super::{Cli, Command, Exit, ValidateArgs, ValidateFormat, paths_or_cwd};
use crate::load::{self, diag};

/// Run a parsed command line. Errors are printed here; the result is the exit status.
pub fn run(cli: Cli) -> Exit {
    let result = match cli.command {
        Command::Validate(args) => validate(&args),
        Command::Schema => schema(),
    };
    match result {
        Ok(exit) => exit,
        Err(e) if is_broken_pipe(&e) => Exit::Success,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            Exit::Failure
        }
    }
}

fn validate(args: &ValidateArgs) -> anyhow::Result<Exit> {
    let paths = paths_or_cwd(&args.paths);
    let result = load::load(&paths);
    let mut out = std::io::stdout().lock();
    match (&result, args.format) {
        (Ok(_), ValidateFormat::Json) => {
            writeln!(out, "{}", diag::Diagnostics::default().render_json())?
        }
        (Err(d), ValidateFormat::Json) => writeln!(out, "{}", d.render_json())?,
        (Ok(desired), ValidateFormat::Text) => writeln!(
            out,
            "valid: {} users, {} groups, {} roles, {} role assignments",
            desired.users.len(),
            desired.groups.len(),
            desired.roles.len(),
            desired.assignments.len()
        )?,
        (Err(d), ValidateFormat::Text) => {
            drop(out);
            eprint!("{}", d.render_text(diag::stderr_color()));
        }
    }
    Ok(if result.is_ok() {
        Exit::Success
    } else {
        Exit::Failure
    })
}

fn schema() -> anyhow::Result<Exit> {
    let text = crate::model::schema_text();
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(Exit::Success)
}

/// A closed pipe (`roster plan | head`) is not an error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
