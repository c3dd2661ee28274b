//! The audit trail under SIGKILL: requests flow while the real binary is killed; every request
//! that was answered has its line in the file (each line is synced before its answer is sent),
//! and the file verifies, at most with its last line cut short by the kill.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::support::{KEK, Node, Scratch, TOKEN, binary, client, create_namespace, service_env};

/// Clients sending at once.
const CALLERS: usize = 8;
/// Requests answered before the kill.
const ANSWERED_BEFORE_KILL: usize = 300;

#[tokio::test]
async fn a_sigkill_under_load_loses_no_line_of_an_answered_request() {
    let scratch = Scratch::new("audit-crash");
    let trail = scratch.path().join("audit.log");
    let env = service_env(
        &scratch.sqlite_url(),
        &[("SECRETS__AUDIT__PATH", trail.display().to_string())],
    );
    let mut node = Node::start(&scratch, &env).await;
    let http = client();
    let access_key = create_namespace(&http, &node.base()).await;
    let namespace = node.url(&format!("/namespaces/{access_key}"));

    let answered = Arc::new(Mutex::new(HashSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..CALLERS)
        .map(|caller| {
            let (http, namespace) = (http.clone(), namespace.clone());
            let (answered, stop) = (Arc::clone(&answered), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let id = format!("kill-{caller}-{n}");
                    let request = if n.is_multiple_of(2) {
                        http.get(&namespace)
                    } else {
                        http.post(&namespace)
                            .json(&json!({"key": format!("K{caller}"), "value": "v"}))
                    };
                    let sent = request
                        .bearer_auth(TOKEN)
                        .header("X-Request-Id", &id)
                        .send()
                        .await;
                    match sent {
                        // A status line came back: the request was answered.
                        Ok(_) => {
                            answered.lock().expect("lock").insert(id);
                        }
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    loop {
        if answered.lock().expect("lock").len() >= ANSWERED_BEFORE_KILL {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    node.kill();
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.await.expect("caller");
    }

    let text = std::fs::read_to_string(&trail).expect("the trail");
    let recorded: HashSet<String> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|line| line["request_id"].as_str().map(str::to_owned))
        .collect();
    let answered = answered.lock().expect("lock").clone();
    assert!(answered.len() >= ANSWERED_BEFORE_KILL);
    let missing: Vec<_> = answered.difference(&recorded).collect();
    assert!(
        missing.is_empty(),
        "{} answered requests have no line, e.g. {:?}",
        missing.len(),
        missing.first()
    );

    // Nothing was edited; the kill may have cut the last line, and left the chain open.
    let verified = binary(&[
        ("KEY_ENCRYPTION_KEY".to_owned(), KEK.to_owned()),
        ("DATABASE_URL".to_owned(), scratch.sqlite_url()),
    ])
    .args(["audit", "verify"])
    .arg(&trail)
    .output()
    .expect("runs");
    let report = String::from_utf8_lossy(&verified.stdout);
    let findings: Vec<&str> = report
        .lines()
        .filter(|line| !line.starts_with("note:") && line.contains(": "))
        .filter(|line| !line.contains("lines, ") && !line.contains("cut-off tail"))
        .collect();
    assert!(findings.is_empty(), "{report}");
    assert!(report.contains("has no end line"), "{report}");
}
