//! A Rust SPIRE server KeyManager for the SPIRE-style Go host (`tests/go/cmd/spirehost`) that
//! needs the Metrics host service: `Init` fails when the host does not offer it, and every
//! `GenerateKey` increments the host's counter `rust_keymanager.generate_key{key_id}`.
//!
//! Configuration:
//!
//! ```hcl
//! key_prefix = "km"   # public keys are "<key_prefix>:<key_id>" (opaque bytes here)
//! ```
//!
//! Keys are fake but deterministic: `pkix_data = "<key_prefix>:<key_id>"`, fingerprint
//! `fp:<key_id>`, and `SignData` answers `sig(<key_id>):<data>`.

#[tokio::main]
async fn main() {
    spire_plugin_tests::key_manager::plugin()
        .serve_or_exit()
        .await
}
