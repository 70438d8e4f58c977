//! age encryption of the secrets output: recipients are parsed up front (so
//! apply can refuse before changing anything), the output is ASCII-armored so
//! it can sit in CI logs and artifacts.
//!
//! Must not: echo anything that might be an age secret key in an error (only
//! strings that look like public `age1...` recipients are shown).

use std::io::Write;
use std::str::FromStr;

use age::armor::{ArmoredWriter, Format};
use zeroize::Zeroizing;

use super::SecretError;

/// Parse/validate age x25519 recipients (`age1...`) up front, before anything changes.
/// An empty list is an error: encrypting to nobody would lose the secrets.
pub fn parse_recipients(recipients: &[String]) -> Result<Vec<age::x25519::Recipient>, SecretError> {
    if recipients.is_empty() {
        return Err(SecretError::NoRecipients);
    }
    recipients
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let text = text.trim();
            age::x25519::Recipient::from_str(text).map_err(|reason| SecretError::Recipient {
                index: i + 1,
                shown: describe(text),
                reason: hint(text).unwrap_or(reason).to_string(),
            })
        })
        .collect()
}

/// Shows a recipient that looks public; describes anything else without echoing it.
fn describe(text: &str) -> String {
    let looks_public = text.starts_with("age1")
        && text.len() <= 100
        && text.bytes().all(|b| b.is_ascii_alphanumeric());
    if looks_public {
        format!("`{text}`")
    } else if text.is_empty() {
        "empty".to_string()
    } else {
        format!("{} characters, not shown", text.chars().count())
    }
}

fn hint(text: &str) -> Option<&'static str> {
    if text.to_ascii_uppercase().starts_with("AGE-SECRET-KEY-") {
        Some(
            "this is an age secret key (an identity), not a recipient: pass its public key (age-keygen -y), and treat this secret key as leaked if it was shared",
        )
    } else if text.starts_with("ssh-") {
        Some("SSH recipients are not supported: pass an age x25519 public key (age1...)")
    } else {
        None
    }
}

/// Encrypt to the recipients with age, ASCII-armored.
pub fn encrypt_armored(
    plaintext: &[u8],
    recipients: &[age::x25519::Recipient],
) -> Result<Zeroizing<String>, SecretError> {
    if recipients.is_empty() {
        return Err(SecretError::NoRecipients);
    }
    let encrypt_error = |e: &dyn std::fmt::Display| SecretError::Encrypt {
        reason: e.to_string(),
    };
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| encrypt_error(&e))?;
    let mut out = Vec::new();
    let armored =
        ArmoredWriter::wrap_output(&mut out, Format::AsciiArmor).map_err(|e| encrypt_error(&e))?;
    let mut writer = encryptor
        .wrap_output(armored)
        .map_err(|e| encrypt_error(&e))?;
    writer.write_all(plaintext).map_err(|e| encrypt_error(&e))?;
    writer
        .finish()
        .and_then(|armored| armored.finish())
        .map_err(|e| encrypt_error(&e))?;
    let text = String::from_utf8(out).map_err(|e| encrypt_error(&e))?;
    Ok(Zeroizing::new(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret as _;

    #[test]
    fn secret_key_given_as_recipient_is_not_echoed() {
        let identity = age::x25519::Identity::generate();
        let secret_key = identity.to_string().expose_secret().to_string();
        let err = parse_recipients(std::slice::from_ref(&secret_key)).unwrap_err();
        let text = err.to_string();
        assert!(!text.contains(&secret_key), "{text}");
        assert!(!format!("{err:?}").contains(&secret_key));
        assert!(text.contains("secret key"), "{text}");
    }

    #[test]
    fn bad_and_empty_recipients() {
        assert!(matches!(
            parse_recipients(&[]),
            Err(SecretError::NoRecipients)
        ));
        let good = age::x25519::Identity::generate().to_public().to_string();
        let err = parse_recipients(&[good.clone(), "age1nope".to_string()]).unwrap_err();
        match &err {
            SecretError::Recipient { index, shown, .. } => {
                assert_eq!(*index, 2);
                assert_eq!(shown, "`age1nope`");
            }
            other => panic!("expected Recipient, got {other:?}"),
        }
        assert_eq!(
            parse_recipients(&[format!(" {good}\n")])
                .expect("whitespace is trimmed")
                .len(),
            1
        );
        assert!(matches!(
            encrypt_armored(b"x", &[]),
            Err(SecretError::NoRecipients)
        ));
    }
}
