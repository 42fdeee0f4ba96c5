//! HashiCorp go-plugin's gRPC protocol, both sides, with no knowledge of SPIRE: the handshake
//! and the environment it travels in, hclog-compatible logging, and AutoMTLS. This module and
//! its children use only the `plugin` proto package, never a SPIRE one.

pub mod broker;
pub mod env;
pub mod handshake;
pub mod hclog;
pub mod host;
pub mod manager;
pub mod mux;
pub(crate) mod panic;
pub mod reattach;
pub mod server;
pub mod stdio;
pub mod tls;
pub mod transport;
