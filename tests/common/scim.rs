//! Test harness: a real `scim2-server` (PyPI, pinned) on 127.0.0.1.
//!
//! It creates a venv under `target/scim-venv` (reused when present), installs
//! `scim2-server==0.8.3` when missing, starts the server on a free port with a
//! bearer token and (optionally) roster's extension schemas, waits (bounded)
//! for `/ServiceProviderConfig`, and stops it by pid on drop (also on panic).
//! A stop is graceful (SIGTERM is turned into the server's clean shutdown) so
//! that `--dump-resources` writes what the server held, passwords included:
//! the only way to check a write-only password from outside. Test-only.
//!
//! `target()` opens roster's SCIM *target* on the server, with the bearer
//! token in the environment variable [`TOKEN_ENV`] (set once per process by
//! [`init`], before any thread talks to a server).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use roster::model::ScimTargetConfig;
use roster::target::scim::ScimTarget;

pub const TOKEN: &str = "roster-test-token-5b1f";
/// The variable the tests' targets read the token from.
pub const TOKEN_ENV: &str = "ROSTER_TEST_SCIM_TOKEN";

static INIT: std::sync::Once = std::sync::Once::new();

/// Put the token into [`TOKEN_ENV`]. Every test calls it first (directly or
/// through `ScimServer::start`), so the variable is set while no other
/// thread of this process reads the environment or resolves a host.
pub fn init() {
    INIT.call_once(|| {
        // SAFETY: called once, before this process starts any thread that
        // reads the environment (the other test threads wait on this Once).
        unsafe { std::env::set_var(TOKEN_ENV, TOKEN) };
    });
}

/// A target config for `url` with the tests' token variable.
pub fn target_config(url: &str) -> ScimTargetConfig {
    serde_json::from_value(serde_json::json!({"url": url, "token_env": TOKEN_ENV}))
        .expect("a valid target config")
}
pub const VERSION: &str = "0.8.3";

/// Wraps the server's CLI so that SIGTERM stops it cleanly (dumping resources).
const WRAPPER: &str = r#"
import signal, sys
def _stop(*_):
    raise KeyboardInterrupt
signal.signal(signal.SIGTERM, _stop)
signal.signal(signal.SIGINT, _stop)
from scim2_server.testserver.cli import main
sys.argv[0] = "scim2-server"
main()
"#;

static SETUP: Mutex<()> = Mutex::new(());

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's python, installing the server first if needed.
pub fn python() -> PathBuf {
    let _guard = SETUP.lock().unwrap_or_else(|e| e.into_inner());
    let venv = root().join("target/scim-venv");
    let py = venv.join("bin/python");
    let installed = |py: &Path| {
        Command::new(py)
            .args(["-c", "import scim2_server.testserver.cli"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if py.exists() && installed(&py) {
        return py;
    }
    if !py.exists() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("run python3 -m venv");
        assert!(ok.success(), "python3 -m venv failed");
    }
    let ok = Command::new(venv.join("bin/pip"))
        .args(["install", "-q", &format!("scim2-server=={VERSION}")])
        .status()
        .expect("run pip");
    assert!(ok.success(), "pip install scim2-server=={VERSION} failed");
    py
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// How to start a server.
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    /// Register roster's extension schemas.
    pub extension: bool,
    /// Serve tenants under `/TENANT/v2`, created on first use.
    pub dynamic_tenants: bool,
    /// A ServiceProviderConfig JSON to announce instead of the default.
    pub provider_config: Option<String>,
    /// Reuse this port (for a restart).
    pub port: Option<u16>,
}

/// A running scim2-server, stopped on drop.
pub struct ScimServer {
    child: Option<Child>,
    pub port: u16,
    pub config: ServerConfig,
    /// Holds the wrapper, the provider config and the dump while the server runs.
    _dir: tempfile::TempDir,
    pub dump: PathBuf,
}

impl ScimServer {
    pub fn start(config: ServerConfig) -> ScimServer {
        init();
        let py = python();
        let dir = tempfile::tempdir().expect("tempdir");
        let wrapper = dir.path().join("serve.py");
        std::fs::write(&wrapper, WRAPPER).expect("write wrapper");
        let port = config.port.unwrap_or_else(free_port);
        let dump = dir.path().join("dump.json");
        let mut cmd = Command::new(py);
        cmd.arg(&wrapper)
            .args(["--hostname", "127.0.0.1", "--port", &port.to_string()])
            .args(["--bearer-token", TOKEN])
            .arg("--dump-resources")
            .arg(&dump)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if config.extension {
            cmd.arg("--schema")
                .arg(root().join("schemas/scim/roster-schemas.json"))
                .arg("--resource-type")
                .arg(root().join("schemas/scim/roster-resource-types.json"));
        }
        if config.dynamic_tenants {
            cmd.arg("--dynamic-tenants");
        }
        if let Some(json) = &config.provider_config {
            let p = dir.path().join("spc.json");
            std::fs::write(&p, json).expect("write provider config");
            cmd.arg("--service-provider-config").arg(p);
        }
        let child = cmd.spawn().expect("start scim2-server");
        let mut server = ScimServer {
            child: Some(child),
            port,
            config,
            _dir: dir,
            dump,
        };
        server.wait_ready();
        server
    }

    fn probe_path(&self) -> String {
        if self.config.dynamic_tenants {
            "/probe/v2/ServiceProviderConfig".into()
        } else {
            "/v2/ServiceProviderConfig".into()
        }
    }

    fn wait_ready(&mut self) {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client");
        let url = format!("http://127.0.0.1:{}{}", self.port, self.probe_path());
        // The wait is bounded in count and time.
        let deadline = Instant::now() + Duration::from_secs(30);
        for _ in 0..600 {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("scim2-server exited early: {status}");
            }
            let ok = client
                .get(&url)
                .bearer_auth(TOKEN)
                .send()
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return;
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("scim2-server did not answer on port {}", self.port);
    }

    /// `http://127.0.0.1:PORT/v2` (or `/TENANT/v2`).
    pub fn http_base(&self, tenant: Option<&str>) -> String {
        match tenant {
            Some(t) => format!("http://127.0.0.1:{}/{t}/v2", self.port),
            None => format!("http://127.0.0.1:{}/v2", self.port),
        }
    }

    /// The target config for this server.
    pub fn target_config(&self) -> ScimTargetConfig {
        target_config(&self.http_base(None))
    }

    /// roster's SCIM target on this server (not opened yet).
    pub fn target(&self) -> ScimTarget {
        ScimTarget::new("scim", &self.target_config()).expect("a SCIM target")
    }

    /// roster's SCIM target with a config changed by `f`.
    pub fn target_with(&self, f: impl FnOnce(&mut ScimTargetConfig)) -> ScimTarget {
        let mut c = self.target_config();
        f(&mut c);
        ScimTarget::new("scim", &c).expect("a SCIM target")
    }

    /// Stop gracefully (the server dumps its resources), bounded; then kill.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kill at once (no dump), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stop and return what the server held (passwords included).
    pub fn stop_and_dump(&mut self) -> serde_json::Value {
        self.stop();
        let text = std::fs::read_to_string(&self.dump).expect("the server wrote its dump");
        serde_json::from_str(&text).expect("dump is JSON")
    }
}

impl Drop for ScimServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Direct HTTP against the server, as an operator editing it by hand would.
pub fn direct(
    method: &str,
    url: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = client.request(m, url).bearer_auth(TOKEN);
    if let Some(b) = body {
        req = req
            .header("Content-Type", "application/scim+json")
            .body(b.to_string());
    }
    let resp = req.send().expect("direct request");
    let status = resp.status().as_u16();
    let text = resp.text().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// Create plain users `names` directly on the server through `/Bulk`
/// (1,000 per request), as another provisioning system would. Returns
/// their ids in order.
pub fn bulk_users(base: &str, names: &[String]) -> Vec<String> {
    let mut ids = Vec::with_capacity(names.len());
    for (c, chunk) in names.chunks(1000).enumerate() {
        let ops: Vec<serde_json::Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, n)| {
                serde_json::json!({
                    "method": "POST", "path": "/Users", "bulkId": format!("b{c}-{i}"),
                    "data": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": n}
                })
            })
            .collect();
        let body = serde_json::json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
            "Operations": ops
        });
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()
            .expect("client");
        let r = client
            .post(format!("{base}/Bulk"))
            .bearer_auth(TOKEN)
            .header("Content-Type", "application/scim+json")
            .body(body.to_string())
            .send()
            .expect("bulk request");
        let status = r.status().as_u16();
        let resp: serde_json::Value = r.json().expect("bulk answer");
        assert_eq!(status, 200, "bulk create: {resp}");
        let answers = resp["Operations"].as_array().expect("bulk answers");
        assert_eq!(answers.len(), chunk.len(), "one answer per operation");
        for a in answers {
            let location = a["location"].as_str().expect("a created user's location");
            ids.push(location.rsplit('/').next().unwrap_or_default().to_string());
        }
    }
    ids
}
