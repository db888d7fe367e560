//! Sluice packet generator.
