//! Sluice control plane.
