//! The code each attribute writes. The user's item is re-emitted unchanged; the generated items
//! sit beside it in a `const _: () = { ... };` block, hidden, prefixed `__ephaptic_`, and reach
//! every dependency through `::ephaptic::__private`.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ItemFn, ItemStruct};

use crate::check;
use crate::ctxt::Ctxt;
use crate::model::{ErrorArgs, ExposeArgs, Function, Param};
use crate::parse;

/// Turns an expansion result into tokens: on error, the errors plus the original item, so one
/// mistake does not cascade into "cannot find function" errors elsewhere.
pub fn finish(name: &str, result: syn::Result<TokenStream2>, original: TokenStream) -> TokenStream {
    let tokens = match result {
        Ok(tokens) => tokens,
        Err(e) => {
            let original: TokenStream2 = original.into();
            let errors = e.to_compile_error();
            quote!(#errors #original)
        }
    };
    if std::env::var_os("EPHAPTIC_MACROS_DEBUG").is_some_and(|v| v != "0") {
        eprintln!("#[ephaptic::{name}] expands to:\n{tokens}\n");
    }
    tokens.into()
}

fn site(rust_name: &str) -> TokenStream2 {
    quote! {
        ::ephaptic::__private::Site {
            rust_name: #rust_name,
            module: ::std::module_path!(),
            file: ::std::file!(),
            line: ::std::line!(),
        }
    }
}

pub fn expose(args: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let mut cx = Ctxt::default();
    let metas = parse::metas(args)?;
    let opts = ExposeArgs::parse(&mut cx, &metas);
    let item: ItemFn = syn::parse2(item).map_err(|e| {
        syn::Error::new(e.span(), "#[ephaptic::expose] goes on a function: `async fn name(arg: Type) -> Result<T> { ... }`")
    })?;
    let f = Function::from_item(&mut cx, &item);
    check::exposed(&mut cx, &f);
    if let Some(name) = &opts.name
        && name.value().is_empty()
    {
        cx.error(name, "the wire name must not be empty");
    }
    cx.check()?;

    let ident = f.ident;
    let vis = &item.vis;
    let rust_name = ident.to_string();
    let wire_name = opts.name.as_ref().map(|n| n.value()).unwrap_or_else(|| rust_name.trim_start_matches("r#").to_string());
    let requires_login = opts.requires_login;
    let doc = &f.doc;
    let site = site(&rust_name);
    let call = syn::Ident::new("__ephaptic_call", Span::call_site());

    // Bind each wire parameter, then check them all at once so every problem is reported.
    let mut takes = Vec::new();
    let mut temps = Vec::new();
    let mut values = Vec::new();
    let mut names = Vec::new();
    let mut checks = Vec::new();
    let mut args = Vec::new();
    let mut contexts = Vec::new();
    let mut wire_index = 0usize;
    for (i, p) in f.params.iter().enumerate() {
        match p {
            Param::Wire { name, ty } => {
                let tmp = format_ident!("__ephaptic_arg{}", i);
                let val = format_ident!("__ephaptic_val{}", i);
                let idx = wire_index;
                wire_index += 1;
                takes.push(quote_spanned! {ty.span()=>
                    let #tmp = __ephaptic_binder.take::<#ty>(#idx);
                });
                checks.push(quote_spanned! {ty.span()=>
                    ::ephaptic::__private::assert_argument::<#ty>();
                });
                temps.push(tmp);
                values.push(val.clone());
                names.push(name.clone());
                args.push(quote!(#val));
            }
            Param::Caller { ty } => {
                // Declaring the type is also the check: a user type named `Caller` fails here
                // with "expected `Caller`, found `ephaptic::Caller`".
                let val = format_ident!("__ephaptic_ctx{}", i);
                contexts.push(quote_spanned! {ty.span()=>
                    let #val: #ty = #call.caller();
                });
                args.push(quote!(#val));
            }
        }
    }

    let invoke = if f.is_async {
        quote_spanned! {ident.span()=>
            let __ephaptic_fut = #ident(#(#args),*);
            ::ephaptic::__private::assert_send(&__ephaptic_fut);
            let __ephaptic_out = __ephaptic_fut.await;
        }
    } else {
        quote_spanned! {ident.span()=>
            let __ephaptic_out = ::ephaptic::__private::blocking(move || #ident(#(#args),*)).await;
        }
    };

    let shim = quote! {
        #[allow(clippy::all, non_snake_case, unused_variables, unused_mut)]
        fn __ephaptic_shim(#call: ::ephaptic::__private::Call)
            -> ::ephaptic::__private::BoxFuture<::ephaptic::__private::Outcome>
        {
            ::ephaptic::__private::Box::pin(async move {
                let (#(#values,)*) = {
                    let mut __ephaptic_binder = #call.bind();
                    #(#takes)*
                    match (__ephaptic_binder.finish(), #(#temps,)*) {
                        (::ephaptic::__private::Ok(()), #(::ephaptic::__private::Some(#values),)*) => (#(#values,)*),
                        (::ephaptic::__private::Err(__ephaptic_e), ..) => {
                            return ::ephaptic::__private::Outcome::Error(__ephaptic_e);
                        }
                        _ => ::std::unreachable!("every unbound parameter records an issue"),
                    }
                };
                #(#contexts)*
                #invoke
                #[allow(unused_imports)]
                use ::ephaptic::__private::{
                    ResultStreamKind as _, ResultTryStreamKind as _, ResultValueKind as _, StreamKind as _,
                    TryStreamKind as _, ValueKind as _,
                };
                let __ephaptic_tag = ::ephaptic::__private::tag(&__ephaptic_out);
                (&&&&&&__ephaptic_tag).__ephaptic_kind().outcome(__ephaptic_out, &#call)
            })
        }
    };

    Ok(quote! {
        #item

        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        #vis struct #ident {}

        const _: () = {
            #shim

            #[allow(clippy::all)]
            fn __ephaptic_checks() {
                #(#checks)*
            }

            static __EPHAPTIC_DEF: ::ephaptic::__private::FunctionDef =
                ::ephaptic::__private::FunctionDef::new(#wire_name, #site, __ephaptic_shim)
                    .params(&[#(#names),*])
                    .requires_login(#requires_login)
                    .doc(#doc);

            ::ephaptic::__private::inventory::submit! {
                ::ephaptic::__private::Registration::Function(&__EPHAPTIC_DEF)
            }

            impl ::ephaptic::__private::Exposed for #ident {
                fn def() -> &'static ::ephaptic::__private::FunctionDef {
                    &__EPHAPTIC_DEF
                }
            }
        };
    })
}

pub fn identity_loader(args: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let mut cx = Ctxt::default();
    if !args.is_empty() {
        cx.push(syn::Error::new(args.span(), "#[ephaptic::identity_loader] takes no options"));
    }
    let item: ItemFn = syn::parse2(item).map_err(|e| {
        syn::Error::new(e.span(), "#[ephaptic::identity_loader] goes on a function: `async fn load(auth: Option<Token>) -> Option<UserId>`")
    })?;
    let f = Function::from_item(&mut cx, &item);
    check::loader(&mut cx, &f);
    cx.check()?;

    let ident = f.ident;
    let site = site(&ident.to_string());
    let run = if f.is_async {
        quote!(::ephaptic::__private::run_loader(auth, #ident))
    } else {
        quote!(::ephaptic::__private::run_loader(auth, |a| ::std::future::ready(#ident(a))))
    };
    Ok(quote! {
        #item

        const _: () = {
            fn __ephaptic_loader(
                auth: ::ephaptic::__private::Option<::ephaptic::__private::Bytes>,
            ) -> ::ephaptic::__private::LoaderFuture {
                #run
            }

            static __EPHAPTIC_LOADER: ::ephaptic::__private::LoaderDef =
                ::ephaptic::__private::LoaderDef { site: #site, load: __ephaptic_loader };

            ::ephaptic::__private::inventory::submit! {
                ::ephaptic::__private::Registration::Loader(&__EPHAPTIC_LOADER)
            }
        };
    })
}

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
    let message = opts.message.map(|m| m.value()).unwrap_or_else(|| "An error occurred.".to_string());
    let has_data = !matches!(item.fields, syn::Fields::Unit);
    let site = site(&ident.to_string());
    let derive = if derives(&item.attrs, "Serialize") {
        quote!()
    } else {
        quote! {
            #[derive(::ephaptic::__private::serde::Serialize)]
            #[serde(crate = "::ephaptic::__private::serde")]
        }
    };

    Ok(quote! {
        #derive
        #item

        impl ::ephaptic::ServiceError for #ident {
            const CODE: &'static str = #code;
            const MESSAGE: &'static str = #message;
            const HAS_DATA: bool = #has_data;
        }

        impl ::std::convert::From<#ident> for ::ephaptic::Error {
            fn from(e: #ident) -> Self {
                ::ephaptic::ServiceError::into_error(e)
            }
        }

        const _: () = {
            static __EPHAPTIC_ERROR: ::ephaptic::__private::ErrorDef = ::ephaptic::__private::ErrorDef {
                code: #code,
                message: #message,
                site: #site,
            };

            ::ephaptic::__private::inventory::submit! {
                ::ephaptic::__private::Registration::Error(&__EPHAPTIC_ERROR)
            }
        };
    })
}

/// Whether the item already derives `name` (then we must not derive it again).
fn derives(attrs: &[syn::Attribute], name: &str) -> bool {
    attrs.iter().filter(|a| a.path().is_ident("derive")).any(|a| {
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
