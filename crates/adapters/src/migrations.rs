//! The schema migrations of both stores, and what running them means whatever the backend.
//!
//! Each store's migrations are `.sql` files under `migrations/<store>/`, embedded here at build
//! time so that the one binary carries its schema. Their names are mirrored (`0001_init.sql` in
//! both folders), and they are append only: a released migration is never edited, only
//! followed.
//!
//! A run is the same on both stores: read the versions the database has recorded in
//! `schema_migrations`, [`plan`] from them which migrations are pending and whether the database
//! is newer than this binary, apply and record each pending one in order, and
//! [`Plan::finish`] into the [`MigrationReport`]. What differs is only how a store makes that
//! one transaction that concurrent migrators take turns at (an advisory lock on PostgreSQL, an
//! `IMMEDIATE` transaction on SQLite's writer), so each store writes only that part.

use crate::store::{AppliedMigration, MigrationReport};

/// One migration, embedded at build time.
#[derive(Debug)]
pub(crate) struct Migration {
    /// The number its file name starts with.
    pub version: i64,
    /// The rest of its file name.
    pub name: &'static str,
    /// The file's statements.
    pub sql: &'static str,
}

/// PostgreSQL's migrations, in the order they apply.
pub(crate) const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "revisions",
        sql: include_str!("../../../migrations/postgres/0002_revisions.sql"),
    },
    Migration {
        version: 3,
        name: "original_import",
        sql: include_str!("../../../migrations/postgres/0003_original_import.sql"),
    },
];

/// SQLite's migrations, in the order they apply (mirroring [`POSTGRES`]).
pub(crate) const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../../migrations/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "revisions",
        sql: include_str!("../../../migrations/sqlite/0002_revisions.sql"),
    },
    Migration {
        version: 3,
        name: "original_import",
        sql: include_str!("../../../migrations/sqlite/0003_original_import.sql"),
    },
];

/// What a migration run is to do, given what the database has recorded.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The migrations the database has not recorded, in the order they apply.
    pub pending: Vec<&'static Migration>,
    /// The newest version this binary knows.
    known: i64,
    /// The newest recorded version, when it is newer than `known`.
    newer_in_database: Option<i64>,
}

/// Plans a run of `migrations` on a database that has recorded the versions `recorded`.
pub(crate) fn plan(migrations: &'static [Migration], recorded: &[i64]) -> Plan {
    let known = migrations.last().map_or(0, |m| m.version);
    Plan {
        pending: migrations
            .iter()
            .filter(|m| !recorded.contains(&m.version))
            .collect(),
        known,
        newer_in_database: recorded.iter().copied().filter(|v| *v > known).max(),
    }
}

impl Plan {
    /// The pending migrations, as a report names them.
    pub(crate) fn pending(&self) -> Vec<AppliedMigration> {
        self.pending
            .iter()
            .map(|m| AppliedMigration {
                version: m.version,
                name: m.name,
            })
            .collect()
    }

    /// The report of the run, once its transaction has committed every pending migration; logs
    /// what it applied, and a warning when the database's schema is newer than this binary's.
    pub(crate) fn finish(self) -> MigrationReport {
        if let Some(newer) = self.newer_in_database {
            tracing::warn!(
                database = newer,
                binary = self.known,
                "the database schema is newer than this binary's migrations"
            );
        }
        for migration in &self.pending {
            tracing::info!(
                version = migration.version,
                name = migration.name,
                "applied migration"
            );
        }
        MigrationReport {
            applied: self.pending(),
            newer_in_database: self.newer_in_database,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREE: &[Migration] = &[
        Migration {
            version: 1,
            name: "init",
            sql: "",
        },
        Migration {
            version: 2,
            name: "audit",
            sql: "",
        },
        Migration {
            version: 3,
            name: "versions",
            sql: "",
        },
    ];

    fn applied(report: &MigrationReport) -> Vec<i64> {
        report.applied.iter().map(|m| m.version).collect()
    }

    #[test]
    fn a_fresh_database_gets_every_migration_in_order() {
        let report = plan(THREE, &[]).finish();
        assert_eq!(applied(&report), [1, 2, 3]);
        assert_eq!(report.applied[1].name, "audit");
        assert_eq!(report.newer_in_database, None);
    }

    #[test]
    fn only_the_unrecorded_migrations_are_pending() {
        assert_eq!(applied(&plan(THREE, &[1, 3]).finish()), [2]);
        assert_eq!(plan(THREE, &[3, 2, 1]).finish(), MigrationReport::default());
    }

    #[test]
    fn a_database_newer_than_the_binary_is_reported_with_its_newest_version() {
        let report = plan(THREE, &[1, 2, 3, 5, 4]).finish();
        assert_eq!(applied(&report), Vec::<i64>::new());
        assert_eq!(report.newer_in_database, Some(5));
    }

    #[test]
    fn the_embedded_lists_are_mirrored_and_in_order() {
        let versions = |list: &[Migration]| -> Vec<(i64, &str)> {
            list.iter().map(|m| (m.version, m.name)).collect()
        };
        assert_eq!(versions(POSTGRES), versions(SQLITE));
        assert!(POSTGRES.windows(2).all(|w| w[0].version < w[1].version));
    }
}
