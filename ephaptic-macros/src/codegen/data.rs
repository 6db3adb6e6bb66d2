//! What the attributes on data types (`#[event]`, `#[error]`, `#[model]`) share: the derives,
//! `impl Model`, and the function that describes the type for the TypeScript export.

use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::model::{FieldDefault, Fields, bad_serde_default, serde_metas};

/// Whether the item already derives `name` (then we must not derive it again).
pub(super) fn derives(attrs: &[syn::Attribute], name: &str) -> bool {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("derive"))
        .any(|a| {
            let mut found = false;
            let _ = a.parse_nested_meta(|meta| {
                if meta.path.segments.last().is_some_and(|s| s.ident == name) {
                    found = true;
                }
                Ok(())
            });
            found
        })
}

/// The derives a data type needs, skipping those the user already wrote, with the crate paths
/// pointed at ephaptic's re-exports so users need no serde or ts-rs dependency of their own.
pub(super) fn data_derives(attrs: &[syn::Attribute], traits: &[&str]) -> TokenStream2 {
    let mut serde = Vec::new();
    let mut ts = false;
    for name in traits {
        if derives(attrs, name) {
            continue;
        }
        match *name {
            "TS" => ts = true,
            other => {
                let t = syn::Ident::new(other, Span::call_site());
                serde.push(quote!(::ephaptic::__private::serde::#t));
            }
        }
    }
    let mut out = TokenStream2::new();
    if !serde.is_empty() {
        out.extend(quote! {
            #[derive(#(#serde),*)]
            #[serde(crate = "::ephaptic::__private::serde")]
        });
    }
    if ts {
        out.extend(quote! {
            #[derive(::ephaptic::__private::ts_rs::TS)]
            #[ts(crate = "::ephaptic::__private::ts_rs")]
        });
    }
    out
}

/// `impl Model`: which fields an argument of this type may leave out or cannot carry.
pub(super) fn model_impl(item: &syn::DeriveInput) -> TokenStream2 {
    let ident = &item.ident;
    let (impl_generics, ty_generics, where_clause) = item.generics.split_for_impl();
    let shape = crate::model::input_shape(item);
    let optional = &shape.optional;
    let omit = &shape.omit;
    quote! {
        impl #impl_generics ::ephaptic::__private::Model for #ident #ty_generics #where_clause {
            const INPUT_OPTIONAL: &'static [&'static str] = &[#(#optional),*];
            const INPUT_OMIT: &'static [&'static str] = &[#(#omit),*];
        }
    }
}

/// `fn __ephaptic_describe()`: the type's TypeScript description, for its registration.
pub(super) fn describe_fn(ident: &syn::Ident) -> TokenStream2 {
    quote! {
        fn __ephaptic_describe() -> ::ephaptic::__private::ts::TypeInfo {
            ::ephaptic::__private::describe!(::ephaptic::__private::ts::TsTag::<#ident>::new())
        }
    }
}

/// The item as the derives see it: `#[ephaptic(..)]` removed from its fields (it is ours, and
/// no derive knows it), serde `default` keys serde cannot use left out (they were reported),
/// and each `#[ephaptic(default ..)]` turned into serde's `default` through a hidden function
/// and an `@default` line in the field's docs, which ts-rs carries into TypeScript.
pub(super) fn clean(item: &syn::DeriveInput, fields: &Fields<'_>) -> syn::DeriveInput {
    let mut out = item.clone();
    out.attrs = clean_attrs(&item.attrs);
    let ident = &item.ident;
    let (_, ty_generics, _) = item.generics.split_for_impl();
    let turbofish = ty_generics.as_turbofish();
    match &mut out.data {
        syn::Data::Struct(data) => {
            for field in data.fields.iter_mut() {
                let ours = fields
                    .defaults
                    .iter()
                    .find(|d| Some(d.ident) == field.ident.as_ref());
                let had_serde_default = has_serde_default(&field.attrs);
                field.attrs = clean_attrs(&field.attrs);
                let Some(d) = ours else { continue };
                // Given twice is an error already; serde keeps the user's.
                if had_serde_default {
                    continue;
                }
                let f = default_fn(d.ident);
                let path = quote!(#ident #turbofish :: #f).to_string();
                field
                    .attrs
                    .push(syn::parse_quote!(#[serde(default = #path)]));
                if let Some(value) = &d.value {
                    let line = format!(" @default {}", crate::model::expr_text(value));
                    field.attrs.push(syn::parse_quote!(#[doc = #line]));
                }
            }
        }
        syn::Data::Enum(data) => {
            for field in data.variants.iter_mut().flat_map(|v| v.fields.iter_mut()) {
                field.attrs = clean_attrs(&field.attrs);
            }
        }
        syn::Data::Union(_) => {}
    }
    out
}

fn has_serde_default(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        serde_metas(a)
            .unwrap_or_default()
            .iter()
            .any(|m| m.path().is_ident("default") && bad_serde_default(m).is_none())
    })
}

/// Attributes without `#[ephaptic(..)]` and without unusable serde `default` keys.
fn clean_attrs(attrs: &[syn::Attribute]) -> Vec<syn::Attribute> {
    let mut out = Vec::new();
    for attr in attrs {
        if attr.path().is_ident("ephaptic") {
            continue;
        }
        match serde_metas(attr) {
            Some(metas) if metas.iter().any(|m| bad_serde_default(m).is_some()) => {
                let kept: Vec<&syn::Meta> = metas
                    .iter()
                    .filter(|m| bad_serde_default(m).is_none())
                    .collect();
                if !kept.is_empty() {
                    let pound = attr.pound_token;
                    let bracket = attr.bracket_token;
                    let mut rebuilt: syn::Attribute = syn::parse_quote!(#[serde(#(#kept),*)]);
                    rebuilt.pound_token = pound;
                    rebuilt.bracket_token = bracket;
                    out.push(rebuilt);
                }
            }
            _ => out.push(attr.clone()),
        }
    }
    out
}

fn default_fn(field: &syn::Ident) -> syn::Ident {
    let name = field.to_string();
    format_ident!("__ephaptic_default_{}", name.trim_start_matches("r#"))
}

/// The hidden functions serde calls for missing fields, and `impl Default` with the same values
/// (the type's `Default::default()` for fields without one of ours) when `write_default`.
pub(super) fn defaults_impl(
    item: &syn::DeriveInput,
    fields: &Fields<'_>,
    write_default: bool,
) -> TokenStream2 {
    let ident = &item.ident;
    let (impl_generics, ty_generics, where_clause) = item.generics.split_for_impl();
    let mut out = TokenStream2::new();
    let value = |d: &FieldDefault<'_>| match &d.value {
        // `"x"` is the usual way to write a `String` default, so a string literal converts.
        Some(syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        })) => quote_spanned!(s.span()=> ::std::convert::Into::into(#s)),
        Some(expr) => quote!(#expr),
        None => {
            let ty = &d.field.ty;
            quote_spanned!(ty.span()=> <#ty as ::std::default::Default>::default())
        }
    };
    if !fields.defaults.is_empty() {
        let fns = fields.defaults.iter().map(|d| {
            let name = default_fn(d.ident);
            let ty = &d.field.ty;
            let value = value(d);
            quote! {
                #[doc(hidden)]
                #[allow(clippy::all)]
                fn #name() -> #ty {
                    #value
                }
            }
        });
        out.extend(quote! {
            impl #impl_generics #ident #ty_generics #where_clause {
                #(#fns)*
            }
        });
    }
    let syn::Data::Struct(data) = &item.data else {
        return out;
    };
    if !write_default {
        return out;
    }
    // A generic type's fields without a default of ours need their type's `Default`.
    let mut generics = item.generics.clone();
    let mut inits = Vec::new();
    for field in &data.fields {
        let Some(name) = &field.ident else { continue };
        match fields.defaults.iter().find(|d| d.ident == name) {
            Some(d) => {
                let f = default_fn(d.ident);
                inits.push(quote!(#name: Self::#f()));
            }
            None => {
                let ty = &field.ty;
                if !item.generics.params.is_empty() {
                    generics
                        .make_where_clause()
                        .predicates
                        .push(syn::parse_quote!(#ty: ::std::default::Default));
                }
                inits.push(
                    quote_spanned!(ty.span()=> #name: <#ty as ::std::default::Default>::default()),
                );
            }
        }
    }
    let (_, _, where_clause) = generics.split_for_impl();
    out.extend(quote! {
        impl #impl_generics ::std::default::Default for #ident #ty_generics #where_clause {
            fn default() -> Self {
                Self { #(#inits),* }
            }
        }
    });
    out
}
