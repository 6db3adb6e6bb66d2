//! `#[model]`: serde and ts-rs derives in one attribute, `Model` (the input shape), and field
//! defaults.

use proc_macro2::TokenStream as TokenStream2;
use quote::quote;

use super::data::{clean, data_derives, defaults_impl, derives, model_impl};
use crate::check;
use crate::ctxt::Ctxt;
use crate::model::ModelArgs;
use crate::parse;

pub fn model(args: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let mut cx = Ctxt::default();
    let metas = parse::metas(args)?;
    let opts = ModelArgs::parse(&mut cx, &metas);
    let item: syn::DeriveInput = syn::parse2(item).map_err(|e| {
        syn::Error::new(e.span(), "#[ephaptic::model] goes on a struct or an enum: `#[ephaptic::model] struct Todo { .. }`")
    })?;
    if let syn::Data::Union(u) = &item.data {
        return Err(syn::Error::new_spanned(
            u.union_token,
            "#[ephaptic::model] goes on a struct or an enum, not a union",
        ));
    }
    let fields = crate::model::fields(&mut cx, &item, "model");
    check::serde_defaults(&mut cx, &item);
    check::field_defaults(&mut cx, &item, &fields, opts.default.as_ref(), "model");
    let write_default = (opts.default.is_some() || fields.all_defaulted)
        && !derives(&item.attrs, "Default")
        && matches!(item.data, syn::Data::Struct(_));
    let clean = clean(&item, &fields);
    // Every mistake here is in an option or a field attribute, not the type's shape: report
    // them and still write everything, from the item without them.
    let errors = cx.check().err().map(|e| e.to_compile_error());
    let derive = data_derives(&clean.attrs, &["Serialize", "Deserialize", "TS"]);
    let model = model_impl(&clean);
    let defaults = defaults_impl(&item, &fields, write_default);
    Ok(quote! {
        #errors
        #derive
        #clean

        #model

        #defaults
    })
}
