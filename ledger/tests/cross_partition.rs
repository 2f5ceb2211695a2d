//! Cross-partition transfers across several partition ledgers, driven the way the write node
//! drives them (TransferOut on the source, Credit on the target, Settle on the source), with
//! sagas advanced in random order and every step retried. After every step money is
//! conserved globally (balances + outflows sum to zero per currency, outflows sum to the money
//! in flight); once all sagas settle, outflows sum to zero and balances equal the fold of the
//! completed transfers.

use std::collections::BTreeMap;

use ledger::{
    Command, CreditOutcome, Currency, EntryMeta, Ledger, Outcome, RejectReason, TransferCommand,
    TransferStatus, partition_of,
};
use proptest::prelude::*;

const PARTITIONS: u32 = 3;

struct Cluster {
    partitions: Vec<Ledger>,
    /// Next log index per partition.
    index_next: Vec<u64>,
    /// Transfers in flight: (source partition, transfer).
    sagas: Vec<(u32, TransferCommand)>,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster {
            partitions: (0..PARTITIONS).map(|_| Ledger::new()).collect(),
            index_next: vec![1; PARTITIONS as usize],
            sagas: Vec::new(),
        }
    }

    fn execute(&mut self, partition: u32, command: &Command) -> (Outcome, u64) {
        let slot = partition as usize;
        let index = self.index_next[slot];
        self.index_next[slot] += 1;
        let meta = EntryMeta {
            index,
            timestamp_ms: 1_000 + index,
        };
        let (_, outcome) = self.partitions[slot].execute(command, meta);
        (outcome, index)
    }

    fn open(&mut self, account_id: &str, currency: Currency, allow_negative_balance: bool) {
        let command = Command::OpenAccount {
            account_id: account_id.into(),
            currency,
            allow_negative_balance,
        };
        self.execute(partition_of(account_id, PARTITIONS), &command);
    }

    /// What the service does with a client's transfer; returns the source's first answer.
    fn submit(&mut self, transfer: TransferCommand) -> Outcome {
        let source = partition_of(&transfer.from, PARTITIONS);
        let cross = source != partition_of(&transfer.to, PARTITIONS);
        let command = if cross {
            Command::TransferOut(transfer.clone())
        } else {
            Command::Transfer(transfer.clone())
        };
        let (outcome, _) = self.execute(source, &command);
        if let Outcome::Transfer(record) = &outcome {
            // Each source partition drives its own in-flight records.
            let fresh = !self.sagas.iter().any(|(saga_source, saga)| {
                *saga_source == source && saga.transaction_id == record.transfer.transaction_id
            });
            if record.status == TransferStatus::InFlight && fresh {
                self.sagas.push((source, record.transfer.clone()));
            }
        }
        outcome
    }

    /// Drives one saga: credit on the target (twice if `repeat`, to prove idempotency), then
    /// settle on the source (twice if `repeat`).
    fn advance(&mut self, pick: usize, repeat: bool) {
        if self.sagas.is_empty() {
            return;
        }
        let (source, transfer) = self.sagas.remove(pick % self.sagas.len());
        let target = partition_of(&transfer.to, PARTITIONS);
        let credit_command = Command::Credit(transfer.clone());
        let (Outcome::Credit(credit), _) = self.execute(target, &credit_command) else {
            panic!("a credit answers with a credit record");
        };
        if repeat {
            let (Outcome::Credit(again), _) = self.execute(target, &credit_command) else {
                panic!("a credit answers with a credit record");
            };
            assert_eq!(
                again, credit,
                "a retried credit returns the original decision"
            );
        }
        let settle = Command::Settle {
            transaction_id: transfer.transaction_id,
            credit: credit.outcome,
            credit_index: credit.meta.index,
        };
        let (Outcome::Transfer(settled), _) = self.execute(source, &settle) else {
            panic!("settling answers with the transfer record");
        };
        match credit.outcome {
            CreditOutcome::Credited => assert_eq!(settled.status, TransferStatus::Completed),
            CreditOutcome::Refused(reason) => {
                assert_eq!(settled.status, TransferStatus::Rejected(reason))
            }
        }
        if repeat {
            let (Outcome::Transfer(again), _) = self.execute(source, &settle) else {
                panic!("settling answers with the transfer record");
            };
            assert_eq!(again, settled, "a retried settle returns the final record");
        }
    }

    fn check_conservation(&self) {
        let mut totals: BTreeMap<Currency, i128> = BTreeMap::new();
        let mut outflows: BTreeMap<Currency, i128> = BTreeMap::new();
        for ledger in &self.partitions {
            for (currency, total) in ledger.totals_by_currency() {
                *totals.entry(currency).or_default() += total;
            }
            for (currency, outflow) in ledger.outflow_by_currency() {
                *outflows.entry(*currency).or_default() += outflow;
            }
            for account in ledger.accounts() {
                assert!(
                    account.allow_negative_balance || account.balance_minor >= 0,
                    "{account:?} is negative"
                );
            }
            // The running totals agree with the balances.
            assert_eq!(ledger.imbalance(), None);
            // Every reachable state survives a snapshot: same state, same digest.
            let bytes = postcard::to_stdvec(ledger).expect("serialize");
            let restored: Ledger = postcard::from_bytes(&bytes).expect("a snapshot loads");
            assert_eq!(&restored, ledger);
            assert_eq!(restored.digest(), ledger.digest());
        }
        let mut in_flight: BTreeMap<Currency, i128> = BTreeMap::new();
        for ledger in &self.partitions {
            for record in ledger.in_flight() {
                *in_flight.entry(record.transfer.currency).or_default() +=
                    i128::from(record.transfer.amount_minor);
            }
        }
        for (currency, total) in &totals {
            let outflow = outflows.get(currency).copied().unwrap_or(0);
            assert_eq!(total + outflow, 0, "{currency}: balances + outflows != 0");
            assert_eq!(
                outflow,
                in_flight.get(currency).copied().unwrap_or(0),
                "{currency}: outflows are not the money in flight"
            );
        }
    }
}

fn usd() -> Currency {
    Currency::parse("USD").unwrap()
}

fn eur() -> Currency {
    Currency::parse("EUR").unwrap()
}

#[derive(Clone, Debug)]
enum Op {
    Transfer {
        from: usize,
        to: usize,
        amount_minor: i64,
        euro: bool,
        id: usize,
    },
    Advance {
        pick: usize,
        repeat: bool,
    },
}

const ACCOUNTS: [&str; 10] = [
    "issuer", "a0", "a1", "a2", "a3", "a4", "a5", "e0", "e1", "ghost",
];

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let transfer = (
        0..ACCOUNTS.len(),
        0..ACCOUNTS.len(),
        1..400i64,
        any::<bool>(),
        0..40usize,
    )
        .prop_map(|(from, to, amount_minor, euro, id)| Op::Transfer {
            from,
            to,
            amount_minor,
            euro,
            id,
        });
    let advance =
        (any::<usize>(), any::<bool>()).prop_map(|(pick, repeat)| Op::Advance { pick, repeat });
    prop::collection::vec(prop_oneof![3 => transfer, 2 => advance], 0..160)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn cross_partition_transfers_conserve_money_and_settle_exactly_once(ops in ops()) {
        let mut cluster = Cluster::new();
        cluster.open("issuer", usd(), true);
        for account in ["a0", "a1", "a2", "a3", "a4", "a5"] {
            cluster.open(account, usd(), false);
        }
        cluster.open("e0", eur(), false);
        cluster.open("e1", eur(), false);
        // Transaction ids come from a small pool, so retries and reuse happen.
        let ids: Vec<uuid::Uuid> = (0..40u128).map(|n| uuid::Uuid::from_u128(n + 1)).collect();
        // The first transfer each source partition recorded under an id.
        let mut first_answers: BTreeMap<(u32, uuid::Uuid), TransferCommand> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Transfer { from, to, amount_minor, euro, id } => {
                    if from == to {
                        continue; // the edge rejects these
                    }
                    let transfer = TransferCommand {
                        transaction_id: ids[id],
                        from: ACCOUNTS[from].into(),
                        to: ACCOUNTS[to].into(),
                        amount_minor,
                        currency: if euro { eur() } else { usd() },
                    };
                    let outcome = cluster.submit(transfer.clone());
                    let source = partition_of(&transfer.from, PARTITIONS);
                    let key = (source, transfer.transaction_id);
                    let reused_on_source = first_answers.get(&key).is_some_and(|first| *first != transfer);
                    match outcome {
                        Outcome::Transfer(record) => prop_assert_eq!(&record.transfer, &transfer),
                        Outcome::Conflict(_) => prop_assert!(reused_on_source),
                        other => prop_assert!(false, "unexpected {:?}", other),
                    }
                    first_answers.entry(key).or_insert(transfer);
                }
                Op::Advance { pick, repeat } => cluster.advance(pick, repeat),
            }
            cluster.check_conservation();
        }
        while !cluster.sagas.is_empty() {
            cluster.advance(0, false);
            cluster.check_conservation();
        }
        // Quiescent: nothing in flight, balances are the fold of completed transfers.
        let mut expected: BTreeMap<String, i128> = BTreeMap::new();
        // check_conservation showed outflows sum to the money in flight, which is now zero.
        for ledger in &cluster.partitions {
            prop_assert_eq!(ledger.in_flight_count(), 0);
            for record in ledger.transfers() {
                if record.status == TransferStatus::Completed {
                    let amount = i128::from(record.transfer.amount_minor);
                    *expected.entry(record.transfer.from.clone()).or_default() -= amount;
                    *expected.entry(record.transfer.to.clone()).or_default() += amount;
                }
                if let TransferStatus::Rejected(RejectReason::ToAccountNotFound) = record.status {
                    prop_assert_eq!(record.transfer.to.as_str(), "ghost");
                }
            }
        }
        for ledger in &cluster.partitions {
            for account in ledger.accounts() {
                let want = expected.get(&account.account_id).copied().unwrap_or(0);
                prop_assert_eq!(account.balance_minor, want, "{}", account.account_id);
            }
        }
    }
}

#[test]
fn refused_credit_refunds_the_source_with_the_target_reason() {
    let mut cluster = Cluster::new();
    cluster.open("issuer", usd(), true);
    // Find an account id on another partition than the issuer that is never opened.
    let source = partition_of("issuer", PARTITIONS);
    let ghost = (0..)
        .map(|n| format!("ghost-{n}"))
        .find(|id| partition_of(id, PARTITIONS) != source)
        .unwrap();
    let transfer = TransferCommand {
        transaction_id: uuid::Uuid::from_u128(7),
        from: "issuer".into(),
        to: ghost,
        amount_minor: 500,
        currency: usd(),
    };
    let Outcome::Transfer(record) = cluster.submit(transfer.clone()) else {
        panic!()
    };
    assert_eq!(record.status, TransferStatus::InFlight);
    assert_eq!(
        cluster.partitions[source as usize]
            .account("issuer")
            .unwrap()
            .balance_minor,
        -500
    );
    cluster.advance(0, true);
    let record = cluster.partitions[source as usize]
        .transfer(&transfer.transaction_id)
        .unwrap()
        .clone();
    assert_eq!(
        record.status,
        TransferStatus::Rejected(RejectReason::ToAccountNotFound)
    );
    assert_eq!(
        cluster.partitions[source as usize]
            .account("issuer")
            .unwrap()
            .balance_minor,
        0
    );
    // A retry of the whole transfer answers with the final rejection and moves nothing.
    let Outcome::Transfer(again) = cluster.submit(transfer) else {
        panic!()
    };
    assert_eq!(again, record);
    cluster.check_conservation();
}
