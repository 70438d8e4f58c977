//! End to end through the `roster` binary and SCIM. A SCIM server is a
//! target (declared under `targets:` in the config), never the state store:
//! `--store scim+…` / `ROSTER_STORE=scim+…` is refused before anything is
//! sent, with the `targets:` form to use instead. The bundled examples,
//! declared with a SCIM target on a core-schema-only `scim2-server`, apply
//! and re-plan to no changes; drift made on the server is shown and
//! restored; an unmanaged user is never touched.
//!
//! Talks only to 127.0.0.1; servers are stopped by pid when their guard drops.

#[path = "common/cli.rs"]
mod cli;

#[allow(dead_code)]
#[path = "common/scim.rs"]
mod harness;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use cli::{code, copy_example, roster_command, show, stderr, stdout};
use harness::{ScimServer, ServerConfig, TOKEN, TOKEN_ENV, direct};
use serde_json::{Value, json};

const EXAMPLES: [&str; 3] = ["avanti", "iris-hr", "avaamo"];

/// Copy `example` to `dir/config` declared with one SCIM target at `url`
/// that every user goes to (`settings.default_targets`).
fn example_with_target(example: &str, dir: &Path, url: &str) {
    let config = dir.join("config");
    copy_example(example, &config);
    let mut targets =
        format!("targets:\n  scim:\n    scim:\n      url: {url}\n      token_env: {TOKEN_ENV}\n");
    // A config has one `settings`: extend the example's, or add one.
    let settings = config.join("settings.yaml");
    if settings.exists() {
        let text = std::fs::read_to_string(&settings).expect("settings.yaml");
        assert!(
            text.contains("\nsettings:\n"),
            "{example}: a settings block"
        );
        let text = text.replacen(
            "\nsettings:\n",
            "\nsettings:\n  default_targets: [scim]\n",
            1,
        );
        std::fs::write(&settings, text).expect("write settings.yaml");
    } else {
        targets.push_str("settings:\n  default_targets: [scim]\n");
    }
    std::fs::write(config.join("targets.yaml"), targets).expect("write targets.yaml");
}

fn run(dir: &Path, args: &[&str]) -> Output {
    roster_command(dir)
        .args(args)
        .env(TOKEN_ENV, TOKEN)
        .output()
        .expect("run roster")
}

fn apply(dir: &Path, secrets: &str) -> Output {
    run(dir, &["apply", "config", "--yes", "--secrets-out", secrets])
}

fn replan_is_clean(dir: &Path, what: &str) {
    let p = run(dir, &["plan", "config", "--detailed-exitcode"]);
    assert_eq!(code(&p), 0, "{what}: {}", show(&p));
    assert!(stdout(&p).contains("No changes"), "{what}: {}", show(&p));
}

fn users(base: &str) -> Vec<Value> {
    let (s, list) = direct("GET", &format!("{base}/Users?count=1000"), None);
    assert_eq!(s, 200, "{list}");
    list["Resources"].as_array().cloned().unwrap_or_default()
}

fn user<'a>(all: &'a [Value], name: &str) -> &'a Value {
    all.iter()
        .find(|u| u["userName"] == name)
        .unwrap_or_else(|| panic!("user {name} on the server"))
}

#[test]
fn the_bundled_examples_converge_on_a_core_schema_only_server() {
    let mut server = ScimServer::start(ServerConfig {
        dynamic_tenants: true,
        ..ServerConfig::default()
    });
    let mut issued: Vec<(String, String, String)> = Vec::new();
    for example in EXAMPLES {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = server.http_base(Some(example));
        example_with_target(example, dir.path(), &base);
        let out = apply(dir.path(), "s1.json");
        assert_eq!(code(&out), 0, "{example}: {}", show(&out));
        assert!(!show(&out).contains(TOKEN), "the token never shows");
        assert!(
            !stderr(&out).contains("FAILED"),
            "{example}: {}",
            show(&out)
        );
        replan_is_clean(dir.path(), example);
        // Every managed user is on the server with roster's externalId.
        let on_server = users(&base);
        assert!(!on_server.is_empty(), "{example}: users reached the server");
        for u in &on_server {
            let name = u["userName"].as_str().unwrap_or_default();
            assert_eq!(u["externalId"], format!("roster:user:{name}"), "{u}");
        }
        // Applying again changes nothing.
        let again = apply(dir.path(), "s2.json");
        assert_eq!(code(&again), 0, "{example}: {}", show(&again));
        replan_is_clean(dir.path(), example);
        let file: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("s1.json")).expect("secrets file"),
        )
        .expect("secrets JSON");
        for s in file["secrets"].as_array().into_iter().flatten() {
            if s["kind"] == "password" {
                let user = s["user"].as_str().unwrap_or_default().to_string();
                let value = s["value"].as_str().unwrap_or_default().to_string();
                issued.push((example.to_string(), user, value));
            }
        }
    }
    // The passwords written to the secrets output are the ones the server
    // holds (its dump is the only place a write-only password shows).
    assert!(!issued.is_empty(), "the examples issue passwords");
    let dump = server.stop_and_dump();
    for (example, name, value) in &issued {
        let held = dump[example.as_str()]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["userName"] == name.as_str()))
            .unwrap_or_else(|| panic!("{example}: {name} in the dump"));
        assert!(
            held["password"] == value.as_str(),
            "{example}: {name}'s password on the server is the issued one"
        );
    }
}

#[test]
fn drift_on_the_server_is_shown_and_restored_and_an_unmanaged_user_is_never_touched() {
    let server = ScimServer::start(ServerConfig::default());
    let base = server.http_base(None);
    let dir = tempfile::tempdir().expect("tempdir");
    example_with_target("iris-hr", dir.path(), &base);
    // An unmanaged user, made by hand before roster ever ran.
    let (s, hand) = direct(
        "POST",
        &format!("{base}/Users"),
        Some(
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "hand-made", "displayName": "By Hand", "active": true}),
        ),
    );
    assert_eq!(s, 201, "{hand}");
    let out = apply(dir.path(), "s1.json");
    assert_eq!(code(&out), 0, "{}", show(&out));
    replan_is_clean(dir.path(), "after the first apply");

    // Drift: a managed user's display name changed, another deactivated.
    let all = users(&base);
    // Two active managed users (the example also has inactive ones, whose
    // deactivation would be no drift), in a stable order.
    let mut managed: Vec<&Value> = all
        .iter()
        .filter(|u| u["userName"] != "hand-made" && u["active"] == true)
        .collect();
    managed.sort_by_key(|u| u["userName"].as_str().unwrap_or_default().to_string());
    assert!(managed.len() >= 2);
    let (a, b) = (managed[0].clone(), managed[1].clone());
    let a_name = a["userName"].as_str().unwrap_or_default().to_string();
    let b_name = b["userName"].as_str().unwrap_or_default().to_string();
    let patch = |id: &Value, ops: Value| {
        let (s, body) = direct(
            "PATCH",
            &format!("{base}/Users/{}", id.as_str().unwrap_or_default()),
            Some(
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops}),
            ),
        );
        assert!(matches!(s, 200 | 204), "{s} {body}");
    };
    patch(
        &a["id"],
        json!([{"op": "replace", "path": "displayName", "value": "Changed On The Server"}]),
    );
    patch(
        &b["id"],
        json!([{"op": "replace", "path": "active", "value": false}]),
    );
    let p = run(dir.path(), &["plan", "config", "--detailed-exitcode"]);
    assert_eq!(code(&p), 2, "drift is a change to make: {}", show(&p));
    let text = stdout(&p);
    assert!(text.contains(&format!("user.{a_name}@scim")), "{text}");
    assert!(text.contains(&format!("user.{b_name}@scim")), "{text}");
    assert!(
        text.contains("Changed On The Server"),
        "the drifted value is shown: {text}"
    );
    assert!(
        !text.contains("hand-made"),
        "an unmanaged user is not planned: {text}"
    );

    let fix = apply(dir.path(), "s2.json");
    assert_eq!(code(&fix), 0, "{}", show(&fix));
    replan_is_clean(dir.path(), "after restoring the drift");
    let all = users(&base);
    assert_ne!(user(&all, &a_name)["displayName"], "Changed On The Server");
    assert_eq!(user(&all, &b_name)["active"], true);
    let h = user(&all, "hand-made");
    assert_eq!(
        h["displayName"], "By Hand",
        "the unmanaged user is untouched"
    );
    assert_eq!(h["id"], hand["id"]);
    assert_eq!(
        h["meta"]["version"], hand["meta"]["version"],
        "never written"
    );
}

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
