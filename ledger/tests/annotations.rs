//! A transfer's reference and metadata: carried through every step (within a partition and
//! across partitions), compared on a retry, checked against their limits by `decide`
//! whoever proposed the command, part of the digest only when present, and round-tripped
//! through every encoding the nodes use.

use ledger::annotations::{METADATA_ENTRIES_MAX, REFERENCE_BYTES_MAX};
use ledger::state::WithAccountAnnotations;
use ledger::wire::{self, Layout};
use ledger::{
    Annotations, Command, Conflict, CreditOutcome, Currency, EntryMeta, Event, Ledger, Malformed,
    Outcome, TransferCommand, TransferStatus, evolve,
};
use uuid::Uuid;

fn usd() -> Currency {
    Currency::parse("USD").unwrap()
}

fn meta(index: u64) -> EntryMeta {
    EntryMeta {
        index,
        timestamp_ms: 1_700_000_000_000 + index,
    }
}

fn annotations(reference: &str, metadata: &[(&str, &str)]) -> Option<Box<Annotations>> {
    Annotations {
        reference: reference.into(),
        metadata: metadata
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect(),
    }
    .boxed()
}

fn transfer(id: u128, to: &str, annotations: Option<Box<Annotations>>) -> TransferCommand {
    TransferCommand {
        transaction_id: Uuid::from_u128(id),
        from: "alice".into(),
        to: to.into(),
        amount_minor: 1_000,
        currency: usd(),
        annotations,
    }
}

/// A ledger with `alice` (funded by an issuer) and `bob`; returns it and the next index.
fn funded() -> (Ledger, Vec<Event>, u64) {
    let mut ledger = Ledger::new();
    let mut events = Vec::new();
    let mut index = 1;
    let mut run = |ledger: &mut Ledger, command: Command| {
        let (event, _) = ledger.execute(&command, meta(index));
        events.extend(event);
        index += 1;
    };
    for (account_id, negative) in [("issuer", true), ("alice", false), ("bob", false)] {
        run(
            &mut ledger,
            Command::OpenAccount {
                account_id: account_id.into(),
                currency: usd(),
                allow_negative_balance: negative,
                annotations: None,
            },
        );
    }
    run(
        &mut ledger,
        Command::Transfer(TransferCommand {
            from: "issuer".into(),
            to: "alice".into(),
            amount_minor: 100_000,
            ..transfer(1, "bob", None)
        }),
    );
    (ledger, events, index)
}

#[test]
fn a_retry_must_carry_the_same_annotations() {
    let (mut ledger, _, index) = funded();
    let original = transfer(2, "bob", annotations("order-7", &[("channel", "app")]));
    let (event, first) = ledger.execute(&Command::Transfer(original.clone()), meta(index));
    assert!(event.is_some());
    let Outcome::Transfer(record) = &first else {
        panic!("{first:?}")
    };
    assert_eq!(record.status, TransferStatus::Completed);
    assert_eq!(record.transfer.annotations, original.annotations);

    // The same transfer again: its original outcome, annotations included.
    let (event, again) = ledger.execute(&Command::Transfer(original.clone()), meta(index + 1));
    assert_eq!((event, &again), (None, &first));

    // Same money, other annotations (or none): the id is reused with other parameters.
    for other in [
        annotations("order-8", &[("channel", "app")]),
        annotations("order-7", &[("channel", "web")]),
        None,
    ] {
        let before = ledger.digest();
        let (event, answer) = ledger.execute(
            &Command::Transfer(TransferCommand {
                annotations: other,
                ..original.clone()
            }),
            meta(index + 2),
        );
        assert_eq!(event, None);
        assert_eq!(answer, Outcome::Conflict(Conflict::TransactionIdReused));
        assert_eq!(ledger.digest(), before);
    }
}

#[test]
fn decide_refuses_annotations_over_the_limits_whoever_proposed_them() {
    let (mut ledger, _, index) = funded();
    let before = ledger.digest();
    let long_reference = transfer(3, "bob", annotations(&"r".repeat(129), &[]));
    let bad_key = transfer(4, "bob", annotations("", &[("no spaces", "v")]));
    let empty = transfer(5, "bob", Some(Box::default()));
    for (command, malformed) in [
        (long_reference, Malformed::InvalidReference),
        (bad_key.clone(), Malformed::InvalidMetadata),
        (empty, Malformed::InvalidMetadata),
    ] {
        for command in [
            Command::Transfer(command.clone()),
            Command::TransferOut(command.clone()),
            Command::Credit(command),
        ] {
            let (event, answer) = ledger.execute(&command, meta(index));
            assert_eq!((event, answer), (None, Outcome::Malformed(malformed)));
        }
    }
    assert_eq!(ledger.digest(), before);
}

#[test]
fn annotations_travel_through_a_cross_partition_transfer_and_its_replay() {
    // Two ledgers stand for the source and the target partitions.
    let (mut source, mut source_events, index) = funded();
    let mut target = Ledger::new();
    let (opened, _) = target.execute(
        &Command::OpenAccount {
            account_id: "carol".into(),
            currency: usd(),
            allow_negative_balance: false,
            annotations: None,
        },
        meta(1),
    );
    let mut target_events: Vec<Event> = opened.into_iter().collect();
    let sent = transfer(
        6,
        "carol",
        annotations("invoice 42", &[("note", "ünïcode ✓")]),
    );

    let (debited, _) = source.execute(&Command::TransferOut(sent.clone()), meta(index));
    source_events.extend(debited);
    let (credited, outcome) = target.execute(&Command::Credit(sent.clone()), meta(2));
    target_events.extend(credited.clone());
    let Outcome::Credit(credit) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(credit.outcome, CreditOutcome::Credited);
    assert_eq!(
        credit.transfer, sent,
        "the credit record keeps the annotations"
    );
    let (settled, outcome) = source.execute(
        &Command::Settle {
            transaction_id: sent.transaction_id,
            credit: credit.outcome,
            credit_index: 2,
        },
        meta(index + 1),
    );
    source_events.extend(settled);
    let Outcome::Transfer(record) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(record.status, TransferStatus::Completed);
    assert_eq!(record.transfer, sent);

    // Every event that carries the transfer carries its annotations, and the events
    // rebuild both partitions exactly, through the encoded form the nodes store.
    for (ledger, events) in [(&source, &source_events), (&target, &target_events)] {
        let (layout, bytes) = wire::to_vec(events);
        assert_eq!(layout, Layout::Annotated);
        let decoded: Vec<Event> = wire::from_slice(layout, &bytes).unwrap();
        assert_eq!(&decoded, events);
        let mut replayed = Ledger::new();
        for event in &decoded {
            evolve(&mut replayed, event);
        }
        assert_eq!(replayed.digest(), ledger.digest());
    }
}

#[test]
fn the_messages_state_the_limits_defined_in_one_place() {
    use ledger::annotations::{
        METADATA_BYTES_MAX, METADATA_ENTRIES_MAX, METADATA_KEY_BYTES_MAX, METADATA_VALUE_BYTES_MAX,
        REFERENCE_BYTES_MAX,
    };
    let reference = Malformed::InvalidReference.message();
    assert!(reference.contains(&format!(" {REFERENCE_BYTES_MAX} bytes")));
    let metadata = Malformed::InvalidMetadata.message();
    for limit in [
        METADATA_ENTRIES_MAX,
        METADATA_KEY_BYTES_MAX,
        METADATA_VALUE_BYTES_MAX,
        METADATA_BYTES_MAX,
    ] {
        assert!(
            metadata.contains(&format!(" {limit} ")),
            "{limit} in {metadata}"
        );
    }
}

#[test]
fn annotations_count_in_the_digest_only_when_present() {
    let run = |annotations: Option<Box<Annotations>>| {
        let (mut ledger, _, index) = funded();
        // In flight, so the record stays in the state the digest covers.
        ledger.execute(
            &Command::TransferOut(transfer(9, "dave", annotations)),
            meta(index),
        );
        ledger.digest()
    };
    let plain = run(None);
    assert_ne!(plain, run(annotations("a", &[])));
    assert_ne!(run(annotations("a", &[])), run(annotations("b", &[])));
    assert_ne!(
        run(annotations("", &[("k", "v")])),
        run(annotations("", &[("k", "w")]))
    );
    // A snapshot of an annotated in-flight transfer round-trips in the annotated layout.
    let (mut ledger, _, index) = funded();
    ledger.execute(
        &Command::TransferOut(transfer(9, "dave", annotations("a", &[("k", "v")]))),
        meta(index),
    );
    let (layout, bytes) = wire::to_vec(&ledger);
    assert_eq!(layout, Layout::Annotated);
    let back: Ledger = wire::from_slice(layout, &bytes).unwrap();
    assert_eq!(back.digest(), ledger.digest());
}

fn open(account_id: &str, annotations: Option<Box<Annotations>>) -> Command {
    Command::OpenAccount {
        account_id: account_id.into(),
        currency: usd(),
        allow_negative_balance: false,
        annotations,
    }
}

/// An account's reference and metadata: in its `AccountOpened` event, fixed at opening (a
/// re-open must carry the same, or it is refused and changes nothing), checked against the
/// limits by `decide`, part of the digest only when present, and kept by state format 7
/// snapshots (the ledger's own serialization refuses to drop them).
#[test]
fn account_annotations_are_set_once_and_compared_on_every_reopen() {
    let gold = annotations("cust-42", &[("tier", "gold")]);
    let mut ledger = Ledger::new();
    let (event, outcome) = ledger.execute(&open("alice", gold.clone()), meta(1));
    let Some(Event::AccountOpened {
        annotations: opened_with,
        ..
    }) = &event
    else {
        panic!("opened: {event:?}");
    };
    assert_eq!(opened_with, &gold);
    assert!(matches!(outcome, Outcome::Account(_)));
    assert!(ledger.account_has_annotations("alice", gold.as_deref()));
    assert_eq!(ledger.annotated_accounts_count(), 1);

    // The same open again is answered with the account; any other annotations, or none,
    // are refused, with no event.
    let (event, outcome) = ledger.execute(&open("alice", gold.clone()), meta(2));
    assert!(event.is_none() && matches!(outcome, Outcome::Account(_)));
    for other in [
        None,
        annotations("cust-42", &[("tier", "silver")]),
        annotations("cust-43", &[("tier", "gold")]),
        annotations("", &[("tier", "gold")]),
    ] {
        let (event, outcome) = ledger.execute(&open("alice", other.clone()), meta(3));
        assert_eq!(event, None, "{other:?}");
        assert_eq!(
            outcome,
            Outcome::Conflict(Conflict::AccountExistsWithOtherParameters)
        );
    }
    // An account opened without any refuses a re-open that brings some.
    ledger.execute(&open("bob", None), meta(4));
    let (event, outcome) = ledger.execute(&open("bob", gold.clone()), meta(5));
    assert_eq!(event, None);
    assert_eq!(
        outcome,
        Outcome::Conflict(Conflict::AccountExistsWithOtherParameters)
    );
    assert_eq!(ledger.digest_from_scratch(), ledger.digest());

    // Over the limits, or empty but present: refused by `decide` itself, nothing changes.
    let long_reference = annotations(&"r".repeat(REFERENCE_BYTES_MAX + 1), &[]);
    let too_many: Vec<(String, String)> = (0..=METADATA_ENTRIES_MAX)
        .map(|n| (format!("k{n}"), "v".to_string()))
        .collect();
    let too_many = Annotations {
        metadata: too_many.into_iter().collect(),
        ..Annotations::default()
    }
    .boxed();
    for (bad, reason) in [
        (long_reference, Malformed::InvalidReference),
        (too_many, Malformed::InvalidMetadata),
        (Some(Box::default()), Malformed::InvalidMetadata),
    ] {
        let (event, outcome) = ledger.execute(&open("carol", bad), meta(6));
        assert_eq!((event, outcome), (None, Outcome::Malformed(reason)));
    }
    assert!(ledger.account("carol").is_none());

    // In the digest only when present: a ledger whose account has none digests otherwise.
    let mut plain = Ledger::new();
    plain.execute(&open("alice", None), meta(1));
    let mut annotated = Ledger::new();
    annotated.execute(&open("alice", gold.clone()), meta(1));
    assert_ne!(plain.digest(), annotated.digest());

    // Snapshots: the ledger alone refuses to be written; format 7 keeps them.
    assert!(postcard::to_stdvec(&ledger).is_err());
    assert!(postcard::to_stdvec(&plain).is_ok());
    let bytes = wire::to_vec_annotated(&WithAccountAnnotations(ledger.clone()));
    let WithAccountAnnotations(mut restored) = wire::from_slice(Layout::Annotated, &bytes).unwrap();
    assert_eq!(restored.digest(), ledger.digest());
    assert_eq!(restored, ledger);
    let (_, outcome) = restored.execute(&open("alice", gold), meta(7));
    assert!(matches!(outcome, Outcome::Account(_)));
    let (_, outcome) = restored.execute(&open("alice", None), meta(8));
    assert_eq!(
        outcome,
        Outcome::Conflict(Conflict::AccountExistsWithOtherParameters)
    );
}

/// An annotated opening takes the annotated layout (a plain one is written as release 0.2
/// wrote it), and replaying the events rebuilds the same state.
#[test]
fn account_annotations_travel_in_events_and_replay() {
    let mut ledger = Ledger::new();
    let mut events = Vec::new();
    for (index, (account_id, annotations)) in [
        ("alice", annotations("cust-1", &[])),
        ("bob", None),
        ("carol", annotations("", &[("region", "eu")])),
    ]
    .into_iter()
    .enumerate()
    {
        let (event, _) = ledger.execute(&open(account_id, annotations), meta(index as u64 + 1));
        events.extend(event);
    }
    let (layout, bytes) = wire::to_vec(&events[1]);
    assert_eq!(layout, Layout::Plain);
    assert_eq!(
        wire::from_slice::<Event>(Layout::Plain, &bytes).unwrap(),
        events[1]
    );
    let (layout, bytes) = wire::to_vec(&events);
    assert_eq!(layout, Layout::Annotated);
    let decoded: Vec<Event> = wire::from_slice(layout, &bytes).unwrap();
    assert_eq!(decoded, events);
    // A plain reader fails rather than misreads.
    assert_ne!(
        wire::from_slice::<Vec<Event>>(Layout::Plain, &bytes).ok(),
        Some(events.clone())
    );
    let mut replayed = Ledger::new();
    for event in &decoded {
        evolve(&mut replayed, event);
    }
    assert_eq!(replayed, ledger);
    assert_eq!(replayed.digest(), ledger.digest());
}
