//! TLS client configurations for libpq's `sslmode` values.
//!
//! This module owns the rustls side of connecting: which roots are trusted
//! (an `sslrootcert` file, else the system store, else the compiled-in Mozilla
//! roots) and the two custom certificate verifiers libpq semantics need:
//!
//! * [`NoVerification`] for `prefer` / `require`, which encrypt but accept any
//!   certificate (libpq does the same; the handshake signature is still checked
//!   so the session key really belongs to the presented certificate);
//! * [`ChainOnlyVerification`] for `verify-ca`, which checks the chain against
//!   the roots but not the host name.
//!
//! [`MakeTls`] wraps tokio-postgres-rustls's connector so unix-socket hosts
//! work. `verify-full` uses rustls' stock [`WebPkiServerVerifier`]. The ring crypto
//! provider is always passed explicitly, so nothing depends on a process-wide
//! default provider having been installed.

use std::fmt;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error as TlsError, RootCertStore,
    SignatureScheme,
};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::connect::ConnectError;

/// How the server certificate is checked.
pub enum Verification {
    /// Encrypt only; any certificate is accepted (`prefer`, `require`).
    None,
    /// Chain must lead to one of the roots; host name not checked (`verify-ca`,
    /// and `require` when an `sslrootcert` is given, like libpq).
    Chain(RootCertStore),
    /// Chain and host name (`verify-full`).
    Full(RootCertStore),
}

/// The crypto provider used for every connection: ring, chosen explicitly.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the rustls client configuration for a verification level.
pub fn client_config(verification: Verification) -> Result<ClientConfig, ConnectError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(format!("could not set up TLS: {e}")))?;
    let config = match verification {
        Verification::None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification { provider }))
            .with_no_client_auth(),
        Verification::Chain(roots) => {
            let inner = webpki_verifier(roots, provider)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnlyVerification { inner }))
                .with_no_client_auth()
        }
        Verification::Full(roots) => builder
            .with_webpki_verifier(webpki_verifier(roots, provider)?)
            .with_no_client_auth(),
    };
    Ok(config)
}

fn webpki_verifier(
    roots: RootCertStore,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, ConnectError> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| tls_error(format!("could not set up certificate verification: {e}")))
}

/// Loads the trust roots: the PEM file `sslrootcert` names, or — when none is
/// given or it is libpq's special value `system` — the platform store, falling
/// back to the compiled-in webpki roots when the platform offers none.
pub fn load_roots(sslrootcert: Option<&Path>) -> Result<RootCertStore, ConnectError> {
    match sslrootcert {
        Some(path) if path != Path::new("system") => load_root_file(path),
        _ => Ok(system_roots()),
    }
}

fn load_root_file(path: &Path) -> Result<RootCertStore, ConnectError> {
    let shown = path.display();
    let file = File::open(path)
        .map_err(|e| tls_error(format!("could not read sslrootcert {shown}: {e}")))?;
    let mut store = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut BufReader::new(file)) {
        let cert =
            cert.map_err(|e| tls_error(format!("could not parse sslrootcert {shown}: {e}")))?;
        store
            .add(cert)
            .map_err(|e| tls_error(format!("unusable certificate in sslrootcert {shown}: {e}")))?;
    }
    if store.is_empty() {
        return Err(tls_error(format!(
            "sslrootcert {shown} contains no PEM certificates"
        )));
    }
    Ok(store)
}

fn system_roots() -> RootCertStore {
    let mut store = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        // A partly unreadable system store is common (odd files in the cert
        // directory); what loaded is still usable.
        tracing::debug!(%error, "while loading system root certificates");
    }
    store.add_parsable_certificates(native.certs);
    if store.is_empty() {
        tracing::debug!("no system root certificates found; using the built-in webpki roots");
        store.roots = webpki_roots::TLS_SERVER_ROOTS.to_vec();
    }
    store
}

/// The connector handed to tokio-postgres (and later to the pool).
///
/// It wraps [`MakeRustlsConnect`], which rejects the empty host name
/// tokio-postgres passes for unix-socket hosts — failing every socket
/// connection, even with sslmode disable. Sockets never carry TLS (the server
/// refuses it there), so any valid placeholder name will do for them.
#[derive(Clone)]
pub struct MakeTls {
    inner: MakeRustlsConnect,
}

impl MakeTls {
    pub fn new(config: ClientConfig) -> MakeTls {
        MakeTls {
            inner: MakeRustlsConnect::new(config),
        }
    }
}

impl<S> MakeTlsConnect<S> for MakeTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = <MakeRustlsConnect as MakeTlsConnect<S>>::Stream;
    type TlsConnect = <MakeRustlsConnect as MakeTlsConnect<S>>::TlsConnect;
    type Error = <MakeRustlsConnect as MakeTlsConnect<S>>::Error;

    fn make_tls_connect(&mut self, hostname: &str) -> Result<Self::TlsConnect, Self::Error> {
        let hostname = if hostname.is_empty() {
            "localhost"
        } else {
            hostname
        };
        <MakeRustlsConnect as MakeTlsConnect<S>>::make_tls_connect(&mut self.inner, hostname)
    }
}

fn tls_error(message: String) -> ConnectError {
    ConnectError::Tls { message }
}

/// Accepts any server certificate (libpq `prefer` / `require`), but still
/// checks handshake signatures with the provider's algorithms.
pub struct NoVerification {
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for NoVerification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NoVerification")
    }
}

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Verifies the certificate chain but not the host name (libpq `verify-ca`).
///
/// It delegates to the stock webpki verifier and forgives only a name
/// mismatch. That is sound because the webpki verifier checks the chain
/// (trust anchor, validity period, key usage) *before* the name, so a
/// name-mismatch error means everything else already passed.
pub struct ChainOnlyVerification {
    inner: Arc<WebPkiServerVerifier>,
}

impl fmt::Debug for ChainOnlyVerification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChainOnlyVerification")
    }
}

impl ServerCertVerifier for ChainOnlyVerification {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(TlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
