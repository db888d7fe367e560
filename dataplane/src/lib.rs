//! Sluice's dataplane: the hot path.
//!
//! Nothing here allocates, locks or makes a system call per packet. Work arrives
//! in bursts of up to [`buf::BURST_SIZE`] packets, runs to completion through the
//! pipeline [`stages`], and leaves grouped by output port.
//!
//! Three kinds of data, never mixed:
//! * config: an immutable [`tables::Tables`] generation shared by every worker;
//! * state: owned by exactly one worker ([`state`]);
//! * stats: per-worker counters summed by whoever reads them ([`stats`]).

#![deny(unsafe_op_in_unsafe_fn)]

pub mod buf;
pub mod defer;
pub mod engine;
pub mod io;
pub mod stages;
pub mod state;
pub mod stats;
mod sync;
pub mod tables;
pub mod testing;
pub mod wire;
pub mod worker;
