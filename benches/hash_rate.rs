//! argon2id hashing rate: single thread versus `hash_all` on all cores.
//!
//! Run with `cargo bench --bench hash_rate` (optionally `-- SINGLE PARALLEL`
//! to change the hash counts, defaults 64 and 256). Prints hashes/s for both,
//! the core count, and the scaling ratio `parallel / (cores × single)`
//! (target ≥ 0.9). Uses the default argon2 parameters (m=19456 KiB, t=2,
//! p=1). Must not: print a secret or a hash.

use std::time::Instant;

use roster::model::{Argon2Params, PasswordPolicy};
use roster::secret::{
    Secret, generate_password, hash_all, hash_all_on, hash_secret, verify_secret,
};

fn count_arg(args: &[String], index: usize, default: usize) -> Result<usize, String> {
    match args.get(index) {
        None => Ok(default),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "argument {} must be a positive hash count, got {text:?}",
                index + 1
            )),
        },
    }
}

fn run() -> Result<(), String> {
    // cargo bench passes `--bench`; ignore flags.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let single_count = count_arg(&args, 0, 64)?;
    let parallel_count = count_arg(&args, 1, 256)?;
    let params = Argon2Params::default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);

    let secrets: Vec<Secret> = (0..single_count.max(parallel_count))
        .map(|_| generate_password(&PasswordPolicy::default()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("generating passwords: {e}"))?;

    // Warm up (page in code, first allocation) outside the timings.
    let warm = hash_secret(&secrets[0], &params).map_err(|e| format!("warm-up hash: {e}"))?;
    if !verify_secret(secrets[0].expose(), &warm) {
        return Err("warm-up hash does not verify".to_string());
    }

    // The single-core rate: the same code as `hash_all`, on one worker.
    let single_refs: Vec<&Secret> = secrets[..single_count].iter().collect();
    let start = Instant::now();
    hash_all_on(&single_refs, &params, 1, &mut |_| {})
        .map_err(|e| format!("single-thread hash: {e}"))?;
    let single_secs = start.elapsed().as_secs_f64();
    let single_rate = single_count as f64 / single_secs;

    let refs: Vec<&Secret> = secrets[..parallel_count].iter().collect();
    let start = Instant::now();
    let hashes = hash_all(&refs, &params).map_err(|e| format!("hash_all: {e}"))?;
    let parallel_secs = start.elapsed().as_secs_f64();
    let parallel_rate = parallel_count as f64 / parallel_secs;
    if hashes.len() != parallel_count
        || !verify_secret(
            secrets[parallel_count - 1].expose(),
            &hashes[parallel_count - 1],
        )
    {
        return Err("hash_all returned wrong hashes".to_string());
    }

    let ratio = parallel_rate / (cores as f64 * single_rate);
    println!(
        "argon2id m={} KiB t={} p={}",
        params.memory_kib, params.iterations, params.parallelism
    );
    println!(
        "single thread: {single_count} hashes in {single_secs:.2} s = {single_rate:.1} hashes/s"
    );
    println!(
        "hash_all:      {parallel_count} hashes in {parallel_secs:.2} s = {parallel_rate:.1} hashes/s"
    );
    println!("cores: {cores}");
    println!(
        "ratio parallel / (cores x single) = {ratio:.3} (target >= 0.9{})",
        if ratio >= 0.9 { ", met" } else { ", NOT met" }
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hash_rate: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
