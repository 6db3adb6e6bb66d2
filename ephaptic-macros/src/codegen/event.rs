//! `#[event]`: the derives, `Event` (its wire name), `Model`, field defaults, and the
//! registration.

use proc_macro2::TokenStream as TokenStream2;
use quote::quote;

use super::data::{clean, data_derives, defaults_impl, derives, describe_fn, model_impl};
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
    // Mistakes in field attributes leave the type's shape intact: they are reported, and the
    // impls are still written (from the item without them), so uses of the event compile.
    let mut fx = Ctxt::default();
    let fields = crate::model::fields(&mut fx, &item, "event");
    check::serde_defaults(&mut fx, &item);
    check::field_defaults(&mut fx, &item, &fields, opts.default.as_ref(), "event");
    let write_default = (opts.default.is_some() || fields.all_defaulted)
        && !derives(&item.attrs, "Default")
        && matches!(item.data, syn::Data::Struct(_));
    let clean = clean(&item, &fields);
    let derive = data_derives(&clean.attrs, &["Serialize", "Deserialize", "TS"]);
    if let Err(e) = cx.check() {
        // The item keeps its derives (a union gets none), so its `#[serde(..)]` and `#[ts(..)]`
        // attributes still resolve and the mistakes above are the only errors.
        let mut errors = e.to_compile_error();
        if let Err(e) = fx.check() {
            errors.extend(e.to_compile_error());
        }
        let derive = match item.data {
            syn::Data::Union(_) => quote!(),
            _ => derive,
        };
        return Ok(quote!(#errors #derive #clean));
    }
    let field_errors = fx.check().err().map(|e| e.to_compile_error());
    let defaults = defaults_impl(&item, &fields, write_default);

    let ident = &item.ident;
    let name = opts
        .name
        .map(|n| n.value())
        .unwrap_or_else(|| ident.to_string());
    let site = site(&ident.to_string());
    let doc = doc_of(&item.attrs);
    let model = model_impl(&clean);
    let describe = describe_fn(ident);
    let recover = opts.recover.map(|variant| {
        let variant = syn::Ident::new(variant, proc_macro2::Span::call_site());
        quote!(const RECOVER: ::ephaptic::__private::Recover = ::ephaptic::__private::Recover::#variant;)
    });

    Ok(quote! {
        #field_errors
        #derive
        #clean

        #defaults

        impl ::ephaptic::__private::Event for #ident {
            const NAME: &'static str = #name;
            #recover
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
