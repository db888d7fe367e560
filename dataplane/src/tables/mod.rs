//! Read-side lookup structures, built by the control plane and published to the
//! workers as one immutable generation.

pub mod lpm4;
pub mod lpm6;
pub mod synth;
