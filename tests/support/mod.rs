//! Helpers shared by the socket tests (not a test target of its own: cargo
//! only builds `tests/*.rs` as targets).

pub mod logs;
