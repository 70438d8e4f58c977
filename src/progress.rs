//! Progress of a long apply, on stderr: an indicatif bar on a terminal, plain
//! periodic lines without one (at most one per 10% or per 5 seconds, so a
//! CI log stays short), nothing with `--quiet`. Short applies show nothing.
//!
//! It must not write to stdout (which may carry secrets or a plan) and never
//! prints anything but stage names and counts.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// An apply becomes "long", and its progress visible, after this long...
pub const SHOW_AFTER: Duration = Duration::from_secs(1);
/// ...or at once when a stage has at least this many units of work.
pub const SHOW_AT_UNITS: usize = 100;
/// Without a terminal: a line at least this often while work goes on.
pub const LINE_EVERY: Duration = Duration::from_secs(5);

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A bar redrawn in place (stderr is a terminal).
    Bar,
    /// Plain lines (stderr is a file or a pipe, e.g. a CI log).
    Lines,
    /// Nothing (`--quiet`).
    Hidden,
}

impl Mode {
    /// The mode for stderr: hidden when quiet, a bar on a terminal, lines otherwise.
    pub fn for_stderr(quiet: bool) -> Mode {
        if quiet {
            Mode::Hidden
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Lines
        }
    }
}

/// Whether a plain line is due: when `done` reaches a new tenth of `total`, or
/// when `since_last` reached [`LINE_EVERY`], and always at the end. Pure, so
/// the bound on the output is testable without a clock.
pub fn line_due(done: usize, total: usize, last_tenth: usize, since_last: Duration) -> bool {
    if total == 0 {
        return false;
    }
    done >= total || tenth(done, total) > last_tenth || since_last >= LINE_EVERY
}

fn tenth(done: usize, total: usize) -> usize {
    if total == 0 {
        return 10;
    }
    (done.min(total).saturating_mul(10)) / total
}

struct State {
    stage: &'static str,
    visible: bool,
    bar: Option<ProgressBar>,
    last_tenth: usize,
    last_line: Instant,
}

/// Reports an apply's progress; call [`Reporter::update`] from the apply's
/// progress callback and [`Reporter::finish`] when it returns.
pub struct Reporter {
    mode: Mode,
    started: Instant,
    state: Mutex<State>,
}

impl Reporter {
    pub fn new(mode: Mode) -> Reporter {
        let now = Instant::now();
        Reporter {
            mode,
            started: now,
            state: Mutex::new(State {
                stage: "",
                visible: false,
                bar: None,
                last_tenth: 0,
                last_line: now,
            }),
        }
    }

    /// `done` of `total` units of `stage` are finished.
    pub fn update(&self, stage: &'static str, done: usize, total: usize) {
        if self.mode == Mode::Hidden {
            return;
        }
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        if st.stage != stage {
            if let Some(bar) = st.bar.take() {
                bar.finish_and_clear();
            }
            st.stage = stage;
            st.visible = false;
            st.last_tenth = 0;
        }
        if !st.visible {
            if total < SHOW_AT_UNITS && self.started.elapsed() < SHOW_AFTER {
                return;
            }
            st.visible = true;
            st.last_line = Instant::now();
            match self.mode {
                Mode::Bar => {
                    let bar = ProgressBar::with_draw_target(
                        Some(total as u64),
                        ProgressDrawTarget::stderr(),
                    );
                    let style = ProgressStyle::with_template(
                        "{msg:>16} [{bar:30}] {pos}/{len} ({elapsed})",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
                    bar.set_style(style);
                    bar.set_message(stage);
                    if done < total {
                        bar.enable_steady_tick(Duration::from_millis(200));
                    }
                    st.bar = Some(bar);
                }
                Mode::Lines => {
                    st.last_tenth = tenth(done, total);
                    self.line(stage, done, total);
                    return;
                }
                Mode::Hidden => {}
            }
        }
        match self.mode {
            Mode::Bar => {
                if let Some(bar) = &st.bar {
                    bar.set_length(total as u64);
                    bar.set_position(done as u64);
                }
            }
            Mode::Lines => {
                if line_due(done, total, st.last_tenth, st.last_line.elapsed()) {
                    st.last_tenth = tenth(done, total);
                    st.last_line = Instant::now();
                    self.line(stage, done, total);
                }
            }
            Mode::Hidden => {}
        }
    }

    fn line(&self, stage: &str, done: usize, total: usize) {
        let pct = (done.saturating_mul(100)).checked_div(total).unwrap_or(100);
        let _ = writeln!(
            std::io::stderr(),
            "roster: {stage} {done}/{total} ({pct}%, {}s)",
            self.started.elapsed().as_secs()
        );
    }

    /// Clear the bar (lines need no closing).
    pub fn finish(&self) {
        if let Ok(mut st) = self.state.lock()
            && let Some(bar) = st.bar.take()
        {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counting the lines a run of `total` one-unit updates would print, with
    /// no time passing: one per tenth, so at most 10 whatever the total.
    fn lines_without_time(total: usize) -> usize {
        let mut last = 0;
        let mut n = 0;
        for done in 1..=total {
            if line_due(done, total, last, Duration::ZERO) {
                last = tenth(done, total);
                n += 1;
            }
        }
        n
    }

    #[test]
    fn plain_lines_are_bounded_by_tenths() {
        assert_eq!(lines_without_time(100_000), 10);
        assert_eq!(lines_without_time(1000), 10);
        assert_eq!(lines_without_time(7), 7);
        assert_eq!(lines_without_time(0), 0);
    }

    #[test]
    fn a_line_is_due_after_the_interval_and_at_the_end() {
        assert!(!line_due(1, 1000, 0, Duration::from_secs(1)));
        assert!(line_due(1, 1000, 0, LINE_EVERY));
        assert!(line_due(1000, 1000, 10, Duration::ZERO));
        assert!(line_due(100, 1000, 0, Duration::ZERO));
    }
}
