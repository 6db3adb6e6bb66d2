//! Errors a call answers with: `{code, message, data}` on the wire.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::Serialize;

use crate::wire::reply;

/// The error a call answers with: a `code` clients can branch on, a human `message`, and
/// optional structured `data`.
///
/// Three kinds of error reach a client:
///
/// * **Application errors** you return on purpose, with your own code:
///   `Error::new("OUT_OF_STOCK", "That item is sold out.")`, optionally `.with_data(...)`, or a
///   type declared with [`#[ephaptic::error]`](macro@crate::error) that converts into one.
/// * **Protocol errors** the runtime answers with (`NOT_FOUND`, `VALIDATION_ERROR`,
///   `UNAUTHORIZED`).
/// * **Internal errors**: anything else. Every `std::error::Error` converts into an `Error`
///   with code `INTERNAL` (so `?` works on I/O, database and parse errors), and so does a panic.
///   The client sees only `Internal server error.`; the detail goes to the server log, and onto
///   the wire only when [debug mode](crate::Server::debug) is on.
///
/// ```
/// use ephaptic::Error;
///
/// let e = Error::new("OUT_OF_STOCK", "That item is sold out.").with_data(&[3, 4]);
/// assert_eq!(e.code(), "OUT_OF_STOCK");
///
/// let internal: Error = std::io::Error::other("disk on fire").into();
/// assert_eq!(internal.code(), "INTERNAL");
/// assert_eq!(internal.message(), "Internal server error.");
/// ```
pub struct Error {
    /// Boxed, so that an `Error` is one pointer wide and a `Result<T, Error>` stays small on
    /// the success path (every call's outcome is moved through one).
    inner: Box<Inner>,
}

struct Inner {
    code: Cow<'static, str>,
    message: Cow<'static, str>,
    /// `data`, already encoded as MessagePack.
    data: Option<Bytes>,
    /// What went wrong inside the server; never sent unless debug mode is on.
    detail: Option<String>,
    /// Its log line was already decided (a panic's, when it was caught), so the call's
    /// answer does not write another.
    logged: bool,
}

/// `Result<T, ephaptic::Error>`, the usual return type of an exposed function.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) const INTERNAL: &str = "INTERNAL";
pub(crate) const INTERNAL_MESSAGE: &str = "Internal server error.";

impl Error {
    /// An application error with your own code and message. Codes are conventionally
    /// `SCREAMING_SNAKE_CASE`; avoid the runtime's own codes (`NOT_FOUND`, `VALIDATION_ERROR`,
    /// `UNAUTHORIZED`, `RATELIMIT`, `INTERNAL`).
    pub fn new(code: impl Into<Cow<'static, str>>, message: impl Into<Cow<'static, str>>) -> Self {
        Error {
            inner: Box::new(Inner {
                code: code.into(),
                message: message.into(),
                data: None,
                detail: None,
                logged: false,
            }),
        }
    }

    /// Attaches structured data, sent as the error's `data` field. A struct is sent as a map of
    /// its fields. A value that cannot be encoded turns the error into `INTERNAL`.
    pub fn with_data<T: Serialize + ?Sized>(mut self, data: &T) -> Self {
        match reply::encoded(data) {
            Ok(bytes) => self.inner.data = Some(bytes),
            Err(e) => {
                return Error::internal(format!(
                    "the data of error {} could not be encoded: {e}",
                    self.inner.code
                ));
            }
        }
        self
    }

    /// An internal error: the client sees `INTERNAL` / `Internal server error.`, and `detail`
    /// goes to the server log (and to the client in debug mode only).
    pub fn internal(detail: impl fmt::Display) -> Self {
        Error {
            inner: Box::new(Inner {
                code: Cow::Borrowed(INTERNAL),
                message: Cow::Borrowed(INTERNAL_MESSAGE),
                data: None,
                detail: Some(detail.to_string()),
                logged: false,
            }),
        }
    }

    /// `NOT_FOUND` for a function name the server does not serve.
    pub fn not_found(function: &str) -> Self {
        Error::new("NOT_FOUND", format!("Function '{function}' not found."))
    }

    /// `UNAUTHORIZED`, for a function that requires login called by an anonymous connection.
    pub fn unauthorized() -> Self {
        Error::new("UNAUTHORIZED", "Unauthorized.")
    }

    /// The error's code.
    pub fn code(&self) -> &str {
        &self.inner.code
    }

    /// The message the client sees.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// The encoded MessagePack of `data`, if any.
    pub fn data_bytes(&self) -> Option<&[u8]> {
        self.inner.data.as_deref()
    }

    /// `data` decoded into a dynamic value (nil when absent).
    pub fn data(&self) -> crate::Value {
        self.inner
            .data
            .as_deref()
            .and_then(|mut b| rmpv::decode::read_value(&mut b).ok())
            .unwrap_or(crate::Value::Nil)
    }

    /// The server-side detail of an internal error.
    pub fn detail(&self) -> Option<&str> {
        self.inner.detail.as_deref()
    }

    pub(crate) fn is_internal(&self) -> bool {
        self.inner.code == INTERNAL
    }

    /// Marks the error as logged where it arose (see `runtime::panic`).
    pub(crate) fn logged(mut self) -> Self {
        self.inner.logged = true;
        self
    }

    /// Whether the error is internal and its log line is still to be decided.
    pub(crate) fn is_unlogged_internal(&self) -> bool {
        self.is_internal() && !self.inner.logged
    }

    /// The `{id, error}` frame for this error. In debug mode an internal error carries its
    /// detail in the message.
    pub(crate) fn to_frame(&self, id: &[u8], debug: bool) -> Bytes {
        let message: Cow<'_, str> = match (&self.inner.detail, debug) {
            (Some(detail), true) => Cow::Owned(format!("{} ({detail})", self.inner.message)),
            _ => Cow::Borrowed(&self.inner.message),
        };
        reply::error_frame(id, &self.inner.code, &message, self.inner.data.as_deref())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("code", &self.inner.code)
            .field("message", &self.inner.message);
        if self.inner.data.is_some() {
            d.field("data", &self.data());
        }
        if let Some(detail) = &self.inner.detail {
            d.field("detail", detail);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.inner.code, self.inner.message)?;
        if let Some(detail) = &self.inner.detail {
            write!(f, " ({detail})")?;
        }
        Ok(())
    }
}

/// Any standard error becomes `INTERNAL`, so `?` works in handlers without leaking details.
/// (`Error` itself does not implement `std::error::Error`, the same trade `anyhow` makes, so
/// that this conversion can exist.)
impl<E> From<E> for Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(e: E) -> Self {
        Error::internal(e)
    }
}

/// A type declared with `#[ephaptic::error]`: an application error with a fixed code whose
/// fields travel as `data`. Implemented by the macro; you rarely write it by hand.
pub trait ServiceError: Serialize {
    /// The wire code, e.g. `INSUFFICIENT_FUNDS`.
    const CODE: &'static str;
    /// The default message.
    const MESSAGE: &'static str;

    /// The message for this value; the declared one unless overridden.
    fn message(&self) -> Cow<'static, str> {
        Cow::Borrowed(Self::MESSAGE)
    }

    /// Whether the value carries data (`false` for unit structs, which send `data: nil`).
    const HAS_DATA: bool = true;

    /// Converts into the wire error.
    fn into_error(self) -> Error
    where
        Self: Sized,
    {
        let e = Error::new(Self::CODE, self.message());
        if Self::HAS_DATA {
            e.with_data(&self)
        } else {
            e
        }
    }
}
