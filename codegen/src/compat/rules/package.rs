//! Package rules: deletions judged per package, so moving an element to another file of the
//! same package is fine (buf's PACKAGE category).

use std::collections::{BTreeMap, BTreeSet};

use crate::compat::index::{At, Index};
use crate::compat::pairs::{Out, Sides};

/// Every package of a side with the paths of its files, sorted.
fn packages<'a>(index: &Index<'a>) -> BTreeMap<&'a str, BTreeSet<&'a str>> {
    let mut out: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for file in index.files.values() {
        out.entry(file.package()).or_default().insert(file.name());
    }
    out
}

pub(crate) fn package_no_delete(sides: &Sides<'_>, out: &mut Out) {
    let current = packages(&sides.current);
    for (package, files) in packages(&sides.previous) {
        if !current.contains_key(package) {
            let first = files.first().and_then(|f| sides.previous.files.get(f));
            if let Some(file) = first {
                out.push(
                    file.at_file(),
                    format!("Previously present package \"{package}\" was deleted."),
                );
            }
        }
    }
}

/// Reports the elements (`kind`) of packages present on both sides that are gone from their
/// package; `elements` yields (package, full name, location) per side.
fn no_delete_in_package<'a>(
    sides: &Sides<'a>,
    out: &mut Out,
    kind: &str,
    elements: fn(&Index<'a>) -> Vec<(String, String, At)>,
) {
    let current_packages = packages(&sides.current);
    let current: BTreeSet<String> = elements(&sides.current)
        .into_iter()
        .map(|(_, name, _)| name)
        .collect();
    for (package, name, at) in elements(&sides.previous) {
        if current_packages.contains_key(package.as_str()) && !current.contains(&name) {
            let short = name
                .strip_prefix(&package)
                .map_or(name.as_str(), |s| s.trim_start_matches('.'));
            out.push(
                at,
                format!(
                    "Previously present {kind} \"{short}\" was deleted from package \"{package}\"."
                ),
            );
        }
    }
}

pub(crate) fn package_message_no_delete(sides: &Sides<'_>, out: &mut Out) {
    no_delete_in_package(sides, out, "message", |index| {
        index
            .messages
            .values()
            .map(|m| (m.file.package().to_owned(), m.full_name.clone(), m.at()))
            .collect()
    });
}

pub(crate) fn package_enum_no_delete(sides: &Sides<'_>, out: &mut Out) {
    no_delete_in_package(sides, out, "enum", |index| {
        index
            .enums
            .values()
            .map(|e| (e.file.package().to_owned(), e.full_name.clone(), e.at()))
            .collect()
    });
}

pub(crate) fn package_service_no_delete(sides: &Sides<'_>, out: &mut Out) {
    no_delete_in_package(sides, out, "service", |index| {
        index
            .services
            .values()
            .map(|s| (s.file.package().to_owned(), s.full_name.clone(), s.at()))
            .collect()
    });
}

pub(crate) fn package_extension_no_delete(sides: &Sides<'_>, out: &mut Out) {
    no_delete_in_package(sides, out, "extension", |index| {
        index
            .extensions
            .iter()
            .map(|e| (e.file.package().to_owned(), e.full_name.clone(), e.at()))
            .collect()
    });
}
