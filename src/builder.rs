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

    #[cfg(feature = "jwt-auth")]
    fn jwt_auth<T>(
        self,
        layer: crate::jwt_auth::JwtAuthLayer<T>,
    ) -> ServiceBuilder<Stack<crate::jwt_auth::JwtAuthLayer<T>, L>> {
        self.layer(layer)
    }
}
