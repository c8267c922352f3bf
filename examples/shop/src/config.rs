//! The shop's environment: the examples' [`Config`] (JWT, rate limits,
//! Redis, overload, connections) plus the database pools and the admin
//! listener.

use std::error::Error;
use std::net::SocketAddr;
use std::time::Duration;

use crate::common::Config;

/// Default `DB_MAX_CONNECTIONS`: 20 connections per pool.
pub const DEFAULT_MAX_CONNECTIONS: usize = 20;
/// Default `DB_ACQUIRE_TIMEOUT_MS`: 2 s to get (or open) a connection.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
/// Default `DB_IDLE_TIMEOUT_MS`: a connection unused for 30 s is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How one pool is sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// `DB_MAX_CONNECTIONS`: open connections at most.
    pub max_connections: usize,
    /// `DB_ACQUIRE_TIMEOUT_MS`: how long a request waits for a connection
    /// (and how long opening one may take) before it is answered 503.
    pub acquire_timeout: Duration,
    /// `DB_IDLE_TIMEOUT_MS`: idle connections older than this are closed.
    pub idle_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// Everything the shop reads from its environment.
#[derive(Debug, Clone)]
pub struct ShopConfig {
    /// The examples' settings: `BIND`, JWT, `RATE_LIMIT`, `REDIS_URL`...
    pub edge: Config,
    /// `DATABASE_URL`: the primary (writes, and reads without a replica).
    pub database_url: String,
    /// `DATABASE_READ_URL`: a read replica serving the GETs.
    pub database_read_url: Option<String>,
    /// The pools' sizes and timeouts.
    pub pool: PoolSettings,
    /// `ADMIN_BIND`: `/metrics`, `/livez`, `/readyz`.
    pub admin_bind: SocketAddr,
    /// `SHOP_REPLICA_ID`: put on log lines and in `x-served-by`.
    pub replica_id: Option<String>,
    /// `REDIS_PREFIX`: the first part of every Redis key the shop writes
    /// (rate limits, idempotency keys, cached responses), default
    /// [`DEFAULT_REDIS_PREFIX`]. Replicas of one shop share it; two shops
    /// on one Redis must not.
    pub redis_prefix: String,
    /// `SHOP_CACHE`: `on` (default) or `off`. Off removes the response
    /// cache and cache-aside, so every product read queries the database
    /// (the baseline of the benchmarks).
    pub cache: bool,
}

/// Default `REDIS_PREFIX`.
pub const DEFAULT_REDIS_PREFIX: &str = "tower-edge-shop";

/// The API's default address.
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";
/// The admin listener's default address.
pub const DEFAULT_ADMIN_BIND: &str = "127.0.0.1:9464";

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Reads a whole number of milliseconds from 1, naming the variable.
fn millis(name: &str, value: &str) -> Result<Duration, String> {
    match value.trim().parse::<u64>() {
        Ok(0) => Err(format!("{name}: at least 1 (ms)")),
        Ok(ms) => Ok(Duration::from_millis(ms)),
        Err(e) => Err(format!("{name}: {e}")),
    }
}

impl PoolSettings {
    /// `DB_MAX_CONNECTIONS`, `DB_ACQUIRE_TIMEOUT_MS`, `DB_IDLE_TIMEOUT_MS`
    /// from `get` (the environment in [`ShopConfig::from_env`]).
    ///
    /// # Errors
    ///
    /// A value that is not a whole number from 1, naming the variable.
    pub fn parse(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut settings = Self::default();
        if let Some(max) = get("DB_MAX_CONNECTIONS") {
            settings.max_connections = match max.trim().parse::<usize>() {
                Ok(0) => return Err("DB_MAX_CONNECTIONS: at least 1".into()),
                Ok(n) => n,
                Err(e) => return Err(format!("DB_MAX_CONNECTIONS: {e}")),
            };
        }
        if let Some(ms) = get("DB_ACQUIRE_TIMEOUT_MS") {
            settings.acquire_timeout = millis("DB_ACQUIRE_TIMEOUT_MS", &ms)?;
        }
        if let Some(ms) = get("DB_IDLE_TIMEOUT_MS") {
            settings.idle_timeout = millis("DB_IDLE_TIMEOUT_MS", &ms)?;
        }
        Ok(settings)
    }
}

impl ShopConfig {
    /// Reads the environment.
    ///
    /// # Errors
    ///
    /// A missing `DATABASE_URL` or a bad value, naming the variable.
    pub fn from_env() -> Result<Self, Box<dyn Error>> {
        let edge = Config::from_env(DEFAULT_BIND)?;
        let database_url = var("DATABASE_URL")
            .ok_or("DATABASE_URL: required, e.g. postgres://postgres@127.0.0.1:5432/shop")?;
        let admin_bind = var("ADMIN_BIND")
            .as_deref()
            .unwrap_or(DEFAULT_ADMIN_BIND)
            .parse()
            .map_err(|e| format!("ADMIN_BIND: {e}"))?;
        let mut config = Self {
            edge,
            database_url,
            database_read_url: var("DATABASE_READ_URL"),
            pool: PoolSettings::parse(var)?,
            admin_bind,
            replica_id: var("SHOP_REPLICA_ID"),
            redis_prefix: var("REDIS_PREFIX").unwrap_or_else(|| DEFAULT_REDIS_PREFIX.to_owned()),
            cache: match var("SHOP_CACHE").as_deref() {
                None | Some("on") => true,
                Some("off") => false,
                Some(other) => return Err(format!("SHOP_CACHE: on or off, not {other:?}").into()),
            },
        };
        config.use_redis_prefix()?;
        Ok(config)
    }

    /// Keeps the rate-limit buckets under [`redis_prefix`](Self::redis_prefix)
    /// (the examples' configuration puts them under theirs). Call after
    /// changing the prefix or the Redis backend.
    ///
    /// # Errors
    ///
    /// A prefix the store refuses.
    pub fn use_redis_prefix(&mut self) -> Result<(), tower_edge::ConfigError> {
        use tower_edge::rate_limit::redis::{RedisFallback, RedisStore};
        if let Some(backend) = &self.edge.redis_backend {
            let store = RedisStore::with_backend(backend.clone())
                .key_prefix(format!("{}:rl", self.redis_prefix))
                .fallback(RedisFallback::Memory)
                .build()?;
            self.edge.redis = Some(store);
        }
        Ok(())
    }

    /// A configuration for `database_url` with every other value at its
    /// default (the tests start from it).
    pub fn for_database(database_url: impl Into<String>) -> Self {
        Self {
            edge: Config::default(),
            database_url: database_url.into(),
            database_read_url: None,
            pool: PoolSettings::default(),
            admin_bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            replica_id: None,
            redis_prefix: DEFAULT_REDIS_PREFIX.to_owned(),
            cache: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn pool_defaults_are_the_issue_s() {
        let settings = PoolSettings::parse(env(&[])).unwrap();
        assert_eq!(settings.max_connections, 20);
        assert_eq!(settings.acquire_timeout, Duration::from_secs(2));
        assert_eq!(settings.idle_timeout, Duration::from_secs(30));
    }

    #[test]
    fn pool_settings_are_read() {
        let settings = PoolSettings::parse(env(&[
            ("DB_MAX_CONNECTIONS", "5"),
            ("DB_ACQUIRE_TIMEOUT_MS", "250"),
            ("DB_IDLE_TIMEOUT_MS", "1000"),
        ]))
        .unwrap();
        assert_eq!(settings.max_connections, 5);
        assert_eq!(settings.acquire_timeout, Duration::from_millis(250));
        assert_eq!(settings.idle_timeout, Duration::from_secs(1));
    }

    #[test]
    fn bad_pool_settings_name_the_variable() {
        for (name, value) in [
            ("DB_MAX_CONNECTIONS", "0"),
            ("DB_MAX_CONNECTIONS", "many"),
            ("DB_ACQUIRE_TIMEOUT_MS", "0"),
            ("DB_IDLE_TIMEOUT_MS", "-1"),
        ] {
            let pairs = [(name, value)];
            let err = PoolSettings::parse(env(&pairs)).unwrap_err();
            assert!(err.starts_with(name), "{err}");
        }
    }
}
