//! Development mode end to end: the real binary on the embedded store with no keys configured
//! generates them once, prints the token, and a restart reuses them, so data survives.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::ServiceProcess;

/// A directory for one test's database, removed when dropped.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        drop(std::fs::remove_dir_all(&self.0));
    }
}

fn token_in(output: &str) -> String {
    output
        .lines()
        .find_map(|line| line.trim().strip_prefix("Service token: "))
        .expect("the development banner prints the token")
        .trim()
        .to_owned()
}

#[tokio::test]
async fn development_keys_are_generated_once_and_a_restart_reads_what_was_written() {
    let dir = TempDir(std::env::temp_dir().join(format!("secrets-dev-{}", uuid::Uuid::new_v4())));
    let env = [
        ("SECRETS__SERVER__BIND", "127.0.0.1:0".to_owned()),
        (
            "DATABASE_URL",
            format!("sqlite://{}/data/secrets.db", dir.0.display()),
        ),
    ];
    let client = reqwest::Client::new();

    let first = ServiceProcess::start(&["serve"], &env);
    let output = first.output();
    assert!(output.contains("generated and stored in"), "{output}");
    assert!(output.contains("NOT for production"), "{output}");
    let token = token_in(&output);
    let created: Value = client
        .post(first.url("/namespaces"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let key = created["accessKey"].as_str().expect("accessKey").to_owned();
    let put = client
        .post(first.url(&format!("/namespaces/{key}")))
        .bearer_auth(&token)
        .json(&json!({"key": "DEV", "value": "kept across restarts"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(put.status(), 201);
    first.signal(nix::sys::signal::Signal::SIGTERM);
    let (status, _) = first.finish(Duration::from_secs(30));
    assert!(status.success());

    let keys_file = dir.0.join("data").join(secrets_api::keys::dev::FILE_NAME);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&keys_file)
            .expect("keys file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let second = ServiceProcess::start(&["serve"], &env);
    let output = second.output();
    assert!(output.contains("loaded from"), "{output}");
    assert_eq!(token_in(&output), token, "the same token after a restart");
    let read = client
        .get(second.url(&format!("/namespaces/{key}")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("sent");
    assert_eq!(read.status(), 200);
    assert_eq!(
        read.json::<Value>().await.expect("json"),
        json!({"DEV": "kept across restarts"})
    );
}
