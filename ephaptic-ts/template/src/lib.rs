//! The app: what the frontend can call and listen for. Everything marked here is found by
//! ephaptic on its own (no list to keep); `src/main.rs` serves it, and
//! `cargo ephaptic export web/src/schema.ts` types it for the frontend.

use ephaptic::{Caller, event, expose, model};

// Every function is called in camelCase (`send_message` as `sendMessage`): the server and the
// exported schema.ts both read this one line.
ephaptic::naming!(CamelCase);

/// A chat message.
#[model]
#[derive(Debug, Clone)]
pub struct Message {
    /// Who sent it ("anonymous" without a login).
    pub author: String,
    pub text: String,
}

/// Sent to everyone when someone connects.
#[event]
#[derive(Debug, Clone)]
pub struct Joined {
    /// How many connections the server has now.
    pub online: usize,
}

/// Sends a message to everyone. `broadcast` makes the returned message a channel,
/// `messageSent`, that every client can listen for.
#[expose(broadcast = ["messageSent"])]
pub async fn send_message(caller: Caller, text: String) -> Message {
    let author = caller
        .identity()
        .map_or_else(|| "anonymous".to_string(), |id| id.to_string());
    Message { author, text }
}

/// The server's settings; `main` serves it. Add origins, limits, an identity loader here.
pub fn server() -> ephaptic::Server {
    ephaptic::Server::new().on_connect(|_caller| async {
        let online = ephaptic::metrics().map_or(0, |m| m.connections);
        ephaptic::emit(Joined { online }).await;
    })
}
