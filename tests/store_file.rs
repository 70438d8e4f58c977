//! The shared store suite on the file store (`file:PATH` in a tempdir).

mod common;

use std::sync::Arc;

use common::store_suite::{self, Factory};
use roster::store::StateStore;
use roster::store::file::FileStore;

/// A new, empty file store in its own tempdir; the tempdir lives as long as
/// the factory does.
fn fresh_file_store() -> Factory {
    let dir = Arc::new(tempfile::tempdir().expect("create a tempdir"));
    let path = dir.path().join("state").join("state.json");
    Box::new(move || {
        let _keep = &dir;
        Box::new(FileStore::new(path.clone())) as Box<dyn StateStore>
    })
}

#[test]
fn file_store_passes_the_shared_suite() {
    store_suite::run_all(&fresh_file_store);
}

#[test]
fn file_store_reads_through_open_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("file:{}", dir.path().join("s.json").display());
    let store = roster::store::open(&url, &Default::default()).expect("open file: URL");
    assert_eq!(store.info().kind, "file");
    assert_eq!(store.read().expect("read"), Default::default());
}

// ------------------------------------------- issue 12: state format 2

#[test]
fn a_version_1_state_is_read_and_migrated_by_its_first_write() {
    let (_dir, path) = private_dir();
    std::fs::write(
        &path,
        r#"{"format_version": 1, "lineage": "0b7e", "serial": 4, "users": {}, "history": []}"#,
    )
    .unwrap();
    let store = FileStore::new(path.clone());
    let snap = store.read().expect("a version 1 state reads");
    assert_eq!(snap.version.as_ref().map(|v| v.serial), Some(4));
    commit_on_top(
        &store,
        vec![put_user("survey-sync", user_record("Survey sync"))],
    );
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(written["format_version"], 2);
    assert_eq!(written["lineage"], "0b7e");
    assert_eq!(written["serial"], 5);
}

#[test]
fn a_state_from_a_newer_roster_is_refused_with_the_reason() {
    let (_dir, path) = private_dir();
    std::fs::write(
        &path,
        r#"{"format_version": 3, "lineage": "0b7e", "serial": 4}"#,
    )
    .unwrap();
    let err = FileStore::new(path)
        .read()
        .expect_err("refused")
        .to_string();
    assert!(err.contains("format_version 3"), "{err}");
    assert!(err.contains("newer roster"), "{err}");
}

// ------------------------------------------- issue 16: files roster writes

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::store_suite::{commit_locked, commit_on_top, owner, put_user, user_record};

/// A private state directory (0700) with `state.json` in it.
fn private_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("st");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let path = state.join("state.json");
    (dir, path)
}

fn mkfifo(path: &Path) {
    let p = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(p.as_ptr(), 0o600) }, 0);
}

/// Run `f` on a thread and fail the test if it takes longer than 10 s (a
/// FIFO used to hang `plan` forever).
fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the store hung on a hostile state path")
}

#[test]
fn a_lock_file_planted_as_a_symlink_is_refused_and_its_target_untouched() {
    let (dir, path) = private_dir();
    let victim = dir.path().join("authorized_keys");
    std::fs::write(&victim, "ssh-ed25519 AAAA admin@laptop\n").unwrap();
    std::os::unix::fs::symlink(&victim, path.with_file_name("state.json.lock")).unwrap();
    let store = FileStore::new(&path);
    let err = store
        .lock(&owner("h"), Duration::from_millis(100))
        .expect_err("a symlinked lock must be refused")
        .to_string();
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "ssh-ed25519 AAAA admin@laptop\n"
    );
}

#[test]
fn temp_files_planted_as_symlinks_never_receive_the_state() {
    let (dir, path) = private_dir();
    let store = FileStore::new(&path);
    commit_on_top(&store, vec![put_user("a", user_record("A"))]);
    // The attacker's guesses: the old pid-based names and a few more.
    let loot = dir.path().join("loot");
    std::fs::write(&loot, "").unwrap();
    let me = std::process::id();
    for pid in [me, me + 1, 1, 0] {
        let link = path.with_file_name(format!(".state.json.tmp-{pid}"));
        std::os::unix::fs::symlink(&loot, link).unwrap();
    }
    commit_on_top(&store, vec![put_user("b", user_record("B"))]);
    assert_eq!(
        std::fs::read(&loot).unwrap(),
        b"",
        "the state leaked into a planted link"
    );
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(
        meta.file_type().is_file(),
        "state.json must stay a regular file"
    );
    assert_eq!(store.read().unwrap().users.len(), 2);
}

#[test]
fn a_state_directory_writable_by_others_is_refused() {
    let (_dir, path) = private_dir();
    let state_dir = path.parent().unwrap().to_path_buf();
    for mode in [0o777, 0o1777, 0o770] {
        std::fs::set_permissions(&state_dir, std::fs::Permissions::from_mode(mode)).unwrap();
        let store = FileStore::new(&path);
        let err = store
            .lock(&owner("h"), Duration::from_millis(100))
            .expect_err("a shared state directory must be refused")
            .to_string();
        assert!(err.contains("writable by other users"), "{mode:o}: {err}");
        assert!(err.contains("chmod go-w"), "{err}");
        assert!(!path.with_file_name("state.json.lock").exists());
    }
    std::fs::set_permissions(&state_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    commit_on_top(
        &FileStore::new(&path),
        vec![put_user("a", user_record("A"))],
    );
}

#[test]
fn a_fifo_state_path_is_a_clear_error_not_a_hang() {
    let (_dir, path) = private_dir();
    mkfifo(&path);
    let p = path.clone();
    let started = Instant::now();
    let err = bounded(move || FileStore::new(p).read().map(|_| ()))
        .expect_err("a FIFO is not a state file")
        .to_string();
    assert!(err.contains("not a regular file"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn dev_zero_as_state_path_is_a_clear_error_not_an_unbounded_read() {
    let (_dir, path) = private_dir();
    std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
    let p = path.clone();
    let err = bounded(move || FileStore::new(p).read().map(|_| ()))
        .expect_err("/dev/zero is not a state file")
        .to_string();
    assert!(err.contains("not a regular file"), "{err}");
    // Through the URL as the CLI opens it, too.
    let url = "file:/dev/zero".to_string();
    let err = bounded(move || {
        roster::store::open(&url, &Default::default())
            .unwrap()
            .read()
            .map(|_| ())
    })
    .expect_err("/dev/zero")
    .to_string();
    assert!(err.contains("not a regular file"), "{err}");
}

#[test]
fn a_serial_at_u64_max_is_an_overflow_error_not_a_wrap_to_zero() {
    let (_dir, path) = private_dir();
    let store = FileStore::new(&path);
    commit_on_top(&store, vec![put_user("a", user_record("A"))]);
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    json["serial"] = serde_json::json!(u64::MAX);
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    let before = std::fs::read(&path).unwrap();
    let base = store.read().unwrap().version_or_new();
    assert_eq!(base.serial, u64::MAX);
    let err = commit_locked(&store, base, vec![put_user("b", user_record("B"))])
        .expect_err("the serial cannot wrap")
        .to_string();
    assert!(err.contains("overflow"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before, "nothing written");
}

/// Issue 16: a hash placed in another field of the state (an enum field, a
/// set-rights level, a top-level key) came back in ``unknown variant
/// `$argon2id$…` ``: the redaction covered `"…"` but not `` `…` ``.
#[test]
fn hashes_in_other_fields_of_the_state_are_redacted_in_errors() {
    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA";
    let (_dir, path) = private_dir();
    let store = FileStore::new(&path);
    commit_on_top(&store, vec![put_user("a", user_record("A"))]);
    let good: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let plant: [&dyn Fn(&mut serde_json::Value); 4] = [
        &|v| v["users"]["a"]["spec"]["class"] = HASH.into(),
        &|v| v["users"]["a"]["spec"]["authentication"] = HASH.into(),
        &|v| v["users"]["a"]["spec"]["set_rights"] = serde_json::json!({"salary": HASH}),
        &|v| v[HASH] = 1.into(),
    ];
    for (i, f) in plant.iter().enumerate() {
        let mut v = good.clone();
        f(&mut v);
        std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
        let err = store.read().expect_err("a corrupt state").to_string();
        assert!(
            !err.contains("argon2") && !err.contains("c2FsdHNh"),
            "{i}: {err}"
        );
        assert!(err.contains("is corrupt"), "{i}: {err}");
    }
}
