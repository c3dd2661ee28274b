//! A TCP proxy on 127.0.0.1 between the service and PostgreSQL, with the two ways a database
//! goes away:
//!
//! - **cut**: the server is gone. New connections are refused and open ones are closed, so
//!   both ends learn at once; `restore` listens again on the same port.
//! - **partition**: the network in between goes silent. Nothing crosses any more, new
//!   connections hang, and no end learns anything. `heal` ends it the way a partition that
//!   outlasted TCP's retries ends: the service has long given up its connections (they are
//!   closed on its side), while the server never hears of it, and its sessions stay open,
//!   in whatever state they were in (idle inside a transaction, holding locks), until the
//!   server itself ends them. New connections work again.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// The state of the network between the two ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Up,
    Partitioned,
}

/// The proxy.
pub struct Proxy {
    port: u16,
    upstream: String,
    link: watch::Sender<Link>,
    /// Server-side connections whose service side is gone: kept open, never read or written.
    orphans: Arc<Mutex<Vec<TcpStream>>>,
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
            link: watch::channel(Link::Up).0,
            orphans: Arc::default(),
            running: None,
        };
        proxy.serve(listener);
        (proxy, rerouted)
    }

    fn serve(&mut self, listener: TcpListener) {
        let connections = Arc::new(Mutex::new(JoinSet::new()));
        let accept = tokio::spawn({
            let connections = Arc::clone(&connections);
            let upstream = self.upstream.clone();
            let link = self.link.subscribe();
            let orphans = Arc::clone(&self.orphans);
            async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    let mut connections =
                        connections.lock().unwrap_or_else(PoisonError::into_inner);
                    while connections.try_join_next().is_some() {}
                    connections.spawn(relay(
                        inbound,
                        upstream.clone(),
                        link.clone(),
                        Arc::clone(&orphans),
                    ));
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
        drop(running.accept.await);
        let mut connections = std::mem::take(
            &mut *running
                .connections
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        connections.shutdown().await;
    }

    /// Brings the database back on the same port after a cut.
    pub async fn restore(&mut self) {
        assert!(self.running.is_none(), "the proxy is not cut");
        // Tokio listeners set SO_REUSEADDR, so the port is free again at once.
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("listen on the proxy's port again");
        self.serve(listener);
    }

    /// Silences the network (see the module's doc).
    pub fn partition(&self) {
        self.link.send_replace(Link::Partitioned);
    }

    /// Ends the partition (see the module's doc).
    pub fn heal(&self) {
        self.link.send_replace(Link::Up);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.accept.abort();
            if let Ok(mut connections) = running.connections.lock() {
                connections.abort_all();
            }
        }
    }
}

async fn relay(
    mut inbound: TcpStream,
    upstream: String,
    mut link: watch::Receiver<Link>,
    orphans: Arc<Mutex<Vec<TcpStream>>>,
) {
    let partitioned = async |link: &mut watch::Receiver<Link>| {
        drop(link.wait_for(|l| *l == Link::Partitioned).await);
    };
    if *link.borrow_and_update() == Link::Partitioned {
        // Accepted in the partition: it hangs until the partition ends, by which time the
        // service has given up on it.
        drop(link.wait_for(|l| *l == Link::Up).await);
        return;
    }
    let Ok(mut outbound) = TcpStream::connect(&upstream).await else {
        return;
    };
    let partition = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => false,
        () = partitioned(&mut link) => true,
    };
    if partition {
        drop(link.wait_for(|l| *l == Link::Up).await);
        drop(inbound);
        orphans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(outbound);
    }
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
