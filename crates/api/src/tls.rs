//! TLS on the listener: rustls 0.23 with the ring provider, TLS 1.2 and 1.3 only, HTTP/2 and
//! HTTP/1.1 offered by ALPN (actix-web adds both), optional client certificates, and a
//! certificate that can be renewed without a restart.
//!
//! # Renewal
//! The server's certificate is not fixed in the rustls configuration: [`CertificateStore`]
//! resolves it for each handshake from a `CertifiedKey` it holds behind a lock, and
//! [`CertificateStore::reload`] reads `server.tls.cert_file` and `key_file` again and swaps the
//! new one in (the binary does it on SIGHUP). A handshake after the swap gets the new
//! certificate; connections already open keep the session they negotiated. A reload that
//! fails (a file half-written, a key that does not match) changes nothing: the old certificate
//! stays, and the error names the file. The client CA (`client_ca_file`) is read at start only.
//!
//! # Client certificates
//! With `server.tls.client_ca_file`, a client certificate signed by one of its CAs is
//! `required` (a handshake without one fails) or `optional` (one that is sent must check out).
//! A certificate proves the caller's machine; the service token is still required on every
//! route that needs it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

use crate::settings::{ClientAuth, ListenerTls};

/// A TLS file that cannot be used: the message names the setting and the file.
#[derive(Debug, thiserror::Error)]
#[error("{setting} ({path}): {problem}")]
pub struct TlsError {
    setting: &'static str,
    path: String,
    problem: String,
}

impl TlsError {
    fn new(setting: &'static str, path: &Path, problem: impl std::fmt::Display) -> Self {
        Self {
            setting,
            path: path.display().to_string(),
            problem: problem.to_string(),
        }
    }
}

/// The server's certificate and key, swapped on reload (see the module's doc).
#[derive(Debug)]
pub struct CertificateStore {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertificateStore {
    fn load(
        cert_file: &Path,
        key_file: &Path,
        provider: &CryptoProvider,
    ) -> Result<Arc<CertifiedKey>, TlsError> {
        let chain = certificates("server.tls.cert_file", cert_file)?;
        let key = PrivateKeyDer::from_pem_file(key_file)
            .map_err(|e| TlsError::new("server.tls.key_file", key_file, e))?;
        let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| {
            TlsError::new(
                "server.tls.key_file",
                key_file,
                format!("does not fit server.tls.cert_file: {e}"),
            )
        })?;
        Ok(Arc::new(certified))
    }

    /// Reads the certificate and key files again and serves them to new handshakes; on error,
    /// the certificate served so far stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = Self::load(&self.cert_file, &self.key_file, &self.provider)?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        Ok(())
    }
}

impl ResolvesServerCert for CertificateStore {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        ))
    }
}

/// The listener's rustls configuration, and the certificate store to reload.
pub fn server_config(tls: &ListenerTls) -> Result<(ServerConfig, Arc<CertificateStore>), TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let current = CertificateStore::load(&tls.cert_file, &tls.key_file, &provider)?;
    let store = Arc::new(CertificateStore {
        cert_file: tls.cert_file.clone(),
        key_file: tls.key_file.clone(),
        provider: Arc::clone(&provider),
        current: RwLock::new(current),
    });
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::new("server.tls", Path::new("-"), e))?;
    let builder = match &tls.client_ca {
        None => builder.with_no_client_auth(),
        Some((ca_file, auth)) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates("server.tls.client_ca_file", ca_file)? {
                roots
                    .add(cert)
                    .map_err(|e| TlsError::new("server.tls.client_ca_file", ca_file, e))?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
            let verifier = match auth {
                ClientAuth::Required => verifier,
                ClientAuth::Optional => verifier.allow_unauthenticated(),
            }
            .build()
            .map_err(|e| TlsError::new("server.tls.client_ca_file", ca_file, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let resolver: Arc<dyn ResolvesServerCert> = store.clone();
    let config = builder.with_cert_resolver(resolver);
    Ok((config, store))
}

fn certificates(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::new(setting, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::new(setting, path, e))?;
    if certs.is_empty() {
        return Err(TlsError::new(setting, path, "no PEM certificate in it"));
    }
    Ok(certs)
}
