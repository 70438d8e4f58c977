//! Password and token generation from the OS CSPRNG (`getrandom` through
//! `rand::rngs::SysRng`).
//!
//! Passwords are uniform over the policy's alphabet (rejection sampling, no
//! modulo bias) and rejected as a whole until every enabled class occurs, so
//! the result is uniform over all passwords the policy allows. Buffers that
//! hold plaintext are zeroized and sized exactly, so no reallocation leaves a
//! copy behind. Must not: use a seeded or user-space-only RNG, log anything.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::rand_core::UnwrapErr;
use rand::rngs::SysRng;
use rand::{Rng as _, TryRng as _};
use zeroize::Zeroizing;

use super::{Secret, SecretError};
use crate::model::{PasswordPolicy, TokenPolicy};

const LOWERCASE: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
const UPPERCASE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const DIGITS: &[u8] = b"0123456789";
/// The symbols a password may contain: safe in shells' single quotes, URLs
/// (mostly), YAML and JSON strings.
pub const PASSWORD_SYMBOLS: &str = "!#%+-.:=?@^_~";

/// The longest password [`generate_password`] makes.
pub const MAX_PASSWORD_LENGTH: u32 = 4096;
/// Tokens never carry fewer random bytes than this, whatever the policy says.
pub const MIN_TOKEN_BYTES: u32 = 16;

/// Whole-password attempts before giving up. Even in the worst case (length
/// equal to the class count) an attempt succeeds with probability above 6%,
/// so reaching this bound means the RNG is broken.
const MAX_ATTEMPTS: u32 = 10_000;

/// A password following `policy`: `policy.length` characters drawn uniformly
/// from the union of the enabled classes, with at least one of each.
pub fn generate_password(policy: &PasswordPolicy) -> Result<Secret, SecretError> {
    let classes: Vec<&[u8]> = [
        (policy.lowercase, LOWERCASE),
        (policy.uppercase, UPPERCASE),
        (policy.digits, DIGITS),
        (policy.symbols, PASSWORD_SYMBOLS.as_bytes()),
    ]
    .into_iter()
    .filter_map(|(on, class)| on.then_some(class))
    .collect();
    if classes.is_empty() {
        return Err(SecretError::NoCharacterClass);
    }
    let class_count = classes.len() as u32;
    if policy.length < class_count || policy.length > MAX_PASSWORD_LENGTH {
        return Err(SecretError::PasswordLength {
            length: policy.length,
            classes: class_count,
            max: MAX_PASSWORD_LENGTH,
        });
    }
    let alphabet: Vec<u8> = classes.concat();
    let length = policy.length as usize;
    // Bytes at or above `limit` are rejected: below it every symbol of the
    // alphabet is hit by exactly `limit / alphabet.len()` byte values.
    let limit = 256 - 256 % alphabet.len();
    let mut pool = Zeroizing::new(vec![0u8; length + 16]);

    for _ in 0..MAX_ATTEMPTS {
        let mut password = Zeroizing::new(String::with_capacity(length));
        while password.len() < length {
            SysRng
                .try_fill_bytes(&mut pool)
                .map_err(|e| SecretError::Rng {
                    reason: e.to_string(),
                })?;
            for &byte in pool.iter() {
                if usize::from(byte) < limit {
                    password.push(char::from(alphabet[usize::from(byte) % alphabet.len()]));
                    if password.len() == length {
                        break;
                    }
                }
            }
        }
        let every_class = classes
            .iter()
            .all(|class| password.bytes().any(|c| class.contains(&c)));
        if every_class {
            // Moves the exactly-sized buffer out; the empty husk is zeroized.
            return Ok(Secret::new(std::mem::take(&mut *password)));
        }
    }
    Err(SecretError::PasswordAttempts {
        attempts: MAX_ATTEMPTS,
    })
}

/// An access token: `policy.prefix` followed by the unpadded base64url
/// encoding of `policy.bytes` (at least [`MIN_TOKEN_BYTES`]) random bytes.
///
/// Panics only if the operating system's random number generator fails, as
/// `rand::rng()` would; the signature leaves no room for an error.
pub fn generate_token(policy: &TokenPolicy) -> Secret {
    let count = policy.bytes.max(MIN_TOKEN_BYTES) as usize;
    let mut raw = Zeroizing::new(vec![0u8; count]);
    UnwrapErr(SysRng).fill_bytes(&mut raw);
    // 4 characters per started 3 bytes, no padding.
    let encoded = (count * 4).div_ceil(3);
    let mut token = String::with_capacity(policy.prefix.len() + encoded);
    token.push_str(&policy.prefix);
    URL_SAFE_NO_PAD.encode_string(&*raw, &mut token);
    Secret::new(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(
        length: u32,
        lower: bool,
        upper: bool,
        digits: bool,
        symbols: bool,
    ) -> PasswordPolicy {
        PasswordPolicy {
            length,
            lowercase: lower,
            uppercase: upper,
            digits,
            symbols,
        }
    }

    #[test]
    fn every_class_combination_and_length_is_obeyed() {
        for mask in 1u8..16 {
            let (lo, up, di, sy) = (mask & 1 != 0, mask & 2 != 0, mask & 4 != 0, mask & 8 != 0);
            let classes = mask.count_ones();
            for length in [classes, 16, 17, 32, 64, 256] {
                let p = policy(length, lo, up, di, sy);
                for _ in 0..20 {
                    let secret = generate_password(&p).expect("valid policy");
                    let s = secret.expose();
                    assert_eq!(s.chars().count(), length as usize, "length for mask {mask}");
                    let has = |set: &[u8]| s.bytes().any(|c| set.contains(&c));
                    assert_eq!(has(LOWERCASE), lo, "lowercase for mask {mask}");
                    assert_eq!(has(UPPERCASE), up, "uppercase for mask {mask}");
                    assert_eq!(has(DIGITS), di, "digits for mask {mask}");
                    assert_eq!(
                        has(PASSWORD_SYMBOLS.as_bytes()),
                        sy,
                        "symbols for mask {mask}"
                    );
                    let allowed: Vec<u8> = [
                        (lo, LOWERCASE),
                        (up, UPPERCASE),
                        (di, DIGITS),
                        (sy, PASSWORD_SYMBOLS.as_bytes()),
                    ]
                    .iter()
                    .filter(|(on, _)| *on)
                    .flat_map(|(_, set)| set.iter().copied())
                    .collect();
                    assert!(
                        s.bytes().all(|c| allowed.contains(&c)),
                        "a character outside the enabled classes for mask {mask}"
                    );
                }
            }
        }
    }

    #[test]
    fn no_class_is_an_error() {
        let err = generate_password(&policy(32, false, false, false, false)).unwrap_err();
        assert!(matches!(err, SecretError::NoCharacterClass), "{err}");
    }

    #[test]
    fn length_below_class_count_or_above_max_is_an_error() {
        for (length, p) in [
            (3, policy(3, true, true, true, true)),
            (0, policy(0, true, false, false, false)),
            (
                MAX_PASSWORD_LENGTH + 1,
                policy(MAX_PASSWORD_LENGTH + 1, true, true, true, true),
            ),
        ] {
            match generate_password(&p) {
                Err(SecretError::PasswordLength { length: l, .. }) => assert_eq!(l, length),
                other => panic!("length {length}: expected PasswordLength, got {other:?}"),
            }
        }
    }

    #[test]
    fn passwords_differ() {
        let p = PasswordPolicy::default();
        let a = generate_password(&p).expect("default policy");
        let b = generate_password(&p).expect("default policy");
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn characters_are_roughly_uniform() {
        // 62 symbols, 62_000 draws: each expected 1000 times. A modulo-biased
        // or broken generator (e.g. one class missing) lands far outside
        // [700, 1300]; a fair one essentially never does (over 9 sigma).
        let p = policy(1000, true, true, true, false);
        let mut counts = std::collections::BTreeMap::<u8, u32>::new();
        for _ in 0..62 {
            let s = generate_password(&p).expect("valid policy");
            for c in s.expose().bytes() {
                *counts.entry(c).or_default() += 1;
            }
        }
        assert_eq!(counts.len(), 62);
        for (c, n) in counts {
            assert!(
                (700..=1300).contains(&n),
                "{:?} drawn {n} times",
                char::from(c)
            );
        }
    }

    #[test]
    fn token_format() {
        for (prefix, bytes) in [("rst_", 32u32), ("", 16), ("ab-C_9", 128), ("x", 17)] {
            let t = generate_token(&TokenPolicy {
                prefix: prefix.to_string(),
                bytes,
            });
            let s = t.expose();
            let body = s
                .strip_prefix(prefix)
                .expect("token starts with the prefix");
            assert!(!body.contains('='), "no padding");
            let raw = URL_SAFE_NO_PAD.decode(body).expect("base64url body");
            assert_eq!(raw.len(), bytes as usize);
        }
        let a = generate_token(&TokenPolicy::default());
        let b = generate_token(&TokenPolicy::default());
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn token_bytes_below_minimum_are_raised() {
        let t = generate_token(&TokenPolicy {
            prefix: "p_".to_string(),
            bytes: 0,
        });
        let body = t.expose().strip_prefix("p_").expect("prefix");
        let raw = URL_SAFE_NO_PAD.decode(body).expect("base64url body");
        assert_eq!(raw.len(), MIN_TOKEN_BYTES as usize);
    }
}
