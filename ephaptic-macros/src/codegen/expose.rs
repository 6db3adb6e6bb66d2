//! `#[expose]`: the shim that binds a call and runs the function, its signature for the
//! TypeScript export, and its registration.

use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ItemFn, ReturnType};

use super::{at, site};
use crate::check;
use crate::ctxt::Ctxt;
use crate::model::{ExposeArgs, Function, Param};
use crate::parse;

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
    // On a copy: its misspelt `ephaptic::to(1, 2, 3)` calls are rewritten, so that what is
    // emitted with the errors does not add the compiler's misleading help to them.
    let mut written = item.clone();
    check::audiences(&mut cx, &mut written);
    if let Err(e) = cx.check() {
        let errors = e.to_compile_error();
        return Ok(quote!(#errors #written));
    }

    let ident = f.ident;
    let vis = &item.vis;
    let rust_name = ident.to_string();
    let wire_name = opts
        .name
        .as_ref()
        .map(|n| n.value())
        .unwrap_or_else(|| rust_name.trim_start_matches("r#").to_string());
    let requires_login = opts.requires_login;
    let idempotent = opts.idempotent;
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
        ::ephaptic::__private::outcome!(__ephaptic_out => outcome(__ephaptic_out, &#call))
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
                // Bound first, so that only the value is held across the `.await`.
                let __ephaptic_announced = ::ephaptic::__private::announce_kind!(__ephaptic_out).#prepare;
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
                __ephaptic_sig.param(#name, ::ephaptic::__private::describe!(::ephaptic::__private::ts::TsTag::<#ty>::new()));
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
            let mut __ephaptic_sig = ::ephaptic::__private::ts::Signature::new();
            #(#sig_params)*
            let __ephaptic_output = #output_tag;
            let __ephaptic_answer = ::ephaptic::__private::answer!(__ephaptic_output);
            let __ephaptic_inner = __ephaptic_answer.inner();
            __ephaptic_sig.returns(__ephaptic_answer.shape(), ::ephaptic::__private::describe!(__ephaptic_inner));
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
                    .idempotent(#idempotent)
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
