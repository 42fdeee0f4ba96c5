//! Reattach details: how to reach an already-running plugin without launching it (go-plugin's
//! `ReattachConfig`). The JSON shape is the one Terraform reads from `TF_REATTACH_PROVIDERS`, so
//! a plugin served in debug mode prints a line other tools understand.

use serde::{Deserialize, Serialize};

use super::handshake::{Network, Protocol};

/// Where a running plugin listens, and which process it is.
///
/// ```
/// use spire_plugin_sdk::goplugin::ReattachConfig;
///
/// let json = r#"{"Protocol":"grpc","ProtocolVersion":6,"Pid":42,"Test":true,
///                "Addr":{"Network":"unix","String":"/tmp/plugin1"}}"#;
/// let config: ReattachConfig = serde_json::from_str(json).unwrap();
/// assert_eq!(config.addr.string, "/tmp/plugin1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReattachConfig {
    /// The RPC protocol; only [`Protocol::Grpc`] can be attached to.
    pub protocol: Protocol,
    /// The app protocol version the plugin serves.
    pub protocol_version: u32,
    /// The plugin's listening address.
    pub addr: ReattachAddr,
    /// The plugin's process ID, used to notice when it exits.
    pub pid: u32,
    /// The plugin manages its own lifetime (debug mode): a host detaching from it leaves it
    /// running.
    #[serde(default)]
    pub test: bool,
}

/// A network address in go-plugin's JSON form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReattachAddr {
    /// `unix` or `tcp` (anything else is kept, and refused when dialling).
    pub network: Network,
    /// The socket path or `host:port`.
    pub string: String,
}
