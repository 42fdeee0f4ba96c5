//! A Rust SPIRE agent WorkloadAttestor for the SPIRE-style Go host (`tests/go/cmd/spirehost`):
//! unary RPCs answered from configuration. Its configuration struct does not deny unknown
//! keys, so extra keys are accepted (the other test plugins refuse them).
//!
//! Configuration:
//!
//! ```hcl
//! selectors = ["team:blue"]       # given to every workload
//! pids { "42" = ["special:yes"] }  # extra selectors by PID (optional)
//! ```
//!
//! `Attest(pid)` answers the selectors, then the PID's extra selectors, then `pid:<pid>`;
//! `Attest(-7)` panics (see `workload_attestor::PANIC_PID`).

#[tokio::main]
async fn main() {
    spire_plugin_tests::workload_attestor::plugin()
        .serve_or_exit()
        .await
}
