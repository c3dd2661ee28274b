//! An original namespace, decrypted, and what of it is imported.

use std::collections::BTreeMap;
use std::fmt;

use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::{Fingerprint, OriginalId};
use crate::model::{AccessKeyHash, InvalidName, Limits, SecretName, SecretValue};

/// A name the original stored but never answered with: it merged its rows into a plain
/// JavaScript object, where this key sets the prototype instead of a property.
const NEVER_RETURNED: &str = "__proto__";

/// One namespace of the original, as its rows decrypt.
#[derive(Debug)]
pub struct OriginalNamespace {
    /// Its id in the original's database.
    pub id: OriginalId,
    /// SHA-256 of its access key, as the original stored it (kind `Original`).
    pub access_hash: AccessKeyHash,
    /// The fingerprint of its rows in the original.
    pub fingerprint: Fingerprint,
    /// Its secret rows that decrypted, in any order.
    pub secrets: Vec<OriginalSecret>,
    /// How many of its secret rows did not decrypt.
    pub undecryptable: u64,
}

/// One secret row of the original, decrypted (text as the original returns it: Latin-1).
pub struct OriginalSecret {
    /// The name.
    pub name: Zeroizing<String>,
    /// The value.
    pub value: SecretValue,
    /// The row's `createdAt`.
    pub created_at: OffsetDateTime,
    /// Where the original's index lists the row among rows of the same name: its stored name
    /// ciphertext. Breaks a tie of `created_at` the way the original answered.
    pub listed_at: String,
}

impl fmt::Debug for OriginalSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OriginalSecret(<redacted>)")
    }
}

/// Why a secret of the original is not imported.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Refusal {
    /// This service's name rules refuse the name.
    Name(InvalidName),
    /// The value is over `limits.max_value_bytes`.
    ValueTooLarge,
    /// `__proto__`: the original stored it but never returned it.
    NeverReturned,
    /// The row does not decrypt under its namespace's key.
    Undecryptable,
}

impl Refusal {
    /// A stable code for reports and logs.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Self::Name(InvalidName::Empty) => "name_empty",
            Self::Name(InvalidName::TooLong) => "name_too_long",
            Self::Name(InvalidName::ControlCharacter) => "name_control_character",
            Self::ValueTooLarge => "value_too_large",
            Self::NeverReturned => "never_returned_by_the_original",
            Self::Undecryptable => "undecryptable",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// What of one original namespace is imported.
#[derive(Debug, Default)]
pub struct ImportPlan {
    /// The secrets to write, one per name.
    pub secrets: Vec<(SecretName, SecretValue)>,
    /// Rows dropped because a newer row had the same name.
    pub duplicates: u64,
    /// Rows left out, with why.
    pub refused: Vec<Refusal>,
}

impl ImportPlan {
    /// Whether the namespace holds more secrets than `limits` let a namespace grow to.
    #[must_use]
    pub fn over_limit(&self, limits: Limits) -> bool {
        self.secrets.len() > limits.max_secrets_per_namespace as usize
    }
}

/// Applies the import's rules (see the module doc) to one original namespace.
#[must_use]
pub fn plan(namespace: &OriginalNamespace, limits: Limits) -> ImportPlan {
    let mut winners: BTreeMap<&str, &OriginalSecret> = BTreeMap::new();
    for secret in &namespace.secrets {
        let newer = |held: &&OriginalSecret| {
            (secret.created_at, secret.listed_at.as_str())
                > (held.created_at, held.listed_at.as_str())
        };
        match winners.get(secret.name.as_str()) {
            Some(held) if !newer(held) => {}
            _ => {
                winners.insert(secret.name.as_str(), secret);
            }
        }
    }
    let mut plan = ImportPlan {
        duplicates: (namespace.secrets.len() - winners.len()) as u64,
        refused: vec![Refusal::Undecryptable; namespace.undecryptable as usize],
        ..ImportPlan::default()
    };
    for (name, secret) in winners {
        if name == NEVER_RETURNED {
            plan.refused.push(Refusal::NeverReturned);
            continue;
        }
        let name = match SecretName::parse(name) {
            Ok(name) => name,
            Err(invalid) => {
                plan.refused.push(Refusal::Name(invalid));
                continue;
            }
        };
        if secret.value.len() > limits.max_value_bytes {
            plan.refused.push(Refusal::ValueTooLarge);
            continue;
        }
        plan.secrets.push((name, secret.value.clone()));
    }
    plan
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;
    use crate::model::AccessKind;

    fn row(name: &str, value: &str, at: i64, listed_at: &str) -> OriginalSecret {
        OriginalSecret {
            name: Zeroizing::new(name.to_owned()),
            value: SecretValue::new(value.to_owned()),
            created_at: OffsetDateTime::UNIX_EPOCH + Duration::seconds(at),
            listed_at: listed_at.to_owned(),
        }
    }

    fn namespace(secrets: Vec<OriginalSecret>, undecryptable: u64) -> OriginalNamespace {
        OriginalNamespace {
            id: OriginalId::from_uuid(uuid::Uuid::nil()),
            access_hash: AccessKeyHash::new(AccessKind::Original, [0; 32]),
            fingerprint: Fingerprint([0; 32]),
            secrets,
            undecryptable,
        }
    }

    fn kept(plan: &ImportPlan) -> Vec<(String, String)> {
        plan.secrets
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.expose().to_owned()))
            .collect()
    }

    #[test]
    fn the_newest_row_of_a_name_wins_and_a_tie_goes_to_the_row_the_original_listed_last() {
        let ns = namespace(
            vec![
                row("A", "old", 1, "ff"),
                row("A", "new", 2, "00"),
                row("B", "listed-first", 5, "0a"),
                row("B", "listed-last", 5, "0b"),
                row("C", "alone", 1, "00"),
            ],
            0,
        );
        let plan = plan(&ns, Limits::default());
        assert_eq!(
            kept(&plan),
            [
                ("A".into(), "new".into()),
                ("B".into(), "listed-last".into()),
                ("C".into(), "alone".into())
            ]
        );
        assert_eq!(plan.duplicates, 2);
        assert!(plan.refused.is_empty());
    }

    #[test]
    fn refused_rows_are_reported_by_reason_and_the_rest_is_kept() {
        let limits = Limits {
            max_value_bytes: 5,
            max_secrets_per_namespace: 1,
        };
        let ns = namespace(
            vec![
                row("ok", "1234", 1, "00"),
                row("a\nb", "v", 1, "00"),
                row("=\u{0}", "v", 1, "00"),
                row("big", "123456", 1, "00"),
                row("__proto__", "v", 1, "00"),
                row(&"n".repeat(257), "v", 1, "00"),
                row("latin-1 \u{e9}\u{ac}", "caf\u{e9}", 1, "00"),
            ],
            2,
        );
        let plan = plan(&ns, limits);
        assert_eq!(
            kept(&plan),
            [
                ("latin-1 \u{e9}\u{ac}".into(), "caf\u{e9}".into()),
                ("ok".into(), "1234".into())
            ]
        );
        let mut codes: Vec<_> = plan.refused.iter().map(|r| r.code()).collect();
        codes.sort_unstable();
        assert_eq!(
            codes,
            [
                "name_control_character",
                "name_control_character",
                "name_too_long",
                "never_returned_by_the_original",
                "undecryptable",
                "undecryptable",
                "value_too_large",
            ]
        );
        assert!(plan.over_limit(limits));
    }
}
