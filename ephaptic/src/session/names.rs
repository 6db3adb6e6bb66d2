//! The names a client can make the server keep: group names (and the streams named after
//! them), and how many groups one connection may be in. Every application join and emit checks
//! these rules, so each name costs bounded memory here and in Redis, and no application code
//! can reach the runtime's own names (`__ephaptic.`: presence watchers, reserved calls).

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// The prefix of the runtime's own names. Application joins, emits and presence calls refuse
/// it: a group under it would let a client read what the runtime keeps for others (the
/// watchers of a group's presence are the group `__ephaptic.presence:<group>`).
pub(crate) const RESERVED: &str = "__ephaptic.";

/// The longest group name that can be set: a group's stream is `g:<group>`, and a client may
/// name streams of at most 256 bytes when it resumes (`gate::MAX_STREAM_NAME`).
pub(crate) const MAX_GROUP_NAME: usize = super::gate::MAX_STREAM_NAME - 2;

/// The bounds on names (see [`Server::max_group_name_len`](crate::Server::max_group_name_len)
/// and [`Server::max_groups_per_connection`](crate::Server::max_groups_per_connection)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NameRules {
    /// The longest group name, in bytes.
    pub max_group_len: usize,
    /// The most groups one connection may be in (its presence watches not counted).
    pub max_groups: usize,
}

impl Default for NameRules {
    fn default() -> Self {
        NameRules {
            max_group_len: 200,
            max_groups: 1024,
        }
    }
}

/// Why a name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// It starts with `__ephaptic.`.
    Reserved,
    /// It is `len` bytes, more than `max`.
    TooLong { len: usize, max: usize },
    /// The connection is in `max` groups already.
    TooMany { max: usize },
}

impl NameRules {
    /// Whether `group` may be joined, emitted to or tracked in by application code.
    pub fn group(&self, group: &str) -> Result<(), Refused> {
        if group.starts_with(RESERVED) {
            return Err(Refused::Reserved);
        }
        if group.len() > self.max_group_len {
            return Err(Refused::TooLong {
                len: group.len(),
                max: self.max_group_len,
            });
        }
        Ok(())
    }
}

impl Refused {
    /// The code a client is answered with when a handler passes the refusal on.
    pub fn code(&self) -> &'static str {
        match self {
            Refused::Reserved | Refused::TooLong { .. } => "INVALID_NAME",
            Refused::TooMany { .. } => "TOO_MANY_GROUPS",
        }
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Reserved => write!(
                f,
                "Group names starting with \"{RESERVED}\" are the server's own; choose another name."
            ),
            Refused::TooLong { len, max } => write!(
                f,
                "The group name is {len} bytes, more than the {max} a group name may have \
                 (Server::max_group_name_len)."
            ),
            Refused::TooMany { max } => write!(
                f,
                "This connection is in {max} groups, the most it may \
                 (Server::max_groups_per_connection); leave one first."
            ),
        }
    }
}

/// `name` for a log line: escaped, and cut to its first 64 characters with its length, so a
/// client-chosen name cannot make a log line long.
pub(crate) fn for_log(name: &str) -> String {
    const SHOWN: usize = 64;
    match name.char_indices().nth(SHOWN) {
        None => name.escape_debug().to_string(),
        Some((at, _)) => format!("{}... ({} bytes)", name[..at].escape_debug(), name.len()),
    }
}

/// A budget of log lines: at most [`Every::LINES`] a minute per call site, so that a name or a
/// refusal a client can repeat cannot fill the log.
#[derive(Debug)]
pub(crate) struct Every {
    /// The minute (since the process started) the count is for, and the count.
    minute: AtomicU64,
    lines: AtomicU64,
}

impl Every {
    pub const LINES: u64 = 5;

    pub const fn new() -> Self {
        Every {
            minute: AtomicU64::new(0),
            lines: AtomicU64::new(0),
        }
    }

    /// Whether a line may be written now.
    pub fn ready(&self) -> bool {
        static START: OnceLock<Instant> = OnceLock::new();
        let minute = START.get_or_init(Instant::now).elapsed().as_secs() / 60 + 1;
        if self.minute.swap(minute, Relaxed) != minute {
            self.lines.store(0, Relaxed);
        }
        self.lines.fetch_add(1, Relaxed) < Self::LINES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_and_long_names_are_refused_with_the_setting_named() {
        let rules = NameRules::default();
        assert_eq!(rules.group("room:1"), Ok(()));
        assert_eq!(
            rules.group("__ephaptic.presence:room:1"),
            Err(Refused::Reserved)
        );
        let long = "x".repeat(201);
        let refused = rules.group(&long).unwrap_err();
        assert_eq!(refused, Refused::TooLong { len: 201, max: 200 });
        assert!(refused.to_string().contains("Server::max_group_name_len"));
        assert_eq!(refused.code(), "INVALID_NAME");
        assert_eq!(rules.group(&long[..200]), Ok(()));
    }

    #[test]
    fn a_log_budget_allows_a_few_lines_a_minute() {
        let every = Every::new();
        let written = (0..1000).filter(|_| every.ready()).count() as u64;
        assert_eq!(written, Every::LINES);
    }

    #[test]
    fn names_in_logs_are_cut_and_escaped() {
        assert_eq!(for_log("a\nb"), "a\\nb");
        let long = "y".repeat(1 << 20);
        let shown = for_log(&long);
        assert!(shown.len() < 100, "{shown}");
        assert!(shown.ends_with("(1048576 bytes)"));
    }
}
