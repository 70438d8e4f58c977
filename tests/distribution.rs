//! Installing roster without a Rust toolchain (issue 17): the Debian package
//! (built by `scripts/package-deb.sh`, unpacked into a throw-away root, its
//! binary, man page and completions used), the release archives and the
//! container context (`scripts/package-release.sh`,
//! `scripts/stage-container.sh`), the setup action's download-and-verify
//! script (`scripts/install.sh`) and the GitLab template's install lines
//! against fake release assets served on 127.0.0.1, the release workflow, the setup action and the CI templates
//! against SchemaStore's JSON Schemas (`check-jsonschema`), and
//! `roster --version` (build.rs, with and without `.git`).
//!
//! Needs what `scripts/test.sh` installs: cargo-deb, man-db, check-jsonschema.
//! The package test is skipped, with a message, only where `dpkg` is absent.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn roster_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_roster"))
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(cmd: &mut Command) -> Output {
    let what = format!("{cmd:?}");
    cmd.stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn ok(out: &Output, what: &str) -> String {
    assert_eq!(out.status.code(), Some(0), "{what}: {}", show(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn script(name: &str) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("scripts").join(name))
        .current_dir(root());
    cmd
}

fn parse_yaml(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str::<Value>(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every string in a parsed YAML document.
fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

fn all_text(v: &Value) -> String {
    let mut out = Vec::new();
    strings(v, &mut out);
    out.join("\n")
}

/// The roster version line the test build prints.
fn version_line(bin: &Path) -> String {
    ok(&run(Command::new(bin).arg("--version")), "roster --version")
        .trim()
        .to_string()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

// ------------------------------------------------------------- JSON Schemas

/// `check-jsonschema` (PyPI), which ships SchemaStore's GitHub workflow,
/// GitHub action and GitLab CI schemas; scripts/test.sh installs it.
fn check_jsonschema() -> PathBuf {
    let path = std::env::var_os("ROSTER_CHECK_JSONSCHEMA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/check-jsonschema-venv/bin/check-jsonschema"));
    assert!(
        path.is_file(),
        "check-jsonschema is missing at {}: run ./scripts/test.sh (it installs check-jsonschema==0.39.0 into target/check-jsonschema-venv)",
        path.display()
    );
    path
}

fn check_schema(builtin: &str, file: &Path) -> Output {
    run(Command::new(check_jsonschema())
        .args(["--color", "never", "--builtin-schema", builtin])
        .arg(file))
}

#[test]
fn release_workflow_and_ci_templates_pass_their_json_schemas() {
    let mut files: Vec<(&str, PathBuf)> = fs::read_dir(root().join(".github/workflows"))
        .expect(".github/workflows")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .map(|p| ("vendor.github-workflows", p))
        .collect();
    assert!(files.iter().any(|(_, p)| p.ends_with("release.yml")));
    files.push((
        "vendor.github-workflows",
        root().join("examples/ci/github-actions/roster.yml"),
    ));
    files.push(("vendor.gitlab-ci", root().join("examples/ci/gitlab-ci.yml")));
    for (schema, file) in &files {
        ok(&check_schema(schema, file), &file.display().to_string());
    }
    // The check can fail: a job without runs-on; a step key that does not exist.
    let tmp = tempfile::tempdir().expect("tempdir");
    let text = fs::read_to_string(root().join(".github/workflows/release.yml")).expect("read");
    for (from, to) in [
        ("    runs-on: ubuntu-22.04\n", ""),
        (
            "- uses: actions/checkout@v4",
            "- usess: actions/checkout@v4",
        ),
    ] {
        assert!(text.contains(from), "{from}");
        let bad = tmp.path().join("bad.yml");
        fs::write(&bad, text.replacen(from, to, 1)).expect("write");
        let out = check_schema("vendor.github-workflows", &bad);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{from:?} removed: {}",
            show(&out)
        );
    }
}

#[test]
fn setup_action_passes_the_action_schema_and_runs_the_install_script() {
    let path = root().join("action.yml");
    ok(&check_schema("vendor.github-actions", &path), "action.yml");
    let tmp = tempfile::tempdir().expect("tempdir");
    let bad = tmp.path().join("action.yml");
    let text = fs::read_to_string(&path).expect("read");
    fs::write(&bad, text.replace("using: composite", "using: compositee")).expect("write");
    let out = check_schema("vendor.github-actions", &bad);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));

    let action = parse_yaml(&path);
    assert_eq!(action["inputs"]["version"]["default"], "latest");
    assert_eq!(action["inputs"]["version"]["required"], false);
    let steps = action["runs"]["steps"].as_array().expect("steps");
    let cache = steps
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/cache@"))
        })
        .expect("a cache step");
    let key = cache["with"]["key"].as_str().expect("a cache key");
    for part in ["inputs.version", "runner.os", "runner.arch"] {
        assert!(key.contains(part), "cache key {key} lacks {part}");
    }
    let install = steps
        .iter()
        .find(|s| s["run"].as_str().is_some_and(|r| r.contains("install.sh")))
        .expect("a step that runs the install script");
    assert_eq!(
        install["run"], "\"$GITHUB_ACTION_PATH/scripts/install.sh\"",
        "the action runs the script this test checks"
    );
    assert_eq!(
        install["if"], "steps.cache.outputs.cache-hit != 'true'",
        "a cached roster is not downloaded again"
    );
    assert_eq!(install["env"]["ROSTER_VERSION"], "${{ inputs.version }}");
    assert!(
        steps
            .iter()
            .filter_map(|s| s["run"].as_str())
            .any(|r| r.contains(">> \"$GITHUB_PATH\"")),
        "roster is put on PATH"
    );
}

#[test]
fn github_template_uses_the_setup_action_instead_of_compiling_roster() {
    let path = root().join("examples/ci/github-actions/roster.yml");
    let doc = parse_yaml(&path);
    for (name, job) in doc["jobs"].as_object().expect("jobs") {
        let steps = job["steps"].as_array().expect("steps");
        let setup = steps
            .iter()
            .position(|s| {
                s["uses"]
                    .as_str()
                    .is_some_and(|u| u.ends_with("/roster@v1"))
            })
            .unwrap_or_else(|| panic!("job {name}: no `uses: OWNER/roster@v1` step"));
        let first_roster = steps
            .iter()
            .position(|s| s["run"].as_str().is_some_and(|r| r.contains("roster ")))
            .expect("a roster step");
        assert!(
            setup < first_roster,
            "job {name}: roster is set up before use"
        );
    }
    assert!(
        !all_text(&doc).contains("cargo install"),
        "the template must not compile roster on every run"
    );
    // The fallback stays documented in the template's comments.
    let text = fs::read_to_string(&path).expect("read");
    assert!(text.contains("cargo install --locked --git"), "{text}");
}

// ------------------------------------------------- release workflow

fn release_workflow() -> Value {
    parse_yaml(&root().join(".github/workflows/release.yml"))
}

fn release_targets(workflow: &Value) -> BTreeSet<String> {
    workflow["jobs"]["binaries"]["strategy"]["matrix"]["include"]
        .as_array()
        .expect("a matrix of targets")
        .iter()
        .map(|e| e["target"].as_str().expect("target").to_string())
        .collect()
}

/// What the setup action asks for, per GitHub runner (RUNNER_OS, RUNNER_ARCH).
const RUNNERS: [(&str, &str, &str); 4] = [
    ("Linux", "X64", "x86_64-unknown-linux-musl"),
    ("Linux", "ARM64", "aarch64-unknown-linux-musl"),
    ("macOS", "X64", "x86_64-apple-darwin"),
    ("macOS", "ARM64", "aarch64-apple-darwin"),
];

#[test]
fn release_workflow_builds_every_asset_with_the_tested_scripts() {
    let wf = release_workflow();
    // Release tags only: pushing the action's major tag (v1) releases nothing.
    assert_eq!(wf["on"]["push"]["tags"][0], "v[0-9]+.[0-9]+.[0-9]+");
    let targets = release_targets(&wf);
    for t in [
        "x86_64-unknown-linux-gnu",
        "aarch64-unknown-linux-gnu",
        "x86_64-unknown-linux-musl",
        "aarch64-unknown-linux-musl",
        "x86_64-apple-darwin",
        "aarch64-apple-darwin",
    ] {
        assert!(targets.contains(t), "release.yml does not build {t}");
    }
    let text = all_text(&wf);
    // The packaging commands are the scripts these tests run.
    for s in [
        "scripts/package-release.sh --target",
        "scripts/package-deb.sh --profile release",
        "scripts/stage-container.sh dist container-context",
        "cargo build --release --locked",
        "sha256sum",
        "gh release create",
    ] {
        assert!(text.contains(s), "release.yml does not run `{s}`");
    }
    // Every script it (or the action) names exists and is executable.
    let action = fs::read_to_string(root().join("action.yml")).expect("action.yml");
    for source in [text.as_str(), action.as_str()] {
        for (i, _) in source.match_indices("scripts/") {
            let name: String = source[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.'))
                .collect();
            let path = root().join(&name);
            let mode = fs::metadata(&path)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .permissions();
            use std::os::unix::fs::PermissionsExt as _;
            assert!(mode.mode() & 0o111 != 0, "{name} is not executable");
        }
    }
    // A signed provenance attestation of every published file.
    let publish = &wf["jobs"]["publish"];
    let attest = publish["steps"]
        .as_array()
        .expect("publish steps")
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/attest-build-provenance@"))
        })
        .expect("an attestation step");
    assert_eq!(attest["with"]["subject-path"], "dist/*");
    assert_eq!(publish["permissions"]["id-token"], "write");
    assert_eq!(publish["permissions"]["attestations"], "write");
    assert_eq!(publish["permissions"]["contents"], "write");
    // The container is built from the staged context with the Containerfile.
    let push = wf["jobs"]["container"]["steps"]
        .as_array()
        .expect("container steps")
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("docker/build-push-action@"))
        })
        .expect("an image build step");
    assert_eq!(push["with"]["file"], "Containerfile");
    assert_eq!(push["with"]["context"], "container-context");
    assert_eq!(push["with"]["platforms"], "linux/amd64,linux/arm64");
    // The release builds the .deb with the cargo-deb the tests use.
    let test_sh = fs::read_to_string(root().join("scripts/test.sh")).expect("test.sh");
    let pinned = test_sh
        .lines()
        .find_map(|l| l.strip_prefix("cargo_deb_version="))
        .and_then(|v| v.split_whitespace().next())
        .expect("scripts/test.sh pins cargo_deb_version");
    assert_eq!(wf["env"]["CARGO_DEB_VERSION"], pinned);
}

// ---------------------------------------------- a file server on 127.0.0.1

/// Serves the files of a directory over HTTP/1.1 GET on a free port of
/// 127.0.0.1, as a GitHub release serves its assets. Stops when dropped (and
/// after five minutes at most).
struct FileServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FileServer {
    fn start(dir: PathBuf) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            while !flag.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => serve_one(stream, &dir),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => break,
                }
            }
        });
        FileServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_one(mut stream: TcpStream, dir: &Path) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let request = String::from_utf8_lossy(&request);
    let mut parts = request.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let rel = target.trim_start_matches('/');
    let file = (method == "GET" && !rel.split('/').any(|p| p == ".." || p.is_empty()))
        .then(|| dir.join(rel))
        .filter(|p| p.is_file());
    let (status, body) = match file.and_then(|p| fs::read(p).ok()) {
        Some(body) => ("200 OK", body),
        None => ("404 Not Found", b"not found\n".to_vec()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

// ------------------------------------------------ setup action's installer

/// A fake release: `roster-TARGET.tar.gz` for every target release.yml
/// builds (a script in the archive's layout that names its target), plus
/// SHA256SUMS. With `real_host`, the host's Linux archive is the real one:
/// scripts/package-release.sh on the test build.
fn fake_release(dir: &Path, real_host: bool) -> String {
    let host_target = format!("{}-unknown-linux-musl", std::env::consts::ARCH);
    let mut sums = String::new();
    for target in release_targets(&release_workflow()) {
        let asset = format!("roster-{target}.tar.gz");
        if real_host && target == host_target && cfg!(target_os = "linux") {
            ok(
                &run(script("package-release.sh")
                    .args(["--target", &target, "--binary"])
                    .arg(roster_bin())
                    .arg("--output")
                    .arg(dir)),
                "package-release.sh",
            );
        } else {
            let stage = tempfile::tempdir().expect("tempdir");
            let inner = stage.path().join(format!("roster-{target}"));
            fs::create_dir(&inner).expect("mkdir");
            fs::write(
                inner.join("roster"),
                format!("#!/bin/sh\necho 'roster 9.9.9 (fake {target})'\n"),
            )
            .expect("write");
            use std::os::unix::fs::PermissionsExt as _;
            fs::set_permissions(inner.join("roster"), fs::Permissions::from_mode(0o755))
                .expect("chmod");
            ok(
                &run(Command::new("tar")
                    .arg("-czf")
                    .arg(dir.join(&asset))
                    .arg("-C")
                    .arg(stage.path())
                    .arg(format!("roster-{target}"))),
                "tar",
            );
        }
        let bytes = fs::read(dir.join(&asset)).expect("asset");
        sums.push_str(&format!("{}  {asset}\n", sha256_hex(&bytes)));
    }
    fs::write(dir.join("SHA256SUMS"), &sums).expect("write SHA256SUMS");
    host_target
}

fn install(server: &FileServer, version: &str, os: &str, arch: &str, dest: &Path) -> Output {
    run(script("install.sh")
        .env(
            "ROSTER_DOWNLOAD_URL",
            server.url(&format!("releases/download/{version}")),
        )
        .env("ROSTER_VERSION", version)
        .env("ROSTER_OS", os)
        .env("ROSTER_ARCH", arch)
        .env("ROSTER_INSTALL_DIR", dest)
        .env_remove("ROSTER_REPOSITORY")
        .env_remove("GITHUB_ACTION_REPOSITORY"))
}

/// The GitLab template's install lines (`default.before_script`), run in
/// `project` as GitLab's runner runs them (bash, `set -eo pipefail`).
fn gitlab_install(server: &FileServer, version: &str, project: &Path) -> Output {
    let doc = parse_yaml(&root().join("examples/ci/gitlab-ci.yml"));
    let lines: Vec<&str> = doc["default"]["before_script"]
        .as_array()
        .expect("a before_script")
        .iter()
        .map(|l| l.as_str().expect("a script line"))
        .collect();
    fs::create_dir_all(project).expect("mkdir");
    run(Command::new("bash")
        .arg("-c")
        .arg(format!("set -eo pipefail\n{}\n", lines.join("\n")))
        .current_dir(project)
        .env("CI_PROJECT_DIR", project)
        .env("ROSTER_RELEASES_URL", server.url("releases/download"))
        .env("ROSTER_VERSION", version))
}

#[test]
fn install_script_and_gitlab_template_install_the_verified_binary() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let release = tmp.path().join("releases/download/v9.9.9");
    fs::create_dir_all(&release).expect("mkdir");
    let host_target = fake_release(&release, true);
    let server = FileServer::start(tmp.path().to_path_buf());
    for (os, arch, target) in RUNNERS {
        let dest = tmp.path().join(format!("bin-{os}-{arch}"));
        let out = install(&server, "v9.9.9", os, arch, &dest);
        let text = ok(&out, &format!("install on {os}/{arch}"));
        assert!(text.contains("verified"), "{}", show(&out));
        let installed = dest.join("roster");
        let version = version_line(&installed);
        if target == host_target && cfg!(target_os = "linux") {
            // The real archive: the test build, as packed for a release.
            assert_eq!(version, version_line(roster_bin()));
        } else {
            assert_eq!(version, format!("roster 9.9.9 (fake {target})"));
        }
    }
    let unsupported = install(
        &server,
        "v9.9.9",
        "Windows",
        "X64",
        &tmp.path().join("bin-win"),
    );
    assert_eq!(unsupported.status.code(), Some(1), "{}", show(&unsupported));
    let err = String::from_utf8_lossy(&unsupported.stderr);
    assert!(
        err.contains("no release build of roster for Windows/X64")
            && err.contains("cargo install --locked --git"),
        "{err}"
    );
    // The GitLab template installs the host's (real) archive the same way.
    if cfg!(target_os = "linux") {
        let project = tmp.path().join("gitlab-project");
        let out = gitlab_install(&server, "v9.9.9", &project);
        let text = ok(&out, "the GitLab template's before_script");
        assert!(text.contains(&version_line(roster_bin())), "{}", show(&out));
        assert!(project.join(".roster-bin/roster").is_file());
        // Cached: the next job does not download again (v0.0.404 does not exist).
        let again = gitlab_install(&server, "v0.0.404", &project);
        ok(&again, "the GitLab template with a cached roster");
    }
    let missing = install(
        &server,
        "v0.0.404",
        "Linux",
        "X64",
        &tmp.path().join("bin-404"),
    );
    assert_eq!(missing.status.code(), Some(1), "{}", show(&missing));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("could not download") && err.contains("v0.0.404"),
        "{err}"
    );
    assert!(!tmp.path().join("bin-404/roster").exists());
}

#[test]
fn install_script_and_gitlab_template_refuse_a_checksum_mismatch() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let release = tmp.path().join("releases/download/v9.9.9");
    fs::create_dir_all(&release).expect("mkdir");
    fake_release(&release, false);
    let server = FileServer::start(tmp.path().to_path_buf());
    let dest = tmp.path().join("bin");
    fs::create_dir(&dest).expect("mkdir");
    fs::write(dest.join("roster"), "previous\n").expect("write");

    // The macOS archive changed after its checksum was published.
    let asset = release.join("roster-aarch64-apple-darwin.tar.gz");
    let mut bytes = fs::read(&asset).expect("read");
    let published = sha256_hex(&bytes);
    bytes.extend_from_slice(b"tampered");
    fs::write(&asset, &bytes).expect("write");
    let out = install(&server, "v9.9.9", "macOS", "ARM64", &dest);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("checksum mismatch for roster-aarch64-apple-darwin.tar.gz")
            && err.contains(&published)
            && err.contains(&sha256_hex(&bytes))
            && err.contains("refusing to install"),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(dest.join("roster")).expect("read"),
        "previous\n",
        "nothing was installed"
    );

    // The GitLab template refuses a tampered archive too.
    if cfg!(target_os = "linux") {
        let host = release.join(format!(
            "roster-{}-unknown-linux-musl.tar.gz",
            std::env::consts::ARCH
        ));
        let mut bytes = fs::read(&host).expect("read");
        bytes.extend_from_slice(b"tampered");
        fs::write(&host, &bytes).expect("write");
        let project = tmp.path().join("gitlab-project");
        let out = gitlab_install(&server, "v9.9.9", &project);
        assert_ne!(out.status.code(), Some(0), "{}", show(&out));
        assert!(show(&out).contains("FAILED"), "{}", show(&out));
        assert!(!project.join(".roster-bin/roster").exists());
    }

    // An asset SHA256SUMS does not list is refused too.
    let sums = fs::read_to_string(release.join("SHA256SUMS")).expect("read");
    let kept: String = sums
        .lines()
        .filter(|l| !l.ends_with("roster-x86_64-apple-darwin.tar.gz"))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(release.join("SHA256SUMS"), kept).expect("write");
    let out = install(&server, "v9.9.9", "macOS", "X64", &dest);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SHA256SUMS of release v9.9.9 has no entry for roster-x86_64-apple-darwin.tar.gz; refusing to install"),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(dest.join("roster")).expect("read"),
        "previous\n"
    );
}

// -------------------------------------------- release archive and container

fn tar_list(archive: &Path) -> BTreeSet<String> {
    let out = run(Command::new("tar").arg("-tzf").arg(archive));
    ok(&out, "tar -t")
        .lines()
        .map(|l| l.trim_end_matches('/').to_string())
        .collect()
}

#[test]
fn release_archive_and_containerfile_hold_what_the_release_build_lays_out() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dist = tmp.path().join("dist");
    for target in ["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"] {
        ok(
            &run(script("package-release.sh")
                .args(["--target", target, "--binary"])
                .arg(roster_bin())
                .arg("--output")
                .arg(&dist)),
            "package-release.sh",
        );
    }
    let listing = tar_list(&dist.join("roster-x86_64-unknown-linux-musl.tar.gz"));
    for f in [
        "roster",
        "README.md",
        "roster.schema.json",
        "man/roster.1",
        "man/roster-apply.1",
        "completions/roster.bash",
        "completions/_roster",
        "completions/roster.fish",
    ] {
        let path = format!("roster-x86_64-unknown-linux-musl/{f}");
        assert!(listing.contains(&path), "{path} not in {listing:#?}");
    }

    let context = tmp.path().join("container-context");
    ok(
        &run(script("stage-container.sh").arg(&dist).arg(&context)),
        "stage-container.sh",
    );
    let containerfile = fs::read_to_string(root().join("Containerfile")).expect("Containerfile");
    let from = containerfile
        .lines()
        .find_map(|l| l.strip_prefix("FROM "))
        .expect("a FROM line");
    assert!(
        from.contains("debian:") && from.ends_with("-slim") || from.contains("distroless"),
        "{from}"
    );
    let user = containerfile
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert!(
        !matches!(user.split(':').next(), Some("0" | "root")),
        "runs as root: {user}"
    );
    let mut copied = BTreeSet::new();
    for line in containerfile.lines().filter(|l| l.starts_with("COPY ")) {
        let words: Vec<&str> = line
            .split_whitespace()
            .skip(1)
            .filter(|w| !w.starts_with("--"))
            .collect();
        let (dest, sources) = words.split_last().expect("COPY SRC DEST");
        assert!(dest.starts_with('/'), "{line}");
        for arch in ["amd64", "arm64"] {
            for s in sources {
                let rel = s.replace("${TARGETARCH}", arch);
                assert!(
                    context.join(&rel).is_file(),
                    "{line}: {rel} is not where scripts/stage-container.sh puts it"
                );
                copied.insert(rel);
            }
        }
    }
    // The binary and the schema only; the context holds nothing else.
    let mut staged = BTreeSet::new();
    for arch in ["linux-amd64", "linux-arm64"] {
        for e in fs::read_dir(context.join(arch)).expect("read_dir") {
            let name = e.expect("entry").file_name().into_string().expect("UTF-8");
            staged.insert(format!("{arch}/{name}"));
        }
    }
    assert_eq!(copied, staged);
    assert_eq!(copied.len(), 4, "{copied:?}");
    let schema = ok(&run(Command::new(roster_bin()).arg("schema")), "schema");
    assert_eq!(
        fs::read_to_string(context.join("linux-amd64/roster.schema.json")).expect("read"),
        schema
    );
    assert_eq!(
        version_line(&context.join("linux-amd64/roster")),
        version_line(roster_bin())
    );
}

// ------------------------------------------------------------ Debian package

#[test]
fn deb_package_installs_into_a_throwaway_root_with_man_pages_and_completions() {
    if run(Command::new("dpkg-deb").arg("--version")).status.code() != Some(0) {
        eprintln!(
            "SKIPPED deb_package_...: dpkg-deb is not installed (not a Debian system); the .deb cannot be built or unpacked here"
        );
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let out_dir = tmp.path().join("out");
    // The test build's binary (target/debug/roster), packed as the release
    // packs the release build; --fast: lighter compression.
    let built = run(script("package-deb.sh")
        .args(["--profile", "dev", "--fast", "--output"])
        .arg(&out_dir));
    ok(&built, "scripts/package-deb.sh");
    let arch = ok(
        &run(Command::new("dpkg").arg("--print-architecture")),
        "dpkg --print-architecture",
    );
    let version = env!("CARGO_PKG_VERSION");
    let deb = out_dir.join(format!("roster_{version}_{}.deb", arch.trim()));
    assert!(
        deb.is_file(),
        "{} not built: {}",
        deb.display(),
        show(&built)
    );

    // Control data.
    let control = ok(
        &run(Command::new("dpkg-deb").arg("--field").arg(&deb)),
        "dpkg-deb --field",
    );
    let field = |name: &str| {
        control
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} field in\n{control}"))
            .to_string()
    };
    assert_eq!(field("Package"), "roster");
    assert_eq!(field("Version"), version);
    assert_eq!(field("Architecture"), arch.trim());
    assert!(field("Depends").contains("libc6"), "{control}");
    assert!(!field("Maintainer").is_empty());
    assert!(field("Description").contains("API users"), "{control}");

    // Unpacked into a throw-away root.
    let root_dir = tmp.path().join("root");
    ok(
        &run(Command::new("dpkg").arg("-x").arg(&deb).arg(&root_dir)),
        "dpkg -x",
    );
    let bin = root_dir.join("usr/bin/roster");
    assert_eq!(version_line(&bin), version_line(roster_bin()));
    let example = root_dir.join("usr/share/doc/roster/examples/iris-hr");
    let state = tmp.path().join("state.json");
    let validate = run(Command::new(&bin)
        .arg("validate")
        .arg(&example)
        .env("ROSTER_STORE", format!("file:{}", state.display()))
        .env("NO_COLOR", "1"));
    assert!(
        ok(&validate, "installed roster validate").starts_with("valid: "),
        "{}",
        show(&validate)
    );
    let schema = ok(
        &run(Command::new(&bin).arg("schema")),
        "installed roster schema",
    );
    assert_eq!(
        fs::read_to_string(root_dir.join("usr/share/roster/roster.schema.json")).expect("schema"),
        schema
    );
    assert!(root_dir.join("usr/share/doc/roster/README.md").is_file());

    // The man pages render.
    for page in ["roster.1.gz", "roster-apply.1.gz", "roster-validate.1.gz"] {
        let path = root_dir.join("usr/share/man/man1").join(page);
        assert!(path.is_file(), "{} missing", path.display());
        let man = run(Command::new("man")
            .arg("-l")
            .arg(&path)
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .env("MANWIDTH", "100")
            .env("LC_ALL", "C.UTF-8"));
        let text = ok(
            &man,
            &format!("man -l {page} (scripts/test.sh installs man-db)"),
        );
        assert!(
            text.contains("NAME") && text.contains("roster"),
            "{page}: {text}"
        );
    }
    let man = run(Command::new("man")
        .arg("-l")
        .arg(root_dir.join("usr/share/man/man1/roster.1.gz"))
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100"));
    let text = String::from_utf8_lossy(&man.stdout);
    for sub in ["validate", "plan", "apply", "completions"] {
        assert!(
            text.contains(sub),
            "roster(1) does not mention {sub}: {text}"
        );
    }

    // Completions where bash-completion, zsh and fish look for them.
    for (path, marker) in [
        (
            "usr/share/bash-completion/completions/roster",
            "complete -F _roster",
        ),
        (
            "usr/share/zsh/vendor-completions/_roster",
            "#compdef roster",
        ),
        (
            "usr/share/fish/vendor_completions.d/roster.fish",
            "complete -c roster",
        ),
    ] {
        let text =
            fs::read_to_string(root_dir.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(text.contains(marker), "{path} lacks {marker}");
        assert!(text.contains("validate"), "{path}");
    }
}

// ------------------------------------------------------------ roster --version

#[test]
fn version_names_the_release_the_commit_and_the_build_date() {
    let line = version_line(roster_bin());
    let rest = line
        .strip_prefix(&format!("roster {} (commit ", env!("CARGO_PKG_VERSION")))
        .unwrap_or_else(|| panic!("{line}"));
    let (commit, rest) = rest.split_once(", built ").expect(&line);
    let date = rest.strip_suffix(')').expect(&line);
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "{line}"
    );
    assert!(
        date.len() == 10 && date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-',
        "{line}"
    );
    // In a git checkout, the commit is HEAD's.
    if let Some(head) = git_head() {
        assert_eq!(commit, &head[..12], "{line}");
    }
}

/// HEAD, when this source tree is a git checkout (not a source tarball).
fn git_head() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--show-toplevel", "HEAD"])
        .current_dir(root())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let top = fs::canonicalize(lines.next()?).ok()?;
    (out.status.success() && top == fs::canonicalize(root()).ok()?)
        .then(|| lines.next().map(str::to_string))
        .flatten()
}

/// build.rs compiled on its own and run on a source tree without `.git`.
fn run_build_script(bin: &Path, dir: &Path, env: &[(&str, &str)]) -> (String, String) {
    let mut cmd = Command::new(bin);
    cmd.env("CARGO_MANIFEST_DIR", dir)
        .env_remove("ROSTER_GIT_COMMIT")
        .env_remove("SOURCE_DATE_EPOCH")
        .current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = ok(&run(&mut cmd), "build script");
    let get = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("cargo:rustc-env={key}=")))
            .unwrap_or_else(|| panic!("no {key} in\n{out}"))
            .to_string()
    };
    (get("ROSTER_GIT_COMMIT"), get("ROSTER_BUILD_DATE"))
}

#[test]
fn version_from_a_source_tarball_without_git_still_builds() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bin = tmp.path().join("build-script");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    ok(
        &run(Command::new(rustc)
            .args(["--edition", "2024", "-o"])
            .arg(&bin)
            .arg(root().join("build.rs"))),
        "rustc build.rs",
    );
    let bare = tmp.path().join("bare");
    fs::create_dir(&bare).expect("mkdir");
    let epoch = |s: &'static str| [("SOURCE_DATE_EPOCH", s)];
    assert_eq!(
        run_build_script(&bin, &bare, &epoch("951782400")),
        ("unknown".to_string(), "2000-02-29".to_string())
    );
    assert_eq!(run_build_script(&bin, &bare, &epoch("0")).1, "1970-01-01");
    assert_eq!(
        run_build_script(&bin, &bare, &epoch("4102444799")).1,
        "2099-12-31"
    );
    // A bad SOURCE_DATE_EPOCH or commit is ignored with a warning, never a failed build.
    let (commit, date) = run_build_script(
        &bin,
        &bare,
        &[
            ("SOURCE_DATE_EPOCH", "yesterday"),
            ("ROSTER_GIT_COMMIT", "nope"),
        ],
    );
    assert_eq!(commit, "unknown");
    assert_eq!(date.len(), 10);
    // A packager names the commit.
    assert_eq!(
        run_build_script(&bin, &bare, &[("ROSTER_GIT_COMMIT", "ABCDEF0123456789")]).0,
        "abcdef012345"
    );
    // The placeholder of an unexpanded .git-archive-commit is not a commit.
    fs::copy(
        root().join(".git-archive-commit"),
        bare.join(".git-archive-commit"),
    )
    .expect("copy");
    assert_eq!(run_build_script(&bin, &bare, &[]).0, "unknown");
    // `cargo package` records the commit in .cargo_vcs_info.json.
    let crate_dir = tmp.path().join("crate");
    fs::create_dir(&crate_dir).expect("mkdir");
    fs::write(
        crate_dir.join(".cargo_vcs_info.json"),
        "{\n  \"git\": {\n    \"sha1\": \"0123456789abcdef0123456789abcdef01234567\"\n  },\n  \"path_in_vcs\": \"\"\n}\n",
    )
    .expect("write");
    assert_eq!(run_build_script(&bin, &crate_dir, &[]).0, "0123456789ab");

    // `git archive` (GitHub's source tarballs) fills in .git-archive-commit.
    let Some(head) = git_head() else {
        eprintln!("not a git checkout: the git archive part of this test is skipped");
        return;
    };
    let tarball = tmp.path().join("src.tar");
    ok(
        &run(Command::new("git")
            .args(["archive", "--format=tar", "-o"])
            .arg(&tarball)
            .arg("HEAD")
            .current_dir(root())),
        "git archive",
    );
    let src = tmp.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    ok(
        &run(Command::new("tar")
            .arg("-xf")
            .arg(&tarball)
            .arg("-C")
            .arg(&src)),
        "tar -x",
    );
    assert!(!src.join(".git").exists());
    assert_eq!(run_build_script(&bin, &src, &[]).0, head[..12]);
}

#[test]
fn install_script_finds_the_github_release_of_the_action_repository() {
    let dry_run = |env: &[(&str, &str)]| {
        let mut cmd = script("install.sh");
        cmd.arg("--dry-run")
            .env_remove("ROSTER_REPOSITORY")
            .env_remove("ROSTER_DOWNLOAD_URL")
            .env_remove("ROSTER_VERSION")
            .env_remove("GITHUB_ACTION_REPOSITORY")
            .env_remove("GITHUB_ACTION_PATH")
            .env("ROSTER_INSTALL_DIR", "/opt/roster")
            .env("ROSTER_OS", "Linux")
            .env("ROSTER_ARCH", "ARM64");
        for (k, v) in env {
            cmd.env(k, v);
        }
        run(&mut cmd)
    };
    // `uses: acme/roster@v1`, no version: the latest release.
    let out = dry_run(&[(
        "GITHUB_ACTION_PATH",
        "/home/runner/work/_actions/acme/roster/v1",
    )]);
    assert_eq!(
        ok(&out, "dry run"),
        "https://github.com/acme/roster/releases/latest/download/SHA256SUMS\n\
         https://github.com/acme/roster/releases/latest/download/roster-aarch64-unknown-linux-musl.tar.gz\n\
         /opt/roster\n"
    );
    // A pinned version, the repository named by the runner.
    let out = dry_run(&[
        ("GITHUB_ACTION_REPOSITORY", "acme/roster"),
        ("ROSTER_VERSION", "v0.2.0"),
        ("ROSTER_OS", "macOS"),
        ("ROSTER_ARCH", "X64"),
    ]);
    assert_eq!(
        ok(&out, "dry run"),
        "https://github.com/acme/roster/releases/download/v0.2.0/SHA256SUMS\n\
         https://github.com/acme/roster/releases/download/v0.2.0/roster-x86_64-apple-darwin.tar.gz\n\
         /opt/roster\n"
    );
    // Nothing says where roster comes from: a clear refusal.
    let out = dry_run(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("set ROSTER_REPOSITORY"),
        "{}",
        show(&out)
    );
}

/// The GitLab template's cache key was `roster-$ROSTER_GIT_URL`: a URL holds
/// `/`, which GitLab refuses in a cache key. It is keyed by the release now.
#[test]
fn gitlab_cache_key_holds_no_slash_which_gitlab_refuses() {
    let doc = parse_yaml(&root().join("examples/ci/gitlab-ci.yml"));
    let key = doc["default"]["cache"]["key"]
        .as_str()
        .expect("a cache key");
    assert_eq!(key, "roster-$ROSTER_VERSION");
    let header = fs::read_to_string(root().join("examples/ci/gitlab-ci.yml")).expect("read");
    assert!(
        header.contains("ROSTER_VERSION (the roster release to install, e.g. v0.2.0)"),
        "the template documents ROSTER_VERSION as a release tag"
    );
    assert!(!key.replace("$ROSTER_VERSION", "v0.2.0").contains('/'));
}

#[test]
fn init_writes_the_setup_action_workflow_and_says_what_to_fill_in() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = run(Command::new(roster_bin())
        .args(["init", "repo", "--from", "avaamo"])
        .current_dir(tmp.path())
        .env("NO_COLOR", "1"));
    ok(&out, "roster init");
    let workflow = fs::read_to_string(tmp.path().join("repo/.github/workflows/roster.yml"))
        .expect("the workflow");
    assert!(workflow.contains("- uses: OWNER/roster@v1"), "{workflow}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("replace OWNER in `uses: OWNER/roster@v1`"),
        "{}",
        show(&out)
    );
}
