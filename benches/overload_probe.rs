//! The load generator of `benches/overload.sh`: `CONCURRENCY` clients,
//! each on its own keep-alive connection, send `GET` to
//! `OVERLOAD_PROBE_URL` back to back for `DURATION_S` seconds, and the
//! latency of every answer is kept by status, so the percentiles of the
//! *admitted* requests are not diluted by the fast 503s (wrk reports one
//! distribution for all answers). Does nothing without
//! `OVERLOAD_PROBE_URL` (so `cargo bench` passes over it).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() {
    let Ok(url) = std::env::var("OVERLOAD_PROBE_URL") else {
        println!("overload_probe: set OVERLOAD_PROBE_URL (see benches/overload.sh)");
        return;
    };
    let concurrency = env("CONCURRENCY", 64);
    let duration = Duration::from_secs(env("DURATION_S", 10));
    let uri: http::Uri = url.parse().expect("OVERLOAD_PROBE_URL: a URL");
    let start = Instant::now();
    let end = start + duration;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let uri = uri.clone();
            tokio::spawn(async move {
                // One client per task: its own keep-alive connection.
                let client = Client::builder(TokioExecutor::new())
                    .pool_max_idle_per_host(1)
                    .build_http::<Empty<Bytes>>();
                let mut seen = Vec::new();
                while Instant::now() < end {
                    let sent = Instant::now();
                    let status = match client.get(uri.clone()).await {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            let _ = response.into_body().collect().await;
                            status
                        }
                        Err(_) => 0,
                    };
                    seen.push((status, sent.elapsed()));
                }
                seen
            })
        })
        .collect();
    let mut ok = Vec::new();
    let mut shed = Vec::new();
    let mut other = 0usize;
    for task in tasks {
        for (status, latency) in task.await.expect("a client task") {
            match status {
                200..=299 => ok.push(latency),
                429 | 503 => shed.push(latency),
                _ => other += 1,
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    ok.sort();
    shed.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "clients {concurrency}, {elapsed:.1} s: goodput {:.1} req/s ({} ok), shed {} ({:.1}/s), \
         other {other}; admitted p50 {:.1} ms p99 {:.1} ms max {:.1} ms; shed p50 {:.2} ms p99 {:.2} ms",
        ok.len() as f64 / elapsed,
        ok.len(),
        shed.len(),
        shed.len() as f64 / elapsed,
        ms(percentile(&ok, 50.0)),
        ms(percentile(&ok, 99.0)),
        ms(ok.last().copied().unwrap_or_default()),
        ms(percentile(&shed, 50.0)),
        ms(percentile(&shed, 99.0)),
    );
}
