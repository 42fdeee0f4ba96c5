//! Every naming rule of the generated Rust in one place: module paths for proto packages,
//! the snake-case module names tonic gives clients and servers, and bridge type names.

use heck::{ToSnakeCase, ToUpperCamelCase};

/// The Rust module path segments for a proto package (`a.b.v1` → `["a", "b", "v1"]`),
/// escaping Rust keywords the way prost does.
pub fn package_modules(package: &str) -> Vec<String> {
    package
        .split('.')
        .filter(|s| !s.is_empty())
        .map(module_ident)
        .collect()
}

/// The file name the generated code for a package goes to (`a.b.v1` → `a.b.v1.rs`).
pub fn package_file(package: &str) -> String {
    if package.is_empty() {
        "_.rs".to_owned()
    } else {
        format!("{package}.rs")
    }
}

/// The Rust type name prost and tonic give a service (`key_manager` → `KeyManager`).
pub fn service_type(service: &str) -> String {
    service.to_upper_camel_case()
}

/// The module tonic puts a service's client in (`KeyManager` → `key_manager_client`).
pub fn client_module(service: &str) -> String {
    format!("{}_client", service_type(service).to_snake_case())
}

/// The module tonic puts a service's server trait and type in.
pub fn server_module(service: &str) -> String {
    format!("{}_server", service_type(service).to_snake_case())
}

/// The name of the bridge type generated for a service (`KeyManager` → `KeyManagerBridge`).
pub fn bridge_type(service: &str) -> String {
    format!("{}Bridge", service_type(service))
}

fn module_ident(segment: &str) -> String {
    let snake = segment.to_snake_case();
    if is_keyword(&snake) {
        format!("r#{snake}")
    } else {
        snake
    }
}

pub(crate) fn is_keyword(word: &str) -> bool {
    matches!(
        word,
        "as" | "break"
            | "const"
            | "continue"
            | "crate"
            | "else"
            | "enum"
            | "extern"
            | "false"
            | "fn"
            | "for"
            | "if"
            | "impl"
            | "in"
            | "let"
            | "loop"
            | "match"
            | "mod"
            | "move"
            | "mut"
            | "pub"
            | "ref"
            | "return"
            | "self"
            | "Self"
            | "static"
            | "struct"
            | "super"
            | "trait"
            | "true"
            | "type"
            | "unsafe"
            | "use"
            | "where"
            | "while"
            | "async"
            | "await"
            | "dyn"
            | "abstract"
            | "become"
            | "box"
            | "do"
            | "final"
            | "macro"
            | "override"
            | "priv"
            | "typeof"
            | "unsized"
            | "virtual"
            | "yield"
            | "try"
            | "gen"
    )
}

// prost-build's identifier rules (its private `ident` module), mirrored so `compat` can compute
// the Rust names of messages, fields, variants and methods exactly as the generator prints them.

/// prost's identifier for a field, oneof field, method or nested-type module (`fooBar` →
/// `foo_bar`, `type` → `r#type`, `self` → `self_`).
pub(crate) fn prost_snake(name: &str) -> String {
    prost_sanitize(&name.to_snake_case())
}

/// prost's identifier for a message, enum, oneof enum or oneof variant (`foo_bar` → `FooBar`).
pub(crate) fn prost_camel(name: &str) -> String {
    prost_sanitize(&name.to_upper_camel_case())
}

/// prost's enum variant for `value` of enum `enum_name`: UpperCamel, with the enum's own name
/// stripped when it is a true prefix (`Color`, `COLOR_DARK_RED` → `DarkRed`).
pub(crate) fn prost_variant(enum_name: &str, value: &str) -> String {
    let prefix = prost_camel(enum_name);
    let name = prost_camel(value);
    let stripped = name.strip_prefix(prefix.as_str()).unwrap_or(&name);
    if stripped.starts_with(char::is_uppercase) {
        prost_sanitize(stripped)
    } else {
        prost_sanitize(&name)
    }
}

fn prost_sanitize(ident: &str) -> String {
    match ident {
        "_" | "super" | "self" | "Self" | "extern" | "crate" => format!("{ident}_"),
        s if s.starts_with(|c: char| c.is_numeric()) => format!("_{ident}"),
        s if is_keyword(s) => format!("r#{ident}"),
        _ => ident.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_table() {
        let cases = [
            (
                "KeyManager",
                "key_manager_client",
                "key_manager_server",
                "KeyManagerBridge",
            ),
            (
                "GRPCBroker",
                "grpc_broker_client",
                "grpc_broker_server",
                "GrpcBrokerBridge",
            ),
            (
                "SVIDStore",
                "svid_store_client",
                "svid_store_server",
                "SvidStoreBridge",
            ),
            ("Init", "init_client", "init_server", "InitBridge"),
        ];
        for (service, client, server, bridge) in cases {
            assert_eq!(client_module(service), client, "{service}");
            assert_eq!(server_module(service), server, "{service}");
            assert_eq!(bridge_type(service), bridge, "{service}");
        }
        assert_eq!(
            package_modules("spire.plugin.types"),
            ["spire", "plugin", "types"]
        );
        assert_eq!(package_modules("a.type.v1"), ["a", "r#type", "v1"]);
        assert_eq!(package_file("plugin"), "plugin.rs");
    }

    #[test]
    fn prost_names_table() {
        let snake = [
            ("fooBar", "foo_bar"),
            ("x509_svid", "x509_svid"),
            ("type", "r#type"),
            ("self", "self_"),
            ("GetPluginInfo", "get_plugin_info"),
            ("SVIDStore", "svid_store"),
        ];
        for (proto, rust) in snake {
            assert_eq!(prost_snake(proto), rust, "{proto}");
        }
        let camel = [
            ("foo_bar", "FooBar"),
            ("X509SVID", "X509svid"),
            ("Self", "Self_"),
            ("kind", "Kind"),
        ];
        for (proto, rust) in camel {
            assert_eq!(prost_camel(proto), rust, "{proto}");
        }
        let variants = [
            ("Color", "COLOR_DARK_RED", "DarkRed"),
            ("Color", "COLORFUL", "Colorful"),
            ("Kind", "KIND_1", "Kind1"),
            ("Status", "UNKNOWN", "Unknown"),
        ];
        for (enum_name, value, rust) in variants {
            assert_eq!(prost_variant(enum_name, value), rust, "{enum_name}.{value}");
        }
    }
}
