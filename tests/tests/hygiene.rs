//! The generated code reaches everything through absolute paths (`::ephaptic::__private`,
//! `::std`), so it must compile beside a module that shadows every name it could have used
//! relatively: the prelude's `Result`, `Ok`, `Some`, `Box`..., and the crates `serde`,
//! `inventory` and `core`.
//!
//! The data types (`#[ephaptic::error]`) sit in a sibling module that shadows less: ts-rs's
//! `TS` derive, which `#[event]`, `#[error]` and `#[model]` apply, names `String`, `Option` and
//! `std::path` relatively. That is ts-rs's code, not ours; our own output around those types is
//! still checked against the shadowed `Result`, `Ok`, `Err`, `Box`, `serde`, `inventory`, `core`.

#![allow(dead_code, non_camel_case_types)]

mod data {
    struct Result;
    struct Ok;
    struct Err;
    struct Box;
    mod serde {}
    mod inventory {}
    mod core {}

    #[ephaptic::error(code = "OUT_OF_RANGE", message = "The value is out of range.")]
    #[derive(Debug)]
    pub struct OutOfRange {
        pub max: u32,
    }

    #[ephaptic::error(code = "EMPTY")]
    #[derive(Debug)]
    pub struct Empty;
}

mod shadowed {
    pub use super::data::{Empty, OutOfRange};

    struct Result;
    struct Ok;
    struct Err;
    struct Some;
    struct None;
    struct Option;
    struct Box;
    struct Vec;
    mod serde {}
    mod inventory {}
    mod core {}

    use ephaptic::Caller;
    use futures_util::stream::{self, Stream};

    /// Adds two numbers.
    #[ephaptic::expose]
    pub async fn add(a: i64, b: i64) -> i64 {
        a + b
    }

    #[ephaptic::expose(name = "checkedDouble", requires_login)]
    pub async fn checked_double(
        caller: Caller,
        n: u32,
        limit: ::std::option::Option<u32>,
    ) -> ::std::result::Result<u32, OutOfRange> {
        let _ = caller.is_authenticated();
        let max = limit.unwrap_or(100);
        if n > max {
            ::std::result::Result::Err(OutOfRange { max })
        } else {
            ::std::result::Result::Ok(n * 2)
        }
    }

    #[ephaptic::expose]
    pub fn shout(text: ::std::string::String) -> ephaptic::Result<::std::string::String> {
        if text.is_empty() {
            return ::std::result::Result::Err(Empty.into());
        }
        ::std::result::Result::Ok(text.to_uppercase())
    }

    #[ephaptic::expose]
    pub async fn count(to: u32) -> impl Stream<Item = u32> {
        stream::iter(0..to)
    }

    #[ephaptic::expose]
    pub async fn try_count(
        to: u32,
    ) -> ::std::result::Result<impl Stream<Item = ::std::result::Result<u32, Empty>>, OutOfRange>
    {
        ::std::result::Result::Ok(stream::iter((0..to).map(::std::result::Result::Ok)))
    }

    #[ephaptic::expose]
    pub async fn nothing() {}

    pub fn callers(caller: &Caller, _value: &u32) -> ephaptic::Audience {
        let _ = caller.identity();
        ephaptic::Audience::everyone()
    }

    #[ephaptic::expose(broadcast = ["counted", "changed"], broadcast_to = callers)]
    pub async fn counted(n: u32) -> ::std::result::Result<u32, OutOfRange> {
        ::std::result::Result::Ok(n)
    }

    #[ephaptic::expose(broadcast = ["named"])]
    pub fn named(text: ::std::string::String) -> ::std::string::String {
        text
    }

    #[ephaptic::identity_loader]
    pub async fn load(
        auth: ::std::option::Option<::std::string::String>,
    ) -> ::std::option::Option<u64> {
        auth?.strip_prefix("user-")?.parse().ok()
    }
}

use ephaptic::Exposed;

#[test]
fn exposed_functions_are_recorded_with_their_names_and_parameters() {
    let add = <shadowed::add as Exposed>::def();
    assert_eq!(add.name, "add");
    assert_eq!(add.params, ["a", "b"]);
    assert_eq!(add.doc, "Adds two numbers.");
    assert!(!add.requires_login);

    let double = <shadowed::checked_double as Exposed>::def();
    assert_eq!(double.name, "checkedDouble");
    assert_eq!(
        double.params,
        ["n", "limit"],
        "the Caller parameter is not a wire parameter"
    );
    assert!(double.requires_login);
    assert_eq!(double.site.rust_name, "checked_double");
    assert!(
        double.site.module.ends_with("::shadowed"),
        "{}",
        double.site.module
    );

    assert_eq!(<shadowed::shout as Exposed>::def().params, ["text"]);
    assert_eq!(<shadowed::count as Exposed>::def().name, "count");
    assert_eq!(<shadowed::try_count as Exposed>::def().params, ["to"]);
    assert!(<shadowed::nothing as Exposed>::def().params.is_empty());
    assert_eq!(
        <shadowed::counted as Exposed>::def().channels,
        ["counted", "changed"]
    );
    assert_eq!(<shadowed::named as Exposed>::def().channels, ["named"]);

    // The explicit registration path accepts every handle.
    let _server = ephaptic::Server::new()
        .register::<shadowed::add>()
        .register::<shadowed::checked_double>()
        .register::<shadowed::shout>()
        .register::<shadowed::count>()
        .register::<shadowed::try_count>()
        .register::<shadowed::nothing>();
}

#[test]
fn error_types_convert_with_their_code_and_data() {
    let e: ephaptic::Error = shadowed::OutOfRange { max: 7 }.into();
    assert_eq!(e.code(), "OUT_OF_RANGE");
    assert_eq!(e.message(), "The value is out of range.");
    assert_eq!(
        e.data(),
        ephaptic::Value::Map(vec![("max".into(), 7.into())])
    );

    let e: ephaptic::Error = shadowed::Empty.into();
    assert_eq!(e.code(), "EMPTY");
    assert_eq!(
        e.data(),
        ephaptic::Value::Nil,
        "a unit struct carries no data"
    );
}

#[test]
fn annotated_functions_are_left_callable_as_written() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(shadowed::add(2, 3)), 5);
    assert_eq!(
        shadowed::shout("hi".to_string()).ok(),
        Some("HI".to_string())
    );
    assert_eq!(
        shadowed::shout(String::new())
            .err()
            .map(|e| e.code().to_owned()),
        Some("EMPTY".to_string())
    );
    assert_eq!(
        rt.block_on(shadowed::load(Some("user-42".to_string()))),
        Some(42)
    );
    assert_eq!(rt.block_on(shadowed::load(None)), None);
}
