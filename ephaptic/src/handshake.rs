//! What the HTTP upgrade request that opened a connection carried: its headers (cookies
//! among them), path and query, and the peer's address.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, Uri, header};

/// The HTTP request that opened a WebSocket connection: its headers (so its cookies), its path
/// and query, and the peer's address. Cheap to clone (one `Arc`).
///
/// The identity loader gets it as a second parameter (or its only one), which is how a
/// cookie-authenticated browser app finds its user; see the guide `docs/AUTH.md`:
///
/// ```
/// use ephaptic::Handshake;
///
/// #[ephaptic::identity_loader]
/// async fn load(token: Option<String>, handshake: Handshake) -> Option<String> {
///     // A token from `init.auth` (any client) first, the session cookie (browsers) after.
///     let session = token.or_else(|| handshake.cookie("session").map(str::to_owned))?;
///     session.strip_prefix("user-").map(str::to_owned)
/// }
/// ```
///
/// Handlers see it through [`Caller::handshake`](crate::Caller::handshake) only when the
/// server keeps it ([`Server::keep_handshake`](crate::Server::keep_handshake)): by default it
/// is dropped as soon as the identity loader has run, because an upgrade request may be large
/// (up to the HTTP server's header limit) and most connections never look at it again.
///
/// What it holds is copied out of the request, compactly, so it keeps nothing of the HTTP
/// server's buffers alive. The WebSocket handshake's own headers (`Connection`, `Upgrade`,
/// `Sec-WebSocket-Key`, `Sec-WebSocket-Version`, `Sec-WebSocket-Extensions`) are left out.
/// Its `Debug` output names the headers but never prints their values, so logging it leaks no
/// cookie.
#[derive(Clone)]
pub struct Handshake(Arc<Inner>);

struct Inner {
    peer: Option<SocketAddr>,
    /// The path and query, then every kept header's name (lowercase) and value, back to back.
    text: Box<[u8]>,
    /// Where the path ends, and where the query (after its `?`) ends.
    path_end: u32,
    query_end: u32,
    /// Per header: where its name starts, where its value starts and where the value ends.
    fields: Box<[(u32, u32, u32)]>,
}

/// Headers that only the WebSocket handshake itself needs.
const PLUMBING: [HeaderName; 5] = [
    header::CONNECTION,
    header::UPGRADE,
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::SEC_WEBSOCKET_EXTENSIONS,
];

impl Handshake {
    /// A handshake from a request's parts, for testing an identity loader without a server:
    ///
    /// ```
    /// use axum::http::{HeaderMap, Uri};
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert("cookie", "theme=dark; session=user-alice".parse().unwrap());
    /// let uri: Uri = "/_ephaptic?v=2".parse().unwrap();
    /// let handshake = ephaptic::Handshake::new(&headers, &uri, None);
    /// assert_eq!(handshake.cookie("session"), Some("user-alice"));
    /// assert_eq!(handshake.query(), Some("v=2"));
    /// ```
    pub fn new(headers: &HeaderMap, uri: &Uri, peer: Option<SocketAddr>) -> Handshake {
        let path = uri.path().as_bytes();
        let query = uri.query().unwrap_or_default().as_bytes();
        let kept = || headers.iter().filter(|(n, _)| !PLUMBING.contains(n));
        let size = path.len()
            + query.len()
            + kept()
                .map(|(n, v)| n.as_str().len() + v.len())
                .sum::<usize>();
        let mut text = Vec::with_capacity(size);
        text.extend_from_slice(path);
        let path_end = offset(&text);
        text.extend_from_slice(query);
        let query_end = offset(&text);
        let mut fields = Vec::with_capacity(kept().count());
        for (name, value) in kept() {
            let start = offset(&text);
            text.extend_from_slice(name.as_str().as_bytes());
            let value_start = offset(&text);
            text.extend_from_slice(value.as_bytes());
            fields.push((start, value_start, offset(&text)));
        }
        Handshake(Arc::new(Inner {
            peer,
            text: text.into_boxed_slice(),
            path_end,
            query_end,
            fields: fields.into_boxed_slice(),
        }))
    }

    /// A handshake that carried nothing (a connection opened without an HTTP request).
    pub(crate) fn empty() -> Handshake {
        Handshake::new(&HeaderMap::new(), &Uri::from_static("/"), None)
    }

    /// The peer's address, when the server knows it (as [`Caller::peer_addr`](crate::Caller::peer_addr)).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.0.peer
    }

    /// The request's path, e.g. `/_ephaptic`.
    pub fn path(&self) -> &str {
        self.text(0, self.0.path_end).unwrap_or_default()
    }

    /// The request's query string, without its `?`; `None` when there was none. Prefer
    /// `init.auth` to tokens in the query: URLs end up in access logs and browser history.
    pub fn query(&self) -> Option<&str> {
        self.text(self.0.path_end, self.0.query_end)
            .filter(|q| !q.is_empty())
    }

    /// The first value of the header `name` (any case: `"Cookie"` and `"cookie"` are the same).
    /// `None` when it is absent or its value is not UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).next()
    }

    /// Every value of the header `name`, in the order they came.
    pub fn header_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> {
        self.0
            .fields
            .iter()
            .filter_map(move |&(start, value, end)| {
                let n = &self.0.text[start as usize..value as usize];
                if n.eq_ignore_ascii_case(name.as_bytes()) {
                    self.text(value, end)
                } else {
                    None
                }
            })
    }

    /// The value of the cookie `name` from the request's `Cookie` header(s), as sent (no
    /// percent-decoding, quotes kept); the first when there are several.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.header_all("cookie")
            .flat_map(|h| h.split(';'))
            .find_map(|pair| {
                let (n, v) = pair.split_once('=')?;
                (n.trim() == name).then(|| v.trim())
            })
    }

    /// The names of the headers it holds (lowercase), for logging what a request carried
    /// without its values.
    pub fn header_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.0.fields.iter().filter_map(|&(start, value, _)| {
            std::str::from_utf8(&self.0.text[start as usize..value as usize]).ok()
        })
    }

    fn text(&self, from: u32, to: u32) -> Option<&str> {
        std::str::from_utf8(&self.0.text[from as usize..to as usize]).ok()
    }
}

/// Where the next byte goes; an upgrade request is far below 4 GiB (the HTTP server bounds it).
fn offset(text: &[u8]) -> u32 {
    u32::try_from(text.len()).expect("an HTTP request head is smaller than 4 GiB")
}

impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshake")
            .field("peer_addr", &self.peer_addr())
            .field("path", &self.path())
            .field("headers", &self.header_names().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake(pairs: &[(&'static str, &'static str)], uri: &'static str) -> Handshake {
        let mut headers = HeaderMap::new();
        for (n, v) in pairs {
            headers.append(*n, v.parse().unwrap());
        }
        Handshake::new(&headers, &Uri::from_static(uri), None)
    }

    #[test]
    fn headers_are_found_in_any_case_and_repeated_ones_in_order() {
        let h = handshake(
            &[("user-agent", "test/1"), ("x-tag", "a"), ("x-tag", "b")],
            "/_ephaptic",
        );
        assert_eq!(h.header("User-Agent"), Some("test/1"));
        assert_eq!(h.header_all("X-TAG").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(h.header("authorization"), None);
        assert_eq!(h.path(), "/_ephaptic");
        assert_eq!(h.query(), None);
    }

    #[test]
    fn cookies_are_read_from_every_cookie_header() {
        let h = handshake(
            &[("cookie", "a=1; session = s1 "), ("cookie", "b=2;c=x=y")],
            "/ws?x=1",
        );
        assert_eq!(h.cookie("a"), Some("1"));
        assert_eq!(h.cookie("session"), Some("s1"));
        assert_eq!(h.cookie("b"), Some("2"));
        assert_eq!(h.cookie("c"), Some("x=y"));
        assert_eq!(h.cookie("d"), None);
        assert_eq!(h.query(), Some("x=1"));
    }

    #[test]
    fn the_websocket_plumbing_is_left_out_and_debug_shows_no_values() {
        let h = handshake(
            &[
                ("upgrade", "websocket"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("cookie", "session=secret"),
            ],
            "/",
        );
        assert_eq!(h.header("upgrade"), None);
        assert_eq!(h.header_names().collect::<Vec<_>>(), ["cookie"]);
        let debug = format!("{h:?}");
        assert!(
            debug.contains("cookie") && !debug.contains("secret"),
            "{debug}"
        );
    }
}
