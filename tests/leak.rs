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

/// Issue 16, in the leak suite: a real hash moved into other fields of the
/// state (an enum field, a set-rights level, a top-level key) comes back in
/// no command's output (it used to, inside ``unknown variant `…` ``); and a
/// store URL carrying a password or a token in its query is echoed by no
/// error.
#[test]
fn hashes_moved_into_other_state_fields_and_url_credentials_never_leak() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    cli::copy_example("iris-hr", &d.join("config"));
    let (ok, r) = roster(d, &["apply", "config", "--yes", "--secrets-out", "s1.json"]);
    assert!(ok, "{}", r.out);
    let state_path = d.join(".roster/state.json");
    let (hashes, _) = hashes_and_rest(&state_path);
    let hash = hashes.first().expect("a hash").clone();
    let good: Value = serde_json::from_str(&fs::read_to_string(&state_path).unwrap()).unwrap();
    let user = good["users"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    type Plant<'a> = (&'a str, Box<dyn Fn(&mut Value) + 'a>);
    let plants: [Plant; 4] = [
        (
            "spec.class",
            Box::new(|v| v["users"][&user]["spec"]["class"] = hash.clone().into()),
        ),
        (
            "spec.authentication",
            Box::new(|v| v["users"][&user]["spec"]["authentication"] = hash.clone().into()),
        ),
        (
            "set_rights",
            Box::new(|v| {
                v["users"][&user]["spec"]["set_rights"] =
                    serde_json::json!({"salary": hash.clone()})
            }),
        ),
        ("top-level key", Box::new(|v| v[hash.as_str()] = 1.into())),
    ];
    for (what, plant) in &plants {
        let mut v = good.clone();
        plant(&mut v);
        fs::write(&state_path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
        for args in [
            vec!["plan", "config", "-vvv"],
            vec!["plan", "config", "--format", "json"],
            vec![
                "apply",
                "config",
                "--yes",
                "--secrets-out",
                "s9.json",
                "-vvv",
            ],
            vec!["export"],
            vec!["history"],
        ] {
            let (ok, r) = roster(d, &args);
            assert!(!ok, "{what}: {args:?} should fail on the corrupt state");
            assert_clean(
                &format!("{what}: roster {}", args.join(" ")),
                &r.out,
                &[],
                &hashes,
            );
            assert!(r.out.contains("is corrupt"), "{what}: {}", r.out);
        }
    }
    for url in [
        "scim+https://admin:hunter2-leak@scim.example/v2",
        "etcd://root:pa/ss-hunter2-leak@10.0.0.1:2379/roster",
        "etcd://10.0.0.1:2379/roster?token=hunter2-leak",
    ] {
        let (ok, r) = roster(d, &["plan", "config", "--store", url, "-vvv"]);
        assert!(!ok, "{url}");
        assert!(!r.out.contains("hunter2-leak"), "{url}: {}", r.out);
    }
}
