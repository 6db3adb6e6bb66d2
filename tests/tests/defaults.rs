//! `#[ephaptic(default = ..)]`: a field the client leaves out takes the default on the wire, and
//! the generated `Default` agrees with it, over a real loopback WebSocket.

mod common;

use common::*;
use ephaptic::{Value, event, expose, model};

/// Every field has a default of ours, so `Default` is generated.
#[event]
#[derive(Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SomethingHappened {
    #[ephaptic(default = 1)]
    pub code: i64,
    #[ephaptic(default = "nothing to report")]
    pub message: String,
    #[ephaptic(default)]
    pub is_error: bool,
    #[ephaptic(default = vec![1, 2])]
    pub tags: Vec<u8>,
}

/// Only some fields have one: `default` asks for the `Default` impl anyway.
#[model(default)]
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub name: String,
    #[ephaptic(default = 30)]
    pub timeout: u32,
}

#[expose]
async fn happened(event: SomethingHappened) -> SomethingHappened {
    event
}

#[expose]
async fn settings(settings: Settings) -> Settings {
    settings
}

#[test]
fn default_agrees_with_the_wire_defaults() {
    assert_eq!(
        SomethingHappened::default(),
        SomethingHappened {
            code: 1,
            message: "nothing to report".into(),
            is_error: false,
            tags: vec![1, 2],
        }
    );
    assert_eq!(
        Settings::default(),
        Settings {
            name: String::new(),
            timeout: 30,
        }
    );
}

#[tokio::test]
async fn a_missing_field_takes_its_default() {
    let url = start(ephaptic::Server::new()).await;
    let mut c = Client::connect(&url).await;

    // Nothing sent: every field takes its default, and the reply is `Default::default()`.
    let reply = c.ok("happened", vec![map(vec![])]).await;
    let d = SomethingHappened::default();
    assert_eq!(
        reply,
        map(vec![
            ("code", Value::from(d.code)),
            ("message", Value::from(d.message.as_str())),
            ("isError", Value::from(d.is_error)),
            ("tags", Value::Array(vec![Value::from(1), Value::from(2)])),
        ])
    );

    // A field that is sent wins over its default.
    let reply = c
        .ok("happened", vec![map(vec![("code", Value::from(7))])])
        .await;
    assert_eq!(get(&reply, "code"), &Value::from(7));
    assert_eq!(get(&reply, "message"), &Value::from("nothing to report"));

    // A field without a default of ours is still required.
    let error = c.err("settings", vec![map(vec![])]).await;
    assert_eq!(get(&error, "code"), &Value::from("VALIDATION_ERROR"));
    let reply = c
        .ok("settings", vec![map(vec![("name", Value::from("a"))])])
        .await;
    assert_eq!(get(&reply, "timeout"), &Value::from(30));
}

#[test]
fn the_input_shape_marks_defaulted_fields_optional() {
    use ephaptic::__private::Model;
    assert_eq!(
        SomethingHappened::INPUT_OPTIONAL,
        ["code", "message", "isError", "tags"]
    );
    assert_eq!(Settings::INPUT_OPTIONAL, ["timeout"]);
}
