//! TLS for the POP3 client: a rustls client config (Web PKI roots plus an optional
//! private CA) and the handshake, both for implicit TLS and after STLS.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{Error, Options, Result};

fn tls_err(during: &str, message: impl std::fmt::Display) -> Error {
    Error::Tls {
        during: during.to_owned(),
        message: message.to_string(),
    }
}

/// The rustls client config for these options.
fn client_config(opts: &Options) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &opts.ca_file {
        let pem =
            std::fs::read(path).map_err(|e| tls_err(&format!("reading {}", path.display()), e))?;
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| tls_err(&format!("parsing {}", path.display()), e))?;
            roots
                .add(cert)
                .map_err(|e| tls_err(&format!("adding {}", path.display()), e))?;
            added += 1;
        }
        if added == 0 {
            return Err(tls_err(
                &format!("reading {}", path.display()),
                "no PEM certificate in the file",
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("configuring", e))?
        .with_root_certificates(roots)
        .with_no_client_auth())
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
