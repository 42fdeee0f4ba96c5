//! Field rules: deletions (plain, or allowed when the number or name is reserved), and the
//! changes of a field matched by number: name, JSON name, type, cardinality, oneof membership,
//! default value, and the per-language options and features.

use std::collections::BTreeSet;

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::field_options::{CType, JsType};

use crate::compat::index::{FieldView, Index, Syntax, path};
use crate::compat::pairs::{FieldPair, MessagePair, Out};

/// `FileOptions.java_string_check_utf8` and `FieldOptions.{ctype, jstype}`.
const FILE_JAVA_STRING_CHECK_UTF8: i32 = 27;
const FIELD_CTYPE: i32 = 1;
const FIELD_JSTYPE: i32 = 6;

#[derive(Clone, Copy)]
enum Allow {
    Nothing,
    NumberReserved,
    NameReserved,
}

pub(crate) fn field_no_delete(pair: &MessagePair<'_>, out: &mut Out) {
    deleted_fields(pair, out, Allow::Nothing);
}

pub(crate) fn field_no_delete_unless_number_reserved(pair: &MessagePair<'_>, out: &mut Out) {
    deleted_fields(pair, out, Allow::NumberReserved);
}

pub(crate) fn field_no_delete_unless_name_reserved(pair: &MessagePair<'_>, out: &mut Out) {
    deleted_fields(pair, out, Allow::NameReserved);
}

fn deleted_fields(pair: &MessagePair<'_>, out: &mut Out, allow: Allow) {
    let current = pair.current.desc;
    let numbers: BTreeSet<i32> = current.field.iter().map(|f| f.number()).collect();
    for field in pair.previous.fields() {
        if numbers.contains(&field.number()) {
            continue;
        }
        let (allowed, suffix) = match allow {
            Allow::Nothing => (false, String::new()),
            Allow::NumberReserved => (
                current
                    .reserved_range
                    .iter()
                    .any(|r| (r.start()..r.end()).contains(&field.number())),
                format!(" without reserving the number \"{}\"", field.number()),
            ),
            Allow::NameReserved => (
                current.reserved_name.iter().any(|n| n == field.name()),
                format!(" without reserving the name \"{}\"", field.name()),
            ),
        };
        if !allowed {
            out.push(
                field.at(),
                format!(
                    "Previously present {} was deleted{suffix}.",
                    lower_first(&field.describe())
                ),
            );
        }
    }
}

fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map_or_else(String::new, |c| c.to_lowercase().chain(chars).collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cardinality {
    OptionalExplicit,
    OptionalImplicit,
    Required,
    Repeated,
    Map,
}

impl Cardinality {
    fn of(field: &FieldView<'_>, index: &Index<'_>) -> Cardinality {
        let desc = field.desc;
        match desc.label() {
            Label::Repeated if index.is_map(desc) => Cardinality::Map,
            Label::Repeated => Cardinality::Repeated,
            Label::Required => Cardinality::Required,
            Label::Optional if has_presence(field) => Cardinality::OptionalExplicit,
            Label::Optional => Cardinality::OptionalImplicit,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Cardinality::OptionalExplicit => "optional with explicit presence",
            Cardinality::OptionalImplicit => "optional with implicit presence",
            Cardinality::Required => "required",
            Cardinality::Repeated => "repeated",
            Cardinality::Map => "map",
        }
    }

    /// Cardinalities in one group read each other's bytes.
    fn wire_group(self) -> u8 {
        match self {
            Cardinality::OptionalExplicit | Cardinality::OptionalImplicit => 1,
            Cardinality::Required => 2,
            Cardinality::Repeated | Cardinality::Map => 3,
        }
    }

    /// As `wire_group`, but maps and repeated fields differ in JSON.
    fn wire_json_group(self) -> u8 {
        match self {
            Cardinality::Map => 4,
            other => other.wire_group(),
        }
    }
}

fn has_presence(field: &FieldView<'_>) -> bool {
    let desc = field.desc;
    field.is_extension()
        || field.file.syntax() == Syntax::Proto2
        || desc.proto3_optional()
        || desc.oneof_index.is_some()
        || matches!(desc.r#type(), Type::Message | Type::Group)
}

fn in_map_entries(pair: &FieldPair<'_>) -> bool {
    let entry = |f: &FieldView<'_>| f.parent.is_some_and(crate::compat::index::is_map_entry);
    entry(&pair.previous) && entry(&pair.current)
}

fn cardinality_rule(pair: &FieldPair<'_>, out: &mut Out, group: fn(Cardinality) -> u8) {
    if in_map_entries(pair) {
        return;
    }
    let previous = Cardinality::of(&pair.previous, &pair.sides.previous);
    let current = Cardinality::of(&pair.current, &pair.sides.current);
    if group(previous) != group(current) {
        out.push(
            pair.current.at_sub(&[&[path::FIELD_LABEL]]),
            format!(
                "{} changed cardinality from \"{}\" to \"{}\".",
                pair.current.describe(),
                previous.name(),
                current.name()
            ),
        );
    }
}

pub(crate) fn field_same_cardinality(pair: &FieldPair<'_>, out: &mut Out) {
    cardinality_rule(pair, out, |c| c as u8);
}

pub(crate) fn field_wire_compatible_cardinality(pair: &FieldPair<'_>, out: &mut Out) {
    cardinality_rule(pair, out, Cardinality::wire_group);
}

pub(crate) fn field_wire_json_compatible_cardinality(pair: &FieldPair<'_>, out: &mut Out) {
    cardinality_rule(pair, out, Cardinality::wire_json_group);
}

/// The protobuf name of a field type (`int32`, `message`, …).
fn kind_name(kind: Type) -> &'static str {
    match kind {
        Type::Double => "double",
        Type::Float => "float",
        Type::Int64 => "int64",
        Type::Uint64 => "uint64",
        Type::Int32 => "int32",
        Type::Fixed64 => "fixed64",
        Type::Fixed32 => "fixed32",
        Type::Bool => "bool",
        Type::String => "string",
        Type::Group => "group",
        Type::Message => "message",
        Type::Bytes => "bytes",
        Type::Uint32 => "uint32",
        Type::Enum => "enum",
        Type::Sfixed32 => "sfixed32",
        Type::Sfixed64 => "sfixed64",
        Type::Sint32 => "sint32",
        Type::Sint64 => "sint64",
    }
}

/// Types in one group share an encoding (developers.google.com/protocol-buffers/docs/proto3#updating).
fn wire_group(kind: Type) -> u8 {
    match kind {
        Type::Int32 | Type::Int64 | Type::Uint32 | Type::Uint64 | Type::Bool => 1,
        Type::Sint32 | Type::Sint64 => 2,
        Type::String => 3,
        Type::Bytes => 4,
        Type::Fixed32 | Type::Sfixed32 => 5,
        Type::Fixed64 | Type::Sfixed64 => 6,
        Type::Double => 7,
        Type::Float => 8,
        Type::Group => 9,
        Type::Message => 10,
        Type::Enum => 11,
    }
}

/// Types in one group share both their binary and their JSON encoding.
fn wire_json_group(kind: Type) -> u8 {
    match kind {
        Type::Int32 | Type::Uint32 => 1,
        Type::Int64 | Type::Uint64 => 2,
        Type::Fixed32 | Type::Sfixed32 => 3,
        Type::Fixed64 | Type::Sfixed64 => 4,
        Type::Bool => 5,
        Type::Sint32 => 6,
        Type::Sint64 => 7,
        Type::String => 8,
        Type::Bytes => 9,
        Type::Double => 10,
        Type::Float => 11,
        Type::Group => 12,
        Type::Message => 13,
        Type::Enum => 14,
    }
}

fn is_named(kind: Type) -> bool {
    matches!(kind, Type::Enum | Type::Group | Type::Message)
}

fn type_at(field: &FieldView<'_>) -> crate::compat::index::At {
    if is_named(field.desc.r#type()) {
        field.at_sub(&[&[path::FIELD_TYPE_NAME], &[path::FIELD_TYPE]])
    } else {
        field.at_sub(&[&[path::FIELD_TYPE]])
    }
}

fn changed_kind(pair: &FieldPair<'_>, out: &mut Out, extra: &str) {
    out.push(
        type_at(&pair.current),
        format!(
            "{} changed type from \"{}\" to \"{}\".{extra}",
            pair.current.describe(),
            kind_name(pair.previous.desc.r#type()),
            kind_name(pair.current.desc.r#type())
        ),
    );
}

fn changed_type_name(pair: &FieldPair<'_>, out: &mut Out) {
    out.push(
        type_at(&pair.current),
        format!(
            "{} changed type from \"{}\" to \"{}\".",
            pair.current.describe(),
            pair.previous.desc.type_name().trim_start_matches('.'),
            pair.current.desc.type_name().trim_start_matches('.')
        ),
    );
}

pub(crate) fn field_same_type(pair: &FieldPair<'_>, out: &mut Out) {
    let (previous, current) = (pair.previous.desc, pair.current.desc);
    if previous.r#type() != current.r#type() {
        changed_kind(pair, out, "");
    } else if is_named(current.r#type()) && previous.type_name() != current.type_name() {
        changed_type_name(pair, out);
    }
}

const WIRE_RULES: &str = " See https://developers.google.com/protocol-buffers/docs/proto3#updating for wire compatibility rules.";

pub(crate) fn field_wire_compatible_type(pair: &FieldPair<'_>, out: &mut Out) {
    let (previous, current) = (pair.previous.desc.r#type(), pair.current.desc.r#type());
    if wire_group(previous) != wire_group(current) {
        match (previous, current) {
            // A string field can become bytes; the other way round is not enforceable.
            (Type::String, Type::Bytes) => {}
            (Type::Bytes, Type::String) => changed_kind(
                pair,
                out,
                &format!(
                    "{WIRE_RULES} Note that while string and bytes are compatible if the data is valid UTF-8, there is no way to enforce that a bytes field is UTF-8, so these fields may be incompatible."
                ),
            ),
            _ => changed_kind(pair, out, WIRE_RULES),
        }
        return;
    }
    same_named_type(pair, out);
}

pub(crate) fn field_wire_json_compatible_type(pair: &FieldPair<'_>, out: &mut Out) {
    let (previous, current) = (pair.previous.desc.r#type(), pair.current.desc.r#type());
    if wire_json_group(previous) != wire_json_group(current) {
        changed_kind(
            pair,
            out,
            " See https://developers.google.com/protocol-buffers/docs/proto3#updating for wire compatibility rules and https://developers.google.com/protocol-buffers/docs/proto3#json for JSON compatibility rules.",
        );
        return;
    }
    same_named_type(pair, out);
}

/// For fields of one wire group: message types must be the same; an enum may be another enum
/// with the same short name holding every previous value.
fn same_named_type(pair: &FieldPair<'_>, out: &mut Out) {
    let (previous, current) = (pair.previous.desc, pair.current.desc);
    if previous.type_name() == current.type_name() {
        return;
    }
    match current.r#type() {
        Type::Enum => {
            let old = pair.sides.previous.enum_def(previous.type_name());
            let new = pair.sides.current.enum_def(current.type_name());
            let compatible = match (old, new) {
                (Some(old), Some(new)) => {
                    old.name() == new.name()
                        && old.value.iter().all(|v| {
                            new.value
                                .iter()
                                .any(|n| n.name() == v.name() && n.number() == v.number())
                        })
                }
                _ => false,
            };
            if !compatible {
                changed_type_name(pair, out);
            }
        }
        Type::Group | Type::Message => changed_type_name(pair, out),
        _ => {}
    }
}

pub(crate) fn field_same_name(pair: &FieldPair<'_>, out: &mut Out) {
    let name = |f: &FieldView<'_>| {
        if f.is_extension() {
            f.full_name.clone()
        } else {
            f.name().to_owned()
        }
    };
    let (previous, current) = (name(&pair.previous), name(&pair.current));
    if previous != current {
        let owner = if pair.current.is_extension() {
            format!(
                "Extension \"{}\" on message \"{}\"",
                pair.current.number(),
                pair.current.owner
            )
        } else {
            format!(
                "Field \"{}\" on message \"{}\"",
                pair.current.number(),
                pair.current.owner
            )
        };
        out.push(
            pair.current.at_sub(&[&[path::FIELD_NAME]]),
            format!("{owner} changed name from \"{previous}\" to \"{current}\"."),
        );
    }
}

/// The JSON name protoc gives a field: `foo_bar` → `fooBar`, unless `json_name` is set.
pub(crate) fn json_name(field: &FieldView<'_>) -> String {
    if let Some(name) = &field.desc.json_name {
        return name.clone();
    }
    let mut out = String::new();
    let mut upper = false;
    for c in field.name().chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

pub(crate) fn field_same_json_name(pair: &FieldPair<'_>, out: &mut Out) {
    if pair.previous.is_extension() {
        return;
    }
    let (previous, current) = (json_name(&pair.previous), json_name(&pair.current));
    if previous != current {
        out.push(
            pair.current.at_sub(&[&[path::FIELD_JSON_NAME]]),
            format!(
                "{} changed option \"json_name\" from \"{previous}\" to \"{current}\".",
                pair.current.describe()
            ),
        );
    }
}

pub(crate) fn field_same_oneof(pair: &FieldPair<'_>, out: &mut Out) {
    if pair.previous.is_extension() {
        return;
    }
    let describe = pair.current.describe();
    match (pair.previous.real_oneof(), pair.current.real_oneof()) {
        (None, None) => {}
        (Some(previous), Some(current)) if previous == current => {}
        (Some(previous), Some(current)) => out.push(
            pair.current.at(),
            format!("{describe} moved from oneof \"{previous}\" to oneof \"{current}\"."),
        ),
        (Some(_), None) => out.push(
            pair.current.at(),
            format!("{describe} moved from inside to outside a oneof."),
        ),
        (None, Some(_)) => out.push(
            pair.current.at(),
            format!("{describe} moved from outside to inside a oneof."),
        ),
    }
}

/// A default value, comparable across types the way buf compares them.
#[derive(Debug, Clone, PartialEq)]
enum Default {
    Text(String),
    Int(i128),
    Float { value: f64, single: bool },
}

impl Default {
    fn is_zero(&self) -> bool {
        match self {
            Default::Text(text) => text.is_empty(),
            Default::Int(value) => *value == 0,
            Default::Float { value, .. } => *value == 0.0,
        }
    }

    fn same(&self, other: &Default) -> bool {
        match (self, other) {
            (Default::Text(a), Default::Text(b)) => a == b,
            (Default::Text(_), _) | (_, Default::Text(_)) => false,
            (Default::Int(a), Default::Int(b)) => a == b,
            (
                Default::Float {
                    value: a,
                    single: sa,
                },
                Default::Float {
                    value: b,
                    single: sb,
                },
            ) => {
                if a.is_nan() || b.is_nan() {
                    a.is_nan() && b.is_nan()
                } else if sa != sb {
                    (*a as f32) == (*b as f32)
                } else {
                    a == b
                }
            }
            (Default::Int(i), Default::Float { value, .. })
            | (Default::Float { value, .. }, Default::Int(i)) => (*i as f64) == *value,
        }
    }
}

/// The default of a singular scalar or enum field (explicit, or the type's implicit one), and
/// how to print it; `None` for fields that cannot have one.
fn default_of(field: &FieldView<'_>, index: &Index<'_>) -> Option<(Default, String)> {
    let desc = field.desc;
    if desc.label() == Label::Repeated || matches!(desc.r#type(), Type::Message | Type::Group) {
        return None;
    }
    let explicit = desc.default_value.as_deref();
    let value = match desc.r#type() {
        Type::String | Type::Bytes => {
            let text = explicit.unwrap_or_default().to_owned();
            let printable = format!("{text:?}");
            return Some((Default::Text(text), printable));
        }
        Type::Enum => {
            let def = index.enum_def(desc.type_name());
            let value = match (def, explicit) {
                (Some(def), Some(name)) => def.value.iter().find(|v| v.name() == name),
                (Some(def), None) => def.value.first(),
                (None, _) => None,
            };
            let number = value.map_or(0, |v| v.number());
            let printable = match (def, value) {
                (Some(def), Some(value)) => format!("{}.{}", def.name(), value.name()),
                _ => number.to_string(),
            };
            return Some((Default::Int(number.into()), printable));
        }
        Type::Bool => Default::Int(i128::from(explicit == Some("true"))),
        Type::Float | Type::Double => {
            let value = match explicit {
                Some("inf") => f64::INFINITY,
                Some("-inf") => f64::NEG_INFINITY,
                Some("nan") => f64::NAN,
                Some(text) => text.parse().unwrap_or(0.0),
                None => 0.0,
            };
            Default::Float {
                value,
                single: desc.r#type() == Type::Float,
            }
        }
        _ => Default::Int(explicit.and_then(|t| t.parse().ok()).unwrap_or(0)),
    };
    let printable = match (&value, desc.r#type()) {
        (Default::Int(v), Type::Bool) => (*v != 0).to_string(),
        (Default::Int(v), _) => v.to_string(),
        (Default::Float { value, .. }, _) => value.to_string(),
        (Default::Text(t), _) => t.clone(),
    };
    Some((value, printable))
}

pub(crate) fn field_same_default(pair: &FieldPair<'_>, out: &mut Out) {
    let previous = default_of(&pair.previous, &pair.sides.previous);
    let current = default_of(&pair.current, &pair.sides.current);
    let (Some((previous, previous_text)), Some((current, current_text))) = (previous, current)
    else {
        return;
    };
    if previous.is_zero() && current.is_zero() {
        return;
    }
    if !previous.same(&current) {
        out.push(
            pair.current.at_sub(&[&[path::FIELD_DEFAULT]]),
            format!(
                "{} changed default value from {previous_text} to {current_text}.",
                pair.current.describe()
            ),
        );
    }
}

/// The C++ string type of a string or bytes field: (type, is `STRING_PIECE`).
fn cpp_string_type(field: &FieldView<'_>) -> (&'static str, bool) {
    let ctype = field
        .desc
        .options
        .as_ref()
        .filter(|o| o.ctype.is_some())
        .map(|o| o.ctype());
    match ctype {
        Some(CType::Cord) => ("CORD", false),
        Some(CType::StringPiece) => ("STRING", true),
        _ => ("STRING", false),
    }
}

fn is_string_or_bytes(field: &FieldView<'_>) -> bool {
    matches!(field.desc.r#type(), Type::String | Type::Bytes)
}

pub(crate) fn field_same_cpp_string_type(pair: &FieldPair<'_>, out: &mut Out) {
    if in_map_entries(pair)
        || !is_string_or_bytes(&pair.previous)
        || !is_string_or_bytes(&pair.current)
    {
        return;
    }
    let previous = cpp_string_type(&pair.previous);
    let current = cpp_string_type(&pair.current);
    // STRING_PIECE may become STRING.
    if previous != current && !(previous.1 && current == ("STRING", false)) {
        let show = |(kind, piece): (&str, bool)| {
            if piece {
                "STRING_PIECE".to_owned()
            } else {
                kind.to_owned()
            }
        };
        out.push(
            pair.current.at_sub(&[&[path::FIELD_OPTIONS, FIELD_CTYPE]]),
            format!(
                "{} changed C++ string type from \"{}\" to \"{}\".",
                pair.current.describe(),
                show(previous),
                show(current)
            ),
        );
    }
}

/// The UTF-8 validation a string field gets from its file's syntax.
fn utf8_validation(field: &FieldView<'_>) -> &'static str {
    match field.file.syntax() {
        Syntax::Proto3 => "VERIFY",
        Syntax::Proto2 => "NONE",
    }
}

fn java_utf8_validation(field: &FieldView<'_>) -> &'static str {
    let check = field
        .file
        .desc
        .options
        .as_ref()
        .is_some_and(|o| o.java_string_check_utf8());
    if check {
        "VERIFY"
    } else {
        utf8_validation(field)
    }
}

fn both_strings(pair: &FieldPair<'_>) -> bool {
    pair.previous.desc.r#type() == Type::String && pair.current.desc.r#type() == Type::String
}

pub(crate) fn field_same_java_utf8_validation(pair: &FieldPair<'_>, out: &mut Out) {
    if !both_strings(pair) {
        return;
    }
    let previous = java_utf8_validation(&pair.previous);
    let current = java_utf8_validation(&pair.current);
    if previous != current {
        let file_option = [path::FILE_OPTIONS, FILE_JAVA_STRING_CHECK_UTF8];
        let at = pair
            .current
            .file
            .at_first(&[&file_option, &pair.current.path]);
        out.push(
            at,
            format!(
                "{} changed Java string UTF8 validation from \"{previous}\" to \"{current}\".",
                pair.current.describe()
            ),
        );
    }
}

pub(crate) fn field_same_utf8_validation(pair: &FieldPair<'_>, out: &mut Out) {
    if !both_strings(pair) {
        return;
    }
    let previous = utf8_validation(&pair.previous);
    let current = utf8_validation(&pair.current);
    if previous != current {
        out.push(
            pair.current.at(),
            format!(
                "{} changed UTF8 validation from {previous} to {current}.",
                pair.current.describe()
            ),
        );
    }
}

fn is_64_bit_integer(field: &FieldView<'_>) -> bool {
    matches!(
        field.desc.r#type(),
        Type::Int64 | Type::Sint64 | Type::Uint64 | Type::Fixed64 | Type::Sfixed64
    )
}

pub(crate) fn field_same_jstype(pair: &FieldPair<'_>, out: &mut Out) {
    if !is_64_bit_integer(&pair.previous) || !is_64_bit_integer(&pair.current) {
        return;
    }
    let jstype = |f: &FieldView<'_>| {
        f.desc
            .options
            .as_ref()
            .map_or(JsType::JsNormal, |o| o.jstype())
            .as_str_name()
    };
    let (previous, current) = (jstype(&pair.previous), jstype(&pair.current));
    if previous != current {
        out.push(
            pair.current.at_sub(&[&[path::FIELD_OPTIONS, FIELD_JSTYPE]]),
            format!(
                "{} changed option \"jstype\" from \"{previous}\" to \"{current}\".",
                pair.current.describe()
            ),
        );
    }
}
