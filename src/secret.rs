//! Secrets: generation (OS CSPRNG), argon2id hashing, and the one emission.
//!
//! A [`Secret`] redacts itself in `Debug` and `Display` and is zeroized on
//! drop. Nothing here logs a secret; the only way to read one is
//! [`Secret::expose`], used by the secrets writer and by stores that must set a
//! password themselves (SCIM).

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

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
