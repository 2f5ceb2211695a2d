//! Ledger events in their wire form (`wallet.v1.LedgerEvent`): what the write node streams
//! from its event log and what the read node and auditors rebuild event blocks from.

use std::collections::BTreeMap;

use ledger::{
    AccountChange, Annotations, Event, Leg, LegsCommand, LegsDecision, LegsPart, TransferCommand,
    format_minor,
};
use proto::v1::ledger_event::Event as PbEvent;
use proto::v1::{
    AccountChangeKind, AccountChanged, AccountOpened, CreditRefused, HoldAuthorized,
    HoldCaptureDebited, HoldCaptured, HoldExpired, HoldRefused, HoldVoided, LedgerEvent, LegMoved,
    LegsAborted, LegsCompleted, LegsFinished, LegsMove, LegsPartRefused, LegsPrepared,
    LegsRejected, LegsResolved, TransferAnnotations, TransferCompleted, TransferCredited,
    TransferDebited, TransferRefunded, TransferRejected, TransferSettled,
};

/// The wire form of a ledger event. Every `ledger::Event` variant needs one arm here, one
/// message in `event_log.proto` and one arm in the read node's fold.
pub fn event_to_pb(event: &Event) -> LedgerEvent {
    let event = match event {
        Event::AccountOpened {
            account_id,
            currency,
            allow_negative_balance,
            annotations,
        } => PbEvent::AccountOpened(AccountOpened {
            account_id: account_id.clone(),
            currency: currency.code().to_owned(),
            allow_negative_balance: *allow_negative_balance,
            annotations: annotations_pb(annotations.as_deref()),
        }),
        Event::TransferCompleted { transfer, .. } => {
            let (transaction_id, amount, currency) = transfer_fields(transfer);
            PbEvent::TransferCompleted(TransferCompleted {
                transaction_id,
                from_account: transfer.from.clone(),
                to_account: transfer.to.clone(),
                amount,
                amount_minor: transfer.amount_minor,
                annotations: annotations_to_pb(transfer),
                currency,
            })
        }
        Event::TransferRejected {
            transfer, reason, ..
        } => {
            let (transaction_id, amount, currency) = transfer_fields(transfer);
            PbEvent::TransferRejected(TransferRejected {
                transaction_id,
                from_account: transfer.from.clone(),
                to_account: transfer.to.clone(),
                amount,
                amount_minor: transfer.amount_minor,
                annotations: annotations_to_pb(transfer),
                currency,
                reason: reason.reason().to_owned(),
                field: reason.field().to_owned(),
            })
        }
        Event::TransferDebited { transfer, .. } => {
            let (transaction_id, amount, currency) = transfer_fields(transfer);
            PbEvent::TransferDebited(TransferDebited {
                transaction_id,
                from_account: transfer.from.clone(),
                to_account: transfer.to.clone(),
                amount,
                amount_minor: transfer.amount_minor,
                annotations: annotations_to_pb(transfer),
                currency,
            })
        }
        Event::TransferCredited { transfer, .. } => {
            let (transaction_id, amount, currency) = transfer_fields(transfer);
            PbEvent::TransferCredited(TransferCredited {
                transaction_id,
                from_account: transfer.from.clone(),
                to_account: transfer.to.clone(),
                amount,
                amount_minor: transfer.amount_minor,
                annotations: annotations_to_pb(transfer),
                currency,
            })
        }
        Event::CreditRefused {
            transfer, reason, ..
        } => {
            let (transaction_id, amount, currency) = transfer_fields(transfer);
            PbEvent::CreditRefused(CreditRefused {
                transaction_id,
                from_account: transfer.from.clone(),
                to_account: transfer.to.clone(),
                amount,
                amount_minor: transfer.amount_minor,
                annotations: annotations_to_pb(transfer),
                currency,
                reason: reason.reason().to_owned(),
                field: reason.field().to_owned(),
            })
        }
        Event::TransferSettled {
            transaction_id,
            credit_index,
            ..
        } => PbEvent::TransferSettled(TransferSettled {
            transaction_id: transaction_id.hyphenated().to_string(),
            credit_index: *credit_index,
        }),
        Event::TransferRefunded {
            transaction_id,
            reason,
            credit_index,
            ..
        } => PbEvent::TransferRefunded(TransferRefunded {
            transaction_id: transaction_id.hyphenated().to_string(),
            reason: reason.reason().to_owned(),
            field: reason.field().to_owned(),
            credit_index: *credit_index,
        }),
        Event::HoldAuthorized {
            transfer,
            expires_at_ms,
            cross_partition,
            ..
        } => {
            let (transaction_id, amount, currency) = transfer_fields(transfer);
            PbEvent::HoldAuthorized(HoldAuthorized {
                transaction_id,
                from_account: transfer.from.clone(),
                to_account: transfer.to.clone(),
                amount,
                amount_minor: transfer.amount_minor,
                annotations: annotations_to_pb(transfer),
                currency,
                expires_at_ms: *expires_at_ms,
                cross_partition: *cross_partition,
            })
        }
        Event::HoldRefused {
            transfer,
            reason,
            expires_at_ms,
            cross_partition,
            ..
        } => {
            let (transaction_id, amount, currency) = transfer_fields(transfer);
            PbEvent::HoldRefused(HoldRefused {
                transaction_id,
                from_account: transfer.from.clone(),
                to_account: transfer.to.clone(),
                amount,
                amount_minor: transfer.amount_minor,
                annotations: annotations_to_pb(transfer),
                currency,
                reason: reason.reason().to_owned(),
                field: reason.field().to_owned(),
                expires_at_ms: *expires_at_ms,
                cross_partition: *cross_partition,
            })
        }
        Event::HoldCaptured {
            transaction_id,
            amount_minor,
            ..
        } => PbEvent::HoldCaptured(HoldCaptured {
            transaction_id: transaction_id.hyphenated().to_string(),
            amount_minor: *amount_minor,
        }),
        Event::HoldCaptureDebited {
            transaction_id,
            amount_minor,
            ..
        } => PbEvent::HoldCaptureDebited(HoldCaptureDebited {
            transaction_id: transaction_id.hyphenated().to_string(),
            amount_minor: *amount_minor,
        }),
        Event::HoldVoided { transaction_id, .. } => PbEvent::HoldVoided(HoldVoided {
            transaction_id: transaction_id.hyphenated().to_string(),
        }),
        Event::HoldExpired { transaction_id, .. } => PbEvent::HoldExpired(HoldExpired {
            transaction_id: transaction_id.hyphenated().to_string(),
        }),
        Event::AccountChanged {
            account_id, change, ..
        } => {
            let kind = match change {
                AccountChange::Freeze => AccountChangeKind::Freeze,
                AccountChange::Unfreeze => AccountChangeKind::Unfreeze,
                AccountChange::Close => AccountChangeKind::Close,
                AccountChange::SetOverdraftLimit { .. } => AccountChangeKind::SetOverdraftLimit,
            };
            let mut pb = AccountChanged {
                account_id: account_id.clone(),
                change: kind as i32,
                ..AccountChanged::default()
            };
            if let AccountChange::SetOverdraftLimit {
                limit_minor,
                currency,
            } = change
            {
                pb.overdraft_limit = format_minor(i128::from(*limit_minor), *currency);
                pb.overdraft_limit_minor = *limit_minor;
                pb.currency = currency.code().to_owned();
            }
            PbEvent::AccountChanged(pb)
        }
        Event::LegsCompleted { legs, .. } => PbEvent::LegsCompleted(LegsCompleted {
            transaction_id: legs.transaction_id.hyphenated().to_string(),
            currency: legs.currency.code().to_owned(),
            legs: legs_to_pb(legs),
            annotations: annotations_pb(legs.annotations.as_deref()),
        }),
        Event::LegsRejected {
            legs, leg, reason, ..
        } => PbEvent::LegsRejected(LegsRejected {
            transaction_id: legs.transaction_id.hyphenated().to_string(),
            currency: legs.currency.code().to_owned(),
            legs: legs_to_pb(legs),
            annotations: annotations_pb(legs.annotations.as_deref()),
            leg: *leg,
            reason: reason.reason().to_owned(),
            field: reason.field().to_owned(),
        }),
        Event::LegsPrepared { legs, part, .. } => PbEvent::LegsPrepared(LegsPrepared {
            transaction_id: legs.transaction_id.hyphenated().to_string(),
            currency: legs.currency.code().to_owned(),
            legs: legs_to_pb(legs),
            annotations: annotations_pb(legs.annotations.as_deref()),
            part: Some(part_to_pb(legs, *part)),
            // The part's net debits leave.
            moves: moves_to_pb(legs, *part, |net| net.min(0)),
        }),
        Event::LegsPartRefused {
            legs,
            part,
            leg,
            reason,
            ..
        } => PbEvent::LegsPartRefused(LegsPartRefused {
            transaction_id: legs.transaction_id.hyphenated().to_string(),
            currency: legs.currency.code().to_owned(),
            legs: legs_to_pb(legs),
            annotations: annotations_pb(legs.annotations.as_deref()),
            part: Some(part_to_pb(legs, *part)),
            leg: *leg,
            reason: reason.reason().to_owned(),
            field: reason.field().to_owned(),
        }),
        Event::LegsResolved {
            legs,
            part,
            decision,
            ..
        } => {
            let mut pb = LegsResolved {
                transaction_id: legs.transaction_id.hyphenated().to_string(),
                currency: legs.currency.code().to_owned(),
                legs: legs_to_pb(legs),
                annotations: annotations_pb(legs.annotations.as_deref()),
                part: Some(part_to_pb(legs, *part)),
                ..LegsResolved::default()
            };
            match decision {
                // The part's net credits arrive.
                LegsDecision::Completed => {
                    pb.completed = true;
                    pb.moves = moves_to_pb(legs, *part, |net| net.max(0));
                }
                // Its net debits come back.
                LegsDecision::Rejected { leg, reason } => {
                    pb.leg = *leg;
                    pb.reason = reason.reason().to_owned();
                    pb.field = reason.field().to_owned();
                    pb.moves = moves_to_pb(legs, *part, |net| (-net).max(0));
                }
            }
            PbEvent::LegsResolved(pb)
        }
        Event::LegsAborted {
            legs,
            part,
            leg,
            reason,
            ..
        } => PbEvent::LegsAborted(LegsAborted {
            transaction_id: legs.transaction_id.hyphenated().to_string(),
            currency: legs.currency.code().to_owned(),
            legs: legs_to_pb(legs),
            annotations: annotations_pb(legs.annotations.as_deref()),
            part: Some(part_to_pb(legs, *part)),
            leg: *leg,
            reason: reason.reason().to_owned(),
            field: reason.field().to_owned(),
        }),
        Event::LegsFinished { transaction_id, .. } => PbEvent::LegsFinished(LegsFinished {
            transaction_id: transaction_id.hyphenated().to_string(),
        }),
    };
    LedgerEvent { event: Some(event) }
}

/// A partition's part of a multi-leg transfer as events carry it: its accounts, by id.
fn part_to_pb(legs: &LegsCommand, part: LegsPart) -> proto::v1::LegsPart {
    proto::v1::LegsPart {
        accounts: part.accounts(legs).map(str::to_owned).collect(),
        home: part.is_home(),
    }
}

/// The balance changes of a part's accounts: `change` of each account's net (what the legs
/// do to it together), the accounts it leaves unchanged left out.
fn moves_to_pb(legs: &LegsCommand, part: LegsPart, change: impl Fn(i128) -> i128) -> Vec<LegsMove> {
    part.net(legs)
        .into_iter()
        .filter_map(|(account_id, net)| {
            let delta = change(net);
            (delta != 0).then(|| LegsMove {
                account_id: account_id.to_owned(),
                delta: format_minor(delta, legs.currency),
                delta_minor: i64::try_from(delta)
                    .expect("an account's net over at most LEGS_MAX legs fits i64"),
            })
        })
        .collect()
}

/// A multi-leg transfer's legs as events carry them.
fn legs_to_pb(legs: &LegsCommand) -> Vec<LegMoved> {
    legs.legs
        .iter()
        .map(|leg| LegMoved {
            from_account: leg.from.clone(),
            to_account: leg.to.clone(),
            amount: format_minor(i128::from(leg.amount_minor), legs.currency),
            amount_minor: leg.amount_minor,
        })
        .collect()
}

/// A transfer's annotations as events carry them (absent when it has none).
pub fn annotations_to_pb(transfer: &TransferCommand) -> Option<TransferAnnotations> {
    annotations_pb(transfer.annotations.as_deref())
}

/// Annotations (a transfer's or an account's) as events carry them.
fn annotations_pb(annotations: Option<&Annotations>) -> Option<TransferAnnotations> {
    annotations.map(|annotations| TransferAnnotations {
        reference: annotations.reference.clone(),
        metadata: annotations.metadata.clone(),
    })
}

/// The inverse of [`annotations_to_pb`]: `None` for absent or empty annotations (the one
/// form of "none" the ledger knows; the event's chain hash then checks the rest).
pub fn annotations_from_pb(annotations: Option<&TransferAnnotations>) -> Option<Box<Annotations>> {
    annotations.and_then(|annotations| {
        annotations_from_fields(&annotations.reference, &annotations.metadata)
    })
}

/// The `reference` and `metadata` fields of an API message (a transfer, a hold, an account)
/// as the ledger holds them: `None` when both are empty. Not checked against the limits
/// (`Annotations::check` does that).
pub fn annotations_from_fields(
    reference: &str,
    metadata: &BTreeMap<String, String>,
) -> Option<Box<Annotations>> {
    Annotations {
        reference: reference.to_owned(),
        metadata: metadata.clone(),
    }
    .boxed()
}

/// The inverse of [`annotations_from_fields`]: the two API fields (empty for none).
pub fn annotations_to_fields(
    annotations: Option<&Annotations>,
) -> (String, BTreeMap<String, String>) {
    annotations.map_or_else(Default::default, |annotations| {
        (annotations.reference.clone(), annotations.metadata.clone())
    })
}

fn transfer_fields(transfer: &TransferCommand) -> (String, String, String) {
    (
        transfer.transaction_id.hyphenated().to_string(),
        format_minor(i128::from(transfer.amount_minor), transfer.currency),
        transfer.currency.code().to_owned(),
    )
}

/// The inverse of [`event_to_pb`] for one event of the block at `meta`: what an auditor
/// replaying a live event stream (`walletctl replay --endpoint`) feeds to `ledger::evolve`,
/// and re-encodes to check the block's chain hash.
pub fn event_from_pb(meta: ledger::EntryMeta, event: &LedgerEvent) -> anyhow::Result<Event> {
    use anyhow::Context as _;
    let currency = |code: &str| {
        ledger::Currency::parse(code).with_context(|| format!("unknown currency {code:?}"))
    };
    let id = |text: &str| {
        uuid::Uuid::parse_str(text).with_context(|| format!("bad transaction id {text:?}"))
    };
    let reason = |reason: &str, field: &str| {
        ledger::RejectReason::from_reason_and_field(reason, field)
            .with_context(|| format!("unknown reject reason {reason:?} / {field:?}"))
    };
    let transfer = |transaction_id: &str,
                    from: &str,
                    to: &str,
                    amount_minor: i64,
                    code: &str,
                    annotations: &Option<TransferAnnotations>| {
        anyhow::Ok(TransferCommand {
            transaction_id: id(transaction_id)?,
            from: from.to_owned(),
            to: to.to_owned(),
            amount_minor,
            currency: currency(code)?,
            annotations: annotations_from_pb(annotations.as_ref()),
        })
    };
    Ok(match event.event.as_ref().context("empty event")? {
        PbEvent::AccountOpened(e) => Event::AccountOpened {
            account_id: e.account_id.clone(),
            currency: currency(&e.currency)?,
            allow_negative_balance: e.allow_negative_balance,
            annotations: annotations_from_pb(e.annotations.as_ref()),
        },
        PbEvent::TransferCompleted(e) => Event::TransferCompleted {
            transfer: transfer(
                &e.transaction_id,
                &e.from_account,
                &e.to_account,
                e.amount_minor,
                &e.currency,
                &e.annotations,
            )?,
            meta,
        },
        PbEvent::TransferRejected(e) => Event::TransferRejected {
            transfer: transfer(
                &e.transaction_id,
                &e.from_account,
                &e.to_account,
                e.amount_minor,
                &e.currency,
                &e.annotations,
            )?,
            reason: reason(&e.reason, &e.field)?,
            meta,
        },
        PbEvent::TransferDebited(e) => Event::TransferDebited {
            transfer: transfer(
                &e.transaction_id,
                &e.from_account,
                &e.to_account,
                e.amount_minor,
                &e.currency,
                &e.annotations,
            )?,
            meta,
        },
        PbEvent::TransferCredited(e) => Event::TransferCredited {
            transfer: transfer(
                &e.transaction_id,
                &e.from_account,
                &e.to_account,
                e.amount_minor,
                &e.currency,
                &e.annotations,
            )?,
            meta,
        },
        PbEvent::CreditRefused(e) => Event::CreditRefused {
            transfer: transfer(
                &e.transaction_id,
                &e.from_account,
                &e.to_account,
                e.amount_minor,
                &e.currency,
                &e.annotations,
            )?,
            reason: reason(&e.reason, &e.field)?,
            meta,
        },
        PbEvent::TransferSettled(e) => Event::TransferSettled {
            transaction_id: id(&e.transaction_id)?,
            credit_index: e.credit_index,
            meta,
        },
        PbEvent::TransferRefunded(e) => Event::TransferRefunded {
            transaction_id: id(&e.transaction_id)?,
            reason: reason(&e.reason, &e.field)?,
            credit_index: e.credit_index,
            meta,
        },
        PbEvent::HoldAuthorized(e) => Event::HoldAuthorized {
            transfer: transfer(
                &e.transaction_id,
                &e.from_account,
                &e.to_account,
                e.amount_minor,
                &e.currency,
                &e.annotations,
            )?,
            expires_at_ms: e.expires_at_ms,
            cross_partition: e.cross_partition,
            meta,
        },
        PbEvent::HoldRefused(e) => Event::HoldRefused {
            transfer: transfer(
                &e.transaction_id,
                &e.from_account,
                &e.to_account,
                e.amount_minor,
                &e.currency,
                &e.annotations,
            )?,
            reason: reason(&e.reason, &e.field)?,
            expires_at_ms: e.expires_at_ms,
            cross_partition: e.cross_partition,
            meta,
        },
        PbEvent::HoldCaptured(e) => Event::HoldCaptured {
            transaction_id: id(&e.transaction_id)?,
            amount_minor: e.amount_minor,
            meta,
        },
        PbEvent::HoldCaptureDebited(e) => Event::HoldCaptureDebited {
            transaction_id: id(&e.transaction_id)?,
            amount_minor: e.amount_minor,
            meta,
        },
        PbEvent::HoldVoided(e) => Event::HoldVoided {
            transaction_id: id(&e.transaction_id)?,
            meta,
        },
        PbEvent::HoldExpired(e) => Event::HoldExpired {
            transaction_id: id(&e.transaction_id)?,
            meta,
        },
        PbEvent::AccountChanged(e) => Event::AccountChanged {
            account_id: e.account_id.clone(),
            change: account_change_from_pb(e)?,
            meta,
        },
        PbEvent::LegsCompleted(e) => Event::LegsCompleted {
            legs: legs_from_pb(&e.transaction_id, &e.currency, &e.legs, &e.annotations)?,
            meta,
        },
        PbEvent::LegsRejected(e) => Event::LegsRejected {
            legs: legs_from_pb(&e.transaction_id, &e.currency, &e.legs, &e.annotations)?,
            leg: e.leg,
            reason: reason(&e.reason, &e.field)?,
            meta,
        },
        PbEvent::LegsPrepared(e) => {
            let legs = legs_from_pb(&e.transaction_id, &e.currency, &e.legs, &e.annotations)?;
            let part = part_from_pb(&legs, e.part.as_ref())?;
            Event::LegsPrepared { legs, part, meta }
        }
        PbEvent::LegsPartRefused(e) => {
            let legs = legs_from_pb(&e.transaction_id, &e.currency, &e.legs, &e.annotations)?;
            let part = part_from_pb(&legs, e.part.as_ref())?;
            Event::LegsPartRefused {
                legs,
                part,
                leg: e.leg,
                reason: reason(&e.reason, &e.field)?,
                meta,
            }
        }
        PbEvent::LegsResolved(e) => {
            let legs = legs_from_pb(&e.transaction_id, &e.currency, &e.legs, &e.annotations)?;
            let part = part_from_pb(&legs, e.part.as_ref())?;
            let decision = if e.completed {
                LegsDecision::Completed
            } else {
                LegsDecision::Rejected {
                    leg: e.leg,
                    reason: reason(&e.reason, &e.field)?,
                }
            };
            Event::LegsResolved {
                legs,
                part,
                decision,
                meta,
            }
        }
        PbEvent::LegsAborted(e) => {
            let legs = legs_from_pb(&e.transaction_id, &e.currency, &e.legs, &e.annotations)?;
            let part = part_from_pb(&legs, e.part.as_ref())?;
            Event::LegsAborted {
                legs,
                part,
                leg: e.leg,
                reason: reason(&e.reason, &e.field)?,
                meta,
            }
        }
        PbEvent::LegsFinished(e) => Event::LegsFinished {
            transaction_id: id(&e.transaction_id)?,
            meta,
        },
    })
}

/// The inverse of [`part_to_pb`]: the part whose accounts the event names, which must be a
/// part of the set.
fn part_from_pb(
    legs: &LegsCommand,
    part: Option<&proto::v1::LegsPart>,
) -> anyhow::Result<LegsPart> {
    use anyhow::Context as _;
    let accounts = &part.context("a multi-leg step without its part")?.accounts;
    let part = LegsPart::of(legs, |account_id| {
        accounts.iter().any(|named| named == account_id)
    });
    anyhow::ensure!(
        part.fits(legs) && part.accounts(legs).count() == accounts.len(),
        "multi-leg transfer {}: {accounts:?} is not a part of the set",
        legs.transaction_id
    );
    Ok(part)
}

/// The inverse of [`legs_to_pb`], with the rest of a multi-leg event's command.
fn legs_from_pb(
    transaction_id: &str,
    code: &str,
    legs: &[LegMoved],
    annotations: &Option<TransferAnnotations>,
) -> anyhow::Result<LegsCommand> {
    use anyhow::Context as _;
    Ok(LegsCommand {
        transaction_id: uuid::Uuid::parse_str(transaction_id)
            .with_context(|| format!("bad transaction id {transaction_id:?}"))?,
        currency: ledger::Currency::parse(code)
            .with_context(|| format!("unknown currency {code:?}"))?,
        legs: legs
            .iter()
            .map(|leg| Leg {
                from: leg.from_account.clone(),
                to: leg.to_account.clone(),
                amount_minor: leg.amount_minor,
            })
            .collect(),
        annotations: annotations_from_pb(annotations.as_ref()),
    })
}

/// The ledger's account change an `AccountChanged` event carries (what the read node's fold
/// and replays apply).
pub fn account_change_from_pb(event: &AccountChanged) -> anyhow::Result<AccountChange> {
    use anyhow::Context as _;
    Ok(match event.change() {
        AccountChangeKind::Freeze => AccountChange::Freeze,
        AccountChangeKind::Unfreeze => AccountChange::Unfreeze,
        AccountChangeKind::Close => AccountChange::Close,
        AccountChangeKind::SetOverdraftLimit => AccountChange::SetOverdraftLimit {
            limit_minor: event.overdraft_limit_minor,
            currency: ledger::Currency::parse(&event.currency)
                .with_context(|| format!("unknown currency {:?}", event.currency))?,
        },
        AccountChangeKind::Unspecified => anyhow::bail!("an account change of no kind"),
    })
}

/// An account's status as the API spells it (`wallet.v1.AccountStatus`), for both nodes.
pub fn account_status_to_pb(status: ledger::AccountStatus) -> proto::v1::AccountStatus {
    match status {
        ledger::AccountStatus::Active => proto::v1::AccountStatus::Active,
        ledger::AccountStatus::Frozen => proto::v1::AccountStatus::Frozen,
        ledger::AccountStatus::Closed => proto::v1::AccountStatus::Closed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A multi-leg event survives the trip to its wire form and back (what replays from a
    /// live stream and the read node's chain checks rely on), annotations and reason included.
    #[test]
    fn multi_leg_events_round_trip() {
        let meta = ledger::EntryMeta {
            index: 7,
            timestamp_ms: 1_700_000_000_000,
        };
        let legs = LegsCommand {
            transaction_id: uuid::Uuid::from_u128(42),
            currency: ledger::Currency::parse("EUR").unwrap(),
            legs: vec![
                Leg {
                    from: "a".into(),
                    to: "b".into(),
                    amount_minor: 1_250,
                },
                Leg {
                    from: "b".into(),
                    to: "c".into(),
                    amount_minor: 5,
                },
            ],
            annotations: Annotations {
                reference: "run-9".into(),
                metadata: [("k".to_owned(), "v".to_owned())].into(),
            }
            .boxed(),
        };
        // Across partitions: "a" and "c" in one part (the home: "a" is the first leg's
        // `from`), "b" elsewhere.
        let part = LegsPart::of(&legs, |account_id| account_id != "b");
        let rejected = LegsDecision::Rejected {
            leg: 1,
            reason: ledger::RejectReason::InsufficientFunds,
        };
        let events = [
            Event::LegsCompleted {
                legs: legs.clone(),
                meta,
            },
            Event::LegsRejected {
                legs: legs.clone(),
                leg: 1,
                reason: ledger::RejectReason::InsufficientFunds,
                meta,
            },
            Event::LegsPrepared {
                legs: legs.clone(),
                part,
                meta,
            },
            Event::LegsPartRefused {
                legs: legs.clone(),
                part,
                leg: 0,
                reason: ledger::RejectReason::FromAccountFrozen,
                meta,
            },
            Event::LegsResolved {
                legs: legs.clone(),
                part,
                decision: LegsDecision::Completed,
                meta,
            },
            Event::LegsResolved {
                legs: legs.clone(),
                part,
                decision: rejected,
                meta,
            },
            Event::LegsAborted {
                legs: legs.clone(),
                part,
                leg: 1,
                reason: ledger::RejectReason::InsufficientFunds,
                meta,
            },
            Event::LegsFinished {
                transaction_id: legs.transaction_id,
                meta,
            },
        ];
        for event in events {
            let pb = event_to_pb(&event);
            match &pb.event {
                Some(PbEvent::LegsCompleted(completed)) => {
                    assert_eq!(completed.legs[0].amount, "12.50");
                }
                // The home part's net debit ("a" sends 12.50) leaves; "c" receives 0.05
                // on completion, or "a" gets its 12.50 back on rejection.
                Some(PbEvent::LegsPrepared(prepared)) => {
                    let part = prepared.part.as_ref().unwrap();
                    assert_eq!(
                        (part.accounts.as_slice(), part.home),
                        (&["a".to_owned(), "c".to_owned()][..], true)
                    );
                    assert_eq!(moves(&prepared.moves), [("a", -1_250, "-12.50")]);
                }
                Some(PbEvent::LegsResolved(resolved)) if resolved.completed => {
                    assert_eq!(moves(&resolved.moves), [("c", 5, "0.05")]);
                }
                Some(PbEvent::LegsResolved(resolved)) => {
                    assert_eq!(moves(&resolved.moves), [("a", 1_250, "12.50")]);
                    assert_eq!(resolved.reason, "INSUFFICIENT_FUNDS");
                }
                _ => {}
            }
            assert_eq!(event_from_pb(meta, &pb).unwrap(), event);
        }

        // A part that is not one of the set's is refused on the way back.
        let mut pb = event_to_pb(&Event::LegsPrepared { legs, part, meta });
        if let Some(PbEvent::LegsPrepared(prepared)) = &mut pb.event {
            prepared.part.as_mut().unwrap().accounts.push("b".into());
        }
        assert!(event_from_pb(meta, &pb).is_err());
    }

    fn moves(moves: &[LegsMove]) -> Vec<(&str, i64, &str)> {
        moves
            .iter()
            .map(|step| {
                (
                    step.account_id.as_str(),
                    step.delta_minor,
                    step.delta.as_str(),
                )
            })
            .collect()
    }
}
