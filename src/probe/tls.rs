//! The rustls client configuration for `wss://` and `https://`: the ring provider only, the
//! system roots plus the webpki roots plus the probe's own CA file, and an opt-in verifier that
//! accepts any certificate (`insecure_skip_verify`).

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::config::TlsSettings;
use crate::probe::error::{ErrorType, ProbeError};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The system store is read once per process: it is the slow part (hundreds of files on some
/// distributions) and does not change while rtprobe runs.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

fn tls_error(detail: impl Into<String>) -> ProbeError {
    ProbeError::new(ErrorType::Tls, detail)
}

/// Build the client configuration for one probe's TLS settings.
pub fn client_config(settings: &TlsSettings) -> Result<Arc<ClientConfig>, ProbeError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(format!("TLS protocol versions: {e}")))?;
    let config = if settings.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnything(
                provider().signature_verification_algorithms,
            )))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        // Unparsable system certificates are skipped, as every rustls user does.
        let _ = roots.add_parsable_certificates(system_roots().iter().cloned());
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = &settings.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| tls_error(format!("CA file {}: {e}", path.display())))?;
            let certs = rustls_pemfile::certs(&mut pem.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| tls_error(format!("CA file {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(tls_error(format!(
                    "CA file {}: no PEM certificate found",
                    path.display()
                )));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| tls_error(format!("CA file {}: {e}", path.display())))?;
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// The name to send as SNI and to verify: the override, else the URL host (an IP literal
/// verifies against the certificate's IP addresses).
pub fn server_name(settings: &TlsSettings, host: &str) -> Result<ServerName<'static>, ProbeError> {
    let name = settings.server_name.as_deref().unwrap_or(host);
    let name = name.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(name.to_string())
        .map_err(|e| tls_error(format!("invalid TLS server name {name:?}: {e}")))
}

/// `insecure_skip_verify`: trusts any certificate, but still checks the handshake signatures so
/// the connection is at least encrypted to whoever holds the presented key.
#[derive(Debug)]
struct AcceptAnything(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
