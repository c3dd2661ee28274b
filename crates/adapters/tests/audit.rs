//! The audit trail's writer and verifier on real files: lines chained and synced, a deleted or
//! replaced file noticed, a full sink refused and recovered from, and every kind of edit named
//! by `audit verify`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrets_adapters::audit::{
    ActionEvent, AuditError, AuditKey, AuditLog, Event, Sink, Verification, Verifier,
};
use secrets_domain::NamespaceId;

const WITHIN: Duration = Duration::from_secs(5);

struct Dir(PathBuf);

impl Dir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("audit-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        drop(std::fs::remove_dir_all(&self.0));
    }
}

fn key() -> AuditKey {
    AuditKey::from_bytes(&[42; 32])
}

fn shared_key() -> std::sync::Arc<AuditKey> {
    std::sync::Arc::new(key())
}

fn action(n: u128) -> Event {
    Event::Action(ActionEvent {
        operation: "rewrap_data_key",
        namespace: Some(NamespaceId::from_uuid(uuid::Uuid::from_u128(n))),
        original: None,
        outcome: "done",
    })
}

fn verify_files(files: &[&Path]) -> Verification {
    let keys = [key()];
    let mut verifier = Verifier::new(keys.iter().collect());
    for file in files {
        let input = std::fs::File::open(file).expect("trail file");
        verifier
            .read(&file.display().to_string(), std::io::BufReader::new(input))
            .expect("readable");
    }
    verifier.finish()
}

fn verify_text(text: &str) -> Verification {
    let keys = [key()];
    let mut verifier = Verifier::new(keys.iter().collect());
    verifier.read("trail", text.as_bytes()).expect("readable");
    verifier.finish()
}

/// A closed trail of `n` action lines (plus its start and end).
async fn written(dir: &Dir, n: u128) -> String {
    let path = dir.file("audit.log");
    let log = AuditLog::open(&Sink::File(path.clone()), shared_key(), "test").expect("opens");
    for i in 0..n {
        log.record(action(i), WITHIN).await.expect("written");
    }
    log.close();
    std::fs::read_to_string(path).expect("the trail")
}

#[tokio::test]
async fn a_closed_trail_verifies_and_its_file_is_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = Dir::new();
    let text = written(&dir, 5).await;
    assert_eq!(text.lines().count(), 7, "{text}");
    assert!(
        text.lines()
            .next()
            .is_some_and(|l| l.contains(r#""type":"start""#))
    );
    assert!(
        text.lines()
            .last()
            .is_some_and(|l| l.contains(r#""type":"end""#))
    );
    let mode = std::fs::metadata(dir.file("audit.log"))
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let result = verify_text(&text);
    assert!(result.intact(), "{}", result.report());
    assert_eq!((result.lines, result.chains, result.ended), (7, 1, 1));
    assert!(result.notes.is_empty(), "{:?}", result.notes);
}

#[tokio::test]
async fn every_kind_of_edit_is_named_at_its_line() {
    let dir = Dir::new();
    let text = written(&dir, 6).await;
    let lines: Vec<&str> = text.lines().collect();
    let join = |lines: &[&str]| lines.join("\n") + "\n";

    // Changed: one character of line 3.
    let mut changed = lines.clone();
    let edited = lines[2].replace("done", "dona");
    changed[2] = &edited;
    let result = verify_text(&join(&changed));
    assert_eq!(result.findings.len(), 1, "{}", result.report());
    assert_eq!(result.findings[0].0.line, 3);
    assert!(
        result.findings[0].1.contains("changed"),
        "{}",
        result.report()
    );

    // Removed: line 4.
    let mut removed = lines.clone();
    removed.remove(3);
    let result = verify_text(&join(&removed));
    assert_eq!(result.findings[0].0.line, 4, "{}", result.report());
    assert!(
        result.findings[0].1.contains("removed"),
        "{}",
        result.report()
    );

    // Inserted: a line made up without the key.
    let mut inserted = lines.clone();
    let forged = lines[3].replace(
        "00000000-0000-0000-0000-000000000002",
        "00000000-0000-0000-0000-000000000099",
    );
    inserted.insert(3, &forged);
    let result = verify_text(&join(&inserted));
    assert_eq!(result.findings[0].0.line, 4, "{}", result.report());
    assert!(
        result.findings[0].1.contains("inserted"),
        "{}",
        result.report()
    );

    // Inserted: a real line, repeated.
    let mut repeated = lines.clone();
    repeated.insert(5, lines[2]);
    let result = verify_text(&join(&repeated));
    assert_eq!(result.findings[0].0.line, 6, "{}", result.report());
    assert!(
        result.findings[0].1.contains("out of order"),
        "{}",
        result.report()
    );

    // Reordered: lines 3 and 4 swapped.
    let mut reordered = lines.clone();
    reordered.swap(2, 3);
    let result = verify_text(&join(&reordered));
    assert_eq!(result.findings[0].0.line, 3, "{}", result.report());
    assert!(
        result.findings[0].1.contains("removed"),
        "{}",
        result.report()
    );
    assert!(
        result
            .findings
            .iter()
            .any(|(_, what)| what.contains("out of order")),
        "{}",
        result.report()
    );

    // A cut-off tail: the last line without its end.
    let cut = &text[..text.len() - 20];
    let result = verify_text(cut);
    assert!(
        result.findings[0].1.contains("cut-off tail"),
        "{}",
        result.report()
    );
    assert!(
        result.notes.iter().any(|n| n.contains("no end line")),
        "{}",
        result.report()
    );

    // Lines removed at the head.
    let result = verify_text(&join(&lines[2..]));
    assert_eq!(result.findings[0].0.line, 1, "{}", result.report());
    assert!(
        result.findings[0].1.contains("not its start"),
        "{}",
        result.report()
    );

    // A trail sealed under another key.
    let keys = [AuditKey::from_bytes(&[1; 32])];
    let mut verifier = Verifier::new(keys.iter().collect());
    verifier.read("trail", text.as_bytes()).expect("readable");
    let result = verifier.finish();
    assert!(
        result.findings[0].1.contains("not configured"),
        "{}",
        result.report()
    );
}

#[tokio::test]
async fn a_reopen_a_deleted_and_a_replaced_file_are_noticed_and_the_chain_goes_on() {
    let dir = Dir::new();
    let path = dir.file("audit.log");
    let log = AuditLog::open(&Sink::File(path.clone()), shared_key(), "test").expect("opens");
    log.record(action(1), WITHIN).await.expect("written");
    // SIGHUP: the path is opened anew, and says so.
    log.reopen();
    log.record(action(2), WITHIN).await.expect("written");
    // Rotated away without a SIGHUP: the writer sees the path gone.
    let rotated = dir.file("audit.log.1");
    std::fs::rename(&path, &rotated).expect("rotate");
    log.record(action(3), WITHIN).await.expect("written");
    // Replaced by another file (kept here by a second link to the one it replaces).
    let second = dir.file("audit.log.2");
    std::fs::hard_link(&path, &second).expect("link");
    let other = dir.file("other");
    std::fs::write(&other, "").expect("other file");
    std::fs::rename(&other, &path).expect("replace");
    log.record(action(4), WITHIN).await.expect("written");
    log.close();
    let rotated_text = std::fs::read_to_string(&rotated).expect("rotated");
    assert!(
        rotated_text.contains(r#""reason":"sighup""#),
        "{rotated_text}"
    );
    assert_eq!(rotated_text.lines().count(), 4, "{rotated_text}");
    let second_text = std::fs::read_to_string(&second).expect("second");
    assert!(
        second_text.contains(r#""reason":"deleted""#),
        "{second_text}"
    );
    let third = std::fs::read_to_string(&path).expect("the path again");
    assert!(third.contains(r#""reason":"replaced""#), "{third}");
    let result = verify_files(&[&rotated, &second, &path]);
    assert!(result.intact(), "{}", result.report());
    assert_eq!(result.ended, 1, "{}", result.report());
    // The newest file alone says where it goes on from.
    let result = verify_files(&[&path]);
    assert!(result.intact(), "{}", result.report());
    assert!(
        result.notes[0].contains("earlier file"),
        "{:?}",
        result.notes
    );
}

#[tokio::test]
async fn a_full_sink_refuses_lines_and_the_trail_recovers_by_itself() {
    let dir = Dir::new();
    let path = dir.file("audit.log");
    let log = AuditLog::open(&Sink::File(path.clone()), shared_key(), "test").expect("opens");
    log.record(action(1), WITHIN).await.expect("written");
    let before = dir.file("before.log");
    std::fs::rename(&path, &before).expect("move");
    // Every write to /dev/full fails with ENOSPC: the disk is full.
    std::os::unix::fs::symlink("/dev/full", &path).expect("symlink");
    let refused = log.record(action(2), WITHIN).await;
    assert!(matches!(refused, Err(AuditError::Write(_))), "{refused:?}");
    assert!(!log.healthy());
    // Room again: the writer notices on its own, within a few of its idle rounds.
    std::fs::remove_file(&path).expect("unlink");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !log.healthy() {
        assert!(std::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    log.record(action(3), WITHIN).await.expect("written again");
    log.close();
    let after = std::fs::read_to_string(&path).expect("the new file");
    assert!(after.contains(r#""reason":"recovered""#), "{after}");
    assert!(after.contains(r#""lost_from":2"#), "{after}");
    let result = verify_files(&[&before, &path]);
    assert!(result.intact(), "{}", result.report());
    assert!(
        result
            .notes
            .iter()
            .any(|n| n.contains("lost to a failed write")),
        "{}",
        result.report()
    );
}

#[test]
fn a_sink_that_cannot_be_opened_stops_start_up_naming_it() {
    let dir = Dir::new();
    // A folder that cannot be made: its parent is a file.
    let file = dir.file("a-file");
    std::fs::write(&file, "").expect("a file");
    let path = file.join("audit.log");
    let error = AuditLog::open(&Sink::File(path.clone()), shared_key(), "test")
        .expect_err("no folder can be made under a file");
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("File exists"), "{message}");
}
