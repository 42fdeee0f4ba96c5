//! The `mod.rs` of the generated code: nested modules mirroring proto packages, each leaf
//! including its package file, plus the `SERVICES` table and the embedded descriptor set.

use std::collections::BTreeMap;

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use super::DESCRIPTOR_SET_FILE;
use crate::model::Model;
use crate::{Config, names};

/// A node of the package tree: an optional package file and child modules.
#[derive(Default)]
struct Node {
    package: Option<String>,
    children: BTreeMap<String, Node>,
}

pub(crate) fn emit(
    config: &Config,
    sdk: &syn::Path,
    packages: &[&str],
    model: &Model,
) -> TokenStream {
    let mut root = Node::default();
    for package in packages {
        let mut node = &mut root;
        for segment in names::package_modules(package) {
            node = node.children.entry(segment).or_default();
        }
        node.package = Some((*package).to_owned());
    }
    let modules = children(&root, "");

    let mut services: Vec<_> = model.services().collect();
    services.sort_by(|a, b| a.full_name.cmp(&b.full_name));
    let infos = services.iter().map(|service| {
        let segments = names::package_modules(&service.package)
            .into_iter()
            .map(|s| syn::parse_str::<syn::Ident>(&s).expect("package segments are identifiers"));
        let bridge = format_ident!("{}", names::bridge_type(&service.name));
        quote!(<self #(:: #segments)* :: #bridge as #sdk::__codegen::ServiceBridge>::INFO)
    });
    let descriptor = config.descriptor_set.then(|| {
        quote! {
            /// The encoded `FileDescriptorSet` of the tree and its well-known imports, without
            /// source info: what gRPC reflection serves.
            pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(#DESCRIPTOR_SET_FILE);
        }
    });
    // No inner attributes: the file must work both as a module file and through `include!`.
    quote! {
        #modules

        /// Every service of the tree with its role, sorted by full gRPC name.
        pub const SERVICES: &[#sdk::__codegen::ServiceInfo] = &[#(#infos),*];

        #descriptor
    }
}

fn children(node: &Node, prefix: &str) -> TokenStream {
    node.children
        .iter()
        .map(|(name, child)| {
            let ident: syn::Ident = syn::parse_str(name).expect("package segments are identifiers");
            let path = if prefix.is_empty() {
                name.trim_start_matches("r#").to_owned()
            } else {
                format!("{prefix}.{}", name.trim_start_matches("r#"))
            };
            let doc = match &child.package {
                Some(package) => format!(" Proto package `{package}`."),
                None => format!(" Proto packages under `{path}`."),
            };
            let include = child.package.as_ref().map(|package| {
                let file = names::package_file(package);
                quote!(include!(#file);)
            });
            let nested = children(child, &path);
            quote! {
                #[doc = #doc]
                pub mod #ident {
                    #include
                    #nested
                }
            }
        })
        .collect()
}
