//! Helpers shared by the fuzz targets: input splitting and a runtime to
//! drive the layers through their public `tower::Service` API.

use std::future::Future;

use http::{HeaderMap, HeaderName, HeaderValue};

/// Splits fuzz input into header lines at `\n`, keeping only bytes a header
/// value can hold (anything else cannot arrive from hyper).
pub fn header_lines(data: &[u8]) -> Vec<HeaderValue> {
    data.split(|&b| b == b'\n')
        .filter_map(|line| HeaderValue::from_bytes(line).ok())
        .collect()
}

/// Appends each line under `name`.
pub fn append_all(headers: &mut HeaderMap, name: &HeaderName, lines: &[HeaderValue]) {
    for line in lines {
        headers.append(name.clone(), line.clone());
    }
}

/// Runs a future to completion on a per-thread current-thread runtime.
pub fn block_on<F: Future>(future: F) -> F::Output {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime");
    }
    RUNTIME.with(|runtime| runtime.block_on(future))
}
