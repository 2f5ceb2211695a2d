//! What a run observed: latency histograms (overall and per tick), outcome counts by gRPC
//! status and reason, the time series for the plots, and what verification needs (the fold
//! of acknowledged transfers into expected balances, a seeded sample of acknowledged ids,
//! and every transfer whose outcome is unknown).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::limits;
use crate::workload::TransferOp;

/// Why an operation failed, as the target said it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// gRPC status name (`RESOURCE_EXHAUSTED`), or the PostgreSQL equivalent.
    pub code: String,
    /// Stable reason (`OVERLOADED`, `INSUFFICIENT_FUNDS`), from `google.rpc.ErrorInfo`.
    pub reason: String,
    /// False when the transfer may or may not have been applied.
    pub definite: bool,
}

/// Every (code, reason) a healthy run may see under overload: the documented back-pressure
/// and leadership answers. Anything else is a real error.
pub const OVERLOAD_CODES: &[(&str, &str)] = &[
    ("RESOURCE_EXHAUSTED", "OVERLOADED"),
    ("UNAVAILABLE", "NOT_LEADER"),
    ("UNAVAILABLE", "NO_LEADER"),
    ("UNAVAILABLE", "OUTCOME_UNKNOWN"),
    ("DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED"),
];

/// One point of the time series.
#[derive(Debug, Clone, Serialize)]
pub struct Tick {
    /// Seconds since the measured phase started, at the end of the tick.
    pub at_s: f64,
    pub transfers_ok: u64,
    pub errors: u64,
    pub transfers_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
}

/// A transfer kept for verification.
pub type Kept = TransferOp;

pub struct Inner {
    pub transfers: Histogram<u64>,
    pub reads: Histogram<u64>,
    pub push_lag: Histogram<u64>,
    tick: Histogram<u64>,
    tick_ok: u64,
    tick_errors: u64,
    last_tick: Instant,
    pub transfers_ok: u64,
    pub reads_ok: u64,
    pub pushes: u64,
    /// (code, reason) -> count, transfers and reads together.
    pub errors: BTreeMap<(String, String), u64>,
    pub timeline: Vec<Tick>,
    /// Expected balance change per slot from acknowledged transfers.
    pub deltas: Vec<i64>,
    /// Reservoir sample of acknowledged transfers.
    pub acked_sample: Vec<Kept>,
    sample_rng: SmallRng,
    sample_max: usize,
    /// Transfers with an indefinite outcome, for GetTransfer after the run.
    pub unknown: Vec<Kept>,
    pub unknown_dropped: u64,
}

/// Shared by every client; one short lock per completed operation.
pub struct Recorder {
    inner: Mutex<Inner>,
    pub started: Instant,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, limits::LATENCY_MICROS_MAX, 3).expect("valid bounds")
}

fn micros(latency: Duration) -> u64 {
    (latency.as_micros() as u64).clamp(1, limits::LATENCY_MICROS_MAX)
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1_000.0
}

impl Recorder {
    pub fn new(slots: u32, sample_max: usize, seed: u64) -> Recorder {
        let now = Instant::now();
        Recorder {
            inner: Mutex::new(Inner {
                transfers: histogram(),
                reads: histogram(),
                push_lag: histogram(),
                tick: histogram(),
                tick_ok: 0,
                tick_errors: 0,
                last_tick: now,
                transfers_ok: 0,
                reads_ok: 0,
                pushes: 0,
                errors: BTreeMap::new(),
                timeline: Vec::new(),
                deltas: vec![0; slots as usize],
                acked_sample: Vec::new(),
                sample_rng: SmallRng::seed_from_u64(seed),
                sample_max: sample_max.min(limits::ACKED_SAMPLE_MAX),
                unknown: Vec::new(),
                unknown_dropped: 0,
            }),
            started: now,
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Restarts the clock: the measured phase begins now.
    pub fn start(&mut self) {
        self.started = Instant::now();
        self.lock().last_tick = self.started;
    }

    /// A transfer's outcome, `latency` measured from its intended send time.
    pub fn transfer(&self, op: &TransferOp, latency: Duration, result: Result<(), Failure>) {
        let mut g = self.lock();
        let g = &mut *g;
        match result {
            Ok(()) => {
                let us = micros(latency);
                g.transfers.saturating_record(us);
                g.tick.saturating_record(us);
                g.transfers_ok += 1;
                g.tick_ok += 1;
                g.deltas[op.from as usize] -= op.amount_minor;
                g.deltas[op.to as usize] += op.amount_minor;
                // Reservoir sampling (Algorithm R): every acknowledged transfer has the same
                // chance to be checked, with a bounded sample.
                let seen = g.transfers_ok as usize;
                if g.acked_sample.len() < g.sample_max {
                    g.acked_sample.push(*op);
                } else if g.sample_max > 0 {
                    let j = g.sample_rng.random_range(0..seen);
                    if j < g.sample_max {
                        g.acked_sample[j] = *op;
                    }
                }
            }
            Err(failure) => {
                g.tick_errors += 1;
                if !failure.definite {
                    if g.unknown.len() < limits::UNKNOWN_OUTCOMES_MAX {
                        g.unknown.push(*op);
                    } else {
                        g.unknown_dropped += 1;
                    }
                }
                *g.errors.entry((failure.code, failure.reason)).or_default() += 1;
            }
        }
    }

    /// A read's outcome.
    pub fn read(&self, latency: Duration, result: Result<(), Failure>) {
        let mut g = self.lock();
        match result {
            Ok(()) => {
                g.reads.saturating_record(micros(latency));
                g.reads_ok += 1;
            }
            Err(failure) => {
                g.tick_errors += 1;
                *g.errors.entry((failure.code, failure.reason)).or_default() += 1;
            }
        }
    }

    /// A balance change pushed to a watcher, `lag` after its commit time.
    pub fn push(&self, lag: Duration) {
        let mut g = self.lock();
        g.push_lag.saturating_record(micros(lag));
        g.pushes += 1;
    }

    /// Closes the current tick: appends it to the time series and returns it.
    pub fn tick(&self) -> Tick {
        let mut g = self.lock();
        let now = Instant::now();
        let span = now.duration_since(g.last_tick).as_secs_f64().max(1e-6);
        let tick = Tick {
            at_s: now.duration_since(self.started).as_secs_f64(),
            transfers_ok: g.tick_ok,
            errors: g.tick_errors,
            transfers_per_s: g.tick_ok as f64 / span,
            p50_ms: ms(g.tick.value_at_quantile(0.50)),
            p90_ms: ms(g.tick.value_at_quantile(0.90)),
            p99_ms: ms(g.tick.value_at_quantile(0.99)),
            p999_ms: ms(g.tick.value_at_quantile(0.999)),
        };
        g.tick.reset();
        g.tick_ok = 0;
        g.tick_errors = 0;
        g.last_tick = now;
        if g.timeline.len() < limits::TIMELINE_POINTS_MAX {
            g.timeline.push(tick.clone());
        }
        tick
    }

    /// Failed operations so far.
    pub fn errors_total(g: &Inner) -> u64 {
        g.errors.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn op(n: u128, from: u32, to: u32, amount: i64) -> TransferOp {
        TransferOp {
            id: Uuid::from_u128(n),
            from,
            to,
            amount_minor: amount,
        }
    }

    #[test]
    fn acknowledged_transfers_fold_and_unknown_ones_are_kept() {
        let recorder = Recorder::new(4, 2, 1);
        recorder.transfer(&op(1, 0, 1, 5), Duration::from_millis(2), Ok(()));
        recorder.transfer(&op(2, 1, 2, 3), Duration::from_millis(4), Ok(()));
        recorder.transfer(&op(3, 2, 3, 7), Duration::from_millis(1), Ok(()));
        let overloaded = Failure {
            code: "RESOURCE_EXHAUSTED".into(),
            reason: "OVERLOADED".into(),
            definite: false,
        };
        recorder.transfer(&op(4, 0, 3, 9), Duration::from_millis(1), Err(overloaded));
        let rejected = Failure {
            code: "FAILED_PRECONDITION".into(),
            reason: "INSUFFICIENT_FUNDS".into(),
            definite: true,
        };
        recorder.transfer(&op(5, 0, 3, 9), Duration::from_millis(1), Err(rejected));
        let g = recorder.lock();
        assert_eq!(g.deltas, vec![-5, 2, -4, 7]);
        assert_eq!(g.deltas.iter().sum::<i64>(), 0);
        assert_eq!(g.transfers_ok, 3);
        assert_eq!(g.acked_sample.len(), 2);
        assert_eq!(g.unknown.len(), 1);
        assert_eq!(g.unknown[0].id, Uuid::from_u128(4));
        assert_eq!(Recorder::errors_total(&g), 2);
        assert_eq!(g.transfers.len(), 3);
        assert_eq!(g.transfers.max() / 1000, 4);
    }

    #[test]
    fn ticks_reset_and_accumulate_the_timeline() {
        let recorder = Recorder::new(2, 0, 1);
        for _ in 0..10 {
            recorder.transfer(&op(1, 0, 1, 1), Duration::from_millis(3), Ok(()));
        }
        let first = recorder.tick();
        assert_eq!(first.transfers_ok, 10);
        assert!((first.p99_ms - 3.0).abs() < 0.1, "{}", first.p99_ms);
        let second = recorder.tick();
        assert_eq!(second.transfers_ok, 0);
        assert_eq!(recorder.lock().timeline.len(), 2);
        assert_eq!(recorder.lock().transfers_ok, 10);
    }
}
