//! The database: a primary pool, an optional read-replica pool for the
//! GETs, what goes wrong with them ([`DbError`]), and their probes,
//! metrics and migrations.
//!
//! Why `deadpool-postgres` (over `sqlx`): the pool tells how many callers
//! wait for a connection ([`deadpool_postgres::Status`]), which the OTel
//! metric `db.client.connection.pending_requests` needs and sqlx does not
//! expose (sqlx #700); every timeout (wait, connect, recycle) is set per
//! pool; and `tokio-postgres` underneath pipelines queries and builds in a
//! fraction of sqlx's time. Queries are plain SQL checked by the tests
//! against a real Postgres, as sqlx's runtime queries would be.

pub mod health;
pub mod metrics;
pub mod migrate;
pub mod observe;
pub mod pool;

use std::fmt;

pub use pool::{DbPool, PoolName};

use crate::config::ShopConfig;

/// What a database call can fail with, as the API answers it.
#[derive(Debug)]
pub enum DbError {
    /// No connection within the acquire timeout, or none could be opened,
    /// or the server went away mid-query: 503 with `Retry-After` (the
    /// client may retry; another replica or a moment later may do).
    Unavailable(String),
    /// The query failed: 500, logged with the correlation ID.
    Query(tokio_postgres::Error),
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable(why) => write!(f, "database unavailable: {why}"),
            Self::Query(err) => write!(f, "query failed: {err}"),
        }
    }
}

impl std::error::Error for DbError {}

impl From<tokio_postgres::Error> for DbError {
    fn from(err: tokio_postgres::Error) -> Self {
        if err.is_closed() {
            Self::Unavailable(format!("connection closed: {err}"))
        } else {
            Self::Query(err)
        }
    }
}

impl DbError {
    /// The Postgres error code (SQLSTATE) of a failed query, if any.
    pub fn code(&self) -> Option<&tokio_postgres::error::SqlState> {
        match self {
            Self::Query(err) => err.code(),
            Self::Unavailable(_) => None,
        }
    }
}

/// The shop's pools: writes go to the primary, GETs to the replica when
/// there is one.
#[derive(Debug, Clone)]
pub struct Db {
    primary: DbPool,
    replica: Option<DbPool>,
}

impl Db {
    /// The pools of `config` (`DATABASE_URL`, `DATABASE_READ_URL`); opens
    /// no connection yet. Install the meter provider first
    /// ([`crate::telemetry::install_metrics`]): the pools take their
    /// instruments from it now.
    ///
    /// # Errors
    ///
    /// A URL that does not parse, naming the variable.
    pub fn new(config: &ShopConfig) -> Result<Self, String> {
        let primary = DbPool::new(PoolName::Primary, &config.database_url, config.pool)
            .map_err(|e| format!("DATABASE_URL: {e}"))?;
        let replica = match &config.database_read_url {
            Some(url) => Some(
                DbPool::new(PoolName::Replica, url, config.pool)
                    .map_err(|e| format!("DATABASE_READ_URL: {e}"))?,
            ),
            None => None,
        };
        Ok(Self { primary, replica })
    }

    /// The primary pool (writes, and reads that must see them).
    pub fn primary(&self) -> &DbPool {
        &self.primary
    }

    /// The replica pool, if configured.
    pub fn replica(&self) -> Option<&DbPool> {
        self.replica.as_ref()
    }

    /// Every pool, the primary first.
    pub fn pools(&self) -> impl Iterator<Item = &DbPool> {
        std::iter::once(&self.primary).chain(self.replica.as_ref())
    }

    /// Registers the pools' observed metrics (`db.client.connection.count`,
    /// `.max`, `.pending_requests`) on the global meter provider; once per
    /// `Db`.
    pub fn register_metrics(&self) {
        let pools: Vec<DbPool> = self.pools().cloned().collect();
        observe::register(&pools);
    }

    /// A connection for a read: from the replica when there is one and it
    /// gives a connection, else from the primary.
    ///
    /// # Errors
    ///
    /// [`DbError::Unavailable`] when neither gives one in time.
    pub async fn read(&self) -> Result<deadpool_postgres::Client, DbError> {
        if let Some(replica) = &self.replica {
            match replica.get().await {
                Ok(client) => return Ok(client),
                Err(err) => {
                    tracing::warn!(error = %err, "read replica unavailable; reading from the primary")
                }
            }
        }
        self.primary.get().await
    }

    /// A connection on the primary.
    ///
    /// # Errors
    ///
    /// [`DbError::Unavailable`] when none comes in time.
    pub async fn write(&self) -> Result<deadpool_postgres::Client, DbError> {
        self.primary.get().await
    }
}
