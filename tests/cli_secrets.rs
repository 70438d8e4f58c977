//! The secrets emission as a user drives it: the IRIS HR example applied with
//! secrets to a 0600 file, age-encrypted (decrypted with the age crate, and
//! with the standard `age` tool when installed), in each format, and printed
//! once on a terminal under a banner.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output};

use age::secrecy::ExposeSecret;
use roster::secret::verify_secret;
use serde_json::Value;

fn roster(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_roster"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("ROSTER_STORE")
        .output()
        .expect("run roster")
}

fn iris(dir: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/iris-hr");
    fs::create_dir_all(dir.join("config")).unwrap();
    for entry in fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), dir.join("config").join(entry.file_name())).unwrap();
    }
}

/// Decrypt an age-armored text with `identity`.
fn decrypt(armored: &str, identity: &age::x25519::Identity) -> String {
    let decryptor =
        age::Decryptor::new(age::armor::ArmoredReader::new(armored.as_bytes())).unwrap();
    let mut reader = decryptor
        .decrypt(std::iter::once(identity as &dyn age::Identity))
        .unwrap();
    let mut plain = String::new();
    reader.read_to_string(&mut plain).unwrap();
    plain
}

fn hashes(dir: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(dir.join(".roster/state.json")).unwrap()).unwrap()
}

fn check_secrets_verify(dir: &Path, json: &Value) -> usize {
    let state = hashes(dir);
    let list = json["secrets"].as_array().expect("secrets");
    for s in list {
        let (user, kind, value) = (
            s["user"].as_str().unwrap(),
            s["kind"].as_str().unwrap(),
            s["value"].as_str().unwrap(),
        );
        let hash = state["users"][user]["meta"]["secrets"][kind]
            .as_str()
            .expect("hash stored");
        assert!(verify_secret(value, hash), "{user} {kind}");
        assert!(s["generated_at"].as_str().is_some_and(|t| t.ends_with('Z')));
        if kind == "token" {
            assert!(value.starts_with("irishr_"), "token prefix: {value}");
        }
    }
    list.len()
}

#[test]
fn age_encrypted_secrets_decrypt_with_the_recipients_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    iris(d);
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let out = roster(
        d,
        &[
            "apply",
            "config",
            "--yes",
            "--secrets-out",
            "secrets.age",
            "--secrets-recipient",
            &recipient,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let armored = fs::read_to_string(d.join("secrets.age")).unwrap();
    assert!(
        armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
        "{armored}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(d.join("secrets.age"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    let plain = decrypt(&armored, &identity);
    let json: Value = serde_json::from_str(&plain).unwrap();
    assert!(check_secrets_verify(d, &json) >= 2);

    // The standard tool decrypts it too (scripts/test.sh installs Debian's `age`).
    if Command::new("age").arg("--version").output().is_ok() {
        fs::write(
            d.join("key.txt"),
            format!("{}\n", identity.to_string().expose_secret()),
        )
        .unwrap();
        let out = Command::new("age")
            .args(["-d", "-i", "key.txt", "secrets.age"])
            .current_dir(d)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8(out.stdout).unwrap(), plain);
    } else {
        eprintln!("`age` is not installed: decrypted with the age crate only");
    }
}

#[test]
fn secrets_in_yaml_and_env_formats() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    iris(d);
    let out = roster(
        d,
        &[
            "apply",
            "config",
            "--yes",
            "--secrets-out",
            "secrets.env",
            "--secrets-format",
            "env",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env = fs::read_to_string(d.join("secrets.env")).unwrap();
    assert!(
        env.lines()
            .any(|l| l.starts_with("ROSTER_SECRET_QLEARSITE_PASSWORD='")),
        "{}",
        env.lines().count()
    );
    // Raise a rotation and take the new secrets as YAML.
    let users = d.join("config/users.yaml");
    let text = fs::read_to_string(&users).unwrap();
    fs::write(
        &users,
        text.replace(
            "credentials: {password: true}",
            "credentials: {password: true, rotation: 1}",
        ),
    )
    .unwrap();
    let out = roster(
        d,
        &[
            "apply",
            "config",
            "--yes",
            "--secrets-out",
            "secrets.yaml",
            "--secrets-format",
            "yaml",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = fs::read_to_string(d.join("secrets.yaml")).unwrap();
    let json: Value = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(json["secrets"][0]["user"], "qlearsite");
    assert_eq!(check_secrets_verify(d, &json), 1);
}

#[test]
fn a_bad_recipient_or_an_existing_secrets_file_stops_before_any_change() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    iris(d);
    let out = roster(
        d,
        &[
            "apply",
            "config",
            "--yes",
            "--secrets-out",
            "s.age",
            "--secrets-recipient",
            "age1notakey",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(!d.join(".roster/state.json").exists());
    fs::write(d.join("taken.json"), "precious").unwrap();
    let out = roster(
        d,
        &["apply", "config", "--yes", "--secrets-out", "taken.json"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("taken.json"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fs::read_to_string(d.join("taken.json")).unwrap(),
        "precious",
        "never overwritten"
    );
    assert!(!d.join(".roster/state.json").exists(), "nothing applied");
}

/// On a terminal without --secrets-out, the secrets are printed once under a
/// banner. `script` (util-linux) gives roster a pseudo-terminal.
#[test]
fn on_a_terminal_secrets_are_printed_once_under_a_banner() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!(
            "`script` (util-linux) is not installed: the terminal path is covered by the other tests only"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    iris(d);
    let cmd = format!("{} apply config --yes", env!("CARGO_BIN_EXE_roster"));
    let out = not_ci(Command::new("script").args(["-qec", &cmd, "/dev/null"]))
        .current_dir(d)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("shown once, they will not be shown again"),
        "{text}"
    );
    let state = hashes(d);
    let hash = state["users"]["qlearsite"]["meta"]["secrets"]["password"]
        .as_str()
        .unwrap();
    let start = text
        .find("{\r\n  \"secrets\"")
        .or_else(|| text.find("{\n  \"secrets\""))
        .expect("JSON after the banner");
    let end = text.find("==== end of secrets").unwrap();
    let json: Value = serde_json::from_str(&text[start..end].replace('\r', "")).unwrap();
    let q = json["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["user"] == "qlearsite")
        .unwrap();
    assert!(verify_secret(q["value"].as_str().unwrap(), hash));
    // The second apply prints nothing: nothing new was generated.
    let out = not_ci(Command::new("script").args(["-qec", &cmd, "/dev/null"]))
        .current_dir(d)
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("shown once"));
}

/// The variables by which roster detects a CI run, removed.
fn not_ci(cmd: &mut Command) -> &mut Command {
    for var in [
        "CI",
        "GITHUB_SERVER_URL",
        "GITHUB_REPOSITORY",
        "GITHUB_RUN_ID",
        "CI_PIPELINE_URL",
        "CI_JOB_URL",
        "BUILD_URL",
        "CIRCLE_BUILD_URL",
        "BUILDKITE_BUILD_URL",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Issue 16: Buildkite runs jobs in a pty, and secrets printed to it landed
/// in the build log. In a detected CI run, terminal output of secrets is
/// refused before anything changes unless --terminal-is-private says the
/// terminal is not recorded.
#[test]
fn secrets_on_a_ci_terminal_are_refused_unless_declared_private() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("`script` (util-linux) is not installed: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    iris(d);
    let bin = env!("CARGO_BIN_EXE_roster");
    let refused = not_ci(Command::new("script").args([
        "-qec",
        &format!("{bin} apply config --yes; echo EXIT=$?"),
        "/dev/null",
    ]))
    .current_dir(d)
    .env("NO_COLOR", "1")
    .env(
        "BUILDKITE_BUILD_URL",
        "https://buildkite.com/acme/roster/builds/7",
    )
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&refused.stdout);
    assert!(text.contains("EXIT=1"), "{text}");
    assert!(text.contains("this is a CI run"), "{text}");
    assert!(text.contains("--terminal-is-private"), "{text}");
    assert!(!text.contains("shown once"), "{text}");
    assert!(!d.join(".roster/state.json").exists(), "nothing changed");
    let allowed = not_ci(Command::new("script").args([
        "-qec",
        &format!("{bin} apply config --yes --terminal-is-private"),
        "/dev/null",
    ]))
    .current_dir(d)
    .env("NO_COLOR", "1")
    .env("CI", "true")
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&allowed.stdout);
    assert!(
        text.contains("shown once, they will not be shown again"),
        "{text}"
    );
}

/// Issue 16: `hr-sync` and `hr.sync` both mapped to
/// `ROSTER_SECRET_HR_SYNC_TOKEN`; sourcing the env file kept one of them.
/// The env format is refused before anything changes.
#[test]
fn env_secrets_format_name_collisions_are_refused_before_any_change() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir(d.join("config")).unwrap();
    fs::write(
        d.join("config/users.yaml"),
        "users:\n  hr-sync:\n    display_name: HR sync\n    credentials: {token: true}\n  \
         hr.sync:\n    display_name: HR sync (low)\n    credentials: {token: true}\n",
    )
    .unwrap();
    let out = roster(
        d,
        &[
            "apply",
            "config",
            "--yes",
            "--secrets-out",
            "s.env",
            "--secrets-format",
            "env",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("`hr-sync` and `hr.sync` both map to ROSTER_SECRET_HR_SYNC_TOKEN"),
        "{err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
    assert!(!d.join("s.env").exists());
    assert!(!d.join(".roster/state.json").exists());
    // The JSON format keeps them apart.
    let out = roster(d, &["apply", "config", "--yes", "--secrets-out", "s.json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn with_only_a_recipient_stdout_holds_just_the_armored_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    iris(d);
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let out = roster(
        d,
        &[
            "apply",
            "config",
            "--yes",
            "--secrets-recipient",
            &recipient,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
        "{stdout}"
    );
    assert!(
        stdout
            .trim_end()
            .ends_with("-----END AGE ENCRYPTED FILE-----"),
        "{stdout}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Plan:"),
        "the plan went to stderr"
    );
    let plain = decrypt(&stdout, &identity);
    let json: Value = serde_json::from_str(&plain).unwrap();
    assert!(check_secrets_verify(d, &json) >= 2);
}
