//! The checks, one per promise of [`SecretStore`]'s documentation. Each takes a fresh, empty store.

use std::collections::HashSet;
use std::sync::Arc;

use secrets_domain::etag::{Condition, Revision, Tags};
use secrets_domain::model::{KeyId, NamespaceId};
use secrets_domain::ports::{
    Guard, KeyCheck, NamespaceRecord, NewNamespace, SealedSecret, SecretStore, StoreError, Upserted,
};
use tokio::sync::Barrier;
use uuid::Uuid;

use crate::fixtures::{access_hash, by_index, index, namespace, sealed, secret, wrapped};
use crate::unconditional::Unconditional as _;

/// The record of a namespace as created, at its first revision.
fn record(ns: &NewNamespace) -> NamespaceRecord {
    record_at(ns, 1)
}

/// The record of a namespace at revision `n`.
fn record_at(ns: &NewNamespace, n: u64) -> NamespaceRecord {
    NamespaceRecord {
        id: ns.id,
        data_key: ns.data_key.clone(),
        revision: rev(n),
    }
}

fn rev(n: u64) -> Revision {
    Revision::new(n).expect("a revision")
}

async fn created<S: SecretStore>(store: &S, key_id: &str) -> NewNamespace {
    let ns = namespace(key_id);
    store
        .create_namespaces(std::slice::from_ref(&ns))
        .await
        .expect("create a namespace");
    ns
}

async fn with_secrets<S: SecretStore>(store: &S, count: u8) -> NewNamespace {
    let ns = created(store, "kek-a").await;
    for n in 0..count {
        let upserted = store
            .upsert(ns.id, &secret(n, &[n, 0xee]), 1_000)
            .await
            .expect("upsert");
        assert_eq!(upserted, Upserted::Created);
    }
    ns
}

async fn secrets_of<S: SecretStore>(store: &S, ns: &NewNamespace) -> Vec<SealedSecret> {
    let (_, secrets) = store
        .read_namespace(&ns.access_hash)
        .await
        .expect("read")
        .expect("the namespace exists");
    sealed(secrets)
}

// ---------------------------------------------------------------------------------------------
// Namespaces
// ---------------------------------------------------------------------------------------------

pub async fn a_created_namespace_is_found_by_its_access_hash<S: SecretStore>(store: S) {
    let ns = created(&store, "kek-a").await;

    let found = store.find_namespace(&ns.access_hash).await.expect("find");
    assert_eq!(found, Some(record(&ns)));

    let read = store.read_namespace(&ns.access_hash).await.expect("read");
    assert_eq!(
        read,
        Some((record(&ns), vec![])),
        "a new namespace has no secrets"
    );
}

pub async fn many_namespaces_are_created_at_once<S: SecretStore>(store: S) {
    store
        .create_namespaces(&[])
        .await
        .expect("an empty batch is fine");

    let batch: Vec<_> = (0..50).map(|_| namespace("kek-a")).collect();
    store.create_namespaces(&batch).await.expect("create");

    for ns in &batch {
        let found = store.find_namespace(&ns.access_hash).await.expect("find");
        assert_eq!(found, Some(record(ns)));
    }
}

pub async fn a_taken_id_or_access_hash_conflicts_and_creates_nothing<S: SecretStore>(store: S) {
    let taken = created(&store, "kek-a").await;

    let fresh = namespace("kek-a");
    let same_hash = NewNamespace {
        access_hash: taken.access_hash,
        ..namespace("kek-a")
    };
    let result = store.create_namespaces(&[fresh.clone(), same_hash]).await;
    assert!(matches!(result, Err(StoreError::Conflict)), "{result:?}");

    let same_id = NewNamespace {
        id: taken.id,
        ..namespace("kek-a")
    };
    let result = store
        .create_namespaces(&[fresh.clone(), same_id.clone()])
        .await;
    assert!(matches!(result, Err(StoreError::Conflict)), "{result:?}");

    let twice_in_one_batch = namespace("kek-a");
    let twin = NewNamespace {
        access_hash: twice_in_one_batch.access_hash,
        ..namespace("kek-a")
    };
    let result = store
        .create_namespaces(&[fresh.clone(), twice_in_one_batch, twin])
        .await;
    assert!(matches!(result, Err(StoreError::Conflict)), "{result:?}");

    // All or none: the valid namespace of each refused batch was not created either.
    let found = store
        .find_namespace(&fresh.access_hash)
        .await
        .expect("find");
    assert_eq!(found, None);
    let found = store
        .find_namespace(&same_id.access_hash)
        .await
        .expect("find");
    assert_eq!(found, None);
    let found = store
        .find_namespace(&taken.access_hash)
        .await
        .expect("find");
    assert_eq!(
        found,
        Some(record(&taken)),
        "the namespace that was there is untouched"
    );
}

pub async fn an_unknown_access_hash_finds_nothing<S: SecretStore>(store: S) {
    created(&store, "kek-a").await;
    let unknown = access_hash();

    assert_eq!(store.find_namespace(&unknown).await.expect("find"), None);
    assert_eq!(store.read_namespace(&unknown).await.expect("read"), None);
    assert!(!store.drop_namespace(&unknown).await.expect("delete"));
    let replaced = store.rehash(&unknown, &access_hash()).await;
    assert!(!replaced.expect("replace"));
}

pub async fn a_namespace_is_read_with_all_its_secrets_byte_for_byte<S: SecretStore>(store: S) {
    let ns = created(&store, "kek-a").await;
    let other = created(&store, "kek-a").await;
    // Any bytes at all, including none, NUL, invalid UTF-8, and more than a page of them.
    let written = vec![
        secret(1, b""),
        secret(2, &[0x00, 0xff, 0xfe, 0x00]),
        secret(3, &vec![0xa5; 70_000]),
    ];
    for s in &written {
        let upserted = store.upsert(ns.id, s, 1_000).await.expect("upsert");
        assert_eq!(upserted, Upserted::Created);
    }
    store
        .upsert(other.id, &secret(9, b"another namespace"), 1_000)
        .await
        .expect("upsert elsewhere");

    let (found, secrets) = store
        .read_namespace(&ns.access_hash)
        .await
        .expect("read")
        .expect("the namespace exists");
    assert_eq!(found, record_at(&ns, 4), "three writes after its creation");
    assert_eq!(
        sealed(secrets.clone()),
        written,
        "exactly this namespace's secrets"
    );
    for s in &secrets {
        assert!(s.created_at <= s.updated_at);
        let one = store.get_secret(ns.id, &s.sealed.index).await.expect("get");
        assert_eq!(
            one.as_ref(),
            Some(s),
            "get_secret agrees with read_namespace"
        );
    }
}

pub async fn one_secret_is_read_by_its_index<S: SecretStore>(store: S) {
    let ns = with_secrets(&store, 3).await;

    let one = store.get_secret(ns.id, &index(1)).await.expect("get");
    assert_eq!(one.map(|s| s.sealed), Some(secret(1, &[1, 0xee])));

    let absent = store.get_secret(ns.id, &index(7)).await.expect("get");
    assert_eq!(absent, None, "no such name");

    let missing = NamespaceId::from_uuid(Uuid::new_v4());
    let absent = store.get_secret(missing, &index(1)).await.expect("get");
    assert_eq!(absent, None, "no such namespace");
}

pub async fn an_upsert_creates_then_updates_keeping_created_at<S: SecretStore>(store: S) {
    let ns = created(&store, "kek-a").await;

    let first = secret(1, b"first value");
    let upserted = store.upsert(ns.id, &first, 10).await.expect("create");
    assert_eq!(upserted, Upserted::Created);
    let before = store
        .get_secret(ns.id, &first.index)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(before.sealed, first);
    assert!(before.created_at <= before.updated_at);

    // The same index with new bytes for both the name and the value: a re-encryption of both.
    let second = SealedSecret {
        index: first.index,
        name: b"re-sealed name".to_vec(),
        value: b"second value".to_vec(),
    };
    let upserted = store.upsert(ns.id, &second, 10).await.expect("update");
    assert_eq!(upserted, Upserted::Updated);
    let after = store
        .get_secret(ns.id, &first.index)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(after.sealed, second, "the bytes are replaced");
    assert_eq!(after.created_at, before.created_at, "created_at is kept");
    assert!(
        after.updated_at >= before.updated_at,
        "updated_at does not move back"
    );
    assert_eq!(
        secrets_of(&store, &ns).await,
        vec![second],
        "still one secret"
    );
}

pub async fn writes_into_a_missing_namespace_find_no_namespace<S: SecretStore>(store: S) {
    created(&store, "kek-a").await;
    let missing = NamespaceId::from_uuid(Uuid::new_v4());

    let result = store.upsert(missing, &secret(1, b"v"), 10).await;
    assert!(
        matches!(result, Err(StoreError::NamespaceNotFound)),
        "{result:?}"
    );

    let result = store
        .patch(missing, &[secret(1, b"v")], &[index(2)], 10)
        .await;
    assert!(
        matches!(result, Err(StoreError::NamespaceNotFound)),
        "{result:?}"
    );

    let result = store.patch(missing, &[], &[], 10).await;
    assert!(
        matches!(result, Err(StoreError::NamespaceNotFound)),
        "{result:?}"
    );

    let deleted = store.delete(missing, &index(1)).await.expect("delete");
    assert!(!deleted);
}

pub async fn a_full_namespace_refuses_new_names_but_updates_existing_ones<S: SecretStore>(
    store: S,
) {
    let ns = with_secrets(&store, 3).await;

    let result = store.upsert(ns.id, &secret(3, b"one too many"), 3).await;
    assert!(
        matches!(result, Err(StoreError::NamespaceFull)),
        "{result:?}"
    );
    let absent = store.get_secret(ns.id, &index(3)).await.expect("get");
    assert_eq!(absent, None, "a refused write writes nothing");

    let upserted = store.upsert(ns.id, &secret(1, b"new value"), 3).await;
    assert_eq!(upserted.expect("an update fits"), Upserted::Updated);

    // A limit lowered below what a namespace holds: updates still work, new names do not.
    let upserted = store.upsert(ns.id, &secret(2, b"newer value"), 1).await;
    assert_eq!(upserted.expect("an update fits"), Upserted::Updated);
    let result = store.upsert(ns.id, &secret(4, b"v"), 1).await;
    assert!(
        matches!(result, Err(StoreError::NamespaceFull)),
        "{result:?}"
    );

    // Room made by a delete is room.
    assert!(store.delete(ns.id, &index(0)).await.expect("delete"));
    let upserted = store.upsert(ns.id, &secret(3, b"fits now"), 3).await;
    assert_eq!(upserted.expect("there is room"), Upserted::Created);

    let expected = vec![
        secret(1, b"new value"),
        secret(2, b"newer value"),
        secret(3, b"fits now"),
    ];
    assert_eq!(secrets_of(&store, &ns).await, expected);
}

// ---------------------------------------------------------------------------------------------
// Patches
// ---------------------------------------------------------------------------------------------

pub async fn a_patch_deletes_upserts_and_returns_the_namespace_after_it<S: SecretStore>(store: S) {
    let ns = with_secrets(&store, 3).await;
    let kept_before = store
        .get_secret(ns.id, &index(1))
        .await
        .expect("get")
        .expect("stored");

    let upserts = [secret(1, b"changed"), secret(5, b"added")];
    // Index 9 was never there: deleting it is not an error.
    let deletes = [index(0), index(9)];
    let returned = store
        .patch(ns.id, &upserts, &deletes, 10)
        .await
        .expect("patch");

    let expected = vec![
        secret(1, b"changed"),
        secret(2, &[2, 0xee]),
        secret(5, b"added"),
    ];
    assert_eq!(
        sealed(returned.clone()),
        expected,
        "the namespace after the patch"
    );
    let (_, stored) = store
        .read_namespace(&ns.access_hash)
        .await
        .expect("read")
        .expect("the namespace exists");
    assert_eq!(
        by_index(returned.clone()),
        by_index(stored),
        "what is returned is what is stored"
    );

    let changed = returned
        .iter()
        .find(|s| s.sealed.index == index(1))
        .expect("the changed secret");
    assert_eq!(
        changed.created_at, kept_before.created_at,
        "an update keeps created_at"
    );
    assert!(changed.updated_at >= kept_before.updated_at);

    let unchanged = store
        .patch(ns.id, &[], &[], 10)
        .await
        .expect("an empty patch");
    assert_eq!(
        by_index(unchanged),
        by_index(returned),
        "an empty patch changes nothing"
    );
}

pub async fn a_patch_that_would_overflow_writes_nothing<S: SecretStore>(store: S) {
    let ns = with_secrets(&store, 2).await;
    let before = secrets_of(&store, &ns).await;

    // Two new names on two present, with a limit of three, even with a delete of an absent one.
    let upserts = [secret(0, b"changed"), secret(2, b"new"), secret(3, b"new")];
    let result = store.patch(ns.id, &upserts, &[index(9)], 3).await;
    assert!(
        matches!(result, Err(StoreError::NamespaceFull)),
        "{result:?}"
    );
    assert_eq!(
        secrets_of(&store, &ns).await,
        before,
        "all of it or none of it"
    );

    // The same patch with a delete of a present name ends at the limit, which is allowed.
    let returned = store
        .patch(ns.id, &upserts, &[index(1)], 3)
        .await
        .expect("fits");
    let expected = vec![secret(0, b"changed"), secret(2, b"new"), secret(3, b"new")];
    assert_eq!(sealed(returned), expected);
}

pub async fn a_patch_may_keep_or_shrink_a_namespace_over_a_lowered_limit<S: SecretStore>(store: S) {
    let ns = with_secrets(&store, 4).await;

    // Four secrets, limit two: swapping one name for another does not grow the namespace.
    let returned = store
        .patch(
            ns.id,
            &[secret(1, b"changed"), secret(7, b"new")],
            &[index(0)],
            2,
        )
        .await
        .expect("not growing is allowed");
    assert_eq!(returned.len(), 4);

    let result = store.patch(ns.id, &[secret(8, b"new")], &[], 2).await;
    assert!(
        matches!(result, Err(StoreError::NamespaceFull)),
        "{result:?}"
    );

    let returned = store
        .patch(ns.id, &[], &[index(1), index(2)], 2)
        .await
        .expect("shrinking is allowed");
    assert_eq!(
        sealed(returned),
        vec![secret(3, &[3, 0xee]), secret(7, b"new")]
    );
}

// ---------------------------------------------------------------------------------------------
// Deletes and access keys
// ---------------------------------------------------------------------------------------------

pub async fn deleting_a_secret_says_whether_there_was_one<S: SecretStore>(store: S) {
    let ns = with_secrets(&store, 2).await;

    assert!(store.delete(ns.id, &index(0)).await.expect("delete"));
    assert!(!store.delete(ns.id, &index(0)).await.expect("delete again"));
    assert!(!store.delete(ns.id, &index(9)).await.expect("delete absent"));
    assert_eq!(store.get_secret(ns.id, &index(0)).await.expect("get"), None);
    assert_eq!(secrets_of(&store, &ns).await, vec![secret(1, &[1, 0xee])]);
}

pub async fn deleting_a_namespace_deletes_its_secrets<S: SecretStore>(store: S) {
    let ns = with_secrets(&store, 3).await;
    let other = with_secrets(&store, 1).await;

    assert!(store.drop_namespace(&ns.access_hash).await.expect("delete"));

    assert_eq!(
        store.find_namespace(&ns.access_hash).await.expect("find"),
        None
    );
    assert_eq!(
        store.read_namespace(&ns.access_hash).await.expect("read"),
        None
    );
    for n in 0..3 {
        let gone = store.get_secret(ns.id, &index(n)).await.expect("get");
        assert_eq!(gone, None, "secret {n} went with its namespace");
    }
    let result = store.upsert(ns.id, &secret(0, b"v"), 10).await;
    assert!(
        matches!(result, Err(StoreError::NamespaceNotFound)),
        "{result:?}"
    );
    assert!(
        !store
            .drop_namespace(&ns.access_hash)
            .await
            .expect("delete again")
    );

    assert_eq!(
        secrets_of(&store, &other).await.len(),
        1,
        "other namespaces are untouched"
    );
}

pub async fn replacing_an_access_hash_moves_the_namespace_to_the_new_one<S: SecretStore>(store: S) {
    let ns = with_secrets(&store, 2).await;
    let before = secrets_of(&store, &ns).await;
    let new = access_hash();

    assert!(store.rehash(&ns.access_hash, &new).await.expect("replace"));

    assert_eq!(
        store
            .find_namespace(&ns.access_hash)
            .await
            .expect("find old"),
        None
    );
    assert_eq!(
        store
            .read_namespace(&ns.access_hash)
            .await
            .expect("read old"),
        None
    );
    let found = store.find_namespace(&new).await.expect("find new");
    assert_eq!(
        found,
        Some(record_at(&ns, 4)),
        "the same namespace, same data key"
    );
    let moved = NewNamespace {
        access_hash: new,
        ..ns.clone()
    };
    assert_eq!(secrets_of(&store, &moved).await, before, "with its secrets");

    let again = store.rehash(&ns.access_hash, &access_hash()).await;
    assert!(
        !again.expect("replace again"),
        "the old hash finds nothing to replace"
    );
    assert!(
        !store
            .drop_namespace(&ns.access_hash)
            .await
            .expect("delete by old")
    );
}

pub async fn replacing_an_access_hash_with_a_taken_one_conflicts<S: SecretStore>(store: S) {
    let ns = created(&store, "kek-a").await;
    let other = created(&store, "kek-a").await;

    let result = store.rehash(&ns.access_hash, &other.access_hash).await;
    assert!(matches!(result, Err(StoreError::Conflict)), "{result:?}");

    let found = store.find_namespace(&ns.access_hash).await.expect("find");
    assert_eq!(
        found,
        Some(record(&ns)),
        "a refused replacement changes nothing"
    );
    let found = store
        .find_namespace(&other.access_hash)
        .await
        .expect("find");
    assert_eq!(found, Some(record(&other)));
}

// ---------------------------------------------------------------------------------------------
// Revisions and preconditions
// ---------------------------------------------------------------------------------------------

/// `If-Match` with these revisions.
fn if_match(revisions: &[u64]) -> Condition<Revision> {
    Condition {
        if_match: Some(Tags::List(revisions.iter().map(|n| rev(*n)).collect())),
        if_none_match: None,
    }
}

/// `If-None-Match: *`.
fn if_absent() -> Condition<Revision> {
    Condition {
        if_match: None,
        if_none_match: Some(Tags::Any),
    }
}

fn on_secret(condition: Condition<Revision>) -> Guard {
    Guard {
        secret: condition,
        ..Guard::default()
    }
}

fn on_namespace(condition: Condition<Revision>) -> Guard {
    Guard {
        namespace: condition,
        ..Guard::default()
    }
}

async fn revision_of<S: SecretStore>(store: &S, ns: &NewNamespace) -> u64 {
    let (id, revision) = store
        .find_revision(&ns.access_hash)
        .await
        .expect("find the revision")
        .expect("the namespace exists");
    assert_eq!(id, ns.id);
    revision.get()
}

async fn version_of<S: SecretStore>(store: &S, ns: &NewNamespace, n: u8) -> Option<u64> {
    let secret = store.get_secret(ns.id, &index(n)).await.expect("get");
    secret.map(|s| s.version.get())
}

pub async fn revisions_start_at_one_and_move_with_every_write<S: SecretStore>(store: S) {
    let ns = created(&store, "kek-a").await;
    let other = created(&store, "kek-a").await;
    assert_eq!(revision_of(&store, &ns).await, 1, "a new namespace");
    let none = Guard::default();

    let written = store
        .upsert_secret(ns.id, &secret(1, b"a"), 10, &none)
        .await
        .expect("create");
    assert_eq!(
        (written.upserted, written.revision),
        (Upserted::Created, rev(2))
    );
    assert_eq!(
        version_of(&store, &ns, 1).await,
        Some(2),
        "its version is the new revision"
    );
    let written = store
        .upsert_secret(ns.id, &secret(1, b"b"), 10, &none)
        .await
        .expect("update");
    assert_eq!(
        (written.upserted, written.revision),
        (Upserted::Updated, rev(3))
    );
    store
        .upsert_secret(ns.id, &secret(2, b"c"), 10, &none)
        .await
        .expect("another");
    assert_eq!(revision_of(&store, &ns).await, 4);
    assert_eq!(
        version_of(&store, &ns, 1).await,
        Some(3),
        "the other secret's version stays"
    );

    // A refused write moves nothing.
    let full = store.upsert_secret(ns.id, &secret(3, b"d"), 2, &none).await;
    assert!(matches!(full, Err(StoreError::NamespaceFull)), "{full:?}");
    assert_eq!(revision_of(&store, &ns).await, 4);

    // A patch that changes nothing moves nothing; one that does moves it once.
    let none_c = Condition::default();
    let patched = store
        .apply_patch(ns.id, &[], &[index(9)], 10, &none_c)
        .await;
    assert_eq!(patched.expect("an empty patch").revision, rev(4));
    let patched = store
        .apply_patch(
            ns.id,
            &[secret(3, b"e"), secret(4, b"f")],
            &[index(2)],
            10,
            &none_c,
        )
        .await
        .expect("a patch");
    assert_eq!(patched.revision, rev(5));
    let versions: Vec<_> = by_index(patched.secrets)
        .iter()
        .map(|s| s.version.get())
        .collect();
    assert_eq!(
        versions,
        [3, 5, 5],
        "what the patch wrote is at its revision"
    );
    let deleting = store
        .apply_patch(ns.id, &[], &[index(3)], 10, &none_c)
        .await;
    assert_eq!(deleting.expect("a delete").revision, rev(6));

    assert_eq!(
        revision_of(&store, &other).await,
        1,
        "other namespaces are untouched"
    );
}

pub async fn revisions_move_with_every_delete_and_access_key_rotation<S: SecretStore>(store: S) {
    let ns = with_secrets(&store, 3).await;
    let none = Guard::default();
    let deleting = store
        .apply_patch(ns.id, &[], &[index(2)], 10, &Condition::default())
        .await;
    assert_eq!(deleting.expect("a delete").revision, rev(5));
    assert_eq!(
        store
            .delete_secret(ns.id, &index(0), &none)
            .await
            .expect("delete"),
        Some(rev(6))
    );

    // Deletes move it when they delete; a secret written again gets a version it never had.
    assert_eq!(
        store
            .delete_secret(ns.id, &index(1), &none)
            .await
            .expect("delete"),
        Some(rev(7))
    );
    assert_eq!(
        store
            .delete_secret(ns.id, &index(1), &none)
            .await
            .expect("again"),
        None
    );
    assert_eq!(revision_of(&store, &ns).await, 7);
    store
        .upsert_secret(ns.id, &secret(1, b"back"), 10, &none)
        .await
        .expect("written again");
    assert_eq!(version_of(&store, &ns, 1).await, Some(8));

    // An access-key rotation is a change inside the namespace too.
    let new = NewNamespace {
        access_hash: access_hash(),
        ..ns.clone()
    };
    assert_eq!(
        store
            .replace_access_hash(&ns.access_hash, &new.access_hash)
            .await
            .expect("rotate"),
        Some(ns.id)
    );
    assert_eq!(revision_of(&store, &new).await, 9);
    let (record, secrets) = store
        .read_namespace(&new.access_hash)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        record,
        record_at(&ns, 9),
        "the hot read carries the revision"
    );
    assert!(secrets.iter().all(|s| s.version.get() <= 9));
    assert_eq!(
        store.find_namespace(&new.access_hash).await.expect("find"),
        Some(record_at(&ns, 9))
    );
}

pub async fn a_kek_rotation_changes_no_revision_and_no_version<S: SecretStore>(store: S) {
    let ns = with_secrets(&store, 3).await;
    let before = store
        .read_namespace(&ns.access_hash)
        .await
        .expect("read")
        .expect("exists");
    let updates = [(before.0.clone(), wrapped("kek-b", b"re-wrapped"))];
    assert_eq!(
        store.replace_wrapped_keys(&updates).await.expect("rewrap"),
        vec![before.0.id]
    );
    let (record, secrets) = store
        .read_namespace(&ns.access_hash)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(record.data_key, updates[0].1, "re-wrapped");
    assert_eq!(record.revision, before.0.revision, "the revision stays");
    assert_eq!(
        by_index(secrets),
        by_index(before.1),
        "and every version with it"
    );
}

pub async fn a_guarded_upsert_writes_only_when_its_precondition_holds<S: SecretStore>(store: S) {
    let ns = with_secrets(&store, 2).await;
    // Revision 3: secrets 0 and 1 at versions 2 and 3.
    let before = secrets_of(&store, &ns).await;
    let refused = [
        (
            "a stale namespace revision",
            1,
            on_namespace(if_match(&[2])),
        ),
        (
            "no revision the caller knows",
            1,
            on_namespace(if_match(&[])),
        ),
        (
            "If-None-Match: * on a namespace",
            1,
            on_namespace(if_absent()),
        ),
        ("a stale secret version", 1, on_secret(if_match(&[2]))),
        (
            "If-None-Match: * on an existing secret",
            1,
            on_secret(if_absent()),
        ),
        ("If-Match on an absent secret", 7, on_secret(if_match(&[3]))),
        (
            "If-Match: * on an absent secret",
            7,
            on_secret(Condition {
                if_match: Some(Tags::Any),
                if_none_match: None,
            }),
        ),
    ];
    for (why, n, guard) in &refused {
        let result = store
            .upsert_secret(ns.id, &secret(*n, b"x"), 10, guard)
            .await;
        assert!(
            matches!(result, Err(StoreError::PreconditionFailed)),
            "{why}: {result:?}"
        );
    }
    assert_eq!(
        secrets_of(&store, &ns).await,
        before,
        "a refused write writes nothing"
    );
    assert_eq!(revision_of(&store, &ns).await, 3, "and moves nothing");

    // The precondition comes before the limit, and a missing namespace before both.
    let result = store
        .upsert_secret(ns.id, &secret(7, b"x"), 2, &on_secret(if_match(&[1])))
        .await;
    assert!(
        matches!(result, Err(StoreError::PreconditionFailed)),
        "{result:?}"
    );
    let missing = NamespaceId::from_uuid(Uuid::new_v4());
    let result = store
        .upsert_secret(missing, &secret(1, b"x"), 10, &on_namespace(if_match(&[3])))
        .await;
    assert!(
        matches!(result, Err(StoreError::NamespaceNotFound)),
        "{result:?}"
    );

    let accepted = [
        (
            "the namespace's revision",
            1,
            on_namespace(if_match(&[1, 3])),
            4,
        ),
        ("the secret's version", 1, on_secret(if_match(&[4])), 5),
        (
            "If-None-Match: * on an absent secret",
            7,
            on_secret(if_absent()),
            6,
        ),
        (
            "If-None-Match with a stale version",
            7,
            on_secret(Condition {
                if_match: None,
                if_none_match: Some(Tags::List(vec![rev(2)])),
            }),
            7,
        ),
    ];
    for (why, n, guard, expected) in &accepted {
        let written = store
            .upsert_secret(ns.id, &secret(*n, why.as_bytes()), 10, guard)
            .await;
        assert_eq!(written.expect(why).revision, rev(*expected), "{why}");
        assert_eq!(version_of(&store, &ns, *n).await, Some(*expected), "{why}");
    }
}

pub async fn conditional_patches_and_deletes_compare_with_the_current_revision<S: SecretStore>(
    store: S,
) {
    let ns = with_secrets(&store, 2).await;
    let before = secrets_of(&store, &ns).await;
    let result = store
        .apply_patch(ns.id, &[secret(5, b"x")], &[index(0)], 10, &if_match(&[2]))
        .await;
    assert!(
        matches!(result, Err(StoreError::PreconditionFailed)),
        "{result:?}"
    );
    assert_eq!(
        secrets_of(&store, &ns).await,
        before,
        "all of it or none of it"
    );
    let patched = store
        .apply_patch(ns.id, &[secret(5, b"x")], &[index(0)], 10, &if_match(&[3]))
        .await
        .expect("the current revision");
    assert_eq!(patched.revision, rev(4));

    // Secret 1 is at version 3.
    let result = store
        .delete_secret(ns.id, &index(1), &on_secret(if_match(&[2])))
        .await;
    assert!(
        matches!(result, Err(StoreError::PreconditionFailed)),
        "{result:?}"
    );
    assert_eq!(version_of(&store, &ns, 1).await, Some(3), "still there");
    let absent = store
        .delete_secret(ns.id, &index(9), &on_secret(if_match(&[3])))
        .await;
    assert_eq!(
        absent.expect("absent"),
        None,
        "an absent secret is absent, not a failure"
    );
    let deleted = store
        .delete_secret(ns.id, &index(1), &on_secret(if_match(&[3])))
        .await;
    assert_eq!(deleted.expect("deleted"), Some(rev(5)));

    let result = store
        .delete_namespace(&ns.access_hash, &if_match(&[4]))
        .await;
    assert!(
        matches!(result, Err(StoreError::PreconditionFailed)),
        "{result:?}"
    );
    assert_eq!(revision_of(&store, &ns).await, 5, "still there");
    let deleted = store
        .delete_namespace(&ns.access_hash, &if_match(&[5]))
        .await;
    assert_eq!(deleted.expect("deleted"), Some(ns.id));
    let again = store
        .delete_namespace(&ns.access_hash, &if_match(&[5]))
        .await;
    assert_eq!(again.expect("gone"), None);
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

fn check(key_id: &str, bytes: &[u8]) -> KeyCheck {
    KeyCheck {
        key_id: KeyId::new(key_id),
        ciphertext: bytes.to_vec(),
    }
}

pub async fn the_first_key_check_written_for_a_key_id_stays<S: SecretStore>(store: S) {
    assert_eq!(store.key_checks().await.expect("none yet"), vec![]);

    store
        .add_key_check(&check("kek-b", b"first b"))
        .await
        .expect("add");
    store
        .add_key_check(&check("kek-a", b"first a"))
        .await
        .expect("add");
    store
        .add_key_check(&check("kek-b", b"second b"))
        .await
        .expect("add again");

    let mut checks = store.key_checks().await.expect("checks");
    checks.sort_by(|x, y| x.key_id.cmp(&y.key_id));
    assert_eq!(
        checks,
        vec![check("kek-a", b"first a"), check("kek-b", b"first b")]
    );
}

pub async fn key_ids_in_use_are_the_distinct_ids_of_stored_data_keys<S: SecretStore>(store: S) {
    let ids = |ids: Vec<KeyId>| -> Vec<String> {
        let mut ids: Vec<_> = ids.iter().map(|id| id.as_str().to_owned()).collect();
        ids.sort();
        ids
    };
    assert_eq!(
        ids(store.key_ids_in_use().await.expect("empty")),
        Vec::<String>::new()
    );

    let batch: Vec<_> = ["kek-b", "kek-a", "kek-b", "kek-c", "kek-a"]
        .into_iter()
        .map(namespace)
        .collect();
    store.create_namespaces(&batch).await.expect("create");
    // A key check alone is not a data key.
    store
        .add_key_check(&check("kek-z", b"check"))
        .await
        .expect("add");
    assert_eq!(
        ids(store.key_ids_in_use().await.expect("in use")),
        ["kek-a", "kek-b", "kek-c"]
    );

    assert!(
        store
            .drop_namespace(&batch[3].access_hash)
            .await
            .expect("delete")
    );
    assert_eq!(
        ids(store.key_ids_in_use().await.expect("in use")),
        ["kek-a", "kek-b"]
    );
}

pub async fn namespaces_are_counted_by_the_key_id_wrapping_their_data_key<S: SecretStore>(
    store: S,
) {
    assert_eq!(store.count_by_key_id().await.expect("empty"), vec![]);

    let batch: Vec<_> = ["kek-b", "kek-a", "kek-b", "kek-c", "kek-b"]
        .into_iter()
        .map(namespace)
        .collect();
    store.create_namespaces(&batch).await.expect("create");
    store
        .add_key_check(&check("kek-z", b"check"))
        .await
        .expect("add");
    assert!(
        store
            .drop_namespace(&batch[3].access_hash)
            .await
            .expect("delete")
    );

    let mut counts = store.count_by_key_id().await.expect("counts");
    counts.sort();
    let expected = [("kek-a", 1), ("kek-b", 3)].map(|(id, n)| (KeyId::new(id), n));
    assert_eq!(counts, expected);
}

pub async fn wrapped_keys_not_under_the_active_key_are_paged_in_id_order<S: SecretStore>(store: S) {
    let active = KeyId::new("kek-active");
    let batch: Vec<_> = [
        "kek-old",
        "kek-active",
        "kek-older",
        "kek-old",
        "kek-active",
    ]
    .iter()
    .cycle()
    .take(15)
    .map(|id| namespace(id))
    .collect();
    store.create_namespaces(&batch).await.expect("create");
    let mut expected: Vec<_> = batch
        .iter()
        .filter(|ns| ns.data_key.key_id != active)
        .map(record)
        .collect();
    expected.sort_by_key(|ns| ns.id);
    assert_eq!(expected.len(), 9);

    let mut pages = vec![];
    let mut after = None;
    loop {
        let page = store
            .wrapped_not_under(&active, after, 4)
            .await
            .expect("page");
        assert!(page.len() <= 4, "a page holds at most `limit`");
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        pages.push(page);
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4, 1]);
    assert_eq!(pages.concat(), expected, "every one, once, in id order");

    let everything = store
        .wrapped_not_under(&KeyId::new("kek-new"), None, 100)
        .await;
    assert_eq!(everything.expect("all").len(), 15);
    let none = store
        .wrapped_not_under(&active, after, 100)
        .await
        .expect("past the end");
    assert_eq!(none, vec![]);
}

pub async fn replacing_wrapped_keys_is_a_compare_and_swap<S: SecretStore>(store: S) {
    assert_eq!(
        store
            .replace_wrapped_keys(&[])
            .await
            .expect("nothing to do"),
        vec![]
    );

    let batch: Vec<_> = (0..4).map(|_| namespace("kek-old")).collect();
    store.create_namespaces(&batch).await.expect("create");
    let old = store
        .wrapped_not_under(&KeyId::new("kek-new"), None, 10)
        .await
        .expect("read the batch");
    assert_eq!(old.len(), 4);
    let position = |id: NamespaceId| batch.iter().position(|ns| ns.id == id).expect("ours");

    // Meanwhile: one namespace is re-wrapped under the same key id (new bytes), one under
    // another key id, and one is deleted.
    let concurrent = [
        (old[0].clone(), wrapped("kek-old", b"re-wrapped meanwhile")),
        (
            old[1].clone(),
            wrapped("kek-other", b"re-wrapped meanwhile"),
        ),
    ];
    assert_eq!(
        store
            .replace_wrapped_keys(&concurrent)
            .await
            .expect("replace")
            .len(),
        2
    );
    let deleted = &batch[position(old[2].id)];
    assert!(
        store
            .drop_namespace(&deleted.access_hash)
            .await
            .expect("delete")
    );

    let updates: Vec<_> = old
        .iter()
        .map(|ns| (ns.clone(), wrapped("kek-new", ns.id.as_bytes())))
        .collect();
    let replaced = store.replace_wrapped_keys(&updates).await.expect("replace");
    assert_eq!(
        replaced,
        vec![old[3].id],
        "only the untouched namespace is replaced"
    );

    let find = async |n: usize| {
        let ns = &batch[position(old[n].id)];
        store
            .find_namespace(&ns.access_hash)
            .await
            .expect("find")
            .map(|found| found.data_key)
    };
    assert_eq!(
        find(0).await,
        Some(concurrent[0].1.clone()),
        "a stale entry is skipped"
    );
    assert_eq!(
        find(1).await,
        Some(concurrent[1].1.clone()),
        "a stale entry is skipped"
    );
    assert_eq!(find(2).await, None, "a deleted namespace stays deleted");
    assert_eq!(find(3).await, Some(updates[3].1.clone()));
}

pub async fn ping_answers<S: SecretStore>(store: S) {
    store.ping().await.expect("ping");
}

// ---------------------------------------------------------------------------------------------
// Concurrency: real tasks on a multi-threaded runtime, released together by a barrier.
// ---------------------------------------------------------------------------------------------

/// Runs `tasks` copies of `work` at once, each with its number, and returns their results.
async fn race<S, T, F, Fut>(store: S, tasks: usize, work: F) -> (Arc<S>, Vec<T>)
where
    S: SecretStore,
    T: Send + 'static,
    F: Fn(Arc<S>, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let store = Arc::new(store);
    let start = Arc::new(Barrier::new(tasks));
    let handles: Vec<_> = (0..tasks)
        .map(|n| {
            let (store, start, work) = (Arc::clone(&store), Arc::clone(&start), work.clone());
            tokio::spawn(async move {
                start.wait().await;
                work(store, n).await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(tasks);
    for handle in handles {
        results.push(handle.await.expect("a task panicked"));
    }
    (store, results)
}

pub async fn concurrent_upserts_of_one_name_leave_one_secret<S: SecretStore>(store: S) {
    let ns = created(&store, "kek-a").await;
    let id = ns.id;
    let (store, results) = race(store, 32, move |store: Arc<S>, n| async move {
        let value = format!("value {n}").into_bytes();
        store.upsert(id, &secret(1, &value), 10).await
    })
    .await;

    let outcomes: Vec<_> = results
        .into_iter()
        .map(|r| r.expect("every upsert succeeds"))
        .collect();
    let created = outcomes.iter().filter(|u| **u == Upserted::Created).count();
    assert_eq!(
        created, 1,
        "exactly one upsert created the name: {outcomes:?}"
    );

    let secrets = secrets_of(&*store, &ns).await;
    assert_eq!(secrets.len(), 1, "exactly one row");
    let written: HashSet<_> = (0..32).map(|n| format!("value {n}").into_bytes()).collect();
    assert!(
        written.contains(&secrets[0].value),
        "holding one of the written values"
    );
}

pub async fn concurrent_inserts_never_pass_the_limit<S: SecretStore>(store: S) {
    let ns = created(&store, "kek-a").await;
    let id = ns.id;
    let (store, results) = race(store, 40, move |store: Arc<S>, n| async move {
        store.upsert(id, &secret(n as u8, b"v"), 10).await
    })
    .await;

    let created = results
        .iter()
        .filter(|r| matches!(r, Ok(Upserted::Created)))
        .count();
    let full = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::NamespaceFull)))
        .count();
    assert_eq!((created, full), (10, 30), "{results:?}");
    assert_eq!(secrets_of(&*store, &ns).await.len(), 10);
}

pub async fn concurrent_patches_never_pass_the_limit<S: SecretStore>(store: S) {
    let ns = with_secrets(&store, 2).await;
    // Each patch adds two new names and updates an existing one; a limit of 10 has room for
    // four of them.
    let id = ns.id;
    let (store, results) = race(store, 12, move |store: Arc<S>, n| async move {
        let n = n as u8;
        let upserts = [
            secret(0, &[n]),
            secret(10 + 2 * n, b"a"),
            secret(11 + 2 * n, b"b"),
        ];
        store.patch(id, &upserts, &[], 10).await
    })
    .await;

    let applied = results.iter().filter(|r| r.is_ok()).count();
    let full = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::NamespaceFull)))
        .count();
    assert_eq!((applied, full), (4, 8), "{results:?}");
    assert_eq!(secrets_of(&*store, &ns).await.len(), 10);
    for returned in results.into_iter().flatten() {
        assert!(
            returned.len() <= 10,
            "every patch saw a consistent namespace"
        );
    }
}

pub async fn concurrent_creates_of_one_access_hash_create_it_once<S: SecretStore>(store: S) {
    let hash = access_hash();
    let (store, results) = race(store, 16, move |store: Arc<S>, _| async move {
        let ns = NewNamespace {
            access_hash: hash,
            ..namespace("kek-a")
        };
        store
            .create_namespaces(std::slice::from_ref(&ns))
            .await
            .map(|()| ns)
    })
    .await;

    let conflicts = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::Conflict)))
        .count();
    let winners: Vec<_> = results.into_iter().filter_map(Result::ok).collect();
    assert_eq!((winners.len(), conflicts), (1, 15));
    let found = store.find_namespace(&hash).await.expect("find");
    assert_eq!(found, Some(record(&winners[0])));
    assert_eq!(store.key_ids_in_use().await.expect("in use").len(), 1);
}

pub async fn concurrent_key_checks_for_one_key_id_keep_one<S: SecretStore>(store: S) {
    let (store, results) = race(store, 16, |store: Arc<S>, n| async move {
        store
            .add_key_check(&check("kek-a", format!("check {n}").as_bytes()))
            .await
    })
    .await;

    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let checks = store.key_checks().await.expect("checks");
    assert_eq!(checks.len(), 1);
    assert!(checks[0].ciphertext.starts_with(b"check "));
}

pub async fn of_many_writers_holding_one_version_exactly_one_wins<S: SecretStore>(store: S) {
    let ns = with_secrets(&store, 1).await;
    // Secret 0 is at version 2; a hundred writers hold it.
    let id = ns.id;
    let (store, results) = race(store, 100, move |store: Arc<S>, n| async move {
        let value = format!("writer {n}").into_bytes();
        let guard = on_secret(if_match(&[2]));
        store
            .upsert_secret(id, &secret(0, &value), 10, &guard)
            .await
            .map(|_| value)
    })
    .await;
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::PreconditionFailed)))
        .count();
    let winners: Vec<_> = results.into_iter().filter_map(Result::ok).collect();
    assert_eq!((winners.len(), refused), (1, 99));
    assert_eq!(
        secrets_of(&*store, &ns).await[0].value,
        winners[0],
        "the winner's value"
    );
    assert_eq!(revision_of(&*store, &ns).await, 3, "one write happened");
}

pub async fn of_many_creators_of_one_absent_name_exactly_one_wins<S: SecretStore>(store: S) {
    let ns = created(&store, "kek-a").await;
    let id = ns.id;
    let (store, results) = race(store, 100, move |store: Arc<S>, n| async move {
        let value = format!("creator {n}").into_bytes();
        let guard = on_secret(if_absent());
        store
            .upsert_secret(id, &secret(0, &value), 10, &guard)
            .await
    })
    .await;
    let created = results
        .iter()
        .filter(|r| matches!(r, Ok(w) if w.upserted == Upserted::Created))
        .count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::PreconditionFailed)))
        .count();
    assert_eq!((created, refused), (1, 99));
    assert_eq!(secrets_of(&*store, &ns).await.len(), 1);
    assert_eq!(revision_of(&*store, &ns).await, 2);
}

pub async fn of_many_patches_holding_one_revision_exactly_one_wins<S: SecretStore>(store: S) {
    let ns = with_secrets(&store, 1).await;
    let id = ns.id;
    let (store, results) = race(store, 100, move |store: Arc<S>, n| async move {
        let upserts = [secret(0, &[n as u8]), secret(1 + (n % 200) as u8, b"new")];
        store
            .apply_patch(id, &upserts, &[], 1_000, &if_match(&[2]))
            .await
    })
    .await;
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::PreconditionFailed)))
        .count();
    let applied = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!((applied, refused), (1, 99), "{results:?}");
    assert_eq!(secrets_of(&*store, &ns).await.len(), 2);
    assert_eq!(revision_of(&*store, &ns).await, 3);
}
