# An example configuration of agent-node-attestor: the `plugin_data` of its declaration in
# SPIRE's agent.conf, which SPIRE sends to the plugin's Configure RPC. The tests and
# `cargo xtask plugin-check --config plugin.hcl` configure the plugin with it.
plugin_data {
    token_path = "/var/run/node/token"
}
