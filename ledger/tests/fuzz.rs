//! Fuzzing the ledger's input parsers on stable with proptest: amounts, currencies, account
//! ids and transaction ids. None may panic; each either accepts a well-formed input (and
//! then means exactly what the text says) or returns its documented error. And fuzzing
//! `decide` + `evolve` with arbitrary commands: no committed entry may stop a replica.
//!
//! 256 cases per property by default (well under a second). Longer runs:
//! `PROPTEST_CASES=1000000 cargo test -p ledger --test fuzz`.

use ledger::state::WithLiveLegs;
use ledger::{
    ACCOUNT_ID_BYTES_MAX, AMOUNT_MINOR_MAX, Annotations, Command, CreditOutcome, Currency,
    EntryMeta, IdError, Ledger, Leg, LegsCommand, LegsDecision, LegsPart, MoneyError, Record,
    RejectReason, TransferCommand, format_minor, parse_amount, parse_transaction_id,
    validate_account_id,
};
use proptest::prelude::*;
use std::collections::HashMap;

fn config() -> ProptestConfig {
    // ProptestConfig::default() reads PROPTEST_CASES; 256 when unset.
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn currencies() -> Vec<Currency> {
    ["USD", "JPY", "KWD", "EUR", "CLF", "BHD"]
        .iter()
        .map(|code| Currency::parse(code).expect("known currency"))
        .collect()
}

fn amount_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{0,20}(\\.[0-9]{0,6})?",
        "[-+ 0-9.eE_,]{0,24}",
        "[0-9]{1,3}\\.[0-9]{1,4}[\\x00-\\x20]?",
        any::<String>(),
        prop::collection::vec(prop::sample::select(vec!['0', '9', '.']), 0..200)
            .prop_map(|chars| chars.into_iter().collect()),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_parse_amount(text in amount_text(), which in 0usize..6) {
        let currency = currencies()[which];
        match parse_amount(&text, currency) {
            Ok(minor) => {
                prop_assert!((1..=AMOUNT_MINOR_MAX).contains(&minor));
                prop_assert!(text.bytes().all(|b| b.is_ascii_digit() || b == b'.'), "{text:?}");
                // The value is exactly the text: formatting and parsing again gives it back.
                let formatted = format_minor(minor.into(), currency);
                prop_assert_eq!(parse_amount(&formatted, currency), Ok(minor));
            }
            Err(error) => {
                prop_assert_eq!(error.reason(), "INVALID_AMOUNT");
                prop_assert_ne!(error, MoneyError::UnknownCurrency);
            }
        }
    }

    #[test]
    fn fuzz_currency_parse(code in prop_oneof!["[A-Z]{3}", "[A-Za-z]{0,5}", any::<String>()]) {
        match Currency::parse(&code) {
            Ok(currency) => {
                prop_assert_eq!(currency.code(), code.as_str());
                prop_assert!(currency.minor_units() <= 4);
            }
            Err(error) => prop_assert_eq!(error.reason(), "UNKNOWN_CURRENCY"),
        }
    }

    #[test]
    fn fuzz_account_id(account_id in prop_oneof![any::<String>(), "[ -~]{0,300}", "\\PC{250,260}"]) {
        // Valid exactly when the rule says so (whatever fast path the check takes).
        let valid = (1..=ACCOUNT_ID_BYTES_MAX).contains(&account_id.len())
            && !account_id.chars().any(|c| c.is_whitespace() || c.is_control());
        prop_assert_eq!(validate_account_id(&account_id).is_ok(), valid);
        match validate_account_id(&account_id) {
            Ok(()) => {
                prop_assert!((1..=ACCOUNT_ID_BYTES_MAX).contains(&account_id.len()));
                prop_assert!(!account_id.chars().any(|c| c.is_whitespace() || c.is_control()));
            }
            Err(error) => {
                prop_assert_eq!(error.reason(), "INVALID_ACCOUNT_ID");
                prop_assert!(matches!(error, IdError::Empty | IdError::TooLong | IdError::InvalidCharacter));
            }
        }
    }

    #[test]
    fn fuzz_transaction_id(
        id in any::<u128>(),
        edits in prop::collection::vec((0usize..40, any::<char>()), 0..3),
        other in any::<String>(),
    ) {
        // A canonical UUID with a few characters replaced, and arbitrary text.
        let mut chars: Vec<char> = uuid::Uuid::from_u128(id).hyphenated().to_string().chars().collect();
        for (at, c) in &edits {
            let at = at % chars.len();
            chars[at] = *c;
        }
        let edited: String = chars.into_iter().collect();
        for text in [edited, other] {
            match parse_transaction_id(&text) {
                Ok(parsed) => {
                    prop_assert!(!parsed.is_nil());
                    prop_assert_eq!(parsed.hyphenated().to_string(), text.to_ascii_lowercase());
                }
                Err(error) => prop_assert_eq!(error.reason(), "INVALID_TRANSACTION_ID"),
            }
        }
    }
}

/// Account ids: a few valid ones (so commands meet real accounts), the empty and an
/// over-long one, and arbitrary text.
fn account_id() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["a", "b", "c", "issuer"]).prop_map(String::from),
        1 => Just(String::new()),
        1 => Just("x".repeat(ACCOUNT_ID_BYTES_MAX + 1)),
        1 => any::<String>(),
    ]
}

fn transfer_command() -> impl Strategy<Value = TransferCommand> {
    (
        prop_oneof![4 => 1..6u128, 1 => Just(0u128), 1 => any::<u128>()],
        account_id(),
        account_id(),
        prop_oneof![4 => 1..500i64, 1 => any::<i64>(), 1 => Just(0i64), 1 => Just(i64::MIN)],
        0..currencies().len(),
        annotations(),
    )
        .prop_map(
            |(id, from, to, amount_minor, which, annotations)| TransferCommand {
                transaction_id: uuid::Uuid::from_u128(id),
                from,
                to,
                amount_minor,
                currency: currencies()[which],
                annotations,
            },
        )
}

/// Any multi-leg transfer: legs made of the transfers' parts (so sets meet real accounts,
/// repeat legs, pass money through an account), none at all, or more than the limit.
fn legs_command() -> impl Strategy<Value = LegsCommand> {
    (
        transfer_command(),
        prop_oneof![
            8 => prop::collection::vec(transfer_command(), 1..5),
            1 => Just(Vec::new()),
            1 => prop::collection::vec(transfer_command(), ledger::LEGS_MAX + 1),
        ],
    )
        .prop_map(|(first, parts)| LegsCommand {
            transaction_id: first.transaction_id,
            currency: first.currency,
            legs: parts
                .into_iter()
                .map(|part| Leg {
                    from: part.from,
                    to: part.to,
                    amount_minor: part.amount_minor,
                })
                .collect(),
            annotations: first.annotations,
        })
}

/// Mostly none; else any reference and metadata at all, within the limits or not, empty
/// included (which only `None` may stand for).
fn annotations() -> impl Strategy<Value = Option<Box<Annotations>>> {
    prop_oneof![
        3 => Just(None),
        1 => (
            ".{0,140}",
            prop::collection::btree_map(".{0,70}", ".{0,20}", 0..20)
        )
            .prop_map(|(reference, metadata)| Some(Box::new(Annotations {
                reference,
                metadata
            }))),
    ]
}

fn reject_reason() -> impl Strategy<Value = RejectReason> {
    prop::sample::select(vec![
        RejectReason::FromAccountNotFound,
        RejectReason::ToAccountNotFound,
        RejectReason::CurrencyMismatch,
        RejectReason::InsufficientFunds,
        RejectReason::TransactionIdReused,
    ])
}

/// Any command at all, as a forged peer message or a bug could put it in the log.
fn any_command() -> impl Strategy<Value = Command> {
    prop_oneof![
        (
            account_id(),
            0..currencies().len(),
            any::<bool>(),
            annotations()
        )
            .prop_map(|(account_id, which, allow_negative_balance, annotations)| {
                Command::OpenAccount {
                    account_id,
                    currency: currencies()[which],
                    allow_negative_balance,
                    annotations,
                }
            }),
        transfer_command().prop_map(Command::Transfer),
        transfer_command().prop_map(Command::TransferOut),
        transfer_command().prop_map(Command::Credit),
        legs_command().prop_map(Command::TransferLegs),
        // Steps of sets across partitions, with any part and decision a forged peer could send.
        (legs_command(), prop_oneof![1..16u128, any::<u128>()]).prop_map(|(legs, part)| {
            Command::PrepareLegs {
                legs,
                part: LegsPart(part),
            }
        }),
        (
            legs_command(),
            prop_oneof![1..16u128, any::<u128>()],
            prop_oneof![
                Just(LegsDecision::Completed),
                (0..6u32, reject_reason())
                    .prop_map(|(leg, reason)| LegsDecision::Rejected { leg, reason })
            ]
        )
            .prop_map(|(legs, part, decision)| Command::ResolveLegs {
                legs,
                part: LegsPart(part),
                decision
            }),
        prop_oneof![1..6u128, any::<u128>()].prop_map(|id| Command::FinishLegs {
            transaction_id: uuid::Uuid::from_u128(id)
        }),
        (
            prop_oneof![1..6u128, any::<u128>()],
            prop_oneof![
                Just(CreditOutcome::Credited),
                reject_reason().prop_map(CreditOutcome::Refused)
            ],
            any::<u64>()
        )
            .prop_map(|(id, credit, credit_index)| Command::Settle {
                transaction_id: uuid::Uuid::from_u128(id),
                credit,
                credit_index,
            }),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Whatever sequence of commands reaches one partition's log, `decide` + `evolve` never
    /// panic, money is conserved after every entry (balances plus outflow sum to zero per
    /// currency), no ordinary account goes negative, and replaying the events rebuilds the
    /// same state.
    #[test]
    fn fuzz_commands_never_panic_and_conserve_money(
        commands in prop::collection::vec(any_command(), 0..80)
    ) {
        let mut ledger = Ledger::new();
        let mut events = Vec::new();
        for (position, command) in commands.iter().enumerate() {
            let meta = EntryMeta { index: position as u64 + 1, timestamp_ms: 1_000 };
            let (event, _outcome) = ledger.execute(command, meta);
            events.extend(event);
            prop_assert_eq!(ledger.imbalance(), None, "after {:?}", command);
            for account in ledger.accounts() {
                prop_assert!(account.allow_negative_balance || account.balance_minor >= 0);
            }
        }
        let mut replayed = Ledger::new();
        for event in &events {
            ledger::evolve(&mut replayed, event);
        }
        prop_assert_eq!(replayed.digest(), ledger.digest());
    }
}

proptest! {
    #![proptest_config(config())]

    /// Records held outside memory change nothing: a ledger that keeps only in-flight
    /// records (its finished ones in a store, the way the edge keeps them on disk) gives
    /// every command the same event and outcome as one that holds everything, ends with the
    /// same digest, survives a snapshot round trip, and the store equals the records rebuilt
    /// from the events alone (what a follower does after a snapshot install). Commands come
    /// in entries of `per_entry` (one index each entry), so a record decided earlier in the
    /// same entry must be found (the edge adds it to the store as it is decided).
    #[test]
    fn keeping_only_in_flight_records_in_memory_decides_the_same(
        commands in prop::collection::vec(any_command(), 0..80),
        per_entry in 1usize..5,
    ) {
        let meta = |position: usize| EntryMeta {
            index: (position / per_entry) as u64 + 1,
            timestamp_ms: 1_000,
        };
        let mut holding = Ledger::new();
        let mut lean = Ledger::new();
        lean.keep_only_in_flight();
        let mut stored: HashMap<u128, Record> = HashMap::new();
        let mut events = Vec::new();
        let mut decided = Vec::new();
        for (position, command) in commands.iter().enumerate() {
            let (event, outcome) = holding.execute(command, meta(position));
            let (lean_event, lean_outcome) = lean.execute_with(&stored, command, meta(position));
            prop_assert_eq!(&lean_event, &event, "after {:?}", command);
            prop_assert_eq!(&lean_outcome, &outcome);
            decided.push((event.clone(), outcome.clone()));
            if event.is_some()
                && let Some(record) = Record::of_outcome(&outcome)
            {
                stored.insert(record.transaction_id().as_u128(), record);
            }
            events.extend(event);
            prop_assert_eq!(lean.digest(), holding.digest());
        }
        // What stays in memory is exactly what is live: transfers in flight (holds being
        // captured among them), pending holds, and multi-leg records of a prepared part or
        // of a home that decided and has not finished.
        prop_assert_eq!(
            lean.records_in_memory(),
            lean.in_flight_count() + lean.pending_holds_count() + lean.live_legs_count()
        );

        // A snapshot of the lean ledger: counts and sum carried, records not needed. Written
        // in the newest state format (8: the annotated layout, the accounts' annotation
        // hashes and the live multi-leg records), which holds whatever the commands left: a
        // plain `Ledger` refuses to drop annotation hashes or live sets, and the plain layout
        // refuses annotations.
        let bytes = ledger::wire::to_vec_annotated(&WithLiveLegs(lean.clone()));
        let WithLiveLegs(restored) =
            ledger::wire::from_slice(ledger::wire::Layout::Annotated, &bytes).expect("deserialize");
        prop_assert_eq!(restored.digest(), holding.digest());
        prop_assert_eq!(restored.transfers_count(), holding.transfers_count());

        // The store, rebuilt from the events in log order.
        let mut rebuilt: HashMap<u128, Record> = HashMap::new();
        for event in &events {
            let Some(id) = event.transaction_id() else {
                continue;
            };
            let record = Record::after_event(event, rebuilt.get(&id.as_u128()))
                .expect("the events of a ledger rebuild its records")
                .expect("every transfer event leaves a record");
            rebuilt.insert(id.as_u128(), record);
        }
        prop_assert_eq!(&rebuilt, &stored);

        // Deciding everything again as the edge of a follower whose store runs ahead (it
        // holds the whole run's records): per entry, the stored records created before the
        // entry, plus each record the entry decides as it goes. The run repeats exactly.
        let mut again = Ledger::new();
        again.keep_only_in_flight();
        let mut view: HashMap<u128, Record> = HashMap::new();
        for (position, command) in commands.iter().enumerate() {
            if position % per_entry == 0 {
                let index = meta(position).index;
                view = stored
                    .iter()
                    .filter(|(_, record)| record.created_at() < index)
                    .map(|(id, record)| (*id, record.clone()))
                    .collect();
            }
            let (event, outcome) = again.execute_with(&view, command, meta(position));
            if event.is_some()
                && let Some(record) = Record::of_outcome(&outcome)
            {
                view.insert(record.transaction_id().as_u128(), record);
            }
            prop_assert_eq!(&(event, outcome), &decided[position]);
        }
        prop_assert_eq!(again.digest(), holding.digest());
    }
}
