//! Development mode: keys generated once and kept beside the embedded database.
//!
//! So that `make run` works on a fresh clone, a development instance on the embedded store
//! with neither a KEK nor a service token configured generates both, writes them to a file
//! only its owner can read (mode 0600, created exclusively), and reuses them on every start:
//! data written before a restart stays readable after it. Production mode, or any store other
//! than the embedded one, never gets here; a missing key is a start-up error there.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The file's name, in the database's directory.
pub const FILE_NAME: &str = "dev-keys.json";

#[derive(Serialize, Deserialize)]
struct Stored {
    kek: String,
    token: String,
}

impl Drop for Stored {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.kek.zeroize();
        self.token.zeroize();
    }
}

/// The development keys, loaded or generated.
pub struct DevKeys {
    /// The KEK, base64.
    pub kek: SecretString,
    /// The service token.
    pub token: SecretString,
    /// Where they are kept.
    pub path: PathBuf,
    /// Whether this start generated them.
    pub generated: bool,
}

impl std::fmt::Debug for DevKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevKeys")
            .field("path", &self.path)
            .field("generated", &self.generated)
            .finish_non_exhaustive()
    }
}

/// Why the development keys could not be had.
#[derive(Debug, thiserror::Error)]
pub enum DevKeysError {
    /// The file could not be read or written.
    #[error("development keys file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file exists but does not hold keys.
    #[error(
        "development keys file {0} is not valid; move it away to generate new keys (data written under the old ones will be unreadable)"
    )]
    Corrupt(PathBuf),
    /// The OS randomness source failed.
    #[error("cannot generate development keys: {0}")]
    Random(#[from] secrets_domain::ports::RandomError),
}

/// Loads the keys kept beside `database`, generating them on first use.
pub fn load_or_create(database: &Path) -> Result<DevKeys, DevKeysError> {
    let dir = database.parent().unwrap_or_else(|| Path::new("."));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let path = dir.join(FILE_NAME);
    let io = |source| DevKeysError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    match std::fs::read(&path) {
        Ok(bytes) => {
            let bytes = Zeroizing::new(bytes);
            let stored: Stored =
                serde_json::from_slice(&bytes).map_err(|_| DevKeysError::Corrupt(path.clone()))?;
            Ok(DevKeys {
                kek: SecretString::from(stored.kek.clone()),
                token: SecretString::from(stored.token.clone()),
                path,
                generated: false,
            })
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let stored = Stored {
                kek: secrets_adapters::crypto::generate_key_base64()?.to_string(),
                token: secrets_adapters::crypto::generate_key_base64()?
                    .trim_end_matches('=')
                    .replace(['+', '/'], "x"),
            };
            let json = Zeroizing::new(
                serde_json::to_vec_pretty(&stored)
                    .map_err(|_| DevKeysError::Corrupt(path.clone()))?,
            );
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&path).map_err(io)?;
            file.write_all(&json)
                .and_then(|()| file.sync_all())
                .map_err(io)?;
            Ok(DevKeys {
                kek: SecretString::from(stored.kek.clone()),
                token: SecretString::from(stored.token.clone()),
                path,
                generated: true,
            })
        }
        Err(error) => Err(io(error)),
    }
}

/// Prints the token and a warning to the terminal (standard error, not the log), so the
/// developer can call the service.
pub fn announce(keys: &DevKeys) {
    let verb = if keys.generated {
        "generated and stored in"
    } else {
        "loaded from"
    };
    eprintln!(
        "\n  WARNING: development mode. The key-encryption key and the service token were {verb}\n  \
         {}. They are NOT for production: set KEY_ENCRYPTION_KEY and\n  \
         SERVICE_AUTH_TOKENS (and SECRETS__MODE=production) for real deployments.\n\n  \
         Service token: {}\n",
        keys.path.display(),
        keys.token.expose_secret()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_generated_once_private_and_reused() {
        let dir = std::env::temp_dir().join(format!("secrets-dev-{}", uuid::Uuid::new_v4()));
        let database = dir.join("nested").join("secrets.db");
        let first = load_or_create(&database).expect("generated");
        assert!(first.generated);
        let second = load_or_create(&database).expect("loaded");
        assert!(!second.generated);
        assert_eq!(first.kek.expose_secret(), second.kek.expose_secret());
        assert_eq!(first.token.expose_secret(), second.token.expose_secret());
        assert_ne!(first.kek.expose_secret(), first.token.expose_secret());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&first.path)
                .expect("stat")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn a_corrupt_keys_file_is_refused_not_replaced() {
        let dir = std::env::temp_dir().join(format!("secrets-dev-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join(FILE_NAME), "not json").expect("write");
        let error = load_or_create(&dir.join("secrets.db")).expect_err("corrupt");
        assert!(matches!(error, DevKeysError::Corrupt(_)));
        assert_eq!(
            std::fs::read_to_string(dir.join(FILE_NAME)).expect("kept"),
            "not json"
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
