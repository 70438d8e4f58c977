//! Config generator for benchmarks: writes a realistic roster config of N
//! users, deterministic for a given seed.
//!
//! `cargo run --release --example gen -- --users N --out DIR [--seed S]
//! [--changed-percent P] [--no-credentials] [--users-per-file K]`
//!
//! Layout written under DIR: `settings.yaml`, `roles.yaml` (~1 role per 1,000
//! users, at least 3), `groups.yaml` (~1 group per 100 users, with group role
//! assignments), `templates.yaml` (local / token / sso templates, one
//! extending another), and `users/users-NNNN.yaml` (K users per file, default
//! 1,000, each file with its own user role assignments). `--changed-percent P`
//! changes the display name and one set right of every (100/P)-th user, so a
//! plan against state applied from the unchanged config shows P% updates.
//! `--no-credentials` turns passwords and tokens off (building a 100k-user
//! state would otherwise be dominated by 100k argon2 hashes).
//!
//! Must not: read anything, use a clock or the OS RNG (output depends only on
//! the arguments), or write outside DIR. It writes no secrets: credentials in
//! a config are only booleans.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenOptions {
    pub users: usize,
    pub seed: u64,
    pub users_per_file: usize,
    /// Percentage (0-100) of users whose display name and a set right differ.
    pub changed_percent: u32,
    pub credentials: bool,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            users: 1000,
            seed: 1,
            users_per_file: 1000,
            changed_percent: 0,
            credentials: true,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, Default)]
pub struct GenReport {
    pub files: usize,
    pub bytes: u64,
    pub users: usize,
    pub groups: usize,
    pub roles: usize,
    pub assignments: usize,
    /// Users that get a password when applied to an empty store.
    pub passwords: usize,
    pub tokens: usize,
}

/// splitmix64: small, fast and stable across versions (unlike a crate's RNG).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const AREAS: [&str; 8] = [
    "personal",
    "contract",
    "payroll",
    "benefits",
    "time",
    "positions",
    "documents",
    "banking",
];
const LEVELS: [&str; 4] = ["none", "read", "write", "full"];
const COMPANIES: [&str; 4] = ["ACME", "ACME-CA", "GLOBEX", "INITECH"];
const PAY_GROUPS: [&str; 4] = ["BIWEEKLY", "MONTHLY", "WEEKLY", "HOURLY"];
const POSITIONS: [&str; 6] = [
    "PAYROLL-CLERK",
    "HR-GENERALIST",
    "WAREHOUSE-ASSOC",
    "DRIVER",
    "SHIFT-LEAD",
    "RECRUITER",
];
const SYSTEMS: [&str; 8] = [
    "Workday",
    "Kronos",
    "Qlearsite",
    "ADP",
    "Greenhouse",
    "Okta",
    "Slack",
    "Tableau",
];

fn role_name(i: usize) -> String {
    format!("role-{i:04}")
}
fn group_name(i: usize) -> String {
    format!("grp-{i:05}")
}
fn user_name(i: usize) -> String {
    format!("svc-{i:06}")
}

/// Write the config described by `opts` into `out` (created if missing).
pub fn generate(out: &Path, opts: &GenOptions) -> Result<GenReport, String> {
    let users_dir = out.join("users");
    fs::create_dir_all(&users_dir).map_err(|e| format!("creating {}: {e}", users_dir.display()))?;
    let mut report = GenReport::default();
    let write = |path: PathBuf, text: String, report: &mut GenReport| {
        report.files += 1;
        report.bytes += text.len() as u64;
        fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))
    };
    let n_roles = (opts.users / 1000).max(3);
    let n_groups = (opts.users / 100).max(1);
    report.roles = n_roles;
    report.groups = n_groups;
    report.users = opts.users;

    write(
        out.join("settings.yaml"),
        "settings:\n  removal: deactivate\n  max_removal_fraction: 0.25\n".into(),
        &mut report,
    )?;

    let mut rng = Rng(opts.seed ^ 0x5EED_0001);
    let mut text = String::from("roles:\n");
    for r in 0..n_roles {
        let _ = writeln!(text, "  {}:", role_name(r));
        let _ = writeln!(text, "    description: Generated role {r}");
        let mut perms = Vec::new();
        for _ in 0..3 + rng.below(4) {
            let area = AREAS[rng.below(AREAS.len())];
            let verb = ["read", "write", "approve"][rng.below(3)];
            let p = format!("{area}.{verb}");
            if !perms.contains(&p) {
                perms.push(p);
            }
        }
        let _ = writeln!(text, "    permissions: [{}]", perms.join(", "));
    }
    write(out.join("roles.yaml"), text, &mut report)?;

    let mut rng = Rng(opts.seed ^ 0x5EED_0002);
    let mut text = String::from("groups:\n");
    let mut group_assignments = String::new();
    for g in 0..n_groups {
        let _ = writeln!(text, "  {}:", group_name(g));
        let _ = writeln!(text, "    description: Generated group {g}");
        let r1 = rng.below(n_roles);
        let r2 = (r1 + 1 + rng.below(n_roles - 1)) % n_roles;
        let _ = writeln!(text, "    roles: [{}, {}]", role_name(r1), role_name(r2));
        let _ = writeln!(text, "    companies: [{}]", COMPANIES[rng.below(4)]);
        let _ = writeln!(text, "    pay_groups: [{}]", PAY_GROUPS[rng.below(4)]);
        if g % 10 == 0 {
            report.assignments += 1;
            let _ = writeln!(
                group_assignments,
                "  - role: {}\n    group: {}\n    positions: [{}]",
                role_name(rng.below(n_roles)),
                group_name(g),
                POSITIONS[rng.below(POSITIONS.len())]
            );
        }
    }
    if !group_assignments.is_empty() {
        text.push_str("role_assignments:\n");
        text.push_str(&group_assignments);
    }
    write(out.join("groups.yaml"), text, &mut report)?;

    let (pw, tok) = if opts.credentials {
        ("true", "true")
    } else {
        ("false", "false")
    };
    let templates = format!(
        "templates:
  local-base:
    class: regular
    authentication: local
    set_rights: {{ personal: read }}
    credentials: {{ password: {pw} }}
  token-client:
    extends: local-base
    credentials: {{ password: false, token: {tok} }}
  sso-base:
    authentication: sso
    identity_provider: okta
"
    );
    write(out.join("templates.yaml"), templates, &mut report)?;

    let per_file = opts.users_per_file.max(1);
    let every_changed = if opts.changed_percent == 0 {
        0
    } else {
        (100 / opts.changed_percent.min(100)) as usize
    };
    for (file_no, start) in (0..opts.users).step_by(per_file).enumerate() {
        let end = (start + per_file).min(opts.users);
        let mut text = String::with_capacity((end - start) * 360);
        let mut assignments = String::new();
        text.push_str("users:\n");
        for i in start..end {
            // One RNG stream per user: a change to one user never shifts another.
            let mut rng = Rng(opts.seed.wrapping_mul(0x1000_0000_01B3) ^ i as u64);
            let changed = every_changed > 0 && i % every_changed == every_changed / 2;
            let system = SYSTEMS[rng.below(SYSTEMS.len())];
            let template = match rng.below(10) {
                0..=5 => "local-base",
                6..=8 => "token-client",
                _ => "sso-base",
            };
            match template {
                "local-base" if opts.credentials => report.passwords += 1,
                "token-client" if opts.credentials => report.tokens += 1,
                _ => {}
            }
            let _ = writeln!(text, "  {}:", user_name(i));
            let suffix = if changed { " (renamed)" } else { "" };
            let _ = writeln!(text, "    display_name: {system} integration {i}{suffix}");
            let _ = writeln!(
                text,
                "    email: {}@{}.example",
                user_name(i),
                system.to_lowercase()
            );
            let _ = writeln!(text, "    extends: {template}");
            if rng.below(20) == 0 {
                let _ = writeln!(text, "    class: manager-self-service");
            }
            let g1 = rng.below(n_groups);
            if rng.below(4) == 0 {
                let g2 = rng.below(n_groups);
                if g2 != g1 {
                    let _ = writeln!(text, "    groups: [{}, {}]", group_name(g1), group_name(g2));
                } else {
                    let _ = writeln!(text, "    groups: [{}]", group_name(g1));
                }
            } else {
                let _ = writeln!(text, "    groups: [{}]", group_name(g1));
            }
            let mut rights = Vec::new();
            let first = rng.below(AREAS.len());
            for k in 0..1 + rng.below(3) {
                let area = AREAS[(first + k + 1) % AREAS.len()];
                let mut level = LEVELS[rng.below(LEVELS.len())];
                if changed && k == 0 {
                    level = if level == "full" { "read" } else { "full" };
                }
                rights.push(format!("{area}: {level}"));
            }
            let _ = writeln!(text, "    set_rights: {{ {} }}", rights.join(", "));
            if rng.below(5) == 0 {
                let _ = writeln!(text, "    roles: [{}]", role_name(rng.below(n_roles)));
            }
            if template != "sso-base" && rng.below(10) == 0 {
                let _ = writeln!(
                    text,
                    "    credentials: {{ rotation: {} }}",
                    1 + rng.below(3)
                );
            }
            if rng.below(20) == 0 {
                report.assignments += 1;
                let _ = writeln!(
                    assignments,
                    "  - role: {}\n    user: {}\n    positions: [{}, {}]\n    companies: [{}]",
                    role_name(rng.below(n_roles)),
                    user_name(i),
                    POSITIONS[rng.below(3)],
                    POSITIONS[3 + rng.below(3)],
                    COMPANIES[rng.below(4)]
                );
            }
        }
        if !assignments.is_empty() {
            text.push_str("role_assignments:\n");
            text.push_str(&assignments);
        }
        write(
            users_dir.join(format!("users-{file_no:04}.yaml")),
            text,
            &mut report,
        )?;
    }
    Ok(report)
}

fn parse_args(args: &[String]) -> Result<(PathBuf, GenOptions), String> {
    let mut opts = GenOptions::default();
    let mut out = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let number = |name: &str, v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{name} expects a non-negative integer, got {v:?}"))
        };
        match flag.as_str() {
            "--users" => opts.users = number("--users", value("--users")?)? as usize,
            "--seed" => opts.seed = number("--seed", value("--seed")?)?,
            "--users-per-file" => {
                opts.users_per_file =
                    number("--users-per-file", value("--users-per-file")?)? as usize
            }
            "--changed-percent" => {
                let p = number("--changed-percent", value("--changed-percent")?)?;
                if p > 100 {
                    return Err(format!("--changed-percent must be 0 to 100, got {p}"));
                }
                opts.changed_percent = p as u32;
            }
            "--no-credentials" => opts.credentials = false,
            "--out" => out = Some(PathBuf::from(value("--out")?)),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let out = out.ok_or("--out DIR is required")?;
    if opts.users == 0 {
        return Err("--users must be at least 1".into());
    }
    if opts.users_per_file == 0 {
        return Err("--users-per-file must be at least 1".into());
    }
    Ok((out, opts))
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = parse_args(&args).and_then(|(out, opts)| {
        let r = generate(&out, &opts)?;
        println!(
            "wrote {} files ({} bytes) to {}: {} users, {} groups, {} roles, {} role assignments, {} passwords, {} tokens",
            r.files,
            r.bytes,
            out.display(),
            r.users,
            r.groups,
            r.roles,
            r.assignments,
            r.passwords,
            r.tokens
        );
        Ok(())
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
