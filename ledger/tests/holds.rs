//! Property test: holds (authorize, capture in full or in part, void, expiry) mixed with
//! ordinary transfers and account changes (freeze, unfreeze, close, overdraft limits),
//! within one partition, against a naive model. Checks after every step: the outcome equals
//! the model's; balances, held amounts and settings equal the model's; money is conserved
//! (balances sum to zero); no ordinary account's available balance (balance minus held) is
//! below minus the largest overdraft limit it was ever given; a closed account is empty; a
//! hold leaves `Pending` at most once; a reply changes nothing; at the end, a replay of the
//! events and a snapshot round trip give the same ledger.

use std::collections::HashMap;

use ledger::{
    Account, AccountChange, AccountRefusal, AccountSettings, AccountStatus, Command, Conflict,
    Currency, EntryMeta, Event, HOLD_TIMEOUT_MS_MAX, Hold, HoldRefusal, HoldState, Ledger,
    Malformed, Outcome, RejectReason, TransferCommand, TransferRecord, TransferStatus, evolve,
};
use proptest::prelude::*;
use uuid::Uuid;

/// (id, issuer?): the issuer funds the others; "ghost" is never opened.
const ACCOUNTS: [(&str, bool); 5] = [
    ("bank", true),
    ("alice", false),
    ("bob", false),
    ("carol", false),
    ("ghost", false),
];
const OPENED: usize = ACCOUNTS.len() - 1;
/// Hold and transfer ids come from a small pool, so steps on the same hold, retries and
/// reuse across kinds happen often.
const IDS: u128 = 12;

fn usd() -> Currency {
    Currency::parse("USD").unwrap()
}

#[derive(Clone, Debug)]
enum Op {
    Transfer {
        id: u128,
        from: usize,
        to: usize,
        amount: i64,
    },
    Authorize {
        id: u128,
        from: usize,
        to: usize,
        amount: i64,
        timeout_ms: u64,
    },
    /// `from`: the account the step names (usually the hold's).
    Capture {
        id: u128,
        from: Option<usize>,
        amount: Option<i64>,
    },
    Void {
        id: u128,
        from: Option<usize>,
    },
    Expire {
        id: u128,
    },
    /// Time passes: the next entry is stamped this much later.
    Wait {
        ms: u64,
    },
    /// 0 freeze, 1 unfreeze, 2 close, 3 set the overdraft limit (in EUR if `euro`).
    Change {
        account: usize,
        kind: u8,
        limit: i64,
        euro: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let id = 1..=IDS;
    let account = 0..ACCOUNTS.len();
    let amount = prop_oneof![4 => 1..=60_i64, 1 => 1..=400_i64];
    // Timeouts and waits in steps of 25 ms (entries in between share a time stamp), so a
    // step lands exactly on an expiry often.
    let timeout = prop_oneof![
        12 => (1..=20_u64).prop_map(|steps| steps * 25),
        1 => Just(0_u64),
        1 => Just(HOLD_TIMEOUT_MS_MAX + 1),
    ];
    prop_oneof![
        4 => (id.clone(), account.clone(), account.clone(), amount.clone())
            .prop_map(|(id, from, to, amount)| Op::Transfer { id, from, to, amount }),
        5 => (id.clone(), account.clone(), account, amount.clone(), timeout).prop_map(
            |(id, from, to, amount, timeout_ms)| Op::Authorize { id, from, to, amount, timeout_ms }
        ),
        5 => (
            id.clone(),
            proptest::option::weighted(0.1, 0..ACCOUNTS.len()),
            proptest::option::weighted(0.6, prop_oneof![8 => amount, 1 => Just(0_i64)]),
        )
            .prop_map(|(id, from, amount)| Op::Capture { id, from, amount }),
        2 => (id.clone(), proptest::option::weighted(0.1, 0..ACCOUNTS.len()))
            .prop_map(|(id, from)| Op::Void { id, from }),
        1 => id.prop_map(|id| Op::Expire { id }),
        2 => (0..12_u64).prop_map(|steps| Op::Wait { ms: steps * 25 }),
        2 => (0..ACCOUNTS.len(), 0..4_u8, prop_oneof![3 => 0..=150_i64, 1 => Just(-1_i64)], proptest::bool::weighted(0.1))
            .prop_map(|(account, kind, limit, euro)| Op::Change { account, kind, limit, euro }),
    ]
}

/// The specification, spelled out the simple way.
#[derive(Default)]
struct Model {
    /// account -> (issuer?, balance)
    accounts: HashMap<String, (bool, i128)>,
    /// id -> record as decided (transfers and holds)
    records: HashMap<Uuid, TransferRecord>,
    /// account -> settings (absent: the default)
    settings: HashMap<String, AccountSettings>,
}

impl Model {
    fn held(&self, account: &str) -> i128 {
        self.records
            .values()
            .filter(|record| record.transfer.from == account)
            .filter(|record| matches!(record.status, TransferStatus::Hold(hold) if hold.state == HoldState::Pending))
            .map(|record| i128::from(record.transfer.amount_minor))
            .sum()
    }

    fn settings(&self, account: &str) -> AccountSettings {
        self.settings.get(account).copied().unwrap_or_default()
    }

    /// Why a movement of `amount` from `from` to `to` is refused, if it is.
    fn refusal(&self, transfer: &TransferCommand) -> Option<RejectReason> {
        let Some(&(issuer, balance)) = self.accounts.get(&transfer.from) else {
            return Some(RejectReason::FromAccountNotFound);
        };
        if !self.accounts.contains_key(&transfer.to) {
            return Some(RejectReason::ToAccountNotFound);
        }
        match self.settings(&transfer.from).status {
            AccountStatus::Frozen => return Some(RejectReason::FromAccountFrozen),
            AccountStatus::Closed => return Some(RejectReason::FromAccountClosed),
            AccountStatus::Active => {}
        }
        match self.settings(&transfer.to).status {
            AccountStatus::Frozen => return Some(RejectReason::ToAccountFrozen),
            AccountStatus::Closed => return Some(RejectReason::ToAccountClosed),
            AccountStatus::Active => {}
        }
        let limit = i128::from(self.settings(&transfer.from).overdraft_limit_minor);
        let available = balance - self.held(&transfer.from);
        if !issuer && available + limit < i128::from(transfer.amount_minor) {
            return Some(RejectReason::InsufficientFunds);
        }
        None
    }

    fn account(&self, account: &str) -> Outcome {
        let (issuer, balance) = self.accounts[account];
        Outcome::Account(Account {
            account_id: account.into(),
            currency: usd(),
            allow_negative_balance: issuer,
            balance_minor: balance,
            settings: self.settings(account),
        })
    }

    fn change(&mut self, account: &str, change: AccountChange) -> Outcome {
        let Some(&(issuer, balance)) = self.accounts.get(account) else {
            return Outcome::AccountRefused(AccountRefusal::NotFound);
        };
        let settings = self.settings(account);
        let refusal = match change {
            _ if settings.status == AccountStatus::Closed => {
                return if change == AccountChange::Close {
                    self.account(account)
                } else {
                    Outcome::AccountRefused(AccountRefusal::Closed)
                };
            }
            AccountChange::Close if balance != 0 => Some(AccountRefusal::NotEmpty),
            AccountChange::Close if self.held(account) != 0 => {
                Some(AccountRefusal::HasPendingHolds)
            }
            AccountChange::SetOverdraftLimit { .. } if issuer => {
                Some(AccountRefusal::UnlimitedOverdraft)
            }
            AccountChange::SetOverdraftLimit { currency, .. } if currency != usd() => {
                Some(AccountRefusal::CurrencyMismatch)
            }
            AccountChange::SetOverdraftLimit { limit_minor, .. }
                if balance - self.held(account) + i128::from(limit_minor) < 0 =>
            {
                Some(AccountRefusal::LimitBelowDebt)
            }
            _ => None,
        };
        if let Some(refusal) = refusal {
            return Outcome::AccountRefused(refusal);
        }
        let after = match change {
            AccountChange::Freeze => AccountSettings {
                status: AccountStatus::Frozen,
                ..settings
            },
            AccountChange::Unfreeze => AccountSettings {
                status: AccountStatus::Active,
                ..settings
            },
            AccountChange::Close => AccountSettings {
                status: AccountStatus::Closed,
                ..settings
            },
            AccountChange::SetOverdraftLimit { limit_minor, .. } => AccountSettings {
                overdraft_limit_minor: limit_minor,
                ..settings
            },
        };
        self.settings.insert(account.into(), after);
        self.account(account)
    }

    fn shift(&mut self, from: &str, to: &str, amount: i64) {
        self.accounts.get_mut(from).unwrap().1 -= i128::from(amount);
        self.accounts.get_mut(to).unwrap().1 += i128::from(amount);
    }

    fn record(&mut self, record: TransferRecord) -> Outcome {
        self.records
            .insert(record.transfer.transaction_id, record.clone());
        Outcome::Transfer(record)
    }

    fn set_state(&mut self, id: Uuid, state: HoldState) -> Outcome {
        let record = self.records.get_mut(&id).unwrap();
        let TransferStatus::Hold(hold) = &mut record.status else {
            unreachable!()
        };
        hold.state = state;
        Outcome::Transfer(record.clone())
    }

    fn step(&mut self, command: &Command, meta: EntryMeta) -> Outcome {
        match command {
            Command::Transfer(transfer) => {
                if let Some(original) = self.records.get(&transfer.transaction_id) {
                    return if original.transfer == *transfer && original.status.hold().is_none() {
                        Outcome::Transfer(original.clone())
                    } else {
                        Outcome::Conflict(Conflict::TransactionIdReused)
                    };
                }
                let status = match self.refusal(transfer) {
                    Some(reason) => TransferStatus::Rejected(reason),
                    None => {
                        self.shift(&transfer.from, &transfer.to, transfer.amount_minor);
                        TransferStatus::Completed
                    }
                };
                self.record(TransferRecord {
                    transfer: transfer.clone(),
                    status,
                    meta,
                    settlement: None,
                })
            }
            Command::Authorize {
                transfer,
                timeout_ms,
                cross_partition: false,
            } => {
                if !(1..=HOLD_TIMEOUT_MS_MAX).contains(timeout_ms) {
                    return Outcome::Malformed(Malformed::HoldTimeoutOutOfRange);
                }
                if let Some(original) = self.records.get(&transfer.transaction_id) {
                    let same = original.transfer == *transfer
                        && original.status.hold().is_some_and(|hold| {
                            hold.expires_at_ms == original.meta.timestamp_ms + timeout_ms
                        });
                    return if same {
                        Outcome::Transfer(original.clone())
                    } else {
                        Outcome::Conflict(Conflict::TransactionIdReused)
                    };
                }
                let state = match self.refusal(transfer) {
                    Some(reason) => HoldState::Refused(reason),
                    None => HoldState::Pending,
                };
                self.record(TransferRecord {
                    transfer: transfer.clone(),
                    status: TransferStatus::Hold(Hold {
                        expires_at_ms: meta.timestamp_ms + timeout_ms,
                        cross_partition: false,
                        state,
                    }),
                    meta,
                    settlement: None,
                })
            }
            Command::Capture {
                transaction_id,
                from,
                amount_minor,
            } => {
                if amount_minor.is_some_and(|amount| amount < 1) {
                    return Outcome::Malformed(Malformed::AmountOutOfRange);
                }
                let Some(record) = self.records.get(transaction_id).cloned() else {
                    return Outcome::Hold(HoldRefusal::NotFound);
                };
                if record.transfer.from != *from {
                    return Outcome::Hold(HoldRefusal::NotFound);
                }
                let Some(hold) = record.status.hold().copied() else {
                    return Outcome::Hold(HoldRefusal::NotAHold);
                };
                let wanted = amount_minor.unwrap_or(record.transfer.amount_minor);
                match hold.state {
                    HoldState::Pending if meta.timestamp_ms >= hold.expires_at_ms => {
                        self.set_state(*transaction_id, HoldState::Expired { meta })
                    }
                    HoldState::Pending if wanted > record.transfer.amount_minor => {
                        Outcome::Hold(HoldRefusal::AmountExceedsHold)
                    }
                    HoldState::Pending
                        if [&record.transfer.from, &record.transfer.to]
                            .iter()
                            .any(|account| {
                                self.settings(account).status == AccountStatus::Frozen
                            }) =>
                    {
                        Outcome::Hold(HoldRefusal::AccountFrozen)
                    }
                    HoldState::Pending
                        if self.settings(&record.transfer.to).status == AccountStatus::Closed =>
                    {
                        Outcome::Hold(HoldRefusal::AccountClosed)
                    }
                    HoldState::Pending => {
                        self.shift(&record.transfer.from, &record.transfer.to, wanted);
                        self.set_state(
                            *transaction_id,
                            HoldState::Captured {
                                amount_minor: wanted,
                                meta,
                            },
                        )
                    }
                    HoldState::Captured { amount_minor, .. } if amount_minor == wanted => {
                        Outcome::Transfer(record)
                    }
                    HoldState::Captured { .. } => Outcome::Hold(HoldRefusal::AlreadyCaptured),
                    HoldState::Voided { .. } => Outcome::Hold(HoldRefusal::AlreadyVoided),
                    HoldState::Expired { .. } => Outcome::Hold(HoldRefusal::Expired),
                    HoldState::Refused(_) => Outcome::Hold(HoldRefusal::NotAuthorized),
                    HoldState::Capturing { .. } | HoldState::CaptureRefused { .. } => {
                        unreachable!("one partition: no cross-partition capture")
                    }
                }
            }
            Command::Void { transaction_id, .. } | Command::Expire { transaction_id } => {
                let void = matches!(command, Command::Void { .. });
                let Some(record) = self.records.get(transaction_id).cloned() else {
                    return Outcome::Hold(HoldRefusal::NotFound);
                };
                if let Command::Void { from, .. } = command
                    && record.transfer.from != *from
                {
                    return Outcome::Hold(HoldRefusal::NotFound);
                }
                let Some(hold) = record.status.hold().copied() else {
                    return Outcome::Hold(HoldRefusal::NotAHold);
                };
                match hold.state {
                    HoldState::Pending if meta.timestamp_ms >= hold.expires_at_ms => {
                        self.set_state(*transaction_id, HoldState::Expired { meta })
                    }
                    HoldState::Pending if void => {
                        self.set_state(*transaction_id, HoldState::Voided { meta })
                    }
                    _ if !void => Outcome::Transfer(record),
                    HoldState::Voided { .. } => Outcome::Transfer(record),
                    HoldState::Captured { .. } => Outcome::Hold(HoldRefusal::AlreadyCaptured),
                    HoldState::Expired { .. } => Outcome::Hold(HoldRefusal::Expired),
                    HoldState::Refused(_) => Outcome::Hold(HoldRefusal::NotAuthorized),
                    _ => unreachable!("one partition: no cross-partition capture"),
                }
            }
            Command::ChangeAccount { account_id, change } => {
                if let AccountChange::SetOverdraftLimit { limit_minor, .. } = change
                    && *limit_minor < 0
                {
                    return Outcome::Malformed(Malformed::OverdraftLimitOutOfRange);
                }
                self.change(account_id, *change)
            }
            other => unreachable!("not generated: {other:?}"),
        }
    }
}

fn transfer(id: u128, from: usize, to: usize, amount: i64) -> TransferCommand {
    TransferCommand {
        transaction_id: Uuid::from_u128(id),
        from: ACCOUNTS[from].0.into(),
        to: ACCOUNTS[to].0.into(),
        amount_minor: amount,
        currency: usd(),
        annotations: None,
    }
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut ledger = Ledger::new();
    let mut model = Model::default();
    let mut events: Vec<Event> = Vec::new();
    let mut now = 1_700_000_000_000_u64;
    let mut index = 0;
    let mut execute =
        |ledger: &mut Ledger, command: &Command, now: u64, events: &mut Vec<Event>| {
            index += 1;
            let meta = EntryMeta {
                index,
                timestamp_ms: now,
            };
            let (event, outcome) = ledger.execute(command, meta);
            events.extend(event);
            (outcome, meta)
        };
    for (account, issuer) in &ACCOUNTS[..OPENED] {
        let open = Command::OpenAccount {
            account_id: (*account).into(),
            currency: usd(),
            allow_negative_balance: *issuer,
            annotations: None,
        };
        execute(&mut ledger, &open, now, &mut events);
        model.accounts.insert((*account).into(), (*issuer, 0));
    }
    // Fund the others from the bank, outside the id pool.
    for (offset, account) in (1..OPENED).enumerate() {
        let funding = transfer(1_000 + offset as u128, 0, account, 300);
        let (outcome, meta) = execute(
            &mut ledger,
            &Command::Transfer(funding.clone()),
            now,
            &mut events,
        );
        prop_assert_eq!(outcome, model.step(&Command::Transfer(funding), meta));
    }

    for (step, op) in ops.iter().enumerate() {
        let command = match *op {
            Op::Wait { ms } => {
                now += ms;
                continue;
            }
            Op::Transfer {
                id,
                from,
                to,
                amount,
            } if from != to => Command::Transfer(transfer(id, from, to, amount)),
            Op::Authorize {
                id,
                from,
                to,
                amount,
                timeout_ms,
            } if from != to => Command::Authorize {
                transfer: transfer(id, from, to, amount),
                timeout_ms,
                cross_partition: false,
            },
            Op::Transfer { .. } | Op::Authorize { .. } => continue,
            Op::Capture { id, from, amount } => Command::Capture {
                transaction_id: Uuid::from_u128(id),
                from: named_from(&model, id, from),
                amount_minor: amount,
            },
            Op::Void { id, from } => Command::Void {
                transaction_id: Uuid::from_u128(id),
                from: named_from(&model, id, from),
            },
            Op::Expire { id } => Command::Expire {
                transaction_id: Uuid::from_u128(id),
            },
            Op::Change {
                account,
                kind,
                limit,
                euro,
            } => Command::ChangeAccount {
                account_id: ACCOUNTS[account].0.into(),
                change: match kind {
                    0 => AccountChange::Freeze,
                    1 => AccountChange::Unfreeze,
                    2 => AccountChange::Close,
                    _ => AccountChange::SetOverdraftLimit {
                        limit_minor: limit,
                        currency: if euro {
                            Currency::parse("EUR").unwrap()
                        } else {
                            usd()
                        },
                    },
                },
            },
        };
        let before = ledger.clone();
        let events_before = events.len();
        let states_before: HashMap<Uuid, HoldState> = hold_states(&model);
        let (outcome, meta) = execute(&mut ledger, &command, now, &mut events);
        let expected = model.step(&command, meta);
        prop_assert_eq!(&outcome, &expected, "step {}: {:?}", step, command);
        if events.len() == events_before {
            prop_assert_eq!(&ledger, &before, "step {}: a reply changed the state", step);
        }

        // A hold leaves Pending at most once, and never comes back to it.
        for (id, state) in hold_states(&model) {
            if let Some(earlier) = states_before.get(&id)
                && *earlier != HoldState::Pending
            {
                prop_assert_eq!(
                    *earlier,
                    state,
                    "step {}: hold {} changed after it ended",
                    step,
                    id
                );
            }
        }
        // Balances, held amounts, availability, conservation.
        let mut total = 0;
        for account in ledger.accounts() {
            let (issuer, balance) = model.accounts[account.account_id];
            let held = model.held(account.account_id);
            prop_assert_eq!(
                account.balance_minor,
                balance,
                "step {}: {}",
                step,
                account.account_id
            );
            prop_assert_eq!(ledger.held_minor(account.account_id), held);
            let settings = model.settings(account.account_id);
            prop_assert_eq!(ledger.account_settings(account.account_id), settings);
            // Available never below minus the account's current limit (a limit is never
            // lowered below what the account owes).
            prop_assert!(
                issuer
                    || ledger.available_minor(account)
                        >= -i128::from(settings.overdraft_limit_minor),
                "step {}: {:?} overdrawn",
                step,
                account
            );
            prop_assert!(
                settings.status != AccountStatus::Closed || (balance == 0 && held == 0),
                "step {}: closed {:?} is not empty",
                step,
                account
            );
            total += account.balance_minor;
        }
        prop_assert_eq!(total, 0, "step {}: money created or destroyed", step);
        prop_assert_eq!(
            ledger.pending_holds_count(),
            hold_states(&model)
                .values()
                .filter(|state| **state == HoldState::Pending)
                .count()
        );
    }

    let mut replayed = Ledger::new();
    for event in &events {
        evolve(&mut replayed, event);
    }
    prop_assert_eq!(replayed.digest(), ledger.digest());
    prop_assert_eq!(&replayed, &ledger);
    prop_assert_eq!(ledger.digest_from_scratch(), ledger.digest());

    // A snapshot carries the pending holds: the restored ledger decides the same.
    let mut live = ledger.clone();
    live.keep_only_in_flight();
    let bytes = postcard::to_stdvec(&live).unwrap();
    let restored: Ledger = postcard::from_bytes(&bytes).unwrap();
    prop_assert_eq!(restored.digest(), ledger.digest());
    for account in ledger.accounts() {
        prop_assert_eq!(
            restored.held_minor(account.account_id),
            ledger.held_minor(account.account_id)
        );
        prop_assert_eq!(
            restored.account_view(account.account_id),
            ledger.account_view(account.account_id)
        );
    }
    prop_assert_eq!(restored.pending_holds_count(), ledger.pending_holds_count());
    prop_assert_eq!(restored.next_hold_expiry(), ledger.next_hold_expiry());
    Ok(())
}

/// The `from` a capture or void names: the given account, else the record's own (any
/// account for an unknown id).
fn named_from(model: &Model, id: u128, pick: Option<usize>) -> String {
    match (pick, model.records.get(&Uuid::from_u128(id))) {
        (Some(account), _) => ACCOUNTS[account].0.into(),
        (None, Some(record)) => record.transfer.from.clone(),
        (None, None) => ACCOUNTS[id as usize % ACCOUNTS.len()].0.into(),
    }
}

fn hold_states(model: &Model) -> HashMap<Uuid, HoldState> {
    model
        .records
        .iter()
        .filter_map(|(id, record)| record.status.hold().map(|hold| (*id, hold.state)))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn holds_agree_with_the_model(ops in prop::collection::vec(op(), 0..160)) {
        run(&ops)?;
    }
}

/// The leader's expiry pass: due holds come earliest first, and an expiry proposed early
/// changes nothing.
#[test]
fn due_holds_expire_in_order_and_not_before_their_time() {
    let mut ledger = Ledger::new();
    let meta = |index, timestamp_ms| EntryMeta {
        index,
        timestamp_ms,
    };
    for (index, (account, issuer)) in [("bank", true), ("alice", false)].into_iter().enumerate() {
        ledger.execute(
            &Command::OpenAccount {
                account_id: account.into(),
                currency: usd(),
                allow_negative_balance: issuer,
                annotations: None,
            },
            meta(index as u64 + 1, 0),
        );
    }
    let hold = |id: u128, timeout_ms| Command::Authorize {
        transfer: TransferCommand {
            transaction_id: Uuid::from_u128(id),
            from: "bank".into(),
            to: "alice".into(),
            amount_minor: 5,
            currency: usd(),
            annotations: None,
        },
        timeout_ms,
        cross_partition: false,
    };
    ledger.execute(&hold(1, 300), meta(3, 1_000));
    ledger.execute(&hold(2, 100), meta(4, 1_000));
    ledger.execute(&hold(3, 200), meta(5, 1_000));
    assert_eq!(ledger.held_minor("bank"), 15);
    assert_eq!(ledger.next_hold_expiry(), Some(1_100));
    let due: Vec<Uuid> = ledger.due_holds(1_200, 10).collect();
    assert_eq!(due, [Uuid::from_u128(2), Uuid::from_u128(3)]);
    assert_eq!(ledger.due_holds(1_200, 1).count(), 1);

    // Too early: nothing changes.
    let expire = |id| Command::Expire {
        transaction_id: Uuid::from_u128(id),
    };
    let (event, _) = ledger.execute(&expire(1), meta(6, 1_299));
    assert_eq!(event, None);
    let (event, outcome) = ledger.execute(&expire(2), meta(7, 1_100));
    assert!(matches!(event, Some(Event::HoldExpired { .. })));
    let Outcome::Transfer(record) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(matches!(
        record.status,
        TransferStatus::Hold(Hold {
            state: HoldState::Expired { .. },
            ..
        })
    ));
    assert_eq!(ledger.held_minor("bank"), 10);
    // A capture at or after the expiry expires the hold instead.
    let capture = Command::Capture {
        transaction_id: Uuid::from_u128(3),
        from: "bank".into(),
        amount_minor: None,
    };
    let (event, _) = ledger.execute(&capture, meta(8, 1_200));
    assert!(matches!(event, Some(Event::HoldExpired { .. })));
    let (_, outcome) = ledger.execute(&capture, meta(9, 1_201));
    assert_eq!(outcome, Outcome::Hold(HoldRefusal::Expired));
    assert_eq!(ledger.account("alice").unwrap().balance_minor, 0);
    assert_eq!(ledger.pending_holds_count(), 1);
}

/// A hold across partitions: the source reserves, a capture debits the captured amount and
/// puts it in flight with the rest released, the target's credit and the source's settle
/// finish it; a refused credit refunds the capture and leaves nothing held.
#[test]
fn a_cross_partition_hold_is_captured_through_credit_and_settle() {
    let meta = |index| EntryMeta {
        index,
        timestamp_ms: 1_000 + index,
    };
    let (mut source, mut target) = (Ledger::new(), Ledger::new());
    let open = |account: &str, issuer| Command::OpenAccount {
        account_id: account.into(),
        currency: usd(),
        allow_negative_balance: issuer,
        annotations: None,
    };
    source.execute(&open("bank", true), meta(1));
    source.execute(&open("alice", false), meta(2));
    target.execute(&open("bob", false), meta(1));
    let funding = TransferCommand {
        transaction_id: Uuid::from_u128(100),
        from: "bank".into(),
        to: "alice".into(),
        amount_minor: 100,
        currency: usd(),
        annotations: None,
    };
    source.execute(&Command::Transfer(funding), meta(3));
    let hold = |id: u128, to: &str| Command::Authorize {
        transfer: TransferCommand {
            transaction_id: Uuid::from_u128(id),
            from: "alice".into(),
            to: to.into(),
            amount_minor: 60,
            currency: usd(),
            annotations: None,
        },
        timeout_ms: 60_000,
        cross_partition: true,
    };
    let capture = |id: u128, amount| Command::Capture {
        transaction_id: Uuid::from_u128(id),
        from: "alice".into(),
        amount_minor: Some(amount),
    };
    let alice = |ledger: &Ledger| {
        let account = ledger.account("alice").unwrap();
        (account.balance_minor, ledger.available_minor(account))
    };

    // Held: the balance stays, the available amount drops; a second hold does not fit.
    source.execute(&hold(1, "bob"), meta(4));
    assert_eq!(alice(&source), (100, 40));
    let (_, outcome) = source.execute(&hold(2, "bob"), meta(5));
    assert!(matches!(
        outcome,
        Outcome::Transfer(TransferRecord {
            status: TransferStatus::Hold(Hold {
                state: HoldState::Refused(RejectReason::InsufficientFunds),
                ..
            }),
            ..
        })
    ));

    // Captured in part: 25 leaves, the other 35 are free again, the capture is in flight.
    source.execute(&capture(1, 25), meta(6));
    assert_eq!(alice(&source), (75, 75));
    let in_flight: Vec<TransferCommand> = source
        .in_flight()
        .map(TransferRecord::credit_command)
        .collect();
    assert_eq!(in_flight.len(), 1);
    assert_eq!(in_flight[0].amount_minor, 25);
    // A retry of the capture answers the capture; another amount is refused.
    assert_eq!(source.execute(&capture(1, 25), meta(7)).0, None);
    assert_eq!(
        source.execute(&capture(1, 30), meta(8)).1,
        Outcome::Hold(HoldRefusal::AlreadyCaptured)
    );
    let (_, credit) = target.execute(&Command::Credit(in_flight[0].clone()), meta(2));
    let Outcome::Credit(credit) = credit else {
        panic!("{credit:?}")
    };
    let (_, settled) = source.execute(
        &Command::Settle {
            transaction_id: Uuid::from_u128(1),
            credit: credit.outcome,
            credit_index: credit.meta.index,
        },
        meta(9),
    );
    let Outcome::Transfer(settled) = settled else {
        panic!("{settled:?}")
    };
    assert!(matches!(
        settled.status,
        TransferStatus::Hold(Hold {
            state: HoldState::Captured {
                amount_minor: 25,
                ..
            },
            ..
        })
    ));
    assert_eq!(target.account("bob").unwrap().balance_minor, 25);
    assert_eq!(source.in_flight_count(), 0);
    assert!(
        source
            .outflow_by_currency()
            .values()
            .all(|outflow| *outflow == 25)
    );

    // A capture to an account the target does not have is refunded; nothing stays held.
    source.execute(&hold(3, "nobody"), meta(10));
    source.execute(&capture(3, 50), meta(11));
    assert_eq!(alice(&source), (25, 25));
    let credit_command = source.in_flight().next().unwrap().credit_command();
    let (_, refused) = target.execute(&Command::Credit(credit_command), meta(3));
    let Outcome::Credit(refused) = refused else {
        panic!("{refused:?}")
    };
    let (_, outcome) = source.execute(
        &Command::Settle {
            transaction_id: Uuid::from_u128(3),
            credit: refused.outcome,
            credit_index: refused.meta.index,
        },
        meta(12),
    );
    let Outcome::Transfer(record) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(matches!(
        record.status,
        TransferStatus::Hold(Hold {
            state: HoldState::CaptureRefused {
                amount_minor: 50,
                reason: RejectReason::ToAccountNotFound
            },
            ..
        })
    ));
    assert_eq!(alice(&source), (75, 75));
    assert_eq!(
        source
            .execute(
                &Command::Void {
                    transaction_id: Uuid::from_u128(3),
                    from: "alice".into(),
                },
                meta(13)
            )
            .1,
        Outcome::Hold(HoldRefusal::CaptureRefused)
    );
    assert_eq!(source.digest_from_scratch(), source.digest());
}
