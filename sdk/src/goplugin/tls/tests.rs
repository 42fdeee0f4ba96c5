//! Unit tests for AutoMTLS: the generated certificate's fields, reading peer certificates, and
//! Rust-to-Rust handshakes over an in-memory pipe (interop with Go lives in `tests/it/autotls.rs`).

use std::io;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, alg_id};
use rustls::{ClientConfig, ProtocolVersion, ServerConfig, SignatureScheme};
use time::{Duration, OffsetDateTime};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::{
    OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P521, OID_SIG_ECDSA_WITH_SHA512,
};
use x509_parser::prelude::{FromDer as _, X509Certificate};

use super::*;

fn identity() -> Identity {
    Identity::generate().expect("generating an AutoMTLS identity")
}

// ---------------------------------------------------------------------------------------------
// The generated certificate
// ---------------------------------------------------------------------------------------------

#[test]
fn generated_cert_has_go_plugins_fields() {
    let before = OffsetDateTime::now_utc().unix_timestamp();
    let id = identity();
    let after = OffsetDateTime::now_utc().unix_timestamp();
    let (rest, cert) = X509Certificate::from_der(id.cert_der()).expect("our cert parses");
    assert!(rest.is_empty());

    assert_eq!(cert.version().0, 2, "X.509 v3");
    assert_eq!(
        cert.signature_algorithm.algorithm,
        OID_SIG_ECDSA_WITH_SHA512
    );
    let spki = cert.public_key();
    assert_eq!(spki.algorithm.algorithm, OID_KEY_TYPE_EC_PUBLIC_KEY);
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok());
    assert_eq!(curve, Some(OID_NIST_EC_P521), "key is on NIST P-521");
    // An uncompressed P-521 point: 0x04 || X (66 bytes) || Y (66 bytes).
    assert_eq!(spki.subject_public_key.data.len(), 133);

    // Serial: positive, below 2^128.
    let serial = cert.raw_serial();
    let serial = serial.strip_prefix(&[0]).unwrap_or(serial);
    assert!(
        !serial.is_empty() && serial.len() <= 16,
        "serial {serial:02x?}"
    );

    // Subject = issuer = O=HashiCorp, CN=localhost, in Go's order (O first).
    assert_eq!(cert.subject().to_string(), "O=HashiCorp, CN=localhost");
    assert_eq!(
        cert.issuer().as_raw(),
        cert.subject().as_raw(),
        "self-issued"
    );
    let ecdsa_p521_sha512 = crypto_provider()
        .signature_verification_algorithms
        .all
        .iter()
        .find(|alg| {
            alg.public_key_alg_id() == alg_id::ECDSA_P521
                && alg.signature_alg_id() == alg_id::ECDSA_SHA512
        })
        .expect("aws-lc-rs verifies ECDSA P-521 with SHA-512");
    ecdsa_p521_sha512
        .verify_signature(
            &spki.subject_public_key.data,
            cert.tbs_certificate.as_ref(),
            &cert.signature_value.data,
        )
        .expect("self-signed: its own key verifies it");

    let san = cert.subject_alternative_name().unwrap().expect("has a SAN");
    assert_eq!(
        san.value.general_names,
        vec![GeneralName::DNSName("localhost")]
    );

    let bc = cert
        .basic_constraints()
        .unwrap()
        .expect("has basic constraints");
    assert!(bc.critical);
    assert!(bc.value.ca);
    assert_eq!(bc.value.path_len_constraint, None);

    let ku = cert.key_usage().unwrap().expect("has key usage");
    assert!(ku.critical);
    // digitalSignature (bit 0) | keyEncipherment (2) | keyAgreement (4) | keyCertSign (5)
    assert_eq!(ku.value.flags, 0b11_0101, "{}", ku.value);

    let eku = cert
        .extended_key_usage()
        .unwrap()
        .expect("has extended key usage");
    assert!(eku.value.client_auth && eku.value.server_auth);
    assert!(!eku.value.any && eku.value.other.is_empty());

    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    assert!(
        (before - 31..=after - 30).contains(&not_before),
        "notBefore {not_before} is 30 s before generation ({before}..{after})"
    );
    assert_eq!(
        not_after - not_before,
        262_980 * 3600 + 30,
        "lifetime 262 980 h from now"
    );
    assert!(not_after - after > 29 * 365 * 24 * 3600, "about 30 years");
}

#[test]
fn each_identity_is_fresh() {
    let (a, b) = (identity(), identity());
    assert_ne!(a.cert_der(), b.cert_der());
    let serial = |id: &Identity| {
        let (_, cert) = X509Certificate::from_der(id.cert_der()).unwrap();
        cert.raw_serial().to_vec()
    };
    assert_ne!(serial(&a), serial(&b));
}

#[test]
fn identity_debug_hides_the_key() {
    let text = format!("{:?}", identity());
    assert!(
        text.contains("<redacted>") && !text.contains("PRIVATE"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// Reading the peer's certificate
// ---------------------------------------------------------------------------------------------

#[test]
fn encodings_round_trip_to_the_same_pin() {
    let id = identity();
    assert!(id.cert_pem().starts_with("-----BEGIN CERTIFICATE-----\n"));

    let field = id.handshake_cert();
    assert!(
        !field.contains('=') && !field.contains('\n'),
        "unpadded, one line: {field}"
    );
    assert!(
        field.len() > 50,
        "go-plugin hosts ignore a field 6 of 50 bytes or fewer"
    );

    let pin = id.to_pinned();
    assert_eq!(PinnedCert::from_handshake(&field).unwrap(), pin);
    assert_eq!(PinnedCert::from_pem(id.cert_pem()).unwrap(), pin);
    assert_eq!(PinnedCert::from_der(id.cert_der().clone()).unwrap(), pin);
    assert_eq!(pin.der(), id.cert_der());

    // Lenient: padding and surrounding whitespace are accepted.
    let padded = base64::engine::general_purpose::STANDARD.encode(id.cert_der());
    assert_eq!(
        PinnedCert::from_handshake(&format!(" {padded}\n")).unwrap(),
        pin
    );

    // PEM with text around it and another block type before it, as Go's parser allows.
    let pem = format!(
        "leading words\n-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n{}trailing\n",
        id.cert_pem()
    );
    assert_eq!(PinnedCert::from_pem(&pem).unwrap(), pin);
}

#[track_caller]
fn check_error(result: Result<PinnedCert, TlsError>, kind: TlsErrorKind, message: &str) {
    let error = result.expect_err("input must be rejected");
    assert_eq!(error.kind(), kind, "{error}");
    assert_eq!(error.to_string(), message);
}

#[test]
fn malformed_pem_is_reported_clearly() {
    let id = identity();
    check_error(
        PinnedCert::from_pem(""),
        TlsErrorKind::MalformedPem,
        "malformed peer certificate PEM: no CERTIFICATE block found",
    );
    check_error(
        PinnedCert::from_pem("MIIB this is not PEM"),
        TlsErrorKind::MalformedPem,
        "malformed peer certificate PEM: no CERTIFICATE block found",
    );
    let truncated = id.cert_pem().replace("-----END CERTIFICATE-----\n", "");
    check_error(
        PinnedCert::from_pem(&truncated),
        TlsErrorKind::MalformedPem,
        "malformed peer certificate PEM: a BEGIN line has no matching END line",
    );
    check_error(
        PinnedCert::from_pem("-----BEGIN CERTIFICATE-----\n@@@@\n-----END CERTIFICATE-----\n"),
        TlsErrorKind::MalformedPem,
        "malformed peer certificate PEM: a block's body is not valid base64",
    );
    check_error(
        PinnedCert::from_pem(&format!("{}{}", id.cert_pem(), identity().cert_pem())),
        TlsErrorKind::MalformedPem,
        "malformed peer certificate PEM: 2 CERTIFICATE blocks found, expected exactly one",
    );
    // Well-formed PEM around bytes that are no certificate.
    let error =
        PinnedCert::from_pem("-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n")
            .unwrap_err();
    assert_eq!(error.kind(), TlsErrorKind::MalformedCertificate, "{error}");
    assert!(
        error
            .to_string()
            .starts_with("malformed peer certificate: "),
        "{error}"
    );
}

#[test]
fn malformed_handshake_field_is_reported_clearly() {
    check_error(
        PinnedCert::from_handshake("MIIC*not-base64"),
        TlsErrorKind::MalformedBase64,
        "malformed peer certificate base64: Invalid symbol 42, offset 4.",
    );
    let error = PinnedCert::from_handshake("").unwrap_err();
    assert_eq!(error.kind(), TlsErrorKind::MalformedCertificate, "{error}");

    let mut der = identity().cert_der().to_vec();
    der.push(0);
    check_error(
        PinnedCert::from_der(der),
        TlsErrorKind::MalformedCertificate,
        "malformed peer certificate: 1 bytes of trailing data after the certificate",
    );
}

// ---------------------------------------------------------------------------------------------
// Verifiers and configs
// ---------------------------------------------------------------------------------------------

#[test]
fn verifiers_require_the_cert_and_offer_p521() {
    let pin = identity().to_pinned();
    let client_verifier = PinnedClientVerifier::new(pin.clone());
    assert!(client_verifier.offer_client_auth() && client_verifier.client_auth_mandatory());
    assert!(client_verifier.root_hint_subjects().is_empty());
    assert!(
        client_verifier
            .supported_verify_schemes()
            .contains(&SignatureScheme::ECDSA_NISTP521_SHA512)
    );
    let server_verifier = PinnedServerVerifier::new(pin);
    assert!(
        server_verifier
            .supported_verify_schemes()
            .contains(&SignatureScheme::ECDSA_NISTP521_SHA512)
    );
}

/// Why the pinning verifiers exist: rustls' WebPKI verifier refuses a go-plugin style
/// certificate even when that very certificate is its only trust anchor.
#[test]
fn webpki_refuses_the_cert_it_would_need_to_trust() {
    let id = identity();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(id.cert_der().clone()).unwrap();
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        crypto_provider(),
    )
    .build()
    .unwrap();
    let now = UnixTime::now();
    let error = webpki
        .verify_server_cert(id.cert_der(), &[], &server_name(), &[], now)
        .expect_err("webpki refuses a CA certificate as end entity");
    assert!(
        format!("{error:?}").contains("CaUsedAsEndEntity"),
        "{error:?}"
    );

    let pinned = PinnedServerVerifier::new(id.to_pinned());
    assert!(
        pinned
            .verify_server_cert(id.cert_der(), &[], &server_name(), &[], now)
            .is_ok()
    );
}

#[test]
fn configs_offer_h2_and_never_resume() {
    let (a, b) = (identity(), identity());
    let server = server_config(&a, &b.to_pinned()).unwrap();
    assert_eq!(server.alpn_protocols, vec![b"h2".to_vec()]);
    assert_eq!(server.send_tls13_tickets, 0);
    let client = client_config(&b, &a.to_pinned()).unwrap();
    assert_eq!(client.alpn_protocols, vec![b"h2".to_vec()]);
    // The aws-lc-rs provider, named explicitly rather than taken from the process default.
    assert!(Arc::ptr_eq(client.crypto_provider(), &crypto_provider()));
    assert!(Arc::ptr_eq(server.crypto_provider(), &crypto_provider()));
}

// ---------------------------------------------------------------------------------------------
// Rust-to-Rust handshakes
// ---------------------------------------------------------------------------------------------

type Outcome = (
    io::Result<server::TlsStream<DuplexStream>>,
    io::Result<client::TlsStream<DuplexStream>>,
);

/// Runs both ends of a handshake over an in-memory pipe.
async fn handshake(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> Outcome {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let accept = TlsAcceptor::from(server).accept(server_io);
    let connect = TlsConnector::from(client).connect(server_name(), client_io);
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        tokio::join!(accept, connect)
    })
    .await
    .expect("handshake finishes")
}

/// The text of a handshake error, with rustls' error found inside the I/O error.
fn error_text(error: &io::Error) -> String {
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => format!("{tls}"),
        None => error.to_string(),
    }
}

/// A client config that presents `own` (or nothing) and trusts only `pinned`, limited to
/// `versions`: built by hand to reach cases `client_config` never produces.
fn custom_client(
    own: Option<&Identity>,
    pinned: &PinnedCert,
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServerVerifier::new(pinned.clone())));
    let mut config = match own {
        Some(own) => builder
            .with_client_auth_cert(vec![own.cert_der().clone()], own.private_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Arc::new(config)
}

async fn echo_both_ways(
    server: &mut server::TlsStream<DuplexStream>,
    client: &mut client::TlsStream<DuplexStream>,
) {
    client.write_all(b"ping\n").await.unwrap();
    client.flush().await.unwrap();
    let mut buf = [0u8; 5];
    server.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping\n");
    server.write_all(b"pong\n").await.unwrap();
    server.flush().await.unwrap();
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"pong\n");
}

#[tokio::test]
async fn pinned_pair_handshakes_with_h2() {
    let (host, plugin) = (identity(), identity());
    // The plugin serves, the host dials (the main connection).
    let (server, client) = handshake(
        server_config(&plugin, &host.to_pinned()).unwrap(),
        client_config(&host, &plugin.to_pinned()).unwrap(),
    )
    .await;
    let (mut server, mut client) = (
        server.expect("server accepts"),
        client.expect("client connects"),
    );

    let (_, server_conn) = server.get_ref();
    let (_, client_conn) = client.get_ref();
    assert_eq!(server_conn.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(client_conn.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(
        client_conn.protocol_version(),
        Some(ProtocolVersion::TLSv1_3)
    );
    let certs = |c: Option<&[CertificateDer<'static>]>| c.map(<[_]>::to_vec);
    assert_eq!(
        certs(server_conn.peer_certificates()),
        Some(vec![host.cert_der().clone()])
    );
    assert_eq!(
        certs(client_conn.peer_certificates()),
        Some(vec![plugin.cert_der().clone()])
    );

    echo_both_ways(&mut server, &mut client).await;
}

#[tokio::test]
async fn pinned_pair_handshakes_over_tls12_too() {
    let (host, plugin) = (identity(), identity());
    // Roles reversed, as for a broker connection the host accepts.
    let (server, client) = handshake(
        server_config(&host, &plugin.to_pinned()).unwrap(),
        custom_client(Some(&plugin), &host.to_pinned(), &[&rustls::version::TLS12]),
    )
    .await;
    let (mut server, mut client) = (
        server.expect("server accepts"),
        client.expect("client connects"),
    );
    assert_eq!(
        client.get_ref().1.protocol_version(),
        Some(ProtocolVersion::TLSv1_2)
    );
    assert_eq!(client.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    echo_both_ways(&mut server, &mut client).await;
}

#[tokio::test]
async fn server_rejects_a_client_with_another_cert() {
    let (host, plugin, stranger) = (identity(), identity(), identity());
    let (server, client) = handshake(
        server_config(&plugin, &host.to_pinned()).unwrap(),
        client_config(&stranger, &plugin.to_pinned()).unwrap(),
    )
    .await;
    let error = server.expect_err("server must refuse the stranger");
    assert_eq!(
        error_text(&error),
        "invalid peer certificate: UnknownIssuer"
    );
    // In TLS 1.3 the client finishes first and learns of the refusal on its first read.
    let read = match client {
        Err(error) => Err(error),
        Ok(mut client) => client.read(&mut [0u8; 16]).await,
    };
    let error = read.expect_err("client must see the refusal");
    assert!(error_text(&error).contains("UnknownCA"), "{error}");
}

#[tokio::test]
async fn client_rejects_a_server_with_another_cert() {
    let (host, plugin, stranger) = (identity(), identity(), identity());
    let (server, client) = handshake(
        server_config(&stranger, &host.to_pinned()).unwrap(),
        client_config(&host, &plugin.to_pinned()).unwrap(),
    )
    .await;
    let error = client.expect_err("client must refuse the stranger");
    assert_eq!(
        error_text(&error),
        "invalid peer certificate: UnknownIssuer"
    );
    let error = server.expect_err("server sees the client's alert");
    assert!(error_text(&error).contains("UnknownCA"), "{error}");
}

#[tokio::test]
async fn server_rejects_a_client_without_a_cert() {
    let (host, plugin) = (identity(), identity());
    let (server, _client) = handshake(
        server_config(&plugin, &host.to_pinned()).unwrap(),
        custom_client(None, &plugin.to_pinned(), PROTOCOL_VERSIONS),
    )
    .await;
    let error = server.expect_err("client authentication is mandatory");
    assert_eq!(error_text(&error), "peer sent no certificates");
}

#[tokio::test]
async fn expired_pinned_cert_is_rejected() {
    let now = OffsetDateTime::now_utc();
    let host = identity();
    let expired =
        Identity::generate_valid(now - Duration::days(2), now - Duration::days(1)).unwrap();
    let (_server, client) = handshake(
        server_config(&expired, &host.to_pinned()).unwrap(),
        client_config(&host, &expired.to_pinned()).unwrap(),
    )
    .await;
    let error = client.expect_err("an expired certificate is refused even when pinned");
    assert!(
        error_text(&error).starts_with("invalid peer certificate: certificate expired"),
        "{error}"
    );

    let future =
        Identity::generate_valid(now + Duration::days(1), now + Duration::days(2)).unwrap();
    let (_server, client) = handshake(
        server_config(&future, &host.to_pinned()).unwrap(),
        client_config(&host, &future.to_pinned()).unwrap(),
    )
    .await;
    let error = client.expect_err("a not-yet-valid certificate is refused even when pinned");
    assert!(
        error_text(&error).starts_with("invalid peer certificate: certificate not valid"),
        "{error}"
    );
}
