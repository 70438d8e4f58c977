//! Secrets: generation (OS CSPRNG), argon2id hashing, and the one emission.
//!
//! A [`Secret`] redacts itself in `Debug` and `Display` and is zeroized on
//! drop. Nothing here logs a secret, and no [`SecretError`] message ever
//! contains one; the only way to read a secret is [`Secret::expose`], used by
//! the secrets writer and by stores that must set a password themselves (SCIM).
//!
//! Submodules:
//! - `generate`: passwords and tokens from the OS CSPRNG.
//! - `hash`: argon2id PHC hashing and verification, and parallel hashing.
//! - `output`: rendering the emitted secrets (json, yaml, env) into zeroizing buffers.
//! - `encrypt`: age recipients and ASCII-armored encryption.
//! - `file`: creating the secrets file (new, mode 0600, never overwritten).
//!
//! Must not: print, log or persist a plaintext secret anywhere but the secrets
//! output it is asked to write; touch the state store.

use std::fmt;
use std::io;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};

mod encrypt;
mod file;
mod generate;
mod hash;
mod output;
pub mod policy;

pub use encrypt::{encrypt_armored, parse_recipients};
pub use file::{check_secrets_path, replace_secrets_file, write_secrets_file};
pub use generate::{
    MAX_PASSWORD_LENGTH, MIN_TOKEN_BYTES, PASSWORD_SYMBOLS, generate_password, generate_token,
};
pub use hash::{hash_all, hash_all_on, hash_secret, verify_secret};
pub use output::{EmittedSecret, SecretsFormat, check_env_names, env_var_name, render_secrets};

/// Which credential a secret is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum SecretKind {
    Password,
    Token,
}

impl SecretKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SecretKind::Password => "password",
            SecretKind::Token => "token",
        }
    }
}

impl fmt::Display for SecretKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A plaintext secret. Redacted in `Debug`/`Display`, zeroized on drop.
pub struct Secret(SecretString);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(SecretString::from(value))
    }
    /// The plaintext. Call only to write the secrets output or hand it to a store.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Everything that can go wrong while generating, hashing or emitting secrets.
///
/// No message contains a secret: paths, policies, parameters and public age
/// recipients only.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "password policy enables no character class: enable at least one of lowercase, uppercase, digits, symbols"
    )]
    NoCharacterClass,
    #[error(
        "password length {length} is out of range: with {classes} enabled character class(es) it must be {classes} to {max}"
    )]
    PasswordLength { length: u32, classes: u32, max: u32 },
    #[error(
        "could not generate a password containing every enabled character class after {attempts} attempts"
    )]
    PasswordAttempts { attempts: u32 },
    #[error("the OS random number generator failed: {reason}")]
    Rng { reason: String },
    #[error(
        "invalid argon2 parameters (memory_kib={memory_kib}, iterations={iterations}, parallelism={parallelism}): {reason}"
    )]
    Argon2Params {
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
        reason: String,
    },
    #[error("argon2id hashing failed: {reason}")]
    Hash { reason: String },
    #[error("a secret hashing worker thread panicked")]
    WorkerPanicked,
    #[error("no age recipient given: pass at least one public key (age1...)")]
    NoRecipients,
    #[error("age recipient #{index} ({shown}) is invalid: {reason}")]
    Recipient {
        /// 1-based position in the list given.
        index: usize,
        /// The recipient when it looks like a public key, otherwise a description.
        shown: String,
        reason: String,
    },
    #[error("age encryption failed: {reason}")]
    Encrypt { reason: String },
    #[error("secrets file {} already exists; roster never overwrites a secrets file", .path.display())]
    FileExists { path: PathBuf },
    #[error("secrets file {} is a symbolic link; roster refuses to follow it", .path.display())]
    FileIsSymlink { path: PathBuf },
    #[error("secrets file path {} does not name a file", .path.display())]
    NoFileName { path: PathBuf },
    #[error("directory {} for secrets file {} does not exist", .dir.display(), .path.display())]
    DirMissing { dir: PathBuf, path: PathBuf },
    #[error("{} (the directory for secrets file {}) is not a directory", .dir.display(), .path.display())]
    DirNotDirectory { dir: PathBuf, path: PathBuf },
    #[error("directory {} is not writable, cannot create secrets file {}: {source}", .dir.display(), .path.display())]
    DirNotWritable {
        dir: PathBuf,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cannot {action} secrets file {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}
