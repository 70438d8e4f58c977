//! How strong a secret policy is: the floors below which roster warns (at
//! `validate`) and flags the policy in every plan. Pure.
//!
//! Floors: a password of at least [`MIN_PASSWORD_BITS`] bits of entropy
//! (length × log2 of the alphabet: the default 32 characters of 75 symbols
//! give 199 bits; 16 digits give 53), and argon2id at one of the OWASP
//! Password Storage Cheat Sheet's minimum configurations (m=47104 KiB t=1,
//! m=19456 t=2, m=12288 t=3, m=9216 t=4, m=7168 t=5).

use crate::model::{Argon2Params, PasswordPolicy};

use super::generate::PASSWORD_SYMBOLS;

/// Entropy a generated password must reach.
pub const MIN_PASSWORD_BITS: f64 = 128.0;

/// OWASP's minimum argon2id configurations: (memory KiB, iterations).
pub const OWASP_ARGON2_FLOORS: [(u32, u32); 5] = [
    (47_104, 1),
    (19_456, 2),
    (12_288, 3),
    (9_216, 4),
    (7_168, 5),
];

/// Bits of entropy of a password generated under `policy`.
pub fn password_bits(policy: &PasswordPolicy) -> f64 {
    let alphabet = [
        (policy.lowercase, 26usize),
        (policy.uppercase, 26),
        (policy.digits, 10),
        (policy.symbols, PASSWORD_SYMBOLS.len()),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, n)| n)
    .sum::<usize>();
    if alphabet < 2 {
        return 0.0;
    }
    f64::from(policy.length) * (alphabet as f64).log2()
}

/// Whether `argon2` meets one of OWASP's minimum configurations.
pub fn argon2_meets_floor(argon2: &Argon2Params) -> bool {
    OWASP_ARGON2_FLOORS
        .iter()
        .any(|&(m, t)| argon2.memory_kib >= m && argon2.iterations >= t)
}

/// Each weakness of a policy as `(code, message)`; empty when it meets the
/// floors. Codes: `secrets.weak-password`, `secrets.weak-argon2`.
pub fn weaknesses(password: &PasswordPolicy, argon2: &Argon2Params) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let bits = password_bits(password);
    if bits < MIN_PASSWORD_BITS {
        out.push((
            "secrets.weak-password",
            format!(
                "the password policy gives {bits:.0} bits of entropy (length {} over the enabled \
                 character classes), below the floor of {MIN_PASSWORD_BITS:.0}: make passwords \
                 longer or enable more classes",
                password.length
            ),
        ));
    }
    if !argon2_meets_floor(argon2) {
        out.push((
            "secrets.weak-argon2",
            format!(
                "argon2id m={} KiB t={} p={} is below the OWASP minimum (m=19456 KiB with t=2, or \
                 an equivalent: m=47104 t=1, m=12288 t=3, m=9216 t=4, m=7168 t=5)",
                argon2.memory_kib, argon2.iterations, argon2.parallelism
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_meet_the_floors_and_the_issue_example_does_not() {
        assert!(weaknesses(&PasswordPolicy::default(), &Argon2Params::default()).is_empty());
        let digits = PasswordPolicy {
            length: 16,
            lowercase: false,
            uppercase: false,
            digits: true,
            symbols: false,
        };
        let cheap = Argon2Params {
            memory_kib: 8192,
            iterations: 1,
            parallelism: 1,
        };
        let codes: Vec<&str> = weaknesses(&digits, &cheap).iter().map(|w| w.0).collect();
        assert_eq!(codes, ["secrets.weak-password", "secrets.weak-argon2"]);
    }
}
