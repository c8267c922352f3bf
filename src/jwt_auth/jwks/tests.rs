//! Unit tests of the JWKS source without a network; the socket tests are in
//! `tests/jwks_socket.rs`.

use super::*;

#[test]
fn https_is_required_except_on_loopback() {
    assert!(check_uri("jwks_url", "https://idp.example.com/jwks", false).is_ok());
    assert!(check_uri("jwks_url", "http://127.0.0.1:8080/jwks", false).is_ok());
    assert!(check_uri("jwks_url", "http://localhost/jwks", false).is_ok());
    assert!(check_uri("jwks_url", "http://[::1]:9/jwks", false).is_ok());
    let err = check_uri("jwks_url", "http://idp.example.com/jwks", false).unwrap_err();
    assert_eq!(err.field(), "jwks_url");
    assert!(check_uri("jwks_url", "http://idp.example.com/jwks", true).is_ok());
    assert!(check_uri("jwks_url", "ftp://idp.example.com/jwks", true).is_err());
    assert!(check_uri("jwks_url", "/jwks", true).is_err());
    assert!(check_uri("jwks_url", "not a url", true).is_err());
}

#[tokio::test]
async fn bad_configuration_names_the_field() {
    let url = "https://idp.example.com/jwks";
    let field = |b: JwksKeySourceBuilder| b.build_lazy().unwrap_err().field().to_owned();
    assert_eq!(
        field(JwksKeySource::from_jwks_url("http://idp.example.com/")),
        "jwks_url"
    );
    assert_eq!(
        field(JwksKeySource::from_discovery_url("nope")),
        "discovery_url"
    );
    assert_eq!(
        field(JwksKeySource::from_jwks_url(url).timeout(Duration::ZERO)),
        "timeout"
    );
    assert_eq!(
        field(JwksKeySource::from_jwks_url(url).max_response_size(0)),
        "max_response_size"
    );
    assert_eq!(
        field(
            JwksKeySource::from_jwks_url(url)
                .cache_lifetime(Duration::from_secs(10), Duration::from_secs(5))
        ),
        "cache_lifetime"
    );
    assert_eq!(
        field(JwksKeySource::from_jwks_url(url).cooldown(Duration::ZERO)),
        "cooldown"
    );
    // Regression (review): these are added to `Instant`s while requests are
    // served; `Duration::MAX` made an unknown `kid` panic the request.
    assert_eq!(
        field(JwksKeySource::from_jwks_url(url).cooldown(Duration::MAX)),
        "cooldown"
    );
    assert_eq!(
        field(
            JwksKeySource::from_jwks_url(url).cache_lifetime(Duration::from_secs(1), Duration::MAX)
        ),
        "cache_lifetime"
    );
    assert_eq!(
        field(JwksKeySource::from_jwks_url(url).timeout(Duration::MAX)),
        "timeout"
    );
    // `build` reports the same error without fetching.
    let err = JwksKeySource::from_jwks_url(url)
        .cooldown(Duration::ZERO)
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, JwksError::Config(e) if e.field() == "cooldown"));
}

#[test]
fn outside_a_tokio_runtime_is_a_configuration_error() {
    let err = JwksKeySource::from_jwks_url("https://idp.example.com/jwks")
        .build_lazy()
        .unwrap_err();
    assert_eq!(err.field(), "runtime");
}

#[test]
fn from_issuer_appends_the_discovery_path() {
    let b = JwksKeySource::from_issuer("https://idp.example.com/realms/acme/");
    match b.location {
        Location::Discovery { url, issuer } => {
            assert_eq!(
                url,
                "https://idp.example.com/realms/acme/.well-known/openid-configuration"
            );
            assert_eq!(
                issuer.as_deref(),
                Some("https://idp.example.com/realms/acme/")
            );
        }
        Location::Jwks(_) => panic!("discovery expected"),
    }
}

// Memory stays bounded under hostile input: random unknown `kid`s fill a
// capped negative cache (see the `jwks` module docs, "Unknown `kid`").
#[test]
fn the_negative_cache_is_bounded_and_expires() {
    let ttl = Duration::from_secs(60);
    let start = Instant::now();
    let cache = NegativeCache::new(3);
    let insert = |kid: &str, now: Instant| cache.insert(kid.into(), (), now + ttl, now);
    let contains = |kid: &str, now: Instant| cache.get(kid, now).is_some();
    for (i, kid) in ["a", "b", "c", "d"].into_iter().enumerate() {
        insert(kid, start + Duration::from_secs(i as u64));
    }
    assert_eq!(cache.len(), 3);
    // The oldest went first.
    assert!(!contains("a", start + Duration::from_secs(4)));
    assert!(contains("d", start + Duration::from_secs(4)));
    // Entries expire after the lifetime.
    assert!(!contains("d", start + Duration::from_secs(64)));
    let off = NegativeCache::new(0);
    off.insert("a".into(), (), start + ttl, start);
    assert_eq!(off.len(), 0);
}

// Regression (review): once full, each insert scanned the whole map twice
// (expiry, then the oldest), under the lock every unknown-`kid` check
// takes. Now expiry and eviction take the oldest from the insertion order
// (`TtlMap`); a kid remembered again moves to the back.
#[test]
fn the_negative_cache_evicts_the_oldest_without_scanning() {
    let ttl = Duration::from_secs(60);
    let start = Instant::now();
    let at = |s: u64| start + Duration::from_millis(s);
    let cache = NegativeCache::new(3);
    let insert = |kid: &str, now: Instant| cache.insert(kid.into(), (), now + ttl, now);
    let contains = |kid: &str, now: Instant| cache.get(kid, now).is_some();
    insert("a", at(0));
    insert("b", at(1));
    insert("c", at(2));
    // `a` remembered again: `b` is now the oldest.
    insert("a", at(3));
    insert("d", at(4));
    assert!(!contains("b", at(5)));
    for kid in ["a", "c", "d"] {
        assert!(contains(kid, at(5)), "{kid}");
    }
    // Many re-inserts keep one entry per kid.
    for i in 0..1_000 {
        insert("a", at(10 + i));
    }
    assert_eq!(cache.len(), 3);
    // Expired ones go from the front as new kids arrive.
    insert("e", start + Duration::from_secs(70));
    assert_eq!(cache.len(), 1);
    assert!(contains("e", start + Duration::from_secs(70)));
}

#[test]
fn error_types_are_short_fixed_names() {
    assert_eq!(JwksError::Timeout.error_type(), "timeout");
    assert_eq!(JwksError::Status(503).error_type(), "status");
    assert_eq!(JwksError::TooLarge.error_type(), "too_large");
    assert_eq!(JwksError::Empty.error_type(), "empty");
    assert_eq!(
        JwksError::InvalidJson(String::new()).error_type(),
        "invalid_json"
    );
}
