//! The code each attribute writes. The user's item is re-emitted unchanged; the generated items
//! sit beside it in a `const _: () = { ... };` block, hidden, prefixed `__ephaptic_`, and reach
//! every dependency through `::ephaptic::__private`.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ItemFn, ItemStruct, ReturnType};

use crate::check;
use crate::ctxt::Ctxt;
use crate::model::{ErrorArgs, EventArgs, ExposeArgs, Function, Param, doc_of};
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

/// A span that reports errors at the user's token but resolves names like the rest of the
/// generated code, so generated locals still see each other when the user's tokens come from
/// a `macro_rules!` expansion (whose hygiene they carry).
fn at(span: Span) -> Span {
    Span::call_site().located_at(span)
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
    check::broadcast(&mut cx, &opts);
    if let Some(name) = &opts.name
        && name.value().is_empty()
    {
        cx.error(name, "the wire name must not be empty");
    }
    cx.check()?;

    let ident = f.ident;
    let vis = &item.vis;
    let rust_name = ident.to_string();
    let wire_name = opts
        .name
        .as_ref()
        .map(|n| n.value())
        .unwrap_or_else(|| rust_name.trim_start_matches("r#").to_string());
    let requires_login = opts.requires_login;
    let explicit_name = opts.name.is_some();
    let rate_limit = match opts.rate_limit {
        Some((calls, seconds)) => quote!(.rate_limit(#calls, #seconds)),
        None => quote!(),
    };
    let doc = &f.doc;
    let site = site(&rust_name);
    let call = syn::Ident::new("__ephaptic_call", Span::call_site());
    let req = syn::Ident::new("__ephaptic_req", Span::call_site());

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
                takes.push(quote_spanned! {at(ty.span())=>
                    let #tmp = __ephaptic_binder.take::<#ty>(#idx);
                });
                checks.push(quote_spanned! {at(ty.span())=>
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
                contexts.push(quote_spanned! {at(ty.span())=>
                    let #val: #ty = #req.caller();
                });
                args.push(quote!(#val));
            }
        }
    }

    let invoke = if f.is_async {
        quote_spanned! {at(ident.span())=>
            let __ephaptic_fut = #ident(#(#args),*);
            ::ephaptic::__private::assert_send(&__ephaptic_fut);
            let __ephaptic_out = __ephaptic_fut.await;
        }
    } else {
        quote_spanned! {at(ident.span())=>
            let __ephaptic_out = ::ephaptic::__private::blocking(move || #ident(#(#args),*)).await;
        }
    };

    // Spanned at the return type, so a type that fits no return shape is reported there.
    let ret_span = match &item.sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => ident.span(),
    };
    let dispatch = quote_spanned! {at(ret_span)=>
        (&&&&&&&__ephaptic_tag).__ephaptic_kind().outcome(__ephaptic_out, &#call)
    };

    // Channels: announce the `Ok` value (or the plain value) before the reply is queued.
    let channels: Vec<String> = opts
        .broadcast
        .as_ref()
        .map(|(_, c)| c.iter().map(|l| l.value()).collect())
        .unwrap_or_default();
    let announce = if channels.is_empty() {
        quote!()
    } else {
        // The user's function is passed as it is (not wrapped in a closure), so a wrong
        // signature is reported once, at the path, with the signature rustc expected.
        let prepare = match &opts.broadcast_to {
            Some((_, path)) => quote_spanned! {at(ret_span)=>
                prepare(&__ephaptic_out, &__ephaptic_caller, #path)
            },
            None => quote_spanned! {at(ret_span)=>
                prepare_everyone(&__ephaptic_out)
            },
        };
        quote_spanned! {at(ret_span)=>
            {
                #[allow(unused_imports)]
                use ::ephaptic::__private::{
                    AnnounceAnyKind as _, AnnounceResultAnyKind as _, AnnounceResultKind as _,
                    AnnounceResultStreamKind as _, AnnounceStreamKind as _, AnnounceValueKind as _,
                };
                let __ephaptic_tag = ::ephaptic::__private::tag(&__ephaptic_out);
                // Bound first, so that only the value is held across the `.await`.
                let __ephaptic_announced = (&&&&&__ephaptic_tag).__ephaptic_announce_kind().#prepare;
                if let ::ephaptic::__private::Some((__ephaptic_value, __ephaptic_audience)) =
                    __ephaptic_announced
                {
                    ::ephaptic::__private::announce(
                        __ephaptic_value,
                        &__ephaptic_audience,
                        &[#(#channels),*],
                    )
                    .await;
                }
            }
        }
    };

    // `broadcast_to` picks its audience from the caller's context.
    let announce_caller = if opts.broadcast_to.is_some() && !channels.is_empty() {
        quote!(let __ephaptic_caller = #req.caller();)
    } else {
        quote!()
    };

    // The arguments are bound before the function's future is made, so the future holds only
    // the bound values and a small `Call` (the id and the function), not the frame.
    let shim = quote! {
        #[allow(clippy::all, non_snake_case, unused_variables, unused_mut)]
        fn __ephaptic_shim(#req: &::ephaptic::__private::Request<'_>)
            -> ::ephaptic::__private::Started
        {
            let (#(#values,)*) = {
                // In the same body as the `take`s, so that rustc reports only this
                // check's readable error at each bad parameter.
                #(#checks)*
                let mut __ephaptic_binder = #req.bind();
                #(#takes)*
                match (__ephaptic_binder.finish(), #(#temps,)*) {
                    (::ephaptic::__private::Ok(()), #(::ephaptic::__private::Some(#values),)*) => (#(#values,)*),
                    (::ephaptic::__private::Err(__ephaptic_e), ..) => {
                        return ::ephaptic::__private::Started::Done(
                            ::ephaptic::__private::Outcome::Error(__ephaptic_e),
                        );
                    }
                    _ => ::std::unreachable!("every unbound parameter records an issue"),
                }
            };
            #(#contexts)*
            #announce_caller
            let #call = #req.call();
            ::ephaptic::__private::Started::Running(::ephaptic::__private::Box::pin(async move {
                #invoke
                #announce
                #[allow(unused_imports)]
                use ::ephaptic::__private::{
                    ResultStreamKind as _, ResultTryStreamKind as _, ResultValueKind as _, StreamKind as _,
                    TryStreamKind as _, ResultAnyKind as _, UnreturnableKind as _, UnreturnableResult as _, UnreturnableStream as _,
                    UnreturnableValue as _,
                    ValueKind as _,
                };
                let __ephaptic_tag = ::ephaptic::__private::tag(&__ephaptic_out);
                #dispatch
            }))
        }
    };

    // The signature the TypeScript export reads. The output type comes from a closure that
    // would call the function (it is never called), so `impl Stream` return types work too.
    let sig_params: Vec<TokenStream2> = f
        .wire_params()
        .map(|(name, ty)| {
            quote! {
                __ephaptic_sig.param(#name, (&&&::ephaptic::__private::ts::TsTag::<#ty>::new()).__ephaptic_ts());
            }
        })
        .collect();
    let holes: Vec<TokenStream2> = f
        .params
        .iter()
        .map(|_| quote!(::std::unreachable!()))
        .collect();
    let output_tag = if f.is_async {
        quote!(::ephaptic::__private::ts::output_tag(|| #ident(#(#holes),*)))
    } else {
        quote!(::ephaptic::__private::ts::sync_output_tag(|| #ident(#(#holes),*)))
    };
    let signature = quote! {
        #[allow(unreachable_code, unused_variables, clippy::all)]
        fn __ephaptic_signature() -> ::ephaptic::__private::ts::Signature {
            #[allow(unused_imports)]
            use ::ephaptic::__private::ts::kinds::{
                AnswerResult as _, AnswerResultStream as _, AnswerResultTryStream as _, AnswerStream as _,
                AnswerTryStream as _, AnswerValue as _, DescribeModel as _, DescribeTs as _, DescribeUnknown as _,
            };
            let mut __ephaptic_sig = ::ephaptic::__private::ts::Signature::new();
            #(#sig_params)*
            let __ephaptic_output = #output_tag;
            let __ephaptic_answer = (&&&&&&__ephaptic_output).__ephaptic_answer();
            let __ephaptic_inner = __ephaptic_answer.inner();
            __ephaptic_sig.returns(__ephaptic_answer.shape(), (&&&__ephaptic_inner).__ephaptic_ts());
            __ephaptic_sig
        }
    };

    Ok(quote! {
        #item

        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        #vis struct #ident {}

        const _: () = {
            #shim

            #signature

            static __EPHAPTIC_DEF: ::ephaptic::__private::FunctionDef =
                ::ephaptic::__private::FunctionDef::new(#wire_name, #site, __ephaptic_shim)
                    .explicit_name(#explicit_name)
                    #rate_limit
                    .params(&[#(#names),*])
                    .requires_login(#requires_login)
                    .channels(&[#(#channels),*])
                    .signature(__ephaptic_signature)
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
        cx.error(
            &args,
            "#[ephaptic::identity_loader] takes no options; write `#[ephaptic::identity_loader]`",
        );
    }
    let item: ItemFn = syn::parse2(item).map_err(|e| {
        syn::Error::new(e.span(), "#[ephaptic::identity_loader] goes on a function: `async fn load(auth: Option<Token>) -> Option<UserId>`")
    })?;
    let f = Function::from_item(&mut cx, &item);
    check::loader(&mut cx, &f);
    cx.check()?;

    let ident = f.ident;
    let site = site(&ident.to_string());
    // Naming the parameter type lets rustc report a non-`Deserialize` one there; the call
    // itself is spanned at the return type, where an unusable output is reported.
    let auth_ty = f
        .wire_params()
        .next()
        .map(|(_, ty)| ty)
        .expect("checked above");
    let ret_span = match &item.sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => ident.span(),
    };
    let run = if f.is_async {
        quote_spanned! {at(ret_span)=>
            ::ephaptic::__private::run_loader::<#auth_ty, _, _>(auth, #ident)
        }
    } else {
        quote_spanned! {at(ret_span)=>
            ::ephaptic::__private::run_loader::<#auth_ty, _, _>(auth, |a| ::std::future::ready(#ident(a)))
        }
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

    Ok(quote! {
            #derive
            #item

            impl ::ephaptic::ServiceError for #ident {
                const CODE: &'static str = #code;
                const MESSAGE: &'static str = #message;
                const HAS_DATA: bool = #has_data;
                #message_fn
            }

            impl ::std::convert::From<#ident> for ::ephaptic::Error {
                fn from(e: #ident) -> Self {
                    ::ephaptic::ServiceError::into_error(e)
                }
            }

            const _: () = {
    fn __ephaptic_describe() -> ::ephaptic::__private::ts::TypeInfo {
                    #[allow(unused_imports)]
                    use ::ephaptic::__private::ts::kinds::{DescribeModel as _, DescribeTs as _, DescribeUnknown as _};
                    (&&&::ephaptic::__private::ts::TsTag::<#ident>::new()).__ephaptic_ts()
                }

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

/// Whether the item already derives `name` (then we must not derive it again).
fn derives(attrs: &[syn::Attribute], name: &str) -> bool {
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

pub fn event(args: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let mut cx = Ctxt::default();
    let metas = parse::metas(args)?;
    let opts = EventArgs::parse(&mut cx, &metas);
    let item: syn::DeriveInput = syn::parse2(item).map_err(|e| {
        syn::Error::new(
            e.span(),
            "#[ephaptic::event] goes on a struct whose fields are the event's data: `struct Pong { ok: bool }`",
        )
    })?;
    check::event(&mut cx, &item);
    if let Some(name) = &opts.name
        && name.value().is_empty()
    {
        cx.error(
            name,
            "the event name must not be empty: write e.g. `name = \"todoCreated\"`, or leave `name` out to use the type's name",
        );
    }
    let derive = data_derives(&item.attrs, &["Serialize", "Deserialize", "TS"]);
    if let Err(e) = cx.check() {
        // The item keeps its derives (a union gets none), so its `#[serde(..)]` and `#[ts(..)]`
        // attributes still resolve and the mistakes above are the only errors.
        let errors = e.to_compile_error();
        let derive = match item.data {
            syn::Data::Union(_) => quote!(),
            _ => derive,
        };
        return Ok(quote!(#errors #derive #item));
    }

    let ident = &item.ident;
    let name = opts
        .name
        .map(|n| n.value())
        .unwrap_or_else(|| ident.to_string());
    let site = site(&ident.to_string());
    let doc = doc_of(&item.attrs);
    let model = model_impl(&item);

    Ok(quote! {
            #derive
            #item

            impl ::ephaptic::Event for #ident {
                const NAME: &'static str = #name;
            }

            #model

            const _: () = {
    fn __ephaptic_describe() -> ::ephaptic::__private::ts::TypeInfo {
                    #[allow(unused_imports)]
                    use ::ephaptic::__private::ts::kinds::{DescribeModel as _, DescribeTs as _, DescribeUnknown as _};
                    (&&&::ephaptic::__private::ts::TsTag::<#ident>::new()).__ephaptic_ts()
                }

                static __EPHAPTIC_EVENT: ::ephaptic::__private::EventDef = ::ephaptic::__private::EventDef {
                    name: #name,
                    site: #site,
                    doc: #doc,
                    ty: __ephaptic_describe,
                };

                ::ephaptic::__private::inventory::submit! {
                    ::ephaptic::__private::Registration::Event(&__EPHAPTIC_EVENT)
                }
            };
        })
}

/// The derives a data type needs, skipping those the user already wrote, with the crate paths
/// pointed at ephaptic's re-exports so users need no serde or ts-rs dependency of their own.
fn data_derives(attrs: &[syn::Attribute], traits: &[&str]) -> TokenStream2 {
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
fn model_impl(item: &syn::DeriveInput) -> TokenStream2 {
    let ident = &item.ident;
    let (impl_generics, ty_generics, where_clause) = item.generics.split_for_impl();
    let shape = crate::model::input_shape(item);
    let optional = &shape.optional;
    let omit = &shape.omit;
    quote! {
        impl #impl_generics ::ephaptic::Model for #ident #ty_generics #where_clause {
            const INPUT_OPTIONAL: &'static [&'static str] = &[#(#optional),*];
            const INPUT_OMIT: &'static [&'static str] = &[#(#omit),*];
        }
    }
}

pub fn model(args: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    if !args.is_empty() {
        return Err(syn::Error::new(
            args.span(),
            "#[ephaptic::model] takes no options; use serde and ts-rs attributes on the type for renames and defaults",
        ));
    }
    let item: syn::DeriveInput = syn::parse2(item).map_err(|e| {
        syn::Error::new(e.span(), "#[ephaptic::model] goes on a struct or an enum: `#[ephaptic::model] struct Todo { .. }`")
    })?;
    if let syn::Data::Union(u) = &item.data {
        return Err(syn::Error::new_spanned(
            u.union_token,
            "#[ephaptic::model] goes on a struct or an enum, not a union",
        ));
    }
    let derive = data_derives(&item.attrs, &["Serialize", "Deserialize", "TS"]);
    let model = model_impl(&item);
    Ok(quote! {
        #derive
        #item

        #model
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
