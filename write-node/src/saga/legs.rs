//! Drives multi-leg transfers across partitions (`ledger::domain::legs`) from the home
//! partition, the partition of the first leg's `from`. As for transfers, the set's state lives
//! in the raft logs (the home's record, each part's record), never here; every step is
//! idempotent by transaction id, so the caller's driver, the recovery pass and a new
//! leader's can all push the same set without moving money twice.
//!
//! 1. `PrepareLegs` on the home (a refusal there is the answer), then on every other part:
//!    the local store when this node leads it, else its leader's `PeerService/LegsStep`.
//! 2. The decision (completed once every part prepared, else rejected with the refusal of
//!    the first refusing part, in the order the set names them) as `ResolveLegs` on the home
//!    and on every other part: a completion on all of them at once (every part prepared, so
//!    whoever decides the set decides it completed), a rejection on the home first (the parts
//!    must hear the reason the home keeps). The caller is answered once every part is
//!    resolved, with a consistency token naming each part's resolve, so a read of any account
//!    it names sees it.
//! 3. `FinishLegs` on the home, in the background.
//!
//! A step not answered after `CREDIT_ATTEMPTS_MAX` tries fails the call with
//! `OUTCOME_UNKNOWN`; the home leader's recovery pass drives the set on, and a retry with the
//! same id learns the outcome.

use std::sync::Arc;

use ledger::legs::LegsStep as Step;
use ledger::{
    Command, LegsCommand, LegsDecision, LegsPart, LegsRecord, LegsStatus, Outcome, partition_of,
};
use proto::internal::LegsStepRequest;

use super::Saga;
use crate::limits;
use crate::store::{Applied, StoreError};

/// How a set ended for its caller.
pub enum LegsDriven {
    /// The home's answer was not a multi-leg record (a conflict, a malformed set): as applied.
    Refused(Applied),
    /// The set's decision: the home's record, `replayed` when an earlier call decided it, and
    /// the positions the consistency token names (the home's, then every resolved part's).
    Decided {
        record: LegsRecord,
        replayed: bool,
        positions: Vec<(u32, u64)>,
    },
}

/// A part's answer to a step: its record and the index of the entry that answered.
type Answered = (LegsRecord, u64);

impl Saga {
    /// The part of `legs` in `partition`.
    fn part(&self, legs: &LegsCommand, partition: u32) -> LegsPart {
        LegsPart::of(legs, |account_id| {
            partition_of(account_id, self.partitions) == partition
        })
    }

    /// The partitions `legs` touches other than `home`, in the order the set names them.
    fn other_parts(&self, legs: &LegsCommand, home: u32) -> Vec<u32> {
        let mut parts = Vec::new();
        for account_id in legs.accounts() {
            let partition = partition_of(account_id, self.partitions);
            if partition != home && !parts.contains(&partition) {
                parts.push(partition);
            }
        }
        parts
    }

    /// Drives the set whose home is `home` (this node leads it) to its decision and resolves
    /// every part; see the module's documentation. Fails if a step stays unanswered or this
    /// node stops leading `home`.
    pub async fn drive_legs(
        self: &Arc<Self>,
        home: u32,
        legs: LegsCommand,
    ) -> Result<LegsDriven, StoreError> {
        let transaction_id = legs.transaction_id;
        let driving = self.mark(transaction_id);
        let permit = self.permit().await?;
        let home_part = self.part(&legs, home);
        let prepared = self
            .store
            .propose(
                home,
                Command::PrepareLegs {
                    legs: legs.clone(),
                    part: home_part,
                },
            )
            .await?;
        let Outcome::Legs(record) = &prepared.outcome else {
            return Ok(LegsDriven::Refused(prepared));
        };
        let replayed = record.meta.index != prepared.index;
        let others = self.other_parts(&legs, home);
        // The parts' resolves, once the decision is known; the positions they answered at.
        let set = &legs;
        let resolve_parts = |decision| {
            futures::future::try_join_all(others.iter().map(move |&partition| {
                let legs = set.clone();
                async move {
                    let (_, index) = self.step(partition, Step::Resolve(legs, decision)).await?;
                    Ok::<_, StoreError>((partition, index))
                }
            }))
        };
        let (record, home_index, resolved) = match record.status {
            // Refused on the home (no other part heard of it), or finished as rejected:
            // nothing moved anywhere, the record answers.
            LegsStatus::Rejected { .. } => {
                return Ok(LegsDriven::Decided {
                    record: record.clone(),
                    replayed,
                    positions: vec![(home, record.meta.index)],
                });
            }
            // Finished: the parts are asked again only for the token's positions (each
            // answers a resolve with its record: no change).
            LegsStatus::Completed => {
                let decision = LegsDecision::Completed;
                (
                    record.clone(),
                    prepared.index,
                    resolve_parts(decision).await?,
                )
            }
            LegsStatus::Prepared { .. } | LegsStatus::Decided(_) => {
                let (decision, decided_here) = match record.status {
                    LegsStatus::Decided(decision) => (decision, false),
                    _ => (self.prepare_parts(&legs, home).await?, true),
                };
                let resolve = Command::ResolveLegs {
                    legs: legs.clone(),
                    part: home_part,
                    decision,
                };
                let decide = async {
                    let decided = self.store.propose(home, resolve).await?;
                    // Another driver may have decided first: its decision is the set's.
                    match decided.outcome {
                        Outcome::Legs(record) if record.status.decision().is_some() => {
                            Ok((record, decided.index))
                        }
                        other => {
                            tracing::error!(%transaction_id, ?other, "the home's resolve answered without a decision");
                            Err(StoreError::OutcomeUnknown)
                        }
                    }
                };
                // A completion the parts can hear at once, alongside the home's logging of
                // it: every part prepared, and a prepared part never refuses, so whoever
                // decides this set (another driver, the recovery pass after a crash of this
                // one) decides it completed too. A rejection is logged on the home first: the
                // reason the parts are told must be the one the home keeps.
                if decided_here && decision == LegsDecision::Completed {
                    let ((record, index), resolved) =
                        tokio::try_join!(decide, resolve_parts(decision))?;
                    if record.status.decision() != Some(decision) {
                        // Cannot be (see above); answered as unknown, never as completed.
                        tracing::error!(%transaction_id, status = ?record.status, "the home decided a set otherwise than the parts were told");
                        return Err(StoreError::OutcomeUnknown);
                    }
                    (record, index, resolved)
                } else {
                    let (record, index) = decide.await?;
                    let decision = record.status.decision().expect("decided above");
                    (record, index, resolve_parts(decision).await?)
                }
            }
        };
        let decision = record.status.decision().expect("decided above");
        // Every part resolved before the answer, so the token covers every account's change.
        let mut positions = vec![(home, home_index)];
        positions.extend(resolved);
        if matches!(record.status, LegsStatus::Decided(_)) {
            // The finish follows in the background.
            let finish = Command::FinishLegs { transaction_id };
            self.finish_in_background(driving, permit, home, finish);
        }
        Ok(LegsDriven::Decided {
            record: LegsRecord {
                status: decision.status(),
                ..record
            },
            replayed,
            positions,
        })
    }

    /// Step 1 on every part but the home, all at once; the decision their answers call for:
    /// the refusal of the first refusing part in the set's order, else completed. A refusal
    /// decides even while another part is unanswered (that part is told, and refuses a
    /// late prepare); without one, an unanswered part fails the call.
    async fn prepare_parts(
        &self,
        legs: &LegsCommand,
        home: u32,
    ) -> Result<LegsDecision, StoreError> {
        let parts = self.other_parts(legs, home);
        let answers = futures::future::join_all(
            parts
                .iter()
                .map(|&partition| self.step(partition, Step::Prepare(legs.clone()))),
        )
        .await;
        let mut unanswered = None;
        for answer in answers {
            match answer {
                Ok((record, _)) => match record.status {
                    // Prepared; or resolved as completed by another driver of the set (a
                    // client's retry racing the first call), which the home's logged decision
                    // then answers.
                    LegsStatus::Prepared { .. } | LegsStatus::Completed => {}
                    LegsStatus::Rejected { leg, reason } => {
                        return Ok(LegsDecision::Rejected { leg, reason });
                    }
                    // Only a home is ever decided.
                    LegsStatus::Decided(_) => {
                        tracing::error!(transaction_id = %legs.transaction_id, "a part answered a prepare as a home");
                        unanswered = Some(StoreError::OutcomeUnknown);
                    }
                },
                Err(error) => unanswered = Some(error),
            }
        }
        match unanswered {
            Some(error) => Err(error),
            None => Ok(LegsDecision::Completed),
        }
    }

    /// One step on partition `partition` (not the home), retried across leader changes until
    /// its leader answers.
    async fn step(&self, partition: u32, step: Step) -> Result<Answered, StoreError> {
        let transaction_id = step.legs().transaction_id;
        let step = &step;
        let local = || async move {
            let command = step.command(self.part(step.legs(), partition));
            let applied = self.store.propose(partition, command).await?;
            match applied.outcome {
                Outcome::Legs(record) => Ok((record, applied.index)),
                other => {
                    tracing::error!(%transaction_id, ?other, "a part answered a step without a record");
                    Err(StoreError::OutcomeUnknown)
                }
            }
        };
        let remote = |leader| self.remote_step(leader, partition, step);
        self.until_answered(partition, transaction_id, local, remote)
            .await
    }

    /// One `PeerService/LegsStep` call to `leader`, the leader of `partition`.
    async fn remote_step(
        &self,
        leader: u64,
        partition: u32,
        step: &Step,
    ) -> Result<Answered, StoreError> {
        let Some(mut client) = self.clients.get(&leader).cloned() else {
            return Err(StoreError::NotLeader { leader_id: None });
        };
        let mut request = tonic::Request::new(LegsStepRequest {
            partition,
            step: ledger::wire::to_tagged_vec(step),
        });
        request.set_timeout(limits::CREDIT_CALL_TIMEOUT);
        let response = client.legs_step(request).await.map_err(|status| {
            tracing::debug!(leader, code = ?status.code(), message = status.message(), "multi-leg step failed");
            StoreError::OutcomeUnknown
        })?;
        let response = response.into_inner();
        let record: LegsRecord =
            ledger::wire::from_tagged_slice(&response.record).map_err(|error| {
                tracing::error!(leader, %error, "undecodable multi-leg record from a peer");
                StoreError::OutcomeUnknown
            })?;
        if record.command != *step.legs() {
            tracing::error!(leader, transaction_id = %step.legs().transaction_id, "a peer answered a step with another set's record");
            return Err(StoreError::OutcomeUnknown);
        }
        Ok((record, response.index))
    }
}
