//! A real `facerec-server` process for the tests: started on `127.0.0.1:0` (the bound address
//! is read from its JSON log), spoken to over HTTP, killed with SIGKILL.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use facerec_fixtures::{Part, multipart};
use serde_json::Value;

// ---- the server process -------------------------------------------------------------------

/// Log lines kept for failure messages.
const LOG_TAIL: usize = 200;

/// A `facerec-server` child process listening on a port the kernel picked.
pub struct ServerProcess {
    /// Behind a lock so that the kill can come while writer threads share the server.
    child: Mutex<Child>,
    /// Its process id.
    pub pid: u32,
    /// Where it listens.
    pub addr: SocketAddr,
    log: Arc<Mutex<VecDeque<String>>>,
    agent: ureq::Agent,
}

/// One HTTP answer.
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    pub fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        text.chars().take(300).collect()
    }

    /// The body of a 200 with both success flags, or a description of what came instead.
    pub fn success(&self) -> Result<Value, String> {
        match self.json() {
            Some(v) if self.status == 200 && v["sucess"] == true && v["success"] == true => Ok(v),
            _ => Err(format!("status {}: {}", self.status, self.text())),
        }
    }
}

impl ServerProcess {
    /// Starts the binary on `data_dir` and waits until `/ready` answers 200.
    pub fn start(data_dir: &Path) -> Self {
        Self::start_with(&[OsStr::new("--data-dir"), data_dir.as_os_str()])
    }

    /// Starts the binary with these flags besides the address, logging, threads and models,
    /// and waits until `/ready` answers 200.
    pub fn start_with(flags: &[&OsStr]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_facerec-server"))
            .args(["--bind", "127.0.0.1:0", "--log-format", "json"])
            .args(["--workers", "2", "--inference-threads", "2"])
            .args(flags)
            .arg("--models-dir")
            .arg(facerec_fixtures::models_dir())
            // the start-up and store lines, not one line per request
            .env(
                "RUST_LOG",
                "warn,facerec_server=info,facerec_store=info,facerec_store_postgres=info",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting facerec-server");
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = mpsc::channel();
        read_log(child.stdout.take().unwrap(), Arc::clone(&log), Some(tx));
        read_log(child.stderr.take().unwrap(), Arc::clone(&log), None);

        let deadline = Instant::now() + Duration::from_secs(120);
        let addr = loop {
            if let Ok(addr) = rx.recv_timeout(Duration::from_millis(50)) {
                break addr;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "facerec-server exited ({status}) before listening:\n{}",
                    tail(&log)
                );
            }
            assert!(
                Instant::now() < deadline,
                "facerec-server did not log its address within 120 s:\n{}",
                tail(&log)
            );
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let server = Self {
            pid: child.id(),
            child: Mutex::new(child),
            addr,
            log,
            agent,
        };
        server.wait_ready();
        server
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(answer) = self.get("/ready")
                && answer.status == 200
            {
                return;
            }
            if let Some(status) = self.child.lock().unwrap().try_wait().unwrap() {
                panic!(
                    "facerec-server exited ({status}) before it was ready:\n{}",
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "facerec-server not ready within 60 s:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    pub fn get(&self, path_and_query: &str) -> Result<Answer, ureq::Error> {
        read_answer(self.agent.get(self.url(path_and_query)).call())
    }

    /// GET with an API key (`Authorization: Bearer`).
    pub fn get_with_key(&self, path_and_query: &str, key: &str) -> Result<Answer, ureq::Error> {
        read_answer(
            self.agent
                .get(self.url(path_and_query))
                .header("Authorization", format!("Bearer {key}"))
                .call(),
        )
    }

    pub fn post(
        &self,
        path_and_query: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Answer, ureq::Error> {
        let mut request = self.agent.post(self.url(path_and_query));
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        read_answer(request.send(body))
    }

    /// SIGKILL (what `Child::kill` sends on Unix), then reaps the process.
    pub fn kill(&self) {
        let mut child = self.child.lock().unwrap();
        child.kill().expect("sending SIGKILL");
        child.wait().expect("reaping the killed server");
    }

    /// `(VmRSS, VmHWM)` of the process, in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .expect("reading /proc/PID/status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/PID/status"))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// The `faces` count the store logged when it opened.
    pub fn opened_faces(&self) -> u64 {
        let log = self.log.lock().unwrap();
        log.iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["message"] == "opened face store")
            .and_then(|v| v["faces"].as_u64())
            .unwrap_or_else(|| {
                panic!(
                    "no 'opened face store' line in the log:\n{}",
                    tail(&self.log)
                )
            })
    }

    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Keeps the last lines of a server pipe; sends the address of the `listening` line.
pub fn read_log(
    pipe: impl Read + Send + 'static,
    log: Arc<Mutex<VecDeque<String>>>,
    listening: Option<mpsc::Sender<SocketAddr>>,
) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            let text = String::from_utf8_lossy(&line).trim_end().to_owned();
            line.clear();
            if let Some(tx) = &listening
                && let Ok(v) = serde_json::from_str::<Value>(&text)
                && v["message"] == "listening"
                && let Some(addr) = v["addr"].as_str().and_then(|a| a.parse().ok())
            {
                let _ = tx.send(addr);
            }
            let mut log = log.lock().unwrap();
            if log.len() == LOG_TAIL {
                log.pop_front();
            }
            log.push_back(text);
        }
    });
}

pub fn tail(log: &Mutex<VecDeque<String>>) -> String {
    let log = log.lock().unwrap();
    log.iter().cloned().collect::<Vec<_>>().join("\n")
}

pub fn read_answer(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<Answer, ureq::Error> {
    let mut response = response?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(16 << 20)
        .read_to_vec()?;
    Ok(Answer { status, body })
}

pub fn fresh_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("facerec-server-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

// ---- request bodies -----------------------------------------------------------------------

/// A multipart body with one file field.
pub fn multipart_file(name: &str, bytes: &[u8]) -> Vec<u8> {
    multipart(&[Part::File(name, bytes)])
}

pub fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}
