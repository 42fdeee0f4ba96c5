//! A minimal Rust host for the parent-death test: launches the plugin named on the command line
//! with `PluginClient`, prints the plugin's PID on stdout, then waits until it is killed.

use spire_plugin_sdk::goplugin::{ClientConfig, PluginClient};

#[tokio::main]
async fn main() {
    let plugin = std::env::args()
        .nth(1)
        .expect("usage: host-once <plugin binary>");
    let config = ClientConfig::new(spire_plugin_tests::interop_handshake(), [1], plugin);
    let client = PluginClient::start(config)
        .await
        .expect("starting the plugin");
    let pid = client.pid().expect("a launched plugin has a PID");
    #[allow(clippy::print_stdout, reason = "the test reads the PID from stdout")]
    {
        println!("{pid}");
    }
    std::future::pending::<()>().await;
}
