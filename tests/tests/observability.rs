//! What a running server says about itself: the start line says how events leave the server
//! (in this process, or through Redis at a URL whose password is masked), and a Redis that
//! cannot be reached at start is said so at once.

mod common;

use std::process::Command;
use std::time::Duration;

use common::child::{Parity, parity_bin};
use common::redis_server::free_port;

#[tokio::test]
async fn the_start_line_says_events_stay_in_this_process_without_redis() {
    let mut cmd = Command::new(parity_bin());
    cmd.env_remove("EPHAPTIC_REDIS_URL");
    let server = Parity::start_with(cmd, "info");
    assert!(
        server
            .wait_for_log(
                "events stay in this process (no Redis)",
                Duration::from_secs(5)
            )
            .await,
        "{}",
        server.log()
    );
}

#[tokio::test]
async fn the_start_line_names_redis_without_its_password_and_an_unreachable_one_is_said_at_once() {
    // Nothing listens on this port.
    let url = format!("redis://:s3cret@127.0.0.1:{}", free_port());
    let mut cmd = Command::new(parity_bin());
    cmd.env("EPHAPTIC_REDIS_URL", &url);
    let server = Parity::start_with(cmd, "info");
    let masked = url.replace("s3cret", "***");
    assert!(
        server
            .wait_for_log(
                &format!("events cross servers through Redis at {masked}"),
                Duration::from_secs(5)
            )
            .await,
        "{}",
        server.log()
    );
    assert!(
        server
            .wait_for_log("cannot be reached", Duration::from_secs(10))
            .await,
        "{}",
        server.log()
    );
    assert!(!server.log().contains("s3cret"), "{}", server.log());
}
