//! Leak scan (issue 8, item 4): generated secrets and their hashes never
//! appear in any output, at any log level, on any store, on success or on
//! any failure path we can provoke.
//!
//! Every command runs with `RUST_LOG=trace` and `-vvv`; stdout and stderr are
//! scanned for:
//! - every secret and hash known so far (from the secrets files and the
//!   store), raw and base64-encoded at each alignment (etcd's gateway speaks
//!   base64);
//! - detectors for secrets we never got to see (failure paths): passwords are
//!   configured as 40 digits (no output has 20 digits in a row otherwise),
//!   tokens carry the prefix `LEAKPROBE_`, hashes start `$argon2id$`.
//!
//! Failure paths: secrets file exists / is a symlink / its directory is
//! missing; the secrets write fails part-way (RLIMIT_FSIZE); the commit fails
//! after the secrets were written (RLIMIT_FSIZE); a stale saved plan; a
//! corrupt state file holding a hash; the etcd server stopped. (A SCIM
//! server is a target now, not a store: its leak checks are in
//! `tests/reliability_remote.rs`.)

mod reliability_support;

#[allow(dead_code)]
#[path = "common/etcd.rs"]
mod etcd_harness;

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

use base64::Engine;
use reliability_support::{Work, hashes, read_secrets, text};
use serde_json::Value;

const CONFIG_HEAD: &str = "settings:\n  argon2: { memory_kib: 8192, iterations: 1 }\n  max_removal_fraction: 1.0\n  \
     password: { length: 40, lowercase: false, uppercase: false, digits: true, symbols: false }\n  \
     token: { prefix: LEAKPROBE_, bytes: 24 }\n";

fn config(users: &[(&str, u32)]) -> String {
    let mut s = String::from(CONFIG_HEAD);
    s.push_str("roles:\n  reader:\n    permissions: [payroll.read]\nusers:\n");
    for (name, rotation) in users {
        s.push_str(&format!(
            "  {name}:\n    display_name: User {name}\n    email: {name}@acme.example\n    roles: [reader]\n    \
             credentials: {{ password: true, token: true, rotation: {rotation} }}\n"
        ));
    }
    s
}

/// What must never be printed.
#[derive(Default)]
struct Known {
    needles: BTreeSet<String>,
    outputs: usize,
}

fn b64_needles(s: &str) -> Vec<String> {
    let e = base64::engine::general_purpose::STANDARD;
    (0..3)
        .filter(|&k| s.len() > k + 24)
        .map(|k| e.encode(&s.as_bytes()[k..])[..20].to_string())
        .collect()
}

impl Known {
    fn add(&mut self, value: &str) {
        self.needles.insert(value.to_string());
        // The random part of a PHC string on its own, too.
        if let Some(tail) = value.rsplit('$').next()
            && tail.len() >= 16
        {
            self.needles.insert(tail.to_string());
        }
        self.needles.extend(b64_needles(value));
    }
    fn add_secrets_file(&mut self, path: &Path) {
        if let Some(s) = read_secrets(path) {
            for v in s.values() {
                self.add(v);
            }
        }
    }
    fn add_state(&mut self, state: &Value) {
        for h in hashes(state).values() {
            self.add(h);
        }
    }
    /// Scan one command's output.
    fn check(&mut self, what: &str, out: &Output) {
        self.outputs += 1;
        let all = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for n in &self.needles {
            assert!(
                !all.contains(n.as_str()),
                "{what}: output contains a secret or a hash (status {:?})",
                out.status
            );
        }
        assert!(
            !all.contains("$argon2"),
            "{what}: output contains an argon2 hash"
        );
        assert!(
            !all.contains("LEAKPROBE_") || !has_token_after(&all, "LEAKPROBE_"),
            "{what}: output contains a token"
        );
        let mut run = 0;
        for c in all.chars() {
            run = if c.is_ascii_digit() { run + 1 } else { 0 };
            assert!(
                run < 20,
                "{what}: output contains 20 digits in a row (a password?)"
            );
        }
    }
}

/// A token is the prefix followed by >= 16 base64url characters.
fn has_token_after(all: &str, prefix: &str) -> bool {
    all.match_indices(prefix).any(|(i, _)| {
        all[i + prefix.len()..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .count()
            >= 16
    })
}

fn traced(mut c: Command) -> Command {
    c.env("RUST_LOG", "trace");
    c
}

fn run(work: &Work, store: &str, args: &[&str]) -> Output {
    let mut full = vec!["-vvv"];
    full.extend_from_slice(args);
    let mut c = traced(work.command(&full));
    c.env("ROSTER_STORE", store);
    c.output().expect("run roster")
}

/// Run with a file-size limit (SIGXFSZ ignored so writes fail with EFBIG).
fn run_fsize(work: &Work, store: &str, args: &[&str], limit: u64) -> Output {
    let mut full = vec!["-vvv"];
    full.extend_from_slice(args);
    let mut c = traced(work.command(&full));
    c.env("ROSTER_STORE", store);
    // SAFETY: only async-signal-safe calls (signal, setrlimit) between fork and exec.
    unsafe {
        c.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c.output().expect("run roster")
}

const APPLY: [&str; 5] = [
    "apply",
    "config",
    "--yes",
    "--allow-mass-removal",
    "--secrets-out",
];

fn apply(work: &Work, store: &str, secrets: &str) -> Output {
    let mut a = APPLY.to_vec();
    a.push(secrets);
    run(work, store, &a)
}

/// The success paths every store shares: apply, re-plan in every format,
/// show, export, history, rotate, deactivate. Returns the known secrets.
fn success_paths(
    work: &Work,
    store: &str,
    tag: &str,
    known: &mut Known,
    state: &dyn Fn() -> Value,
) {
    work.write_config(&config(&[("alpha", 0), ("beta", 0), ("gamma", 0)]));
    let s1 = format!("secrets/{tag}-1.json");
    let out = apply(work, store, &s1);
    assert!(out.status.success(), "{}", text(&out));
    known.add_secrets_file(&work.path(&s1));
    known.add_state(&state());
    assert!(known.needles.len() >= 6, "no secrets were generated");
    known.check("apply", &out);
    // Rotate one, deactivate one.
    work.write_config(&config(&[("alpha", 1), ("beta", 0)]));
    let plan_file = format!("{tag}-plan.json");
    for args in [
        vec!["validate", "config"],
        vec!["validate", "config", "--format", "json"],
        vec!["plan", "config"],
        vec!["plan", "config", "--format", "json"],
        vec!["plan", "config", "--format", "markdown"],
        vec!["plan", "config", "--out", &plan_file],
        vec!["show", &plan_file],
        vec!["show", &plan_file, "--format", "json"],
        vec!["export"],
        vec!["history"],
        vec!["history", "--format", "json"],
    ] {
        let out = run(work, store, &args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        known.check(&format!("{tag}: {args:?}"), &out);
    }
    let plan_text = std::fs::read_to_string(work.path(&plan_file)).expect("plan file");
    known.check(
        "saved plan file",
        &Output {
            status: out.status,
            stdout: plan_text.into_bytes(),
            stderr: Vec::new(),
        },
    );
    let s2 = format!("secrets/{tag}-2.json");
    let out = run(
        work,
        store,
        &["apply", "--plan", &plan_file, "--yes", "--secrets-out", &s2],
    );
    assert!(out.status.success(), "{}", text(&out));
    known.add_secrets_file(&work.path(&s2));
    known.add_state(&state());
    known.check(&format!("{tag}: apply --plan"), &out);
    // Nothing left to do; all read commands once more with the new secrets known.
    for args in [vec!["plan", "config"], vec!["export"], vec!["history"]] {
        let out = run(work, store, &args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        known.check(&format!("{tag}: {args:?} after rotation"), &out);
    }
}

/// Failure paths that do not depend on the store.
fn refused_secrets_paths(work: &Work, store: &str, tag: &str, known: &mut Known) {
    work.write_config(&config(&[("alpha", 2), ("beta", 0), ("delta", 0)]));
    std::fs::write(work.path("secrets/exists.json"), "").expect("write");
    let _ = std::os::unix::fs::symlink(work.path("elsewhere"), work.path("secrets/link.json"));
    for (path, says) in [
        ("secrets/exists.json", "already exists"),
        ("secrets/link.json", "symbolic link"),
        ("no-such-dir/s.json", "does not exist"),
    ] {
        let out = apply(work, store, path);
        assert_eq!(out.status.code(), Some(1), "{path}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{}",
            text(&out)
        );
        known.check(&format!("{tag}: refused {path}"), &out);
    }
    // The secrets write fails part-way: 200 bytes (the lock record fits, four
    // secrets do not), then EFBIG.
    let out = run_fsize(
        work,
        store,
        &[&APPLY[..], &[&*format!("secrets/{tag}-efbig.json")]].concat(),
        200,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("writing the secrets failed"),
        "{}",
        text(&out)
    );
    assert!(
        !work.path(&format!("secrets/{tag}-efbig.json")).exists(),
        "partial secrets file left"
    );
    known.check(&format!("{tag}: secrets write fails"), &out);
}

#[test]
fn file_store_never_leaks_on_success_or_failure() {
    let work = Work::new();
    let store = work.store_url();
    let mut known = Known::default();
    let state = || -> Value { serde_json::from_slice(&work.state_bytes().unwrap()).unwrap() };
    success_paths(&work, &store, "file", &mut known, &state);
    refused_secrets_paths(&work, &store, "file", &mut known);

    // The commit fails after the secrets were written: the state file is
    // bigger than the limit, the secrets file is not.
    let state_len = work.state_bytes().unwrap().len() as u64;
    let s = "secrets/file-commit-fails.json";
    let out = run_fsize(&work, &store, &[&APPLY[..], &[s]].concat(), state_len - 1);
    known.add_secrets_file(&work.path(s));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(work.path(s).exists(), "the secrets were not written first");
    known.check("file: commit fails", &out);

    // A stale saved plan.
    let out = run(&work, &store, &["plan", "config", "--out", "stale.json"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = apply(&work, &store, "secrets/file-3.json");
    assert!(out.status.success(), "{}", text(&out));
    known.add_secrets_file(&work.path("secrets/file-3.json"));
    known.add_state(&state());
    known.check("file: apply", &out);
    work.write_config(&config(&[("alpha", 3)]));
    let out = run(
        &work,
        &store,
        &[
            "apply",
            "--plan",
            "stale.json",
            "--yes",
            "--secrets-out",
            "secrets/never.json",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    known.check("file: stale plan", &out);

    // A corrupt state file that holds hashes in the wrong places.
    let mut v = state();
    let (_, hash) = hashes(&v).into_iter().next().expect("a hash");
    v["serial"] = Value::String(hash.clone());
    std::fs::write(work.state_path(), serde_json::to_vec(&v).unwrap()).expect("write");
    for args in [vec!["plan", "config"], vec!["export"], vec!["history"]] {
        let out = run(&work, &store, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        known.check(&format!("file: corrupt state, {args:?}"), &out);
    }
    let mut v = state_from_bytes(&work);
    v["serial"] = Value::from(1);
    let first_user = v["users"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    v["users"][&first_user]["meta"]["secrets"] = Value::String(hash);
    std::fs::write(work.state_path(), serde_json::to_vec(&v).unwrap()).expect("write");
    let out = run(&work, &store, &["plan", "config"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    known.check("file: corrupt secrets field", &out);
    eprintln!(
        "file store: {} outputs scanned, {} needles",
        known.outputs,
        known.needles.len()
    );
}

fn state_from_bytes(work: &Work) -> Value {
    // The corrupted file above is still JSON.
    serde_json::from_slice(&work.state_bytes().unwrap()).unwrap()
}

/// The etcd store's state as roster sees it, through the library (the gateway
/// values are base64; the library decodes them).
fn etcd_state(url: &str) -> Value {
    let store = roster::store::open(url, &roster::store::OpenOptions::default()).expect("open");
    let snap = store.read().expect("read etcd");
    let mut users = serde_json::Map::new();
    for (name, rec) in &snap.users {
        users.insert(
            name.clone(),
            serde_json::to_value(rec).expect("record JSON"),
        );
    }
    serde_json::json!({ "users": users })
}

#[test]
fn etcd_store_never_leaks_on_success_or_failure() {
    let mut etcd = etcd_harness::Etcd::start();
    let work = Work::new();
    let store = format!("etcd://{}/leak", etcd.endpoint());
    let mut known = Known::default();
    let url = store.clone();
    success_paths(&work, &store, "etcd", &mut known, &|| etcd_state(&url));
    refused_secrets_paths(&work, &store, "etcd", &mut known);
    // The server goes away.
    etcd.kill();
    work.write_config(&config(&[("alpha", 5), ("omega", 0)]));
    for args in [vec!["plan", "config"], vec!["export"], vec!["history"]] {
        let out = run(&work, &store, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        known.check(&format!("etcd down: {args:?}"), &out);
    }
    let out = apply(&work, &store, "secrets/etcd-down.json");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    known.check("etcd down: apply", &out);
    eprintln!(
        "etcd store: {} outputs scanned, {} needles",
        known.outputs,
        known.needles.len()
    );
}
