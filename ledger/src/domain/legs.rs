//! Multi-leg transfers: a set of legs (each from, to, amount) in one currency, applied all
//! or none under one transaction id.
//!
//! Within one partition (every account of every leg in it) a multi-leg transfer is one
//! command, decided against the legs together: each account is checked as a transfer checks
//! it (open, allowed to send or receive, of the set's currency), and its funds once, after
//! all its legs (an account may pass on in one leg what it receives in another). One event
//! records the outcome, one record keeps it under the id forever.
//!
//! Across partitions a set moves in steps, each a command on one partition, so that every
//! leg is checked before any money moves and a credit is never taken back:
//!
//! 1. [`crate::Command::PrepareLegs`] on every partition the set touches, the *home* (that of
//!    the first leg's `from`, whose record answers the client) first: the partition checks its
//!    [`LegsPart`] (its accounts, as a transfer checks them, and their funds after all their
//!    legs) and takes its accounts' net debits into flight ([`LegsStatus::Prepared`]), or
//!    refuses ([`LegsStatus::Rejected`], nothing moved). Its accounts cannot close meanwhile.
//! 2. [`crate::Command::ResolveLegs`] with the home's [`LegsDecision`] (completed once every
//!    part prepared; rejected with the first refusal): first on the home, where it is the
//!    decision ([`LegsStatus::Decided`]), then on every other part: credits of its accounts'
//!    net credits, or refunds of its net debits. A part told of a rejection before it
//!    prepared records the rejection (so a late prepare is refused) and moves nothing.
//! 3. [`crate::Command::FinishLegs`] on the home once every part is resolved: its record is
//!    final.
//!
//! Money a part took out waits in the partition's outflow, as a cross-partition transfer's
//! debit does: each partition conserves money, and the outflows sum to the money in flight.

use std::collections::BTreeMap;

use super::{EntryMeta, Malformed, RejectReason, uuid_serde};
use crate::annotations::Annotations;
use crate::money::Currency;

/// The most legs a multi-leg transfer may have.
pub const LEGS_MAX: usize = 64;

/// One leg: `amount_minor` of the set's currency from one account to another.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Leg {
    /// Account debited.
    pub from: String,
    /// Account credited.
    pub to: String,
    /// In `1..=AMOUNT_MINOR_MAX`.
    pub amount_minor: i64,
}

/// Move money along every leg, or along none, exactly once per `transaction_id`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LegsCommand {
    /// Client-chosen idempotency key, shared with ordinary transfers and holds (one id names
    /// one of them); a retry carries the same id and the same legs.
    #[serde(with = "uuid_serde")]
    pub transaction_id: uuid::Uuid,
    /// The currency of every leg (a set in several currencies is refused at the edge).
    pub currency: Currency,
    /// `1..=LEGS_MAX` legs, in the client's order, no two with the same `from` and `to`.
    pub legs: Vec<Leg>,
    /// The client's reference and metadata for the whole set, if any (never empty).
    pub annotations: Option<Box<Annotations>>,
}

/// Where a multi-leg transfer stands in one partition: final from its first entry on within
/// a partition; across partitions, prepared (and on the home, decided) first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LegsStatus {
    /// Money moved along every leg.
    Completed,
    /// No money moved: the leg at `leg` (0-based, in the command's order) is refused for
    /// `reason`.
    Rejected {
        /// The index of the first leg refused.
        leg: u32,
        /// Why, as a transfer of that leg would be refused.
        reason: RejectReason,
    },
    /// Across partitions: this partition's part is checked and its net debits are in flight,
    /// awaiting the home partition's decision.
    Prepared {
        /// Which of the set's accounts are this partition's.
        part: LegsPart,
    },
    /// Across partitions, on the home partition only: decided, and applied to the home's
    /// part; the other parts are being told ([`crate::Command::FinishLegs`] ends it).
    Decided(LegsDecision),
}

impl LegsStatus {
    /// Whether the record can still change (prepared, or decided on the home and not yet
    /// finished): such records live in the ledger's memory and snapshots.
    pub fn is_live(&self) -> bool {
        matches!(self, LegsStatus::Prepared { .. } | LegsStatus::Decided(_))
    }

    /// What the set's client is told: its decision once there is one (`None` while prepared).
    pub fn decision(&self) -> Option<LegsDecision> {
        match *self {
            LegsStatus::Completed | LegsStatus::Decided(LegsDecision::Completed) => {
                Some(LegsDecision::Completed)
            }
            LegsStatus::Rejected { leg, reason }
            | LegsStatus::Decided(LegsDecision::Rejected { leg, reason }) => {
                Some(LegsDecision::Rejected { leg, reason })
            }
            LegsStatus::Prepared { .. } => None,
        }
    }
}

/// The home partition's decision on a multi-leg transfer across partitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LegsDecision {
    /// Every part prepared: money moves along every leg.
    Completed,
    /// A part refused: nothing moves. The leg and reason of the refusal the home heard first.
    Rejected {
        /// The index of the leg refused.
        leg: u32,
        /// Why.
        reason: RejectReason,
    },
}

impl LegsDecision {
    /// The final status a part's record takes.
    pub fn status(self) -> LegsStatus {
        match self {
            LegsDecision::Completed => LegsStatus::Completed,
            LegsDecision::Rejected { leg, reason } => LegsStatus::Rejected { leg, reason },
        }
    }
}

/// A step the home asks of another part of a set across partitions (what a write node's
/// `PeerService/LegsStep` carries); the part proposes [`LegsStep::command`] with the part it
/// computes itself.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum LegsStep {
    /// Check the part and take its net debits into flight, or refuse.
    Prepare(LegsCommand),
    /// Apply the home's decision to the part.
    Resolve(LegsCommand, LegsDecision),
}

impl LegsStep {
    /// The set the step is about.
    pub fn legs(&self) -> &LegsCommand {
        match self {
            LegsStep::Prepare(legs) | LegsStep::Resolve(legs, _) => legs,
        }
    }

    /// The command partition `part` of the set proposes for the step.
    pub fn command(&self, part: LegsPart) -> crate::Command {
        match self {
            LegsStep::Prepare(legs) => crate::Command::PrepareLegs {
                legs: legs.clone(),
                part,
            },
            LegsStep::Resolve(legs, decision) => crate::Command::ResolveLegs {
                legs: legs.clone(),
                part,
                decision: *decision,
            },
        }
    }
}

/// Which of a set's accounts live in one partition: bit `i` for the `i`-th account of
/// [`LegsCommand::accounts`] (a set names at most `2 * LEGS_MAX` = 128). Every node computes
/// it from its own partitioning, never from a peer's word. The home partition's part holds
/// the first account (the first leg's `from`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct LegsPart(pub u128);

impl LegsPart {
    /// The part of `legs` whose accounts `is_local` says are this partition's.
    pub fn of(legs: &LegsCommand, mut is_local: impl FnMut(&str) -> bool) -> LegsPart {
        let mut bits = 0_u128;
        for (index, account_id) in legs.accounts().enumerate() {
            if is_local(account_id) {
                bits |= 1 << index;
            }
        }
        LegsPart(bits)
    }

    /// Whether this is the home partition's part.
    pub fn is_home(self) -> bool {
        self.0 & 1 == 1
    }

    /// Whether it is a part of `legs` at all: at least one of its accounts, not all of them
    /// (a set within one partition is one command), and no account it does not name.
    pub fn fits(self, legs: &LegsCommand) -> bool {
        let count = legs.accounts().count();
        let all = if count == 128 {
            u128::MAX
        } else {
            (1_u128 << count) - 1
        };
        self.0 != 0 && self.0 != all && self.0 & !all == 0
    }

    /// The accounts of `legs` in this part, in the order of [`LegsCommand::accounts`].
    pub fn accounts<'a>(self, legs: &'a LegsCommand) -> impl Iterator<Item = &'a str> + 'a {
        legs.accounts()
            .enumerate()
            .filter(move |(index, _)| *index < 128 && self.0 & (1 << index) != 0)
            .map(|(_, account_id)| account_id)
    }

    /// What the legs do to each account of this part, together (see
    /// [`LegsCommand::net_by_account`]), in account order.
    pub fn net(self, legs: &LegsCommand) -> Vec<(&str, i128)> {
        let net = legs.net_by_account();
        self.accounts(legs)
            .map(|account_id| (account_id, net[account_id]))
            .collect()
    }
}

/// What the ledger remembers about a multi-leg transfer, forever.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LegsRecord {
    /// The command exactly as first decided; retries must match it field for field.
    pub command: LegsCommand,
    /// Completed or rejected.
    pub status: LegsStatus,
    /// Log position of the deciding entry.
    pub meta: EntryMeta,
}

impl LegsCommand {
    /// The shape checks the edge makes and `decide` makes again, in one place: a non-nil id,
    /// `1..=LEGS_MAX` legs, each with an amount in range, valid account ids and `from !=
    /// to`, no leg repeated (the same `from` and `to` twice), annotations within their
    /// limits. The error names the leg at fault, if one is.
    pub fn shape(&self) -> Result<(), (Malformed, Option<usize>)> {
        if self.transaction_id.is_nil() {
            return Err((Malformed::NilTransactionId, None));
        }
        if !(1..=LEGS_MAX).contains(&self.legs.len()) {
            return Err((Malformed::LegsOutOfRange, None));
        }
        let valid = |account_id: &str| crate::ids::validate_account_id(account_id).is_ok();
        for (index, leg) in self.legs.iter().enumerate() {
            let fault = if !(1..=crate::money::AMOUNT_MINOR_MAX).contains(&leg.amount_minor) {
                Some(Malformed::AmountOutOfRange)
            } else if !valid(&leg.from) || !valid(&leg.to) {
                Some(Malformed::InvalidAccountId)
            } else if leg.from == leg.to {
                Some(Malformed::SameAccount)
            } else if self.legs[..index]
                .iter()
                .any(|earlier| earlier.from == leg.from && earlier.to == leg.to)
            {
                Some(Malformed::RepeatedLeg)
            } else {
                None
            };
            if let Some(malformed) = fault {
                return Err((malformed, Some(index)));
            }
        }
        if let Some(annotations) = &self.annotations {
            annotations
                .check()
                .map_err(|error| (Malformed::from(error), None))?;
        }
        Ok(())
    }

    /// Every account the legs name, each once, in order of first appearance.
    pub fn accounts(&self) -> impl Iterator<Item = &str> {
        let mut seen = std::collections::BTreeSet::new();
        self.legs
            .iter()
            .flat_map(|leg| [leg.from.as_str(), leg.to.as_str()])
            .filter(move |account_id| seen.insert(*account_id))
    }

    /// What the legs do to each account's balance together, by account id (an account that
    /// receives as much as it sends is present with 0).
    pub fn net_by_account(&self) -> BTreeMap<&str, i128> {
        let mut net = BTreeMap::new();
        for leg in &self.legs {
            let amount = i128::from(leg.amount_minor);
            *net.entry(leg.from.as_str()).or_default() -= amount;
            *net.entry(leg.to.as_str()).or_default() += amount;
        }
        net
    }
}
