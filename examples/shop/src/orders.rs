//! `POST /orders` (scope `orders:write`, `Idempotency-Key` required by the
//! idempotency layer outside) and `GET /orders/{id}` (scope `orders:read`,
//! the subject's own orders only).

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use tower_edge::Subject;
use tower_edge::response_cache::CACHE_GROUP_INVALIDATION;

use crate::error::ApiError;
use crate::query;
use crate::state::AppState;

/// The scope `POST /orders` needs.
pub const WRITE_SCOPE: &str = "orders:write";
/// The scope `GET /orders/{id}` needs.
pub const READ_SCOPE: &str = "orders:read";

/// `POST /orders`' body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    /// Which product.
    pub product_id: i64,
    /// How many, 1 to 100 (read wide, so that 0 or 1000 is a 422, not a
    /// 400).
    pub quantity: i64,
    /// The client's own reference, at most 64 characters.
    pub client_ref: Option<String>,
}

impl NewOrder {
    fn validate(&self) -> Result<i32, ApiError> {
        if !(1..=100).contains(&self.quantity) {
            return Err(ApiError::unprocessable("quantity must be 1 to 100"));
        }
        if self
            .client_ref
            .as_ref()
            .is_some_and(|r| r.chars().count() > 64)
        {
            return Err(ApiError::unprocessable(
                "client_ref must be at most 64 characters",
            ));
        }
        Ok(i32::try_from(self.quantity).expect("1 to 100"))
    }
}

/// An order, as the API answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Its id.
    pub id: i64,
    /// Who placed it (the token's `sub`).
    pub subject: String,
    /// Which product.
    pub product_id: i64,
    /// How many.
    pub quantity: i32,
    /// The client's reference, if given.
    pub client_ref: Option<String>,
    /// When, RFC 3339 in UTC.
    pub created_at: String,
}

const COLUMNS: &str = "id, subject, product_id, quantity, client_ref, \
     to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS created_at";

impl Order {
    fn from_row(row: &Row) -> Self {
        Self {
            id: row.get("id"),
            subject: row.get("subject"),
            product_id: row.get("product_id"),
            quantity: row.get("quantity"),
            client_ref: row.get("client_ref"),
            created_at: row.get("created_at"),
        }
    }
}

/// The subject of the token (the scope layers let no request without one
/// reach the handlers; a 401 all the same if one did).
fn subject(subject: Option<Extension<Subject>>) -> Result<Subject, ApiError> {
    match subject {
        Some(Extension(subject)) => Ok(subject),
        None => Err(ApiError::Problem(Box::new(crate::common::token_required()))),
    }
}

/// `POST /orders`: takes the stock and records the order in one
/// transaction; 404 unknown product, 409 not enough stock, 422 bad values.
/// The 201 names the new order (`Location`) and purges the product's
/// cached representations (its stock changed; RFC 9875 §3).
pub async fn create(
    State(state): State<AppState>,
    who: Option<Extension<Subject>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let subject = subject(who)?;
    let new: NewOrder = query::json(&body, "an order")?;
    let quantity = new.validate()?;
    let mut client = state.db.write().await?;
    let tx = client.transaction().await?;
    let taken = tx
        .execute(
            "UPDATE products SET stock = stock - $2, version = version + 1, updated_at = now()
             WHERE id = $1 AND stock >= $2",
            &[&new.product_id, &quantity],
        )
        .await?;
    if taken == 0 {
        let exists = tx
            .query_opt("SELECT 1 FROM products WHERE id = $1", &[&new.product_id])
            .await?
            .is_some();
        return Err(if exists {
            ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "product {} has fewer than {quantity} in stock",
                    new.product_id
                ),
            )
        } else {
            ApiError::not_found(format!("no product with id {}", new.product_id))
        });
    }
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO orders (subject, product_id, quantity, client_ref)
                 VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}"
            ),
            &[
                &subject.as_str(),
                &new.product_id,
                &quantity,
                &new.client_ref,
            ],
        )
        .await?;
    tx.commit().await?;
    let order = Order::from_row(&row);
    let location = HeaderValue::from_str(&format!("/orders/{}", order.id))
        .expect("digits are a valid header value");
    let groups = HeaderValue::from_str(&format!("\"products\", \"product-{}\"", order.product_id))
        .expect("digits are a valid header value");
    Ok((
        StatusCode::CREATED,
        [
            (header::LOCATION, location),
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (CACHE_GROUP_INVALIDATION, groups),
        ],
        serde_json::to_vec(&order).expect("an order serializes"),
    )
        .into_response())
}

/// `GET /orders/{id}`: the subject's own order, else 404 (another
/// subject's order is not found for this one). Read from the replica; an
/// order not there yet (replication lag) is looked for on the primary.
pub async fn get(
    State(state): State<AppState>,
    who: Option<Extension<Subject>>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let subject = subject(who)?;
    let id = query::id(&raw, "order")?;
    let sql = format!("SELECT {COLUMNS} FROM orders WHERE id = $1 AND subject = $2");
    let mut found = {
        let client = state.db.read().await?;
        let statement = client.prepare_cached(&sql).await?;
        client
            .query_opt(&statement, &[&id, &subject.as_str()])
            .await?
    };
    if found.is_none() && state.db.replica().is_some() {
        let client = state.db.write().await?;
        let statement = client.prepare_cached(&sql).await?;
        found = client
            .query_opt(&statement, &[&id, &subject.as_str()])
            .await?;
    }
    match found {
        Some(row) => Ok(axum::Json(Order::from_row(&row)).into_response()),
        None => Err(ApiError::not_found(format!("no order with id {id}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(json: &str) -> NewOrder {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn quantities_and_refs_are_validated() {
        assert_eq!(
            order(r#"{"product_id": 1, "quantity": 100}"#)
                .validate()
                .unwrap(),
            100
        );
        for bad in [
            r#"{"product_id": 1, "quantity": 0}"#,
            r#"{"product_id": 1, "quantity": 101}"#,
            r#"{"product_id": 1, "quantity": 99999999999}"#,
        ] {
            assert_eq!(order(bad).validate().unwrap_err().status(), 422, "{bad}");
        }
        let long = format!(
            r#"{{"product_id": 1, "quantity": 1, "client_ref": "{}"}}"#,
            "r".repeat(65)
        );
        assert_eq!(order(&long).validate().unwrap_err().status(), 422);
    }
}
