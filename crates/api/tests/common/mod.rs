//! The real `secrets-service` binary as a child process, for what only a whole process shows:
//! signals, the exit status, and everything it prints from start-up to exit.
//!
//! Shared by the `api` and `redaction` test binaries; each uses a part of it.
#![allow(
    dead_code,
    reason = "each test binary that includes this module uses a part of it"
)]

use std::io::{BufRead as _, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long start-up may take before a test gives up (a debug build on a loaded machine).
const START_TIMEOUT: Duration = Duration::from_mins(1);

/// A running `secrets-service serve`.
pub struct ServiceProcess {
    child: Child,
    port: u16,
    output: Arc<Mutex<String>>,
}

impl ServiceProcess {
    /// Starts `secrets-service` with exactly `env` (nothing inherited, so no stray `RUST_LOG`
    /// or key in the developer's shell changes the test) and `args`, and waits for it to log
    /// the port it listens on. The caller sets `SECRETS__SERVER__BIND=127.0.0.1:0`.
    pub fn start(args: &[&str], env: &[(&str, String)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_secrets-service"))
            .args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start secrets-service");
        let output = Arc::new(Mutex::new(String::new()));
        let (port_tx, port_rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("piped stderr");
        let stdout = child.stdout.take().expect("piped stdout");
        collect(stderr, Arc::clone(&output), Some(port_tx));
        collect(stdout, Arc::clone(&output), None);
        let Ok(port) = port_rx.recv_timeout(START_TIMEOUT) else {
            drop(child.kill());
            drop(child.wait());
            panic!(
                "secrets-service did not log its port; it printed:\n{}",
                output.lock().map(|o| o.clone()).unwrap_or_default()
            );
        };
        Self {
            child,
            port,
            output,
        }
    }

    /// The port the service listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Sends `signal` to the process.
    #[cfg(unix)]
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = i32::try_from(self.child.id()).expect("a pid fits an i32");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).expect("send a signal");
    }

    /// Waits for the process to exit, at most `within`; `None` when it is still running.
    pub fn wait(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the child") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits, at most `within`, until the output has a line containing `needle`.
    pub fn wait_for_output(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.output().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Everything the process printed so far, standard error and output interleaved by line.
    /// After [`ServiceProcess::wait`] returned a status the pipes are closed, so this is all
    /// of it once the reader threads drain them (see [`ServiceProcess::finish`]).
    pub fn output(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// Waits for the exit (at most `within`) and for both pipes to be read to their end, and
    /// returns the status and everything printed.
    pub fn finish(mut self, within: Duration) -> (ExitStatus, String) {
        let status = self.wait(within).unwrap_or_else(|| {
            panic!(
                "secrets-service did not exit within {within:?}; it printed:\n{}",
                self.output()
            )
        });
        // The readers finish when the pipes close, which the exit does; their last lines may
        // still be on their way into the buffer.
        let drained = Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&self.output) > 1 && Instant::now() < drained {
            std::thread::sleep(Duration::from_millis(10));
        }
        (status, self.output())
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            drop(self.child.kill());
            drop(self.child.wait());
        }
    }
}

/// Reads `pipe` line by line into `output` on a thread of its own; with `port`, also sends the
/// port of the "listening" line.
fn collect(
    pipe: impl Read + Send + 'static,
    output: Arc<Mutex<String>>,
    port: Option<mpsc::Sender<u16>>,
) {
    std::thread::spawn(move || {
        let mut port = port;
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Some(found) = port.as_ref().and_then(|_| listening_port(&line))
                && let Some(sender) = port.take()
            {
                let _ = sender.send(found);
            }
            if let Ok(mut output) = output.lock() {
                output.push_str(&line);
                output.push('\n');
            }
        }
        drop(output);
    });
}

/// The port in the start-up line `listening port=N` (text) or
/// `{"message":"listening","port":N,...}` (JSON).
pub fn listening_port(line: &str) -> Option<u16> {
    if line.trim_start().starts_with('{') {
        let json: serde_json::Value = serde_json::from_str(line).ok()?;
        if json["message"] != "listening" {
            return None;
        }
        return json["port"].as_u64().and_then(|p| u16::try_from(p).ok());
    }
    let rest = &line[line.find(" listening ")?..];
    let digits = &rest[rest.find("port=")? + "port=".len()..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// One HTTP/1.1 response, as read off a connection by hand.
pub struct HttpAnswer {
    pub status: u16,
    /// The status line and headers.
    pub head: String,
    /// The body (`Content-Length` bytes).
    pub body: Vec<u8>,
}

/// Reads one HTTP/1.1 response with a `Content-Length` body from `stream`; `None` when the
/// connection closes or fails before a whole response.
pub async fn read_http_response<S>(stream: &mut S) -> Option<HttpAnswer>
where
    S: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt as _;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(head_end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
            let length = head
                .lines()
                .find_map(|line| {
                    line.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .and_then(|v| v.trim().parse::<usize>().ok())
                })
                .unwrap_or(0);
            let body_start = head_end + 4;
            if buffer.len() >= body_start + length {
                let status = head.split(' ').nth(1).and_then(|s| s.parse().ok())?;
                let body = buffer[body_start..body_start + length].to_vec();
                return Some(HttpAnswer { status, head, body });
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
        }
    }
}
