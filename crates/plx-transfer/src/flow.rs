//! How many requests a download keeps in flight, found from what it measures rather than fixed.
//!
//! Objects per second is about requests in flight ÷ round-trip time (Little's law): a store a
//! few hundred microseconds away is saturated by a few dozen requests, one 50 ms away needs
//! hundreds. So the run starts at [`START`] and measures, in steps, the throughput each limit
//! gives: requests completed per second, counted from when the step's first own request came
//! back (before that, what completes ran under the previous limit), beside the time-weighted
//! mean of requests in flight, which says whether there was work enough to fill the limit
//! (Little's law ties the two: in flight = throughput × time per request, so a limit that
//! buys no throughput only lengthens each request). A step lasts until, after its first own
//! request, as many came back as its limit (one round trip at saturation, [`MIN_DONE`]), so the
//! limit grows per round trip. While doubling the limit still buys at least [`CLIMB`] more, it
//! doubles; then it keeps the better of the last two and holds, probing a quarter higher every
//! few steps and keeping the probe only if it pays ([`PROBE`]). A 503
//! SlowDown halves what flies at once (once per step) and caps the probes below where the store
//! pushed back; every attempt's 503 counts, including those the SDK's own retries absorb
//! ([`Busy`]), since those are the store's signal too and most never outlast them. The limit
//! never exceeds the caller's cap (`Config::request_cap`: `requests` fitted to the open-file
//! limit, and no more than `Config::memory` holds of the smallest requests) and never goes
//! below 1. Within it, `Config::memory` is taken by each request by its body
//! ([`crate::request_memory`]), so it holds back large bodies, not small ones.
//!
//! Every step is recorded ([`Step`]) for the summary, so the controller's choices can be seen.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use aws_sdk_s3::config::{
    ConfigBag, Intercept, RuntimeComponents,
    interceptors::BeforeDeserializationInterceptorContextRef,
};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::summary::Step;

/// Where a run starts: enough for a nearby store, from where a far one is found in a few steps.
pub(crate) const START: usize = 32;
/// A doubling is kept while it buys at least this much more throughput.
const CLIMB: f64 = 1.2;
/// A probe a quarter higher is kept when it buys at least this much more.
const PROBE: f64 = 1.1;
/// Steps held between probes.
const HOLD: u32 = 4;
/// A step ends after this many of its own requests completed, and at least as many as its
/// limit: the whole window turned over once, a round trip at saturation. Half the limit ended a
/// step 50 ms away within one round trip's burst of answers, so a doubling was judged before
/// the doubled requests were back, bought nothing, and was undone (32, 64, back to 32)...
const MIN_DONE: u64 = 8;
/// ...or, with a few, after this long (large parts over a slow link).
const LONGEST: Duration = Duration::from_secs(2);
/// Steps kept in the summary.
const KEPT: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Doubling while it pays.
    Climb,
    /// Holding; probes after [`HOLD`] steps.
    Hold(u32),
    /// Trying a higher limit, against the throughput `rate` at `from`.
    Probe { from: usize, rate: f64 },
}

/// The controller, apart from the semaphore it sizes and from the clock (every call is told
/// the time), so that it can be driven by a simulated store in its tests.
struct Control {
    limit: usize,
    cap: usize,
    /// Below where the store said SlowDown: probes stay under it.
    ceiling: usize,
    /// Places that exist (free or taken); above `limit` after a cut, until requests give back.
    granted: usize,
    phase: Phase,
    /// The step's number: requests are counted in the step they started in.
    step: u64,
    started: Instant,
    step_started: Instant,
    /// Requests in flight now, and their time-weighted sum over the step's measure.
    busy: usize,
    area: f64,
    changed: Instant,
    /// When the step's measure began: once the first request started in the step completed
    /// (before that, what completes ran under the previous limit). `None` while settling.
    measuring: Option<Instant>,
    /// Requests completed since then.
    done: u64,
    /// The previous step's limit and throughput, when it was measured.
    last: Option<(usize, f64)>,
    slowed_in: Option<u64>,
    steps: Vec<Step>,
}

impl Control {
    fn new(cap: usize, now: Instant) -> Control {
        let cap = cap.max(1);
        let limit = START.min(cap);
        Control {
            limit,
            cap,
            ceiling: cap,
            granted: limit,
            phase: Phase::Climb,
            step: 0,
            started: now,
            step_started: now,
            busy: 0,
            area: 0.0,
            changed: now,
            measuring: None,
            done: 0,
            last: None,
            slowed_in: None,
            steps: Vec::new(),
        }
    }

    /// A request takes its place; the step it counts in.
    fn start(&mut self, now: Instant) -> u64 {
        self.account(now);
        self.busy += 1;
        self.step
    }

    /// A request that started in `step` ended (well or not).
    fn finish(&mut self, now: Instant, step: u64) {
        self.account(now);
        self.busy = self.busy.saturating_sub(1);
        let Some(since) = self.measuring else {
            if step == self.step {
                // The step's first own request is back: from here on, what completes ran
                // under this step's limit.
                self.measuring = Some(now);
                self.area = 0.0;
            }
            return;
        };
        self.done += 1;
        let elapsed = now.duration_since(since);
        if self.done >= MIN_DONE.max(self.limit as u64) || (elapsed >= LONGEST && self.done >= 2) {
            self.decide(now);
        }
    }

    /// The store said SlowDown: half as many as fly, at once, once per step, and no probe back
    /// up to where it pushed back. Half of what flies, not of the limit: the memory bound may
    /// hold the requests in flight well under it (99 large bodies under a limit of 128), and
    /// half the limit would then cut little.
    fn slow_down(&mut self, now: Instant) {
        if self.slowed_in == Some(self.step) {
            return;
        }
        let limit = self.limit.min(self.busy).max(1);
        self.ceiling = limit.saturating_sub(1).max(1);
        self.phase = Phase::Hold(0);
        self.last = None;
        self.limit = (limit / 2).max(1);
        self.begin(now);
        // The cut's step is a new one: the slowdown is not undone by its own next decision.
        self.slowed_in = Some(self.step);
    }

    /// Ends a step: its throughput (requests completed over the time measured) and the
    /// requests in flight over that time, and the next limit.
    fn decide(&mut self, now: Instant) {
        let elapsed = self
            .measuring
            .map_or(0.0, |since| now.duration_since(since).as_secs_f64());
        let (in_flight, rate) = if elapsed > 0.0 {
            (self.area / elapsed, self.done as f64 / elapsed)
        } else {
            (self.busy as f64, 0.0)
        };
        let limit = self.limit;
        if self.steps.len() < KEPT {
            self.steps.push(Step {
                at: now.duration_since(self.started).as_secs_f64(),
                limit: limit as u32,
                in_flight,
            });
        }
        // Too little work to fill the limit says nothing about a higher one.
        let saturated = in_flight >= 0.75 * limit as f64;
        let next = match self.phase {
            _ if !saturated => limit,
            Phase::Climb => match self.last {
                Some((previous, before)) if rate < before * CLIMB => {
                    self.phase = Phase::Hold(0);
                    if rate >= before * 1.05 {
                        limit
                    } else {
                        previous
                    }
                }
                _ if limit >= self.ceiling => {
                    self.phase = Phase::Hold(0);
                    limit
                }
                _ => limit * 2,
            },
            Phase::Hold(held) if held + 1 >= HOLD && limit < self.ceiling => {
                self.phase = Phase::Probe { from: limit, rate };
                limit + (limit / 4).max(1)
            }
            Phase::Hold(held) => {
                self.phase = Phase::Hold(held + 1);
                limit
            }
            Phase::Probe { from, rate: before } => {
                self.phase = Phase::Hold(0);
                if rate >= before * PROBE { limit } else { from }
            }
        };
        self.last = saturated.then_some((limit, rate));
        self.limit = next.clamp(1, self.ceiling.min(self.cap));
        self.begin(now);
    }

    /// Adds the requests in flight since the last change to the step's time-weighted sum.
    fn account(&mut self, now: Instant) {
        self.area += self.busy as f64 * now.duration_since(self.changed).as_secs_f64();
        self.changed = now;
    }

    fn begin(&mut self, now: Instant) {
        self.step += 1;
        self.step_started = now;
        self.changed = now;
        self.area = 0.0;
        self.measuring = None;
        self.done = 0;
    }
}

/// Tells the flow of each 503 the store answers, attempt by attempt: an SDK interceptor on the
/// download's client. Without it the engine heard only of a SlowDown that outlasted the SDK's
/// own retries, which with the standard three tries is almost none.
pub(crate) struct Busy(pub(crate) Arc<Flow>);

impl std::fmt::Debug for Busy {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Busy")
    }
}

impl Intercept for Busy {
    fn name(&self) -> &'static str {
        "plx-transfer::flow::Busy"
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if context.response().status().as_u16() == 503 {
            self.0.slow_down();
        }
        Ok(())
    }
}

/// The limit on requests in flight, and its controller; and the memory they may hold.
pub(crate) struct Flow {
    permits: Semaphore,
    control: Mutex<Control>,
    /// `Config::memory` in KiB, taken by each request as its body makes it hold
    /// ([`crate::request_memory`]): many small requests fly where few large ones would.
    memory: Semaphore,
    memory_kib: u32,
}

/// One request's place in flight; it is counted when dropped.
pub(crate) struct Slot<'a> {
    flow: &'a Flow,
    permit: Option<SemaphorePermit<'a>>,
    _memory: Option<SemaphorePermit<'a>>,
    step: u64,
}

impl Flow {
    /// A controller that never lets more than `cap` requests fly, nor more than `memory` bytes
    /// be held by them.
    pub(crate) fn new(cap: usize, memory: u64) -> Flow {
        let control = Control::new(cap, Instant::now());
        let memory_kib = (memory / 1024).clamp(1, u64::from(u32::MAX)) as u32;
        Flow {
            permits: Semaphore::new(control.limit),
            control: Mutex::new(control),
            memory: Semaphore::new(memory_kib as usize),
            memory_kib,
        }
    }

    /// A transfer's flow, with its own copy of `client` that tells the flow of every 503
    /// ([`Busy`]), those the SDK's retries absorb and listings' too.
    pub(crate) fn with_client(
        client: &aws_sdk_s3::Client,
        config: &crate::Config,
    ) -> (Arc<Flow>, aws_sdk_s3::Client) {
        let flow = Arc::new(Flow::new(config.request_cap(), config.memory));
        let client = aws_sdk_s3::Client::from_conf(
            client
                .config()
                .to_builder()
                .interceptor(Busy(flow.clone()))
                .build(),
        );
        (flow, client)
    }

    /// Waits for a place in flight for a request of `size` bytes of body. Its memory is taken
    /// first: a request waiting for memory holds no place, so the controller's count of
    /// requests in flight stays what flies.
    pub(crate) async fn slot(&self, size: u64) -> Slot<'_> {
        let kib = crate::request_memory(size)
            .div_ceil(1024)
            .min(u64::from(self.memory_kib)) as u32;
        let memory = self.memory.acquire_many(kib).await.ok();
        let permit = self.permits.acquire().await.ok();
        let now = Instant::now();
        let step = self
            .control
            .lock()
            .map(|mut control| control.start(now))
            .unwrap_or(0);
        Slot {
            flow: self,
            permit,
            _memory: memory,
            step,
        }
    }

    /// The store answered 503 SlowDown.
    pub(crate) fn slow_down(&self) {
        if let Ok(mut control) = self.control.lock() {
            control.slow_down(Instant::now());
            self.resize(&mut control);
        }
    }

    /// The steps so far.
    pub(crate) fn steps(&self) -> Vec<Step> {
        self.control
            .lock()
            .map(|control| control.steps.clone())
            .unwrap_or_default()
    }

    fn complete(&self, step: u64, permit: Option<SemaphorePermit<'_>>) {
        let Ok(mut control) = self.control.lock() else {
            return;
        };
        control.finish(Instant::now(), step);
        if let Some(permit) = permit
            && control.granted > control.limit
        {
            // The limit went down: this place is not given back.
            control.granted -= 1;
            permit.forget();
        }
        self.resize(&mut control);
    }

    /// Makes the places that exist match the limit: new ones at once, free ones taken away at
    /// once, taken ones as their requests give them back.
    fn resize(&self, control: &mut Control) {
        if control.limit > control.granted {
            self.permits.add_permits(control.limit - control.granted);
            control.granted = control.limit;
        } else if control.limit < control.granted {
            control.granted -= self.permits.forget_permits(control.granted - control.limit);
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.flow.complete(self.step, self.permit.take());
    }
}

#[cfg(test)]
mod tests {
    use std::{cmp::Reverse, collections::BinaryHeap};

    use super::*;

    /// Drives the controller with a simulated store: `requests` requests, as many in flight as
    /// the limit allows, each taking `latency(in_flight)` (µs); the clock is simulated, so the
    /// test takes no time. Returns the controller's steps.
    fn simulate(
        control: &mut Control,
        requests: usize,
        latency: impl Fn(usize) -> u64,
        slow_down_at: Option<usize>,
    ) {
        let zero = control.started;
        let mut now = 0u64;
        let mut flying: BinaryHeap<Reverse<(u64, u64)>> = BinaryHeap::new();
        let (mut sent, mut finished) = (0, 0);
        while finished < requests {
            while sent < requests && flying.len() < control.limit {
                let step = control.start(zero + Duration::from_micros(now));
                let took = latency(flying.len() + 1);
                flying.push(Reverse((now + took, step)));
                sent += 1;
            }
            let Some(Reverse((end, step))) = flying.pop() else {
                break;
            };
            now = end;
            control.finish(zero + Duration::from_micros(now), step);
            finished += 1;
            if slow_down_at == Some(finished) {
                control.slow_down(zero + Duration::from_micros(now));
            }
        }
    }

    fn peak(control: &Control) -> u32 {
        control
            .steps
            .iter()
            .map(|step| step.limit)
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn a_far_store_gets_many_requests() {
        // 50 ms whatever the load: every doubling doubles the throughput, up to the cap.
        let mut control = Control::new(256, Instant::now());
        simulate(&mut control, 20_000, |_| 50_000, None);
        assert_eq!(peak(&control), 256, "{:?}", control.steps);
        assert_eq!(control.limit, 256);
    }

    #[test]
    fn a_far_store_is_climbed_once_per_round_trip() {
        // 50 ms away, as a short pull of 2,000 small objects: each doubling is judged after its
        // requests came back, so it is kept, and the cap is reached in a round trip per step
        // (32, 64, back to 32 and then a quarter per probe, when a step was half a window).
        let mut control = Control::new(256, Instant::now());
        simulate(&mut control, 2_000, |_| 50_000, None);
        let limits: Vec<u32> = control.steps.iter().map(|step| step.limit).collect();
        assert_eq!(limits[..4], [32, 64, 128, 256], "{:?}", control.steps);
        assert!(control.steps[3].at <= 0.5, "{:?}", control.steps);
    }

    #[test]
    fn a_saturated_store_keeps_few() {
        // 2,000 requests a second whatever the load: more in flight only queues.
        let mut control = Control::new(256, Instant::now());
        simulate(
            &mut control,
            20_000,
            |in_flight| 500 * in_flight as u64,
            None,
        );
        assert!(control.limit <= 40, "{} {:?}", control.limit, control.steps);
    }

    #[test]
    fn a_store_that_saturates_at_100_settles_near_it() {
        // 10 ms up to 100 in flight, then queueing: 64 pays, 128 does not much.
        let mut control = Control::new(256, Instant::now());
        simulate(
            &mut control,
            50_000,
            |in_flight| 10_000 * (in_flight.max(100) as u64) / 100,
            None,
        );
        assert!(
            (64..=160).contains(&control.limit),
            "{} {:?}",
            control.limit,
            control.steps
        );
    }

    #[test]
    fn slow_down_halves_and_caps() {
        let mut control = Control::new(256, Instant::now());
        simulate(&mut control, 20_000, |_| 50_000, Some(10_000));
        let limits: Vec<u32> = control.steps.iter().map(|step| step.limit).collect();
        let top = limits.iter().position(|limit| *limit == 256).unwrap_or(0);
        let cut = top
            + limits[top..]
                .iter()
                .position(|limit| *limit < 256)
                .unwrap_or(0);
        // Halved once (from what flew: 256, or one fewer when a request had just ended), and
        // never back up to where the store pushed back.
        assert!(cut > top, "{limits:?}");
        assert!((127..=128).contains(&limits[cut]), "{limits:?}");
        assert!(limits[cut..].iter().all(|limit| *limit < 256), "{limits:?}");
        assert!(control.ceiling < 256);
    }

    #[test]
    fn slow_down_halves_what_flies_not_the_limit() {
        let mut control = Control::new(256, Instant::now());
        control.limit = 64;
        let now = Instant::now();
        // 37 in flight under a limit of 64 (the memory bound holds the rest back).
        for _ in 0..37 {
            control.start(now);
        }
        control.slow_down(now);
        assert_eq!(control.limit, 18);
        assert_eq!(control.ceiling, 36);
    }

    #[test]
    fn a_step_without_enough_work_changes_nothing() {
        // Eight requests at a time from the caller: the limit has nothing to learn.
        let mut control = Control::new(256, Instant::now());
        let zero = control.started;
        for round in 0..200u64 {
            let steps: Vec<u64> = (0..8)
                .map(|_| control.start(zero + Duration::from_millis(round * 50)))
                .collect();
            for step in steps {
                control.finish(zero + Duration::from_millis(round * 50 + 50), step);
            }
        }
        assert_eq!(control.limit, START, "{:?}", control.steps);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn never_more_in_flight_than_the_places_that_exist() {
        use futures::StreamExt;
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let flow = Flow::new(100, 1 << 40);
        let (busy, worst) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let run = |requests: usize| {
            futures::stream::iter(0..requests).for_each_concurrent(1024, |_| async {
                let slot = flow.slot(0).await;
                let now = busy.fetch_add(1, SeqCst) + 1;
                let granted = flow.control.lock().map(|c| c.granted).unwrap_or(0);
                worst.fetch_max(now.saturating_sub(granted), SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                busy.fetch_sub(1, SeqCst);
                drop(slot);
            })
        };
        run(3_000).await;
        flow.slow_down();
        run(1_000).await;
        assert_eq!(worst.into_inner(), 0);
        let control = flow
            .control
            .lock()
            .map(|c| (c.limit, c.granted))
            .unwrap_or_default();
        // Once every request has given its place back, the places are the limit.
        assert_eq!(control.0, control.1);
        assert_eq!(flow.permits.available_permits(), control.1);
    }

    #[tokio::test]
    async fn memory_is_taken_by_what_each_request_holds() {
        use tokio::time::timeout;
        let wait = Duration::from_millis(50);
        // 600 KiB: two requests for large bodies (96 + 192 KiB each) fit, a third waits.
        let flow = Flow::new(256, 600 * 1024);
        let large = futures::future::join_all((0..2).map(|_| flow.slot(8 << 20))).await;
        assert!(timeout(wait, flow.slot(8 << 20)).await.is_err());
        drop(large);
        // Five of 4 KiB (96 + 12 KiB each) fit where two large ones did; a sixth waits.
        let small = futures::future::join_all((0..5).map(|_| flow.slot(4096))).await;
        assert!(timeout(wait, flow.slot(4096)).await.is_err());
        drop(small);
        assert_eq!(flow.memory.available_permits(), 600);
        // A request larger than the whole bound still runs, alone.
        let tiny = Flow::new(256, 64 * 1024);
        let alone = timeout(wait, tiny.slot(8 << 20)).await;
        assert!(alone.is_ok());
    }
}
