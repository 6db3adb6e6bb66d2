//! `#[identity_loader]`: the shim that decodes `init.auth` for the loader and hands it the
//! upgrade request if it asks, and its registration.

use proc_macro2::TokenStream as TokenStream2;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ItemFn, ReturnType};

use super::{at, site};
use crate::check;
use crate::ctxt::Ctxt;
use crate::model::{Function, is_handshake};

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
    // itself is spanned at the return type, where an unusable output is reported. A loader of
    // the handshake alone accepts (and ignores) whatever `auth` a client sends.
    let (auth_ty, auth) = match f.wire_params().find(|(_, ty)| !is_handshake(ty)) {
        Some((_, ty)) => (quote!(#ty), quote!(__ephaptic_auth)),
        None => (
            quote!(::ephaptic::__private::Option<::ephaptic::__private::serde::de::IgnoredAny>),
            quote!(_),
        ),
    };
    // The loader's own parameters, in its order.
    let args = f.wire_params().map(|(_, ty)| {
        if is_handshake(ty) {
            quote!(__ephaptic_handshake)
        } else {
            quote!(__ephaptic_auth)
        }
    });
    let takes_handshake = f.wire_params().any(|(_, ty)| is_handshake(ty));
    let handshake = if takes_handshake {
        quote!(__ephaptic_handshake)
    } else {
        quote!(_)
    };
    let ret_span = match &item.sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => ident.span(),
    };
    let call = quote!(#ident(#(#args),*));
    let call = if f.is_async {
        call
    } else {
        quote!(::std::future::ready(#call))
    };
    let run = quote_spanned! {at(ret_span)=>
        ::ephaptic::__private::run_loader::<#auth_ty, _, _>(
            __ephaptic_auth_bytes,
            move |#auth| #call,
        )
    };
    Ok(quote! {
        #item

        const _: () = {
            fn __ephaptic_loader(
                __ephaptic_auth_bytes: ::ephaptic::__private::Option<::ephaptic::__private::Bytes>,
                #handshake: ::ephaptic::__private::Handshake,
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
