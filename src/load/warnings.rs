//! Warnings about a valid config: things that load but deserve a word at
//! `validate`. Called from one place (the `validate` command), after a
//! successful load. Pure.
//!
//! Codes (stable, listed in the README):
//! - `secrets.weak-password`: the password policy gives fewer bits of
//!   entropy than [`crate::secret::policy::MIN_PASSWORD_BITS`].
//! - `secrets.weak-argon2`: the argon2id cost is below every OWASP minimum
//!   configuration.

use serde::Serialize;

use crate::model::Desired;

/// One warning: a stable code and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub code: &'static str,
    /// Where it applies, e.g. `settings.password`.
    pub field: &'static str,
    pub message: String,
}

/// Every warning about `desired`.
pub fn check(desired: &Desired) -> Vec<Warning> {
    let s = &desired.settings;
    crate::secret::policy::weaknesses(&s.password, &s.argon2)
        .into_iter()
        .map(|(code, message)| Warning {
            code,
            field: if code == "secrets.weak-password" {
                "settings.password"
            } else {
                "settings.argon2"
            },
            message,
        })
        .collect()
}
