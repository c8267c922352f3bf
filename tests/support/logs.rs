//! One process-wide `fmt` subscriber writing to memory, for tests that read
//! what was logged.
//!
//! Process-wide on purpose: thread-local subscribers (`set_default`) race
//! with other tests over tracing's global interest cache and lose lines now
//! and then (see `tests/correlation_logs.rs`).

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn buffer() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            // The crate at DEBUG (its rejections), the rest at INFO.
            .with_env_filter("info,tower_edge=debug")
            .with_ansi(false)
            // tracing-subscriber (0.3.20 and later) replaces ESC and a few
            // other control characters in what it prints, but not newlines,
            // and other subscribers (older versions, custom writers, log
            // shippers) replace nothing. Turned off, the capture shows the
            // bytes our code hands to any subscriber.
            .with_ansi_sanitization(false)
            .init();
        captured
    })
}

/// Installs the subscriber (once per test binary); call before logging.
pub fn install() {
    buffer();
}

/// Everything logged so far, by every test of this binary.
pub fn captured() -> String {
    String::from_utf8_lossy(&buffer().0.lock().unwrap()).into_owned()
}
