//! Progress while pulling: a bar on a terminal; in a pod (no terminal) one log line every few
//! seconds, so `kubectl logs` shows the pull moving without a line per object.

use std::{
    io::IsTerminal,
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use plx_transfer::{Event, Events};
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

/// Counts what the engine reports and shows it; [`Progress::finish`] stops it.
pub(crate) struct Progress {
    events: Events,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

/// How often the events are taken in. The task waits on a clock, not on the channel: a send
/// then never wakes it, where waking it cost two thread wake-ups per small object.
const DRAIN: Duration = Duration::from_millis(100);

#[derive(Default)]
struct Counts {
    objects: u64,
    skipped: u64,
    retried: u64,
    bytes: u64,
}

impl Progress {
    /// Starts reporting for the pull from `connection`; `every` is the log interval.
    pub(crate) fn start(connection: &str, every: Duration) -> Progress {
        let (sender, receiver) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel();
        let connection = connection.to_owned();
        let events = Batches {
            receiver,
            stopped,
            tick: tokio::time::interval(DRAIN),
            finished: false,
        };
        let task = if std::io::stderr().is_terminal() {
            tokio::spawn(bar(connection, events))
        } else {
            tokio::spawn(lines(connection, events, every))
        };
        Progress {
            events: Some(sender),
            stop: Some(stop),
            task,
        }
    }

    /// Where the engine sends its events.
    pub(crate) fn events(&self) -> &Events {
        &self.events
    }

    /// Waits for the last events to be shown.
    pub(crate) async fn finish(mut self) {
        self.events = None;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.task.await;
    }
}

/// The engine's events, taken in batches.
struct Batches {
    receiver: mpsc::UnboundedReceiver<Event>,
    stopped: oneshot::Receiver<()>,
    tick: tokio::time::Interval,
    finished: bool,
}

impl Batches {
    /// The events since the last batch, at the next tick or when the pull ends; None after
    /// the last batch.
    async fn next(&mut self) -> Option<Vec<Event>> {
        if self.finished {
            return None;
        }
        self.finished = tokio::select! {
            _ = self.tick.tick() => false,
            _ = &mut self.stopped => true,
        };
        let mut batch = Vec::new();
        while let Ok(event) = self.receiver.try_recv() {
            batch.push(event);
        }
        Some(batch)
    }
}

impl Counts {
    /// Applies one event; a retry is logged at once, because it explains a slow pull.
    fn apply(&mut self, connection: &str, event: Event) {
        match event {
            Event::Bytes(bytes) => self.bytes += bytes,
            Event::Done { .. } => self.objects += 1,
            Event::Skipped { .. } => self.skipped += 1,
            Event::Retry {
                key,
                attempt,
                cause,
            } => {
                self.retried += 1;
                tracing::warn!(connection, key, attempt, cause, "retrying");
            }
            Event::Started { .. } | Event::PartDone { .. } => {}
        }
    }
}

async fn bar(connection: String, mut events: Batches) {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {prefix}: {binary_bytes} at {binary_bytes_per_sec}, {msg} [{elapsed}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_prefix(connection.clone());
    bar.enable_steady_tick(Duration::from_millis(120));
    let mut counts = Counts::default();
    while let Some(batch) = events.next().await {
        for event in batch {
            if let Event::Bytes(bytes) = event {
                bar.inc(bytes);
            }
            counts.apply(&connection, event);
        }
        bar.set_message(format!(
            "{} objects, {} skipped",
            counts.objects, counts.skipped
        ));
    }
    bar.finish_and_clear();
}

async fn lines(connection: String, mut events: Batches, every: Duration) {
    let started = Instant::now();
    let mut counts = Counts::default();
    let mut shown = Instant::now();
    while let Some(batch) = events.next().await {
        for event in batch {
            counts.apply(&connection, event);
        }
        if shown.elapsed() >= every {
            shown = Instant::now();
            let seconds = started.elapsed().as_secs_f64();
            tracing::info!(
                connection,
                objects = counts.objects,
                skipped = counts.skipped,
                retried = counts.retried,
                bytes = counts.bytes,
                mb_per_s = format!("{:.1}", counts.bytes as f64 / seconds.max(1e-3) / 1e6),
                "pulling"
            );
        }
    }
}
