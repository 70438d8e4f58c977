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

/// The README plans all three examples at once, so together they must also be
/// one valid config: no user, group, role, template or email collides across
/// them, only one of them holds `settings`, and the IRIS HR limit of 10 active
/// users holds for all of them together.
#[test]
fn all_examples_at_once_validate() {
    let paths = EXAMPLES.map(|n| format!("examples/{n}"));
    let mut args = vec!["validate"];
    args.extend(paths.iter().map(String::as_str));
    let out = roster(&args);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(out.stderr.is_empty(), "{}", show(&out));

    args.extend(["--format", "json"]);
    let out = roster(&args);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("validate --format json prints JSON");
    assert_eq!(v["valid"], true, "{v:#}");
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
