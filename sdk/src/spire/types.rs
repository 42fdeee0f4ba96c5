//! The typed names of SPIRE's plugin types: [`Side`] (`agent`, `server`) and [`PluginType`]
//! (`agent/KeyManager`), parsed once where text enters (a command line, a declaration) and passed
//! on as values, never as strings parsed again downstream.

use std::fmt;
use std::str::FromStr;

use crate::bridge::{Role, ServiceInfo};

/// The SPIRE process a plugin type belongs to; equal type names (`KeyManager`,
/// `NodeAttestor`) are different types on each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Side {
    /// `spire-agent`.
    Agent,
    /// `spire-server`.
    Server,
}

impl Side {
    /// `agent` or `server`, as in proto packages and `side/Type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Agent => "agent",
            Side::Server => "server",
        }
    }

    fn from_name(name: &str) -> Option<Side> {
        match name {
            "agent" => Some(Side::Agent),
            "server" => Some(Side::Server),
            _ => None,
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Side {
    type Err = UnknownPluginType;

    fn from_str(s: &str) -> Result<Side, UnknownPluginType> {
        Side::from_name(s).ok_or_else(|| UnknownPluginType::new(s))
    }
}

/// One of SPIRE's plugin types on its side, e.g. `agent/KeyManager`, backed by the plugin
/// service generated for it.
///
/// ```
/// use spire_plugin_sdk::spire::{PluginType, Side};
///
/// let km: PluginType = "server/KeyManager".parse()?;
/// assert_eq!(km.side(), Side::Server);
/// assert_eq!(km.name(), "KeyManager");
/// assert_eq!(km.service().full_name, "spire.plugin.server.keymanager.v1.KeyManager");
/// assert_eq!(km.to_string(), "server/KeyManager");
/// assert!("server/Nope".parse::<PluginType>().is_err());
/// # Ok::<(), spire_plugin_sdk::spire::UnknownPluginType>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PluginType {
    side: Side,
    service: ServiceInfo,
}

impl PluginType {
    /// The type `name` (e.g. `KeyManager`, as in a declaration) on `side`.
    ///
    /// # Errors
    ///
    /// [`UnknownPluginType`] listing the supported types.
    pub fn new(side: Side, name: &str) -> Result<PluginType, UnknownPluginType> {
        PluginType::all()
            .find(|t| t.side == side && t.name() == name)
            .ok_or_else(|| UnknownPluginType::new(&format!("{side}/{name}")))
    }

    /// Every SPIRE plugin type of the proto tree, sorted by side, then name.
    pub fn all() -> impl Iterator<Item = PluginType> {
        let mut all: Vec<PluginType> = crate::proto::SERVICES
            .iter()
            .filter(|info| info.role == Role::Plugin)
            .filter_map(|info| {
                Some(PluginType {
                    side: Side::from_name(info.side?)?,
                    service: *info,
                })
            })
            .collect();
        all.sort_by_key(|t| (t.side, t.name()));
        all.into_iter()
    }

    /// The side.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The type's name, e.g. `KeyManager`: the declaration's block label, and the go-plugin
    /// cookie key and value.
    pub fn name(&self) -> &'static str {
        self.service.plugin_type.unwrap_or_default()
    }

    /// The plugin service a plugin of this type serves.
    pub fn service(&self) -> &ServiceInfo {
        &self.service
    }
}

impl fmt::Display for PluginType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.side, self.name())
    }
}

impl FromStr for PluginType {
    type Err = UnknownPluginType;

    /// Reads `side/Type` exactly as SPIRE spells it (`agent/WorkloadAttestor`).
    fn from_str(s: &str) -> Result<PluginType, UnknownPluginType> {
        let (side, name) = s.split_once('/').ok_or_else(|| UnknownPluginType::new(s))?;
        let side = Side::from_name(side).ok_or_else(|| UnknownPluginType::new(s))?;
        PluginType::new(side, name).map_err(|_| UnknownPluginType::new(s))
    }
}

impl TryFrom<&str> for PluginType {
    type Error = UnknownPluginType;

    fn try_from(s: &str) -> Result<PluginType, UnknownPluginType> {
        s.parse()
    }
}

/// A side or `side/Type` that names no SPIRE plugin type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported plugin type \"{given}\"; supported: {}", supported_list())]
pub struct UnknownPluginType {
    given: String,
}

impl UnknownPluginType {
    fn new(given: &str) -> UnknownPluginType {
        UnknownPluginType {
            given: given.to_owned(),
        }
    }

    /// The text that was given.
    pub fn given(&self) -> &str {
        &self.given
    }
}

fn supported_list() -> String {
    PluginType::all()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_the_ten_types_sorted() {
        let all: Vec<String> = PluginType::all().map(|t| t.to_string()).collect();
        assert_eq!(
            all,
            [
                "agent/KeyManager",
                "agent/NodeAttestor",
                "agent/SVIDStore",
                "agent/WorkloadAttestor",
                "server/BundlePublisher",
                "server/CredentialComposer",
                "server/KeyManager",
                "server/NodeAttestor",
                "server/Notifier",
                "server/UpstreamAuthority",
            ]
        );
    }

    #[test]
    fn parses_exact_names_and_refuses_others() {
        for good in PluginType::all() {
            assert_eq!(good.to_string().parse::<PluginType>(), Ok(good));
        }
        for bad in [
            "agent",
            "agent/",
            "/KeyManager",
            "agent/keymanager",
            "x/KeyManager",
            "agent/KeyManager/x",
        ] {
            let err = bad.parse::<PluginType>().expect_err(bad);
            assert_eq!(err.given(), bad);
            assert!(
                err.to_string().contains("supported: agent/KeyManager,"),
                "{err}"
            );
        }
        assert_eq!("server".parse::<Side>(), Ok(Side::Server));
    }
}
