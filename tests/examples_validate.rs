//! The shipped examples (`examples/avanti`, `examples/iris-hr`, `examples/avaamo`)
//! must pass `roster validate`, run as a user would run it (the built binary).
//! Also checks that every example file starts with the editor schema header
//! pointing at `schemas/roster.schema.json` from the file's own depth.
//!
//! Read-only: runs the binary on the committed files and writes nothing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EXAMPLES: [&str; 3] = ["avanti", "iris-hr", "avaamo"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn roster(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_roster"))
        .current_dir(root())
        .env("NO_COLOR", "1")
        .args(args)
        .output()
        .expect("the roster binary runs")
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yaml_files(&p, out);
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            out.push(p);
        }
    }
}

#[test]
fn each_example_validates() {
    for name in EXAMPLES {
        let path = format!("examples/{name}");
        let out = roster(&["validate", &path]);
        assert_eq!(out.status.code(), Some(0), "{path}: {}", show(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.starts_with("valid: "), "{path}: {}", show(&out));
        assert!(out.stderr.is_empty(), "{path}: {}", show(&out));

        let out = roster(&["validate", &path, "--format", "json"]);
        assert_eq!(out.status.code(), Some(0), "{path}: {}", show(&out));
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("validate --format json prints JSON");
        assert_eq!(v["valid"], true, "{path}: {v}");
        assert_eq!(v["errors"], serde_json::json!([]), "{path}: {v}");
    }
}

/// The three examples describe three different organisations, so together they
/// are not one config: each has its own `settings`. Run together, the only
/// problem must be that second `settings` — no user, group, role, template or
/// email collides across examples, and nothing else is reported.
#[test]
fn all_examples_at_once_conflict_only_on_settings() {
    let out = roster(&[
        "validate",
        "examples/avanti",
        "examples/iris-hr",
        "examples/avaamo",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("validate --format json prints JSON");
    let errors = v["errors"].as_array().expect("an errors list");
    assert_eq!(errors.len(), 1, "{v:#}");
    let e = &errors[0];
    assert_eq!(e["code"], "config.duplicate", "{v:#}");
    assert_eq!(e["file"], "examples/iris-hr/settings.yaml", "{v:#}");
    assert_eq!(
        e["related"][0]["file"], "examples/avanti/settings.yaml",
        "{v:#}"
    );

    // Without the examples' own settings the three also load as one config
    // (the IRIS limit of 10 active users would apply to all of them, so the
    // settings files are left out here).
    let mut paths: Vec<String> = Vec::new();
    for name in EXAMPLES {
        let mut files = Vec::new();
        yaml_files(&root().join("examples").join(name), &mut files);
        for f in files {
            if f.file_name().is_some_and(|n| n != "settings.yaml") {
                let rel = f.strip_prefix(root()).expect("under the repo");
                paths.push(rel.display().to_string());
            }
        }
    }
    let mut args = vec!["validate"];
    args.extend(paths.iter().map(String::as_str));
    let out = roster(&args);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}

#[test]
fn every_example_file_has_the_schema_header() {
    for name in EXAMPLES {
        let dir = root().join("examples").join(name);
        let mut files = Vec::new();
        yaml_files(&dir, &mut files);
        assert!(
            files.len() >= 3,
            "{}: expected several files",
            dir.display()
        );
        for f in files {
            let rel = f.strip_prefix(root()).expect("under the repo");
            let depth = rel.components().count() - 1;
            let header = format!(
                "# yaml-language-server: $schema={}schemas/roster.schema.json",
                "../".repeat(depth)
            );
            let text = fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let first = text.lines().next().unwrap_or("");
            assert_eq!(first, header, "{}: first line", rel.display());
        }
    }
}
