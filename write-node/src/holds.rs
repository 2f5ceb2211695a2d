//! Releases holds past their expiry. The ledger decides an expiry from the leader-stamped time
//! of the entry that carries it (`ledger::Command::Expire`), so a hold is never captured
//! after its expiry whenever this pass runs; the pass only makes sure an expired hold stops
//! reserving its amount without waiting for a capture or void. Only leaders propose, every
//! `limits::HOLD_EXPIRY_INTERVAL`, at most `limits::HOLD_EXPIRY_BATCH_MAX` holds per
//! partition per pass, and each pass waits for its proposals before the next starts.

use ledger::Command;
use tokio_util::sync::CancellationToken;

use crate::limits;
use crate::store::StoreHandle;

/// Runs the expiry passes of every partition this node leads until `shutdown`.
pub async fn expire(store: StoreHandle, node_id: u64, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(limits::HOLD_EXPIRY_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let leaders = store.leaders().borrow().clone();
        let now_ms = crate::store::now_ms();
        for (partition, leader) in leaders.into_iter().enumerate() {
            if leader != node_id {
                continue;
            }
            let partition = partition as u32;
            let Ok(due) = store.due_holds(partition, now_ms).await else {
                continue;
            };
            let proposals = due
                .into_iter()
                .map(|transaction_id| store.propose(partition, Command::Expire { transaction_id }));
            for result in futures::future::join_all(proposals).await {
                if let Err(error) = result {
                    tracing::debug!(partition, %error, "hold expiry not applied; the next pass retries");
                }
            }
        }
    }
}
