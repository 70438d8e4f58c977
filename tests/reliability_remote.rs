//! Remote faults: a fault-injecting HTTP proxy on 127.0.0.1 between `roster`
//! and a real scim2-server. It answers some requests itself with 429, 500 or
//! 503, delays others, and drops some connections in the middle of the
//! server's response (after the server acted on the request). roster must
//! retry within its bounds, report what failed, never report a failed step as
//! done, and converge when run again.
//!
//! Bounded: the proxy serves at most `MAX_CONNECTIONS` connections, each with
//! socket timeouts, and stops when the test ends; faults follow a seeded
//! schedule so a failure can be replayed (`ROSTER_TEST_SEED`).

#[allow(dead_code)]
#[path = "common/scim.rs"]
mod harness;

#[path = "common/cli.rs"]
mod cli;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use cli::{code, copy_example, roster_command, show, stderr, stdout};
use harness::{ScimServer, ServerConfig, TOKEN, direct};

const MAX_CONNECTIONS: usize = 5_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Status(u16),
    Delay(u64),
    /// Forward, then cut the server's response in half and close.
    DropMidResponse,
}

/// Counts of what the proxy did.
#[derive(Default)]
struct Counts {
    requests: AtomicUsize,
    statuses: AtomicUsize,
    delays: AtomicUsize,
    drops: AtomicUsize,
}

struct Proxy {
    port: u16,
    stop: Arc<AtomicBool>,
    enabled: Arc<AtomicBool>,
    /// While set, every PATCH or PUT whose body writes a `password` is
    /// answered `400` by the proxy (a provider that refuses password writes).
    refuse_password_writes: Arc<AtomicBool>,
    counts: Arc<Counts>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// The fault schedule: a fixed cycle that holds every kind of fault,
/// entered at a seeded offset, so every run meets each kind within a dozen
/// requests and a seed replays a run exactly.
fn fault_for(seed: u64, n: usize) -> Fault {
    const CYCLE: [Fault; 12] = [
        Fault::None,
        Fault::Status(429),
        Fault::None,
        Fault::DropMidResponse,
        Fault::None,
        Fault::Status(503),
        Fault::Delay(700),
        Fault::None,
        Fault::Status(500),
        Fault::None,
        Fault::DropMidResponse,
        Fault::None,
    ];
    CYCLE[(n + seed as usize) % CYCLE.len()]
}

/// Read one HTTP/1.1 request (headers and a Content-Length body).
fn read_request(s: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 1 << 20 {
            return None;
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[header_end..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((head, body))
}

/// The request with `Connection: close`, so each exchange is one connection.
fn rewrite(head: &str, body: &[u8]) -> Vec<u8> {
    let mut out = String::new();
    for line in head.trim_end().lines() {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Whether a request writes a password (a PATCH or PUT naming `password`).
fn writes_password(head: &str, body: &[u8]) -> bool {
    (head.starts_with("PATCH ") || head.starts_with("PUT "))
        && String::from_utf8_lossy(body).contains("\"password\"")
}

fn serve(
    mut client: TcpStream,
    upstream: u16,
    fault: Fault,
    refuse_password_writes: bool,
    counts: &Counts,
) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = client.set_write_timeout(Some(Duration::from_secs(30)));
    let Some((head, body)) = read_request(&mut client) else {
        return;
    };
    counts.requests.fetch_add(1, Ordering::SeqCst);
    let fault = if refuse_password_writes && writes_password(&head, &body) {
        Fault::Status(400)
    } else {
        fault
    };
    if let Fault::Status(code) = fault {
        counts.statuses.fetch_add(1, Ordering::SeqCst);
        let body = format!(
            r#"{{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"{code}","detail":"injected by the fault proxy"}}"#
        );
        let resp = format!(
            "HTTP/1.1 {code} Injected\r\nContent-Type: application/scim+json\r\nRetry-After: 0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = client.write_all(resp.as_bytes());
        return;
    }
    if let Fault::Delay(ms) = fault {
        counts.delays.fetch_add(1, Ordering::SeqCst);
        thread::sleep(Duration::from_millis(ms));
    }
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let _ = server.set_read_timeout(Some(Duration::from_secs(60)));
    if server.write_all(&rewrite(&head, &body)).is_err() {
        return;
    }
    let mut response = Vec::new();
    let _ = server.read_to_end(&mut response);
    if fault == Fault::DropMidResponse {
        counts.drops.fetch_add(1, Ordering::SeqCst);
        let _ = client.write_all(&response[..response.len() / 2]);
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    let _ = client.write_all(&response);
}

fn start_proxy(upstream: u16, seed: u64) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let port = listener.local_addr().expect("addr").port();
    let stop = Arc::new(AtomicBool::new(false));
    let enabled = Arc::new(AtomicBool::new(true));
    let refuse_password_writes = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let (s, e, r, c) = (
        stop.clone(),
        enabled.clone(),
        refuse_password_writes.clone(),
        counts.clone(),
    );
    thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate().take(MAX_CONNECTIONS) {
            if s.load(Ordering::SeqCst) {
                break;
            }
            let Ok(conn) = conn else { continue };
            let fault = if e.load(Ordering::SeqCst) {
                fault_for(seed, n)
            } else {
                Fault::None
            };
            let refuse = r.load(Ordering::SeqCst);
            let c = c.clone();
            thread::spawn(move || serve(conn, upstream, fault, refuse, &c));
        }
    });
    Proxy {
        port,
        stop,
        enabled,
        refuse_password_writes,
        counts,
    }
}

fn seed() -> u64 {
    std::env::var("ROSTER_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_122)
}

/// Addresses an apply reported as done (`ok`) and as failed.
fn outcomes(out: &str) -> (Vec<String>, Vec<String>) {
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for line in out.lines() {
        let t = line.trim_start();
        if let Some(a) = t.strip_prefix("ok ") {
            ok.push(a.trim().to_string());
        } else if let Some(a) = t.strip_prefix("FAILED ") {
            failed.push(a.trim().split(':').next().unwrap_or_default().to_string());
        }
    }
    (ok, failed)
}

#[test]
fn faults_are_retried_or_reported_and_a_rerun_converges() {
    let server = ScimServer::start(ServerConfig {
        extension: true,
        ..ServerConfig::default()
    });
    let seed = seed();
    eprintln!("fault schedule seed {seed} (ROSTER_TEST_SEED replays it)");
    let proxy = start_proxy(server.port, seed);
    let through_proxy = format!("scim+http://127.0.0.1:{}/v2", proxy.port);
    let direct_url = server.url(None);
    let dir = tempfile::tempdir().unwrap();
    for example in ["avanti", "iris-hr", "avaamo"] {
        copy_example(example, &dir.path().join("config").join(example));
    }
    let run = |url: &str, args: &[&str]| {
        roster_command(dir.path())
            .args(args)
            .args(["--store", url])
            .env("ROSTER_SCIM_TOKEN", TOKEN)
            .output()
            .expect("run roster")
    };

    // Several applies through the faulty proxy: each ends (bounded), without a
    // panic, either applied or with the failures reported.
    let mut rounds = 0;
    let mut converged_through_faults = false;
    for round in 0..6 {
        rounds += 1;
        let out = run(
            &through_proxy,
            &[
                "apply",
                "config",
                "--yes",
                "--secrets-out",
                &format!("s{round}.json"),
            ],
        );
        let text = show(&out);
        eprintln!(
            "round {round}: exit {}; {}",
            code(&out),
            stderr(&out)
                .lines()
                .filter(|l| l.contains("FAILED")
                    || l.starts_with("error")
                    || l.starts_with("Apply"))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        assert!(matches!(code(&out), 0 | 1), "no panic, no signal: {text}");
        assert!(!text.contains(TOKEN), "the bearer token never appears");
        assert!(!text.contains("panicked"), "{text}");
        let (ok, failed) = outcomes(&stderr(&out));
        if code(&out) == 1 {
            assert!(
                !failed.is_empty() || stderr(&out).contains("error:"),
                "a failed apply says what failed: {text}"
            );
        }
        // Every step reported done is really on the server.
        for address in ok.iter().filter(|a| a.starts_with("user.")) {
            let name = &address["user.".len()..];
            let (status, list) = direct(
                "GET",
                &format!(
                    "{}/Users?filter=userName%20eq%20%22{name}%22",
                    server.http_base(None)
                ),
                None,
            );
            assert_eq!(status, 200);
            assert_eq!(
                list["totalResults"], 1,
                "{address} was reported done but is not on the server: {text}"
            );
        }
        for address in &failed {
            assert!(
                !ok.contains(address),
                "{address} reported both done and failed"
            );
        }
        let check = run(&direct_url, &["plan", "config", "--detailed-exitcode"]);
        if code(&check) == 0 {
            converged_through_faults = true;
            break;
        }
    }
    let injected = proxy.counts.statuses.load(Ordering::SeqCst)
        + proxy.counts.delays.load(Ordering::SeqCst)
        + proxy.counts.drops.load(Ordering::SeqCst);
    eprintln!(
        "{rounds} round(s) through the proxy: {} requests, {} error statuses, {} delays, {} dropped responses; converged through faults: {converged_through_faults}",
        proxy.counts.requests.load(Ordering::SeqCst),
        proxy.counts.statuses.load(Ordering::SeqCst),
        proxy.counts.delays.load(Ordering::SeqCst),
        proxy.counts.drops.load(Ordering::SeqCst),
    );
    assert!(injected > 0, "the schedule injected faults");
    assert!(
        proxy.counts.statuses.load(Ordering::SeqCst) > 0,
        "error statuses were injected"
    );
    assert!(
        proxy.counts.drops.load(Ordering::SeqCst) > 0,
        "responses were dropped mid-way"
    );

    // With the faults switched off, a re-run converges and planning shows no changes.
    proxy.enabled.store(false, Ordering::SeqCst);
    if !converged_through_faults {
        let out = run(
            &through_proxy,
            &["apply", "config", "--yes", "--secrets-out", "s-final.json"],
        );
        assert_eq!(code(&out), 0, "{}", show(&out));
    }
    let replan = run(&direct_url, &["plan", "config", "--detailed-exitcode"]);
    assert_eq!(code(&replan), 0, "{}", show(&replan));
    assert!(stdout(&replan).contains("No changes."), "{}", show(&replan));
}

/// Issue 16: a revocation the server refuses is reported `FAILED`, never `ok`,
/// the apply exits 1, and with the server accepting again a re-run revokes
/// the password and converges.
#[test]
fn a_refused_password_revocation_is_reported_failed_never_ok() {
    let server = ScimServer::start(ServerConfig {
        extension: true,
        ..ServerConfig::default()
    });
    let proxy = start_proxy(server.port, seed());
    proxy.enabled.store(false, Ordering::SeqCst);
    let url = format!("scim+http://127.0.0.1:{}/v2", proxy.port);
    let dir = tempfile::tempdir().unwrap();
    copy_example("iris-hr", &dir.path().join("iris-hr"));
    let run = |args: &[&str]| {
        roster_command(dir.path())
            .args(args)
            .args(["--store", &url])
            .env("ROSTER_SCIM_TOKEN", TOKEN)
            .output()
            .expect("run roster")
    };
    let first = run(&["apply", "iris-hr", "--yes", "--secrets-out", "s1.json"]);
    assert_eq!(code(&first), 0, "{}", show(&first));

    // qlearsite's password is turned off: roster must revoke it on the server.
    let users = dir.path().join("iris-hr/users.yaml");
    let original = std::fs::read_to_string(&users).expect("users.yaml");
    let start = original.find("  qlearsite:").expect("qlearsite");
    let end = start
        + original[start..]
            .find("  payroll-bureau:")
            .expect("next user");
    let block = original[start..end].replace("password: true", "password: false");
    assert_ne!(
        block,
        original[start..end],
        "the example gives qlearsite a password"
    );
    let changed = format!("{}{}{}", &original[..start], block, &original[end..]);
    std::fs::write(&users, changed).expect("write users.yaml");

    proxy.refuse_password_writes.store(true, Ordering::SeqCst);
    let refused = run(&["apply", "iris-hr", "--yes", "--secrets-out", "s2.json"]);
    let text = show(&refused);
    assert_eq!(code(&refused), 1, "{text}");
    let (ok, failed) = outcomes(&stderr(&refused));
    assert!(
        failed.iter().any(|a| a == "user.qlearsite"),
        "the refused revocation is FAILED: {text}"
    );
    assert!(
        !ok.iter().any(|a| a == "user.qlearsite"),
        "never ok: {text}"
    );
    let pending = run(&["plan", "iris-hr", "--detailed-exitcode"]);
    assert_eq!(
        code(&pending),
        2,
        "the revocation is still to do: {}",
        show(&pending)
    );

    proxy.refuse_password_writes.store(false, Ordering::SeqCst);
    let again = run(&["apply", "iris-hr", "--yes", "--secrets-out", "s3.json"]);
    assert_eq!(code(&again), 0, "{}", show(&again));
    let replan = run(&["plan", "iris-hr", "--detailed-exitcode"]);
    assert_eq!(code(&replan), 0, "{}", show(&replan));
    assert!(stdout(&replan).contains("No changes."), "{}", show(&replan));
}
