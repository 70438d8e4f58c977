//! Golden tests for invalid configs: every folder under `tests/invalid/` is one
//! mistake. Its `config/` holds the YAML; `expected.txt` is the exact stderr of
//! `roster validate config` (run from the case folder, `NO_COLOR=1`) and
//! `expected.json` the exact stdout of `roster validate config --format json`.
//!
//! To regenerate the expected files after an intended change, run
//! `BLESS=1 cargo test --test invalid_configs` and review the diff by eye:
//! every message must say where and what.
//!
//! This test only reads the case folders (it writes them only with `BLESS=1`);
//! it never edits `config/`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const MIN_CASES: usize = 30;
/// A case that takes longer than this is a hang (e.g. an alias bomb that was not stopped).
const CASE_LIMIT: Duration = Duration::from_secs(60);

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid")
}

fn cases() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(cases_dir())
        .expect("tests/invalid is readable")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

fn run(case: &Path, json: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_roster"));
    cmd.current_dir(case)
        .env("NO_COLOR", "1")
        .arg("validate")
        .arg("config");
    if json {
        cmd.args(["--format", "json"]);
    }
    let started = Instant::now();
    let out = cmd.output().expect("the roster binary runs");
    assert!(
        started.elapsed() < CASE_LIMIT,
        "{}: validate took {:?}",
        case.display(),
        started.elapsed()
    );
    out
}

fn text(bytes: &[u8], case: &Path, what: &str) -> String {
    String::from_utf8(bytes.to_vec())
        .unwrap_or_else(|e| panic!("{}: {what} is not UTF-8: {e}", case.display()))
}

/// Compare `actual` with the file `name` in `case`; with BLESS, write it instead.
/// Returns a description of the mismatch, if any.
fn check(case: &Path, name: &str, actual: &str, bless: bool) -> Option<String> {
    let path = case.join(name);
    if bless {
        fs::write(&path, actual).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return None;
    }
    match fs::read_to_string(&path) {
        Err(e) => Some(format!(
            "{}: cannot read {name}: {e} (run with BLESS=1 to create it)",
            case.display()
        )),
        Ok(expected) if expected != actual => Some(format!(
            "{}: {name} differs\n--- expected\n{expected}\n--- actual\n{actual}",
            case.display()
        )),
        Ok(_) => None,
    }
}

#[test]
fn every_invalid_config_fails_with_the_expected_diagnostics() {
    let bless = std::env::var_os("BLESS").is_some_and(|v| v == "1");
    let cases = cases();
    assert!(
        cases.len() >= MIN_CASES,
        "expected at least {MIN_CASES} cases in {}, found {}",
        cases_dir().display(),
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        assert!(
            case.join("config").is_dir(),
            "{}: a case needs a config/ folder",
            case.display()
        );
        let out = run(case, false);
        if out.status.code() != Some(1) {
            failures.push(format!(
                "{}: text run exited with {:?}, expected 1",
                case.display(),
                out.status.code()
            ));
        }
        let stdout = text(&out.stdout, case, "stdout");
        if !stdout.is_empty() {
            failures.push(format!(
                "{}: text run wrote to stdout: {stdout}",
                case.display()
            ));
        }
        let stderr = text(&out.stderr, case, "stderr");
        failures.extend(check(case, "expected.txt", &stderr, bless));

        let out = run(case, true);
        if out.status.code() != Some(1) {
            failures.push(format!(
                "{}: json run exited with {:?}, expected 1",
                case.display(),
                out.status.code()
            ));
        }
        let stdout = text(&out.stdout, case, "stdout");
        match serde_json::from_str::<serde_json::Value>(&stdout) {
            Ok(v)
                if v["valid"] == false && v["errors"].as_array().is_some_and(|a| !a.is_empty()) => {
            }
            Ok(v) => failures.push(format!(
                "{}: json output does not report errors: {v}",
                case.display()
            )),
            Err(e) => failures.push(format!(
                "{}: json output does not parse: {e}",
                case.display()
            )),
        }
        failures.extend(check(case, "expected.json", &stdout, bless));
    }
    assert!(
        failures.is_empty(),
        "{} problem(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
