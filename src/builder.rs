//! Extension methods on [`tower::ServiceBuilder`].

#[allow(unused_imports)]
use tower::ServiceBuilder;
#[allow(unused_imports)]
use tower::layer::util::Stack;

mod sealed {
    pub trait Sealed<L> {}
    impl<L> Sealed<L> for tower::ServiceBuilder<L> {}
}

/// Adds tower-edge's layers to a [`tower::ServiceBuilder`] with their
/// default configuration.
///
/// This trait is sealed: it is implemented for `ServiceBuilder` only.
pub trait ServiceBuilderExt<L>: sealed::Sealed<L> + Sized {
    /// Adds a [`CorrelationIdLayer`](crate::correlation::CorrelationIdLayer)
    /// with its default configuration.
    #[cfg(feature = "correlation-id")]
    #[cfg_attr(docsrs, doc(cfg(feature = "correlation-id")))]
    fn correlation_id(self) -> ServiceBuilder<Stack<crate::correlation::CorrelationIdLayer, L>>;

    /// Adds a [`CacheHeadersLayer`](crate::cache_headers::CacheHeadersLayer)
    /// with its default configuration.
    #[cfg(feature = "cache-headers")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cache-headers")))]
    fn cache_headers(self) -> ServiceBuilder<Stack<crate::cache_headers::CacheHeadersLayer, L>>;

    /// Adds an [`OtelLayer`](crate::otel::OtelLayer) with its default
    /// configuration (global providers and propagator).
    #[cfg(feature = "otel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
    fn otel(self) -> ServiceBuilder<Stack<crate::otel::OtelLayer, L>>;

    /// Adds a [`LimitRateLayer`](crate::rate_limit::LimitRateLayer) allowing
    /// `quota` per client IP (see
    /// [`LimitRateLayer::new`](crate::rate_limit::LimitRateLayer::new)).
    /// (Not `rate_limit`: tower's own `ServiceBuilder::rate_limit` would
    /// shadow it.)
    ///
    /// # Panics
    ///
    /// When `quota` is invalid: a zero count, burst or period, a period that
    /// is not whole seconds or is longer than a year, or a rate above one
    /// request per nanosecond. To get a [`ConfigError`](crate::ConfigError)
    /// instead, build the layer with
    /// [`LimitRateLayer::builder`](crate::rate_limit::LimitRateLayer::builder)
    /// and add it with [`ServiceBuilder::layer`].
    #[cfg(feature = "rate-limit")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
    fn rate_limit_per_ip(
        self,
        quota: crate::rate_limit::Quota,
    ) -> ServiceBuilder<Stack<crate::rate_limit::LimitRateLayer, L>>;

    /// Adds a [`JwtAuthLayer`](crate::jwt_auth::JwtAuthLayer). Bearer auth
    /// has no default configuration (it needs keys), so the layer is built
    /// first with [`JwtAuthLayer::builder`](crate::jwt_auth::JwtAuthLayer::builder).
    #[cfg(feature = "jwt-auth")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt-auth")))]
    fn jwt_auth<T>(
        self,
        layer: crate::jwt_auth::JwtAuthLayer<T>,
    ) -> ServiceBuilder<Stack<crate::jwt_auth::JwtAuthLayer<T>, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    #[cfg(feature = "correlation-id")]
    fn correlation_id(self) -> ServiceBuilder<Stack<crate::correlation::CorrelationIdLayer, L>> {
        self.layer(crate::correlation::CorrelationIdLayer::new())
    }

    #[cfg(feature = "cache-headers")]
    fn cache_headers(self) -> ServiceBuilder<Stack<crate::cache_headers::CacheHeadersLayer, L>> {
        self.layer(crate::cache_headers::CacheHeadersLayer::new())
    }

    #[cfg(feature = "otel")]
    fn otel(self) -> ServiceBuilder<Stack<crate::otel::OtelLayer, L>> {
        self.layer(crate::otel::OtelLayer::new())
    }

    #[cfg(feature = "rate-limit")]
    fn rate_limit_per_ip(
        self,
        quota: crate::rate_limit::Quota,
    ) -> ServiceBuilder<Stack<crate::rate_limit::LimitRateLayer, L>> {
        self.layer(crate::rate_limit::LimitRateLayer::new(quota))
    }

    #[cfg(feature = "jwt-auth")]
    fn jwt_auth<T>(
        self,
        layer: crate::jwt_auth::JwtAuthLayer<T>,
    ) -> ServiceBuilder<Stack<crate::jwt_auth::JwtAuthLayer<T>, L>> {
        self.layer(layer)
    }
}
