//! Multi-leg transfers across partitions, step by step (prepare every part, the home's
//! decision, resolve every part, finish): all legs or none, each partition conserving money
//! after every entry, a credit never taken back, every step idempotent, bad steps refused
//! without a change. The write node drives the same commands over its peers.

use std::collections::{BTreeMap, BTreeSet};

use ledger::{
    AccountChange, AccountRefusal, Command, Conflict, Currency, EntryMeta, Event, Ledger, Leg,
    LegsCommand, LegsDecision, LegsPart, LegsRecord, LegsStatus, Malformed, Outcome, RejectReason,
    TransferCommand, TransferStatus, evolve,
};
use proptest::prelude::*;
use uuid::Uuid;

const PARTITIONS: usize = 3;

fn usd() -> Currency {
    Currency::parse("USD").unwrap()
}

/// The partition of an account: the digit after its leading `p` ("p1-alice" is in 1).
fn partition_of(account_id: &str) -> usize {
    usize::from(account_id.as_bytes()[1] - b'0')
}

/// Three partitions, each with every event it applied, stamped one entry after another.
struct Cluster {
    ledgers: Vec<Ledger>,
    events: Vec<Vec<Event>>,
    index: u64,
}

impl Cluster {
    /// In each partition `p`: "p<p>-bank" (may go negative), "p<p>-alice" and "p<p>-bob"
    /// funded with 100 each, "p<p>-carol" at 0, all USD; "p<p>-euro" in EUR.
    fn funded() -> Cluster {
        let mut cluster = Cluster {
            ledgers: vec![Ledger::new(); PARTITIONS],
            events: vec![Vec::new(); PARTITIONS],
            index: 0,
        };
        for p in 0..PARTITIONS {
            for (name, code, issuer) in [
                ("bank", "USD", true),
                ("alice", "USD", false),
                ("bob", "USD", false),
                ("carol", "USD", false),
                ("euro", "EUR", false),
            ] {
                cluster.run(
                    p,
                    &Command::OpenAccount {
                        account_id: format!("p{p}-{name}"),
                        currency: Currency::parse(code).unwrap(),
                        allow_negative_balance: issuer,
                        annotations: None,
                    },
                );
            }
            for (id, name) in [(900, "alice"), (901, "bob")] {
                let funded = cluster.run(
                    p,
                    &Command::Transfer(TransferCommand {
                        transaction_id: Uuid::from_u128(id + 10 * p as u128),
                        from: format!("p{p}-bank"),
                        to: format!("p{p}-{name}"),
                        amount_minor: 100,
                        currency: usd(),
                        annotations: None,
                    }),
                );
                assert!(
                    matches!(funded, Outcome::Transfer(record) if record.status == TransferStatus::Completed)
                );
            }
        }
        cluster
    }

    /// Executes a command on partition `p`; a reply must change nothing, and the partition
    /// conserves money after every entry.
    fn run(&mut self, p: usize, command: &Command) -> Outcome {
        self.index += 1;
        let meta = EntryMeta {
            index: self.index,
            timestamp_ms: 1_700_000_000_000 + self.index,
        };
        let before = self.ledgers[p].clone();
        let (event, outcome) = self.ledgers[p].execute(command, meta);
        match event {
            Some(event) => self.events[p].push(event),
            None => assert_eq!(self.ledgers[p], before, "a reply changed the state"),
        }
        assert_eq!(
            self.ledgers[p].imbalance(),
            None,
            "partition {p} after {command:?}"
        );
        outcome
    }

    fn part(legs: &LegsCommand, p: usize) -> LegsPart {
        LegsPart::of(legs, |account_id| partition_of(account_id) == p)
    }

    /// The partitions a set touches, the home (its first leg's `from`) first.
    fn parts(legs: &LegsCommand) -> Vec<usize> {
        let home = partition_of(&legs.legs[0].from);
        let mut parts = vec![home];
        for account_id in legs.accounts() {
            let p = partition_of(account_id);
            if !parts.contains(&p) {
                parts.push(p);
            }
        }
        parts
    }

    fn prepare(&mut self, p: usize, legs: &LegsCommand) -> Outcome {
        let part = Cluster::part(legs, p);
        self.run(
            p,
            &Command::PrepareLegs {
                legs: legs.clone(),
                part,
            },
        )
    }

    fn resolve(&mut self, p: usize, legs: &LegsCommand, decision: LegsDecision) -> Outcome {
        let part = Cluster::part(legs, p);
        self.run(
            p,
            &Command::ResolveLegs {
                legs: legs.clone(),
                part,
                decision,
            },
        )
    }

    fn finish(&mut self, p: usize, transaction_id: Uuid) -> Outcome {
        self.run(p, &Command::FinishLegs { transaction_id })
    }

    /// What the write node's driver does, from the client's call to the finish: the home
    /// prepares (a refusal there is the answer), then every other part; the first refusal
    /// rejects the set; the decision is resolved on the home (the client's answer), then on
    /// every other part; then the home finishes. Returns the client's answer.
    fn drive(&mut self, legs: &LegsCommand) -> Outcome {
        let parts = Cluster::parts(legs);
        let home = parts[0];
        let prepared = self.prepare(home, legs);
        if !matches!(&prepared, Outcome::Legs(record) if matches!(record.status, LegsStatus::Prepared { .. }))
        {
            return prepared;
        }
        let mut decision = LegsDecision::Completed;
        for &p in &parts[1..] {
            match status(&self.prepare(p, legs)) {
                LegsStatus::Prepared { .. } => {}
                LegsStatus::Rejected { leg, reason } => {
                    if decision == LegsDecision::Completed {
                        decision = LegsDecision::Rejected { leg, reason };
                    }
                }
                other => panic!("a prepare answered {other:?}"),
            }
        }
        let answer = self.resolve(home, legs, decision);
        for &p in &parts[1..] {
            self.resolve(p, legs, decision);
        }
        self.finish(home, legs.transaction_id);
        answer
    }

    fn balance(&self, account_id: &str) -> i128 {
        self.ledgers[partition_of(account_id)]
            .account(account_id)
            .unwrap()
            .balance_minor
    }

    fn balances(&self) -> BTreeMap<String, i128> {
        self.ledgers
            .iter()
            .flat_map(|ledger| ledger.accounts())
            .map(|account| (account.account_id.to_owned(), account.balance_minor))
            .collect()
    }

    /// Money taken out by parts and not yet credited or refunded, per currency, over every
    /// partition (what the outflows sum to).
    fn in_flight(&self) -> BTreeMap<Currency, i128> {
        let mut total = BTreeMap::new();
        for ledger in &self.ledgers {
            for (currency, outflow) in ledger.outflow_by_currency() {
                *total.entry(*currency).or_default() += outflow;
            }
        }
        total.retain(|_, amount| *amount != 0);
        total
    }

    /// Every partition replayed from its events equals the partition.
    fn assert_replays(&self) {
        for (p, events) in self.events.iter().enumerate() {
            let mut replayed = Ledger::new();
            for event in events {
                evolve(&mut replayed, event);
            }
            assert_eq!(replayed, self.ledgers[p], "partition {p} replayed");
            assert_eq!(replayed.digest(), self.ledgers[p].digest());
        }
    }
}

fn set(id: u128, legs: &[(&str, &str, i64)]) -> LegsCommand {
    LegsCommand {
        transaction_id: Uuid::from_u128(id),
        currency: usd(),
        legs: legs
            .iter()
            .map(|(from, to, amount_minor)| Leg {
                from: (*from).into(),
                to: (*to).into(),
                amount_minor: *amount_minor,
            })
            .collect(),
        annotations: None,
    }
}

fn status(outcome: &Outcome) -> LegsStatus {
    match outcome {
        Outcome::Legs(record) => record.status,
        other => panic!("expected a multi-leg record, got {other:?}"),
    }
}

fn record(outcome: &Outcome) -> LegsRecord {
    match outcome {
        Outcome::Legs(record) => record.clone(),
        other => panic!("expected a multi-leg record, got {other:?}"),
    }
}

/// A snapshot of a ledger with live multi-leg records, written and read back.
fn through_snapshot(ledger: &Ledger) -> Ledger {
    let bytes = ledger::wire::to_vec_annotated(&ledger::state::WithLiveLegs(ledger.clone()));
    let ledger::state::WithLiveLegs(restored) =
        ledger::wire::from_slice(ledger::wire::Layout::Annotated, &bytes).unwrap();
    restored
}

#[test]
fn a_set_across_three_partitions_moves_every_leg_or_none() {
    let mut cluster = Cluster::funded();
    // alice (0) pays 60 to carol (1) and 30 to carol (2); bob (1) passes 50 on to alice (0).
    let legs = set(
        1,
        &[
            ("p0-alice", "p1-carol", 60),
            ("p0-alice", "p2-carol", 30),
            ("p1-bob", "p0-alice", 50),
        ],
    );
    let answer = cluster.drive(&legs);
    assert_eq!(
        status(&answer),
        LegsStatus::Decided(LegsDecision::Completed)
    );
    assert_eq!(cluster.balance("p0-alice"), 100 - 60 - 30 + 50);
    assert_eq!(cluster.balance("p1-carol"), 60);
    assert_eq!(cluster.balance("p2-carol"), 30);
    assert_eq!(cluster.balance("p1-bob"), 50);
    assert_eq!(cluster.in_flight(), BTreeMap::new());
    for p in 0..PARTITIONS {
        let recorded = cluster.ledgers[p]
            .legs_record(&legs.transaction_id)
            .unwrap();
        assert_eq!(recorded.status, LegsStatus::Completed, "partition {p}");
        assert_eq!(cluster.ledgers[p].live_legs_count(), 0);
    }
    // Every step again: the same answers, nothing moves.
    let before = cluster.balances();
    assert_eq!(status(&cluster.prepare(1, &legs)), LegsStatus::Completed);
    assert_eq!(
        status(&cluster.resolve(2, &legs, LegsDecision::Completed)),
        LegsStatus::Completed
    );
    assert_eq!(
        status(&cluster.finish(0, legs.transaction_id)),
        LegsStatus::Completed
    );
    assert_eq!(cluster.balances(), before);
    cluster.assert_replays();
}

#[test]
fn a_refusal_on_one_part_refunds_every_other_part() {
    let mut cluster = Cluster::funded();
    // bob (1) has 100, not 150: his part refuses; alice's debit on 0 comes back.
    let legs = set(
        2,
        &[("p0-alice", "p2-carol", 40), ("p1-bob", "p2-carol", 150)],
    );
    let before = cluster.balances();
    let answer = cluster.drive(&legs);
    let rejected = LegsDecision::Rejected {
        leg: 1,
        reason: RejectReason::InsufficientFunds,
    };
    assert_eq!(status(&answer), LegsStatus::Decided(rejected));
    assert_eq!(cluster.balances(), before);
    assert_eq!(cluster.in_flight(), BTreeMap::new());
    for p in 0..PARTITIONS {
        assert_eq!(
            cluster.ledgers[p]
                .legs_record(&legs.transaction_id)
                .unwrap()
                .status,
            rejected.status(),
            "partition {p}"
        );
    }
    cluster.assert_replays();
}

#[test]
fn a_refusal_on_the_home_is_the_answer_and_touches_no_other_partition() {
    let mut cluster = Cluster::funded();
    let legs = set(3, &[("p0-alice", "p1-carol", 500)]);
    let answer = cluster.drive(&legs);
    assert_eq!(
        status(&answer),
        LegsStatus::Rejected {
            leg: 0,
            reason: RejectReason::InsufficientFunds
        }
    );
    assert!(
        cluster.ledgers[1]
            .legs_record(&legs.transaction_id)
            .is_none()
    );
    // A frozen receiver, a missing one, another currency: each part checks its own.
    let legs = set(4, &[("p0-alice", "p1-nobody", 5)]);
    cluster.prepare(0, &legs);
    assert_eq!(
        status(&cluster.prepare(1, &legs)),
        LegsStatus::Rejected {
            leg: 0,
            reason: RejectReason::ToAccountNotFound
        }
    );
    let mut euro = set(5, &[("p0-alice", "p1-euro", 5)]);
    euro.currency = usd();
    cluster.prepare(0, &euro);
    assert_eq!(
        status(&cluster.prepare(1, &euro)),
        LegsStatus::Rejected {
            leg: 0,
            reason: RejectReason::CurrencyMismatch
        }
    );
    cluster.run(
        2,
        &Command::ChangeAccount {
            account_id: "p2-carol".into(),
            change: AccountChange::Freeze,
        },
    );
    let frozen = set(6, &[("p0-alice", "p2-carol", 5)]);
    cluster.prepare(0, &frozen);
    assert_eq!(
        status(&cluster.prepare(2, &frozen)),
        LegsStatus::Rejected {
            leg: 0,
            reason: RejectReason::ToAccountFrozen
        }
    );
}

#[test]
fn a_part_cannot_close_while_prepared_and_a_decided_credit_arrives_even_if_frozen_since() {
    let mut cluster = Cluster::funded();
    let legs = set(7, &[("p0-alice", "p1-carol", 30)]);
    cluster.prepare(0, &legs);
    cluster.prepare(1, &legs);
    let close = |account_id: &str| Command::ChangeAccount {
        account_id: account_id.into(),
        change: AccountChange::Close,
    };
    // carol is at 0 and would close, but a credit is coming.
    assert_eq!(
        cluster.run(1, &close("p1-carol")),
        Outcome::AccountRefused(AccountRefusal::HasTransfersInFlight)
    );
    // Frozen after it prepared: the part was accepted before, the credit arrives.
    cluster.run(
        1,
        &Command::ChangeAccount {
            account_id: "p1-carol".into(),
            change: AccountChange::Freeze,
        },
    );
    cluster.resolve(0, &legs, LegsDecision::Completed);
    cluster.resolve(1, &legs, LegsDecision::Completed);
    cluster.finish(0, legs.transaction_id);
    assert_eq!(cluster.balance("p1-carol"), 30);
    assert_eq!(cluster.balance("p0-alice"), 70);
    cluster.assert_replays();
}

#[test]
fn a_part_told_of_a_rejection_before_it_prepared_refuses_a_late_prepare() {
    let mut cluster = Cluster::funded();
    let legs = set(
        8,
        &[("p0-alice", "p1-carol", 30), ("p0-bob", "p2-nobody", 1)],
    );
    cluster.prepare(0, &legs);
    // Partition 2 refuses; partition 1's prepare is lost on the way; the home rejects.
    let refusal = status(&cluster.prepare(2, &legs));
    let LegsStatus::Rejected { leg, reason } = refusal else {
        panic!("{refusal:?}")
    };
    let decision = LegsDecision::Rejected { leg, reason };
    cluster.resolve(0, &legs, decision);
    assert_eq!(
        status(&cluster.resolve(1, &legs, decision)),
        decision.status()
    );
    assert_eq!(
        status(&cluster.resolve(2, &legs, decision)),
        decision.status()
    );
    cluster.finish(0, legs.transaction_id);
    // The lost prepare arrives late: refused with the rejection, nothing taken.
    let before = cluster.balances();
    assert_eq!(status(&cluster.prepare(1, &legs)), decision.status());
    assert_eq!(cluster.balances(), before);
    assert_eq!(cluster.in_flight(), BTreeMap::new());
    cluster.assert_replays();
}

#[test]
fn steps_that_do_not_fit_are_refused_and_change_nothing() {
    let mut cluster = Cluster::funded();
    let legs = set(9, &[("p0-alice", "p1-carol", 30)]);
    let malformed = |outcome: Outcome| match outcome {
        Outcome::Malformed(malformed) => malformed,
        other => panic!("expected a refusal as malformed, got {other:?}"),
    };
    for part in [0, 0b11, 0b100, u128::MAX] {
        let command = Command::PrepareLegs {
            legs: legs.clone(),
            part: LegsPart(part),
        };
        assert_eq!(
            malformed(cluster.run(0, &command)),
            Malformed::InvalidLegsPart,
            "{part:b}"
        );
    }
    // A completed decision for a part never prepared; a finish before a decision.
    assert_eq!(
        malformed(cluster.resolve(1, &legs, LegsDecision::Completed)),
        Malformed::LegsNotPrepared
    );
    assert_eq!(
        malformed(cluster.finish(0, legs.transaction_id)),
        Malformed::LegsNotPrepared
    );
    cluster.prepare(0, &legs);
    assert_eq!(
        malformed(cluster.finish(0, legs.transaction_id)),
        Malformed::LegsNotPrepared
    );
    // A resolve naming another part than the one prepared, a rejection of a leg the set
    // does not have.
    let command = Command::ResolveLegs {
        legs: legs.clone(),
        part: LegsPart(0b10),
        decision: LegsDecision::Completed,
    };
    assert_eq!(
        malformed(cluster.run(0, &command)),
        Malformed::InvalidLegsPart
    );
    let decision = LegsDecision::Rejected {
        leg: 1,
        reason: RejectReason::InsufficientFunds,
    };
    assert_eq!(
        malformed(cluster.resolve(0, &legs, decision)),
        Malformed::InvalidLegsPart
    );
    // A malformed set.
    let mut repeated = legs.clone();
    repeated.legs.push(repeated.legs[0].clone());
    assert_eq!(
        malformed(cluster.prepare(0, &repeated)),
        Malformed::RepeatedLeg
    );
    assert_eq!(
        cluster.ledgers[0]
            .legs_record(&legs.transaction_id)
            .unwrap()
            .status,
        LegsStatus::Prepared {
            part: LegsPart(0b1)
        }
    );
}

#[test]
fn an_id_taken_by_another_record_is_refused_on_every_part() {
    let mut cluster = Cluster::funded();
    let transfer = Command::Transfer(TransferCommand {
        transaction_id: Uuid::from_u128(10),
        from: "p1-alice".into(),
        to: "p1-bob".into(),
        amount_minor: 1,
        currency: usd(),
        annotations: None,
    });
    cluster.run(1, &transfer);
    // On partition 1 the id is a transfer: the part is refused as reused, nothing recorded.
    let legs = set(10, &[("p0-alice", "p1-carol", 30)]);
    cluster.prepare(0, &legs);
    let refused = record(&cluster.prepare(1, &legs));
    assert_eq!(
        refused.status,
        LegsStatus::Rejected {
            leg: 0,
            reason: RejectReason::TransactionIdReused
        }
    );
    let decision = LegsDecision::Rejected {
        leg: 0,
        reason: RejectReason::TransactionIdReused,
    };
    cluster.resolve(0, &legs, decision);
    cluster.resolve(1, &legs, decision);
    cluster.finish(0, legs.transaction_id);
    assert_eq!(cluster.balance("p0-alice"), 100);
    assert_eq!(cluster.balance("p1-carol"), 0);
    // On its home, the id is the client's: another set under it is a conflict.
    let other = set(10, &[("p0-alice", "p2-carol", 5)]);
    assert_eq!(
        cluster.prepare(0, &other),
        Outcome::Conflict(Conflict::TransactionIdReused)
    );
    cluster.assert_replays();
}

#[test]
fn live_parts_survive_a_snapshot_and_a_ledger_that_keeps_only_live_records() {
    let mut cluster = Cluster::funded();
    let legs = set(
        11,
        &[("p0-alice", "p1-carol", 30), ("p1-bob", "p0-carol", 20)],
    );
    cluster.prepare(0, &legs);
    cluster.prepare(1, &legs);
    cluster.resolve(0, &legs, LegsDecision::Completed);
    for p in 0..2 {
        let restored = through_snapshot(&cluster.ledgers[p]);
        // A snapshot carries the live records only (the finished ones are on disk).
        let mut live_only = cluster.ledgers[p].clone();
        live_only.evict_all_finished();
        assert_eq!(restored, live_only, "partition {p}");
        assert_eq!(restored.digest(), cluster.ledgers[p].digest());
        // The formats without them refuse to drop live parts.
        assert!(postcard::to_stdvec(&cluster.ledgers[p]).is_err());
        let annotated = ledger::state::WithAccountAnnotations(cluster.ledgers[p].clone());
        assert!(postcard::to_stdvec(&annotated).is_err());
    }
    // The restored, live-only partition 1 carries on: carol still cannot close, the
    // resolve completes, the record leaves memory.
    let mut one = through_snapshot(&cluster.ledgers[1]);
    one.keep_only_in_flight();
    assert!(one.legs_record(&legs.transaction_id).is_some());
    let meta = EntryMeta {
        index: 1_000,
        timestamp_ms: 1_800_000_000_000,
    };
    let (event, outcome) = one.execute(
        &Command::ResolveLegs {
            legs: legs.clone(),
            part: Cluster::part(&legs, 1),
            decision: LegsDecision::Completed,
        },
        meta,
    );
    assert!(matches!(event, Some(Event::LegsResolved { .. })));
    assert_eq!(status(&outcome), LegsStatus::Completed);
    assert!(one.legs_record(&legs.transaction_id).is_none());
    assert_eq!(one.live_legs_count(), 0);
    assert_eq!(one.account("p1-carol").unwrap().balance_minor, 30);
    assert_eq!(one.imbalance(), None);
}

/// Where the driver of one set stands.
enum Phase {
    Begin,
    /// The home prepared; each other part's answer once it came.
    Preparing(BTreeMap<usize, LegsStatus>),
    /// Decided (and resolved on the home); the parts told so far.
    Resolving(LegsDecision, BTreeSet<usize>),
    Done,
}

/// Sets driven concurrently with their steps in a random order: prepares delivered late (after
/// the home decided) or twice, resolves twice, ordinary transfers and freezes in between.
struct Run {
    cluster: Cluster,
    sets: Vec<(LegsCommand, Phase)>,
    /// Prepares the home stopped waiting for, which may still arrive.
    stray: Vec<(usize, LegsCommand)>,
    /// What completed, to rebuild the balances from: (from, to, amount).
    moved: Vec<(String, String, i64)>,
    next_id: u128,
}

#[derive(Clone, Debug)]
enum Op {
    /// A new set with these legs (indices into the account names).
    NewSet(Vec<(usize, usize, i64)>),
    /// The next step of a set (by index, modulo), the choice among its possible steps.
    Step(usize, usize),
    /// A stray prepare arrives (by index, modulo).
    Stray(usize),
    /// An ordinary transfer within a partition.
    Transfer(usize, usize, usize, i64),
    /// Freeze or unfreeze an account.
    Toggle(usize),
}

const NAMES: [&str; 5] = ["bank", "alice", "bob", "carol", "nobody"];

fn account(index: usize) -> String {
    format!(
        "p{}-{}",
        index % PARTITIONS,
        NAMES[index / PARTITIONS % NAMES.len()]
    )
}

impl Run {
    fn apply(&mut self, op: Op) {
        match op {
            Op::NewSet(raw) => {
                let mut pairs = BTreeSet::new();
                let legs: Vec<Leg> = raw
                    .into_iter()
                    .map(|(from, to, amount_minor)| (account(from), account(to), amount_minor))
                    .filter(|(from, to, _)| from != to && pairs.insert((from.clone(), to.clone())))
                    .map(|(from, to, amount_minor)| Leg {
                        from,
                        to,
                        amount_minor,
                    })
                    .collect();
                if legs.is_empty() {
                    return;
                }
                self.next_id += 1;
                let command = LegsCommand {
                    transaction_id: Uuid::from_u128(10_000 + self.next_id),
                    currency: usd(),
                    legs,
                    annotations: None,
                };
                if Cluster::parts(&command).len() > 1 {
                    self.sets.push((command, Phase::Begin));
                }
            }
            Op::Step(set, choice) if !self.sets.is_empty() => {
                let index = set % self.sets.len();
                self.step(index, choice);
            }
            Op::Stray(index) if !self.stray.is_empty() => {
                // Before the part hears the decision, it prepares (and the resolve refunds
                // it); after, it is refused. The end of the run checks nothing stays in flight.
                let (p, legs) = self.stray.swap_remove(index % self.stray.len());
                let answer = status(&self.cluster.prepare(p, &legs));
                assert!(
                    matches!(
                        answer,
                        LegsStatus::Rejected { .. } | LegsStatus::Prepared { .. }
                    ),
                    "a late prepare answered {answer:?}"
                );
            }
            Op::Transfer(p, from, to, amount_minor) => {
                let p = p % PARTITIONS;
                let (from, to) = (
                    format!("p{p}-{}", NAMES[from % 4]),
                    format!("p{p}-{}", NAMES[to % 4]),
                );
                if from == to {
                    return;
                }
                self.next_id += 1;
                let transfer = TransferCommand {
                    transaction_id: Uuid::from_u128(50_000 + self.next_id),
                    from: from.clone(),
                    to: to.clone(),
                    amount_minor,
                    currency: usd(),
                    annotations: None,
                };
                let outcome = self.cluster.run(p, &Command::Transfer(transfer));
                if matches!(outcome, Outcome::Transfer(record) if record.status == TransferStatus::Completed)
                {
                    self.moved.push((from, to, amount_minor));
                }
            }
            Op::Toggle(index) => {
                let account_id = account(index % (PARTITIONS * 4));
                let p = partition_of(&account_id);
                let frozen = self.cluster.ledgers[p].account_settings(&account_id).status
                    == ledger::AccountStatus::Frozen;
                let change = if frozen {
                    AccountChange::Unfreeze
                } else {
                    AccountChange::Freeze
                };
                self.cluster
                    .run(p, &Command::ChangeAccount { account_id, change });
            }
            Op::Step(..) | Op::Stray(_) => {}
        }
    }

    fn step(&mut self, index: usize, choice: usize) {
        let (legs, phase) = &mut self.sets[index];
        let legs = legs.clone();
        let parts = Cluster::parts(&legs);
        let home = parts[0];
        let next = match std::mem::replace(phase, Phase::Done) {
            Phase::Begin => match status(&self.cluster.prepare(home, &legs)) {
                LegsStatus::Prepared { .. } => Phase::Preparing(BTreeMap::new()),
                LegsStatus::Rejected { .. } => Phase::Done,
                other => panic!("the home answered {other:?}"),
            },
            Phase::Preparing(mut answers) => {
                let refusal = answers.values().find_map(|status| match *status {
                    LegsStatus::Rejected { leg, reason } => {
                        Some(LegsDecision::Rejected { leg, reason })
                    }
                    _ => None,
                });
                let waiting: Vec<usize> = parts[1..]
                    .iter()
                    .copied()
                    .filter(|p| !answers.contains_key(p))
                    .collect();
                // With a refusal in, the home may decide before the others answer (their
                // prepares stray); with every part prepared, it completes.
                let decision = match refusal {
                    Some(decision) if waiting.is_empty() || choice.is_multiple_of(3) => {
                        Some(decision)
                    }
                    None if waiting.is_empty() => Some(LegsDecision::Completed),
                    _ => None,
                };
                match decision {
                    Some(decision) => {
                        for p in waiting {
                            self.stray.push((p, legs.clone()));
                        }
                        let answer = status(&self.cluster.resolve(home, &legs, decision));
                        assert_eq!(answer, LegsStatus::Decided(decision));
                        Phase::Resolving(decision, BTreeSet::new())
                    }
                    None => {
                        let p = waiting[choice % waiting.len()];
                        let answer = status(&self.cluster.prepare(p, &legs));
                        answers.insert(p, answer);
                        Phase::Preparing(answers)
                    }
                }
            }
            Phase::Resolving(decision, mut told) => {
                // Any part, told before or not (a resolve may be delivered twice).
                let p = parts[1 + choice % (parts.len() - 1)];
                let answer = status(&self.cluster.resolve(p, &legs, decision));
                match decision {
                    LegsDecision::Completed => assert_eq!(answer, LegsStatus::Completed),
                    LegsDecision::Rejected { .. } => {
                        assert!(matches!(answer, LegsStatus::Rejected { .. }), "{answer:?}")
                    }
                }
                told.insert(p);
                if told.len() == parts.len() - 1 {
                    let finished = status(&self.cluster.finish(home, legs.transaction_id));
                    assert_eq!(finished, decision.status());
                    if decision == LegsDecision::Completed {
                        for leg in &legs.legs {
                            self.moved
                                .push((leg.from.clone(), leg.to.clone(), leg.amount_minor));
                        }
                    }
                    Phase::Done
                } else {
                    Phase::Resolving(decision, told)
                }
            }
            Phase::Done => Phase::Done,
        };
        self.sets[index].1 = next;
    }

    fn all_done(&self) -> bool {
        self.sets
            .iter()
            .all(|(_, phase)| matches!(phase, Phase::Done))
            && self.stray.is_empty()
    }
}

fn op() -> impl Strategy<Value = Op> {
    let accounts = PARTITIONS * NAMES.len();
    prop_oneof![
        2 => prop::collection::vec((0..accounts, 0..accounts, 1_i64..120), 1..5).prop_map(Op::NewSet),
        8 => (any::<usize>(), any::<usize>()).prop_map(|(set, choice)| Op::Step(set, choice)),
        1 => any::<usize>().prop_map(Op::Stray),
        2 => (0..PARTITIONS, 0_usize..4, 0_usize..4, 1_i64..80).prop_map(|(p, from, to, amount)| Op::Transfer(p, from, to, amount)),
        1 => (0..PARTITIONS * 4).prop_map(Op::Toggle),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn sets_across_partitions_move_every_leg_or_none_exactly_once(ops in prop::collection::vec(op(), 1..120)) {
        let cluster = Cluster::funded();
        let initial = cluster.balances();
        let mut run = Run { cluster, sets: Vec::new(), stray: Vec::new(), moved: Vec::new(), next_id: 0 };
        for (step, op) in ops.into_iter().enumerate() {
            run.apply(op);
            if step % 17 == 0 {
                for ledger in &run.cluster.ledgers {
                    let restored = through_snapshot(ledger);
                    prop_assert_eq!(restored.digest(), ledger.digest());
                    prop_assert!(restored.live_legs().eq(ledger.live_legs()));
                }
            }
        }
        // Every set to its end, every stray prepare delivered.
        let mut choice = 0;
        while !run.all_done() {
            choice += 1;
            for index in 0..run.sets.len() {
                run.step(index, choice);
            }
            if !run.stray.is_empty() {
                run.apply(Op::Stray(0));
            }
        }
        prop_assert_eq!(run.cluster.in_flight(), BTreeMap::new());
        let mut expected = initial;
        for (from, to, amount) in &run.moved {
            *expected.get_mut(from).unwrap() -= i128::from(*amount);
            *expected.get_mut(to).unwrap() += i128::from(*amount);
        }
        prop_assert_eq!(run.cluster.balances(), expected);
        for (legs, _) in &run.sets {
            let parts = Cluster::parts(legs);
            let home = run.cluster.ledgers[parts[0]].legs_record(&legs.transaction_id).unwrap().status;
            for p in parts {
                let ledger = &run.cluster.ledgers[p];
                prop_assert_eq!(ledger.live_legs_count(), 0);
                // A part the home never reached (it refused first) has no record.
                let part = ledger.legs_record(&legs.transaction_id).map(|record| record.status);
                prop_assert!(part.is_some() || home != LegsStatus::Completed);
                if let Some(part) = part {
                    prop_assert_eq!(part == LegsStatus::Completed, home == LegsStatus::Completed, "{:?} {:?}", part, home);
                }
            }
        }
        run.cluster.assert_replays();
    }
}
