//! The single integration-test binary: each module covers one area against real inputs.

mod wire_identity;
