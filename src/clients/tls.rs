//! TLS settings shared by the clients: which roots to trust, and the
//! deliberately unverified mode that PostgreSQL's `sslmode=require` means.
//!
//! Harbor and Keycloak are verified by [`https_config`], which also says,
//! when it refuses a certificate, which host presented it, who issued it,
//! what it was checked against and what to give instead
//! ([`CertificateProblem`]): rustls alone says only `UnknownIssuer`.

use std::path::{Path, PathBuf};
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

/// What an HTTPS client was told to trust, for the message when a
/// certificate is refused.
#[derive(Debug, Clone)]
pub enum Trust {
    /// The system's roots (or the bundled web roots when it has none).
    System,
    /// The CA file given with `--ca-cert`.
    CaFile(PathBuf),
}

impl std::fmt::Display for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trust::System => f.write_str("the system's trusted roots"),
            Trust::CaFile(p) => write!(
                f,
                "the CA certificate given with --ca-cert ({})",
                p.display()
            ),
        }
    }
}

/// The client config for Harbor and Keycloak: verifies the chain and the
/// name against the CA file when one is given, else the system's roots,
/// and explains a refused certificate with a [`CertificateProblem`].
pub fn https_config(ca_file: Option<&Path>) -> Result<ClientConfig> {
    let roots = root_store(ca_file)?;
    install_crypto_provider();
    let inner = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots))
        .build()
        .context("building the certificate verifier")?;
    let trust = match ca_file {
        Some(p) => Trust::CaFile(p.to_path_buf()),
        None => Trust::System,
    };
    Ok(ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Explaining { inner, trust }))
        .with_no_client_auth())
}

/// A certificate a server presented and the verifier refused, with what
/// a person needs to act on it. Nothing in it is secret: a certificate is
/// public, and the names in it are clipped (they come from the server).
#[derive(Debug)]
pub struct CertificateProblem {
    /// The host name (or address) the client connected to.
    pub host: String,
    /// The presented certificate's subject and issuer, RFC 4514 style;
    /// None when the certificate could not be read.
    pub subject: Option<String>,
    pub issuer: Option<String>,
    /// Why rustls refused it.
    pub error: rustls::CertificateError,
    pub trust: Trust,
}

impl std::fmt::Display for CertificateProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use rustls::CertificateError as E;
        let host = &self.host;
        let issued = match (&self.subject, &self.issuer) {
            (Some(s), Some(i)) => format!(" (issued to {s} by {i})"),
            _ => " (its names could not be read)".to_string(),
        };
        let self_signed = self.subject.is_some() && self.subject == self.issuer;
        match &self.error {
            E::UnknownIssuer | E::BadSignature | E::InvalidPurpose | E::InvalidPurposeContext { .. } => {
                write!(
                    f,
                    "the TLS certificate {host} presented{issued} is not trusted by {}",
                    self.trust
                )?;
                let what = if self_signed {
                    "it is self-signed: give that certificate itself"
                } else {
                    "give the CA certificate that signed it (PEM)"
                };
                match &self.trust {
                    Trust::System => write!(f, "; {what} with --ca-cert PATH (HARBOR_CA_CERT)"),
                    Trust::CaFile(p) => write!(
                        f,
                        "; {} holds another CA: {what} with --ca-cert PATH (HARBOR_CA_CERT)",
                        p.display()
                    ),
                }
            }
            E::NotValidForName | E::NotValidForNameContext { .. } => {
                let names = match &self.error {
                    E::NotValidForNameContext { presented, .. } if !presented.is_empty() => {
                        format!(
                            "; it names {}",
                            crate::clients::http::clip(&presented.join(", "), 200)
                        )
                    }
                    _ => String::new(),
                };
                write!(
                    f,
                    "the TLS certificate {host} presented{issued} is not valid for the name {host}{names}: \
                     use a URL with a name the certificate was issued for, or have one issued for {host}"
                )
            }
            E::Expired
            | E::ExpiredContext { .. }
            | E::NotValidYet
            | E::NotValidYetContext { .. } => write!(
                f,
                "the TLS certificate {host} presented{issued} is not valid now ({}): renew it, or \
                 check this machine's clock",
                self.error
            ),
            other => write!(
                f,
                "the TLS certificate {host} presented{issued} was refused ({other}), checked against {}",
                self.trust
            ),
        }
    }
}

impl std::error::Error for CertificateProblem {}

impl CertificateProblem {
    /// The problem behind a failed request, when it was a refused
    /// certificate. The TLS error sits inside I/O errors inside the HTTP
    /// client's, and an I/O error's `source()` skips what it wraps, so
    /// each link's wrapped errors are looked into too.
    pub fn find<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a CertificateProblem> {
        let mut next = Some(err);
        while let Some(e) = next {
            if let Some(p) = Self::wrapped_in(e) {
                return Some(p);
            }
            next = e.source();
        }
        None
    }

    fn wrapped_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a CertificateProblem> {
        if let Some(p) = e.downcast_ref::<CertificateProblem>() {
            return Some(p);
        }
        if let Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o))) =
            e.downcast_ref::<rustls::Error>()
        {
            return o.0.downcast_ref::<CertificateProblem>();
        }
        let inner = e.downcast_ref::<std::io::Error>()?.get_ref()?;
        Self::wrapped_in(inner)
    }
}

/// The subject and issuer of a DER certificate, for a message.
fn names_of(cert: &CertificateDer<'_>) -> Option<(String, String)> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(cert.as_ref()).ok()?;
    let tbs = cert.tbs_certificate;
    let clip = |name: String| crate::clients::http::clip(&name, 200);
    Some((clip(tbs.subject.to_string()), clip(tbs.issuer.to_string())))
}

/// Verifies as webpki does, and turns a refusal into a [`CertificateProblem`].
#[derive(Debug)]
struct Explaining {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    trust: Trust,
}

impl ServerCertVerifier for Explaining {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(error)) => {
                let names = names_of(end_entity);
                let problem = CertificateProblem {
                    host: server_name.to_str().into_owned(),
                    subject: names.as_ref().map(|n| n.0.clone()),
                    issuer: names.map(|n| n.1),
                    error,
                    trust: self.trust.clone(),
                };
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::Other(rustls::OtherError(Arc::new(problem))),
                ))
            }
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
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

    fn problem(error: rustls::CertificateError, trust: Trust, issuer: &str) -> String {
        CertificateProblem {
            host: "harbor.example.com".into(),
            subject: Some("CN=harbor.example.com".into()),
            issuer: Some(issuer.into()),
            error,
            trust,
        }
        .to_string()
    }

    #[test]
    fn each_refusal_says_what_to_do() {
        use rustls::CertificateError as E;
        let ca = "CN=Corp CA,O=Corp";
        let msg = problem(E::UnknownIssuer, Trust::System, ca);
        assert!(
            msg.contains("harbor.example.com presented (issued to CN=harbor.example.com by CN=Corp CA,O=Corp)")
                && msg.contains("not trusted by the system's trusted roots")
                && msg.ends_with("give the CA certificate that signed it (PEM) with --ca-cert PATH (HARBOR_CA_CERT)"),
            "{msg}"
        );
        let msg = problem(E::UnknownIssuer, Trust::CaFile("/etc/ca.pem".into()), ca);
        assert!(msg.contains("/etc/ca.pem holds another CA"), "{msg}");
        let msg = problem(E::UnknownIssuer, Trust::System, "CN=harbor.example.com");
        assert!(
            msg.contains("it is self-signed: give that certificate itself with --ca-cert"),
            "{msg}"
        );
        let msg = problem(E::NotValidForName, Trust::System, ca);
        assert!(
            msg.contains("not valid for the name harbor.example.com"),
            "{msg}"
        );
        assert!(!msg.contains("--ca-cert"), "a CA would not help: {msg}");
        let msg = problem(E::Expired, Trust::System, ca);
        assert!(
            msg.contains("renew it, or check this machine's clock"),
            "{msg}"
        );
    }

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
