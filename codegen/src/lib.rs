//! `spire-plugin-codegen`: turns a proto tree into Rust for plugins and hosts. Protos in, files
//! out; the library does no IO of its own.
//!
//! The pipeline is **load → model → emit**:
//!
//! 1. [`load`] compiles an in-memory [`ProtoTree`] with protox (no `protoc`), reporting errors as
//!    `file:line:col: message`.
//! 2. The role manifest of the tree (see [`manifest`](crate#the-role-manifest)) gives every
//!    service a [`Role`]; together with the descriptors it becomes a [`Model`].
//! 3. The emitters render prost messages and tonic clients/servers per proto package, a bridge
//!    type per service (full gRPC name, role, plugin type, server registration, typed client),
//!    a `mod.rs` that mirrors the package tree, and the encoded descriptor set.
//!
//! Every Rust file is parsed by syn and printed by prettyplease, starts with an `@generated`
//! header and is byte-for-byte deterministic.
//!
//! ```
//! use spire_plugin_codegen::{Config, ProtoTree, generate};
//!
//! let mut tree = ProtoTree::default();
//! tree.file(
//!     "echo/v1/echo.proto",
//!     r#"syntax = "proto3";
//!        package echo.v1;
//!        message Ping { string text = 1; }
//!        service Echo { rpc Say(Ping) returns (Ping); }"#,
//! )
//! .manifest("services.toml", "[[plugin]]\nservice = \"echo.v1.Echo\"\ntype = \"Echo\"\n");
//! let files = generate(&Config::default(), &tree).unwrap();
//! let names: Vec<_> = files.iter().map(|f| f.path.as_str()).collect();
//! assert_eq!(names, ["echo.v1.rs", "mod.rs", "file_descriptor_set.bin"]);
//! ```
//!
//! # The role manifest
//!
//! A TOML file the user controls; each service of the tree must appear in exactly one section:
//!
//! ```toml
//! [[plugin]]                      # a plugin type: the service a plugin binary implements
//! service = "spire.plugin.agent.keymanager.v1.KeyManager"
//! type = "KeyManager"             # go-plugin cookie and plugin type name
//! side = "agent"                  # optional namespace; (side, type) must be unique
//!
//! [[service]]                     # served by plugins beside their plugin service
//! service = "spire.service.common.config.v1.Config"
//!
//! [[host_service]]                # served by the host, dialled by plugins via the broker
//! service = "spire.hostservice.common.metrics.v1.Metrics"
//!
//! [[private]]                     # protocol plumbing
//! service = "plugin.GRPCBroker"
//! ```
//!
//! Generated code names the SDK only through `<sdk>::__codegen` (see [`Config::sdk_path`]):
//! the bridges its types, the messages and services the tonic, prost, tonic-prost and
//! prost-types it re-exports (see [`Config::runtime_via_sdk`]), so the crate that includes the
//! code needs only the SDK as a dependency for it.

#![warn(missing_docs)]

/// Entry points for fuzz targets and corpus replay; not public API.
#[doc(hidden)]
pub mod __fuzz;
pub mod compat;
mod config;
mod emit;
mod error;
mod load;
mod manifest;
mod model;
mod names;
pub mod scaffold;

pub use config::Config;
pub use error::Error;
pub use load::{ProtoTree, load};
pub use model::{Method, Model, Package, Role, Service};

use prost_types::FileDescriptorSet;

/// One output file: a path relative to the output directory and its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    /// Relative, `/`-separated path, e.g. `spire.plugin.agent.keymanager.v1.rs`.
    pub path: String,
    /// The file's contents.
    pub contents: Vec<u8>,
}

impl GeneratedFile {
    fn text(path: &str, contents: String) -> Self {
        GeneratedFile {
            path: path.to_owned(),
            contents: contents.into_bytes(),
        }
    }
}

/// Generates the Rust for every file of `tree`: one file per proto package, `mod.rs`, and
/// (unless disabled) `file_descriptor_set.bin`.
///
/// Fails, writing nothing, on a proto error, a manifest error, a service without a role, a role
/// for a service the tree does not define, or two services claiming one plugin type.
pub fn generate(config: &Config, tree: &ProtoTree) -> Result<Vec<GeneratedFile>, Error> {
    let all = load::compile(tree, true)?;
    let own = own_files(tree, &all);
    let model = build_model(tree, &own)?;
    emit::emit(config, &all, &own, &model)
}

/// Compiles the tree and resolves every service's role, without emitting code: what templates
/// and tools need to know about a tree.
pub fn model(tree: &ProtoTree) -> Result<Model, Error> {
    let all = load::compile(tree, false)?;
    build_model(tree, &own_files(tree, &all))
}

fn own_files(tree: &ProtoTree, all: &FileDescriptorSet) -> FileDescriptorSet {
    FileDescriptorSet {
        file: all
            .file
            .iter()
            .filter(|file| tree.source(file.name()).is_some())
            .cloned()
            .collect(),
    }
}

fn build_model(tree: &ProtoTree, own: &FileDescriptorSet) -> Result<Model, Error> {
    let manifest = match tree.manifest_source() {
        Some((name, source)) => manifest::parse(name, source)?,
        None => manifest::parse("<no manifest>", "")?,
    };
    model::build(own, &manifest)
}

#[cfg(test)]
mod tests;
