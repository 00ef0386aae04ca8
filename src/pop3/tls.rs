//! TLS for the POP3 client: a rustls client config and the handshake, both for implicit
//! TLS and after STLS.
//!
//! The server's certificate is checked like the SMTP sender's (see
//! [`TlsMode`](crate::config::TlsMode)): the platform's verifier (the system's trust
//! store) plus the optional `ca_file`.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{Error, Options, Result};

fn tls_err(during: &str, message: impl std::fmt::Display) -> Error {
    Error::Tls {
        during: during.to_owned(),
        message: message.to_string(),
    }
}

/// The certificates of PEM text (at least one).
pub(crate) fn pem_roots(pem: &[u8]) -> std::result::Result<Vec<CertificateDer<'static>>, String> {
    let mut roots = Vec::new();
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        roots.push(cert.map_err(|e| e.to_string())?);
    }
    if roots.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    Ok(roots)
}

/// The client config both POP3 and SMTP (implicit TLS) use: the platform's verifier
/// with `extra` roots besides the system's.
pub(crate) fn platform_config(
    extra: Vec<CertificateDer<'static>>,
) -> std::result::Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
            .map_err(|e| format!("loading the trust roots: {e}"))?;
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// The rustls client config for these options.
fn client_config(opts: &Options) -> Result<rustls::ClientConfig> {
    let extra = match &opts.ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| tls_err(&format!("reading {}", path.display()), e))?;
            pem_roots(&pem).map_err(|e| tls_err(&format!("reading {}", path.display()), e))?
        }
        None => Vec::new(),
    };
    platform_config(extra).map_err(|e| tls_err("configuring", e))
}

/// Runs the TLS handshake over `tcp`, verifying the server against `opts.host`.
pub(super) async fn handshake(
    opts: &Options,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let config = client_config(opts)?;
    let name = ServerName::try_from(opts.host.clone()).map_err(|e| tls_err("server name", e))?;
    let connector = TlsConnector::from(Arc::new(config));
    tokio::time::timeout(opts.timeout, connector.connect(name, tcp))
        .await
        .map_err(|_| Error::Timeout {
            during: "TLS handshake".into(),
            timeout: opts.timeout,
        })?
        .map_err(|e| tls_err("handshake", e))
}
