//! One connector process and the JSON Lines conversation with it: spawning
//! (cleared environment, own process group), one request then one reply,
//! the reply deadline, the stderr relay with secrets redacted, and the end
//! of the session (close stdin, wait 5 s, SIGKILL the group, reap).
//!
//! A protocol fault (timeout, EOF/exit, a non-JSON line, a line over
//! 16 MiB, a reply with another id) kills the process group, reaps it and
//! ends the session: every later request fails at once with the first
//! error.
//!
//! Must not: run a shell; pass a secret in argv or the environment; print
//! a secret (relayed stderr lines and quoted stdout lines are redacted);
//! wait without a bound.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use zeroize::Zeroizing;

use super::protocol::{Envelope, WireError};
use crate::target::{ErrorClass, TargetError};

/// The longest reply line roster reads.
pub const MAX_LINE: usize = 16 * 1024 * 1024;
/// The longest stderr line relayed; longer ones are cut.
pub const MAX_LOG_LINE: usize = 64 * 1024;
/// How long the connector has to exit after its stdin is closed.
pub const EXIT_GRACE: Duration = Duration::from_secs(5);
/// How much of a bad stdout line an error quotes.
const QUOTE_CHARS: usize = 200;
/// Stderr held back while a secret is on its way (bytes); beyond, lines are dropped and counted.
const MAX_HELD: usize = 4 * 1024 * 1024;

/// The environment variables every connector inherits (when set).
pub const BASE_ENV: &[&str] = &["PATH", "HOME", "LANG"];

/// Lock a mutex, taking over a poisoned one (a panicked relay thread must
/// not make the session unusable or hide a log line).
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Every secret sent or received in a run, to cut out of anything shown.
/// Zeroized when dropped.
#[derive(Default)]
pub struct Redactor {
    secrets: Mutex<Vec<Zeroizing<String>>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secret(s))", lock(&self.secrets).len())
    }
}

impl Redactor {
    /// Remember a secret (empty strings are ignored).
    pub fn add(&self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        let mut all = lock(&self.secrets);
        if !all.iter().any(|s| s.as_str() == secret) {
            all.push(Zeroizing::new(secret.to_string()));
            // Longest first, so a secret containing another is cut whole.
            all.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// `text` with every known secret replaced by `[redacted]`.
    pub fn redact(&self, text: &str) -> String {
        let all = lock(&self.secrets);
        let mut out = text.to_string();
        for s in all.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "[redacted]");
            }
        }
        out
    }

    /// Whether any known secret occurs in `bytes`.
    pub fn occurs_in(&self, bytes: &[u8]) -> bool {
        let all = lock(&self.secrets);
        all.iter().any(|s| {
            let s = s.as_bytes();
            bytes.windows(s.len()).any(|w| w == s)
        })
    }
}

/// Where relayed stderr lines go (roster's stderr by default).
pub type LogSink = Arc<Mutex<dyn Write + Send>>;

/// roster's own stderr as a [`LogSink`].
pub fn stderr_sink() -> LogSink {
    Arc::new(Mutex::new(std::io::stderr()))
}

/// How to start one connector.
#[derive(Clone)]
pub struct Spawn {
    /// The target's name (the `[NAME] ` prefix, and every error).
    pub name: String,
    pub command: Vec<String>,
    /// Variables inherited besides [`BASE_ENV`].
    pub env: Vec<String>,
    pub redactor: Arc<Redactor>,
    pub log: LogSink,
    /// Also keep the raw stderr bytes here (the conformance kit's canary check).
    pub capture: Option<Arc<Mutex<Vec<u8>>>>,
}

impl Spawn {
    /// The command as shown in errors.
    pub fn shown(&self) -> String {
        self.command
            .iter()
            .map(|a| {
                if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'') {
                    format!("{a:?}")
                } else {
                    a.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A reply that was read and matched its request.
pub struct Reply {
    pub envelope: Envelope,
    /// The whole line (it may hold a secret: zeroized when dropped).
    pub line: Zeroizing<Vec<u8>>,
}

impl Reply {
    /// The error of a failed reply.
    pub fn error(&self) -> Option<&WireError> {
        if self.envelope.ok {
            None
        } else {
            self.envelope.error.as_ref()
        }
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// No reply within the timeout.
    Timeout,
    /// The connector exited or closed a pipe.
    Exited,
    /// A stdout line that is not a reply (not JSON, not a reply object, over 16 MiB).
    NotAReply,
    /// A reply with another request's id.
    WrongId,
    /// A reply without the op's fields, or anything else.
    Other,
    /// Closed by roster.
    Closed,
}

impl Fault {
    /// Whether the fault breaks stdout purity (stdout carries replies only).
    pub fn impure_stdout(self) -> bool {
        matches!(self, Fault::NotAReply | Fault::WrongId)
    }
}

/// What the stdout reader thread hands over.
enum FromStdout {
    Line(Zeroizing<Vec<u8>>),
    TooLong,
    Eof,
    Failed(String),
}

/// The stderr relay's shared state: while `hold` is set (a secret may be
/// on its way back), lines wait here until the secret is known.
struct Relay {
    name: String,
    redactor: Arc<Redactor>,
    log: LogSink,
    state: Mutex<RelayState>,
}

#[derive(Default)]
struct RelayState {
    hold: bool,
    held: Vec<Zeroizing<Vec<u8>>>,
    held_bytes: usize,
    dropped: usize,
}

impl Relay {
    fn line(&self, raw: Zeroizing<Vec<u8>>, cut: bool) {
        let mut st = lock(&self.state);
        if st.hold {
            if st.held_bytes + raw.len() > MAX_HELD {
                st.dropped += 1;
            } else {
                st.held_bytes += raw.len();
                st.held.push(raw);
            }
            return;
        }
        drop(st);
        self.print(&raw, cut);
    }

    fn print(&self, raw: &[u8], cut: bool) {
        let text = String::from_utf8_lossy(raw);
        let text = text.trim_end_matches(['\n', '\r']);
        let mut shown = self.redactor.redact(text);
        let mut cut = cut;
        if shown.len() > MAX_LOG_LINE {
            let mut end = MAX_LOG_LINE;
            while !shown.is_char_boundary(end) {
                end -= 1;
            }
            shown.truncate(end);
            cut = true;
        }
        let suffix = if cut { " [line truncated]" } else { "" };
        let mut log = lock(&self.log);
        let _ = writeln!(log, "[{}] {shown}{suffix}", self.name);
        let _ = log.flush();
    }

    fn set_hold(&self, hold: bool) {
        let mut st = lock(&self.state);
        st.hold = hold;
        if !hold {
            let held = std::mem::take(&mut st.held);
            let dropped = std::mem::take(&mut st.dropped);
            st.held_bytes = 0;
            drop(st);
            for raw in held {
                self.print(&raw, false);
            }
            if dropped > 0 {
                let mut log = lock(&self.log);
                let _ = writeln!(
                    log,
                    "[{}] ({dropped} log line(s) dropped: more than 4 MiB while a secret was in flight)",
                    self.name
                );
            }
        }
    }
}

/// One running connector.
pub struct Session {
    spawn: Spawn,
    child: Child,
    pid: i32,
    stdin: Option<ChildStdin>,
    replies: Receiver<FromStdout>,
    relay: Arc<Relay>,
    stderr_done: Receiver<()>,
    next_id: u64,
    dead: Option<(Fault, TargetError)>,
    status: Option<ExitStatus>,
}

/// How a session ended.
#[derive(Debug, Clone, Copy)]
pub struct Closed {
    /// The connector's exit status.
    pub status: Option<ExitStatus>,
    /// Whether it exited on its own within [`EXIT_GRACE`] of its stdin closing.
    pub on_its_own: bool,
    /// Lines it wrote on stdout that were no reply to any request (after the last one).
    pub stray_lines: usize,
}

/// The options of one request.
#[derive(Debug, Clone, Copy)]
pub struct CallOptions {
    pub timeout: Duration,
    /// The reply may carry a secret: never quote it, hold stderr until it is known.
    pub receives_secret: bool,
}

#[derive(Serialize)]
struct Framed<'a, T: Serialize> {
    id: u64,
    #[serde(flatten)]
    body: &'a T,
}

/// Counts serialized bytes, so a request line is written into a buffer
/// sized once (no reallocation leaves a copy of a secret behind).
struct Counter(usize);
impl Write for Counter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len();
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Session {
    /// Start the connector. Fails with a message naming the target and the
    /// command when it cannot be started.
    pub fn spawn(spawn: &Spawn) -> Result<Session, TargetError> {
        use std::os::unix::process::CommandExt;
        let Some((program, args)) = spawn.command.split_first() else {
            return Err(TargetError::new(
                ErrorClass::Invalid,
                format!("target `{}`: the connector's command is empty", spawn.name),
            ));
        };
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        for name in BASE_ENV
            .iter()
            .copied()
            .chain(spawn.env.iter().map(String::as_str))
        {
            if let Some(v) = std::env::var_os(name) {
                cmd.env(name, v);
            }
        }
        let mut child = cmd.spawn().map_err(|e| {
            TargetError::new(
                ErrorClass::Fatal,
                format!(
                    "target `{}`: cannot start the connector `{}`: {e}",
                    spawn.name,
                    spawn.shown()
                ),
            )
        })?;
        let pid = child.id() as i32;
        let stdin = child.stdin.take();
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            kill_group_and_reap(&mut child);
            return Err(thread_error(&spawn.name, std::io::Error::other("no pipes")));
        };
        let (tx, replies) = mpsc::sync_channel(4);
        if let Err(e) = std::thread::Builder::new()
            .name(format!("connector-{}-stdout", spawn.name))
            .spawn(move || read_stdout(stdout, tx))
        {
            kill_group_and_reap(&mut child);
            return Err(thread_error(&spawn.name, e));
        }
        let relay = Arc::new(Relay {
            name: spawn.name.clone(),
            redactor: spawn.redactor.clone(),
            log: spawn.log.clone(),
            state: Mutex::new(RelayState::default()),
        });
        let (done_tx, stderr_done) = mpsc::sync_channel(1);
        let r = relay.clone();
        let capture = spawn.capture.clone();
        if let Err(e) = std::thread::Builder::new()
            .name(format!("connector-{}-stderr", spawn.name))
            .spawn(move || {
                read_stderr(stderr, &r, capture.as_deref());
                let _ = done_tx.send(());
            })
        {
            kill_group_and_reap(&mut child);
            return Err(thread_error(&spawn.name, e));
        }
        Ok(Session {
            spawn: spawn.clone(),
            child,
            pid,
            stdin,
            replies,
            relay,
            stderr_done,
            next_id: 1,
            dead: None,
            status: None,
        })
    }

    /// The connector's process id (= its process group id).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The first fault that ended the session, if any.
    pub fn dead(&self) -> Option<(Fault, &TargetError)> {
        self.dead.as_ref().map(|(f, e)| (*f, e))
    }

    /// The target's name.
    pub fn name(&self) -> &str {
        &self.spawn.name
    }

    /// Send one request (`body` is a JSON object without `id`: the session
    /// numbers requests from 1) and read its reply. `Err` is a protocol
    /// fault, after which the session is dead; an `ok: false` reply is an
    /// `Ok` [`Reply`] whose [`Reply::error`] is set.
    pub fn call<T: Serialize>(
        &mut self,
        op: &str,
        body: &T,
        opts: CallOptions,
    ) -> Result<Reply, TargetError> {
        if let Some((_, e)) = &self.dead {
            return Err(e.clone());
        }
        let id = self.next_id;
        self.next_id += 1;
        let framed = Framed { id, body };
        let mut counter = Counter(0);
        serde_json::to_writer(&mut counter, &framed).map_err(|e| {
            TargetError::new(
                ErrorClass::Fatal,
                format!(
                    "target `{}`: {op} (request {id}): cannot encode the request: {e}",
                    self.spawn.name
                ),
            )
        })?;
        let mut line = Zeroizing::new(Vec::with_capacity(counter.0 + 1));
        serde_json::to_writer(&mut *line, &framed).map_err(|e| {
            TargetError::new(
                ErrorClass::Fatal,
                format!(
                    "target `{}`: {op} (request {id}): cannot encode the request: {e}",
                    self.spawn.name
                ),
            )
        })?;
        line.push(b'\n');
        if opts.receives_secret {
            self.relay.set_hold(true);
        }
        let result = self.exchange(op, id, &line, opts);
        if opts.receives_secret {
            if let Ok(reply) = &result {
                register_secret(&self.spawn.redactor, &reply.line);
            }
            self.relay.set_hold(false);
        }
        result
    }

    /// Write `bytes` as they are (no newline added) and wait `timeout` for a
    /// reply that cannot come: the conformance kit's hung request. Returns
    /// the fault (the session is dead after it).
    pub fn send_unfinished(&mut self, bytes: &[u8], timeout: Duration) -> TargetError {
        if let Some((_, e)) = &self.dead {
            return e.clone();
        }
        let id = self.next_id;
        self.next_id += 1;
        let opts = CallOptions {
            timeout,
            receives_secret: false,
        };
        match self.exchange("list", id, bytes, opts) {
            Err(e) => e,
            Ok(_) => self.fail(
                Fault::Other,
                "list",
                id,
                "replied to a request it had not received in full".into(),
            ),
        }
    }

    fn exchange(
        &mut self,
        op: &str,
        id: u64,
        line: &[u8],
        opts: CallOptions,
    ) -> Result<Reply, TargetError> {
        let written = match self.stdin.as_mut() {
            Some(stdin) => stdin.write_all(line).and_then(|()| stdin.flush()),
            None => Err(std::io::Error::other("stdin is closed")),
        };
        if let Err(e) = written {
            let what = self.exit_reason(&format!("cannot write the request ({e})"));
            return Err(self.fail(Fault::Exited, op, id, what));
        }
        let deadline = Instant::now() + opts.timeout;
        let got = self
            .replies
            .recv_timeout(deadline.saturating_duration_since(Instant::now()));
        match got {
            Ok(FromStdout::Line(l)) => self.check_reply(op, id, l, opts),
            Ok(FromStdout::TooLong) => Err(self.fail(
                Fault::NotAReply,
                op,
                id,
                format!(
                    "wrote a reply line longer than {} MiB",
                    MAX_LINE / 1024 / 1024
                ),
            )),
            Ok(FromStdout::Failed(e)) => Err(self.fail(
                Fault::Exited,
                op,
                id,
                format!("cannot read its stdout: {e}"),
            )),
            Ok(FromStdout::Eof) | Err(RecvTimeoutError::Disconnected) => {
                let what = self.exit_reason("closed its stdout without replying");
                Err(self.fail(Fault::Exited, op, id, what))
            }
            Err(RecvTimeoutError::Timeout) => Err(self.fail(
                Fault::Timeout,
                op,
                id,
                format!(
                    "no reply within {}; killed its process group (pid {})",
                    show_duration(opts.timeout),
                    self.pid
                ),
            )),
        }
    }

    fn check_reply(
        &mut self,
        op: &str,
        id: u64,
        line: Zeroizing<Vec<u8>>,
        opts: CallOptions,
    ) -> Result<Reply, TargetError> {
        match serde_json::from_slice::<Envelope>(&line) {
            Ok(envelope) if envelope.id == id => {
                if !envelope.ok && envelope.error.is_none() {
                    return Err(self.fail(
                        Fault::NotAReply,
                        op,
                        id,
                        "replied `\"ok\": false` without an `error`".into(),
                    ));
                }
                Ok(Reply { envelope, line })
            }
            Ok(envelope) => Err(self.fail(
                Fault::WrongId,
                op,
                id,
                format!(
                    "replied with id {} to request {id} (stdout must carry nothing but the reply to each request)",
                    envelope.id
                ),
            )),
            Err(e) => {
                let quoted = if opts.receives_secret {
                    "(not quoted: it may hold a secret)".to_string()
                } else {
                    format!("`{}`", self.quote(&line))
                };
                Err(self.fail(
                    Fault::NotAReply,
                    op,
                    id,
                    format!(
                        "wrote a line on stdout that is not a protocol reply ({e}): {quoted}; stdout must carry nothing but replies (logs go to stderr)"
                    ),
                ))
            }
        }
    }

    /// At most [`QUOTE_CHARS`] characters of a line, secrets redacted.
    fn quote(&self, line: &[u8]) -> String {
        let text = String::from_utf8_lossy(line);
        let text = self.spawn.redactor.redact(text.trim_end());
        let mut chars = text.chars();
        let mut shown: String = chars.by_ref().take(QUOTE_CHARS).collect();
        if chars.next().is_some() {
            shown.push('…');
        }
        shown.escape_debug().to_string()
    }

    /// Why the connector stopped talking: its exit status, if it exits soon.
    fn exit_reason(&mut self, what: &str) -> String {
        match self.wait_exit(Duration::from_secs(2)) {
            Some(status) => format!("{what}: the connector exited ({status})"),
            None => what.to_string(),
        }
    }

    /// Wait up to `limit` for the connector to exit, without reaping it (its
    /// pid, the group id, stays reserved until the group is killed).
    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        if self.status.is_some() {
            return self.status;
        }
        let start = Instant::now();
        for _ in 0..100_000 {
            if exited_unreaped(self.pid) {
                // Reaped by the caller's kill_and_reap; report the status now.
                return self.reap_after_kill();
            }
            if start.elapsed() >= limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Kill the whole process group, then reap the leader.
    fn reap_after_kill(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            // SAFETY: kill(2) with a negative pid signals the process group
            // the connector leads; its leader is not reaped yet, so the id
            // cannot have been reused.
            unsafe {
                libc::kill(-self.pid, libc::SIGKILL);
            }
            self.status = self.child.wait().ok();
        }
        self.status
    }

    /// End the session on a protocol fault: kill, reap, remember the error.
    fn fail(&mut self, fault: Fault, op: &str, id: u64, what: String) -> TargetError {
        self.reap_after_kill();
        self.stdin = None;
        self.relay.set_hold(false);
        let e = TargetError::new(
            ErrorClass::Fatal,
            format!("target `{}`: {op} (request {id}): {what}", self.spawn.name),
        );
        self.dead = Some((fault, e.clone()));
        e
    }

    /// End the session at once on a fault found above the protocol (a reply
    /// without its op's fields): kill the group, reap, remember `e`.
    pub fn abort(&mut self, e: &TargetError) {
        self.reap_after_kill();
        self.stdin = None;
        self.relay.set_hold(false);
        if self.dead.is_none() {
            self.dead = Some((Fault::Other, e.clone()));
        }
    }

    /// End the session: close stdin, give the connector [`EXIT_GRACE`] to
    /// exit, then SIGKILL its group; reap it.
    pub fn close(&mut self) -> Closed {
        self.stdin = None;
        // A session that ended on a fault was killed already: not "on its own".
        let on_its_own = self.status.is_none() && {
            let start = Instant::now();
            let mut exited = false;
            for _ in 0..100_000 {
                if exited_unreaped(self.pid) {
                    exited = true;
                    break;
                }
                if start.elapsed() >= EXIT_GRACE {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            exited
        };
        let status = self.reap_after_kill();
        if self.dead.is_none() {
            self.dead = Some((
                Fault::Closed,
                TargetError::new(
                    ErrorClass::Fatal,
                    format!(
                        "target `{}`: the connector session is closed",
                        self.spawn.name
                    ),
                ),
            ));
        }
        // The relay ends when the last writer of the pipe is gone (the
        // whole group was killed); do not wait for it without a bound.
        let _ = self.stderr_done.recv_timeout(Duration::from_secs(2));
        self.relay.set_hold(false);
        // Lines written after the last reply (stdout must carry replies only).
        let mut stray_lines = 0;
        let start = Instant::now();
        while let Some(left) = Duration::from_secs(2).checked_sub(start.elapsed()) {
            match self.replies.recv_timeout(left) {
                Ok(FromStdout::Line(_)) => stray_lines += 1,
                Ok(FromStdout::TooLong) => {
                    stray_lines += 1;
                    break;
                }
                Ok(FromStdout::Eof | FromStdout::Failed(_)) | Err(_) => break,
            }
        }
        Closed {
            status,
            on_its_own,
            stray_lines,
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}

/// SIGKILL a child's process group (it leads it and is not reaped yet), then reap it.
fn kill_group_and_reap(child: &mut Child) {
    // SAFETY: kill(2) on the group of our own unreaped child.
    unsafe {
        libc::kill(-(child.id() as i32), libc::SIGKILL);
    }
    let _ = child.wait();
}

/// Whether `pid` (our child) has exited, leaving it unreaped.
fn exited_unreaped(pid: i32) -> bool {
    // SAFETY: waitid with WNOWAIT only inspects our own child's state;
    // `info` is a zeroed, properly sized siginfo_t.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let mut rc = -1;
        for _ in 0..100 {
            rc = libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            if rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break;
            }
        }
        if rc != 0 {
            // ECHILD: already reaped.
            return true;
        }
        #[cfg(target_os = "linux")]
        let got = info.si_pid();
        #[cfg(not(target_os = "linux"))]
        let got = info.si_pid;
        got != 0
    }
}

/// Add the secret of a `generate_secret` reply to the redaction list.
fn register_secret(redactor: &Redactor, line: &[u8]) {
    #[derive(serde::Deserialize)]
    struct Only {
        #[serde(default)]
        secret: Option<Inner>,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        #[serde(deserialize_with = "super::protocol::secret_from_str")]
        value: crate::secret::Secret,
    }
    if let Ok(Only { secret: Some(s) }) = serde_json::from_slice::<Only>(line) {
        redactor.add(s.value.expose());
    }
}

fn thread_error(name: &str, e: std::io::Error) -> TargetError {
    TargetError::new(
        ErrorClass::Fatal,
        format!("target `{name}`: cannot start a thread for the connector: {e}"),
    )
}

/// `60s`, `250ms`.
pub fn show_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Read reply lines (each at most [`MAX_LINE`]) into the channel.
fn read_stdout(stdout: impl Read, tx: SyncSender<FromStdout>) {
    let mut r = BufReader::with_capacity(64 * 1024, stdout);
    loop {
        let mut line = Zeroizing::new(Vec::new());
        let msg = loop {
            let buf = match r.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => break FromStdout::Failed(e.to_string()),
            };
            if buf.is_empty() {
                break FromStdout::Eof;
            }
            let (take, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            if line.len() + take > MAX_LINE + 1 {
                break FromStdout::TooLong;
            }
            grow(&mut line, take);
            line.extend_from_slice(&buf[..take]);
            r.consume(take);
            if done {
                break FromStdout::Line(std::mem::take(&mut line));
            }
        };
        let last = !matches!(msg, FromStdout::Line(_));
        if tx.send(msg).is_err() || last {
            return;
        }
    }
}

/// Make room for `more` bytes, moving the old bytes into a zeroizing
/// buffer of twice the size (so no unzeroed copy is left behind).
fn grow(line: &mut Zeroizing<Vec<u8>>, more: usize) {
    let need = line.len() + more;
    if need > line.capacity() {
        let mut bigger = Zeroizing::new(Vec::with_capacity(need.max(line.capacity() * 2)));
        bigger.extend_from_slice(line);
        *line = bigger;
    }
}

/// Relay stderr line by line (each cut at [`MAX_LOG_LINE`] plus room for a
/// secret that straddles the cut), keeping a raw copy when asked.
fn read_stderr(stderr: impl Read, relay: &Relay, capture: Option<&Mutex<Vec<u8>>>) {
    const KEEP: usize = MAX_LOG_LINE + 4096;
    let mut r = BufReader::with_capacity(64 * 1024, stderr);
    loop {
        let mut line = Zeroizing::new(Vec::new());
        let mut cut = false;
        let end = loop {
            let buf = match r.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break true,
            };
            if buf.is_empty() {
                break true;
            }
            let (take, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            if let Some(c) = capture {
                let mut c = lock(c);
                if c.len() < 64 * 1024 * 1024 {
                    c.extend_from_slice(&buf[..take]);
                }
            }
            let room = KEEP.saturating_sub(line.len()).min(take);
            if room < take {
                cut = true;
            }
            grow(&mut line, room);
            line.extend_from_slice(&buf[..room]);
            r.consume(take);
            if done {
                break false;
            }
        };
        if !line.is_empty() {
            relay.line(line, cut);
        }
        if end {
            return;
        }
    }
}
