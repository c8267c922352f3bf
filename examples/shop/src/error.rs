//! Every answer that is not a success, as the layers answer:
//! `application/problem+json` (RFC 9457) through tower-edge's
//! [`Rejections`]. The client's mistakes are 4xx; the database being
//! unreachable or saturated is 503 with `Retry-After` (RFC 9110 §15.6.4,
//! §10.2.3); anything else is 500, logged with the correlation ID (the
//! request's span carries it) and never detailed to the client.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use tokio_postgres::error::SqlState;
use tower_edge::rejection::{Problem, Rejections};

use crate::db::DbError;

/// Seconds a client is asked to wait after a 503 from the database.
pub const RETRY_AFTER_SECS: &str = "1";

/// A handler's failure.
#[derive(Debug)]
pub enum ApiError {
    /// The client's mistake, or a state the client must know (404, 409).
    Problem(Box<Problem>),
    /// The database failed.
    Db(DbError),
}

impl ApiError {
    /// A problem with `status` and `detail`.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self::Problem(Box::new(Problem::new(status).with_detail(detail.into())))
    }

    /// 400: the request cannot be read.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 404: no such resource.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// 422: readable, but the values are not acceptable.
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }

    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Problem(problem) => problem.status(),
            Self::Db(DbError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Db(err) => match db_client_error(err) {
                Some(problem) => problem.status(),
                None => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }
}

impl From<DbError> for ApiError {
    fn from(err: DbError) -> Self {
        Self::Db(err)
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(err: tokio_postgres::Error) -> Self {
        Self::Db(DbError::from(err))
    }
}

/// A constraint the client's values broke: a taken unique value is a
/// conflict with the current state (409, RFC 9110 §15.5.10), a failed
/// check the client's values (422).
fn db_client_error(err: &DbError) -> Option<Problem> {
    let code = err.code()?;
    if *code == SqlState::UNIQUE_VIOLATION {
        Some(Problem::new(StatusCode::CONFLICT).with_detail("a value that must be unique is taken"))
    } else if *code == SqlState::CHECK_VIOLATION {
        Some(
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY)
                .with_detail("a value is out of its allowed range"),
        )
    } else {
        None
    }
}

/// The problem+json response for `problem`.
pub fn respond(problem: Problem) -> Response {
    Rejections::default()
        .http_response::<Body>(problem)
        .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Problem(problem) => respond(*problem),
            Self::Db(DbError::Unavailable(why)) => {
                tracing::warn!(error = %why, "database unavailable: 503");
                respond(
                    Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                        .with_detail("the database is busy or unreachable; retry shortly")
                        .with_header(
                            header::RETRY_AFTER,
                            HeaderValue::from_static(RETRY_AFTER_SECS),
                        ),
                )
            }
            Self::Db(err) => match db_client_error(&err) {
                Some(problem) => respond(problem),
                None => {
                    tracing::error!(error = %err, "database error: 500");
                    respond(
                        Problem::new(StatusCode::INTERNAL_SERVER_ERROR)
                            .with_detail("internal error; it is logged with this request's id"),
                    )
                }
            },
        }
    }
}
