//! Verification keys, each bound to one algorithm (RFC 8725 §3.1), from
//! PEM, DER or JWK components, checked when built.

use std::fmt;
use std::sync::Arc;

use jsonwebtoken::DecodingKey;

use super::algorithm::Algorithm;
use super::hmac_key::HmacKey;
use crate::config::ConfigError;

/// A public key (or HMAC secret) bound to exactly one [`Algorithm`], with an
/// optional key ID (`kid`).
///
/// A token is verified with a key only when its header `alg` equals the
/// key's algorithm, so a key can never be used with another algorithm (the
/// HS256-with-RSA-public-key confusion of CVE-2015-9235 cannot happen).
#[derive(Clone)]
pub struct VerificationKey {
    pub(super) alg: Algorithm,
    pub(super) kid: Option<Arc<str>>,
    key: DecodingKey,
    /// For HMAC keys: keyed once, cloned per verification.
    hmac: Option<Arc<HmacKey>>,
}

impl fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerificationKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn key_error(what: &str, err: impl fmt::Display) -> ConfigError {
    ConfigError::new("key", format!("{what}: {err}"))
}

fn expect(alg: Algorithm, ok: bool, family: &str) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            "key",
            format!("{alg} cannot be used with {family} key material"),
        ))
    }
}

impl VerificationKey {
    /// An HMAC secret for `HS256`, `HS384` or `HS512`.
    ///
    /// # Errors
    ///
    /// A non-HMAC algorithm, or a secret shorter than the hash output
    /// (RFC 7518 §3.2: 32, 48 or 64 bytes).
    pub fn hmac(alg: Algorithm, secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        expect(alg, alg.is_hmac(), "an HMAC secret")?;
        let secret = secret.as_ref();
        let min = match alg {
            Algorithm::HS384 => 48,
            Algorithm::HS512 => 64,
            _ => 32,
        };
        if secret.len() < min {
            return Err(ConfigError::new(
                "key",
                format!("an {alg} secret must be at least {min} bytes (RFC 7518 §3.2)"),
            ));
        }
        let key = DecodingKey::from_secret(secret).map_err(|e| key_error("HMAC secret", e))?;
        let hmac = HmacKey::new(alg, secret).map(Arc::new);
        Ok(Self {
            hmac,
            ..Self::from_parts(alg, key)
        })
    }

    /// An RSA public key in PEM (`PUBLIC KEY` or `RSA PUBLIC KEY`) for
    /// `RS256/384/512` or `PS256/384/512`.
    ///
    /// # Errors
    ///
    /// A non-RSA algorithm, a PEM that is not an RSA public key, or a key
    /// whose modulus and exponent the RSA verification refuses (checked
    /// here, as for [`rsa_der`](Self::rsa_der), so that a wrong key fails
    /// here, not as a 401 on every token).
    pub fn rsa_pem(alg: Algorithm, pem: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        const WHAT: &str = "RSA PEM";
        expect(alg, alg.is_rsa(), "an RSA")?;
        // The PEM decoder of jsonwebtoken hands over the DER it would
        // verify with; the same checks as for `rsa_der` then apply.
        let key = DecodingKey::from_rsa_pem(pem.as_ref()).map_err(|e| key_error(WHAT, e))?;
        let der = key.try_get_as_bytes().map_err(|e| key_error(WHAT, e))?;
        let pkcs1 = rsa_public_key_der(WHAT, der)?;
        Ok(Self::from_parts(alg, DecodingKey::from_rsa_der(pkcs1)))
    }

    /// An RSA public key in DER: `SubjectPublicKeyInfo` (as
    /// `openssl pkey -pubin -outform DER` writes it) or PKCS#1
    /// `RSAPublicKey` (`openssl rsa -pubin -RSAPublicKey_out -outform DER`).
    ///
    /// # Errors
    ///
    /// A non-RSA algorithm, or bytes that are neither a PKCS#1
    /// `RSAPublicKey` nor a `SubjectPublicKeyInfo` whose algorithm is
    /// `rsaEncryption`, each with a modulus and exponent the RSA
    /// verification accepts (so that a wrong key fails here, not as a 401
    /// on every token).
    pub fn rsa_der(alg: Algorithm, der: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        expect(alg, alg.is_rsa(), "an RSA")?;
        let pkcs1 = rsa_public_key_der("RSA DER", der.as_ref())?;
        Ok(Self::from_parts(alg, DecodingKey::from_rsa_der(pkcs1)))
    }

    /// An EC public key in PEM (`PUBLIC KEY`) for `ES256` (P-256) or
    /// `ES384` (P-384).
    ///
    /// # Errors
    ///
    /// A non-EC algorithm, a PEM that is not an EC public key, or a key on
    /// the wrong curve for `alg`.
    pub fn ec_pem(alg: Algorithm, pem: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        expect(
            alg,
            matches!(alg, Algorithm::ES256 | Algorithm::ES384),
            "an EC",
        )?;
        let key = DecodingKey::from_ec_pem(pem.as_ref()).map_err(|e| key_error("EC PEM", e))?;
        let point = key.try_get_as_bytes().map_err(|e| key_error("EC PEM", e))?;
        check_ec_point(alg, point)?;
        Ok(Self::from_parts(alg, key))
    }

    /// An EC public key in DER `SubjectPublicKeyInfo` (as
    /// `openssl pkey -pubin -outform DER` writes it) for `ES256` or `ES384`.
    ///
    /// # Errors
    ///
    /// A non-EC algorithm, bytes that are not an EC public key, or a key on
    /// the wrong curve for `alg`.
    pub fn ec_der(alg: Algorithm, der: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        Self::ec_pem(alg, spki_pem(der.as_ref()))
    }

    /// An Ed25519 public key in PEM (`PUBLIC KEY`) for `EdDSA`.
    ///
    /// # Errors
    ///
    /// Another algorithm, or a PEM that is not an Ed25519 public key.
    pub fn ed_pem(alg: Algorithm, pem: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        expect(alg, alg == Algorithm::EdDSA, "an Ed25519")?;
        let key =
            DecodingKey::from_ed_pem(pem.as_ref()).map_err(|e| key_error("Ed25519 PEM", e))?;
        let raw = key
            .try_get_as_bytes()
            .map_err(|e| key_error("Ed25519 PEM", e))?;
        if raw.len() != 32 {
            return Err(ConfigError::new("key", "an Ed25519 public key is 32 bytes"));
        }
        Ok(Self::from_parts(alg, key))
    }

    /// An Ed25519 public key in DER `SubjectPublicKeyInfo` (as
    /// `openssl pkey -pubin -outform DER` writes it) for `EdDSA`.
    ///
    /// # Errors
    ///
    /// Another algorithm, or bytes that are not an Ed25519 public key.
    pub fn ed_der(alg: Algorithm, der: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        Self::ed_pem(alg, spki_pem(der.as_ref()))
    }

    /// An RSA public key from its JWK members `n` and `e` (base64url, RFC
    /// 7518 §6.3.1), as a JWKS source builds it.
    ///
    /// # Errors
    ///
    /// A non-RSA algorithm, members that are not base64url, or a modulus
    /// and exponent the RSA verification refuses (an even or too small
    /// modulus, an even exponent or one below 3...), so that a wrong key
    /// fails here, not as a 401 on every token.
    pub fn rsa_components(alg: Algorithm, n: &str, e: &str) -> Result<Self, ConfigError> {
        expect(alg, alg.is_rsa(), "an RSA")?;
        let n = rsa_component("n", n)?;
        let e = rsa_component("e", e)?;
        check_rsa_components(&n, &e)?;
        Ok(Self::from_parts(
            alg,
            DecodingKey::from_rsa_raw_components(&n, &e),
        ))
    }

    /// An EC public key from its JWK members `x` and `y` (base64url, RFC
    /// 7518 §6.2.1).
    ///
    /// # Errors
    ///
    /// A non-EC algorithm, members that are not base64url, or coordinates
    /// of the wrong size for `alg`'s curve.
    pub fn ec_components(alg: Algorithm, x: &str, y: &str) -> Result<Self, ConfigError> {
        expect(
            alg,
            matches!(alg, Algorithm::ES256 | Algorithm::ES384),
            "an EC",
        )?;
        let key = DecodingKey::from_ec_components(x, y).map_err(|e| key_error("EC x/y", e))?;
        let point = key.try_get_as_bytes().map_err(|e| key_error("EC x/y", e))?;
        check_ec_point(alg, point)?;
        Ok(Self::from_parts(alg, key))
    }

    /// An Ed25519 public key from its JWK member `x` (base64url, RFC 8037
    /// §2).
    ///
    /// # Errors
    ///
    /// Another algorithm, or `x` that is not 32 base64url-encoded bytes.
    pub fn ed_components(alg: Algorithm, x: &str) -> Result<Self, ConfigError> {
        expect(alg, alg == Algorithm::EdDSA, "an Ed25519")?;
        let key = DecodingKey::from_ed_components(x).map_err(|e| key_error("Ed25519 x", e))?;
        if key.try_get_as_bytes().map_or(true, |raw| raw.len() != 32) {
            return Err(ConfigError::new("key", "an Ed25519 public key is 32 bytes"));
        }
        Ok(Self::from_parts(alg, key))
    }

    fn from_parts(alg: Algorithm, key: DecodingKey) -> Self {
        Self {
            alg,
            kid: None,
            key,
            hmac: None,
        }
    }

    /// Sets the key ID: a token is verified with this key only when its
    /// header `kid` equals it exactly (case-sensitive).
    pub fn with_kid(mut self, kid: impl Into<Arc<str>>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The algorithm the key is bound to.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The key ID, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }

    /// The HMAC keyed once, for HMAC keys built by [`hmac`](Self::hmac).
    pub(super) fn keyed_hmac(&self) -> Option<&HmacKey> {
        self.hmac.as_deref()
    }
}

/// The PKCS#1 `RSAPublicKey` of `der` (itself, or the key of an
/// `rsaEncryption` `SubjectPublicKeyInfo`), once the `rsa` crate, which
/// verifies the signatures, has parsed it: modulus and exponent included.
/// Errors start with `what`, the encoding the key came in.
fn rsa_public_key_der<'a>(what: &str, der: &'a [u8]) -> Result<&'a [u8], ConfigError> {
    use rsa::pkcs1::DecodeRsaPublicKey;
    use rsa::pkcs8::der::Decode;
    use rsa::pkcs8::spki::SubjectPublicKeyInfoRef;

    let pkcs1 = match SubjectPublicKeyInfoRef::from_der(der) {
        Ok(spki) => {
            if spki.algorithm.oid != rsa::pkcs1::ALGORITHM_OID {
                return Err(key_error(
                    what,
                    format_args!(
                        "a SubjectPublicKeyInfo of algorithm {}, not rsaEncryption",
                        spki.algorithm.oid
                    ),
                ));
            }
            spki.subject_public_key
                .as_bytes()
                .ok_or_else(|| key_error(what, "the public key is not a whole number of bytes"))?
        }
        // Not a SubjectPublicKeyInfo: PKCS#1 or nothing.
        Err(_) => der,
    };
    rsa::PublicKey::from_pkcs1_der(pkcs1).map_err(|e| {
        key_error(
            what,
            format_args!("neither a PKCS#1 RSAPublicKey nor an RSA SubjectPublicKeyInfo ({e})"),
        )
    })?;
    Ok(pkcs1)
}

/// The bytes of the JWK member `name` (base64url without padding, RFC
/// 7518 §6.3.1), not empty.
fn rsa_component(name: &str, value: &str) -> Result<Vec<u8>, ConfigError> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|e| key_error("RSA n/e", format_args!("`{name}` is not base64url ({e})")))?;
    if bytes.is_empty() {
        return Err(key_error("RSA n/e", format_args!("`{name}` is empty")));
    }
    Ok(bytes)
}

/// Builds the key from `n` and `e` (big-endian) as the RSA verification
/// will, and refuses what it would refuse.
fn check_rsa_components(n: &[u8], e: &[u8]) -> Result<(), ConfigError> {
    use rsa::BoxedUint;
    rsa::PublicKey::new(
        BoxedUint::from_be_slice_vartime(n),
        BoxedUint::from_be_slice_vartime(e),
    )
    .map_err(|err| {
        key_error(
            "RSA n/e",
            format_args!("not a key the RSA verification accepts ({err})"),
        )
    })?;
    Ok(())
}

/// Wraps DER `SubjectPublicKeyInfo` bytes into a PEM `PUBLIC KEY`
/// document, so one parser handles both encodings.
fn spki_pem(der: &[u8]) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::with_capacity(encoded.len() + encoded.len() / 64 + 64);
    pem.push_str("-----BEGIN PUBLIC KEY-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    pem
}

fn check_ec_point(alg: Algorithm, point: &[u8]) -> Result<(), ConfigError> {
    let (len, curve) = match alg {
        Algorithm::ES384 => (97, "P-384"),
        _ => (65, "P-256"),
    };
    if point.len() != len || point[0] != 0x04 {
        return Err(ConfigError::new(
            "key",
            format!("{alg} needs an uncompressed {curve} public key ({len} bytes, 0x04 first)"),
        ));
    }
    Ok(())
}
