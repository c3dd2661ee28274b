//! The binary's commands as an operator runs them: what each needs, what each says, and how a
//! failure to reach the database reads.

use std::process::Output;

use secrets_adapters::crypto::Kek;
use secrets_adapters::testing::TestDatabase;

use crate::helpers::{TEST_KEK, TOKEN, TempDir, binary};

/// Standard output and standard error together.
fn printed(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs the binary with `env`, the audit trail off unless `env` turns it on (the trail's own
/// commands are tested in `audit.rs`).
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    binary()
        .args(args)
        .env("SECRETS__AUDIT__SINK", "off")
        .envs(env.iter().copied())
        .output()
        .expect("runs")
}

#[test]
fn version_prints_the_binary_s_own_name() {
    let output = run(&["--version"], &[]);
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        text.trim(),
        format!("secrets-service {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn gen_token_prints_a_fresh_random_token() {
    let token = || {
        let output = run(&["gen-token"], &[]);
        assert!(output.status.success());
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    let (first, second) = (token(), token());
    assert_ne!(first, second);
    // 32 random bytes, base64: the same strength as a key.
    Kek::from_base64(&first).expect("32 bytes, base64");
    assert!(
        !first.contains(','),
        "a token never holds the list separator"
    );
}

#[tokio::test]
async fn migrate_and_rotate_kek_need_no_service_token_and_migrate_says_when_nothing_was_pending() {
    let db = TestDatabase::create().await;
    let url = db.url();
    let first = run(&["migrate"], &[("DATABASE_URL", url)]);
    assert!(first.status.success(), "{}", printed(&first));
    assert!(
        printed(&first).contains("applied migration 1"),
        "{}",
        printed(&first)
    );
    let second = run(
        &["migrate"],
        &[("DATABASE_URL", url), ("SECRETS__LOG__LEVEL", "info")],
    );
    let text = printed(&second);
    assert!(second.status.success(), "{text}");
    assert!(text.contains("no migrations were pending"), "{text}");
    // The idempotent statements' NOTICEs ("already exists, skipping") are not info lines...
    assert!(!text.contains("already exists"), "{text}");
    // ...but they are there at debug.
    let debug = run(
        &["migrate"],
        &[("DATABASE_URL", url), ("SECRETS__LOG__LEVEL", "debug")],
    );
    assert!(
        printed(&debug).contains("already exists"),
        "{}",
        printed(&debug)
    );

    let rotate = run(
        &["rotate-kek"],
        &[("DATABASE_URL", url), ("KEY_ENCRYPTION_KEY", TEST_KEK)],
    );
    assert!(rotate.status.success(), "{}", printed(&rotate));
    assert!(
        printed(&rotate).contains("failed: 0"),
        "{}",
        printed(&rotate)
    );
}

#[tokio::test]
async fn check_wants_what_serve_wants_and_names_every_missing_setting_at_once() {
    let db = TestDatabase::create().await;
    let nothing = run(&["check"], &[("DATABASE_URL", db.url())]);
    assert!(!nothing.status.success());
    let text = printed(&nothing);
    assert!(
        text.contains("KEY_ENCRYPTION_KEY and SERVICE_AUTH_TOKENS are not set"),
        "{text}"
    );
    let no_token = run(
        &["check"],
        &[("DATABASE_URL", db.url()), ("KEY_ENCRYPTION_KEY", TEST_KEK)],
    );
    assert!(!no_token.status.success());
    let text = printed(&no_token);
    assert!(text.contains("SERVICE_AUTH_TOKENS is not set"), "{text}");
    assert!(!text.contains("KEY_ENCRYPTION_KEY is"), "{text}");
}

#[tokio::test]
async fn a_command_that_cannot_reach_the_database_says_why() {
    let db = TestDatabase::create().await;
    let missing = db
        .url()
        .replace(db.name(), &format!("{}_gone", db.name()))
        .replacen("postgres://postgres@", "postgres://postgres:hunter2@", 1);
    let keys = [
        ("KEY_ENCRYPTION_KEY", TEST_KEK),
        ("SERVICE_AUTH_TOKENS", TOKEN),
    ];
    for command in ["migrate", "check", "serve"] {
        let mut env = vec![
            ("DATABASE_URL", missing.as_str()),
            ("SECRETS__SERVER__BIND", "127.0.0.1:0"),
        ];
        env.extend(keys);
        let output = run(&[command], &env);
        assert!(!output.status.success(), "{command}");
        let text = printed(&output);
        assert!(
            text.contains(&format!(
                "database \"{}_gone\" does not exist (SQLSTATE 3D000)",
                db.name()
            )),
            "{command}: {text}"
        );
        assert!(!text.contains("hunter2"), "{command}: {text}");
    }
}

#[test]
fn production_mode_warns_when_a_remote_database_is_not_verify_full() {
    // The host does not resolve, so nothing connects; the warning comes first, at start.
    let output = run(
        &["--production", "migrate"],
        &[(
            "DATABASE_URL",
            "postgres://secrets:hunter2@db.nonexistent.invalid/secrets?sslmode=require",
        )],
    );
    let text = printed(&output);
    assert!(!output.status.success());
    assert!(
        text.contains("db.nonexistent.invalid:5432 is sslmode=require"),
        "{text}"
    );
    assert!(text.contains("set sslmode=verify-full"), "{text}");
    assert!(text.contains("does not resolve"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    // Not in development mode.
    let output = run(
        &["migrate"],
        &[(
            "DATABASE_URL",
            "postgres://secrets@db.nonexistent.invalid/secrets?sslmode=require",
        )],
    );
    assert!(!printed(&output).contains("set sslmode=verify-full"));
}

/// The calls and statuses of the README's Try-it transcript: `("POST /namespaces", "201")`.
fn transcript_calls(text: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .windows(2)
        .filter_map(|pair| {
            let status = pair[1].strip_prefix("  -> ")?;
            let status = status.split(' ').next()?.to_owned();
            Some((pair[0].to_owned(), status))
        })
        .collect()
}

#[test]
fn try_it_makes_the_calls_the_readme_shows_and_stops_at_a_wrong_token() {
    let dir = TempDir::new();
    let service = crate::common::ServiceProcess::start(
        &["serve"],
        &[
            ("DATABASE_URL", dir.url()),
            ("KEY_ENCRYPTION_KEY", TEST_KEK.to_owned()),
            ("SERVICE_AUTH_TOKENS", TOKEN.to_owned()),
            ("SECRETS__SERVER__BIND", "127.0.0.1:0".to_owned()),
        ],
    );
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let try_it = |token: &str| {
        std::process::Command::new(root.join("scripts/try-it.sh"))
            .args([token, &service.url("")])
            .output()
            .expect("run scripts/try-it.sh (it needs bash and curl)")
    };
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let shown = &readme[readme
        .find("```text\nPOST /namespaces")
        .expect("the transcript")..];
    let shown = &shown[..shown[3..].find("```").expect("its end") + 3];

    let output = try_it(TOKEN);
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        transcript_calls(&printed),
        transcript_calls(shown),
        "{printed}"
    );
    assert_eq!(transcript_calls(shown).len(), 9);

    let output = try_it("not-the-token");
    assert!(!output.status.success(), "a wrong token stops the script");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        transcript_calls(&printed),
        [("POST /namespaces".to_owned(), "401".to_owned())],
        "only the first call, answered 401: {printed}"
    );
    assert!(printed.contains("\"code\":\"unauthorized\""), "{printed}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("stopped: POST /namespaces was answered 401"),
        "{stderr}"
    );
}
