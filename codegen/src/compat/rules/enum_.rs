//! Enum rules: deletions of enums and values (plain, or allowed when the number or name is
//! reserved), value renames, reserved ranges, and the open/closed and JSON behaviour an enum
//! gets from its file's syntax.

use std::collections::BTreeSet;

use super::message::check_ranges;
use super::quoted;
use crate::compat::index::{Syntax, path, sub};
use crate::compat::pairs::{EnumPair, EnumValuePair, Out, Sides, deleted_from_file};

/// Path segments of `EnumDescriptorProto` used only here.
const ENUM_RESERVED_RANGE: i32 = 4;
const ENUM_RESERVED_NAME: i32 = 5;
/// The highest enum number.
const ENUM_MAX: i32 = i32::MAX;

pub(crate) fn enum_no_delete(sides: &Sides<'_>, out: &mut Out) {
    // Within a file, enums are matched by their name inside the package, as buf does.
    deleted_from_file(
        sides,
        sides.previous.enums.values(),
        sides.current.enums.values(),
        |e| (e.file.name(), e.nested_name.as_str()),
        |e| e.at(),
        "enum",
        out,
    );
}

fn state(syntax: Syntax) -> &'static str {
    match syntax {
        Syntax::Proto2 => "closed",
        Syntax::Proto3 => "open",
    }
}

pub(crate) fn enum_same_type(pair: &EnumPair<'_>, out: &mut Out) {
    let previous = state(pair.previous.file.syntax());
    let current = state(pair.current.file.syntax());
    if previous != current {
        out.push(
            pair.current.at(),
            format!(
                "Enum \"{}\" changed from {previous} to {current}.",
                pair.current.name()
            ),
        );
    }
}

pub(crate) fn enum_same_json_format(pair: &EnumPair<'_>, out: &mut Out) {
    let format = |syntax| match syntax {
        Syntax::Proto3 => "ALLOW",
        Syntax::Proto2 => "LEGACY_BEST_EFFORT",
    };
    let previous = format(pair.previous.file.syntax());
    let current = format(pair.current.file.syntax());
    if previous == "ALLOW" && current != "ALLOW" {
        out.push(
            pair.current.at(),
            format!(
                "Enum \"{}\" JSON format support changed from {previous} to {current}.",
                pair.current.name()
            ),
        );
    }
}

#[derive(Clone, Copy)]
enum Allow {
    Nothing,
    NumberReserved,
    NameReserved,
}

pub(crate) fn enum_value_no_delete(pair: &EnumPair<'_>, out: &mut Out) {
    deleted_values(pair, out, Allow::Nothing);
}

pub(crate) fn enum_value_no_delete_unless_number_reserved(pair: &EnumPair<'_>, out: &mut Out) {
    deleted_values(pair, out, Allow::NumberReserved);
}

pub(crate) fn enum_value_no_delete_unless_name_reserved(pair: &EnumPair<'_>, out: &mut Out) {
    deleted_values(pair, out, Allow::NameReserved);
}

fn deleted_values(pair: &EnumPair<'_>, out: &mut Out, allow: Allow) {
    let current = pair.current.desc;
    let numbers: BTreeSet<i32> = current.value.iter().map(|v| v.number()).collect();
    for (number, names) in pair.previous.values_by_number() {
        if numbers.contains(&number) {
            continue;
        }
        let mut sorted: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
        sorted.sort_unstable();
        let (allowed, suffix) = match allow {
            Allow::Nothing => (false, String::new()),
            Allow::NumberReserved => (
                current
                    .reserved_range
                    .iter()
                    .any(|r| (r.start()..=r.end()).contains(&number)),
                format!(" without reserving the number \"{number}\""),
            ),
            Allow::NameReserved => (
                sorted
                    .iter()
                    .all(|n| current.reserved_name.iter().any(|r| r == n)),
                format!(
                    " without reserving the name{} {}",
                    if sorted.len() > 1 { "s" } else { "" },
                    quoted(&sorted)
                ),
            ),
        };
        if !allowed {
            let at = pair.previous.file.at(&names[0].1);
            out.push(
                at,
                format!(
                    "Previously present enum value \"{number}\" on enum \"{}\" was deleted{suffix}.",
                    pair.current.name()
                ),
            );
        }
    }
}

pub(crate) fn enum_value_same_name(pair: &EnumValuePair<'_>, out: &mut Out) {
    let mut previous: Vec<&str> = pair.previous.iter().map(|(n, _)| *n).collect();
    let mut current: Vec<&str> = pair.current.iter().map(|(n, _)| *n).collect();
    previous.sort_unstable();
    current.sort_unstable();
    // Every previous name must keep this number: adding an alias is fine, renaming is not.
    if previous.iter().all(|n| current.contains(n)) {
        return;
    }
    let plural = if previous.len() > 1 && current.len() > 1 {
        "s"
    } else {
        ""
    };
    for (_, value_path) in &pair.current {
        out.push(
            pair.current_enum
                .file
                .at_first(&[&sub(value_path, &[path::ENUM_VALUE_NUMBER]), value_path]),
            format!(
                "Enum value \"{}\" on enum \"{}\" changed name{plural} from {} to {}.",
                pair.number,
                pair.current_enum.name(),
                quoted(&previous),
                quoted(&current)
            ),
        );
    }
}

pub(crate) fn reserved_enum_no_delete(pair: &EnumPair<'_>, out: &mut Out) {
    let (p, c) = (pair.previous, pair.current);
    let previous: Vec<_> = p
        .desc
        .reserved_range
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let at = p
                .file
                .at_first(&[&sub(&p.path, &[ENUM_RESERVED_RANGE, i as i32]), &p.path]);
            ((r.start(), r.end()), at)
        })
        .collect();
    let current: Vec<_> = c
        .desc
        .reserved_range
        .iter()
        .map(|r| (r.start(), r.end()))
        .collect();
    check_ranges(
        out,
        "reserved",
        &format!("enum \"{}\"", c.name()),
        &previous,
        &current,
        ENUM_MAX,
    );
    let current_names: BTreeSet<&str> = c.desc.reserved_name.iter().map(String::as_str).collect();
    for (i, name) in p.desc.reserved_name.iter().enumerate() {
        if !current_names.contains(name.as_str()) {
            out.push(
                p.file
                    .at_first(&[&sub(&p.path, &[ENUM_RESERVED_NAME, i as i32]), &p.path]),
                format!(
                    "Previously present reserved name \"{name}\" on enum \"{}\" was deleted.",
                    c.name()
                ),
            );
        }
    }
}
