//! The configuration of `agent-node-attestor`: the `plugin_data` block of its declaration in
//! SPIRE's agent.conf, decoded into [`AgentNodeAttestorConfig`] and validated, and the Config
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

use crate::plugin::AgentNodeAttestor;

/// The plugin's settings, as HCL in `plugin_data`:
///
/// ```hcl
/// token_path = "/var/run/node/token"
/// ```
///
/// Keys the struct does not know are refused (`deny_unknown_fields`), so a misspelt key is an
/// error rather than a silently ignored setting.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentNodeAttestorConfig {
    /// The file holding the proof of identity sent to the server.
    pub token_path: String,
    /// The trust domain SPIRE serves (from SPIRE's own configuration, not from `plugin_data`).
    #[serde(skip)]
    pub trust_domain: String,
}

impl AgentNodeAttestorConfig {
    /// Checks what decoding cannot: the values themselves. The message names the key, as the
    /// operator wrote it.
    pub fn validate(&self) -> Result<(), String> {
        if !Path::new(&self.token_path).is_absolute() {
            return Err(format!(
                "`token_path` must be an absolute path, not {:?}",
                self.token_path
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
        Ok(AgentNodeAttestorConfig {
            trust_domain: core.trust_domain,
            ..plugin
        })
    }
}

#[async_trait]
impl Config for AgentNodeAttestor {
    async fn configure(
        &self,
        request: Request<ConfigureRequest>,
    ) -> Result<Response<ConfigureResponse>, Status> {
        let config =
            AgentNodeAttestorConfig::decode(Configuration::from_configure(request.get_ref()))?;
        tracing::info!(trust_domain = %config.trust_domain, "configured");
        self.set_config(config);
        Ok(Response::new(ConfigureResponse {}))
    }

    async fn validate(
        &self,
        request: Request<ValidateRequest>,
    ) -> Result<Response<ValidateResponse>, Status> {
        let answer =
            AgentNodeAttestorConfig::decode(Configuration::from_validate(request.get_ref()));
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
