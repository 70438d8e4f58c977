//! A mutation fuzzer for the loader and validator (issue 8, item 3).
//!
//! cargo-fuzz and AFL++ need a nightly toolchain or tools this machine does
//! not have, so this is a self-contained, seeded campaign: seeds are the
//! example configs and the `tests/invalid/` cases; each execution mutates one
//! (bit flips, byte and token insertion from a YAML dictionary, deletions,
//! duplications, splices, structure-aware value swaps), writes it to a file
//! in a tmpfs directory and runs the full `roster::load::load` (YAML parse,
//! JSON Schema, semantic checks, span lookup and both renderers).
//!
//! Oracles: no panic (caught and saved), no hang (a watchdog aborts the
//! process and saves the input when one execution runs longer than
//! `HANG_LIMIT`), memory bounded (max RSS checked at the end).
//!
//! - In `cargo test`: `ROSTER_FUZZ_EXECS` executions (default 4,000, a few
//!   seconds) plus every committed regression input under `tests/fuzz/`.
//! - The long campaign (outside CI), e.g. 10 million executions:
//!   `ROSTER_FUZZ_EXECS=10000000 ROSTER_FUZZ_THREADS=2 cargo test --release --test reliability_fuzz -- --nocapture`
//!   Inputs that fail are written to `target/fuzz-failures/`; commit them under
//!   `tests/fuzz/` once fixed.

mod reliability_support;

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reliability_support::Rng;

/// Wall time; generous because CI's 2 cores are shared (an alias bomb that
/// the YAML budget stops after 1M replayed events costs ~5 s CPU unoptimized).
const HANG_LIMIT: Duration = Duration::from_secs(60);
/// Max resident set size allowed at the end of a campaign.
const MAX_RSS_MIB: i64 = 2048;
/// Mutated inputs are capped at this size (the 64 MiB file limit has its own test).
const MAX_INPUT: usize = 256 * 1024;

const DICT: &[&str] = &[
    "&a ",
    "*a",
    "<<: *a\n",
    "{",
    "}",
    "[",
    "]",
    "- ",
    ": ",
    "\n  ",
    "\n    ",
    "!!str ",
    "!!binary ",
    "!tag ",
    "~",
    "null",
    "true",
    "yes",
    "1e999",
    "-1",
    "0x7f",
    "18446744073709551616",
    "'",
    "\"",
    "\\u0000",
    "#",
    "\n---\n",
    "? ",
    "|\n  ",
    ">-\n  ",
    "\t",
    "\0",
    "\u{feff}",
    "\r\n",
    "users:\n",
    "groups:\n",
    "roles:\n",
    "templates:\n",
    "settings:\n",
    "role_assignments:\n",
    "extends: ",
    "previous_names: [",
    "credentials: { password: true, token: true }",
    "authentication: sso",
    "identity_provider: x",
    "active: false",
    "protected: true",
    "max_active_users: 0",
    "groups: [g]",
    "roles: [r]",
    "user: u",
    "group: g",
    "role: r",
    "email: a@b.c",
    "display_name: X",
    "set_rights: { personal: full }",
    ".nan",
    ".inf",
    "é",
    "\u{202e}",
    "💥",
];

fn seeds() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    let mut stack = vec![root.join("examples"), root.join("tests/invalid")];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            // The alias bomb (each mutant costs seconds before the budget stops
            // it) would eat the campaign; its case is pinned by tests/invalid.
            if p.is_dir() {
                if !p.ends_with("alias-bomb") {
                    stack.push(p);
                }
            } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
                && let Ok(b) = fs::read(&p)
                && b.len() < 64 * 1024
            {
                out.push(b);
            }
        }
    }
    assert!(out.len() >= 20, "too few seeds: {}", out.len());
    out
}

fn range(rng: &mut Rng, len: usize) -> (usize, usize) {
    if len == 0 {
        return (0, 0);
    }
    let a = rng.below(len as u64) as usize;
    let n = 1 + rng.below(32.min(len - a) as u64) as usize;
    (a, a + n)
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut d = seeds[rng.below(seeds.len() as u64) as usize].clone();
    let rounds = 1 + rng.below(8);
    for _ in 0..rounds {
        let len = d.len();
        match rng.below(10) {
            0 if len > 0 => {
                let i = rng.below(len as u64) as usize;
                d[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(len as u64 + 1) as usize;
                d.insert(i, rng.below(256) as u8);
            }
            2 | 3 => {
                let i = rng.below(len as u64 + 1) as usize;
                let t = DICT[rng.below(DICT.len() as u64) as usize].as_bytes();
                d.splice(i..i, t.iter().copied());
            }
            4 if len > 0 => {
                let (a, b) = range(rng, len);
                d.drain(a..b);
            }
            5 if len > 0 => {
                let (a, b) = range(rng, len);
                let copy = d[a..b].to_vec();
                let i = rng.below(len as u64 + 1) as usize;
                d.splice(i..i, copy);
            }
            6 => {
                // Splice a piece of another seed.
                let other = &seeds[rng.below(seeds.len() as u64) as usize];
                let (a, b) = range(rng, other.len());
                let i = rng.below(len as u64 + 1) as usize;
                d.splice(i..i, other[a..b].iter().copied());
            }
            7 => {
                // Replace a value after ": " with a dictionary token.
                if let Some(pos) = find_nth(&d, b": ", rng.below(16) as usize) {
                    let start = pos + 2;
                    let end = d[start..]
                        .iter()
                        .position(|&c| c == b'\n')
                        .map_or(d.len(), |e| start + e);
                    let t = DICT[rng.below(DICT.len() as u64) as usize].as_bytes();
                    d.splice(start..end, t.iter().copied());
                }
            }
            8 if len > 0 => {
                // Repeat a line many times (wide maps, long lists).
                let (a, b) = range(rng, len);
                let copy = d[a..b].to_vec();
                for _ in 0..rng.below(200) {
                    d.extend_from_slice(&copy);
                }
            }
            _ => {
                // Change the indentation of a line.
                if let Some(pos) = find_nth(&d, b"\n", rng.below(32) as usize) {
                    let spaces = rng.below(6) as usize;
                    d.splice(pos + 1..pos + 1, std::iter::repeat_n(b' ', spaces));
                }
            }
        }
        d.truncate(MAX_INPUT);
    }
    d
}

fn find_nth(hay: &[u8], needle: &[u8], n: usize) -> Option<usize> {
    let hits: Vec<usize> = hay
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect();
    if hits.is_empty() {
        None
    } else {
        Some(hits[n % hits.len()])
    }
}

/// Run the loader on one input file, including both renderers of its diagnostics.
fn exec(dir: &Path, input: &[u8]) -> Result<(), String> {
    let path = dir.join("c.yaml");
    fs::write(&path, input).map_err(|e| format!("writing the input: {e}"))?;
    let result = catch_unwind(AssertUnwindSafe(|| {
        match roster::load::load(std::slice::from_ref(&path)) {
            Ok(_) => {}
            Err(d) => {
                let text = d.render_text(false);
                let json = d.render_json();
                assert!(!d.items.is_empty() && !text.is_empty() && !json.is_empty());
            }
        }
    }));
    result.map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())
    })
}

fn failures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-failures")
}

fn save_failure(input: &[u8], why: &str) -> PathBuf {
    let dir = failures_dir();
    let _ = fs::create_dir_all(&dir);
    use sha2::Digest;
    let name = hex::encode(&sha2::Sha256::digest(input)[..8]);
    let p = dir.join(format!("{name}.yaml"));
    let _ = fs::write(&p, input);
    let _ = fs::write(dir.join(format!("{name}.why")), why);
    p
}

fn max_rss_mib() -> i64 {
    // SAFETY: getrusage fills the zeroed struct we pass; no other preconditions.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage.ru_maxrss / 1024
}

fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(d) = tempfile::tempdir_in(shm)
    {
        return d;
    }
    tempfile::tempdir().expect("tempdir")
}

/// What a worker runs now, and since when (for the watchdog).
type Slot = Mutex<(Instant, Vec<u8>)>;

#[test]
fn fuzz_the_loader() {
    let execs: u64 = std::env::var("ROSTER_FUZZ_EXECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4_000);
    let threads: u64 = std::env::var("ROSTER_FUZZ_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .clamp(1, 16);
    let seed = reliability_support::seed("fuzz", 0xF0_22ED);
    let seeds = Arc::new(seeds());
    // Quiet the default panic message: failures are collected and reported below.
    std::panic::set_hook(Box::new(|_| {}));
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let current: Arc<Vec<Slot>> = Arc::new(
        (0..threads)
            .map(|_| Mutex::new((Instant::now(), Vec::new())))
            .collect(),
    );
    // Watchdog: a hang is saved and aborts the process.
    let watchdog = {
        let current = current.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(200));
                for slot in current.iter() {
                    let (since, input) = &*slot.lock().unwrap_or_else(|e| e.into_inner());
                    if since.elapsed() > HANG_LIMIT {
                        let p = save_failure(input, "hang");
                        eprintln!(
                            "HANG: an input ran longer than {HANG_LIMIT:?}; saved to {}",
                            p.display()
                        );
                        std::process::abort();
                    }
                }
            }
        })
    };
    let start = Instant::now();
    let failures = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let seeds = seeds.clone();
            let done = done.clone();
            let current = current.clone();
            let failures = failures.clone();
            std::thread::spawn(move || {
                let dir = scratch_dir();
                let mut rng = Rng::new(seed ^ (t + 1).wrapping_mul(0x9E37_79B9));
                let per_thread = execs / threads + u64::from(t < execs % threads);
                for _ in 0..per_thread {
                    let input = mutate(&mut rng, &seeds);
                    *current[t as usize]
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = (Instant::now(), input.clone());
                    if let Err(why) = exec(dir.path(), &input) {
                        let p = save_failure(&input, &why);
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{}: {why}", p.display()));
                    }
                    // Idle slots never count as hangs.
                    current[t as usize]
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .0 = Instant::now() + Duration::from_secs(3600);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    stop.store(true, Ordering::SeqCst);
    watchdog.join().expect("watchdog");
    let _ = std::panic::take_hook();
    let took = start.elapsed();
    let n = done.load(Ordering::Relaxed);
    let rss = max_rss_mib();
    eprintln!(
        "fuzz: {n} executions on {threads} thread(s) in {took:.1?} ({:.0}/s), max RSS {rss} MiB, {} failure(s)",
        n as f64 / took.as_secs_f64(),
        failures.lock().unwrap().len()
    );
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "loader failures:\n{}",
        failures.join("\n")
    );
    assert!(rss < MAX_RSS_MIB, "max RSS {rss} MiB");
}

/// Inputs that once failed (committed under tests/fuzz/) stay fixed.
#[test]
fn fuzz_regressions_stay_fixed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    let scratch = scratch_dir();
    let mut n = 0;
    if let Ok(entries) = fs::read_dir(&dir) {
        for e in entries {
            let p = e.expect("entry").path();
            if p.extension().and_then(|x| x.to_str()) != Some("yaml") {
                continue;
            }
            let input = fs::read(&p).expect("read");
            let start = Instant::now();
            exec(scratch.path(), &input).unwrap_or_else(|why| panic!("{}: {why}", p.display()));
            assert!(start.elapsed() < HANG_LIMIT, "{}: too slow", p.display());
            n += 1;
        }
    }
    eprintln!("{n} fuzz regression input(s) checked");
}
