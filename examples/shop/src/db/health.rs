//! Readiness probes: each database answers `SELECT 1` on a connection of
//! the probe's own, so a saturated pool (every connection busy, callers
//! queued) does not make the probe wait in that queue, and a probe never
//! takes a connection a request needs.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_postgres::NoTls;

/// How long a probe may take before the database counts as down.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// A probe of one database, on one connection of its own, opened again
/// when it breaks. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DbProbe {
    name: &'static str,
    config: tokio_postgres::Config,
    client: Arc<Mutex<Option<tokio_postgres::Client>>>,
}

impl DbProbe {
    /// A probe of the database `config` points to, named `name` in logs.
    pub fn new(name: &'static str, config: &tokio_postgres::Config) -> Self {
        let mut config = config.clone();
        config.connect_timeout(PROBE_TIMEOUT);
        config.application_name("tower-edge-shop readiness");
        Self {
            name,
            config,
            client: Arc::new(Mutex::new(None)),
        }
    }

    /// Its name (`primary` or `replica`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether the database answers within [`PROBE_TIMEOUT`]. Concurrent
    /// probes take turns on the one connection, within the same timeout.
    pub async fn check(&self) -> Result<(), String> {
        match tokio::time::timeout(PROBE_TIMEOUT, self.ping()).await {
            Ok(result) => result,
            Err(_) => {
                // Whatever was under way may still be: start afresh.
                if let Ok(mut slot) = self.client.try_lock() {
                    *slot = None;
                }
                Err(format!("no answer within {} ms", PROBE_TIMEOUT.as_millis()))
            }
        }
    }

    async fn ping(&self) -> Result<(), String> {
        let mut slot = self.client.lock().await;
        if slot.as_ref().is_none_or(tokio_postgres::Client::is_closed) {
            let (client, connection) = self
                .config
                .connect(NoTls)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            tokio::spawn(async move {
                if let Err(err) = connection.await {
                    tracing::debug!(error = %err, "readiness connection closed");
                }
            });
            *slot = Some(client);
        }
        let client = slot.as_ref().expect("set above");
        match client.simple_query("SELECT 1").await {
            Ok(_) => Ok(()),
            Err(err) => {
                *slot = None;
                Err(format!("SELECT 1: {err}"))
            }
        }
    }
}
