//! The progress display: on a terminal one status line rewritten in place
//! (the sweep point, the second, the rate so far); otherwise, as in CI logs,
//! one line per update.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

/// A prefix for every line (the sweep's "[2/4] routes=100000").
static PREFIX: Mutex<String> = Mutex::new(String::new());

pub fn set_prefix(prefix: &str) {
    if let Ok(mut p) = PREFIX.lock() {
        *p = prefix.to_string();
    }
}

/// Shows `text` as the current status.
pub fn line(text: &str) {
    let prefix = PREFIX.lock().map(|p| p.clone()).unwrap_or_default();
    let mut err = std::io::stderr().lock();
    if err.is_terminal() {
        let _ = write!(err, "\r\x1b[K{prefix}{text}");
        let _ = err.flush();
    } else {
        let _ = writeln!(err, "{prefix}{text}");
    }
}

/// Ends the status line (on a terminal), so that what follows starts on a
/// line of its own.
pub fn done() {
    let mut err = std::io::stderr().lock();
    if err.is_terminal() {
        let _ = writeln!(err);
    }
}
