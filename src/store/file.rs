//! The embedded default store: one JSON file (`file:PATH`).
//!
//! Commits are atomic: a temp file in the same directory is written, fsynced
//! and renamed over the old one, then the directory is fsynced, so after a
//! crash the file is either the old state or the new one. The file is 0600.
//! The apply lock is an exclusive OS lock on `PATH.lock`, which also records
//! the holder (pid, host, since) for the message a second apply prints.
//!
//! The state directory may be one a reviewer does not control (a checkout),
//! so nothing here follows a planted link: the lock is opened `O_NOFOLLOW`,
//! the temp file is created `O_CREAT|O_EXCL|O_NOFOLLOW` under an
//! unpredictable name, a directory that another user can write (or owns) is
//! refused, and the state file is read only when it is a regular file of at
//! most [`MAX_STATE_BYTES`].

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{
    AuditEntry, Change, ChangeOutcome, ChangeSet, CommitReport, LockOwner, Record, Snapshot,
    StateStore, StoreError, StoreInfo, StoreLock, Version,
};
use crate::model::{AssignmentSpec, GroupSpec, Kind, RoleSpec, UserSpec};
use crate::target::TargetState;

/// The on-disk format version this code writes. Version 2 added `targets`;
/// version 1 files are read and migrated on their first write.
pub const FORMAT_VERSION: u32 = 2;

/// The largest state file roster reads (1 GiB; 100k users take ~60 MB).
pub const MAX_STATE_BYTES: u64 = 1 << 30;

/// `file:PATH`.
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
}

/// The state file's contents.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    format_version: u32,
    lineage: String,
    serial: u64,
    #[serde(default)]
    roles: BTreeMap<String, Record<RoleSpec>>,
    #[serde(default)]
    groups: BTreeMap<String, Record<GroupSpec>>,
    #[serde(default)]
    users: BTreeMap<String, Record<UserSpec>>,
    #[serde(default)]
    assignments: BTreeMap<String, Record<AssignmentSpec>>,
    #[serde(default)]
    history: Vec<AuditEntry>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    targets: BTreeMap<String, TargetState>,
}

#[derive(Debug)]
struct FileLock {
    _file: File,
}

impl StoreLock for FileLock {}

impl FileStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileStore { path: path.into() }
    }

    fn io(&self, path: &Path, error: io::Error) -> StoreError {
        StoreError::Io {
            path: path.display().to_string(),
            error,
        }
    }

    fn lock_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".lock");
        PathBuf::from(p)
    }

    fn load(&self) -> Result<Option<StateFile>, StoreError> {
        let Some(bytes) = self.read_state_bytes()? else {
            return Ok(None);
        };
        let state: StateFile = serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            what: format!("state file {}", self.path.display()),
            detail: super::redact_json_error(&e),
        })?;
        if !(1..=FORMAT_VERSION).contains(&state.format_version) {
            return Err(StoreError::Corrupt {
                what: format!("state file {}", self.path.display()),
                detail: format!(
                    "format_version {} is not supported (this roster reads 1 to {FORMAT_VERSION}): \
                     it was written by a newer roster; upgrade roster to use it",
                    state.format_version
                ),
            });
        }
        Ok(Some(state))
    }

    /// The state file's bytes, `None` when it does not exist. Opened without
    /// blocking (a FIFO would hang the open) and read only when it is a
    /// regular file, at most [`MAX_STATE_BYTES`] of it.
    fn read_state_bytes(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let mut file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&self.path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(&self.path, e)),
        };
        let meta = file.metadata().map_err(|e| self.io(&self.path, e))?;
        if !meta.is_file() {
            return Err(self.io(
                &self.path,
                io::Error::other("not a regular file (a state file must be one)"),
            ));
        }
        if meta.len() > MAX_STATE_BYTES {
            return Err(self.too_big());
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        (&mut file)
            .take(MAX_STATE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| self.io(&self.path, e))?;
        if bytes.len() as u64 > MAX_STATE_BYTES {
            return Err(self.too_big());
        }
        Ok(Some(bytes))
    }

    fn too_big(&self) -> StoreError {
        self.io(
            &self.path,
            io::Error::other(format!(
                "larger than {} MiB, the most roster reads as a state file",
                MAX_STATE_BYTES >> 20
            )),
        )
    }

    /// Refuse a state directory that another user could use to swap files
    /// under roster: writable by group or others, or owned by someone other
    /// than this user (or root).
    fn check_dir_private(&self) -> Result<(), StoreError> {
        use std::os::unix::fs::MetadataExt;
        let dir = self.parent_dir();
        let meta = fs::metadata(&dir).map_err(|e| self.io(&dir, e))?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me && meta.uid() != 0 {
            return Err(self.io(
                &dir,
                io::Error::other(format!(
                    "the state directory is owned by uid {}, not by this user (uid {me}); \
                     another user could replace the state or its lock",
                    meta.uid()
                )),
            ));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(self.io(
                &dir,
                io::Error::other(format!(
                    "the state directory is writable by other users (mode {:o}); \
                     they could replace the state or its lock: run `chmod go-w` on it",
                    meta.mode() & 0o7777
                )),
            ));
        }
        Ok(())
    }

    fn parent_dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// The prefix of this store's temp files: `.NAME.tmp-`.
    fn tmp_prefix(&self) -> String {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!(".{name}.tmp-")
    }

    /// Remove temp files left by an apply killed inside its commit (they
    /// hold hashes). Called under the lock, so no other commit is writing one.
    fn remove_stale_temp_files(&self) {
        let prefix = self.tmp_prefix();
        let Ok(entries) = fs::read_dir(self.parent_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// Write `state` atomically: temp file, fsync, rename, fsync the directory.
    fn save(&self, state: &StateFile) -> Result<(), StoreError> {
        let dir = self.parent_dir();
        // Unpredictable (122 random bits) and created exclusively without
        // following a link: a name planted in advance makes the commit fail,
        // never write through it.
        let tmp = dir.join(format!(
            "{}{}",
            self.tmp_prefix(),
            uuid::Uuid::new_v4().simple()
        ));
        let result = (|| {
            let f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .mode(0o600)
                .open(&tmp)?;
            // Buffered: serde_json writes token by token, and unbuffered that
            // was one write(2) per token (31 s of system time for 100k users).
            let mut w = io::BufWriter::with_capacity(1 << 20, f);
            serde_json::to_writer_pretty(&mut w, state)?;
            w.write_all(b"\n")?;
            let f = w.into_inner().map_err(io::IntoInnerError::into_error)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &self.path)?;
            File::open(&dir)?.sync_all()
        })();
        result.map_err(|e| {
            if e.kind() != io::ErrorKind::AlreadyExists {
                let _ = fs::remove_file(&tmp);
            }
            self.io(&self.path, e)
        })
    }

    fn ensure_dir(&self) -> Result<(), StoreError> {
        let dir = self.parent_dir();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| self.io(&dir, e))?;
        self.check_dir_private()
    }
}

use std::os::unix::fs::DirBuilderExt;

fn snapshot_of(state: StateFile) -> Snapshot {
    Snapshot {
        version: Some(Version {
            lineage: state.lineage,
            serial: state.serial,
        }),
        roles: state.roles,
        groups: state.groups,
        users: state.users,
        assignments: state.assignments,
        limitations: Vec::new(),
        targets: state.targets,
    }
}

fn read_owner(file: &mut File) -> Option<LockOwner> {
    let mut s = String::new();
    file.seek(io::SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut s).ok()?;
    serde_json::from_str(&s).ok()
}

/// The holder's record, given a moment to appear: a holder writes it right
/// after it takes the lock, so a contender that looks in between (20 applies
/// started at once do) would otherwise report an unknown holder. Bounded:
/// 20 reads, 10 ms apart.
fn read_owner_settled(file: &mut File) -> Option<LockOwner> {
    for _ in 0..20 {
        if let Some(owner) = read_owner(file) {
            return Some(owner);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

impl StateStore for FileStore {
    fn info(&self) -> StoreInfo {
        StoreInfo {
            kind: "file".into(),
            location: format!("file:{}", self.path.display()),
        }
    }

    fn read(&self) -> Result<Snapshot, StoreError> {
        Ok(self.load()?.map(snapshot_of).unwrap_or_default())
    }

    fn lock(
        &self,
        owner: &LockOwner,
        timeout: Duration,
    ) -> Result<Box<dyn StoreLock + '_>, StoreError> {
        self.ensure_dir()?;
        let path = self.lock_path();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .mode(0o600)
            .open(&path)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    self.io(
                        &path,
                        io::Error::other(
                            "the lock file is a symbolic link; roster does not follow it",
                        ),
                    )
                } else {
                    self.io(&path, e)
                }
            })?;
        let meta = file.metadata().map_err(|e| self.io(&path, e))?;
        {
            use std::os::unix::fs::MetadataExt;
            if !meta.is_file() || meta.nlink() > 1 {
                return Err(self.io(
                    &path,
                    io::Error::other("the lock file is not a regular file with a single link"),
                ));
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) => {
                    if Instant::now() >= deadline {
                        return Err(match read_owner_settled(&mut file) {
                            Some(holder) => StoreError::Locked { holder },
                            None => StoreError::LockedUnknown,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(50).min(deadline - Instant::now()));
                }
                Err(fs::TryLockError::Error(e)) => return Err(self.io(&path, e)),
            }
        }
        let record = serde_json::to_vec(owner).map_err(|e| self.io(&path, e.into()))?;
        (|| {
            file.set_len(0)?;
            file.seek(io::SeekFrom::Start(0))?;
            file.write_all(&record)?;
            file.sync_all()
        })()
        .map_err(|e| self.io(&path, e))?;
        Ok(Box::new(FileLock { _file: file }))
    }

    fn commit(
        &self,
        _lock: &dyn StoreLock,
        changes: ChangeSet,
    ) -> Result<CommitReport, StoreError> {
        self.ensure_dir()?;
        let mut state = match self.load()? {
            Some(s) => s,
            None => StateFile {
                format_version: FORMAT_VERSION,
                lineage: uuid::Uuid::new_v4().to_string(),
                ..StateFile::default()
            },
        };
        let base = &changes.base;
        if !base.lineage.is_empty() && base.lineage != state.lineage {
            return Err(StoreError::LineageMismatch {
                expected: base.lineage.clone(),
                found: state.lineage,
            });
        }
        if base.serial != state.serial {
            return Err(StoreError::Stale {
                expected: base.serial,
                found: state.serial,
            });
        }
        // A version 1 state is migrated by this write.
        state.format_version = FORMAT_VERSION;
        let serial = state
            .serial
            .checked_add(1)
            .ok_or_else(|| StoreError::Corrupt {
                what: format!("state file {}", self.path.display()),
                detail: format!(
                    "serial {} cannot be raised (it would overflow)",
                    state.serial
                ),
            })?;
        let mut outcomes = Vec::with_capacity(changes.changes.len());
        for change in changes.changes {
            let address = change.address();
            match change {
                Change::PutRole { name, mut record } => {
                    record.meta.serial = serial;
                    state.roles.insert(name, record);
                }
                Change::PutGroup { name, mut record } => {
                    record.meta.serial = serial;
                    state.groups.insert(name, record);
                }
                Change::PutUser {
                    name,
                    mut record,
                    renamed_from,
                    ..
                } => {
                    if let Some(old) = renamed_from {
                        state.users.remove(&old);
                    }
                    record.meta.serial = serial;
                    state.users.insert(name, record);
                }
                Change::PutAssignment { id, mut record } => {
                    record.meta.serial = serial;
                    state.assignments.insert(id, record);
                }
                Change::PutTargetRecord {
                    target,
                    id,
                    mut record,
                } => {
                    record.serial = serial;
                    state.targets.entry(target).or_default().insert(id, record);
                }
                Change::DeleteTargetRecord { target, id } => {
                    if let Some(t) = state.targets.get_mut(&target) {
                        t.remove(&id);
                        if t.is_empty() {
                            state.targets.remove(&target);
                        }
                    }
                }
                Change::Delete { kind, name } => {
                    match kind {
                        Kind::Role => state.roles.remove(&name).map(|_| ()),
                        Kind::Group => state.groups.remove(&name).map(|_| ()),
                        Kind::User => state.users.remove(&name).map(|_| ()),
                        Kind::RoleAssignment => state.assignments.remove(&name).map(|_| ()),
                    };
                }
            }
            outcomes.push(ChangeOutcome {
                address,
                error: None,
            });
        }
        state.serial = serial;
        if let Some(mut audit) = changes.audit {
            audit.serial = serial;
            state.history.push(audit);
        }
        self.remove_stale_temp_files();
        self.save(&state)?;
        Ok(CommitReport {
            version: Version {
                lineage: state.lineage,
                serial,
            },
            outcomes,
        })
    }

    fn history(&self) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self.load()?.map(|s| s.history).unwrap_or_default())
    }
}
