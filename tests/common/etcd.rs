//! Real etcd servers for tests: finds (or, as root, installs) the `etcd`
//! binary, starts single members or a cluster on 127.0.0.1 with free ports and
//! tempdir data dirs, waits (bounded) for `/health`, and kills each process by
//! pid when its handle drops (also on panic). Never talks to anything but
//! 127.0.0.1, never skips silently.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;

/// How long a member may take to report healthy.
const START_TIMEOUT: Duration = Duration::from_secs(60);

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn apt_install() -> Result<(), String> {
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "etcd-server"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("running apt-get: {e}"))
    };
    if install()?.success() {
        return Ok(());
    }
    let update = Command::new("apt-get")
        .arg("update")
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("running apt-get update: {e}"))?;
    if !update.success() {
        return Err(format!("apt-get update failed: {update}"));
    }
    match install()? {
        s if s.success() => Ok(()),
        s => Err(format!("apt-get install -y etcd-server failed: {s}")),
    }
}

/// The `etcd` binary: on PATH, or `/usr/bin/etcd`, or installed with apt when
/// running as root. Panics with a clear message otherwise.
pub fn etcd_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let found = || {
            find_on_path("etcd").or_else(|| {
                let p = PathBuf::from("/usr/bin/etcd");
                p.is_file().then_some(p)
            })
        };
        if let Some(p) = found() {
            return p;
        }
        if !is_root() {
            panic!(
                "etcd is not installed (not on PATH, not /usr/bin/etcd) and this test is not \
                 running as root: install it with `apt-get install -y etcd-server`"
            );
        }
        if let Err(e) = apt_install() {
            panic!("etcd is not installed and installing it failed: {e}");
        }
        found().unwrap_or_else(|| panic!("apt-get installed etcd-server but no etcd binary found"))
    })
}

/// A free TCP port on 127.0.0.1 (bound to port 0, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0 to find a free port")
}

/// One running etcd member; killed by pid on drop.
pub struct Etcd {
    child: Option<Child>,
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    dir: tempfile::TempDir,
}

struct MemberPlan {
    name: String,
    client_port: u16,
    peer_port: u16,
}

impl Etcd {
    /// A single-member etcd, healthy.
    pub fn start() -> Etcd {
        Self::start_with(&[])
    }

    /// A single-member etcd with extra flags, healthy.
    pub fn start_with(extra: &[&str]) -> Etcd {
        let mut members = Self::launch(1, extra);
        let member = members.pop().expect("one member");
        member.wait_healthy();
        member
    }

    /// An `n`-member cluster on loopback, every member healthy.
    pub fn cluster(n: usize) -> Vec<Etcd> {
        let members = Self::launch(n, &[]);
        for m in &members {
            m.wait_healthy();
        }
        members
    }

    fn launch(n: usize, extra: &[&str]) -> Vec<Etcd> {
        let binary = etcd_binary();
        let plans: Vec<MemberPlan> = (0..n)
            .map(|i| MemberPlan {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
            })
            .collect();
        let initial_cluster = plans
            .iter()
            .map(|p| format!("{}=http://127.0.0.1:{}", p.name, p.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!(
            "roster-test-{}-{}",
            std::process::id(),
            plans[0].client_port
        );
        let mut members = Vec::new();
        for plan in plans {
            let dir = tempfile::tempdir().expect("tempdir for etcd");
            let log = std::fs::File::create(dir.path().join("etcd.log")).expect("etcd log file");
            let log_err = log.try_clone().expect("clone log handle");
            let client = format!("http://127.0.0.1:{}", plan.client_port);
            let peer = format!("http://127.0.0.1:{}", plan.peer_port);
            let child = Command::new(binary)
                .arg("--name")
                .arg(&plan.name)
                .arg("--data-dir")
                .arg(dir.path().join("data"))
                .args(["--listen-client-urls", &client])
                .args(["--advertise-client-urls", &client])
                .args(["--listen-peer-urls", &peer])
                .args(["--initial-advertise-peer-urls", &peer])
                .args(["--initial-cluster", &initial_cluster])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &token])
                .args(extra)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log_err)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
            members.push(Etcd {
                child: Some(child),
                name: plan.name,
                client_port: plan.client_port,
                peer_port: plan.peer_port,
                dir,
            });
        }
        members
    }

    /// `127.0.0.1:PORT`, as it goes into an `etcd://` URL.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.endpoint())
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Wait (bounded) until `/health` says true; panic with the log otherwise.
    pub fn wait_healthy(&self) {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("http client");
        let deadline = Instant::now() + START_TIMEOUT;
        let url = format!("{}/health", self.base_url());
        loop {
            let healthy = http
                .get(&url)
                .send()
                .ok()
                .and_then(|r| r.json::<Value>().ok())
                .is_some_and(|v| v["health"] == "true");
            if healthy {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "etcd member {} at {} did not become healthy within {:?}; log tail:\n{}",
                    self.name,
                    self.base_url(),
                    START_TIMEOUT,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kill the member now (SIGKILL by pid) and reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// POST `body` to the gateway at `base_url` + `path` (with an optional auth
/// token); returns the JSON reply, or the error text for a non-2xx reply.
pub fn gateway_post(
    base_url: &str,
    path: &str,
    body: &Value,
    token: Option<&str>,
) -> Result<Value, String> {
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let mut request = http.post(format!("{base_url}{path}")).json(body);
    if let Some(token) = token {
        request = request.header("Authorization", token);
    }
    let response = request.send().map_err(|e| format!("{path}: {e}"))?;
    let status = response.status();
    let value: Value = response.json().map_err(|e| format!("{path}: {e}"))?;
    if status.is_success() {
        Ok(value)
    } else {
        Err(format!("{path}: HTTP {status}: {value}"))
    }
}

pub fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// Create user `root` with `password` and the root role, then enable auth.
pub fn enable_auth(base_url: &str, password: &str) {
    use serde_json::json;
    let steps = [
        ("/v3/auth/role/add", json!({"name": "root"})),
        (
            "/v3/auth/user/add",
            json!({"name": "root", "password": password}),
        ),
        (
            "/v3/auth/user/grant",
            json!({"user": "root", "role": "root"}),
        ),
        ("/v3/auth/enable", json!({})),
    ];
    for (path, body) in steps {
        gateway_post(base_url, path, &body, None).unwrap_or_else(|e| panic!("enable auth: {e}"));
    }
}
