# An example configuration of agent-workload-attestor: the `plugin_data` of its declaration in
# SPIRE's agent.conf, which SPIRE sends to the plugin's Configure RPC. The tests and
# `cargo xtask plugin-check --config plugin.hcl` configure the plugin with it.
plugin_data {
    lookup_timeout_seconds = 5
}
