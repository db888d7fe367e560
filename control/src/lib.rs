//! Sluice's control plane: the daemon's entry points.

pub mod demo;
