//! Unit tests of `compat`: the rule table is well formed, and the Rust API model the SOURCE rules
//! compare is exactly what `generate` prints, checked item by item against the generated code
//! (parsed with syn) of a tree that exercises prost's naming, boxing and derive logic.

use std::collections::{BTreeMap, BTreeSet};

use quote::ToTokens;

use super::index::{Index, Spans};
use super::rust_api::{RustApi, StructKind};
use super::*;
use crate::{Config, names};

#[test]
fn rule_table_is_well_formed() {
    let mut seen = BTreeSet::new();
    for rule in rules() {
        assert!(seen.insert(rule.id), "duplicate rule {}", rule.id);
        assert!(
            rule.id
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
            "{} is not SCREAMING_SNAKE_CASE",
            rule.id
        );
        assert!(
            rule.purpose.starts_with("Checks that ") && rule.purpose.ends_with('.'),
            "{}: purpose {:?} should read `Checks that ….`",
            rule.id,
            rule.purpose
        );
        assert!(!rule.categories.is_empty(), "{} has no category", rule.id);
        let source = rule.is_in(Category::Source);
        assert!(
            !source || rule.categories.len() == 1,
            "{} mixes SOURCE with proto categories",
            rule.id
        );
    }
    assert_eq!(
        Category::ALL.map(Category::id),
        ["FILE", "PACKAGE", "WIRE_JSON", "WIRE", "SOURCE"]
    );
    assert_eq!(Category::parse("wire-json"), Some(Category::WireJson));
}

const A_PROTO: &str = r#"
syntax = "proto3";
package a.v1;
import "b/v1/b.proto";
import "google/protobuf/empty.proto";
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";

enum Color {
  option allow_alias = true;
  COLOR_UNSPECIFIED = 0;
  COLOR_DARK_RED = 1;
  COLOR_MAROON = 1;
  BLUE = 2;
}

message Outer {
  message Inner {
    enum Kind { KIND_UNSPECIFIED = 0; KIND_A = 1; }
    Kind kind = 1;
    Outer back = 2;
  }
  message Choice { int32 x = 1; }
  Inner inner = 1;
  string type = 2;
  oneof choice {
    int32 n = 3;
    Inner nested = 4;
    b.v1.Other other = 5;
  }
  map<string, Color> colors = 6;
  map<int64, Inner> inners = 7;
  repeated Inner many = 8;
  optional uint64 maybe = 9;
  google.protobuf.Timestamp at = 10;
  google.protobuf.StringValue label = 11;
  bytes data = 12;
  Color color = 13;
  repeated Color palette = 14;
}

message Point { int32 x = 1; sint64 y = 2; Color c = 3; bool on = 4; }
message Weighted { Point p = 1; double w = 2; }
message Named { Point p = 1; string name = 2; }

service SVIDStore {
  rpc PutX509SVID(Outer) returns (google.protobuf.Empty);
  rpc Watch(Point) returns (stream b.v1.Other);
  rpc Upload(stream Named) returns (Weighted);
  rpc Chat(stream Point) returns (stream Point);
}
"#;

const B_PROTO: &str = r#"
syntax = "proto2";
package b.v1;

message Other {
  optional int32 a = 1 [default = 3];
  required string b = 2;
  repeated float c = 3;
  optional Mode mode = 4;
  enum Mode { MODE_ON = 1; MODE_OFF = 2; }
  optional group Legacy = 5 { optional int32 z = 1; }
}
"#;

const MANIFEST: &str = "[[service]]\nservice = \"a.v1.SVIDStore\"\n";

fn tree() -> ProtoTree {
    let mut tree = ProtoTree::default();
    tree.file("a/v1/a.proto", A_PROTO)
        .file("b/v1/b.proto", B_PROTO)
        .manifest("services.toml", MANIFEST);
    tree
}

/// The items of the generated code, in the model's notation.
#[derive(Debug, Default)]
struct Generated {
    /// Message structs and oneof enums: path → (kind, derives Copy, derives Eq, members).
    structs: BTreeMap<String, (StructKind, bool, bool, BTreeMap<String, String>)>,
    enums: BTreeMap<String, BTreeSet<String>>,
    /// Server traits: path → method → (request, response).
    services: BTreeMap<String, BTreeMap<String, (String, String)>>,
}

/// Resolves a path written in module `module` to a path from the root of the generated tree,
/// and spells library types the way the model does.
fn normalize(ty: &syn::Type, module: &[String]) -> String {
    match ty {
        syn::Type::Tuple(tuple) if tuple.elems.is_empty() => "()".to_owned(),
        syn::Type::Path(path) => {
            let segments: Vec<String> = path
                .path
                .segments
                .iter()
                .map(|s| s.ident.to_string())
                .collect();
            let args: Vec<String> = path
                .path
                .segments
                .last()
                .map(|last| match &last.arguments {
                    syn::PathArguments::AngleBracketed(args) => args
                        .args
                        .iter()
                        .filter_map(|a| match a {
                            syn::GenericArgument::Type(t) => Some(normalize(t, module)),
                            _ => None,
                        })
                        .collect(),
                    _ => Vec::new(),
                })
                .unwrap_or_default();
            // Generated code reaches the runtime crates through the SDK (`Config::runtime_via_sdk`);
            // the model names them as the crates themselves.
            let segments = match segments.as_slice() {
                [sdk, codegen, rest @ ..]
                    if sdk == "spire_plugin_sdk" && codegen == "__codegen" =>
                {
                    rest.to_vec()
                }
                _ => segments,
            };
            let joined = segments.join("::");
            let wrap = |name: &str| format!("{name}<{}>", args.join(", "));
            match joined.as_str() {
                "prost::alloc::string::String" => "String".to_owned(),
                "prost::alloc::vec::Vec" => wrap("Vec"),
                "core::option::Option" => wrap("Option"),
                "prost::alloc::boxed::Box" => wrap("Box"),
                "std::collections::HashMap" => wrap("HashMap"),
                "tonic::Streaming" => wrap("tonic::Streaming"),
                "tonic::Request" => wrap("tonic::Request"),
                "tonic::Response" => wrap("tonic::Response"),
                "std::result::Result" => wrap("Result"),
                "tonic::Status" => joined,
                _ if segments[0] == "prost_types" => format!("::{joined}"),
                _ if segments.len() == 1 && args.is_empty() && is_primitive(&joined) => joined,
                _ if segments[0] == "Self" => joined,
                _ => {
                    let mut out = module.to_vec();
                    for segment in segments {
                        if segment == "super" {
                            out.pop();
                        } else {
                            out.push(segment);
                        }
                    }
                    out.join("::")
                }
            }
        }
        other => other.to_token_stream().to_string(),
    }
}

fn is_primitive(name: &str) -> bool {
    matches!(
        name,
        "i32" | "i64" | "u32" | "u64" | "f32" | "f64" | "bool" | "u8"
    )
}

/// The value of `#[prost(enumeration = "X")]` or `#[prost(map = "k, enumeration(X)")]`.
fn enumeration(attrs: &[syn::Attribute]) -> Option<String> {
    let text = attrs
        .iter()
        .map(|a| a.to_token_stream().to_string())
        .find(|t| t.contains("enumeration"))?;
    let start = text.find("enumeration")? + "enumeration".len();
    let rest = text[start..].trim_start_matches([' ', '=', '(', '"']);
    let end = rest.find(['"', ')'])?;
    Some(rest[..end].trim().to_owned())
}

/// The identifiers in an item's `#[derive(…)]` lists.
fn derives(attrs: &[syn::Attribute]) -> BTreeSet<String> {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("derive"))
        .flat_map(|a| {
            a.to_token_stream()
                .to_string()
                .split(|c: char| !c.is_alphanumeric() && c != '_')
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn resolve_relative(path: &str, module: &[String]) -> String {
    let ty: syn::Type = syn::parse_str(path).expect("an enumeration path");
    normalize(&ty, module)
}

fn collect(items: &[syn::Item], module: &mut Vec<String>, out: &mut Generated) {
    for item in items {
        match item {
            syn::Item::Mod(m) => {
                module.push(m.ident.to_string());
                if let Some((_, inner)) = &m.content {
                    collect(inner, module, out);
                }
                module.pop();
            }
            syn::Item::Struct(s) if derives(&s.attrs).contains("Message") => {
                let mut members = BTreeMap::new();
                for field in &s.fields {
                    let name = field.ident.as_ref().expect("named fields").to_string();
                    let mut ty = normalize(&field.ty, module);
                    if let Some(e) = enumeration(&field.attrs) {
                        let e = format!("i32 (enum {})", resolve_relative(&e, module));
                        ty = if ty.starts_with("HashMap<") {
                            ty.replace(", i32>", &format!(", {e}>"))
                        } else {
                            ty.replace("i32", &e)
                        };
                    }
                    members.insert(name, ty);
                }
                let d = derives(&s.attrs);
                out.structs.insert(
                    path(module, &s.ident),
                    (
                        StructKind::Message,
                        d.contains("Copy"),
                        d.contains("Eq"),
                        members,
                    ),
                );
            }
            syn::Item::Enum(e) if derives(&e.attrs).contains("Oneof") => {
                let mut members = BTreeMap::new();
                for variant in &e.variants {
                    let syn::Fields::Unnamed(fields) = &variant.fields else {
                        panic!("oneof variants hold one value");
                    };
                    let mut ty = normalize(&fields.unnamed[0].ty, module);
                    if let Some(en) = enumeration(&variant.attrs) {
                        ty = format!("i32 (enum {})", resolve_relative(&en, module));
                    }
                    members.insert(variant.ident.to_string(), ty);
                }
                let d = derives(&e.attrs);
                out.structs.insert(
                    path(module, &e.ident),
                    (
                        StructKind::Oneof,
                        d.contains("Copy"),
                        d.contains("Eq"),
                        members,
                    ),
                );
            }
            syn::Item::Enum(e) if derives(&e.attrs).contains("Enumeration") => {
                let variants = e.variants.iter().map(|v| v.ident.to_string()).collect();
                out.enums.insert(path(module, &e.ident), variants);
            }
            syn::Item::Trait(t) if module.last().is_some_and(|m| m.ends_with("_server")) => {
                let mut methods = BTreeMap::new();
                let streams: BTreeMap<String, String> = t
                    .items
                    .iter()
                    .filter_map(|i| match i {
                        syn::TraitItem::Type(ty) => {
                            Some((ty.ident.to_string(), ty.to_token_stream().to_string()))
                        }
                        _ => None,
                    })
                    .collect();
                for item in &t.items {
                    let syn::TraitItem::Fn(f) = item else {
                        continue;
                    };
                    let request = f
                        .sig
                        .inputs
                        .iter()
                        .find_map(|arg| match arg {
                            syn::FnArg::Typed(pat) => Some(normalize(&pat.ty, module)),
                            syn::FnArg::Receiver(_) => None,
                        })
                        .expect("a request argument");
                    let syn::ReturnType::Type(_, result) = &f.sig.output else {
                        panic!("server methods return a result");
                    };
                    let result = normalize(result, module);
                    // `std::result::Result<tonic::Response<T>, tonic::Status>` → its first argument.
                    let response = result
                        .split_once('<')
                        .map(|(_, r)| r.rsplit_once(", ").map_or(r, |(a, _)| a).to_owned())
                        .unwrap_or(result);
                    let response = match response.strip_prefix("tonic::Response<Self::") {
                        Some(stream) => {
                            let name = stream.trim_end_matches('>');
                            let decl = &streams[name];
                            let item = decl
                                .split("Result <")
                                .nth(1)
                                .and_then(|r| r.split(',').next())
                                .expect("a stream of results")
                                .replace(' ', "");
                            let item = resolve_relative(&item, module);
                            format!("tonic::Response<Self::{name}> (a stream of {item})")
                        }
                        None => response,
                    };
                    methods.insert(f.sig.ident.to_string(), (request, response));
                }
                out.services.insert(path(module, &t.ident), methods);
            }
            _ => {}
        }
    }
}

fn path(module: &[String], ident: &syn::Ident) -> String {
    let mut out = module.to_vec();
    out.push(ident.to_string());
    out.join("::")
}

#[test]
fn rust_api_matches_generated_code() {
    let tree = tree();
    let mut config = Config::default();
    config.descriptor_set(false);
    let files = crate::generate(&config, &tree).expect("the test tree generates");
    let mut generated = Generated::default();
    for file in files.iter().filter(|f| f.path != "mod.rs") {
        let package = file.path.trim_end_matches(".rs");
        let code = String::from_utf8(file.contents.clone()).expect("UTF-8");
        let parsed = syn::parse_file(&code).expect("generated code parses");
        collect(
            &parsed.items,
            &mut names::package_modules(package),
            &mut generated,
        );
    }

    let set = load::compile(&tree, true).expect("the test tree compiles");
    let spans = Spans::new(&set);
    let index = Index::new(&set, &spans, Side::Current, &|name| {
        tree.source(name).is_some()
    });
    let model = RustApi::new(&index);

    let model_structs: BTreeMap<String, (StructKind, bool, bool, BTreeMap<String, String>)> = model
        .structs
        .iter()
        .map(|(path, s)| {
            let members = s
                .members
                .iter()
                .map(|(n, m)| (n.clone(), m.ty.clone()))
                .collect();
            (path.clone(), (s.kind, s.copy, s.eq_hash, members))
        })
        .collect();
    assert_eq!(model_structs, generated.structs);
    let model_enums: BTreeMap<String, BTreeSet<String>> = model
        .enums
        .iter()
        .map(|(path, e)| (path.clone(), e.variants.keys().cloned().collect()))
        .collect();
    assert_eq!(model_enums, generated.enums);
    let model_services: BTreeMap<String, BTreeMap<String, (String, String)>> = model
        .services
        .iter()
        .map(|(path, s)| {
            let trait_path = {
                let (module, service) = path.rsplit_once("::").expect("packaged");
                format!("{module}::{}::{service}", names::server_module(service))
            };
            let methods = s
                .methods
                .iter()
                .map(|(n, m)| (n.clone(), (m.request.clone(), m.response.clone())))
                .collect();
            (trait_path, methods)
        })
        .collect();
    assert_eq!(model_services, generated.services);
    // The tree exercises what it is meant to.
    let outer = &model.structs["a::v1::Outer"];
    assert_eq!(
        outer.members["inner"].ty,
        "Option<Box<a::v1::outer::Inner>>"
    );
    assert_eq!(
        model.structs["a::v1::outer::Inner"].members["back"].ty,
        "Option<Box<a::v1::Outer>>"
    );
    assert!(model.structs.contains_key("a::v1::outer::ChoiceOneOf"));
    assert!(model.structs["a::v1::Point"].copy);
    assert!(!model.structs["a::v1::Weighted"].eq_hash);
}

#[test]
fn descriptor_sets_compare_like_trees() {
    let mut previous = ProtoTree::default();
    previous.file(
        "a/v1/a.proto",
        "syntax = \"proto3\";\npackage a.v1;\nmessage M {\n  int32 x = 1;\n  string y = 2;\n}\n",
    );
    let mut current = ProtoTree::default();
    current.file(
        "a/v1/a.proto",
        "syntax = \"proto3\";\npackage a.v1;\nmessage M {\n  sint32 x = 1;\n}\n",
    );
    let from_trees: Vec<String> = check(&previous, &current)
        .expect("both sides compile")
        .iter()
        .map(Finding::to_string)
        .collect();
    let from_sets: Vec<String> = check_sets(
        &load(&previous).expect("compiles"),
        &load(&current).expect("compiles"),
    )
    .iter()
    .map(Finding::to_string)
    .collect();
    assert_eq!(from_trees, from_sets);
    assert!(
        from_trees
            .iter()
            .any(|f| f.contains("FIELD_WIRE_COMPATIBLE_TYPE"))
    );
    assert!(
        from_trees
            .iter()
            .any(|f| f.starts_with("a/v1/a.proto:5:3: FIELD_NO_DELETE:"))
    );

    let mut broken = ProtoTree::default();
    broken.file("a.proto", "syntax = \"proto3\"; message {");
    let err = check(&previous, &broken).expect_err("the current side does not compile");
    assert_eq!(err.side(), Side::Current);
    assert!(err.error().is_proto());
}
