//! No silent surprises: a run in the wrong directory, an invalid config, a
//! quiet apply and CI annotations do what they say (issue 15). The real
//! binary on real files in a temporary directory.

#[path = "common/cli.rs"]
mod cli;
use cli::{code, roster, roster_command, stderr, stdout};
use std::fs;
use std::net::TcpListener;
use std::path::Path;

const CONFIG: &str = "roles:\n  reader:\n    permissions: [payroll.read]\nusers:\n  lms:\n    display_name: LMS\n    roles: [reader]\n";

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    fs::write(path, text).expect("write");
}

/// Regression: plan/validate/apply in a directory without config files said
/// "No changes." / "valid: 0 users", as if the run were clean.
#[test]
fn a_directory_without_config_files_is_an_error_unless_allow_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "notes.txt", "not a config\n");
    for args in [
        &["validate"][..],
        &["plan"][..],
        &["apply", "--yes"][..],
        &["validate", "--format", "json"][..],
    ] {
        let out = roster(dir.path(), args);
        assert_eq!(code(&out), 1, "{args:?}: {}", stderr(&out));
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(text.contains("config.empty"), "{args:?}: {text}");
        assert!(
            text.contains("no config file (*.yaml or *.yml) was found here"),
            "{args:?}: {text}"
        );
        assert!(text.contains("--allow-empty"), "{args:?}: {text}");
    }
    assert!(
        !dir.path().join(".roster").exists(),
        "a refused run touched the store"
    );
    let out = roster(dir.path(), &["validate", "--allow-empty"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = roster(dir.path(), &["plan", "--allow-empty"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("No changes."));
}

/// Regression: `plan` read the store on another thread while the config
/// loaded, so an invalid config opened a connection to an etcd:// store in 4
/// runs of 5. The store here is a listening socket: nothing may connect to it.
#[test]
fn an_invalid_config_never_touches_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "config/users.yaml",
        "users:\n  lms:\n    display_name: LMS\n    groups: [missing]\n",
    );
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let url = format!(
        "etcd://127.0.0.1:{}/roster",
        listener.local_addr().expect("addr").port()
    );
    for _ in 0..5 {
        for args in [
            &["plan", "config", "--store", &url][..],
            &["apply", "config", "--yes", "--store", &url][..],
        ] {
            let out = roster(dir.path(), args);
            assert_eq!(code(&out), 1, "{args:?}");
            assert!(
                stderr(&out).contains("ref.unknown-group"),
                "{}",
                stderr(&out)
            );
        }
    }
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Err(e) => panic!("accept: {e}"),
        Ok((_, peer)) => panic!("roster connected to the store ({peer}) with an invalid config"),
    }
}

/// Regression: `roster -q apply` printed every `ok` line and the summary.
#[test]
fn quiet_apply_prints_nothing_but_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "config/a.yaml", CONFIG);
    let out = roster(dir.path(), &["-q", "apply", "config", "--yes"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "-q must print errors only");
    // Without -q the same kind of apply reports its outcome.
    write(
        dir.path(),
        "config/a.yaml",
        &CONFIG.replace("display_name: LMS", "display_name: LMS sync"),
    );
    let out = roster(dir.path(), &["apply", "config", "--yes"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("Apply complete"), "{}", stderr(&out));
}

/// Regression: `validate --format github` with the default path `.` emitted
/// `file=./a.yaml`, so the annotations did not land on the changed line.
#[test]
fn github_annotations_use_repository_relative_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "a.yaml",
        "users:\n  lms:\n    display_name: LMS\n    groups: [nope]\n",
    );
    write(
        dir.path(),
        "sub/b.yaml",
        "roles:\n  r:\n    permissions: [\"\"]\n",
    );
    let out = roster(dir.path(), &["validate", "--format", "github"]);
    assert_eq!(code(&out), 1);
    let text = stdout(&out);
    assert!(
        text.contains("::error file=a.yaml,line=4,col=14,"),
        "{text}"
    );
    assert!(text.contains("::error file=sub/b.yaml,line=3,"), "{text}");
    assert!(!text.contains("file=./"), "{text}");
    let out = roster(dir.path(), &["validate", "--format", "gitlab"]);
    let text = stdout(&out);
    assert!(text.contains("\"path\": \"a.yaml\""), "{text}");
    assert!(!text.contains("\"./"), "{text}");
}

/// Regression: with `USER` and `LOGNAME` unset (CI containers, cron) the
/// history recorded `unknown@HOST`; on GitHub Actions the actor was lost.
#[test]
fn history_records_the_uid_account_and_the_ci_actor() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "config/a.yaml", CONFIG);
    let out = roster_command(dir.path())
        .args(["apply", "config", "--yes"])
        .env_remove("USER")
        .env_remove("LOGNAME")
        .env_remove("GITLAB_USER_LOGIN")
        .env("GITHUB_ACTOR", "octocat")
        .output()
        .expect("run roster");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = roster(dir.path(), &["history", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let user = v[0]["user"].as_str().expect("a user").to_string();
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let id = std::process::Command::new("id")
        .arg("-un")
        .output()
        .expect("id -un");
    let account = String::from_utf8_lossy(&id.stdout).trim().to_string();
    assert!(!user.contains("unknown"), "{user}");
    if account.is_empty() {
        assert!(user.starts_with(&format!("uid {uid}")), "{user}");
    } else {
        assert!(user.starts_with(&account), "{user} (account {account})");
    }
    assert!(user.ends_with("(GitHub actor octocat)"), "{user}");
}
