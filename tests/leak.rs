//! The leak suite: full plan/apply cycles on the bundled examples, asserting
//! that no generated secret and no secret hash appears anywhere but the
//! secrets output (and, for hashes, the state's hash fields): not in plan
//! output of any format, saved plan files, stdout/stderr of any command (with
//! `RUST_LOG=trace` and `-vvv`), error messages, the state's other fields, or
//! `roster export`.

use std::fs;
use std::path::Path;

use serde_json::Value;

#[path = "common/cli.rs"]
mod cli;

struct Run {
    out: String,
}

fn roster(dir: &Path, args: &[&str]) -> (bool, Run) {
    let o = cli::roster_command(dir)
        .args(args)
        .env("RUST_LOG", "trace")
        .output()
        .expect("run roster");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), Run { out })
}

fn secret_values(path: &Path) -> Vec<String> {
    let v: Value = serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    v["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["value"].as_str().unwrap().to_string())
        .collect()
}

/// Every hash in the state, and the state with its hash fields removed.
fn hashes_and_rest(state: &Path) -> (Vec<String>, String) {
    let mut v: Value = serde_json::from_str(&fs::read_to_string(state).unwrap()).unwrap();
    let mut hashes = Vec::new();
    if let Some(users) = v["users"].as_object_mut() {
        for u in users.values_mut() {
            if let Some(s) = u["meta"].get_mut("secrets").and_then(Value::as_object_mut) {
                for k in ["password", "token"] {
                    if let Some(h) = s.remove(k).and_then(|h| h.as_str().map(str::to_string)) {
                        hashes.push(h);
                    }
                }
            }
        }
    }
    (hashes, v.to_string())
}

fn assert_clean(what: &str, text: &str, secrets: &[String], hashes: &[String]) {
    for s in secrets {
        assert!(
            !text.contains(s.as_str()),
            "{what} contains a generated secret"
        );
    }
    for h in hashes {
        // The salt+hash part is what must never leak; the PHC header is public.
        let tail = h.rsplit('$').next().unwrap_or(h);
        assert!(!text.contains(tail), "{what} contains a secret hash");
    }
    assert!(
        !text.contains("$argon2id$"),
        "{what} contains an argon2 hash"
    );
}

#[test]
fn no_secret_or_hash_leaks_through_a_full_lifecycle() {
    for example in ["avanti", "iris-hr", "avaamo"] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        cli::copy_example(example, &d.join("config"));
        let mut outputs: Vec<(String, String)> = Vec::new();
        let mut run = |args: &[&str], expect_ok: bool| {
            let (ok, r) = roster(d, args);
            assert_eq!(ok, expect_ok, "{example}: roster {args:?}:\n{}", r.out);
            outputs.push((format!("{example}: roster {}", args.join(" ")), r.out));
        };
        for f in ["text", "markdown", "json"] {
            run(&["plan", "config", "--format", f, "-vvv"], true);
        }
        run(&["plan", "config", "--out", "plan1.json"], true);
        run(
            &[
                "apply",
                "--plan",
                "plan1.json",
                "--yes",
                "--secrets-out",
                "s1.json",
                "-vvv",
            ],
            true,
        );
        // Rotate the users whose password is declared inline.
        for entry in walk(&d.join("config")) {
            let text = fs::read_to_string(&entry).unwrap();
            if text.contains("credentials: {password: true}") {
                fs::write(
                    &entry,
                    text.replace(
                        "credentials: {password: true}",
                        "credentials: {password: true, rotation: 5}",
                    ),
                )
                .unwrap();
            }
        }
        run(
            &["plan", "config", "--out", "plan2.json", "--format", "json"],
            true,
        );
        run(
            &[
                "apply",
                "config",
                "--yes",
                "--secrets-out",
                "s2.json",
                "-vvv",
            ],
            true,
        );
        // Failure paths: the secrets file exists (refused), a stale saved plan, an invalid config.
        fs::write(
            d.join("config/zz-extra.yaml"),
            "users:\n  leak-check:\n    display_name: Leak check\n    credentials: {token: true}\n",
        )
        .unwrap();
        run(
            &["apply", "config", "--yes", "--secrets-out", "s1.json"],
            false,
        );
        run(
            &[
                "apply",
                "--plan",
                "plan1.json",
                "--yes",
                "--secrets-out",
                "s3.json",
            ],
            false,
        );
        fs::write(
            d.join("config/zz-bad.yaml"),
            "users:\n  bad:\n    display_nam: x\n",
        )
        .unwrap();
        run(&["validate", "config"], false);
        run(&["plan", "config", "--format", "json"], false);
        fs::remove_file(d.join("config/zz-bad.yaml")).unwrap();
        run(
            &["apply", "config", "--yes", "--secrets-out", "s3.json"],
            true,
        );
        run(&["export"], true);
        run(&["history"], true);
        run(&["show", "plan2.json", "--format", "markdown"], true);

        let mut secrets = secret_values(&d.join("s1.json"));
        if d.join("s2.json").exists() {
            secrets.extend(secret_values(&d.join("s2.json")));
        }
        secrets.extend(secret_values(&d.join("s3.json")));
        assert!(!secrets.is_empty(), "{example} generated secrets");
        let (hashes, rest_of_state) = hashes_and_rest(&d.join(".roster/state.json"));
        assert!(!hashes.is_empty());
        for (what, text) in &outputs {
            assert_clean(what, text, &secrets, &hashes);
        }
        for plan in ["plan1.json", "plan2.json"] {
            assert_clean(
                plan,
                &fs::read_to_string(d.join(plan)).unwrap(),
                &secrets,
                &hashes,
            );
        }
        assert_clean("the state's non-hash fields", &rest_of_state, &secrets, &[]);
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
