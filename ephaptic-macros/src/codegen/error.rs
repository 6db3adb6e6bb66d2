//! `#[error]`: `ServiceError` (code, message, data), the conversion into `ephaptic::Error`,
//! and the registration the TypeScript export reads.

use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::quote;
use syn::ItemStruct;

use super::data::{data_derives, describe_fn};
use super::site;
use crate::check;
use crate::ctxt::Ctxt;
use crate::model::{ErrorArgs, doc_of};
use crate::parse;

pub fn error(args: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let mut cx = Ctxt::default();
    let metas = parse::metas(args)?;
    let opts = ErrorArgs::parse(&mut cx, &metas);
    let item: ItemStruct = syn::parse2(item).map_err(|e| {
        syn::Error::new(
            e.span(),
            "#[ephaptic::error] goes on a struct whose fields are the error's data: `struct InsufficientFunds { available: u64 }`",
        )
    })?;
    match &opts.code {
        Some(code) => check::error_code(&mut cx, code),
        None => cx.push(syn::Error::new(
            Span::call_site(),
            "#[ephaptic::error] needs a code: `#[ephaptic::error(code = \"INSUFFICIENT_FUNDS\", message = \"Not enough funds.\")]`",
        )),
    }
    if !item.generics.params.is_empty() {
        cx.error(&item.generics, "#[ephaptic::error] types cannot be generic: the registry lists one data shape per code");
    }
    cx.check()?;

    let ident = &item.ident;
    let code = opts.code.expect("checked above").value();
    let opts_message_span = opts.message.clone();
    let message = opts
        .message
        .map(|m| m.value())
        .unwrap_or_else(|| "An error occurred.".to_string());
    let has_data = !matches!(item.fields, syn::Fields::Unit);
    // `message = "at most {max} characters"` fills `{field}` from the value's fields.
    let placeholders = message_fields(&message);
    let message_fn = if placeholders.is_empty() {
        quote!()
    } else {
        let mut cx = Ctxt::default();
        let fields: Vec<String> = item
            .fields
            .iter()
            .filter_map(|f| f.ident.as_ref().map(|i| i.to_string()))
            .collect();
        for p in &placeholders {
            if !fields.contains(p) {
                cx.error(
                    opts_message_span
                        .as_ref()
                        .expect("a message with placeholders was written"),
                    format_args!(
                        "`{{{p}}}` in the message names no field of `{ident}`; the fields are: {}",
                        fields.join(", ")
                    ),
                );
            }
        }
        cx.check()?;
        let idents: Vec<syn::Ident> = placeholders
            .iter()
            .map(|p| syn::Ident::new(p, Span::call_site()))
            .collect();
        quote! {
            fn message(&self) -> ::std::borrow::Cow<'static, str> {
                ::std::borrow::Cow::Owned(::std::format!(#message, #(#idents = &self.#idents),*))
            }
        }
    };
    let site = site(&ident.to_string());
    let doc = doc_of(&item.attrs);
    let derive = data_derives(&item.attrs, &["Serialize", "TS"]);
    let describe = describe_fn(ident);

    Ok(quote! {
        #derive
        #item

        impl ::ephaptic::__private::ServiceError for #ident {
            const CODE: &'static str = #code;
            const MESSAGE: &'static str = #message;
            const HAS_DATA: bool = #has_data;
            #message_fn
        }

        impl ::std::convert::From<#ident> for ::ephaptic::__private::Error {
            fn from(e: #ident) -> Self {
                ::ephaptic::__private::ServiceError::into_error(e)
            }
        }

        const _: () = {
            #describe

            static __EPHAPTIC_ERROR: ::ephaptic::__private::ErrorDef = ::ephaptic::__private::ErrorDef {
                code: #code,
                message: #message,
                site: #site,
                doc: #doc,
                data: __ephaptic_describe,
            };

            ::ephaptic::__private::inventory::submit! {
                ::ephaptic::__private::Registration::Error(&__EPHAPTIC_ERROR)
            }
        };
    })
}

/// The `{name}` placeholders of a message template (`{{` escapes a brace, as in `format!`).
fn message_fields(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
            }
            '{' => {
                let name: String = chars.by_ref().take_while(|c| *c != '}').collect();
                let name = name
                    .split(':')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                if !name.is_empty() && !out.contains(&name) {
                    out.push(name);
                }
            }
            _ => {}
        }
    }
    out
}
