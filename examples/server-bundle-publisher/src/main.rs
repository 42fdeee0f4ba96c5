//! The `server-bundle-publisher` binary: serves the plugin to SPIRE over go-plugin's gRPC protocol.
//! SPIRE starts it; run by hand it explains that it is a plugin and exits.

#[tokio::main]
async fn main() {
    server_bundle_publisher::plugin().serve_or_exit().await
}
