//! Turning plugin errors into gRPC statuses SPIRE understands.
//!
//! Plugin RPCs return `Result<_, tonic::Status>`. Two helpers get there from ordinary errors:
//!
//! - [`PluginError`], a typed error whose variants map one-to-one to status codes (table
//!   below); `?` converts it through `From<PluginError> for Status`.
//! - [`ResultExt`] on any `Result<T, E: Display>`: `.invalid_argument("context")?`,
//!   `.internal("context")?`, … give the status `"context: <error>"` with that code, as Go
//!   plugins write `status.Errorf(codes.X, "context: %v", err)`.
//!
//! | Error | Code |
//! |---|---|
//! | [`PluginError::InvalidArgument`], [`ConfigError`] | `InvalidArgument` |
//! | [`PluginError::NotFound`] | `NotFound` |
//! | [`PluginError::AlreadyExists`] | `AlreadyExists` |
//! | [`PluginError::PermissionDenied`] | `PermissionDenied` |
//! | [`PluginError::FailedPrecondition`] (e.g. not configured yet, host service missing) | `FailedPrecondition` |
//! | [`PluginError::Unavailable`] | `Unavailable` |
//! | [`PluginError::Unimplemented`] | `Unimplemented` |
//! | [`PluginError::Internal`] | `Internal` |
//! | [`PluginError::Status`] (e.g. a failed host-service call) | the status itself |

use std::fmt::Display;

use tonic::{Code, Status};

use super::config::ConfigError;

/// An error from plugin code, with the gRPC code it becomes (see the module docs).
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The request (or configuration) is wrong.
    #[error("{0}")]
    InvalidArgument(String),
    /// The configuration could not be decoded.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Something the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Something the request would create exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The caller (e.g. an attesting agent) is refused.
    #[error("{0}")]
    PermissionDenied(String),
    /// The plugin is not in a state to answer (not configured, host service missing).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A dependency is unreachable; retrying may help.
    #[error("{0}")]
    Unavailable(String),
    /// The RPC is not implemented by this plugin.
    #[error("{0}")]
    Unimplemented(String),
    /// A bug or an unexpected failure in the plugin.
    #[error("{0}")]
    Internal(String),
    /// A status from elsewhere (a host-service call), passed on as it is.
    #[error(transparent)]
    Status(#[from] Status),
}

impl PluginError {
    /// The gRPC code this error becomes.
    pub fn code(&self) -> Code {
        match self {
            PluginError::InvalidArgument(_) | PluginError::Config(_) => Code::InvalidArgument,
            PluginError::NotFound(_) => Code::NotFound,
            PluginError::AlreadyExists(_) => Code::AlreadyExists,
            PluginError::PermissionDenied(_) => Code::PermissionDenied,
            PluginError::FailedPrecondition(_) => Code::FailedPrecondition,
            PluginError::Unavailable(_) => Code::Unavailable,
            PluginError::Unimplemented(_) => Code::Unimplemented,
            PluginError::Internal(_) => Code::Internal,
            PluginError::Status(status) => status.code(),
        }
    }
}

impl From<PluginError> for Status {
    fn from(err: PluginError) -> Status {
        match err {
            PluginError::Status(status) => status,
            other => Status::new(other.code(), other.to_string()),
        }
    }
}

/// Converts any `Result<T, E: Display>` into a `Result<T, Status>` with a chosen code and a
/// context prefix: the message is `"<context>: <error>"`.
pub trait ResultExt<T> {
    /// The error becomes a status with `code`.
    fn or_status(self, code: Code, context: &str) -> Result<T, Status>;

    /// The error becomes `InvalidArgument`.
    fn invalid_argument(self, context: &str) -> Result<T, Status>
    where
        Self: Sized,
    {
        self.or_status(Code::InvalidArgument, context)
    }

    /// The error becomes `Internal`.
    fn internal(self, context: &str) -> Result<T, Status>
    where
        Self: Sized,
    {
        self.or_status(Code::Internal, context)
    }

    /// The error becomes `FailedPrecondition`.
    fn failed_precondition(self, context: &str) -> Result<T, Status>
    where
        Self: Sized,
    {
        self.or_status(Code::FailedPrecondition, context)
    }
}

impl<T, E: Display> ResultExt<T> for Result<T, E> {
    fn or_status(self, code: Code, context: &str) -> Result<T, Status> {
        self.map_err(|err| Status::new(code, format!("{context}: {err}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_map_to_their_codes() {
        let cases = [
            (
                PluginError::InvalidArgument("a".into()),
                Code::InvalidArgument,
            ),
            (PluginError::NotFound("a".into()), Code::NotFound),
            (PluginError::AlreadyExists("a".into()), Code::AlreadyExists),
            (
                PluginError::PermissionDenied("a".into()),
                Code::PermissionDenied,
            ),
            (
                PluginError::FailedPrecondition("a".into()),
                Code::FailedPrecondition,
            ),
            (PluginError::Unavailable("a".into()), Code::Unavailable),
            (PluginError::Unimplemented("a".into()), Code::Unimplemented),
            (PluginError::Internal("a".into()), Code::Internal),
            (
                PluginError::Config(ConfigError::MissingTrustDomain),
                Code::InvalidArgument,
            ),
            (PluginError::Status(Status::aborted("x")), Code::Aborted),
        ];
        for (err, code) in cases {
            let status = Status::from(err);
            assert_eq!(status.code(), code);
        }
    }

    #[test]
    fn result_ext_prefixes_context() {
        let failed: Result<(), &str> = Err("boom");
        let status = failed.internal("signing").unwrap_err();
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "signing: boom");
    }
}
