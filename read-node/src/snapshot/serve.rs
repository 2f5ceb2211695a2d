//! The serving side of projection snapshots: `FetchProjectionSnapshot` takes a RocksDB
//! checkpoint of the projections in a scratch directory next to the data directory and
//! streams its files from a blocking thread, at most `limits::SNAPSHOTS_SERVED_MAX` at once.
//! The checkpoint is deleted when its stream ends, however it ends.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use proto::internal as pb;
use proto::internal::fetch_projection_snapshot_response::Part;
use proto::internal::read_snapshot_service_server::ReadSnapshotService;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};

use crate::error::{ApiError, ReadApiError as _};
use crate::limits;
use crate::projector::Projection;

type Message = Result<pb::FetchProjectionSnapshotResponse, Status>;

/// Where a node keeps the checkpoints it is serving: `<data_dir>.snapshots`, beside the data
/// directory (so on its filesystem: checkpoints hard-link the SST files).
pub fn scratch_dir(data_dir: &Path) -> PathBuf {
    let mut name = data_dir.as_os_str().to_owned();
    name.push(".snapshots");
    PathBuf::from(name)
}

/// `wallet.internal.v1.ReadSnapshotService` of one read node. Cheap to clone.
#[derive(Clone)]
pub struct SnapshotServer {
    projection: Arc<Projection>,
    /// True once the projections caught up with the cluster (the node is SERVING): a node
    /// still folding would hand out a copy far behind.
    ready: watch::Receiver<bool>,
    permits: Arc<Semaphore>,
    scratch: PathBuf,
    next_id: Arc<AtomicU64>,
}

impl SnapshotServer {
    /// Serves copies of `projection`, at most `served_max` at once, once `ready` is true.
    /// Removes what a previous process left in the scratch directory.
    pub fn new(
        projection: Arc<Projection>,
        ready: watch::Receiver<bool>,
        data_dir: &Path,
        served_max: usize,
    ) -> anyhow::Result<SnapshotServer> {
        let scratch = scratch_dir(data_dir);
        if scratch.exists() {
            std::fs::remove_dir_all(&scratch)
                .with_context(|| format!("removing old snapshots in {}", scratch.display()))?;
        }
        Ok(SnapshotServer {
            projection,
            ready,
            permits: Arc::new(Semaphore::new(served_max)),
            scratch,
            next_id: Arc::new(AtomicU64::new(0)),
        })
    }

    fn check_request(&self, request: &pb::FetchProjectionSnapshotRequest) -> Result<(), Status> {
        if request.format_version != super::FORMAT_VERSION {
            return Err(Status::failed_precondition(format!(
                "this read node serves projection snapshots of format {}, not {}",
                super::FORMAT_VERSION,
                request.format_version
            )));
        }
        let partitions = self.projection.partitions();
        if request.partitions != partitions {
            return Err(Status::failed_precondition(format!(
                "this read node's cluster has {partitions} partitions, not {}",
                request.partitions
            )));
        }
        if !*self.ready.borrow() {
            return Err(Status::unavailable(
                "this read node has not caught up with the cluster yet; fetch from a serving one",
            ));
        }
        Ok(())
    }

    fn permit(&self) -> Result<OwnedSemaphorePermit, Status> {
        self.permits.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                Code::ResourceExhausted,
                "OVERLOADED",
                format!(
                    "this read node already serves {} projection snapshots; retry later",
                    limits::SNAPSHOTS_SERVED_MAX
                ),
            )
            .retry_after(limits::SNAPSHOT_RETRY_AFTER)
            .into()
        })
    }

    /// A checkpoint in a new scratch directory and the header describing it.
    fn prepare(&self) -> anyhow::Result<Prepared> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        std::fs::create_dir_all(&self.scratch)
            .with_context(|| format!("creating {}", self.scratch.display()))?;
        let dir = ScratchCopy(self.scratch.join(id.to_string()));
        let partitions = self.projection.partitions();
        // Read before the copy is taken: the copy holds at least these.
        let applied_indexes = self
            .projection
            .checkpoints()
            .iter()
            .map(|checkpoint| checkpoint.index)
            .collect();
        self.projection.db().copy_to(&dir.0)?;
        let files = list_files(&dir.0)?;
        let header = pb::ProjectionSnapshotHeader {
            format_version: super::FORMAT_VERSION,
            database_format: crate::db::DB_FORMAT.into(),
            partitions,
            applied_indexes,
            files,
        };
        Ok(Prepared { dir, header })
    }
}

/// The regular files of a checkpoint directory, by name, with their sizes.
fn list_files(dir: &Path) -> anyhow::Result<Vec<pb::ProjectionSnapshotFile>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        let name = entry.file_name().to_string_lossy().into_owned();
        anyhow::ensure!(
            metadata.is_file() && super::is_plain_file_name(&name),
            "unexpected entry {name:?} in the checkpoint {}",
            dir.display()
        );
        files.push(pb::ProjectionSnapshotFile {
            name,
            size: metadata.len(),
        });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// A checkpoint directory, deleted on drop.
struct ScratchCopy(PathBuf);

impl Drop for ScratchCopy {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(dir = %self.0.display(), %error, "removing a served projection snapshot");
        }
    }
}

/// A checkpoint ready to stream.
struct Prepared {
    dir: ScratchCopy,
    header: pb::ProjectionSnapshotHeader,
}

fn message(part: Part) -> Message {
    Ok(pb::FetchProjectionSnapshotResponse { part: Some(part) })
}

/// Sends the header and every file of `prepared` to `tx`, on a blocking thread; stops early
/// when the receiver is gone. A read error ends the stream with INTERNAL.
fn send_snapshot(prepared: Prepared, tx: &mpsc::Sender<Message>) {
    let files = prepared.header.files.clone();
    if tx
        .blocking_send(message(Part::Header(prepared.header)))
        .is_err()
    {
        return;
    }
    for file in &files {
        match send_file(&prepared.dir.0.join(&file.name), file.size, tx) {
            Ok(true) => {}
            Ok(false) => return,
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "serving a projection snapshot"
                );
                let _ = tx.blocking_send(Err(ApiError::internal(&error).into()));
                return;
            }
        }
    }
}

/// One file's chunks and digest; false when the receiver is gone.
fn send_file(path: &Path, size: u64, tx: &mpsc::Sender<Message>) -> anyhow::Result<bool> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = blake3::Hasher::new();
    let mut left = size;
    while left > 0 {
        let length = left.min(limits::SNAPSHOT_CHUNK_BYTES as u64) as usize;
        let mut chunk = vec![0; length];
        file.read_exact(&mut chunk)
            .with_context(|| format!("reading {}", path.display()))?;
        hasher.update(&chunk);
        left -= length as u64;
        if tx.blocking_send(message(Part::Chunk(chunk))).is_err() {
            return Ok(false);
        }
    }
    let digest = hasher.finalize().as_bytes().to_vec();
    Ok(tx.blocking_send(message(Part::FileDigest(digest))).is_ok())
}

#[tonic::async_trait]
impl ReadSnapshotService for SnapshotServer {
    type FetchProjectionSnapshotStream = ReceiverStream<Message>;

    async fn fetch_projection_snapshot(
        &self,
        request: Request<pb::FetchProjectionSnapshotRequest>,
    ) -> Result<Response<Self::FetchProjectionSnapshotStream>, Status> {
        self.check_request(request.get_ref())?;
        let permit = self.permit()?;
        let server = self.clone();
        let prepared = tokio::task::spawn_blocking(move || server.prepare())
            .await
            .map_err(|error| Status::internal(format!("snapshot task: {error}")))?
            .map_err(|error| {
                tracing::warn!(error = format!("{error:#}"), "taking a projection snapshot");
                Status::from(ApiError::internal(&error))
            })?;
        tracing::info!(
            files = prepared.header.files.len(),
            bytes = prepared
                .header
                .files
                .iter()
                .map(|file| file.size)
                .sum::<u64>(),
            "serving a projection snapshot"
        );
        let (tx, rx) = mpsc::channel(limits::SNAPSHOT_STREAM_BUFFER);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            send_snapshot(prepared, &tx);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(dir: &Path, ready: bool, served_max: usize) -> SnapshotServer {
        let data_dir = dir.join("data");
        std::fs::create_dir_all(&data_dir).expect("data dir");
        let projection = Arc::new(Projection::open(&data_dir, 2).expect("open"));
        let (_, ready) = watch::channel(ready);
        SnapshotServer::new(projection, ready, &data_dir, served_max).expect("server")
    }

    fn request(partitions: u32) -> Request<pb::FetchProjectionSnapshotRequest> {
        Request::new(pb::FetchProjectionSnapshotRequest {
            format_version: super::super::FORMAT_VERSION,
            partitions,
        })
    }

    #[tokio::test]
    async fn fetches_beyond_the_limit_are_resource_exhausted_and_the_copy_is_removed_after() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = server(dir.path(), true, 1);
        // Not read: its thread waits on the full buffer (a fresh database has more files than
        // the buffer holds messages), holding the only permit.
        let first = server
            .fetch_projection_snapshot(request(2))
            .await
            .expect("first");
        let refused = server
            .fetch_projection_snapshot(request(2))
            .await
            .expect_err("second");
        assert_eq!(refused.code(), Code::ResourceExhausted);
        assert!(std::fs::read_dir(&server.scratch).unwrap().next().is_some());
        // Dropping the stream ends its thread, which removes the checkpoint and frees the permit.
        drop(first);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_dir(&server.scratch).unwrap().next().is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "checkpoint left behind"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(server.permits.available_permits(), 1);
    }

    #[tokio::test]
    async fn a_node_not_caught_up_or_of_another_cluster_shape_refuses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let not_ready = server(&dir.path().join("a"), false, 1);
        let error = not_ready
            .fetch_projection_snapshot(request(2))
            .await
            .expect_err("not ready");
        assert_eq!(error.code(), Code::Unavailable);
        let ready = server(&dir.path().join("b"), true, 1);
        let error = ready
            .fetch_projection_snapshot(request(3))
            .await
            .expect_err("partitions");
        assert_eq!(error.code(), Code::FailedPrecondition);
        let mut other_format = request(2);
        other_format.get_mut().format_version = 9;
        let error = ready
            .fetch_projection_snapshot(other_format)
            .await
            .expect_err("format");
        assert_eq!(error.code(), Code::FailedPrecondition);
    }
}
