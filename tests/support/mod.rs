//! Helpers shared by the socket tests (not a test target of its own: cargo
//! only builds `tests/*.rs` as targets). Each test binary uses a part.
#![allow(dead_code)]

pub mod body;
pub mod logs;
#[cfg(feature = "redis")]
pub mod redis;
pub mod socket;
