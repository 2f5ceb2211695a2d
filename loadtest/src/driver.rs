//! The target-independent part of a run: when to send (closed loop, or open loop at intended
//! times), the bound on count and time, the unary client loop, and the once-a-second tick
//! that feeds the time series and the progress bar.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt as _;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::time::Instant;

use crate::limits;
use crate::recorder::{Failure, Recorder};
use crate::workload::{Accounts, Generator, Op, TransferOp};

/// What a target does for one operation. Futures are `'static` so a client can keep many
/// outstanding.
pub trait Executor: Send + Sync + 'static {
    fn transfer(&self, op: TransferOp) -> BoxFuture<'static, Result<(), Failure>>;
    fn read(&self, slot: u32) -> BoxFuture<'static, Result<(), Failure>>;
}

/// The run's bound: a deadline, and optionally a number of operations.
pub struct Budget {
    deadline: Instant,
    remaining: Option<AtomicU64>,
}

impl Budget {
    pub fn new(duration: Duration, requests: Option<u64>) -> Budget {
        Budget {
            deadline: Instant::now() + duration,
            remaining: requests.map(AtomicU64::new),
        }
    }

    /// Takes one operation from the budget; false once the run is over.
    pub fn take(&self) -> bool {
        if Instant::now() >= self.deadline {
            return false;
        }
        match &self.remaining {
            None => true,
            Some(left) => left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok(),
        }
    }
}

/// When a client sends next. Closed loop: as soon as it has room. Open loop: at fixed
/// intended times, whatever happened to earlier sends; latency is measured from the intended
/// time, so a stalled target shows up as queueing instead of as fewer samples (coordinated
/// omission).
pub struct Pacer {
    interval: Option<Duration>,
    next: Instant,
}

impl Pacer {
    /// `rate` is this client's share of the offered rate; `phase` in 0..1 staggers clients
    /// so they do not all send at the same instant.
    pub fn new(rate_per_client: Option<f64>, phase: f64) -> Pacer {
        let interval = rate_per_client.map(|rate| Duration::from_secs_f64(1.0 / rate));
        let now = Instant::now();
        let next = interval.map_or(now, |i| now + i.mul_f64(phase));
        Pacer { interval, next }
    }

    pub fn is_open_loop(&self) -> bool {
        self.interval.is_some()
    }

    /// When the next operation is due.
    pub fn due(&self) -> Instant {
        self.next
    }

    /// Marks the due operation as sent; returns the time its latency counts from.
    pub fn sent(&mut self) -> Instant {
        match self.interval {
            Some(interval) => {
                let intended = self.next;
                self.next += interval;
                intended
            }
            None => Instant::now(),
        }
    }
}

/// One client of unary calls: keeps up to `in_flight_max` operations outstanding, sends as
/// the pacer says, stops at the budget and returns when everything it sent has an answer.
pub async fn unary_client(
    executor: Arc<dyn Executor>,
    mut generator: Generator,
    accounts: Arc<Accounts>,
    recorder: Arc<Recorder>,
    budget: Arc<Budget>,
    mut pacer: Pacer,
    in_flight_max: usize,
) {
    let mut outstanding = FuturesUnordered::new();
    let mut stopping = false;
    loop {
        if stopping && outstanding.is_empty() {
            return;
        }
        let room = !stopping && outstanding.len() < in_flight_max;
        tokio::select! {
            biased;
            Some(()) = outstanding.next(), if !outstanding.is_empty() => {}
            () = tokio::time::sleep_until(pacer.due()), if room => {
                if !budget.take() {
                    stopping = true;
                    continue;
                }
                let intended = pacer.sent();
                let op = generator.next(&accounts);
                outstanding.push(execute(executor.clone(), recorder.clone(), op, intended));
            }
        }
    }
}

/// Runs one operation and records its outcome.
pub fn execute(
    executor: Arc<dyn Executor>,
    recorder: Arc<Recorder>,
    op: Op,
    intended: Instant,
) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        match op {
            Op::Transfer(transfer) => {
                let result = executor.transfer(transfer).await;
                recorder.transfer(&transfer, intended.elapsed(), result);
            }
            Op::Read { slot } => {
                let result = executor.read(slot).await;
                recorder.read(intended.elapsed(), result);
            }
        }
    })
}

/// A bar for the measured phase, hidden when asked or when stderr is not a terminal.
pub fn run_progress(duration: Duration, hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(
        Some(duration.as_millis() as u64),
        ProgressDrawTarget::stderr_with_hz(4),
    );
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}% {msg}",
        )
        .expect("valid template"),
    );
    bar
}

/// A counting bar for setup and verification steps.
pub fn step_progress(hidden: bool, label: &str, total: u64) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(4));
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{label:>22} [{{elapsed_precise}}] {{wide_bar}} {{human_pos}}/{{human_len}} ({{per_sec}}, eta {{eta}})"
        ))
        .expect("valid template"),
    );
    bar
}

/// Closes a tick every [`limits::TICK`] until dropped, and shows live figures on `bar`.
pub async fn ticker(recorder: Arc<Recorder>, bar: ProgressBar) {
    let mut interval = tokio::time::interval_at(Instant::now() + limits::TICK, limits::TICK);
    loop {
        interval.tick().await;
        let tick = recorder.tick();
        let (ok, errors) = {
            let g = recorder.lock();
            (g.transfers_ok, Recorder::errors_total(&g))
        };
        bar.set_position(recorder.started.elapsed().as_millis() as u64);
        bar.set_message(format!(
            "{ok} ok, {errors} errors | {:.0} transfers/s | p99 {:.1} ms",
            tick.transfers_per_s, tick.p99_ms
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn budget_counts_and_expires() {
        let budget = Budget::new(Duration::from_secs(60), Some(2));
        assert!(budget.take());
        assert!(budget.take());
        assert!(!budget.take());
        let budget = Budget::new(Duration::from_millis(1), None);
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(!budget.take());
    }

    #[tokio::test]
    async fn open_loop_pacer_keeps_intended_times_when_late() {
        let mut pacer = Pacer::new(Some(100.0), 0.0);
        assert!(pacer.is_open_loop());
        let first = pacer.sent();
        // Even if the client only gets round to it much later, the second intended time is
        // 10 ms after the first: lateness counts in the latency, it does not shift the plan.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let second = pacer.sent();
        assert_eq!(second - first, Duration::from_millis(10));
        let mut closed = Pacer::new(None, 0.0);
        assert!(!closed.is_open_loop());
        let before = Instant::now();
        assert!(closed.sent() >= before);
    }
}
