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
            annotations: None,
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
            // Every reachable state survives a snapshot: same state (less the finished
            // records, which stay on disk), same digest.
            let bytes = postcard::to_stdvec(ledger).expect("serialize");
            let restored: Ledger = postcard::from_bytes(&bytes).expect("a snapshot loads");
            let mut evicted = ledger.clone();
            evicted.evict_all_finished();
            assert_eq!(restored, evicted);
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
                        annotations: None,
                    };
                    // The source refuses an id it recorded for another transfer, in either
                    // role: as the source of one, or as the target of a credit.
                    let source = &cluster.partitions[partition_of(&transfer.from, PARTITIONS) as usize];
                    let id = transfer.transaction_id;
                    let reused_on_source = source.transfer(&id).is_some_and(|first| first.transfer != transfer)
                        || source.credit(&id).is_some();
                    let outcome = cluster.submit(transfer.clone());
                    match outcome {
                        Outcome::Transfer(record) => {
                            prop_assert!(!reused_on_source);
                            prop_assert_eq!(&record.transfer, &transfer);
                        }
                        Outcome::Conflict(_) => prop_assert!(reused_on_source),
                        other => prop_assert!(false, "unexpected {:?}", other),
                    }
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
        // Exactly once across partitions: two different transfers that moved money under one
        // id touched disjoint partitions (a partition that recorded the id refuses the other).
        let mut completed: BTreeMap<uuid::Uuid, Vec<TransferCommand>> = BTreeMap::new();
        for ledger in &cluster.partitions {
            for record in ledger.transfers() {
                if record.status == TransferStatus::Completed {
                    completed.entry(record.transfer.transaction_id).or_default().push(record.transfer.clone());
                }
            }
        }
        let touched = |transfer: &TransferCommand| {
            [partition_of(&transfer.from, PARTITIONS), partition_of(&transfer.to, PARTITIONS)]
        };
        for transfers in completed.values() {
            for (position, first) in transfers.iter().enumerate() {
                for second in &transfers[position + 1..] {
                    prop_assert!(
                        touched(first).iter().all(|partition| !touched(second).contains(partition)),
                        "{:?} and {:?} both moved money through one partition", first, second
                    );
                }
            }
        }
        for ledger in &cluster.partitions {
            for account in ledger.accounts() {
                let want = expected.get(account.account_id).copied().unwrap_or(0);
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
        annotations: None,
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

/// Two accounts on one partition and two on each of two others: (partition, [ids]).
fn accounts_on_three_partitions() -> [(u32, [String; 2]); 3] {
    let mut found: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for n in 0.. {
        let id = format!("acct-{n}");
        let ids = found.entry(partition_of(&id, PARTITIONS)).or_default();
        if ids.len() < 2 {
            ids.push(id);
        }
        if found.len() == 3 && found.values().all(|ids| ids.len() == 2) {
            break;
        }
    }
    let mut partitions = found.into_iter().map(|(partition, ids)| {
        let [first, second]: [String; 2] = ids.try_into().unwrap();
        (partition, [first, second])
    });
    [(); 3].map(|()| partitions.next().unwrap())
}

/// A cluster with every account of `accounts_on_three_partitions` open in USD and funded with
/// 1000 from an issuer on each partition (ids from 1_000_000 on, never reused below).
fn funded_cluster() -> (Cluster, [(u32, [String; 2]); 3]) {
    let layout = accounts_on_three_partitions();
    let mut cluster = Cluster::new();
    let mut id = 1_000_000;
    for (partition, accounts) in &layout {
        let issuer = format!("issuer-{partition}");
        let issuer = (0..)
            .map(|n| format!("{issuer}-{n}"))
            .find(|candidate| partition_of(candidate, PARTITIONS) == *partition)
            .unwrap();
        cluster.open(&issuer, usd(), true);
        for account in accounts {
            cluster.open(account, usd(), false);
            id += 1;
            let funding = transfer_of(id, &issuer, account, 1000);
            assert!(
                matches!(cluster.submit(funding), Outcome::Transfer(record) if record.status == TransferStatus::Completed)
            );
        }
    }
    (cluster, layout)
}

fn transfer_of(id: u128, from: &str, to: &str, amount_minor: i64) -> TransferCommand {
    TransferCommand {
        transaction_id: uuid::Uuid::from_u128(id),
        from: from.into(),
        to: to.into(),
        amount_minor,
        currency: usd(),
        annotations: None,
    }
}

impl Cluster {
    fn balance(&self, account_id: &str) -> i128 {
        let partition = partition_of(account_id, PARTITIONS) as usize;
        self.partitions[partition]
            .account(account_id)
            .unwrap()
            .balance_minor
    }

    fn balances(&self) -> BTreeMap<String, i128> {
        let accounts = self.partitions.iter().flat_map(|ledger| ledger.accounts());
        accounts
            .map(|account| (account.account_id.to_string(), account.balance_minor))
            .collect()
    }

    /// Submits and drives every saga to the end; the transfer's final answer.
    fn submit_to_end(&mut self, transfer: TransferCommand) -> Outcome {
        let outcome = self.submit(transfer.clone());
        while !self.sagas.is_empty() {
            self.advance(0, true);
        }
        self.check_conservation();
        match outcome {
            Outcome::Transfer(record) if record.status == TransferStatus::InFlight => {
                let source = partition_of(&transfer.from, PARTITIONS) as usize;
                let record = self.partitions[source]
                    .transfer(&transfer.transaction_id)
                    .unwrap();
                Outcome::Transfer(record.clone())
            }
            outcome => outcome,
        }
    }
}

fn is_completed(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Transfer(record) if record.status == TransferStatus::Completed)
}

/// The answer to a second transfer under a used id: refused, and no balance moved.
#[track_caller]
fn assert_refused_as_reused(cluster: &mut Cluster, second: TransferCommand) {
    let before = cluster.balances();
    let outcome = cluster.submit_to_end(second.clone());
    let refused = match &outcome {
        Outcome::Conflict(ledger::Conflict::TransactionIdReused) => true,
        Outcome::Transfer(record) => {
            record.status == TransferStatus::Rejected(RejectReason::TransactionIdReused)
        }
        _ => false,
    };
    assert!(refused, "{second:?} answered {outcome:?}");
    assert_eq!(cluster.balances(), before, "{second:?} moved money");
    // A retry gets the same answer and still moves nothing.
    assert_eq!(cluster.submit_to_end(second), outcome);
    assert_eq!(cluster.balances(), before);
}

/// Issue "money safety first", item 2: an id used inside one partition, then across
/// partitions into it, and the reverse order, whether the first completed or was rejected.
#[test]
fn an_id_moves_money_once_through_any_partition_in_either_order() {
    let id = 7;
    // Same-partition first (P0: a -> b), then cross-partition into P0 (P1: c -> a).
    let (mut cluster, [(_, [a, b]), (_, [c, d]), (_, [e, _])]) = funded_cluster();
    assert!(is_completed(
        &cluster.submit_to_end(transfer_of(id, &a, &b, 10))
    ));
    assert_refused_as_reused(&mut cluster, transfer_of(id, &c, &a, 10));
    assert_refused_as_reused(&mut cluster, transfer_of(id, &c, &b, 99));
    // ... and out of P0 into another partition (P0: b -> c): P0 recorded the id as a source.
    assert_refused_as_reused(&mut cluster, transfer_of(id, &b, &c, 10));
    // The first transfer's retry still gets its original success.
    assert!(is_completed(
        &cluster.submit_to_end(transfer_of(id, &a, &b, 10))
    ));

    // Cross-partition first (P1: c -> a into P0), then inside either partition it touched.
    let id = 8;
    assert!(is_completed(
        &cluster.submit_to_end(transfer_of(id, &c, &a, 10))
    ));
    assert_refused_as_reused(&mut cluster, transfer_of(id, &a, &b, 10)); // inside the target
    assert_refused_as_reused(&mut cluster, transfer_of(id, &d, &c, 10)); // inside the source
    assert_refused_as_reused(&mut cluster, transfer_of(id, &b, &d, 10)); // target -> source
    assert_refused_as_reused(&mut cluster, transfer_of(id, &e, &a, 10)); // into the target
    assert_refused_as_reused(&mut cluster, transfer_of(id, &e, &c, 10)); // into the source

    // A rejected first transfer takes the id too (insufficient funds, P0: a -> b).
    let id = 9;
    let rejected = cluster.submit_to_end(transfer_of(id, &a, &b, 1_000_000));
    assert!(matches!(&rejected, Outcome::Transfer(record)
        if record.status == TransferStatus::Rejected(RejectReason::InsufficientFunds)));
    assert_refused_as_reused(&mut cluster, transfer_of(id, &c, &a, 10));
    assert_refused_as_reused(&mut cluster, transfer_of(id, &b, &a, 10));
    assert_eq!(
        cluster.submit_to_end(transfer_of(id, &a, &b, 1_000_000)),
        rejected
    );

    // A cross-partition transfer refused by its target (unknown account) takes the id on both.
    let id = 10;
    let ghost = (0..)
        .map(|n| format!("ghost-{n}"))
        .find(|ghost| partition_of(ghost, PARTITIONS) == partition_of(&a, PARTITIONS))
        .unwrap();
    let refused = cluster.submit_to_end(transfer_of(id, &c, &ghost, 10));
    assert!(matches!(&refused, Outcome::Transfer(record)
        if record.status == TransferStatus::Rejected(RejectReason::ToAccountNotFound)));
    assert_refused_as_reused(&mut cluster, transfer_of(id, &a, &b, 10));
    assert_refused_as_reused(&mut cluster, transfer_of(id, &d, &c, 10));
    assert_eq!(
        cluster.balance(&c),
        990,
        "c paid 10 once (id 8), nothing for any refused reuse"
    );
    assert_eq!(
        cluster.balance(&a),
        1000,
        "a paid 10 (id 7) and got 10 (id 8)"
    );
    assert_eq!(cluster.balance(&b), 1010, "b got 10 once (id 7)");
}

/// The scope of the guarantee: two transfers under one id whose partitions are all different
/// are not compared (that would cost a round trip to a global id index on every transfer;
/// see README, "Idempotency"). Each moves money once.
#[test]
fn an_id_reused_on_disjoint_partitions_is_not_detected() {
    let (mut cluster, [(_, [a, b]), (_, [c, _]), (_, [e, _])]) = funded_cluster();
    assert!(is_completed(
        &cluster.submit_to_end(transfer_of(11, &a, &b, 10))
    ));
    // c -> e touches P1 and P2 only, neither of which recorded id 11.
    assert!(is_completed(
        &cluster.submit_to_end(transfer_of(11, &c, &e, 10))
    ));
    assert_eq!(cluster.balance(&c), 990);
    assert_eq!(cluster.balance(&e), 1010);
}

/// A source partition with `count` transfers in flight to another partition (ids 1..=count),
/// never credited.
fn in_flight_ledger(count: u128) -> Ledger {
    let mut cluster = Cluster::new();
    let issuer = "issuer";
    cluster.open(issuer, usd(), true);
    let source = partition_of(issuer, PARTITIONS);
    let target = (0..)
        .map(|n| format!("payee-{n}"))
        .find(|id| partition_of(id, PARTITIONS) != source)
        .unwrap();
    cluster.open(&target, usd(), false);
    for id in 1..=count {
        let outcome = cluster.submit(transfer_of(id, issuer, &target, 1));
        assert!(
            matches!(outcome, Outcome::Transfer(record) if record.status == TransferStatus::InFlight)
        );
    }
    cluster.partitions.swap_remove(source as usize)
}

/// The ids of the first `max` in-flight transfers from `cursor` on.
fn batch(ledger: &Ledger, cursor: Option<u128>, max: usize) -> Vec<u128> {
    let records = ledger.in_flight_from(cursor.map(uuid::Uuid::from_u128));
    let ids = records.map(|record| record.transfer.transaction_id.as_u128());
    ids.take(max).collect()
}

#[test]
fn recovery_resumes_after_the_cursor_and_wraps_around() {
    let ledger = in_flight_ledger(10);
    assert_eq!(batch(&ledger, None, 4), [1, 2, 3, 4]);
    assert_eq!(batch(&ledger, Some(4), 4), [5, 6, 7, 8]);
    assert_eq!(batch(&ledger, Some(8), 4), [9, 10, 1, 2]);
    // The cursor's transfer settled meanwhile (or never existed): resume after where it was.
    assert_eq!(batch(&ledger, Some(1_000), 3), [1, 2, 3]);
    // Fewer than a batch: each once, starting after the cursor.
    assert_eq!(
        batch(&ledger, Some(7), 100),
        [8, 9, 10, 1, 2, 3, 4, 5, 6, 7]
    );
    assert!(batch(&Ledger::new(), Some(7), 4).is_empty());
}

/// Recovery as the write node runs it: transfers stuck forever (their target partition has
/// no leader) sort first and fill a whole batch. Taking the first batch every pass never
/// reached the others; resuming after the last one driven reaches every transfer within
/// `ceil(count / max)` passes.
#[test]
fn stuck_transfers_cannot_starve_the_others() {
    const MAX: usize = 8;
    let ledger = in_flight_ledger(3 * MAX as u128 + 5);
    let mut driven = std::collections::BTreeSet::new();
    let mut cursor = None;
    for _ in 0..(3 * MAX + 5).div_ceil(MAX) {
        let pass = batch(&ledger, cursor, MAX);
        assert_eq!(pass.len(), MAX.min(3 * MAX + 5));
        cursor = pass.last().copied();
        driven.extend(pass);
    }
    assert_eq!(
        driven.len(),
        3 * MAX + 5,
        "every in-flight transfer was driven"
    );
}
