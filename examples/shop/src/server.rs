//! Serving: the API on `BIND` through the examples' connection limits
//! (`common::serve_http`: at most `MAX_CONNECTIONS`, a header read timeout
//! against slowloris), the admin routes on `ADMIN_BIND`, both drained on
//! shutdown.

use std::error::Error;
use std::future::Future;
use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::app::{self, App};
use crate::config::ShopConfig;
use crate::db::Db;
use crate::{admin, common, telemetry};

/// Builds the application on `config`'s pools (metrics registered) and
/// serves it until `shutdown`. Migrations are the caller's
/// ([`crate::db::migrate::run`]).
///
/// # Errors
///
/// A configuration a layer refuses, or a bad database URL.
pub async fn serve(
    config: ShopConfig,
    api: TcpListener,
    admin_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn Error + Send + Sync>> {
    telemetry::install_metrics();
    let db = Db::new(&config)?;
    serve_db(config, db, api, admin_listener, shutdown).await
}

/// [`serve`] on pools already built (the tests hold on to them).
///
/// # Errors
///
/// A configuration a layer refuses.
pub async fn serve_db(
    config: ShopConfig,
    db: Db,
    api: TcpListener,
    admin_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn Error + Send + Sync>> {
    let registry = telemetry::install_metrics();
    db.register_metrics();
    let App {
        router, readiness, ..
    } = app::build(&config, db)?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let admin_stopped = stopped.clone();
    let admin_task = tokio::spawn(async move {
        let routes = admin::router(readiness, registry);
        let mut stopped = admin_stopped;
        let result = axum::serve(admin_listener, routes)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await;
        if let Err(err) = result {
            tracing::error!(error = %err, "admin listener failed");
        }
    });
    let service_for = |peer: SocketAddr| {
        router
            .clone()
            .map_request(move |mut request: http::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            })
    };
    let mut api_stopped = stopped;
    common::serve_http(api, &config.edge, service_for, async move {
        let _ = api_stopped.wait_for(|s| *s).await;
    })
    .await;
    let _ = admin_task.await;
    Ok(())
}
