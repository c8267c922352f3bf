//! The error every layer builder returns for bad configuration.

use std::borrow::Cow;

/// A layer was configured with a value it cannot work with.
///
/// Builders check their whole configuration when the layer is built, so a
/// mistake fails at start-up, naming the field, instead of on a request.
///
/// ```
/// # #[cfg(feature = "correlation-id")] {
/// let err = tower_edge::correlation::CorrelationIdLayer::builder()
///     .max_length(0)
///     .build()
///     .unwrap_err();
/// assert_eq!(err.field(), "max_length");
/// assert!(err.to_string().contains("max_length"));
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration for `{field}`: {message}")]
pub struct ConfigError {
    field: &'static str,
    message: Cow<'static, str>,
}

impl ConfigError {
    /// A configuration error for `field`, explained by `message`.
    pub fn new(field: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }

    /// The name of the configuration field that is wrong.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// What is wrong with it.
    pub fn message(&self) -> &str {
        &self.message
    }
}
