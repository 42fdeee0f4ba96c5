//! buf-style pair walkers: match every element of the previous side with its counterpart on the
//! current side (files by path, messages, enums and services by full name, fields by number,
//! extensions by extendee and number, enum values by number, rpcs by name) so that rules only
//! compare one pair at a time. Elements without a counterpart are left to the deletion rules.
//!
//! The pairs are built once per check and handed to every rule of the matching kind.

use std::collections::{BTreeMap, BTreeSet};

use super::index::{
    At, EnumView, FieldView, FileView, Index, MessageView, MethodView, ServiceView,
};
use super::rust_api::RustApi;

/// Both sides of a check, indexed.
#[derive(Debug)]
pub(crate) struct Sides<'a> {
    pub(crate) previous: Index<'a>,
    pub(crate) current: Index<'a>,
}

/// Both sides' generated Rust API, for the SOURCE rules.
#[derive(Debug)]
pub(crate) struct RustSides {
    pub(crate) previous: RustApi,
    pub(crate) current: RustApi,
}

/// The findings of one rule, before the rule's ID is attached.
#[derive(Debug, Default)]
pub(crate) struct Out {
    pub(crate) items: Vec<(At, String)>,
}

impl Out {
    pub(crate) fn push(&mut self, at: At, message: impl Into<String>) {
        self.items.push((at, message.into()));
    }
}

/// A file present on both sides.
#[derive(Debug)]
pub(crate) struct FilePair<'s> {
    pub(crate) previous: FileView<'s>,
    pub(crate) current: FileView<'s>,
}

/// A message present on both sides (same full name).
#[derive(Debug)]
pub(crate) struct MessagePair<'s> {
    pub(crate) previous: &'s MessageView<'s>,
    pub(crate) current: &'s MessageView<'s>,
}

/// A field (same message, same number) or an extension (same extendee, same number).
#[derive(Debug)]
pub(crate) struct FieldPair<'s> {
    pub(crate) previous: FieldView<'s>,
    pub(crate) current: FieldView<'s>,
    pub(crate) sides: &'s Sides<'s>,
}

/// An enum present on both sides.
#[derive(Debug)]
pub(crate) struct EnumPair<'s> {
    pub(crate) previous: &'s EnumView<'s>,
    pub(crate) current: &'s EnumView<'s>,
}

/// One enum number present on both sides, with its names (aliases included) and their paths.
#[derive(Debug)]
pub(crate) struct EnumValuePair<'s> {
    pub(crate) number: i32,
    pub(crate) current_enum: &'s EnumView<'s>,
    pub(crate) previous: Vec<(&'s str, Vec<i32>)>,
    pub(crate) current: Vec<(&'s str, Vec<i32>)>,
}

/// A service present on both sides.
#[derive(Debug)]
pub(crate) struct ServicePair<'s> {
    pub(crate) previous: &'s ServiceView<'s>,
    pub(crate) current: &'s ServiceView<'s>,
}

/// An rpc (same service, same name).
#[derive(Debug)]
pub(crate) struct MethodPair<'s> {
    pub(crate) previous: MethodView<'s>,
    pub(crate) current: MethodView<'s>,
}

/// What a rule is handed: the kind of pair decides which walker feeds it.
#[derive(Clone, Copy)]
pub(crate) enum Handler {
    /// Whole sides, for deletions of files and package-level elements.
    Sides(fn(&Sides<'_>, &mut Out)),
    File(fn(&FilePair<'_>, &mut Out)),
    Message(fn(&MessagePair<'_>, &mut Out)),
    Field(fn(&FieldPair<'_>, &mut Out)),
    Enum(fn(&EnumPair<'_>, &mut Out)),
    EnumValue(fn(&EnumValuePair<'_>, &mut Out)),
    Service(fn(&ServicePair<'_>, &mut Out)),
    Method(fn(&MethodPair<'_>, &mut Out)),
    /// The generated Rust API of both sides (SOURCE rules).
    Rust(fn(&RustSides, &mut Out)),
}

/// Every matched pair of a check, built once.
#[derive(Debug)]
pub(crate) struct Pairs<'s> {
    pub(crate) sides: &'s Sides<'s>,
    pub(crate) rust: &'s RustSides,
    files: Vec<FilePair<'s>>,
    messages: Vec<MessagePair<'s>>,
    fields: Vec<FieldPair<'s>>,
    enums: Vec<EnumPair<'s>>,
    enum_values: Vec<EnumValuePair<'s>>,
    services: Vec<ServicePair<'s>>,
    methods: Vec<MethodPair<'s>>,
}

impl<'s> Pairs<'s> {
    pub(crate) fn new(sides: &'s Sides<'s>, rust: &'s RustSides) -> Pairs<'s> {
        let (previous, current) = (&sides.previous, &sides.current);
        let files = matched(&previous.files, &current.files)
            .map(|(p, c)| FilePair {
                previous: *p,
                current: *c,
            })
            .collect();
        let messages: Vec<MessagePair<'s>> = matched(&previous.messages, &current.messages)
            .map(|(p, c)| MessagePair {
                previous: p,
                current: c,
            })
            .collect();
        let mut fields = Vec::new();
        for pair in &messages {
            let current_fields: BTreeMap<i32, FieldView<'s>> =
                pair.current.fields().map(|f| (f.number(), f)).collect();
            for previous_field in pair.previous.fields() {
                if let Some(current_field) = current_fields.get(&previous_field.number()) {
                    fields.push(FieldPair {
                        previous: previous_field,
                        current: current_field.clone(),
                        sides,
                    });
                }
            }
        }
        let extension_key = |f: &FieldView<'s>| (f.desc.extendee().to_owned(), f.number());
        let current_extensions: BTreeMap<(String, i32), &FieldView<'s>> = current
            .extensions
            .iter()
            .map(|f| (extension_key(f), f))
            .collect();
        for previous_ext in &previous.extensions {
            if let Some(current_ext) = current_extensions.get(&extension_key(previous_ext)) {
                fields.push(FieldPair {
                    previous: previous_ext.clone(),
                    current: (*current_ext).clone(),
                    sides,
                });
            }
        }
        let enums: Vec<EnumPair<'s>> = matched(&previous.enums, &current.enums)
            .map(|(p, c)| EnumPair {
                previous: p,
                current: c,
            })
            .collect();
        let mut enum_values = Vec::new();
        for pair in &enums {
            let mut current_values = pair.current.values_by_number();
            for (number, previous_names) in pair.previous.values_by_number() {
                if let Some(current_names) = current_values.remove(&number) {
                    enum_values.push(EnumValuePair {
                        number,
                        current_enum: pair.current,
                        previous: previous_names,
                        current: current_names,
                    });
                }
            }
        }
        let services: Vec<ServicePair<'s>> = matched(&previous.services, &current.services)
            .map(|(p, c)| ServicePair {
                previous: p,
                current: c,
            })
            .collect();
        let mut methods = Vec::new();
        for pair in &services {
            let current_methods: BTreeMap<&str, MethodView<'s>> =
                pair.current.methods().map(|m| (m.name(), m)).collect();
            for previous_method in pair.previous.methods() {
                if let Some(current_method) = current_methods.get(previous_method.name()) {
                    methods.push(MethodPair {
                        previous: previous_method,
                        current: current_method.clone(),
                    });
                }
            }
        }
        Pairs {
            sides,
            rust,
            files,
            messages,
            fields,
            enums,
            enum_values,
            services,
            methods,
        }
    }

    /// Runs one rule over the pairs of its kind.
    pub(crate) fn run(&self, handler: Handler, out: &mut Out) {
        match handler {
            Handler::Sides(f) => f(self.sides, out),
            Handler::File(f) => self.files.iter().for_each(|p| f(p, out)),
            Handler::Message(f) => self.messages.iter().for_each(|p| f(p, out)),
            Handler::Field(f) => self.fields.iter().for_each(|p| f(p, out)),
            Handler::Enum(f) => self.enums.iter().for_each(|p| f(p, out)),
            Handler::EnumValue(f) => self.enum_values.iter().for_each(|p| f(p, out)),
            Handler::Service(f) => self.services.iter().for_each(|p| f(p, out)),
            Handler::Method(f) => self.methods.iter().for_each(|p| f(p, out)),
            Handler::Rust(f) => f(self.rust, out),
        }
    }
}

/// The entries of `previous` whose key is also in `current`, in key order.
pub(crate) fn matched<'m, K: Ord, V>(
    previous: &'m BTreeMap<K, V>,
    current: &'m BTreeMap<K, V>,
) -> impl Iterator<Item = (&'m V, &'m V)> {
    previous
        .iter()
        .filter_map(|(key, p)| current.get(key).map(|c| (p, c)))
}

/// The entries of `previous` whose key is not in `current`, in key order.
pub(crate) fn missing<'m, K: Ord, V, W>(
    previous: &'m BTreeMap<K, V>,
    current: &'m BTreeMap<K, W>,
) -> impl Iterator<Item = (&'m K, &'m V)> {
    previous
        .iter()
        .filter(|(key, _)| !current.contains_key(*key))
}

/// The shape of buf's file-level `*_NO_DELETE` rules: reports every previous element whose
/// (file, name inside the package) is gone from a file the current side still has. A deleted
/// file is left to the file rules.
pub(crate) fn deleted_from_file<'a, T: 'a>(
    sides: &Sides<'_>,
    previous: impl IntoIterator<Item = &'a T>,
    current: impl IntoIterator<Item = &'a T>,
    key: impl Fn(&'a T) -> (&'a str, &'a str),
    at: impl Fn(&'a T) -> At,
    kind: &str,
    out: &mut Out,
) {
    let current: BTreeSet<(&str, &str)> = current.into_iter().map(&key).collect();
    for element in previous {
        let (file, name) = key(element);
        if sides.current.files.contains_key(file) && !current.contains(&(file, name)) {
            out.push(
                at(element),
                format!("Previously present {kind} \"{name}\" was deleted from file."),
            );
        }
    }
}
