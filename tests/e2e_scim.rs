//! End to end through the `roster` binary and SCIM. A SCIM server is a
//! target (declared under `targets:` in the config), never the state store:
//! `--store scim+…` / `ROSTER_STORE=scim+…` is refused before anything is
//! sent, with the `targets:` form to use instead.
//!
//! Talks only to 127.0.0.1 (a listener that counts connections); bounded.

#[path = "common/cli.rs"]
mod cli;

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use cli::{code, show, stderr};

const CONFIG: &str = "users:\n  survey-sync:\n    display_name: Survey Sync\n";

#[test]
fn a_scim_store_url_is_refused_with_the_targets_form() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("config")).expect("mkdir");
    std::fs::write(dir.path().join("config/access.yaml"), CONFIG).expect("write");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    for (how, url) in [
        ("flag", format!("scim+http://127.0.0.1:{port}/v2")),
        ("env", format!("scim+https://127.0.0.1:{port}/scim/v2")),
    ] {
        for args in [
            &["plan", "config"][..],
            &["apply", "config", "--yes", "--secrets-out", "s.json"][..],
        ] {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_roster"));
            cmd.args(args)
                .current_dir(dir.path())
                .env("NO_COLOR", "1")
                .env_remove("ROSTER_STORE");
            if how == "flag" {
                cmd.args(["--store", &url]);
            } else {
                cmd.env("ROSTER_STORE", &url);
            }
            let out = cmd.output().expect("run roster");
            let text = show(&out);
            assert_eq!(code(&out), 1, "{how} {args:?}: {text}");
            let err = stderr(&out);
            for needle in [
                "no longer a state store",
                "targets:",
                "scim:",
                &format!("url: {}", url.trim_start_matches("scim+")),
                "token_env:",
                "default_targets",
            ] {
                assert!(err.contains(needle), "{how} {args:?}: {needle:?} in {err}");
            }
            assert!(!text.contains("panicked"), "{text}");
        }
    }
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        listener.accept().is_err(),
        "nothing was sent to the would-be store"
    );
    assert!(
        !dir.path().join("s.json").exists(),
        "no secrets were written"
    );
}
