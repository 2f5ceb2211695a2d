//! The wallet read node: follows every partition's committed event log on the write nodes
//! (`wallet.v1.EventLogService/Subscribe`), folds it into projections (balances, transfer
//! states, per-account history) in RocksDB behind a moka cache, and serves
//! `wallet.v1.QueryService`, including push streams. See ARCHITECTURE.md, "Read side".

pub mod chain;
pub mod config;
pub mod convert;
pub mod db;
pub mod error;
pub mod faults;
pub mod fold;
pub mod ingest;
pub mod limits;
pub mod metrics;
pub mod projector;
pub mod query;
pub mod security;
pub mod snapshot;

use std::sync::Arc;

use anyhow::Context;
use proto::internal::read_snapshot_service_server::ReadSnapshotServiceServer;
use proto::v1::query_service_server::QueryServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;

pub use config::Config;

/// The health service name the read node reports readiness under.
pub const QUERY_SERVICE_NAME: &str = "wallet.v1.QueryService";

/// Runs a read node on `listener` until `shutdown` is cancelled (or the fold fails).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let secured = security::prepare(&config)?;
    let upstream = ingest::Upstream::new(&config)?;
    let metrics_listener = telemetry::http::bind(config.metrics_address()?).await?;
    // The partition count is the cluster's; the projections are laid out for it.
    // What the cluster had applied when this node started: it is ready once caught up to it.
    let cluster_applied = tokio::select! {
        applied = ingest::discover_applied(&upstream) => applied,
        () = shutdown.cancelled() => return Ok(()),
    };
    let partitions = cluster_applied.len() as u32;
    if let Some(source) = &config.bootstrap_from {
        snapshot::fetch::bootstrap(&config, source, partitions, &shutdown).await?;
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let projection = Arc::new(projector::Projection::open(&config.data_dir, partitions)?);
    let checkpoints = projection.checkpoints();
    tracing::info!(
        partitions,
        checkpoint = ?checkpoints.iter().map(|c| c.index).collect::<Vec<_>>(),
        "projections open; resuming after the checkpoint"
    );

    let (blocks_tx, blocks_rx) = tokio::sync::mpsc::channel(limits::INGEST_QUEUE_BLOCKS);
    let fold_thread = projector::start(projection.clone(), blocks_rx, shutdown.clone())?;
    let followers = ingest::spawn(
        upstream.clone(),
        checkpoints,
        projection.clone(),
        blocks_tx,
        shutdown.clone(),
    );

    // NOT_SERVING until the projections reach what the cluster had applied at start (a
    // restarted or new read node would otherwise serve stale balances), and again on shutdown.
    // A partition the fold stopped counts as caught up: it will not move, and the others must
    // still be served.
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    for service in ["", QUERY_SERVICE_NAME] {
        health_reporter
            .set_service_status(service, ServingStatus::NotServing)
            .await;
    }
    {
        // `partition-<p>`: SERVING while the partition is followed normally, NOT_SERVING while
        // it has a fault (`faults.rs`; the error log says which block and why).
        let health_reporter = health_reporter.clone();
        let mut faults = projection.faults().subscribe();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut shown: Vec<Option<ServingStatus>> = vec![None; partitions as usize];
            loop {
                let current = faults.borrow_and_update().clone();
                for (partition, fault) in current.iter().enumerate() {
                    let status = if fault.is_some() {
                        ServingStatus::NotServing
                    } else {
                        ServingStatus::Serving
                    };
                    if shown[partition] != Some(status) {
                        shown[partition] = Some(status);
                        health_reporter
                            .set_service_status(
                                &faults::partition_health_service(partition as u32),
                                status,
                            )
                            .await;
                    }
                }
                tokio::select! {
                    changed = faults.changed() => if changed.is_err() { break },
                    () = shutdown.cancelled() => break,
                }
            }
            for partition in 0..partitions {
                health_reporter
                    .set_service_status(
                        &faults::partition_health_service(partition),
                        ServingStatus::NotServing,
                    )
                    .await;
            }
        });
    }
    // True while SERVING: the node then serves projection snapshots too.
    let (ready_tx, ready) = tokio::sync::watch::channel(false);
    {
        let mut positions = projection.positions();
        let mut faults = projection.faults().subscribe();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let caught_up = async {
                loop {
                    let reached = {
                        let faults = faults.borrow_and_update();
                        positions
                            .borrow_and_update()
                            .iter()
                            .zip(&cluster_applied)
                            .zip(faults.iter())
                            .all(|((position, target), fault)| {
                                position >= target
                                    || matches!(
                                        fault,
                                        Some(fault) if fault.kind == faults::FaultKind::FoldFailed
                                    )
                            })
                    };
                    if reached {
                        return true;
                    }
                    tokio::select! {
                        changed = positions.changed() => if changed.is_err() { return false },
                        changed = faults.changed() => if changed.is_err() { return false },
                    }
                }
            };
            let reached = tokio::select! {
                reached = caught_up => reached,
                () = shutdown.cancelled() => false,
            };
            if reached {
                tracing::info!("projections caught up with the cluster: serving");
                for service in ["", QUERY_SERVICE_NAME] {
                    health_reporter
                        .set_service_status(service, ServingStatus::Serving)
                        .await;
                }
                ready_tx.send_replace(true);
                shutdown.cancelled().await;
                ready_tx.send_replace(false);
            }
            for service in ["", QUERY_SERVICE_NAME] {
                health_reporter
                    .set_service_status(service, ServingStatus::NotServing)
                    .await;
            }
        });
    }

    let metrics = metrics::Metrics::new(partitions, projection.faults())?;
    let api = query::QueryApi::new(
        projection.clone(),
        shutdown.clone(),
        metrics.push_latency.clone(),
    );
    let snapshots = snapshot::serve::SnapshotServer::new(
        projection.clone(),
        ready,
        &config.data_dir,
        limits::SNAPSHOTS_SERVED_MAX,
    )?;
    let grpc_metrics = metrics.grpc.clone();
    if let Some(listener) = metrics_listener {
        let watchers = api.clone();
        let refresh = metrics.refresh(
            projection.positions(),
            projection.faults().subscribe(),
            move || watchers.watchers(),
        );
        metrics.poll_sources(upstream, shutdown.clone());
        let registry = Arc::new(metrics.registry);
        tokio::spawn(telemetry::http::serve(
            listener,
            registry,
            refresh,
            shutdown.clone(),
        ));
    }
    let (reflection_v1, reflection_v1alpha) = proto::reflection::services(&[QUERY_SERVICE_NAME])?;
    let address = listener.local_addr()?;
    tracing::info!(%address, partitions, "read node serving");
    let guard = proto::guard::GuardLayer::new(proto::guard::GuardConfig {
        calls_in_flight_max: config.calls_in_flight_max,
        overload_retry_after: limits::OVERLOAD_RETRY_AFTER,
        // Probes must not fail because clients flood the node.
        exempt_path_prefixes: &["/grpc.health.v1.Health/"],
    });
    let serve = secured
        .layered(grpc_metrics, guard, limits::STREAMS_PER_CONNECTION_MAX)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            QueryServiceServer::new(api).max_decoding_message_size(limits::GRPC_MESSAGE_BYTES_MAX),
        )
        .add_service(
            ReadSnapshotServiceServer::new(snapshots)
                .max_decoding_message_size(limits::GRPC_MESSAGE_BYTES_MAX),
        )
        .serve_with_incoming_shutdown(
            ::security::server::incoming(listener),
            shutdown.clone().cancelled_owned(),
        );
    // Watch streams end on shutdown by themselves; bound the drain anyway.
    let grace = async {
        shutdown.cancelled().await;
        tokio::time::sleep(limits::SHUTDOWN_GRACE).await;
    };
    let served = tokio::select! {
        result = serve => result.context("gRPC server"),
        () = grace => {
            tracing::warn!("shutdown grace period over; closing remaining streams");
            Ok(())
        }
    };
    shutdown.cancel();
    for follower in followers {
        let _ = follower.await;
    }
    // The followers held the only block senders: the fold drains what is queued and stops.
    let folded = tokio::task::spawn_blocking(move || fold_thread.join())
        .await?
        .map_err(|_| anyhow::anyhow!("fold thread panicked"))?;
    served?;
    folded?;
    // Nothing writes any more: leave no write-ahead log for the next start to replay.
    if let Err(error) = projection.db().flush() {
        tracing::warn!(
            error = format!("{error:#}"),
            "flushing the projections on shutdown"
        );
    }
    tracing::info!("read node stopped");
    Ok(())
}
