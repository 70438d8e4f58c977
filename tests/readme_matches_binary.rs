//! The README is the user's manual: its CLI table must match the binary's
//! `--help`, and the documented JSON plan keys a real plan (issue 15: the
//! table showed `[--lock-timeout 30s]` while the default is `0s`, left out
//! `--allow-mass-removal` on apply; the plan carried undocumented
//! `secret_policy` and `adopt`).

#[path = "common/cli.rs"]
mod cli;
use cli::{code, roster, stderr, stdout};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use serde_json::Value;

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The rows of the table under `## CLI`: (subcommand, first cell).
fn cli_rows(doc: &str) -> Vec<(String, String)> {
    let start = doc.find("\n## CLI\n").expect("a `## CLI` section");
    let section = &doc[start + 1..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    section[..end]
        .lines()
        .filter_map(|l| l.strip_prefix("| `roster "))
        .map(|rest| {
            let cell = rest.split("` |").next().unwrap_or_default().to_string();
            let sub = cell
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            (sub, cell)
        })
        .collect()
}

/// The long flags of `roster SUB --help`, read from the real binary.
fn help_flags(sub: &[&str]) -> BTreeSet<String> {
    let args: Vec<&str> = sub.iter().copied().chain(["--help"]).collect();
    let out = roster(Path::new(env!("CARGO_MANIFEST_DIR")), &args);
    assert_eq!(
        code(&out),
        0,
        "roster {} --help: {}",
        sub.join(" "),
        stderr(&out)
    );
    stdout(&out)
        .lines()
        .filter_map(|l| {
            // Option lines: `  -q, --quiet  ...` or `      --store <STORE>  ...`.
            let l = l.trim_start();
            let long = match l.strip_prefix("--") {
                Some(r) => r,
                None => l
                    .strip_prefix('-')
                    .and_then(|r| r.get(1..))
                    .and_then(|r| r.strip_prefix(", --"))?,
            };
            let name: String = long
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

const GLOBAL: [&str; 4] = ["verbose", "quiet", "help", "version"];
/// Documented once, under the table and in the Stores section.
const STORE_FLAGS: [&str; 4] = [
    "allow-insecure-http",
    "ca-file",
    "client-cert",
    "client-key",
];

#[test]
fn the_readme_cli_table_matches_help() {
    let doc = readme();
    let rows = cli_rows(&doc);
    let root = roster::cli::Cli::command();
    let subs: BTreeSet<String> = root
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .filter(|n| n != "help")
        .collect();
    let documented: BTreeSet<String> = rows.iter().map(|(s, _)| s.clone()).collect();
    assert_eq!(
        documented, subs,
        "the CLI table's commands differ from `roster --help`"
    );
    let mut problems = Vec::new();
    for (sub, cell) in &rows {
        let mut cmd = root.find_subcommand(sub).expect("a subcommand");
        let mut shown = BTreeSet::new();
        let words: Vec<&str> = cell.split_whitespace().collect();
        // A nested command (`roster report access ...`): its own flags.
        let mut path = vec![sub.as_str()];
        for w in words.iter().skip(1) {
            match cmd.find_subcommand(w) {
                Some(inner) => {
                    cmd = inner;
                    path.push(w);
                }
                None => break,
            }
        }
        for (i, w) in words.iter().enumerate() {
            let Some(flag) = w.trim_start_matches('[').strip_prefix("--") else {
                continue;
            };
            let flag = flag.trim_end_matches([']', '.']);
            shown.insert(flag.to_string());
            let Some(arg) = cmd.get_arguments().find(|a| a.get_long() == Some(flag)) else {
                problems.push(format!(
                    "roster {sub}: the README shows --{flag}, which --help does not have"
                ));
                continue;
            };
            if !arg.get_action().takes_values() {
                continue;
            }
            // The value shown: a PLACEHOLDER, or exactly the possible values.
            let value = words
                .get(i + 1)
                .map(|v| v.trim_end_matches([']', '.']))
                .unwrap_or_default();
            let possible: Vec<String> = arg
                .get_possible_values()
                .iter()
                .map(|p| p.get_name().to_string())
                .collect();
            if possible.is_empty() {
                if value.is_empty() || value.chars().any(|c| c.is_ascii_lowercase()) {
                    problems.push(format!(
                        "roster {sub}: --{flag} is shown with `{value}`, which looks like a value: show a PLACEHOLDER and document the default ({:?}) in the text",
                        arg.get_default_values()
                    ));
                }
            } else {
                let shown_values: Vec<String> = value.split("\\|").map(str::to_string).collect();
                if shown_values != possible && value != "..." {
                    problems.push(format!(
                        "roster {sub}: --{flag} is shown with {shown_values:?}, --help allows {possible:?}"
                    ));
                }
            }
        }
        for flag in help_flags(&path) {
            let elsewhere = GLOBAL.contains(&flag.as_str()) || STORE_FLAGS.contains(&flag.as_str());
            if !elsewhere && !shown.contains(&flag) {
                problems.push(format!(
                    "roster {sub}: --{flag} is in --help but not in the README's CLI table"
                ));
            }
        }
    }
    for flag in STORE_FLAGS.iter().chain(["store"].iter()) {
        if !doc.contains(&format!("`--{flag} ")) && !doc.contains(&format!("`--{flag}`")) {
            problems.push(format!("the Stores table does not document --{flag}"));
        }
    }
    for flag in ["-v", "-q"] {
        if !doc.contains(&format!("`{flag}`")) {
            problems.push(format!("the global flag {flag} is not documented"));
        }
    }
    assert!(
        problems.is_empty(),
        "README.md vs the binary:\n{}",
        problems.join("\n")
    );
}

fn write(dir: &Path, name: &str, text: &str) {
    let path: PathBuf = dir.join(name);
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, text).expect("write");
}

/// The README paragraph that documents the JSON plan.
fn json_plan_doc(doc: &str) -> &str {
    let start = doc
        .find("- **json** (`\"format_version\": 1`)")
        .expect("the JSON plan bullet");
    let rest = &doc[start..];
    let end = rest.find("\n\n").unwrap_or(rest.len());
    &rest[..end]
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn the_documented_json_plan_keys_match_a_real_plan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = "roles:\n  reader:\n    permissions: [payroll.read]\ngroups:\n  staff:\n    roles: [reader]\nusers:\n  lms:\n    display_name: LMS\n    groups: [staff]\n  survey:\n    display_name: Survey\n  keep:\n    display_name: Keep\n    protected: true\n";
    write(dir.path(), "config/a.yaml", base);
    let out = roster(dir.path(), &["apply", "config", "--yes"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let empty = roster(dir.path(), &["plan", "config", "--format", "json"]);
    let empty: Value = serde_json::from_str(&stdout(&empty)).expect("json");
    // Drift, an unmanaged user the config names (adopted), a protected user
    // removed from the files, a rename, new secrets.
    let state_path = dir.path().join(".roster/state.json");
    let mut state: Value =
        serde_json::from_str(&fs::read_to_string(&state_path).expect("state")).expect("json");
    state["users"]["lms"]["spec"]["display_name"] = "Edited by hand".into();
    let mut legacy = state["users"]["survey"].clone();
    legacy["managed"] = false.into();
    state["users"]["legacy"] = legacy.clone();
    state["users"]["by-hand"] = legacy;
    fs::write(&state_path, serde_json::to_string(&state).expect("json")).expect("write");
    let changed = "roles:\n  reader:\n    permissions: [payroll.read, payroll.write]\ngroups:\n  staff:\n    roles: [reader]\nusers:\n  lms:\n    display_name: LMS\n    groups: [staff]\n    credentials: { token: true }\n  survey2:\n    display_name: Survey\n    previous_names: [survey]\n  legacy:\n    display_name: Legacy\n    roles: [reader]\n";
    write(dir.path(), "config/a.yaml", changed);
    let out = roster(
        dir.path(),
        &[
            "plan",
            "config",
            "--format",
            "json",
            "--adopt",
            "user.legacy",
            "--allow-mass-removal",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let full: Value = serde_json::from_str(&stdout(&out)).expect("json");
    let doc = readme();
    let bullet = json_plan_doc(&doc);
    let mut problems = Vec::new();
    let mut step_keys = BTreeSet::new();
    for s in full["steps"].as_array().expect("steps") {
        step_keys.extend(keys(s));
    }
    for k in keys(&full).iter().chain(step_keys.iter()) {
        let shown = [format!("`{k}`"), format!("`{k}:"), format!("`\"{k}\"")];
        if !shown.iter().any(|f| bullet.contains(f.as_str())) {
            problems.push(format!("plan key `{k}` is not documented"));
        }
    }
    for k in keys(&full["summary"]) {
        if !bullet.contains(k.as_str()) {
            problems.push(format!("summary key `{k}` is not documented"));
        }
    }
    // What an empty plan leaves out must be said to be left out.
    let omitted = bullet
        .split("are left out:")
        .nth(1)
        .expect("the bullet says which empty keys are left out");
    for k in keys(&full).difference(&keys(&empty)) {
        if !omitted.contains(&format!("`{k}`")) {
            problems.push(format!(
                "plan key `{k}` is left out when empty, which the README does not say"
            ));
        }
    }
    for (needed, what) in [
        ("drift", "drift"),
        ("access", "access"),
        ("unmanaged", "unmanaged"),
        ("protected", "protected"),
    ] {
        if full.get(needed).is_none() {
            problems.push(format!(
                "the test plan has no `{what}`: it no longer exercises it"
            ));
        }
    }
    assert!(
        step_keys.contains("adopt") && step_keys.contains("renamed_from"),
        "the test plan no longer adopts or renames: {step_keys:?}"
    );
    assert!(
        problems.is_empty(),
        "README.md vs a real plan:\n{}",
        problems.join("\n")
    );
}
