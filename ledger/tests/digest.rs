//! The state digest is kept up to date as the state changes (a running sum of record hashes):
//! it must always equal the digest recomputed from every record, be independent of the
//! order accounts were opened in, survive a snapshot round trip, and keep agreeing after it.

use std::collections::HashMap;

use ledger::state::WithAccountAnnotations;
use ledger::wire::{self, Layout};
use ledger::{
    Annotations, Command, CreditOutcome, Currency, EntryMeta, Ledger, Record, TransferCommand,
};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const ACCOUNTS: usize = 8;

fn currency(index: usize) -> Currency {
    Currency::parse(["USD", "JPY"][index % 2]).expect("known currency")
}

/// Account `n`: id, currency, may go negative (accounts 0 and 4 are issuers).
fn account(n: usize) -> (String, Currency, bool) {
    (format!("acct-{n}"), currency(n / 4), n.is_multiple_of(4))
}

fn open(n: usize) -> Command {
    let (account_id, currency, allow_negative_balance) = account(n);
    // Every third account is opened with annotations, so their records join the sum.
    let annotations = Annotations {
        reference: format!("customer {n}"),
        ..Annotations::default()
    };
    Command::OpenAccount {
        account_id,
        currency,
        allow_negative_balance,
        annotations: (n % 3 == 1)
            .then_some(annotations)
            .and_then(Annotations::boxed),
    }
}

#[derive(Clone, Debug)]
enum Step {
    /// A transfer within this partition (`to` may be unknown: a recorded rejection).
    Transfer {
        id: u8,
        from: usize,
        to: usize,
        amount: i64,
    },
    /// The debit side of a transfer to another partition.
    TransferOut { id: u8, from: usize, amount: i64 },
    /// A credit from another partition, to `to`.
    Credit { id: u8, to: usize, amount: i64 },
    /// Settle (credited or refused) the in-flight transfer with this id, if any.
    Settle { id: u8, credited: bool },
}

fn step() -> impl Strategy<Value = Step> {
    let amount = 1i64..2_000;
    prop_oneof![
        4 => (any::<u8>(), 0..ACCOUNTS + 1, 0..ACCOUNTS + 1, amount.clone())
            .prop_map(|(id, from, to, amount)| Step::Transfer { id, from, to, amount }),
        2 => (any::<u8>(), 0..ACCOUNTS, amount.clone())
            .prop_map(|(id, from, amount)| Step::TransferOut { id, from, amount }),
        2 => (any::<u8>(), 0..ACCOUNTS + 1, amount)
            .prop_map(|(id, to, amount)| Step::Credit { id, to, amount }),
        2 => (any::<u8>(), any::<bool>()).prop_map(|(id, credited)| Step::Settle { id, credited }),
    ]
}

fn transfer(id: u8, from: String, to: String, amount: i64, currency: Currency) -> TransferCommand {
    TransferCommand {
        transaction_id: uuid::Uuid::from_u128(u128::from(id) + 1),
        from,
        to,
        amount_minor: amount,
        currency,
        annotations: None,
    }
}

fn command(step: &Step) -> Command {
    let id_of = |n: usize| account(n).0;
    match step {
        Step::Transfer {
            id,
            from,
            to,
            amount,
        } => Command::Transfer(transfer(
            *id,
            id_of(*from),
            id_of(*to),
            *amount,
            currency(*from / 4),
        )),
        Step::TransferOut { id, from, amount } => Command::TransferOut(transfer(
            *id,
            id_of(*from),
            "elsewhere".into(),
            *amount,
            currency(*from / 4),
        )),
        Step::Credit { id, to, amount } => Command::Credit(transfer(
            *id,
            "elsewhere".into(),
            id_of(*to),
            *amount,
            currency(*to / 4),
        )),
        Step::Settle { id, credited } => Command::Settle {
            transaction_id: uuid::Uuid::from_u128(u128::from(*id) + 1),
            credit: if *credited {
                CreditOutcome::Credited
            } else {
                CreditOutcome::Refused(ledger::RejectReason::ToAccountNotFound)
            },
            credit_index: 7,
        },
    }
}

/// Runs the steps, checking the running digest against a recomputation after each one.
fn run(ledger: &mut Ledger, steps: &[Step], first_index: u64) -> Result<(), TestCaseError> {
    run_with(ledger, &ledger::NothingStored, steps, first_index)
}

/// [`run`] for a ledger whose finished records were evicted into `stored` (a restored
/// snapshot): the recomputation needs every record in memory, so the running digest is
/// checked against a ledger that holds them all by the caller instead.
fn run_with(
    ledger: &mut Ledger,
    stored: &impl ledger::Stored,
    steps: &[Step],
    first_index: u64,
) -> Result<(), TestCaseError> {
    let holds_everything =
        ledger.records_in_memory() as u64 == ledger.transfers_count() + ledger.credits_count();
    for (offset, step) in steps.iter().enumerate() {
        let meta = EntryMeta {
            index: first_index + offset as u64,
            timestamp_ms: 1_000 + offset as u64,
        };
        ledger.execute_with(stored, &command(step), meta);
        if holds_everything {
            prop_assert_eq!(
                ledger.digest(),
                ledger.digest_from_scratch(),
                "after {:?}",
                step
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn digest_is_kept_exact_and_ignores_opening_order(
        order in Just((0..ACCOUNTS).collect::<Vec<_>>()).prop_shuffle(),
        steps in prop::collection::vec(step(), 0..60),
        more in prop::collection::vec(step(), 0..30),
    ) {
        let meta = |index| EntryMeta { index, timestamp_ms: 1 };
        let mut in_order = Ledger::new();
        for n in 0..ACCOUNTS {
            in_order.execute(&open(n), meta(n as u64 + 1));
        }
        let mut shuffled = Ledger::new();
        for n in &order {
            shuffled.execute(&open(*n), meta(*n as u64 + 1));
        }
        prop_assert_eq!(shuffled.digest(), in_order.digest());
        prop_assert_eq!(in_order.digest(), in_order.digest_from_scratch());

        run(&mut in_order, &steps, 100)?;
        run(&mut shuffled, &steps, 100)?;
        prop_assert_eq!(shuffled.digest(), in_order.digest());
        prop_assert_eq!(&shuffled, &in_order);

        // A snapshot round trip keeps the digest, and the restored ledger, which finds the
        // finished records on "disk", goes on agreeing.
        let stored: HashMap<u128, Record> = in_order
            .transfers()
            .cloned()
            .map(Record::Transfer)
            .chain(in_order.credits().cloned().map(Record::Credit))
            .map(|record| (record.transaction_id().as_u128(), record))
            .collect();
        // (State format 7: the ledger, then the annotated accounts' hashes.)
        let bytes = wire::to_vec_annotated(&WithAccountAnnotations(in_order.clone()));
        let WithAccountAnnotations(mut restored) =
            wire::from_slice(Layout::Annotated, &bytes).expect("deserialize");
        prop_assert_eq!(restored.annotated_accounts_count(), in_order.annotated_accounts_count());
        prop_assert_eq!(restored.digest(), in_order.digest());
        run_with(&mut restored, &stored, &more, 1_000)?;
        run(&mut in_order, &more, 1_000)?;
        prop_assert_eq!(restored.digest(), in_order.digest());
    }
}

/// Every account opened, in order, at indexes 1..=ACCOUNTS.
fn opened() -> Ledger {
    let mut ledger = Ledger::new();
    for n in 0..ACCOUNTS {
        let meta = EntryMeta {
            index: n as u64 + 1,
            timestamp_ms: 1,
        };
        ledger.execute(&open(n), meta);
    }
    ledger
}

#[test]
fn a_snapshot_clone_is_independent_of_the_ledger_it_came_from() {
    let mut ledger = opened();
    let snapshot = ledger.clone();
    let digest = snapshot.digest();
    let step = Step::Transfer {
        id: 1,
        from: 0,
        to: 1,
        amount: 5,
    };
    ledger.execute(
        &command(&step),
        EntryMeta {
            index: 100,
            timestamp_ms: 2,
        },
    );
    assert_ne!(ledger.digest(), digest);
    assert_eq!(snapshot.digest(), digest);
    assert_eq!(snapshot.digest_from_scratch(), digest);
    assert_eq!(snapshot.account("acct-1").map(|a| a.balance_minor), Some(0));
    assert_eq!(ledger.account("acct-1").map(|a| a.balance_minor), Some(5));
}

/// A fixed history touching every kind of record: local transfers (completed and rejected),
/// debits out (settled and refunded), credits (credited and refused).
fn fixed_history() -> Ledger {
    let mut ledger = opened();
    let steps = [
        Step::Transfer {
            id: 1,
            from: 0,
            to: 1,
            amount: 500,
        },
        Step::Transfer {
            id: 2,
            from: 1,
            to: 2,
            amount: 900,
        },
        Step::Transfer {
            id: 3,
            from: 4,
            to: 5,
            amount: 70,
        },
        Step::TransferOut {
            id: 4,
            from: 1,
            amount: 100,
        },
        Step::TransferOut {
            id: 5,
            from: 5,
            amount: 20,
        },
        Step::Credit {
            id: 6,
            to: 2,
            amount: 33,
        },
        Step::Credit {
            id: 7,
            to: ACCOUNTS,
            amount: 33,
        },
        Step::Settle {
            id: 4,
            credited: true,
        },
        Step::Settle {
            id: 5,
            credited: false,
        },
    ];
    for (offset, step) in steps.iter().enumerate() {
        let meta = EntryMeta {
            index: 100 + offset as u64,
            timestamp_ms: 5_000 + offset as u64,
        };
        ledger.execute(&command(step), meta);
    }
    ledger
}

#[test]
fn digest_v2_is_what_format_1_snapshots_carry() {
    let ledger = fixed_history();
    assert_eq!(ledger.transfers_count(), 5);
    assert_eq!(ledger.in_flight_count(), 0);
    assert!(ledger.credit(&uuid::Uuid::from_u128(7)).is_some());
    let hex = |digest: [u8; 32]| {
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    // Computed by the previous release's `Ledger::digest` (encoding v2) for this history.
    assert_eq!(
        hex(ledger.digest_v2()),
        "7b1e8602f319e0ff2230a6a854dcdd788ff9dcc25f447af237963466a3b5be41"
    );
    assert_ne!(ledger.digest_v2(), ledger.digest());
}
