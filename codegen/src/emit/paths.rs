//! Routes generated code's runtime paths through the SDK: every path whose first segment is
//! `tonic`, `prost`, `tonic_prost` or `prost_types` (with or without a leading `::`) becomes
//! `<sdk>::__codegen::<crate>::…`, so a crate with generated code needs no dependency of its own
//! on those crates.
//!
//! prost-build's `prost_path` and tonic-prost-build's `codec_path` already point most of prost's
//! output at the SDK (and `#[prost(prost_path = …)]` makes the derives expand to it); this pass
//! covers what stays hard-coded: tonic-build's `tonic::…` paths and `use tonic::codegen::*;`,
//! the well-known types (`::prost_types::Any` in fields and tonic-prost-build's request and
//! response types), and derive lists. It rewrites real paths only (types, expressions, patterns,
//! qualified paths, attributes, `use` trees, `#[derive(…)]` lists); string literals, doc
//! comments and macro bodies are left alone.

use proc_macro2::Span;
use syn::punctuated::Punctuated;
use syn::visit_mut::{self, VisitMut};

/// The crates generated code may reach only through `<sdk>::__codegen`.
const CRATES: [&str; 4] = ["tonic", "prost", "tonic_prost", "prost_types"];

/// Rewrites every runtime path of `file` to go through `<sdk>::__codegen`.
pub(crate) fn route_through_sdk(sdk: &syn::Path, file: &mut syn::File) {
    let mut base = sdk.clone();
    base.segments.push(syn::PathSegment::from(syn::Ident::new(
        "__codegen",
        Span::call_site(),
    )));
    Rewriter { base }.visit_file_mut(file);
}

/// `path` as Rust source without token spacing (`::a::b`), for the settings of prost-build and
/// tonic-prost-build that take a path as a string (one lands in `#[prost(prost_path = "…")]`).
pub(crate) fn to_string(path: &syn::Path) -> String {
    let segments: Vec<String> = path
        .segments
        .iter()
        .map(|segment| {
            quote::ToTokens::to_token_stream(segment)
                .to_string()
                .replace(' ', "")
        })
        .collect();
    let colon = if path.leading_colon.is_some() {
        "::"
    } else {
        ""
    };
    format!("{colon}{}", segments.join("::"))
}

struct Rewriter {
    /// `<sdk>::__codegen`.
    base: syn::Path,
}

fn is_runtime_crate(ident: &syn::Ident) -> bool {
    CRATES.iter().any(|name| ident == name)
}

impl Rewriter {
    /// `tonic::x` / `::tonic::x` → `<sdk>::__codegen::tonic::x`; returns how many segments
    /// were prepended (for a qualified path's `QSelf::position`).
    fn rewrite_path(&self, path: &mut syn::Path) -> usize {
        let Some(first) = path.segments.first() else {
            return 0;
        };
        // A one-segment path is no crate path: `#[prost(tag = "1")]` is prost's helper
        // attribute. Generic arguments on the first segment (`prost::<T>`) name no crate either.
        if path.segments.len() < 2 || !is_runtime_crate(&first.ident) || !first.arguments.is_none()
        {
            return 0;
        }
        let mut rewritten = self.base.clone();
        rewritten
            .segments
            .extend(std::mem::take(&mut path.segments));
        *path = rewritten;
        self.base.segments.len()
    }

    /// `<T as tonic::client::GrpcService<B>>::ResponseBody`: syn keeps the trait's segments at
    /// the front of `path` and counts them in `qself.position`, which must grow with the prefix,
    /// so such a path is rewritten here, before the default visit reaches it (and leaves the
    /// already rewritten path alone). A path relative to the type (`<T>::Assoc`, position 0)
    /// starts with an associated item, never with one of the crates.
    fn rewrite_qualified(&self, qself: &mut Option<syn::QSelf>, path: &mut syn::Path) {
        if let Some(qself) = qself
            && qself.position > 0
        {
            qself.position += self.rewrite_path(path);
        }
    }

    /// `use tonic::codegen::*;` → `use <sdk>::__codegen::tonic::codegen::*;`, likewise for a
    /// bare `use tonic;` and a rename. (Generated code has no root-level `use {…}` groups.)
    fn rewrite_use(&self, leading_colon: &mut Option<syn::Token![::]>, tree: &mut syn::UseTree) {
        let first = match tree {
            syn::UseTree::Path(path) => &path.ident,
            syn::UseTree::Name(name) => &name.ident,
            syn::UseTree::Rename(rename) => &rename.ident,
            syn::UseTree::Glob(_) | syn::UseTree::Group(_) => return,
        };
        if !is_runtime_crate(first) {
            return;
        }
        let placeholder = syn::UseTree::Glob(syn::UseGlob {
            star_token: Default::default(),
        });
        let mut rewritten = std::mem::replace(tree, placeholder);
        for segment in self.base.segments.iter().rev() {
            rewritten = syn::UseTree::Path(syn::UsePath {
                ident: segment.ident.clone(),
                colon2_token: Default::default(),
                tree: Box::new(rewritten),
            });
        }
        *tree = rewritten;
        *leading_colon = self.base.leading_colon;
    }
}

impl VisitMut for Rewriter {
    fn visit_path_mut(&mut self, path: &mut syn::Path) {
        self.rewrite_path(path);
        visit_mut::visit_path_mut(self, path);
    }

    fn visit_type_path_mut(&mut self, node: &mut syn::TypePath) {
        self.rewrite_qualified(&mut node.qself, &mut node.path);
        visit_mut::visit_type_path_mut(self, node);
    }

    fn visit_expr_path_mut(&mut self, node: &mut syn::ExprPath) {
        self.rewrite_qualified(&mut node.qself, &mut node.path);
        visit_mut::visit_expr_path_mut(self, node);
    }

    fn visit_expr_struct_mut(&mut self, node: &mut syn::ExprStruct) {
        self.rewrite_qualified(&mut node.qself, &mut node.path);
        visit_mut::visit_expr_struct_mut(self, node);
    }

    fn visit_pat_struct_mut(&mut self, node: &mut syn::PatStruct) {
        self.rewrite_qualified(&mut node.qself, &mut node.path);
        visit_mut::visit_pat_struct_mut(self, node);
    }

    fn visit_pat_tuple_struct_mut(&mut self, node: &mut syn::PatTupleStruct) {
        self.rewrite_qualified(&mut node.qself, &mut node.path);
        visit_mut::visit_pat_tuple_struct_mut(self, node);
    }

    fn visit_item_use_mut(&mut self, item: &mut syn::ItemUse) {
        for attr in &mut item.attrs {
            self.visit_attribute_mut(attr);
        }
        self.rewrite_use(&mut item.leading_colon, &mut item.tree);
    }

    fn visit_attribute_mut(&mut self, attr: &mut syn::Attribute) {
        // `#[derive(…)]` holds its paths as plain tokens; parse, rewrite and print them back.
        if let syn::Meta::List(list) = &mut attr.meta
            && list.path.is_ident("derive")
            && let Ok(mut derives) =
                list.parse_args_with(Punctuated::<syn::Path, syn::Token![,]>::parse_terminated)
        {
            for path in &mut derives {
                self.visit_path_mut(path);
            }
            list.tokens = quote::ToTokens::into_token_stream(derives);
            return;
        }
        visit_mut::visit_attribute_mut(self, attr);
    }
}

#[cfg(test)]
mod tests {
    /// Rewrites `code` with the default SDK path and prints it back.
    fn rewrite(code: &str) -> String {
        let mut file = syn::parse_file(code).unwrap();
        super::route_through_sdk(&syn::parse_quote!(::spire_plugin_sdk), &mut file);
        prettyplease::unparse(&file)
    }

    #[test]
    fn rewrites_paths_use_trees_qualified_paths_and_derives_only() {
        let out = rewrite(
            r#"
            use tonic::codegen::*;
            use tonic;
            use ::prost::Message as _;
            use std::fmt;
            #[derive(Clone, ::prost::Message)]
            #[prost(prost_path = "::prost")]
            struct A {
                #[prost(message, optional, tag = "1")]
                any: Option<::prost_types::Any>,
            }
            #[tonic::async_trait]
            trait T {}
            fn f<S: tonic::client::GrpcService<B>, B>() -> <S as tonic::client::GrpcService<B>>::ResponseBody {
                let codec = tonic_prost::ProstCodec::default();
                let text = "tonic::Status";
                let status = ::tonic::Status::ok("");
                let _ = prost::alloc::format!("tonic::x {}", 1);
                match status { tonic::Status { .. } => {} }
                <S as tonic::client::GrpcService<B>>::call;
                todo!()
            }
            mod m { use super::prost_thing::X; fn g() -> my::tonic::X {} }
            "#,
        );
        expect_test::expect![[r#"
            use ::spire_plugin_sdk::__codegen::tonic::codegen::*;
            use ::spire_plugin_sdk::__codegen::tonic;
            use ::spire_plugin_sdk::__codegen::prost::Message as _;
            use std::fmt;
            #[derive(Clone, ::spire_plugin_sdk::__codegen::prost::Message)]
            #[prost(prost_path = "::prost")]
            struct A {
                #[prost(message, optional, tag = "1")]
                any: Option<::spire_plugin_sdk::__codegen::prost_types::Any>,
            }
            #[::spire_plugin_sdk::__codegen::tonic::async_trait]
            trait T {}
            fn f<S: ::spire_plugin_sdk::__codegen::tonic::client::GrpcService<B>, B>() -> <S as ::spire_plugin_sdk::__codegen::tonic::client::GrpcService<
                B,
            >>::ResponseBody {
                let codec = ::spire_plugin_sdk::__codegen::tonic_prost::ProstCodec::default();
                let text = "tonic::Status";
                let status = ::spire_plugin_sdk::__codegen::tonic::Status::ok("");
                let _ = ::spire_plugin_sdk::__codegen::prost::alloc::format!("tonic::x {}", 1);
                match status {
                    ::spire_plugin_sdk::__codegen::tonic::Status { .. } => {}
                }
                <S as ::spire_plugin_sdk::__codegen::tonic::client::GrpcService<B>>::call;
                todo!()
            }
            mod m {
                use super::prost_thing::X;
                fn g() -> my::tonic::X {}
            }
        "#]]
        .assert_eq(&out);
    }

    #[test]
    fn to_string_has_no_token_spacing() {
        assert_eq!(
            super::to_string(&syn::parse_quote!(::spire_plugin_sdk)),
            "::spire_plugin_sdk"
        );
        assert_eq!(
            super::to_string(&syn::parse_quote!(crate::sdk)),
            "crate::sdk"
        );
    }
}
