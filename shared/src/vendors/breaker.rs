//! A circuit breaker per vendor client: after `open_after` consecutive failures it opens and
//! refuses calls for `recovery`; then it lets one probe through at a time (half-open) and closes
//! after `close_after` successes; a failed probe opens it again. Time is tokio's, so tests pause it.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    pub open_after: u32,
    pub recovery: Duration,
    pub close_after: u32,
    /// A probe that has not reported back within this long no longer blocks the next one.
    pub probe_timeout: Duration,
}

impl Default for BreakerConfig {
    /// The predecessors' settings: open after 5 failures, 60 s recovery, 3 successes to close.
    fn default() -> Self {
        Self {
            open_after: 5,
            recovery: Duration::from_secs(60),
            close_after: 3,
            probe_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    HalfOpen {
        successes: u32,
        probe_since: Option<Instant>,
    },
}

#[derive(Debug)]
pub struct CircuitBreaker {
    cfg: BreakerConfig,
    state: Mutex<State>,
}

impl CircuitBreaker {
    pub fn new(cfg: BreakerConfig) -> Self {
        Self {
            cfg,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a call may go out now; `Err(wait)` while open (or while another probe is out).
    pub fn allow(&self) -> Result<(), Duration> {
        let mut s = self.lock();
        let now = Instant::now();
        match *s {
            State::Closed { .. } => Ok(()),
            State::Open { until } if now < until => Err(until - now),
            State::Open { .. } => {
                *s = State::HalfOpen {
                    successes: 0,
                    probe_since: Some(now),
                };
                Ok(())
            }
            State::HalfOpen {
                successes,
                probe_since,
            } => match probe_since {
                Some(t) if now.duration_since(t) < self.cfg.probe_timeout => {
                    Err(self.cfg.probe_timeout - now.duration_since(t))
                }
                _ => {
                    *s = State::HalfOpen {
                        successes,
                        probe_since: Some(now),
                    };
                    Ok(())
                }
            },
        }
    }

    pub fn on_success(&self) {
        let mut s = self.lock();
        *s = match *s {
            State::HalfOpen { successes, .. } if successes + 1 >= self.cfg.close_after => {
                State::Closed { failures: 0 }
            }
            State::HalfOpen { successes, .. } => State::HalfOpen {
                successes: successes + 1,
                probe_since: None,
            },
            _ => State::Closed { failures: 0 },
        };
    }

    pub fn on_failure(&self) {
        let mut s = self.lock();
        let open = State::Open {
            until: Instant::now() + self.cfg.recovery,
        };
        *s = match *s {
            State::Closed { failures } if failures + 1 >= self.cfg.open_after => open,
            State::Closed { failures } => State::Closed {
                failures: failures + 1,
            },
            State::HalfOpen { .. } => open,
            State::Open { until } => State::Open { until },
        };
    }

    pub fn is_open(&self) -> bool {
        matches!(*self.lock(), State::Open { until } if Instant::now() < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig {
            open_after: 3,
            recovery: Duration::from_secs(60),
            close_after: 2,
            probe_timeout: Duration::from_secs(30),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_and_recovers_through_half_open() {
        let b = breaker();
        b.on_failure();
        b.on_failure();
        b.on_success(); // a success resets the count
        b.on_failure();
        b.on_failure();
        assert!(b.allow().is_ok());
        b.on_failure();
        assert!(b.is_open());
        let wait = b.allow().unwrap_err();
        assert_eq!(wait, Duration::from_secs(60));

        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(b.allow().is_ok(), "probe allowed after recovery");
        assert!(b.allow().is_err(), "only one probe at a time");
        b.on_success();
        assert!(b.allow().is_ok(), "next probe after a good one");
        b.on_success();
        assert!(b.allow().is_ok() && b.allow().is_ok(), "closed again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_and_a_lost_probe_times_out() {
        let b = breaker();
        for _ in 0..3 {
            b.on_failure();
        }
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(b.allow().is_ok());
        b.on_failure();
        assert!(b.is_open());

        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(b.allow().is_ok()); // probe goes out and never reports back
        assert!(b.allow().is_err());
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(
            b.allow().is_ok(),
            "a lost probe stops blocking after probe_timeout"
        );
    }
}
