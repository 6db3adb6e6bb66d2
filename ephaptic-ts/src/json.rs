//! The JSON document the existing ephaptic generator reads: `methods`, `events`, `errors` and
//! `definitions`, types as JSON Schema (`$ref: "#/definitions/Name"`). The types come from the
//! same ts-rs descriptions as `schema.ts`, read back through a small parser for the subset of
//! TypeScript that ts-rs writes.

use std::collections::BTreeMap;

use ephaptic::Introspection;
use ephaptic::schema::{Declarations, Shape, TypeInfo};
use ephaptic::ts_rs::Config;

use crate::text::json_string;

/// A JSON value, written with sorted-insertion maps so output is stable.
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn obj(entries: Vec<(&str, Json)>) -> Json {
        Json::Obj(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }

    fn s(v: &str) -> Json {
        Json::Str(v.to_string())
    }

    fn write(&self, out: &mut String, indent: usize) {
        let pad = "  ".repeat(indent + 1);
        let end = "  ".repeat(indent);
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Num(n) => out.push_str(&n.to_string()),
            Json::Str(s) => out.push_str(&json_string(s)),
            Json::Arr(items) if items.is_empty() => out.push_str("[]"),
            Json::Arr(items) => {
                out.push_str("[\n");
                for (i, item) in items.iter().enumerate() {
                    out.push_str(&pad);
                    item.write(out, indent + 1);
                    out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
                }
                out.push_str(&end);
                out.push(']');
            }
            Json::Obj(entries) if entries.is_empty() => out.push_str("{}"),
            Json::Obj(entries) => {
                out.push_str("{\n");
                for (i, (k, v)) in entries.iter().enumerate() {
                    out.push_str(&pad);
                    out.push_str(&json_string(k));
                    out.push_str(": ");
                    v.write(out, indent + 1);
                    out.push_str(if i + 1 < entries.len() { ",\n" } else { "\n" });
                }
                out.push_str(&end);
                out.push('}');
            }
        }
    }
}

pub(crate) fn schema(cfg: &Config, intro: &Introspection) -> String {
    let mut decls = Declarations::default();
    let type_of = |ty: &TypeInfo, decls: &mut Declarations| -> Json {
        ty.collect(cfg, decls);
        if !ty.is_described() {
            return Json::obj(vec![]);
        }
        // TypeScript has one `number`; JSON Schema (and the Kotlin generator) tell integers
        // apart, which the Rust type name still shows for a top-level integer.
        const INTEGERS: &[&str] = &[
            "i8", "i16", "i32", "i64", "i128", "isize", "u8", "u16", "u32", "u64", "u128", "usize",
        ];
        if INTEGERS.contains(&ty.rust_name) {
            return Json::obj(vec![("type", Json::s("integer"))]);
        }
        to_schema(&ty.ts_name(cfg))
    };

    let mut methods = Vec::new();
    for def in &intro.functions {
        let sig = (def.signature)();
        let mut args = Vec::new();
        let mut required = Vec::new();
        for p in &sig.params {
            args.push((p.name.to_string(), type_of(&p.ty, &mut decls)));
            if !p.ty.is_option() {
                required.push(Json::s(p.name));
            }
        }
        let ret = if sig.output.ts_name(cfg) == "null" {
            Json::Null
        } else {
            type_of(&sig.output, &mut decls)
        };
        let mut entry = vec![
            ("args", Json::Obj(args)),
            ("return", ret),
            ("required", Json::Arr(required)),
        ];
        entry.push(("stream", Json::Bool(sig.shape == Shape::Stream)));
        if !def.doc.is_empty() {
            entry.push(("description", Json::s(def.doc)));
        }
        methods.push((def.name.to_string(), Json::obj(entry)));
    }

    let mut events = Vec::new();
    for e in &intro.events {
        events.push((e.name.to_string(), type_of(&(e.ty)(), &mut decls)));
    }
    for (channel, fns) in &intro.channels {
        let ty = (fns[0].signature)().output;
        events.push((channel.to_string(), type_of(&ty, &mut decls)));
    }

    let mut errors = Vec::new();
    for e in &intro.errors {
        let data = (e.data)();
        let data = if data.ts_name(cfg) == "null" {
            Json::Null
        } else {
            type_of(&data, &mut decls)
        };
        errors.push((
            e.code.to_string(),
            Json::obj(vec![
                ("code", Json::s(e.code)),
                ("message", Json::s(e.message)),
                ("status_code", Json::Num(400.0)),
                ("data", data),
            ]),
        ));
    }

    let mut definitions = BTreeMap::new();
    for (name, decl) in &decls.items {
        if let Some(body) = declaration_body(&decl.decl) {
            let mut schema = to_schema(body);
            if let (Some(docs), Json::Obj(entries)) = (&decl.docs, &mut schema) {
                entries.push(("description".into(), Json::Str(clean_docs(docs))));
            }
            definitions.insert(name.clone(), schema);
        }
    }

    let doc = Json::obj(vec![
        ("methods", Json::Obj(methods)),
        ("events", Json::Obj(events)),
        ("errors", Json::Obj(errors)),
        ("definitions", Json::Obj(definitions.into_iter().collect())),
    ]);
    let mut out = String::new();
    doc.write(&mut out, 0);
    out.push('\n');
    out
}

/// `type X = BODY;` -> `BODY` (generic declarations are skipped: JSON Schema has no generics).
fn declaration_body(decl: &str) -> Option<&str> {
    let rest = decl.trim().strip_prefix("type ")?;
    let (head, body) = rest.split_once('=')?;
    if head.contains('<') {
        return None;
    }
    Some(body.trim().trim_end_matches(';').trim())
}

fn clean_docs(docs: &str) -> String {
    docs.lines()
        .map(|l| {
            l.trim()
                .trim_start_matches("/**")
                .trim_start_matches("*/")
                .trim_start_matches('*')
                .trim()
        })
        .filter(|l| !l.is_empty() && *l != "/")
        .collect::<Vec<_>>()
        .join("\n")
}

/// JSON Schema for a TypeScript type expression as ts-rs writes them.
fn to_schema(ts: &str) -> Json {
    let mut p = Parser {
        s: ts.as_bytes(),
        i: 0,
        doc: None,
    };
    let t = p.union();
    t.unwrap_or_else(|| Json::obj(vec![]))
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    /// The last `/** .. */` skipped: a field's docs, which ts-rs writes before its name.
    doc: Option<String>,
}

impl Parser<'_> {
    /// Skips whitespace and comments, keeping the last doc comment.
    fn ws(&mut self) {
        loop {
            while self.i < self.s.len() && (self.s[self.i] as char).is_whitespace() {
                self.i += 1;
            }
            if !self.s[self.i..].starts_with(b"/*") {
                return;
            }
            let rest = &self.s[self.i..];
            let len = rest
                .windows(2)
                .skip(2)
                .position(|w| w == b"*/")
                .map_or(rest.len(), |p| p + 4);
            let comment = String::from_utf8_lossy(&rest[..len]);
            if comment.starts_with("/**") {
                self.doc = Some(clean_docs(&comment));
            }
            self.i += len;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> Option<String> {
        self.ws();
        let start = self.i;
        while self.i < self.s.len()
            && ((self.s[self.i] as char).is_alphanumeric() || matches!(self.s[self.i], b'_' | b'$'))
        {
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn string(&mut self) -> Option<String> {
        self.ws();
        if self.s.get(self.i) != Some(&b'"') {
            return None;
        }
        self.i += 1;
        let mut out = String::new();
        while self.i < self.s.len() && self.s[self.i] != b'"' {
            if self.s[self.i] == b'\\' {
                self.i += 1;
            }
            out.push(self.s[self.i] as char);
            self.i += 1;
        }
        self.i += 1;
        Some(out)
    }

    fn union(&mut self) -> Option<Json> {
        let mut parts = vec![self.intersection()?];
        while self.eat(b'|') {
            parts.push(self.intersection()?);
        }
        Some(if parts.len() == 1 {
            parts.pop()?
        } else {
            Json::obj(vec![("anyOf", Json::Arr(parts))])
        })
    }

    fn intersection(&mut self) -> Option<Json> {
        let mut parts = vec![self.primary()?];
        while self.eat(b'&') {
            parts.push(self.primary()?);
        }
        Some(if parts.len() == 1 {
            parts.pop()?
        } else {
            Json::obj(vec![("allOf", Json::Arr(parts))])
        })
    }

    fn primary(&mut self) -> Option<Json> {
        self.ws();
        let mut t = match self.s.get(self.i)? {
            b'(' => {
                self.i += 1;
                let t = self.union();
                self.eat(b')');
                t?
            }
            b'"' => Json::obj(vec![("const", Json::Str(self.string()?))]),
            b'{' => self.object()?,
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                while !self.eat(b']') {
                    items.push(self.union()?);
                    self.eat(b',');
                }
                let n = items.len() as f64;
                Json::obj(vec![
                    ("type", Json::s("array")),
                    ("prefixItems", Json::Arr(items)),
                    ("minItems", Json::Num(n)),
                    ("maxItems", Json::Num(n)),
                ])
            }
            c if c.is_ascii_digit() || *c == b'-' => {
                let start = self.i;
                self.i += 1;
                while self.i < self.s.len()
                    && (self.s[self.i].is_ascii_digit() || self.s[self.i] == b'.')
                {
                    self.i += 1;
                }
                let n: f64 = String::from_utf8_lossy(&self.s[start..self.i])
                    .parse()
                    .ok()?;
                Json::obj(vec![("const", Json::Num(n))])
            }
            _ => {
                let name = self.ident()?;
                let mut args = Vec::new();
                if self.eat(b'<') {
                    while !self.eat(b'>') {
                        args.push(self.union()?);
                        self.eat(b',');
                    }
                }
                named(&name, args)
            }
        };
        while self.s.get(self.i) == Some(&b'[') && self.s.get(self.i + 1) == Some(&b']') {
            self.i += 2;
            t = Json::obj(vec![("type", Json::s("array")), ("items", t)]);
        }
        Some(t)
    }

    fn object(&mut self) -> Option<Json> {
        self.eat(b'{');
        let mut props = Vec::new();
        let mut required = Vec::new();
        let mut additional = None;
        loop {
            if self.eat(b'}') {
                break;
            }
            if self.eat(b'[') {
                // `{ [key in K]?: V }`: a map.
                self.ident();
                self.ident();
                self.union();
                self.eat(b']');
                self.eat(b'?');
                self.eat(b':');
                additional = Some(self.union()?);
                self.eat(b',');
                self.eat(b';');
                continue;
            }
            self.ws();
            let doc = self.doc.take();
            let key = match self.string() {
                Some(k) => k,
                None => self.ident()?,
            };
            let optional = self.eat(b'?');
            if !self.eat(b':') {
                return None;
            }
            let mut value = self.union()?;
            // A comment inside the value belongs to the value.
            self.doc = None;
            if let (Some(doc), Json::Obj(entries)) = (doc, &mut value) {
                entries.push(("description".into(), Json::Str(doc)));
            }
            if !optional {
                required.push(Json::Str(key.clone()));
            }
            props.push((key, value));
            self.eat(b',');
            self.eat(b';');
        }
        let mut entries = vec![("type", Json::s("object"))];
        if let Some(v) = additional {
            entries.push(("additionalProperties", v));
            return Some(Json::obj(entries));
        }
        entries.push(("properties", Json::Obj(props)));
        entries.push(("required", Json::Arr(required)));
        Some(Json::obj(entries))
    }
}

fn named(name: &str, mut args: Vec<Json>) -> Json {
    match name {
        "number" => Json::obj(vec![("type", Json::s("number"))]),
        "bigint" => Json::obj(vec![("type", Json::s("integer"))]),
        "string" => Json::obj(vec![("type", Json::s("string"))]),
        "boolean" => Json::obj(vec![("type", Json::s("boolean"))]),
        "null" | "void" | "undefined" => Json::obj(vec![("type", Json::s("null"))]),
        "true" => Json::obj(vec![("const", Json::Bool(true))]),
        "false" => Json::obj(vec![("const", Json::Bool(false))]),
        "unknown" | "any" => Json::obj(vec![]),
        "Array" if args.len() == 1 => {
            Json::obj(vec![("type", Json::s("array")), ("items", args.remove(0))])
        }
        "Record" if args.len() == 2 => Json::obj(vec![
            ("type", Json::s("object")),
            ("additionalProperties", args.remove(1)),
        ]),
        other => Json::obj(vec![("$ref", Json::Str(format!("#/definitions/{other}")))]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(ts: &str) -> String {
        let mut out = String::new();
        to_schema(ts).write(&mut out, 0);
        out.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn objects_keep_required_and_optional_fields() {
        assert_eq!(
            render(r#"{ id: number, "name": string, tags?: Array<string>, when: string | null, }"#),
            r#"{ "type": "object", "properties": { "id": { "type": "number" }, "name": { "type": "string" }, "tags": { "type": "array", "items": { "type": "string" } }, "when": { "anyOf": [ { "type": "string" }, { "type": "null" } ] } }, "required": [ "id", "name", "when" ] }"#
        );
    }

    #[test]
    fn field_docs_are_descriptions() {
        assert_eq!(
            render(
                "{ \n/**\n * The code.\n * @default 1\n */\ncode: number, /* plain */ message: string, }"
            ),
            r#"{ "type": "object", "properties": { "code": { "type": "number", "description": "The code.\n@default 1" }, "message": { "type": "string" } }, "required": [ "code", "message" ] }"#
        );
    }

    #[test]
    fn references_literals_and_maps() {
        assert_eq!(render("Todo"), r##"{ "$ref": "#/definitions/Todo" }"##);
        assert_eq!(
            render(r#""a" | "b""#),
            r#"{ "anyOf": [ { "const": "a" }, { "const": "b" } ] }"#
        );
        assert_eq!(
            render("{ [key in string]?: number }"),
            r#"{ "type": "object", "additionalProperties": { "type": "number" } }"#
        );
    }
}
