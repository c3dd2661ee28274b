//! The checks of [`ImportStore`]'s documentation, and of the access kind every lookup by access
//! hash matches. Each takes a fresh, empty store.

use crate::unconditional::Unconditional as _;
use secrets_domain::import::{
    Applied, Fingerprint, ImportBase, ImportStore, ImportUpdate, NewImport, OriginalId,
    state_digest,
};
use secrets_domain::model::{AccessKeyHash, AccessKind};
use secrets_domain::ports::{SecretStore, StoreError};
use uuid::Uuid;

use crate::fixtures::{access_hash, by_index, namespace, sealed, secret};

fn original_id(n: u128) -> OriginalId {
    OriginalId::from_uuid(Uuid::from_u128(n))
}

/// An import of original namespace `n` with `count` secrets, its hash of the original kind.
fn new_import(n: u128, count: u8) -> NewImport {
    let mut ns = namespace("kek-a");
    ns.access_hash = AccessKeyHash::new(AccessKind::Original, *access_hash().as_bytes());
    let secrets: Vec<_> = (0..count).map(|i| secret(i, &[i, 0xaa])).collect();
    let mut base = ImportBase::default();
    for s in &secrets {
        base.insert(s);
    }
    NewImport {
        original: original_id(n),
        namespace: ns,
        secrets,
        source: Fingerprint([n as u8; 32]),
        base,
    }
}

async fn imported<S: SecretStore + ImportStore>(store: &S, n: u128, count: u8) -> NewImport {
    let import = new_import(n, count);
    store.create_imported(&import).await.expect("import");
    import
}

/// The state digest of `import`'s namespace as the store holds it now.
async fn digest_now<S: SecretStore + ImportStore>(store: &S, import: &NewImport) -> Fingerprint {
    let state = store
        .read_imported(import.original)
        .await
        .expect("read")
        .expect("a record");
    let (_, access, secrets) = state.namespace.expect("the namespace");
    state_digest(&access, &secrets)
}

pub async fn an_access_hash_finds_only_a_namespace_of_its_own_kind<S: SecretStore + ImportStore>(
    store: S,
) {
    let import = imported(&store, 1, 1).await;
    let original = import.namespace.access_hash;
    let same_digest_native = AccessKeyHash::from_bytes(*original.as_bytes());
    assert!(
        store
            .find_namespace(&original)
            .await
            .expect("find")
            .is_some()
    );
    assert!(
        store
            .find_namespace(&same_digest_native)
            .await
            .expect("find")
            .is_none()
    );
    assert!(
        store
            .read_namespace(&same_digest_native)
            .await
            .expect("read")
            .is_none()
    );
    assert!(
        !store
            .drop_namespace(&same_digest_native)
            .await
            .expect("delete")
    );
    assert!(
        !store
            .rehash(&same_digest_native, &access_hash())
            .await
            .expect("replace")
    );
    let native = namespace("kek-a");
    store
        .create_namespaces(std::slice::from_ref(&native))
        .await
        .expect("create");
    let same_digest_original =
        AccessKeyHash::new(AccessKind::Original, *native.access_hash.as_bytes());
    assert!(
        store
            .find_namespace(&same_digest_original)
            .await
            .expect("find")
            .is_none()
    );
    assert!(
        store
            .read_namespace(&original)
            .await
            .expect("read")
            .is_some()
    );
}

pub async fn rotating_an_imported_key_gives_the_namespace_a_native_one<
    S: SecretStore + ImportStore,
>(
    store: S,
) {
    let import = imported(&store, 1, 2).await;
    let new = access_hash();
    assert!(
        store
            .rehash(&import.namespace.access_hash, &new)
            .await
            .expect("replace")
    );
    assert!(
        store
            .find_namespace(&import.namespace.access_hash)
            .await
            .expect("find")
            .is_none()
    );
    let (found, secrets) = store
        .read_namespace(&new)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(found.id, import.namespace.id);
    assert_eq!(secrets.len(), 2);
    let state = store
        .read_imported(import.original)
        .await
        .expect("read")
        .expect("record");
    let (_, access, _) = state.namespace.expect("namespace");
    assert_eq!(access, new);
    assert_eq!(access.kind(), AccessKind::Native);
}

pub async fn an_import_creates_its_namespace_secrets_and_record_once<
    S: SecretStore + ImportStore,
>(
    store: S,
) {
    let import = imported(&store, 1, 3).await;
    let state = store
        .read_imported(import.original)
        .await
        .expect("read")
        .expect("record");
    assert_eq!(state.record.original, import.original);
    assert_eq!(state.record.namespace, Some(import.namespace.id));
    assert_eq!(state.record.source, import.source);
    assert_eq!(state.base, import.base);
    let (record, access, secrets) = state.namespace.expect("namespace");
    assert_eq!(record.id, import.namespace.id);
    assert_eq!(record.data_key, import.namespace.data_key);
    assert_eq!(access, import.namespace.access_hash);
    assert_eq!(sealed(secrets), import.secrets);
    assert!(
        store
            .read_imported(original_id(2))
            .await
            .expect("read")
            .is_none()
    );

    // The same original id again, even for another namespace: refused, nothing created.
    let mut again = new_import(1, 1);
    again.original = import.original;
    assert!(matches!(
        store.create_imported(&again).await,
        Err(StoreError::Conflict)
    ));
    assert!(
        store
            .find_namespace(&again.namespace.access_hash)
            .await
            .expect("find")
            .is_none()
    );
    // A taken access hash: refused too.
    let mut taken = new_import(3, 1);
    taken.namespace.access_hash = import.namespace.access_hash;
    assert!(matches!(
        store.create_imported(&taken).await,
        Err(StoreError::Conflict)
    ));
    assert!(
        store
            .read_imported(taken.original)
            .await
            .expect("read")
            .is_none()
    );
}

pub async fn imports_are_listed_by_original_id_range_in_order<S: SecretStore + ImportStore>(
    store: S,
) {
    for n in [5, 1, 4, 2, 3] {
        imported(&store, n, 0).await;
    }
    let ids = |records: Vec<secrets_domain::import::ImportRecord>| -> Vec<u128> {
        records
            .iter()
            .map(|r| r.original.as_uuid().as_u128())
            .collect()
    };
    let all = store.imports_between(None, None).await.expect("list");
    assert_eq!(ids(all), [1, 2, 3, 4, 5]);
    let middle = store
        .imports_between(Some(original_id(1)), Some(original_id(3)))
        .await
        .expect("list");
    assert_eq!(ids(middle), [2, 3]);
    let head = store
        .imports_between(None, Some(original_id(2)))
        .await
        .expect("list");
    assert_eq!(ids(head), [1, 2]);
    let tail = store
        .imports_between(Some(original_id(4)), None)
        .await
        .expect("list");
    assert_eq!(ids(tail), [5]);
}

pub async fn an_update_applies_only_in_the_state_it_was_computed_from<
    S: SecretStore + ImportStore,
>(
    store: S,
) {
    let import = imported(&store, 1, 3).await;
    let expected = digest_now(&store, &import).await;
    let new_access = AccessKeyHash::new(AccessKind::Original, *access_hash().as_bytes());
    let mut base = ImportBase::default();
    let rewritten = secret(0, b"rewritten");
    let added = secret(9, b"added");
    base.insert(&rewritten);
    base.insert(&added);
    let mut update = ImportUpdate {
        original: import.original,
        namespace: import.namespace.id,
        expected: Fingerprint([0; 32]),
        upserts: vec![rewritten.clone(), added.clone()],
        deletes: vec![import.secrets[1].index],
        access: Some(new_access),
        source: Fingerprint([7; 32]),
        base: base.clone(),
    };
    assert_eq!(
        store.update_imported(&update).await.expect("update"),
        Applied::Changed
    );
    assert_eq!(
        digest_now(&store, &import).await,
        expected,
        "nothing was written"
    );

    update.expected = expected;
    assert_eq!(
        store.update_imported(&update).await.expect("update"),
        Applied::Applied
    );
    let state = store
        .read_imported(import.original)
        .await
        .expect("read")
        .expect("record");
    assert_eq!(state.record.source, Fingerprint([7; 32]));
    assert_eq!(state.base, base);
    let (record, access, secrets) = state.namespace.expect("namespace");
    assert_eq!(access, new_access);
    // Imported whole at the first revision; the merge is one change, which what it wrote takes
    // as its version, while the secret it left alone keeps the import's.
    assert_eq!(record.revision.get(), 2, "a merge moves the revision once");
    let versions: Vec<u64> = by_index(secrets.clone())
        .iter()
        .map(|s| s.version.get())
        .collect();
    assert_eq!(versions, [2, 1, 2]);
    assert_eq!(
        sealed(secrets),
        [rewritten, import.secrets[2].clone(), added]
    );
    assert!(
        store
            .find_namespace(&new_access)
            .await
            .expect("find")
            .is_some()
    );
}

pub async fn a_namespace_deleted_here_keeps_its_record_without_it<S: SecretStore + ImportStore>(
    store: S,
) {
    let import = imported(&store, 1, 2).await;
    let expected = digest_now(&store, &import).await;
    assert!(
        store
            .drop_namespace(&import.namespace.access_hash)
            .await
            .expect("delete")
    );
    let state = store
        .read_imported(import.original)
        .await
        .expect("read")
        .expect("record");
    assert_eq!(state.record.namespace, None);
    assert!(state.namespace.is_none());
    let listed = store.imports_between(None, None).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].namespace, None);
    let update = ImportUpdate {
        original: import.original,
        namespace: import.namespace.id,
        expected,
        upserts: vec![secret(1, b"x")],
        deletes: Vec::new(),
        access: None,
        source: Fingerprint([7; 32]),
        base: ImportBase::default(),
    };
    assert_eq!(
        store.update_imported(&update).await.expect("update"),
        Applied::Gone
    );
    assert_eq!(
        store
            .remove_imported(import.original, import.namespace.id, expected)
            .await
            .expect("remove"),
        Applied::Gone
    );
}

pub async fn removing_an_imported_namespace_is_a_compare_and_swap<S: SecretStore + ImportStore>(
    store: S,
) {
    let import = imported(&store, 1, 2).await;
    let expected = digest_now(&store, &import).await;
    assert_eq!(
        store
            .remove_imported(import.original, import.namespace.id, Fingerprint([0; 32]))
            .await
            .expect("remove"),
        Applied::Changed
    );
    assert!(
        store
            .find_namespace(&import.namespace.access_hash)
            .await
            .expect("find")
            .is_some()
    );
    assert_eq!(
        store
            .remove_imported(import.original, import.namespace.id, expected)
            .await
            .expect("remove"),
        Applied::Applied
    );
    assert!(
        store
            .find_namespace(&import.namespace.access_hash)
            .await
            .expect("find")
            .is_none()
    );
    assert!(
        store
            .get_secret(import.namespace.id, &import.secrets[0].index)
            .await
            .expect("get")
            .is_none()
    );
    let state = store
        .read_imported(import.original)
        .await
        .expect("read")
        .expect("record stays");
    assert_eq!(state.record.namespace, None);
}
