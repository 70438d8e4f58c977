//! Graceful SIGTERM / SIGINT for `roster apply`.
//!
//! [`install`] sets a handler that only records which signal arrived (an
//! atomic store: async-signal-safe) and resets the disposition to the default
//! (`SA_RESETHAND`), so a second signal ends the process at once. The executor
//! polls [`interrupted`] at its cancellation points (after taking the lock,
//! before writing the secrets, before the commit) and aborts with
//! `ApplyError::Interrupted`: the lock guard is dropped, nothing is committed,
//! and the CLI exits with 128 + the signal number (130 for SIGINT, 143 for
//! SIGTERM).
//!
//! Must not: do anything in the handler but the atomic store; be installed
//! while roster waits for the interactive confirmation (a Ctrl-C there must
//! end the process as usual). Without [`install`], [`interrupted`] is always
//! `None`, so library users are unaffected. Unix only.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicI32, Ordering};

/// The first signal received since [`install`], or 0.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// A termination signal that asked roster to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal(i32);

impl Signal {
    /// The signal number (2 for SIGINT, 15 for SIGTERM).
    pub fn number(self) -> i32 {
        self.0
    }
    /// The conventional exit status of a process stopped by this signal.
    pub fn exit_code(self) -> i32 {
        128 + self.0
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            libc::SIGINT => f.write_str("SIGINT"),
            libc::SIGTERM => f.write_str("SIGTERM"),
            n => write!(f, "signal {n}"),
        }
    }
}

extern "C" fn record(sig: libc::c_int) {
    // Keep the first one; later ones only matter through SA_RESETHAND.
    let _ = RECEIVED.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
}

/// Install the recording handler for SIGINT and SIGTERM.
pub fn install() -> io::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is a valid starting value; the handler
        // only performs an atomic store, which is async-signal-safe; `act`
        // outlives the call and the old action is not needed.
        let rc = unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = record as *const () as libc::sighandler_t;
            act.sa_flags = libc::SA_RESTART | libc::SA_RESETHAND;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(sig, &act, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The signal received since [`install`], if any.
pub fn interrupted() -> Option<Signal> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        n => Some(Signal(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_and_names() {
        assert_eq!(Signal(libc::SIGINT).exit_code(), 130);
        assert_eq!(Signal(libc::SIGTERM).exit_code(), 143);
        assert_eq!(Signal(libc::SIGTERM).to_string(), "SIGTERM");
        assert_eq!(Signal(libc::SIGINT).to_string(), "SIGINT");
    }
}
