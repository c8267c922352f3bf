//! `GET /products` (keyset pagination), `GET /products/{id}` (cache-aside,
//! `ETag` from the row's version) and `PUT /products/{id}` (`If-Match`
//! required: lost-update protection, RFC 9110 §13.1.1, RFC 6585 §3).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use tower_edge::cache_headers::{ETag, Preconditions, Representation};

use crate::db::Db;
use crate::error::ApiError;
use crate::query;
use crate::state::AppState;

/// How long a product looked up by id stays in the cache-aside tier (a
/// `PUT` or an order for it purges it at once, on every replica with
/// `REDIS_URL`).
pub const ASIDE_TTL: Duration = Duration::from_secs(30);

/// A product, as the API answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// Its id.
    pub id: i64,
    /// Its name, unique.
    pub name: String,
    /// Its price in cents.
    pub price_cents: i64,
    /// How many are left.
    pub stock: i32,
    /// Incremented by every change: the strong `ETag`.
    pub version: i64,
}

impl Product {
    fn from_row(row: &Row) -> Self {
        Self {
            id: row.get("id"),
            name: row.get("name"),
            price_cents: row.get("price_cents"),
            stock: row.get("stock"),
            version: row.get("version"),
        }
    }

    /// Its strong entity tag: `"<version>"` (RFC 9110 §8.8.3).
    pub fn etag(&self) -> ETag {
        ETag::strong(&self.version.to_string()).expect("digits are a valid opaque tag")
    }
}

/// A page of products.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProductPage {
    /// At most `limit` products, by id.
    pub items: Vec<Product>,
    /// The `after` of the next page; `null` on the last.
    pub next: Option<i64>,
}

/// `PUT /products/{id}`'s body: the fields to change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductUpdate {
    /// A new name, 1 to 200 characters.
    pub name: Option<String>,
    /// A new price, 0 or more.
    pub price_cents: Option<i64>,
    /// A new stock, 0 or more.
    pub stock: Option<i32>,
}

impl ProductUpdate {
    fn validate(&self) -> Result<(), ApiError> {
        if self.name.is_none() && self.price_cents.is_none() && self.stock.is_none() {
            return Err(ApiError::unprocessable(
                "nothing to update: give name, price_cents or stock",
            ));
        }
        if let Some(name) = &self.name
            && !(1..=200).contains(&name.trim().chars().count())
        {
            return Err(ApiError::unprocessable("name must be 1 to 200 characters"));
        }
        if self.price_cents.is_some_and(|p| p < 0) {
            return Err(ApiError::unprocessable("price_cents must be 0 or more"));
        }
        if self.stock.is_some_and(|s| s < 0) {
            return Err(ApiError::unprocessable("stock must be 0 or more"));
        }
        Ok(())
    }
}

const COLUMNS: &str = "id, name, price_cents, stock, version";

/// The product's response: JSON with its `ETag`.
fn respond(product: &Product) -> Response {
    let body = serde_json::to_vec(product).expect("a product serializes");
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, product.etag().header_value().clone()),
        ],
        body,
    )
        .into_response()
}

/// `GET /products?limit=N&after=ID`.
pub async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let page = query::page(raw.as_deref())?;
    let client = state.db.read().await?;
    // One more than asked: whether a next page exists, without a count.
    let statement = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM products WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .await?;
    let rows = client
        .query(&statement, &[&page.after, &(page.limit + 1)])
        .await?;
    drop(client);
    let mut items: Vec<Product> = rows.iter().map(Product::from_row).collect();
    let limit = usize::try_from(page.limit).expect("1 to 100");
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|p| p.id)
    } else {
        None
    };
    Ok(axum::Json(ProductPage { items, next }).into_response())
}

/// Reads one product from a replica (or the primary); 404 when missing.
async fn load(db: &Db, id: i64) -> Result<Product, ApiError> {
    let client = db.read().await?;
    let statement = client
        .prepare_cached(&format!("SELECT {COLUMNS} FROM products WHERE id = $1"))
        .await?;
    match client.query_opt(&statement, &[&id]).await? {
        Some(row) => Ok(Product::from_row(&row)),
        None => Err(ApiError::not_found(format!("no product with id {id}"))),
    }
}

/// The cache-aside key of a product.
pub fn aside_key(id: i64) -> String {
    format!("product:{id}")
}

/// `GET /products/{id}`: cache-aside first (one database read per id per
/// [`ASIDE_TTL`] in this process, one at a time), in the groups `products`
/// and `product-<id>` that a `PUT` or an order purges.
pub async fn get(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let id = query::id(&raw, "product")?;
    let product = match &state.aside {
        Some(aside) => {
            let group = format!("product-{id}");
            aside
                .get_or_load_in(&aside_key(id), ASIDE_TTL, &["products", &group], || {
                    load(&state.db, id)
                })
                .await?
        }
        None => load(&state.db, id).await?,
    };
    Ok(respond(&product))
}

/// `PUT /products/{id}` (scope `products:write`): `If-Match` required
/// (428 without, RFC 6585 §3); checked against the row locked for the
/// update, so two writers holding the same tag cannot both win (412 for
/// the second, RFC 9110 §13.1.1).
pub async fn put(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = query::id(&raw, "product")?;
    if !headers.contains_key(header::IF_MATCH) {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_REQUIRED,
            "send If-Match with the ETag of the product you change",
        ));
    }
    let update: ProductUpdate = query::json(&body, "a product update")?;
    update.validate()?;
    let mut client = state.db.write().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            &format!("SELECT {COLUMNS} FROM products WHERE id = $1 FOR UPDATE"),
            &[&id],
        )
        .await?;
    let Some(row) = row else {
        return Err(ApiError::not_found(format!("no product with id {id}")));
    };
    let current = Product::from_row(&row);
    let representation = Representation::new().etag(current.etag());
    if let Err(stop) = Preconditions::from_request(&method, &headers).check(&representation) {
        return Ok(stop.into_http_response::<Body>().into_response());
    }
    let name = update.name.as_deref().map(str::trim);
    let row = tx
        .query_one(
            &format!(
                "UPDATE products SET name = COALESCE($2, name),
                     price_cents = COALESCE($3, price_cents), stock = COALESCE($4, stock),
                     version = version + 1, updated_at = now()
                 WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[&id, &name, &update.price_cents, &update.stock],
        )
        .await?;
    tx.commit().await?;
    // The cache layers outside purge `products` and `product-<id>`
    // (Cache-Group-Invalidation, added by ProductCacheFieldsLayer).
    Ok(respond(&Product::from_row(&row)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(json: &str) -> ProductUpdate {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn etag_is_the_quoted_version() {
        let p = Product {
            id: 1,
            name: "a".into(),
            price_cents: 1,
            stock: 1,
            version: 42,
        };
        assert_eq!(p.etag().header_value(), "\"42\"");
    }

    #[test]
    fn updates_are_validated() {
        assert!(update(r#"{"price_cents": 10}"#).validate().is_ok());
        for bad in [
            "{}",
            r#"{"name": "  "}"#,
            r#"{"price_cents": -1}"#,
            r#"{"stock": -5}"#,
        ] {
            assert_eq!(update(bad).validate().unwrap_err().status(), 422, "{bad}");
        }
        let long = format!(r#"{{"name": "{}"}}"#, "x".repeat(201));
        assert_eq!(update(&long).validate().unwrap_err().status(), 422);
        assert!(serde_json::from_str::<ProductUpdate>(r#"{"colour": "red"}"#).is_err());
    }
}
