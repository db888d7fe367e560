//! Sluice's control plane: the daemon's entry points.

pub mod demo;
pub mod model;
pub mod store;
