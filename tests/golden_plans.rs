//! Golden plans: for each bundled example, the text, Markdown and JSON plans
//! against an empty store and against a store with changes are committed in
//! `tests/golden/EXAMPLE/` and compared byte for byte.
//!
//! The "changed" store is the example applied, then altered the way the world
//! drifts: a display name edited outside roster, a user deactivated outside
//! roster, a role deleted, a managed user the files no longer declare, and an
//! unmanaged user; plus one new user in the config. Run with `BLESS=1` to
//! rewrite the golden files, then review the diff.

use std::fs;
use std::path::PathBuf;

use serde_json::{Value, json};

#[path = "common/cli.rs"]
mod cli;
use cli::{copy_example, roster};

const EXAMPLES: [&str; 3] = ["avanti", "iris-hr", "avaamo"];
/// The moment the golden plans are made for (plans record it).
const NOW: &str = "2026-01-15T09:00:00Z";
const FORMATS: [(&str, &str); 3] = [("text", "txt"), ("markdown", "md"), ("json", "json")];

/// The plan output with the store's random lineage replaced.
fn normalized(out: &[u8], lineage: Option<&str>) -> String {
    let text = String::from_utf8_lossy(out).into_owned();
    match lineage {
        Some(l) if !l.is_empty() => text.replace(l, "LINEAGE"),
        _ => text,
    }
}

fn check(name: &str, actual: &str, mismatches: &mut Vec<String>) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("BLESS").is_some() {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, actual).unwrap();
        return;
    }
    match fs::read_to_string(&path) {
        Ok(expected) if expected == actual => {}
        Ok(expected) => {
            let diff = similar::TextDiff::from_lines(&expected, actual)
                .unified_diff()
                .header("expected", "actual")
                .to_string();
            mismatches.push(format!("{name} differs:\n{diff}"));
        }
        Err(_) => mismatches.push(format!("{name} is missing (run with BLESS=1)")),
    }
}

/// Alter the applied state the way the world drifts (a role is removed only
/// where the example has roles: IRIS HR works with set rights alone).
fn drift_state(state: &mut Value) {
    let users = state["users"].as_object_mut().unwrap();
    let names: Vec<String> = users
        .iter()
        .filter(|(_, u)| u["spec"]["active"] == true)
        .map(|(n, _)| n.clone())
        .collect();
    let edited = &names[0];
    let display = users[edited]["spec"]["display_name"]
        .as_str()
        .unwrap()
        .to_string();
    users[edited]["spec"]["display_name"] = json!(format!("{display} (edited outside roster)"));
    let deactivated = &names[1];
    users[deactivated]["spec"]["active"] = json!(false);
    users[deactivated]["meta"]["secrets"] = json!({});
    let mut retired = users[edited].clone();
    retired["spec"]["display_name"] = json!("Retired integration");
    retired["spec"]["email"] = Value::Null;
    retired["meta"]["applied_digest"] = Value::Null;
    retired["meta"]["secrets"] = json!({});
    users.insert("retired-integration".into(), retired.clone());
    let mut legacy = retired;
    legacy["managed"] = json!(false);
    legacy["spec"]["display_name"] = json!("Legacy admin created by hand");
    users.insert("legacy-admin".into(), legacy);
    if let Some(roles) = state.get_mut("roles").and_then(Value::as_object_mut)
        && let Some(first) = roles.keys().next().cloned()
    {
        roles.remove(&first);
    }
}

const NEW_USER: &str = "users:\n  golden-new-user:\n    display_name: New reporting integration\n    email: golden-new-user@acme.example\n    credentials: { token: true }\n";

#[test]
fn example_plans_match_their_golden_files() {
    let mut mismatches = Vec::new();
    for example in EXAMPLES {
        let dir = tempfile::tempdir().unwrap();
        copy_example(example, &dir.path().join("config"));
        for (format, ext) in FORMATS {
            let out = roster(
                dir.path(),
                &["plan", "config", "--format", format, "--now", NOW],
            );
            assert!(
                out.status.success(),
                "{example} {format}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            check(
                &format!("{example}/empty.{ext}"),
                &normalized(&out.stdout, None),
                &mut mismatches,
            );
        }
        let apply = roster(
            dir.path(),
            &["apply", "config", "--yes", "--secrets-out", "secrets.json"],
        );
        assert!(
            apply.status.success(),
            "{example}: {}",
            String::from_utf8_lossy(&apply.stderr)
        );
        let state_path = dir.path().join(".roster/state.json");
        let mut state: Value =
            serde_json::from_str(&fs::read_to_string(&state_path).unwrap()).unwrap();
        drift_state(&mut state);
        fs::write(&state_path, serde_json::to_string_pretty(&state).unwrap()).unwrap();
        fs::write(dir.path().join("config/zz-new-user.yaml"), NEW_USER).unwrap();
        let lineage = state["lineage"].as_str().map(str::to_string);
        for (format, ext) in FORMATS {
            let out = roster(
                dir.path(),
                &["plan", "config", "--format", format, "--now", NOW],
            );
            assert!(
                out.status.success(),
                "{example} {format}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            check(
                &format!("{example}/changed.{ext}"),
                &normalized(&out.stdout, lineage.as_deref()),
                &mut mismatches,
            );
        }
        // The changed plan applies, and then nothing is left to do.
        let apply = roster(
            dir.path(),
            &["apply", "config", "--yes", "--secrets-out", "secrets2.json"],
        );
        assert!(
            apply.status.success(),
            "{example}: {}",
            String::from_utf8_lossy(&apply.stderr)
        );
        let replan = roster(dir.path(), &["plan", "config", "--detailed-exitcode"]);
        assert_eq!(
            replan.status.code(),
            Some(0),
            "{example}: {}",
            String::from_utf8_lossy(&replan.stdout)
        );
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
