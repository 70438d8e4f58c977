//! `roster init`: scaffolds a starter repository for a config of one of the
//! shapes of the bundled examples: the config files under `access/` (each
//! with the editor schema header), `schemas/roster.schema.json`, a
//! `.gitignore` that keeps the local state out of git, and the GitHub Actions
//! workflow from `examples/ci/github-actions/roster.yml`.
//!
//! It must not overwrite anything: when any file it would create exists, it
//! writes nothing (a `.gitignore` that exists is appended to, never rewritten).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Which bundled example a starter config follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// Avanti: roles on employee positions, groups scoped to companies and pay groups, templates.
    Avanti,
    /// IRIS HR Professional: at most 10 active users, per-area set rights, generated passwords.
    IrisHr,
    /// Avaamo: SSO users from an identity provider, groups carrying roles, access tokens.
    Avaamo,
}

/// The directory (under the target) that holds the config files.
pub const CONFIG_DIR: &str = "access";
/// The schema file the config files' headers point at.
pub const SCHEMA_PATH: &str = "schemas/roster.schema.json";
/// The workflow, the same text as `examples/ci/github-actions/roster.yml`.
pub const GITHUB_WORKFLOW: &str = include_str!("../examples/ci/github-actions/roster.yml");
/// Where the workflow goes.
pub const GITHUB_WORKFLOW_PATH: &str = ".github/workflows/roster.yml";
/// What the `.gitignore` must contain: the local file store.
pub const GITIGNORE_LINES: [&str; 2] = [".roster/", "new-secrets.*"];

impl Shape {
    /// The config files of this shape: (file name under `access/`, text).
    pub fn files(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Shape::Avanti => &[
                ("roles.yaml", include_str!("init/avanti/roles.yaml")),
                ("groups.yaml", include_str!("init/avanti/groups.yaml")),
                ("users.yaml", include_str!("init/avanti/users.yaml")),
                (
                    "role-assignments.yaml",
                    include_str!("init/avanti/role-assignments.yaml"),
                ),
                ("policies.yaml", include_str!("init/avanti/policies.yaml")),
            ],
            Shape::IrisHr => &[
                ("settings.yaml", include_str!("init/iris-hr/settings.yaml")),
                ("users.yaml", include_str!("init/iris-hr/users.yaml")),
                ("policies.yaml", include_str!("init/iris-hr/policies.yaml")),
            ],
            Shape::Avaamo => &[
                ("roles.yaml", include_str!("init/avaamo/roles.yaml")),
                ("groups.yaml", include_str!("init/avaamo/groups.yaml")),
                ("users.yaml", include_str!("init/avaamo/users.yaml")),
                ("policies.yaml", include_str!("init/avaamo/policies.yaml")),
            ],
        }
    }
}

/// Why `init` wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(
        "refusing to overwrite existing file(s): {}; nothing was written",
        .0.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    Exists(Vec<PathBuf>),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// What `init` did.
#[derive(Debug, Default)]
pub struct InitReport {
    /// Files created, in order.
    pub created: Vec<PathBuf>,
    /// Set when an existing `.gitignore` got the missing lines appended.
    pub gitignore_appended: Option<PathBuf>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InitError + '_ {
    move |source| InitError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Write the starter config of `shape` into `dir` (created if missing).
pub fn init(dir: &Path, shape: Shape) -> Result<InitReport, InitError> {
    let mut files: Vec<(PathBuf, String)> = shape
        .files()
        .iter()
        .map(|(name, text)| (dir.join(CONFIG_DIR).join(name), (*text).to_string()))
        .collect();
    files.push((dir.join(SCHEMA_PATH), crate::model::schema_text()));
    files.push((dir.join(GITHUB_WORKFLOW_PATH), GITHUB_WORKFLOW.to_string()));

    let existing: Vec<PathBuf> = files
        .iter()
        .map(|(p, _)| p.clone())
        .filter(|p| p.symlink_metadata().is_ok())
        .collect();
    if !existing.is_empty() {
        return Err(InitError::Exists(existing));
    }

    let mut report = InitReport::default();
    for (path, text) in &files {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(io(path))?;
        file.write_all(text.as_bytes()).map_err(io(path))?;
        report.created.push(path.clone());
    }

    let gitignore = dir.join(".gitignore");
    match fs::read_to_string(&gitignore) {
        Ok(current) => {
            let missing: Vec<&str> = GITIGNORE_LINES
                .iter()
                .copied()
                .filter(|l| !current.lines().any(|c| c.trim() == *l))
                .collect();
            if !missing.is_empty() {
                let mut text = String::new();
                if !current.is_empty() && !current.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str("# roster: local state and secrets outputs\n");
                for l in missing {
                    text.push_str(l);
                    text.push('\n');
                }
                let mut file = fs::OpenOptions::new()
                    .append(true)
                    .open(&gitignore)
                    .map_err(io(&gitignore))?;
                file.write_all(text.as_bytes()).map_err(io(&gitignore))?;
                report.gitignore_appended = Some(gitignore);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut text = String::from("# roster: local state and secrets outputs\n");
            for l in GITIGNORE_LINES {
                text.push_str(l);
                text.push('\n');
            }
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&gitignore)
                .map_err(io(&gitignore))?;
            file.write_all(text.as_bytes()).map_err(io(&gitignore))?;
            report.created.push(gitignore);
        }
        Err(e) => return Err(io(&gitignore)(e)),
    }
    Ok(report)
}
