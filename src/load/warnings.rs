//! Warnings about a valid config: things that load but deserve a word at
//! `validate`. Called from one place (the `validate` command), after a
//! successful load. Pure.
//!
//! Codes (stable, listed in the README):
//! - `secrets.weak-password`: the password policy gives fewer bits of
//!   entropy than [`crate::secret::policy::MIN_PASSWORD_BITS`].
//! - `secrets.weak-argon2`: the argon2id cost is below every OWASP minimum
//!   configuration.
//! - `user.expired`: a user's `expires_at` (its own or its template's) is
//!   already past at `now` (an input, like the planner's).

use serde::Serialize;

use crate::model::Desired;

/// One warning: a stable code and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub code: &'static str,
    /// Where it applies, e.g. `settings.password` or `users.NAME.expires_at`.
    pub field: String,
    /// `file:line:column` where the config says it, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    pub message: String,
}

impl Warning {
    /// The location's parts: (file, line, column).
    pub fn place(&self) -> Option<(&str, &str, &str)> {
        let mut parts = self.location.as_deref()?.rsplitn(3, ':');
        let (col, line, file) = (parts.next()?, parts.next()?, parts.next()?);
        Some((file, line, col))
    }
}

/// Every warning about `desired` at the moment `now` (Unix seconds).
pub fn check(desired: &Desired, now: i64) -> Vec<Warning> {
    let s = &desired.settings;
    let mut out: Vec<Warning> = crate::secret::policy::weaknesses(&s.password, &s.argon2)
        .into_iter()
        .map(|(code, message)| Warning {
            code,
            field: if code == "secrets.weak-password" {
                "settings.password"
            } else {
                "settings.argon2"
            }
            .to_string(),
            location: None,
            message,
        })
        .collect();
    for (name, g) in &desired.governance {
        let Some(e) = g.expires_at.as_ref().filter(|e| e.unix <= now) else {
            continue;
        };
        let user = desired.users.get(name);
        let active = user.is_some_and(|u| u.active);
        let protected = user.is_some_and(|u| u.protected);
        out.push(Warning {
            code: "user.expired",
            field: format!("users.{name}.expires_at"),
            location: Some(e.location.clone()),
            message: format!(
                "user {name}: expires_at {} is in the past{}",
                e.text,
                match (active, protected) {
                    (true, false) => "; the next plan deactivates it and revokes its secrets",
                    (true, true) => {
                        "; it is protected, so plans leave it active until `protected: false`"
                    }
                    (false, _) => "",
                }
            ),
        });
    }
    out
}
