//! The short way in for SPIRE plugin authors: `use spire_plugin_sdk::prelude::*;` brings the
//! plugin builder, host services, configuration decoding, error-to-status mapping and the tonic
//! types every RPC handler names.
//!
//! ```
//! use spire_plugin_sdk::prelude::*;
//!
//! #[derive(Debug, serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config {
//!     path: String,
//! }
//!
//! fn check(hcl: &str) -> Result<Config, Status> {
//!     Ok(parse_config::<Config>(hcl)?)
//! }
//! assert_eq!(check("path = \"/x\"").unwrap().path, "/x");
//! assert_eq!(check("nope = 1").unwrap_err().code(), Code::InvalidArgument);
//! ```

pub use crate::bridge::{BridgedServer, ClientBridge, ServiceBridge};
pub use crate::spire::plugin::{
    ConfigError, Configuration, CoreConfig, HostServices, Plugin, PluginError, Requirement,
    ResponseStream, ResultExt, parse_config,
};
pub use crate::spire::{PluginType, Side};
pub use tonic::{Code, Request, Response, Status, async_trait};
