//! `#[event]`: the derives, `Event` (its wire name), `Model`, and the registration.

use proc_macro2::TokenStream as TokenStream2;
use quote::quote;

use super::data::{data_derives, describe_fn, model_impl};
use super::site;
use crate::check;
use crate::ctxt::Ctxt;
use crate::model::{EventArgs, doc_of};
use crate::parse;

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
    let describe = describe_fn(ident);

    Ok(quote! {
        #derive
        #item

        impl ::ephaptic::__private::Event for #ident {
            const NAME: &'static str = #name;
        }

        #model

        const _: () = {
            #describe

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
