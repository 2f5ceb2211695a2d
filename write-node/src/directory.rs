//! Who leads the partitions this node holds no replica of, and where every partition's
//! replicas are. Each partition has a few replicas among the write nodes; a node still
//! answers for every partition, forwarding writes to the leader (`forward.rs`), sending
//! credits there (`saga.rs`) and telling clients where to go (NOT_LEADER). The loop knows the
//! leaders and memberships of the partitions it holds; for the others this task asks every
//! other write node (`PeerService/Leaders`) every
//! [`LEADER_DIRECTORY_INTERVAL`](limits::LEADER_DIRECTORY_INTERVAL) and records the newest
//! answer per partition (latest membership change, then highest term) with
//! `StoreHandle::learn_groups`. Replicas move (`store/membership.rs`), so every node is asked,
//! not only the ones placement first put a partition on; the same answers tell a node whose
//! replica was removed while it was away that it no longer holds it.
//!
//! A one-node cluster has nobody to ask.

use std::collections::BTreeMap;

use proto::internal::LeadersRequest;
use proto::internal::peer_service_client::PeerServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, ClientTlsConfig};

use crate::limits;
use crate::store::{Members, StoreHandle};

/// Follows the leaders and memberships of every partition until `shutdown`.
pub async fn follow(
    store: StoreHandle,
    node_id: u64,
    peers: &BTreeMap<u64, String>,
    peer_tls: Option<&ClientTlsConfig>,
    shutdown: CancellationToken,
) {
    let clients: Vec<(u64, PeerServiceClient<Channel>)> =
        crate::transport::peer_clients(node_id, peers, peer_tls, limits::PEER_READ_CALL_TIMEOUT)
            .collect();
    if clients.is_empty() {
        return;
    }
    let mut interval = tokio::time::interval(limits::LEADER_DIRECTORY_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let answers = futures::future::join_all(clients.iter().map(|(id, client)| {
            let mut client = client.clone();
            async move {
                let answer = client.leaders(LeadersRequest {}).await;
                (*id, answer)
            }
        }))
        .await;
        // Per partition: (membership change index, term), leader, membership.
        let mut newest: BTreeMap<u32, ((u64, u64), u64, Members)> = BTreeMap::new();
        for (peer, answer) in answers {
            let answer = match answer {
                Ok(answer) => answer.into_inner(),
                Err(status) => {
                    tracing::debug!(peer, code = ?status.code(), "leaders unknown: peer did not answer");
                    continue;
                }
            };
            for reported in answer.partitions {
                // A node of an earlier release reports leaders only: its answer says nothing
                // of the membership.
                if reported.voters.is_empty() {
                    newest.entry(reported.partition).or_insert((
                        (0, reported.term),
                        reported.leader_id,
                        Members::default(),
                    ));
                    continue;
                }
                let members = Members {
                    conf_index: reported.conf_index,
                    voters: reported.voters,
                    outgoing: reported.outgoing,
                    learners: reported.learners,
                };
                let rank = (reported.conf_index, reported.term);
                let candidate = (rank, reported.leader_id, members);
                newest
                    .entry(reported.partition)
                    .and_modify(|known| {
                        if (candidate.0, candidate.1) > (known.0, known.1) {
                            *known = candidate.clone();
                        }
                    })
                    .or_insert(candidate);
            }
        }
        let learnt: Vec<(u32, u64, Members)> = newest
            .into_iter()
            .map(|(partition, (_, leader, members))| (partition, leader, members))
            .collect();
        store.learn_groups(&learnt);
    }
}
