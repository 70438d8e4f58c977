//! A fault-injecting HTTP proxy on 127.0.0.1, between roster and a real
//! scim2-server. It answers some requests itself (429 with `Retry-After`,
//! 5xx, 501 for every PATCH, 400 for password writes), delays others, and
//! drops some connections in the middle of the server's response (after the
//! server acted on the request). Faults come from a script (next requests)
//! or a fixed cycle entered at a seeded offset (`ROSTER_TEST_SEED` replays a
//! run). Every request is logged as `METHOD PATH`.
//!
//! Bounded: at most `MAX_CONNECTIONS` connections, each with socket
//! timeouts; the accept loop stops when the proxy is dropped. Test-only.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

const MAX_CONNECTIONS: usize = 5_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Answer with this status (and `Retry-After: 0`) without forwarding.
    Status(u16),
    /// Answer with this status and `Retry-After: SECONDS`.
    RetryAfter(u16, u64),
    /// Wait this many milliseconds, then forward.
    Delay(u64),
    /// Forward, then cut the server's response in half and close.
    DropMidResponse,
}

/// Counts of what the proxy did.
#[derive(Default)]
pub struct Counts {
    pub requests: AtomicUsize,
    pub statuses: AtomicUsize,
    pub delays: AtomicUsize,
    pub drops: AtomicUsize,
}

/// What the proxy is told to do, shared with its threads.
#[derive(Default)]
pub struct Controls {
    /// The seeded fault cycle is on.
    pub enabled: AtomicBool,
    /// Faults for the next requests, in order (before the cycle).
    pub script: Mutex<VecDeque<Fault>>,
    /// While set, every PATCH or PUT whose body writes a `password` is
    /// answered `400` (a provider that refuses password writes).
    pub refuse_password_writes: AtomicBool,
    /// While set, every PATCH is answered `501 Not Implemented`.
    pub refuse_patch: AtomicBool,
    /// `METHOD PATH` of every request, in arrival order.
    pub log: Mutex<Vec<String>>,
}

pub struct Proxy {
    pub port: u16,
    stop: Arc<AtomicBool>,
    pub controls: Arc<Controls>,
    pub counts: Arc<Counts>,
}

impl Proxy {
    /// `http://127.0.0.1:PORT/v2`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}/v2", self.port)
    }

    /// Queue faults for the next requests.
    pub fn script(&self, faults: &[Fault]) {
        let mut s = self
            .controls
            .script
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        s.clear();
        s.extend(faults.iter().copied());
    }

    /// Forget the request log.
    pub fn clear_log(&self) {
        self.controls
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The requests seen since the last `clear_log`.
    pub fn log(&self) -> Vec<String> {
        self.controls
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many logged requests start with `prefix` (e.g. `"PATCH "`).
    pub fn count(&self, prefix: &str) -> usize {
        self.log().iter().filter(|l| l.starts_with(prefix)).count()
    }
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
pub fn fault_for(seed: u64, n: usize) -> Fault {
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

fn serve(mut client: TcpStream, upstream: u16, fault: Fault, controls: &Controls, counts: &Counts) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = client.set_write_timeout(Some(Duration::from_secs(30)));
    let Some((head, body)) = read_request(&mut client) else {
        return;
    };
    counts.requests.fetch_add(1, Ordering::SeqCst);
    let line = head.lines().next().unwrap_or_default();
    let mut parts = line.split_whitespace();
    let entry = format!(
        "{} {}",
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default()
    );
    controls
        .log
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(entry);
    let fault = if controls.refuse_password_writes.load(Ordering::SeqCst)
        && writes_password(&head, &body)
    {
        Fault::Status(400)
    } else if controls.refuse_patch.load(Ordering::SeqCst) && head.starts_with("PATCH ") {
        Fault::Status(501)
    } else {
        fault
    };
    let answer = match fault {
        Fault::Status(code) => Some((code, 0)),
        Fault::RetryAfter(code, secs) => Some((code, secs)),
        _ => None,
    };
    if let Some((code, secs)) = answer {
        counts.statuses.fetch_add(1, Ordering::SeqCst);
        let body = format!(
            r#"{{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"{code}","detail":"injected by the fault proxy"}}"#
        );
        let resp = format!(
            "HTTP/1.1 {code} Injected\r\nContent-Type: application/scim+json\r\nRetry-After: {secs}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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

/// A proxy to `upstream` on a free port, with the seeded cycle off.
pub fn start_proxy(upstream: u16, seed: u64) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let port = listener.local_addr().expect("addr").port();
    let stop = Arc::new(AtomicBool::new(false));
    let controls = Arc::new(Controls::default());
    let counts = Arc::new(Counts::default());
    let (s, ctl, c) = (stop.clone(), controls.clone(), counts.clone());
    thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate().take(MAX_CONNECTIONS) {
            if s.load(Ordering::SeqCst) {
                break;
            }
            let Ok(conn) = conn else { continue };
            let scripted = ctl
                .script
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front();
            let fault = match scripted {
                Some(f) => f,
                None if ctl.enabled.load(Ordering::SeqCst) => fault_for(seed, n),
                None => Fault::None,
            };
            let (ctl, c) = (ctl.clone(), c.clone());
            thread::spawn(move || serve(conn, upstream, fault, &ctl, &c));
        }
    });
    Proxy {
        port,
        stop,
        controls,
        counts,
    }
}

pub fn seed() -> u64 {
    std::env::var("ROSTER_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_122)
}
