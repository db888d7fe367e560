//! Sluice's control plane: the daemon's entry points.

pub mod compile;
pub mod controller;
pub mod demo;
pub mod model;
pub mod store;
