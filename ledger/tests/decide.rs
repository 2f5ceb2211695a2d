//! Given/when/then table tests of `decide` and `Ledger::execute`, `evolve`'s refusals,
//! the digest, and serde round trips.

use ledger::state::Format2;
use ledger::{
    AMOUNT_MINOR_MAX, Account, AccountSettings, Command, Conflict, CreditOutcome, Currency,
    Decision, EntryMeta, Event, Ledger, Malformed, Outcome, RejectReason, TransferCommand,
    TransferRecord, TransferStatus, decide, evolve,
};
use uuid::Uuid;

fn currency(code: &str) -> Currency {
    Currency::parse(code).unwrap()
}

/// Meta of the n-th given command (1-based), distinct per command so that tests can tell
/// an original record from a retry.
fn meta(index: u64) -> EntryMeta {
    EntryMeta {
        index,
        timestamp_ms: 1_700_000_000_000 + index * 1000,
    }
}

/// Meta of the command under test.
const WHEN: EntryMeta = EntryMeta {
    index: 100,
    timestamp_ms: 1_800_000_000_000,
};

fn open(account_id: &str, code: &str, allow_negative_balance: bool) -> Command {
    Command::OpenAccount {
        account_id: account_id.into(),
        currency: currency(code),
        allow_negative_balance,
        annotations: None,
    }
}

fn tc(id: u128, from: &str, to: &str, amount_minor: i64, code: &str) -> TransferCommand {
    TransferCommand {
        transaction_id: Uuid::from_u128(id),
        from: from.into(),
        to: to.into(),
        amount_minor,
        currency: currency(code),
        annotations: None,
    }
}

fn transfer(id: u128, from: &str, to: &str, amount_minor: i64, code: &str) -> Command {
    Command::Transfer(tc(id, from, to, amount_minor, code))
}

fn opened(account_id: &str, code: &str, allow_negative_balance: bool) -> Decision {
    Decision::Apply(Event::AccountOpened {
        account_id: account_id.into(),
        currency: currency(code),
        allow_negative_balance,
        annotations: None,
    })
}

fn completed(transfer: TransferCommand) -> Decision {
    Decision::Apply(Event::TransferCompleted {
        transfer,
        meta: WHEN,
    })
}

fn rejected(transfer: TransferCommand, reason: RejectReason) -> Decision {
    Decision::Apply(Event::TransferRejected {
        transfer,
        reason,
        meta: WHEN,
    })
}

fn existing(
    account_id: &str,
    code: &str,
    allow_negative_balance: bool,
    balance_minor: i128,
) -> Decision {
    Decision::Reply(Outcome::Account(Account {
        account_id: account_id.into(),
        currency: currency(code),
        allow_negative_balance,
        balance_minor,
        settings: AccountSettings::default(),
    }))
}

fn original(transfer: TransferCommand, status: TransferStatus, meta: EntryMeta) -> Decision {
    Decision::Reply(Outcome::Transfer(TransferRecord {
        transfer,
        status,
        meta,
        settlement: None,
    }))
}

fn conflict(conflict: Conflict) -> Decision {
    Decision::Reply(Outcome::Conflict(conflict))
}

/// Runs `given` through `execute` (the n-th with `meta(n)`), then checks that `decide`
/// on `when` gives `then`, and that `execute` agrees: a reply leaves the state untouched;
/// an applied event is returned and answered with the state it created.
#[track_caller]
fn check(given: &[Command], when: Command, then: Decision) {
    let mut ledger = Ledger::new();
    for (position, command) in given.iter().enumerate() {
        ledger.execute(command, meta(position as u64 + 1));
    }
    assert_eq!(decide(&ledger, &when, WHEN), then, "decide({when:?})");

    let before = ledger.clone();
    let (event, outcome) = ledger.execute(&when, WHEN);
    match then {
        Decision::Reply(reply) => {
            assert_eq!(event, None);
            assert_eq!(outcome, reply);
            assert_eq!(ledger, before, "a reply must not change state");
            assert_eq!(ledger.digest(), before.digest());
        }
        Decision::Apply(applied) => {
            assert_eq!(event.as_ref(), Some(&applied));
            let expected = match &applied {
                Event::AccountOpened { account_id, .. }
                | Event::AccountChanged { account_id, .. } => {
                    Outcome::Account(ledger.account_view(account_id).unwrap())
                }
                Event::TransferCompleted { transfer, .. }
                | Event::TransferRejected { transfer, .. }
                | Event::TransferDebited { transfer, .. } => {
                    Outcome::Transfer(ledger.transfer(&transfer.transaction_id).unwrap().clone())
                }
                Event::TransferSettled { transaction_id, .. }
                | Event::TransferRefunded { transaction_id, .. }
                | Event::HoldCaptured { transaction_id, .. }
                | Event::HoldCaptureDebited { transaction_id, .. }
                | Event::HoldVoided { transaction_id, .. }
                | Event::HoldExpired { transaction_id, .. } => {
                    Outcome::Transfer(ledger.transfer(transaction_id).unwrap().clone())
                }
                Event::HoldAuthorized { transfer, .. } | Event::HoldRefused { transfer, .. } => {
                    Outcome::Transfer(ledger.transfer(&transfer.transaction_id).unwrap().clone())
                }
                Event::TransferCredited { transfer, .. }
                | Event::CreditRefused { transfer, .. } => {
                    Outcome::Credit(ledger.credit(&transfer.transaction_id).unwrap().clone())
                }
                Event::LegsCompleted { legs, .. }
                | Event::LegsRejected { legs, .. }
                | Event::LegsPrepared { legs, .. }
                | Event::LegsPartRefused { legs, .. }
                | Event::LegsResolved { legs, .. }
                | Event::LegsAborted { legs, .. } => {
                    Outcome::Legs(ledger.legs_record(&legs.transaction_id).unwrap().clone())
                }
                Event::LegsFinished { transaction_id, .. } => {
                    Outcome::Legs(ledger.legs_record(transaction_id).unwrap().clone())
                }
            };
            assert_eq!(outcome, expected);
            assert_ne!(
                ledger.digest(),
                before.digest(),
                "an applied event changes state"
            );
            match &outcome {
                Outcome::Account(account) => assert!(
                    account.balance_minor == 0 || matches!(applied, Event::AccountChanged { .. })
                ),
                Outcome::Transfer(record) => assert!(
                    record.meta == WHEN
                        || record.settlement.is_some()
                        || record.status.hold().is_some()
                ),
                Outcome::Credit(record) => assert_eq!(record.meta, WHEN),
                // A step after a set's first keeps the first's position.
                Outcome::Legs(record) => assert!(
                    record.meta == WHEN
                        || matches!(
                            applied,
                            Event::LegsResolved { .. } | Event::LegsFinished { .. }
                        )
                ),
                Outcome::Conflict(_)
                | Outcome::Malformed(_)
                | Outcome::Hold(_)
                | Outcome::AccountRefused(_) => {
                    panic!("an applied event never answers with a conflict or a refusal")
                }
            }
        }
    }
    let outflow = ledger.outflow_by_currency();
    assert!(
        ledger
            .totals_by_currency()
            .iter()
            .all(|(currency, total)| total + outflow.get(currency).copied().unwrap_or(0) == 0),
        "money was created or destroyed"
    );
}

#[test]
fn open_account() {
    use Conflict::AccountExistsWithOtherParameters as Other;
    let funded = [
        open("bank", "USD", true),
        open("alice", "USD", false),
        transfer(1, "bank", "alice", 500, "USD"),
    ];
    check(
        &[],
        open("alice", "USD", false),
        opened("alice", "USD", false),
    );
    check(&[], open("bank", "JPY", true), opened("bank", "JPY", true));
    check(
        &[open("bob", "USD", false)],
        open("alice", "USD", false),
        opened("alice", "USD", false),
    );
    check(
        &[open("alice", "USD", false)],
        open("alice", "USD", false),
        existing("alice", "USD", false, 0),
    );
    check(
        &funded,
        open("alice", "USD", false),
        existing("alice", "USD", false, 500),
    );
    check(
        &funded,
        open("bank", "USD", true),
        existing("bank", "USD", true, -500),
    );
    check(
        &[open("alice", "USD", false)],
        open("alice", "EUR", false),
        conflict(Other),
    );
    check(
        &[open("alice", "USD", false)],
        open("alice", "USD", true),
        conflict(Other),
    );
    check(
        &[open("bank", "USD", true)],
        open("bank", "USD", false),
        conflict(Other),
    );
    check(
        &[open("alice", "USD", false)],
        open("alice", "EUR", true),
        conflict(Other),
    );
}

#[test]
fn transfer_decisions() {
    use RejectReason::*;
    let accounts = [
        open("bank", "USD", true),
        open("alice", "USD", false),
        open("bob", "USD", false),
        open("eve", "EUR", false),
        open("bank-eur", "EUR", true),
        transfer(1, "bank", "alice", 1_000, "USD"),
    ];
    let a = &accounts;
    // Completed, at and below the balance boundary.
    check(
        a,
        transfer(9, "alice", "bob", 1, "USD"),
        completed(tc(9, "alice", "bob", 1, "USD")),
    );
    check(
        a,
        transfer(9, "alice", "bob", 999, "USD"),
        completed(tc(9, "alice", "bob", 999, "USD")),
    );
    check(
        a,
        transfer(9, "alice", "bob", 1_000, "USD"),
        completed(tc(9, "alice", "bob", 1_000, "USD")),
    );
    check(
        a,
        transfer(9, "bob", "alice", 1, "USD"),
        rejected(tc(9, "bob", "alice", 1, "USD"), InsufficientFunds),
    );
    check(
        a,
        transfer(9, "alice", "bob", 1_001, "USD"),
        rejected(tc(9, "alice", "bob", 1_001, "USD"), InsufficientFunds),
    );
    // Issuer accounts may go negative, without limit; ordinary ones may not.
    check(
        a,
        transfer(9, "bank", "bob", 5, "USD"),
        completed(tc(9, "bank", "bob", 5, "USD")),
    );
    let max = AMOUNT_MINOR_MAX;
    check(
        a,
        transfer(9, "bank", "bob", max, "USD"),
        completed(tc(9, "bank", "bob", max, "USD")),
    );
    check(
        a,
        transfer(9, "bank-eur", "eve", 7, "EUR"),
        completed(tc(9, "bank-eur", "eve", 7, "EUR")),
    );
    check(
        a,
        transfer(9, "bob", "bank", max, "USD"),
        rejected(tc(9, "bob", "bank", max, "USD"), InsufficientFunds),
    );
    // Money can flow back into an issuer account.
    check(
        a,
        transfer(9, "alice", "bank", 1_000, "USD"),
        completed(tc(9, "alice", "bank", 1_000, "USD")),
    );
    // Not found, in check order: from before to.
    check(
        a,
        transfer(9, "ghost", "bob", 1, "USD"),
        rejected(tc(9, "ghost", "bob", 1, "USD"), FromAccountNotFound),
    );
    check(
        a,
        transfer(9, "ghost", "nobody", 1, "USD"),
        rejected(tc(9, "ghost", "nobody", 1, "USD"), FromAccountNotFound),
    );
    check(
        a,
        transfer(9, "alice", "ghost", 1, "USD"),
        rejected(tc(9, "alice", "ghost", 1, "USD"), ToAccountNotFound),
    );
    check(
        &[],
        transfer(9, "alice", "bob", 1, "USD"),
        rejected(tc(9, "alice", "bob", 1, "USD"), FromAccountNotFound),
    );
    // Not found beats currency mismatch and insufficient funds.
    check(
        a,
        transfer(9, "eve", "ghost", 1, "USD"),
        rejected(tc(9, "eve", "ghost", 1, "USD"), ToAccountNotFound),
    );
    check(
        a,
        transfer(9, "bob", "ghost", 9, "USD"),
        rejected(tc(9, "bob", "ghost", 9, "USD"), ToAccountNotFound),
    );
    // Currency mismatch on either side, or on both; it beats insufficient funds.
    check(
        a,
        transfer(9, "alice", "eve", 1, "USD"),
        rejected(tc(9, "alice", "eve", 1, "USD"), CurrencyMismatch),
    );
    check(
        a,
        transfer(9, "alice", "eve", 1, "EUR"),
        rejected(tc(9, "alice", "eve", 1, "EUR"), CurrencyMismatch),
    );
    check(
        a,
        transfer(9, "eve", "alice", 1, "EUR"),
        rejected(tc(9, "eve", "alice", 1, "EUR"), CurrencyMismatch),
    );
    check(
        a,
        transfer(9, "alice", "bob", 1, "EUR"),
        rejected(tc(9, "alice", "bob", 1, "EUR"), CurrencyMismatch),
    );
    check(
        a,
        transfer(9, "alice", "bob", 1, "JPY"),
        rejected(tc(9, "alice", "bob", 1, "JPY"), CurrencyMismatch),
    );
    check(
        a,
        transfer(9, "bob", "eve", 9, "USD"),
        rejected(tc(9, "bob", "eve", 9, "USD"), CurrencyMismatch),
    );
}

#[test]
fn transfer_retries_and_reuse() {
    use RejectReason::*;
    use TransferStatus::{Completed, Rejected};
    let reused = conflict(Conflict::TransactionIdReused);
    let base = [
        open("bank", "USD", true),
        open("alice", "USD", false),
        open("bob", "USD", false),
    ];
    // meta(4) is the fourth given command: the original decision.
    let done = [&base[..], &[transfer(7, "bank", "alice", 300, "USD")]].concat();
    let refused = [&base[..], &[transfer(7, "alice", "bob", 300, "USD")]].concat();

    // A retry answers with the original record and original meta, and moves nothing.
    check(
        &done,
        transfer(7, "bank", "alice", 300, "USD"),
        original(tc(7, "bank", "alice", 300, "USD"), Completed, meta(4)),
    );
    let refusal = Rejected(InsufficientFunds);
    check(
        &refused,
        transfer(7, "alice", "bob", 300, "USD"),
        original(tc(7, "alice", "bob", 300, "USD"), refusal, meta(4)),
    );
    // ...forever, even after the state changed so that a fresh decision would differ.
    let refused_then_funded =
        [&refused[..], &[transfer(8, "bank", "alice", 1_000, "USD")]].concat();
    let retry = transfer(7, "alice", "bob", 300, "USD");
    check(
        &refused_then_funded,
        retry,
        original(tc(7, "alice", "bob", 300, "USD"), refusal, meta(4)),
    );
    let done_then_drained = [&done[..], &[transfer(8, "alice", "bob", 300, "USD")]].concat();
    let retry = transfer(7, "bank", "alice", 300, "USD");
    check(
        &done_then_drained,
        retry,
        original(tc(7, "bank", "alice", 300, "USD"), Completed, meta(4)),
    );
    let missing = [transfer(7, "ghost", "alice", 1, "USD")];
    let retry = transfer(7, "ghost", "alice", 1, "USD");
    check(
        &missing,
        retry,
        original(
            tc(7, "ghost", "alice", 1, "USD"),
            Rejected(FromAccountNotFound),
            meta(1),
        ),
    );
    // A retry after the missing account was opened still gets the original rejection.
    let missing_then_opened = [
        &missing[..],
        &[open("ghost", "USD", true), open("alice", "USD", false)],
    ]
    .concat();
    let retry = transfer(7, "ghost", "alice", 1, "USD");
    check(
        &missing_then_opened,
        retry,
        original(
            tc(7, "ghost", "alice", 1, "USD"),
            Rejected(FromAccountNotFound),
            meta(1),
        ),
    );

    // Same id, any field different: conflict, for completed and rejected originals alike.
    check(
        &done,
        transfer(7, "bank", "alice", 301, "USD"),
        reused.clone(),
    );
    check(
        &done,
        transfer(7, "bank", "bob", 300, "USD"),
        reused.clone(),
    );
    check(
        &done,
        transfer(7, "alice", "bob", 300, "USD"),
        reused.clone(),
    );
    check(
        &done,
        transfer(7, "bank", "alice", 300, "EUR"),
        reused.clone(),
    );
    check(
        &refused,
        transfer(7, "alice", "bob", 299, "USD"),
        reused.clone(),
    );
    check(
        &missing,
        transfer(7, "ghost", "alice", 2, "USD"),
        reused.clone(),
    );
    // A fresh id with the same fields is a new transfer, not a retry.
    check(
        &done,
        transfer(8, "bank", "alice", 300, "USD"),
        completed(tc(8, "bank", "alice", 300, "USD")),
    );
}

#[test]
fn reasons_fields_messages() {
    use RejectReason::*;
    let cases = [
        (FromAccountNotFound, "ACCOUNT_NOT_FOUND", "from_account"),
        (ToAccountNotFound, "ACCOUNT_NOT_FOUND", "to_account"),
        (CurrencyMismatch, "CURRENCY_MISMATCH", "currency"),
        (InsufficientFunds, "INSUFFICIENT_FUNDS", "amount"),
    ];
    for (reject, reason, field) in cases {
        assert_eq!((reject.reason(), reject.field()), (reason, field));
        assert!(reject.message().ends_with('.'));
    }
    let conflicts = [
        (
            Conflict::AccountExistsWithOtherParameters,
            "ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS",
        ),
        (Conflict::TransactionIdReused, "TRANSACTION_ID_REUSED"),
    ];
    for (conflict, reason) in conflicts {
        assert_eq!(conflict.reason(), reason);
        assert!(!conflict.message().is_empty());
    }
}

/// A ledger holding one of everything: both account kinds, a completion and a rejection.
fn busy_ledger() -> (Ledger, Vec<Event>) {
    let commands = [
        open("bank", "USD", true),
        open("alice", "USD", false),
        open("yen", "JPY", false),
        transfer(1, "bank", "alice", 250, "USD"),
        transfer(2, "alice", "bank", 9_999, "USD"),
        transfer(3, "alice", "yen", 1, "USD"),
    ];
    let mut ledger = Ledger::new();
    let mut events = Vec::new();
    for (position, command) in commands.iter().enumerate() {
        events.extend(ledger.execute(command, meta(position as u64 + 1)).0);
    }
    (ledger, events)
}

#[test]
fn replay_and_digest() {
    let (ledger, events) = busy_ledger();
    assert_eq!((ledger.accounts_count(), ledger.transfers_count()), (3, 3));
    assert_eq!(
        ledger.totals_by_currency().into_iter().collect::<Vec<_>>(),
        [(currency("JPY"), 0), (currency("USD"), 0)]
    );
    let mut replayed = Ledger::new();
    for event in &events {
        evolve(&mut replayed, event);
    }
    assert_eq!(replayed, ledger);
    assert_eq!(replayed.digest(), ledger.digest());

    // The same state reached in another order has the same digest...
    let mut reordered = Ledger::new();
    for event in [
        &events[2], &events[1], &events[0], &events[3], &events[4], &events[5],
    ] {
        evolve(&mut reordered, event);
    }
    assert_eq!(reordered.digest(), ledger.digest());

    // ...and any difference, meta included, changes it.
    let mut other_meta = Ledger::new();
    for event in &events {
        let mut event = event.clone();
        if let Event::TransferRejected { meta, .. } = &mut event {
            meta.timestamp_ms += 1;
        }
        evolve(&mut other_meta, &event);
    }
    assert_ne!(other_meta.digest(), ledger.digest());
    assert_ne!(Ledger::new().digest(), ledger.digest());
    let mut flag = Ledger::new();
    evolve(
        &mut flag,
        &Event::AccountOpened {
            account_id: "a".into(),
            currency: currency("USD"),
            allow_negative_balance: false,
            annotations: None,
        },
    );
    let mut other_flag = Ledger::new();
    evolve(
        &mut other_flag,
        &Event::AccountOpened {
            account_id: "a".into(),
            currency: currency("USD"),
            allow_negative_balance: true,
            annotations: None,
        },
    );
    assert_ne!(flag.digest(), other_flag.digest());
}

#[test]
fn serde_round_trips_through_postcard() {
    let (ledger, events) = busy_ledger();
    let commands = [
        open("alice", "KWD", true),
        transfer(u128::MAX, "a", "b", AMOUNT_MINOR_MAX, "JPY"),
    ];
    for command in &commands {
        let bytes = postcard::to_allocvec(command).unwrap();
        assert_eq!(&postcard::from_bytes::<Command>(&bytes).unwrap(), command);
    }
    assert_eq!(events.len(), 6);
    for event in &events {
        let bytes = postcard::to_allocvec(event).unwrap();
        assert_eq!(&postcard::from_bytes::<Event>(&bytes).unwrap(), event);
    }
    for record in ledger.transfers() {
        let bytes = postcard::to_allocvec(record).unwrap();
        assert_eq!(
            &postcard::from_bytes::<TransferRecord>(&bytes).unwrap(),
            record
        );
    }
    // A snapshot carries accounts, in-flight transfers and the totals of every record; the
    // finished records are on disk, so the restored ledger is the one that evicted them.
    let bytes = postcard::to_allocvec(&ledger).unwrap();
    let restored: Ledger = postcard::from_bytes(&bytes).unwrap();
    let mut evicted = ledger.clone();
    evicted.evict_all_finished();
    assert_eq!(restored, evicted);
    assert_eq!(restored.digest(), ledger.digest());
    assert_eq!(restored.transfers_count(), ledger.transfers_count());
}

#[test]
fn snapshot_with_broken_invariants_is_refused() {
    let (ledger, _) = busy_ledger();
    let mut accounts: Vec<Account> = ledger
        .accounts()
        .map(ledger::AccountRef::to_account)
        .collect();
    let transfers: Vec<TransferRecord> = ledger.transfers().cloned().collect();
    // The snapshot form of state format 2 (every record, no counts); format 3 adds counts
    // and the record sum, and is checked the same way.
    let encode = |accounts: &Vec<Account>, transfers: &Vec<TransferRecord>| {
        #[derive(serde::Serialize)]
        struct Snapshot<'a> {
            accounts: &'a Vec<Account>,
            transfers: &'a Vec<TransferRecord>,
            credits: Vec<ledger::CreditRecord>,
            outflow: Vec<(ledger::Currency, i128)>,
        }
        postcard::to_allocvec(&Snapshot {
            accounts,
            transfers,
            credits: Vec::new(),
            outflow: Vec::new(),
        })
        .unwrap()
    };
    assert!(postcard::from_bytes::<Format2>(&encode(&accounts, &transfers)).is_ok());
    accounts[0].balance_minor += 1; // money from nowhere
    assert!(postcard::from_bytes::<Format2>(&encode(&accounts, &transfers)).is_err());
    accounts[0].balance_minor -= 1;
    let duplicated = [&accounts[..], &accounts[..1]].concat();
    assert!(postcard::from_bytes::<Format2>(&encode(&duplicated, &transfers)).is_err());
}

/// Replays `events` and then applies `bad`, which must panic.
fn evolve_after(events: &[Event], bad: Event) {
    let mut ledger = Ledger::new();
    for event in events {
        evolve(&mut ledger, event);
    }
    evolve(&mut ledger, &bad);
}

fn opened_event(account_id: &str, code: &str, allow_negative_balance: bool) -> Event {
    Event::AccountOpened {
        account_id: account_id.into(),
        currency: currency(code),
        allow_negative_balance,
        annotations: None,
    }
}

fn completed_event(transfer: TransferCommand) -> Event {
    Event::TransferCompleted {
        transfer,
        meta: WHEN,
    }
}

fn two_accounts() -> Vec<Event> {
    vec![
        opened_event("bank", "USD", true),
        opened_event("alice", "USD", false),
    ]
}

#[test]
#[should_panic(expected = "AccountOpened for existing account")]
fn evolve_refuses_reopening() {
    evolve_after(&two_accounts(), opened_event("alice", "USD", false));
}

#[test]
#[should_panic(expected = "TransferCompleted for known transaction id")]
fn evolve_refuses_completing_known_id() {
    let events = [
        two_accounts(),
        vec![completed_event(tc(1, "bank", "alice", 5, "USD"))],
    ]
    .concat();
    evolve_after(&events, completed_event(tc(1, "bank", "alice", 5, "USD")));
}

#[test]
#[should_panic(expected = "from unknown account")]
fn evolve_refuses_unknown_from() {
    evolve_after(
        &two_accounts(),
        completed_event(tc(1, "ghost", "alice", 5, "USD")),
    );
}

#[test]
#[should_panic(expected = "to unknown account")]
fn evolve_refuses_unknown_to() {
    evolve_after(
        &two_accounts(),
        completed_event(tc(1, "bank", "ghost", 5, "USD")),
    );
}

#[test]
#[should_panic(expected = "takes ordinary account")]
fn evolve_refuses_ordinary_going_negative() {
    evolve_after(
        &two_accounts(),
        completed_event(tc(1, "alice", "bank", 5, "USD")),
    );
}

#[test]
#[should_panic(expected = "between")]
fn evolve_refuses_currency_mismatch() {
    evolve_after(
        &two_accounts(),
        completed_event(tc(1, "bank", "alice", 5, "EUR")),
    );
}

#[test]
#[should_panic(expected = "disagrees with the state")]
fn evolve_refuses_rejection_the_state_contradicts() {
    let bad = Event::TransferRejected {
        transfer: tc(1, "bank", "alice", 5, "USD"),
        reason: RejectReason::InsufficientFunds,
        meta: WHEN,
    };
    evolve_after(&two_accounts(), bad);
}

/// Whatever reaches the log, `decide` answers without panicking: a command that fails a
/// shape check the edge makes is refused and changes nothing (a forged or buggy one must not
/// be able to stop every replica when committed).
#[test]
fn decide_refuses_malformed_commands_without_panicking() {
    let nil = TransferCommand {
        transaction_id: Uuid::nil(),
        ..tc(1, "alice", "bob", 5, "USD")
    };
    let cases = [
        (
            transfer(1, "alice", "alice", 5, "USD"),
            Malformed::SameAccount,
        ),
        (
            transfer(1, "alice", "bob", -5, "USD"),
            Malformed::AmountOutOfRange,
        ),
        (
            transfer(1, "alice", "bob", 0, "USD"),
            Malformed::AmountOutOfRange,
        ),
        (
            transfer(1, "alice", "bob", AMOUNT_MINOR_MAX + 1, "USD"),
            Malformed::AmountOutOfRange,
        ),
        (
            transfer(1, "alice", "bad id", 5, "USD"),
            Malformed::InvalidAccountId,
        ),
        (Command::Transfer(nil.clone()), Malformed::NilTransactionId),
        (
            Command::TransferOut(tc(1, "alice", "alice", 5, "USD")),
            Malformed::SameAccount,
        ),
        (
            Command::Credit(tc(1, "x", "bob", 0, "USD")),
            Malformed::AmountOutOfRange,
        ),
        (Command::Credit(nil), Malformed::NilTransactionId),
        // A credit only comes from another partition: `from` open here means it is forged.
        (
            Command::Credit(tc(1, "alice", "bob", 5, "USD")),
            Malformed::CreditFromLocalAccount,
        ),
        (open("", "USD", false), Malformed::InvalidAccountId),
        (
            Command::Settle {
                transaction_id: Uuid::from_u128(9),
                credit: CreditOutcome::Credited,
                credit_index: 3,
            },
            Malformed::SettleOfUnknownTransfer,
        ),
    ];
    let given = [open("alice", "USD", true), open("bob", "USD", false)];
    for (command, expected) in cases {
        check(
            &given,
            command,
            Decision::Reply(Outcome::Malformed(expected)),
        );
    }
}
