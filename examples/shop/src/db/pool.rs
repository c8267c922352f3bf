//! One pool ([`DbPool`]): deadpool-postgres with the shop's timeouts, the
//! wait for a connection measured, idle connections closed.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use super::DbError;
use super::metrics::PoolInstruments;
use crate::config::PoolSettings;

/// Which pool: the value of `db.client.connection.pool.name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolName {
    /// `DATABASE_URL`.
    Primary,
    /// `DATABASE_READ_URL`.
    Replica,
}

impl PoolName {
    /// `primary` or `replica`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Replica => "replica",
        }
    }
}

/// A Postgres pool whose waits, waiters and timeouts are counted.
/// Cheap to clone (every clone is the same pool).
#[derive(Clone)]
pub struct DbPool {
    name: PoolName,
    pool: Pool,
    settings: PoolSettings,
    /// Callers waiting for a connection right now.
    pending: Arc<AtomicUsize>,
    pg_config: tokio_postgres::Config,
    instruments: PoolInstruments,
}

impl fmt::Debug for DbPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbPool")
            .field("name", &self.name)
            .field("status", &self.pool.status())
            .finish_non_exhaustive()
    }
}

/// Decrements the waiter count however the wait ends (a cancelled request
/// included).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl DbPool {
    /// A pool on `url` (a `postgres://` URL or `key=value` string) sized by
    /// `settings`; opens no connection until asked. Must be called inside
    /// a tokio runtime (it starts the idle reaper).
    ///
    /// # Errors
    ///
    /// A URL that does not parse.
    pub fn new(name: PoolName, url: &str, settings: PoolSettings) -> Result<Self, String> {
        let mut pg_config: tokio_postgres::Config = url.parse().map_err(|e| format!("{e}"))?;
        if pg_config.get_connect_timeout().is_none() {
            pg_config.connect_timeout(settings.acquire_timeout);
        }
        pg_config.application_name("tower-edge-shop");
        let manager = Manager::from_config(
            pg_config.clone(),
            NoTls,
            ManagerConfig {
                // A closed connection (server restarted) is dropped at
                // checkout, without a round trip per checkout.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.max_connections)
            .wait_timeout(Some(settings.acquire_timeout))
            .create_timeout(Some(settings.acquire_timeout))
            .recycle_timeout(Some(settings.acquire_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| e.to_string())?;
        spawn_idle_reaper(pool.weak(), settings.idle_timeout);
        Ok(Self {
            name,
            pool,
            settings,
            pending: Arc::new(AtomicUsize::new(0)),
            pg_config,
            instruments: PoolInstruments::global(),
        })
    }

    /// Which pool this is.
    pub fn name(&self) -> PoolName {
        self.name
    }

    /// Its sizes and timeouts.
    pub fn settings(&self) -> PoolSettings {
        self.settings
    }

    /// The connection settings (the readiness probe opens its own).
    pub fn pg_config(&self) -> &tokio_postgres::Config {
        &self.pg_config
    }

    /// Open connections: `(idle, used)`.
    pub fn connections(&self) -> (usize, usize) {
        let status = self.pool.status();
        (status.available, status.size - status.available)
    }

    /// Callers waiting for a connection now.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// A connection, within the acquire timeout; the wait is recorded in
    /// `db.client.connection.wait_time`, a timeout in
    /// `db.client.connection.timeouts`.
    ///
    /// # Errors
    ///
    /// [`DbError::Unavailable`]: no connection in time, or none could be
    /// opened.
    pub async fn get(&self) -> Result<deadpool_postgres::Client, DbError> {
        let start = Instant::now();
        self.pending.fetch_add(1, Ordering::Relaxed);
        let waiting = Waiting(&self.pending);
        let result = self.pool.get().await;
        drop(waiting);
        self.instruments
            .wait_time(self.name.as_str(), start.elapsed().as_secs_f64());
        match result {
            Ok(client) => Ok(client),
            Err(PoolError::Timeout(kind)) => {
                self.instruments.timeout(self.name.as_str());
                Err(DbError::Unavailable(format!(
                    "{} pool: no connection within {} ms ({kind:?})",
                    self.name.as_str(),
                    self.settings.acquire_timeout.as_millis()
                )))
            }
            Err(err) => Err(DbError::Unavailable(format!(
                "{} pool: {err}",
                self.name.as_str()
            ))),
        }
    }
}

/// Closes connections idle longer than `idle_timeout`, checking a few
/// times per timeout; stops when the pool is dropped.
fn spawn_idle_reaper(pool: deadpool_postgres::WeakPool, idle_timeout: Duration) {
    let every = (idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(10));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(pool) = pool.upgrade() else { break };
            pool.retain(|_, metrics| metrics.last_used() < idle_timeout);
        }
    });
}
