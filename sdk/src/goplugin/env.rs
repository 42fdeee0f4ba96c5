//! The environment go-plugin's protocol travels in: the variable names, the plugin side's reading
//! of them ([`PluginEnv`]) and the host side's writing of them ([`ProtocolEnv`], [`merge_env`]).
//!
//! Everything here is pure: lookups are passed in as closures, so only [`process_lookup`] touches
//! the real environment. Parsing the client certificate and binding listeners belong to other
//! modules; the cookie check and version negotiation live in [`super::handshake`].

use std::collections::{BTreeSet, HashSet};

use super::handshake::HandshakeConfig;

/// Lowest TCP port the plugin may listen on. A Go plugin reads it only on Windows.
pub const PLUGIN_MIN_PORT: &str = "PLUGIN_MIN_PORT";
/// Highest TCP port the plugin may listen on. A Go plugin reads it only on Windows.
pub const PLUGIN_MAX_PORT: &str = "PLUGIN_MAX_PORT";
/// Comma-separated list of every app protocol version the host supports.
pub const PLUGIN_PROTOCOL_VERSIONS: &str = "PLUGIN_PROTOCOL_VERSIONS";
/// Set to `true` when the host wants gRPC broker multiplexing.
pub const PLUGIN_MULTIPLEX_GRPC: &str = "PLUGIN_MULTIPLEX_GRPC";
/// The host's AutoMTLS certificate, as PEM text.
pub const PLUGIN_CLIENT_CERT: &str = "PLUGIN_CLIENT_CERT";
/// Directory in which the plugin creates its unix sockets.
pub const PLUGIN_UNIX_SOCKET_DIR: &str = "PLUGIN_UNIX_SOCKET_DIR";
/// Group (name or numeric gid) that should own the plugin's unix sockets.
pub const PLUGIN_UNIX_SOCKET_GROUP: &str = "PLUGIN_UNIX_SOCKET_GROUP";

/// Port range the host sends when it was configured with `0..=0`.
pub const DEFAULT_MIN_PORT: u32 = 10000;
/// Upper end of the default port range, see [`DEFAULT_MIN_PORT`].
pub const DEFAULT_MAX_PORT: u32 = 25000;

/// A protocol variable the plugin cannot use; the texts are go-plugin's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// `PLUGIN_MIN_PORT` or `PLUGIN_MAX_PORT` is not a 32-bit decimal integer.
    #[error("couldn't get value from {var}: {reason}")]
    InvalidPort {
        /// The variable's name.
        var: &'static str,
        /// Go's `strconv.ParseInt` error text.
        reason: String,
    },
    /// The range is empty.
    #[error("PLUGIN_MIN_PORT value of {min} is greater than PLUGIN_MAX_PORT value of {max}")]
    MinAboveMax {
        /// Parsed `PLUGIN_MIN_PORT`.
        min: i32,
        /// Parsed `PLUGIN_MAX_PORT`.
        max: i32,
    },
}

/// The TCP ports a plugin may try, in order, from `min` to `max` inclusive.
///
/// `0..=0` (both variables unset) means "let the OS pick". Values are whatever the host sent, so
/// they may lie outside `0..=65535`; such ports simply fail to bind, as in Go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port to try.
    pub min: i32,
    /// Last port to try.
    pub max: i32,
}

/// The protocol variables as a plugin sees them. An empty value counts as unset, as with Go's
/// `os.Getenv`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginEnv {
    /// Raw `PLUGIN_MIN_PORT`; see [`PluginEnv::port_range`].
    pub min_port: Option<String>,
    /// Raw `PLUGIN_MAX_PORT`; see [`PluginEnv::port_range`].
    pub max_port: Option<String>,
    /// Raw `PLUGIN_PROTOCOL_VERSIONS`, for [`super::handshake::negotiate_version`].
    pub protocol_versions: Option<String>,
    /// `PLUGIN_MULTIPLEX_GRPC` parses as true (Go `strconv.ParseBool`): serve through a muxer.
    pub multiplex_enabled: bool,
    /// `PLUGIN_MULTIPLEX_GRPC` is set at all: append the 7th handshake field `|true`, even when
    /// the value is `false` (go-plugin does the same).
    pub multiplex_announced: bool,
    /// `PLUGIN_CLIENT_CERT`: the host's AutoMTLS certificate as PEM text, unparsed.
    pub client_cert_pem: Option<String>,
    /// `PLUGIN_UNIX_SOCKET_DIR`; unset means the OS temp dir.
    pub unix_socket_dir: Option<String>,
    /// `PLUGIN_UNIX_SOCKET_GROUP`; unset means leave the socket's group and mode alone.
    pub unix_socket_group: Option<String>,
}

impl PluginEnv {
    /// Reads every protocol variable through `lookup` (for example [`process_lookup`]). Never
    /// fails: go-plugin ignores values it does not use, so errors surface only from the accessors.
    pub fn from_lookup(mut lookup: impl FnMut(&str) -> Option<String>) -> Self {
        let mut get = |key: &str| lookup(key).filter(|value| !value.is_empty());
        let multiplex = get(PLUGIN_MULTIPLEX_GRPC);
        PluginEnv {
            min_port: get(PLUGIN_MIN_PORT),
            max_port: get(PLUGIN_MAX_PORT),
            protocol_versions: get(PLUGIN_PROTOCOL_VERSIONS),
            multiplex_enabled: multiplex.as_deref().and_then(go::parse_bool) == Some(true),
            multiplex_announced: multiplex.is_some(),
            client_cert_pem: get(PLUGIN_CLIENT_CERT),
            unix_socket_dir: get(PLUGIN_UNIX_SOCKET_DIR),
            unix_socket_group: get(PLUGIN_UNIX_SOCKET_GROUP),
        }
    }

    /// Reads the current process's environment.
    pub fn from_process() -> Self {
        Self::from_lookup(process_lookup)
    }

    /// The TCP port range, parsed as go-plugin does (each bound a 32-bit integer, unset = 0,
    /// `min <= max`). A Go plugin calls this only when it listens on TCP, i.e. on Windows, so a
    /// bad value is harmless elsewhere.
    pub fn port_range(&self) -> Result<PortRange, EnvError> {
        let parse = |var: &'static str, raw: &Option<String>| match raw {
            None => Ok(0),
            Some(raw) => go::parse_int32(raw).map_err(|err| EnvError::InvalidPort {
                var,
                reason: err.to_string(),
            }),
        };
        let min = parse(PLUGIN_MIN_PORT, &self.min_port)?;
        let max = parse(PLUGIN_MAX_PORT, &self.max_port)?;
        if min > max {
            return Err(EnvError::MinAboveMax { min, max });
        }
        Ok(PortRange { min, max })
    }
}

/// Looks a variable up in the current process's environment; non-UTF-8 values are converted
/// lossily. An empty value is returned as `Some("")`; [`PluginEnv`] treats it as unset.
pub fn process_lookup(key: &str) -> Option<String> {
    std::env::var_os(key).map(|value| value.to_string_lossy().into_owned())
}

/// The variables a host sets for a plugin it launches (go-plugin's `Client.Start`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolEnv {
    /// Name of the cookie variable.
    pub magic_cookie_key: String,
    /// Value of the cookie variable.
    pub magic_cookie_value: String,
    /// Every app protocol version the host supports; written in ascending order.
    pub versions: BTreeSet<u32>,
    /// TCP port range; `0..=0` is sent as [`DEFAULT_MIN_PORT`]`..=`[`DEFAULT_MAX_PORT`].
    pub min_port: u32,
    /// Upper end of the port range.
    pub max_port: u32,
    /// Ask for gRPC broker multiplexing (`PLUGIN_MULTIPLEX_GRPC=true`).
    pub multiplex: bool,
    /// The host's AutoMTLS certificate as PEM text (`PLUGIN_CLIENT_CERT`).
    pub client_cert_pem: Option<String>,
    /// `PLUGIN_UNIX_SOCKET_GROUP`, written only when non-empty.
    pub unix_socket_group: Option<String>,
    /// `PLUGIN_UNIX_SOCKET_DIR`, written only when non-empty (go-plugin sets it only for
    /// `RunnerFunc` hosts).
    pub unix_socket_dir: Option<String>,
}

impl ProtocolEnv {
    /// The variables for `handshake` and `versions`, with every option off.
    pub fn new(handshake: &HandshakeConfig, versions: BTreeSet<u32>) -> Self {
        ProtocolEnv {
            magic_cookie_key: handshake.magic_cookie_key.clone(),
            magic_cookie_value: handshake.magic_cookie_value.clone(),
            versions,
            min_port: 0,
            max_port: 0,
            multiplex: false,
            client_cert_pem: None,
            unix_socket_group: None,
            unix_socket_dir: None,
        }
    }

    /// The entries in go-plugin's order: cookie, ports, versions, multiplex, certificate, group,
    /// directory.
    pub fn entries(&self) -> Vec<(String, String)> {
        let (min, max) = match (self.min_port, self.max_port) {
            (0, 0) => (DEFAULT_MIN_PORT, DEFAULT_MAX_PORT),
            ports => ports,
        };
        let versions: Vec<String> = self.versions.iter().map(u32::to_string).collect();
        let mut env = vec![
            (
                self.magic_cookie_key.clone(),
                self.magic_cookie_value.clone(),
            ),
            (PLUGIN_MIN_PORT.to_owned(), min.to_string()),
            (PLUGIN_MAX_PORT.to_owned(), max.to_string()),
            (PLUGIN_PROTOCOL_VERSIONS.to_owned(), versions.join(",")),
        ];
        if self.multiplex {
            env.push((PLUGIN_MULTIPLEX_GRPC.to_owned(), "true".to_owned()));
        }
        let optional = [
            (PLUGIN_CLIENT_CERT, &self.client_cert_pem),
            (PLUGIN_UNIX_SOCKET_GROUP, &self.unix_socket_group),
            (PLUGIN_UNIX_SOCKET_DIR, &self.unix_socket_dir),
        ];
        for (key, value) in optional {
            if let Some(value) = value.as_ref().filter(|value| !value.is_empty()) {
                env.push((key.to_owned(), value.clone()));
            }
        }
        env
    }
}

/// The child's final environment, built as go-plugin builds it: the app's own entries, then the
/// host's whole environment unless `skip_host_env`, then the protocol entries. When a name repeats,
/// the last entry wins and keeps its position (Go's `exec.Cmd`), so the host's environment
/// overrides the app's own entries. Names compare case-insensitively on Windows.
pub fn merge_env(
    app_env: &[(String, String)],
    host_env: &[(String, String)],
    skip_host_env: bool,
    protocol_env: &[(String, String)],
) -> Vec<(String, String)> {
    let host_env = if skip_host_env { &[][..] } else { host_env };
    let mut seen = HashSet::new();
    let mut merged: Vec<(String, String)> = app_env
        .iter()
        .chain(host_env)
        .chain(protocol_env)
        .rev()
        .filter(|(key, _)| {
            let key = if cfg!(windows) {
                key.to_lowercase()
            } else {
                key.clone()
            };
            seen.insert(key)
        })
        .cloned()
        .collect();
    merged.reverse();
    merged
}

/// Go `strconv` behaviour that go-plugin's checks and messages depend on.
pub(crate) mod go {
    use std::fmt;

    /// Go's `*strconv.NumError`, for its `Display` text.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) struct NumError {
        func: &'static str,
        input: String,
        out_of_range: bool,
    }

    impl fmt::Display for NumError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let reason = if self.out_of_range {
                "value out of range"
            } else {
                "invalid syntax"
            };
            write!(
                f,
                "strconv.{}: parsing {}: {reason}",
                self.func,
                quote(&self.input)
            )
        }
    }

    /// `strconv.ParseInt(s, 10, 32)`.
    pub(crate) fn parse_int32(s: &str) -> Result<i32, NumError> {
        parse_int(s, 32, "ParseInt").and_then(|n| {
            i32::try_from(n).map_err(|_| NumError {
                func: "ParseInt",
                input: s.to_owned(),
                out_of_range: true,
            })
        })
    }

    /// `strconv.Atoi(s)` on a 64-bit platform.
    pub(crate) fn atoi(s: &str) -> Result<i64, NumError> {
        parse_int(s, 64, "Atoi")
    }

    /// Base-10 `ParseInt`: one optional sign, then ASCII digits. Like Go, it reports "out of
    /// range" as soon as the digits so far exceed the unsigned `bits`-bit maximum, even if an
    /// invalid character follows, and "invalid syntax" otherwise.
    fn parse_int(s: &str, bits: u32, func: &'static str) -> Result<i64, NumError> {
        let err = |out_of_range| NumError {
            func,
            input: s.to_owned(),
            out_of_range,
        };
        let (negative, digits) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        if digits.is_empty() {
            return Err(err(false));
        }
        let unsigned_max = u64::MAX >> (64 - bits);
        let mut n: u64 = 0;
        for byte in digits.bytes() {
            if !byte.is_ascii_digit() {
                return Err(err(false));
            }
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(byte - b'0')))
                .filter(|&n| n <= unsigned_max)
                .ok_or_else(|| err(true))?;
        }
        let magnitude_limit = 1u64 << (bits - 1);
        match negative {
            false if n < magnitude_limit => i64::try_from(n).map_err(|_| err(true)),
            true if n <= magnitude_limit => Ok(0i64.wrapping_sub_unsigned(n)),
            _ => Err(err(true)),
        }
    }

    /// `strconv.ParseBool`; `None` where Go returns an error.
    pub(crate) fn parse_bool(s: &str) -> Option<bool> {
        match s {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
            "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
            _ => None,
        }
    }

    /// `strconv.Quote` (what `%q` prints for a string). Printability of non-ASCII characters
    /// follows Rust's Unicode tables, which use Go's definition (categories L, M, N, P, S).
    pub(crate) fn quote(s: &str) -> String {
        let mut out = String::with_capacity(s.len() + 2);
        out.push('"');
        for c in s.chars() {
            match c {
                '"' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                ' '..='~' => out.push(c),
                '\x07' => out.push_str("\\a"),
                '\x08' => out.push_str("\\b"),
                '\x0c' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\x0b' => out.push_str("\\v"),
                '\0'..='\x1f' | '\x7f' => out.push_str(&format!("\\x{:02x}", u32::from(c))),
                _ if is_printable(c) => out.push(c),
                _ if u32::from(c) < 0x10000 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
                _ => out.push_str(&format!("\\U{:08x}", u32::from(c))),
            }
        }
        out.push('"');
        out
    }

    /// Whether Rust's `Debug` prints `c` unescaped. `str::escape_debug` escapes grapheme
    /// extenders only at the start of a string, hence the prefix.
    fn is_printable(c: char) -> bool {
        let probe = format!("a{c}");
        probe.escape_debug().eq(probe.chars())
    }

    /// Go's `%d` of an `[]int`: `[5 6]`.
    pub(crate) fn int_list(values: impl IntoIterator<Item = impl fmt::Display>) -> String {
        let items: Vec<String> = values.into_iter().map(|v| v.to_string()).collect();
        format!("[{}]", items.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn lookup_in(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |key| map.get(key).cloned()
    }

    fn pairs(entries: &[(&str, &str)]) -> Vec<(String, String)> {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn names_are_go_plugins() {
        let names = [
            PLUGIN_MIN_PORT,
            PLUGIN_MAX_PORT,
            PLUGIN_PROTOCOL_VERSIONS,
            PLUGIN_MULTIPLEX_GRPC,
            PLUGIN_CLIENT_CERT,
            PLUGIN_UNIX_SOCKET_DIR,
            PLUGIN_UNIX_SOCKET_GROUP,
        ];
        assert_eq!(
            names.join(" "),
            "PLUGIN_MIN_PORT PLUGIN_MAX_PORT PLUGIN_PROTOCOL_VERSIONS PLUGIN_MULTIPLEX_GRPC \
             PLUGIN_CLIENT_CERT PLUGIN_UNIX_SOCKET_DIR PLUGIN_UNIX_SOCKET_GROUP"
        );
    }

    #[test]
    fn plugin_env_reads_every_variable() {
        let env = PluginEnv::from_lookup(lookup_in(&[
            ("PLUGIN_MIN_PORT", "10000"),
            ("PLUGIN_MAX_PORT", "25000"),
            ("PLUGIN_PROTOCOL_VERSIONS", "5,6"),
            ("PLUGIN_MULTIPLEX_GRPC", "true"),
            ("PLUGIN_CLIENT_CERT", "-----BEGIN CERTIFICATE-----\nMIIB\n"),
            ("PLUGIN_UNIX_SOCKET_DIR", "/run/plugins"),
            ("PLUGIN_UNIX_SOCKET_GROUP", "spire"),
        ]));
        assert_eq!(
            env,
            PluginEnv {
                min_port: Some("10000".into()),
                max_port: Some("25000".into()),
                protocol_versions: Some("5,6".into()),
                multiplex_enabled: true,
                multiplex_announced: true,
                client_cert_pem: Some("-----BEGIN CERTIFICATE-----\nMIIB\n".into()),
                unix_socket_dir: Some("/run/plugins".into()),
                unix_socket_group: Some("spire".into()),
            }
        );
        assert_eq!(
            env.port_range(),
            Ok(PortRange {
                min: 10000,
                max: 25000
            })
        );
    }

    #[test]
    fn empty_values_count_as_unset() {
        let env = PluginEnv::from_lookup(lookup_in(&[
            ("PLUGIN_MIN_PORT", ""),
            ("PLUGIN_MULTIPLEX_GRPC", ""),
            ("PLUGIN_CLIENT_CERT", ""),
            ("PLUGIN_UNIX_SOCKET_DIR", ""),
        ]));
        assert_eq!(env, PluginEnv::default());
        assert_eq!(env.port_range(), Ok(PortRange { min: 0, max: 0 }));
    }

    #[test]
    fn multiplex_follows_parse_bool_but_announces_any_value() {
        // (value, enabled, announced)
        let cases = [
            ("true", true, true),
            ("1", true, true),
            ("t", true, true),
            ("T", true, true),
            ("TRUE", true, true),
            ("True", true, true),
            ("false", false, true),
            ("0", false, true),
            ("F", false, true),
            ("yes", false, true),
            ("tRUE", false, true),
            (" true", false, true),
        ];
        for (value, enabled, announced) in cases {
            let env = PluginEnv::from_lookup(lookup_in(&[("PLUGIN_MULTIPLEX_GRPC", value)]));
            assert_eq!(
                (env.multiplex_enabled, env.multiplex_announced),
                (enabled, announced),
                "{value:?}"
            );
        }
    }

    #[test]
    fn port_range_errors_are_go_plugins() {
        let cases: &[(&str, &str, Result<PortRange, &str>)] = &[
            ("", "", Ok(PortRange { min: 0, max: 0 })),
            ("", "20000", Ok(PortRange { min: 0, max: 20000 })),
            ("+5", "5", Ok(PortRange { min: 5, max: 5 })),
            (
                "-2147483648",
                "2147483647",
                Ok(PortRange {
                    min: i32::MIN,
                    max: i32::MAX,
                }),
            ),
            (
                "abc",
                "",
                Err(
                    "couldn't get value from PLUGIN_MIN_PORT: strconv.ParseInt: parsing \"abc\": invalid syntax",
                ),
            ),
            (
                "1",
                "2147483648",
                Err(
                    "couldn't get value from PLUGIN_MAX_PORT: strconv.ParseInt: parsing \"2147483648\": value out of range",
                ),
            ),
            (
                "3000000000x",
                "",
                Err(
                    "couldn't get value from PLUGIN_MIN_PORT: strconv.ParseInt: parsing \"3000000000x\": invalid syntax",
                ),
            ),
            (
                "4294967296x",
                "",
                Err(
                    "couldn't get value from PLUGIN_MIN_PORT: strconv.ParseInt: parsing \"4294967296x\": value out of range",
                ),
            ),
            (
                "x",
                "y",
                Err(
                    "couldn't get value from PLUGIN_MIN_PORT: strconv.ParseInt: parsing \"x\": invalid syntax",
                ),
            ),
            (
                "25000",
                "10000",
                Err(
                    "PLUGIN_MIN_PORT value of 25000 is greater than PLUGIN_MAX_PORT value of 10000",
                ),
            ),
            (
                "5",
                "",
                Err("PLUGIN_MIN_PORT value of 5 is greater than PLUGIN_MAX_PORT value of 0"),
            ),
        ];
        for (min, max, want) in cases {
            let env = PluginEnv::from_lookup(lookup_in(&[
                ("PLUGIN_MIN_PORT", min),
                ("PLUGIN_MAX_PORT", max),
            ]));
            let got = env.port_range().map_err(|err| err.to_string());
            assert_eq!(got, want.map_err(str::to_owned), "min={min:?} max={max:?}");
        }
    }

    #[test]
    fn go_integer_parsing_matches_strconv() {
        // Expected texts were produced by Go 1.26's strconv.
        let int32_cases: &[(&str, Result<i32, &str>)] = &[
            ("", Err("strconv.ParseInt: parsing \"\": invalid syntax")),
            ("+", Err("strconv.ParseInt: parsing \"+\": invalid syntax")),
            ("-", Err("strconv.ParseInt: parsing \"-\": invalid syntax")),
            (
                "1_000",
                Err("strconv.ParseInt: parsing \"1_000\": invalid syntax"),
            ),
            (
                " 1",
                Err("strconv.ParseInt: parsing \" 1\": invalid syntax"),
            ),
            (
                "０",
                Err("strconv.ParseInt: parsing \"０\": invalid syntax"),
            ),
            (
                "-2147483649",
                Err("strconv.ParseInt: parsing \"-2147483649\": value out of range"),
            ),
            (
                "99999999999999999999999x",
                Err("strconv.ParseInt: parsing \"99999999999999999999999x\": value out of range"),
            ),
            ("-2147483648", Ok(i32::MIN)),
            ("007", Ok(7)),
        ];
        for (input, want) in int32_cases {
            let got = go::parse_int32(input).map_err(|err| err.to_string());
            assert_eq!(got, want.map_err(str::to_owned), "{input:?}");
        }
        let atoi_cases: &[(&str, Result<i64, &str>)] = &[
            ("x", Err("strconv.Atoi: parsing \"x\": invalid syntax")),
            (
                "10000000000000000000x",
                Err("strconv.Atoi: parsing \"10000000000000000000x\": invalid syntax"),
            ),
            (
                "99999999999999999999x",
                Err("strconv.Atoi: parsing \"99999999999999999999x\": value out of range"),
            ),
            (
                "9223372036854775808",
                Err("strconv.Atoi: parsing \"9223372036854775808\": value out of range"),
            ),
            (
                "-9223372036854775809",
                Err("strconv.Atoi: parsing \"-9223372036854775809\": value out of range"),
            ),
            ("9223372036854775807", Ok(i64::MAX)),
            ("-9223372036854775808", Ok(i64::MIN)),
            ("01", Ok(1)),
            ("+1", Ok(1)),
        ];
        for (input, want) in atoi_cases {
            let got = go::atoi(input).map_err(|err| err.to_string());
            assert_eq!(got, want.map_err(str::to_owned), "{input:?}");
        }
    }

    #[test]
    fn go_quote_matches_strconv() {
        // Expected texts were produced by Go 1.26's strconv.Quote.
        let cases = [
            ("a\"b\\c", r#""a\"b\\c""#),
            (
                "\x00\x07\x08\x0c\n\r\t\x0b\x1b\x7f",
                r#""\x00\a\b\f\n\r\t\v\x1b\x7f""#,
            ),
            (
                "é\u{a0}\u{301}\u{200b}\u{2028}\u{1F600}\u{E0001}\u{FEFF}\u{3000}\u{85}",
                "\"é\\u00a0\u{301}\\u200b\\u2028\u{1F600}\\U000e0001\\ufeff\\u3000\\u0085\"",
            ),
            ("日本", "\"日本\""),
            ("", "\"\""),
        ];
        for (input, want) in cases {
            assert_eq!(go::quote(input), want, "{input:?}");
        }
        assert_eq!(go::int_list([5, 6]), "[5 6]");
        assert_eq!(go::int_list(Vec::<u32>::new()), "[]");
    }

    #[test]
    fn protocol_env_defaults_and_order() {
        let handshake = HandshakeConfig {
            protocol_version: 1,
            magic_cookie_key: "KeyManager".into(),
            magic_cookie_value: "KeyManager".into(),
        };
        let env = ProtocolEnv::new(&handshake, BTreeSet::from([1]));
        assert_eq!(
            env.entries(),
            pairs(&[
                ("KeyManager", "KeyManager"),
                ("PLUGIN_MIN_PORT", "10000"),
                ("PLUGIN_MAX_PORT", "25000"),
                ("PLUGIN_PROTOCOL_VERSIONS", "1"),
            ])
        );

        let full = ProtocolEnv {
            versions: BTreeSet::from([6, 5]),
            min_port: 0,
            max_port: 30000,
            multiplex: true,
            client_cert_pem: Some("PEM".into()),
            unix_socket_group: Some("wheel".into()),
            unix_socket_dir: Some("/tmp/plugin-dir1".into()),
            ..env.clone()
        };
        assert_eq!(
            full.entries(),
            pairs(&[
                ("KeyManager", "KeyManager"),
                ("PLUGIN_MIN_PORT", "0"),
                ("PLUGIN_MAX_PORT", "30000"),
                ("PLUGIN_PROTOCOL_VERSIONS", "5,6"),
                ("PLUGIN_MULTIPLEX_GRPC", "true"),
                ("PLUGIN_CLIENT_CERT", "PEM"),
                ("PLUGIN_UNIX_SOCKET_GROUP", "wheel"),
                ("PLUGIN_UNIX_SOCKET_DIR", "/tmp/plugin-dir1"),
            ])
        );

        let empty = ProtocolEnv {
            versions: BTreeSet::new(),
            unix_socket_group: Some(String::new()),
            ..env
        };
        assert_eq!(
            empty.entries()[3],
            ("PLUGIN_PROTOCOL_VERSIONS".to_owned(), String::new())
        );
        assert_eq!(empty.entries().len(), 4);
    }

    #[test]
    fn merge_env_last_duplicate_wins_in_place() {
        let app = pairs(&[("A", "app"), ("ONLY_APP", "1"), ("PLUGIN_MIN_PORT", "app")]);
        let host = pairs(&[("PATH", "/bin"), ("A", "host"), ("KeyManager", "wrong")]);
        let protocol = pairs(&[("KeyManager", "KeyManager"), ("PLUGIN_MIN_PORT", "10000")]);

        assert_eq!(
            merge_env(&app, &host, false, &protocol),
            pairs(&[
                ("ONLY_APP", "1"),
                ("PATH", "/bin"),
                ("A", "host"),
                ("KeyManager", "KeyManager"),
                ("PLUGIN_MIN_PORT", "10000"),
            ])
        );
        assert_eq!(
            merge_env(&app, &host, true, &protocol),
            pairs(&[
                ("A", "app"),
                ("ONLY_APP", "1"),
                ("KeyManager", "KeyManager"),
                ("PLUGIN_MIN_PORT", "10000"),
            ])
        );
        assert_eq!(merge_env(&[], &[], false, &[]), vec![]);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn plugin_env_never_panics(values in proptest::collection::vec(any::<String>(), 7)) {
            let names = [
                PLUGIN_MIN_PORT,
                PLUGIN_MAX_PORT,
                PLUGIN_PROTOCOL_VERSIONS,
                PLUGIN_MULTIPLEX_GRPC,
                PLUGIN_CLIENT_CERT,
                PLUGIN_UNIX_SOCKET_DIR,
                PLUGIN_UNIX_SOCKET_GROUP,
            ];
            let map: HashMap<&str, String> = names.into_iter().zip(values).collect();
            let env = PluginEnv::from_lookup(|key| map.get(key).cloned());
            if let Ok(range) = env.port_range() {
                prop_assert!(range.min <= range.max);
            }
            prop_assert_eq!(env.multiplex_announced, !map[PLUGIN_MULTIPLEX_GRPC].is_empty());
        }

        #[test]
        fn port_parsing_never_panics(min in "[-+]?[0-9]{0,25}[a-z]?", max in any::<String>()) {
            let env = PluginEnv::from_lookup(|key| match key {
                PLUGIN_MIN_PORT => Some(min.clone()),
                PLUGIN_MAX_PORT => Some(max.clone()),
                _ => None,
            });
            let range = env.port_range();
            if let Ok(n) = min.parse::<i32>() {
                // Where Rust's parser accepts, Go's does too and agrees on the value.
                if let Ok(range) = range {
                    prop_assert_eq!(range.min, n);
                }
            }
        }

        #[test]
        fn merge_env_keeps_one_entry_per_name_with_the_last_value(
            app in proptest::collection::vec(("[A-C]", "[a-z]{0,2}"), 0..6),
            host in proptest::collection::vec(("[A-D]", "[a-z]{0,2}"), 0..6),
            protocol in proptest::collection::vec(("[C-E]", "[a-z]{0,2}"), 0..6),
            skip in any::<bool>(),
        ) {
            let merged = merge_env(&app, &host, skip, &protocol);
            let mut last = HashMap::new();
            let host_used: &[(String, String)] = if skip { &[] } else { &host };
            for (k, v) in app.iter().chain(host_used).chain(&protocol) {
                last.insert(k.clone(), v.clone());
            }
            prop_assert_eq!(merged.len(), last.len());
            for (k, v) in &merged {
                prop_assert_eq!(Some(v), last.get(k));
            }
        }
    }
}
