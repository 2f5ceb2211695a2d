//! Who leads the partitions this node holds no replica of. Placement puts each partition on
//! `replicas` of the write nodes; a node still answers for every partition, forwarding writes
//! to the leader (`forward.rs`), sending credits there (`saga.rs`) and telling clients where
//! to go (NOT_LEADER). The loop knows the leaders of the partitions it holds; for the others
//! this task asks their replicas (`PeerService/Leaders`) every
//! [`LEADER_DIRECTORY_INTERVAL`](limits::LEADER_DIRECTORY_INTERVAL) and records the newest
//! answer (highest term) in the store's leader table (`StoreHandle::learn_leaders`).
//!
//! A node that holds every partition has nothing to learn and asks nobody.

use std::collections::{BTreeMap, BTreeSet};

use proto::internal::LeadersRequest;
use proto::internal::peer_service_client::PeerServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, ClientTlsConfig};

use crate::limits;
use crate::store::StoreHandle;

/// Follows the leaders of the partitions placed elsewhere until `shutdown`.
pub async fn follow(
    store: StoreHandle,
    node_id: u64,
    peers: &BTreeMap<u64, String>,
    peer_tls: Option<&ClientTlsConfig>,
    shutdown: CancellationToken,
) {
    let asked = replicas_of_others(&store, node_id);
    if asked.is_empty() {
        return;
    }
    let clients: Vec<(u64, PeerServiceClient<Channel>)> =
        crate::transport::peer_clients(node_id, peers, peer_tls, limits::PEER_READ_CALL_TIMEOUT)
            .filter(|(id, _)| asked.contains(id))
            .collect();
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
        let mut newest: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
        for (peer, answer) in answers {
            let answer = match answer {
                Ok(answer) => answer.into_inner(),
                Err(status) => {
                    tracing::debug!(peer, code = ?status.code(), "leaders unknown: peer did not answer");
                    continue;
                }
            };
            for reported in answer.partitions {
                newest
                    .entry(reported.partition)
                    .and_modify(|(term, leader)| {
                        if (reported.term, reported.leader_id) > (*term, *leader) {
                            *term = reported.term;
                            *leader = reported.leader_id;
                        }
                    })
                    .or_insert((reported.term, reported.leader_id));
            }
        }
        let learnt: Vec<(u32, u64)> = newest
            .into_iter()
            .map(|(partition, (_, leader))| (partition, leader))
            .collect();
        store.learn_leaders(&learnt);
    }
}

/// The nodes holding replicas of partitions this node does not hold.
fn replicas_of_others(store: &StoreHandle, node_id: u64) -> BTreeSet<u64> {
    let placement = store.placement();
    (0..placement.partitions())
        .filter(|&partition| !store.hosts(partition))
        .filter_map(|partition| placement.group(partition).ok())
        .flat_map(|group| group.voters.iter().copied())
        .filter(|&node| node != node_id)
        .collect()
}
