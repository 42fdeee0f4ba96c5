//! One side of a comparison, indexed: every file, message, enum, service and extension of the
//! checked files by name, views that know their source location, and a type table that also
//! covers imported files (well-known types) for resolving field types.
//!
//! Nothing here compares; the walkers in `pairs` and the rules do that.

use std::collections::{BTreeMap, HashMap};

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto,
    FileDescriptorSet, MethodDescriptorProto, ServiceDescriptorProto,
};

use super::{Location, Side};

/// Descriptor field numbers used as source-info path segments.
pub(crate) mod path {
    pub(crate) const FILE_PACKAGE: i32 = 2;
    pub(crate) const FILE_MESSAGE: i32 = 4;
    pub(crate) const FILE_ENUM: i32 = 5;
    pub(crate) const FILE_SERVICE: i32 = 6;
    pub(crate) const FILE_EXTENSION: i32 = 7;
    pub(crate) const FILE_OPTIONS: i32 = 8;
    pub(crate) const FILE_SYNTAX: i32 = 12;
    pub(crate) const MESSAGE_FIELD: i32 = 2;
    pub(crate) const MESSAGE_NESTED: i32 = 3;
    pub(crate) const MESSAGE_ENUM: i32 = 4;
    pub(crate) const MESSAGE_EXTENSION: i32 = 6;
    pub(crate) const MESSAGE_OPTIONS: i32 = 7;
    pub(crate) const MESSAGE_ONEOF: i32 = 8;
    pub(crate) const FIELD_NAME: i32 = 1;
    pub(crate) const FIELD_LABEL: i32 = 4;
    pub(crate) const FIELD_TYPE: i32 = 5;
    pub(crate) const FIELD_TYPE_NAME: i32 = 6;
    pub(crate) const FIELD_DEFAULT: i32 = 7;
    pub(crate) const FIELD_OPTIONS: i32 = 8;
    pub(crate) const FIELD_JSON_NAME: i32 = 10;
    pub(crate) const ENUM_VALUE: i32 = 2;
    pub(crate) const ENUM_VALUE_NUMBER: i32 = 2;
    pub(crate) const SERVICE_METHOD: i32 = 2;
    pub(crate) const METHOD_INPUT: i32 = 2;
    pub(crate) const METHOD_OUTPUT: i32 = 3;
    pub(crate) const METHOD_OPTIONS: i32 = 4;
}

/// The syntax of a file; protox compiles proto2 and proto3 (not editions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Syntax {
    Proto2,
    Proto3,
}

impl Syntax {
    pub(crate) fn of(file: &FileDescriptorProto) -> Syntax {
        if file.syntax() == "proto3" {
            Syntax::Proto3
        } else {
            Syntax::Proto2
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Syntax::Proto2 => "proto2",
            Syntax::Proto3 => "proto3",
        }
    }
}

/// Where an element is and which package it belongs to: what a rule attaches to a finding.
#[derive(Debug, Clone)]
pub(crate) struct At {
    pub(crate) location: Location,
    pub(crate) package: String,
}

/// The source positions of one file: source-info path → 1-based (line, column).
#[derive(Debug, Default)]
pub(crate) struct FileSpans {
    spans: HashMap<Vec<i32>, (u32, u32)>,
}

/// The source positions of every file of a set.
#[derive(Debug, Default)]
pub(crate) struct Spans {
    files: HashMap<String, FileSpans>,
}

impl Spans {
    pub(crate) fn new(set: &FileDescriptorSet) -> Spans {
        let mut files = HashMap::new();
        for file in &set.file {
            let mut spans = HashMap::new();
            for location in file.source_code_info.iter().flat_map(|info| &info.location) {
                if let [line, column, ..] = location.span[..] {
                    // The first location of a path is the element itself; later ones are
                    // repeated statements (several `reserved` lines, several `extend` blocks).
                    spans
                        .entry(location.path.clone())
                        .or_insert((line as u32 + 1, column as u32 + 1));
                }
            }
            let package = if file.package().is_empty() {
                String::new()
            } else {
                format!(".{}", file.package())
            };
            alias_map_entries(
                &file.message_type,
                &[path::FILE_MESSAGE],
                &package,
                &mut spans,
            );
            files.insert(file.name().to_owned(), FileSpans { spans });
        }
        Spans { files }
    }
}

/// Map-entry messages have no source of their own: point them and their `key` and `value`
/// fields at the map field that declares them, as buf does.
fn alias_map_entries(
    messages: &[DescriptorProto],
    base: &[i32],
    scope: &str,
    spans: &mut HashMap<Vec<i32>, (u32, u32)>,
) {
    for (i, message) in messages.iter().enumerate() {
        let message_path = sub(base, &[i as i32]);
        let full_name = format!("{scope}.{}", message.name());
        for (j, nested) in message.nested_type.iter().enumerate() {
            if !is_map_entry(nested) {
                continue;
            }
            let entry_type = format!("{full_name}.{}", nested.name());
            let field = message
                .field
                .iter()
                .position(|f| f.type_name() == entry_type);
            let span = field.and_then(|k| {
                spans
                    .get(&sub(&message_path, &[path::MESSAGE_FIELD, k as i32]))
                    .copied()
            });
            if let Some(span) = span {
                let entry_path = sub(&message_path, &[path::MESSAGE_NESTED, j as i32]);
                for k in 0..nested.field.len() {
                    spans
                        .entry(sub(&entry_path, &[path::MESSAGE_FIELD, k as i32]))
                        .or_insert(span);
                }
                spans.entry(entry_path).or_insert(span);
            }
        }
        alias_map_entries(
            &message.nested_type,
            &sub(&message_path, &[path::MESSAGE_NESTED]),
            &full_name,
            spans,
        );
    }
}

static NO_SPANS: std::sync::LazyLock<FileSpans> = std::sync::LazyLock::new(FileSpans::default);

/// A checked file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileView<'a> {
    pub(crate) desc: &'a FileDescriptorProto,
    pub(crate) side: Side,
    spans: &'a FileSpans,
}

impl<'a> FileView<'a> {
    pub(crate) fn name(&self) -> &'a str {
        self.desc.name()
    }

    pub(crate) fn package(&self) -> &'a str {
        self.desc.package()
    }

    pub(crate) fn syntax(&self) -> Syntax {
        Syntax::of(self.desc)
    }

    /// The file itself, without a line.
    pub(crate) fn at_file(&self) -> At {
        At {
            location: Location {
                side: self.side,
                file: self.name().to_owned(),
                line: None,
                column: None,
            },
            package: self.package().to_owned(),
        }
    }

    /// The first of `paths` that has a source position, or the file itself.
    pub(crate) fn at_first(&self, paths: &[&[i32]]) -> At {
        let mut at = self.at_file();
        if let Some(&(line, column)) = paths.iter().find_map(|p| self.spans.spans.get(*p)) {
            at.location.line = Some(line);
            at.location.column = Some(column);
        }
        at
    }

    /// `path` inside the file, falling back to the file itself.
    pub(crate) fn at(&self, path: &[i32]) -> At {
        self.at_first(&[path])
    }
}

/// Appends `suffix` to `path`.
pub(crate) fn sub(path: &[i32], suffix: &[i32]) -> Vec<i32> {
    let mut out = path.to_vec();
    out.extend_from_slice(suffix);
    out
}

/// A checked message (map entries included, as buf includes them).
#[derive(Debug, Clone)]
pub(crate) struct MessageView<'a> {
    pub(crate) file: FileView<'a>,
    pub(crate) desc: &'a DescriptorProto,
    /// Fully-qualified name without the leading dot.
    pub(crate) full_name: String,
    /// Name inside the package (`Outer.Inner`).
    pub(crate) nested_name: String,
    pub(crate) path: Vec<i32>,
}

impl<'a> MessageView<'a> {
    pub(crate) fn name(&self) -> &'a str {
        self.desc.name()
    }

    pub(crate) fn at(&self) -> At {
        self.file.at(&self.path)
    }

    /// A sub-element of the message (`[MESSAGE_OPTIONS]`, …), falling back to the message.
    pub(crate) fn at_sub(&self, suffix: &[i32]) -> At {
        self.file.at_first(&[&sub(&self.path, suffix), &self.path])
    }

    pub(crate) fn is_map_entry(&self) -> bool {
        is_map_entry(self.desc)
    }

    pub(crate) fn fields(&self) -> impl Iterator<Item = FieldView<'a>> + '_ {
        self.desc
            .field
            .iter()
            .enumerate()
            .map(move |(i, desc)| FieldView {
                file: self.file,
                desc,
                parent: Some(self.desc),
                owner: self.name().to_owned(),
                full_name: format!("{}.{}", self.full_name, desc.name()),
                path: sub(&self.path, &[path::MESSAGE_FIELD, i as i32]),
            })
    }
}

pub(crate) fn is_map_entry(desc: &DescriptorProto) -> bool {
    desc.options.as_ref().is_some_and(|o| o.map_entry())
}

/// A field of a checked message, or an extension.
#[derive(Debug, Clone)]
pub(crate) struct FieldView<'a> {
    pub(crate) file: FileView<'a>,
    pub(crate) desc: &'a FieldDescriptorProto,
    /// The message declaring the field; `None` for extensions.
    pub(crate) parent: Option<&'a DescriptorProto>,
    /// The short name of the declaring message, or the extendee for extensions.
    pub(crate) owner: String,
    pub(crate) full_name: String,
    pub(crate) path: Vec<i32>,
}

impl<'a> FieldView<'a> {
    pub(crate) fn name(&self) -> &'a str {
        self.desc.name()
    }

    pub(crate) fn number(&self) -> i32 {
        self.desc.number()
    }

    /// The name inside the package (`Outer.ext` for an extension declared in a message).
    pub(crate) fn nested_name(&self) -> &str {
        let package = self.file.package();
        if package.is_empty() {
            &self.full_name
        } else {
            self.full_name
                .strip_prefix(package)
                .and_then(|n| n.strip_prefix('.'))
                .unwrap_or(&self.full_name)
        }
    }

    pub(crate) fn is_extension(&self) -> bool {
        self.desc.extendee.is_some()
    }

    pub(crate) fn at(&self) -> At {
        self.file.at(&self.path)
    }

    /// The first of the field's sub-elements (`FIELD_TYPE`, …) with a position, or the field.
    pub(crate) fn at_sub(&self, suffixes: &[&[i32]]) -> At {
        let paths: Vec<Vec<i32>> = suffixes.iter().map(|s| sub(&self.path, s)).collect();
        let mut refs: Vec<&[i32]> = paths.iter().map(Vec::as_slice).collect();
        refs.push(&self.path);
        self.file.at_first(&refs)
    }

    /// How buf names a field in messages: `Field "3" with name "foo" on message "Bar"`.
    pub(crate) fn describe(&self) -> String {
        if self.is_extension() {
            format!(
                "Extension \"{}\" with name \"{}\" on message \"{}\"",
                self.number(),
                self.full_name,
                self.desc.extendee().trim_start_matches('.')
            )
        } else {
            format!(
                "Field \"{}\" with name \"{}\" on message \"{}\"",
                self.number(),
                self.name(),
                self.owner
            )
        }
    }

    /// The oneof the field really belongs to: `None` outside oneofs and for the synthetic
    /// oneof of a proto3 `optional` field.
    pub(crate) fn real_oneof(&self) -> Option<&'a str> {
        if self.desc.proto3_optional() {
            return None;
        }
        let index = self.desc.oneof_index? as usize;
        self.parent?.oneof_decl.get(index).map(|o| o.name())
    }
}

/// A checked enum.
#[derive(Debug, Clone)]
pub(crate) struct EnumView<'a> {
    pub(crate) file: FileView<'a>,
    pub(crate) desc: &'a EnumDescriptorProto,
    pub(crate) full_name: String,
    pub(crate) nested_name: String,
    pub(crate) path: Vec<i32>,
}

impl<'a> EnumView<'a> {
    pub(crate) fn name(&self) -> &'a str {
        self.desc.name()
    }

    pub(crate) fn at(&self) -> At {
        self.file.at(&self.path)
    }

    /// Enum values grouped by number (aliases share one), each with its source path.
    pub(crate) fn values_by_number(&self) -> BTreeMap<i32, Vec<(&'a str, Vec<i32>)>> {
        let mut out: BTreeMap<i32, Vec<(&'a str, Vec<i32>)>> = BTreeMap::new();
        for (i, value) in self.desc.value.iter().enumerate() {
            out.entry(value.number())
                .or_default()
                .push((value.name(), sub(&self.path, &[path::ENUM_VALUE, i as i32])));
        }
        out
    }
}

/// A checked service.
#[derive(Debug, Clone)]
pub(crate) struct ServiceView<'a> {
    pub(crate) file: FileView<'a>,
    pub(crate) desc: &'a ServiceDescriptorProto,
    pub(crate) full_name: String,
    pub(crate) path: Vec<i32>,
}

impl<'a> ServiceView<'a> {
    pub(crate) fn name(&self) -> &'a str {
        self.desc.name()
    }

    pub(crate) fn at(&self) -> At {
        self.file.at(&self.path)
    }

    pub(crate) fn methods(&self) -> impl Iterator<Item = MethodView<'a>> + '_ {
        self.desc
            .method
            .iter()
            .enumerate()
            .map(move |(i, desc)| MethodView {
                file: self.file,
                desc,
                service: self.name(),
                path: sub(&self.path, &[path::SERVICE_METHOD, i as i32]),
            })
    }
}

/// An rpc of a checked service.
#[derive(Debug, Clone)]
pub(crate) struct MethodView<'a> {
    pub(crate) file: FileView<'a>,
    pub(crate) desc: &'a MethodDescriptorProto,
    pub(crate) service: &'a str,
    pub(crate) path: Vec<i32>,
}

impl<'a> MethodView<'a> {
    pub(crate) fn name(&self) -> &'a str {
        self.desc.name()
    }

    pub(crate) fn at(&self) -> At {
        self.file.at(&self.path)
    }

    pub(crate) fn at_sub(&self, suffix: &[i32]) -> At {
        self.file.at_first(&[&sub(&self.path, suffix), &self.path])
    }
}

/// A named type anywhere in the compiled set, imports included.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TypeDef<'a> {
    Message(&'a DescriptorProto),
    Enum(&'a EnumDescriptorProto),
}

/// Where a type is defined, for Rust paths and feature resolution.
#[derive(Debug, Clone)]
pub(crate) struct TypeInfo<'a> {
    pub(crate) def: TypeDef<'a>,
    pub(crate) package: &'a str,
    /// The names of the enclosing messages, outermost first.
    pub(crate) parents: Vec<&'a str>,
}

/// One side, indexed.
#[derive(Debug)]
pub(crate) struct Index<'a> {
    /// The checked files by path.
    pub(crate) files: BTreeMap<&'a str, FileView<'a>>,
    pub(crate) messages: BTreeMap<String, MessageView<'a>>,
    pub(crate) enums: BTreeMap<String, EnumView<'a>>,
    pub(crate) services: BTreeMap<String, ServiceView<'a>>,
    pub(crate) extensions: Vec<FieldView<'a>>,
    /// Every type of the set by full name (no leading dot), imports included.
    pub(crate) types: HashMap<String, TypeInfo<'a>>,
}

impl<'a> Index<'a> {
    /// Indexes `set`; only files for which `checked` is true are compared, the rest only
    /// resolve types.
    pub(crate) fn new(
        set: &'a FileDescriptorSet,
        spans: &'a Spans,
        side: Side,
        checked: &dyn Fn(&str) -> bool,
    ) -> Index<'a> {
        let mut index = Index {
            files: BTreeMap::new(),
            messages: BTreeMap::new(),
            enums: BTreeMap::new(),
            services: BTreeMap::new(),
            extensions: Vec::new(),
            types: HashMap::new(),
        };
        for desc in &set.file {
            let file = FileView {
                desc,
                side,
                spans: spans.files.get(desc.name()).unwrap_or(&NO_SPANS),
            };
            let own = checked(desc.name());
            index.add_types(file, own);
            if !own {
                continue;
            }
            index.files.insert(desc.name(), file);
            for (i, service) in desc.service.iter().enumerate() {
                let full_name = qualify(desc.package(), service.name());
                index.services.insert(
                    full_name.clone(),
                    ServiceView {
                        file,
                        desc: service,
                        full_name,
                        path: vec![path::FILE_SERVICE, i as i32],
                    },
                );
            }
            for (i, ext) in desc.extension.iter().enumerate() {
                index.extensions.push(FieldView {
                    file,
                    desc: ext,
                    parent: None,
                    owner: ext.extendee().trim_start_matches('.').to_owned(),
                    full_name: qualify(desc.package(), ext.name()),
                    path: vec![path::FILE_EXTENSION, i as i32],
                });
            }
        }
        index
    }

    fn add_types(&mut self, file: FileView<'a>, own: bool) {
        let desc = file.desc;
        for (i, message) in desc.message_type.iter().enumerate() {
            self.add_message(file, own, message, &[], vec![path::FILE_MESSAGE, i as i32]);
        }
        for (i, enum_) in desc.enum_type.iter().enumerate() {
            self.add_enum(file, own, enum_, &[], vec![path::FILE_ENUM, i as i32]);
        }
    }

    fn add_message(
        &mut self,
        file: FileView<'a>,
        own: bool,
        desc: &'a DescriptorProto,
        parents: &[&'a str],
        path: Vec<i32>,
    ) {
        let nested_name = nested(parents, desc.name());
        let full_name = qualify(file.package(), &nested_name);
        self.types.insert(
            full_name.clone(),
            TypeInfo {
                def: TypeDef::Message(desc),
                package: file.package(),
                parents: parents.to_vec(),
            },
        );
        let mut inner = parents.to_vec();
        inner.push(desc.name());
        for (i, nested_desc) in desc.nested_type.iter().enumerate() {
            let nested_path = sub(&path, &[path::MESSAGE_NESTED, i as i32]);
            self.add_message(file, own, nested_desc, &inner, nested_path);
        }
        for (i, enum_) in desc.enum_type.iter().enumerate() {
            let enum_path = sub(&path, &[path::MESSAGE_ENUM, i as i32]);
            self.add_enum(file, own, enum_, &inner, enum_path);
        }
        if !own {
            return;
        }
        for (i, ext) in desc.extension.iter().enumerate() {
            self.extensions.push(FieldView {
                file,
                desc: ext,
                parent: None,
                owner: ext.extendee().trim_start_matches('.').to_owned(),
                full_name: format!("{full_name}.{}", ext.name()),
                path: sub(&path, &[path::MESSAGE_EXTENSION, i as i32]),
            });
        }
        self.messages.insert(
            full_name.clone(),
            MessageView {
                file,
                desc,
                full_name,
                nested_name,
                path,
            },
        );
    }

    fn add_enum(
        &mut self,
        file: FileView<'a>,
        own: bool,
        desc: &'a EnumDescriptorProto,
        parents: &[&'a str],
        path: Vec<i32>,
    ) {
        let nested_name = nested(parents, desc.name());
        let full_name = qualify(file.package(), &nested_name);
        self.types.insert(
            full_name.clone(),
            TypeInfo {
                def: TypeDef::Enum(desc),
                package: file.package(),
                parents: parents.to_vec(),
            },
        );
        if own {
            self.enums.insert(
                full_name.clone(),
                EnumView {
                    file,
                    desc,
                    full_name,
                    nested_name,
                    path,
                },
            );
        }
    }

    /// The definition of a type name as it appears in descriptors (leading dot or not).
    pub(crate) fn type_info(&self, type_name: &str) -> Option<&TypeInfo<'a>> {
        self.types.get(type_name.trim_start_matches('.'))
    }

    pub(crate) fn message_def(&self, type_name: &str) -> Option<&'a DescriptorProto> {
        match self.type_info(type_name)?.def {
            TypeDef::Message(desc) => Some(desc),
            TypeDef::Enum(_) => None,
        }
    }

    pub(crate) fn enum_def(&self, type_name: &str) -> Option<&'a EnumDescriptorProto> {
        match self.type_info(type_name)?.def {
            TypeDef::Enum(desc) => Some(desc),
            TypeDef::Message(_) => None,
        }
    }

    /// True for a `map<K, V>` field: repeated, typed by a map-entry message.
    pub(crate) fn is_map(&self, field: &FieldDescriptorProto) -> bool {
        field.label() == Label::Repeated
            && field.r#type() == Type::Message
            && self
                .message_def(field.type_name())
                .is_some_and(is_map_entry)
    }
}

fn qualify(package: &str, name: &str) -> String {
    if package.is_empty() {
        name.to_owned()
    } else {
        format!("{package}.{name}")
    }
}

fn nested(parents: &[&str], name: &str) -> String {
    let mut out = parents.join(".");
    if !out.is_empty() {
        out.push('.');
    }
    out.push_str(name);
    out
}
