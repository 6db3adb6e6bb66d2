//! What the attributes on data types (`#[event]`, `#[error]`, `#[model]`) share: the derives,
//! `impl Model`, and the function that describes the type for the TypeScript export.

use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::quote;

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
