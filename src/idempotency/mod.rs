//! Idempotency keys (draft-ietf-httpapi-idempotency-key-header-07).

mod key;

pub use key::{DEFAULT_MAX_KEY_LENGTH, IdempotencyKey, InvalidKey};
