//! SPIRE's plugin protocol on top of [`crate::goplugin`]: serving Rust SPIRE plugins (the
//! counterpart of upstream's `pluginmain`, feature `spire-plugin`) and loading SPIRE plugins as
//! SPIRE's catalog does, with the test harness and the conformance check built on it (feature
//! `spire-host`). The wire facts are in the repository's `docs/protocol.md` ("SPIRE").

#[cfg(feature = "spire-host")]
pub mod catalog;
#[cfg(feature = "spire-host")]
pub mod check;
#[cfg(feature = "spire-plugin")]
pub mod plugin;
#[cfg(feature = "spire-host")]
pub mod plugintest;
#[cfg(feature = "spire-host")]
mod session;
mod types;

pub use self::types::{PluginType, Side, UnknownPluginType};
