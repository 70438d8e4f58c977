//! argon2id hashing rate: single thread versus `hash_all` on all cores.
//!
//! Run with `cargo bench --bench hash_rate` (optionally `-- SINGLE PARALLEL
//! ROUNDS` to change the hash counts and the number of interleaved rounds,
//! defaults 64, 256 and 4). Prints hashes/s for both,
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
    let rounds = count_arg(&args, 2, 4)?;
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

    // Rounds of (single, parallel), so both rates sample the same machine:
    // this VM's single-core speed moves by up to 30% from one second to the
    // next (boost clocks, neighbours), and one long single-core measurement
    // followed by one long parallel one compares two different machines.
    // The single-core rate is the same code as `hash_all`, on one worker.
    let (mut single_secs, mut parallel_secs) = (0.0, 0.0);
    let (mut single_done, mut parallel_done) = (0usize, 0usize);
    let single_step = single_count.div_ceil(rounds);
    let parallel_step = parallel_count.div_ceil(rounds);
    for round in 0..rounds {
        let s = &secrets[(round * single_step).min(single_count)
            ..((round + 1) * single_step).min(single_count)];
        let p = &secrets[(round * parallel_step).min(parallel_count)
            ..((round + 1) * parallel_step).min(parallel_count)];
        let single_refs: Vec<&Secret> = s.iter().collect();
        let start = Instant::now();
        hash_all_on(&single_refs, &params, 1, &mut |_| {})
            .map_err(|e| format!("single-thread hash: {e}"))?;
        single_secs += start.elapsed().as_secs_f64();
        single_done += s.len();

        let refs: Vec<&Secret> = p.iter().collect();
        let start = Instant::now();
        let hashes = hash_all(&refs, &params).map_err(|e| format!("hash_all: {e}"))?;
        parallel_secs += start.elapsed().as_secs_f64();
        parallel_done += p.len();
        if hashes.len() != p.len()
            || p.last()
                .zip(hashes.last())
                .is_some_and(|(secret, hash)| !verify_secret(secret.expose(), hash))
        {
            return Err("hash_all returned wrong hashes".to_string());
        }
    }
    let (single_count, parallel_count) = (single_done, parallel_done);
    let single_rate = single_count as f64 / single_secs;
    let parallel_rate = parallel_count as f64 / parallel_secs;

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
