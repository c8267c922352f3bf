//! A service to copy: a JSON shop API on axum over a Postgres pool (with an
//! optional read replica), Redis for every piece of shared state, and every
//! tower-edge layer in the recommended order.
//!
//! The binary (`src/main.rs`) serves it; the integration tests (`tests/`)
//! build the same [`app::App`] against a database of their own.
//!
//! Modules, in the order a request meets them:
//!
//! * [`config`]: the environment ([`config::ShopConfig`]).
//! * [`app`]: the layer stack and the routes.
//! * [`products`], [`orders`]: the handlers and their SQL.
//! * [`error`]: every answer that is not a success (problem+json).
//! * [`db`]: the pools, their metrics, readiness probes and migrations.
//! * [`admin`]: `/metrics`, `/livez`, `/readyz` on a port of their own.

#[path = "../../common/mod.rs"]
#[allow(missing_docs)]
pub mod common;

pub mod admin;
pub mod app;
pub mod config;
pub mod db;
pub mod error;
pub mod orders;
pub mod products;
pub mod query;
pub mod server;
pub mod state;
pub mod telemetry;
