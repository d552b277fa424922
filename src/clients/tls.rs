//! TLS settings shared by the clients: which roots to trust, and the
//! deliberately unverified mode that PostgreSQL's `sslmode=require` means.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::clients::files;

pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Roots from a PEM file when given, else the system's roots (falling back
/// to the bundled web PKI roots when the system has none).
pub fn root_store(ca_file: Option<&Path>) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    if let Some(path) = ca_file {
        // The file error names the path.
        let pem = files::read_regular_file(path, files::CA_BUNDLE_CAP)
            .context("cannot use the CA certificate file")?;
        add_pem(&mut roots, &pem)
            .with_context(|| format!("reading the CA certificate file {}", path.display()))?;
        return Ok(roots);
    }
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    Ok(roots)
}

/// Adds every certificate of a PEM bundle; an empty bundle is an error, so a
/// wrong file is not silently the same as trusting nothing.
pub fn add_pem(roots: &mut RootCertStore, pem: &[u8]) -> Result<()> {
    let mut n = 0;
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        let cert = cert.context("the file is not valid PEM")?;
        roots
            .add(cert)
            .context("the certificate is not usable as a CA")?;
        n += 1;
    }
    anyhow::ensure!(n > 0, "the file holds no PEM certificate");
    Ok(())
}

/// A client config that verifies the server's certificate chain and name.
pub fn verifying_config(roots: RootCertStore) -> ClientConfig {
    install_crypto_provider();
    ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A client config that encrypts but does not authenticate the server, which
/// is exactly what PostgreSQL's `sslmode=require` and `prefer` promise.
pub fn unverified_config() -> ClientConfig {
    install_crypto_provider();
    ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate))
        .with_no_client_auth()
}

/// A client config that verifies the chain but not the host name
/// (`sslmode=verify-ca`).
pub fn chain_only_config(roots: RootCertStore) -> Result<ClientConfig> {
    install_crypto_provider();
    let inner = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots))
        .build()
        .context("building the certificate verifier")?;
    Ok(ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ChainOnly(inner)))
        .with_no_client_auth())
}

#[derive(Debug)]
struct AcceptAnyCertificate;

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
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
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_that_is_not_a_regular_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("ca.pem");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        for path in [fifo.as_path(), Path::new("/dev/zero")] {
            let err = format!("{:#}", root_store(Some(path)).unwrap_err());
            assert!(
                err.contains("not a regular file") && err.contains(&path.display().to_string()),
                "{err}"
            );
        }
    }
}
