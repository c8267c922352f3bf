//! The HTTP client: hyper-util's pooled client over hyper-rustls (ring
//! provider, or aws-lc-rs with the `aws-lc-rs` feature; Mozilla roots from
//! `webpki-roots`).

use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_LENGTH};
use http::{HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use std::net::IpAddr;

use super::error::JwksError;
use crate::config::ConfigError;

#[derive(Clone)]
pub(super) struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    timeout: Duration,
    max_size: usize,
}

/// A successful response: the body and its `Cache-Control`, if any.
pub(super) struct Fetched {
    pub(super) body: Bytes,
    pub(super) cache_control: Option<String>,
}

impl HttpClient {
    pub(super) fn new(timeout: Duration, max_size: usize) -> Result<Self, JwksError> {
        // The same library as the signature checks: aws-lc-rs with the
        // `aws-lc-rs` feature, else ring (already in the tree of most TLS
        // users; RustCrypto has no TLS provider of rustls' own).
        #[cfg(feature = "aws-lc-rs")]
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        #[cfg(not(feature = "aws-lc-rs"))]
        let provider = rustls::crypto::ring::default_provider();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .map_err(|e| JwksError::Connect(e.to_string()))?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(https);
        Ok(Self {
            client,
            timeout,
            max_size,
        })
    }

    /// GET `uri`, the whole exchange (connect, headers, body) under the
    /// timeout, the body under the size cap.
    pub(super) async fn get(&self, uri: &Uri, accept: &'static str) -> Result<Fetched, JwksError> {
        match tokio::time::timeout(self.timeout, self.get_inner(uri, accept)).await {
            Ok(result) => result,
            Err(_) => Err(JwksError::Timeout),
        }
    }

    async fn get_inner(&self, uri: &Uri, accept: &'static str) -> Result<Fetched, JwksError> {
        let request = Request::get(uri.clone())
            .header(ACCEPT, HeaderValue::from_static(accept))
            .body(Empty::new())
            .map_err(|e| JwksError::Connect(e.to_string()))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| JwksError::Connect(error_chain(&e)))?;
        if response.status() != StatusCode::OK {
            return Err(JwksError::Status(response.status().as_u16()));
        }
        let too_large = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|len| len > self.max_size as u64);
        if too_large {
            return Err(JwksError::TooLarge);
        }
        let cache_control = response
            .headers()
            .get_all(CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",");
        let body = Limited::new(response.into_body(), self.max_size)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    JwksError::TooLarge
                } else {
                    JwksError::Connect(e.to_string())
                }
            })?
            .to_bytes();
        Ok(Fetched {
            body,
            cache_control: (!cache_control.is_empty()).then_some(cache_control),
        })
    }
}

/// The error and its sources, so the log says "connection refused".
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// `url` as a `Uri` with an authority, `https`, or `http` when allowed.
pub(super) fn check_uri(
    field: &'static str,
    url: &str,
    allow_http: bool,
) -> Result<Uri, ConfigError> {
    let uri: Uri = url
        .parse()
        .map_err(|_| ConfigError::new(field, "not a valid URL"))?;
    let Some(host) = uri.host() else {
        return Err(ConfigError::new(field, "needs a host"));
    };
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if allow_http || is_loopback(host) => Ok(uri),
        Some("http") => Err(ConfigError::new(
            field,
            "must be https:// (http:// only for loopback hosts, or with `allow_http(true)`)",
        )),
        _ => Err(ConfigError::new(field, "must be an https:// URL")),
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
