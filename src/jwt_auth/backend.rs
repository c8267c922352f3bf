//! Which crypto library checks the signatures of each algorithm (RFC 7518
//! §3: the JWS algorithms), chosen at compile time by the `aws-lc-rs`
//! feature and, within it, per algorithm by measurement.
//!
//! | algorithms | default | `aws-lc-rs` | why |
//! |---|---|---|---|
//! | HS256/384/512 | RustCrypto | RustCrypto | the same speed (1.35 vs 1.6 µs per `decode`); our keyed HMAC state is RustCrypto's |
//! | RS256/384/512, PS256/384/512 | RustCrypto | aws-lc-rs | 2.7-3.4x faster (RSA 2048) |
//! | ES256, ES384 | RustCrypto | aws-lc-rs | 4.0-4.8x faster |
//! | EdDSA | RustCrypto | RustCrypto | aws-lc-rs is slower here (55-71 vs 41 µs) |
//!
//! Figures: `jsonwebtoken::decode` alone, this repository's test keys
//! (issue 26, and BENCHMARKS.md for the layer's own figures).

use jsonwebtoken::crypto::CryptoProvider;

use super::algorithm::Algorithm;

/// The crypto library that verifies the signatures of one [`Algorithm`].
///
/// The choice is made when the crate is compiled: RustCrypto (pure Rust)
/// for every algorithm by default; with the `aws-lc-rs` feature, aws-lc-rs
/// for the RSA and ECDSA families, where it is several times faster, and
/// RustCrypto for HMAC and EdDSA, where it is not. Another crate enabling
/// jsonwebtoken's own `aws_lc_rs` feature, or installing a process-wide
/// jsonwebtoken `CryptoProvider`, changes nothing: the layer names the
/// library itself.
///
/// ```
/// use tower_edge::jwt_auth::{Algorithm, CryptoBackend};
///
/// // EdDSA stays on RustCrypto with or without the `aws-lc-rs` feature.
/// assert_eq!(CryptoBackend::for_algorithm(Algorithm::EdDSA), CryptoBackend::RustCrypto);
/// let rs256 = CryptoBackend::for_algorithm(Algorithm::RS256);
/// assert_eq!(rs256 == CryptoBackend::AwsLcRs, cfg!(feature = "aws-lc-rs"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CryptoBackend {
    /// RustCrypto (`rsa`, `p256`, `p384`, `ed25519-dalek`, `hmac`): pure
    /// Rust, builds on every target without a C toolchain.
    RustCrypto,
    /// aws-lc-rs (AWS-LC, a BoringSSL fork): needs a C compiler and cmake
    /// to build; the `aws-lc-rs` feature.
    AwsLcRs,
}

impl CryptoBackend {
    /// The library this build verifies `algorithm` with.
    pub const fn for_algorithm(algorithm: Algorithm) -> Self {
        match algorithm {
            #[cfg(feature = "aws-lc-rs")]
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
            | Algorithm::ES256
            | Algorithm::ES384 => Self::AwsLcRs,
            _ => Self::RustCrypto,
        }
    }

    /// The library's name, as logged when a layer is built.
    pub const fn name(self) -> &'static str {
        match self {
            Self::RustCrypto => "RustCrypto",
            Self::AwsLcRs => "aws-lc-rs",
        }
    }

    /// jsonwebtoken's provider for this library, named rather than taken
    /// from jsonwebtoken's process-wide default.
    pub(crate) fn provider(self) -> &'static CryptoProvider {
        match self {
            #[cfg(feature = "aws-lc-rs")]
            Self::AwsLcRs => &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER,
            _ => &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER,
        }
    }
}

impl std::fmt::Display for CryptoBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_and_eddsa_stay_on_rustcrypto_in_every_build() {
        for alg in [
            Algorithm::HS256,
            Algorithm::HS384,
            Algorithm::HS512,
            Algorithm::EdDSA,
        ] {
            assert_eq!(CryptoBackend::for_algorithm(alg), CryptoBackend::RustCrypto);
        }
    }

    #[test]
    fn rsa_and_ecdsa_follow_the_feature() {
        let expected = if cfg!(feature = "aws-lc-rs") {
            CryptoBackend::AwsLcRs
        } else {
            CryptoBackend::RustCrypto
        };
        for alg in Algorithm::ALL {
            if !matches!(
                alg,
                Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 | Algorithm::EdDSA
            ) {
                assert_eq!(CryptoBackend::for_algorithm(alg), expected, "{alg:?}");
            }
        }
    }
}
