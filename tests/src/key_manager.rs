//! The KeyManager served by `src/bin/spire-keymanager.rs`, also served in-process by the
//! `plugintest` tests. See the binary's docs for its configuration, keys and metrics.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use serde::Deserialize;
use spire_plugin_sdk::proto::spire::hostservice::common::metrics::v1::{
    IncrCounterRequest, Label, MetricsBridge,
};
use spire_plugin_sdk::proto::spire::plugin::server::keymanager::v1::{
    GenerateKeyRequest, GenerateKeyResponse, GetPublicKeyRequest, GetPublicKeyResponse,
    GetPublicKeysRequest, GetPublicKeysResponse, KeyManagerBridge, PublicKey, SignDataRequest,
    SignDataResponse, key_manager_server::KeyManager,
};
use spire_plugin_sdk::proto::spire::service::common::config::v1::{
    ConfigBridge, ConfigureRequest, ConfigureResponse, ValidateRequest, ValidateResponse,
    config_server::Config,
};
use spire_plugin_sdk::spire::plugin::Configuration;
use spire_plugin_sdk::spire::plugin::PluginError;
use spire_plugin_sdk::spire::plugin::{HostServices, Plugin, Requirement};
use tonic::{Request, Response, Status};

/// The plugin's own configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyManagerConfig {
    key_prefix: String,
}

#[derive(Clone, Default)]
struct Keys {
    config: Arc<RwLock<Option<KeyManagerConfig>>>,
    keys: Arc<Mutex<BTreeMap<String, PublicKey>>>,
    hosts: HostServices,
}

impl Keys {
    fn configured(&self) -> Result<KeyManagerConfig, PluginError> {
        self.config
            .read()
            .expect("config lock")
            .clone()
            .ok_or_else(|| PluginError::FailedPrecondition("not configured".into()))
    }

    fn key(&self, key_id: &str) -> Result<PublicKey, PluginError> {
        self.keys
            .lock()
            .expect("keys lock")
            .get(key_id)
            .cloned()
            .ok_or_else(|| PluginError::NotFound(format!("no such key {key_id:?}")))
    }
}

#[tonic::async_trait]
impl KeyManager for Keys {
    async fn generate_key(
        &self,
        request: Request<GenerateKeyRequest>,
    ) -> Result<Response<GenerateKeyResponse>, Status> {
        let config = self.configured()?;
        let request = request.into_inner();
        if request.key_id.is_empty() {
            return Err(PluginError::InvalidArgument("key id is required".into()).into());
        }
        let key = PublicKey {
            id: request.key_id.clone(),
            r#type: request.key_type,
            pkix_data: format!("{}:{}", config.key_prefix, request.key_id).into_bytes(),
            fingerprint: format!("fp:{}", request.key_id),
        };
        self.keys
            .lock()
            .expect("keys lock")
            .insert(key.id.clone(), key.clone());
        let mut metrics = self.hosts.require::<MetricsBridge>()?;
        metrics
            .incr_counter(IncrCounterRequest {
                key: vec!["rust_keymanager".into(), "generate_key".into()],
                val: 1.0,
                labels: vec![Label {
                    name: "key_id".into(),
                    value: request.key_id,
                }],
            })
            .await
            .map_err(PluginError::from)?;
        Ok(Response::new(GenerateKeyResponse {
            public_key: Some(key),
        }))
    }

    async fn get_public_key(
        &self,
        request: Request<GetPublicKeyRequest>,
    ) -> Result<Response<GetPublicKeyResponse>, Status> {
        let key = self.key(&request.into_inner().key_id)?;
        Ok(Response::new(GetPublicKeyResponse {
            public_key: Some(key),
        }))
    }

    async fn get_public_keys(
        &self,
        _request: Request<GetPublicKeysRequest>,
    ) -> Result<Response<GetPublicKeysResponse>, Status> {
        let public_keys = self
            .keys
            .lock()
            .expect("keys lock")
            .values()
            .cloned()
            .collect();
        Ok(Response::new(GetPublicKeysResponse { public_keys }))
    }

    async fn sign_data(
        &self,
        request: Request<SignDataRequest>,
    ) -> Result<Response<SignDataResponse>, Status> {
        let request = request.into_inner();
        let key = self.key(&request.key_id)?;
        let mut signature = format!("sig({}):", request.key_id).into_bytes();
        signature.extend_from_slice(&request.data);
        Ok(Response::new(SignDataResponse {
            signature,
            key_fingerprint: key.fingerprint,
        }))
    }
}

#[tonic::async_trait]
impl Config for Keys {
    async fn configure(
        &self,
        request: Request<ConfigureRequest>,
    ) -> Result<Response<ConfigureResponse>, Status> {
        let config = Configuration::<KeyManagerConfig>::from_configure(request.get_ref())?;
        tracing::info!(trust_domain = %config.core.trust_domain, "configured");
        *self.config.write().expect("config lock") = Some(config.plugin);
        Ok(Response::new(ConfigureResponse {}))
    }

    async fn validate(
        &self,
        request: Request<ValidateRequest>,
    ) -> Result<Response<ValidateResponse>, Status> {
        let result = Configuration::<KeyManagerConfig>::from_validate(request.get_ref());
        Ok(Response::new(ValidateResponse {
            valid: result.is_ok(),
            notes: result
                .err()
                .map(|err| err.to_string())
                .into_iter()
                .collect(),
        }))
    }
}

/// The plugin: KeyManager and Config, requiring the Metrics host service, closing with a log
/// line.
pub fn plugin() -> Plugin {
    let hosts = HostServices::new();
    let keys = Keys {
        hosts: hosts.clone(),
        ..Keys::default()
    };
    Plugin::new(KeyManagerBridge::bridged(keys.clone()))
        .service(ConfigBridge::bridged(keys))
        .host_service::<MetricsBridge>(Requirement::Required)
        .host_services(hosts)
        .on_close(|| async {
            tracing::info!("plugin closed");
            Ok::<(), std::convert::Infallible>(())
        })
}
