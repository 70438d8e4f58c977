//! Build script: records the git commit and the build date for
//! `roster --version` (env `ROSTER_GIT_COMMIT`, `ROSTER_BUILD_DATE`).
//!
//! It must never fail a build: from a source tarball without `.git`, or
//! without a `git` program, the commit comes from `ROSTER_GIT_COMMIT` (set by
//! a packager), `.git-archive-commit` (filled in by `git archive`, so
//! GitHub's source archives carry it), `.cargo_vcs_info.json` (written by
//! `cargo package`), or is `unknown`. The date is `SOURCE_DATE_EPOCH` (for
//! reproducible builds) or today, in UTC.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-env-changed=ROSTER_GIT_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-changed=.git-archive-commit");
    println!("cargo:rerun-if-changed=build.rs");
    let commit = commit(&dir).unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=ROSTER_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=ROSTER_BUILD_DATE={}", build_date());
}

fn commit(dir: &Path) -> Option<String> {
    if let Ok(c) = std::env::var("ROSTER_GIT_COMMIT") {
        let c = c.trim();
        if is_hex(c) {
            return Some(short(c));
        }
        println!("cargo:warning=ignoring ROSTER_GIT_COMMIT={c:?}: not a hex commit id");
    }
    if let Some(c) = from_git(dir) {
        return Some(c);
    }
    // `git archive` replaces the placeholder (see .gitattributes).
    if let Ok(text) = std::fs::read_to_string(dir.join(".git-archive-commit")) {
        let c = text.trim();
        if is_hex(c) {
            return Some(short(c));
        }
    }
    // `cargo package`: {"git": {"sha1": "..."}, ...}
    let text = std::fs::read_to_string(dir.join(".cargo_vcs_info.json")).ok()?;
    let rest = &text[text.find("\"sha1\"")? + 6..];
    let start = rest.find('"')? + 1;
    let end = start + rest[start..].find('"')?;
    let c = &rest[start..end];
    is_hex(c).then(|| short(c))
}

/// `git rev-parse HEAD`, only when this crate is the top of its work tree
/// (a tarball unpacked inside some other repository is not that commit).
fn from_git(dir: &Path) -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let top = git(&["rev-parse", "--show-toplevel"])?;
    if std::fs::canonicalize(&top).ok()? != std::fs::canonicalize(dir).ok()? {
        return None;
    }
    let head = git(&["rev-parse", "HEAD"])?;
    // Rebuild when HEAD moves: HEAD itself, the branch it points at, packed refs.
    for name in ["HEAD", "packed-refs"] {
        rerun_if_exists(git(&["rev-parse", "--git-path", name]), dir);
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        rerun_if_exists(git(&["rev-parse", "--git-path", &branch]), dir);
    }
    is_hex(&head).then(|| short(&head))
}

fn rerun_if_exists(path: Option<String>, dir: &Path) {
    if let Some(p) = path {
        let p = dir.join(p);
        if p.exists() {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
}

fn is_hex(s: &str) -> bool {
    s.len() >= 7 && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn short(s: &str) -> String {
    s[..s.len().min(12)].to_ascii_lowercase()
}

/// YYYY-MM-DD in UTC of `SOURCE_DATE_EPOCH`, or of now.
fn build_date() -> String {
    let now = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    };
    let secs = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v.trim().parse::<i64>().unwrap_or_else(|_| {
            println!("cargo:warning=ignoring SOURCE_DATE_EPOCH={v:?}: not a number of seconds");
            now()
        }),
        Err(_) => now(),
    };
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}
