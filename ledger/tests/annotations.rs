//! A transfer's reference and metadata: carried through every step (within a partition and
//! across partitions), compared on a retry, checked against their limits by `decide`
//! whoever proposed the command, part of the digest only when present, and round-tripped
//! through every encoding the nodes use.

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
