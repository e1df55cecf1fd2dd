//! kuberay: a Kubernetes operator for Ray that speaks KubeRay's `ray.io/v1` API, built as an event-sourced state
//! machine engine. See `../shared/DESIGN.md` for the architecture.

pub mod api;
pub mod build;
pub mod cli;
pub mod clock;
pub mod config;
pub mod engine;
pub mod journal;
pub mod machine;
pub mod ray;
pub mod runtime;
pub mod sim;
