//! Shared helpers for the integration tests in `tests/it`; the tests themselves live there.

use std::path::PathBuf;

pub mod key_manager;
pub mod workload_attestor;

/// The root of the workspace (the directory holding `proto/`, `sdk/` and `tests/`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent directory")
        .to_path_buf()
}

/// Rust for the interop test tree (`fixtures/interop`), generated in `build.rs` by our codegen.
#[allow(
    missing_docs,
    unused_qualifications,
    rust_2018_idioms,
    clippy::all,
    reason = "generated"
)]
pub mod interop {
    include!(concat!(env!("OUT_DIR"), "/interop/mod.rs"));
}

/// The go-plugin handshake shared by the interop programs (Rust and Go).
pub fn interop_handshake() -> spire_plugin_sdk::goplugin::HandshakeConfig {
    spire_plugin_sdk::goplugin::HandshakeConfig::new(1, "INTEROP_PLUGIN", "interop-echo")
}

/// What each side serves on brokered connections in the interop tests: `Say` answers
/// `<prefix>echo: <text>`; every other RPC is refused.
#[derive(Debug, Clone)]
pub struct Responder {
    /// Put before `echo: `, e.g. `host-` or `plugin-`.
    pub prefix: &'static str,
}

#[tonic::async_trait]
impl interop::interop::v1::echo_server::Echo for Responder {
    async fn say(
        &self,
        request: tonic::Request<String>,
    ) -> Result<tonic::Response<String>, tonic::Status> {
        Ok(tonic::Response::new(format!(
            "{}echo: {}",
            self.prefix,
            request.into_inner()
        )))
    }

    async fn print(&self, _: tonic::Request<String>) -> Result<tonic::Response<()>, tonic::Status> {
        Err(brokered_only())
    }

    async fn log(&self, _: tonic::Request<String>) -> Result<tonic::Response<()>, tonic::Status> {
        Err(brokered_only())
    }

    async fn call_back(
        &self,
        _: tonic::Request<u32>,
    ) -> Result<tonic::Response<String>, tonic::Status> {
        Err(brokered_only())
    }

    async fn serve(&self, _: tonic::Request<()>) -> Result<tonic::Response<u32>, tonic::Status> {
        Err(brokered_only())
    }

    async fn crash(&self, _: tonic::Request<()>) -> Result<tonic::Response<()>, tonic::Status> {
        Err(brokered_only())
    }
}

fn brokered_only() -> tonic::Status {
    tonic::Status::unimplemented("not served on brokered connections")
}
