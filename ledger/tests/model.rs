//! Property test: the ledger against a deliberately naive model, over random command
//! sequences with few account ids (some never opened), three currencies and a small
//! transaction-id pool, so that retries, id reuse and conflicts happen often.

use std::collections::HashMap;

use ledger::{
    AMOUNT_MINOR_MAX, Account, Annotations, Command, Conflict, Currency, EntryMeta, Event, Ledger,
    Outcome, RejectReason, TransferCommand, TransferRecord, TransferStatus, evolve,
};
use proptest::prelude::*;
use uuid::Uuid;

/// Account pool: (id, usual currency index, usually an issuer). The last id is never
/// opened, so "not found" stays reachable all sequence long.
const ACCOUNTS: [(&str, usize, bool); 6] = [
    ("alice", 0, false),
    ("bob", 0, false),
    ("carol", 0, false),
    ("bank", 0, true),
    ("treasury", 1, true),
    ("ghost", 2, false),
];
const OPENABLE_COUNT: usize = ACCOUNTS.len() - 1;
const CURRENCY_CODES: [&str; 3] = ["USD", "EUR", "JPY"];
/// Small on purpose: drawing from it makes the same id come back with other parameters.
const REUSED_IDS_COUNT: u128 = 6;

/// How many choices [`annotations`] has.
const ANNOTATIONS_COUNT: usize = 4;

/// An account's annotations by index: none, or one of three that differ from each other.
fn annotations(index: usize) -> Option<Box<Annotations>> {
    let metadata = |value: &str| [("tier".to_string(), value.to_string())].into();
    match index {
        0 => None,
        1 => Annotations {
            reference: "cust-1".into(),
            ..Annotations::default()
        }
        .boxed(),
        2 => Annotations {
            reference: "cust-1".into(),
            metadata: metadata("gold"),
        }
        .boxed(),
        _ => Annotations {
            reference: String::new(),
            metadata: metadata("silver"),
        }
        .boxed(),
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// `parameters: None` opens with the account's usual parameters (so re-opens are
    /// mostly idempotent), `Some((currency, allow_negative_balance))` with arbitrary ones.
    /// `annotations`: an index into [`annotations`] (0: none).
    Open {
        account: usize,
        parameters: Option<(usize, bool)>,
        annotations: usize,
    },
    /// `id: None` takes a fresh id; `currency: None` uses the from-account's currency.
    Transfer {
        id: Option<u128>,
        from: usize,
        to_offset: usize,
        amount: AmountPick,
        currency: Option<usize>,
    },
    /// Resend an earlier transfer command verbatim (index taken modulo the history).
    Retry { pick: usize },
}

/// Amounts relative to the current balance hit the insufficient-funds boundary exactly.
#[derive(Clone, Copy, Debug)]
enum AmountPick {
    Fixed(i64),
    WholeBalance,
    WholeBalancePlusOne,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let parameters = proptest::option::weighted(0.15, (0..CURRENCY_CODES.len(), any::<bool>()));
    let annotations = prop_oneof![6 => Just(0), 1 => 1..ANNOTATIONS_COUNT];
    let open = (0..OPENABLE_COUNT, parameters, annotations).prop_map(
        |(account, parameters, annotations)| Op::Open {
            account,
            parameters,
            annotations,
        },
    );
    let amount = prop_oneof![
        8 => (1..=100_i64).prop_map(AmountPick::Fixed),
        2 => (1..=10_000_i64).prop_map(AmountPick::Fixed),
        1 => Just(AmountPick::Fixed(AMOUNT_MINOR_MAX)),
        2 => Just(AmountPick::WholeBalance),
        2 => Just(AmountPick::WholeBalancePlusOne),
    ];
    let transfer = (
        proptest::option::weighted(0.25, 1..=REUSED_IDS_COUNT),
        0..ACCOUNTS.len(),
        1..ACCOUNTS.len(),
        amount,
        proptest::option::weighted(0.15, 0..CURRENCY_CODES.len()),
    )
        .prop_map(|(id, from, to_offset, amount, currency)| Op::Transfer {
            id,
            from,
            to_offset,
            amount,
            currency,
        });
    prop_oneof![3 => open, 8 => transfer, 2 => any::<usize>().prop_map(|pick| Op::Retry { pick })]
}

fn currency(index: usize) -> Currency {
    Currency::parse(CURRENCY_CODES[index]).unwrap()
}

/// The simplest thing that could be the specification.
#[derive(Default)]
struct Model {
    /// account id -> (currency, allow_negative_balance, balance_minor)
    accounts: HashMap<String, (Currency, bool, i128)>,
    /// account id -> what it was opened with
    annotations: HashMap<String, Option<Box<Annotations>>>,
    /// transaction id -> the record first decided for it
    transfers: HashMap<Uuid, TransferRecord>,
}

impl Model {
    fn account_outcome(&self, account_id: &str) -> Outcome {
        let (currency, allow_negative_balance, balance_minor) = self.accounts[account_id];
        Outcome::Account(Account {
            account_id: account_id.into(),
            currency,
            allow_negative_balance,
            balance_minor,
            settings: Default::default(),
        })
    }

    fn step(&mut self, command: &Command, meta: EntryMeta) -> Outcome {
        match command {
            Command::OpenAccount {
                account_id,
                currency,
                allow_negative_balance,
                annotations,
            } => {
                match self.accounts.get(account_id) {
                    None => {
                        self.accounts
                            .insert(account_id.clone(), (*currency, *allow_negative_balance, 0));
                        self.annotations
                            .insert(account_id.clone(), annotations.clone());
                    }
                    Some(&(existing_currency, existing_flag, _)) => {
                        if (existing_currency, existing_flag)
                            != (*currency, *allow_negative_balance)
                            || self.annotations[account_id] != *annotations
                        {
                            return Outcome::Conflict(Conflict::AccountExistsWithOtherParameters);
                        }
                    }
                }
                self.account_outcome(account_id)
            }
            Command::Transfer(transfer) => {
                if let Some(record) = self.transfers.get(&transfer.transaction_id) {
                    if record.transfer == *transfer {
                        return Outcome::Transfer(record.clone());
                    }
                    return Outcome::Conflict(Conflict::TransactionIdReused);
                }
                let from = self.accounts.get(&transfer.from).copied();
                let to = self.accounts.get(&transfer.to).copied();
                let amount_minor = i128::from(transfer.amount_minor);
                let status = match (from, to) {
                    (None, _) => TransferStatus::Rejected(RejectReason::FromAccountNotFound),
                    (_, None) => TransferStatus::Rejected(RejectReason::ToAccountNotFound),
                    (Some((from_currency, ..)), Some((to_currency, ..)))
                        if from_currency != transfer.currency
                            || to_currency != transfer.currency =>
                    {
                        TransferStatus::Rejected(RejectReason::CurrencyMismatch)
                    }
                    (Some((_, false, balance_minor)), _) if balance_minor < amount_minor => {
                        TransferStatus::Rejected(RejectReason::InsufficientFunds)
                    }
                    _ => {
                        self.accounts.get_mut(&transfer.from).unwrap().2 -= amount_minor;
                        self.accounts.get_mut(&transfer.to).unwrap().2 += amount_minor;
                        TransferStatus::Completed
                    }
                };
                let record = TransferRecord {
                    transfer: transfer.clone(),
                    status,
                    meta,
                    settlement: None,
                };
                self.transfers
                    .insert(transfer.transaction_id, record.clone());
                Outcome::Transfer(record)
            }
            Command::TransferOut(_) | Command::Credit(_) | Command::Settle { .. } => {
                unreachable!(
                    "this model covers one partition; tests/cross_partition.rs covers the rest"
                )
            }
            Command::Authorize { .. }
            | Command::Capture { .. }
            | Command::Void { .. }
            | Command::Expire { .. }
            | Command::ChangeAccount { .. } => {
                unreachable!("tests/holds.rs covers holds and account changes")
            }
            Command::TransferLegs(_) => unreachable!("tests/legs.rs covers multi-leg transfers"),
            Command::PrepareLegs { .. }
            | Command::ResolveLegs { .. }
            | Command::FinishLegs { .. } => {
                unreachable!("tests/legs_across.rs covers multi-leg transfers across partitions")
            }
        }
    }
}

fn balances(ledger: &Ledger) -> Vec<(String, i128)> {
    ledger
        .accounts()
        .map(|account| (account.account_id.to_string(), account.balance_minor))
        .collect()
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut ledger = Ledger::new();
    let mut model = Model::default();
    let mut events: Vec<Event> = Vec::new();
    let mut sent_transfers: Vec<TransferCommand> = Vec::new();

    for (step, op) in ops.iter().enumerate() {
        let meta = EntryMeta {
            index: step as u64 + 1,
            timestamp_ms: 1_700_000_000_000 + step as u64 * 7,
        };
        let is_retry = matches!(op, Op::Retry { .. });
        let command = match *op {
            Op::Open {
                account,
                parameters,
                annotations: which,
            } => {
                let (account_id, usual_currency, usually_issuer) = ACCOUNTS[account];
                let (code, allow_negative_balance) =
                    parameters.unwrap_or((usual_currency, usually_issuer));
                Command::OpenAccount {
                    account_id: account_id.into(),
                    currency: currency(code),
                    allow_negative_balance,
                    annotations: annotations(which),
                }
            }
            Op::Transfer {
                id,
                from,
                to_offset,
                amount,
                currency: code,
            } => {
                let from_account = ledger.account(ACCOUNTS[from].0);
                let balance_minor = from_account.map_or(0, |account| account.balance_minor);
                let amount_minor = match amount {
                    AmountPick::Fixed(amount_minor) => i128::from(amount_minor),
                    AmountPick::WholeBalance => balance_minor,
                    AmountPick::WholeBalancePlusOne => balance_minor + 1,
                };
                Command::Transfer(TransferCommand {
                    // Fresh ids live above the reused pool and never repeat.
                    transaction_id: Uuid::from_u128(id.unwrap_or(1_000 + step as u128)),
                    from: ACCOUNTS[from].0.into(),
                    to: ACCOUNTS[(from + to_offset) % ACCOUNTS.len()].0.into(),
                    amount_minor: i64::try_from(
                        amount_minor.clamp(1, i128::from(AMOUNT_MINOR_MAX)),
                    )
                    .unwrap(),
                    currency: match (code, from_account) {
                        (None, Some(account)) => account.currency,
                        (code, _) => currency(code.unwrap_or(ACCOUNTS[from].1)),
                    },
                    annotations: None,
                })
            }
            Op::Retry { pick } => match sent_transfers.len() {
                0 => continue,
                len => Command::Transfer(sent_transfers[pick % len].clone()),
            },
        };
        if let Command::Transfer(transfer) = &command {
            sent_transfers.push(transfer.clone());
        }

        let before = ledger.clone();
        let (event, outcome) = ledger.execute(&command, meta);
        let expected = model.step(&command, meta);
        prop_assert_eq!(&outcome, &expected, "step {}: {:?}", step, command);

        match event {
            Some(event) => events.push(event),
            None => prop_assert_eq!(&ledger, &before, "step {}: a reply changed state", step),
        }
        if is_retry {
            // Every earlier transfer command's id is recorded, so a resend is answered
            // from the record and can never move money a second time.
            prop_assert_eq!(
                balances(&ledger),
                balances(&before),
                "step {}: retry moved money",
                step
            );
            prop_assert_eq!(ledger.transfers_count(), before.transfers_count());
        }

        for (currency, total) in ledger.totals_by_currency() {
            prop_assert_eq!(total, 0, "step {}: {} does not sum to zero", step, currency);
        }
        for account in ledger.accounts() {
            prop_assert!(
                account.allow_negative_balance || account.balance_minor >= 0,
                "step {}: {:?}",
                step,
                account
            );
            let (currency, allow_negative_balance, balance_minor) =
                model.accounts[account.account_id];
            prop_assert_eq!(
                (
                    account.currency,
                    account.allow_negative_balance,
                    account.balance_minor
                ),
                (currency, allow_negative_balance, balance_minor)
            );
        }
        prop_assert_eq!(ledger.accounts_count(), model.accounts.len());
        prop_assert_eq!(ledger.transfers_count(), model.transfers.len() as u64);
    }

    for (transaction_id, record) in &model.transfers {
        prop_assert_eq!(ledger.transfer(transaction_id), Some(record));
    }
    let mut replayed = Ledger::new();
    for event in &events {
        evolve(&mut replayed, event);
    }
    prop_assert_eq!(replayed.digest(), ledger.digest());
    prop_assert_eq!(&replayed, &ledger);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn ledger_agrees_with_model(ops in prop::collection::vec(op_strategy(), 0..200)) {
        run(&ops)?;
    }
}
