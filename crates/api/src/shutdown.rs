//! The process's signals: SIGTERM or SIGINT to shut down, SIGHUP to reload the listener's
//! certificate and reopen the audit file (log rotation).
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

/// On every SIGHUP, reloads the listener's certificate (see [`crate::tls`]) and asks the audit
/// trail to open its file anew (see [`crate::audit`]).
///
/// The signal is listened to from [`Reloader::new`] on, which start-up calls before it says it
/// is listening: a SIGHUP that came before would kill the process (its default action).
pub struct Reloader {
    certificates: Option<std::sync::Arc<crate::tls::CertificateStore>>,
    trail: Option<actix_web::web::Data<crate::audit::Trail>>,
    #[cfg(unix)]
    hangups: Option<tokio::signal::unix::Signal>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader").finish_non_exhaustive()
    }
}

impl Reloader {
    /// Starts listening for SIGHUP (inside a Tokio runtime); `None` when there is nothing to
    /// reload.
    #[must_use]
    pub fn new(
        certificates: Option<std::sync::Arc<crate::tls::CertificateStore>>,
        trail: Option<actix_web::web::Data<crate::audit::Trail>>,
    ) -> Option<Self> {
        if certificates.is_none() && trail.is_none() {
            return None;
        }
        #[cfg(unix)]
        let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .inspect_err(|error| {
                tracing::warn!(%error, "cannot listen for SIGHUP: the certificate and the audit file reload only with a restart");
            })
            .ok();
        Some(Self {
            certificates,
            trail,
            #[cfg(unix)]
            hangups,
        })
    }

    /// Reloads on each SIGHUP, logging what happened; a reload that fails keeps the
    /// certificate served so far.
    pub async fn run(self) {
        #[cfg(unix)]
        {
            let Some(mut hangups) = self.hangups else {
                return;
            };
            while hangups.recv().await.is_some() {
                if let Some(trail) = &self.trail {
                    trail.reopen();
                    tracing::info!("SIGHUP: the audit file is opened anew before its next line");
                }
                let Some(certificates) = &self.certificates else {
                    continue;
                };
                match certificates.reload() {
                    Ok(()) => tracing::info!("SIGHUP: reloaded the TLS certificate"),
                    Err(error) => tracing::error!(
                        %error,
                        "SIGHUP: the TLS certificate was not reloaded; the one loaded before is still served"
                    ),
                }
            }
        }
        #[cfg(not(unix))]
        drop(self);
    }
}
