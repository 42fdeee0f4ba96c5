//! Service rules: deletions of services and rpcs, and the parts of an rpc on the wire: its
//! request and response types, streaming on either side, and its idempotency level.

use std::collections::{BTreeMap, BTreeSet};

use crate::compat::index::{Index, MethodView, path};
use crate::compat::pairs::{MethodPair, Out, ServicePair, Sides, deleted_from_file};

/// `MethodOptions.idempotency_level`.
const METHOD_IDEMPOTENCY_LEVEL: i32 = 34;

pub(crate) fn service_no_delete(sides: &Sides<'_>, out: &mut Out) {
    deleted_from_file(
        sides,
        sides.previous.services.values(),
        sides.current.services.values(),
        |s| (s.file.name(), s.name()),
        |s| s.at(),
        "service",
        out,
    );
}

/// The gRPC path of every rpc of a side: `/package.Service/Method`.
fn grpc_paths<'a>(index: &'a Index<'a>) -> BTreeMap<String, MethodView<'a>> {
    index
        .services
        .values()
        .flat_map(|s| {
            s.methods()
                .map(|m| (format!("/{}/{}", s.full_name, m.name()), m))
                .collect::<Vec<_>>()
        })
        .collect()
}

pub(crate) fn grpc_method_no_delete(sides: &Sides<'_>, out: &mut Out) {
    let current = grpc_paths(&sides.current);
    for (path, method) in grpc_paths(&sides.previous) {
        if !current.contains_key(&path) {
            out.push(
                method.at(),
                format!(
                    "Previously served gRPC method \"{path}\" is gone: clients built against the previous version call a path nothing serves."
                ),
            );
        }
    }
}

pub(crate) fn rpc_no_delete(pair: &ServicePair<'_>, out: &mut Out) {
    let current: BTreeSet<&str> = pair.current.desc.method.iter().map(|m| m.name()).collect();
    for method in pair.previous.methods() {
        if !current.contains(method.name()) {
            out.push(
                method.at(),
                format!(
                    "Previously present RPC \"{}\" on service \"{}\" was deleted.",
                    method.name(),
                    pair.current.name()
                ),
            );
        }
    }
}

fn streaming(previous: bool, current: bool) -> Option<(&'static str, &'static str)> {
    match (previous, current) {
        (true, false) => Some(("streaming", "unary")),
        (false, true) => Some(("unary", "streaming")),
        _ => None,
    }
}

pub(crate) fn rpc_same_client_streaming(pair: &MethodPair<'_>, out: &mut Out) {
    let (p, c) = (pair.previous.desc, pair.current.desc);
    if let Some((previous, current)) = streaming(p.client_streaming(), c.client_streaming()) {
        out.push(
            pair.current.at(),
            format!(
                "RPC \"{}\" on service \"{}\" changed from client {previous} to client {current}.",
                pair.current.name(),
                pair.current.service
            ),
        );
    }
}

pub(crate) fn rpc_same_server_streaming(pair: &MethodPair<'_>, out: &mut Out) {
    let (p, c) = (pair.previous.desc, pair.current.desc);
    if let Some((previous, current)) = streaming(p.server_streaming(), c.server_streaming()) {
        out.push(
            pair.current.at(),
            format!(
                "RPC \"{}\" on service \"{}\" changed from server {previous} to server {current}.",
                pair.current.name(),
                pair.current.service
            ),
        );
    }
}

pub(crate) fn rpc_same_request_type(pair: &MethodPair<'_>, out: &mut Out) {
    let (previous, current) = (
        pair.previous.desc.input_type(),
        pair.current.desc.input_type(),
    );
    if previous != current {
        out.push(
            pair.current.at_sub(&[path::METHOD_INPUT]),
            format!(
                "RPC \"{}\" on service \"{}\" changed request type from \"{}\" to \"{}\".",
                pair.current.name(),
                pair.current.service,
                previous.trim_start_matches('.'),
                current.trim_start_matches('.')
            ),
        );
    }
}

pub(crate) fn rpc_same_response_type(pair: &MethodPair<'_>, out: &mut Out) {
    let (previous, current) = (
        pair.previous.desc.output_type(),
        pair.current.desc.output_type(),
    );
    if previous != current {
        out.push(
            pair.current.at_sub(&[path::METHOD_OUTPUT]),
            format!(
                "RPC \"{}\" on service \"{}\" changed response type from \"{}\" to \"{}\".",
                pair.current.name(),
                pair.current.service,
                previous.trim_start_matches('.'),
                current.trim_start_matches('.')
            ),
        );
    }
}

pub(crate) fn rpc_same_idempotency_level(pair: &MethodPair<'_>, out: &mut Out) {
    let level = |m: &prost_types::MethodDescriptorProto| {
        m.options
            .as_ref()
            .map(|o| o.idempotency_level().as_str_name())
            .unwrap_or("IDEMPOTENCY_UNKNOWN")
    };
    let (previous, current) = (level(pair.previous.desc), level(pair.current.desc));
    if previous != current {
        out.push(
            pair.current
                .at_sub(&[path::METHOD_OPTIONS, METHOD_IDEMPOTENCY_LEVEL]),
            format!(
                "RPC \"{}\" on service \"{}\" changed option \"idempotency_level\" from \"{previous}\" to \"{current}\".",
                pair.current.name(),
                pair.current.service
            ),
        );
    }
}
