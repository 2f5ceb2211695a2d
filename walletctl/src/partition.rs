//! `walletctl partition move`: moves a partition's replica from one write node to another.
//! The partition's leader drives the move (`ClusterService/MoveReplica`, raft membership
//! changes planned from the applied membership); this finds the leader, calls it, and calls
//! again wherever leadership goes (the move hands it away from the node it empties) until the
//! move is complete or `timeout` passes.

use std::time::Duration;

use anyhow::{Context, bail};
use proto::v1::cluster_service_client::ClusterServiceClient;
use proto::v1::{GetClusterStatusRequest, GetClusterStatusResponse, MoveReplicaRequest};
use tonic::Code;

/// How long one status or move call may take (a move call answers within the node's own
/// deadline, `MOVE_CALL_DEADLINE`, 60 s).
const CALL_TIMEOUT: Duration = Duration::from_secs(90);
/// The pause before asking again after a leader change or a node that did not answer.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// What the command needs to reach the nodes.
pub struct Reach {
    pub endpoints: Vec<String>,
    pub tls: Option<wallet_client::TlsConfig>,
    pub token: Option<String>,
}

impl Reach {
    fn channel(&self, endpoint: &str) -> anyhow::Result<wallet_client::Conn> {
        Ok(wallet_client::node_channel(
            endpoint,
            self.tls.as_ref(),
            self.token.as_deref(),
        )?)
    }

    /// `endpoint`'s `GetClusterStatus` (without digests), within `timeout`.
    pub async fn status(
        &self,
        endpoint: &str,
        timeout: Duration,
    ) -> anyhow::Result<GetClusterStatusResponse> {
        let mut request = tonic::Request::new(GetClusterStatusRequest {
            include_state_digest: false,
        });
        request.set_timeout(timeout);
        match ClusterServiceClient::new(self.channel(endpoint)?)
            .get_cluster_status(request)
            .await
        {
            Ok(status) => Ok(status.into_inner()),
            Err(status) => bail!("{endpoint}: {}", status.message()),
        }
    }
}

/// Moves the replica of `partition` on node `from` to node `to`; returns its voters after.
pub async fn move_replica(
    reach: &Reach,
    partition: u32,
    from: u64,
    to: u64,
    timeout: Duration,
) -> anyhow::Result<Vec<u64>> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_error = String::from("no node answered");
    loop {
        if tokio::time::Instant::now() >= deadline {
            bail!("the move did not complete within {timeout:?}: {last_error}");
        }
        let leader = match leader_address(reach, partition).await {
            Ok(leader) => leader,
            Err(error) => {
                last_error = format!("{error:#}");
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        let conn = reach.channel(&leader)?;
        let mut request = tonic::Request::new(MoveReplicaRequest {
            partition,
            from_node_id: from,
            to_node_id: to,
        });
        request.set_timeout(CALL_TIMEOUT);
        match ClusterServiceClient::new(conn).move_replica(request).await {
            Ok(answer) => return Ok(answer.into_inner().replica_ids),
            // The move is planned again from the group's membership on every call, so any
            // call that did not complete (the leader killed or moved, a broken connection,
            // the node's own deadline) is simply made again.
            Err(status)
                if matches!(
                    status.code(),
                    Code::Unavailable
                        | Code::DeadlineExceeded
                        | Code::Cancelled
                        | Code::Aborted
                        | Code::Unknown
                ) =>
            {
                last_error = format!("{leader}: {}", status.message());
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(status) => bail!("{leader}: {:?}: {}", status.code(), status.message()),
        }
    }
}

/// The address of the partition's leader, as the first node that knows it reports it.
async fn leader_address(reach: &Reach, partition: u32) -> anyhow::Result<String> {
    let mut last_error = anyhow::anyhow!("no endpoint given");
    for endpoint in &reach.endpoints {
        let status = match reach.status(endpoint, CALL_TIMEOUT).await {
            Ok(status) => status,
            Err(error) => {
                last_error = error;
                continue;
            }
        };
        let known = status
            .partitions
            .iter()
            .find(|known| known.partition == partition)
            .with_context(|| format!("the cluster has no partition {partition}"))?;
        if known.leader_id == 0 {
            last_error = anyhow::anyhow!("{endpoint} knows no leader of partition {partition}");
            continue;
        }
        if let Some(node) = status
            .nodes
            .iter()
            .find(|node| node.node_id == known.leader_id)
        {
            return Ok(node.address.clone());
        }
    }
    Err(last_error)
}
