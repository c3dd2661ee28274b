//! The audit trail: one JSON line per request and per command action, written before the
//! answer leaves the server, chained by MACs so that an edit shows.
//!
//! # Line format (version 1)
//! One JSON object per line, its fields in this order:
//! `{"v":1,"time":"2026-12-06T09:30:00.123456Z","chain":"<16 hex>","seq":<n>,"prev":"<32 hex>",
//! "type":"...", <the event's fields>, "mac":"<64 hex>"}`.
//!
//! - `time`: RFC 3339, UTC, microseconds, when the line was written.
//! - `chain`: a random id per process run; `seq` counts its lines from 0; `prev` is the first
//!   32 hex digits of the previous line's `mac` (zeros on the first).
//! - `type`: `start` (the process, its pid and the audit key's id), `request` (see
//!   [`RequestEvent`]), `action` (see [`ActionEvent`]), `reopen` (the chain goes on in a file
//!   opened anew: after SIGHUP, a deleted or replaced file, or a failed write), `end` (the
//!   process stopped cleanly).
//! - `mac`: HMAC-SHA256 under the audit key's chain subkey (see [`key`]) of the line's bytes
//!   up to, not including, `,"mac":"`, followed by `}`: exactly the object without its MAC, as
//!   written. No canonical form is needed: the bytes are what is signed.
//!
//! # Invariants
//! - No field can hold an access key, a token, a secret's name or value: the event types
//!   ([`record`]) are built from fixed strings of the program, internal ids, keyed tags and
//!   numbers only.
//! - One chain per process run: restarts begin new chains, log rotation continues one into the
//!   next file (a `reopen` line), replicas and commands each write their own, so several may
//!   share a file (appends of whole groups, `O_APPEND`).
//! - A request's line is on the sink (and synced, for a file) before its answer is sent; see
//!   [`writer`].
//!
//! # Layout
//! - [`key`]: the audit key, its subkeys, tags and public ids.
//! - [`record`]: the events, and sealing and opening lines.
//! - [`writer`]: the sinks and the writer thread's group commit.
//! - [`verify`]: `audit verify`.

pub mod key;
pub mod record;
pub mod verify;
pub mod writer;

pub use key::{AuditKey, AuditKeyId, Tag, TokenId};
pub use record::{ActionEvent, Event, RequestEvent, RequestId};
pub use verify::{Verification, Verifier};
pub use writer::{AuditError, AuditLog, Sink};
