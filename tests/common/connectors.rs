//! The Python the shipped connectors run with in the tests: one venv,
//! `target/connector-venv`, with every `connectors/*/requirements.txt`
//! installed (pinned versions). Created when missing and re-installed when a
//! requirements file changed (a stamp in the venv records what was installed).
//! Safe under parallel tests and test binaries (a thread mutex plus a lock file).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

static SETUP: Mutex<()> = Mutex::new(());

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `connectors/*/requirements.txt`, sorted, with its content.
fn requirements(root: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let dir = root.join("connectors");
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let path = entry
            .expect("a directory entry")
            .path()
            .join("requirements.txt");
        if path.is_file() {
            let text = fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            out.push((path, text));
        }
    }
    out.sort();
    out
}

/// The connector venv's python, creating the venv and installing every
/// connector's requirements first when needed.
pub fn python() -> PathBuf {
    let _guard = SETUP.lock().unwrap_or_else(|e| e.into_inner());
    let root = root();
    let venv = root.join("target/connector-venv");
    let py = venv.join("bin/python");
    let reqs = requirements(&root);
    let stamp_text: String = reqs
        .iter()
        .map(|(p, t)| format!("## {}\n{t}\n", p.strip_prefix(&root).unwrap_or(p).display()))
        .collect();
    let stamp = venv.join("roster-requirements.stamp");
    let current =
        |py: &Path| py.exists() && fs::read_to_string(&stamp).ok().as_deref() == Some(&stamp_text);
    if current(&py) {
        return py;
    }
    // Another test binary may be installing at the same time.
    fs::create_dir_all(root.join("target")).expect("create target/");
    let lock_path = root.join("target/connector-venv.lock");
    let lock = fs::File::create(&lock_path)
        .unwrap_or_else(|e| panic!("creating {}: {e}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("locking {}: {e}", lock_path.display()));
    if current(&py) {
        return py;
    }
    if !py.exists() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("run python3 -m venv");
        assert!(ok.success(), "python3 -m venv {} failed", venv.display());
    }
    for (path, _) in &reqs {
        let ok = Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "-r"])
            .arg(path)
            .status()
            .expect("run pip");
        assert!(ok.success(), "pip install -r {} failed", path.display());
    }
    fs::write(&stamp, &stamp_text).expect("write the venv's requirements stamp");
    py
}
