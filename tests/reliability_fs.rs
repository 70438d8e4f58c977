//! File permissions and read-only safety on the file store (issue 8, items 6
//! and 7).
//!
//! - The state file, its lock file and the secrets output are 0600, the state
//!   directory roster creates is 0700; an existing file or a symlink as the
//!   secrets output is refused before anything changes.
//! - `validate`, `plan` (also `--out` elsewhere), `show`, `export` and
//!   `history` never write to the store: the store directory's full listing
//!   (names, sizes, modes, mtimes with nanoseconds, contents) is identical
//!   before and after. (As root, read-only permissions would not stop a write,
//!   so the comparison is what proves it.)

mod reliability_support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use reliability_support::{Rng, Work, gen_config, mode, text};

/// name -> (size, mode, mtime ns, ctime ns, content) for every entry, recursively.
fn listing(dir: &Path) -> BTreeMap<String, (u64, u32, i128, i128, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let meta = fs::symlink_metadata(&d).expect("metadata");
        out.insert(
            d.display().to_string(),
            (
                meta.size(),
                meta.mode(),
                meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
                meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
                Vec::new(),
            ),
        );
        for e in fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            let m = fs::symlink_metadata(&p).expect("metadata");
            if m.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.display().to_string(),
                    (
                        m.size(),
                        m.mode(),
                        m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
                        m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128,
                        fs::read(&p).unwrap_or_default(),
                    ),
                );
            }
        }
    }
    out
}

fn applied(work: &Work, rng: &mut Rng) {
    work.write_config(&gen_config(rng));
    let out = work.run(&[
        "apply",
        "config",
        "--yes",
        "--allow-mass-removal",
        "--secrets-out",
        "secrets/first.json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn state_lock_and_secrets_files_are_private() {
    let work = Work::new();
    let mut rng = Rng::new(11);
    // roster creates the state directory itself here.
    fs::remove_dir(work.path("state")).expect("rmdir");
    applied(&work, &mut rng);
    assert_eq!(mode(&work.path("state")), 0o700, "state directory");
    assert_eq!(mode(&work.state_path()), 0o600, "state file");
    assert_eq!(
        mode(&work.path("state/state.json.lock")),
        0o600,
        "lock file"
    );
    if work.path("secrets/first.json").exists() {
        assert_eq!(
            mode(&work.path("secrets/first.json")),
            0o600,
            "secrets file"
        );
    }
    // A later commit keeps the mode even under a permissive umask.
    fs::set_permissions(work.state_path(), fs::Permissions::from_mode(0o644)).expect("chmod");
    work.write_config(
        "settings:\n  argon2: { memory_kib: 8192, iterations: 1 }\n  max_removal_fraction: 1.0\n\
         users:\n  extra:\n    display_name: Extra\n    credentials: { token: true }\n",
    );
    let out = work.run(&[
        "apply",
        "config",
        "--yes",
        "--allow-mass-removal",
        "--secrets-out",
        "secrets/second.json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(mode(&work.state_path()), 0o600, "state file after a commit");
    assert_eq!(mode(&work.path("secrets/second.json")), 0o600);
}

#[test]
fn secrets_output_that_exists_or_is_a_symlink_is_refused_before_any_change() {
    let work = Work::new();
    let mut rng = Rng::new(12);
    applied(&work, &mut rng);
    let config = "settings:\n  argon2: { memory_kib: 8192, iterations: 1 }\nusers:\n  fresh:\n    display_name: Fresh\n    credentials: { password: true, token: true }\n";
    work.write_config(config);
    let state_before = work.state_bytes();
    // 1. an existing file (another user could read it, or it holds older secrets)
    fs::write(work.path("secrets/exists.json"), "keep me").expect("write");
    // 2. a symlink to a file another user can read
    fs::write(work.path("world-readable"), "").expect("write");
    symlink(work.path("world-readable"), work.path("secrets/link.json")).expect("symlink");
    // 3. a dangling symlink (O_CREAT would create its target)
    symlink(
        work.path("nowhere.json"),
        work.path("secrets/dangling.json"),
    )
    .expect("symlink");
    for (name, says) in [
        ("secrets/exists.json", "already exists"),
        ("secrets/link.json", "is a symbolic link"),
        ("secrets/dangling.json", "is a symbolic link"),
        ("missing-dir/s.json", "does not exist"),
    ] {
        let out = work.run(&[
            "apply",
            "config",
            "--yes",
            "--allow-mass-removal",
            "--secrets-out",
            name,
        ]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{name}: {stderr}");
        assert_eq!(
            work.state_bytes(),
            state_before,
            "{name}: the store changed"
        );
    }
    assert_eq!(
        fs::read_to_string(work.path("secrets/exists.json")).unwrap(),
        "keep me"
    );
    assert_eq!(fs::read_to_string(work.path("world-readable")).unwrap(), "");
    assert!(!work.path("nowhere.json").exists());
}

#[test]
fn read_only_commands_never_write_to_the_store() {
    let work = Work::new();
    let mut rng = Rng::new(13);
    applied(&work, &mut rng);
    // A config with pending changes, so plan has something to say.
    work.write_config(&gen_config(&mut rng));
    let plan_out = work.path("plan.json");
    let before = listing(&work.path("state"));
    let commands: Vec<Vec<String>> = vec![
        vec!["validate".into(), "config".into()],
        vec!["plan".into(), "config".into()],
        vec![
            "plan".into(),
            "config".into(),
            "--format".into(),
            "json".into(),
        ],
        vec![
            "plan".into(),
            "config".into(),
            "--format".into(),
            "markdown".into(),
        ],
        vec!["plan".into(), "config".into(), "--detailed-exitcode".into()],
        vec![
            "plan".into(),
            "config".into(),
            "--out".into(),
            plan_out.display().to_string(),
        ],
        vec!["show".into(), plan_out.display().to_string()],
        vec!["export".into()],
        vec!["history".into()],
        vec!["history".into(), "--format".into(), "json".into()],
        vec!["-vvv".into(), "plan".into(), "config".into()],
    ];
    for args in &commands {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = work.run(&args);
        assert!(
            matches!(out.status.code(), Some(0) | Some(2)),
            "{args:?}: {}",
            text(&out)
        );
        assert_eq!(
            listing(&work.path("state")),
            before,
            "{args:?} changed the store directory"
        );
    }
    // A store that does not exist yet is not created by plan or export.
    let other = work.path("nowhere/state.json");
    for args in [vec!["plan", "config"], vec!["export"], vec!["history"]] {
        let out = work
            .command(&args)
            .env("ROSTER_STORE", format!("file:{}", other.display()))
            .output()
            .expect("run");
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        assert!(!work.path("nowhere").exists(), "{args:?} created the store");
    }
}
