//! AutoMTLS, go-plugin's automatic mutual TLS: each side makes a throwaway self-signed
//! certificate shaped like go-plugin's ([`Identity::generate`]), learns the peer's certificate
//! out of band ([`PinnedCert`]) and then trusts exactly that certificate
//! ([`server_config`], [`client_config`]). Moving certificates between the processes (the
//! `PLUGIN_CLIENT_CERT` variable, handshake field 6) belongs to the environment and handshake
//! code; this module only encodes and decodes them, and knows nothing of gRPC beyond ALPN `h2`.
//!
//! # The exchange
//!
//! The host generates an [`Identity`] and hands its PEM ([`Identity::cert_pem`]) to the plugin
//! in `PLUGIN_CLIENT_CERT`, which the plugin reads with [`PinnedCert::from_pem`]. The plugin
//! generates its own [`Identity`] and prints its DER as unpadded base64
//! ([`Identity::handshake_cert`]) in the handshake line, which the host reads with
//! [`PinnedCert::from_handshake`]. From then on either side can be the TLS client or the TLS
//! server (broker connections reverse the roles of the main one), always with its own identity
//! and the other side's pin.
//!
//! # Why custom verifiers
//!
//! go-plugin's certificates are CA certificates (`cA=true`) used as end entities, which
//! rustls' WebPKI verifiers reject (`CaUsedAsEndEntity`), and Go signs with ECDSA P-521, which
//! only the aws-lc-rs provider can verify. [`PinnedServerVerifier`] and [`PinnedClientVerifier`]
//! therefore accept exactly one certificate, byte for byte, check its validity period and verify
//! handshake signatures with aws-lc-rs. Go checks more (a chain to its one-certificate pool,
//! `localhost` in the SAN, the extended key usage for its role), but a go-plugin certificate
//! always passes those, so for the certificates peers actually send, comparing bytes and
//! checking validity accepts and refuses the same connections Go does.

use std::fmt;
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD_NO_PAD};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P521_SHA512, SanType, SerialNumber,
};
use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature,
};
use rustls::pki_types::pem::{self, PemObject as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::NoServerSessionStorage;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, ServerConfig,
    SignatureScheme, SupportedProtocolVersion,
};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer as _, X509Certificate};

/// The host name both sides use: the only SAN and the CN of every AutoMTLS certificate, and the
/// server name (SNI) a client sends. go-plugin hard-codes it too.
pub const SERVER_NAME: &str = "localhost";

/// The one ALPN protocol both configs offer: HTTP/2, as gRPC needs. grpc-go 1.67 and later
/// refuse a TLS connection that did not negotiate it.
pub const ALPN_H2: &[u8] = b"h2";

/// The subject organization of generated certificates, copied from go-plugin (see
/// [`Identity::generate`] for why).
const ORGANIZATION: &str = "HashiCorp";

/// How long a generated certificate stays valid: go-plugin's 262 980 hours (about 30 years).
const LIFETIME: Duration = Duration::hours(262_980);

/// How far back a generated certificate's `notBefore` lies, as in go-plugin: a peer whose clock
/// is a little behind ours still accepts it.
const BACKDATE: Duration = Duration::seconds(30);

/// TLS 1.3 and 1.2: go-plugin's `MinVersion: tls.VersionTLS12` with Go's default maximum.
static PROTOCOL_VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The crypto provider behind every AutoMTLS config and verifier: rustls' aws-lc-rs provider.
///
/// It is named explicitly rather than taken from the process default, because `ring` can
/// neither make nor verify the ECDSA P-521 signatures go-plugin's certificates call for.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider())))
}

/// `SERVER_NAME` (`localhost`) as the name a TLS client connects to, e.g. for
/// `tokio_rustls::TlsConnector::connect`.
pub fn server_name() -> ServerName<'static> {
    ServerName::try_from(SERVER_NAME).expect("\"localhost\" is a valid DNS name")
}

// ---------------------------------------------------------------------------------------------
// Our side: generating a certificate
// ---------------------------------------------------------------------------------------------

/// This process's AutoMTLS certificate and private key.
///
/// Made once per process (host) or per plugin run, like go-plugin's, and used for the main
/// connection and every broker connection in either TLS role. `Debug` shows no key material.
pub struct Identity {
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    key: PrivatePkcs8KeyDer<'static>,
    validity: Validity,
}

impl Identity {
    /// Generates a fresh key pair and a self-signed certificate with the fields go-plugin's
    /// `generateCert` uses.
    ///
    /// - Key: ECDSA on NIST P-521; signature: ECDSA with SHA-512 (what Go picks for P-521).
    ///   A smaller curve would also satisfy Go, but matching the curve keeps our peers' view of
    ///   us identical to a Go process, and aws-lc-rs handles P-521 anyway.
    /// - Serial: 128 random bits. Subject and issuer: `O=HashiCorp, CN=localhost`, encoded in
    ///   the order Go writes them. The organization is copied too: it asserts nothing (trust
    ///   comes only from pinning), and keeping it means no peer or tool that looks at the
    ///   subject can tell a Rust side from a Go one.
    /// - SAN: DNS `localhost`. Validity: from 30 s ago for 262 980 hours.
    /// - Basic constraints: CA, no path length limit. Key usage: digital signature, key
    ///   encipherment, key agreement, certificate signing. Extended key usage: client and
    ///   server authentication, since the same certificate serves both TLS roles.
    ///
    /// The private key is kept as PKCS#8 rather than Go's SEC1: it never leaves the process,
    /// so only rustls reads it.
    pub fn generate() -> Result<Self, TlsError> {
        let now = OffsetDateTime::now_utc();
        let now = now.replace_nanosecond(0).unwrap_or(now);
        Self::generate_valid(now - BACKDATE, now + LIFETIME)
    }

    /// [`Identity::generate`] with a chosen validity period (tests use expired certificates).
    pub(crate) fn generate_valid(
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Self, TlsError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P521_SHA512).map_err(TlsError::generate)?;

        let mut params = CertificateParams::default();
        params.serial_number = Some(random_serial()?);
        let mut subject = rcgen::DistinguishedName::new();
        subject.push(DnType::OrganizationName, ORGANIZATION);
        subject.push(DnType::CommonName, SERVER_NAME);
        params.distinguished_name = subject;
        let san = SERVER_NAME.try_into().map_err(TlsError::generate)?;
        params.subject_alt_names = vec![SanType::DnsName(san)];
        params.not_before = not_before;
        params.not_after = not_after;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyAgreement,
            KeyUsagePurpose::KeyCertSign,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];

        let cert = params.self_signed(&key).map_err(TlsError::generate)?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
            validity: Validity {
                not_before: not_before.unix_timestamp(),
                not_after: not_after.unix_timestamp(),
            },
        })
    }

    /// The certificate, DER-encoded.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The certificate as one PEM `CERTIFICATE` block: what a host puts in
    /// `PLUGIN_CLIENT_CERT`.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The certificate's DER as standard base64 without padding (Go's `RawStdEncoding`): what
    /// a plugin puts in field 6 of its handshake line.
    pub fn handshake_cert(&self) -> String {
        STANDARD_NO_PAD.encode(&self.cert_der)
    }

    /// A copy of the private key, for building TLS configs by hand.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }

    /// Our own certificate as a pin, for a peer in the same process (tests, in-process hosts).
    pub fn to_pinned(&self) -> PinnedCert {
        PinnedCert {
            der: self.cert_der.clone(),
            validity: self.validity,
        }
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            cert_der: self.cert_der.clone(),
            cert_pem: self.cert_pem.clone(),
            key: self.key.clone_key(),
            validity: self.validity,
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("cert_der_len", &self.cert_der.len())
            .field("private_key", &"<redacted>")
            .finish()
    }
}

/// A random serial below 2^128, as go-plugin draws it; never zero (RFC 5280 wants it positive).
fn random_serial() -> Result<SerialNumber, TlsError> {
    let mut bytes = [0u8; 16];
    crypto_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| TlsError::new(Repr::Generate("no random bytes for the serial".into())))?;
    if bytes.iter().all(|b| *b == 0) {
        bytes[15] = 1;
    }
    Ok(SerialNumber::from_slice(&bytes))
}

// ---------------------------------------------------------------------------------------------
// The peer's side: the pinned certificate
// ---------------------------------------------------------------------------------------------

/// A certificate's validity period, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Validity {
    not_before: i64,
    not_after: i64,
}

/// The peer's certificate: the only one a connection will accept from the other side.
///
/// Built from what the peer sent ([`PinnedCert::from_pem`], [`PinnedCert::from_handshake`]) or
/// from raw DER. Construction checks that the bytes are one X.509 certificate, so a malformed
/// certificate fails here with a [`TlsError`] rather than later as a handshake failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedCert {
    der: CertificateDer<'static>,
    validity: Validity,
}

impl PinnedCert {
    /// Pins a DER-encoded certificate. Fails with [`TlsErrorKind::MalformedCertificate`] if the
    /// bytes are not exactly one X.509 certificate.
    pub fn from_der(der: impl Into<CertificateDer<'static>>) -> Result<Self, TlsError> {
        let der = der.into();
        let (rest, cert) = X509Certificate::from_der(der.as_ref())
            .map_err(|e| TlsError::new(Repr::MalformedCertificate(e.to_string())))?;
        if !rest.is_empty() {
            return Err(TlsError::new(Repr::MalformedCertificate(format!(
                "{} bytes of trailing data after the certificate",
                rest.len()
            ))));
        }
        let validity = Validity {
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        };
        Ok(Self { der, validity })
    }

    /// Pins the certificate in PEM text, as a plugin finds the host's in `PLUGIN_CLIENT_CERT`.
    ///
    /// Text outside PEM blocks and blocks of other types are skipped, as Go's
    /// `AppendCertsFromPEM` does. Unlike Go, which would trust every certificate in the text,
    /// exactly one `CERTIFICATE` block must remain: go-plugin hosts send one, and the pin stays
    /// a single certificate. Fails with [`TlsErrorKind::MalformedPem`], or [`TlsErrorKind::MalformedCertificate`] if
    /// the block does not hold a certificate.
    pub fn from_pem(pem: &str) -> Result<Self, TlsError> {
        let mut certs = Vec::new();
        for item in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            certs
                .push(item.map_err(|e| TlsError::new(Repr::MalformedPem(describe_pem_error(&e))))?);
        }
        let mut certs = certs.into_iter();
        match (certs.next(), certs.len()) {
            (Some(cert), 0) => Self::from_der(cert),
            (None, _) => Err(TlsError::new(Repr::MalformedPem(
                "no CERTIFICATE block found".into(),
            ))),
            (Some(_), more) => Err(TlsError::new(Repr::MalformedPem(format!(
                "{} CERTIFICATE blocks found, expected exactly one",
                more + 1
            )))),
        }
    }

    /// Pins the certificate from field 6 of a plugin's handshake line: base64 of the DER.
    ///
    /// Go plugins write the standard alphabet without padding (`RawStdEncoding`), but this also
    /// accepts padding and surrounding whitespace. (A Go host would reject a padded field; being
    /// lenient here costs nothing.) Whether the field holds a certificate at all is the
    /// caller's call: go-plugin hosts ignore a field 6 of 50 bytes or fewer. Fails with
    /// [`TlsErrorKind::MalformedBase64`] or [`TlsErrorKind::MalformedCertificate`].
    pub fn from_handshake(field: &str) -> Result<Self, TlsError> {
        const LENIENT: GeneralPurpose = GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
        );
        let der = LENIENT
            .decode(field.trim())
            .map_err(|e| TlsError::new(Repr::MalformedBase64(e.to_string())))?;
        Self::from_der(der)
    }

    /// The pinned certificate, DER-encoded.
    pub fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }

    /// Accepts `presented` only if it is the pinned certificate and `now` lies in its validity
    /// period (inclusive at both ends, as in Go).
    fn check(&self, presented: &CertificateDer<'_>, now: UnixTime) -> Result<(), rustls::Error> {
        if presented.as_ref() != self.der.as_ref() {
            return Err(CertificateError::UnknownIssuer.into());
        }
        let secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let unix = |secs: i64| {
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                u64::try_from(secs).unwrap_or(0),
            ))
        };
        if secs < self.validity.not_before {
            return Err(CertificateError::NotValidYetContext {
                time: now,
                not_before: unix(self.validity.not_before),
            }
            .into());
        }
        if secs > self.validity.not_after {
            return Err(CertificateError::ExpiredContext {
                time: now,
                not_after: unix(self.validity.not_after),
            }
            .into());
        }
        Ok(())
    }
}

/// Turns a PEM parse failure into words (the library's own text prints byte arrays).
fn describe_pem_error(error: &pem::Error) -> String {
    match error {
        pem::Error::MissingSectionEnd { .. } => "a BEGIN line has no matching END line".into(),
        pem::Error::IllegalSectionStart { line } => {
            format!("malformed BEGIN line {:?}", String::from_utf8_lossy(line))
        }
        pem::Error::Base64Decode(_) => "a block's body is not valid base64".into(),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Verifiers
// ---------------------------------------------------------------------------------------------

/// What both verifiers share: the pin and aws-lc-rs' signature algorithms.
#[derive(Debug, Clone)]
struct Pin {
    cert: PinnedCert,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Pin {
    fn new(cert: PinnedCert) -> Self {
        Self {
            cert,
            algorithms: crypto_provider().signature_verification_algorithms,
        }
    }

    fn verify_signature(
        &self,
        tls13: bool,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // rustls only hands over the certificate it already accepted; checking again keeps this
        // verifier correct on its own.
        if cert.as_ref() != self.cert.der.as_ref() {
            return Err(CertificateError::UnknownIssuer.into());
        }
        if tls13 {
            verify_tls13_signature(message, cert, dss, &self.algorithms)
        } else {
            verify_tls12_signature(message, cert, dss, &self.algorithms)
        }
    }
}

/// Client-side verification of the server's certificate against a [`PinnedCert`].
///
/// Accepts exactly the pinned certificate as end entity, ignores any intermediates (Go sends
/// only its leaf), checks the validity period and verifies the server's handshake signature
/// with aws-lc-rs, which covers ECDSA P-521 with SHA-512. The server name is not checked: the
/// pin already names one certificate, whose only SAN is `localhost`.
///
/// Any other certificate fails with [`CertificateError::UnknownIssuer`] (alert `unknown_ca`):
/// the pin is the whole trust store, and the presented certificate does not chain to it. A
/// certificate outside its validity period fails with `ExpiredContext` or
/// `NotValidYetContext`.
#[derive(Debug, Clone)]
pub struct PinnedServerVerifier(Pin);

impl PinnedServerVerifier {
    /// A verifier that accepts only `pinned`.
    pub fn new(pinned: PinnedCert) -> Self {
        Self(Pin::new(pinned))
    }
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.cert.check(end_entity, now)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_signature(false, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_signature(true, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.algorithms.supported_schemes()
    }
}

/// Server-side verification of the client's certificate against a [`PinnedCert`].
///
/// Client authentication is mandatory, as with Go's `RequireAndVerifyClientCert`: a client
/// that sends no certificate fails the handshake. Otherwise it checks what
/// [`PinnedServerVerifier`] checks.
///
/// The certificate request names no acceptable CAs ([`ClientCertVerifier::root_hint_subjects`]
/// is empty). A Go client picks its certificate with `CertificateRequestInfo.SupportsCertificate`,
/// which, when the list is not empty, wants the certificate's issuer in it; with an empty list
/// any certificate whose key fits the offered signature schemes qualifies, so a Go client always
/// sends its one certificate instead of silently sending none.
#[derive(Debug, Clone)]
pub struct PinnedClientVerifier(Pin);

impl PinnedClientVerifier {
    /// A verifier that requires a client certificate and accepts only `pinned`.
    pub fn new(pinned: PinnedCert) -> Self {
        Self(Pin::new(pinned))
    }
}

impl ClientCertVerifier for PinnedClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0.cert.check(end_entity, now)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_signature(false, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_signature(true, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.algorithms.supported_schemes()
    }
}

// ---------------------------------------------------------------------------------------------
// Configs
// ---------------------------------------------------------------------------------------------

/// The TLS server config for one side of an AutoMTLS pair: presents `own`, requires the client
/// to present `pinned_peer`.
///
/// TLS 1.2 and 1.3 with the aws-lc-rs provider, ALPN `h2`. Sessions are never resumed, so every
/// connection (the main one and each broker connection) runs a full handshake that checks the
/// pin again, as with go-plugin, whose configs keep no session cache.
pub fn server_config(
    own: &Identity,
    pinned_peer: &PinnedCert,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(TlsError::config)?
        .with_client_cert_verifier(Arc::new(PinnedClientVerifier::new(pinned_peer.clone())))
        .with_single_cert(vec![own.cert_der.clone()], own.private_key())
        .map_err(TlsError::config)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The TLS client config for one side of an AutoMTLS pair: presents `own`, requires the server
/// to present `pinned_peer`. Connect with [`server_name`] (`localhost`), as go-plugin does.
///
/// TLS 1.2 and 1.3 with the aws-lc-rs provider, ALPN `h2`, no session resumption (see
/// [`server_config`]).
pub fn client_config(
    own: &Identity,
    pinned_peer: &PinnedCert,
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut config = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(TlsError::config)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServerVerifier::new(pinned_peer.clone())))
        .with_client_auth_cert(vec![own.cert_der.clone()], own.private_key())
        .map_err(TlsError::config)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// An AutoMTLS failure: generating our certificate, reading the peer's, or building a config.
///
/// Its message says what went wrong; [`TlsError::kind`] says which step failed. Handshake
/// failures are not `TlsError`s: they surface from rustls as I/O errors on the connection.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct TlsError(Box<Repr>);

/// Which AutoMTLS step a [`TlsError`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsErrorKind {
    /// Making our key pair or self-signed certificate failed.
    Generate,
    /// The peer's PEM text is malformed, or holds no or several `CERTIFICATE` blocks.
    MalformedPem,
    /// The handshake's certificate field is not base64.
    MalformedBase64,
    /// The peer's bytes are not one DER-encoded X.509 certificate.
    MalformedCertificate,
    /// rustls refused to build a config from our certificate and key.
    Config,
}

#[derive(Debug, thiserror::Error)]
enum Repr {
    #[error("generating the AutoMTLS certificate failed: {0}")]
    Generate(String),
    #[error("malformed peer certificate PEM: {0}")]
    MalformedPem(String),
    #[error("malformed peer certificate base64: {0}")]
    MalformedBase64(String),
    #[error("malformed peer certificate: {0}")]
    MalformedCertificate(String),
    #[error("building the AutoMTLS TLS config failed: {0}")]
    Config(String),
}

impl TlsError {
    fn new(repr: Repr) -> Self {
        Self(Box::new(repr))
    }

    fn generate(error: rcgen::Error) -> Self {
        Self::new(Repr::Generate(error.to_string()))
    }

    fn config(error: rustls::Error) -> Self {
        Self::new(Repr::Config(error.to_string()))
    }

    /// Which step failed.
    pub fn kind(&self) -> TlsErrorKind {
        match *self.0 {
            Repr::Generate(_) => TlsErrorKind::Generate,
            Repr::MalformedPem(_) => TlsErrorKind::MalformedPem,
            Repr::MalformedBase64(_) => TlsErrorKind::MalformedBase64,
            Repr::MalformedCertificate(_) => TlsErrorKind::MalformedCertificate,
            Repr::Config(_) => TlsErrorKind::Config,
        }
    }
}

#[cfg(test)]
mod tests;
