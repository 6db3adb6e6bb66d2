//! What the TypeScript export needs to know about each function, event and error: the Rust types
//! involved, described through `ts-rs`, and the shape of each function's answer.
//!
//! The macros write, next to each item, a function that builds these descriptions on demand, so
//! nothing here costs anything unless an exporter runs. Types are classified at compile time by
//! the same "autoref" method-resolution trick as the return shapes (`handler/returns.rs`): a type with a `TS` impl
//! is described by ts-rs; one without (such as [`Value`](crate::Value)) becomes `unknown`, and
//! the exporter says so.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;

use futures_core::Stream;
use ts_rs::{Config, TS, TypeVisitor};

/// A data type made with `#[ephaptic::model]` or `#[ephaptic::event]`: the macro knows which
/// fields a client may leave out (serde `default`, `Option`) and which it may not send
/// (`skip_deserializing`), so argument types can be exported with those fields optional while
/// result and event types keep them present.
pub trait Model {
    /// Wire names of fields a client may omit.
    const INPUT_OPTIONAL: &'static [&'static str];
    /// Wire names of fields a client cannot send.
    const INPUT_OMIT: &'static [&'static str];
}

/// How one Rust type appears in TypeScript.
#[derive(Clone, Copy)]
pub struct TypeInfo {
    /// `std::any::type_name` of the Rust type, for messages.
    pub rust_name: &'static str,
    ts: Option<TsFns>,
    /// Fields a client may omit (for [`Model`] types).
    pub input_optional: &'static [&'static str],
    /// Fields a client cannot send (for [`Model`] types).
    pub input_omit: &'static [&'static str],
}

#[derive(Clone, Copy)]
struct TsFns {
    name: fn(&Config) -> String,
    collect: fn(&Config, &mut Declarations),
    is_option: bool,
}

impl fmt::Debug for TypeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypeInfo")
            .field("rust_name", &self.rust_name)
            .field("has_ts", &self.ts.is_some())
            .finish()
    }
}

impl TypeInfo {
    /// A type described by ts-rs.
    pub fn of<T: TS + 'static + ?Sized>() -> Self {
        TypeInfo {
            rust_name: std::any::type_name::<T>(),
            ts: Some(TsFns {
                name: T::name,
                collect: collect::<T>,
                is_option: T::IS_OPTION,
            }),
            input_optional: &[],
            input_omit: &[],
        }
    }

    /// A [`Model`] type: described by ts-rs, with its input-only differences.
    pub fn model<T: TS + Model + 'static>() -> Self {
        TypeInfo {
            input_optional: T::INPUT_OPTIONAL,
            input_omit: T::INPUT_OMIT,
            ..Self::of::<T>()
        }
    }

    /// A type with no TypeScript description: exported as `unknown`.
    pub fn unknown<T: ?Sized>() -> Self {
        TypeInfo {
            rust_name: std::any::type_name::<T>(),
            ts: None,
            input_optional: &[],
            input_omit: &[],
        }
    }

    /// Whether ts-rs describes this type (otherwise it is `unknown`).
    pub fn is_described(&self) -> bool {
        self.ts.is_some()
    }

    /// Whether the type is an `Option` (a parameter a client may leave out).
    pub fn is_option(&self) -> bool {
        self.ts.is_some_and(|t| t.is_option)
    }

    /// Whether arguments of this type have a different shape from results of it.
    pub fn has_input_shape(&self) -> bool {
        !self.input_optional.is_empty() || !self.input_omit.is_empty()
    }

    /// The TypeScript type expression (`number`, `Array<Item>`, `Todo | null`, `unknown`).
    pub fn ts_name(&self, cfg: &Config) -> String {
        match &self.ts {
            Some(t) => (t.name)(cfg),
            None => "unknown".into(),
        }
    }

    /// Adds the declarations this type needs (itself, if declared, and everything it uses).
    pub fn collect(&self, cfg: &Config, out: &mut Declarations) {
        if let Some(t) = &self.ts {
            (t.collect)(cfg, out);
        }
    }
}

/// TypeScript declarations by identifier, in a stable order.
#[derive(Debug, Default)]
pub struct Declarations {
    /// Identifier -> declaration.
    pub items: BTreeMap<String, Declaration>,
}

/// One exported TypeScript declaration.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Declaration {
    /// `type Item = { ... };`, as ts-rs writes it.
    pub decl: String,
    /// The Rust doc comment.
    pub docs: Option<String>,
}

fn collect<T: TS + 'static + ?Sized>(cfg: &Config, out: &mut Declarations) {
    struct Visit<'a>(&'a Config, &'a mut Declarations);
    impl TypeVisitor for Visit<'_> {
        fn visit<U: TS + 'static + ?Sized>(&mut self) {
            declare::<U>(self.0, self.1);
        }
    }
    fn declare<U: TS + 'static + ?Sized>(cfg: &Config, out: &mut Declarations) {
        // Types with a declaration of their own (derived ones) have an output path; built-in
        // types (numbers, Vec, Option) are inlined and only their parameters matter.
        if U::output_path().is_some() {
            let ident = U::ident(cfg);
            if out.items.contains_key(&ident) {
                return;
            }
            let decl = <U::WithoutGenerics as TS>::decl(cfg);
            out.items.insert(
                ident,
                Declaration {
                    decl,
                    docs: U::docs(),
                },
            );
        }
        U::visit_dependencies(&mut Visit(cfg, out));
        U::visit_generics(&mut Visit(cfg, out));
    }
    declare::<T>(cfg, out);
}

/// How a function answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Shape {
    /// One `result`.
    Value,
    /// A stream of `chunk`s.
    Stream,
}

/// A function's parameters and answer, for the exporter.
#[derive(Debug, Clone)]
pub struct Signature {
    /// Wire parameters in order.
    pub params: Vec<Param>,
    /// Value or stream.
    pub shape: Shape,
    /// The result type, or the stream's item type.
    pub output: TypeInfo,
}

/// One wire parameter.
#[derive(Debug, Clone)]
pub struct Param {
    /// The keyword name.
    pub name: &'static str,
    /// Its type.
    pub ty: TypeInfo,
}

impl Signature {
    #[doc(hidden)]
    pub fn new() -> Self {
        Signature {
            params: Vec::new(),
            shape: Shape::Value,
            output: TypeInfo::unknown::<()>(),
        }
    }

    #[doc(hidden)]
    pub fn param(&mut self, name: &'static str, ty: TypeInfo) {
        self.params.push(Param { name, ty });
    }

    #[doc(hidden)]
    pub fn returns(&mut self, shape: Shape, output: TypeInfo) {
        self.shape = shape;
        self.output = output;
    }
}

impl Default for Signature {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------------------------------------
// Compile-time classification, used by generated code.

/// Carries a type; never holds a value.
#[doc(hidden)]
pub struct TsTag<T: ?Sized>(PhantomData<fn() -> PhantomData<T>>);

impl<T: ?Sized> TsTag<T> {
    pub const fn new() -> Self {
        TsTag(PhantomData)
    }
}

impl<T: ?Sized> Default for TsTag<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: ?Sized> fmt::Debug for TsTag<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::any::type_name::<T>())
    }
}

/// The output type of an async function, from a closure that would call it (never called).
pub fn output_tag<F, Fut>(_: F) -> TsTag<Fut::Output>
where
    F: FnOnce() -> Fut,
    Fut: Future,
{
    TsTag::new()
}

/// The output type of a plain function, from a closure that would call it (never called).
pub fn sync_output_tag<F, R>(_: F) -> TsTag<R>
where
    F: FnOnce() -> R,
{
    TsTag::new()
}

/// The traits generated code brings into scope (`use kinds::*`).
/// Brings every rung of [`kinds`] into scope, for the two ladders below.
#[doc(hidden)]
#[macro_export]
macro_rules! __ephaptic_ts_kinds {
    () => {
        #[allow(unused_imports)]
        use $crate::__private::ts::kinds::{
            AnswerResult as _, AnswerResultStream as _, AnswerResultTryStream as _,
            AnswerStream as _, AnswerTryStream as _, AnswerValue as _, DescribeModel as _,
            DescribeTs as _, DescribeUnknown as _,
        };
    };
}

/// The description ladder: `describe!(TsTag::<T>::new())` (or any `TsTag` value) gives `T`'s
/// [`TypeInfo`]: through `Model` when it is one, ts-rs when it has a `TS` impl, `unknown`
/// otherwise. One `&` per `Describe*` rung of [`kinds`] above the last.
#[doc(hidden)]
#[macro_export]
macro_rules! __ephaptic_describe {
    ($tag:expr) => {{
        $crate::__ephaptic_ts_kinds!();
        (&&&$tag).__ephaptic_ts()
    }};
}

/// The answer ladder: `answer!(output_tag)` tells a function's answer shape (value, stream,
/// their `Result` forms) and the item type it describes. One `&` per `Answer*` rung above the
/// last.
#[doc(hidden)]
#[macro_export]
macro_rules! __ephaptic_answer {
    ($tag:expr) => {{
        $crate::__ephaptic_ts_kinds!();
        (&&&&&&$tag).__ephaptic_answer()
    }};
}

pub mod kinds {
    use super::*;

    /// A `Model` type with a TS description.
    pub trait DescribeModel {
        fn __ephaptic_ts(&self) -> TypeInfo;
    }
    impl<T: TS + Model + 'static> DescribeModel for &&TsTag<T> {
        fn __ephaptic_ts(&self) -> TypeInfo {
            TypeInfo::model::<T>()
        }
    }

    /// Any type with a TS description.
    pub trait DescribeTs {
        fn __ephaptic_ts(&self) -> TypeInfo;
    }
    impl<T: TS + 'static + ?Sized> DescribeTs for &TsTag<T> {
        fn __ephaptic_ts(&self) -> TypeInfo {
            TypeInfo::of::<T>()
        }
    }

    /// A type without one: `unknown`.
    pub trait DescribeUnknown {
        fn __ephaptic_ts(&self) -> TypeInfo;
    }
    impl<T: ?Sized> DescribeUnknown for TsTag<T> {
        fn __ephaptic_ts(&self) -> TypeInfo {
            TypeInfo::unknown::<T>()
        }
    }

    /// The answer's shape and the type to describe (the `Ok` value, or the stream's item).
    #[derive(Debug)]
    pub struct Answer<T: ?Sized>(pub Shape, pub TsTag<T>);

    impl<T: ?Sized> Answer<T> {
        pub fn shape(&self) -> Shape {
            self.0
        }
        pub fn inner(&self) -> TsTag<T> {
            TsTag::new()
        }
    }

    pub trait AnswerResultTryStream<T> {
        fn __ephaptic_answer(&self) -> Answer<T> {
            Answer(Shape::Stream, TsTag::new())
        }
    }
    impl<S, T, E, E2> AnswerResultTryStream<T> for &&&&&TsTag<Result<S, E>> where
        S: Stream<Item = Result<T, E2>>
    {
    }

    pub trait AnswerResultStream<T> {
        fn __ephaptic_answer(&self) -> Answer<T> {
            Answer(Shape::Stream, TsTag::new())
        }
    }
    impl<S: Stream, E> AnswerResultStream<S::Item> for &&&&TsTag<Result<S, E>> {}

    pub trait AnswerResult<T> {
        fn __ephaptic_answer(&self) -> Answer<T> {
            Answer(Shape::Value, TsTag::new())
        }
    }
    impl<T, E> AnswerResult<T> for &&&TsTag<Result<T, E>> {}

    pub trait AnswerTryStream<T> {
        fn __ephaptic_answer(&self) -> Answer<T> {
            Answer(Shape::Stream, TsTag::new())
        }
    }
    impl<S, T, E2> AnswerTryStream<T> for &&TsTag<S> where S: Stream<Item = Result<T, E2>> {}

    pub trait AnswerStream<T> {
        fn __ephaptic_answer(&self) -> Answer<T> {
            Answer(Shape::Stream, TsTag::new())
        }
    }
    impl<S: Stream> AnswerStream<S::Item> for &TsTag<S> {}

    pub trait AnswerValue<T> {
        fn __ephaptic_answer(&self) -> Answer<T> {
            Answer(Shape::Value, TsTag::new())
        }
    }
    impl<T> AnswerValue<T> for TsTag<T> {}
}
