//! The only surface generated code may name. Everything here is re-exported on purpose;
//! removing an item breaks every generated tree, so treat it as public API.
//!
//! Bridge code names the items below; prost messages and tonic clients/servers reach their
//! runtime crates through the re-exported crates (`__codegen::prost::Message`,
//! `__codegen::tonic::codegen::*`, `__codegen::tonic_prost::ProstCodec`,
//! `__codegen::prost_types::Any`), so a crate with generated code depends on this SDK only,
//! always at the tonic and prost versions the SDK is built with.

pub use crate::bridge::{
    BridgedServer, ClientBridge, MAX_MESSAGE_SIZE, Role, ServiceBridge, ServiceInfo,
};
pub use tonic::service::RoutesBuilder;
pub use tonic::transport::Channel;

pub use ::prost;
pub use ::prost_types;
pub use ::tonic;
pub use ::tonic_prost;
