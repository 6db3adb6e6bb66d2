//! What clients can make the server log is bounded: a line a client can cause at will (a
//! function that fails, an upgrade refused) is written in full a few times a minute and
//! counted beyond, with one line for the count; a name a client sent is quoted escaped and cut
//! short. Before, 20,000 panicking calls wrote 148 MB of log and an unknown function's name of
//! 1 MB wrote 2 MB.

use std::collections::HashMap;
use std::fmt;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How many lines of one kind are written in full per [`PERIOD`].
pub(crate) const BURST: u32 = 3;
/// The period of [`BURST`]; the count of the lines held back is written at its end.
pub(crate) const PERIOD: Duration = Duration::from_secs(60);

/// The most bytes of a client's name (a function name, a header) a log line quotes.
pub(crate) const MAX_QUOTED: usize = 64;

/// A name a client sent, as log lines quote it: escaped (`{:?}`), so that it cannot forge a
/// line, and cut after [`MAX_QUOTED`] bytes with its length, so that a megabyte of name costs
/// a line, not a megabyte.
pub(crate) struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if s.len() <= MAX_QUOTED {
            return write!(f, "{s:?}");
        }
        let mut end = MAX_QUOTED;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        write!(f, "{:?}… ({} bytes)", &s[..end], s.len())
    }
}

impl fmt::Debug for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What to do with one line of a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Write it. `unlogged` lines of its kind were held back before it and not yet counted
    /// in a line: say how many first.
    Log { unlogged: u64 },
    /// Hold it back (it is counted). `summary_in`: this is the first held back in its period,
    /// which ends then; the count is due at that time.
    Quiet { summary_in: Option<Duration> },
}

impl Verdict {
    pub fn logs(self) -> bool {
        matches!(self, Verdict::Log { .. })
    }
}

/// The first [`BURST`] lines of a kind in each [`PERIOD`] (from the first of them), and the
/// count of the rest.
#[derive(Debug, Default)]
pub(crate) struct Window {
    start: Option<Instant>,
    seen: u32,
    unlogged: u64,
}

impl Window {
    pub const fn new() -> Self {
        Window {
            start: None,
            seen: 0,
            unlogged: 0,
        }
    }

    pub fn admit(&mut self, now: Instant) -> Verdict {
        let start = match self.start {
            Some(start) if now.duration_since(start) < PERIOD => start,
            _ => {
                self.start = Some(now);
                self.seen = 0;
                now
            }
        };
        self.seen = self.seen.saturating_add(1);
        if self.seen <= BURST {
            return Verdict::Log {
                unlogged: std::mem::take(&mut self.unlogged),
            };
        }
        self.unlogged += 1;
        Verdict::Quiet {
            summary_in: (self.seen == BURST + 1)
                .then(|| PERIOD.saturating_sub(now.duration_since(start))),
        }
    }

    /// The lines held back and not yet counted in a line, once their period is over (the
    /// summary at its end); 0 before, or when the next line of the kind already counted them.
    pub fn take_unlogged(&mut self, now: Instant) -> u64 {
        match self.start {
            Some(start) if now.duration_since(start) >= PERIOD => {
                std::mem::take(&mut self.unlogged)
            }
            _ => 0,
        }
    }
}

/// A [`Window`] shared by every connection, for one kind of line.
#[derive(Debug)]
pub(crate) struct Gate(Mutex<Window>);

impl Gate {
    pub const fn new() -> Self {
        Gate(Mutex::new(Window::new()))
    }

    pub fn admit(&self) -> Verdict {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(Instant::now())
    }
}

/// A [`Window`] per function, for the lines of calls that failed (`INTERNAL`: a panic, or an
/// internal error returned). Process-wide, as the panic hook that consults it is.
static FAILURES: LazyLock<Mutex<HashMap<&'static str, Window>>> = LazyLock::new(Mutex::default);

/// Whether the failure of a call of `function`, now, is written in full.
pub(crate) fn failure(function: &'static str) -> Verdict {
    FAILURES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(function)
        .or_default()
        .admit(Instant::now())
}

/// Writes the line of a failed call of `function` as `verdict` says, or, for its first call
/// held back, arranges the count at the end of the period (when a runtime is there to wait;
/// otherwise the next line written for the function counts them).
pub(crate) fn log_failure(function: &'static str, verdict: Verdict, detail: &str) {
    match verdict {
        Verdict::Log { unlogged } => {
            if unlogged > 0 {
                tracing::error!(function, "'{function}' {}", failed_more(unlogged));
            }
            tracing::error!(function, "'{function}' failed: {detail}");
        }
        Verdict::Quiet {
            summary_in: Some(wait),
        } => {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return;
            };
            runtime.spawn(async move {
                tokio::time::sleep(wait).await;
                let unlogged = FAILURES
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_mut(function)
                    .map_or(0, |w| w.take_unlogged(Instant::now()));
                if unlogged > 0 {
                    tracing::error!(function, "'{function}' {}", failed_more(unlogged));
                }
            });
        }
        Verdict::Quiet { summary_in: None } => {}
    }
}

fn failed_more(unlogged: u64) -> String {
    format!(
        "failed {unlogged} more time(s) that were not logged: the first {BURST} failures of a \
         function per minute are"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_writes_a_burst_then_counts_and_says_how_many() {
        let mut w = Window::new();
        let t0 = Instant::now();
        for i in 0..BURST {
            let at = t0 + Duration::from_secs(u64::from(i));
            assert_eq!(w.admit(at), Verdict::Log { unlogged: 0 });
        }
        // The first held back says when its period ends; the rest say nothing.
        let at = t0 + Duration::from_secs(10);
        assert_eq!(
            w.admit(at),
            Verdict::Quiet {
                summary_in: Some(Duration::from_secs(50))
            }
        );
        for _ in 0..1000 {
            assert_eq!(w.admit(at), Verdict::Quiet { summary_in: None });
        }
        // Not counted in a line before the period is over.
        assert_eq!(w.take_unlogged(at), 0);
        let end = t0 + PERIOD;
        assert_eq!(w.take_unlogged(end), 1001);
        assert_eq!(w.take_unlogged(end), 0, "counted once");
        // A new period writes in full again.
        assert_eq!(w.admit(end), Verdict::Log { unlogged: 0 });
    }

    #[test]
    fn without_a_summary_the_next_line_counts_what_was_held_back() {
        let mut w = Window::new();
        let t0 = Instant::now();
        for _ in 0..BURST + 5 {
            w.admit(t0);
        }
        let later = t0 + PERIOD * 3;
        assert_eq!(w.admit(later), Verdict::Log { unlogged: 5 });
        assert_eq!(w.take_unlogged(later + PERIOD), 0);
    }

    #[test]
    fn names_are_escaped_and_cut() {
        assert_eq!(Quoted("add").to_string(), "\"add\"");
        assert_eq!(
            Quoted("nope\nERROR forged").to_string(),
            "\"nope\\nERROR forged\""
        );
        let long = "x".repeat(1 << 20);
        let quoted = Quoted(&long).to_string();
        assert!(quoted.len() < 100, "{quoted}");
        assert!(quoted.ends_with("… (1048576 bytes)"), "{quoted}");
        // Cut at a character, not inside one.
        let wide = "é".repeat(100);
        let quoted = Quoted(&wide).to_string();
        assert!(
            quoted.starts_with(&format!("\"{}\"…", "é".repeat(32))),
            "{quoted}"
        );
    }
}
