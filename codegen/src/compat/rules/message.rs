//! Message rules: deletions from a file, oneofs, reserved and extension ranges, required
//! fields, and the options and syntax-derived features that change a message's behaviour.

use std::collections::{BTreeMap, BTreeSet};

use prost_types::DescriptorProto;
use prost_types::field_descriptor_proto::Label;

use crate::compat::index::{Syntax, sub};
use crate::compat::pairs::{MessagePair, Out, Sides, deleted_from_file};

/// Path segments of `DescriptorProto` used only here.
const MESSAGE_EXTENSION_RANGE: i32 = 5;
const MESSAGE_RESERVED_RANGE: i32 = 9;
const MESSAGE_RESERVED_NAME: i32 = 10;
const NO_STANDARD_DESCRIPTOR_ACCESSOR: i32 = 2;

pub(crate) fn message_no_delete(sides: &Sides<'_>, out: &mut Out) {
    // Within a file, messages are matched by their name inside the package, as buf does.
    deleted_from_file(
        sides,
        sides.previous.messages.values(),
        sides.current.messages.values(),
        |m| (m.file.name(), m.nested_name.as_str()),
        |m| m.at(),
        "message",
        out,
    );
}

pub(crate) fn extension_no_delete(sides: &Sides<'_>, out: &mut Out) {
    deleted_from_file(
        sides,
        &sides.previous.extensions,
        &sides.current.extensions,
        |e| (e.file.name(), e.nested_name()),
        |e| e.at(),
        "extension",
        out,
    );
}

pub(crate) fn message_no_remove_standard_descriptor_accessor(
    pair: &MessagePair<'_>,
    out: &mut Out,
) {
    let flag = |m: &DescriptorProto| {
        m.options
            .as_ref()
            .is_some_and(|o| o.no_standard_descriptor_accessor())
    };
    if !flag(pair.previous.desc) && flag(pair.current.desc) {
        out.push(
            pair.current
                .at_sub(&[crate::compat::index::path::MESSAGE_OPTIONS, NO_STANDARD_DESCRIPTOR_ACCESSOR]),
            "Message option \"no_standard_descriptor_accessor\" changed from \"false\" to \"true\".",
        );
    }
}

/// The `json_format` feature a syntax implies: proto3 allows JSON, proto2 is best effort.
fn json_format(syntax: Syntax) -> &'static str {
    match syntax {
        Syntax::Proto3 => "ALLOW",
        Syntax::Proto2 => "LEGACY_BEST_EFFORT",
    }
}

pub(crate) fn message_same_json_format(pair: &MessagePair<'_>, out: &mut Out) {
    let previous = json_format(pair.previous.file.syntax());
    let current = json_format(pair.current.file.syntax());
    if previous == "ALLOW" && current != "ALLOW" {
        out.push(
            pair.current.at(),
            format!(
                "Message \"{}\" JSON format support changed from {previous} to {current}.",
                pair.current.name()
            ),
        );
    }
}

pub(crate) fn message_same_required_fields(pair: &MessagePair<'_>, out: &mut Out) {
    let required = |m| -> BTreeMap<i32, _> {
        crate::compat::index::MessageView::fields(m)
            .filter(|f| f.desc.label() == Label::Required)
            .map(|f| (f.number(), f))
            .collect()
    };
    let previous = required(pair.previous);
    let current = required(pair.current);
    for (number, field) in &previous {
        if !current.contains_key(number) {
            out.push(
                field.at(),
                format!(
                    "Message \"{}\" had required field \"{number}\" deleted. Required fields must always be sent, so if one side does not know about the required field, this will result in a breakage.",
                    pair.previous.name()
                ),
            );
        }
    }
    for (number, field) in &current {
        if !previous.contains_key(number) {
            out.push(
                field.at(),
                format!(
                    "Message \"{}\" had required field \"{number}\" added. Required fields must always be sent, so if one side does not know about the required field, this will result in a breakage.",
                    pair.current.name()
                ),
            );
        }
    }
}

/// True when oneof `index` of `message` only exists for a proto3 `optional` field.
pub(crate) fn is_synthetic_oneof(message: &DescriptorProto, index: usize) -> bool {
    message
        .field
        .iter()
        .any(|f| f.oneof_index == Some(index as i32) && f.proto3_optional())
}

pub(crate) fn oneof_no_delete(pair: &MessagePair<'_>, out: &mut Out) {
    let current: BTreeSet<&str> = pair
        .current
        .desc
        .oneof_decl
        .iter()
        .map(|o| o.name())
        .collect();
    for (i, oneof) in pair.previous.desc.oneof_decl.iter().enumerate() {
        if !is_synthetic_oneof(pair.previous.desc, i) && !current.contains(oneof.name()) {
            out.push(
                pair.previous.file.at_first(&[
                    &sub(
                        &pair.previous.path,
                        &[crate::compat::index::path::MESSAGE_ONEOF, i as i32],
                    ),
                    &pair.previous.path,
                ]),
                format!(
                    "Previously present oneof \"{}\" on message \"{}\" was deleted.",
                    oneof.name(),
                    pair.current.name()
                ),
            );
        }
    }
}

/// Inclusive ranges of `wanted` not covered by any of `have` (all inclusive).
pub(crate) fn uncovered(wanted: (i32, i32), have: &[(i32, i32)]) -> Vec<(i32, i32)> {
    let mut have = have.to_vec();
    have.sort_unstable();
    let (mut start, end) = wanted;
    let mut gaps = Vec::new();
    for &(s, e) in &have {
        if e < start {
            continue;
        }
        if s > end {
            break;
        }
        if s > start {
            gaps.push((start, s - 1));
        }
        start = start.max(e.saturating_add(1));
        if start > end {
            return gaps;
        }
    }
    if start <= end {
        gaps.push((start, end));
    }
    gaps
}

/// `[5]`, `[5,9]` or `[5,max]`.
pub(crate) fn range_string((start, end): (i32, i32), max: i32) -> String {
    if start == end {
        format!("[{start}]")
    } else if end >= max {
        format!("[{start},max]")
    } else {
        format!("[{start},{end}]")
    }
}

/// Reports the previous ranges that lost numbers; `ranges` are inclusive, each with its path.
pub(crate) fn check_ranges(
    out: &mut Out,
    kind: &str,
    element: &str,
    previous: &[((i32, i32), crate::compat::index::At)],
    current: &[(i32, i32)],
    max: i32,
) {
    for (range, at) in previous {
        let gaps = uncovered(*range, current);
        if !gaps.is_empty() {
            let gaps: Vec<String> = gaps.iter().map(|g| range_string(*g, max)).collect();
            out.push(
                at.clone(),
                format!(
                    "Previously present {kind} range \"{}\" on {element} is missing values: {} were removed.",
                    range_string(*range, max),
                    gaps.join(", ")
                ),
            );
        }
    }
}

/// The highest field number of a message.
pub(crate) const MESSAGE_MAX: i32 = 536_870_911;

pub(crate) fn reserved_message_no_delete(pair: &MessagePair<'_>, out: &mut Out) {
    let (p, c) = (pair.previous, pair.current);
    let previous: Vec<_> = p
        .desc
        .reserved_range
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let at = p.at_sub(&[MESSAGE_RESERVED_RANGE, i as i32]);
            ((r.start(), r.end() - 1), at)
        })
        .collect();
    let current: Vec<_> = c
        .desc
        .reserved_range
        .iter()
        .map(|r| (r.start(), r.end() - 1))
        .collect();
    check_ranges(
        out,
        "reserved",
        &format!("message \"{}\"", c.name()),
        &previous,
        &current,
        MESSAGE_MAX,
    );
    let current_names: BTreeSet<&str> = c.desc.reserved_name.iter().map(String::as_str).collect();
    for (i, name) in p.desc.reserved_name.iter().enumerate() {
        if !current_names.contains(name.as_str()) {
            out.push(
                p.at_sub(&[MESSAGE_RESERVED_NAME, i as i32]),
                format!(
                    "Previously present reserved name \"{name}\" on message \"{}\" was deleted.",
                    c.name()
                ),
            );
        }
    }
}

pub(crate) fn extension_message_no_delete(pair: &MessagePair<'_>, out: &mut Out) {
    let (p, c) = (pair.previous, pair.current);
    let previous: Vec<_> = p
        .desc
        .extension_range
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let at = p.at_sub(&[MESSAGE_EXTENSION_RANGE, i as i32]);
            ((r.start(), r.end() - 1), at)
        })
        .collect();
    let current: Vec<_> = c
        .desc
        .extension_range
        .iter()
        .map(|r| (r.start(), r.end() - 1))
        .collect();
    check_ranges(
        out,
        "extension",
        &format!("message \"{}\"", c.name()),
        &previous,
        &current,
        MESSAGE_MAX,
    );
}
