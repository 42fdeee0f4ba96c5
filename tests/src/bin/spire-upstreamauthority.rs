//! A Rust SPIRE server UpstreamAuthority for the SPIRE-style Go host
//! (`tests/go/cmd/spirehost`): server streaming that answers once and keeps the stream open.
//!
//! Configuration:
//!
//! ```hcl
//! roots      = ["root-1"]   # "certificates" (opaque bytes here) sent as upstream roots
//! jwt_key_id = "upstream"   # key ID of the upstream JWT key added to the published set
//! ```
//!
//! `MintX509CAAndSubscribe` answers `x509_ca_chain = ["signed:" + csr]` and the roots, then
//! stays open until SPIRE cancels; `PublishJWTKeyAndSubscribe` answers the published key and
//! the upstream one, and stays open too. `SubscribeToLocalBundle` is unimplemented.

use std::sync::{Arc, RwLock};

use serde::Deserialize;
use spire_plugin_sdk::proto::spire::plugin::server::upstreamauthority::v1::{
    MintX509caRequest, MintX509caResponse, PublishJwtKeyRequest, PublishJwtKeyResponse,
    SubscribeToLocalBundleRequest, SubscribeToLocalBundleResponse, UpstreamAuthorityBridge,
    upstream_authority_server::UpstreamAuthority,
};
use spire_plugin_sdk::proto::spire::plugin::types::{JwtKey, X509Certificate};
use spire_plugin_sdk::proto::spire::service::common::config::v1::{
    ConfigBridge, ConfigureRequest, ConfigureResponse, ValidateRequest, ValidateResponse,
    config_server::Config,
};
use spire_plugin_sdk::spire::plugin::Configuration;
use spire_plugin_sdk::spire::plugin::Plugin;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// The plugin's own configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthorityConfig {
    roots: Vec<String>,
    jwt_key_id: String,
}

#[derive(Clone, Default)]
struct Authority {
    config: Arc<RwLock<Option<AuthorityConfig>>>,
}

impl Authority {
    fn configured(&self) -> Result<AuthorityConfig, Status> {
        self.config
            .read()
            .expect("config lock")
            .clone()
            .ok_or_else(|| Status::failed_precondition("not configured"))
    }
}

/// Sends `first`, then keeps the stream open until the receiver (SPIRE) goes away.
fn answer_and_hold<T: Send + 'static>(first: T) -> ReceiverStream<Result<T, Status>> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        if tx.send(Ok(first)).await.is_ok() {
            tx.closed().await;
            tracing::debug!("subscriber gone");
        }
    });
    ReceiverStream::new(rx)
}

fn cert(der: impl Into<Vec<u8>>) -> X509Certificate {
    X509Certificate {
        asn1: der.into(),
        ..X509Certificate::default()
    }
}

#[tonic::async_trait]
impl UpstreamAuthority for Authority {
    type MintX509CAAndSubscribeStream = ReceiverStream<Result<MintX509caResponse, Status>>;
    type PublishJWTKeyAndSubscribeStream = ReceiverStream<Result<PublishJwtKeyResponse, Status>>;
    type SubscribeToLocalBundleStream =
        ReceiverStream<Result<SubscribeToLocalBundleResponse, Status>>;

    async fn mint_x509ca_and_subscribe(
        &self,
        request: Request<MintX509caRequest>,
    ) -> Result<Response<Self::MintX509CAAndSubscribeStream>, Status> {
        let config = self.configured()?;
        let request = request.into_inner();
        if request.csr.is_empty() {
            return Err(Status::invalid_argument("the CSR is empty"));
        }
        let mut signed = b"signed:".to_vec();
        signed.extend_from_slice(&request.csr);
        let answer = MintX509caResponse {
            x509_ca_chain: vec![cert(signed)],
            upstream_x509_roots: config.roots.iter().map(|r| cert(r.as_bytes())).collect(),
        };
        Ok(Response::new(answer_and_hold(answer)))
    }

    async fn publish_jwt_key_and_subscribe(
        &self,
        request: Request<PublishJwtKeyRequest>,
    ) -> Result<Response<Self::PublishJWTKeyAndSubscribeStream>, Status> {
        let config = self.configured()?;
        let published = request
            .into_inner()
            .jwt_key
            .ok_or_else(|| Status::invalid_argument("no JWT key"))?;
        let upstream = JwtKey {
            key_id: config.jwt_key_id,
            public_key: b"upstream-key".to_vec(),
            ..JwtKey::default()
        };
        let answer = PublishJwtKeyResponse {
            upstream_jwt_keys: vec![published, upstream],
        };
        Ok(Response::new(answer_and_hold(answer)))
    }

    async fn subscribe_to_local_bundle(
        &self,
        _request: Request<SubscribeToLocalBundleRequest>,
    ) -> Result<Response<Self::SubscribeToLocalBundleStream>, Status> {
        Err(Status::unimplemented(
            "SubscribeToLocalBundle is not supported",
        ))
    }
}

#[tonic::async_trait]
impl Config for Authority {
    async fn configure(
        &self,
        request: Request<ConfigureRequest>,
    ) -> Result<Response<ConfigureResponse>, Status> {
        let config = Configuration::<AuthorityConfig>::from_configure(request.get_ref())?;
        tracing::info!(trust_domain = %config.core.trust_domain, "configured");
        *self.config.write().expect("config lock") = Some(config.plugin);
        Ok(Response::new(ConfigureResponse {}))
    }

    async fn validate(
        &self,
        request: Request<ValidateRequest>,
    ) -> Result<Response<ValidateResponse>, Status> {
        let result = Configuration::<AuthorityConfig>::from_validate(request.get_ref());
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

#[tokio::main]
async fn main() {
    let authority = Authority::default();
    Plugin::new(UpstreamAuthorityBridge::bridged(authority.clone()))
        .service(ConfigBridge::bridged(authority))
        .on_close(|| async {
            tracing::info!("plugin closed");
            Ok::<(), std::convert::Infallible>(())
        })
        .serve_or_exit()
        .await
}
