//! The only surface generated bridge code may name. Everything here is re-exported on purpose;
//! removing an item breaks every generated tree, so treat it as public API.

pub use crate::bridge::{
    BridgedServer, ClientBridge, MAX_MESSAGE_SIZE, Role, ServiceBridge, ServiceInfo,
};
pub use tonic::service::RoutesBuilder;
pub use tonic::transport::Channel;
