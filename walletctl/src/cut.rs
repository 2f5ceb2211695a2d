//! A backup's positions across partitions (a "cut") without half a cross-partition transfer:
//! no partition's blocks may hold a settle (or refund) whose credit lies beyond the target
//! partition's position, nor a credit (or refusal) whose debit lies beyond the source's.
//!
//! Positions are read in two rounds of `GetClusterStatus`: the floor (round 0) and the
//! positions (round 1, after round 0 has ended; the highest applied index per partition).
//! A debit beyond a source's position was applied on that partition's leader after its
//! round-1 answer, so the credit it caused was proposed after round 0 ended: above the
//! target's floor. Likewise a credit beyond a target's position was applied after round 0,
//! so the settle it caused lies above the source's floor. Only blocks above the floors can
//! therefore break the cut, and only their transaction ids are kept here: memory is what
//! the cluster applied while the statuses were read, not its history. The backup then
//! extends the partitions that fall short ([`Cut::needs`]) until nothing is missing. (This
//! assumes the leaders answered round 1; a leader unreachable then can leave a gap that the
//! restored cluster's digests would still match the backup's but its money would not.)

use std::collections::HashSet;

use proto::v1::SubscribeResponse;
use proto::v1::ledger_event::Event;

/// What a partition's positions must still reach.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Need {
    /// The position must be at least this index (a credit a settle names).
    pub index: u64,
    /// The blocks must include these transactions' debits.
    pub debits: HashSet<u128>,
}

/// The cross-partition links seen above the floors, per partition.
pub struct Cut {
    floor: Vec<u64>,
    /// Lowest position each partition must reach (credits that settles name).
    required: Vec<u64>,
    /// Debits seen above the floor.
    debited: Vec<HashSet<u128>>,
    /// Settles and refunds seen above the floor: their debits are in the blocks too.
    finished: Vec<HashSet<u128>>,
    /// Transfers still in flight at the partition's last block.
    in_flight: Vec<HashSet<u128>>,
    /// Credits seen above the target's floor, by source partition: their debits must be in.
    credited: Vec<HashSet<u128>>,
}

impl Cut {
    /// A cut over partitions whose round-0 applied indexes are `floor`.
    pub fn new(floor: Vec<u64>) -> Cut {
        let sets = || vec![HashSet::new(); floor.len()];
        Cut {
            required: vec![0; floor.len()],
            debited: sets(),
            finished: sets(),
            in_flight: sets(),
            credited: sets(),
            floor,
        }
    }

    fn partition_of(&self, account_id: &str) -> usize {
        ledger::partition_of(account_id, self.floor.len() as u32) as usize
    }

    /// Notes the links of a block about to be added to `partition`'s blocks; `before` is the
    /// partition's ledger before it (where a settle finds its transfer's target).
    pub fn observe(&mut self, partition: u32, block: &SubscribeResponse, before: &ledger::Ledger) {
        let p = partition as usize;
        if block.index <= self.floor[p] {
            return;
        }
        for event in block.events.iter().filter_map(|event| event.event.as_ref()) {
            match event {
                Event::TransferDebited(debit) => note(&mut self.debited[p], &debit.transaction_id),
                Event::HoldCaptureDebited(debit) => {
                    note(&mut self.debited[p], &debit.transaction_id)
                }
                Event::TransferSettled(settle) => {
                    self.settled(p, &settle.transaction_id, settle.credit_index, before)
                }
                Event::TransferRefunded(refund) => {
                    self.settled(p, &refund.transaction_id, refund.credit_index, before)
                }
                Event::TransferCredited(credit) => {
                    let source = self.partition_of(&credit.from_account);
                    note(&mut self.credited[source], &credit.transaction_id);
                }
                Event::CreditRefused(refusal) => {
                    let source = self.partition_of(&refusal.from_account);
                    note(&mut self.credited[source], &refusal.transaction_id);
                }
                _ => {}
            }
        }
    }

    fn settled(
        &mut self,
        p: usize,
        transaction_id: &str,
        credit_index: u64,
        before: &ledger::Ledger,
    ) {
        note(&mut self.finished[p], transaction_id);
        let target = wallet_client::Uuid::parse_str(transaction_id)
            .ok()
            .and_then(|id| before.transfer(&id))
            .map(|record| self.partition_of(&record.transfer.to));
        if let Some(target) = target {
            self.required[target] = self.required[target].max(credit_index);
        }
    }

    /// Whether a debit of `transaction_id` was seen in `partition` above its floor.
    pub fn has_debit(&self, partition: u32, transaction_id: u128) -> bool {
        self.debited[partition as usize].contains(&transaction_id)
    }

    /// Notes the transfers in flight at `partition`'s last block.
    pub fn set_in_flight(&mut self, partition: u32, ledger: &ledger::Ledger) {
        self.in_flight[partition as usize] = ledger
            .in_flight()
            .map(|record| record.transfer.transaction_id.as_u128())
            .collect();
    }

    /// What each partition at `positions` still lacks (empty: the cut is whole).
    pub fn needs(&self, positions: &[u64]) -> Vec<(u32, Need)> {
        let mut needs = Vec::new();
        for (p, &position) in positions.iter().enumerate() {
            let debits: HashSet<u128> = self.credited[p]
                .iter()
                .filter(|id| {
                    !self.debited[p].contains(id)
                        && !self.finished[p].contains(id)
                        && !self.in_flight[p].contains(id)
                })
                .copied()
                .collect();
            let index = self.required[p];
            if index > position || !debits.is_empty() {
                needs.push((p as u32, Need { index, debits }));
            }
        }
        needs
    }
}

fn note(ids: &mut HashSet<u128>, transaction_id: &str) {
    if let Ok(id) = wallet_client::Uuid::parse_str(transaction_id) {
        ids.insert(id.as_u128());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::v1::{LedgerEvent, TransferCredited, TransferDebited};

    fn block(index: u64, event: Event) -> SubscribeResponse {
        SubscribeResponse {
            index,
            events: vec![LedgerEvent { event: Some(event) }],
            ..Default::default()
        }
    }

    fn accounts_in(partition: u32, count: u32) -> String {
        (0..)
            .map(|n| format!("acct-{n}"))
            .find(|id| ledger::partition_of(id, count) == partition)
            .expect("an account")
    }

    #[test]
    fn a_credit_needs_its_debit_unless_below_the_floor() {
        let (from, to) = (accounts_in(0, 2), accounts_in(1, 2));
        let id = wallet_client::Uuid::from_u128(7);
        let credit = Event::TransferCredited(TransferCredited {
            transaction_id: id.to_string(),
            from_account: from.clone(),
            to_account: to.clone(),
            ..Default::default()
        });
        let empty = ledger::Ledger::new();
        let mut cut = Cut::new(vec![10, 10]);
        cut.observe(1, &block(5, credit.clone()), &empty);
        assert!(
            cut.needs(&[12, 12]).is_empty(),
            "below the floor: nothing to check"
        );
        cut.observe(1, &block(11, credit), &empty);
        let needs = cut.needs(&[12, 12]);
        assert_eq!(needs.len(), 1);
        assert_eq!((needs[0].0, needs[0].1.debits.len()), (0, 1));
        let debit = Event::TransferDebited(TransferDebited {
            transaction_id: id.to_string(),
            from_account: from,
            to_account: to,
            ..Default::default()
        });
        cut.observe(0, &block(12, debit), &empty);
        assert!(cut.needs(&[12, 12]).is_empty());
    }
}
