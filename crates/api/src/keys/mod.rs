//! Key material ready for use: the configured KEKs parsed into an envelope, the service tokens,
//! or, in development on the embedded store, keys generated once ([`dev`]).
//!
//! Every refusal names the setting to fix (`KEY_ENCRYPTION_KEY`, `SERVICE_AUTH_TOKENS`, ...)
//! and never the key itself.

pub mod dev;

use std::sync::Arc;

use secrecy::{ExposeSecret as _, SecretString};
use secrets_adapters::audit::AuditKey;
use secrets_adapters::crypto::{Kek, OsRandom, RingEnvelope};
use secrets_domain::SecretsService;
use secrets_domain::ports::SecretStore;

use crate::settings::{Backend, KeyMaterial, Mode, Settings};
use crate::startup::{Service, StartupError};

/// Keys ready for use.
pub struct ResolvedKeys {
    /// The envelope built from the active and retired KEKs.
    pub envelope: RingEnvelope,
    /// The accepted service tokens.
    pub tokens: Vec<SecretString>,
    /// The audit keys.
    pub audit: AuditKeys,
}

/// The audit keys: the one new lines are sealed and tagged with, and every one an older trail
/// may be sealed with.
#[derive(Debug)]
pub struct AuditKeys {
    /// `AUDIT_KEY`, or else the one the active KEK derives.
    pub active: Arc<AuditKey>,
    /// The others `audit verify` and `audit hash` try: the active KEK's (when `AUDIT_KEY` is
    /// set, for a trail written before it was) and the retired KEKs' (a trail written before a
    /// KEK rotation).
    pub older: Vec<AuditKey>,
}

impl AuditKeys {
    /// Every audit key, the active one first.
    #[must_use]
    pub fn all(&self) -> Vec<&AuditKey> {
        std::iter::once(self.active.as_ref())
            .chain(self.older.iter())
            .collect()
    }
}

impl std::fmt::Debug for ResolvedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedKeys")
            .field("envelope", &self.envelope)
            .field("tokens", &self.tokens.len())
            .field("audit", &self.audit.active.id())
            .finish()
    }
}

impl ResolvedKeys {
    /// The use cases over `store`, with these keys' envelope and the OS randomness source.
    pub fn service<S: SecretStore>(self, store: S, limits: secrets_domain::Limits) -> Service<S> {
        SecretsService::new(store, self.envelope, OsRandom::default(), limits)
    }
}

/// What the keys are resolved for: serving needs service tokens; a command that serves
/// nothing (`migrate`, `rotate-kek`) needs only the KEKs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `serve`, and `check`, which answers whether `serve` would start.
    Serving,
    /// A command that answers no request.
    Command,
}

/// Turns the configured key material into an envelope and tokens, generating development keys
/// where that is allowed, and refusing, with every missing setting's name at once, otherwise.
pub fn resolve(
    settings: &Settings,
    keys: KeyMaterial,
    purpose: Purpose,
) -> Result<ResolvedKeys, StartupError> {
    let KeyMaterial {
        mut kek,
        retired,
        mut tokens,
        audit,
    } = keys;
    if let (Mode::Development, Backend::Sqlite(path), None, true) = (
        settings.mode,
        &settings.storage.backend,
        &kek,
        tokens.is_empty(),
    ) {
        let dev = dev::load_or_create(path)?;
        dev::announce(&dev);
        kek = Some(dev.kek.clone());
        tokens = vec![dev.token.clone()];
    }
    let mut missing = Vec::new();
    if kek.is_none() {
        missing.push("KEY_ENCRYPTION_KEY");
    }
    if tokens.is_empty() && purpose == Purpose::Serving {
        missing.push("SERVICE_AUTH_TOKENS");
    }
    let Some(kek) = kek.filter(|_| missing.is_empty()) else {
        return Err(StartupError::Missing(missing));
    };
    let active =
        Kek::from_base64(kek.expose_secret()).map_err(|source| StartupError::InvalidKek {
            variable: "KEY_ENCRYPTION_KEY",
            source,
        })?;
    let retired = retired
        .iter()
        .map(|key| Kek::from_base64(key.expose_secret()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| StartupError::InvalidKek {
            variable: "KEY_ENCRYPTION_KEYS_RETIRED",
            source,
        })?;
    let audit = audit
        .map(|key| Kek::from_base64(key.expose_secret()))
        .transpose()
        .map_err(|source| StartupError::InvalidKek {
            variable: "AUDIT_KEY",
            source,
        })?;
    let mut older: Vec<AuditKey> = retired.iter().map(Kek::audit_key).collect();
    let active_audit = match audit {
        Some(own) => {
            older.insert(0, active.audit_key());
            own.as_audit_key()
        }
        None => active.audit_key(),
    };
    Ok(ResolvedKeys {
        envelope: RingEnvelope::new(active, retired),
        tokens,
        audit: AuditKeys {
            active: Arc::new(active_audit),
            older,
        },
    })
}
