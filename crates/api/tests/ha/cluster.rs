//! The Patroni cluster of `make ha`, as the tests see it: its nodes (from `HA_NODES`), their
//! roles (Patroni's REST API, `GET /cluster`), and what the tests do to them through
//! `scripts/ha/node.sh` (kill, start, switch over).

use std::io::Write as _;
use std::time::{Duration, Instant};

use serde_json::Value;

/// One node: its Patroni name, its PostgreSQL port and its REST API port.
#[derive(Clone, Debug)]
pub struct Member {
    pub name: String,
    pub pg_port: u16,
    pub rest_port: u16,
}

/// A member's role and state, as Patroni reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberState {
    pub name: String,
    /// `leader`, `sync_standby` or `replica`.
    pub role: String,
    /// `running`, `stopped`, `starting`, ...
    pub state: String,
    pub timeline: Option<u64>,
    /// Replication lag in bytes; `None` for the leader, or when Patroni does not know it.
    pub lag: Option<u64>,
}

pub struct Cluster {
    members: Vec<Member>,
    script: String,
    http: reqwest::Client,
}

impl Cluster {
    /// The cluster of `make ha`, or `None` (after saying so) when this is not run by it.
    pub fn from_env(test: &str) -> Option<Self> {
        let (Ok(nodes), Ok(script)) = (std::env::var("HA_NODES"), std::env::var("HA_NODE_SCRIPT"))
        else {
            // Straight to the standard error, past the test harness's capture, so that the
            // skip shows in `make test` too.
            drop(writeln!(
                std::io::stderr(),
                "{test}: skipped: no Patroni cluster (HA_NODES is not set); run `make ha`"
            ));
            return None;
        };
        let members = nodes
            .split_whitespace()
            .map(|node| {
                let parts: Vec<&str> = node.split(':').collect();
                assert_eq!(
                    parts.len(),
                    3,
                    "HA_NODES entry {node:?}: name:pg_port:rest_port"
                );
                Member {
                    name: parts[0].to_owned(),
                    pg_port: parts[1].parse().expect("a port"),
                    rest_port: parts[2].parse().expect("a port"),
                }
            })
            .collect();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .expect("HTTP client");
        Some(Self {
            members,
            script,
            http,
        })
    }

    pub fn member(&self, name: &str) -> &Member {
        self.members
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no member {name}"))
    }

    /// The URL of one node's `database`, whatever its role.
    pub fn node_url(&self, name: &str, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}",
            self.member(name).pg_port
        )
    }

    /// Every member's role, from the first node whose REST API answers; empty when none does.
    pub async fn roles(&self) -> Vec<MemberState> {
        for member in &self.members {
            let url = format!("http://127.0.0.1:{}/cluster", member.rest_port);
            let Ok(response) = self.http.get(url).send().await else {
                continue;
            };
            let Ok(body) = response.json::<Value>().await else {
                continue;
            };
            let Some(list) = body["members"].as_array() else {
                continue;
            };
            return list
                .iter()
                .map(|m| MemberState {
                    name: m["name"].as_str().unwrap_or_default().to_owned(),
                    role: m["role"].as_str().unwrap_or_default().to_owned(),
                    state: m["state"].as_str().unwrap_or_default().to_owned(),
                    timeline: m["timeline"].as_u64(),
                    lag: m["lag"].as_u64(),
                })
                .collect();
        }
        Vec::new()
    }

    /// The leader's name, if the cluster has a running one now.
    pub async fn leader(&self) -> Option<String> {
        self.roles()
            .await
            .into_iter()
            .find(|r| r.role == "leader" && r.state == "running")
            .map(|r| r.name)
    }

    /// The synchronous standby's name, if there is one now.
    pub async fn sync_standby(&self) -> Option<String> {
        self.roles()
            .await
            .into_iter()
            .find(|r| r.role == "sync_standby" && r.state == "running")
            .map(|r| r.name)
    }

    /// Waits, at most `within`, until `ready` holds for the members' roles; answers how long
    /// that took, and fails naming what it last saw.
    pub async fn wait_for(
        &self,
        what: &str,
        within: Duration,
        ready: impl Fn(&[MemberState]) -> bool,
    ) -> Duration {
        let started = Instant::now();
        loop {
            let roles = self.roles().await;
            if ready(&roles) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < within,
                "the cluster: {what} did not happen within {within:?}; it was: {roles:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the cluster is whole: every member running on the leader's timeline and
    /// replicating, one leader, one synchronous standby.
    pub async fn wait_whole(&self, within: Duration) -> Duration {
        let count = self.members.len();
        self.wait_for(
            "every member running, a leader and a synchronous standby",
            within,
            |roles| {
                let leader = roles.iter().find(|r| r.role == "leader");
                roles.len() == count
                    && roles.iter().all(|r| r.state == "running")
                    && roles.iter().filter(|r| r.role == "sync_standby").count() == 1
                    && leader.is_some_and(|leader| {
                        roles.iter().all(|r| {
                            r.timeline == leader.timeline && (r.role == "leader" || r.lag.is_some())
                        })
                    })
            },
        )
        .await
    }

    /// Waits until a member other than `old` leads.
    pub async fn wait_new_leader(&self, old: &str, within: Duration) -> String {
        self.wait_for(&format!("a leader other than {old}"), within, |roles| {
            roles
                .iter()
                .any(|r| r.role == "leader" && r.state == "running" && r.name != old)
        })
        .await;
        self.leader().await.expect("the new leader")
    }

    /// SIGKILL to a member's Patroni and PostgreSQL at once: the node is lost.
    pub async fn kill(&self, name: &str) {
        self.node_script(&["kill", name]).await;
    }

    /// SIGKILL to a member's PostgreSQL alone; its Patroni lives on.
    pub async fn kill_postgres(&self, name: &str) {
        self.node_script(&["kill-postgres", name]).await;
    }

    /// Starts a member's Patroni again.
    pub async fn start(&self, name: &str) {
        self.node_script(&["start", name]).await;
    }

    /// A planned switchover from `from` to `to` with `patronictl`.
    pub async fn switchover(&self, from: &str, to: &str) {
        self.node_script(&["switchover", from, to]).await;
    }

    async fn node_script(&self, args: &[&str]) {
        let script = self.script.clone();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let output = tokio::task::spawn_blocking(move || {
            std::process::Command::new(script)
                .args(&args)
                .output()
                .expect("run scripts/ha/node.sh")
        })
        .await
        .expect("the script's thread");
        assert!(
            output.status.success(),
            "scripts/ha/node.sh failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// The median and the largest of some durations (`ZERO` for none).
pub fn median_and_max(values: &[Duration]) -> (Duration, Duration) {
    let mut sorted = values.to_vec();
    sorted.sort();
    let median = if sorted.is_empty() {
        Duration::ZERO
    } else if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2]
    } else {
        (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2
    };
    (median, sorted.last().copied().unwrap_or_default())
}

/// CPU time (user and system) of a process so far, with that of its children: those still
/// running and those it has reaped. For a postmaster that is the whole PostgreSQL node.
pub fn cpu_of_process_tree(pid: u32) -> Duration {
    let ticks = |pid: u32, with_reaped: bool| -> u64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return 0;
        };
        // The fields after the command's closing parenthesis, from field 3 (state) on.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return 0;
        };
        let fields: Vec<u64> = rest
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        // utime, stime, cutime, cstime are fields 14 to 17, so 11 to 14 here.
        let own = fields.get(10).copied().unwrap_or(0) + fields.get(11).copied().unwrap_or(0);
        let reaped = fields.get(12).copied().unwrap_or(0) + fields.get(13).copied().unwrap_or(0);
        own + if with_reaped { reaped } else { 0 }
    };
    let mut total = ticks(pid, true);
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let parent = std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    let (_, rest) = stat.rsplit_once(')')?;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                });
            if parent == Some(pid) {
                total += ticks(child, false);
            }
        }
    }
    // Linux reports these in clock ticks of 1/100 s (USER_HZ).
    Duration::from_millis(total * 10)
}

/// The pid of member `name`'s postmaster, from its data directory in `HA_DIR`.
pub fn postmaster_pid(name: &str) -> Option<u32> {
    let dir = std::env::var("HA_DIR").ok()?;
    let file = std::fs::read_to_string(format!("{dir}/{name}/data/postmaster.pid")).ok()?;
    file.lines().next()?.trim().parse().ok()
}
