//! The inspector's HTTP side (`Server::inspector`): the page (`inspector.html`, inline script
//! and style under a strict Content-Security-Policy with a fresh nonce per response), its JSON
//! snapshot at `<path>/state` and the live trace at `<path>/trace?identity=<key>`, all behind
//! one access rule:
//!
//! - without a token, loopback peers only, asking for a loopback host name (or one listed in
//!   `Server::allowed_hosts`: a page of another site whose name points at this machine, DNS
//!   rebinding, is refused) and not through a proxy (a request carrying `Forwarded`,
//!   `X-Forwarded-For` or `X-Real-IP` came from elsewhere, whatever its peer). A peer the server
//!   cannot tell (an app served without connect info) counts as not loopback;
//! - with `Server::inspector_token`, any peer with `Authorization: Bearer <token>`, and no one
//!   without it (the page itself may be opened with `?token=`; its script sends the header).

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::runtime::State;

const PAGE: &str = include_str!("inspector.html");

/// The routes under `path`: the page (with and without a final `/`), `state` and `trace`.
pub(crate) fn paths(path: &str) -> Vec<String> {
    let base = path.trim_end_matches('/');
    let mut out = vec![format!("{base}/state"), format!("{base}/trace")];
    if base.is_empty() {
        out.push("/".to_owned());
    } else {
        out.push(base.to_owned());
        out.push(format!("{base}/"));
    }
    out
}

/// Serves the inspector's request for `uri`; `local` says whether the peer is loopback and
/// asked for a host this server answers to locally (the transport tells).
pub(crate) fn serve(state: &State, local: bool, headers: &HeaderMap, uri: &Uri) -> Response {
    let Some(path) = state.config.inspector_path.as_deref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let base = path.trim_end_matches('/');
    let rest = uri.path().strip_prefix(base).unwrap_or_default();
    let query = uri.query().unwrap_or_default();
    let page = !matches!(rest, "/state" | "/trace");
    // An empty token is no token (it must not let in whoever sends an empty one).
    let token = state
        .config
        .inspector_token
        .as_deref()
        .filter(|t| !t.is_empty());
    let allowed = match token {
        Some(token) => {
            bearer(headers).is_some_and(|t| same(t, token))
                || (page && param(query, "token").is_some_and(|t| same(&t, token)))
        }
        None => local && !proxied(headers),
    };
    if !allowed {
        let why = if token.is_some() {
            format!(
                "the inspector needs its token: send `Authorization: Bearer <token>`, or open \
                 the page as {base}?token=<token> (Server::inspector_token)"
            )
        } else {
            format!(
                "the inspector is served to loopback peers only, asking for a loopback host \
                 name, not through a proxy: open http://127.0.0.1:<port>{base} on the server's \
                 machine (an SSH tunnel will do), or set Server::inspector_token(..) and send \
                 `Authorization: Bearer <token>`"
            )
        };
        return respond(
            StatusCode::FORBIDDEN,
            "text/plain; charset=utf-8",
            why,
            None,
        );
    }
    match rest {
        "/state" => json(StatusCode::OK, crate::runtime::inspector::snapshot(state)),
        "/trace" => {
            let Some(key) = param(query, "identity") else {
                return text(
                    StatusCode::BAD_REQUEST,
                    "name the identity to trace: trace?identity=s:alice",
                );
            };
            if param(query, "stop").is_some() {
                crate::runtime::inspector::stop(state, &key);
                return json(StatusCode::OK, "{}".to_owned());
            }
            let after = param(query, "after")
                .and_then(|a| a.parse().ok())
                .unwrap_or(0);
            match crate::runtime::inspector::trace(state, &key, after) {
                Ok(body) => json(StatusCode::OK, body),
                Err(why) => text(StatusCode::BAD_REQUEST, &why),
            }
        }
        _ => {
            let nonce = nonce();
            let csp = format!(
                "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
                 connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
                 frame-ancestors 'none'"
            );
            let body = PAGE
                .replace("{{NONCE}}", &nonce)
                .replace("{{BASE}}", &escape(base));
            respond(StatusCode::OK, "text/html; charset=utf-8", body, Some(&csp))
        }
    }
}

fn json(status: StatusCode, body: String) -> Response {
    respond(status, "application/json", body, None)
}

fn text(status: StatusCode, body: &str) -> Response {
    respond(status, "text/plain; charset=utf-8", body.to_owned(), None)
}

fn respond(status: StatusCode, kind: &'static str, body: String, csp: Option<&str>) -> Response {
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The page's address may hold its token.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if let Some(csp) = csp.and_then(|c| HeaderValue::from_str(c).ok()) {
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    response
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Whether a proxy forwarded the request (its peer is the proxy, not the client).
fn proxied(headers: &HeaderMap) -> bool {
    ["forwarded", "x-forwarded-for", "x-real-ip"]
        .iter()
        .any(|h| headers.contains_key(*h))
}

/// Compares a presented token with the server's without stopping at the first difference.
fn same(given: &str, token: &str) -> bool {
    let (a, b) = (given.as_bytes(), token.as_bytes());
    let mut diff = a.len() ^ b.len();
    for (i, x) in b.iter().enumerate() {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ x);
    }
    diff == 0
}

/// The first value of `name` in a query string, percent-decoded.
fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k) == name).then(|| decode(v))
    })
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `s` safe inside an HTML attribute.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&#39;")
}

/// A fresh value for the page's Content-Security-Policy nonce: 128 bits from two randomly
/// keyed hashes of a counter and the time.
fn nonce() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let word = || {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(n);
        h.write_u128(t);
        h.finish()
    };
    format!("{:016x}{:016x}", word(), word())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_tokens_and_markup_are_read_and_written_safely() {
        assert_eq!(
            param("identity=s%3Aal+ice&after=3", "identity").as_deref(),
            Some("s:al ice")
        );
        assert_eq!(param("after=3", "identity"), None);
        assert_eq!(param("stop", "stop").as_deref(), Some(""));
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz%4"), "%zz%4");
        assert_eq!(decode("%E2%9C%93"), "✓");
        assert!(same("s3cret", "s3cret"));
        assert!(!same("s3cre", "s3cret"));
        assert!(!same("s3cretx", "s3cret"));
        assert!(!same("", "s3cret"));
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer  abc ".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        assert_eq!(escape(r#"/x"><script>"#), "/x&quot;&gt;&lt;script&gt;");
        assert_ne!(nonce(), nonce());
        assert_eq!(
            paths("/_inspect/"),
            [
                "/_inspect/state",
                "/_inspect/trace",
                "/_inspect",
                "/_inspect/"
            ]
        );
    }
}
