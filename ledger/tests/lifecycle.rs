//! Account lifecycle, case by case: freeze and unfreeze, close, overdraft limits, and what
//! each does to transfers, credits, holds, snapshots and the digest. (tests/holds.rs checks
//! the same rules against a model over random sequences.)

use ledger::{
    AccountChange, AccountRefusal, AccountSettings, AccountStatus, Command, CreditOutcome,
    Currency, EntryMeta, Event, HoldRefusal, Ledger, Malformed, Outcome, RejectReason,
    TransferCommand, TransferStatus, evolve,
};
use uuid::Uuid;

fn usd() -> Currency {
    Currency::parse("USD").unwrap()
}

/// One partition's ledger with every event it applied, stamped one entry after another.
struct Partition {
    ledger: Ledger,
    events: Vec<Event>,
    index: u64,
}

impl Partition {
    /// "bank" (may go negative) and "alice", "bob" funded with 100 each.
    fn funded() -> Partition {
        let mut partition = Partition {
            ledger: Ledger::new(),
            events: Vec::new(),
            index: 0,
        };
        for (account, issuer) in [("bank", true), ("alice", false), ("bob", false)] {
            partition.run(Command::OpenAccount {
                account_id: account.into(),
                currency: usd(),
                allow_negative_balance: issuer,
                annotations: None,
            });
        }
        for (id, account) in [(900, "alice"), (901, "bob")] {
            let funded = partition.run(transfer(id, "bank", account, 100));
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

    fn change(&mut self, account: &str, change: AccountChange) -> Outcome {
        self.run(Command::ChangeAccount {
            account_id: account.into(),
            change,
        })
    }

    fn status(&self, account: &str) -> AccountStatus {
        self.ledger.account_settings(account).status
    }

    fn balance(&self, account: &str) -> i128 {
        self.ledger.account(account).unwrap().balance_minor
    }
}

fn transfer(id: u128, from: &str, to: &str, amount_minor: i64) -> Command {
    Command::Transfer(transfer_command(id, from, to, amount_minor))
}

fn transfer_command(id: u128, from: &str, to: &str, amount_minor: i64) -> TransferCommand {
    TransferCommand {
        transaction_id: Uuid::from_u128(id),
        from: from.into(),
        to: to.into(),
        amount_minor,
        currency: usd(),
        annotations: None,
    }
}

fn limit(limit_minor: i64) -> AccountChange {
    AccountChange::SetOverdraftLimit {
        limit_minor,
        currency: usd(),
    }
}

#[track_caller]
fn rejected(outcome: Outcome) -> RejectReason {
    match outcome {
        Outcome::Transfer(record) => match record.status {
            TransferStatus::Rejected(reason) => reason,
            other => panic!("not rejected: {other:?}"),
        },
        other => panic!("not a transfer: {other:?}"),
    }
}

#[track_caller]
fn settings(outcome: Outcome) -> AccountSettings {
    match outcome {
        Outcome::Account(account) => account.settings,
        other => panic!("not an account: {other:?}"),
    }
}

#[test]
fn a_frozen_account_neither_sends_nor_receives_until_unfrozen() {
    let mut partition = Partition::funded();
    let frozen = partition.change("alice", AccountChange::Freeze);
    assert_eq!(settings(frozen).status, AccountStatus::Frozen);
    assert_eq!(
        rejected(partition.run(transfer(1, "alice", "bob", 10))),
        RejectReason::FromAccountFrozen
    );
    assert_eq!(
        rejected(partition.run(transfer(2, "bob", "alice", 10))),
        RejectReason::ToAccountFrozen
    );
    assert_eq!(
        RejectReason::ToAccountFrozen.reason(),
        "ACCOUNT_FROZEN",
        "one reason for both sides, the field tells which"
    );
    // Freezing again changes nothing and records nothing.
    let events = partition.events.len();
    assert_eq!(
        settings(partition.change("alice", AccountChange::Freeze)).status,
        AccountStatus::Frozen
    );
    assert_eq!(partition.events.len(), events);

    partition.change("alice", AccountChange::Unfreeze);
    assert_eq!(partition.status("alice"), AccountStatus::Active);
    let moved = partition.run(transfer(3, "alice", "bob", 10));
    assert!(
        matches!(moved, Outcome::Transfer(record) if record.status == TransferStatus::Completed)
    );
    assert_eq!(partition.balance("alice"), 90);
}

#[test]
fn close_needs_a_zero_balance_no_pending_hold_and_is_final() {
    let mut partition = Partition::funded();
    assert_eq!(
        partition.change("alice", AccountChange::Close),
        Outcome::AccountRefused(AccountRefusal::NotEmpty)
    );
    partition.run(transfer(1, "alice", "bob", 100));
    // A hold covered by an overdraft limit: the balance is zero, a hold is pending.
    partition.change("alice", limit(30));
    let hold = partition.run(Command::Authorize {
        transfer: transfer_command(2, "alice", "bob", 20),
        timeout_ms: 60_000,
        cross_partition: false,
    });
    assert!(
        matches!(hold, Outcome::Transfer(record) if record.status.hold().is_some_and(|hold| hold.is_pending()))
    );
    assert_eq!(
        partition.change("alice", AccountChange::Close),
        Outcome::AccountRefused(AccountRefusal::HasPendingHolds)
    );
    partition.run(Command::Void {
        transaction_id: Uuid::from_u128(2),
        from: "alice".into(),
    });
    assert_eq!(
        settings(partition.change("alice", AccountChange::Close)).status,
        AccountStatus::Closed
    );
    // Closed is final: nothing changes it, nothing moves through it; closing again answers.
    for change in [AccountChange::Freeze, AccountChange::Unfreeze, limit(5)] {
        assert_eq!(
            partition.change("alice", change),
            Outcome::AccountRefused(AccountRefusal::Closed)
        );
    }
    assert_eq!(
        settings(partition.change("alice", AccountChange::Close)).status,
        AccountStatus::Closed
    );
    assert_eq!(
        rejected(partition.run(transfer(3, "bob", "alice", 1))),
        RejectReason::ToAccountClosed
    );
    assert_eq!(
        rejected(partition.run(transfer(4, "alice", "bob", 1))),
        RejectReason::FromAccountClosed
    );
    assert_eq!(
        partition.change("nobody", AccountChange::Freeze),
        Outcome::AccountRefused(AccountRefusal::NotFound)
    );
}

#[test]
fn an_overdraft_limit_lets_an_ordinary_account_go_that_far_below_zero() {
    let mut partition = Partition::funded();
    assert_eq!(
        settings(partition.change("alice", limit(50))).overdraft_limit_minor,
        50
    );
    assert_eq!(
        rejected(partition.run(transfer(1, "alice", "bob", 151))),
        RejectReason::InsufficientFunds
    );
    partition.run(transfer(2, "alice", "bob", 150));
    assert_eq!(partition.balance("alice"), -50);
    // Lowering the limit below the debt is allowed; it only stops further debits.
    partition.change("alice", limit(0));
    assert_eq!(
        rejected(partition.run(transfer(3, "alice", "bob", 1))),
        RejectReason::InsufficientFunds
    );
    assert_eq!(partition.balance("alice"), -50);
    // Issuers have no limit to set; the limit is in the account's currency; in range.
    assert_eq!(
        partition.change("bank", limit(10)),
        Outcome::AccountRefused(AccountRefusal::UnlimitedOverdraft)
    );
    assert_eq!(
        partition.change(
            "alice",
            AccountChange::SetOverdraftLimit {
                limit_minor: 10,
                currency: Currency::parse("EUR").unwrap(),
            }
        ),
        Outcome::AccountRefused(AccountRefusal::CurrencyMismatch)
    );
    assert_eq!(
        partition.change("alice", limit(-1)),
        Outcome::Malformed(Malformed::OverdraftLimitOutOfRange)
    );
    assert_eq!(
        partition.change("alice", limit(ledger::AMOUNT_MINOR_MAX + 1)),
        Outcome::Malformed(Malformed::OverdraftLimitOutOfRange)
    );
    // A limit is never lowered below what the account owes (alice is at -50): the
    // property test found a snapshot refusing the state that lowering left behind.
    assert_eq!(
        partition.change("alice", limit(49)),
        Outcome::AccountRefused(AccountRefusal::LimitBelowDebt)
    );
    assert_eq!(
        settings(partition.change("alice", limit(50))).overdraft_limit_minor,
        50
    );
}

#[test]
fn a_hold_on_a_frozen_account_waits_captures_after_unfreezing_and_can_be_voided() {
    let mut partition = Partition::funded();
    partition.run(Command::Authorize {
        transfer: transfer_command(1, "alice", "bob", 40),
        timeout_ms: 60_000,
        cross_partition: false,
    });
    partition.change("bob", AccountChange::Freeze);
    let capture = Command::Capture {
        transaction_id: Uuid::from_u128(1),
        from: "alice".into(),
        amount_minor: None,
    };
    assert_eq!(
        partition.run(capture.clone()),
        Outcome::Hold(HoldRefusal::AccountFrozen)
    );
    assert_eq!(partition.ledger.held_minor("alice"), 40, "still held");
    partition.change("bob", AccountChange::Unfreeze);
    partition.run(capture);
    assert_eq!(
        (partition.balance("alice"), partition.balance("bob")),
        (60, 140)
    );

    // A void releases a frozen account's hold.
    partition.run(Command::Authorize {
        transfer: transfer_command(2, "alice", "bob", 10),
        timeout_ms: 60_000,
        cross_partition: false,
    });
    partition.change("alice", AccountChange::Freeze);
    partition.run(Command::Void {
        transaction_id: Uuid::from_u128(2),
        from: "alice".into(),
    });
    assert_eq!(partition.ledger.held_minor("alice"), 0);
}

#[test]
fn a_credit_to_a_frozen_or_closed_account_is_refused_and_the_source_cannot_close_before_its_refund()
{
    // Source partition: alice sends to "carol" of another partition.
    let mut source = Partition::funded();
    let mut target = Partition {
        ledger: Ledger::new(),
        events: Vec::new(),
        index: 0,
    };
    target.run(Command::OpenAccount {
        account_id: "carol".into(),
        currency: usd(),
        allow_negative_balance: false,
        annotations: None,
    });
    target.change("carol", AccountChange::Freeze);
    let out = transfer_command(1, "alice", "carol", 100);
    let debited = source.run(Command::TransferOut(out.clone()));
    assert!(
        matches!(debited, Outcome::Transfer(record) if record.status == TransferStatus::InFlight)
    );
    // Zero balance, but the transfer may still come back: no close until it settles.
    assert_eq!(source.balance("alice"), 0);
    assert_eq!(
        source.change("alice", AccountChange::Close),
        Outcome::AccountRefused(AccountRefusal::HasTransfersInFlight)
    );
    let Outcome::Credit(credit) = target.run(Command::Credit(out.clone())) else {
        panic!("a credit answers with its record")
    };
    assert_eq!(
        credit.outcome,
        CreditOutcome::Refused(RejectReason::ToAccountFrozen)
    );
    // A snapshot taken while the transfer is in flight still knows it blocks the close.
    let mut live = source.ledger.clone();
    live.keep_only_in_flight();
    let restored: Ledger = postcard::from_bytes(&postcard::to_stdvec(&live).unwrap()).unwrap();
    let mut restored_partition = Partition {
        ledger: restored,
        events: Vec::new(),
        index: source.index,
    };
    assert_eq!(
        restored_partition.change("alice", AccountChange::Close),
        Outcome::AccountRefused(AccountRefusal::HasTransfersInFlight)
    );
    source.run(Command::Settle {
        transaction_id: out.transaction_id,
        credit: credit.outcome,
        credit_index: credit.meta.index,
    });
    assert_eq!(source.balance("alice"), 100, "refunded");
    source.run(transfer(2, "alice", "bob", 100));
    assert_eq!(
        settings(source.change("alice", AccountChange::Close)).status,
        AccountStatus::Closed
    );
}

#[test]
fn settings_survive_replay_and_snapshots_and_enter_the_digest() {
    let mut partition = Partition::funded();
    let digest_before = partition.ledger.digest();
    partition.change("alice", limit(25));
    partition.change("bob", AccountChange::Freeze);
    assert_ne!(partition.ledger.digest(), digest_before);
    assert_eq!(
        partition.ledger.digest(),
        partition.ledger.digest_from_scratch()
    );

    let mut replayed = Ledger::new();
    for event in &partition.events {
        evolve(&mut replayed, event);
    }
    assert_eq!(replayed, partition.ledger);
    assert_eq!(replayed.digest(), partition.ledger.digest());

    let bytes = postcard::to_stdvec(&partition.ledger).unwrap();
    let restored: Ledger = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(restored.digest(), partition.ledger.digest());
    assert_eq!(
        restored.account_settings("bob").status,
        AccountStatus::Frozen
    );
    assert_eq!(restored.account_settings("alice").overdraft_limit_minor, 25);

    // Back to the default settings: the digest is what it was before any change.
    partition.change("alice", limit(0));
    partition.change("bob", AccountChange::Unfreeze);
    assert_eq!(partition.ledger.changed_accounts_count(), 0);
    assert_eq!(partition.ledger.digest(), digest_before);
}
