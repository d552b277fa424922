//! A private certificate authority and HTTPS serving for the simulators.
//!
//! Real clusters and many Harbor installations use certificates from a private
//! CA; the doctor must verify them against a CA it is given (kubeconfig
//! `certificate-authority-data`, `--ca-cert`). Each simulator run makes a fresh
//! CA and a server certificate for `localhost` and `127.0.0.1`.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// A throwaway CA together with one server certificate it signed.
#[derive(Clone)]
pub struct TestPki {
    /// The CA certificate, PEM: what clients must trust.
    pub ca_pem: String,
    /// The server certificate, PEM, valid for localhost and 127.0.0.1.
    pub server_cert_pem: String,
    /// The server's private key, PEM.
    pub server_key_pem: String,
}

impl TestPki {
    pub fn generate() -> Result<Self> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "harbor-doctor simulator CA");
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params.self_signed(&ca_key)?;

        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca_cert, &ca_key)?;
        Ok(Self {
            ca_pem: ca_cert.pem(),
            server_cert_pem: cert.pem(),
            server_key_pem: key.serialize_pem(),
        })
    }
}

/// Installs ring as rustls' process-wide crypto provider, once. Both the
/// simulators and the doctor use rustls with ring; a second install is a no-op.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A server running in the background; dropping the handle does not stop it,
/// `shutdown` does.
pub struct ServerHandle {
    pub addr: SocketAddr,
    handle: axum_server::Handle,
}

impl ServerHandle {
    pub fn shutdown(&self) {
        self.handle.shutdown();
    }
}

/// Serves `app` on an ephemeral 127.0.0.1 port, over HTTPS when `pki` is given
/// and plain HTTP otherwise.
pub async fn serve(app: axum::Router, pki: Option<&TestPki>) -> Result<ServerHandle> {
    install_crypto_provider();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let handle = axum_server::Handle::new();
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    match pki {
        Some(pki) => {
            let config = axum_server::tls_rustls::RustlsConfig::from_pem(
                pki.server_cert_pem.clone().into_bytes(),
                pki.server_key_pem.clone().into_bytes(),
            )
            .await
            .context("loading the simulator's server certificate")?;
            let server = axum_server::from_tcp_rustls(listener, config).handle(handle.clone());
            tokio::spawn(async move {
                if let Err(e) = server.serve(service).await {
                    tracing::error!("simulator server stopped: {e}");
                }
            });
        }
        None => {
            let server = axum_server::from_tcp(listener).handle(handle.clone());
            tokio::spawn(async move {
                if let Err(e) = server.serve(service).await {
                    tracing::error!("simulator server stopped: {e}");
                }
            });
        }
    }
    Ok(ServerHandle { addr, handle })
}
