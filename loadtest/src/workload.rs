//! The workload: which accounts exist, and the seeded sequence of operations each client runs.
//!
//! Accounts are addressed by a *slot*: `0..count` are the ordinary accounts
//! (`lt-<run>-<slot>`), `count..count+partitions` the issuers, one per partition, which fund
//! the others in setup and may go negative. Client `i` takes its source accounts from
//! partition `i mod P` (so a `SubmitTransfers` stream needs one leader), picks them with a
//! Zipf distribution over that partition's accounts (rank 1 = the partition's lowest slot),
//! and picks the target in the same partition or, for `cross_share` of the transfers, in
//! another one. The same seed gives every client the same sequence of operations.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use uuid::Uuid;

/// The run's accounts, grouped by partition.
#[derive(Debug)]
pub struct Accounts {
    pub run_id: String,
    /// Ordinary accounts; slots `0..count`.
    pub count: u32,
    pub partitions: u32,
    /// Ordinary slots of each partition, ascending.
    pub by_partition: Vec<Vec<u32>>,
    /// Issuer account id of each partition (slot `count + p`).
    pub issuers: Vec<String>,
    /// Partitions that hold at least one ordinary account, ascending.
    pub populated: Vec<u32>,
}

impl Accounts {
    /// Computes every account's partition (`ledger::partition_of`, the cluster's own hash)
    /// and finds one issuer id per partition.
    pub fn new(run_id: &str, count: u32, partitions: u32) -> Accounts {
        assert!(partitions > 0 && count > 0);
        let mut by_partition = vec![Vec::new(); partitions as usize];
        for slot in 0..count {
            let p = ledger::partition_of(&ordinary_id(run_id, slot), partitions);
            by_partition[p as usize].push(slot);
        }
        let mut issuers = vec![String::new(); partitions as usize];
        let mut missing = partitions;
        let mut candidate = 0u64;
        while missing > 0 {
            let id = format!("lt-{run_id}-issuer-{candidate}");
            candidate += 1;
            let p = ledger::partition_of(&id, partitions) as usize;
            if issuers[p].is_empty() {
                issuers[p] = id;
                missing -= 1;
            }
        }
        let populated = (0..partitions)
            .filter(|p| !by_partition[*p as usize].is_empty())
            .collect();
        Accounts {
            run_id: run_id.to_owned(),
            count,
            partitions,
            by_partition,
            issuers,
            populated,
        }
    }

    /// Ordinary accounts plus issuers.
    pub fn slots(&self) -> u32 {
        self.count + self.partitions
    }

    pub fn is_issuer(&self, slot: u32) -> bool {
        slot >= self.count
    }

    /// The account id of a slot.
    pub fn id(&self, slot: u32) -> String {
        if slot < self.count {
            ordinary_id(&self.run_id, slot)
        } else {
            self.issuers[(slot - self.count) as usize].clone()
        }
    }

    /// Slot of an account id of this run, if it is one.
    pub fn slot_of(&self, id: &str) -> Option<u32> {
        let rest = id.strip_prefix("lt-")?.strip_prefix(self.run_id.as_str())?;
        let rest = rest.strip_prefix('-')?;
        if let Some(issuer) = rest.strip_prefix("issuer-") {
            let _: u64 = issuer.parse().ok()?;
            let p = self.issuers.iter().position(|i| i == id)?;
            return Some(self.count + p as u32);
        }
        let slot: u32 = rest.parse().ok()?;
        (slot < self.count && ordinary_id(&self.run_id, slot) == id).then_some(slot)
    }

    /// Partition of a slot.
    pub fn partition(&self, slot: u32) -> u32 {
        if slot >= self.count {
            slot - self.count
        } else {
            ledger::partition_of(&ordinary_id(&self.run_id, slot), self.partitions)
        }
    }
}

fn ordinary_id(run_id: &str, slot: u32) -> String {
    format!("lt-{run_id}-{slot}")
}

/// One operation of the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Transfer(TransferOp),
    /// A balance read of one account.
    Read {
        slot: u32,
    },
}

/// A transfer between two slots, in USD cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferOp {
    pub id: Uuid,
    pub from: u32,
    pub to: u32,
    pub amount_minor: i64,
}

/// Formats cents as the USD decimal string the API takes (`"12.34"`).
pub fn usd(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let minor = minor.unsigned_abs();
    format!("{sign}{}.{:02}", minor / 100, minor % 100)
}

/// Settings shared by every client's generator.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    pub zipf: f64,
    pub cross_share: f64,
    pub read_share: f64,
    pub amount_max_minor: i64,
    pub seed: u64,
}

/// One client's seeded operation sequence.
pub struct Generator {
    ops: SmallRng,
    ids: SmallRng,
    mix: Mix,
    /// Index into `Accounts::populated` of this client's source partition.
    home: usize,
    /// Rank distribution of each partition (None for empty ones).
    zipfs: Vec<Option<Zipf<f64>>>,
}

/// SplitMix64 finaliser: spreads seeds so nearby client numbers get unrelated streams.
fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Generator {
    /// The generator of client number `client`. Operations depend on the seed and client
    /// only; transaction ids also on the run id, so two runs never share an id.
    pub fn new(accounts: &Accounts, mix: Mix, client: u32) -> Generator {
        let ops_seed = mix64(mix.seed ^ mix64(u64::from(client)));
        let run_hash = accounts
            .run_id
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            });
        let zipfs = accounts
            .by_partition
            .iter()
            .map(|group| {
                (!group.is_empty())
                    .then(|| Zipf::new(group.len() as f64, mix.zipf).expect("zipf >= 0, n >= 1"))
            })
            .collect();
        Generator {
            ops: SmallRng::seed_from_u64(ops_seed),
            ids: SmallRng::seed_from_u64(mix64(ops_seed ^ run_hash)),
            mix,
            home: client as usize % accounts.populated.len(),
            zipfs,
        }
    }

    /// The partition this client's transfers come from.
    pub fn home_partition(&self, accounts: &Accounts) -> u32 {
        accounts.populated[self.home]
    }

    /// An account of this client's partition, with the run's skew (for reads and watchers).
    pub fn pick_account(&mut self, accounts: &Accounts) -> u32 {
        let home = accounts.populated[self.home];
        self.pick_in(accounts, home)
    }

    fn pick_in(&mut self, accounts: &Accounts, partition: u32) -> u32 {
        let group = &accounts.by_partition[partition as usize];
        let zipf = self.zipfs[partition as usize]
            .as_ref()
            .expect("populated partition");
        let rank = zipf.sample(&mut self.ops) as usize;
        group[rank.clamp(1, group.len()) - 1]
    }

    /// The next operation.
    pub fn next(&mut self, accounts: &Accounts) -> Op {
        let home = accounts.populated[self.home];
        if self.mix.read_share > 0.0 && self.ops.random::<f64>() < self.mix.read_share {
            let slot = self.pick_in(accounts, home);
            return Op::Read { slot };
        }
        let from = self.pick_in(accounts, home);
        let group_len = accounts.by_partition[home as usize].len();
        let others = accounts.populated.len() - 1;
        let wants_cross = self.ops.random::<f64>() < self.mix.cross_share;
        // A one-account partition cannot host a same-partition transfer, and a single
        // populated partition cannot host a cross one: fall back to what is possible.
        let cross = (wants_cross && others > 0) || group_len < 2;
        let to = if cross {
            let k = self.ops.random_range(0..others);
            let target = accounts.populated[if k >= self.home { k + 1 } else { k }];
            self.pick_in(accounts, target)
        } else {
            let mut to = self.pick_in(accounts, home);
            if to == from {
                // Next account of the partition: keeps the skew, never a self-transfer.
                let group = &accounts.by_partition[home as usize];
                let at = group.binary_search(&from).expect("from is in its group");
                to = group[(at + 1) % group.len()];
            }
            to
        };
        let amount_minor = self.ops.random_range(1..=self.mix.amount_max_minor);
        let id = uuid::Builder::from_random_bytes(self.ids.random()).into_uuid();
        Op::Transfer(TransferOp {
            id,
            from,
            to,
            amount_minor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix(cross_share: f64, read_share: f64, zipf: f64) -> Mix {
        Mix {
            zipf,
            cross_share,
            read_share,
            amount_max_minor: 100,
            seed: 7,
        }
    }

    #[test]
    fn slots_ids_and_partitions_agree() {
        let accounts = Accounts::new("t1", 500, 8);
        assert_eq!(accounts.slots(), 508);
        assert_eq!(accounts.populated.len(), 8);
        for slot in [0, 17, 499, 500, 507] {
            let id = accounts.id(slot);
            assert_eq!(accounts.slot_of(&id), Some(slot), "{id}");
            assert_eq!(
                accounts.partition(slot),
                ledger::partition_of(&id, 8),
                "{id}"
            );
        }
        assert!(accounts.is_issuer(500) && !accounts.is_issuer(499));
        assert_eq!(accounts.slot_of("lt-other-3"), None);
        assert_eq!(accounts.slot_of("lt-t1-500"), None);
    }

    #[test]
    fn same_seed_and_run_same_operations_other_run_other_ids() {
        let a = Accounts::new("runa", 1000, 8);
        let b = Accounts::new("runb", 1000, 8);
        let mut ga = Generator::new(&a, mix(0.5, 0.1, 1.0), 3);
        let mut ga2 = Generator::new(&a, mix(0.5, 0.1, 1.0), 3);
        let mut gb = Generator::new(&b, mix(0.5, 0.1, 1.0), 3);
        let mut other = Generator::new(&a, mix(0.5, 0.1, 1.0), 4);
        let (mut ids_a, mut ids_b) = (Vec::new(), Vec::new());
        let mut differs = false;
        for _ in 0..200 {
            let (x, y) = (ga.next(&a), ga2.next(&a));
            assert_eq!(x, y);
            differs |= other.next(&a) != x;
            if let Op::Transfer(t) = x {
                ids_a.push(t.id);
            }
            if let Op::Transfer(t) = gb.next(&b) {
                ids_b.push(t.id);
            }
        }
        assert!(differs, "another client must get another sequence");
        assert!(ids_a.iter().all(|id| !ids_b.contains(id)));
        assert!(ids_a.iter().all(|id| id.get_version_num() == 4));
    }

    #[test]
    fn cross_share_and_read_share_are_respected() {
        let accounts = Accounts::new("mix", 2000, 8);
        for (cross, expect_cross) in [(0.0, 0.0), (1.0, 1.0), (0.3, 0.3)] {
            let mut g = Generator::new(&accounts, mix(cross, 0.2, 0.0), 1);
            let home = g.home_partition(&accounts);
            let (mut transfers, mut crossing, mut reads) = (0, 0, 0);
            for _ in 0..20_000 {
                match g.next(&accounts) {
                    Op::Read { slot } => {
                        reads += 1;
                        assert_eq!(accounts.partition(slot), home);
                    }
                    Op::Transfer(t) => {
                        transfers += 1;
                        assert_ne!(t.from, t.to);
                        assert_eq!(accounts.partition(t.from), home);
                        assert!((1..=100).contains(&t.amount_minor));
                        if accounts.partition(t.to) != home {
                            crossing += 1;
                        }
                    }
                }
            }
            let share = crossing as f64 / transfers as f64;
            assert!((share - expect_cross).abs() < 0.02, "{cross}: {share}");
            let read_share = reads as f64 / 20_000.0;
            assert!((read_share - 0.2).abs() < 0.02, "{read_share}");
        }
    }

    #[test]
    fn zipf_makes_the_first_rank_hot() {
        let accounts = Accounts::new("hot", 10_000, 4);
        let mut g = Generator::new(&accounts, mix(0.0, 0.0, 1.2), 0);
        let home = g.home_partition(&accounts);
        let hottest = accounts.by_partition[home as usize][0];
        let hits = (0..10_000)
            .filter(|_| matches!(g.next(&accounts), Op::Transfer(t) if t.from == hottest))
            .count();
        // Rank 1 of a Zipf(1.2) over ~2500 items draws roughly a quarter of the samples.
        assert!(hits > 1_500, "{hits}");
    }

    #[test]
    fn tiny_populations_still_generate_valid_transfers() {
        let accounts = Accounts::new("tiny", 2, 8);
        let mut g = Generator::new(&accounts, mix(0.0, 0.0, 0.0), 0);
        for _ in 0..100 {
            let Op::Transfer(t) = g.next(&accounts) else {
                panic!("no reads asked")
            };
            assert_ne!(t.from, t.to);
        }
    }

    #[test]
    fn usd_formats_cents() {
        assert_eq!(usd(1), "0.01");
        assert_eq!(usd(123_456), "1234.56");
        assert_eq!(usd(-5), "-0.05");
    }
}
