//! A throwaway SQLite database file for one test, under the system's temp directory.

use std::path::{Path, PathBuf};

/// A database file of one test, deleted with its `-wal`, `-shm` and `-journal` companions when
/// dropped, also when the test panics. A test may use the path as a directory instead, to hold
/// its database deeper down; then the directory goes.
pub struct TempDb {
    path: PathBuf,
}

impl TempDb {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!(
            "secrets-test-{}-{}.db",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        // Removing is best effort: what is already gone, or cannot go, leaves the test's outcome
        // as it is.
        if self.path.is_dir() {
            drop(std::fs::remove_dir_all(&self.path));
            return;
        }
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut file = self.path.clone().into_os_string();
            file.push(suffix);
            drop(std::fs::remove_file(file));
        }
    }
}
