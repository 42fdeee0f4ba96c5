# An example configuration of server-notifier: the `plugin_data` of its declaration in
# SPIRE's server.conf, which SPIRE sends to the plugin's Configure RPC. The tests and
# `cargo xtask plugin-check --config plugin.hcl` configure the plugin with it.
plugin_data {
    destination = "https://bundles.example.org/notify"
}
