//! Redis for the tests: the shared server on 127.0.0.1:6379 (never stopped
//! or flushed by a test: other tests use it at the same time), unique key
//! prefixes, and a `redis-server` of a test's own for outages.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The shared Redis every test may use (with its own key prefix).
pub const SHARED: &str = "redis://127.0.0.1:6379";

/// A connection to the shared Redis; panics with what to install when none answers.
pub fn shared_redis() -> redis::Connection {
    let fail = |e: &dyn std::fmt::Display| -> ! {
        panic!(
            "these tests need Redis on 127.0.0.1:6379: run `redis-server` \
             (install it with `apt-get install redis-server`): {e}"
        )
    };
    let client = redis::Client::open(SHARED).unwrap_or_else(|e| fail(&e));
    let mut conn = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap_or_else(|e| fail(&e));
    let pong: String = redis::cmd("PING")
        .query(&mut conn)
        .unwrap_or_else(|e| fail(&e));
    assert_eq!(pong, "PONG");
    conn
}

/// A key prefix no other test (or test run) uses.
pub fn unique_prefix(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "te-test:{test}:{}:{nanos}:{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A `redis-server` of our own on a free port, killed on drop.
pub struct OwnRedis {
    pub port: u16,
    child: Option<Child>,
    extra: Vec<String>,
}

/// A TCP port nobody listens on (yet).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl OwnRedis {
    pub fn on_free_port() -> Self {
        Self::with(free_port(), Vec::new())
    }

    pub fn with(port: u16, extra: Vec<String>) -> Self {
        Self {
            port,
            child: None,
            extra,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none());
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}): apt-get install redis-server")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(client) = redis::Client::open(self.url())
                && let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(200))
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not answer PING", self.port);
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.signal_quiet("-CONT");
        }
        self.stop();
    }
}

impl OwnRedis {
    pub fn signal_quiet(&self, signal: &str) -> std::io::Result<()> {
        let pid = self.child.as_ref().map(Child::id).unwrap_or(0);
        Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .map(|_| ())
    }
}

/// The keys matching `pattern`, once there are any (writes the layers
/// make in the background), at most 5 s; panics naming `pattern` if none
/// come.
#[allow(dead_code)] // not every test file uses it
pub async fn keys_eventually(pattern: &str) -> Vec<String> {
    let mut conn = shared_redis();
    for _ in 0..100 {
        let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query(&mut conn).unwrap();
        if !keys.is_empty() {
            return keys;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no key matches {pattern}");
}

/// Whether a response-cache fill lease of `prefix` is left in Redis, once the background
/// release had time to land (at most 2 s).
pub async fn lease_left(prefix: &str) -> bool {
    let mut conn = shared_redis();
    for _ in 0..40 {
        let leases: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*:l:*"))
            .query(&mut conn)
            .unwrap();
        if leases.is_empty() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}
