//! What the handlers share ([`AppState`]).

use tower_edge::response_cache::CacheAside;

use crate::db::Db;

/// What the handlers share. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The pools.
    pub db: Db,
    /// Cache-aside for product lookups, on the response cache's engine
    /// (`None` with `SHOP_CACHE=off`).
    pub aside: Option<CacheAside>,
}
