//! Helpers shared by the `tests/reliability_*.rs` binaries: a seeded RNG, a
//! generator of valid configs, running the real `roster` binary, and the
//! state/secrets invariants (state is before-or-after, every new valid hash
//! has its secret in a fully written secrets file).
//!
//! Test-only. Never mocks a store: everything runs the real binary on real
//! files. Must not print a secret or a hash (assertion messages name users and
//! kinds only).

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use roster::plan::PlanOptions;
use roster::store::OpenOptions;
use serde_json::Value;

/// splitmix64: small, seeded, deterministic (the seed is printed by each test).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The seed for a test: `ROSTER_TEST_SEED` or a fixed default, printed so a failure can be replayed.
pub fn seed(test: &str, default: u64) -> u64 {
    let seed = std::env::var("ROSTER_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    eprintln!("{test}: seed {seed} (set ROSTER_TEST_SEED to replay)");
    seed
}

/// A valid config: three roles, two groups, up to eight users with random
/// credentials, rotations, activity, groups, roles and set rights. Cheap
/// argon2 so that hundreds of applies stay fast.
pub fn gen_config(rng: &mut Rng) -> String {
    let mut s = String::from(
        "settings:\n  argon2: { memory_kib: 8192, iterations: 1 }\n  max_removal_fraction: 1.0\nroles:\n",
    );
    let perms = [
        "payroll.read",
        "employee.read",
        "contract.write",
        "personal.read",
    ];
    for r in 0..3 {
        let mut ps: Vec<&str> = perms.iter().copied().filter(|_| rng.chance(50)).collect();
        if ps.is_empty() {
            ps.push(perms[r]);
        }
        let _ = writeln!(s, "  r{r}:\n    permissions: [{}]", ps.join(", "));
    }
    s.push_str("groups:\n");
    for g in 0..2 {
        let roles: Vec<String> = (0..3)
            .filter(|_| rng.chance(40))
            .map(|r| format!("r{r}"))
            .collect();
        let _ = writeln!(
            s,
            "  g{g}:\n    roles: [{}]\n    companies: [ACME]",
            roles.join(", ")
        );
    }
    s.push_str("users:\n");
    let mut assigned = None;
    for u in 0..8 {
        if !rng.chance(75) {
            continue;
        }
        let _ = writeln!(s, "  u{u}:\n    display_name: User {u}");
        if rng.chance(50) {
            let _ = writeln!(s, "    email: u{u}@acme.example");
        }
        if rng.chance(15) {
            s.push_str("    active: false\n");
        }
        let groups: Vec<String> = (0..2)
            .filter(|_| rng.chance(40))
            .map(|g| format!("g{g}"))
            .collect();
        if !groups.is_empty() {
            let _ = writeln!(s, "    groups: [{}]", groups.join(", "));
        }
        if rng.chance(30) {
            let _ = writeln!(s, "    roles: [r{}]", rng.below(3));
        }
        if rng.chance(40) {
            let level = ["read", "write", "full", "none"][rng.below(4) as usize];
            let _ = writeln!(s, "    set_rights: {{ personal: {level} }}");
        }
        let password = rng.chance(60);
        let token = rng.chance(50);
        let rotation = rng.below(3);
        let _ = writeln!(
            s,
            "    credentials: {{ password: {password}, token: {token}, rotation: {rotation} }}"
        );
        if assigned.is_none() && rng.chance(50) {
            assigned = Some(u);
        }
    }
    if let Some(u) = assigned {
        let _ = writeln!(
            s,
            "role_assignments:\n  - role: r{}\n    user: u{u}\n    positions: [CLERK]",
            rng.below(3)
        );
    }
    s
}

/// A temporary workspace: `config/`, `state/` (the file store) and `secrets/`.
pub struct Work {
    pub dir: tempfile::TempDir,
}

impl Work {
    pub fn new() -> Work {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["config", "state", "secrets"] {
            fs::create_dir(dir.path().join(d)).expect("mkdir");
        }
        Work { dir }
    }
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    pub fn state_path(&self) -> PathBuf {
        self.path("state/state.json")
    }
    pub fn store_url(&self) -> String {
        format!("file:{}", self.state_path().display())
    }
    pub fn write_config(&self, text: &str) {
        fs::write(self.path("config/main.yaml"), text).expect("write config");
    }
    /// `roster ARGS` in the workspace, with the store set, colour and log env cleared.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_roster"));
        c.args(args)
            .current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .env("ROSTER_STORE", self.store_url())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        c
    }
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run roster")
    }
    /// The state file's bytes, if it exists.
    pub fn state_bytes(&self) -> Option<Vec<u8>> {
        fs::read(self.state_path()).ok()
    }
}

pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// (user, kind) -> hash, for every stored secret hash in a state file.
pub fn hashes(state: &Value) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    if let Some(users) = state["users"].as_object() {
        for (name, u) in users {
            for kind in ["password", "token"] {
                if let Some(h) = u["meta"]["secrets"][kind].as_str() {
                    out.insert((name.clone(), kind.to_string()), h.to_string());
                }
            }
        }
    }
    out
}

/// (user, kind) -> value from a JSON secrets file, or `None` if it is missing
/// or not a complete secrets document.
pub fn read_secrets(path: &Path) -> Option<BTreeMap<(String, String), String>> {
    let text = fs::read_to_string(path).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    let mut out = BTreeMap::new();
    for s in v["secrets"].as_array()? {
        out.insert(
            (
                s["user"].as_str()?.to_string(),
                s["kind"].as_str()?.to_string(),
            ),
            s["value"].as_str()?.to_string(),
        );
    }
    Some(out)
}

/// The state file must load with roster's own file store (and parse as JSON).
pub fn load_state(work: &Work) -> Option<Value> {
    let bytes = work.state_bytes()?;
    let store = roster::store::open(&work.store_url(), &OpenOptions::default())
        .expect("open the file store");
    if let Err(e) = store.read() {
        panic!("the state file does not load: {e}");
    }
    Some(serde_json::from_slice(&bytes).expect("state file is JSON"))
}

/// True when the store already matches the config (the plan has no steps).
pub fn converged(work: &Work) -> bool {
    let desired = roster::load::load(&[work.path("config")]).expect("config is valid");
    let store =
        roster::store::open(&work.store_url(), &OpenOptions::default()).expect("open store");
    let snapshot = store.read().expect("read store");
    let plan = roster::plan::plan(
        &desired,
        &snapshot,
        PlanOptions {
            allow_mass_removal: true,
        },
    )
    .expect("plan");
    !plan.has_changes()
}

/// What one apply left behind, compared with the state before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The state file is byte-for-byte what it was.
    Before,
    /// One commit happened and the store matches the config.
    After,
}

/// Check the crash-consistency invariants after an apply that wrote (or
/// tried to write) its secrets to `secrets`:
/// - the state file loads, and is either exactly `before` or one serial
///   further and converged with the config;
/// - every stored hash that is new since `before` verifies against a secret
///   in `secrets`, which is a complete secrets document.
pub fn check_invariants(work: &Work, before: Option<&[u8]>, secrets: &Path) -> Outcome {
    let after_bytes = work.state_bytes();
    if before.is_some() {
        assert!(after_bytes.is_some(), "the state file disappeared");
    }
    let after = load_state(work);
    if after_bytes.as_deref() == before {
        return Outcome::Before;
    }
    let after = after.expect("state exists");
    let old: Value = before
        .map(|b| serde_json::from_slice(b).expect("old state JSON"))
        .unwrap_or(Value::Null);
    let old_serial = old["serial"].as_u64().unwrap_or(0);
    assert_eq!(
        after["serial"].as_u64(),
        Some(old_serial + 1),
        "the state changed but is not exactly one commit further"
    );
    assert!(
        converged(work),
        "the state changed but is not the state the config asks for"
    );
    let old_hashes = hashes(&old);
    let new: Vec<((String, String), String)> = hashes(&after)
        .into_iter()
        .filter(|(k, h)| old_hashes.get(k) != Some(h))
        .collect();
    if !new.is_empty() {
        let Some(emitted) = read_secrets(secrets) else {
            panic!(
                "{} new hash(es) committed but the secrets file {} is missing or incomplete",
                new.len(),
                secrets.display()
            );
        };
        for ((user, kind), hash) in &new {
            let value = emitted.get(&(user.clone(), kind.clone()));
            assert!(
                value.is_some_and(|v| roster::secret::verify_secret(v, hash)),
                "the committed {kind} hash of {user} has no matching secret in the secrets file"
            );
        }
    }
    Outcome::After
}

/// The mode bits of a path.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::symlink_metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o7777
}
