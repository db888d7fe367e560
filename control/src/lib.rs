//! Sluice's control plane: the daemon's entry points.

pub mod api;
pub mod bandwidth;
pub mod chains;
pub mod compile;
pub mod controller;
pub mod ctl;
pub mod daemon;
pub mod demo;
pub mod model;
pub mod multinet;
pub mod policy;
pub mod services;
pub mod store;
pub mod trace;
