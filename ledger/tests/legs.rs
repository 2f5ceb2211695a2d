//! Multi-leg transfers within one partition: all legs or none, funds checked per account
//! after all its legs, one record under the id, bad input refused without a change.

use std::collections::{BTreeMap, HashMap};

use ledger::{
    AccountChange, Annotations, Command, Conflict, Currency, EntryMeta, Event, HoldRefusal,
    LEGS_MAX, Ledger, Leg, LegsCommand, LegsRecord, LegsStatus, Malformed, Outcome, Record,
    RejectReason, TransferCommand, TransferStatus, decide_with, evolve,
};
use proptest::prelude::*;
use uuid::Uuid;

fn currency(code: &str) -> Currency {
    Currency::parse(code).unwrap()
}

/// One partition's ledger with every event it applied, stamped one entry after another.
struct Partition {
    ledger: Ledger,
    events: Vec<Event>,
    index: u64,
}

impl Partition {
    /// "bank" (may go negative), "alice" and "bob" funded with 100 each, "carol" at 0, all
    /// in USD; "euro" in EUR.
    fn funded() -> Partition {
        let mut partition = Partition {
            ledger: Ledger::new(),
            events: Vec::new(),
            index: 0,
        };
        for (account, code, issuer) in [
            ("bank", "USD", true),
            ("alice", "USD", false),
            ("bob", "USD", false),
            ("carol", "USD", false),
            ("euro", "EUR", false),
        ] {
            partition.run(Command::OpenAccount {
                account_id: account.into(),
                currency: currency(code),
                allow_negative_balance: issuer,
                annotations: None,
            });
        }
        for (id, account) in [(900, "alice"), (901, "bob")] {
            let funded = partition.run(Command::Transfer(TransferCommand {
                transaction_id: Uuid::from_u128(id),
                from: "bank".into(),
                to: account.into(),
                amount_minor: 100,
                currency: currency("USD"),
                annotations: None,
            }));
            assert!(
                matches!(funded, Outcome::Transfer(record) if record.status == TransferStatus::Completed)
            );
        }
        partition
    }

    fn run(&mut self, command: Command) -> Outcome {
        self.index += 1;
        let meta = EntryMeta {
            index: self.index,
            timestamp_ms: 1_700_000_000_000 + self.index,
        };
        let before = self.ledger.clone();
        let (event, outcome) = self.ledger.execute(&command, meta);
        match event {
            Some(event) => self.events.push(event),
            None => assert_eq!(self.ledger, before, "a reply changed the state"),
        }
        outcome
    }

    fn balance(&self, account: &str) -> i128 {
        self.ledger.account(account).unwrap().balance_minor
    }

    fn balances(&self) -> BTreeMap<String, i128> {
        self.ledger
            .accounts()
            .map(|account| (account.account_id.to_owned(), account.balance_minor))
            .collect()
    }
}

fn legs(id: u128, legs: &[(&str, &str, i64)]) -> LegsCommand {
    LegsCommand {
        transaction_id: Uuid::from_u128(id),
        currency: currency("USD"),
        legs: legs
            .iter()
            .map(|(from, to, amount_minor)| Leg {
                from: (*from).into(),
                to: (*to).into(),
                amount_minor: *amount_minor,
            })
            .collect(),
        annotations: None,
    }
}

fn status(outcome: &Outcome) -> LegsStatus {
    match outcome {
        Outcome::Legs(record) => record.status,
        other => panic!("expected a multi-leg record, got {other:?}"),
    }
}

#[test]
fn every_leg_moves_together_and_a_retry_answers_the_original() {
    let mut partition = Partition::funded();
    let command = legs(
        1,
        &[
            ("alice", "carol", 30),
            ("bob", "carol", 20),
            ("alice", "bob", 5),
        ],
    );
    let first = partition.run(Command::TransferLegs(command.clone()));
    assert_eq!(status(&first), LegsStatus::Completed);
    assert_eq!(partition.balance("alice"), 65);
    assert_eq!(partition.balance("bob"), 85);
    assert_eq!(partition.balance("carol"), 50);
    assert_eq!(
        partition.ledger.transfers_count(),
        3,
        "two fundings and one set"
    );

    // A retry is answered with the original record, and moves nothing again.
    let before = partition.balances();
    let retry = partition.run(Command::TransferLegs(command.clone()));
    assert_eq!(retry, first);
    assert_eq!(partition.balances(), before);

    // The id is taken: other legs, a transfer or a hold under it are conflicts.
    let other = legs(1, &[("alice", "carol", 31)]);
    assert_eq!(
        partition.run(Command::TransferLegs(other)),
        Outcome::Conflict(Conflict::TransactionIdReused)
    );
    let transfer = TransferCommand {
        transaction_id: Uuid::from_u128(1),
        from: "alice".into(),
        to: "carol".into(),
        amount_minor: 30,
        currency: currency("USD"),
        annotations: None,
    };
    assert_eq!(
        partition.run(Command::Transfer(transfer.clone())),
        Outcome::Conflict(Conflict::TransactionIdReused)
    );
    assert_eq!(
        partition.run(Command::Authorize {
            transfer,
            timeout_ms: 1_000,
            cross_partition: false,
        }),
        Outcome::Conflict(Conflict::TransactionIdReused)
    );
    assert_eq!(
        partition.run(Command::Void {
            transaction_id: Uuid::from_u128(1),
            from: "alice".into(),
        }),
        Outcome::Hold(HoldRefusal::NotAHold)
    );
    // And a set under a transfer's id is one too.
    let under_transfer = legs(900, &[("bank", "alice", 100)]);
    assert_eq!(
        partition.run(Command::TransferLegs(under_transfer)),
        Outcome::Conflict(Conflict::TransactionIdReused)
    );
    assert_eq!(partition.balances(), before);
}

#[test]
fn funds_are_checked_per_account_after_all_its_legs() {
    let mut partition = Partition::funded();
    // carol has nothing, but receives 40 in the first leg and passes 40 on in the second.
    let through = legs(2, &[("alice", "carol", 40), ("carol", "bob", 40)]);
    assert_eq!(
        status(&partition.run(Command::TransferLegs(through))),
        LegsStatus::Completed
    );
    assert_eq!(partition.balance("carol"), 0);
    // The order of legs does not matter either: the debit comes first here.
    let reversed = legs(3, &[("carol", "bob", 10), ("alice", "carol", 10)]);
    assert_eq!(
        status(&partition.run(Command::TransferLegs(reversed))),
        LegsStatus::Completed
    );
    // alice has 50 left: two legs of 30 are 60, refused at her first debit (leg 1), and
    // nothing moves, not even the leg that alone would have been covered.
    let before = partition.balances();
    let short = legs(
        4,
        &[
            ("bank", "carol", 5),
            ("alice", "bob", 30),
            ("alice", "carol", 30),
        ],
    );
    let refused = partition.run(Command::TransferLegs(short.clone()));
    assert_eq!(
        status(&refused),
        LegsStatus::Rejected {
            leg: 1,
            reason: RejectReason::InsufficientFunds
        }
    );
    assert_eq!(partition.balances(), before);
    // The rejection is recorded: funding alice afterwards does not change the answer.
    partition.run(Command::TransferLegs(legs(5, &[("bank", "alice", 1_000)])));
    assert_eq!(partition.run(Command::TransferLegs(short)), refused);
}

#[test]
fn each_leg_is_checked_as_a_transfer_and_the_first_refused_is_named() {
    let mut partition = Partition::funded();
    partition.run(Command::ChangeAccount {
        account_id: "bob".into(),
        change: AccountChange::Freeze,
    });
    let before = partition.balances();
    let cases = [
        (
            vec![("alice", "carol", 1), ("nobody", "carol", 1)],
            1,
            RejectReason::FromAccountNotFound,
        ),
        (
            vec![("alice", "nobody", 1)],
            0,
            RejectReason::ToAccountNotFound,
        ),
        (
            vec![("alice", "carol", 1), ("carol", "bob", 1)],
            1,
            RejectReason::ToAccountFrozen,
        ),
        (
            vec![("bob", "carol", 1)],
            0,
            RejectReason::FromAccountFrozen,
        ),
        (
            vec![("alice", "carol", 1), ("alice", "euro", 1)],
            1,
            RejectReason::CurrencyMismatch,
        ),
    ];
    for (id, (set, leg, reason)) in cases.into_iter().enumerate() {
        let outcome = partition.run(Command::TransferLegs(legs(100 + id as u128, &set)));
        assert_eq!(
            status(&outcome),
            LegsStatus::Rejected { leg, reason },
            "{set:?}"
        );
        assert_eq!(partition.balances(), before, "{set:?} moved money");
    }
}

#[test]
fn malformed_sets_are_refused_and_change_nothing() {
    let mut partition = Partition::funded();
    let before = partition.ledger.clone();
    let mut too_many = legs(7, &[]);
    for index in 0..=LEGS_MAX {
        too_many.legs.push(Leg {
            from: "bank".into(),
            to: format!("account-{index}"),
            amount_minor: 1,
        });
    }
    let annotated = LegsCommand {
        annotations: Some(Box::new(Annotations::default())),
        ..legs(8, &[("alice", "bob", 1)])
    };
    let cases = [
        (legs(6, &[]), Malformed::LegsOutOfRange, None),
        (too_many, Malformed::LegsOutOfRange, None),
        (
            legs(
                9,
                &[
                    ("alice", "bob", 1),
                    ("bob", "carol", 1),
                    ("alice", "bob", 2),
                ],
            ),
            Malformed::RepeatedLeg,
            Some(2),
        ),
        (
            legs(10, &[("alice", "bob", 1), ("alice", "alice", 1)]),
            Malformed::SameAccount,
            Some(1),
        ),
        (
            legs(11, &[("alice", "bob", 0)]),
            Malformed::AmountOutOfRange,
            Some(0),
        ),
        (
            legs(12, &[("alice", "bob", ledger::AMOUNT_MINOR_MAX + 1)]),
            Malformed::AmountOutOfRange,
            Some(0),
        ),
        (
            legs(13, &[("alice", "bad id", 1)]),
            Malformed::InvalidAccountId,
            Some(0),
        ),
        (
            legs(0, &[("alice", "bob", 1)]),
            Malformed::NilTransactionId,
            None,
        ),
        (annotated, Malformed::InvalidMetadata, None),
    ];
    for (command, malformed, leg) in cases {
        assert_eq!(command.shape(), Err((malformed, leg)), "{command:?}");
        assert_eq!(
            partition.run(Command::TransferLegs(command)),
            Outcome::Malformed(malformed)
        );
    }
    assert_eq!(partition.ledger, before);
    // The reverse leg is not a repeat: a and b may pay each other in one set.
    let both_ways = legs(14, &[("alice", "bob", 10), ("bob", "alice", 4)]);
    assert_eq!(both_ways.shape(), Ok(()));
}

#[test]
fn a_set_is_annotated_replayed_digested_and_answered_from_the_stored_record() {
    let mut partition = Partition::funded();
    let mut annotations = Annotations {
        reference: "payroll-2026-12".into(),
        ..Annotations::default()
    };
    annotations.metadata.insert("batch".into(), "7".into());
    let command = LegsCommand {
        annotations: Some(Box::new(annotations)),
        ..legs(20, &[("alice", "carol", 10), ("bob", "carol", 10)])
    };
    let outcome = partition.run(Command::TransferLegs(command.clone()));
    let Outcome::Legs(record) = outcome.clone() else {
        panic!("{outcome:?}")
    };
    partition.run(Command::TransferLegs(legs(21, &[("carol", "alice", 500)])));
    assert_eq!(
        partition.ledger.digest(),
        partition.ledger.digest_from_scratch()
    );

    // Replaying the events rebuilds the same state.
    let mut replayed = Ledger::new();
    for event in &partition.events {
        evolve(&mut replayed, event);
    }
    assert_eq!(replayed, partition.ledger);
    assert_eq!(replayed.digest(), partition.ledger.digest());

    // The events round-trip through postcard (as raft entries and event blocks carry them).
    for event in &partition.events {
        let (layout, bytes) = ledger::wire::to_vec(event);
        let decoded: Event = ledger::wire::from_slice(layout, &bytes).unwrap();
        assert_eq!(&decoded, event);
    }

    // A ledger that keeps only live records answers a retry from the stored record, as a
    // write node does, and refuses another set under the id the same way.
    let mut lean = partition.ledger.clone();
    lean.keep_only_in_flight();
    assert!(lean.legs_record(&command.transaction_id).is_none());
    let stored: HashMap<u128, Record> = [(
        command.transaction_id.as_u128(),
        Record::Legs(LegsRecord { ..record.clone() }),
    )]
    .into();
    let meta = EntryMeta {
        index: 1_000,
        timestamp_ms: 1_800_000_000_000,
    };
    assert_eq!(
        decide_with(
            &lean,
            &stored,
            &Command::TransferLegs(command.clone()),
            meta
        ),
        ledger::Decision::Reply(Outcome::Legs(record))
    );
    let other = LegsCommand {
        annotations: None,
        ..command
    };
    assert_eq!(
        decide_with(&lean, &stored, &Command::TransferLegs(other), meta),
        ledger::Decision::Reply(Outcome::Conflict(Conflict::TransactionIdReused))
    );
}

/// A random set over a few accounts (some closed or frozen, one in another currency).
fn arbitrary_set() -> impl Strategy<Value = Vec<(usize, usize, i64)>> {
    proptest::collection::vec((0..ACCOUNTS.len(), 0..ACCOUNTS.len(), 1_i64..80), 1..6)
}

const ACCOUNTS: [&str; 6] = ["bank", "alice", "bob", "carol", "euro", "nobody"];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Over random sequences of sets, freezes and unfreezes: a set either moves every leg
    /// (each account's balance changes by its net) or nothing; what it decides is what a model
    /// of the rules decides; no ordinary account goes below zero; money is conserved; the
    /// running digest matches one computed from scratch.
    #[test]
    fn a_set_moves_all_or_nothing(
        steps in proptest::collection::vec(
            (arbitrary_set(), proptest::option::weighted(0.2, (1..4_usize, any::<bool>()))),
            1..40,
        )
    ) {
        let mut partition = Partition::funded();
        for (step, (set, change)) in steps.into_iter().enumerate() {
            if let Some((account, freeze)) = change {
                partition.run(Command::ChangeAccount {
                    account_id: ACCOUNTS[account].into(),
                    change: if freeze { AccountChange::Freeze } else { AccountChange::Unfreeze },
                });
            }
            let named: Vec<(&str, &str, i64)> = set
                .iter()
                .map(|(from, to, amount)| (ACCOUNTS[*from], ACCOUNTS[*to], *amount))
                .collect();
            let command = legs(10_000 + step as u128, &named);
            let before = partition.balances();
            let expected = model(&partition, &command);
            let outcome = partition.run(Command::TransferLegs(command.clone()));
            match (command.shape(), expected) {
                (Err((malformed, _)), _) => {
                    prop_assert_eq!(outcome, Outcome::Malformed(malformed));
                    prop_assert_eq!(partition.balances(), before);
                }
                (Ok(()), None) => {
                    prop_assert_eq!(status(&outcome), LegsStatus::Completed);
                    let net = command.net_by_account();
                    for (account, balance) in partition.balances() {
                        let change = net.get(account.as_str()).copied().unwrap_or(0);
                        prop_assert_eq!(balance, before[&account] + change);
                    }
                }
                (Ok(()), Some((leg, reason))) => {
                    prop_assert_eq!(status(&outcome), LegsStatus::Rejected { leg, reason });
                    prop_assert_eq!(partition.balances(), before);
                }
            }
            for account in partition.ledger.accounts() {
                prop_assert!(account.allow_negative_balance || account.balance_minor >= 0);
            }
            prop_assert_eq!(partition.ledger.imbalance(), None);
        }
        prop_assert_eq!(partition.ledger.digest(), partition.ledger.digest_from_scratch());
    }
}

/// The rules, written out plainly: the first leg whose accounts fail a transfer's checks, in
/// leg order; then, per account in order of its first debit, its net debit against its balance.
fn model(partition: &Partition, command: &LegsCommand) -> Option<(u32, RejectReason)> {
    let ledger = &partition.ledger;
    let frozen =
        |account: &str| ledger.account_settings(account).status == ledger::AccountStatus::Frozen;
    for (index, leg) in command.legs.iter().enumerate() {
        let index = index as u32;
        let (Some(from), Some(to)) = (ledger.account(&leg.from), ledger.account(&leg.to)) else {
            let reason = if ledger.account(&leg.from).is_none() {
                RejectReason::FromAccountNotFound
            } else {
                RejectReason::ToAccountNotFound
            };
            return Some((index, reason));
        };
        if frozen(&leg.from) {
            return Some((index, RejectReason::FromAccountFrozen));
        }
        if frozen(&leg.to) {
            return Some((index, RejectReason::ToAccountFrozen));
        }
        if from.currency != command.currency || to.currency != command.currency {
            return Some((index, RejectReason::CurrencyMismatch));
        }
    }
    let mut net: BTreeMap<&str, i128> = BTreeMap::new();
    for leg in &command.legs {
        *net.entry(&leg.from).or_default() -= i128::from(leg.amount_minor);
        *net.entry(&leg.to).or_default() += i128::from(leg.amount_minor);
    }
    let mut seen = Vec::new();
    for (index, leg) in command.legs.iter().enumerate() {
        if seen.contains(&leg.from.as_str()) {
            continue;
        }
        seen.push(leg.from.as_str());
        let account = ledger.account(&leg.from).unwrap();
        if !account.allow_negative_balance && account.balance_minor + net[leg.from.as_str()] < 0 {
            return Some((index as u32, RejectReason::InsufficientFunds));
        }
    }
    None
}
