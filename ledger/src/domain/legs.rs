//! Multi-leg transfers: a set of legs (each from, to, amount) in one currency, applied all
//! or none under one transaction id.
//!
//! Within one partition (every account of every leg in it) a multi-leg transfer is one
//! command, decided against the legs together: each account is checked as a transfer checks
//! it (open, allowed to send or receive, of the set's currency), and its funds once, after
//! all its legs (an account may pass on in one leg what it receives in another). One event
//! records the outcome, one record keeps it under the id forever.

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

/// How a multi-leg transfer ended: final from its first entry on.
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
