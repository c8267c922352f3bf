//! `x-forwarded-for` lines through the public rate-limit layer behind a trusted
//! peer: never a panic; an untrusted peer is always the client, whatever
//! the header says.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tower_edge::rate_limit::{ForwardedHeader, LimitRateLayer};

fuzz_target!(|data: &[u8]| {
    static LAYER: OnceLock<LimitRateLayer> = OnceLock::new();
    let layer = LAYER.get_or_init(|| fuzz_support::client_ip_layer(ForwardedHeader::XForwardedFor));
    fuzz_support::check_client_ip(layer, "x-forwarded-for", data);
});
