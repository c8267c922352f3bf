//! The admin listener (`ADMIN_BIND`, its own port, never exposed with the
//! API): Prometheus text at `/metrics`, liveness at `/livez`, readiness at
//! `/readyz`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http::{HeaderValue, StatusCode, header};

use crate::app::Readiness;
use crate::db::health::PROBE_TIMEOUT;

#[derive(Clone)]
struct AdminState {
    readiness: Readiness,
    registry: prometheus::Registry,
}

/// The admin routes.
pub fn router(readiness: Readiness, registry: prometheus::Registry) -> Router {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(AdminState {
            readiness,
            registry,
        })
}

const NO_STORE: (header::HeaderName, HeaderValue) =
    (header::CACHE_CONTROL, HeaderValue::from_static("no-store"));

/// 200 while the process serves.
async fn livez() -> Response {
    ([NO_STORE], Json(serde_json::json!({ "status": "live" }))).into_response()
}

/// 200 when the primary answers within [`PROBE_TIMEOUT`], 503 otherwise;
/// each check says what it found. The read replica is reported, not
/// required: reads fall back to the primary. Redis is reported, not
/// required either: every replica shares it, so a Redis outage would take
/// all of them out of the load balancer at once, while each layer has its
/// own answer to it (rate limits in memory, orders refused with 503 and
/// `Retry-After`, the response cache bypassed); the `redis` check then
/// reads the error and `status` says `degraded`.
async fn readyz(State(state): State<AdminState>) -> Response {
    let readiness = &state.readiness;
    let primary = readiness.primary.check();
    let replica = async {
        match &readiness.replica {
            Some(probe) => Some(probe.check().await),
            None => None,
        }
    };
    let redis = async {
        match &readiness.redis {
            Some(backend) => Some(backend.ping(PROBE_TIMEOUT).await.map_err(|e| e.to_string())),
            None => None,
        }
    };
    let (primary, replica, redis) = tokio::join!(primary, replica, redis);
    let ready = primary.is_ok();
    let degraded =
        redis.as_ref().is_some_and(Result::is_err) || replica.as_ref().is_some_and(Result::is_err);
    let show = |r: &Result<(), String>| match r {
        Ok(()) => "ok".to_owned(),
        Err(e) => e.clone(),
    };
    let mut checks = serde_json::Map::new();
    checks.insert("postgres".into(), show(&primary).into());
    if let Some(replica) = &replica {
        checks.insert("postgres_replica".into(), show(replica).into());
    }
    if let Some(redis) = &redis {
        checks.insert("redis".into(), show(redis).into());
    }
    if !ready {
        tracing::warn!(?checks, "not ready");
    } else if degraded {
        tracing::warn!(?checks, "ready, degraded");
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": match (ready, degraded) {
            (false, _) => "not ready",
            (true, true) => "degraded",
            (true, false) => "ready",
        },
        "checks": checks,
    });
    (status, [NO_STORE], Json(body)).into_response()
}

/// Prometheus text format 0.0.4.
async fn metrics(State(state): State<AdminState>) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            ),
            NO_STORE,
        ],
        crate::telemetry::render(&state.registry),
    )
        .into_response()
}
