//! The shared connection and the accounting every call goes through.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;

use super::breaker::Breaker;
use super::failure::{Failure, FailureKind, RedisFailure};
use super::script::ScriptCall;
use super::{CONNECT_TIMEOUT, within};

pub(crate) enum Target {
    Single(redis::Client),
    Cluster(Box<ClusterClient>),
}

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    /// Sends the call's `EVALSHA`; on `NOSCRIPT` (after `SCRIPT FLUSH`, a
    /// restart or a failover) sends it again as `EVAL` with the script's
    /// text.
    async fn run<T: redis::FromRedisValue>(&mut self, call: &ScriptCall) -> redis::RedisResult<T> {
        let first = self.query(call.evalsha()).await;
        match first {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                self.query(&call.eval()).await
            }
            other => other,
        }
    }

    async fn send<T: redis::FromRedisValue>(&mut self, call: &Call) -> redis::RedisResult<T> {
        match call {
            Call::Script(call) => self.run(call).await,
            Call::Command(cmd) => self.query(cmd).await,
            Call::Pipeline(pipe) => match self {
                Self::Single(conn) => pipe.query_async(conn).await,
                Self::Cluster(conn) => pipe.query_async(conn).await,
            },
        }
    }

    async fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        match self {
            Self::Single(conn) => cmd.query_async(conn).await,
            Self::Cluster(conn) => cmd.query_async(conn).await,
        }
    }
}

/// What a store sends: a script, or plain commands (a fast path that
/// needs no script).
enum Call {
    Script(ScriptCall),
    /// Idempotency's claim (`SET NX GET`), the response cache's lookup
    /// (`HGETALL`).
    #[cfg_attr(
        not(any(feature = "idempotency", feature = "response-cache")),
        allow(dead_code)
    )]
    Command(redis::Cmd),
    /// The response cache's lookup with Redis's clock (`HGETALL` + `TIME`).
    #[cfg_attr(not(feature = "response-cache"), allow(dead_code))]
    Pipeline(redis::Pipeline),
}

/// Whether the backend sends calls to Redis now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Health {
    /// Calls go to Redis (including before the first connection).
    Up,
    /// Tripped after sustained failure: calls fail at once until the retry
    /// interval passes.
    Down,
}

pub(crate) type FailureHook = Arc<dyn Fn(FailureKind) + Send + Sync>;

pub(crate) struct Shared {
    pub(crate) target: Target,
    conn: OnceLock<Conn>,
    /// Serialises starting the connection. Held only around synchronous
    /// code (no `.await`, no I/O): concurrent first callers wait
    /// microseconds for the connection instead of failing.
    starting: Mutex<()>,
    connecting: AtomicBool,
    pub(crate) timeout: Duration,
    failures: AtomicU64,
    breaker: Breaker,
    /// Tripped and not answered since (for logging once per outage).
    down: AtomicBool,
    on_failure: Option<FailureHook>,
}

/// A connection to Redis (one node or a Cluster) shared by every
/// Redis-backed store of a process; see the [module docs](super).
///
/// Cheap to clone; clones share the connection, the breaker and the
/// counters.
#[derive(Clone)]
pub struct RedisBackend {
    shared: Arc<Shared>,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shared;
        f.debug_struct("RedisBackend")
            .field(
                "target",
                &match s.target {
                    Target::Single(_) => "single",
                    Target::Cluster(_) => "cluster",
                },
            )
            .field("timeout", &s.timeout)
            .field("failures", &s.failures.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    pub(crate) fn from_parts(
        target: Target,
        timeout: Duration,
        breaker: Breaker,
        on_failure: Option<FailureHook>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                target,
                conn: OnceLock::new(),
                starting: Mutex::new(()),
                connecting: AtomicBool::new(false),
                timeout,
                failures: AtomicU64::new(0),
                breaker,
                down: AtomicBool::new(false),
                on_failure,
            }),
        }
    }

    /// The Redis client, for a connection of a store's own (the response
    /// cache's invalidation subscription).
    #[cfg(feature = "response-cache")]
    pub(crate) fn target(&self) -> &Target {
        &self.shared.target
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.shared.timeout
    }

    /// How many calls to Redis failed (timeouts, connection and response
    /// errors) since the backend was built.
    pub fn failures(&self) -> u64 {
        self.shared.failures.load(Ordering::Relaxed)
    }

    /// Whether calls go to Redis now, or the backend is tripped.
    pub fn health(&self) -> Health {
        if self.shared.breaker.is_open() {
            Health::Down
        } else {
            Health::Up
        }
    }

    /// Runs `call` within the timeout and converts its reply to `T`.
    ///
    /// Returns at once, without a future, when the call cannot be sent (the
    /// backend is tripped, not connected yet, no tokio runtime): the caller
    /// answers from its fallback without an allocation. Failures are
    /// counted, logged and reported to the metrics hook before they are
    /// returned.
    ///
    /// # Errors
    ///
    /// When the call cannot be sent now.
    pub fn eval<T>(
        &self,
        call: ScriptCall,
    ) -> Result<impl Future<Output = Result<T, RedisFailure>> + Send + 'static, RedisFailure>
    where
        T: redis::FromRedisValue + Send + 'static,
    {
        self.eval_map(call, Ok)
    }

    /// [`eval`](Self::eval), then `parse` on the reply: a reply `parse`
    /// refuses (with [`RedisFailure::bad_reply`]) counts as a failed call,
    /// not as an answer.
    ///
    /// # Errors
    ///
    /// When the call cannot be sent now.
    pub fn eval_map<T, U, P>(
        &self,
        call: ScriptCall,
        parse: P,
    ) -> Result<impl Future<Output = Result<U, RedisFailure>> + Send + 'static, RedisFailure>
    where
        T: redis::FromRedisValue + Send + 'static,
        U: Send + 'static,
        P: FnOnce(T) -> Result<U, RedisFailure> + Send + 'static,
    {
        self.send_map(Call::Script(call), parse)
    }

    /// [`eval_map`](Self::eval_map) for one plain command (no script): the
    /// same timeout, breaker and failure counting.
    #[cfg_attr(
        not(any(feature = "idempotency", feature = "response-cache")),
        allow(dead_code)
    )]
    pub(crate) fn command_map<T, U, P>(
        &self,
        cmd: redis::Cmd,
        parse: P,
    ) -> Result<impl Future<Output = Result<U, RedisFailure>> + Send + 'static, RedisFailure>
    where
        T: redis::FromRedisValue + Send + 'static,
        U: Send + 'static,
        P: FnOnce(T) -> Result<U, RedisFailure> + Send + 'static,
    {
        self.send_map(Call::Command(cmd), parse)
    }

    /// Sends `pipe` (plain commands, one round trip) and waits for its
    /// replies: the same timeout, breaker and failure counting.
    #[cfg_attr(not(feature = "response-cache"), allow(dead_code))]
    pub(crate) async fn run_pipeline<T>(&self, pipe: redis::Pipeline) -> Result<T, RedisFailure>
    where
        T: redis::FromRedisValue + Send + 'static,
    {
        self.send_map(Call::Pipeline(pipe), Ok)?.await
    }

    fn send_map<T, U, P>(
        &self,
        call: Call,
        parse: P,
    ) -> Result<impl Future<Output = Result<U, RedisFailure>> + Send + 'static, RedisFailure>
    where
        T: redis::FromRedisValue + Send + 'static,
        U: Send + 'static,
        P: FnOnce(T) -> Result<U, RedisFailure> + Send + 'static,
    {
        let shared = &self.shared;
        if shared.breaker.is_open() {
            return Err(RedisFailure::new(Failure::Down));
        }
        let mut conn = match shared.connection() {
            Ok(conn) => conn,
            Err(failure) => {
                shared.failed(&failure);
                return Err(RedisFailure::new(failure));
            }
        };
        let shared = Arc::clone(shared);
        Ok(async move {
            let outcome = within(shared.timeout, conn.send::<T>(&call)).await;
            let failure = match outcome {
                Ok(Ok(reply)) => match parse(reply) {
                    Ok(value) => {
                        shared.answered();
                        return Ok(value);
                    }
                    Err(failure) => failure.failure,
                },
                Ok(Err(error)) => Failure::Redis(error),
                Err(()) => Failure::Timeout(shared.timeout),
            };
            shared.failed(&failure);
            Err(RedisFailure::new(failure))
        })
    }

    /// Runs `call` and waits for its reply (see [`eval`](Self::eval)).
    ///
    /// # Errors
    ///
    /// When Redis fails, times out or the backend is tripped.
    pub async fn run<T>(&self, call: ScriptCall) -> Result<T, RedisFailure>
    where
        T: redis::FromRedisValue + Send + 'static,
    {
        self.eval(call)?.await
    }

    /// Sends a `PING` within `timeout` (a readiness probe; also starts the
    /// connection and waits for it). A failed `PING` is not counted as a
    /// failure; an answer closes a tripped breaker.
    ///
    /// # Errors
    ///
    /// When Redis does not answer in time, or no tokio runtime runs.
    pub async fn ping(&self, timeout: Duration) -> Result<(), RedisFailure> {
        // A huge timeout waits "forever" rather than overflowing.
        let now = tokio::time::Instant::now();
        let deadline = now
            .checked_add(timeout)
            .unwrap_or_else(|| now + Duration::from_secs(366 * 24 * 3600));
        loop {
            match self.shared.connection() {
                Ok(mut conn) => {
                    return match tokio::time::timeout_at(
                        deadline,
                        conn.query::<()>(&redis::cmd("PING")),
                    )
                    .await
                    {
                        Ok(Ok(())) => {
                            self.shared.answered();
                            Ok(())
                        }
                        Ok(Err(e)) => Err(RedisFailure::new(Failure::Redis(e))),
                        Err(_) => Err(RedisFailure::new(Failure::Timeout(timeout))),
                    };
                }
                Err(Failure::Connecting) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(failure) => return Err(RedisFailure::new(failure)),
            }
        }
    }
}

impl Shared {
    /// The connection, starting it on first use.
    fn connection(self: &Arc<Self>) -> Result<Conn, Failure> {
        if let Some(conn) = self.conn.get() {
            return Ok(conn.clone());
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(Failure::NoRuntime);
        };
        // A Cluster connection is made in its own task: while it is, answer
        // without the lock (the wait may be long when the cluster is down).
        if matches!(self.target, Target::Cluster(_)) && self.connecting.load(Ordering::Acquire) {
            return self.conn.get().cloned().ok_or(Failure::Connecting);
        }
        let _starting = crate::sync::lock(&self.starting);
        if let Some(conn) = self.conn.get() {
            // Another caller started it while this one waited.
            return Ok(conn.clone());
        }
        // Only a Cluster connection is still being made (asynchronously).
        if self.connecting.swap(true, Ordering::AcqRel) {
            return self.conn.get().cloned().ok_or(Failure::Connecting);
        }
        match &self.target {
            Target::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_number_of_retries(3)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_millis(500));
                let manager = {
                    let _entered = runtime.enter();
                    ConnectionManager::new_lazy_with_config(client.clone(), config)
                };
                let manager = match manager {
                    Ok(manager) => manager,
                    Err(e) => {
                        self.connecting.store(false, Ordering::Release);
                        return Err(Failure::Redis(e));
                    }
                };
                let conn = self.conn.get_or_init(|| Conn::Single(manager)).clone();
                // Drive the lazy connection now, not on the first call's
                // budget.
                let mut warm = conn.clone();
                runtime.spawn(async move { warm.query::<()>(&redis::cmd("PING")).await });
                Ok(conn)
            }
            Target::Cluster(client) => {
                let client = ClusterClient::clone(client);
                let weak = Arc::downgrade(self);
                runtime.spawn(connect_cluster(client, weak));
                Err(Failure::Connecting)
            }
        }
    }

    fn failed(&self, failure: &Failure) {
        if matches!(failure, Failure::Connecting) {
            // Not a failure of Redis: the connect attempt reports its own.
            tracing::debug!("Redis not connected yet; callers fall back meanwhile");
            return;
        }
        if matches!(failure, Failure::Down) {
            return;
        }
        self.failures.fetch_add(1, Ordering::Relaxed);
        let kind = failure.kind();
        if let Some(hook) = &self.on_failure {
            hook(kind);
        }
        if self.breaker.failure() && !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error.type = kind.as_str(),
                "Redis backend unavailable; logged once until it answers again"
            );
        } else {
            tracing::debug!(error.type = kind.as_str(), "Redis call failed");
        }
    }

    fn answered(&self) {
        self.breaker.success();
        if self.down.load(Ordering::Relaxed) && self.down.swap(false, Ordering::Relaxed) {
            tracing::info!("Redis backend answers again");
        }
    }
}

async fn connect_cluster(client: ClusterClient, shared: Weak<Shared>) {
    let mut pause = Duration::from_millis(50);
    loop {
        match tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_connection()).await {
            Ok(Ok(conn)) => {
                if let Some(shared) = shared.upgrade() {
                    let _ = shared.conn.set(Conn::Cluster(conn));
                }
                return;
            }
            Ok(Err(error)) => {
                // Debug of the text (escaped): it may quote the server.
                tracing::debug!(error = ?error.to_string(), "Redis Cluster connect failed");
                if let Some(shared) = shared.upgrade() {
                    shared.failed(&Failure::Redis(error));
                }
            }
            Err(_) => {
                tracing::debug!("Redis Cluster connect timed out");
                if let Some(shared) = shared.upgrade() {
                    shared.failed(&Failure::Timeout(CONNECT_TIMEOUT));
                }
            }
        }
        if shared.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}
