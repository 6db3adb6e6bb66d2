//! Text helpers both outputs share: `schema.ts` (render.rs) and the JSON document (json.rs).

/// `s` as a double-quoted JSON string literal, which is also a valid TypeScript string literal:
/// `"`, `\` and control characters escaped, everything else (non-ASCII included) as is.
pub(crate) fn json_string(s: &str) -> String {
    let mut out = String::from('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::json_string;

    #[test]
    fn json_strings_escape_quotes_backslashes_and_control_characters() {
        assert_eq!(json_string("plain"), r#""plain""#);
        assert_eq!(json_string("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(
            json_string("line\nnext\ttab\u{1}"),
            r#""line\nnext\u0009tab\u0001""#
        );
        assert_eq!(json_string("ünï"), "\"ünï\"");
    }
}
