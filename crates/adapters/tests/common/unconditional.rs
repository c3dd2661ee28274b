//! The store's writes without preconditions, answering only what they answered before
//! revisions: what the tests that are not about revisions or preconditions need.
#![allow(
    dead_code,
    reason = "each test binary that includes this module uses a part of it"
)]

use secrets_domain::etag::Condition;
use secrets_domain::model::{AccessKeyHash, NamespaceId};
use secrets_domain::ports::{
    Guard, NameIndex, SealedSecret, SecretStore, StoreError, StoredSecret, Upserted,
};

pub trait Unconditional: SecretStore {
    async fn upsert(
        &self,
        ns: NamespaceId,
        secret: &SealedSecret,
        max: u32,
    ) -> Result<Upserted, StoreError> {
        let written = self
            .upsert_secret(ns, secret, max, &Guard::default())
            .await?;
        Ok(written.upserted)
    }

    async fn patch(
        &self,
        ns: NamespaceId,
        upserts: &[SealedSecret],
        deletes: &[NameIndex],
        max: u32,
    ) -> Result<Vec<StoredSecret>, StoreError> {
        let none = Condition::default();
        let patched = self.apply_patch(ns, upserts, deletes, max, &none).await?;
        Ok(patched.secrets)
    }

    async fn delete(&self, ns: NamespaceId, index: &NameIndex) -> Result<bool, StoreError> {
        let deleted = self.delete_secret(ns, index, &Guard::default()).await?;
        Ok(deleted.is_some())
    }

    async fn drop_namespace(&self, access: &AccessKeyHash) -> Result<bool, StoreError> {
        let deleted = self.delete_namespace(access, &Condition::default()).await?;
        Ok(deleted.is_some())
    }

    async fn rehash(&self, old: &AccessKeyHash, new: &AccessKeyHash) -> Result<bool, StoreError> {
        Ok(self.replace_access_hash(old, new).await?.is_some())
    }
}

impl<S: SecretStore> Unconditional for S {}
