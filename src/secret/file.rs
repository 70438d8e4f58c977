//! The secrets file: created new with mode 0600 and never overwritten, written,
//! and made durable (fsync of the file and of its directory) before apply
//! commits the store change that makes its secrets valid.
//!
//! Must not: follow a symlink, truncate or replace an existing file, or leave a
//! partial file behind after a failed write. Unix only (uses `libc` for
//! `O_NOFOLLOW` and `faccessat`).

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::SecretError;

/// The directory a secrets file at `path` lives in (`.` for a bare file name).
fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> SecretError {
    SecretError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Check up front that `path` can be created (does not exist, parent dir
/// exists and is writable, not a symlink), so apply can refuse before
/// changing anything.
pub fn check_secrets_path(path: &Path) -> Result<(), SecretError> {
    if path.file_name().is_none() {
        return Err(SecretError::NoFileName {
            path: path.to_path_buf(),
        });
    }
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(SecretError::FileIsSymlink {
                path: path.to_path_buf(),
            });
        }
        Ok(_) => {
            return Err(SecretError::FileExists {
                path: path.to_path_buf(),
            });
        }
        // A missing or non-directory parent is reported by the checks below.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) => {}
        Err(e) => return Err(io_error("inspect", path, e)),
    }
    let dir = dir_of(path);
    let dir_error =
        |kind: fn(PathBuf, PathBuf) -> SecretError| kind(dir.to_path_buf(), path.to_path_buf());
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(dir_error(|dir, path| SecretError::DirNotDirectory {
                dir,
                path,
            }));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(dir_error(|dir, path| SecretError::DirMissing { dir, path }));
        }
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
            return Err(dir_error(|dir, path| SecretError::DirNotDirectory {
                dir,
                path,
            }));
        }
        Err(e) => return Err(io_error("inspect the directory of", path, e)),
    }
    let not_writable = |source| SecretError::DirNotWritable {
        dir: dir.to_path_buf(),
        path: path.to_path_buf(),
        source,
    };
    let c_dir = CString::new(dir.as_os_str().as_bytes()).map_err(|_| {
        not_writable(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path contains a NUL byte",
        ))
    })?;
    // SAFETY: `c_dir` is a valid NUL-terminated string that outlives the call;
    // faccessat only reads it.
    let rc = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            c_dir.as_ptr(),
            libc::W_OK | libc::X_OK,
            libc::AT_EACCESS,
        )
    };
    if rc != 0 {
        return Err(not_writable(io::Error::last_os_error()));
    }
    Ok(())
}

/// Create `path` new (O_CREAT|O_EXCL, mode 0600, O_NOFOLLOW: a symlink or an
/// existing file is refused and never overwritten), write `contents`, fsync
/// the file and its directory. On a write failure remove the partial file.
pub fn write_secrets_file(path: &Path, contents: &[u8]) -> Result<(), SecretError> {
    create_and_fill(path, |file| {
        file.write_all(contents)
            .map_err(|e| io_error("write", path, e))
    })
}

/// Replace the secrets file `path` that this apply created with `contents`
/// (more secrets arrived: those a target generated). The new contents go to
/// a fresh 0600 file beside it, created exclusively, then renamed over it:
/// a reader sees the old file or the new one, never a mix.
pub fn replace_secrets_file(path: &Path, contents: &[u8]) -> Result<(), SecretError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir_of(path).join(format!(".{name}.roster-{}", uuid::Uuid::new_v4().simple()));
    write_secrets_file(&tmp, contents)?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_error("replace", path, e)
    })?;
    File::open(dir_of(path))
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("fsync the directory of", path, e))
}

/// Creates `path` exclusively (mode exactly 0600), runs `fill` on it, then
/// fsyncs the file and its directory. If anything after the creation fails,
/// the file is removed.
fn create_and_fill(
    path: &Path,
    fill: impl FnOnce(&mut File) -> Result<(), SecretError>,
) -> Result<(), SecretError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| open_error(path, e))?;
    let written = (|| {
        // The umask can only clear bits; make the mode exactly 0600 anyway.
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(|e| io_error("set mode 0600 on", path, e))?;
        fill(&mut file)?;
        file.sync_all().map_err(|e| io_error("fsync", path, e))?;
        File::open(dir_of(path))
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error("fsync the directory of", path, e))
    })();
    if let Err(e) = written {
        drop(file);
        // Best effort: the file is ours (created exclusively above). If even
        // the removal fails, the original error is the one worth reporting.
        let _ = fs::remove_file(path);
        return Err(e);
    }
    Ok(())
}

fn open_error(path: &Path, e: io::Error) -> SecretError {
    let is_symlink = fs::symlink_metadata(path)
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false);
    // ELOOP: O_NOFOLLOW met a symlink.
    if is_symlink || e.raw_os_error() == Some(libc::ELOOP) {
        SecretError::FileIsSymlink {
            path: path.to_path_buf(),
        }
    } else if e.kind() == io::ErrorKind::NotFound {
        SecretError::DirMissing {
            dir: dir_of(path).to_path_buf(),
            path: path.to_path_buf(),
        }
    } else if e.kind() == io::ErrorKind::AlreadyExists {
        SecretError::FileExists {
            path: path.to_path_buf(),
        }
    } else {
        io_error("create", path, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_of_bare_name_is_cwd() {
        assert_eq!(dir_of(Path::new("secrets.json")), Path::new("."));
        assert_eq!(dir_of(Path::new("out/secrets.json")), Path::new("out"));
        assert_eq!(dir_of(Path::new("/secrets.json")), Path::new("/"));
    }

    #[test]
    fn a_failed_write_removes_the_partial_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secrets.env");
        let err = create_and_fill(&path, |file| {
            file.write_all(b"ROSTER_SECRET_A_PASSWORD='half")
                .map_err(|e| io_error("write", &path, e))?;
            Err(io_error(
                "write",
                &path,
                io::Error::new(io::ErrorKind::StorageFull, "disk full"),
            ))
        })
        .unwrap_err();
        assert!(
            matches!(
                err,
                SecretError::Io {
                    action: "write",
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            fs::symlink_metadata(&path).is_err(),
            "partial file left behind"
        );
    }

    #[test]
    fn an_open_failure_creates_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("missing-dir").join("s.json");
        let err = write_secrets_file(&path, b"x").unwrap_err();
        assert!(matches!(err, SecretError::DirMissing { .. }), "{err}");
        assert!(err.to_string().contains("missing-dir"), "{err}");
        assert!(!path.exists());
    }
}
