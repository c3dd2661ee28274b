//! The shutdown signal: SIGTERM or SIGINT.
//!
//! The server's own signal handling is off (`disable_signals` in [`crate::startup`]):
//! actix-server treats SIGINT as a forced stop that drops the requests in flight, and SPEC 7
//! wants both signals to drain.

/// Waits for SIGTERM or SIGINT and names it; `None` when the signals cannot be listened to
/// (then only the server's handle stops it).
pub async fn signal() -> Option<&'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => Some("SIGTERM"),
                _ = int.recv() => Some("SIGINT"),
            },
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(%error, "cannot listen for SIGTERM and SIGINT");
                None
            }
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.ok().map(|()| "Ctrl-C")
    }
}
