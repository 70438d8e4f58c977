//! The Python virtualenv the connector tests run roster's shipped connectors
//! from: `target/connector-venv`, created once and filled from every
//! `connectors/*/requirements.txt` (pinned versions). Creation holds a lock,
//! in-process and across test binaries (a `flock` on
//! `target/connector-venv.lock`), so parallel tests never race pip.
//! `scripts/test.sh` fills the same venv the same way, and writes the same
//! stamp, so a prepared machine installs nothing here. Test-only.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

static SETUP: Mutex<()> = Mutex::new(());

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `connectors/*/requirements.txt`, sorted by path.
pub fn requirement_files() -> Vec<PathBuf> {
    let dir = root().join("connectors");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("requirements.txt"))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// What the venv was filled from: each file's repository path on a line,
/// then its text (as `scripts/test.sh` writes it).
fn stamp_text(files: &[PathBuf]) -> String {
    let root = root();
    let mut text = String::new();
    for f in files {
        let rel = f.strip_prefix(&root).unwrap_or(f);
        text.push_str(&rel.display().to_string());
        text.push('\n');
        text.push_str(&fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())));
    }
    text
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The venv's `python`, with every connector's requirements installed.
pub fn python() -> PathBuf {
    let _guard = SETUP.lock().unwrap_or_else(|e| e.into_inner());
    let target = root().join("target");
    fs::create_dir_all(&target).expect("create target/");
    let lock_path = target.join("connector-venv.lock");
    let lock =
        fs::File::create(&lock_path).unwrap_or_else(|e| panic!("{}: {e}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("lock {}: {e}", lock_path.display()));
    let venv = target.join("connector-venv");
    let py = venv.join("bin/python");
    let files = requirement_files();
    let want = stamp_text(&files);
    let stamp = venv.join(".roster-requirements");
    if py.is_file() && fs::read_to_string(&stamp).is_ok_and(|have| have == want) {
        return py;
    }
    if !py.is_file() {
        run(
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
            "python3 -m venv target/connector-venv",
        );
    }
    let mut pip = Command::new(venv.join("bin/pip"));
    pip.args(["install", "-q", "--disable-pip-version-check"]);
    for f in &files {
        pip.arg("-r").arg(f);
    }
    run(&mut pip, "pip install -r connectors/*/requirements.txt");
    fs::write(&stamp, want).unwrap_or_else(|e| panic!("{}: {e}", stamp.display()));
    py
}

/// `connectors/NAME/FILE` in the repository.
pub fn connector_script(name: &str, file: &str) -> PathBuf {
    let p = root().join("connectors").join(name).join(file);
    assert!(p.is_file(), "{} is missing", p.display());
    p
}

/// Whether `path` exists as an executable file.
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
