//! Requests that cannot stall: a GET whose response is late against the times seen so far is
//! raced by a second, identical one, and a body that goes quiet is given up and fetched again.
//!
//! The deadline comes from the run's own times to first byte (send to response head): after
//! [`WARM`] of them, `max(4 × p90, p90 + 200 ms)` over the last [`KEPT`]. A request past it is
//! hedged when the budget allows: a token bucket that starts with [`CAPACITY`] tokens, earns
//! [`REWARD`] per answered request and spends 1 per hedge, so hedges stay under about 5% of
//! requests over a run (reward ÷ (reward + 1)), and a slowdown that hits every request (where
//! a second request is as slow as the first) drains it and stops hedging by itself. The design
//! follows aws-s3-transfer-manager-rs's `docs/design/hedging.md` (after Dean and Barroso, *The
//! Tail at Scale*), except that the original is raced rather than cancelled: it may be the one
//! about to answer.
//!
//! Only one response of a race is ever read: [`Hedge::race`] returns the first to answer and
//! drops the other before a byte of its body is taken, so a hedged and an original response can
//! never both land.

use std::{
    collections::VecDeque,
    future::Future,
    pin::pin,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::future::{Either, select};

use crate::{ErrorKind, retry::Failure};

/// Times to first byte seen before any request is hedged.
const WARM: usize = 16;
/// Times to first byte the deadline is taken over.
const KEPT: usize = 256;
/// The hedge budget's size, its earning per answered request, and a hedge's cost.
const CAPACITY: f64 = 10.0;
const REWARD: f64 = 0.05;
/// A body silent this many deadlines (at least [`QUIET_FLOOR`], at most [`QUIET_CEILING`]) is
/// given up.
const QUIET_DEADLINES: u32 = 8;
const QUIET_FLOOR: Duration = Duration::from_secs(2);
/// Before the deadline is known, a body may be silent this long; and never longer: under the
/// SDK's stalled-stream grace (20 s), so a stall is always given up by the engine, which says
/// so, rather than by the SDK's protection, whose "streaming error" on a loaded machine (long
/// times, so a long deadline) said nothing of a stall.
const QUIET_COLD: Duration = Duration::from_secs(10);
const QUIET_CEILING: Duration = QUIET_COLD;

struct Times {
    recent: VecDeque<Duration>,
    /// Worked out again every [`WARM`] answers, not per request.
    deadline: Option<Duration>,
    fresh: usize,
    tokens: f64,
}

/// The run's hedging: its deadline, its budget and its counts.
pub(crate) struct Hedge {
    times: Mutex<Times>,
    /// Requests raced, and races the second request won.
    pub(crate) hedged: AtomicU64,
    pub(crate) won: AtomicU64,
}

impl Hedge {
    pub(crate) fn new() -> Hedge {
        Hedge {
            times: Mutex::new(Times {
                recent: VecDeque::with_capacity(KEPT),
                deadline: None,
                fresh: 0,
                tokens: CAPACITY,
            }),
            hedged: AtomicU64::new(0),
            won: AtomicU64::new(0),
        }
    }

    /// When a response is late enough to race; `None` while too few times are known.
    fn deadline(&self) -> Option<Duration> {
        self.times.lock().ok()?.deadline
    }

    /// How long a body may go without a byte before it is given up and fetched again.
    pub(crate) fn quiet(&self) -> Duration {
        self.deadline().map_or(QUIET_COLD, |deadline| {
            (deadline * QUIET_DEADLINES).clamp(QUIET_FLOOR, QUIET_CEILING)
        })
    }

    /// A response answered after `took`: one more time to go by, one more reward.
    fn answered(&self, took: Option<Duration>) {
        if let Ok(mut times) = self.times.lock() {
            if let Some(took) = took {
                if times.recent.len() == KEPT {
                    times.recent.pop_front();
                }
                times.recent.push_back(took);
                times.fresh += 1;
                if times.fresh >= WARM {
                    times.fresh = 0;
                    let mut sorted: Vec<Duration> = times.recent.iter().copied().collect();
                    sorted.sort_unstable();
                    let p90 = sorted[(sorted.len() * 9 / 10).min(sorted.len() - 1)];
                    times.deadline = Some((p90 * 4).max(p90 + Duration::from_millis(200)));
                }
            }
            times.tokens = (times.tokens + REWARD).min(CAPACITY);
        }
    }

    /// Takes a token for a hedge, if there is one.
    fn spend(&self) -> bool {
        let Ok(mut times) = self.times.lock() else {
            return false;
        };
        if times.tokens >= 1.0 {
            times.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Sends `request()`; if its response is past the deadline and the budget allows, sends it
    /// again and takes whichever answers first (an error waits for the other). The loser is
    /// dropped here, before any of its body is read.
    pub(crate) async fn race<T, E, F, Fut>(&self, request: F) -> Result<T, E>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let sent = Instant::now();
        let Some(deadline) = self.deadline() else {
            let result = request().await;
            self.answered(result.is_ok().then(|| sent.elapsed()));
            return result;
        };
        let mut first = pin!(request());
        let late = match tokio::time::timeout(deadline, &mut first).await {
            Ok(result) => {
                self.answered(result.is_ok().then(|| sent.elapsed()));
                return result;
            }
            Err(_) => !self.spend(),
        };
        if late {
            // No budget: wait, and let the time go by (a censored one would pull the deadline
            // down; this one is real).
            let result = first.await;
            self.answered(result.is_ok().then(|| sent.elapsed()));
            return result;
        }
        self.hedged.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(?deadline, "a response is late: racing a second request");
        let second = pin!(request());
        let (result, other, hedge_answered) = match select(first, second).await {
            Either::Left((result, second)) => (result, Either::Left(second), false),
            Either::Right((result, first)) => (result, Either::Right(first), true),
        };
        let result = match result {
            Ok(value) => {
                if hedge_answered {
                    self.won.fetch_add(1, Ordering::Relaxed);
                }
                Ok(value)
            }
            // One failed: the other may still answer.
            Err(error) => match other.await {
                Ok(value) => {
                    if !hedge_answered {
                        self.won.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(value)
                }
                Err(_) => Err(error),
            },
        };
        // Neither time is one to go by: the race's winner started late or was raced.
        self.answered(None);
        result
    }
}

/// The body's next chunk; a body silent for `quiet` is given up (a transient failure, so the
/// retry loop fetches again at once instead of waiting out the SDK's stall protection).
pub(crate) async fn next_chunk(
    body: &mut aws_sdk_s3::primitives::ByteStream,
    quiet: std::time::Duration,
    what: impl Fn() -> String,
) -> Result<Option<bytes::Bytes>, Failure> {
    match tokio::time::timeout(quiet, body.try_next()).await {
        Ok(Ok(chunk)) => Ok(chunk),
        Ok(Err(error)) => Err(Failure::transient(
            ErrorKind::Transport,
            format!("{}: {error}", what()),
        )),
        Err(_) => Err(Failure::transient(
            ErrorKind::Transport,
            format!(
                "{}: no byte for {:.1} s (a stalled response; fetched again)",
                what(),
                quiet.as_secs_f64()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hedge that has seen 16 answers of 1 ms: its deadline is the 200 ms floor's.
    fn warmed() -> Hedge {
        let hedge = Hedge::new();
        for _ in 0..WARM {
            hedge.answered(Some(Duration::from_millis(1)));
        }
        hedge
    }

    #[test]
    fn no_deadline_before_the_warm_up_then_the_floor() {
        let hedge = Hedge::new();
        for _ in 0..WARM - 1 {
            hedge.answered(Some(Duration::from_millis(1)));
        }
        assert_eq!(hedge.deadline(), None);
        hedge.answered(Some(Duration::from_millis(1)));
        assert_eq!(hedge.deadline(), Some(Duration::from_millis(201)));
        assert_eq!(hedge.quiet(), QUIET_FLOOR);
    }

    #[test]
    fn a_slow_run_stays_under_the_sdk_s_stall_grace() {
        let hedge = Hedge::new();
        for _ in 0..WARM {
            hedge.answered(Some(Duration::from_secs(3)));
        }
        // 4 × 3 s = 12 s of deadline; 8 of them would be 96 s of silence.
        assert_eq!(hedge.deadline(), Some(Duration::from_secs(12)));
        assert_eq!(hedge.quiet(), QUIET_CEILING);
        assert!(QUIET_CEILING < Duration::from_secs(20));
    }

    #[tokio::test]
    async fn a_late_answer_is_raced_and_the_second_wins() {
        let hedge = warmed();
        let calls = AtomicU64::new(0);
        let answer = hedge
            .race(|| async {
                let call = calls.fetch_add(1, Ordering::SeqCst);
                // The first is a straggler; the second answers at once.
                let took = if call == 0 { 30_000 } else { 1 };
                tokio::time::sleep(Duration::from_millis(took)).await;
                Ok::<u64, ()>(call)
            })
            .await;
        assert_eq!(answer, Ok(1));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(hedge.hedged.load(Ordering::SeqCst), 1);
        assert_eq!(hedge.won.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_answer_on_time_is_not_raced() {
        let hedge = warmed();
        let calls = AtomicU64::new(0);
        let answer = hedge
            .race(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok::<(), ()>(())
            })
            .await;
        assert_eq!(answer, Ok(()));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_racer_waits_for_the_other() {
        let hedge = warmed();
        let calls = AtomicU64::new(0);
        let answer = hedge
            .race(|| async {
                let call = calls.fetch_add(1, Ordering::SeqCst);
                if call == 0 {
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    Ok::<u64, &str>(call)
                } else {
                    Err("refused")
                }
            })
            .await;
        assert_eq!(answer, Ok(0));
    }

    #[test]
    fn the_budget_holds_hedges_near_five_percent() {
        // Every request late: each would be raced if the budget allowed.
        let hedge = warmed();
        let requests = 10_000u64;
        let mut hedges = 0u64;
        for _ in 0..requests {
            if hedge.spend() {
                hedges += 1;
            }
            hedge.answered(None);
        }
        let bound = CAPACITY + requests as f64 * REWARD;
        assert!(
            hedges as f64 <= bound,
            "{hedges} hedges for {requests} requests"
        );
        assert!(hedges as f64 >= bound - 2.0, "the budget refills: {hedges}");
    }

    #[tokio::test]
    async fn an_empty_budget_races_nothing() {
        let hedge = warmed();
        while hedge.spend() {}
        let calls = AtomicU64::new(0);
        let answer = hedge
            .race(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok::<(), ()>(())
            })
            .await;
        assert_eq!(answer, Ok(()));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
