//! Crash consistency of `roster apply` on the file store (issue 8, item 1).
//!
//! - SIGKILL at random moments (>= 200 runs, seeded): the state file always
//!   loads and is either the state before or the state after; every new valid
//!   hash has its secret in a fully written secrets file; a re-run converges.
//! - SIGTERM / SIGINT at random moments: roster stops cleanly (exit 143/130
//!   and a message) or finishes (exit 0); the state is before-or-after, the
//!   lock is released (`--lock-timeout 0s` apply succeeds right after).
//!
//! Every loop is bounded in count; kills are delivered after bounded random
//! delays. Timings only steer where the kill lands, never what is asserted.

mod reliability_support;

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use reliability_support::{Outcome, Rng, Work, check_invariants, gen_config, mode, seed, text};

const APPLY: &[&str] = &["apply", "config", "--yes", "--allow-mass-removal"];

fn apply_args(secrets: &str) -> Vec<String> {
    let mut v: Vec<String> = APPLY.iter().map(|s| s.to_string()).collect();
    v.push("--secrets-out".into());
    v.push(secrets.into());
    v
}

/// How long a full apply of a generated config takes here (median of 3), to
/// spread the kills over the whole run.
fn calibrate(work: &Work, rng: &mut Rng) -> Duration {
    let mut times = Vec::new();
    for i in 0..3 {
        work.write_config(&gen_config(rng));
        let secrets = format!("secrets/calibrate-{i}.json");
        let args = apply_args(&secrets);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let start = Instant::now();
        let out = work.run(&args);
        times.push(start.elapsed());
        assert!(out.status.success(), "{}", text(&out));
    }
    times.sort();
    times[1]
}

/// Remove leftover temp files of killed commits, checking they were private.
fn tidy_temp_files(work: &Work) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(work.path("state")).expect("read state dir") {
        let p = e.expect("entry").path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with(".state.json.tmp-") {
            assert_eq!(mode(&p), 0o600, "leftover temp state file is not 0600");
            std::fs::remove_file(&p).expect("remove temp file");
            n += 1;
        }
    }
    n
}

#[test]
fn sigkill_at_random_moments_leaves_before_or_after_and_reruns_converge() {
    let runs: usize = std::env::var("ROSTER_CRASH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut rng = Rng::new(seed("sigkill", 0x5EED_0001));
    let work = Work::new();
    let full = calibrate(&work, &mut rng);
    let window = full.as_micros() as u64 * 13 / 10 + 1;
    let (mut before, mut after, mut leftovers, mut finished) = (0, 0, 0, 0);
    for run in 0..runs {
        work.write_config(&gen_config(&mut rng));
        let old = work.state_bytes();
        let secrets = format!("secrets/run-{run}.json");
        let args = apply_args(&secrets);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = work
            .command(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn roster");
        std::thread::sleep(Duration::from_micros(rng.below(window)));
        let _ = child.kill(); // SIGKILL; fails only if it already exited
        let status = child.wait().expect("wait");
        if status.success() {
            finished += 1;
        }
        let outcome = check_invariants(&work, old.as_deref(), &work.path(&secrets));
        leftovers += tidy_temp_files(&work);
        match outcome {
            Outcome::Before => {
                before += 1;
                // Re-run to completion: it converges, and its secrets check out.
                let old = work.state_bytes();
                let retry = format!("secrets/run-{run}-retry.json");
                let rargs = apply_args(&retry);
                let rargs: Vec<&str> = rargs.iter().map(String::as_str).collect();
                let out = work.run(&rargs);
                assert!(out.status.success(), "run {run} retry: {}", text(&out));
                let o = check_invariants(&work, old.as_deref(), &work.path(&retry));
                assert!(
                    o == Outcome::After || reliability_support::converged(&work),
                    "run {run}: the retry did not converge"
                );
            }
            Outcome::After => after += 1,
        }
        assert!(
            reliability_support::converged(&work),
            "run {run}: not converged"
        );
    }
    // The CLI agrees: nothing left to do.
    let plan = work.run(&["plan", "config", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    eprintln!(
        "sigkill: {runs} runs (full apply ~{full:?}): {before} left the state as before, {after} as after \
         ({finished} finished before the kill); {leftovers} leftover temp file(s), all 0600"
    );
}

#[test]
fn sigterm_and_sigint_stop_cleanly_and_release_the_lock() {
    let runs = 60;
    let mut rng = Rng::new(seed("sigterm", 0x5EED_0002));
    let work = Work::new();
    let full = calibrate(&work, &mut rng);
    let window = full.as_micros() as u64 * 12 / 10 + 1;
    let (mut stopped, mut finished, mut killed) = (0, 0, 0);
    for run in 0..runs {
        work.write_config(&gen_config(&mut rng));
        let old = work.state_bytes();
        let secrets = format!("secrets/term-{run}.json");
        let args = apply_args(&secrets);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let child = work
            .command(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn roster");
        let sig = if rng.chance(50) {
            libc::SIGTERM
        } else {
            libc::SIGINT
        };
        std::thread::sleep(Duration::from_micros(rng.below(window)));
        // SAFETY: plain kill(2) on our own child's pid (not yet reaped).
        unsafe { libc::kill(child.id() as libc::pid_t, sig) };
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let outcome = check_invariants(&work, old.as_deref(), &work.path(&secrets));
        match (out.status.code(), out.status.signal()) {
            (Some(code), _) if code == 128 + sig => {
                stopped += 1;
                assert_eq!(outcome, Outcome::Before, "run {run}: stopped but changed");
                let name = if sig == libc::SIGTERM {
                    "SIGTERM"
                } else {
                    "SIGINT"
                };
                assert!(
                    stderr.contains(&format!("interrupted by {name}"))
                        && stderr.contains("the store was not changed"),
                    "run {run}: {stderr}"
                );
                // Secrets written before the stop are complete (just never valid).
                let s = work.path(&secrets);
                if s.exists() {
                    assert!(
                        reliability_support::read_secrets(&s).is_some(),
                        "run {run}: half-written secrets file"
                    );
                }
            }
            (Some(0), _) => {
                finished += 1;
                assert_eq!(outcome, Outcome::After, "run {run}: exit 0 but no commit");
            }
            // Before the handler is installed the default action applies; that
            // is before the lock and before any write.
            (None, Some(s)) if s == sig => {
                killed += 1;
                assert_eq!(outcome, Outcome::Before, "run {run}: killed but changed");
                assert!(!work.path(&secrets).exists(), "run {run}: secrets written");
            }
            _ => panic!("run {run}: unexpected end: {:?}\n{stderr}", out.status),
        }
        // The lock is free right away, and a re-run converges.
        let retry = format!("secrets/term-{run}-retry.json");
        let mut rargs = apply_args(&retry);
        rargs.extend(["--lock-timeout".into(), "0s".into()]);
        let rargs: Vec<&str> = rargs.iter().map(String::as_str).collect();
        let old = work.state_bytes();
        let again = work.run(&rargs);
        assert!(again.status.success(), "run {run}: {}", text(&again));
        check_invariants(&work, old.as_deref(), &work.path(&retry));
        assert!(
            reliability_support::converged(&work),
            "run {run}: not converged"
        );
    }
    eprintln!(
        "sigterm/sigint: {runs} runs: {stopped} stopped cleanly (130/143), {finished} finished, \
         {killed} ended before the handler was installed"
    );
}
