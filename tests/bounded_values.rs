//! Every string in a config has a documented maximum (and the identifiers
//! written to stores a pattern): a hostile value is refused with a located,
//! short error before anything is planned or written. The per-field cases are
//! golden cases in `tests/invalid/` (`*-bounded-*`, `*-pattern-*`); this file
//! holds the ones too large to keep as files.

use std::process::Command;

/// Regression: a 60 MB `display_name` validated, planned and would have been
/// written to every store and target.
#[test]
fn a_60_mb_display_name_is_refused_with_a_short_located_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let long = "a".repeat(60 * 1024 * 1024);
    std::fs::write(
        dir.path().join("users.yaml"),
        format!("users:\n  big:\n    display_name: {long}\n    groups: [nope]\n"),
    )
    .expect("write the config");
    drop(long);
    let out = Command::new(env!("CARGO_BIN_EXE_roster"))
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .args(["validate", "users.yaml"])
        .output()
        .expect("roster runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "users.yaml:3:19: error[schema.length]: `display_name` is 62914560 characters long; at most 256 are allowed"
        ),
        "{}",
        &stderr[..stderr.len().min(2000)]
    );
    // The rest of the entry is still checked.
    assert!(stderr.contains("error[ref.unknown-group]: unknown group `nope`"));
    assert!(
        stderr.len() < 4096,
        "the error output is {} bytes: the value must not be echoed",
        stderr.len()
    );
    // `plan` refuses it the same way, before any store is involved.
    let out = Command::new(env!("CARGO_BIN_EXE_roster"))
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .args(["plan", "users.yaml", "--store", "file:state/state.json"])
        .output()
        .expect("roster runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error[schema.length]"));
    assert!(
        !dir.path().join("state").exists(),
        "an invalid config touched the store"
    );
}
