//! The `agent-key-manager` binary: serves the plugin to SPIRE over go-plugin's gRPC protocol.
//! SPIRE starts it; run by hand it explains that it is a plugin and exits.

#[tokio::main]
async fn main() {
    agent_key_manager::plugin().serve_or_exit().await
}
