//! The fields `naming!(CamelCase)` does not rename: events' and models' fields are named by
//! serde in each struct's derive, so under that rule a snake_case field is most likely a
//! forgotten `#[serde(rename_all = "camelCase")]`. The export names them (`cargo ephaptic
//! export` prints them), so the mismatch is seen at the first export, not in a frontend.

use ephaptic::export::Description;

/// Each declared type with fields whose names have an underscore, and those names, in the
/// order of the declarations. Empty unless the naming rule is `CamelCase`.
pub fn snake_case_fields(desc: &Description<'_>) -> Vec<(String, Vec<String>)> {
    if desc.naming != "CamelCase" {
        return Vec::new();
    }
    desc.declarations
        .iter()
        .filter_map(|(ident, d)| {
            let names = field_names(&d.decl)
                .into_iter()
                .filter(|n| n.trim_start_matches('_').contains('_'))
                .collect::<Vec<_>>();
            (!names.is_empty()).then(|| (ident.clone(), names))
        })
        .collect()
}

/// The unquoted property names of a ts-rs declaration (`type T = { a: number, b_c?: string, }`):
/// identifiers followed by `:` or `?:`, outside string literals.
fn field_names(decl: &str) -> Vec<String> {
    let bytes = decl.as_bytes();
    let Some(open) = decl.find('{') else {
        return Vec::new();
    };
    let mut names = Vec::new();
    let mut i = open;
    let mut quote = None;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) => {
                if b == b'\\' {
                    i += 1;
                } else if b == q {
                    quote = None;
                }
                i += 1;
                continue;
            }
            None if b == b'"' || b == b'\'' || b == b'`' => {
                quote = Some(b);
                i += 1;
                continue;
            }
            None => {}
        }
        if b.is_ascii_alphabetic() || b == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let mut j = i;
            if bytes.get(j) == Some(&b'?') {
                j += 1;
            }
            // A property, not a type named in a value (`a: Foo_Bar`): what came before the
            // name is `{`, `,` or `;` (with spaces).
            let before = decl[..start].trim_end().bytes().last();
            if bytes.get(j) == Some(&b':') && matches!(before, Some(b'{' | b',' | b';')) {
                names.push(decl[start..i].to_owned());
            }
            continue;
        }
        i += 1;
    }
    names
}

#[cfg(test)]
mod tests {
    use super::field_names;

    #[test]
    fn reads_the_property_names_of_a_declaration() {
        let decl = r#"type Todo = { id: number, is_done: boolean, due_at?: string | null, note: "a_b: c", nested: { inner_field: Foo_Bar }, };"#;
        assert_eq!(
            field_names(decl),
            ["id", "is_done", "due_at", "note", "nested", "inner_field"]
        );
        assert!(field_names("type Id = number;").is_empty());
    }
}
