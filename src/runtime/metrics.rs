//! STUB until the metrics branch lands.
use crate::machine::{MachineKind, Outcome, Trigger};
use std::time::Duration;
#[derive(Default)]
pub struct Metrics;
impl Metrics {
    pub fn new() -> Metrics {
        Metrics
    }
    pub fn input(&self, _: MachineKind, _: &Trigger) {}
    pub fn transition(&self, _: MachineKind, _: &str, _: &str, _: &str) {}
    pub fn step_error(&self, _: MachineKind) {}
    pub fn journal_bytes(&self, _: u64) {}
    pub fn commit(&self, _: Duration) {}
    pub fn command(&self, _: MachineKind, _: &str, _: &Outcome) {}
    pub fn leader(&self, _: bool) {}
    pub fn queue_depth(&self, _: usize) {}
    pub fn observe_cluster(&self, _: &crate::api::RayCluster) {}
    pub fn forget_cluster(&self, _: &str, _: &str, _: &str) {}
}
