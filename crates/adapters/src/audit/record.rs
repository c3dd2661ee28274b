//! What a line holds, and how a line is sealed into its chain and opened again.
//!
//! Every field is a type that cannot hold a secret: fixed strings of the program
//! (`&'static str`: operations, routes, error codes, reasons), internal ids, keyed [`Tag`]s,
//! public ids, numbers, and a [`RequestId`] that is checked to be a short token. An access key,
//! a token, a secret's name or value has no way into a [`Event`].

use std::fmt;

use secrets_domain::NamespaceId;
use serde::{Deserialize, Serialize, Serializer};

use super::key::{AuditKey, AuditKeyId, Tag, TokenId};

/// The version of the line format.
pub const FORMAT: u8 = 1;

/// How a line ends: `,"mac":"<64 hex digits>"}`.
const MAC_FIELD: &str = ",\"mac\":\"";
/// Hex digits of a MAC.
const MAC_HEX: usize = 64;
/// Hex digits of the previous line's MAC that a line repeats.
const PREV_HEX: usize = 32;

/// A request id as a line carries it: 1 to 64 characters of `A-Z a-z 0-9 . _ -`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct RequestId(String);

impl RequestId {
    /// The longest request id.
    pub const MAX_LEN: usize = 64;

    /// `id`, when it is a short token of the allowed characters.
    #[must_use]
    pub fn new(id: &str) -> Option<Self> {
        let sane = (1..=Self::MAX_LEN).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        sane.then(|| Self(id.to_owned()))
    }

    /// A fresh random id (a UUID v4), for a request that came without a usable one.
    #[must_use]
    pub fn fresh() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One request to the API, as its line records it.
#[derive(Debug, Clone, Serialize)]
pub struct RequestEvent {
    /// The request id (as the response's `X-Request-Id`).
    pub request_id: RequestId,
    /// The id of the service token that was accepted; `None` when none was.
    pub caller: Option<TokenId>,
    /// What was asked, e.g. `read_secret`.
    pub operation: &'static str,
    /// The HTTP method.
    pub method: &'static str,
    /// The route's template, e.g. `/namespaces/{accessKey}/secrets/{key}`.
    pub route: &'static str,
    /// The namespace the request reached, by internal id.
    #[serde(serialize_with = "display_option")]
    pub namespace: Option<NamespaceId>,
    /// The namespaces a bulk create made.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "display_all")]
    pub created: Vec<NamespaceId>,
    /// The tag of the access key the request named.
    pub access_key: Option<Tag>,
    /// The tag of the one secret's name the request named.
    pub secret: Option<Tag>,
    /// The status answered.
    pub status: u16,
    /// The error code answered, if any.
    pub error: Option<&'static str>,
    /// From the request's arrival to its answer, in microseconds.
    pub latency_us: u64,
}

/// One action of a command (`rotate-kek`, `import-original`) on a namespace.
#[derive(Debug, Clone, Serialize)]
pub struct ActionEvent {
    /// What was done, e.g. `rewrap_data_key`.
    pub operation: &'static str,
    /// The namespace, by internal id.
    #[serde(serialize_with = "display_option")]
    pub namespace: Option<NamespaceId>,
    /// The original service's namespace id (`import-original`).
    #[serde(serialize_with = "display_option")]
    pub original: Option<uuid::Uuid>,
    /// How it ended, e.g. `done` or `failed`.
    pub outcome: &'static str,
}

/// What a line records.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A chain begins: a process started writing.
    Start {
        /// The process, e.g. `serve`.
        process: &'static str,
        /// Its process id.
        pid: u32,
        /// The audit key the chain is sealed with.
        key_id: AuditKeyId,
    },
    /// The chain goes on in a file opened anew.
    Reopen {
        /// Why: `sighup`, `deleted`, `replaced` or `recovered`.
        reason: &'static str,
        /// The audit key the chain is sealed with.
        key_id: AuditKeyId,
        /// After a failed write: the first line that may be missing (its callers were answered
        /// 503 `audit_unavailable`).
        #[serde(skip_serializing_if = "Option::is_none")]
        lost_from: Option<u64>,
    },
    /// A chain ends: the process stopped cleanly.
    End,
    /// A request to the API.
    Request(RequestEvent),
    /// A command's action.
    Action(ActionEvent),
}

#[expect(
    clippy::ref_option,
    reason = "serde's serialize_with hands over a reference to the field"
)]
fn display_option<T: fmt::Display, S: Serializer>(
    value: &Option<T>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => serializer.collect_str(value),
        None => serializer.serialize_none(),
    }
}

fn display_all<T: fmt::Display, S: Serializer>(
    values: &[T],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(values.iter().map(ToString::to_string))
}

/// The fields every line has before its event's.
#[derive(Serialize)]
struct Unsealed<'a> {
    v: u8,
    time: &'a str,
    chain: &'a str,
    seq: u64,
    prev: &'a str,
    #[serde(flatten)]
    event: &'a Event,
}

/// A chain being written: its id, the next sequence number, the last line's MAC.
pub(super) struct Chain {
    id: String,
    next: u64,
    prev: String,
}

impl Chain {
    /// A new chain with a random id.
    pub(super) fn new() -> Self {
        Self {
            id: uuid::Uuid::new_v4().simple().to_string()[..16].to_owned(),
            next: 0,
            prev: "0".repeat(PREV_HEX),
        }
    }

    /// The sequence number the next line gets.
    pub(super) fn next_seq(&self) -> u64 {
        self.next
    }

    /// Seals `event` as the chain's next line, appended to `out` with its newline.
    pub(super) fn seal(&mut self, key: &AuditKey, time: &str, event: &Event, out: &mut Vec<u8>) {
        let start = out.len();
        let unsealed = Unsealed {
            v: FORMAT,
            time,
            chain: &self.id,
            seq: self.next,
            prev: &self.prev,
            event,
        };
        // Serialising these types cannot fail: every field is a string, a number or a list.
        serde_json::to_writer(&mut *out, &unsealed).expect("an audit line serialises");
        let mac = hex::encode(key.mac(&out[start..]).as_ref());
        out.pop();
        out.extend_from_slice(MAC_FIELD.as_bytes());
        out.extend_from_slice(mac.as_bytes());
        out.extend_from_slice(b"\"}\n");
        mac[..PREV_HEX].clone_into(&mut self.prev);
        self.next += 1;
    }
}

/// The fields of a line that verifying reads.
#[derive(Debug, Deserialize)]
pub(super) struct Header {
    pub v: u8,
    pub chain: String,
    pub seq: u64,
    pub prev: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub key_id: Option<String>,
    pub reason: Option<String>,
    pub lost_from: Option<u64>,
}

/// A line taken apart: its body as it was sealed, the MAC it carries, and its header.
pub(super) struct Opened {
    pub body: Vec<u8>,
    pub mac: Vec<u8>,
    pub header: Header,
}

impl Opened {
    /// Takes a line (without its newline) apart; `None` when it is not an audit line.
    pub(super) fn parse(line: &[u8]) -> Option<Self> {
        let tail = MAC_FIELD.len() + MAC_HEX + 2;
        let split = line.len().checked_sub(tail)?;
        let (body, end) = line.split_at(split);
        let hex_digits = end
            .strip_prefix(MAC_FIELD.as_bytes())?
            .strip_suffix(b"\"}")?;
        let mac = hex::decode(hex_digits).ok()?;
        let mut body = body.to_vec();
        body.push(b'}');
        let header: Header = serde_json::from_slice(&body).ok()?;
        Some(Self { body, mac, header })
    }

    /// The first hex digits of this line's MAC, as the next line repeats them.
    pub(super) fn link(&self) -> String {
        hex::encode(&self.mac)[..PREV_HEX].to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_line_opens_and_verifies() {
        let key = AuditKey::from_bytes(&[1; 32]);
        let mut chain = Chain::new();
        let mut out = Vec::new();
        chain.seal(&key, "2026-01-01T00:00:00.000000Z", &Event::End, &mut out);
        chain.seal(
            &key,
            "2026-01-01T00:00:00.000001Z",
            &Event::Action(ActionEvent {
                operation: "rewrap_data_key",
                namespace: Some(NamespaceId::from_uuid(uuid::Uuid::from_u128(5))),
                original: None,
                outcome: "done",
            }),
            &mut out,
        );
        let text = String::from_utf8(out).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let first = Opened::parse(lines[0].as_bytes()).expect("an audit line");
        assert!(key.verify(&first.body, &first.mac));
        assert_eq!(first.header.kind, "end");
        let second = Opened::parse(lines[1].as_bytes()).expect("an audit line");
        assert!(key.verify(&second.body, &second.mac));
        assert_eq!(second.header.seq, 1);
        assert_eq!(second.header.prev, first.link());
        assert!(lines[1].contains(r#""namespace":"00000000-0000-0000-0000-000000000005""#));
        let changed = lines[1].replace("done", "fail");
        let changed = Opened::parse(changed.as_bytes()).expect("still an audit line");
        assert!(!key.verify(&changed.body, &changed.mac));
    }

    #[test]
    fn request_ids_are_short_tokens() {
        assert!(RequestId::new("req-1.2_3").is_some());
        assert!(RequestId::new("").is_none());
        assert!(RequestId::new("has space").is_none());
        assert!(RequestId::new(&"a".repeat(65)).is_none());
    }
}
