//! argon2id hashing of secrets into PHC strings, verification, and hashing
//! many secrets in parallel on all cores.
//!
//! Salts come from the OS CSPRNG. Verification accepts only argon2id hashes
//! whose cost stays within the configuration schema's bounds, so a forged
//! hash cannot make roster allocate unbounded memory. Must not: return or log
//! anything derived from a secret other than its PHC hash.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::{
    ARGON2ID_IDENT, Algorithm, Argon2, Block, PasswordHash, PasswordVerifier as _, Version,
};
use rand::TryRng as _;
use rand::rngs::SysRng;
use zeroize::Zeroize as _;

use super::{Secret, SecretError};
use crate::model::Argon2Params;

/// Salt length in bytes (the PHC recommendation).
const SALT_LEN: usize = 16;
/// Highest costs [`verify_secret`] accepts (the schema's maxima for [`Argon2Params`]).
const MAX_VERIFY_MEMORY_KIB: u32 = 1_048_576;
const MAX_VERIFY_ITERATIONS: u32 = 16;
const MAX_VERIFY_PARALLELISM: u32 = 16;

fn context(params: &Argon2Params) -> Result<Argon2<'static>, SecretError> {
    let p = argon2::Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        None,
    )
    .map_err(|e| SecretError::Argon2Params {
        memory_kib: params.memory_kib,
        iterations: params.iterations,
        parallelism: params.parallelism,
        reason: e.to_string(),
    })?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, p))
}

/// argon2's working memory (19 MiB at the default cost), kept by a worker for
/// all the hashes it computes. Allocating it per hash meant faulting in fresh
/// zeroed pages every time: ~3,000 page faults per hash and over a quarter of
/// the hashing CPU in system time, contended between the workers. Wiped when
/// dropped.
struct Memory(Vec<Block>);

impl Memory {
    /// Fails (instead of aborting) when the memory cost cannot be allocated.
    fn new(argon2: &Argon2<'_>) -> Result<Memory, SecretError> {
        let blocks = argon2.params().block_count();
        let mut v = Vec::new();
        v.try_reserve_exact(blocks).map_err(|_| SecretError::Hash {
            reason: format!(
                "cannot allocate argon2's memory ({} KiB)",
                argon2.params().m_cost()
            ),
        })?;
        v.resize(blocks, Block::default());
        Ok(Memory(v))
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        self.0.iter_mut().for_each(|b| b.zeroize());
    }
}

fn hash_err(e: impl std::fmt::Display) -> SecretError {
    SecretError::Hash {
        reason: e.to_string(),
    }
}

/// The PHC string of `secret` hashed with `salt`, in `memory`.
fn hash_salted(
    argon2: &Argon2<'_>,
    secret: &Secret,
    salt: &[u8],
    memory: &mut Memory,
) -> Result<String, SecretError> {
    let salt = Salt::new(salt).map_err(hash_err)?;
    let mut out = [0u8; argon2::Params::DEFAULT_OUTPUT_LEN];
    let result = argon2
        .hash_password_into_with_memory(secret.expose().as_bytes(), &salt, &mut out, &mut memory.0)
        .map_err(hash_err)
        .and_then(|()| {
            let phc = PasswordHash {
                algorithm: Algorithm::Argon2id.ident(),
                version: Some(Version::V0x13.into()),
                params: ParamsString::try_from(argon2.params()).map_err(hash_err)?,
                salt: Some(salt),
                hash: Some(Output::new(&out).map_err(hash_err)?),
            };
            Ok(phc.to_string())
        });
    out.zeroize();
    result
}

fn hash_with(
    argon2: &Argon2<'_>,
    secret: &Secret,
    memory: &mut Memory,
) -> Result<String, SecretError> {
    let mut salt = [0u8; SALT_LEN];
    SysRng
        .try_fill_bytes(&mut salt)
        .map_err(|e| SecretError::Rng {
            reason: e.to_string(),
        })?;
    hash_salted(argon2, secret, &salt, memory)
}

/// argon2id PHC string with the given params and a random salt (OS CSPRNG).
pub fn hash_secret(secret: &Secret, params: &Argon2Params) -> Result<String, SecretError> {
    let argon2 = context(params)?;
    hash_with(&argon2, secret, &mut Memory::new(&argon2)?)
}

/// true only when `phc` is a valid argon2id hash of `plaintext` (and its costs
/// are within the schema's bounds).
pub fn verify_secret(plaintext: &str, phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    if hash.algorithm != ARGON2ID_IDENT {
        return false;
    }
    let Ok(params) = argon2::Params::try_from(&hash) else {
        return false;
    };
    if params.m_cost() > MAX_VERIFY_MEMORY_KIB
        || params.t_cost() > MAX_VERIFY_ITERATIONS
        || params.p_cost() > MAX_VERIFY_PARALLELISM
    {
        return false;
    }
    Argon2::default()
        .verify_password(plaintext.as_bytes(), &hash)
        .is_ok()
}

/// Hash many secrets in parallel on all cores
/// (`std::thread::available_parallelism` workers, `std::thread::scope`),
/// results in input order. On an error the workers stop early and the error
/// of the lowest-indexed failing secret is returned.
pub fn hash_all(secrets: &[&Secret], params: &Argon2Params) -> Result<Vec<String>, SecretError> {
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    hash_all_on(secrets, params, cores, &mut |_| {})
}

/// [`hash_all`] on `workers` threads (at least one; `1` is the single-core
/// rate of the very same code, which the benchmarks compare against).
/// `progress(done)` is called on the calling thread while the workers run
/// (every few tens of milliseconds, and once at the end), so a long hashing
/// run can report progress without stopping its workers.
pub fn hash_all_on(
    secrets: &[&Secret],
    params: &Argon2Params,
    workers: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<String>, SecretError> {
    let argon2 = context(params)?;
    if secrets.is_empty() {
        return Ok(Vec::new());
    }
    let workers = workers.max(1).min(secrets.len());
    // Each worker's memory, allocated here so that a cost too large to
    // allocate is an error, not a worker that dies.
    let memories = (0..workers)
        .map(|_| Memory::new(&argon2))
        .collect::<Result<Vec<_>, _>>()?;
    let next = AtomicUsize::new(0);
    let completed = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let mut slots: Vec<Option<Result<String, SecretError>>> = std::iter::repeat_with(|| None)
        .take(secrets.len())
        .collect();
    let mut panicked = false;

    std::thread::scope(|scope| {
        let handles: Vec<_> = memories
            .into_iter()
            .map(|mut memory| {
                let (argon2, next, completed, failed) = (&argon2, &next, &completed, &failed);
                scope.spawn(move || {
                    let mut done = Vec::new();
                    while !failed.load(Ordering::Relaxed) {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(secret) = secrets.get(index) else {
                            break;
                        };
                        let result = hash_with(argon2, secret, &mut memory);
                        if result.is_err() {
                            failed.store(true, Ordering::Relaxed);
                        }
                        done.push((index, result));
                        completed.fetch_add(1, Ordering::Relaxed);
                    }
                    done
                })
            })
            .collect();
        // Report each new count once. Bounded by the workers: each ends
        // after its last secret.
        let mut reported = None;
        let mut report = |progress: &mut dyn FnMut(usize)| {
            let now = completed.load(Ordering::Relaxed);
            if reported != Some(now) {
                progress(now);
                reported = Some(now);
            }
        };
        while !handles.iter().all(|h| h.is_finished()) {
            report(progress);
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        report(progress);
        for handle in handles {
            match handle.join() {
                Ok(done) => {
                    for (index, result) in done {
                        slots[index] = Some(result);
                    }
                }
                Err(_) => panicked = true,
            }
        }
    });

    if panicked {
        return Err(SecretError::WorkerPanicked);
    }
    let mut hashes = Vec::with_capacity(secrets.len());
    let mut missing = false;
    for slot in slots {
        match slot {
            Some(Ok(hash)) => hashes.push(hash),
            Some(Err(e)) => return Err(e),
            // Only skipped after another secret failed; that error is returned above.
            None => missing = true,
        }
    }
    if missing {
        // Every worker stops only after recording the error that stopped it,
        // so a hole without an error means a worker vanished.
        return Err(SecretError::WorkerPanicked);
    }
    Ok(hashes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::PasswordHasher as _;

    /// Cheap parameters so the tests stay fast (the schema minimum memory).
    fn cheap() -> Argon2Params {
        Argon2Params {
            memory_kib: 8192,
            iterations: 1,
            parallelism: 1,
        }
    }

    /// The reused-memory path writes exactly the PHC string argon2's own
    /// `PasswordHasher` writes for the same salt, including after the memory
    /// held another hash.
    #[test]
    fn reused_memory_gives_the_library_s_own_phc_string() {
        let argon2 = context(&cheap()).expect("params");
        let mut memory = Memory::new(&argon2).expect("memory");
        for (secret, salt) in [("first secret", [7u8; 16]), ("second", [9u8; 16])] {
            let ours = hash_salted(&argon2, &Secret::new(secret.into()), &salt, &mut memory)
                .expect("hash");
            let theirs = argon2
                .hash_password_with_salt(secret.as_bytes(), &salt)
                .expect("library hash")
                .to_string();
            assert_eq!(ours, theirs);
            assert!(verify_secret(secret, &ours));
        }
    }

    #[test]
    fn hash_verifies_the_secret_and_not_another() {
        let secret = Secret::new("correct horse battery staple".to_string());
        let phc = hash_secret(&secret, &cheap()).expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=8192,t=1,p=1$"), "{phc}");
        assert!(!phc.contains(secret.expose()));
        assert!(verify_secret(secret.expose(), &phc));
        assert!(!verify_secret("correct horse battery stapler", &phc));
        assert!(!verify_secret("", &phc));
    }

    #[test]
    fn default_params_produce_the_owasp_phc() {
        let secret = Secret::new("s3cret".to_string());
        let phc = hash_secret(&secret, &Argon2Params::default()).expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_secret("s3cret", &phc));
    }

    #[test]
    fn same_secret_gets_different_salts() {
        let secret = Secret::new("same".to_string());
        let a = hash_secret(&secret, &cheap()).expect("hash");
        let b = hash_secret(&secret, &cheap()).expect("hash");
        assert_ne!(a, b);
        assert!(verify_secret("same", &a) && verify_secret("same", &b));
    }

    #[test]
    fn invalid_params_are_an_error_without_the_secret() {
        let secret = Secret::new("do-not-print-me".to_string());
        let bad = Argon2Params {
            memory_kib: 1,
            iterations: 0,
            parallelism: 1,
        };
        let err = hash_secret(&secret, &bad).unwrap_err();
        assert!(matches!(err, SecretError::Argon2Params { .. }), "{err}");
        assert!(!err.to_string().contains("do-not-print-me"));
        assert!(!format!("{err:?}").contains("do-not-print-me"));
        assert!(hash_all(&[&secret], &bad).is_err());
    }

    #[test]
    fn verify_rejects_garbage_other_algorithms_and_huge_costs() {
        assert!(!verify_secret("x", ""));
        assert!(!verify_secret("x", "not a hash"));
        assert!(!verify_secret("x", "$argon2id$v=19$m=8192,t=1,p=1$"));
        // A valid argon2i hash of "x" is not accepted: only argon2id is.
        let argon2i = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            argon2::Params::new(8192, 1, 1, None).expect("params"),
        );
        let phc = argon2i
            .hash_password_with_salt(b"x", &[7u8; SALT_LEN])
            .expect("hash")
            .to_string();
        assert!(phc.starts_with("$argon2i$"), "{phc}");
        assert!(!verify_secret("x", &phc));
        // The same hash relabelled argon2id does not verify either.
        let relabelled = phc.replacen("$argon2i$", "$argon2id$", 1);
        assert!(!verify_secret("x", &relabelled));
        // Costs beyond the schema's bounds are refused before any work.
        let good = hash_secret(&Secret::new("x".to_string()), &cheap()).expect("hash");
        let huge = good.replacen("m=8192", "m=4000000", 1);
        assert!(!verify_secret("x", &huge));
    }

    #[test]
    fn hash_all_keeps_input_order() {
        let secrets: Vec<Secret> = (0..7).map(|i| Secret::new(format!("secret-{i}"))).collect();
        let refs: Vec<&Secret> = secrets.iter().collect();
        let hashes = hash_all(&refs, &cheap()).expect("hash_all");
        assert_eq!(hashes.len(), secrets.len());
        for (i, phc) in hashes.iter().enumerate() {
            assert!(verify_secret(&format!("secret-{i}"), phc), "hash {i}");
            let other = (i + 1) % secrets.len();
            assert!(!verify_secret(&format!("secret-{other}"), phc), "hash {i}");
        }
        assert!(hash_all(&[], &cheap()).expect("empty").is_empty());
    }
}
