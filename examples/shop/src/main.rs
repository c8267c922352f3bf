//! `shop`: serves the shop API (no arguments), or
//!
//! * `shop migrate`: runs the migrations and exits;
//! * `shop seed --products N`: inserts N products (idempotent);
//! * `shop token --subject S --scope "a b" [--ttl-secs N]`: prints a JWT
//!   signed with `JWT_SECRET` / `JWT_ISSUER` / `JWT_AUDIENCE` (the
//!   examples' defaults), for curl and load tests.
//!
//! The environment is described in `examples/shop/README.md`.

use std::error::Error;
use std::time::Duration;

use shop::common;
use shop::config::ShopConfig;
use shop::db::{Db, migrate};

type BoxError = Box<dyn Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Runtime::new()?;
    match args.first().map(String::as_str) {
        None | Some("serve") => runtime.block_on(serve()),
        Some("migrate") => runtime.block_on(run_migrations()),
        Some("seed") => runtime.block_on(seed(&args[1..])),
        Some("token") => token(&args[1..]),
        Some(other) => Err(format!(
            "unknown command {other:?}: use serve, migrate, seed --products N, or \
             token --subject S --scope \"a b\" [--ttl-secs N]"
        )
        .into()),
    }
}

/// The value after `--name` in `args`.
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

async fn serve() -> Result<(), BoxError> {
    let _telemetry = shop::telemetry::init_logging()?;
    // Before the pools and layers take their instruments from it.
    shop::telemetry::install_metrics();
    let config = ShopConfig::from_env().map_err(|e| e.to_string())?;
    let db = Db::new(&config)?;
    migrate_with_retries(&db).await?;
    let api = tokio::net::TcpListener::bind(config.edge.bind).await?;
    let admin = tokio::net::TcpListener::bind(config.admin_bind).await?;
    tracing::info!(
        api = %api.local_addr()?,
        admin = %admin.local_addr()?,
        replica = config.replica_id.as_deref().unwrap_or("-"),
        read_replica = config.database_read_url.is_some(),
        max_connections = config.pool.max_connections,
        "shop listening"
    );
    shop::server::serve_db(config, db, api, admin, common::shutdown_signal()).await
}

/// Migrations at start: a database still starting gets 30 tries, a
/// second apart, then the process exits (its supervisor restarts it).
async fn migrate_with_retries(db: &Db) -> Result<(), BoxError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match migrate::run(db.primary()).await {
            Ok(applied) => {
                tracing::info!(?applied, "migrations up to date");
                return Ok(());
            }
            Err(err) if attempt < 30 => {
                tracing::warn!(error = %err, attempt, "migrations: database not ready; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(err) => return Err(format!("migrations failed: {err}").into()),
        }
    }
}

async fn run_migrations() -> Result<(), BoxError> {
    let config = ShopConfig::from_env().map_err(|e| e.to_string())?;
    let db = Db::new(&config)?;
    let applied = migrate::run(db.primary()).await?;
    println!("applied {} migration(s): {applied:?}", applied.len());
    Ok(())
}

async fn seed(args: &[String]) -> Result<(), BoxError> {
    let count: i64 = flag(args, "--products")
        .ok_or("seed: --products N is required")?
        .parse()
        .map_err(|e| format!("--products: {e}"))?;
    if !(1..=10_000_000).contains(&count) {
        return Err("--products: 1 to 10000000".into());
    }
    let config = ShopConfig::from_env().map_err(|e| e.to_string())?;
    let db = Db::new(&config)?;
    migrate::run(db.primary()).await?;
    let added = migrate::seed(db.primary(), count).await?;
    println!("seeded: {added} product(s) added, {count} wanted");
    Ok(())
}

/// Prints a token on stdout, and nothing else (`TOKEN=$(shop token ...)`).
fn token(args: &[String]) -> Result<(), BoxError> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if var("JWT_JWKS_URL").is_some() {
        return Err("token: JWT_JWKS_URL is set; bring a token from that identity provider".into());
    }
    let mut config = common::Config::default();
    if let Some(secret) = var("JWT_SECRET") {
        if secret.len() < 32 {
            return Err("JWT_SECRET: an HS256 secret must be at least 32 bytes".into());
        }
        config.jwt_secret = secret;
    }
    if let Some(issuer) = var("JWT_ISSUER") {
        config.jwt_issuer = issuer;
    }
    if let Some(audience) = var("JWT_AUDIENCE") {
        config.jwt_audience = audience;
    }
    let subject = flag(args, "--subject").ok_or("token: --subject S is required")?;
    let scope = flag(args, "--scope").unwrap_or("");
    let ttl: u64 = flag(args, "--ttl-secs")
        .unwrap_or("3600")
        .parse()
        .map_err(|e| format!("--ttl-secs: {e}"))?;
    println!(
        "{}",
        common::token(&config, subject, scope, Duration::from_secs(ttl))
    );
    Ok(())
}
