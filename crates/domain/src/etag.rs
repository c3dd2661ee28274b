//! Revisions, entity tags, and the preconditions of conditional requests.
//!
//! # Revisions and versions
//! Every namespace has a [`Revision`]: a counter the store keeps, which starts at
//! [`Revision::INITIAL`] when the namespace is created (whatever creates it) and grows by one with
//! every change inside it: a secret written or deleted, a merge patch, an access-key rotation. A
//! secret's *version* is the revision of its namespace that last wrote it, so it grows with every
//! write of that secret, and a secret deleted and written again never gets back a version it had
//! before. Neither comes from a clock: every replica reads the same numbers from the store. A KEK
//! rotation changes neither, since no data changed.
//!
//! # Entity tags
//! An [`ETag`] names one state of one resource: a namespace at a revision, or one secret of it at
//! its version. It is 32 bytes, sent as 43 characters of base64url:
//!
//! ```text
//! tag      = ((revision || seen) XOR pad) || mac            16 + 16 bytes
//! pad      = HMAC-SHA256(access key, "secrets-service etag v2 pad" || resource)[..16]
//! mac      = HMAC-SHA256(access key, "secrets-service etag v2 mac" || resource || revision
//!                        || seen)[..16]
//! resource = 0x01 || namespace id                          (a namespace)
//!          | 0x02 || namespace id || name (UTF-8)          (a secret)
//! revision = the revision or version, 8 bytes big-endian
//! seen     = the namespace's revision when the tag was made, 8 bytes big-endian
//! ```
//!
//! A tag names its resource's state by `revision` alone: two tags of one secret that differ only
//! in `seen` name the same state, and every comparison ([`ETag::revision`]) is of revisions.
//! `seen` is what lets a conditional read of one secret answer 304 without reading it: the
//! secret's version is the revision of its namespace that last wrote it, so while the namespace
//! is still at `seen`, nothing in it, that secret included, has changed since the tag was made
//! ([`ETag::seen`]). For a namespace, `seen` is its revision.
//!
//! Why it is built so (`docs/security.md` has the same argument):
//! - It is computed from nothing but the access key, the namespace's internal id, the secret's
//!   name (from the request) and counters, under an HMAC keyed by the access key: no value, no
//!   key material of the store, so it tells nothing about any plaintext to anyone without the
//!   access key (who could read the secret anyway). It does not depend on the KEK (a KEK rotation
//!   changes no tag) nor on anything random in a process (every replica computes the same tag).
//! - It is keyed by the access key, which only the caller holds (the store keeps its SHA-256):
//!   without it a tag cannot be made, told apart from random bytes, or decoded, not even with
//!   the database and the logs. Tags of two namespaces are unrelated, so a tag of one never
//!   matches the other, and neither do the tags of two secrets.
//! - The revision is inside, masked, so a write's precondition can be checked against the state
//!   the store holds when it writes, inside its transaction: [`ETag::revision`] recovers it and
//!   checks the MAC, which refuses a tag made for any other resource.
//! - Reading a namespace's tag needs only its id and revision, and so does checking a secret's
//!   `seen`: a conditional read that answers 304 reads one row of the store, the namespace's,
//!   and decrypts nothing, not even the data key.
//!
//! A namespace's tag changes when its access key is rotated: the key is part of it, as the path
//! is part of the resource's URL.
//!
//! # Preconditions
//! [`Condition`] is RFC 9110's `If-Match` and `If-None-Match` (sections 13.1.1 and 13.1.2) over
//! anything comparable: the HTTP layer builds one of [`ETag`]s, the use cases turn it into one of
//! [`Revision`]s for the resource in question ([`Condition::map`]), and the store checks that
//! ([`Condition::check`]) against what it holds, inside the write's transaction.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use crate::model::{AccessKey, NamespaceId, SecretName};

/// A namespace's revision, or a secret's version: the revision of its namespace that last wrote
/// it (see the module's doc). Always at least [`Revision::INITIAL`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Revision(u64);

impl Revision {
    /// The revision of a namespace that nothing has changed yet, and the version of a secret
    /// stored without one.
    pub const INITIAL: Self = Self(1);

    /// A revision read back from a store; `None` below [`Revision::INITIAL`].
    #[must_use]
    pub fn new(n: u64) -> Option<Self> {
        (n >= 1).then_some(Self(n))
    }

    /// The revision as a number, for storing.
    #[must_use]
    pub fn get(self) -> u64 {
        self.0
    }

    /// The revision after this one.
    #[must_use]
    pub fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What an entity tag names.
#[derive(Clone, Copy, Debug)]
pub enum Resource<'a> {
    /// A namespace, at a revision.
    Namespace(NamespaceId),
    /// One secret of a namespace, by its name, at a version.
    Secret(NamespaceId, &'a SecretName),
}

impl Resource<'_> {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Self::Namespace(ns) => [[1u8].as_slice(), ns.as_bytes()].concat(),
            Self::Secret(ns, name) => {
                [[2u8].as_slice(), ns.as_bytes(), name.as_str().as_bytes()].concat()
            }
        }
    }
}

/// The length of an entity tag, in bytes.
const ETAG_BYTES: usize = 32;

const PAD_LABEL: &[u8] = b"secrets-service etag v2 pad";
const MAC_LABEL: &[u8] = b"secrets-service etag v2 mac";

/// An entity tag: one state of one resource, opaque to everyone without the access key (see
/// the module's doc for its construction).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ETag([u8; ETAG_BYTES]);

impl ETag {
    /// The tag of `resource` at `revision`, for the caller holding `key`, made when its
    /// namespace was at that same revision (a namespace's tag, or a secret's just written).
    #[must_use]
    pub fn new(key: &AccessKey, resource: &Resource<'_>, revision: Revision) -> Self {
        Self::seen_at(key, resource, revision, revision)
    }

    /// The tag of `resource` at `revision`, made when its namespace was at `seen` (a secret read
    /// from a namespace at that revision).
    #[must_use]
    pub fn seen_at(
        key: &AccessKey,
        resource: &Resource<'_>,
        revision: Revision,
        seen: Revision,
    ) -> Self {
        let resource = resource.bytes();
        let pad = pad(key, &resource);
        let mut tag = [0u8; ETAG_BYTES];
        let counters = counters(revision, seen);
        for (i, byte) in counters.iter().enumerate() {
            tag[i] = byte ^ pad[i];
        }
        tag[16..].copy_from_slice(&mac(key, &resource, &counters));
        Self(tag)
    }

    /// Parses the opaque part of an entity tag (between its quotes); `None` when it is not one
    /// this service makes, which then matches nothing.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let mut tag = [0u8; ETAG_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut tag) {
            Ok(ETAG_BYTES) => Some(Self(tag)),
            _ => None,
        }
    }

    /// The revision this tag names when it is a tag of `resource` for the caller holding `key`;
    /// `None` when it was made for anything else.
    #[must_use]
    pub fn revision(&self, key: &AccessKey, resource: &Resource<'_>) -> Option<Revision> {
        self.open(key, resource).map(|(revision, _)| revision)
    }

    /// The revision of the namespace when this tag of `resource` was made; `None` when it was
    /// made for anything else. While the namespace is still at it, the resource is in the state
    /// the tag names (see the module's doc).
    #[must_use]
    pub fn seen(&self, key: &AccessKey, resource: &Resource<'_>) -> Option<Revision> {
        self.open(key, resource).map(|(_, seen)| seen)
    }

    /// The tag's two counters, once its MAC checks out for `resource` under `key`.
    fn open(&self, key: &AccessKey, resource: &Resource<'_>) -> Option<(Revision, Revision)> {
        let resource = resource.bytes();
        let pad = pad(key, &resource);
        let mut counters = [0u8; 16];
        for (i, byte) in counters.iter_mut().enumerate() {
            *byte = self.0[i] ^ pad[i];
        }
        let expected = mac(key, &resource, &counters);
        if !bool::from(expected.ct_eq(&self.0[16..])) {
            return None;
        }
        let (revision, seen) = counters.split_at(8);
        let number = |bytes: &[u8]| {
            let mut be = [0u8; 8];
            be.copy_from_slice(bytes);
            Revision::new(u64::from_be_bytes(be))
        };
        Some((number(revision)?, number(seen)?))
    }
}

impl fmt::Display for ETag {
    /// The opaque part, to be sent between quotes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ETag({self})")
    }
}

fn hmac(key: &AccessKey, parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256>>::new_from_slice(key.secret_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn pad(key: &AccessKey, resource: &[u8]) -> [u8; 32] {
    hmac(key, &[PAD_LABEL, resource])
}

/// `revision || seen`, big-endian.
fn counters(revision: Revision, seen: Revision) -> [u8; 16] {
    let mut counters = [0u8; 16];
    counters[..8].copy_from_slice(&revision.0.to_be_bytes());
    counters[8..].copy_from_slice(&seen.0.to_be_bytes());
    counters
}

fn mac(key: &AccessKey, resource: &[u8], counters: &[u8; 16]) -> [u8; 16] {
    let full = hmac(key, &[MAC_LABEL, resource, counters]);
    let mut mac = [0u8; 16];
    mac.copy_from_slice(&full[..16]);
    mac
}

/// The entity tags of one precondition header: `*`, or a list.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Tags<T> {
    /// `*`: any current state at all.
    Any,
    /// These states (an empty list matches nothing).
    List(Vec<T>),
}

/// The preconditions of a request (RFC 9110, section 13.1): `If-Match` and `If-None-Match`,
/// each absent or a [`Tags`]. The default has neither, and always holds.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Condition<T> {
    /// `If-Match`: the resource must exist, and be in one of these states.
    pub if_match: Option<Tags<T>>,
    /// `If-None-Match`: the resource must not exist (`*`), or not be in any of these states.
    pub if_none_match: Option<Tags<T>>,
}

impl<T> Default for Condition<T> {
    fn default() -> Self {
        Self {
            if_match: None,
            if_none_match: None,
        }
    }
}

/// Which precondition failed: a read answers `If-None-Match` with 304, everything else with 412.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Failed {
    /// `If-Match` did not hold.
    IfMatch,
    /// `If-None-Match` did not hold.
    IfNoneMatch,
}

impl<T> Condition<T> {
    /// Whether the request has no precondition at all.
    #[must_use]
    pub fn is_none(&self) -> bool {
        self.if_match.is_none() && self.if_none_match.is_none()
    }

    /// The same condition over what `f` turns each tag into. A tag `f` cannot turn into
    /// anything (a tag of another resource) is dropped: it can match no state of this one.
    #[must_use]
    pub fn map<U>(&self, f: impl Fn(&T) -> Option<U>) -> Condition<U> {
        let map = |tags: &Tags<T>| match tags {
            Tags::Any => Tags::Any,
            Tags::List(list) => Tags::List(list.iter().filter_map(&f).collect()),
        };
        Condition {
            if_match: self.if_match.as_ref().map(map),
            if_none_match: self.if_none_match.as_ref().map(map),
        }
    }
}

impl<T: PartialEq> Condition<T> {
    /// Checks the condition against the resource's current state, `None` when the resource does
    /// not exist, in RFC 9110's order (section 13.2.2): `If-Match` first, then `If-None-Match`.
    pub fn check(&self, current: Option<&T>) -> Result<(), Failed> {
        if let Some(tags) = &self.if_match {
            let holds = match (tags, current) {
                (_, None) => false,
                (Tags::Any, Some(_)) => true,
                (Tags::List(list), Some(state)) => list.contains(state),
            };
            if !holds {
                return Err(Failed::IfMatch);
            }
        }
        if let Some(tags) = &self.if_none_match {
            let holds = match (tags, current) {
                (_, None) => true,
                (Tags::Any, Some(_)) => false,
                (Tags::List(list), Some(state)) => !list.contains(state),
            };
            if !holds {
                return Err(Failed::IfNoneMatch);
            }
        }
        Ok(())
    }

    /// Whether the condition holds for the resource's current state (see [`Condition::check`]).
    #[must_use]
    pub fn holds(&self, current: Option<&T>) -> bool {
        self.check(current).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::CountingRandom;

    fn key() -> AccessKey {
        AccessKey::generate(&CountingRandom::default()).expect("key")
    }

    fn id(n: u8) -> NamespaceId {
        NamespaceId::from_uuid(uuid::Uuid::from_bytes([n; 16]))
    }

    fn rev(n: u64) -> Revision {
        Revision::new(n).expect("a revision")
    }

    #[test]
    fn a_tag_round_trips_through_its_text_and_gives_back_its_revision() {
        let key = key();
        let ns = Resource::Namespace(id(1));
        let tag = ETag::new(&key, &ns, rev(42));
        let text = tag.to_string();
        assert_eq!(text.len(), 43);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        let parsed = ETag::parse(&text).expect("parses");
        assert_eq!(parsed, tag);
        assert_eq!(parsed.revision(&key, &ns), Some(rev(42)));
        assert_eq!(ETag::new(&key, &ns, rev(42)), tag, "deterministic");
    }

    #[test]
    fn a_tag_matches_no_other_resource_key_or_revision() {
        let (key, other_key) = (key(), AccessKey::parse(&"A".repeat(43)).expect("key"));
        let name = SecretName::parse("A").expect("name");
        let other_name = SecretName::parse("B").expect("name");
        let resources = [
            Resource::Namespace(id(1)),
            Resource::Namespace(id(2)),
            Resource::Secret(id(1), &name),
            Resource::Secret(id(1), &other_name),
            Resource::Secret(id(2), &name),
        ];
        let mut seen = std::collections::HashSet::new();
        for (i, resource) in resources.iter().enumerate() {
            for n in [1, 2, 1000] {
                let tag = ETag::new(&key, resource, rev(n));
                assert!(seen.insert(tag), "every tag is distinct");
                assert_eq!(tag.revision(&other_key, resource), None, "another key");
                for (j, other) in resources.iter().enumerate() {
                    if i != j {
                        assert_eq!(tag.revision(&key, other), None, "another resource");
                    }
                }
            }
        }
        // Two namespaces at the same revision share no byte pattern either: the revision is
        // masked per resource.
        let a = ETag::new(&key, &resources[0], rev(1)).to_string();
        let b = ETag::new(&key, &resources[1], rev(1)).to_string();
        assert_ne!(a[..10], b[..10]);
    }

    #[test]
    fn text_that_is_not_one_of_our_tags_parses_to_nothing() {
        for text in ["", "abc", &"A".repeat(42), &"A".repeat(44), &"+".repeat(43)] {
            assert_eq!(ETag::parse(text), None, "{text:?}");
        }
        // Well-formed but made up: it parses, and names no revision of anything.
        let made_up = ETag::parse(&"A".repeat(43)).expect("32 bytes");
        assert_eq!(made_up.revision(&key(), &Resource::Namespace(id(1))), None);
        assert_eq!(made_up.seen(&key(), &Resource::Namespace(id(1))), None);
    }

    #[test]
    fn a_secret_s_tag_names_its_version_and_the_namespace_s_revision_it_was_read_at() {
        let key = key();
        let name = SecretName::parse("DB_URL").expect("name");
        let secret = Resource::Secret(id(1), &name);
        let read = ETag::seen_at(&key, &secret, rev(3), rev(9));
        assert_eq!(read.revision(&key, &secret), Some(rev(3)));
        assert_eq!(read.seen(&key, &secret), Some(rev(9)));
        // The same state, seen at another revision: another tag, the same version.
        let later = ETag::seen_at(&key, &secret, rev(3), rev(12));
        assert_ne!(later, read);
        assert_eq!(later.revision(&key, &secret), Some(rev(3)));
        // A namespace's tag was made at its own revision.
        let ns = Resource::Namespace(id(1));
        assert_eq!(ETag::new(&key, &ns, rev(5)).seen(&key, &ns), Some(rev(5)));
        // The name is part of the resource: the tag is no other secret's.
        let other = SecretName::parse("DB_URL2").expect("name");
        assert_eq!(read.seen(&key, &Resource::Secret(id(1), &other)), None);
    }

    type Case = (
        &'static str,
        Condition<Revision>,
        Option<u64>,
        Result<(), Failed>,
    );

    #[test]
    fn conditions_follow_rfc_9110() {
        use Failed::{IfMatch, IfNoneMatch};
        let list = |v: &[u64]| Some(Tags::List(v.iter().map(|n| rev(*n)).collect()));
        let cond = |if_match, if_none_match| Condition {
            if_match,
            if_none_match,
        };

        let cases: &[Case] = &[
            ("no condition, absent", cond(None, None), None, Ok(())),
            ("no condition, present", cond(None, None), Some(3), Ok(())),
            (
                "If-Match: * on absent",
                cond(Some(Tags::Any), None),
                None,
                Err(IfMatch),
            ),
            (
                "If-Match: * on present",
                cond(Some(Tags::Any), None),
                Some(3),
                Ok(()),
            ),
            (
                "If-Match: current",
                cond(list(&[2, 3]), None),
                Some(3),
                Ok(()),
            ),
            (
                "If-Match: stale",
                cond(list(&[2]), None),
                Some(3),
                Err(IfMatch),
            ),
            (
                "If-Match: nothing known",
                cond(list(&[]), None),
                Some(3),
                Err(IfMatch),
            ),
            (
                "If-Match: a tag on absent",
                cond(list(&[3]), None),
                None,
                Err(IfMatch),
            ),
            (
                "If-None-Match: * on absent",
                cond(None, Some(Tags::Any)),
                None,
                Ok(()),
            ),
            (
                "If-None-Match: * on present",
                cond(None, Some(Tags::Any)),
                Some(1),
                Err(IfNoneMatch),
            ),
            (
                "If-None-Match: current",
                cond(None, list(&[3])),
                Some(3),
                Err(IfNoneMatch),
            ),
            (
                "If-None-Match: stale",
                cond(None, list(&[2])),
                Some(3),
                Ok(()),
            ),
            (
                "If-None-Match: a tag on absent",
                cond(None, list(&[3])),
                None,
                Ok(()),
            ),
            (
                "If-Match is evaluated first",
                cond(list(&[2]), list(&[3])),
                Some(3),
                Err(IfMatch),
            ),
            ("both hold", cond(list(&[3]), list(&[2])), Some(3), Ok(())),
        ];
        for (why, condition, current, expected) in cases {
            let current = current.map(rev);
            assert_eq!(condition.check(current.as_ref()), *expected, "{why}");
        }
    }

    #[test]
    fn mapping_a_condition_drops_the_tags_that_name_nothing_here() {
        let key = key();
        let ns = Resource::Namespace(id(1));
        let elsewhere = ETag::new(&key, &Resource::Namespace(id(2)), rev(5));
        let here = ETag::new(&key, &ns, rev(5));
        let condition = Condition {
            if_match: Some(Tags::List(vec![elsewhere, here])),
            if_none_match: Some(Tags::Any),
        };
        let mapped = condition.map(|tag| tag.revision(&key, &ns));
        assert_eq!(mapped.if_match, Some(Tags::List(vec![rev(5)])));
        assert_eq!(mapped.if_none_match, Some(Tags::Any));
        assert!(Condition::<Revision>::default().is_none());
        assert!(!mapped.is_none());
    }
}
