//! The functions the harness calls: a few real signatures (integers at their edges, strings,
//! `Option`, `Vec`, a struct with a default, a dynamic value, a float), each written three
//! ways from one declaration: binding through the server's [`Binder`] (the fast reader, then
//! `rmp_serde`), a reference binding with `rmp_serde` alone, and a handler for the whole
//! inbound path.
//!
//! The handlers are written out here, as `#[expose]` would generate them, rather than with
//! the macro: a macro-made function registers itself at link time in every binary that links
//! ephaptic, and these must exist only where the harness registers them explicitly.

use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::handler::bind::{Binder, CallSig};
use crate::handler::defs::{Exposed, FunctionDef, Site};
use crate::handler::request::{Outcome, Request, Started};

/// A struct argument with a defaulted field, an optional one and a list.
#[derive(Debug, PartialEq, serde::Deserialize)]
pub(super) struct Item {
    title: String,
    #[serde(default)]
    urgent: bool,
    tags: Vec<String>,
    due: Option<u32>,
}

/// A reference binding: from each parameter's encoded value (`None`: not sent), the bound
/// values printed, or the parameters that did not bind.
pub(super) type Reference = fn(&[Option<&[u8]>]) -> Result<String, Vec<&'static str>>;

/// One signature, as the checks loop over them.
#[derive(Clone, Copy)]
pub(super) struct Sig {
    pub call: CallSig,
    /// Binds every parameter through `Binder::take`; the bound values, printed.
    pub bind: fn(&mut Binder<'_>) -> Option<String>,
    /// Binds with `rmp_serde` only.
    pub reference: Reference,
}

/// Decodes one parameter with `rmp_serde` alone, by the documented rule: values nested deeper
/// than `MAX_NESTING` are refused.
pub(super) fn slow<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, rmp_serde::decode::Error> {
    let mut de = rmp_serde::Deserializer::from_read_ref(bytes).with_human_readable();
    de.set_max_depth(crate::wire::MAX_NESTING);
    T::deserialize(&mut de)
}

/// A handler that binds like generated code and answers with the bound values, printed.
fn answer(req: &Request<'_>, bind: fn(&mut Binder<'_>) -> Option<String>) -> Started {
    let mut binder = req.bind();
    let bound = bind(&mut binder);
    match (binder.finish(), bound) {
        (Ok(()), Some(text)) => {
            let call = req.call();
            Started::Running(Box::pin(async move { call.reply(&text) }))
        }
        (Err(e), _) => Started::Done(Outcome::Error(e)),
        (Ok(()), None) => Started::Done(Outcome::Error(Error::internal(
            "a parameter failed to bind without an issue",
        ))),
    }
}

/// `name { param: Type, optional: Option<Type> = None, .. }`: `= value` is what a parameter
/// binds to when the call leaves it out; without it, leaving it out is an error.
macro_rules! signatures {
    ($( $handle:ident $wire:literal { $( $p:ident : $t:ty $(= $absent:expr)? ),* } )*) => {
        $(
            #[doc = concat!("The harness's `", $wire, "` function (registered explicitly).")]
            #[allow(non_camel_case_types)]
            #[derive(Debug)]
            pub struct $handle;

            impl $handle {
                const PARAMS: &'static [&'static str] = &[$(stringify!($p)),*];

                #[allow(unused_assignments, unused_mut, unused_variables)]
                fn bind(b: &mut Binder<'_>) -> Option<String> {
                    let mut i = 0usize;
                    $( let $p = b.take::<$t>(i); i += 1; )*
                    Some(format!("{:?}", ($($p?,)*)))
                }

                #[allow(unused_assignments, unused_mut, unused_variables)]
                fn reference(slots: &[Option<&[u8]>]) -> Result<String, Vec<&'static str>> {
                    let mut i = 0usize;
                    let mut failed = Vec::new();
                    $(
                        let $p: Option<$t> = match slots[i] {
                            Some(bytes) => slow::<$t>(bytes).ok(),
                            None => {
                                let absent: Option<$t> = None;
                                $( let absent: Option<$t> = Some($absent); )?
                                absent
                            }
                        };
                        if $p.is_none() {
                            failed.push(Self::PARAMS[i]);
                        }
                        i += 1;
                    )*
                    if !failed.is_empty() {
                        return Err(failed);
                    }
                    Ok(format!("{:?}", ($($p.expect("bound"),)*)))
                }

                fn shim(req: &Request<'_>) -> Started {
                    answer(req, Self::bind)
                }
            }

            impl Exposed for $handle {
                fn def() -> &'static FunctionDef {
                    static DEF: FunctionDef = FunctionDef::new(
                        $wire,
                        Site {
                            rust_name: stringify!($handle),
                            module: module_path!(),
                            file: file!(),
                            line: line!(),
                        },
                        $handle::shim,
                    )
                    .params($handle::PARAMS);
                    &DEF
                }
            }
        )*

        /// Every signature, for the checks to loop over.
        pub(super) const ALL: &[Sig] = &[$(
            Sig {
                call: CallSig { name: $wire, params: $handle::PARAMS },
                bind: $handle::bind,
                reference: $handle::reference,
            },
        )*];

        /// A server that serves every signature.
        pub(super) fn server() -> crate::Server {
            crate::Server::new()$(.register::<$handle>())*
        }
    };
}

signatures! {
    Ints "fuzz_ints" { a: i64, b: u64, c: Option<i8> = None }
    Text "fuzz_text" { s: String, tags: Vec<String>, n: Option<u32> = None }
    Record "fuzz_item" { item: Item, count: Option<u64> = None }
    Dynamic "fuzz_any" { v: rmpv::Value, f: f64, small: u8 }
    Nothing "fuzz_none" {}
}
