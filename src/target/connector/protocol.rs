//! The connector protocol v1's messages (docs/connector-protocol.md), as
//! serde types: requests roster writes, replies it reads.
//!
//! A request is a [`Request`] (the `id`) around an [`Op`] (the `op` tag and
//! its fields). A reply is first read as an [`Envelope`] (`id`, `ok`,
//! `error`), then, when `ok`, as the op's own reply type from the same line.
//!
//! Must not: show a secret in `Debug` (the `value` of `set_secret` and the
//! `secret` of a `generate_secret` reply are [`Secret`]s); do any I/O.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::secret::{Secret, SecretKind};
use crate::target::{Attrs, ErrorClass, ObjKind};

/// The protocol versions this roster speaks, offered in `hello`.
pub const VERSIONS: &[u32] = &[1];

/// One request line: `{"id": N, "op": ..., ...}`.
#[derive(Debug, Serialize)]
pub struct Request<'a> {
    pub id: u64,
    #[serde(flatten)]
    pub op: Op<'a>,
}

/// A request's operation and fields.
#[derive(Debug, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op<'a> {
    Hello {
        versions: &'a [u32],
        target: &'a str,
        config: &'a BTreeMap<String, Value>,
    },
    List {
        kind: ObjKind,
        cursor: Option<&'a str>,
    },
    Ensure {
        kind: ObjKind,
        key: &'a str,
        #[serde(rename = "ref")]
        remote_ref: Option<&'a str>,
        previous_key: Option<&'a str>,
        attrs: &'a Attrs,
        idem: &'a str,
    },
    Delete {
        kind: ObjKind,
        key: &'a str,
        #[serde(rename = "ref")]
        remote_ref: &'a str,
        idem: &'a str,
    },
    SetSecret {
        key: &'a str,
        #[serde(rename = "ref")]
        remote_ref: &'a str,
        kind: SecretKind,
        value: SecretValue<'a>,
        idem: &'a str,
    },
    GenerateSecret {
        key: &'a str,
        #[serde(rename = "ref")]
        remote_ref: &'a str,
        kind: SecretKind,
        idem: &'a str,
    },
    RevokeSecret {
        key: &'a str,
        #[serde(rename = "ref")]
        remote_ref: &'a str,
        kind: SecretKind,
        idem: &'a str,
    },
}

impl Op<'_> {
    /// The `op` string.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Hello { .. } => "hello",
            Op::List { .. } => "list",
            Op::Ensure { .. } => "ensure",
            Op::Delete { .. } => "delete",
            Op::SetSecret { .. } => "set_secret",
            Op::GenerateSecret { .. } => "generate_secret",
            Op::RevokeSecret { .. } => "revoke_secret",
        }
    }
}

/// A secret on its way to the connector: serialized as the plaintext,
/// redacted in `Debug`.
#[derive(Clone, Copy)]
pub struct SecretValue<'a>(pub &'a Secret);

impl Serialize for SecretValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.expose())
    }
}

impl fmt::Debug for SecretValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// What every reply carries. Other fields are the op's (read separately).
#[derive(Debug, Deserialize)]
pub struct Envelope {
    pub id: u64,
    pub ok: bool,
    #[serde(default)]
    pub error: Option<WireError>,
}

/// A failed reply's `error`.
#[derive(Debug, Clone, Deserialize)]
pub struct WireError {
    pub class: ErrorClass,
    #[serde(default)]
    pub message: String,
    /// Seconds to wait before a retry (`retryable` only).
    #[serde(default)]
    pub retry_after: Option<f64>,
}

/// The reply to `hello`.
#[derive(Debug, Deserialize)]
pub struct HelloReply {
    pub version: u32,
    pub capabilities: WireCapabilities,
}

/// `capabilities` in the reply to `hello`.
#[derive(Debug, Deserialize)]
pub struct WireCapabilities {
    pub kinds: Vec<ObjKind>,
    #[serde(default)]
    pub paging: bool,
    #[serde(default)]
    pub membership: Option<crate::target::Membership>,
    #[serde(default)]
    pub secrets: BTreeMap<SecretKind, WireSecretMode>,
}

/// A secret kind's mode as a connector declares it (no `none`: a kind the
/// system does not hold is left out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireSecretMode {
    RosterGenerated,
    TargetGenerated,
}

/// The reply to `list`.
#[derive(Debug, Deserialize)]
pub struct ListReply {
    pub items: Vec<Item>,
    #[serde(default)]
    pub next: Option<String>,
}

/// One object in a `list` reply.
#[derive(Debug, Deserialize)]
pub struct Item {
    pub key: String,
    #[serde(rename = "ref")]
    pub remote_ref: String,
    #[serde(default)]
    pub attrs: Attrs,
}

/// The reply to `ensure`.
#[derive(Debug, Deserialize)]
pub struct EnsureReply {
    #[serde(rename = "ref")]
    pub remote_ref: String,
    pub changed: bool,
    #[serde(default)]
    pub attrs: Attrs,
}

/// The reply to `generate_secret`.
#[derive(Debug, Deserialize)]
pub struct GenerateReply {
    pub secret: WireSecret,
    #[serde(default)]
    pub username: Option<String>,
}

/// A secret the connector generated. `Debug` shows the kind only.
#[derive(Debug, Deserialize)]
pub struct WireSecret {
    pub kind: SecretKind,
    #[serde(deserialize_with = "secret_from_str")]
    pub value: Secret,
}

pub(crate) fn secret_from_str<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
    let s = zeroize::Zeroizing::new(String::deserialize(d)?);
    Ok(Secret::new(String::clone(&s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_secret_request_carries_the_value_and_its_debug_does_not() {
        let secret = Secret::new("hunter2-canary".into());
        let req = Request {
            id: 5,
            op: Op::SetSecret {
                key: "lms",
                remote_ref: "r1",
                kind: SecretKind::Password,
                value: SecretValue(&secret),
                idem: "d/s",
            },
        };
        let line = serde_json::to_string(&req).expect("json");
        assert_eq!(
            line,
            r#"{"id":5,"op":"set_secret","key":"lms","ref":"r1","kind":"password","value":"hunter2-canary","idem":"d/s"}"#
        );
        assert!(!format!("{req:?}").contains("hunter2"), "{req:?}");
    }

    #[test]
    fn a_generated_secret_is_redacted_in_debug() {
        let r: GenerateReply = serde_json::from_str(
            r#"{"id":6,"ok":true,"secret":{"kind":"token","value":"s3cr3t-canary"},"username":null}"#,
        )
        .expect("reply");
        assert_eq!(r.secret.value.expose(), "s3cr3t-canary");
        assert!(!format!("{r:?}").contains("s3cr3t"), "{r:?}");
    }

    #[test]
    fn an_error_reply_reads_its_class_and_retry_after() {
        let e: Envelope = serde_json::from_str(
            r#"{"id":3,"ok":false,"error":{"class":"retryable","message":"busy","retry_after":2}}"#,
        )
        .expect("reply");
        let err = e.error.expect("error");
        assert_eq!((e.id, e.ok, err.class), (3, false, ErrorClass::Retryable));
        assert_eq!(err.retry_after, Some(2.0));
    }
}
