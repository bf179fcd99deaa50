//! HTTPS for the dashboard (`--tls-cert`, `--tls-key`): PEM files read once at start-up
//! into a rustls server configuration (the ring provider, as the HTTP client already uses).

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{crypto, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::error::{Error, Result};

/// The acceptor for the certificate chain in `cert` and the private key in `key` (PEM).
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<std::result::Result<_, _>>())
        .map_err(|e| usage(cert, "a PEM certificate chain", e))?;
    if chain.is_empty() {
        return Err(usage(
            cert,
            "a PEM certificate chain",
            "no certificate in it",
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| usage(key, "a PEM private key", e))?;
    let config = ServerConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Usage(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| Error::Usage(format!("--tls-cert and --tls-key do not make a pair: {e}")))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn usage(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Usage(format!("{}: not {what}: {e}", path.display()))
}
