//! The Rust API that `generate` gives one side: every message struct, oneof enum, enum and
//! service trait by its absolute Rust path, with member names, member types, derives and method
//! signatures, computed with prost's and tonic's naming rules from `names` (boxing of recursive
//! fields and the `Copy`/`Eq`/`Hash` derives follow prost-build's own logic).
//!
//! Paths are relative to the root of the generated module tree (`spire::plugin::types::Bundle`);
//! well-known types are named as prost maps them (`::prost_types::Timestamp`, `()` for `Empty`).
//! Map-entry messages generate no struct and are left out. The SOURCE rules compare two of these.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto};

use super::index::{At, FieldView, Index, MessageView, Syntax, TypeDef, path, sub};
use crate::names;

/// A message struct or a oneof enum: a container of named, typed members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StructKind {
    Message,
    Oneof,
}

#[derive(Debug)]
pub(crate) struct RustStruct {
    pub(crate) kind: StructKind,
    /// The proto element: message full name, or `<message>.<oneof>`.
    pub(crate) proto: String,
    pub(crate) at: At,
    /// For oneof enums, the path of the message struct that holds them.
    pub(crate) parent: Option<String>,
    pub(crate) copy: bool,
    pub(crate) eq_hash: bool,
    pub(crate) members: BTreeMap<String, RustMember>,
}

/// A struct field or a oneof variant.
#[derive(Debug)]
pub(crate) struct RustMember {
    /// The proto field numbers behind the member: one, or every field of a oneof.
    pub(crate) numbers: Vec<i32>,
    pub(crate) proto: String,
    pub(crate) ty: String,
    pub(crate) at: At,
    pub(crate) type_at: At,
}

#[derive(Debug)]
pub(crate) struct RustEnum {
    pub(crate) proto: String,
    pub(crate) at: At,
    pub(crate) variants: BTreeMap<String, RustVariant>,
}

#[derive(Debug)]
pub(crate) struct RustVariant {
    pub(crate) number: i32,
    pub(crate) proto: String,
    pub(crate) at: At,
}

#[derive(Debug)]
pub(crate) struct RustService {
    pub(crate) proto: String,
    pub(crate) at: At,
    pub(crate) methods: BTreeMap<String, RustMethod>,
}

#[derive(Debug)]
pub(crate) struct RustMethod {
    pub(crate) proto: String,
    /// The server trait method's request type: `tonic::Request<…>`.
    pub(crate) request: String,
    /// The success type of its result: `tonic::Response<…>`, naming the item type of a stream.
    pub(crate) response: String,
    pub(crate) at: At,
    pub(crate) signature_at: At,
}

/// The generated Rust API of one side.
impl RustMethod {
    /// `fn(<request>) -> <response>`.
    pub(crate) fn signature(&self) -> String {
        format!("fn({}) -> {}", self.request, self.response)
    }
}

#[derive(Debug, Default)]
pub(crate) struct RustApi {
    pub(crate) structs: BTreeMap<String, RustStruct>,
    pub(crate) enums: BTreeMap<String, RustEnum>,
    /// Keyed by `<package modules>::<ServiceType>`: the trait, client and bridge share it.
    pub(crate) services: BTreeMap<String, RustService>,
}

impl RustApi {
    pub(crate) fn new(index: &Index<'_>) -> RustApi {
        let graph = Graph::new(index);
        let mut api = RustApi::default();
        for message in index.messages.values() {
            if !message.is_map_entry() {
                add_message(&mut api, index, &graph, message);
            }
        }
        for enum_ in index.enums.values() {
            let mut variants = BTreeMap::new();
            let mut numbers = HashSet::new();
            for (i, value) in enum_.desc.value.iter().enumerate() {
                // Aliases generate no variant of their own; the first name wins, as in prost.
                if !numbers.insert(value.number()) {
                    continue;
                }
                let value_path = sub(&enum_.path, &[path::ENUM_VALUE, i as i32]);
                variants.insert(
                    names::prost_variant(enum_.name(), value.name()),
                    RustVariant {
                        number: value.number(),
                        proto: value.name().to_owned(),
                        at: enum_.file.at(&value_path),
                    },
                );
            }
            api.enums.insert(
                type_path(index, &enum_.full_name),
                RustEnum {
                    proto: enum_.full_name.clone(),
                    at: enum_.at(),
                    variants,
                },
            );
        }
        for service in index.services.values() {
            let mut methods = BTreeMap::new();
            for method in service.methods() {
                let desc = method.desc;
                let request = type_path(index, desc.input_type());
                let response = type_path(index, desc.output_type());
                let request = if desc.client_streaming() {
                    format!("tonic::Request<tonic::Streaming<{request}>>")
                } else {
                    format!("tonic::Request<{request}>")
                };
                let response = if desc.server_streaming() {
                    format!(
                        "tonic::Response<Self::{}Stream> (a stream of {response})",
                        method.name()
                    )
                } else {
                    format!("tonic::Response<{response}>")
                };
                methods.insert(
                    names::prost_snake(method.name()),
                    RustMethod {
                        proto: method.name().to_owned(),
                        request,
                        response,
                        at: method.at(),
                        signature_at: method.at_sub(&[path::METHOD_INPUT]),
                    },
                );
            }
            let mut rust_path = names::package_modules(service.file.package());
            rust_path.push(names::service_type(service.name()));
            api.services.insert(
                rust_path.join("::"),
                RustService {
                    proto: service.full_name.clone(),
                    at: service.at(),
                    methods,
                },
            );
        }
        api
    }
}

fn add_message(api: &mut RustApi, index: &Index<'_>, graph: &Graph<'_>, message: &MessageView<'_>) {
    let desc = message.desc;
    let struct_path = type_path(index, &message.full_name);
    let module = format!(
        "{}::{}",
        struct_path.rsplit_once("::").map_or("", |(m, _)| m),
        names::prost_snake(message.name())
    )
    .trim_start_matches("::")
    .to_owned();
    let syntax = message.file.syntax();
    let mut members = BTreeMap::new();
    let mut oneofs: BTreeMap<i32, Vec<FieldView<'_>>> = BTreeMap::new();
    for field in message.fields() {
        match field.desc.oneof_index {
            Some(oneof) if !field.desc.proto3_optional() => {
                oneofs.entry(oneof).or_default().push(field);
            }
            _ => {
                let ty = field_type(index, graph, &message.full_name, field.desc, syntax);
                members.insert(names::prost_snake(field.name()), member(&field, ty));
            }
        }
    }
    for (oneof_index, fields) in oneofs {
        let oneof = &desc.oneof_decl[oneof_index as usize];
        let conflict = desc
            .nested_type
            .iter()
            .map(|n| n.name())
            .chain(desc.enum_type.iter().map(|e| e.name()))
            .any(|n| names::prost_camel(n) == names::prost_camel(oneof.name()));
        let mut type_name = names::prost_camel(oneof.name());
        if conflict {
            type_name.push_str("OneOf");
        }
        let oneof_path = format!("{module}::{type_name}");
        let at = message
            .file
            .at_first(&[&sub(&message.path, &[path::MESSAGE_ONEOF, oneof_index])]);
        members.insert(
            names::prost_snake(oneof.name()),
            RustMember {
                numbers: fields.iter().map(|f| f.number()).collect(),
                proto: oneof.name().to_owned(),
                ty: format!("Option<{oneof_path}>"),
                at: at.clone(),
                type_at: at.clone(),
            },
        );
        let mut variants = BTreeMap::new();
        for field in &fields {
            let mut ty = base_type(index, field.desc);
            if graph.boxed(&message.full_name, field.desc) {
                ty = format!("Box<{ty}>");
            }
            variants.insert(names::prost_camel(field.name()), member(field, ty));
        }
        api.structs.insert(
            oneof_path,
            RustStruct {
                kind: StructKind::Oneof,
                proto: format!("{}.{}", message.full_name, oneof.name()),
                at,
                parent: Some(struct_path.clone()),
                copy: fields
                    .iter()
                    .all(|f| graph.field_copy(&message.full_name, f.desc)),
                eq_hash: fields
                    .iter()
                    .all(|f| graph.field_eq(&message.full_name, f.desc)),
                members: variants,
            },
        );
    }
    api.structs.insert(
        struct_path,
        RustStruct {
            kind: StructKind::Message,
            proto: message.full_name.clone(),
            at: message.at(),
            parent: None,
            copy: graph.message_copy(&message.full_name),
            eq_hash: graph.message_eq(&message.full_name),
            members,
        },
    );
}

fn member(field: &FieldView<'_>, ty: String) -> RustMember {
    RustMember {
        numbers: vec![field.number()],
        proto: field.name().to_owned(),
        ty,
        at: field.at(),
        type_at: field.at_sub(&[&[path::FIELD_TYPE_NAME], &[path::FIELD_TYPE]]),
    }
}

/// The Rust path of a message or enum (`.a.v1.Outer.Inner` → `a::v1::outer::Inner`).
pub(crate) fn type_path(index: &Index<'_>, type_name: &str) -> String {
    let name = type_name.trim_start_matches('.');
    if let Some(rest) = name.strip_prefix("google.protobuf.") {
        let mapped = match rest {
            "Empty" => Some("()"),
            "BoolValue" => Some("bool"),
            "BytesValue" => Some("Vec<u8>"),
            "DoubleValue" => Some("f64"),
            "FloatValue" => Some("f32"),
            "Int32Value" => Some("i32"),
            "Int64Value" => Some("i64"),
            "StringValue" => Some("String"),
            "UInt32Value" => Some("u32"),
            "UInt64Value" => Some("u64"),
            _ => None,
        };
        if let Some(mapped) = mapped {
            return mapped.to_owned();
        }
        let mut segments: Vec<&str> = rest.split('.').collect();
        let last = segments.pop().unwrap_or_default();
        let mut out = vec!["::prost_types".to_owned()];
        out.extend(segments.into_iter().map(names::prost_snake));
        out.push(names::prost_camel(last));
        return out.join("::");
    }
    match index.type_info(name) {
        Some(info) => {
            let short = match info.def {
                TypeDef::Message(desc) => desc.name(),
                TypeDef::Enum(desc) => desc.name(),
            };
            let mut out = names::package_modules(info.package);
            out.extend(info.parents.iter().map(|p| names::prost_snake(p)));
            out.push(names::prost_camel(short));
            out.join("::")
        }
        None => name.replace('.', "::"),
    }
}

/// The Rust type of a field's value, before `Option`/`Vec`/`Box`.
fn base_type(index: &Index<'_>, field: &FieldDescriptorProto) -> String {
    match field.r#type() {
        Type::Float => "f32".to_owned(),
        Type::Double => "f64".to_owned(),
        Type::Uint32 | Type::Fixed32 => "u32".to_owned(),
        Type::Uint64 | Type::Fixed64 => "u64".to_owned(),
        Type::Int32 | Type::Sfixed32 | Type::Sint32 => "i32".to_owned(),
        Type::Int64 | Type::Sfixed64 | Type::Sint64 => "i64".to_owned(),
        Type::Bool => "bool".to_owned(),
        Type::String => "String".to_owned(),
        Type::Bytes => "Vec<u8>".to_owned(),
        // prost stores enums as i32; the getter and setter name the enum.
        Type::Enum => format!("i32 (enum {})", type_path(index, field.type_name())),
        Type::Message | Type::Group => type_path(index, field.type_name()),
    }
}

/// The full Rust type of a (non-oneof) struct field, as prost-build writes it.
fn field_type(
    index: &Index<'_>,
    graph: &Graph<'_>,
    message: &str,
    field: &FieldDescriptorProto,
    syntax: Syntax,
) -> String {
    if index.is_map(field)
        && let Some(entry) = index.message_def(field.type_name())
        && let [key, value] = &entry.field[..]
    {
        return format!(
            "HashMap<{}, {}>",
            base_type(index, key),
            base_type(index, value)
        );
    }
    let mut ty = base_type(index, field);
    if graph.boxed(message, field) {
        ty = format!("Box<{ty}>");
    }
    let optional = field.proto3_optional()
        || (field.label() == Label::Optional
            && (field.r#type() == Type::Message || syntax == Syntax::Proto2));
    if field.label() == Label::Repeated {
        format!("Vec<{ty}>")
    } else if optional {
        format!("Option<{ty}>")
    } else {
        ty
    }
}

/// prost-build's message graph: an edge from each message to the message type of each of its
/// non-repeated message fields. Recursive fields are boxed, and derives depend on reachability.
struct Graph<'a> {
    messages: HashMap<String, &'a DescriptorProto>,
    copy: RefCell<HashMap<String, bool>>,
    eq: RefCell<HashMap<String, bool>>,
}

impl<'a> Graph<'a> {
    fn new(index: &Index<'a>) -> Graph<'a> {
        let messages = index
            .types
            .iter()
            .filter_map(|(name, info)| match info.def {
                TypeDef::Message(desc) => Some((name.clone(), desc)),
                TypeDef::Enum(_) => None,
            })
            .collect();
        Graph {
            messages,
            copy: RefCell::default(),
            eq: RefCell::default(),
        }
    }

    /// True when `to` can be reached from `from` (prost's `is_nested(from, to)`).
    fn reaches(&self, from: &str, to: &str) -> bool {
        let mut seen = HashSet::new();
        let mut stack = vec![from.trim_start_matches('.').to_owned()];
        let to = to.trim_start_matches('.');
        while let Some(name) = stack.pop() {
            if name == to {
                return true;
            }
            if !seen.insert(name.clone()) {
                continue;
            }
            if let Some(desc) = self.messages.get(&name) {
                for field in &desc.field {
                    if field.r#type() == Type::Message && field.label() != Label::Repeated {
                        stack.push(field.type_name().trim_start_matches('.').to_owned());
                    }
                }
            }
        }
        false
    }

    fn boxed(&self, message: &str, field: &FieldDescriptorProto) -> bool {
        field.label() != Label::Repeated
            && matches!(field.r#type(), Type::Message | Type::Group)
            && self.reaches(field.type_name(), message)
    }

    fn message_copy(&self, message: &str) -> bool {
        if let Some(&known) = self.copy.borrow().get(message) {
            return known;
        }
        let result = self
            .messages
            .get(message)
            .is_some_and(|desc| desc.field.iter().all(|f| self.field_copy(message, f)));
        self.copy.borrow_mut().insert(message.to_owned(), result);
        result
    }

    fn field_copy(&self, message: &str, field: &FieldDescriptorProto) -> bool {
        if field.label() == Label::Repeated {
            return false;
        }
        match field.r#type() {
            Type::Message => {
                !self.reaches(field.type_name(), message)
                    && self.message_copy(field.type_name().trim_start_matches('.'))
            }
            Type::String | Type::Bytes | Type::Group => false,
            _ => true,
        }
    }

    fn message_eq(&self, message: &str) -> bool {
        if let Some(&known) = self.eq.borrow().get(message) {
            return known;
        }
        let result = self
            .messages
            .get(message)
            .is_some_and(|desc| desc.field.iter().all(|f| self.field_eq(message, f)));
        self.eq.borrow_mut().insert(message.to_owned(), result);
        result
    }

    fn field_eq(&self, message: &str, field: &FieldDescriptorProto) -> bool {
        match field.r#type() {
            Type::Message => {
                field.label() != Label::Repeated
                    && !self.reaches(field.type_name(), message)
                    && self.message_eq(field.type_name().trim_start_matches('.'))
            }
            Type::Float | Type::Double | Type::Group => false,
            _ => true,
        }
    }
}
