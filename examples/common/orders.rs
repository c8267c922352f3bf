//! `POST /orders` and `GET /orders/{id}` of the axum and hyper examples, and
//! the idempotency layer in front of them.
//!
//! The contract (the example tests rely on it): `POST /orders` needs scope
//! `orders:write` and an `Idempotency-Key`, takes a JSON body
//! `{"product_id": 1, "quantity": 2}` and answers 201 with the new order
//! (a new unique `id`) as JSON and its `Location`; a retry with the same key
//! and body gets the same 201 replayed (`Idempotent-Replayed: true`), with
//! another body 422, while the first still runs 409. With `REDIS_URL`
//! (feature `redis`) the keys live in Redis, shared by every replica.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};
use tower_edge::ConfigError;
use tower_edge::idempotency::{IdempotencyLayer, IdempotencyLayerBuilder, Route};
use tower_edge::rejection::Problem;

use super::Config;

/// The scope `POST /orders` needs.
pub const SCOPE: &str = "orders:write";

/// A new order, as clients send it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct NewOrder {
    /// Which product.
    pub product_id: u64,
    /// How many, 1 to 1000.
    pub quantity: u32,
}

/// An order, as the API answers it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Order {
    /// A new, unique id (UUIDv7).
    pub id: String,
    /// Which product.
    pub product_id: u64,
    /// How many.
    pub quantity: u32,
}

/// The in-memory order "database" of one replica. The lock is never held
/// across an `.await`.
#[derive(Debug, Clone, Default)]
pub struct Orders(Arc<RwLock<HashMap<String, Order>>>);

impl Orders {
    /// Creates the order of `body` (JSON): the 201 response's `Location`
    /// and body, or the problem (400 unreadable JSON, 422 bad values).
    pub fn create(&self, body: &[u8]) -> Result<(HeaderValue, Bytes), Box<Problem>> {
        let new: NewOrder = serde_json::from_slice(body).map_err(|e| {
            Box::new(
                Problem::new(StatusCode::BAD_REQUEST).with_detail(format!("not an order: {e}")),
            )
        })?;
        if !(1..=1000).contains(&new.quantity) {
            return Err(Box::new(
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY)
                    .with_detail("quantity must be 1 to 1000"),
            ));
        }
        let order = Order {
            id: uuid::Uuid::now_v7().to_string(),
            product_id: new.product_id,
            quantity: new.quantity,
        };
        let location = HeaderValue::from_str(&format!("/orders/{}", order.id))
            .expect("a UUID is a valid header value");
        let json = Bytes::from(serde_json::to_vec(&order).expect("an order serializes"));
        self.0.write().unwrap().insert(order.id.clone(), order);
        Ok((location, json))
    }

    /// The order `id` as JSON, if this replica has it.
    pub fn get(&self, id: &str) -> Option<Bytes> {
        let orders = self.0.read().unwrap();
        let order = orders.get(id)?;
        Some(Bytes::from(
            serde_json::to_vec(order).expect("an order serializes"),
        ))
    }
}

/// The examples' idempotency layer: `POST /orders` with the key required
/// (plus `extra` routes, e.g. a gRPC method), scoped by the token's subject
/// (else the client IP behind `TRUSTED_PROXIES`), in Redis when
/// `REDIS_URL` is set. Add the peer-address hook of your server, then
/// build.
///
/// # Errors
///
/// A bad `TRUSTED_PROXIES` entry, at build.
pub fn idempotency(
    config: &Config,
    extra: &[Route],
) -> Result<IdempotencyLayerBuilder, ConfigError> {
    let mut builder = IdempotencyLayer::builder()
        .route(Route::exact("/orders").methods([Method::POST]))
        .trusted_proxies(&config.trusted_proxies);
    for route in extra {
        builder = builder.route(route.clone());
    }
    #[cfg(feature = "redis")]
    if let Some(backend) = &config.redis_backend {
        builder = builder.store(
            tower_edge::idempotency::RedisStore::with_backend(backend.clone())
                .key_prefix("tower-edge-example:idem")
                .build()?,
        );
    }
    Ok(builder)
}
