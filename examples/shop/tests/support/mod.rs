//! A shop of each test's own: a fresh Postgres database (`shop_<random>`,
//! dropped at the end) on the server at `SHOP_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/test`), migrations run, the API and
//! admin listeners on free loopback ports.

#![allow(dead_code)] // each test file uses part of it

use std::time::Duration;

use shop::common;
use shop::config::ShopConfig;
use shop::db::{Db, migrate};
use tokio::net::TcpListener;

/// Where the test databases are created.
pub fn admin_url() -> String {
    std::env::var("SHOP_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Connects to `url`, or fails the test saying what to install.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
        Ok(pair) => pair,
        Err(err) => panic!(
            "these tests need PostgreSQL at {url} ({err}); install and start it: \
             `apt-get install postgresql` (trust auth for user postgres on 127.0.0.1, \
             a database `test`), or point SHOP_TEST_POSTGRES at one"
        ),
    };
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A database of the test's own, dropped (connections and all) on drop.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> Self {
        let admin = admin_url();
        let client = connect(&admin).await;
        let name = format!("shop_{}", uuid::Uuid::new_v4().simple());
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("CREATE DATABASE");
        let mut config: tokio_postgres::Config = admin.parse().expect("a Postgres URL");
        config.dbname(&name);
        let url = format!(
            "host={} port={} user={} dbname={name}",
            host(&config),
            config.get_ports().first().copied().unwrap_or(5432),
            config.get_user().unwrap_or("postgres"),
        );
        Self { name, url }
    }

    /// A direct connection to this database (the test's own hands).
    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }
}

fn host(config: &tokio_postgres::Config) -> String {
    match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => "127.0.0.1".to_owned(),
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside any runtime's async context: a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let client = connect(&admin_url()).await;
                let _ = client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            });
        })
        .join();
    }
}

/// A running shop.
pub struct Shop {
    pub api: String,
    pub admin: String,
    pub db: Db,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The configuration tests start from: `url`'s database, the default
/// pool, limits high enough that no test meets them by accident.
pub fn config(url: &str) -> ShopConfig {
    let mut config = ShopConfig::for_database(url);
    config.edge.max_in_flight_per_client = Some(1000);
    config
}

impl Shop {
    /// Migrates `config`'s database and serves it.
    pub async fn start(config: ShopConfig) -> Self {
        shop::telemetry::install_metrics();
        let db = Db::new(&config).expect("a valid database URL");
        migrate::run(db.primary()).await.expect("migrations run");
        Self::start_on(config, db).await
    }

    /// Serves `db` (already migrated).
    pub async fn start_on(config: ShopConfig, db: Db) -> Self {
        let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api_url = format!("http://{}", api.local_addr().unwrap());
        let admin_url = format!("http://{}", admin.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = db.clone();
        let task = tokio::spawn(async move {
            shop::server::serve_db(config, served, api, admin, async move {
                let _ = stopped.await;
            })
            .await
            .expect("the shop serves");
        });
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Self {
            api: api_url,
            admin: admin_url,
            db,
            http,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api)
    }

    /// `GET path`, anonymous.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    /// `GET path` on the admin listener (`/livez`, `/readyz`, `/metrics`).
    pub async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.admin))
            .send()
            .await
            .unwrap()
    }

    /// The Prometheus text of the admin listener's `/metrics`.
    pub async fn metrics_text(&self) -> String {
        self.admin_get("/metrics").await.text().await.unwrap()
    }

    /// `GET path`, anonymous: the JSON body.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.get(path).await.json().await.unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

impl Drop for Shop {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A token signed as `shop token` signs (the examples' development secret).
pub fn token(subject: &str, scope: &str) -> String {
    common::token(
        &common::Config::default(),
        subject,
        scope,
        Duration::from_secs(600),
    )
}

/// Inserts products `product-000001`..`product-<count>` (ids 1..=count in
/// a fresh database).
pub async fn seed(db: &Db, count: i64) {
    migrate::seed(db.primary(), count).await.expect("seed");
}

/// The body of a problem+json response, after checking its media type.
pub async fn problem(response: reqwest::Response) -> serde_json::Value {
    let media = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(media, "application/problem+json", "a problem (RFC 9457 §3)");
    response.json().await.expect("a JSON problem")
}
