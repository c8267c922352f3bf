//! One idempotent request: buffer and fingerprint the body, claim the key,
//! then replay, refuse, or run the handler and store or release.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use tower_service::Service;

use super::body::{IdempotencyBody, RequestBody};
use super::key::{IdempotencyKey, InvalidKey};
use super::outcome::StoredResponse;
use super::scope::{Scope, StoreKey};
use super::state::Config;
use super::store::{Claim, Completion, FencingToken, IdempotencyStore, StoreError};
use super::{IDEMPOTENT_REPLAYED, InFlight, OnStoreError};
use crate::decision::{Decision, EdgeLayer, Reason};
use crate::header_map::copy_with_room;
use crate::rejection::{GrpcCode, Problem};

/// What the layer answers itself.
pub(crate) enum Answer {
    MissingKey,
    InvalidKey(InvalidKey),
    TooLarge,
    UnreadableBody,
    InFlight,
    Mismatch,
    StoreUnavailable,
}

/// The layer's answer, shaped for the request (problem+json, or gRPC
/// trailers-only when `grpc` is the request's gRPC content type).
pub(crate) fn answer<B: Body>(
    config: &Config,
    answer: Answer,
    grpc: Option<HeaderValue>,
) -> Response<IdempotencyBody<B>> {
    let (problem, reason) = match answer {
        Answer::MissingKey => (
            Problem::new(StatusCode::BAD_REQUEST)
                .with_detail("this request requires an Idempotency-Key header"),
            Reason::MissingIdempotencyKey,
        ),
        Answer::InvalidKey(invalid) => (
            Problem::new(StatusCode::BAD_REQUEST).with_detail(invalid.detail()),
            Reason::InvalidIdempotencyKey,
        ),
        Answer::TooLarge => (
            Problem::new(StatusCode::PAYLOAD_TOO_LARGE)
                .with_detail("the request body is too large for an idempotent request")
                .with_grpc_code(GrpcCode::ResourceExhausted),
            Reason::ContentTooLarge,
        ),
        Answer::UnreadableBody => (
            Problem::new(StatusCode::BAD_REQUEST).with_detail("the request body could not be read"),
            Reason::UnreadableBody,
        ),
        Answer::InFlight => (
            Problem::new(StatusCode::CONFLICT)
                .with_detail("a request with this Idempotency-Key is still being processed")
                .with_header(RETRY_AFTER, config.retry_after.clone())
                .with_grpc_code(GrpcCode::Aborted),
            Reason::RequestInFlight,
        ),
        Answer::Mismatch => (
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY)
                .with_detail("this Idempotency-Key was used with another request payload")
                .with_grpc_code(GrpcCode::FailedPrecondition),
            Reason::KeyReused,
        ),
        Answer::StoreUnavailable => (
            Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                .with_detail("idempotency keys cannot be checked now")
                .with_header(RETRY_AFTER, HeaderValue::from_static("1")),
            Reason::StoreUnavailable,
        ),
    };
    let problem = problem.with_decision(Decision::new(EdgeLayer::Idempotency, reason));
    config
        .rejections
        .respond_as::<B>(problem, grpc)
        .map(IdempotencyBody::edge)
}

/// The stored outcome, byte for byte, marked `Idempotent-Replayed: true`.
fn replay<B: Body>(stored: Arc<StoredResponse>) -> Response<IdempotencyBody<B>> {
    // A replay from Redis owns its freshly decoded outcome: moved, not
    // cloned. The memory store's is shared: its fields are copied into a
    // map with room for the marker.
    let (status, mut headers, body, trailers) = match Arc::try_unwrap(stored) {
        Ok(owned) => owned.into_parts(),
        Err(shared) => (
            shared.status(),
            copy_with_room(shared.headers(), 1),
            shared.body().clone(),
            shared.trailers().cloned(),
        ),
    };
    headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    let mut response = Response::new(IdempotencyBody::full(body, trailers));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
        .extensions_mut()
        .insert(Decision::new(EdgeLayer::Idempotency, Reason::Replayed));
    response
}

/// Frees the key when dropped armed: a handler error, a failing or
/// over-cap body, or the request dropped before its outcome is settled.
struct Release {
    store: Arc<dyn IdempotencyStore>,
    key: StoreKey,
    token: FencingToken,
    armed: bool,
}

impl Drop for Release {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Err(pending) = self.store.release(&self.key, self.token).into_ready()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                if let Err(error) = pending.await {
                    tracing::debug!(%error, "idempotency: releasing a key failed; its lease will expire");
                }
            });
        }
    }
}

impl Config {
    fn store_failed(&self, error: &StoreError) {
        self.store_errors.fetch_add(1, Ordering::Relaxed);
        if !self.store_down.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                %error,
                policy = ?self.on_store_error,
                "idempotency store unavailable; logged once until it answers again"
            );
        } else {
            tracing::debug!(%error, "idempotency store call failed");
        }
    }

    fn store_answered(&self) {
        if self.store_down.load(Ordering::Relaxed) && self.store_down.swap(false, Ordering::Relaxed)
        {
            tracing::info!("idempotency store answers again");
        }
    }

    fn stored_headers(&self, headers: &HeaderMap) -> HeaderMap {
        let mut out = HeaderMap::with_capacity(self.replayed_headers.len());
        for name in &self.replayed_headers {
            for value in headers.get_all(name) {
                out.append(name.clone(), value.clone());
            }
        }
        out
    }
}

enum Buffered<B: Body> {
    Complete(Bytes, Option<HeaderMap>),
    TooLarge(Bytes, B),
    Failed(Bytes, B::Error),
}

/// Reads `body` to its end while it stays within `cap` bytes.
async fn buffer<B>(mut body: B, cap: usize) -> Buffered<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut data = BytesMut::new();
    let mut first: Option<Bytes> = None;
    let mut trailers: Option<HeaderMap> = None;
    loop {
        match body.frame().await {
            None => break,
            Some(Err(error)) => {
                let prefix = take(&mut first, &mut data);
                return Buffered::Failed(prefix, error);
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(chunk) => {
                    let len = first.as_ref().map_or(0, Bytes::len) + data.len();
                    if len + chunk.len() > cap {
                        let mut prefix = BytesMut::from(take(&mut first, &mut data));
                        prefix.extend_from_slice(&chunk);
                        return Buffered::TooLarge(prefix.freeze(), body);
                    }
                    // One chunk is kept as is (no copy); more are joined.
                    match first.take() {
                        None if data.is_empty() => first = Some(chunk),
                        Some(f) => {
                            data.extend_from_slice(&f);
                            data.extend_from_slice(&chunk);
                        }
                        None => data.extend_from_slice(&chunk),
                    }
                }
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        match &mut trailers {
                            Some(all) => all.extend(t),
                            None => trailers = Some(t),
                        }
                    }
                }
            },
        }
    }
    Buffered::Complete(take(&mut first, &mut data), trailers)
}

fn take(first: &mut Option<Bytes>, data: &mut BytesMut) -> Bytes {
    match first.take() {
        Some(f) => f,
        None => std::mem::take(data).freeze(),
    }
}

/// The `grpc-status` of a complete gRPC response.
fn grpc_status(headers: &HeaderMap, trailers: Option<&HeaderMap>) -> Option<u32> {
    let value = trailers
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| headers.get("grpc-status"))?;
    value.to_str().ok()?.parse().ok()
}

fn observe<B>(response: &mut Response<B>, reason: Reason) {
    if response.extensions().get::<Decision>().is_none() {
        response
            .extensions_mut()
            .insert(Decision::observed(EdgeLayer::Idempotency, reason));
    }
}

pub(crate) async fn run<S, ReqBody, ResBody>(
    config: Arc<Config>,
    mut inner: S,
    request: Request<ReqBody>,
    key: IdempotencyKey,
    scope: Scope,
    grpc: Option<HeaderValue>,
) -> Result<Response<IdempotencyBody<ResBody>>, S::Error>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: Body<Data = Bytes>,
    ResBody: Body<Data = Bytes>,
{
    let (mut parts, body) = request.into_parts();
    let (bytes, trailers) = match buffer(Box::pin(body), config.max_body_bytes).await {
        Buffered::Complete(bytes, trailers) => (bytes, trailers),
        Buffered::TooLarge(..) => return Ok(answer(&config, Answer::TooLarge, grpc)),
        Buffered::Failed(..) => return Ok(answer(&config, Answer::UnreadableBody, grpc)),
    };
    let fingerprint = config.fingerprinter.fingerprint(&parts, &bytes);
    let store_key = StoreKey::new(&scope, &key);
    parts.extensions.insert(key);
    let deadline = match config.in_flight {
        InFlight::Wait(wait) => Some(tokio::time::Instant::now() + wait),
        InFlight::Conflict => None,
    };
    let mut pause = Duration::from_millis(5);
    let (token, took_over) = loop {
        match config
            .store
            .claim(&store_key, &fingerprint, config.lease)
            .await
        {
            Ok(claim) => {
                config.store_answered();
                match claim {
                    Claim::Acquired { token, took_over } => break (token, took_over),
                    Claim::Completed(stored) => return Ok(replay(stored)),
                    Claim::Mismatch => return Ok(answer(&config, Answer::Mismatch, grpc)),
                    Claim::InFlight => {
                        let now = tokio::time::Instant::now();
                        match deadline {
                            Some(deadline) if now < deadline => {
                                tokio::time::sleep(pause.min(deadline - now)).await;
                                pause = (pause * 2).min(Duration::from_millis(100));
                            }
                            _ => return Ok(answer(&config, Answer::InFlight, grpc)),
                        }
                    }
                }
            }
            Err(error) => {
                config.store_failed(&error);
                if config.on_store_error == OnStoreError::Reject {
                    return Ok(answer(&config, Answer::StoreUnavailable, grpc));
                }
                let request = Request::from_parts(parts, RequestBody::buffered(bytes, trailers));
                let mut response = inner.call(request).await?.map(IdempotencyBody::inner);
                observe(&mut response, Reason::StoreUnavailable);
                return Ok(response);
            }
        }
    };
    let mut release = Release {
        store: Arc::clone(&config.store),
        key: store_key,
        token,
        armed: true,
    };
    let request = Request::from_parts(parts, RequestBody::buffered(bytes, trailers));
    // An error drops `release`, armed: the key is freed.
    let response = inner.call(request).await?;
    let (head, body) = response.into_parts();
    // An answer of another tower-edge layer further in (a scope check's
    // 403, a limiter's 429) is about this attempt, not the operation.
    let edge_answer = head
        .extensions
        .get::<Decision>()
        .is_some_and(Decision::is_answer);
    if edge_answer || (grpc.is_none() && !config.outcomes.stores(head.status)) {
        drop(release);
        let mut response = Response::from_parts(head, IdempotencyBody::inner(body));
        if took_over {
            observe(&mut response, Reason::LeaseExpired);
        }
        return Ok(response);
    }
    let (data, trailers) = match buffer(Box::pin(body), config.max_response_bytes).await {
        Buffered::Complete(data, trailers) => (data, trailers),
        Buffered::TooLarge(prefix, rest) => {
            tracing::debug!("idempotency: response over the cap; sent as it comes, key released");
            drop(release);
            return Ok(Response::from_parts(
                head,
                IdempotencyBody::resumed(prefix, rest),
            ));
        }
        Buffered::Failed(prefix, error) => {
            drop(release);
            return Ok(Response::from_parts(
                head,
                IdempotencyBody::failed(prefix, error),
            ));
        }
    };
    let storable = match &grpc {
        None => true,
        Some(_) => grpc_status(&head.headers, trailers.as_ref())
            .is_some_and(|code| head.status == StatusCode::OK && config.outcomes.stores_grpc(code)),
    };
    let mut lost_lease = false;
    if storable {
        let stored = Arc::new(StoredResponse::new(
            head.status,
            config.stored_headers(&head.headers),
            data.clone(),
            trailers.clone(),
        ));
        match config
            .store
            .complete(&store_key, &fingerprint, token, stored, config.retention)
            .await
        {
            Ok(Completion::Stored) => {
                config.store_answered();
                release.armed = false;
            }
            Ok(Completion::Fenced) => {
                config.store_answered();
                release.armed = false;
                lost_lease = true;
                tracing::warn!(
                    "idempotency: this request's lease expired before it completed; its outcome \
                     was not stored (fencing token refused)"
                );
            }
            Err(error) => config.store_failed(&error),
        }
    }
    drop(release);
    let mut response = Response::from_parts(head, IdempotencyBody::full(data, trailers));
    if took_over || lost_lease {
        observe(&mut response, Reason::LeaseExpired);
    }
    Ok(response)
}
