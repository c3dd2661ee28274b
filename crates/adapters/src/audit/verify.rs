//! `audit verify`: reads trail files in order and names every line that was changed, removed,
//! inserted or reordered, and a tail that was cut off.
//!
//! Each chain is followed on its own (one per process run; several may share a file): its
//! first line must be its `start` (or a `reopen`, when the chain began in an earlier file that
//! is not given), each line's sequence number must follow the one before, each line must repeat
//! the MAC of the line before, and each MAC must verify under the chain's audit key. What an
//! edit breaks:
//! - a changed line: its MAC;
//! - an inserted line: its MAC (without the key nobody can make one), or its place in the
//!   sequence when a real line was copied;
//! - a removed line: the sequence (a gap), or the link when it was the chain's last but one;
//! - reordered lines: the sequence;
//! - a cut-off tail: the last line has no newline, or a chain has no `end` (which is also what a
//!   process still running or killed leaves: reported, not counted as tampering).
//!
//! A gap announced by the chain itself, a `reopen` with `reason: recovered` whose `lost_from`
//! covers it, is what a failed write leaves (its callers were answered 503); it is reported as
//! such, not as tampering.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::BufRead;

use super::key::AuditKey;
use super::record::{FORMAT, Opened};

/// Where a line is: its file and its number there (from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The file as it was named.
    pub file: String,
    /// The line's number in it.
    pub line: u64,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// What verifying found.
#[derive(Debug, Default)]
pub struct Verification {
    /// Audit lines read.
    pub lines: u64,
    /// Chains seen, and how many of them ended cleanly.
    pub chains: usize,
    /// Chains that ended with an `end` line.
    pub ended: usize,
    /// Edits: each with the line where it shows, in the order they were found.
    pub findings: Vec<(Place, String)>,
    /// What is not tampering but worth knowing (chains still open, announced gaps).
    pub notes: Vec<String>,
}

impl Verification {
    /// Whether nothing was edited.
    #[must_use]
    pub fn intact(&self) -> bool {
        self.findings.is_empty()
    }

    /// The report, for people.
    #[must_use]
    pub fn report(&self) -> String {
        let mut out = String::new();
        for (place, what) in &self.findings {
            let _ = writeln!(out, "{place}: {what}");
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        let _ = write!(
            out,
            "{} lines, {} chains ({} ended): {}",
            self.lines,
            self.chains,
            self.ended,
            if self.intact() {
                "no line was changed, removed, inserted or reordered".to_owned()
            } else {
                format!(
                    "{} findings; the first edit shows at {}",
                    self.findings.len(),
                    self.findings[0].0
                )
            }
        );
        out
    }
}

#[derive(Debug)]
struct ChainState {
    key: Option<usize>,
    seq: u64,
    link: String,
    ended: bool,
    began: Place,
}

/// Follows lines through their chains.
#[derive(Debug)]
pub struct Verifier<'k> {
    keys: Vec<&'k AuditKey>,
    chains: HashMap<String, ChainState>,
    result: Verification,
    /// Unreadable lines not yet explained by a recovery.
    pending: Vec<Place>,
}

impl<'k> Verifier<'k> {
    /// A verifier that knows these audit keys (the configured one and every one a KEK derives).
    #[must_use]
    pub fn new(keys: Vec<&'k AuditKey>) -> Self {
        Self {
            keys,
            chains: HashMap::new(),
            result: Verification::default(),
            pending: Vec::new(),
        }
    }

    /// Reads one file's lines, in order.
    pub fn read(&mut self, file: &str, mut input: impl BufRead) -> std::io::Result<()> {
        let mut line = Vec::new();
        let mut number = 0;
        loop {
            line.clear();
            if input.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            number += 1;
            let place = Place {
                file: file.to_owned(),
                line: number,
            };
            match line.strip_suffix(b"\n") {
                Some(complete) => self.line(place, complete),
                None => self.result.findings.push((
                    place,
                    format!(
                        "cut-off tail: the last line is incomplete ({} bytes, no newline)",
                        line.len()
                    ),
                )),
            }
        }
    }

    fn finding(&mut self, place: &Place, what: String) {
        self.result.findings.push((place.clone(), what));
    }

    fn line(&mut self, place: Place, bytes: &[u8]) {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let Some(opened) = Opened::parse(bytes) else {
            self.pending.push(place);
            return;
        };
        self.result.lines += 1;
        let header = &opened.header;
        if header.v != FORMAT {
            self.finding(&place, format!("unknown line format {}", header.v));
            return;
        }
        let key = self.check_mac(&place, &opened);
        let recovered = header.kind == "reopen" && header.reason.as_deref() == Some("recovered");
        let announced_from = header.lost_from.filter(|_| recovered);
        let pending = std::mem::take(&mut self.pending);
        let last = pending.len().checked_sub(1);
        for (n, cut) in pending.into_iter().enumerate() {
            // A failed write cuts short at most one line: the one right before the recovery.
            if announced_from.is_some()
                && Some(n) == last
                && cut.file == place.file
                && cut.line + 1 == place.line
            {
                self.result.notes.push(format!(
                    "{cut}: a line cut short by a failed write, which the chain announces at {place}"
                ));
            } else {
                self.finding(
                    &cut,
                    "not an audit line: changed beyond reading, or inserted".to_owned(),
                );
            }
        }
        self.follow(&place, &opened, announced_from);
        let entry = self
            .chains
            .entry(header.chain.clone())
            .or_insert(ChainState {
                key,
                seq: header.seq,
                link: String::new(),
                ended: false,
                began: place,
            });
        entry.seq = entry.seq.max(header.seq);
        entry.link = opened.link();
        entry.ended |= header.kind == "end";
        entry.key = entry.key.or(key);
    }

    /// Checks the line's MAC under its chain's key (for a chain's first line here, the key its
    /// `key_id` names, or any that verifies); the key's index, when one is known.
    fn check_mac(&mut self, place: &Place, opened: &Opened) -> Option<usize> {
        let header = &opened.header;
        let known = self.chains.get(&header.chain).map(|chain| chain.key);
        let key = known.unwrap_or_else(|| match header.key_id.as_deref() {
            Some(id) => self.keys.iter().position(|key| key.id().as_str() == id),
            None => self
                .keys
                .iter()
                .position(|key| key.verify(&opened.body, &opened.mac)),
        });
        if let Some(index) = key {
            if !self.keys[index].verify(&opened.body, &opened.mac) {
                self.finding(
                    place,
                    "changed or inserted: its MAC does not verify".to_owned(),
                );
            }
        } else if known.is_none() {
            let what = header.key_id.as_deref().map_or_else(
                || "its MAC verifies under no configured audit key".to_owned(),
                |id| {
                    format!(
                        "chain {} is sealed with audit key {id}, which is not configured (set \
                         AUDIT_KEY, or the KEK it was derived from)",
                        header.chain
                    )
                },
            );
            self.finding(place, what);
        }
        key
    }

    /// Checks the line's place in its chain: its sequence number and its link to the line
    /// before. `announced_from` is the first lost line a recovery announces.
    fn follow(&mut self, place: &Place, opened: &Opened, announced_from: Option<u64>) {
        let header = &opened.header;
        let chain_id = &header.chain;
        let Some(chain) = self.chains.get(chain_id) else {
            if header.kind == "reopen" {
                self.result.notes.push(format!(
                    "chain {chain_id} goes on from an earlier file at {place} (seq {}); give that \
                     file first to check the link",
                    header.seq
                ));
            } else if !(header.kind == "start" && header.seq == 0) {
                self.finding(
                    place,
                    format!(
                        "the first line of chain {chain_id} here is seq {}, not its start: lines \
                         were removed before it, or its earlier file is not given",
                        header.seq
                    ),
                );
            }
            self.result.chains += 1;
            return;
        };
        let expected = chain.seq + 1;
        let announced = announced_from.is_some_and(|lost| lost <= expected);
        let what = if chain.ended {
            Some(format!("a line after the end of chain {chain_id}"))
        } else if header.seq == expected {
            (header.prev != chain.link && !announced).then(|| {
                format!(
                    "does not follow the line before it in chain {chain_id}: that line was \
                     changed or replaced"
                )
            })
        } else if header.seq > expected && announced {
            self.result.notes.push(format!(
                "chain {chain_id}: lines seq {expected} to {} were lost to a failed write before \
                 {place}; their callers were answered 503",
                header.seq - 1
            ));
            None
        } else if header.seq > expected {
            Some(format!(
                "{} lines of chain {chain_id} removed before it (seq {} follows {})",
                header.seq - expected,
                header.seq,
                chain.seq
            ))
        } else {
            Some(format!(
                "out of order: seq {} after seq {} in chain {chain_id} (reordered or repeated)",
                header.seq, chain.seq
            ))
        };
        if let Some(what) = what {
            self.finding(place, what);
        }
    }

    /// The result, once every file was read.
    #[must_use]
    pub fn finish(mut self) -> Verification {
        for garbage in std::mem::take(&mut self.pending) {
            self.finding(
                &garbage,
                "not an audit line: changed beyond reading, or inserted".to_owned(),
            );
        }
        let mut open: Vec<_> = self
            .chains
            .iter()
            .filter(|(_, chain)| !chain.ended)
            .map(|(id, chain)| (chain.began.clone(), id.clone(), chain.seq))
            .collect();
        open.sort_by(|a, b| (&a.0.file, a.0.line).cmp(&(&b.0.file, b.0.line)));
        for (began, id, seq) in open {
            self.result.notes.push(format!(
                "chain {id} (from {began}) has no end line after seq {seq}: its process is still \
                 writing, was killed, or the end of the trail was cut off"
            ));
        }
        self.result.ended = self.chains.values().filter(|chain| chain.ended).count();
        self.result
    }
}
