//! The operator runtime: watchers feed Inputs to the machines, an executor runs their commands; metrics and health.

pub mod health;
pub mod metrics;
