//! Hostile input to the loader (issue 8, item 3): a table of malformed
//! configs of the kinds `tests/invalid/` does not cover (sizes, encodings,
//! file-system oddities, nesting, numbers, garbage, NUL bytes), each with the
//! located error it must produce. Every case runs in-process through
//! `roster::load::load` (a panic fails the test) and must finish within a
//! bound; a few also run through the binary to check the rendered
//! `file:line:column: error[code]` line.
//!
//! Set `ROSTER_INPUT_SHOW=1` to print every case's diagnostics.

mod reliability_support;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use roster::load::Diagnostic;

/// A case slower than this is a hang (the 100 MB file included).
const CASE_LIMIT: Duration = Duration::from_secs(20);

const USER: &str = "users:\n  alice:\n    display_name: Alice\n";

enum Expect {
    /// An error with this code in the file ending with `file`, at `line`
    /// (0 = the file as a whole; `None` = any line > 0), whose message
    /// contains `contains`.
    Error {
        file: &'static str,
        line: Option<u64>,
        code: &'static str,
        contains: &'static str,
    },
    /// Loads, with this many users.
    Valid { users: usize },
}

struct Case {
    name: &'static str,
    setup: Box<dyn Fn(&Path)>,
    expect: Expect,
}

fn w(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).expect("mkdir");
    }
    fs::write(p, bytes).expect("write");
}

fn err(
    file: &'static str,
    line: Option<u64>,
    code: &'static str,
    contains: &'static str,
) -> Expect {
    Expect::Error {
        file,
        line,
        code,
        contains,
    }
}

fn case(name: &'static str, setup: impl Fn(&Path) + 'static, expect: Expect) -> Case {
    Case {
        name,
        setup: Box::new(setup),
        expect,
    }
}

/// One file case: `c.yaml` with `bytes`.
fn file_case(name: &'static str, bytes: &'static [u8], expect: Expect) -> Case {
    case(name, move |d| w(d, "c.yaml", bytes), expect)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn nested_flow(depth: usize) -> String {
    format!(
        "users:\n  alice:\n    display_name: {}{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

fn nested_block(depth: usize) -> String {
    let mut s = String::from("settings:\n");
    for i in 0..depth {
        s.push_str(&"  ".repeat(i + 1));
        s.push_str(&format!("k{i}:\n"));
    }
    s.push_str(&"  ".repeat(depth + 1));
    s.push_str("x: 1\n");
    s
}

fn cases() -> Vec<Case> {
    let root = is_root();
    vec![
        // --- size
        case(
            "100 MB file",
            |d| {
                let f = fs::File::create(d.join("big.yaml")).expect("create");
                f.set_len(100 * 1024 * 1024).expect("set_len");
            },
            err("big.yaml", Some(0), "io.too-large", "larger than 64 MiB"),
        ),
        case(
            "100 MB of real YAML lines",
            |d| {
                let line = "# padding padding padding padding padding padding padding padding\n";
                let mut s = String::with_capacity(100 << 20);
                while s.len() < 100 << 20 {
                    s.push_str(line);
                }
                w(d, "big.yaml", s);
            },
            err("big.yaml", Some(0), "io.too-large", "split the config"),
        ),
        case(
            // Read without trouble, then refused by the field's documented bound.
            "one 1 MB scalar",
            |d| w(d, "c.yaml", format!("users:\n  alice:\n    display_name: {}\n", "x".repeat(1 << 20))),
            err("c.yaml", Some(3), "schema.length", "at most 256 are allowed"),
        ),
        case(
            "a 100 kB user name",
            |d| w(d, "c.yaml", format!("users:\n  {}:\n    display_name: A\n", "a".repeat(100_000))),
            err("c.yaml", Some(2), "yaml.syntax", ""),
        ),
        // --- encodings
        file_case("invalid UTF-8 on line 1", b"\xff\xfeusers:\n", err("c.yaml", Some(1), "yaml.encoding", "not valid UTF-8")),
        file_case("invalid UTF-8 in a key on line 3", b"users:\n  alice:\n    disp\xc3\x28lay_name: A\n", err("c.yaml", Some(3), "yaml.encoding", "not valid UTF-8")),
        file_case("UTF-16 LE with BOM", b"\xff\xfeu\x00s\x00e\x00r\x00s\x00:\x00\n\x00", err("c.yaml", Some(1), "yaml.encoding", "not valid UTF-8")),
        file_case("truncated UTF-8 sequence at EOF", b"users: {}\n# \xe2\x82", err("c.yaml", Some(2), "yaml.encoding", "not valid UTF-8")),
        file_case("overlong UTF-8 encoding of /", b"users:\n  a\xc0\xaf:\n", err("c.yaml", Some(2), "yaml.encoding", "not valid UTF-8")),
        file_case("UTF-8 BOM then valid YAML", b"\xef\xbb\xbfusers:\n  alice:\n    display_name: Alice\n", Expect::Valid { users: 1 }),
        file_case("CRLF line endings", b"users:\r\n  alice:\r\n    display_name: Alice\r\n", Expect::Valid { users: 1 }),
        file_case("a lone surrogate escape", b"users:\n  alice:\n    display_name: \"\\ud800\"\n", err("c.yaml", Some(3), "yaml.syntax", "")),
        // --- NUL bytes and binary garbage
        file_case("NUL byte in a value", b"users:\n  alice:\n    display_name: Al\x00ice\n", err("c.yaml", Some(3), "yaml.syntax", "")),
        file_case("NUL byte in a key", b"users:\n  al\x00ice:\n    display_name: Alice\n", err("c.yaml", Some(2), "yaml.syntax", "")),
        file_case("file of NUL bytes", &[0u8; 4096], err("c.yaml", Some(1), "yaml.syntax", "")),
        file_case("PNG header", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", err("c.yaml", Some(1), "yaml.encoding", "not valid UTF-8")),
        file_case("ELF header", b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00", err("c.yaml", Some(1), "yaml.syntax", "")),
        file_case("control characters", b"users:\n  alice:\n    display_name: \x01\x02\x03\x1b[31m\n", err("c.yaml", Some(3), "yaml.syntax", "")),
        file_case("gzip bytes", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xcb\x48\xcd\xc9\xc9\x07\x00", err("c.yaml", Some(1), "yaml.encoding", "not valid UTF-8")),
        case(
            "random printable garbage",
            |d| {
                let mut rng = reliability_support::Rng::new(7);
                let s: String = (0..20_000)
                    .map(|_| (b' ' + rng.below(95) as u8) as char)
                    .collect();
                w(d, "c.yaml", s);
            },
            err("c.yaml", Some(1), "schema.type", "top level must be a map"),
        ),
        // --- empty things
        file_case("empty file", b"", Expect::Valid { users: 0 }),
        file_case("only newlines and spaces", b"\n\n   \n\t\n", Expect::Valid { users: 0 }),
        file_case("only a document marker", b"---\n...\n", Expect::Valid { users: 0 }),
        file_case("top-level null", b"~\n", Expect::Valid { users: 0 }),
        file_case("top-level scalar", b"hello\n", err("c.yaml", Some(1), "schema.type", "")),
        file_case("users is null", b"users:\n", err("c.yaml", Some(1), "schema.type", "")),
        file_case("two documents", b"users: {}\n---\nroles: {}\n", err("c.yaml", None, "yaml.syntax", "")),
        // --- nesting
        case("flow nesting 10,000 deep", |d| w(d, "c.yaml", nested_flow(10_000)), err("c.yaml", Some(3), "yaml.syntax", "recursion limit")),
        case("flow nesting 100 deep", |d| w(d, "c.yaml", nested_flow(100)), err("c.yaml", Some(3), "yaml.syntax", "budget `Depth` exceeded")),
        case("block nesting 200 deep", |d| w(d, "c.yaml", nested_block(200)), err("c.yaml", None, "yaml.syntax", "budget `Depth` exceeded")),
        case("block nesting 20 deep (within budget)", |d| w(d, "c.yaml", nested_block(20)), err("c.yaml", Some(2), "schema.unknown-field", "k0")),
        case(
            "1,000,000 unclosed brackets",
            |d| w(d, "c.yaml", "[".repeat(1_000_000)),
            err("c.yaml", Some(1), "yaml.syntax", ""),
        ),
        // --- numbers
        file_case("integer beyond u64", b"settings:\n  max_active_users: 99999999999999999999999999\n", err("c.yaml", Some(1), "schema.range", "`settings` cannot be read: invalid type: floating point")),
        file_case("integer beyond u32", b"settings:\n  max_active_users: 4294967296\n", err("c.yaml", Some(1), "schema.range", "invalid value: integer `4294967296`, expected u32")),
        file_case("negative integer", b"settings:\n  max_active_users: -1\n", err("c.yaml", Some(2), "schema.range", "")),
        file_case("float overflow", b"settings:\n  max_removal_fraction: 1e400\n", err("c.yaml", Some(2), "", "")),
        file_case("NaN", b"settings:\n  max_removal_fraction: .nan\n", err("c.yaml", Some(2), "", "")),
        file_case("infinity", b"settings:\n  max_removal_fraction: .inf\n", err("c.yaml", Some(2), "", "")),
        file_case("hex, octal and underscores", b"settings:\n  max_active_users: 0x_ff_ff_ff_ff_ff\n", err("c.yaml", Some(2), "", "")),
        file_case("rotation beyond u32", b"users:\n  alice:\n    display_name: A\n    credentials: { token: true, rotation: 18446744073709551616 }\n", err("c.yaml", Some(2), "schema.range", "user `alice` cannot be read")),
        file_case("argon2 memory 2^40", b"settings:\n  argon2: { memory_kib: 1099511627776 }\n", err("c.yaml", Some(2), "schema.range", "")),
        // --- YAML features
        file_case("undefined alias", b"users:\n  alice: *nope\n", err("c.yaml", Some(2), "yaml.syntax", "")),
        file_case("custom tag", b"users:\n  alice: !evil\n    display_name: A\n", Expect::Valid { users: 1 }),
        file_case("binary tag", b"users:\n  alice:\n    display_name: !!binary aGVsbG8=\n", Expect::Valid { users: 1 }),
        file_case("complex key", b"users:\n  ? [a, b]\n  : display_name: A\n", err("c.yaml", Some(2), "yaml.syntax", "")),
        file_case("unclosed flow map at EOF", b"users: { alice: { display_name: A }\n", err("c.yaml", None, "yaml.syntax", "")),
        file_case("self-referencing merge", b"base: &b\n  <<: *b\n", err("c.yaml", None, "yaml.syntax", "")),
        // --- file system
        case(
            "symlink loop in the config directory",
            |d| {
                w(d, "a.yaml", USER);
                symlink(d, d.join("loop")).expect("symlink");
            },
            err("loop", Some(0), "io.symlink-loop", "symlink loop"),
        ),
        case(
            "two-directory symlink loop",
            |d| {
                w(d, "x/a.yaml", USER);
                fs::create_dir_all(d.join("y")).expect("mkdir");
                symlink(d.join("y"), d.join("x/to-y")).expect("symlink");
                symlink(d.join("x"), d.join("y/to-x")).expect("symlink");
            },
            err("to-x", Some(0), "io.symlink-loop", "symlink loop"),
        ),
        case(
            "symlink to itself",
            |d| symlink(d.join("self.yaml"), d.join("self.yaml")).expect("symlink"),
            err("self.yaml", Some(0), "io.read", "symbolic links"),
        ),
        case(
            "dangling symlink",
            |d| symlink(d.join("missing.yaml"), d.join("dangling.yaml")).expect("symlink"),
            err("dangling.yaml", Some(0), "io.read", "No such file"),
        ),
        case(
            "a named pipe with a .yaml name",
            |d| {
                let p = std::ffi::CString::new(d.join("fifo.yaml").to_str().unwrap()).unwrap();
                // SAFETY: a valid NUL-terminated path.
                assert_eq!(unsafe { libc::mkfifo(p.as_ptr(), 0o600) }, 0);
            },
            err("fifo.yaml", Some(0), "io.read", "not a regular file"),
        ),
        // --- issue 16: nothing outside the roots given on the command line
        case(
            "symlink to a credentials file outside the config directory",
            |d| {
                w(d, "a.yaml", USER);
                let outside = d.with_extension("creds");
                fs::write(&outside, "https://x-access-token:ghs_FAKE@github.com\n").expect("write");
                symlink(&outside, d.join("x.yaml")).expect("symlink");
            },
            err("x.yaml", Some(0), "io.outside-root", "outside the directories"),
        ),
        case(
            "symlinked directory outside the config directory",
            |d| {
                w(d, "a.yaml", USER);
                let outside = d.with_extension("dir");
                w(&outside, "b.yaml", "users:\n  bob:\n    display_name: Bob\n");
                symlink(&outside, d.join("sub")).expect("symlink");
            },
            err("sub", Some(0), "io.outside-root", "outside the directories"),
        ),
        case(
            "symlink to /proc/self/environ",
            |d| symlink("/proc/self/environ", d.join("env.yaml")).expect("symlink"),
            err("env.yaml", Some(0), "io.outside-root", "outside the directories"),
        ),
        case(
            "symlink inside the config directory is followed",
            |d| {
                w(d, "real/a.yaml", USER);
                symlink(d.join("real/a.yaml"), d.join("link.yaml")).expect("symlink");
            },
            Expect::Valid { users: 1 },
        ),
        case(
            "unreadable file (chmod 000)",
            |d| {
                w(d, "secret.yaml", USER);
                fs::set_permissions(d.join("secret.yaml"), fs::Permissions::from_mode(0o000)).expect("chmod");
            },
            if root {
                // root reads it anyway: chmod does not deny. The content loads.
                Expect::Valid { users: 1 }
            } else {
                err("secret.yaml", Some(0), "io.read", "Permission denied")
            },
        ),
        case(
            "unreadable directory (chmod 000)",
            |d| {
                w(d, "sub/a.yaml", USER);
                fs::set_permissions(d.join("sub"), fs::Permissions::from_mode(0o000)).expect("chmod");
            },
            if root {
                Expect::Valid { users: 1 }
            } else {
                err("sub", Some(0), "io.read", "Permission denied")
            },
        ),
    ]
}

fn run_case(c: &Case, base: &Path) -> Result<Vec<Diagnostic>, String> {
    let dir = base.join(c.name.replace(|ch: char| !ch.is_ascii_alphanumeric(), "-"));
    fs::create_dir_all(&dir).expect("case dir");
    (c.setup)(&dir);
    let start = Instant::now();
    let result = roster::load::load(std::slice::from_ref(&dir));
    let took = start.elapsed();
    assert!(took < CASE_LIMIT, "{}: load took {took:?}", c.name);
    // Let the temp dir be removed even as non-root.
    let _ = fs::set_permissions(dir.join("sub"), fs::Permissions::from_mode(0o700));
    match (result, &c.expect) {
        (Ok(d), Expect::Valid { users }) => {
            assert_eq!(d.users.len(), *users, "{}", c.name);
            Ok(Vec::new())
        }
        (Ok(_), Expect::Error { .. }) => Err(format!("{}: loaded, expected an error", c.name)),
        (Err(diags), Expect::Valid { .. }) => Err(format!(
            "{}: expected valid, got:\n{}",
            c.name,
            diags.render_text(false)
        )),
        (
            Err(diags),
            Expect::Error {
                file,
                line,
                code,
                contains,
            },
        ) => {
            if std::env::var_os("ROSTER_INPUT_SHOW").is_some() {
                eprintln!("== {}\n{:#?}", c.name, diags.items);
            }
            let hit = diags.items.iter().any(|d| {
                d.file.ends_with(file)
                    && (code.is_empty() || d.code == *code)
                    && match line {
                        Some(l) => d.line == *l,
                        None => d.line > 0,
                    }
                    && d.message.contains(contains)
            });
            if !hit {
                return Err(format!(
                    "{}: expected {code} in {file} at line {line:?} containing {contains:?}, got:\n{:#?}",
                    c.name, diags.items
                ));
            }
            // Every diagnostic names a file and (unless about the whole file) a position.
            for d in &diags.items {
                assert!(
                    !d.file.is_empty() && !d.message.is_empty(),
                    "{}: {d:?}",
                    c.name
                );
            }
            Ok(diags.items)
        }
    }
}

#[test]
fn malformed_inputs_give_located_errors_without_panic_or_hang() {
    let base = tempfile::tempdir().expect("tempdir");
    let cases = cases();
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    let mut names = std::collections::BTreeSet::new();
    let mut failed = Vec::new();
    for c in &cases {
        assert!(names.insert(c.name), "duplicate case name {}", c.name);
        if let Err(e) = run_case(c, base.path()) {
            failed.push(e);
        }
    }
    assert!(
        failed.is_empty(),
        "{} case(s) failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
    eprintln!(
        "{} hostile-input cases passed (running as root: {})",
        cases.len(),
        is_root()
    );
}

/// The binary renders the 100 MB refusal and a NUL byte error as
/// `file:line:column: error[code]`, exits 1, and quickly.
#[test]
fn the_binary_reports_hostile_files_with_location() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg: PathBuf = dir.path().join("config");
    fs::create_dir(&cfg).expect("mkdir");
    let f = fs::File::create(cfg.join("big.yaml")).expect("create");
    f.set_len(100 * 1024 * 1024).expect("set_len");
    w(
        &cfg,
        "nul.yaml",
        b"users:\n  alice:\n    display_name: Al\x00ice\n",
    );
    let start = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_roster"))
        .args(["validate", "config"])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("run roster");
    assert!(start.elapsed() < CASE_LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("config/big.yaml: error[io.too-large]: file is larger than 64 MiB"),
        "{stderr}"
    );
    assert!(stderr.contains("config/nul.yaml:3:"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Issue 16: a config directory whose author is the attacker links
/// credentials, `/proc/self/environ` and a directory from outside; in every
/// validate format the refusal is located at the link and shows no content.
#[test]
fn symlinks_outside_the_config_roots_are_refused_without_content_in_every_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("access");
    fs::create_dir(&cfg).expect("mkdir");
    w(&cfg, "a.yaml", USER);
    const CANARY: &str = "ghs_CANARY0123456789";
    w(
        dir.path(),
        ".git-credentials",
        format!("https://x-access-token:{CANARY}@github.com\n"),
    );
    w(
        dir.path(),
        "outside/b.yaml",
        format!("users:\n  {CANARY}: 1\n"),
    );
    symlink(dir.path().join(".git-credentials"), cfg.join("x.yaml")).expect("symlink");
    symlink(dir.path().join("outside"), cfg.join("linked")).expect("symlink");
    symlink("/proc/self/environ", cfg.join("env.yaml")).expect("symlink");
    let p = std::ffi::CString::new(cfg.join("fifo.yaml").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(p.as_ptr(), 0o600) }, 0);
    for format in ["text", "github", "json", "gitlab"] {
        let start = Instant::now();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_roster"))
            .args(["validate", "access", "--format", format])
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .env("ROSTER_SCIM_TOKEN", "scim-CANARY-token")
            .output()
            .expect("run roster");
        assert!(start.elapsed() < CASE_LIMIT);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(1), "{format}: {all}");
        for leak in [
            CANARY,
            "x-access-token",
            "scim-CANARY-token",
            "ROSTER_SCIM_TOKEN",
        ] {
            assert!(!all.contains(leak), "{format}: {leak} leaked:\n{all}");
        }
        for name in [
            "access/x.yaml",
            "access/linked",
            "access/env.yaml",
            "access/fifo.yaml",
        ] {
            assert!(all.contains(name), "{format}: {name} not located:\n{all}");
        }
        assert!(all.contains("io.outside-root"), "{format}: {all}");
    }
}

// ------------------------------------------ issue 16: hostile values rendered

/// Values a pull request's author would use to forge or hide plan lines.
const HOSTILE: &[&str] = &[
    "a\n\n<!--",
    "-->",
    "</details>",
    "**No changes**",
    "[click](https://evil.example)",
    "<img src=x onerror=alert(1)>",
    "\x1b[1A\x1b[2K",
    "\x1b]52;c;ZXZpbA==\x07",
    "x\ry",
    "```",
    "`",
    "a`b``c",
    "\u{202e}gnp.exe",
    "\u{9b}31m",
    "line1\n+ permission everything.admin",
    "&lt;b&gt;",
    "| col |",
    "# heading",
    "1. item",
    " padded ",
];

/// A plan made by the real planner from a config with hostile free-text
/// fields, then given hostile values where the schema would refuse them (the
/// renderer must be safe without the schema): permissions, role names,
/// set-rights areas, drift messages and store limitations.
fn hostile_plan(dir: &Path) -> roster::plan::Plan {
    use roster::plan::access::{AccessChange, Grant, RightChange};
    let mut cfg = String::from(
        "roles:\n  payroll:\n    description: \"d\"\n    permissions: [payroll.read]\nusers:\n",
    );
    for (i, v) in HOSTILE.iter().enumerate() {
        // A YAML double-quoted scalar with every non-printable escaped.
        let q: String = v
            .chars()
            .map(|c| {
                if roster::escape::is_unsafe(c) || c == '"' || c == '\\' {
                    format!("\\u{:04x}", c as u32)
                } else {
                    c.to_string()
                }
            })
            .collect();
        let q = format!("\"{q}\"");
        cfg.push_str(&format!(
            "  user-{i}:\n    display_name: {q}\n    roles: [payroll]\n"
        ));
    }
    w(dir, "c.yaml", cfg);
    let desired = roster::load::load(&[dir.to_path_buf()])
        .unwrap_or_else(|d| panic!("{}", d.render_text(false)));
    let mut plan =
        roster::plan::plan(&desired, &Default::default(), Default::default()).expect("plan");
    let all: Vec<String> = HOSTILE.iter().map(|s| s.to_string()).collect();
    let mut perms = all.clone();
    perms.push("payroll.admin-all".into());
    plan.access.push(AccessChange {
        user: "evil\x1b[2K".into(),
        roles_gained: all
            .iter()
            .map(|r| Grant {
                role: r.clone(),
                via: vec![format!("group.{r}")],
            })
            .collect(),
        roles_lost: Vec::new(),
        permissions_gained: perms,
        permissions_lost: all.clone(),
        set_rights: all
            .iter()
            .map(|a| RightChange {
                area: a.clone(),
                before: None,
                after: Some(roster::model::AccessLevel::Full),
                verbs_gained: vec!["DELETE".into()],
                verbs_lost: Vec::new(),
            })
            .collect(),
    });
    for v in HOSTILE {
        plan.drift.push(roster::plan::Drift {
            address: format!("user.{v}"),
            message: v.to_string(),
        });
        plan.limitations.push(v.to_string());
    }
    let step = plan
        .steps
        .iter_mut()
        .find(|s| s.name == "user-0")
        .expect("step");
    step.changes.push(roster::plan::FieldChange {
        field: "set_rights".into(),
        before: None,
        after: Some(serde_json::Value::Object(
            HOSTILE
                .iter()
                .map(|k| (k.to_string(), serde_json::json!("full")))
                .collect(),
        )),
    });
    plan
}

fn unsafe_chars(s: &str) -> Vec<char> {
    s.chars()
        .filter(|&c| c != '\n' && roster::escape::is_unsafe(c))
        .collect()
}

/// Issue 16: config strings reached the plan raw: ANSI/OSC escapes and
/// newlines forged terminal lines, and `"a\n\n<!--"` plus a `-->` hid
/// `payroll.admin-all` from the rendered Markdown comment. Every format is
/// checked: text has no raw control character (every value shown escaped),
/// Markdown rendered by a CommonMark renderer shows every permission gained
/// as visible text and contains no HTML but roster's own, JSON round-trips.
#[test]
fn hostile_values_cannot_forge_or_hide_plan_lines_in_any_format() {
    use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = hostile_plan(dir.path());

    // Text (as plan, show and apply's pre-prompt plan print it).
    for color in [false, true] {
        let text = roster::plan::render::text(&plan, color);
        let stripped = text.replace("\x1b[0m", "").replace("\x1b[1m", "");
        let stripped = ["31", "32", "33"]
            .iter()
            .fold(stripped, |s, c| s.replace(&format!("\x1b[{c}m"), ""));
        assert_eq!(unsafe_chars(&stripped), Vec::<char>::new(), "{text}");
        for v in HOSTILE {
            let shown = roster::escape::text(v);
            assert!(
                stripped.contains(&format!("+ permission {shown}")),
                "{v:?}:\n{stripped}"
            );
        }
        assert!(stripped.contains("+ permission payroll.admin-all"));
        assert!(
            !stripped
                .lines()
                .any(|l| l.trim_start().starts_with("+ permission everything.admin")),
            "a forged line:\n{stripped}"
        );
    }

    // Markdown, rendered as GitHub would (CommonMark + GFM).
    let md = roster::plan::render::markdown(&plan);
    let mut visible = String::new();
    let mut html = Vec::new();
    let mut in_code_block = false;
    let mut strong = 0;
    for event in Parser::new_ext(&md, Options::ENABLE_TABLES | Options::ENABLE_GFM) {
        match event {
            Event::Text(t) => {
                visible.push_str(&t);
                if !in_code_block {
                    // Text outside code holds no markup a value could form.
                    assert!(!t.contains("<!--"), "{t}");
                }
            }
            Event::Code(t) => visible.push_str(&t),
            Event::SoftBreak | Event::HardBreak => visible.push('\n'),
            Event::End(TagEnd::Item | TagEnd::Paragraph) => visible.push('\n'),
            Event::Start(Tag::CodeBlock(_)) => in_code_block = true,
            Event::Start(Tag::Strong | Tag::Emphasis | Tag::Strikethrough) => strong += 1,
            Event::End(TagEnd::CodeBlock) => in_code_block = false,
            Event::Html(h) | Event::InlineHtml(h) => html.push(h.to_string()),
            Event::Start(Tag::Link { .. } | Tag::Image { .. }) => {
                panic!("a value formed a link or image:\n{md}")
            }
            _ => {}
        }
    }
    let ours = html.join("");
    assert_eq!(
        ours.trim(),
        format!(
            "<details><summary>Details ({} steps)</summary>\n</details>",
            plan.steps.len()
        ),
        "HTML other than roster's own:\n{md}"
    );
    for v in HOSTILE {
        let shown = roster::escape::text(v);
        assert!(
            visible.contains(&format!("+ permission {shown}")),
            "{v:?} hidden:\n{md}"
        );
        assert!(
            visible.contains(&format!("- permission {shown}")),
            "{v:?} hidden:\n{md}"
        );
        assert!(
            visible.contains(&format!("user.{shown}")),
            "{v:?} drift hidden:\n{md}"
        );
        // The display name, in the details block.
        let json = roster::escape::text(&serde_json::to_string(v).unwrap()).into_owned();
        assert!(
            visible.contains(&json),
            "{v:?} ({json}) not in details:\n{visible}"
        );
    }
    assert!(visible.contains("+ permission payroll.admin-all"), "{md}");
    assert_eq!(strong, 1, "only roster's summary line is bold:\n{md}");
    assert_eq!(unsafe_chars(&md), Vec::<char>::new());

    // JSON: the values round-trip exactly.
    let json = roster::plan::render::json(&plan);
    let back: roster::plan::Plan = serde_json::from_str(&json).expect("plan JSON");
    assert_eq!(back, plan);
}

/// Issue 16: `validate` echoed config strings raw (names in messages, source
/// lines in snippets): an escape sequence in a key or a raw ESC byte in a
/// line reached the terminal. Messages show `\u{…}`; snippets a stand-in.
#[test]
fn validate_never_echoes_control_characters_of_the_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("config");
    w(
        &cfg,
        "a.yaml",
        "users:\n  \"evil\\e[2Kname\\nforged\":\n    display_name: X\n",
    );
    w(
        &cfg,
        "b.yaml",
        b"users:\n  bob:\n    display_name: A\x1b[2K\x1b]52;c;eA==\x07B\n    nope: 1\n",
    );
    for format in ["text", "github", "gitlab", "json"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_roster"))
            .args(["validate", "config", "--format", format])
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .output()
            .expect("run roster");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(1), "{all}");
        assert_eq!(unsafe_chars(&all), Vec::<char>::new(), "{format}: {all:?}");
        assert!(
            all.contains("config/a.yaml") && all.contains("config/b.yaml"),
            "{all}"
        );
    }
}
