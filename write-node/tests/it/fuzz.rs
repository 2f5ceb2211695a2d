//! Fuzzing on stable, with proptest: request validation at the gRPC edge and the decoders of
//! everything the node reads back from disk or a peer (raft entries, stored event blocks with
//! their hash chain, snapshots). Neither may ever panic: validation accepts a well-formed
//! request or answers INVALID_ARGUMENT with a documented reason and field, and a decoder
//! returns an error for bytes it cannot read.
//!
//! 256 cases per property by default (a few seconds). Longer runs:
//! `PROPTEST_CASES=100000 cargo test -p write-node --test it fuzz -- --nocapture`.
//! A failure prints its minimal input and proptest stores it in `tests/it/fuzz.proptest-regressions`.

use ledger::{Command, Currency, EntryMeta, Ledger, TransferCommand};
use proptest::prelude::*;
use proto::v1::{OpenAccountRequest, TransferRequest};
use tonic::{Code, Status};
use tonic_types::StatusExt as _;
use write_node::api_error::ApiError;
use write_node::codec::{
    CHAIN_GENESIS, EntryPayload, EventBlock, check_link, decode_entry, decode_events,
    decode_linked, encode_entry, encode_events,
};
use write_node::service::{validate_open_account, validate_transfer};
use write_node::snapshot;

/// The reasons validation may give, per field (README's error table).
const FIELD_REASONS: &[(&str, &[&str])] = &[
    ("transaction_id", &["INVALID_TRANSACTION_ID"]),
    ("from_account", &["INVALID_ACCOUNT_ID"]),
    ("to_account", &["INVALID_ACCOUNT_ID", "SAME_ACCOUNT"]),
    ("account_id", &["INVALID_ACCOUNT_ID"]),
    ("currency", &["UNKNOWN_CURRENCY"]),
    ("amount", &["INVALID_AMOUNT"]),
    ("reference", &["INVALID_REFERENCE"]),
    ("metadata", &["INVALID_METADATA"]),
];

fn config() -> ProptestConfig {
    // ProptestConfig::default() reads PROPTEST_CASES; 256 when unset.
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Strings near the valid language as well as arbitrary ones, so both sides get exercised.
fn transaction_id() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<u128>().prop_map(|id| uuid::Uuid::from_u128(id).hyphenated().to_string()),
        1 => any::<u128>().prop_map(|id| uuid::Uuid::from_u128(id).simple().to_string()),
        1 => "[0-9a-fA-F-]{30,40}",
        1 => any::<String>(),
        1 => Just(String::new()),
    ]
}

fn account_id() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z]{1,3}",
        1 => "[ -~]{0,8}",
        1 => any::<String>(),
        1 => (250usize..260).prop_map(|length| "a".repeat(length)),
        1 => Just("\u{85}x".to_string()),
    ]
}

fn currency() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["USD", "JPY", "KWD", "EUR", "XAU", "XXX", "usd", "US", ""])
            .prop_map(str::to_owned),
        1 => "[A-Za-z]{0,4}",
        1 => any::<String>(),
    ]
}

fn amount() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[1-9][0-9]{0,6}(\\.[0-9]{1,2})?",
        2 => "[0-9]{0,18}(\\.[0-9]{0,5})?",
        1 => "[-+ 0-9.eE_,]{0,12}",
        1 => any::<String>(),
        1 => Just("NaN".to_string()),
        1 => Just("1".repeat(100)),
    ]
}

#[track_caller]
fn check_rejection(error: ApiError) {
    assert_eq!(error.code, Code::InvalidArgument, "{error:?}");
    let field = error.field.expect("INVALID_ARGUMENT names a field");
    let reasons = FIELD_REASONS
        .iter()
        .find(|(name, _)| *name == field)
        .map(|(_, reasons)| *reasons)
        .unwrap_or_else(|| panic!("undocumented field {field}"));
    assert!(reasons.contains(&error.reason), "{error:?}");
    // What the client receives carries the same reason and field.
    let status = Status::from(error.clone());
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.get_details_error_info().expect("ErrorInfo").reason,
        error.reason
    );
    let violations = status
        .get_details_bad_request()
        .expect("BadRequest")
        .field_violations;
    assert_eq!(violations[0].field, field);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_transfer_validation(
        transaction_id in transaction_id(),
        from in account_id(),
        to in account_id(),
        amount in amount(),
        currency in currency(),
    ) {
        let request = TransferRequest {
            transaction_id: transaction_id.clone(),
            from_account: from.clone(),
            to_account: to.clone(),
            amount: amount.clone(),
            currency: currency.clone(),
            ..Default::default()
        };
        match validate_transfer(&request) {
            Ok(command) => {
                // Accepted only if every part is well-formed, and nothing is reinterpreted.
                prop_assert_eq!(
                    ledger::parse_transaction_id(&transaction_id).ok(),
                    Some(command.transaction_id)
                );
                prop_assert!(ledger::validate_account_id(&from).is_ok());
                prop_assert!(ledger::validate_account_id(&to).is_ok());
                prop_assert_ne!(&command.from, &command.to);
                prop_assert_eq!((command.from.as_str(), command.to.as_str()), (from.as_str(), to.as_str()));
                prop_assert_eq!(command.currency.code(), currency.as_str());
                prop_assert!((1..=ledger::AMOUNT_MINOR_MAX).contains(&command.amount_minor));
                let text = ledger::format_minor(command.amount_minor.into(), command.currency);
                prop_assert_eq!(ledger::parse_amount(&text, command.currency), Ok(command.amount_minor));
            }
            Err(error) => check_rejection(error),
        }
    }

    #[test]
    fn fuzz_open_account_validation(
        account in account_id(),
        currency in currency(),
        allow_negative_balance in any::<bool>(),
        reference in prop_oneof![Just(String::new()), ".{0,140}"],
    ) {
        let request = OpenAccountRequest {
            account_id: account.clone(),
            currency: currency.clone(),
            allow_negative_balance,
            reference: reference.clone(),
            ..Default::default()
        };
        match validate_open_account(&request) {
            Ok(Command::OpenAccount {
                account_id,
                currency: parsed,
                allow_negative_balance: allow,
                annotations,
            }) => {
                prop_assert_eq!(account_id, account);
                prop_assert_eq!(parsed.code(), currency.as_str());
                prop_assert_eq!(allow, allow_negative_balance);
                prop_assert_eq!(
                    annotations.map(|annotations| annotations.reference),
                    (!reference.is_empty()).then_some(reference)
                );
            }
            Ok(other) => prop_assert!(false, "unexpected command {other:?}"),
            Err(error) => check_rejection(error),
        }
    }
}

/// A valid ledger history: commands executed on a fresh ledger, the events they produced, and
/// the resulting state.
fn history() -> impl Strategy<Value = (Vec<Command>, Ledger, Vec<ledger::Event>)> {
    let usd = Currency::parse("USD").expect("USD");
    let command = prop_oneof![
        ("[a-d]", any::<bool>()).prop_map(move |(account_id, allow_negative_balance)| {
            Command::OpenAccount {
                account_id,
                currency: usd,
                allow_negative_balance,
                annotations: None,
            }
        }),
        (any::<u128>(), "[a-d]", "[a-d]", 1i64..10_000).prop_map(move |(id, from, to, amount)| {
            // Validation never lets a transfer to the same account through.
            let to = if to == from { format!("{to}x") } else { to };
            Command::Transfer(TransferCommand {
                transaction_id: uuid::Uuid::from_u128(id | 1),
                from,
                to,
                amount_minor: amount,
                currency: usd,
                annotations: None,
            })
        }),
    ];
    prop::collection::vec(command, 0..12).prop_map(|commands| {
        let mut ledger = Ledger::new();
        let mut events = Vec::new();
        for (index, command) in commands.iter().enumerate() {
            let meta = EntryMeta {
                index: index as u64 + 1,
                timestamp_ms: 1_700_000_000_000,
            };
            if let (Some(event), _) = ledger.execute(command, meta) {
                events.push(event);
            }
        }
        (commands, ledger, events)
    })
}

/// Byte-level damage: flip, overwrite, insert, delete, truncate.
#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, bits)| Mutation::Flip(at, bits)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set(at, byte)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        let length = bytes.len();
        match *mutation {
            Mutation::Flip(at, bits) if length > 0 => bytes[at % length] ^= bits,
            Mutation::Set(at, byte) if length > 0 => bytes[at % length] = byte,
            Mutation::Insert(at, byte) => bytes.insert(at % (length + 1), byte),
            Mutation::Remove(at) if length > 0 => {
                bytes.remove(at % length);
            }
            Mutation::Truncate(at) => bytes.truncate(at % (length + 1)),
            _ => {}
        }
    }
    bytes
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_decoders_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512), index in any::<u64>()) {
        let _ = decode_entry(&bytes);
        let _ = decode_events(&bytes);
        let _ = check_link(&CHAIN_GENESIS, index, &bytes);
        let _ = decode_linked(&CHAIN_GENESIS, index, &bytes);
        // With a leading version byte the body reaches postcard.
        for version in [1u8, 2] {
            let mut versioned = vec![version];
            versioned.extend_from_slice(&bytes);
            let _ = decode_entry(&versioned);
            let _ = decode_events(&versioned);
        }
        let (meta, _) = snapshot::encode(0, 1, 1, vec![1, 2, 3], &Ledger::new(), CHAIN_GENESIS);
        let meta = snapshot::SnapshotMeta { bytes: bytes.len() as u64, ..meta };
        if let Ok(decoded) = snapshot::decode(&meta, &bytes) {
            prop_assert_eq!(decoded.digest(), meta.digest);
        }
    }

    #[test]
    fn fuzz_decoders_on_mutated_encodings(
        (commands, state, events) in history(),
        mutations in prop::collection::vec(mutation(), 1..4),
        timestamp_ms in any::<u64>(),
        index in 1u64..1_000_000,
    ) {
        // Raft entry payloads.
        let payload = EntryPayload { timestamp_ms, commands };
        let entry = encode_entry(&payload);
        prop_assert_eq!(decode_entry(&entry).expect("round trip"), payload.clone());
        let damaged = mutate(entry.clone(), &mutations);
        if let Ok(decoded) = decode_entry(&damaged) {
            // postcard is not self-checking: damage may decode to another payload, never panic.
            let _ = encode_entry(&decoded);
        }

        // Stored event blocks and their hash chain: any damage is detected by the link check.
        let block = EventBlock { meta: EntryMeta { index, timestamp_ms }, events };
        let (stored, chain) = encode_events(&CHAIN_GENESIS, &block);
        prop_assert_eq!(check_link(&CHAIN_GENESIS, index, &stored), Ok(chain));
        prop_assert_eq!(decode_linked(&CHAIN_GENESIS, index, &stored).expect("linked").block, block);
        let damaged = mutate(stored.clone(), &mutations);
        let _ = decode_events(&damaged);
        if damaged != stored {
            prop_assert!(check_link(&CHAIN_GENESIS, index, &damaged).is_err());
            prop_assert!(decode_linked(&CHAIN_GENESIS, index, &damaged).is_err());
        }

        // Snapshots: the digest check rejects any damage that still decodes.
        let (meta, chunks) = snapshot::encode(3, index, 2, vec![1, 2, 3], &state, chain);
        let bytes = chunks.concat();
        prop_assert_eq!(snapshot::decode(&meta, &bytes).expect("round trip").digest(), state.digest());
        let damaged = mutate(bytes.clone(), &mutations);
        let resized = snapshot::SnapshotMeta { bytes: damaged.len() as u64, ..meta.clone() };
        if let Ok(decoded) = snapshot::decode(&resized, &damaged) {
            // Only damage that leaves the state as it was can pass the digest check.
            prop_assert_eq!(decoded.digest(), state.digest());
        }
        if damaged.len() != bytes.len() {
            prop_assert!(snapshot::decode(&meta, &damaged).is_err());
        }
    }
}
