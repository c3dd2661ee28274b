//! The storage contract's conformance suite: every check is written once, generic over
//! [`SecretStore`], and runs against every store, so the fake, SQLite and PostgreSQL are held to
//! the same sentences of `secrets_domain::ports`.
//!
//! # Adding a store
//! One line at the bottom of this file, naming the store and a block that builds it:
//!
//! ```ignore
//! conformance_suite!(sqlite, {
//!     let file = TempDb::new();                       // whatever must outlive the test
//!     let store = SqliteStore::open(file.path(), options).await.expect("open");
//!     store.migrate().await.expect("migrate");
//!     (store, file)
//! });
//! ```
//!
//! The block runs at the start of every test (it may `.await`) and yields `(store, guard)`. The
//! guard is whatever must live as long as the test, such as a throwaway database, and is dropped
//! when the test ends; `()` when nothing must. Every test gets a fresh, empty store.
//!
//! # Adding a check
//! Write `pub async fn a_sentence_saying_what_must_hold<S: SecretStore>(store: S)` in
//! `conformance/checks.rs` and add its name to one of the two lists in `conformance_suite!`:
//! `sequential` checks run on the default test runtime; `concurrent` ones on four worker threads,
//! so their tasks really do race. The checks of the import's port (`ImportStore`), and of the
//! access kind every lookup matches, are in `conformance/import.rs` and the `import` list.
//!
//! Ciphertexts here are arbitrary bytes: a store must neither look into nor care about them.

// A test crate's root looks for modules beside it, hence the paths.
#[path = "conformance/checks.rs"]
mod checks;
#[path = "conformance/fixtures.rs"]
mod fixtures;
#[path = "conformance/import.rs"]
mod import;
#[path = "common/sqlite_file.rs"]
mod sqlite_file;
#[path = "common/unconditional.rs"]
mod unconditional;

use std::time::Duration;

use std::num::NonZeroUsize;

use secrets_adapters::postgres::PostgresStore;
use secrets_adapters::testing::TestDatabase;
use secrets_adapters::{Store as _, StoreOptions};
use secrets_domain::testing::InMemoryStore;

use self::sqlite_file::TempDb;

/// Instantiates every check as a test for one store (see the file's documentation).
macro_rules! conformance_suite {
    ($store:ident, $make:block) => {
        mod $store {
            #[allow(unused_imports)]
            use super::*;

            conformance_suite!(@tests $make;
                sequential:
                    a_created_namespace_is_found_by_its_access_hash,
                    many_namespaces_are_created_at_once,
                    a_taken_id_or_access_hash_conflicts_and_creates_nothing,
                    an_unknown_access_hash_finds_nothing,
                    a_namespace_is_read_with_all_its_secrets_byte_for_byte,
                    one_secret_is_read_by_its_index,
                    an_upsert_creates_then_updates_keeping_created_at,
                    writes_into_a_missing_namespace_find_no_namespace,
                    a_full_namespace_refuses_new_names_but_updates_existing_ones,
                    a_patch_deletes_upserts_and_returns_the_namespace_after_it,
                    a_patch_that_would_overflow_writes_nothing,
                    a_patch_may_keep_or_shrink_a_namespace_over_a_lowered_limit,
                    deleting_a_secret_says_whether_there_was_one,
                    deleting_a_namespace_deletes_its_secrets,
                    replacing_an_access_hash_moves_the_namespace_to_the_new_one,
                    replacing_an_access_hash_with_a_taken_one_conflicts,
                    the_first_key_check_written_for_a_key_id_stays,
                    key_ids_in_use_are_the_distinct_ids_of_stored_data_keys,
                    namespaces_are_counted_by_the_key_id_wrapping_their_data_key,
                    wrapped_keys_not_under_the_active_key_are_paged_in_id_order,
                    replacing_wrapped_keys_is_a_compare_and_swap,
                    revisions_start_at_one_and_move_with_every_write,
                    revisions_move_with_every_delete_and_access_key_rotation,
                    a_kek_rotation_changes_no_revision_and_no_version,
                    a_guarded_upsert_writes_only_when_its_precondition_holds,
                    conditional_patches_and_deletes_compare_with_the_current_revision,
                    ping_answers;
                concurrent:
                    concurrent_upserts_of_one_name_leave_one_secret,
                    concurrent_inserts_never_pass_the_limit,
                    concurrent_patches_never_pass_the_limit,
                    concurrent_creates_of_one_access_hash_create_it_once,
                    concurrent_key_checks_for_one_key_id_keep_one,
                    of_many_writers_holding_one_version_exactly_one_wins,
                    of_many_creators_of_one_absent_name_exactly_one_wins,
                    of_many_patches_holding_one_revision_exactly_one_wins;
                import:
                    an_access_hash_finds_only_a_namespace_of_its_own_kind,
                    rotating_an_imported_key_gives_the_namespace_a_native_one,
                    an_import_creates_its_namespace_secrets_and_record_once,
                    imports_are_listed_by_original_id_range_in_order,
                    an_update_applies_only_in_the_state_it_was_computed_from,
                    a_namespace_deleted_here_keeps_its_record_without_it,
                    removing_an_imported_namespace_is_a_compare_and_swap,
            );
        }
    };
    (@tests $make:block;
        sequential: $($sequential:ident),* $(,)?;
        concurrent: $($concurrent:ident),* $(,)?;
        import: $($import:ident),* $(,)?
    ) => {
        $(
            #[tokio::test]
            async fn $sequential() {
                let (store, _guard) = $make;
                crate::checks::$sequential(store).await;
            }
        )*
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $concurrent() {
                let (store, _guard) = $make;
                crate::checks::$concurrent(store).await;
            }
        )*
        $(
            #[tokio::test]
            async fn $import() {
                let (store, _guard) = $make;
                crate::import::$import(store).await;
            }
        )*
    };
}

conformance_suite!(in_memory, { (InMemoryStore::new(), ()) });

conformance_suite!(postgres, {
    let database = TestDatabase::create().await;
    let options = StoreOptions {
        pool_size: NonZeroUsize::new(8).expect("non-zero"),
        timeout: Duration::from_secs(10),
    };
    let store = PostgresStore::open(&database.url().to_owned().into(), options)
        .await
        .expect("build the pool");
    store.migrate().await.expect("migrate the test database");
    (store, database)
});

conformance_suite!(sqlite, {
    use secrets_adapters::sqlite::SqliteStore;

    let file = TempDb::new();
    let options = StoreOptions {
        pool_size: NonZeroUsize::new(8).expect("non-zero"),
        timeout: Duration::from_secs(10),
    };
    let store = SqliteStore::open(file.path(), options).await.expect("open");
    store.migrate().await.expect("migrate the test database");
    (store, file)
});
