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

/// Regression: under `-q` an apply that generates secrets still said where
/// it wrote them ("Wrote 1 new secret(s) to …"); `-q` is errors only.
#[test]
fn quiet_apply_with_secrets_prints_nothing_but_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "config/a.yaml",
        &format!("{CONFIG}    credentials: {{ password: true }}\n"),
    );
    let out = roster(
        dir.path(),
        &["-q", "apply", "config", "--yes", "--secrets-out", "s.json"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "-q must print errors only");
    assert_eq!(stdout(&out), "", "-q must print errors only");
    assert!(
        dir.path().join("s.json").is_file(),
        "the secrets were written"
    );
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

fn state(dir: &Path) -> serde_json::Value {
    let text = fs::read_to_string(dir.join(".roster/state.json")).expect("state file");
    serde_json::from_str(&text).expect("state is JSON")
}

fn set_state(dir: &Path, v: &serde_json::Value) {
    fs::write(
        dir.join(".roster/state.json"),
        serde_json::to_string_pretty(v).expect("json"),
    )
    .expect("write state");
}

/// Regression: a config entry named like an unmanaged store resource
/// silently adopted and modified it (`~ user.lms (adopt)`), while unmanaged
/// resources are documented as never modified.
#[test]
fn an_unmanaged_resource_is_adopted_only_when_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "config/a.yaml", CONFIG);
    let out = roster(dir.path(), &["apply", "config", "--yes"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // The user now exists in the store but is not roster's (made by hand).
    let mut s = state(dir.path());
    s["users"]["lms"]["managed"] = serde_json::json!(false);
    set_state(dir.path(), &s);
    let before = fs::read(dir.path().join(".roster/state.json")).expect("state");
    write(
        dir.path(),
        "config/a.yaml",
        &CONFIG.replace("display_name: LMS", "display_name: LMS sync"),
    );
    for args in [&["plan", "config"][..], &["apply", "config", "--yes"][..]] {
        let out = roster(dir.path(), args);
        assert_eq!(code(&out), 1, "{args:?}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(
            err.contains("the store holds but roster does not manage: user.lms"),
            "{err}"
        );
        assert!(err.contains("--adopt user.lms"), "{err}");
    }
    assert_eq!(
        fs::read(dir.path().join(".roster/state.json")).expect("state"),
        before,
        "the unmanaged user was modified"
    );
    // A typo in --adopt is not ignored.
    let out = roster(dir.path(), &["plan", "config", "--adopt", "user.lsm"]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("--adopt user.lsm: no unmanaged resource"),
        "{}",
        stderr(&out)
    );
    // Asked for: adopted.
    let out = roster(dir.path(), &["plan", "config", "--adopt", "user.lms"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("user.lms"), "{}", stdout(&out));
    let out = roster(dir.path(), &["apply", "config", "--yes", "--adopt", "lms"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(state(dir.path())["users"]["lms"]["managed"], true);
    let out = roster(dir.path(), &["plan", "config"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("No changes."), "{}", stdout(&out));
}

/// Regression: removing a protected user from the files made every plan fail
/// (blocking every other change), and `protected: false` with `active: false`
/// in one edit was refused too.
#[test]
fn protected_resources_are_kept_and_everything_else_is_planned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keep = "users:\n  break-glass:\n    display_name: Break glass\n    protected: true\n";
    write(dir.path(), "config/a.yaml", CONFIG);
    write(dir.path(), "config/keep.yaml", keep);
    let out = roster(dir.path(), &["apply", "config", "--yes"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    fs::remove_file(dir.path().join("config/keep.yaml")).expect("remove");
    write(
        dir.path(),
        "config/a.yaml",
        &CONFIG.replace("display_name: LMS", "display_name: LMS sync"),
    );
    let out = roster(dir.path(), &["plan", "config"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("user.lms"), "{}", stdout(&out));
    // No step for it; the plan itself says it is kept (a PR comment shows it).
    assert!(
        !stdout(&out).contains("- user.break-glass"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains(
            "Protected, left as they are (the config would deactivate or remove them): user.break-glass"
        ),
        "{}",
        stdout(&out)
    );
    let md = roster(dir.path(), &["plan", "config", "--format", "markdown"]);
    assert!(
        stdout(&md).contains(
            "> Protected, left as they are (the config would deactivate or remove them): `user.break-glass`"
        ),
        "{}",
        stdout(&md)
    );
    let err = stderr(&out);
    assert!(
        err.contains("warning: protected, left as it is: user.break-glass"),
        "{err}"
    );
    assert!(err.contains("`protected: false`"), "{err}");
    let out = roster(dir.path(), &["plan", "config", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(v["protected"], serde_json::json!(["user.break-glass"]));
    let out = roster(dir.path(), &["apply", "config", "--yes"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let s = state(dir.path());
    assert_eq!(s["users"]["break-glass"]["spec"]["active"], true);
    assert_eq!(s["users"]["lms"]["spec"]["display_name"], "LMS sync");
    // Unprotect and deactivate in one edit.
    write(
        dir.path(),
        "config/keep.yaml",
        "users:\n  break-glass:\n    display_name: Break glass\n    protected: false\n    active: false\n",
    );
    let out = roster(
        dir.path(),
        &["apply", "config", "--yes", "--allow-mass-removal"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    assert_eq!(
        state(dir.path())["users"]["break-glass"]["spec"]["active"],
        false
    );
}

/// Regression: after an offboarding (a user deactivated, its group and role
/// deleted) `roster export` wrote a config that did not validate
/// (`ref.unknown-group`, `ref.unknown-role` on the deactivated user).
#[test]
fn export_round_trips_after_an_offboarding() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = "roles:\n  reader:\n    permissions: [payroll.read]\ngroups:\n  staff:\n    roles: [reader]\nusers:\n  lms:\n    display_name: LMS\n    groups: [staff]\n";
    let leaving = "roles:\n  vendor-role:\n    permissions: [vendor.read]\ngroups:\n  vendor:\n    roles: [vendor-role]\nusers:\n  vendor-sync:\n    display_name: Vendor sync\n    groups: [vendor, staff]\n    roles: [vendor-role, reader]\n    credentials: { token: true }\n";
    write(dir.path(), "config/base.yaml", base);
    write(dir.path(), "config/vendor.yaml", leaving);
    let out = roster(
        dir.path(),
        &[
            "apply",
            "config",
            "--yes",
            "--secrets-out",
            "s.json",
            "--allow-mass-removal",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // Offboarding: the vendor's user, group and role leave the config.
    fs::remove_file(dir.path().join("config/vendor.yaml")).expect("remove");
    let out = roster(
        dir.path(),
        &["apply", "config", "--yes", "--allow-mass-removal"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let s = state(dir.path());
    assert_eq!(s["users"]["vendor-sync"]["spec"]["active"], false);
    assert_eq!(
        s["users"]["vendor-sync"]["spec"]["groups"],
        serde_json::json!(["staff"])
    );
    // A user deactivated earlier whose group goes later: its membership goes
    // with the group.
    write(
        dir.path(),
        "config/legacy.yaml",
        "groups:\n  legacy:\n    roles: [reader]\nusers:\n  old-sync:\n    display_name: Old sync\n    groups: [legacy]\n",
    );
    let out = roster(
        dir.path(),
        &["apply", "config", "--yes", "--allow-mass-removal"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    write(
        dir.path(),
        "config/legacy.yaml",
        "groups:\n  legacy:\n    roles: [reader]\n",
    );
    let out = roster(
        dir.path(),
        &["apply", "config", "--yes", "--allow-mass-removal"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        state(dir.path())["users"]["old-sync"]["spec"]["active"],
        false
    );
    fs::remove_file(dir.path().join("config/legacy.yaml")).expect("remove");
    let out = roster(dir.path(), &["plan", "config"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("user.old-sync"), "{}", stdout(&out));
    let out = roster(
        dir.path(),
        &["apply", "config", "--yes", "--allow-mass-removal"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        state(dir.path())["users"]["old-sync"]["spec"]
            .get("groups")
            .is_none()
    );
    let out = roster(dir.path(), &["export"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    write(dir.path(), "exported/all.yaml", &stdout(&out));
    let out = roster(dir.path(), &["validate", "exported"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = roster(dir.path(), &["plan", "exported"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("No changes."), "{}", stdout(&out));
}

/// `identity_provider: null` in a user does not clear a template's value:
/// `null` is the same as leaving the field out, as the README documents
/// (Templates: "`null` ... does not clear an inherited value").
#[test]
fn null_does_not_clear_an_inherited_scalar_as_documented() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "config/a.yaml",
        "templates:\n  sso:\n    authentication: sso\n    identity_provider: okta\nusers:\n  lms:\n    display_name: LMS\n    extends: sso\n    identity_provider: null\n",
    );
    let out = roster(dir.path(), &["plan", "config", "--format", "json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let step = &v["steps"][0];
    assert_eq!(step["address"], "user.lms");
    assert_eq!(step["target"]["identity_provider"], "okta");
    let readme = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README");
    assert!(
        readme.contains("`null` is the same\n  as leaving the field out, so it does not clear an inherited value"),
        "the README must document how null behaves in a user that extends a template"
    );
}
