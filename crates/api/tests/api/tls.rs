//! TLS on the listener, with real TLS clients against the real binary: TLS 1.2 and 1.3,
//! HTTP/2 by ALPN, a plaintext request refused cleanly, a renewed certificate picked up on
//! SIGHUP by new connections while open ones keep working, and client certificates.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use secrets_adapters::testing::{Issued, TestCa};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::common::ServiceProcess;
use crate::helpers::{TEST_KEK, TOKEN, TempDir};

/// The service on the embedded store in `dir`, serving TLS with `dir/server.crt` and
/// `dir/server.key`, plus `extra` settings.
fn start(dir: &Path, extra: &[(&str, String)]) -> ServiceProcess {
    let mut env = vec![
        (
            "DATABASE_URL",
            format!("sqlite://{}", dir.join("secrets.db").display()),
        ),
        ("KEY_ENCRYPTION_KEY", TEST_KEK.to_owned()),
        ("SERVICE_AUTH_TOKENS", TOKEN.to_owned()),
        ("SECRETS__SERVER__BIND", "127.0.0.1:0".to_owned()),
        ("SECRETS__SERVER__WORKERS", "2".to_owned()),
        (
            "SECRETS__SERVER__TLS__CERT_FILE",
            dir.join("server.crt").display().to_string(),
        ),
        (
            "SECRETS__SERVER__TLS__KEY_FILE",
            dir.join("server.key").display().to_string(),
        ),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
    ServiceProcess::start(&["serve"], &env)
}

fn server_certificate(ca: &TestCa) -> Issued {
    ca.issue("secrets-service", &["127.0.0.1", "localhost"])
}

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("a PEM certificate")
}

/// A rustls client trusting `ca`, with `versions`, and a client certificate when given.
fn client_config(
    ca: &TestCa,
    versions: &[&'static rustls::SupportedProtocolVersion],
    identity: Option<&Issued>,
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(&ca.cert_pem())).expect("CA");
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .expect("versions")
    .with_root_certificates(roots);
    match identity {
        Some(issued) => builder
            .with_client_auth_cert(
                vec![der(&issued.cert_pem)],
                rustls::pki_types::PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes())
                    .expect("key"),
            )
            .expect("client certificate"),
        None => builder.with_no_client_auth(),
    }
}

/// One TLS connection, HTTP/1.1 requests written by hand.
struct Connection(TlsStream<TcpStream>);

impl Connection {
    async fn open(port: u16, config: rustls::ClientConfig) -> std::io::Result<Self> {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        let name = ServerName::try_from("127.0.0.1").expect("a name");
        let stream = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        Ok(Self(stream))
    }

    /// The certificate the server showed on this connection.
    fn server_certificate(&self) -> CertificateDer<'static> {
        self.0
            .get_ref()
            .1
            .peer_certificates()
            .expect("a certificate")[0]
            .clone()
            .into_owned()
    }

    fn protocol(&self) -> Option<rustls::ProtocolVersion> {
        self.0.get_ref().1.protocol_version()
    }

    /// `GET path` on this connection (kept alive); the status, or the I/O error.
    async fn get(&mut self, path: &str) -> std::io::Result<u16> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        self.0.write_all(request.as_bytes()).await?;
        tokio::time::timeout(
            Duration::from_secs(20),
            crate::common::read_http_response(&mut self.0),
        )
        .await
        .map_err(|_| std::io::Error::other("no answer within 20 s"))?
        .map(|answer| answer.status)
        .ok_or_else(|| std::io::ErrorKind::UnexpectedEof.into())
    }
}

/// A reqwest client trusting `ca`.
fn https_client(ca: &TestCa) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).expect("CA"))
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

#[tokio::test]
async fn the_listener_speaks_tls_1_2_and_1_3_and_http2_by_alpn_and_refuses_plaintext_cleanly() {
    let dir = TempDir::new();
    let ca = TestCa::new("listener CA");
    drop(server_certificate(&ca).write(&dir.0, "server"));
    let service = start(&dir.0, &[]);
    let port = service.port();

    // HTTP/2, chosen by ALPN, and the service token as ever.
    let response = https_client(&ca)
        .post(format!("https://127.0.0.1:{port}/namespaces"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("an HTTPS answer");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 201);
    let response = https_client(&ca)
        .post(format!("https://127.0.0.1:{port}/namespaces"))
        .send()
        .await
        .expect("an HTTPS answer");
    assert_eq!(response.status(), 401, "TLS does not replace the token");

    // TLS 1.2 and TLS 1.3, HTTP/1.1 without ALPN.
    for (version, expected) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let mut connection = Connection::open(port, client_config(&ca, &[version], None))
            .await
            .expect("handshake");
        assert_eq!(connection.protocol(), Some(expected));
        assert_eq!(connection.get("/healthz").await.expect("answered"), 200);
    }

    // Plain HTTP to the TLS port: no answer, the connection closed, at once.
    let mut plain = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection instead of waiting");
    assert!(
        read.is_err() || !answer.starts_with(b"HTTP/"),
        "no HTTP answer on the TLS port: {answer:?}"
    );
    // And the service goes on serving.
    let mut connection =
        Connection::open(port, client_config(&ca, &[&rustls::version::TLS13], None))
            .await
            .expect("handshake after the plaintext attempt");
    assert_eq!(connection.get("/healthz").await.expect("answered"), 200);
}

#[tokio::test]
async fn a_renewed_certificate_reaches_new_connections_on_sighup_while_open_ones_keep_working() {
    let dir = TempDir::new();
    let ca = TestCa::new("listener CA");
    let first = server_certificate(&ca);
    drop(first.write(&dir.0, "server"));
    let service = start(&dir.0, &[]);
    let port = service.port();
    let config = || client_config(&ca, &[&rustls::version::TLS13], None);

    let mut open = Connection::open(port, config()).await.expect("handshake");
    assert_eq!(open.server_certificate(), der(&first.cert_pem));
    assert_eq!(open.get("/healthz").await.expect("answered"), 200);

    // A reload that fails keeps the certificate served so far.
    std::fs::write(dir.0.join("server.key"), "not a key").expect("write");
    service.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(
        service.wait_for_output("was not reloaded", Duration::from_secs(20)),
        "{}",
        service.output()
    );
    assert!(
        service.output().contains("server.tls.key_file"),
        "{}",
        service.output()
    );
    let after_failure = Connection::open(port, config()).await.expect("handshake");
    assert_eq!(after_failure.server_certificate(), der(&first.cert_pem));

    let renewed = server_certificate(&ca);
    drop(renewed.write(&dir.0, "server"));
    service.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(
        service.wait_for_output("reloaded the TLS certificate", Duration::from_secs(20)),
        "{}",
        service.output()
    );
    let fresh = Connection::open(port, config()).await.expect("handshake");
    assert_eq!(fresh.server_certificate(), der(&renewed.cert_pem));
    assert_ne!(der(&renewed.cert_pem), der(&first.cert_pem));
    // The connection opened before the renewal still serves.
    assert_eq!(open.get("/healthz").await.expect("answered"), 200);
}

#[tokio::test]
async fn client_certificates_are_required_or_optional_as_configured() {
    let dir = TempDir::new();
    let ca = TestCa::new("listener CA");
    let clients = TestCa::new("client CA");
    let stranger = TestCa::new("someone else's CA");
    drop(server_certificate(&ca).write(&dir.0, "server"));
    let client_ca = clients.write(&dir.0, "clients");
    let good = clients.issue("main-server", &[]);
    let foreign = stranger.issue("main-server", &[]);

    for (auth, anonymous_allowed) in [("required", false), ("optional", true)] {
        let service = start(
            &dir.0,
            &[
                (
                    "SECRETS__SERVER__TLS__CLIENT_CA_FILE",
                    client_ca.display().to_string(),
                ),
                ("SECRETS__SERVER__TLS__CLIENT_AUTH", auth.to_owned()),
            ],
        );
        let port = service.port();
        let answer = async |identity: Option<&Issued>| -> Option<u16> {
            let config = client_config(&ca, &[&rustls::version::TLS13], identity);
            // With TLS 1.3 the server's verdict on the client arrives after the client's
            // handshake is done: the first request shows it.
            let mut connection = Connection::open(port, config).await.ok()?;
            connection.get("/healthz").await.ok()
        };
        assert_eq!(
            answer(Some(&good)).await,
            Some(200),
            "{auth}: a trusted client certificate"
        );
        assert_eq!(
            answer(Some(&foreign)).await,
            None,
            "{auth}: a certificate of another CA"
        );
        assert_eq!(
            answer(None).await.is_some(),
            anonymous_allowed,
            "{auth}: no client certificate"
        );
    }
}

#[test]
fn a_tls_file_that_cannot_be_used_stops_start_up_naming_it() {
    let dir = TempDir::new();
    let ca = TestCa::new("listener CA");
    let (cert, _) = server_certificate(&ca).write(&dir.0, "server");
    let other = server_certificate(&ca);
    std::fs::write(dir.0.join("server.key"), &other.key_pem).expect("write");
    let output = crate::helpers::binary()
        .arg("serve")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.0.join("secrets.db").display()),
        )
        .env("KEY_ENCRYPTION_KEY", TEST_KEK)
        .env("SERVICE_AUTH_TOKENS", TOKEN)
        .env("SECRETS__SERVER__BIND", "127.0.0.1:0")
        .env("SECRETS__SERVER__TLS__CERT_FILE", &cert)
        .env("SECRETS__SERVER__TLS__KEY_FILE", dir.0.join("server.key"))
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("server.tls.key_file"), "{stderr}");
    assert!(
        stderr.contains("does not fit server.tls.cert_file"),
        "{stderr}"
    );
}
