//! The wallet write node: raft-rs groups (one per account partition) over RocksDB, serving
//! the `wallet.v1` write API. See ARCHITECTURE.md for the path of a transfer through here.

pub mod api_error;
pub mod audit;
pub mod backup;
pub mod config;
mod directory;
pub mod event_log;
#[cfg(feature = "failpoints")]
pub mod failpoints;
pub mod features;
pub mod forward;
mod holds;
pub mod incarnation;
pub mod limits;
mod logging;
pub mod metrics;
pub mod records;
pub mod replay;
pub mod saga;
pub mod security;
pub mod service;
pub mod snapshot;
pub mod storage;
pub mod store;
pub mod transport;

/// The event log's encoding (entries, event blocks, the hash chain) lives in `event_codec`,
/// shared with the read node; `crate::codec` keeps naming it here.
pub use event_codec::codec;

use std::sync::Arc;

use anyhow::Context;
use proto::internal::peer_service_server::PeerServiceServer;
use proto::v1::cluster_service_server::ClusterServiceServer;
use proto::v1::wallet_service_server::WalletServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;

pub use config::Config;

/// The health service name that is SERVING while the gRPC server runs, whatever the state of
/// the raft groups: for liveness probes, which must not fail (and restart nodes) when a
/// partition has no quorum. Readiness is `""` or `wallet.v1.WalletService`: every partition
/// has a leader.
pub const LIVENESS_SERVICE_NAME: &str = "liveness";

/// Runs a write node on `listener` until `shutdown` is cancelled (or the store fails).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.validate()?;
    let security::Prepared { secured, peer_tls } = security::prepare(&config)?;
    let metrics_listener = telemetry::http::bind(config.metrics_address()?).await?;
    let db = storage::Db::open(&config.data_dir, config.node_id, config.partitions)?;
    let metrics = metrics::Metrics::new(config.partitions)?;
    let incarnations = Arc::new(incarnation::Incarnations::open(
        config.node_id,
        db.clone(),
        config.peers.keys().copied(),
        || uuid::Uuid::new_v4().into_bytes(),
        metrics.peer_frames_refused.clone(),
    )?);
    let outbox = transport::start_senders(
        config.node_id,
        &incarnations,
        &config.peers,
        peer_tls.as_ref(),
        shutdown.clone(),
    );
    let network =
        transport::PeerNetwork::new(outbox, config.peers.clone(), db.clone(), peer_tls.clone());
    let (store, store_thread) = store::start(
        &config,
        db.clone(),
        network,
        metrics.store.clone(),
        shutdown.clone(),
    )?;

    // SERVING once every partition has a known leader; NOT_SERVING again when one loses it.
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    // The reporter starts with "" SERVING: say NOT_SERVING before the server can answer.
    for service in ["", "wallet.v1.WalletService"] {
        health_reporter
            .set_service_status(service, ServingStatus::NotServing)
            .await;
    }
    health_reporter
        .set_service_status(LIVENESS_SERVICE_NAME, ServingStatus::Serving)
        .await;
    let mut leaders = store.leaders();
    let health_shutdown = shutdown.clone();
    tokio::spawn(async move {
        loop {
            let all_led = leaders
                .borrow_and_update()
                .iter()
                .all(|&leader| leader != 0);
            let status = if all_led {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            health_reporter.set_service_status("", status).await;
            health_reporter
                .set_service_status("wallet.v1.WalletService", status)
                .await;
            tokio::select! {
                changed = leaders.changed() => if changed.is_err() { break },
                _ = health_shutdown.cancelled() => break,
            }
        }
        health_reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        health_reporter
            .set_service_status("wallet.v1.WalletService", ServingStatus::NotServing)
            .await;
        health_reporter
            .set_service_status(LIVENESS_SERVICE_NAME, ServingStatus::NotServing)
            .await;
    });

    let saga = saga::Saga::start(
        config.node_id,
        config.partitions,
        &config.peers,
        peer_tls.as_ref(),
        store.clone(),
    );
    tokio::spawn(saga.clone().recover(shutdown.clone()));
    {
        let (store, peers, peer_tls) = (store.clone(), config.peers.clone(), peer_tls.clone());
        let (node_id, shutdown) = (config.node_id, shutdown.clone());
        tokio::spawn(async move {
            directory::follow(store, node_id, &peers, peer_tls.as_ref(), shutdown).await;
        });
    }
    tokio::spawn(holds::expire(
        store.clone(),
        config.node_id,
        shutdown.clone(),
    ));
    // The nodes this one exchanges raft frames with (they share a partition), whose frames
    // announce what they decode.
    let members: Vec<store::Members> = (0..store.partitions())
        .map(|partition| store.members(partition))
        .collect();
    let levels = Arc::new(features::PeerLevels::new(
        config.node_id,
        config.peers.keys().copied().filter(|&peer| {
            members
                .iter()
                .any(|group| group.contains(peer) && group.contains(config.node_id))
        }),
    ));
    let api = service::Api::new(
        config.node_id,
        store.clone(),
        saga,
        config.partitions,
        config.peers.clone(),
        peer_tls.as_ref(),
        levels.clone(),
    );
    let event_log = event_log::EventLog::new(
        store.clone(),
        config.partitions,
        metrics.event_log.clone(),
        shutdown.clone(),
    );
    let grpc_metrics = metrics.grpc.clone();
    if let Some(listener) = metrics_listener {
        let subscribers = event_log.clone();
        let refresh = metrics.refresh(db.clone(), move || subscribers.subscribers());
        let registry = Arc::new(metrics.registry);
        tokio::spawn(telemetry::http::serve(
            listener,
            registry,
            refresh,
            shutdown.clone(),
        ));
    }
    let peer = transport::PeerServer {
        node_id: config.node_id,
        partitions: config.partitions,
        peers: config.peers.keys().copied().collect(),
        store,
        levels,
        incarnations,
    };
    // Advertised over reflection: the client-facing services, not the internal PeerService.
    let (reflection_v1, reflection_v1alpha) = proto::reflection::services(&[
        "wallet.v1.WalletService",
        "wallet.v1.ClusterService",
        "wallet.v1.EventLogService",
    ])?;
    let address = listener.local_addr()?;
    tracing::info!(node_id = config.node_id, %address, partitions = config.partitions, "write node serving");
    let guard = proto::guard::GuardLayer::new(proto::guard::GuardConfig {
        calls_in_flight_max: config.calls_in_flight_max,
        overload_retry_after: limits::OVERLOAD_RETRY_AFTER,
        // Probes must not fail and replication must not stop because clients flood the node.
        exempt_path_prefixes: &[
            "/grpc.health.v1.Health/",
            "/wallet.internal.v1.PeerService/",
        ],
    });
    let serve = secured
        .layered(grpc_metrics, guard, limits::STREAMS_PER_CONNECTION_MAX)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            WalletServiceServer::new(api.clone())
                .max_decoding_message_size(limits::GRPC_MESSAGE_BYTES_MAX),
        )
        .add_service(
            ClusterServiceServer::new(api)
                .max_decoding_message_size(limits::GRPC_MESSAGE_BYTES_MAX),
        )
        .add_service(
            proto::v1::event_log_service_server::EventLogServiceServer::new(event_log)
                .max_decoding_message_size(limits::GRPC_MESSAGE_BYTES_MAX),
        )
        .add_service(
            PeerServiceServer::new(peer)
                .max_decoding_message_size(limits::PEER_GRPC_MESSAGE_BYTES_MAX),
        )
        .serve_with_incoming_shutdown(
            ::security::server::incoming(listener),
            shutdown.clone().cancelled_owned(),
        );
    // Long-lived peer and client streams may not end by themselves: bound the drain.
    let grace = async {
        shutdown.cancelled().await;
        tokio::time::sleep(limits::SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        result = serve => result.context("gRPC server")?,
        _ = grace => tracing::warn!("shutdown grace period over; closing remaining streams"),
    }
    shutdown.cancel();
    tokio::task::spawn_blocking(move || store_thread.join())
        .await?
        .map_err(|_| anyhow::anyhow!("store thread panicked"))??;
    tokio::task::spawn_blocking(move || db.flush()).await??;
    tracing::info!("write node stopped");
    Ok(())
}
