//! Drives cross-partition transfers to their end. The transfer's state lives in the raft logs
//! (the source's in-flight record, the target's credit record), never here: this module only
//! pushes it forward, and every step is idempotent by transaction id, so any number of drivers
//! (the caller's, the recovery pass, a new leader's after a failover) can push the same
//! transfer without moving money twice.
//!
//! 1. source partition: `TransferOut` debits `from` (done by the service before calling here);
//! 2. target partition: `Credit` credits `to` or refuses (local store if this node leads the
//!    target, else the target leader's `PeerService/Credit`);
//! 3. source partition: `Settle` completes, or refunds `from` if the target refused.
//!
//! A caller is answered once the outcome is decided: a credit the target accepted can only
//! settle as COMPLETED, so the caller hears "success" then, and the settle step follows on its
//! own ([`Saga::drive_to_decision`]); a refused credit is answered once the refund is settled.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use ledger::{Command, CreditOutcome, CreditRecord, Outcome, TransferCommand, partition_of};
use proto::internal::CreditRequest;
use proto::internal::peer_service_client::PeerServiceClient;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, ClientTlsConfig};

use crate::limits;
use crate::store::{Applied, StoreError, StoreHandle};

pub mod legs;

pub use legs::LegsDriven;

pub struct Saga {
    node_id: u64,
    partitions: u32,
    store: StoreHandle,
    /// Credits bound for another node's partition leader, one queue per target partition;
    /// each queue's task sends them in batches (`credit_batches`).
    credit_queues: Vec<mpsc::Sender<(TransferCommand, CreditReply)>>,
    /// A client of every peer (multi-leg steps call them directly).
    clients: Arc<HashMap<u64, PeerServiceClient<Channel>>>,
    /// Transfers being driven by this node, with how many drivers each has: the recovery pass
    /// leaves them alone.
    driving: Mutex<HashMap<uuid::Uuid, u32>>,
    permits: Arc<Semaphore>,
}

/// Where [`Saga::drive_to_decision`] left a transfer.
pub enum Decided {
    /// The target credited `to` at `credit_index`: the transfer completes (the settle entry on
    /// the source follows, driven by this node or, after a failover, by the next leader).
    Credited { credit_index: u64 },
    /// The target refused the credit, and the source settled the refund: the final record.
    Settled(Applied),
}

type CreditReply = oneshot::Sender<Result<CreditRecord, StoreError>>;

/// Marks a transfer as driven for as long as it lives.
struct Driving<'a> {
    saga: &'a Saga,
    transaction_id: uuid::Uuid,
}

impl Drop for Driving<'_> {
    fn drop(&mut self) {
        let mut driving = self.saga.driving.lock().expect("driving lock");
        if let Some(count) = driving.get_mut(&self.transaction_id) {
            *count -= 1;
            if *count == 0 {
                driving.remove(&self.transaction_id);
            }
        }
    }
}

impl Saga {
    /// Creates the driver and starts one credit-batching task per target partition.
    pub fn start(
        node_id: u64,
        partitions: u32,
        peers: &BTreeMap<u64, String>,
        peer_tls: Option<&ClientTlsConfig>,
        store: StoreHandle,
    ) -> Arc<Saga> {
        let clients: Arc<HashMap<u64, PeerServiceClient<Channel>>> = Arc::new(
            crate::transport::peer_clients(node_id, peers, peer_tls, limits::CREDIT_CALL_TIMEOUT)
                .collect(),
        );
        let credit_queues = (0..partitions)
            .map(|target| {
                let (queue_tx, queue_rx) = mpsc::channel(limits::CREDIT_QUEUE_CAPACITY);
                tokio::spawn(credit_batches(
                    target,
                    queue_rx,
                    store.clone(),
                    clients.clone(),
                ));
                queue_tx
            })
            .collect();
        Arc::new(Saga {
            node_id,
            partitions,
            store,
            credit_queues,
            clients,
            driving: Mutex::new(HashMap::new()),
            permits: Arc::new(Semaphore::new(limits::SAGAS_IN_FLIGHT_MAX)),
        })
    }

    fn mark(&self, transaction_id: uuid::Uuid) -> Driving<'_> {
        self.count_driver(transaction_id);
        Driving {
            saga: self,
            transaction_id,
        }
    }

    /// One more driver of `transaction_id`; a [`Driving`] guard counts it off.
    fn count_driver(&self, transaction_id: uuid::Uuid) {
        *self
            .driving
            .lock()
            .expect("driving lock")
            .entry(transaction_id)
            .or_default() += 1;
    }

    /// Steps 2 and 3 for a transfer debited on `source`; answers with the settle's outcome
    /// (the final record). Fails if this node stops leading `source` (the next leader's
    /// recovery pass finishes the transfer; a client retry learns the outcome).
    pub async fn drive(
        &self,
        source: u32,
        transfer: TransferCommand,
    ) -> Result<Applied, StoreError> {
        let _driving = self.mark(transfer.transaction_id);
        let _permit = self.permit().await?;
        let (_, settle) = self.credit_then_settle(&transfer).await?;
        self.store.propose(source, settle).await
    }

    /// Proposes `command`, the last step of what `driving` marks (a settle, a multi-leg
    /// finish: it can only complete), on `partition` in the background, holding `permit`.
    /// The id stays marked as driven until it ends, so the recovery pass leaves it alone (the
    /// task's own mark is counted before `driving` is dropped); if it fails here, the
    /// recovery pass of whichever node leads `partition` finishes it.
    fn finish_in_background(
        self: &Arc<Self>,
        driving: Driving<'_>,
        permit: tokio::sync::OwnedSemaphorePermit,
        partition: u32,
        command: Command,
    ) {
        let saga = self.clone();
        let transaction_id = driving.transaction_id;
        self.count_driver(transaction_id);
        drop(driving);
        tokio::spawn(async move {
            let _driving = Driving {
                saga: &saga,
                transaction_id,
            };
            let _permit = permit;
            if let Err(error) = saga.store.propose(partition, command).await {
                tracing::debug!(%transaction_id, %error, "last step not applied here; recovery will finish it");
            }
        });
    }

    /// A slot among the `SAGAS_IN_FLIGHT_MAX` transfers driven at once.
    async fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, StoreError> {
        self.permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::ShuttingDown)
    }

    /// Step 2, and the step-3 command its answer calls for.
    async fn credit_then_settle(
        &self,
        transfer: &TransferCommand,
    ) -> Result<(CreditRecord, Command), StoreError> {
        let credit = self.credit(transfer).await?;
        let settle = Command::Settle {
            transaction_id: transfer.transaction_id,
            credit: credit.outcome,
            credit_index: credit.meta.index,
        };
        Ok((credit, settle))
    }

    /// Steps 2 and 3 for a transfer debited on `source`, answering as soon as the outcome is
    /// decided: once the target credited `to` (then the settle runs on in the background,
    /// and a failure there is the recovery pass's to finish), or once a refused credit's
    /// refund is settled. Fails as [`Saga::drive`] does.
    pub async fn drive_to_decision(
        self: &Arc<Self>,
        source: u32,
        transfer: TransferCommand,
    ) -> Result<Decided, StoreError> {
        let driving = self.mark(transfer.transaction_id);
        let permit = self.permit().await?;
        let (credit, settle) = self.credit_then_settle(&transfer).await?;
        if credit.outcome != CreditOutcome::Credited {
            return self
                .store
                .propose(source, settle)
                .await
                .map(Decided::Settled);
        }
        self.finish_in_background(driving, permit, source, settle);
        Ok(Decided::Credited {
            credit_index: credit.meta.index,
        })
    }

    /// Step 2, retried across leader changes until the target partition answers.
    async fn credit(&self, transfer: &TransferCommand) -> Result<CreditRecord, StoreError> {
        let target = partition_of(&transfer.to, self.partitions);
        let local = || async move {
            // The local store batches concurrent proposals into one entry by itself.
            self.store
                .propose(target, Command::Credit(transfer.clone()))
                .await
                .map(|applied| match applied.outcome {
                    Outcome::Credit(record) => record,
                    other => {
                        unreachable!("a credit command answers with a credit record, not {other:?}")
                    }
                })
        };
        let remote = |_leader| async move {
            let (reply, answer) = oneshot::channel();
            self.credit_queues[target as usize]
                .send((transfer.clone(), reply))
                .await
                .map_err(|_| StoreError::ShuttingDown)?;
            answer.await.unwrap_or(Err(StoreError::OutcomeUnknown))
        };
        self.until_answered(target, transfer.transaction_id, local, remote)
            .await
    }

    /// Asks the leader of `partition` until it answers: `local()` while this node leads it,
    /// `remote(leader)` while another node does; retried with backoff across leader changes
    /// and lost answers (every call is idempotent by `transaction_id`), at most
    /// `CREDIT_ATTEMPTS_MAX` times, then `OUTCOME_UNKNOWN`.
    async fn until_answered<T, Local, LocalCall, Remote, RemoteCall>(
        &self,
        partition: u32,
        transaction_id: uuid::Uuid,
        local: Local,
        remote: Remote,
    ) -> Result<T, StoreError>
    where
        Local: Fn() -> LocalCall,
        LocalCall: std::future::Future<Output = Result<T, StoreError>>,
        Remote: Fn(u64) -> RemoteCall,
        RemoteCall: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut backoff = limits::CREDIT_BACKOFF_MIN;
        for _ in 0..limits::CREDIT_ATTEMPTS_MAX {
            let leader = self.store.leaders().borrow()[partition as usize];
            let result = if leader == self.node_id {
                local().await
            } else if leader == 0 {
                Err(StoreError::NotLeader { leader_id: None })
            } else {
                remote(leader).await
            };
            match result {
                Ok(answer) => return Ok(answer),
                Err(error @ (StoreError::ShuttingDown | StoreError::StorageFailed)) => {
                    return Err(error);
                }
                Err(error) => {
                    tracing::debug!(%error, %transaction_id, partition, "not answered yet")
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(limits::CREDIT_BACKOFF_MAX);
        }
        Err(StoreError::OutcomeUnknown)
    }

    /// Finishes in-flight transfers of every partition this node leads: after a failover or a
    /// full restart, nobody else will. Runs until `shutdown`. Each pass takes the next
    /// `RECOVERY_BATCH_MAX` of a partition's in-flight transfers after where the previous
    /// pass stopped, wrapping around: transfers stuck on a target without a leader cannot
    /// keep the others from ever being driven.
    pub async fn recover(self: Arc<Self>, shutdown: CancellationToken) {
        let mut interval = tokio::time::interval(limits::RECOVERY_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Per partition, the last transaction id the previous pass picked up.
        let mut cursors: Vec<Option<uuid::Uuid>> = vec![None; self.partitions as usize];
        let mut legs_cursors = cursors.clone();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = interval.tick() => {}
            }
            let leaders = self.store.leaders().borrow().clone();
            for (partition, leader) in leaders.into_iter().enumerate() {
                if leader != self.node_id {
                    continue;
                }
                self.recover_legs(partition as u32, &mut legs_cursors[partition])
                    .await;
                let cursor = &mut cursors[partition];
                let Ok(in_flight) = self.store.in_flight(partition as u32, *cursor).await else {
                    continue;
                };
                *cursor = in_flight
                    .last()
                    .map(|transfer| transfer.transaction_id)
                    .or(*cursor);
                for transfer in in_flight {
                    if self
                        .driving
                        .lock()
                        .expect("driving lock")
                        .contains_key(&transfer.transaction_id)
                    {
                        continue;
                    }
                    let saga = self.clone();
                    tokio::spawn(async move {
                        let transaction_id = transfer.transaction_id;
                        match saga.drive(partition as u32, transfer).await {
                            Ok(_) => {
                                tracing::info!(%transaction_id, "recovered an in-flight transfer")
                            }
                            Err(error) => {
                                tracing::debug!(%transaction_id, %error, "recovery will retry")
                            }
                        }
                    });
                }
            }
        }
    }
}

impl Saga {
    /// One recovery pass over the multi-leg sets whose home is `partition` (this node leads
    /// it) and that are not decided and resolved everywhere: the next
    /// `RECOVERY_BATCH_MAX` after `cursor`, wrapping around, each driven on unless this node
    /// drives it already.
    async fn recover_legs(self: &Arc<Self>, partition: u32, cursor: &mut Option<uuid::Uuid>) {
        let Ok((live, last)) = self.store.live_legs(partition, *cursor).await else {
            return;
        };
        *cursor = last.or(*cursor);
        for legs in live {
            let transaction_id = legs.transaction_id;
            if self
                .driving
                .lock()
                .expect("driving lock")
                .contains_key(&transaction_id)
            {
                continue;
            }
            let saga = self.clone();
            tokio::spawn(async move {
                match saga.drive_legs(partition, legs).await {
                    Ok(_) => tracing::info!(%transaction_id, "recovered a multi-leg transfer"),
                    Err(error) => tracing::debug!(%transaction_id, %error, "recovery will retry"),
                }
            });
        }
    }
}

/// Sends the credits queued for partition `target` to its leader in batches, at most
/// `CREDIT_BATCHES_IN_FLIGHT_MAX` calls at a time: while they are all in flight the queue
/// fills up, so the batch size follows the load.
async fn credit_batches(
    target: u32,
    mut queue: mpsc::Receiver<(TransferCommand, CreditReply)>,
    store: StoreHandle,
    clients: Arc<HashMap<u64, PeerServiceClient<Channel>>>,
) {
    let calls = Arc::new(Semaphore::new(limits::CREDIT_BATCHES_IN_FLIGHT_MAX));
    loop {
        let Ok(permit) = calls.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = queue.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < limits::CREDIT_BATCH_MAX {
            match queue.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let leader = store.leaders().borrow()[target as usize];
        let client = clients.get(&leader).cloned();
        tokio::spawn(async move {
            let (transfers, replies): (Vec<TransferCommand>, Vec<CreditReply>) =
                batch.into_iter().unzip();
            let results = match client {
                // The leader moved here or is unknown: the callers retry (locally, or later).
                None => vec![Err(StoreError::NotLeader { leader_id: None }); transfers.len()],
                Some(client) => remote_credits(client, leader, target, &transfers).await,
            };
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
            drop(permit);
        });
    }
}

/// One `PeerService/Credit` call for a batch; every credit without an answer is an error its
/// caller retries (credits are idempotent).
async fn remote_credits(
    mut client: PeerServiceClient<Channel>,
    leader: u64,
    target: u32,
    transfers: &[TransferCommand],
) -> Vec<Result<CreditRecord, StoreError>> {
    let mut request = tonic::Request::new(CreditRequest {
        partition: target,
        transfers: transfers.iter().map(ledger::wire::to_tagged_vec).collect(),
    });
    request.set_timeout(limits::CREDIT_CALL_TIMEOUT);
    let records = match client.credit(request).await {
        Ok(response) => response.into_inner().records,
        Err(status) => {
            tracing::debug!(leader, code = ?status.code(), message = status.message(), "remote credits failed");
            return vec![Err(StoreError::OutcomeUnknown); transfers.len()];
        }
    };
    if records.len() != transfers.len() {
        tracing::error!(
            leader,
            "a peer answered {} credits for {}",
            records.len(),
            transfers.len()
        );
        return vec![Err(StoreError::OutcomeUnknown); transfers.len()];
    }
    records
        .iter()
        .map(|bytes| {
            if bytes.is_empty() {
                return Err(StoreError::OutcomeUnknown);
            }
            ledger::wire::from_tagged_slice(bytes).map_err(|error| {
                tracing::error!(leader, %error, "undecodable credit record from a peer");
                StoreError::OutcomeUnknown
            })
        })
        .collect()
}
