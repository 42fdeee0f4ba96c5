//! Tests of the starter-project renderer on a small non-SPIRE tree (every streaming shape, a
//! well-known type, no side, no host services); the SPIRE types are rendered, built and tested
//! by `cargo xtask gen` (`examples/`) and `cargo xtask new`'s tests.

use expect_test::expect;

use super::*;
use crate::{ProtoTree, model};

const STORE: &str = r#"syntax = "proto3";
package acme.kv.v1;

import "google/protobuf/empty.proto";

message Key { string key = 1; }
message Value { bytes data = 1; }

// Keeps values under keys.
service Store {
  // Reads the value under a key.
  //
  // Answers NOT_FOUND for an unknown key.
  rpc Read(Key) returns (Value);
  rpc Watch(Key) returns (stream Value);
  rpc Load(stream Value) returns (google.protobuf.Empty);
  rpc Sync(stream Value) returns (stream Value);
  rpc Ping(google.protobuf.Empty) returns (google.protobuf.Empty);
}
"#;

fn store_model() -> Model {
    let mut tree = ProtoTree::default();
    tree.file("acme/kv/v1/store.proto", STORE).manifest(
        "services.toml",
        "[[plugin]]\nservice = \"acme.kv.v1.Store\"\ntype = \"Store\"\n",
    );
    model(&tree).expect("the tree compiles")
}

fn render_store() -> Vec<GeneratedFile> {
    let model = store_model();
    let target = find_target(&model, "store").expect("found");
    let project = Project::new(target, "KvStore", SdkSource::Path("../sdk".to_owned())).unwrap();
    render(&model, &project).expect("renders")
}

fn file<'a>(files: &'a [GeneratedFile], path: &str) -> &'a str {
    let file = files
        .iter()
        .find(|file| file.path == path)
        .unwrap_or_else(|| panic!("{path} rendered"));
    std::str::from_utf8(&file.contents).unwrap()
}

#[test]
fn renders_a_complete_project() {
    let files = render_store();
    let paths: Vec<&str> = files.iter().map(|file| file.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "Cargo.toml",
            ".gitignore",
            "README.md",
            "plugin.hcl",
            "spire-declaration.sh",
            "src/main.rs",
            "src/lib.rs",
            "src/plugin.rs",
            "src/config.rs",
            "tests/common/mod.rs",
            "tests/in_process.rs",
            "tests/binary.rs",
        ]
    );
    assert!(files.iter().all(|file| file.contents.ends_with(b"\n")));
    // Rendering is deterministic.
    assert_eq!(files, render_store());
}

#[test]
fn every_streaming_shape_gets_its_signature() {
    let files = render_store();
    let plugin = file(&files, "src/plugin.rs");
    for expected in [
        "/// Reads the value under a key.\n    ///\n    /// Answers NOT_FOUND for an unknown key.\n",
        "/// SPIRE sends one `Key`; answer with one `Value`.\n",
        "_request: Request<api::Key>,\n    ) -> Result<Response<api::Value>, Status> {",
        "type WatchStream = ResponseStream<api::Value>;",
        "-> Result<Response<Self::WatchStream>, Status> {",
        "_request: Request<Streaming<api::Value>>,\n    ) -> Result<Response<()>, Status> {",
        "/// SPIRE sends a stream of `Value`; answer with a stream of `Value`.",
        "-> Result<Response<Self::SyncStream>, Status> {",
        "Err(not_implemented(\"Sync\"))",
        "Status::unimplemented(format!(\"Store.{rpc} is not implemented yet\"))",
        "impl Store for KvStore {",
    ] {
        assert!(
            plugin.contains(expected),
            "{expected}\n--- in ---\n{plugin}"
        );
    }
    let common = file(&files, "tests/common/mod.rs");
    assert!(
        common.contains(".load(tokio_stream::iter([api::Value::default()]))"),
        "{common}"
    );
    assert!(common.contains(".ping(())"), "{common}");
    assert!(plugin.contains("_request: Request<()>,\n    ) -> Result<Response<()>, Status> {"));
    assert!(common.contains(".read(api::Key::default())"), "{common}");
}

#[test]
fn a_type_without_hints_gets_no_host_services_and_a_generic_setting() {
    let files = render_store();
    let lib = file(&files, "src/lib.rs");
    assert!(!lib.contains("Requirement"), "{lib}");
    assert!(!lib.contains(".host_service::<"), "{lib}");
    assert!(lib.starts_with("//! `kv-store`: a SPIRE Store plugin. Keeps values under keys.\n"));
    assert!(!file(&files, "tests/in_process.rs").contains("check::host_services"));
    expect![[r#"
        # An example configuration of kv-store: the `plugin_data` of its declaration in
        # SPIRE's agent.conf, which SPIRE sends to the plugin's Configure RPC. The tests and
        # `cargo xtask plugin-check --config plugin.hcl` configure the plugin with it.
        plugin_data {
            name = "example"
        }
    "#]]
    .assert_eq(file(&files, "plugin.hcl"));
    expect![[r#"
        [package]
        name = "kv-store"
        version = "0.1.0"
        edition = "2024"
        description = "A SPIRE Store plugin"
        publish = false

        [dependencies]
        serde = { version = "1", features = ["derive"] }
        spire-plugin-sdk = { path = "../sdk" }
        tokio = { version = "1", features = ["macros", "rt-multi-thread", "sync", "time"] }
        tokio-stream = "0.1"
        tracing = "0.1"

        # The tests also load the plugin as SPIRE does (catalog, plugintest, check): the host side is
        # compiled for them only, never into the plugin binary.
        [dev-dependencies]
        spire-plugin-sdk = { path = "../sdk", features = ["spire-host"] }

        # The project is a workspace of its own, so it builds wherever it is put.
        [workspace]
    "#]]
    .assert_eq(file(&files, "Cargo.toml"));
}

#[test]
fn crate_names_are_cased_or_refused() {
    for (given, expected) in [
        ("my-attestor", "my-attestor"),
        ("MyAttestor", "my-attestor"),
        ("my_attestor", "my-attestor"),
        ("x509Store", "x509-store"),
    ] {
        assert_eq!(crate_name(given).as_deref(), Ok(expected), "{given}");
    }
    for (given, reason) in [
        ("", "the name is empty"),
        (
            "a b",
            "' ' is not allowed (use ASCII letters, digits, `-` and `_`)",
        ),
        ("-x", "it must start with an ASCII letter"),
        ("std", "`std` is a Rust keyword or a name Cargo reserves"),
        (
            "Match",
            "`match` is a Rust keyword or a name Cargo reserves",
        ),
        (
            "spire-plugin-sdk",
            "`spire_plugin_sdk` is a Rust keyword or a name Cargo reserves",
        ),
    ] {
        assert_eq!(
            crate_name(given),
            Err(ScaffoldError::InvalidName {
                name: given.to_owned(),
                reason: reason.to_owned()
            }),
            "{given}"
        );
    }
}

#[test]
fn types_are_found_by_folded_name() {
    let model = store_model();
    assert_eq!(
        find_target(&model, "STORE").unwrap().service,
        "acme.kv.v1.Store"
    );
    assert_eq!(
        find_target(&model, "agent/Store").unwrap_err().to_string(),
        "unknown plugin type \"agent/Store\"; valid types: Store"
    );
}
