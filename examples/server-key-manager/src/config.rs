//! The configuration of `server-key-manager`: the `plugin_data` block of its declaration in
//! SPIRE's server.conf, decoded into [`ServerKeyManagerConfig`] and validated, and the Config
//! service through which SPIRE sends it.
//!
//! SPIRE calls `Configure` once after loading the plugin and again whenever the operator
//! changes the configuration; `Validate` asks whether a configuration would be accepted
//! without applying it. A refused configuration answers `InvalidArgument` naming the key,
//! and the plugin keeps the configuration it had.

use std::path::Path;

use serde::Deserialize;
use spire_plugin_sdk::prelude::*;
use spire_plugin_sdk::proto::spire::service::common::config::v1::{
    ConfigureRequest, ConfigureResponse, ValidateRequest, ValidateResponse, config_server::Config,
};

use crate::plugin::ServerKeyManager;

/// The plugin's settings, as HCL in `plugin_data`:
///
/// ```hcl
/// key_directory = "/var/lib/spire/keys"
/// ```
///
/// Keys the struct does not know are refused (`deny_unknown_fields`), so a misspelt key is an
/// error rather than a silently ignored setting.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerKeyManagerConfig {
    /// Where the plugin keeps its keys.
    pub key_directory: String,
    /// The trust domain SPIRE serves (from SPIRE's own configuration, not from `plugin_data`).
    #[serde(skip)]
    pub trust_domain: String,
}

impl ServerKeyManagerConfig {
    /// Checks what decoding cannot: the values themselves. The message names the key, as the
    /// operator wrote it.
    pub fn validate(&self) -> Result<(), String> {
        if !Path::new(&self.key_directory).is_absolute() {
            return Err(format!(
                "`key_directory` must be an absolute path, not {:?}",
                self.key_directory
            ));
        }
        Ok(())
    }

    /// Decodes what SPIRE sent to `Configure` or `Validate` and validates it.
    ///
    /// # Errors
    ///
    /// `InvalidArgument`: HCL that does not parse, an unknown, missing or ill-typed key (named,
    /// with its line), or a value [`validate`](Self::validate) refuses.
    pub fn decode(decoded: Result<Configuration<Self>, ConfigError>) -> Result<Self, Status> {
        let Configuration { core, plugin } = decoded?;
        plugin.validate().map_err(Status::invalid_argument)?;
        Ok(ServerKeyManagerConfig {
            trust_domain: core.trust_domain,
            ..plugin
        })
    }
}

#[async_trait]
impl Config for ServerKeyManager {
    async fn configure(
        &self,
        request: Request<ConfigureRequest>,
    ) -> Result<Response<ConfigureResponse>, Status> {
        let config =
            ServerKeyManagerConfig::decode(Configuration::from_configure(request.get_ref()))?;
        tracing::info!(trust_domain = %config.trust_domain, "configured");
        self.set_config(config);
        Ok(Response::new(ConfigureResponse {}))
    }

    async fn validate(
        &self,
        request: Request<ValidateRequest>,
    ) -> Result<Response<ValidateResponse>, Status> {
        let answer =
            ServerKeyManagerConfig::decode(Configuration::from_validate(request.get_ref()));
        Ok(Response::new(ValidateResponse {
            valid: answer.is_ok(),
            notes: answer
                .err()
                .map(|status| status.message().to_owned())
                .into_iter()
                .collect(),
        }))
    }
}
