//! Faults the simulated cluster can inject, for testing how a client copes: lost, late and out-of-order watch
//! events, watches cut with `410 Gone`, writes refused with 409, 429 or 500, and Ray dashboards that do not answer.
//! All of it is drawn from a generator seeded with [`Faults::seed`]: the same seed and the same requests give the
//! same faults. Writes draw from one generator in the order they arrive; each watch and each dashboard has its own,
//! seeded by its rank (the order in which watches were opened, dashboards started).
//!
//! None of these happen in a healthy real cluster (a watch never loses or reorders events); they stand for what a
//! client meets across restarts, overload and flaky networks.

use std::time::Duration;

use super::error::{ApiError, GroupResource};
use super::rng::Rng;

/// Which faults, how often (fractions from 0 to 1), and the seed they are drawn with. The default injects none.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    pub seed: u64,
    /// Each watch event is lost with this probability.
    pub drop_watch_events: f64,
    /// Each watch event is held back with this probability and sent right after the next event of its watch.
    pub reorder_watch_events: f64,
    /// Watch events are sent this much later.
    pub delay_watch_events: Duration,
    /// A watch ends with an ERROR `410 Expired` event after sending this many events.
    pub expire_watches_after: Option<usize>,
    /// A client's write (create, update, patch, delete) is refused, without effect, with 409 Conflict …
    pub conflict_writes: f64,
    /// … with 429 TooManyRequests (and `Retry-After: 1`) …
    pub throttle_writes: f64,
    /// … or with 500 InternalError, with these probabilities.
    pub fail_writes: f64,
    /// A Ray dashboard request is answered only after [`Faults::dashboard_hang`] with this probability.
    pub dashboard_timeouts: f64,
    pub dashboard_hang: Duration,
}

impl Faults {
    pub fn watch_faults(&self) -> bool {
        self.drop_watch_events > 0.0
            || self.reorder_watch_events > 0.0
            || !self.delay_watch_events.is_zero()
            || self.expire_watches_after.is_some()
    }

    /// A generator for the `rank`-th watch or dashboard.
    pub fn dice(&self, stream: u64, rank: u64) -> Dice {
        Dice(Rng::seeded(self.seed ^ stream.rotate_left(32) ^ rank.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
    }

    /// The refusal, if any, of the next write (`dice` draws once per write).
    pub fn refuse_write(&self, dice: &mut Dice, resource: GroupResource, name: &str) -> Option<ApiError> {
        if self.conflict_writes + self.throttle_writes + self.fail_writes <= 0.0 {
            return None;
        }
        let draw = dice.draw();
        if draw < self.conflict_writes {
            Some(ApiError::stale_resource_version(resource, name))
        } else if draw < self.conflict_writes + self.throttle_writes {
            Some(ApiError::too_many_requests())
        } else if draw < self.conflict_writes + self.throttle_writes + self.fail_writes {
            Some(ApiError::internal("injected fault"))
        } else {
            None
        }
    }
}

/// Streams of draws: writes, watches, dashboards.
pub const WRITES: u64 = 1;
pub const WATCHES: u64 = 2;
pub const DASHBOARDS: u64 = 3;

/// A seeded source of draws.
#[derive(Clone, Debug)]
pub struct Dice(Rng);

impl Dice {
    /// A number in `[0, 1)`.
    pub fn draw(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Whether an event of this probability happens.
    pub fn chance(&mut self, probability: f64) -> bool {
        probability > 0.0 && self.draw() < probability
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIGMAPS: GroupResource = GroupResource { group: "", resource: "configmaps" };

    fn outcomes(faults: &Faults) -> Vec<u16> {
        let mut dice = faults.dice(WRITES, 0);
        (0..40).map(|_| faults.refuse_write(&mut dice, CONFIGMAPS, "a").map_or(200, |e| e.code)).collect()
    }

    #[test]
    fn write_faults_follow_their_fractions_and_the_seed() {
        let faults =
            Faults { seed: 7, conflict_writes: 0.25, throttle_writes: 0.25, fail_writes: 0.25, ..Faults::default() };
        let first = outcomes(&faults);
        assert_eq!(first, outcomes(&faults));
        for code in [200, 409, 429, 500] {
            assert!(first.contains(&code), "{code} in {first:?}");
        }
        assert_ne!(first, outcomes(&Faults { seed: 8, ..faults.clone() }));
        assert!(outcomes(&Faults::default()).iter().all(|code| *code == 200));
    }

    #[test]
    fn draws_are_fractions_and_chances_follow_them() {
        let mut dice = Faults::default().dice(WATCHES, 3);
        let draws: Vec<f64> = (0..1000).map(|_| dice.draw()).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        let heads = (0..1000).filter(|_| dice.chance(0.3)).count();
        assert!((200..400).contains(&heads), "{heads}");
        assert!(!dice.chance(0.0));
    }
}
