# An example configuration of server-key-manager: the `plugin_data` of its declaration in
# SPIRE's server.conf, which SPIRE sends to the plugin's Configure RPC. The tests and
# `cargo xtask plugin-check --config plugin.hcl` configure the plugin with it.
plugin_data {
    key_directory = "/var/lib/spire/keys"
}
