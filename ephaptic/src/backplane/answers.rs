//! Idempotent calls' answers shared by every server on one engine (docs/PROTOCOL.md 5.12), so
//! that a retry landing on another server is answered once too: one slot per function, caller
//! and key, claimed in one atomic step ([`Driver::claim`](super::driver::Driver::claim): on
//! Redis a script), then set to the answer (or let go) for the window.

use std::sync::Arc;
use std::time::Duration;

use super::Link;
use crate::handler::BoxFuture;
use crate::runtime::window::{Kept, Remote, Shared};

/// The engine's key of a slot the runtime names `function \0 caller \0 key`:
/// `ephaptic:once:<function>:<SHA-1 of caller \0 key, 40 hex digits>`, the same on every
/// server and of bounded size whatever the identity and key (a digest nobody can aim, as the
/// shared rate limiter's).
fn key_of(slot: &str) -> String {
    let (function, rest) = slot.split_once('\0').unwrap_or((slot, ""));
    let digest = sha1_smol::Sha1::from(rest).digest();
    format!("ephaptic:once:{function}:{digest}")
}

pub(super) struct Answers {
    link: Arc<Link>,
}

impl std::fmt::Debug for Answers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answers").finish_non_exhaustive()
    }
}

impl Answers {
    pub fn new(link: Arc<Link>) -> Self {
        Answers { link }
    }
}

fn ms(window: Duration) -> u64 {
    u64::try_from(window.as_millis()).unwrap_or(u64::MAX)
}

impl Shared for Answers {
    fn claim(&self, slot: String, window: Duration) -> BoxFuture<Result<Remote, ()>> {
        let link = self.link.clone();
        Box::pin(async move {
            if link.is_down() {
                // Known to be away: this server decides at once instead of waiting.
                return Err(());
            }
            match link.driver.claim(&key_of(&slot), ms(window)).await {
                Ok(None) => Ok(Remote::Mine),
                Ok(Some(held)) => Ok(Kept::decode(&held).map_or(Remote::Running, Remote::Done)),
                Err(e) => {
                    link.failed(&e);
                    Err(())
                }
            }
        })
    }

    fn renew(&self, slot: String, ttl: Duration) -> BoxFuture<()> {
        let link = self.link.clone();
        Box::pin(async move {
            if let Err(e) = link.driver.keep(&key_of(&slot), b"R", ms(ttl)).await {
                link.failed(&e);
            }
        })
    }

    fn settle(&self, slot: String, answer: Option<Kept>, window: Duration) -> BoxFuture<()> {
        let link = self.link.clone();
        Box::pin(async move {
            let value = answer.map(|a| a.encode()).unwrap_or_default();
            if let Err(e) = link.driver.keep(&key_of(&slot), &value, ms(window)).await {
                // The claim expires with the window; a repeat meanwhile waits for it.
                link.failed(&e);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_keys_are_bounded_and_the_same_everywhere() {
        let long = format!("create_todo\0s:{}\0{}", "x".repeat(1024), "k".repeat(128));
        let key = key_of(&long);
        assert!(key.starts_with("ephaptic:once:create_todo:"), "{key}");
        assert_eq!(key.len(), "ephaptic:once:create_todo:".len() + 40);
        assert_eq!(key, key_of(&long));
        assert_ne!(key_of("f\0s:a\0k1"), key_of("f\0s:a\0k2"));
        assert_ne!(key_of("f\0s:a\0k"), key_of("f\0s:b\0k"), "callers apart");
    }
}
