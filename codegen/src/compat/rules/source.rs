//! SOURCE rules: changes that may leave the wire alone but break a plugin author's Rust code,
//! judged on the Rust API `generate` produces (see `rust_api`): paths of structs, enums and
//! service traits, member names and types, derives, variants and method signatures.
//!
//! Additions are compatible, following prost's convention that struct literals use
//! `..Default::default()` and matches on generated enums have a wildcard arm.

use std::collections::BTreeMap;

use crate::compat::index::At;
use crate::compat::pairs::{Out, RustSides, missing};
use crate::compat::rust_api::{RustEnum, RustService, RustStruct, StructKind};
use crate::names;

fn last_segment(path: &str) -> &str {
    path.rsplit("::").next().unwrap_or(path)
}

/// `at`, but counted against `package` (the previous side's) for the version policy.
fn in_package(mut at: At, package: &str) -> At {
    at.package = package.to_owned();
    at
}

/// Where an element missing from the current side went: the single new element whose path
/// ends the same way (a move to another module), else the single new element that `same`
/// recognises (a rename).
fn successor<'m, V>(
    path: &str,
    previous: &BTreeMap<String, V>,
    current: &'m BTreeMap<String, V>,
    keep: impl Fn(&V) -> bool,
    same: impl Fn(&V) -> bool,
) -> Option<(&'m String, &'m V, &'static str)> {
    let new = || {
        current
            .iter()
            .filter(|(p, v)| keep(v) && !previous.contains_key(*p))
    };
    let single = |mut it: Box<dyn Iterator<Item = (&'m String, &'m V)> + '_>| {
        let first = it.next()?;
        it.next().is_none().then_some(first)
    };
    if let Some((p, v)) = single(Box::new(
        new().filter(|(p, _)| last_segment(p) == last_segment(path)),
    )) {
        return Some((p, v, "moved"));
    }
    single(Box::new(new().filter(|(_, v)| same(v)))).map(|(p, v)| (p, v, "renamed"))
}

fn struct_paths(rust: &RustSides, out: &mut Out, kind: StructKind) {
    let (previous, current) = (&rust.previous.structs, &rust.current.structs);
    for (path, old) in missing(previous, current).filter(|(_, s)| s.kind == kind) {
        let what = match kind {
            StructKind::Message => "Struct",
            StructKind::Oneof => "Oneof enum",
        };
        if let Some(parent) = &old.parent
            && !current.contains_key(parent)
        {
            continue; // The message's own finding covers its oneofs.
        }
        let members = |s: &RustStruct| -> Vec<(String, String)> {
            s.members
                .iter()
                .map(|(n, m)| (n.clone(), m.ty.clone()))
                .collect()
        };
        let next = successor(
            path,
            previous,
            current,
            |s: &RustStruct| s.kind == kind && s.parent == old.parent,
            |s| !old.members.is_empty() && members(s) == members(old),
        );
        match next {
            Some((to, new, how)) => out.push(
                in_package(new.at.clone(), &old.at.package),
                format!(
                    "{what} `{path}` (from \"{}\") {how} to `{to}` (from \"{}\"); Rust code naming `{path}` no longer compiles.",
                    old.proto, new.proto
                ),
            ),
            None => out.push(
                old.at.clone(),
                format!(
                    "{what} `{path}` (from \"{}\") is no longer generated.",
                    old.proto
                ),
            ),
        }
    }
}

pub(crate) fn message_same_rust_path(rust: &RustSides, out: &mut Out) {
    struct_paths(rust, out, StructKind::Message);
}

pub(crate) fn oneof_same_rust_path(rust: &RustSides, out: &mut Out) {
    struct_paths(rust, out, StructKind::Oneof);
}

pub(crate) fn enum_same_rust_path(rust: &RustSides, out: &mut Out) {
    let (previous, current) = (&rust.previous.enums, &rust.current.enums);
    for (path, old) in missing(previous, current) {
        let variants = |e: &RustEnum| -> Vec<(String, i32)> {
            e.variants
                .iter()
                .map(|(n, v)| (n.clone(), v.number))
                .collect()
        };
        match successor(path, previous, current, |_| true, |e| variants(e) == variants(old)) {
            Some((to, new, how)) => out.push(
                in_package(new.at.clone(), &old.at.package),
                format!(
                    "Enum `{path}` (from \"{}\") {how} to `{to}` (from \"{}\"); Rust code naming `{path}` no longer compiles.",
                    old.proto, new.proto
                ),
            ),
            None => out.push(
                old.at.clone(),
                format!("Enum `{path}` (from \"{}\") is no longer generated.", old.proto),
            ),
        }
    }
}

/// Where the field(s) `numbers` of the message behind `container` live now: the container
/// (the message struct or one of its oneof enums) and the member name.
fn find_numbers<'m>(
    structs: &'m BTreeMap<String, RustStruct>,
    container: &str,
    numbers: &[i32],
) -> Option<(&'m str, &'m str, &'m At)> {
    let message = structs
        .get(container)
        .and_then(|s| s.parent.as_deref())
        .unwrap_or(container);
    structs
        .iter()
        .filter(|(path, s)| *path == message || s.parent.as_deref() == Some(message))
        .flat_map(|(path, s)| s.members.iter().map(move |(name, m)| (path, name, m)))
        .find(|(_, _, m)| m.numbers == numbers)
        .map(|(path, name, m)| (path.as_str(), name.as_str(), &m.at))
}

pub(crate) fn field_same_rust_name(rust: &RustSides, out: &mut Out) {
    let (previous, current) = (&rust.previous.structs, &rust.current.structs);
    for (path, old_struct) in previous {
        let Some(new_struct) = current.get(path) else {
            continue;
        };
        for (name, old) in missing(&old_struct.members, &new_struct.members) {
            let member = if old_struct.kind == StructKind::Oneof {
                format!("`{path}::{name}`")
            } else {
                format!("`{path}.{name}`")
            };
            let found = find_numbers(current, path, &old.numbers);
            match found {
                Some((container, new_name, at)) if container == path => out.push(
                    in_package(at.clone(), &old.at.package),
                    format!(
                        "{member} (from \"{}\") was renamed to `{new_name}`.",
                        old.proto
                    ),
                ),
                Some((container, new_name, at)) => {
                    let new_member = match current.get(container).map(|s| s.kind) {
                        Some(StructKind::Oneof) => format!("`{container}::{new_name}`"),
                        _ => format!("`{container}.{new_name}`"),
                    };
                    out.push(
                        in_package(at.clone(), &old.at.package),
                        format!("{member} (from \"{}\") moved to {new_member}.", old.proto),
                    );
                }
                None => out.push(
                    old.at.clone(),
                    format!("{member} (from \"{}\") is no longer generated.", old.proto),
                ),
            }
        }
    }
}

pub(crate) fn field_same_rust_type(rust: &RustSides, out: &mut Out) {
    for (path, old_struct) in &rust.previous.structs {
        let Some(new_struct) = rust.current.structs.get(path) else {
            continue;
        };
        for (name, old) in &old_struct.members {
            let Some(new) = new_struct.members.get(name) else {
                continue;
            };
            if old.ty != new.ty {
                let member = if old_struct.kind == StructKind::Oneof {
                    format!("`{path}::{name}`")
                } else {
                    format!("`{path}.{name}`")
                };
                out.push(
                    new.type_at.clone(),
                    format!("{member} changed type from `{}` to `{}`.", old.ty, new.ty),
                );
            }
        }
    }
}

pub(crate) fn message_same_rust_derives(rust: &RustSides, out: &mut Out) {
    for (path, old) in &rust.previous.structs {
        let Some(new) = rust.current.structs.get(path) else {
            continue;
        };
        let mut lost = Vec::new();
        if old.copy && !new.copy {
            lost.push("Copy");
        }
        if old.eq_hash && !new.eq_hash {
            lost.extend(["Eq", "Hash"]);
        }
        if !lost.is_empty() {
            let what = match new.kind {
                StructKind::Message => "Struct",
                StructKind::Oneof => "Oneof enum",
            };
            out.push(
                new.at.clone(),
                format!(
                    "{what} `{path}` no longer derives {} (prost derives them only when every field allows it).",
                    lost.join(", ")
                ),
            );
        }
    }
}

pub(crate) fn enum_value_same_rust_name(rust: &RustSides, out: &mut Out) {
    for (path, old_enum) in &rust.previous.enums {
        let Some(new_enum) = rust.current.enums.get(path) else {
            continue;
        };
        for (name, old) in missing(&old_enum.variants, &new_enum.variants) {
            let renamed = new_enum
                .variants
                .iter()
                .find(|(n, v)| v.number == old.number && !old_enum.variants.contains_key(*n));
            match renamed {
                Some((new_name, new)) => out.push(
                    new.at.clone(),
                    format!(
                        "Variant `{path}::{name}` (value \"{}\" = {}) was renamed to `{new_name}` (value \"{}\").",
                        old.proto, old.number, new.proto
                    ),
                ),
                None => out.push(
                    old.at.clone(),
                    format!(
                        "Variant `{path}::{name}` (value \"{}\" = {}) is no longer generated.",
                        old.proto, old.number
                    ),
                ),
            }
        }
    }
}

/// `a::v1::KeyManager` → `a::v1::key_manager_server::KeyManager`.
fn server_trait(path: &str) -> String {
    let service = last_segment(path);
    let module = path.strip_suffix(service).unwrap_or_default();
    format!("{module}{}::{service}", names::server_module(service))
}

pub(crate) fn service_same_rust_path(rust: &RustSides, out: &mut Out) {
    let (previous, current) = (&rust.previous.services, &rust.current.services);
    for (path, old) in missing(previous, current) {
        let old_trait = server_trait(path);
        let methods = |s: &RustService| -> Vec<(String, String)> {
            s.methods
                .iter()
                .map(|(n, m)| (n.clone(), m.signature()))
                .collect()
        };
        let same = |s: &RustService| !old.methods.is_empty() && methods(s) == methods(old);
        match successor(path, previous, current, |_| true, same) {
            Some((to, new, how)) => out.push(
                in_package(new.at.clone(), &old.at.package),
                format!(
                    "Service trait `{old_trait}` (from \"{}\") {how} to `{}` (from \"{}\"), with its client and bridge; Rust code naming the old paths no longer compiles.",
                    old.proto,
                    server_trait(to),
                    new.proto
                ),
            ),
            None => out.push(
                old.at.clone(),
                format!(
                    "Service trait `{old_trait}` (from \"{}\"), its client and bridge are no longer generated.",
                    old.proto
                ),
            ),
        }
    }
}

pub(crate) fn rpc_same_rust_name(rust: &RustSides, out: &mut Out) {
    for (path, old_service) in &rust.previous.services {
        let Some(new_service) = rust.current.services.get(path) else {
            continue;
        };
        let service = server_trait(path);
        for (name, old) in missing(&old_service.methods, &new_service.methods) {
            let mut same_signature = new_service.methods.iter().filter(|(n, m)| {
                !old_service.methods.contains_key(*n) && m.signature() == old.signature()
            });
            match (same_signature.next(), same_signature.next()) {
                (Some((new_name, new)), None) => out.push(
                    new.at.clone(),
                    format!(
                        "Method `{name}` of `{service}` (rpc \"{}\") was renamed to `{new_name}` (rpc \"{}\").",
                        old.proto, new.proto
                    ),
                ),
                _ => out.push(
                    old.at.clone(),
                    format!(
                        "Method `{name}` of `{service}` (rpc \"{}\") is no longer generated.",
                        old.proto
                    ),
                ),
            }
        }
    }
}

pub(crate) fn rpc_same_rust_signature(rust: &RustSides, out: &mut Out) {
    for (path, old_service) in &rust.previous.services {
        let Some(new_service) = rust.current.services.get(path) else {
            continue;
        };
        for (name, old) in &old_service.methods {
            let Some(new) = new_service.methods.get(name) else {
                continue;
            };
            if old.signature() != new.signature() {
                out.push(
                    new.signature_at.clone(),
                    format!(
                        "Method `{name}` of `{}` changed signature from `{}` to `{}`.",
                        server_trait(path),
                        old.signature(),
                        new.signature()
                    ),
                );
            }
        }
    }
}
