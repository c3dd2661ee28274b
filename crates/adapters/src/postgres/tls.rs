//! TLS to PostgreSQL in libpq's terms: `sslmode`, `sslrootcert`, `sslcert` and `sslkey`, as
//! the connection URL names them, made into one rustls client configuration (ring provider).
//!
//! | `sslmode` | encrypted | the server's certificate |
//! | --- | --- | --- |
//! | `disable` | never | not looked at |
//! | `prefer` (the default, as in libpq) | when the server offers TLS | not checked, unless `sslrootcert` names a CA file: then as `verify-ca` |
//! | `require` | always; a server without TLS is refused | as for `prefer` |
//! | `verify-ca` | always | signed by a CA of `sslrootcert`; any host name |
//! | `verify-full` | always | signed by a CA of `sslrootcert`, and valid for the host connected to |
//!
//! `sslrootcert` is a PEM file of CA certificates, or `system` for the operating system's
//! trust store; as in libpq, `system` makes `verify-full` the default and refuses a weaker
//! mode, since a public CA vouches for names, not for one server. `verify-ca` and
//! `verify-full` need `sslrootcert` (libpq would look for `~/.postgresql/root.crt`; a service
//! account seldom has a home, so the file is named explicitly). `sslcert` and `sslkey` (PEM)
//! are a client certificate for certificate authentication; one without the other is refused.
//!
//! tokio-postgres itself knows only `disable`, `prefer` and `require`, and refuses the other
//! two in a URL, so `super::connect` takes these four settings out of the URL before the driver
//! parses the rest, and gives the driver the mode it knows: `prefer` or `require`, with the
//! checking done here, in the certificate verifier.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientConfig, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it.
    Prefer,
    /// TLS always.
    Require,
    /// TLS, and a certificate signed by a trusted CA.
    VerifyCa,
    /// TLS, a certificate signed by a trusted CA, and valid for the host name.
    VerifyFull,
}

impl SslMode {
    /// The mode's name as libpq spells it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    fn parse(value: &str) -> Result<Self, TlsSetupError> {
        match value {
            "disable" => Ok(Self::Disable),
            // libpq's `allow` tries plaintext first; no one should choose it for secrets.
            "prefer" => Ok(Self::Prefer),
            "require" => Ok(Self::Require),
            "verify-ca" => Ok(Self::VerifyCa),
            "verify-full" => Ok(Self::VerifyFull),
            other => Err(TlsSetupError::UnknownMode(other.to_owned())),
        }
    }

    /// The mode tokio-postgres is given: it negotiates, the verifier checks.
    pub(super) fn driver_mode(self) -> tokio_postgres::config::SslMode {
        match self {
            Self::Disable => tokio_postgres::config::SslMode::Disable,
            Self::Prefer => tokio_postgres::config::SslMode::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        }
    }
}

/// Where the trusted CAs come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootCerts {
    /// A PEM file.
    File(PathBuf),
    /// The operating system's trust store.
    System,
}

/// The TLS settings of a connection URL, as libpq names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// `sslmode`, after the defaults libpq applies.
    pub mode: SslMode,
    /// `sslrootcert`.
    pub root_certs: Option<RootCerts>,
    /// `sslcert` and `sslkey`.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// The four settings as they were written in the URL, before defaults.
#[derive(Debug, Default)]
pub(super) struct Written {
    pub mode: Option<String>,
    pub root_cert: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

/// A TLS setting that cannot be used; the message names the setting and never the URL.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// `sslmode` is not a mode.
    #[error(
        "DATABASE_URL: sslmode={0} is not one of disable, prefer, require, verify-ca, verify-full"
    )]
    UnknownMode(String),
    /// A mode that checks the CA, without a CA.
    #[error(
        "DATABASE_URL: sslmode={0} needs sslrootcert (a PEM file of the CAs that sign the server's certificate, or system)"
    )]
    NoRootCert(&'static str),
    /// `sslrootcert=system` with a mode that does not check the name.
    #[error(
        "DATABASE_URL: sslrootcert=system needs sslmode=verify-full (the system's CAs vouch for host names), not {0}"
    )]
    SystemNeedsVerifyFull(&'static str),
    /// One of `sslcert` and `sslkey` without the other.
    #[error("DATABASE_URL: sslcert and sslkey go together; {0} is missing")]
    HalfClientCert(&'static str),
    /// A certificate or key file could not be read or holds nothing usable.
    #[error("DATABASE_URL: {setting} ({path}): {problem}")]
    File {
        /// `sslrootcert`, `sslcert` or `sslkey`.
        setting: &'static str,
        /// The file.
        path: String,
        /// What is wrong with it.
        problem: String,
    },
    /// rustls refused the configuration (a key that does not match its certificate, ...).
    #[error("DATABASE_URL: TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

impl TlsSettings {
    /// Applies libpq's defaults to the settings as written, and refuses combinations that
    /// cannot work.
    pub(super) fn from_written(written: Written) -> Result<Self, TlsSetupError> {
        let root_certs = written.root_cert.map(|value| {
            if value == "system" {
                RootCerts::System
            } else {
                RootCerts::File(PathBuf::from(value))
            }
        });
        let mode = match (written.mode.as_deref(), &root_certs) {
            (Some(mode), _) => SslMode::parse(mode)?,
            (None, Some(RootCerts::System)) => SslMode::VerifyFull,
            (None, _) => SslMode::Prefer,
        };
        if matches!(root_certs, Some(RootCerts::System)) && mode != SslMode::VerifyFull {
            return Err(TlsSetupError::SystemNeedsVerifyFull(mode.name()));
        }
        if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) && root_certs.is_none() {
            return Err(TlsSetupError::NoRootCert(mode.name()));
        }
        let client_cert = match (written.cert, written.key) {
            (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
            (Some(_), None) => return Err(TlsSetupError::HalfClientCert("sslkey")),
            (None, Some(_)) => return Err(TlsSetupError::HalfClientCert("sslcert")),
            (None, None) => None,
        };
        Ok(Self {
            mode,
            root_certs,
            client_cert,
        })
    }

    /// The rustls configuration these settings describe: the files are read now, so that a
    /// missing or malformed one fails at start-up, naming the setting.
    pub(super) fn client_config(&self) -> Result<ClientConfig, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = match &self.root_certs {
            Some(RootCerts::File(path)) => Some(roots_from_file(path)?),
            Some(RootCerts::System) => Some(system_roots()?),
            None => None,
        };
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?;
        let chain = roots
            .map(|roots| {
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
                    .map_err(|e| TlsSetupError::Rustls(rustls::Error::General(e.to_string())))
            })
            .transpose()?;
        let verifier = Arc::new(Verifier {
            chain,
            // libpq: with a CA file, `prefer` and `require` check the CA too, not the name.
            check_name: self.mode == SslMode::VerifyFull,
            provider,
        });
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        Ok(match &self.client_cert {
            Some((cert, key)) => {
                builder.with_client_auth_cert(certs_from_file("sslcert", cert)?, key_file(key)?)?
            }
            None => builder.with_no_client_auth(),
        })
    }
}

fn file_error(setting: &'static str, path: &Path, problem: impl fmt::Display) -> TlsSetupError {
    TlsSetupError::File {
        setting,
        path: path.display().to_string(),
        problem: problem.to_string(),
    }
}

fn certs_from_file(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(setting, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(setting, path, e))?;
    if certs.is_empty() {
        return Err(file_error(setting, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

fn key_file(path: &Path) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error("sslkey", path, e))
}

fn roots_from_file(path: &Path) -> Result<RootCertStore, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from_file("sslrootcert", path)? {
        roots
            .add(cert)
            .map_err(|e| file_error("sslrootcert", path, e))?;
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, TlsSetupError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let problem = found.errors.first().map_or_else(
            || "the system has no CA certificates".to_owned(),
            ToString::to_string,
        );
        return Err(file_error("sslrootcert", Path::new("system"), problem));
    }
    Ok(roots)
}

/// What is checked of the server's certificate (see the module's table).
///
/// - No CA (`prefer` and `require` without `sslrootcert`): nothing, libpq's behaviour; a
///   warning at start-up says so for a remote host in production.
/// - A CA, not the name (`verify-ca`, or a CA file with `prefer` and `require`): the chain
///   must lead to a CA of `sslrootcert`. webpki checks the chain first and the name only after
///   it, so a `NotValidForName` from it means the chain was good.
/// - Both (`verify-full`): webpki's full check.
///
/// The handshake's signatures are checked in every case, so the server holds the key of the
/// certificate it shows.
#[derive(Debug)]
struct Verifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    check_name: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn written(mode: Option<&str>, root: Option<&str>) -> Written {
        Written {
            mode: mode.map(str::to_owned),
            root_cert: root.map(str::to_owned),
            ..Written::default()
        }
    }

    #[test]
    fn libpq_defaults_apply() {
        let settings = TlsSettings::from_written(written(None, None)).expect("defaults");
        assert_eq!(settings.mode, SslMode::Prefer);
        let settings =
            TlsSettings::from_written(written(None, Some("system"))).expect("system roots");
        assert_eq!(settings.mode, SslMode::VerifyFull);
        let settings =
            TlsSettings::from_written(written(Some("require"), Some("/ca.pem"))).expect("file");
        assert_eq!(
            settings.root_certs,
            Some(RootCerts::File(PathBuf::from("/ca.pem")))
        );
    }

    #[test]
    fn combinations_that_cannot_work_are_refused_naming_the_setting() {
        let cases = [
            (written(Some("verify-fulll"), None), "sslmode=verify-fulll"),
            (written(Some("verify-full"), None), "needs sslrootcert"),
            (written(Some("verify-ca"), None), "needs sslrootcert"),
            (written(Some("require"), Some("system")), "not require"),
            (
                Written {
                    cert: Some("/c.pem".into()),
                    ..Written::default()
                },
                "sslkey is missing",
            ),
            (
                Written {
                    key: Some("/k.pem".into()),
                    ..Written::default()
                },
                "sslcert is missing",
            ),
        ];
        for (written, expected) in cases {
            let error = TlsSettings::from_written(written).expect_err(expected);
            assert!(error.to_string().contains(expected), "{error}");
        }
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let settings =
            TlsSettings::from_written(written(Some("verify-full"), Some("/nonexistent/ca.pem")))
                .expect("parses");
        let error = settings.client_config().expect_err("no such file");
        let message = error.to_string();
        assert!(
            message.contains("sslrootcert (/nonexistent/ca.pem)"),
            "{message}"
        );
    }
}
