//! The request parts the handlers read by hand, so that every bad value is
//! a problem+json 400 or 422 (axum's own extractors answer plain text).

use crate::error::ApiError;

/// `GET /products`' page size when `limit` is absent.
pub const DEFAULT_LIMIT: i64 = 20;
/// The largest page.
pub const MAX_LIMIT: i64 = 100;

/// A page of `GET /products?limit=N&after=ID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// How many products, 1 to [`MAX_LIMIT`].
    pub limit: i64,
    /// The last id of the previous page (0: from the start).
    pub after: i64,
}

/// Reads `limit` and `after` from a query string: not a whole number →
/// 400; out of range (`limit` 1..=100, `after` from 0) → 422. Other
/// parameters are ignored.
///
/// # Errors
///
/// The problem to answer.
pub fn page(query: Option<&str>) -> Result<Page, ApiError> {
    let mut page = Page {
        limit: DEFAULT_LIMIT,
        after: 0,
    };
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "limit" => {
                page.limit = number("limit", value)?;
                if !(1..=MAX_LIMIT).contains(&page.limit) {
                    return Err(ApiError::unprocessable(format!(
                        "limit must be 1 to {MAX_LIMIT}"
                    )));
                }
            }
            "after" => {
                page.after = number("after", value)?;
                if page.after < 0 {
                    return Err(ApiError::unprocessable("after must be an id (0 or more)"));
                }
            }
            _ => {}
        }
    }
    Ok(page)
}

fn number(name: &str, value: &str) -> Result<i64, ApiError> {
    value
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{name} must be a whole number")))
}

/// A path id: a positive whole number, else 404 (no resource has such a
/// name; RFC 9110 §15.5.5).
///
/// # Errors
///
/// The 404 to answer.
pub fn id(raw: &str, what: &str) -> Result<i64, ApiError> {
    match raw.parse::<i64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(ApiError::not_found(format!("no {what} with id {raw:?}"))),
    }
}

/// The JSON body of a request: unreadable → 400.
///
/// # Errors
///
/// The 400 to answer, with serde's reason.
pub fn json<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("not {what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(result: Result<Page, ApiError>) -> u16 {
        result.map(|_| 200).unwrap_or_else(|e| e.status().as_u16())
    }

    #[test]
    fn defaults() {
        assert_eq!(
            page(None).unwrap(),
            Page {
                limit: 20,
                after: 0
            }
        );
        assert_eq!(
            page(Some("")).unwrap(),
            Page {
                limit: 20,
                after: 0
            }
        );
    }

    #[test]
    fn reads_limit_and_after_and_ignores_the_rest() {
        let p = page(Some("after=40&x=y&limit=100")).unwrap();
        assert_eq!(
            p,
            Page {
                limit: 100,
                after: 40
            }
        );
    }

    #[test]
    fn not_a_number_is_400_out_of_range_is_422() {
        assert_eq!(status(page(Some("limit=ten"))), 400);
        assert_eq!(status(page(Some("after="))), 400);
        assert_eq!(status(page(Some("limit=0"))), 422);
        assert_eq!(status(page(Some("limit=101"))), 422);
        assert_eq!(status(page(Some("after=-1"))), 422);
    }

    #[test]
    fn ids_are_positive() {
        assert_eq!(id("7", "product").unwrap(), 7);
        for bad in ["0", "-3", "x", "", "99999999999999999999"] {
            assert_eq!(
                id(bad, "product").unwrap_err().status().as_u16(),
                404,
                "{bad}"
            );
        }
    }
}
