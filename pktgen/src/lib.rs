//! Sluice's packet generator: stateless streams built with the dataplane's
//! packet builder, software rate control, marks for loss and latency
//! measurement, pcap replay and RFC 2544 searches, over the dataplane's
//! `Port` backends. See `docs/pktgen.md`.
//!
//! The pieces, from the spec to the wire:
//!
//! - [`spec`]: streams from the short form or a profile file, checked;
//! - [`field`]: how a field varies (sequences, random, lists);
//! - [`stream`]: a compiled stream, a template and the per-packet rewrites;
//! - [`gen`]: streams interleaved by weight, filling bursts;
//! - [`rate`]: the pacer;
//! - [`mark`] and [`measure`]: marks in the payload, and what the receiver
//!   makes of them;
//! - [`link`] and [`ports`]: an in-memory link with loss and delay, and
//!   port specs;
//! - [`run`]: the send/receive loop and its report;
//! - [`replay`] and [`rfc2544`];
//! - [`tcp`]: stateful TCP connections with smoltcp.

/// Prints a line to stdout; a closed pipe (`| head`) ends the output
/// quietly instead of panicking.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

pub mod clock;
pub mod field;
pub mod gen;
pub mod link;
pub mod mark;
pub mod measure;
pub mod ports;
pub mod rate;
pub mod replay;
pub mod rfc2544;
pub mod run;
pub mod spec;
pub mod stream;
pub mod tcp;
