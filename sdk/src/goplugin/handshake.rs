//! go-plugin's handshake: the app's [`HandshakeConfig`], the plugin side's cookie check
//! ([`HandshakeConfig::check_cookie`]) and version choice ([`negotiate_version`]), and the single
//! stdout line ([`HandshakeLine`]) that the plugin prints and the host parses.
//!
//! Everything here is pure. Reading the environment, writing to stdout or stderr, exiting,
//! resolving addresses and parsing certificates are the callers' jobs. Error texts are
//! go-plugin v1.8's, byte for byte.

use std::collections::BTreeSet;
use std::fmt;

use super::env::go;

/// The go-plugin core protocol version, the handshake line's first field.
pub const CORE_PROTOCOL_VERSION: u32 = 1;

/// What a Go plugin writes to stderr (then exits 1) when its own cookie key or value is empty.
pub const MISCONFIGURED_MESSAGE: &str = "Misconfigured ServeConfig given to serve this plugin: \
    no magic cookie\nkey or value was set. Please notify the plugin author and report\nthis as a \
    bug.\n";

/// What a Go plugin writes to stderr (then exits 1) when the cookie variable is missing or wrong.
pub const NOT_A_PLUGIN_MESSAGE: &str = "This binary is a plugin. These are not meant to be \
    executed directly.\nPlease execute the program that consumes these plugins, which will\nload \
    any plugins automatically\n";

/// go-plugin's error when the host asked for multiplexing and the plugin refused it.
pub const MUX_NOT_SUPPORTED_MESSAGE: &str =
    "client requested gRPC broker multiplexing but plugin does not support the feature";

/// An application's handshake settings, shared by its host and its plugins. Build one with
/// [`HandshakeConfig::new`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct HandshakeConfig {
    /// The app protocol version served when nothing else is negotiated.
    pub protocol_version: u32,
    /// Name of the environment variable carrying the cookie.
    pub magic_cookie_key: String,
    /// The cookie's expected value.
    pub magic_cookie_value: String,
}

/// Why a plugin refuses to start. `Display` is go-plugin's exact stderr text, trailing newline
/// included, so print it with `eprint!` and then exit with status 1, as a Go plugin does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    /// The plugin's own [`HandshakeConfig`] has an empty cookie key or value.
    #[error("{MISCONFIGURED_MESSAGE}")]
    Misconfigured,
    /// The cookie variable is unset or has another value: not launched by a host.
    #[error("{NOT_A_PLUGIN_MESSAGE}")]
    NotAPlugin,
}

impl HandshakeConfig {
    /// Protocol `version`, and the cookie: the host sets environment variable `cookie_key` to
    /// `cookie_value`, and the plugin refuses to start without it.
    ///
    /// ```
    /// use spire_plugin_sdk::goplugin::HandshakeConfig;
    ///
    /// let handshake = HandshakeConfig::new(1, "BASIC_PLUGIN", "hello");
    /// assert_eq!(handshake.magic_cookie_key, "BASIC_PLUGIN");
    /// ```
    pub fn new(
        version: u32,
        cookie_key: impl Into<String>,
        cookie_value: impl Into<String>,
    ) -> Self {
        HandshakeConfig {
            protocol_version: version,
            magic_cookie_key: cookie_key.into(),
            magic_cookie_value: cookie_value.into(),
        }
    }

    /// The plugin-side checks go-plugin's `Serve` makes before anything else: a non-empty cookie
    /// in `self`, then `lookup(key) == value` (an unset variable reads as empty).
    pub fn check_cookie(
        &self,
        mut lookup: impl FnMut(&str) -> Option<String>,
    ) -> Result<(), CookieError> {
        if self.magic_cookie_key.is_empty() || self.magic_cookie_value.is_empty() {
            return Err(CookieError::Misconfigured);
        }
        match lookup(&self.magic_cookie_key) {
            Some(value) if value == self.magic_cookie_value => Ok(()),
            _ => Err(CookieError::NotAPlugin),
        }
    }
}

/// A `PLUGIN_PROTOCOL_VERSIONS` item that is not an integer. A Go plugin writes its `Display`
/// text to stderr without a newline, skips the item and carries on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("server sent invalid plugin version {}", go::quote(.0))]
pub struct InvalidVersion(pub String);

/// The outcome of [`negotiate_version`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The app protocol version to serve.
    pub version: u32,
    /// Items of the host's list that were skipped, in order.
    pub warnings: Vec<InvalidVersion>,
}

/// Chooses the app protocol version as a Go plugin does: the highest of `supported` that the host
/// lists in `host_versions` (the raw `PLUGIN_PROTOCOL_VERSIONS`), else the lowest of `supported`
/// so that the host reports the mismatch.
///
/// `supported` is go-plugin's `VersionedPlugins` plus `ProtocolVersion` when it has plugins. If it
/// is empty, `fallback` (normally [`HandshakeConfig::protocol_version`]) is returned, as in Go.
pub fn negotiate_version(
    supported: &BTreeSet<u32>,
    fallback: u32,
    host_versions: Option<&str>,
) -> Negotiated {
    let mut warnings = Vec::new();
    let mut host = BTreeSet::new();
    for item in host_versions
        .filter(|s| !s.is_empty())
        .into_iter()
        .flat_map(|s| s.split(','))
    {
        match go::atoi(item) {
            Ok(version) => {
                host.insert(version);
            }
            Err(_) => warnings.push(InvalidVersion(item.to_owned())),
        }
    }
    let version = supported
        .iter()
        .rev()
        .find(|&&v| host.contains(&i64::from(v)))
        .or_else(|| supported.first())
        .copied()
        .unwrap_or(fallback);
    Negotiated { version, warnings }
}

/// The listener's network, the handshake line's third field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Network {
    /// A unix domain socket; the address is its path.
    Unix,
    /// TCP; the address is `host:port`.
    Tcp,
    /// Any other name; a host rejects it with [`HandshakeError::UnknownNetwork`].
    Other(String),
}

impl Network {
    /// Reads a field as written: `unix`, `tcp`, or anything else.
    pub fn from_field(field: &str) -> Self {
        match field {
            "unix" => Network::Unix,
            "tcp" => Network::Tcp,
            other => Network::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Network::Unix => "unix",
            Network::Tcp => "tcp",
            Network::Other(name) => name,
        })
    }
}

/// The RPC protocol the plugin serves, the handshake line's fifth field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// gRPC (`grpc`).
    Grpc,
    /// Go's net/rpc over yamux (`netrpc`), go-plugin's default when the field is absent.
    NetRpc,
    /// Any other name.
    Other(String),
}

impl Protocol {
    /// Reads a field as written: `grpc`, `netrpc`, or anything else.
    pub fn from_field(field: &str) -> Self {
        match field {
            "grpc" => Protocol::Grpc,
            "netrpc" => Protocol::NetRpc,
            other => Protocol::Other(other.to_owned()),
        }
    }
}

/// Network and protocol names travel as their handshake text in JSON too (reattach configs).
macro_rules! serde_as_field {
    ($type:ty) => {
        impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let field =
                    <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(deserializer)?;
                Ok(<$type>::from_field(&field))
            }
        }
    };
}

serde_as_field!(Network);
serde_as_field!(Protocol);

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Grpc => "grpc",
            Protocol::NetRpc => "netrpc",
            Protocol::Other(name) => name,
        })
    }
}

/// The line a plugin prints on stdout once it listens:
/// `core|app|network|address|protocol|cert[|true]`.
///
/// `Display` writes it without the newline; [`HandshakeLine::to_line`] adds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeLine {
    /// Always `CORE_PROTOCOL_VERSION` (1) in a line a host accepts.
    pub core_version: u32,
    /// The negotiated app protocol version.
    pub app_version: u32,
    /// The listener's network.
    pub network: Network,
    /// The listener's address: a socket path or `host:port`.
    pub address: String,
    /// The RPC protocol served.
    pub protocol: Protocol,
    /// The plugin's AutoMTLS certificate (DER), written as unpadded standard base64; `None`
    /// leaves the field empty. When parsing, a field of 50 characters or fewer is ignored.
    pub server_cert: Option<Vec<u8>>,
    /// The 7th field `|true`. A Go plugin writes it whenever `PLUGIN_MULTIPLEX_GRPC` is
    /// non-empty . When parsing: the field
    /// exists and reads as true.
    pub multiplex: bool,
}

/// What a host accepts in a [`HandshakeLine`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostExpectations {
    /// App protocol versions the host supports.
    pub versions: BTreeSet<u32>,
    /// Protocols the host can speak (go-plugin's `AllowedProtocols`).
    pub allowed_protocols: Vec<Protocol>,
    /// The host asked for gRPC broker multiplexing, so a gRPC plugin must confirm it.
    pub multiplex: bool,
}

impl HostExpectations {
    /// A gRPC-only host for `versions`, without multiplexing.
    pub fn grpc(versions: impl IntoIterator<Item = u32>) -> Self {
        HostExpectations {
            versions: versions.into_iter().collect(),
            allowed_protocols: vec![Protocol::Grpc],
            multiplex: false,
        }
    }
}

/// Why a host rejects a plugin's handshake. `Display` is go-plugin's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The first stdout line has fewer than four `|`-separated fields.
    #[error("{}", unrecognized_text(.line, *.stdout_closed, .diagnosis))]
    Unrecognized {
        /// The trimmed line (empty when stdout closed first).
        line: String,
        /// Stdout reached end of file before any line; adds go-plugin's note saying so.
        stdout_closed: bool,
        /// go-plugin's runner diagnosis, appended after a newline when non-empty;
        /// [`HandshakeLine::parse`] fills in go-plugin's diagnosis`("")`.
        diagnosis: String,
    },
    /// The first field is not an integer.
    #[error("error parsing core protocol version: {reason}")]
    CoreVersionSyntax {
        /// Go's `strconv.Atoi` error text.
        reason: String,
    },
    /// The first field is an integer other than `CORE_PROTOCOL_VERSION` (1).
    #[error(
        "incompatible core API version with plugin. Plugin version: {field}, Core version: \
         {CORE_PROTOCOL_VERSION}\n\nTo fix this, the plugin usually only needs to be \
         recompiled.\nPlease report this to the plugin author"
    )]
    IncompatibleCoreVersion {
        /// The field as written.
        field: String,
    },
    /// The second field is not an integer.
    #[error("Error parsing protocol version {}: {reason}", go::quote(.field))]
    AppVersionSyntax {
        /// The field as written.
        field: String,
        /// Go's `strconv.Atoi` error text.
        reason: String,
    },
    /// The plugin chose an app version the host does not support.
    #[error(
        "incompatible API version with plugin. Plugin version: {plugin}, Client versions: {}",
        go::int_list(.host)
    )]
    IncompatibleAppVersion {
        /// The plugin's version.
        plugin: i64,
        /// The host's versions, ascending.
        host: Vec<u32>,
    },
    /// The network is neither `unix` nor `tcp` (go-plugin's text names the address).
    #[error("unknown address type: {address}")]
    UnknownNetwork {
        /// The network field.
        network: String,
        /// The address field.
        address: String,
    },
    /// The protocol is not among the host's allowed protocols.
    #[error(
        "unsupported plugin protocol {}. Supported: {}",
        go::quote(&.protocol.to_string()),
        go::int_list(.allowed)
    )]
    UnsupportedProtocol {
        /// The plugin's protocol.
        protocol: Protocol,
        /// The host's allowed protocols.
        allowed: Vec<Protocol>,
    },
    /// The certificate field is not unpadded standard base64. A TLS module that then fails to
    /// parse the DER reports its reason through this variant too.
    #[error("error parsing server cert: {reason}")]
    InvalidServerCert {
        /// Why decoding failed.
        reason: String,
    },
    /// The host asked for multiplexing but the line has no 7th field.
    #[error(
        "{MUX_NOT_SUPPORTED_MESSAGE}; for Go plugins, you will need to update the \
         github.com/hashicorp/go-plugin dependency and recompile"
    )]
    MultiplexFieldMissing,
    /// The host asked for multiplexing but the 7th field is not a Go boolean.
    #[error("error parsing {} as a boolean for gRPC broker multiplexing support", go::quote(.field))]
    MultiplexFieldSyntax {
        /// The field as written.
        field: String,
    },
    /// The host asked for multiplexing and the 7th field is false.
    #[error("{MUX_NOT_SUPPORTED_MESSAGE}")]
    MultiplexRefused,
    /// No line arrived within the start timeout (go-plugin's default is one minute).
    #[error("timeout while waiting for plugin to start")]
    StartTimeout,
    /// The plugin process exited before printing a line.
    #[error("plugin exited before we could connect")]
    ExitedBeforeHandshake,
}

/// go-plugin's diagnosis for an unrecognized handshake from a launched command: a fixed list of
/// likely causes, then `notes` (go-plugin appends the binary's path, mode, owner and architecture
/// there, or nothing when it cannot stat the file).
pub fn unrecognized_diagnosis(notes: &str) -> String {
    format!(
        "This usually means\n  the plugin was not compiled for this architecture,\n  the plugin \
         is missing dynamic-link libraries necessary to run,\n  the plugin is not executable by \
         this process due to file permissions, or\n  the plugin failed to negotiate the initial \
         go-plugin protocol handshake\n{notes}"
    )
}

fn unrecognized_text(line: &str, stdout_closed: bool, diagnosis: &str) -> String {
    let mut text = format!("Unrecognized remote plugin message: {line}");
    if stdout_closed {
        text.push_str("\nFailed to read any lines from plugin's stdout");
    }
    if !diagnosis.is_empty() {
        text.push('\n');
        text.push_str(diagnosis);
    }
    text
}

impl HandshakeLine {
    /// The line as printed: `Display` plus `\n`.
    pub fn to_line(&self) -> String {
        format!("{self}\n")
    }

    /// Parses the plugin's first stdout line as a go-plugin host does, checking the fields in
    /// go-plugin's order: count (at least 4), core version, app version, network, protocol
    /// (`netrpc` when absent), certificate (decoded only when longer than 50 characters), and
    /// the 7th field only if `host` asked for multiplexing and the protocol is gRPC. Fields
    /// after the 7th are ignored. The address is not resolved.
    pub fn parse(line: &str, host: &HostExpectations) -> Result<HandshakeLine, HandshakeError> {
        let line = line.trim();
        let parts: Vec<&str> = line.split('|').collect();
        let &[core, app, network, address, ref rest @ ..] = parts.as_slice() else {
            return Err(HandshakeError::Unrecognized {
                line: line.to_owned(),
                stdout_closed: false,
                diagnosis: unrecognized_diagnosis(""),
            });
        };

        let core_version = go::atoi(core).map_err(|err| HandshakeError::CoreVersionSyntax {
            reason: err.to_string(),
        })?;
        if core_version != i64::from(CORE_PROTOCOL_VERSION) {
            return Err(HandshakeError::IncompatibleCoreVersion {
                field: core.to_owned(),
            });
        }

        let plugin_version = go::atoi(app).map_err(|err| HandshakeError::AppVersionSyntax {
            field: app.to_owned(),
            reason: err.to_string(),
        })?;
        let app_version = u32::try_from(plugin_version)
            .ok()
            .filter(|v| host.versions.contains(v))
            .ok_or_else(|| HandshakeError::IncompatibleAppVersion {
                plugin: plugin_version,
                host: host.versions.iter().copied().collect(),
            })?;

        let network = match Network::from_field(network) {
            Network::Other(network) => {
                return Err(HandshakeError::UnknownNetwork {
                    network,
                    address: address.to_owned(),
                });
            }
            known => known,
        };

        let protocol = rest
            .first()
            .map_or(Protocol::NetRpc, |field| Protocol::from_field(field));
        if !host.allowed_protocols.contains(&protocol) {
            return Err(HandshakeError::UnsupportedProtocol {
                protocol,
                allowed: host.allowed_protocols.clone(),
            });
        }

        let server_cert = match rest.get(1) {
            Some(field) if field.len() > 50 => {
                Some(decode_base64_raw_std(field).map_err(|offset| {
                    HandshakeError::InvalidServerCert {
                        reason: format!("illegal base64 data at input byte {offset}"),
                    }
                })?)
            }
            _ => None,
        };

        let mux_field = rest.get(2).copied();
        if host.multiplex && protocol == Protocol::Grpc {
            let field = mux_field.ok_or(HandshakeError::MultiplexFieldMissing)?;
            match go::parse_bool(field) {
                None => {
                    return Err(HandshakeError::MultiplexFieldSyntax {
                        field: field.to_owned(),
                    });
                }
                Some(false) => return Err(HandshakeError::MultiplexRefused),
                Some(true) => {}
            }
        }

        Ok(HandshakeLine {
            core_version: CORE_PROTOCOL_VERSION,
            app_version,
            network,
            address: address.to_owned(),
            protocol,
            server_cert,
            multiplex: mux_field.and_then(go::parse_bool) == Some(true),
        })
    }
}

impl fmt::Display for HandshakeLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use base64::Engine as _;

        let cert = self
            .server_cert
            .as_deref()
            .map(|der| base64::engine::general_purpose::STANDARD_NO_PAD.encode(der))
            .unwrap_or_default();
        write!(
            f,
            "{}|{}|{}|{}|{}|{cert}",
            self.core_version, self.app_version, self.network, self.address, self.protocol
        )?;
        if self.multiplex {
            f.write_str("|true")?;
        }
        Ok(())
    }
}

/// Decodes like Go's `base64.RawStdEncoding.DecodeString`: CR and LF are skipped, padding and
/// other bytes are rejected, and leftover bits are ignored. The error is Go's byte offset.
fn decode_base64_raw_std(text: &str) -> Result<Vec<u8>, usize> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 2);
    let (mut acc, mut count) = (0u32, 0u8);
    for (offset, byte) in text.bytes().enumerate() {
        let sextet = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'\r' | b'\n' => continue,
            _ => return Err(offset),
        };
        acc = (acc << 6) | u32::from(sextet);
        count += 1;
        if count == 4 {
            out.extend_from_slice(&acc.to_be_bytes()[1..]);
            (acc, count) = (0, 0);
        }
    }
    match count {
        1 => return Err(text.len() - 1),
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => {}
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spire() -> HandshakeConfig {
        HandshakeConfig {
            protocol_version: 1,
            magic_cookie_key: "KeyManager".into(),
            magic_cookie_value: "KeyManager".into(),
        }
    }

    fn line(app_version: u32, network: Network, address: &str) -> HandshakeLine {
        HandshakeLine {
            core_version: 1,
            app_version,
            network,
            address: address.into(),
            protocol: Protocol::Grpc,
            server_cert: None,
            multiplex: false,
        }
    }

    #[test]
    fn cookie_check() {
        let cases: &[(HandshakeConfig, Option<&str>, Result<(), CookieError>)] = &[
            (spire(), Some("KeyManager"), Ok(())),
            (spire(), None, Err(CookieError::NotAPlugin)),
            (spire(), Some(""), Err(CookieError::NotAPlugin)),
            (spire(), Some("keymanager"), Err(CookieError::NotAPlugin)),
            (spire(), Some("KeyManager "), Err(CookieError::NotAPlugin)),
            (
                HandshakeConfig {
                    magic_cookie_key: String::new(),
                    ..spire()
                },
                Some("KeyManager"),
                Err(CookieError::Misconfigured),
            ),
            (
                HandshakeConfig {
                    magic_cookie_value: String::new(),
                    ..spire()
                },
                Some(""),
                Err(CookieError::Misconfigured),
            ),
        ];
        for (config, value, want) in cases {
            let got = config.check_cookie(|key| {
                assert_eq!(key, config.magic_cookie_key);
                value.map(str::to_owned)
            });
            assert_eq!(&got, want, "{config:?} {value:?}");
        }
    }

    #[test]
    fn cookie_messages_are_go_plugins() {
        assert_eq!(
            CookieError::NotAPlugin.to_string(),
            "This binary is a plugin. These are not meant to be executed directly.\n\
             Please execute the program that consumes these plugins, which will\n\
             load any plugins automatically\n"
        );
        assert_eq!(
            CookieError::Misconfigured.to_string(),
            "Misconfigured ServeConfig given to serve this plugin: no magic cookie\n\
             key or value was set. Please notify the plugin author and report\n\
             this as a bug.\n"
        );
    }

    #[test]
    fn negotiation() {
        #[track_caller]
        fn check(
            supported: &[u32],
            fallback: u32,
            env: Option<&str>,
            version: u32,
            warnings: &[&str],
        ) {
            let supported: BTreeSet<u32> = supported.iter().copied().collect();
            let got = negotiate_version(&supported, fallback, env);
            let got_warnings: Vec<String> = got.warnings.iter().map(ToString::to_string).collect();
            let got_warnings: Vec<&str> = got_warnings.iter().map(String::as_str).collect();
            assert_eq!((got.version, got_warnings.as_slice()), (version, warnings));
        }
        check(&[1], 1, Some("1"), 1, &[]);
        check(&[5, 6], 6, Some("5,6"), 6, &[]);
        check(&[5, 6], 6, Some("6,5"), 6, &[]);
        check(&[5, 6], 6, Some("5"), 5, &[]);
        check(&[5, 6], 6, Some("4,7"), 5, &[]);
        check(&[5, 6], 6, None, 5, &[]);
        check(&[5, 6], 6, Some(""), 5, &[]);
        check(&[3, 4, 5], 3, Some("+4,05"), 5, &[]);
        check(
            &[5, 6],
            6,
            Some("5, 6,x,,"),
            5,
            &[
                "server sent invalid plugin version \" 6\"",
                "server sent invalid plugin version \"x\"",
                "server sent invalid plugin version \"\"",
                "server sent invalid plugin version \"\"",
            ],
        );
        // An empty set keeps the fallback, as go-plugin keeps `ProtocolVersion`.
        check(&[], 7, Some("1,2"), 7, &[]);
        check(
            &[1],
            1,
            Some("-1,99999999999999999999"),
            1,
            &["server sent invalid plugin version \"99999999999999999999\""],
        );
    }

    #[test]
    fn formats_go_lines() {
        let mut spire_line = line(1, Network::Unix, "/tmp/plugin2837465");
        assert_eq!(spire_line.to_string(), "1|1|unix|/tmp/plugin2837465|grpc|");
        assert_eq!(spire_line.to_line(), "1|1|unix|/tmp/plugin2837465|grpc|\n");

        spire_line.multiplex = true;
        assert_eq!(
            spire_line.to_string(),
            "1|1|unix|/tmp/plugin2837465|grpc||true"
        );

        let tcp = HandshakeLine {
            protocol: Protocol::NetRpc,
            server_cert: Some(vec![0xff, 0xee, 0x01, 0x02]),
            ..line(6, Network::Tcp, "127.0.0.1:10000")
        };
        assert_eq!(tcp.to_string(), "1|6|tcp|127.0.0.1:10000|netrpc|/+4BAg");

        let other = HandshakeLine {
            protocol: Protocol::Other("custom".into()),
            ..line(2, Network::Other("unixpacket".into()), "@abstract")
        };
        assert_eq!(other.to_string(), "1|2|unixpacket|@abstract|custom|");
    }

    #[test]
    fn parses_go_lines() {
        let host = HostExpectations::grpc([1]);
        let want = line(1, Network::Unix, "/tmp/plugin2837465");
        for text in [
            "1|1|unix|/tmp/plugin2837465|grpc|",
            "  1|1|unix|/tmp/plugin2837465|grpc|\r\n",
            "1|1|unix|/tmp/plugin2837465|grpc",
            "1|1|unix|/tmp/plugin2837465|grpc|short-cert-ignored",
            "1|1|unix|/tmp/plugin2837465|grpc||false|extra|fields",
            "01|+1|unix|/tmp/plugin2837465|grpc|",
        ] {
            assert_eq!(
                HandshakeLine::parse(text, &host),
                Ok(want.clone()),
                "{text:?}"
            );
        }

        let netrpc_host = HostExpectations {
            allowed_protocols: vec![Protocol::NetRpc],
            ..HostExpectations::grpc([1])
        };
        let parsed = HandshakeLine::parse("1|1|tcp|127.0.0.1:1234", &netrpc_host);
        assert_eq!(
            parsed,
            Ok(HandshakeLine {
                protocol: Protocol::NetRpc,
                ..line(1, Network::Tcp, "127.0.0.1:1234")
            })
        );

        let mux = HandshakeLine::parse("1|1|unix|/p|grpc||T", &host);
        assert_eq!(mux.map(|l| l.multiplex), Ok(true));
    }

    #[test]
    fn decodes_certificates_longer_than_50() {
        let host = HostExpectations::grpc([1]);
        let der: Vec<u8> = (0u8..=200).collect();
        let with_cert = HandshakeLine {
            server_cert: Some(der.clone()),
            ..line(1, Network::Unix, "/p")
        };
        let parsed = HandshakeLine::parse(&with_cert.to_line(), &host);
        assert_eq!(parsed, Ok(with_cert));

        // 37 bytes encode to exactly 50 characters: go-plugin ignores the field.
        let short = HandshakeLine {
            server_cert: Some(vec![7; 37]),
            ..line(1, Network::Unix, "/p")
        };
        assert_eq!(
            HandshakeLine::parse(&short.to_line(), &host).map(|l| l.server_cert),
            Ok(None)
        );
        let just_long_enough = HandshakeLine {
            server_cert: Some(vec![7; 38]),
            ..line(1, Network::Unix, "/p")
        };
        assert_eq!(
            HandshakeLine::parse(&just_long_enough.to_line(), &host).map(|l| l.server_cert),
            Ok(Some(vec![7; 38]))
        );
    }

    #[test]
    fn base64_matches_go_raw_std_encoding() {
        // Expected offsets were produced by Go 1.26's base64.RawStdEncoding.
        let cases: &[(&str, Result<&[u8], usize>)] = &[
            ("AAAAA", Err(4)),
            ("AAAA=", Err(4)),
            ("AA!A", Err(2)),
            ("AAAAAAAAA", Err(8)),
            ("AAAA\nA", Err(5)),
            ("é", Err(0)),
            ("AB", Ok(&[0x00])),
            ("ABC", Ok(&[0x00, 0x10])),
            ("AB\r\nCD", Ok(&[0x00, 0x10, 0x83])),
            ("/+4BAg", Ok(&[0xff, 0xee, 0x01, 0x02])),
            ("", Ok(&[])),
        ];
        for (input, want) in cases {
            assert_eq!(
                decode_base64_raw_std(input),
                want.map(<[u8]>::to_vec),
                "{input:?}"
            );
        }
    }

    #[test]
    fn parse_errors_are_go_plugins() {
        let diagnosis = "This usually means\n  the plugin was not compiled for this architecture,\n  \
                         the plugin is missing dynamic-link libraries necessary to run,\n  \
                         the plugin is not executable by this process due to file permissions, or\n  \
                         the plugin failed to negotiate the initial go-plugin protocol handshake\n";
        let bad_cert = format!("1|1|unix|/p|grpc|{}!", "A".repeat(50));
        let grpc = HostExpectations::grpc([1]);
        let terraform = HostExpectations::grpc([5, 6]);
        let mux = HostExpectations {
            multiplex: true,
            ..HostExpectations::grpc([1])
        };
        let netrpc_only = HostExpectations {
            allowed_protocols: vec![Protocol::NetRpc],
            ..HostExpectations::grpc([1])
        };
        let both = HostExpectations {
            allowed_protocols: vec![Protocol::NetRpc, Protocol::Grpc],
            multiplex: true,
            ..HostExpectations::grpc([1])
        };
        let cases: Vec<(&str, &HostExpectations, String)> = vec![
            (
                "hello world",
                &grpc,
                format!("Unrecognized remote plugin message: hello world\n{diagnosis}"),
            ),
            (
                " 1|1|unix \n",
                &grpc,
                format!("Unrecognized remote plugin message: 1|1|unix\n{diagnosis}"),
            ),
            (
                "x|1|unix|/p|grpc|",
                &grpc,
                "error parsing core protocol version: strconv.Atoi: parsing \"x\": invalid syntax".into(),
            ),
            (
                "2|1|unix|/p|grpc|",
                &grpc,
                "incompatible core API version with plugin. Plugin version: 2, Core version: 1\n\n\
                 To fix this, the plugin usually only needs to be recompiled.\n\
                 Please report this to the plugin author"
                    .into(),
            ),
            (
                "1|v1|unix|/p|grpc|",
                &grpc,
                "Error parsing protocol version \"v1\": strconv.Atoi: parsing \"v1\": invalid syntax".into(),
            ),
            (
                "1|4|unix|/p|grpc|",
                &terraform,
                "incompatible API version with plugin. Plugin version: 4, Client versions: [5 6]".into(),
            ),
            (
                "1|-1|unix|/p|grpc|",
                &grpc,
                "incompatible API version with plugin. Plugin version: -1, Client versions: [1]".into(),
            ),
            (
                "1|1|udp|127.0.0.1:5|grpc|",
                &grpc,
                "unknown address type: 127.0.0.1:5".into(),
            ),
            (
                "1|1|unix|/p",
                &grpc,
                "unsupported plugin protocol \"netrpc\". Supported: [grpc]".into(),
            ),
            (
                "1|1|unix|/p|grpc|",
                &netrpc_only,
                "unsupported plugin protocol \"grpc\". Supported: [netrpc]".into(),
            ),
            (
                "1|1|unix|/p|gr\"pc|",
                &both,
                "unsupported plugin protocol \"gr\\\"pc\". Supported: [netrpc grpc]".into(),
            ),
            (
                &bad_cert,
                &grpc,
                "error parsing server cert: illegal base64 data at input byte 50".into(),
            ),
            (
                "1|1|unix|/p|grpc|",
                &mux,
                "client requested gRPC broker multiplexing but plugin does not support the \
                 feature; for Go plugins, you will need to update the \
                 github.com/hashicorp/go-plugin dependency and recompile"
                    .into(),
            ),
            (
                "1|1|unix|/p|grpc||yes",
                &mux,
                "error parsing \"yes\" as a boolean for gRPC broker multiplexing support".into(),
            ),
            (
                "1|1|unix|/p|grpc||false",
                &mux,
                "client requested gRPC broker multiplexing but plugin does not support the feature"
                    .into(),
            ),
        ];
        for (text, host, want) in cases {
            let got = HandshakeLine::parse(text, host).map_err(|err| err.to_string());
            assert_eq!(got, Err(want), "{text:?}");
        }

        // Multiplexing is checked only for gRPC plugins.
        let netrpc = HandshakeLine::parse("1|1|unix|/p|netrpc|", &both);
        assert_eq!(netrpc.map(|l| l.protocol), Ok(Protocol::NetRpc));
        // A bad 7th field is ignored when the host did not ask for multiplexing.
        let ignored = HandshakeLine::parse("1|1|unix|/p|grpc||yes", &grpc);
        assert_eq!(ignored.map(|l| l.multiplex), Ok(false));
    }

    #[test]
    fn host_side_only_errors() {
        let closed = HandshakeError::Unrecognized {
            line: String::new(),
            stdout_closed: true,
            diagnosis: unrecognized_diagnosis("\nAdditional notes about plugin:\n  Path: /p\n"),
        };
        assert_eq!(
            closed.to_string(),
            "Unrecognized remote plugin message: \n\
             Failed to read any lines from plugin's stdout\n\
             This usually means\n  the plugin was not compiled for this architecture,\n  \
             the plugin is missing dynamic-link libraries necessary to run,\n  \
             the plugin is not executable by this process due to file permissions, or\n  \
             the plugin failed to negotiate the initial go-plugin protocol handshake\n\
             \nAdditional notes about plugin:\n  Path: /p\n"
        );
        let bare = HandshakeError::Unrecognized {
            line: "x".into(),
            stdout_closed: false,
            diagnosis: String::new(),
        };
        assert_eq!(bare.to_string(), "Unrecognized remote plugin message: x");
        assert_eq!(
            HandshakeError::StartTimeout.to_string(),
            "timeout while waiting for plugin to start"
        );
        assert_eq!(
            HandshakeError::ExitedBeforeHandshake.to_string(),
            "plugin exited before we could connect"
        );
    }

    fn arb_line() -> impl Strategy<Value = HandshakeLine> {
        let network = prop_oneof![Just(Network::Unix), Just(Network::Tcp)];
        let protocol = prop_oneof![
            Just(Protocol::Grpc),
            Just(Protocol::NetRpc),
            "[^|]{0,12}".prop_map(|s| Protocol::from_field(&s)),
        ];
        let cert = proptest::option::of(proptest::collection::vec(any::<u8>(), 38..700));
        (
            any::<u32>(),
            network,
            "[^|]{0,80}",
            protocol,
            cert,
            any::<bool>(),
        )
            .prop_map(
                |(app_version, network, address, protocol, server_cert, multiplex)| HandshakeLine {
                    core_version: CORE_PROTOCOL_VERSION,
                    app_version,
                    network,
                    address,
                    protocol,
                    server_cert,
                    multiplex,
                },
            )
    }

    fn arb_text() -> impl Strategy<Value = String> {
        let field = prop_oneof![
            Just(String::new()),
            Just("1".to_owned()),
            Just("grpc".to_owned()),
            Just("unix".to_owned()),
            Just("true".to_owned()),
            "[A-Za-z0-9+/=\r\n]{0,120}",
            any::<String>(),
            "[0-9]{1,40}".prop_map(|s| format!("-{s}")),
            (0usize..100_000).prop_map(|n| "A".repeat(n)),
        ];
        prop_oneof![
            any::<String>(),
            proptest::collection::vec(any::<u8>(), 0..512)
                .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
            proptest::collection::vec(field, 0..12).prop_map(|fields| fields.join("|")),
            (0usize..5_000).prop_map(|n| "|".repeat(n)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn format_parse_round_trip(original in arb_line(), ask_mux in any::<bool>()) {
            let host = HostExpectations {
                versions: BTreeSet::from([original.app_version]),
                allowed_protocols: vec![original.protocol.clone()],
                multiplex: ask_mux && original.multiplex,
            };
            let text = original.to_line();
            prop_assert_eq!(text.matches('|').count(), if original.multiplex { 6 } else { 5 });
            prop_assert_eq!(HandshakeLine::parse(&text, &host), Ok(original));
        }

        #[test]
        fn parse_never_panics(text in arb_text(), mux in any::<bool>(), both in any::<bool>()) {
            let mut host = HostExpectations::grpc([0, 1, 5, 6, u32::MAX]);
            host.multiplex = mux;
            if both {
                host.allowed_protocols.push(Protocol::NetRpc);
            }
            if let Ok(parsed) = HandshakeLine::parse(&text, &host) {
                prop_assert_eq!(parsed.core_version, CORE_PROTOCOL_VERSION);
                prop_assert!(host.versions.contains(&parsed.app_version));
            }
        }

        #[test]
        fn negotiation_picks_highest_common_else_lowest(
            supported in proptest::collection::btree_set(0u32..20, 1..6),
            host in proptest::collection::vec(-3i64..25, 0..6),
            junk in proptest::collection::vec("[a-z ]{0,3}", 0..3),
        ) {
            let items: Vec<String> =
                host.iter().map(i64::to_string).chain(junk.iter().cloned()).collect();
            let env = items.join(",");
            let got = negotiate_version(&supported, 99, Some(&env));
            prop_assert!(supported.contains(&got.version));
            let common = supported.iter().rev().find(|&&v| host.contains(&i64::from(v)));
            prop_assert_eq!(got.version, *common.or(supported.first()).unwrap());
            if !env.is_empty() {
                prop_assert_eq!(got.warnings.len(), junk.len());
            }
        }

        #[test]
        fn cookie_check_never_panics(key in any::<String>(), value in any::<String>(), env in proptest::option::of(any::<String>())) {
            let config = HandshakeConfig { protocol_version: 1, magic_cookie_key: key, magic_cookie_value: value };
            let result = config.check_cookie(|_| env.clone());
            let ok = !config.magic_cookie_key.is_empty()
                && !config.magic_cookie_value.is_empty()
                && env.as_deref() == Some(config.magic_cookie_value.as_str());
            prop_assert_eq!(result.is_ok(), ok);
        }
    }
}
