//! `#[model]`: serde and ts-rs derives in one attribute, and `Model` (the input shape).

use proc_macro2::TokenStream as TokenStream2;
use quote::quote;
use syn::spanned::Spanned;

use super::data::{data_derives, model_impl};

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
