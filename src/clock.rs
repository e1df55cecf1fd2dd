//! Time, read through one interface by the operator (the `now` of every Input) and by the simulated cluster (the
//! timestamps it stamps on objects): the wall clock in a real cluster, tokio's clock (paused: simulated time) in
//! `kuberay sim run` and in tests.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};

/// Where the operator and the simulated cluster read the time. Their timers (requeues, watch bookmarks and timeouts)
/// run on tokio's clock, so paused time drives them too.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The machine's clock, for `kuberay sim serve`.
#[derive(Clone, Copy, Debug, Default)]
pub struct WallClock;

impl Clock for WallClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A fixed start plus the time tokio has let pass since the clock was made: with tokio's time paused (simulated
/// time) every run stamps the same times.
#[derive(Clone, Copy, Debug)]
pub struct TokioClock {
    start: Timestamp,
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// Must be called inside a tokio runtime when its time is paused, so that `origin` is on the paused clock.
    pub fn starting_at(start: Timestamp) -> TokioClock {
        TokioClock { start, origin: tokio::time::Instant::now() }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        let elapsed = SignedDuration::try_from(self.origin.elapsed()).unwrap_or(SignedDuration::MAX);
        self.start.checked_add(elapsed).unwrap_or(Timestamp::MAX)
    }
}

pub fn wall() -> Arc<dyn Clock> {
    Arc::new(WallClock)
}

/// RFC 3339 at whole seconds (the fraction dropped), as `metav1.Time` serializes.
pub fn format_time(time: Timestamp) -> String {
    time.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_whole_seconds_in_utc() {
        let time: Timestamp = "2025-03-04T05:06:07.8Z".parse().unwrap();
        assert_eq!(format_time(time), "2025-03-04T05:06:07Z");
    }

    #[tokio::test(start_paused = true)]
    async fn the_tokio_clock_follows_paused_time() {
        let start: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        let clock = TokioClock::starting_at(start);
        tokio::time::sleep(std::time::Duration::from_secs(90)).await;
        assert_eq!(format_time(clock.now()), "2025-01-01T00:01:30Z");
    }
}
