//! Holds against what their clients were told and what `GetTransfer` reads back at the end.
//!
//! Per hold id, with the final state read after the run (every hold's expiry passed first,
//! see `run::Run::wait_holds_resolved`):
//!
//! - it ends in exactly one of COMPLETED (captured), VOIDED, EXPIRED or REJECTED; PENDING
//!   after its expiry passed, or IN_FLIGHT after quiescence, is an anomaly;
//! - a captured amount is positive and at most the authorized amount, and at most the
//!   amount any capture asked for;
//! - a capture and a void of one hold never both succeed, and two successful captures
//!   report the same amount (resolved once);
//! - an acknowledged capture ends COMPLETED with the amount the client was told (else it
//!   was lost); an acknowledged void ends VOIDED;
//! - money moved by a capture only if some capture was acknowledged or left unknown: a
//!   hold whose captures the client all saw refused is never COMPLETED;
//! - a refusal names the state the hold ends in (HOLD_ALREADY_VOIDED: VOIDED,
//!   HOLD_ALREADY_CAPTURED: COMPLETED, HOLD_EXPIRED: EXPIRED), and CAPTURE_EXCEEDS_HOLD only
//!   answers a capture of more than was authorized;
//! - an acknowledged authorization is never lost, a refused one never holds anything;
//! - a capture first sent once the hold's timeout had passed since its authorization was
//!   acknowledged (plus [`LATE_CAPTURE_MARGIN`]) does not succeed: the node decides it at or
//!   after the expiry (leader time stamps are taken on this machine's clock, when the request
//!   arrives, and the authorization's stamp precedes its acknowledgement).
//!
//! The captured holds are returned, so the final-balance fold, the pushes and the read
//! node's history count each captured amount exactly once.

use std::collections::BTreeMap;
use std::collections::HashMap;

use proto::v1::TransferStatus;

use super::{Completed, FinalTransfer, Report};
use crate::history::{Entry, HoldStep, Op, Phase};
use crate::workload::LATE_CAPTURE_MARGIN;

/// One call's attempt at a step: what was asked and how it ended.
#[derive(Clone, Debug)]
struct Attempt {
    /// Capture: the amount asked for (0: all of it).
    amount_minor: i64,
    invoked_ms: u64,
    phase: Phase,
    detail: String,
    captured_minor: i64,
}

/// What the clients did with one hold.
#[derive(Default)]
struct Sent {
    from: String,
    to: String,
    currency: String,
    amount_minor: i64,
    timeout_ms: u64,
    authorize: Vec<Attempt>,
    captures: Vec<Attempt>,
    voids: Vec<Attempt>,
    /// When the first authorization was acknowledged (history time).
    authorized_ms: Option<u64>,
}

/// Every hold of the history, its attempts paired invoke → completion per process and step.
fn sent(history: &[Entry], report: &mut Report) -> BTreeMap<String, Sent> {
    let mut holds: BTreeMap<String, Sent> = BTreeMap::new();
    let mut open: HashMap<(String, String, HoldStep), u64> = HashMap::new();
    for entry in history {
        let Op::Hold {
            step,
            transaction_id,
            from,
            to,
            currency,
            amount_minor,
            timeout_ms,
            detail,
            captured_minor,
        } = &entry.op
        else {
            continue;
        };
        let hold = holds.entry(transaction_id.clone()).or_default();
        if *step == HoldStep::Authorize {
            if hold.from.is_empty() {
                (hold.from, hold.to, hold.currency) = (from.clone(), to.clone(), currency.clone());
                (hold.amount_minor, hold.timeout_ms) = (*amount_minor, *timeout_ms);
            } else if (&hold.from, &hold.to, hold.amount_minor) != (from, to, *amount_minor) {
                report.anomaly(format!(
                    "harness bug: hold {transaction_id} authorized with two parameter sets"
                ));
            }
        }
        let key = (entry.process.clone(), transaction_id.clone(), *step);
        if entry.phase == Phase::Invoke {
            open.insert(key, entry.time_ms);
            continue;
        }
        let invoked_ms = open.remove(&key).unwrap_or(entry.time_ms);
        let attempt = Attempt {
            amount_minor: *amount_minor,
            invoked_ms,
            phase: entry.phase,
            detail: detail.clone(),
            captured_minor: *captured_minor,
        };
        match step {
            HoldStep::Authorize => {
                if entry.phase == Phase::Ok && hold.authorized_ms.is_none() {
                    hold.authorized_ms = Some(entry.time_ms);
                }
                hold.authorize.push(attempt);
            }
            HoldStep::Capture => hold.captures.push(attempt),
            HoldStep::Void => hold.voids.push(attempt),
        }
    }
    holds
}

fn any(attempts: &[Attempt], phase: Phase) -> bool {
    attempts.iter().any(|a| a.phase == phase)
}

/// The final status a refusal reason implies, if it implies one.
fn implied_status(reason: &str) -> Option<TransferStatus> {
    match reason {
        "HOLD_ALREADY_VOIDED" => Some(TransferStatus::Voided),
        "HOLD_ALREADY_CAPTURED" => Some(TransferStatus::Completed),
        "HOLD_EXPIRED" => Some(TransferStatus::Expired),
        _ => None,
    }
}

/// Checks every hold; returns the captured ones (id → from, to, captured amount).
pub(super) fn check_holds(
    history: &[Entry],
    finals: &HashMap<String, Option<FinalTransfer>>,
    report: &mut Report,
) -> Completed {
    let mut captured = Completed::new();
    for (id, sent) in sent(history, report) {
        report.holds_attempted += 1;
        let acknowledged = any(&sent.authorize, Phase::Ok);
        let refused = any(&sent.authorize, Phase::Fail);
        if acknowledged && refused {
            report.anomaly(format!(
                "hold {id}: authorization both acknowledged and refused"
            ));
        }
        if acknowledged {
            report.holds_authorized += 1;
        }
        let capture_ok: Vec<&Attempt> = sent
            .captures
            .iter()
            .filter(|a| a.phase == Phase::Ok)
            .collect();
        let void_ok = any(&sent.voids, Phase::Ok);
        if !sent.captures.is_empty() && !sent.voids.is_empty() {
            report.hold_capture_and_void += 1;
        }
        if !capture_ok.is_empty() && void_ok {
            report.anomaly(format!("hold {id}: both a capture and a void succeeded"));
        }
        if let Some(first) = capture_ok.first()
            && capture_ok
                .iter()
                .any(|a| a.captured_minor != first.captured_minor)
        {
            report.anomaly(format!(
                "hold {id}: captures acknowledged with different amounts: {:?}",
                capture_ok
                    .iter()
                    .map(|a| a.captured_minor)
                    .collect::<Vec<_>>()
            ));
        }
        for attempt in &capture_ok {
            if attempt.captured_minor > sent.amount_minor
                || attempt.amount_minor > sent.amount_minor
            {
                report.anomaly(format!(
                    "hold {id}: capture acknowledged for {} (asked {}) above the authorized {}",
                    attempt.captured_minor, attempt.amount_minor, sent.amount_minor
                ));
            }
            if let Some(authorized_ms) = sent.authorized_ms {
                let late = authorized_ms + sent.timeout_ms + LATE_CAPTURE_MARGIN.as_millis() as u64;
                let first_invoke = sent.captures.iter().map(|a| a.invoked_ms).min();
                if first_invoke.is_some_and(|t| t >= late) {
                    report.anomaly(format!(
                        "hold {id}: captured by a call first sent after its expiry (timeout {} ms \
                         from t={authorized_ms}ms)",
                        sent.timeout_ms
                    ));
                }
            }
        }
        for attempt in sent.captures.iter().filter(|a| a.phase == Phase::Fail) {
            report.captures_refused += 1;
            if attempt.detail == "CAPTURE_EXCEEDS_HOLD" && attempt.amount_minor <= sent.amount_minor
            {
                report.anomaly(format!(
                    "hold {id}: capture of {} refused CAPTURE_EXCEEDS_HOLD, authorized {}",
                    attempt.amount_minor, sent.amount_minor
                ));
            }
        }
        let Some(found) = finals.get(&id) else {
            report.anomaly(format!("harness bug: no final GetTransfer for hold {id}"));
            continue;
        };
        let Some(state) = found else {
            report.holds_unknown += usize::from(!acknowledged && !refused);
            if acknowledged {
                report.anomaly(format!("hold {id}: authorization acknowledged but lost"));
            }
            if !capture_ok.is_empty() || void_ok {
                report.anomaly(format!(
                    "hold {id}: a step acknowledged, the hold NOT_FOUND"
                ));
            }
            continue;
        };
        let params = (&state.from, &state.to, state.amount_minor, &state.currency);
        if params != (&sent.from, &sent.to, sent.amount_minor, &sent.currency) {
            report.anomaly(format!(
                "hold {id}: recorded with other parameters: {state:?}"
            ));
        }
        let final_captured = state.hold.as_ref().map_or(0, |h| h.captured_minor);
        match state.status {
            TransferStatus::Completed => {
                report.holds_captured += 1;
                if final_captured < sent.amount_minor {
                    report.holds_captured_partially += 1;
                }
                if final_captured <= 0 || final_captured > sent.amount_minor {
                    report.anomaly(format!(
                        "hold {id}: captured {final_captured}, authorized {}",
                        sent.amount_minor
                    ));
                }
                let asked: Vec<i64> = sent
                    .captures
                    .iter()
                    .filter(|a| a.phase != Phase::Fail)
                    .map(|a| a.amount_minor)
                    .collect();
                if !asked.is_empty() && !asked.contains(&0) && !asked.contains(&final_captured) {
                    report.anomaly(format!(
                        "hold {id}: captured {final_captured}, but the captures asked {asked:?}"
                    ));
                }
                if !sent.captures.iter().any(|a| a.phase != Phase::Fail) {
                    report.anomaly(format!(
                        "hold {id}: COMPLETED (captured {final_captured}) though every capture \
                         was refused to the client ({} sent)",
                        sent.captures.len()
                    ));
                }
                if let Some(told) = capture_ok.first()
                    && told.captured_minor != final_captured
                {
                    report.anomaly(format!(
                        "hold {id}: capture acknowledged for {}, final captured {final_captured}",
                        told.captured_minor
                    ));
                }
                captured.insert(
                    id.clone(),
                    vec![(state.from.clone(), state.to.clone(), final_captured)],
                );
            }
            TransferStatus::Voided => report.holds_voided += 1,
            TransferStatus::Expired => report.holds_expired += 1,
            TransferStatus::Rejected => report.holds_rejected += 1,
            TransferStatus::Pending => report.anomaly(format!(
                "hold {id}: still PENDING at the end, after its expiry passed: {state:?}"
            )),
            other => report.anomaly(format!("hold {id}: ends {other:?}: {state:?}")),
        }
        if refused
            && matches!(
                state.status,
                TransferStatus::Pending
                    | TransferStatus::Completed
                    | TransferStatus::Voided
                    | TransferStatus::Expired
            )
        {
            report.anomaly(format!(
                "hold {id}: authorization refused to the client but the hold ends {:?}",
                state.status
            ));
        }
        if !capture_ok.is_empty() && state.status != TransferStatus::Completed {
            report.anomaly(format!(
                "hold {id}: capture of {} acknowledged but lost (final {:?})",
                capture_ok[0].captured_minor, state.status
            ));
        }
        if void_ok && state.status != TransferStatus::Voided {
            report.anomaly(format!(
                "hold {id}: void acknowledged but the hold ends {:?}",
                state.status
            ));
        }
        for attempt in sent.captures.iter().chain(&sent.voids) {
            if attempt.phase == Phase::Fail
                && let Some(want) = implied_status(&attempt.detail)
                && state.status != want
            {
                report.anomaly(format!(
                    "hold {id}: refused {} but the hold ends {:?}",
                    attempt.detail, state.status
                ));
            }
        }
    }
    captured
}
