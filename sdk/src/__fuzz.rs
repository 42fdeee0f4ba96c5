//! Entry points for the fuzz targets (`fuzz/`) and their corpus replay (`tests/it/fuzz_replay.rs`);
//! not public API. Each function feeds raw bytes to one parser of untrusted input, checks the
//! properties that must hold for every input (round trips where a printer exists, errors that
//! carry what they promise) and panics only on a real bug. They depend on the SDK's modules, so
//! the targets and the replay do not have to.

use std::collections::{BTreeSet, HashMap};
use std::task::{Context, Poll, Waker};

use base64::Engine as _;

use crate::goplugin::env::{PluginEnv, ProtocolEnv};
use crate::goplugin::handshake::{
    HandshakeConfig, HandshakeLine, HostExpectations, Protocol, negotiate_version,
};
use crate::goplugin::hclog::{
    EntryKind, LineKind, LineReader, LogEntry, ParserState, parse_line, timestamp,
};
use crate::goplugin::reattach::ReattachConfig;
use crate::goplugin::tls::PinnedCert;
use crate::spire::catalog::{PluginData, parse_checksum, parse_plugins};
use crate::spire::plugin::{ConfigError, parse_config};

/// The first byte chooses what the host expects: its low 3 bits the versions (1 up to that
/// number), bit 3 netrpc allowed beside grpc, bit 4 multiplexing asked for (`!` is version 1,
/// grpc only; `1` is the same with multiplexing; `+` is versions 1–3 with netrpc). The rest
/// is the line. A line the host accepts prints back (`to_line`) to a line that parses the same.
pub fn handshake_line(data: &[u8]) {
    let Some((&selector, line)) = data.split_first() else {
        return;
    };
    let line = String::from_utf8_lossy(line);
    let host = HostExpectations {
        versions: (1..=u32::from(selector & 0x07).max(1)).collect(),
        allowed_protocols: if selector & 0x08 == 0 {
            vec![Protocol::Grpc]
        } else {
            vec![Protocol::Grpc, Protocol::NetRpc]
        },
        multiplex: selector & 0x10 != 0,
    };
    let Ok(parsed) = HandshakeLine::parse(&line, &host) else {
        return;
    };
    assert!(host.versions.contains(&parsed.app_version), "{parsed:?}");
    // go-plugin ignores a certificate field of 50 characters or fewer, and the field may hold
    // CR/LF that decoding skips, so a decoded certificate may print shorter than 51.
    let printable = parsed.server_cert.as_ref().is_none_or(|der| {
        base64::engine::general_purpose::STANDARD_NO_PAD
            .encode(der)
            .len()
            > 50
    });
    if printable {
        let printed = parsed.to_line();
        let reparsed = HandshakeLine::parse(&printed, &host)
            .unwrap_or_else(|err| panic!("printed line {printed:?} fails to parse: {err}"));
        assert_eq!(reparsed, parsed, "printed line {printed:?}");
    }
}

/// `KEY=VALUE` entries, separated by NUL when the input has one (so that a value such as a PEM
/// certificate may span lines), else by newlines, become the environment a plugin reads; every
/// accessor runs. The host's writing of the protocol variables reads back as what was written.
pub fn plugin_env(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let separator = if text.contains('\0') { '\0' } else { '\n' };
    let vars: HashMap<&str, &str> = text
        .split(separator)
        .filter_map(|line| line.split_once('='))
        .collect();
    let env = PluginEnv::from_lookup(|key| vars.get(key).map(|value| (*value).to_owned()));
    if let Ok(range) = env.port_range() {
        assert!(range.min <= range.max, "{range:?}");
    }
    let supported: BTreeSet<u32> = [1, 2, 5].into();
    let negotiated = negotiate_version(&supported, 9, env.protocol_versions.as_deref());
    assert!(supported.contains(&negotiated.version), "{negotiated:?}");
    let handshake = HandshakeConfig {
        protocol_version: 1,
        magic_cookie_key: "FUZZ_COOKIE".to_owned(),
        magic_cookie_value: vars.get("FUZZ_COOKIE").copied().unwrap_or("").to_owned(),
    };
    let cookie = handshake.check_cookie(|key| vars.get(key).map(|value| (*value).to_owned()));
    assert_eq!(
        cookie.is_ok(),
        !handshake.magic_cookie_value.is_empty(),
        "{cookie:?}"
    );

    // Host side: what ProtocolEnv writes, a plugin reads back.
    let mut written = ProtocolEnv::new(&handshake, supported.clone());
    written.multiplex = env.multiplex_enabled;
    written.client_cert_pem = env.client_cert_pem.clone();
    written.unix_socket_dir = env.unix_socket_dir.clone();
    written.unix_socket_group = env.unix_socket_group.clone();
    let entries: HashMap<String, String> = written.entries().into_iter().collect();
    let read = PluginEnv::from_lookup(|key| entries.get(key).cloned());
    assert!(read.port_range().is_ok(), "{read:?}");
    assert_eq!(read.multiplex_enabled, env.multiplex_enabled);
    assert_eq!(read.client_cert_pem, env.client_cert_pem);
    assert_eq!(read.unix_socket_dir, env.unix_socket_dir);
    assert_eq!(read.unix_socket_group, env.unix_socket_group);
    let negotiated = negotiate_version(&supported, 9, read.protocol_versions.as_deref());
    assert_eq!(negotiated.version, 5);
    assert!(negotiated.warnings.is_empty(), "{negotiated:?}");
}

/// Plugin stderr: split into lines as a go-plugin host reads them (a small buffer, so pieces
/// occur), each classified with the panic state carried along. A JSON entry printed back as an
/// hclog line classifies the same.
pub fn hclog_line(data: &[u8]) {
    let mut reader = LineReader::with_buffer_size(data, 64);
    let mut state = ParserState::new();
    let mut total = 0;
    loop {
        let line = match ready(reader.next_line()) {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(err) => panic!("reading a byte slice failed: {err}"),
        };
        total += line.bytes.len();
        assert!(total <= data.len(), "more bytes out than in");
        if line.kind == LineKind::Whole {
            assert!(!line.bytes.contains(&b'\n'), "{line:?}");
        }
        let entry = state.parse(&line);
        if entry.kind == EntryKind::Json {
            let printed = print_hclog(&entry);
            let again = parse_line(printed.as_bytes(), &mut ParserState::new());
            assert_eq!(again.kind, EntryKind::Json, "{printed}");
            assert_eq!(again.level, entry.level, "{printed}");
            assert_eq!(again.message, entry.message, "{printed}");
            if again.timestamp != entry.timestamp {
                // Go accepts offsets up to +24:60 on input, which print as +25:00 and do not
                // parse again; that is the only timestamp allowed to be dropped.
                let offset = entry.timestamp.map(|at| at.offset().whole_seconds().abs());
                assert!(
                    again.timestamp.is_none() && offset > Some(24 * 3600),
                    "{printed}"
                );
            }
            let sorted = |fields: &[(String, serde_json::Value)]| {
                let mut fields = fields.to_vec();
                fields.sort_by(|a, b| a.0.cmp(&b.0));
                fields
            };
            let (before, after) = (sorted(&entry.fields), sorted(&again.fields));
            assert_eq!(before.len(), after.len(), "{printed}");
            for ((key, value), (key_again, value_again)) in before.iter().zip(&after) {
                assert_eq!(key, key_again, "{printed}");
                assert!(same_json(value, value_again), "{key}: {printed}");
            }
        }
    }
    // A whole-input classification never depends on a reader.
    let _ = parse_line(data, &mut ParserState::new());
}

/// An hclog JSON line for `entry`, as a plugin's logger writes it.
fn print_hclog(entry: &LogEntry) -> String {
    let mut object = serde_json::Map::new();
    object.insert("@level".into(), entry.level.as_str().into());
    object.insert("@message".into(), entry.message.clone().into());
    if let Some(at) = entry.timestamp {
        object.insert("@timestamp".into(), timestamp::format_json(at).into());
    }
    for (key, value) in &entry.fields {
        object.insert(key.clone(), value.clone());
    }
    serde_json::Value::Object(object).to_string()
}

/// JSON equality, with floats equal when within rounding: serde_json without its
/// `float_roundtrip` feature may read a printed float back one ulp off.
fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            x == y || (x - y).abs() <= x.abs().max(y.abs()) * 1e-15
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, x)| y.get(key).is_some_and(|y| same_json(x, y)))
        }
        _ => a == b,
    }
}

/// Polls a future that never waits (reading from a byte slice) to completion.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("reading a byte slice never waits"),
    }
}

/// `plugin_data` as SPIRE sends it, decoded generically and into a typed struct. Every failure
/// is a [`ConfigError`] (so `InvalidArgument`); a syntax error names a line of the text.
pub fn plugin_data(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    allowing_caught_panics(|| {
        check_config_error(text, parse_config::<hcl::Value>(text).err());
        check_config_error(text, parse_config::<FuzzConfig>(text).err());
    });
}

/// Runs `run` so that a panic the SDK itself catches (the decoder guards hcl-rs's evaluation
/// with `catch_unwind`) is not taken for a crash: libFuzzer's panic hook aborts on every panic,
/// caught or not. A panic that escapes `run` is re-raised with its original text and place.
fn allowing_caught_panics(run: impl FnOnce()) {
    thread_local! {
        static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
    }
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        LAST_PANIC.with(|last| *last.borrow_mut() = Some(info.to_string()));
    }));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run));
    std::panic::set_hook(hook);
    if outcome.is_err() {
        let what = LAST_PANIC.with(|last| last.borrow_mut().take());
        panic!(
            "{}",
            what.unwrap_or_else(|| "a panic without a message".to_owned())
        );
    }
}

fn check_config_error(text: &str, err: Option<ConfigError>) {
    let Some(err) = err else {
        return;
    };
    if let ConfigError::Syntax { line, column, .. } = err {
        let lines = text.split('\n').count();
        assert!(
            (1..=lines).contains(&line) && column >= 1,
            "{err} (text has {lines} lines)"
        );
    }
    let status = tonic::Status::from(err);
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
}

/// A plugin configuration with each kind of field SPIRE plugins use.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "only decoding is exercised")]
struct FuzzConfig {
    #[serde(default)]
    name: String,
    #[serde(default)]
    count: Option<u32>,
    #[serde(default)]
    enabled: bool,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    pids: HashMap<String, Vec<String>>,
    #[serde(default)]
    inner: Option<FuzzInner>,
}

#[derive(Debug, serde::Deserialize)]
#[allow(dead_code, reason = "only decoding is exercised")]
struct FuzzInner {
    level: i64,
    #[serde(default)]
    ratio: f64,
}

/// SPIRE plugin declarations (`plugins { … }`). Inline `plugin_data` a block was re-printed
/// into is what the plugin receives, so the plugin side's decoder must read it; checksums are
/// decoded.
pub fn declarations(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(declarations) = parse_plugins(text) else {
        return;
    };
    for declaration in declarations {
        if let Some(checksum) = &declaration.checksum {
            let _ = parse_checksum(checksum);
        }
        if let PluginData::Inline(inline) = &declaration.data
            && is_printed_body(inline)
            && let Err(err @ ConfigError::Syntax { .. }) = parse_config::<hcl::Value>(inline)
        {
            panic!("re-printed plugin_data {inline:?} does not parse: {err}");
        }
    }
}

/// Whether `inline` is a re-printed `plugin_data` body (`"key" = …` or `"key" {`), not a value
/// passed on as written (a string, a list).
fn is_printed_body(inline: &str) -> bool {
    let Some(rest) = inline.strip_prefix('"') else {
        return false;
    };
    let Some((key, after)) = rest.split_once('"') else {
        return false;
    };
    let after = after.trim_start_matches([' ', '\t']);
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        && (after.starts_with('=') || after.starts_with('{'))
}

/// Reattach JSON (debug mode's line, `TF_REATTACH_PROVIDERS`-shaped): what decodes encodes
/// back to the same value.
pub fn reattach_json(data: &[u8]) {
    let Ok(config) = serde_json::from_slice::<ReattachConfig>(data) else {
        return;
    };
    let json = serde_json::to_string(&config).expect("a reattach config serializes");
    let again: ReattachConfig = serde_json::from_str(&json).expect("printed JSON decodes");
    assert_eq!(again, config, "{json}");
}

/// The AutoMTLS certificate field of a handshake line, and the same bytes as PEM text (what
/// `PLUGIN_CLIENT_CERT` holds). A pinned certificate re-encodes to one that pins the same.
pub fn autotls_cert(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(cert) = PinnedCert::from_handshake(&text) {
        let field = base64::engine::general_purpose::STANDARD_NO_PAD.encode(cert.der());
        let again = PinnedCert::from_handshake(&field).expect("re-encoded field decodes");
        assert_eq!(again, cert);
        let der = PinnedCert::from_der(cert.der().clone()).expect("pinned DER pins again");
        assert_eq!(der, cert);
    }
    if let Ok(cert) = PinnedCert::from_pem(&text) {
        let der = PinnedCert::from_der(cert.der().clone()).expect("pinned DER pins again");
        assert_eq!(der, cert);
    }
}
