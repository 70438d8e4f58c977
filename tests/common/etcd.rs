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
    /// `http` or `https` for the client URL.
    scheme: &'static str,
    /// Talks to this member's client URL (with TLS files when `https`).
    http: reqwest::blocking::Client,
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
        let mut members = Self::launch(1, extra, None);
        let member = members.pop().expect("one member");
        member.wait_healthy();
        member
    }

    /// An `n`-member cluster on loopback, every member healthy.
    pub fn cluster(n: usize) -> Vec<Etcd> {
        let members = Self::launch(n, &[], None);
        for m in &members {
            m.wait_healthy();
        }
        members
    }

    /// A single member serving clients over TLS only, requiring a client
    /// certificate signed by the CA in `tls`.
    pub fn start_tls(tls: &TlsFiles) -> Etcd {
        let flags = [
            "--cert-file".to_string(),
            tls.server_cert.display().to_string(),
            "--key-file".to_string(),
            tls.server_key.display().to_string(),
            "--trusted-ca-file".to_string(),
            tls.ca.display().to_string(),
            "--client-cert-auth".to_string(),
        ];
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let mut members = Self::launch(1, &flags, Some(tls));
        let member = members.pop().expect("one member");
        member.wait_healthy();
        member
    }

    fn launch(n: usize, extra: &[&str], tls: Option<&TlsFiles>) -> Vec<Etcd> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(2));
        if let Some(tls) = tls {
            let read =
                |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let ca = reqwest::Certificate::from_pem(&read(&tls.ca)).expect("CA pem");
            let mut pem = read(&tls.client_cert);
            pem.extend_from_slice(&read(&tls.client_key));
            http = http
                .tls_certs_only([ca])
                .identity(reqwest::Identity::from_pem(&pem).expect("client identity pem"));
        }
        let http = http.build().expect("http client");
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
            let client = format!("{scheme}://127.0.0.1:{}", plan.client_port);
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
                scheme,
                http: http.clone(),
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

    /// `http://127.0.0.1:PORT` (or `https://`).
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.endpoint())
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Wait (bounded) until `/health` says true; panic with the log otherwise.
    pub fn wait_healthy(&self) {
        let http = &self.http;
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

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made
/// with the `openssl` command line tool in a tempdir.
pub struct TlsFiles {
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("the TLS test needs the openssl command line tool: {e}"));
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TlsFiles {
    pub fn generate() -> TlsFiles {
        let dir = tempfile::tempdir().expect("tempdir for certificates");
        let d = dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=roster test CA"];
        ca.extend(ec);
        ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
        openssl(d, &ca);
        // The server certificate also needs clientAuth: etcd's JSON gateway
        // dials etcd's own gRPC port with it when --client-cert-auth is on.
        for (name, subject, ext) in [
            (
                "server",
                "/CN=127.0.0.1",
                "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth",
            ),
            ("client", "/CN=root", "extendedKeyUsage=clientAuth"),
        ] {
            let mut req = vec!["req", "-new", "-subj", subject];
            req.extend(ec);
            let key = format!("{name}.key");
            let csr = format!("{name}.csr");
            req.extend(["-keyout", &key, "-out", &csr]);
            openssl(d, &req);
            let ext_file = format!("{name}.ext");
            std::fs::write(d.join(&ext_file), ext).expect("write ext file");
            let pem = format!("{name}.pem");
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    &ext_file,
                    "-out",
                    &pem,
                ],
            );
        }
        TlsFiles {
            ca: d.join("ca.pem"),
            server_cert: d.join("server.pem"),
            server_key: d.join("server.key"),
            client_cert: d.join("client.pem"),
            client_key: d.join("client.key"),
            _dir: dir,
        }
    }
}
