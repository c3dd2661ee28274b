//! A TCP proxy on 127.0.0.1 between the service and PostgreSQL, which a test cuts (the
//! database is gone: new connections are refused, open ones are closed) and restores (the
//! database is back, on the same address).

use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// The proxy. Only `cut` and `restore` change what it does.
pub struct Proxy {
    port: u16,
    upstream: String,
    running: Option<Running>,
}

/// The accepting task and the connections it relays.
struct Running {
    accept: JoinHandle<()>,
    connections: Arc<Mutex<JoinSet<()>>>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and relays every connection to the server of the
    /// PostgreSQL URL `url`; answers the proxy and the URL that reaches the same database
    /// through it.
    pub async fn in_front_of(url: &str) -> (Self, String) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let (upstream, rerouted) = reroute(url, port);
        let mut proxy = Self {
            port,
            upstream,
            running: None,
        };
        proxy.serve(listener);
        (proxy, rerouted)
    }

    fn serve(&mut self, listener: TcpListener) {
        let connections = Arc::new(Mutex::new(JoinSet::new()));
        let upstream = self.upstream.clone();
        let accept = tokio::spawn({
            let connections = Arc::clone(&connections);
            async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    let mut connections = connections
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    while connections.try_join_next().is_some() {}
                    connections.spawn(relay(inbound, upstream.clone()));
                }
            }
        });
        self.running = Some(Running {
            accept,
            connections,
        });
    }

    /// Cuts the database away: when this returns, the listening socket is closed (a new
    /// connection is refused) and so is every relayed connection, both ways.
    pub async fn cut(&mut self) {
        let running = self.running.take().expect("the proxy is not cut already");
        running.accept.abort();
        // The task, and with it the listener, is dropped once the abort is observed.
        let _ = running.accept.await;
        let mut connections = std::mem::take(
            &mut *running
                .connections
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        connections.shutdown().await;
    }

    /// Brings the database back on the same port.
    pub async fn restore(&mut self) {
        assert!(self.running.is_none(), "the proxy is not cut");
        // Tokio listeners set SO_REUSEADDR, so the port is free again at once.
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("listen on the proxy's port again");
        self.serve(listener);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.accept.abort();
        }
    }
}

async fn relay(mut inbound: TcpStream, upstream: String) {
    let Ok(mut outbound) = TcpStream::connect(&upstream).await else {
        return;
    };
    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
}

/// A PostgreSQL URL split around its `host:port`: the upstream address, and the same URL with
/// 127.0.0.1:`port` in its place.
fn reroute(url: &str, port: u16) -> (String, String) {
    let scheme_end = url.find("://").expect("a URL") + 3;
    let authority_end = url[scheme_end..]
        .find(['/', '?'])
        .map_or(url.len(), |i| scheme_end + i);
    let host_start = url[scheme_end..authority_end]
        .rfind('@')
        .map_or(scheme_end, |i| scheme_end + i + 1);
    let host = &url[host_start..authority_end];
    let upstream = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    };
    let rerouted = format!(
        "{}127.0.0.1:{port}{}",
        &url[..host_start],
        &url[authority_end..]
    );
    (upstream, rerouted)
}
