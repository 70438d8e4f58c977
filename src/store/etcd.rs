//! The etcd store: `etcd://HOST:PORT[,HOST:PORT…]/PREFIX` (or `etcd+https://`
//! for TLS), through etcd v3's JSON gateway with reqwest (blocking). No gRPC.
//!
//! Key layout under `P = /PREFIX/` (one key per resource):
//!
//! | key | value |
//! |---|---|
//! | `P/meta` | `{format_version, lineage, serial, commit_id}` |
//! | `P/lock` | the lock holder `{pid, host, since, lease}`, attached to a lease |
//! | `P/r/role/NAME`, `P/r/group/NAME`, `P/r/user/NAME`, `P/r/role_assignment/ID` | a `Record` as JSON |
//! | `P/t/TARGET/user/NAME`, `P/t/TARGET/group/NAME` | a target record (remote id, read-back attributes) |
//! | `P/h/SERIAL` (20 digits) | an audit entry |
//!
//! **Read** is one range over `[P/meta, end of P)`: the meta key and every
//! resource, never the lock or the history (which sort before `meta`). It is
//! paginated with `limit`; every page after the first names the first page's
//! revision, so the snapshot is one consistent state. A store without a meta
//! key reads as version `None`.
//!
//! **Lock**: a lease (TTL 30 s by default) is granted and `P/lock` is created
//! in a txn only if absent (`create_revision == 0`), attached to that lease. A
//! background thread keeps the lease alive while the guard lives; dropping the
//! guard revokes the lease, which deletes the key. A crashed apply stops
//! renewing, so its lock goes away with its lease after at most one TTL.
//! While waiting, the lock is retried until the timeout, then the holder read
//! from the key is named in [`StoreError::Locked`].
//!
//! **Commit** writes in transactions, each guarded by two compares: the meta
//! key's `mod_revision` equals what this commit read (no other commit
//! happened), and `P/lock`'s `create_revision` is the one this handle created
//! (our lock is still held, its lease did not expire). etcd limits a txn to
//! 128 operations and a request to 1.5 MiB, so a large commit is split into
//! chunks; a change's operations (a rename's delete and put) never straddle
//! chunks. Only the LAST chunk writes the meta key (serial + 1) and the audit
//! entry.
//!
//! **A crash between chunks** leaves the earlier chunks' resources written
//! (each stamped with the serial the commit was going to get) and the meta key
//! unchanged: the store keeps its old serial, and the lock expires with its
//! lease. The next read sees that partly applied state at the old version; a
//! plan made from it plans only what is left, and even a plan saved before the
//! crash still commits (its base serial still matches) and converges, because
//! every change is an absolute put or delete, so repeating one is harmless.
//! Likewise a first commit that crashed leaves resources without a meta key:
//! they read at version `None` and the next first commit converges.
//!
//! When a reply to a txn is lost and the gateway client retries on another
//! endpoint, the guards make the retry harmless; a final chunk whose retry
//! finds the meta key carrying this commit's `commit_id` counts as committed.
//!
//! Authentication: with `ROSTER_ETCD_USER` / `ROSTER_ETCD_PASSWORD` set, a
//! token is obtained from `/v3/auth/authenticate` and renewed when refused.
//! This module must never put the password or token in an error, log or Debug.

pub mod gateway;

use std::collections::HashSet;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use self::gateway::{Compare, Credentials, Gateway, KeyValue, Op, prefix_end};
use super::{
    AuditEntry, Change, ChangeOutcome, ChangeSet, CommitReport, LockOwner, OpenOptions, Record,
    Snapshot, StateStore, StoreError, StoreInfo, StoreLock, Version,
};
use crate::model::Kind;
use crate::secret::Secret;

/// The meta key's format this code writes. Version 2 added target records
/// (`P/t/TARGET/KIND/KEY`); version 1 is read and migrated by the next commit.
pub const FORMAT_VERSION: u32 = 2;

/// The environment variables that hold etcd credentials.
pub const USER_ENV: &str = "ROSTER_ETCD_USER";
pub const PASSWORD_ENV: &str = "ROSTER_ETCD_PASSWORD";

/// Tunables of the etcd store; [`EtcdConfig::default`] suits a stock etcd.
#[derive(Debug)]
pub struct EtcdConfig {
    /// PEM CA bundle to trust (`etcd+https`).
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM client certificate and key (`etcd+https` with client auth).
    pub client_cert: Option<std::path::PathBuf>,
    pub client_key: Option<std::path::PathBuf>,
    /// User and password for etcd's auth.
    pub credentials: Option<Credentials>,
    /// Allow credentials over plain `etcd://` to a host other than loopback
    /// (`--allow-insecure-http`): they travel in clear text.
    pub allow_insecure_http: bool,
    /// TTL of the lock's lease.
    pub lock_ttl: Duration,
    /// Keys per range page.
    pub page_size: i64,
    /// Operations per txn (etcd's `--max-txn-ops`, 128 by default).
    pub max_txn_ops: usize,
    /// Raw key + value bytes per txn (etcd's `--max-request-bytes` is 1.5 MiB).
    pub max_txn_bytes: usize,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            ca_file: None,
            client_cert: None,
            client_key: None,
            credentials: None,
            allow_insecure_http: false,
            lock_ttl: Duration::from_secs(30),
            page_size: 1000,
            max_txn_ops: 128,
            max_txn_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl EtcdConfig {
    /// The config for [`super::open`]: TLS files from `options`, credentials
    /// from `lookup` (the process environment in production: [`USER_ENV`],
    /// [`PASSWORD_ENV`]).
    pub fn from_options(
        options: &OpenOptions,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, StoreError> {
        let user = lookup(USER_ENV).filter(|u| !u.is_empty());
        let password = lookup(PASSWORD_ENV);
        let credentials = match (user, password) {
            (Some(user), Some(password)) => Some(Credentials {
                user,
                password: Secret::new(password),
            }),
            (Some(_), None) => {
                return Err(StoreError::Remote(format!(
                    "{USER_ENV} is set but {PASSWORD_ENV} is not"
                )));
            }
            (None, _) => None,
        };
        Ok(EtcdConfig {
            ca_file: options.ca_file.clone(),
            client_cert: options.client_cert.clone(),
            client_key: options.client_key.clone(),
            credentials,
            allow_insecure_http: options.allow_insecure_http,
            ..EtcdConfig::default()
        })
    }
}

/// `etcd://…`.
#[derive(Debug)]
pub struct EtcdStore {
    /// The URL as given (it never holds credentials: they are refused).
    url: String,
    /// `/PREFIX/`.
    prefix: String,
    gateway: Arc<Gateway>,
    config: EtcdConfig,
    /// The lock this handle holds, if any.
    held: Mutex<Option<HeldLock>>,
}

#[derive(Debug, Clone, Copy)]
struct HeldLock {
    lease: i64,
    create_revision: i64,
}

/// The meta key's value.
#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    format_version: u32,
    lineage: String,
    serial: u64,
    #[serde(default)]
    commit_id: String,
}

/// The lock key's value.
#[derive(Debug, Serialize, Deserialize)]
struct LockValue {
    #[serde(flatten)]
    owner: LockOwner,
    lease: i64,
}

/// The parsed parts of an `etcd://` URL.
#[derive(Debug, PartialEq, Eq)]
struct ParsedUrl {
    endpoints: Vec<String>,
    prefix: String,
    https: bool,
}

fn parse_url(url: &str) -> Result<ParsedUrl, StoreError> {
    let invalid = |reason: &str| StoreError::InvalidUrl {
        url: url.into(),
        reason: reason.into(),
    };
    let (https, rest) = if let Some(rest) = url.strip_prefix("etcd://") {
        (false, rest)
    } else if let Some(rest) = url.strip_prefix("etcd+https://") {
        (true, rest)
    } else {
        return Err(invalid("expected etcd://HOST:PORT[,HOST:PORT...]/PREFIX"));
    };
    let (hosts, path) = rest
        .split_once('/')
        .ok_or_else(|| invalid("a /PREFIX is required, e.g. etcd://127.0.0.1:2379/roster"))?;
    // Anywhere in the URL: a password may hold `/`, which would otherwise
    // split it into "hosts" and "prefix" and echo half of it.
    if rest.contains('@') {
        // Never echo the credentials: the error's URL is redacted.
        return Err(StoreError::InvalidUrl {
            url: url.into(),
            reason: format!(
                "credentials do not belong in the URL: set {USER_ENV} and {PASSWORD_ENV}"
            ),
        });
    }
    let prefix = path.trim_matches('/');
    if prefix.is_empty() {
        return Err(invalid(
            "the PREFIX is empty, e.g. etcd://127.0.0.1:2379/roster",
        ));
    }
    if prefix.contains(['?', '#']) {
        return Err(invalid("the PREFIX may not contain '?' or '#'"));
    }
    let scheme = if https { "https" } else { "http" };
    let mut endpoints = Vec::new();
    for host in hosts.split(',') {
        let (name, port) = host
            .rsplit_once(':')
            .ok_or_else(|| invalid(&format!("endpoint {host:?} is not HOST:PORT")))?;
        if name.is_empty() || port.parse::<u16>().is_err() {
            return Err(invalid(&format!("endpoint {host:?} is not HOST:PORT")));
        }
        endpoints.push(format!("{scheme}://{host}"));
    }
    Ok(ParsedUrl {
        endpoints,
        prefix: format!("/{prefix}/"),
        https,
    })
}

/// Whether an endpoint (`http://HOST:PORT`) is on this machine.
fn is_loopback(endpoint: &str) -> bool {
    let host = endpoint.split_once("://").map_or(endpoint, |(_, h)| h);
    let name = host.rsplit_once(':').map_or(host, |(n, _)| n);
    name == "localhost" || name == "[::1]" || name.starts_with("127.")
}

/// A plain `etcd://` URL: TLS options are an error (they would be ignored),
/// and credentials (sent in clear text) only go to loopback unless
/// `--allow-insecure-http` says otherwise.
fn check_plain_http(url: &str, parsed: &ParsedUrl, config: &EtcdConfig) -> Result<(), StoreError> {
    if parsed.https {
        return Ok(());
    }
    if config.ca_file.is_some() || config.client_cert.is_some() || config.client_key.is_some() {
        return Err(StoreError::InvalidUrl {
            url: url.into(),
            reason: "--ca-file, --client-cert and --client-key need etcd+https://; \
                     a plain etcd:// URL would ignore them"
                .into(),
        });
    }
    if config.credentials.is_some()
        && !config.allow_insecure_http
        && !parsed.endpoints.iter().all(|e| is_loopback(e))
    {
        return Err(StoreError::InvalidUrl {
            url: url.into(),
            reason: format!(
                "plain etcd:// would send {USER_ENV}/{PASSWORD_ENV} and the auth token in clear \
                 text to a host other than loopback: use etcd+https:// (or --allow-insecure-http)"
            ),
        });
    }
    Ok(())
}

fn read_pem(path: &std::path::Path) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path).map_err(|error| StoreError::Io {
        path: path.display().to_string(),
        error,
    })
}

fn http_client(
    parsed: &ParsedUrl,
    config: &EtcdConfig,
) -> Result<reqwest::blocking::Client, StoreError> {
    let mut builder = reqwest::blocking::Client::builder()
        .timeout(config.request_timeout)
        .connect_timeout(Duration::from_secs(3));
    let tls_error = |what: &str, e: reqwest::Error| StoreError::Remote(format!("{what}: {e}"));
    if parsed.https {
        if let Some(ca) = &config.ca_file {
            let certs = reqwest::Certificate::from_pem_bundle(&read_pem(ca)?)
                .map_err(|e| tls_error(&format!("CA file {}", ca.display()), e))?;
            builder = builder.tls_certs_merge(certs);
        }
        match (&config.client_cert, &config.client_key) {
            (Some(cert), Some(key)) => {
                let mut pem = read_pem(cert)?;
                pem.push(b'\n');
                pem.extend_from_slice(&read_pem(key)?);
                let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                    tls_error(
                        &format!(
                            "client certificate {} / key {}",
                            cert.display(),
                            key.display()
                        ),
                        e,
                    )
                })?;
                builder = builder.identity(identity);
            }
            (None, None) => {}
            _ => {
                return Err(StoreError::Remote(
                    "a client certificate needs both the certificate and the key file".into(),
                ));
            }
        }
    }
    builder
        .build()
        .map_err(|e| StoreError::Remote(format!("cannot build the HTTP client for etcd: {e}")))
}

/// The held apply lock: keeps its lease alive until dropped.
struct EtcdLock<'a> {
    store: &'a EtcdStore,
    lease: i64,
    stop: Option<mpsc::Sender<()>>,
    keepalive: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for EtcdLock<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdLock")
            .field("store", &self.store.url)
            .field("lease", &self.lease)
            .finish()
    }
}

impl StoreLock for EtcdLock<'_> {}

impl Drop for EtcdLock<'_> {
    fn drop(&mut self) {
        {
            let mut held = self.store.held.lock().unwrap_or_else(|p| p.into_inner());
            if held.is_some_and(|h| h.lease == self.lease) {
                *held = None;
            }
        }
        drop(self.stop.take());
        if let Some(thread) = self.keepalive.take() {
            let _ = thread.join();
        }
        if let Err(e) = self.store.gateway.lease_revoke(self.lease) {
            tracing::warn!(
                "releasing the lock on {}: {e} (it expires with its lease)",
                self.store.url
            );
        }
    }
}

/// Renew `lease` every third of `ttl` until `stop` is dropped.
fn spawn_keepalive(
    gateway: Arc<Gateway>,
    lease: i64,
    ttl: Duration,
    stop: mpsc::Receiver<()>,
) -> JoinHandle<()> {
    let every = (ttl / 3).max(Duration::from_millis(200));
    std::thread::spawn(move || {
        loop {
            match stop.recv_timeout(every) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            match gateway.lease_keepalive(lease) {
                Ok(0) => {
                    tracing::warn!("the lock's lease expired; a commit will be refused");
                    return;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("renewing the lock's lease: {e}"),
            }
        }
    })
}

/// One change as key operations: (key, Some(value) to put | None to delete).
type KeyOps = Vec<(Vec<u8>, Option<Vec<u8>>)>;

fn kind_segment(kind: Kind) -> &'static str {
    kind.as_str()
}

impl EtcdStore {
    /// Open `url` with credentials from the process environment.
    pub fn open(url: &str, options: &OpenOptions) -> Result<Self, StoreError> {
        let config = EtcdConfig::from_options(options, |k| std::env::var(k).ok())?;
        Self::open_with(url, config)
    }

    /// Open `url` with an explicit config.
    pub fn open_with(url: &str, mut config: EtcdConfig) -> Result<Self, StoreError> {
        let parsed = parse_url(url)?;
        check_plain_http(url, &parsed, &config)?;
        let http = http_client(&parsed, &config)?;
        let credentials = config.credentials.take();
        Ok(EtcdStore {
            url: url.to_string(),
            prefix: parsed.prefix,
            gateway: Arc::new(Gateway::new(parsed.endpoints, http, credentials)),
            config,
            held: Mutex::new(None),
        })
    }

    /// The key prefix, `/PREFIX/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, rest: &str) -> Vec<u8> {
        format!("{}{rest}", self.prefix).into_bytes()
    }

    fn resource_key(&self, kind: Kind, name: &str) -> Vec<u8> {
        self.key(&format!("r/{}/{name}", kind_segment(kind)))
    }

    fn corrupt(&self, key: &[u8], detail: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt {
            what: format!("etcd key {} in {}", String::from_utf8_lossy(key), self.url),
            detail: detail.to_string(),
        }
    }

    fn decode<T: DeserializeOwned>(&self, kv: &KeyValue) -> Result<T, StoreError> {
        serde_json::from_slice(&kv.value)
            .map_err(|e| self.corrupt(&kv.key, super::redact_json_error(&e)))
    }

    fn parse_meta(&self, kv: &KeyValue) -> Result<Meta, StoreError> {
        let meta: Meta = self.decode(kv)?;
        if !(1..=FORMAT_VERSION).contains(&meta.format_version) {
            return Err(self.corrupt(
                &kv.key,
                format!(
                    "format_version {} is not supported (this roster reads 1 to {FORMAT_VERSION}): \
                     it was written by a newer roster; upgrade roster to use it",
                    meta.format_version
                ),
            ));
        }
        Ok(meta)
    }

    /// Every key in `[from, to)` at one revision, page by page.
    fn range_all(&self, from: &[u8], to: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        let mut out = Vec::new();
        let mut start = from.to_vec();
        let mut revision = 0;
        loop {
            let page = self
                .gateway
                .range(&start, to, self.config.page_size, revision)?;
            if revision == 0 {
                revision = page.revision;
            }
            let more = page.more;
            out.extend(page.kvs);
            match out.last() {
                Some(last) if more => {
                    start = last.key.clone();
                    start.push(0);
                }
                _ => return Ok(out),
            }
        }
    }

    /// The meta key now: its value and mod_revision (0 when absent).
    fn read_meta(&self) -> Result<(Option<Meta>, i64), StoreError> {
        let page = self.gateway.range(&self.key("meta"), &[], 0, 0)?;
        match page.kvs.first() {
            Some(kv) => Ok((Some(self.parse_meta(kv)?), kv.mod_revision)),
            None => Ok((None, 0)),
        }
    }

    fn holder_of(&self, kv: Option<&KeyValue>) -> Option<LockValue> {
        kv.and_then(|kv| serde_json::from_slice(&kv.value).ok())
    }

    /// The key operations of one change, records stamped with `serial`.
    fn key_ops(&self, change: Change, serial: u64) -> Result<KeyOps, StoreError> {
        fn put<T: Serialize>(
            key: Vec<u8>,
            mut record: Record<T>,
            serial: u64,
        ) -> Result<(Vec<u8>, Option<Vec<u8>>), StoreError> {
            record.meta.serial = serial;
            let value = serde_json::to_vec(&record).map_err(|e| {
                StoreError::Remote(format!(
                    "cannot encode {}: {e}",
                    String::from_utf8_lossy(&key)
                ))
            })?;
            Ok((key, Some(value)))
        }
        Ok(match change {
            Change::PutRole { name, record } => {
                vec![put(self.resource_key(Kind::Role, &name), record, serial)?]
            }
            Change::PutGroup { name, record } => {
                vec![put(self.resource_key(Kind::Group, &name), record, serial)?]
            }
            Change::PutUser {
                name,
                record,
                renamed_from,
                ..
            } => {
                let mut ops = Vec::new();
                if let Some(old) = renamed_from.filter(|old| *old != name) {
                    ops.push((self.resource_key(Kind::User, &old), None));
                }
                ops.push(put(self.resource_key(Kind::User, &name), record, serial)?);
                ops
            }
            Change::PutAssignment { id, record } => vec![put(
                self.resource_key(Kind::RoleAssignment, &id),
                record,
                serial,
            )?],
            Change::Delete { kind, name } => vec![(self.resource_key(kind, &name), None)],
            Change::PutTargetRecord {
                target,
                id,
                mut record,
            } => {
                record.serial = serial;
                let value = serde_json::to_vec(&record).map_err(|e| {
                    StoreError::Remote(format!("cannot encode a record of target {target}: {e}"))
                })?;
                vec![(self.key(&format!("t/{target}/{id}")), Some(value))]
            }
            Change::DeleteTargetRecord { target, id } => {
                vec![(self.key(&format!("t/{target}/{id}")), None)]
            }
        })
    }

    /// Split per-change key ops into txn-sized chunks. A change never
    /// straddles chunks; a key appears at most once per chunk; `reserve` ops
    /// are left free in every chunk.
    fn chunk(&self, changes: Vec<KeyOps>, reserve: usize) -> Vec<KeyOps> {
        let max_ops = self.config.max_txn_ops.saturating_sub(reserve).max(1);
        let max_bytes = self.config.max_txn_bytes.max(1);
        let mut chunks: Vec<KeyOps> = Vec::new();
        let mut current: KeyOps = Vec::new();
        let mut bytes = 0usize;
        let mut keys: HashSet<Vec<u8>> = HashSet::new();
        for ops in changes {
            let size: usize = ops
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
                .sum();
            let clash = ops.iter().any(|(k, _)| keys.contains(k));
            if !current.is_empty()
                && (current.len() + ops.len() > max_ops || bytes + size > max_bytes || clash)
            {
                chunks.push(std::mem::take(&mut current));
                bytes = 0;
                keys.clear();
            }
            bytes += size;
            keys.extend(ops.iter().map(|(k, _)| k.clone()));
            current.extend(ops);
        }
        if !current.is_empty() {
            chunks.push(current);
        }
        chunks
    }

    /// Why a guarded chunk was refused: lost lock or a moved meta key. `Ok`
    /// when it was in fact applied (a lost reply, retried).
    fn refused(
        &self,
        ranges: &[Vec<KeyValue>],
        held: HeldLock,
        base: &Version,
        commit_id: &str,
        done: usize,
        total: usize,
    ) -> Result<(), StoreError> {
        let meta = ranges.first().and_then(|r| r.first());
        let lock = ranges.get(1).and_then(|r| r.first());
        if let Some(kv) = meta {
            let meta = self.parse_meta(kv)?;
            if meta.commit_id == commit_id {
                // Our final chunk was applied; its reply was lost and retried.
                return Ok(());
            }
            if meta.serial != base.serial || meta.lineage != base.lineage {
                return Err(StoreError::Stale {
                    expected: base.serial,
                    found: meta.serial,
                });
            }
        }
        if lock.map(|kv| kv.create_revision) != Some(held.create_revision) {
            let now = match self.holder_of(lock) {
                Some(v) => format!("it is now held by {}", v.owner),
                None => "nobody holds it now".to_string(),
            };
            return Err(StoreError::Remote(format!(
                "the lock on {} was lost during the commit (its lease expired?); {now}. \
                 {done} of {total} chunks were written, the serial is unchanged: run again to converge",
                self.url
            )));
        }
        Err(StoreError::Remote(format!(
            "the commit to {} was refused by its guard after {done} of {total} chunks; run again",
            self.url
        )))
    }
}

impl StateStore for EtcdStore {
    fn info(&self) -> StoreInfo {
        StoreInfo {
            kind: "etcd".into(),
            location: self.url.clone(),
        }
    }

    fn read(&self) -> Result<Snapshot, StoreError> {
        let kvs = self.range_all(&self.key("meta"), &prefix_end(self.prefix.as_bytes()))?;
        let mut snap = Snapshot::default();
        let resources = self.key("r/");
        let target_records = self.key("t/");
        for kv in &kvs {
            if let Some(rest) = kv.key.strip_prefix(target_records.as_slice()) {
                let rest = String::from_utf8_lossy(rest);
                let Some((target, id)) = rest.split_once('/').filter(|(_, id)| {
                    *id == crate::target::CAPABILITIES_ID
                        || crate::target::parse_record_id(id).is_some()
                }) else {
                    return Err(self.corrupt(
                        &kv.key,
                        "expected t/TARGET/KIND/KEY or t/TARGET/capabilities",
                    ));
                };
                snap.targets
                    .entry(target.to_string())
                    .or_default()
                    .insert(id.to_string(), self.decode(kv)?);
                continue;
            }
            if kv.key == self.key("meta") {
                let meta = self.parse_meta(kv)?;
                snap.version = Some(Version {
                    lineage: meta.lineage,
                    serial: meta.serial,
                });
                continue;
            }
            let Some(rest) = kv.key.strip_prefix(resources.as_slice()) else {
                return Err(self.corrupt(&kv.key, "unknown key under the prefix"));
            };
            let rest = String::from_utf8_lossy(rest);
            let Some((kind, name)) = rest.split_once('/') else {
                return Err(self.corrupt(&kv.key, "expected r/KIND/NAME"));
            };
            let name = name.to_string();
            match kind {
                "role" => {
                    snap.roles.insert(name, self.decode(kv)?);
                }
                "group" => {
                    snap.groups.insert(name, self.decode(kv)?);
                }
                "user" => {
                    snap.users.insert(name, self.decode(kv)?);
                }
                "role_assignment" => {
                    snap.assignments.insert(name, self.decode(kv)?);
                }
                other => return Err(self.corrupt(&kv.key, format!("unknown kind {other:?}"))),
            }
        }
        Ok(snap)
    }

    fn lock(
        &self,
        owner: &LockOwner,
        timeout: Duration,
    ) -> Result<Box<dyn StoreLock + '_>, StoreError> {
        let deadline = Instant::now() + timeout;
        let ttl = self.config.lock_ttl.as_secs().max(2) as i64;
        let lease = self.gateway.lease_grant(ttl)?;
        let key = self.key("lock");
        let value = serde_json::to_vec(&LockValue {
            owner: owner.clone(),
            lease,
        })
        .map_err(|e| StoreError::Remote(format!("cannot encode the lock owner: {e}")))?;
        let attempt = || -> Result<Result<i64, Option<LockValue>>, StoreError> {
            let txn = self.gateway.txn(
                &[Compare::CreateRevision(&key, 0)],
                &[Op::Put {
                    key: &key,
                    value: &value,
                    lease,
                }],
                &[Op::Get(&key)],
            )?;
            if txn.succeeded {
                return Ok(Ok(txn.revision));
            }
            let kv = txn.ranges.first().and_then(|r| r.first());
            let holder = self.holder_of(kv);
            match (kv, &holder) {
                // A retried request whose first try took the lock for us.
                (Some(kv), Some(h)) if h.lease == lease => Ok(Ok(kv.create_revision)),
                _ => Ok(Err(holder)),
            }
        };
        let create_revision = loop {
            match attempt() {
                Ok(Ok(rev)) => break rev,
                Ok(Err(holder)) => {
                    let now = Instant::now();
                    if now >= deadline {
                        let _ = self.gateway.lease_revoke(lease);
                        return Err(match holder {
                            Some(h) => StoreError::Locked { holder: h.owner },
                            None => StoreError::LockedUnknown,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(200).min(deadline - now));
                }
                Err(e) => {
                    let _ = self.gateway.lease_revoke(lease);
                    return Err(e);
                }
            }
        };
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = Some(HeldLock {
            lease,
            create_revision,
        });
        let (stop, stopped) = mpsc::channel();
        let keepalive = spawn_keepalive(
            Arc::clone(&self.gateway),
            lease,
            Duration::from_secs(ttl as u64),
            stopped,
        );
        Ok(Box::new(EtcdLock {
            store: self,
            lease,
            stop: Some(stop),
            keepalive: Some(keepalive),
        }))
    }

    fn commit(
        &self,
        _lock: &dyn StoreLock,
        changes: ChangeSet,
    ) -> Result<CommitReport, StoreError> {
        // The guard borrows this handle, so the lock this handle holds is the one passed in.
        let held = self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .ok_or_else(|| {
                StoreError::Remote(format!(
                    "commit to {} without holding its lock (take the lock with this store handle)",
                    self.url
                ))
            })?;
        let (meta, meta_rev) = self.read_meta()?;
        let base = &changes.base;
        let (lineage, current) = match &meta {
            Some(m) => (m.lineage.clone(), m.serial),
            None => (String::new(), 0),
        };
        if !base.lineage.is_empty() && meta.is_some() && base.lineage != lineage {
            return Err(StoreError::LineageMismatch {
                expected: base.lineage.clone(),
                found: lineage,
            });
        }
        if base.serial != current {
            return Err(StoreError::Stale {
                expected: base.serial,
                found: current,
            });
        }
        let lineage = if lineage.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            lineage
        };
        let serial = current + 1;
        let commit_id = uuid::Uuid::new_v4().to_string();
        let mut outcomes = Vec::with_capacity(changes.changes.len());
        let mut per_change = Vec::with_capacity(changes.changes.len());
        for change in changes.changes {
            outcomes.push(ChangeOutcome {
                address: change.address(),
                error: None,
            });
            per_change.push(self.key_ops(change, serial)?);
        }
        // The last chunk also carries the audit entry and the meta key.
        let mut tail: KeyOps = Vec::new();
        if let Some(mut audit) = changes.audit {
            audit.serial = serial;
            let value = serde_json::to_vec(&audit)
                .map_err(|e| StoreError::Remote(format!("cannot encode the audit entry: {e}")))?;
            tail.push((self.key(&format!("h/{serial:020}")), Some(value)));
        }
        let meta_value = serde_json::to_vec(&Meta {
            format_version: FORMAT_VERSION,
            lineage: lineage.clone(),
            serial,
            commit_id: commit_id.clone(),
        })
        .map_err(|e| StoreError::Remote(format!("cannot encode the meta key: {e}")))?;
        tail.push((self.key("meta"), Some(meta_value)));
        let mut chunks = self.chunk(per_change, tail.len());
        match chunks.last_mut() {
            Some(last) if !last.iter().any(|(k, _)| tail.iter().any(|(t, _)| t == k)) => {
                last.extend(tail)
            }
            _ => chunks.push(tail),
        }
        let meta_key = self.key("meta");
        let lock_key = self.key("lock");
        let guard_base = Version {
            lineage: lineage.clone(),
            serial: current,
        };
        let total = chunks.len();
        for (done, chunk) in chunks.iter().enumerate() {
            let ops: Vec<Op<'_>> = chunk
                .iter()
                .map(|(key, value)| match value {
                    Some(value) => Op::Put {
                        key,
                        value,
                        lease: 0,
                    },
                    None => Op::Delete(key),
                })
                .collect();
            let txn = self
                .gateway
                .txn(
                    &[
                        Compare::ModRevision(&meta_key, meta_rev),
                        Compare::CreateRevision(&lock_key, held.create_revision),
                    ],
                    &ops,
                    &[Op::Get(&meta_key), Op::Get(&lock_key)],
                )
                .map_err(|e| match e {
                    StoreError::Remote(m) if done > 0 => StoreError::Remote(format!(
                        "{m} ({done} of {total} chunks were written, the serial is unchanged: run again to converge)"
                    )),
                    other => other,
                })?;
            if !txn.succeeded {
                self.refused(&txn.ranges, held, &guard_base, &commit_id, done, total)?;
            }
        }
        Ok(CommitReport {
            version: Version { lineage, serial },
            outcomes,
        })
    }

    fn history(&self) -> Result<Vec<AuditEntry>, StoreError> {
        let from = self.key("h/");
        let kvs = self.range_all(&from, &prefix_end(&from))?;
        kvs.iter().map(|kv| self.decode(kv)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let p = parse_url("etcd://10.0.0.1:2379,10.0.0.2:2379/roster/prod/").expect("valid");
        assert_eq!(
            p,
            ParsedUrl {
                endpoints: vec!["http://10.0.0.1:2379".into(), "http://10.0.0.2:2379".into()],
                prefix: "/roster/prod/".into(),
                https: false,
            }
        );
        let p = parse_url("etcd+https://etcd.example:2379/r").expect("valid");
        assert_eq!(p.endpoints, vec!["https://etcd.example:2379".to_string()]);
        assert!(p.https);
    }

    #[test]
    fn rejects_bad_urls() {
        for url in [
            "etcd://127.0.0.1:2379",
            "etcd://127.0.0.1:2379/",
            "etcd://127.0.0.1/roster",
            "etcd://127.0.0.1:notaport/roster",
            "etcd://user:pw@127.0.0.1:2379/roster",
            "http://127.0.0.1:2379/roster",
        ] {
            let err = parse_url(url).expect_err(url);
            assert!(matches!(err, StoreError::InvalidUrl { .. }), "{url}: {err}");
            assert!(!err.to_string().contains("pw@"), "{err}");
        }
    }

    #[test]
    fn prefix_end_is_the_next_key() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b".to_vec());
        assert_eq!(prefix_end(&[0xff]), vec![0]);
    }
}
