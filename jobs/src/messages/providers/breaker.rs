//! A circuit breaker per provider and process: failsafe's state machine (closed → open after N
//! consecutive provider failures → half-open once the open time is over → closed on a success,
//! open again on a failure), with what it does mirrored into plain counters for reporting.
//!
//! Two things are added around failsafe's machine:
//! - **one probe at a time** when half-open: failsafe lets every caller through once the open
//!   time is over, so a provider that is still down would be hit by every waiting batch at once;
//!   here the first caller probes and the others wait as if it were still open;
//! - **when to come back**: a refusal says how long the breaker stays open, so a batch job can
//!   snooze exactly that long instead of polling (`Permission::Denied { retry_after }`).

use super::status::BreakerState;
use crate::sync::lock;
use chrono::{DateTime, Utc};
use failsafe::backoff::{self, Constant};
use failsafe::failure_policy::{self, ConsecutiveFailures};
use failsafe::{Instrument, StateMachine};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How many consecutive failures open a breaker, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    pub failure_threshold: u32,
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            open_for: Duration::from_secs(10),
        }
    }
}

/// States as stored in [`Tracked::state`].
fn encode(state: BreakerState) -> u8 {
    match state {
        BreakerState::Closed => 0,
        BreakerState::Open => 1,
        BreakerState::HalfOpen => 2,
    }
}

fn decode(value: u8) -> BreakerState {
    match value {
        1 => BreakerState::Open,
        2 => BreakerState::HalfOpen,
        _ => BreakerState::Closed,
    }
}

/// What the breaker has seen, as reported to operators.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BreakerSnapshot {
    pub state: BreakerState,
    pub consecutive_failures: i32,
    pub failures: i64,
    pub successes: i64,
    /// Calls refused while open (or while another call was probing).
    pub rejected: i64,
    pub opened_at: Option<DateTime<Utc>>,
}

type Machine = StateMachine<ConsecutiveFailures<Constant>, Observer>;

/// One provider's breaker in this process; cheap to clone (shared state).
#[derive(Clone)]
pub struct Breaker {
    machine: Machine,
    tracked: Arc<Tracked>,
    open_for: Duration,
}

#[derive(Default)]
struct Tracked {
    state: AtomicU8,
    /// When the breaker last opened (monotonic for arithmetic, wall clock for reports).
    opened: Mutex<Option<(Instant, DateTime<Utc>)>>,
    consecutive_failures: AtomicI32,
    failures: AtomicI64,
    successes: AtomicI64,
    rejected: AtomicI64,
    /// A half-open probe is out.
    probing: AtomicBool,
    /// Notified on every state change, so the change is reported at once.
    changed: Notify,
}

/// failsafe's hooks, writing into [`Tracked`].
#[derive(Clone)]
struct Observer(Arc<Tracked>);

impl Observer {
    fn set(&self, state: BreakerState) {
        self.0.state.store(encode(state), Ordering::Release);
        self.0.changed.notify_waiters();
    }
}

impl Instrument for Observer {
    fn on_call_rejected(&self) {
        self.0.rejected.fetch_add(1, Ordering::Relaxed);
    }
    fn on_open(&self) {
        *lock(&self.0.opened) = Some((Instant::now(), Utc::now()));
        self.set(BreakerState::Open);
    }
    fn on_half_open(&self) {
        self.set(BreakerState::HalfOpen);
    }
    fn on_closed(&self) {
        *lock(&self.0.opened) = None;
        self.set(BreakerState::Closed);
    }
}

/// May a call go to the provider now?
#[must_use]
pub enum Permission {
    Granted(Call),
    /// Not before `retry_after` (the rest of the open time, or a probe's round trip).
    Denied {
        retry_after: Duration,
    },
}

/// A permitted call; report how it went with [`Call::succeeded`] or [`Call::failed`]. Dropped
/// unreported (the send was abandoned), it counts as neither.
pub struct Call {
    breaker: Breaker,
    probe: bool,
}

impl Call {
    /// Whether this is the one call a half-open breaker lets through.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    pub fn succeeded(self) {
        let tracked = &self.breaker.tracked;
        tracked.consecutive_failures.store(0, Ordering::Relaxed);
        tracked.successes.fetch_add(1, Ordering::Relaxed);
        self.breaker.machine.on_success();
    }

    pub fn failed(self) {
        let tracked = &self.breaker.tracked;
        tracked.consecutive_failures.fetch_add(1, Ordering::Relaxed);
        tracked.failures.fetch_add(1, Ordering::Relaxed);
        self.breaker.machine.on_error();
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if self.probe {
            self.breaker.tracked.probing.store(false, Ordering::Release);
        }
    }
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Breaker {
        let tracked = Arc::new(Tracked::default());
        let policy = failure_policy::consecutive_failures(
            config.failure_threshold.max(1),
            backoff::constant(config.open_for),
        );
        Breaker {
            machine: StateMachine::new(policy, Observer(tracked.clone())),
            tracked,
            open_for: config.open_for,
        }
    }

    pub fn state(&self) -> BreakerState {
        decode(self.tracked.state.load(Ordering::Acquire))
    }

    /// Ask to call the provider. Open: denied for the rest of the open time. Half-open: the
    /// first caller probes, the others are denied until it has answered.
    pub fn permit(&self) -> Permission {
        if !self.machine.is_call_permitted() {
            return Permission::Denied {
                retry_after: self.rest_of_open_time(),
            };
        }
        if self.state() == BreakerState::HalfOpen {
            let free = self.tracked.probing.compare_exchange(
                false,
                true,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
            if free.is_err() {
                self.tracked.rejected.fetch_add(1, Ordering::Relaxed);
                return Permission::Denied {
                    retry_after: PROBE_WAIT.min(self.open_for),
                };
            }
            return Permission::Granted(Call {
                breaker: self.clone(),
                probe: true,
            });
        }
        Permission::Granted(Call {
            breaker: self.clone(),
            probe: false,
        })
    }

    /// For a call granted earlier that waited (for a connection of the pool) while the breaker
    /// opened: `Some(rest of the open time)`, counted as a refused call, if it is open now.
    /// A half-open probe does not ask: it is the call the breaker waits for.
    pub fn refuses_now(&self) -> Option<Duration> {
        (self.state() == BreakerState::Open).then(|| {
            self.tracked.rejected.fetch_add(1, Ordering::Relaxed);
            self.rest_of_open_time()
        })
    }

    fn rest_of_open_time(&self) -> Duration {
        let opened = lock(&self.tracked.opened).map(|(at, _)| at);
        opened
            .map(|at| self.open_for.saturating_sub(at.elapsed()))
            .unwrap_or(self.open_for)
            .max(Duration::from_millis(10))
    }

    /// What operators see. A breaker open past its open time reads half-open, as the next call
    /// finds it: failsafe moves only when asked for a call, so once traffic stops (the send
    /// finished on the secondary) it would read open for good.
    pub fn snapshot(&self) -> BreakerSnapshot {
        let t = &self.tracked;
        let opened = *lock(&t.opened);
        let state = match self.state() {
            BreakerState::Open if opened.is_some_and(|(at, _)| at.elapsed() >= self.open_for) => {
                BreakerState::HalfOpen
            }
            state => state,
        };
        BreakerSnapshot {
            state,
            consecutive_failures: t.consecutive_failures.load(Ordering::Relaxed),
            failures: t.failures.load(Ordering::Relaxed),
            successes: t.successes.load(Ordering::Relaxed),
            rejected: t.rejected.load(Ordering::Relaxed),
            opened_at: opened.map(|(_, wall)| wall),
        }
    }

    /// Resolves at the breaker's next state change after it was enabled (or first polled).
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.tracked.changed.notified()
    }
}

/// How long callers wait while a half-open probe is out.
const PROBE_WAIT: Duration = Duration::from_millis(500);

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(open_for_ms: u64) -> Breaker {
        Breaker::new(BreakerConfig {
            failure_threshold: 3,
            open_for: Duration::from_millis(open_for_ms),
        })
    }

    fn call(b: &Breaker) -> Call {
        match b.permit() {
            Permission::Granted(call) => call,
            Permission::Denied { retry_after } => panic!("denied for {retry_after:?}"),
        }
    }

    #[test]
    fn consecutive_failures_open_it_and_a_success_resets_the_count() {
        let b = breaker(60_000);
        call(&b).failed();
        call(&b).failed();
        call(&b).succeeded();
        call(&b).failed();
        call(&b).failed();
        assert_eq!(b.state(), BreakerState::Closed);
        call(&b).failed();
        assert_eq!(b.state(), BreakerState::Open);
        let Permission::Denied { retry_after } = b.permit() else {
            panic!("an open breaker let a call through");
        };
        assert!(retry_after > Duration::from_secs(59), "{retry_after:?}");
        let s = b.snapshot();
        assert_eq!((s.failures, s.successes, s.rejected), (5, 1, 1));
        assert_eq!(s.consecutive_failures, 3);
        assert!(s.opened_at.is_some());
    }

    #[test]
    fn after_the_open_time_one_probe_goes_and_its_success_closes_it() {
        let b = breaker(20);
        for _ in 0..3 {
            call(&b).failed();
        }
        std::thread::sleep(Duration::from_millis(30));
        let probe = call(&b);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(
            matches!(b.permit(), Permission::Denied { .. }),
            "a second caller got through while the probe was out"
        );
        probe.succeeded();
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.snapshot().opened_at, None);
        call(&b).succeeded();
    }

    #[test]
    fn without_calls_an_open_breaker_past_its_open_time_reads_half_open() {
        // Open for 200 ms: a thread held up a little still reads it open first.
        let b = breaker(200);
        for _ in 0..3 {
            call(&b).failed();
        }
        assert_eq!(b.snapshot().state, BreakerState::Open);
        std::thread::sleep(Duration::from_millis(300));
        let s = b.snapshot();
        assert_eq!(s.state, BreakerState::HalfOpen);
        assert!(s.opened_at.is_some());
        call(&b).succeeded();
        assert_eq!(b.snapshot().state, BreakerState::Closed);
    }

    #[test]
    fn a_failed_probe_opens_it_again() {
        let b = breaker(20);
        for _ in 0..3 {
            call(&b).failed();
        }
        std::thread::sleep(Duration::from_millis(30));
        call(&b).failed();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(matches!(b.permit(), Permission::Denied { .. }));
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_caller_probe() {
        let b = breaker(20);
        for _ in 0..3 {
            call(&b).failed();
        }
        std::thread::sleep(Duration::from_millis(30));
        drop(call(&b));
        call(&b).succeeded();
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
