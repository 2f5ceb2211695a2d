//! The receiving side: a read node whose data directory is empty (absent, or an empty
//! directory) and that has `bootstrap_from` fetches another read node's projections into
//! `<data_dir>.bootstrap`, checks every file's size and digest as it arrives, opens the copy
//! (format, partition count, checkpoint), and only then renames it to the data directory. A
//! failed attempt leaves no data directory behind; after `limits::BOOTSTRAP_ATTEMPTS` failures
//! the node folds from genesis, as without `bootstrap_from`.
//!
//! The copy's checkpoint (per partition: applied index and chain hash, written in the same
//! batch as the rows) is where ingest resumes: the first block it folds is the one after the
//! copy's position, chained to the copy's last hash, so nothing is missed or folded twice.

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail, ensure};
use proto::internal as pb;
use proto::internal::fetch_projection_snapshot_response::Part;
use proto::internal::read_snapshot_service_client::ReadSnapshotServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::metadata::{Ascii, MetadataValue};

use super::Digest;
use crate::config::Config;
use crate::db::{Checkpoint, ProjectionDb};
use crate::limits;

/// How a start that named `bootstrap_from` went.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The data directory held projections already: resumed from them, nothing fetched.
    ExistingData,
    /// A copy of the source's projections is in place; ingest resumes from these.
    Installed(Vec<Checkpoint>),
    /// Every attempt failed (logged): the node folds from genesis.
    FromGenesis,
}

/// Bootstraps `config.data_dir` from `source` (`host:port` of a read node) if it is empty;
/// see the module documentation. Errors only when the data directory cannot be inspected or
/// the copy cannot be renamed into place; a failed fetch is retried, then given up.
pub async fn bootstrap(
    config: &Config,
    source: &str,
    partitions: u32,
    shutdown: &CancellationToken,
) -> anyhow::Result<Outcome> {
    if !is_empty_dir(&config.data_dir)? {
        tracing::info!(data_dir = %config.data_dir.display(), "data directory holds projections: not bootstrapping");
        return Ok(Outcome::ExistingData);
    }
    let client = Source::new(config, source)?;
    let staging = staging_dir(&config.data_dir);
    for attempt in 1..=limits::BOOTSTRAP_ATTEMPTS {
        remove_if_present(&staging)?;
        let fetched = tokio::select! {
            fetched = client.fetch_into(&staging, partitions) => fetched,
            () = shutdown.cancelled() => Err(anyhow::anyhow!("shutting down")),
        };
        match fetched {
            Ok(checkpoints) => {
                install(&staging, &config.data_dir)?;
                tracing::info!(%source, checkpoint = ?checkpoints.iter().map(|c| c.index).collect::<Vec<_>>(), "bootstrapped from a read node's projection snapshot");
                return Ok(Outcome::Installed(checkpoints));
            }
            Err(error) => {
                remove_if_present(&staging)?;
                tracing::warn!(%source, attempt, attempts = limits::BOOTSTRAP_ATTEMPTS, error = format!("{error:#}"), "bootstrap from a projection snapshot failed");
            }
        }
        if shutdown.is_cancelled() {
            break;
        }
        if attempt < limits::BOOTSTRAP_ATTEMPTS {
            tokio::select! {
                () = tokio::time::sleep(limits::BOOTSTRAP_RETRY_BACKOFF) => {}
                () = shutdown.cancelled() => break,
            }
        }
    }
    tracing::warn!(%source, "no projection snapshot installed: folding the event log from genesis");
    Ok(Outcome::FromGenesis)
}

/// `<data_dir>.bootstrap`: beside the data directory, so the final rename stays on one
/// filesystem (the chart mounts the volume at the data directory's parent).
pub fn staging_dir(data_dir: &Path) -> PathBuf {
    let mut name = data_dir.as_os_str().to_owned();
    name.push(".bootstrap");
    PathBuf::from(name)
}

/// Whether `dir` is absent or an empty directory.
fn is_empty_dir(dir: &Path) -> anyhow::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(error) => Err(error).with_context(|| format!("reading {}", dir.display())),
    }
}

fn remove_if_present(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// Renames the checked copy to the (absent or empty) data directory, durably.
fn install(staging: &Path, data_dir: &Path) -> anyhow::Result<()> {
    if data_dir.exists() {
        std::fs::remove_dir(data_dir)
            .with_context(|| format!("removing the empty {}", data_dir.display()))?;
    }
    std::fs::rename(staging, data_dir)
        .with_context(|| format!("renaming {} to {}", staging.display(), data_dir.display()))?;
    if let Some(parent) = data_dir
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::File::open(parent)
            .and_then(|dir| dir.sync_all())
            .with_context(|| format!("syncing {}", parent.display()))?;
    }
    Ok(())
}

/// The source read node: its address, and how to dial it (TLS `[bootstrap_tls]`, the
/// node's `write_node_token_file` token).
struct Source {
    client: ReadSnapshotServiceClient<tonic::transport::Channel>,
    token: Option<MetadataValue<Ascii>>,
}

impl Source {
    fn new(config: &Config, source: &str) -> anyhow::Result<Source> {
        let tls = config
            .bootstrap_tls
            .as_ref()
            .map(security::ClientTls::client_config)
            .transpose()
            .context("bootstrap TLS")?;
        let channel = security::tls::endpoint(source, tls.as_ref())?
            .connect_timeout(limits::BOOTSTRAP_CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .connect_lazy();
        let token = config
            .write_node_token_file
            .as_deref()
            .map(crate::security::bearer)
            .transpose()?;
        Ok(Source {
            client: ReadSnapshotServiceClient::new(channel)
                .max_decoding_message_size(limits::SNAPSHOT_MESSAGE_BYTES_MAX),
            token,
        })
    }

    /// One attempt: the whole stream into `staging`, checked, then opened.
    async fn fetch_into(&self, staging: &Path, partitions: u32) -> anyhow::Result<Vec<Checkpoint>> {
        let mut request = tonic::Request::new(pb::FetchProjectionSnapshotRequest {
            format_version: super::FORMAT_VERSION,
            partitions,
        });
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        let mut stream = self
            .client
            .clone()
            .fetch_projection_snapshot(request)
            .await
            .context("asking for a projection snapshot")?
            .into_inner();
        let mut writer: Option<SnapshotWriter> = None;
        while let Some(response) =
            tokio::time::timeout(limits::BOOTSTRAP_MESSAGE_WAIT_MAX, stream.message())
                .await
                .context("the source went silent")?
                .context("the snapshot stream broke")?
        {
            let part = response.part.context("a snapshot message without a part")?;
            match (&mut writer, part) {
                (None, Part::Header(header)) => {
                    writer = Some(SnapshotWriter::create(staging, header, partitions)?);
                }
                (None, _) => bail!("the snapshot stream did not start with a header"),
                (Some(writer), part) => writer.accept(part)?,
            }
        }
        writer.context("the snapshot stream was empty")?.finish()?;
        let staging = staging.to_owned();
        tokio::task::spawn_blocking(move || open_copy(&staging, partitions)).await?
    }
}

/// Opens the received copy as the node will: format and partition count are checked, the
/// checkpoint read.
fn open_copy(dir: &Path, partitions: u32) -> anyhow::Result<Vec<Checkpoint>> {
    let db = ProjectionDb::open(dir, partitions).context("opening the received copy")?;
    let checkpoints = db.checkpoints(partitions)?;
    db.flush()?;
    Ok(checkpoints)
}

/// Writes a snapshot stream's files into a directory, checking each against the header and
/// its digest.
pub struct SnapshotWriter {
    dir: PathBuf,
    /// Files listed by the header and not yet complete, in sending order.
    pending: VecDeque<pb::ProjectionSnapshotFile>,
    current: Option<FileInProgress>,
}

struct FileInProgress {
    name: String,
    size: u64,
    written: u64,
    file: std::io::BufWriter<std::fs::File>,
    hasher: blake3::Hasher,
}

impl SnapshotWriter {
    /// Checks `header` against this node (stream format, database format, partition count,
    /// file names) and creates `dir` for its files.
    pub fn create(
        dir: &Path,
        header: pb::ProjectionSnapshotHeader,
        partitions: u32,
    ) -> anyhow::Result<SnapshotWriter> {
        check_header(&header, partitions)?;
        std::fs::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(SnapshotWriter {
            dir: dir.to_owned(),
            pending: header.files.into(),
            current: None,
        })
    }

    /// The next part of the stream after the header.
    pub fn accept(&mut self, part: Part) -> anyhow::Result<()> {
        match part {
            Part::Header(_) => bail!("a second snapshot header"),
            Part::Chunk(bytes) => self.write_chunk(&bytes),
            Part::FileDigest(digest) => self.end_file(&digest),
        }
    }

    /// Every listed file arrived complete.
    pub fn finish(self) -> anyhow::Result<()> {
        ensure!(
            self.current.is_none() && self.pending.is_empty(),
            "the snapshot stream ended before all its files ({} left)",
            self.pending.len() + usize::from(self.current.is_some())
        );
        std::fs::File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .with_context(|| format!("syncing {}", self.dir.display()))
    }

    /// The file being received, opening the next listed one if none is.
    fn current(&mut self) -> anyhow::Result<&mut FileInProgress> {
        if self.current.is_none() {
            let next = self
                .pending
                .pop_front()
                .context("more data than the snapshot header lists")?;
            let path = self.dir.join(&next.name);
            let file = std::fs::File::create_new(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            self.current = Some(FileInProgress {
                name: next.name,
                size: next.size,
                written: 0,
                file: std::io::BufWriter::new(file),
                hasher: blake3::Hasher::new(),
            });
        }
        Ok(self.current.as_mut().expect("set above"))
    }

    fn write_chunk(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let file = self.current()?;
        let written = file.written + bytes.len() as u64;
        ensure!(
            written <= file.size,
            "{}: more than the {} bytes the header lists",
            file.name,
            file.size
        );
        file.file
            .write_all(bytes)
            .with_context(|| format!("writing {}", file.name))?;
        file.hasher.update(bytes);
        file.written = written;
        Ok(())
    }

    fn end_file(&mut self, digest: &[u8]) -> anyhow::Result<()> {
        self.current()?;
        let file = self.current.take().expect("opened above");
        ensure!(
            file.written == file.size,
            "{}: {} bytes received, the header lists {}",
            file.name,
            file.written,
            file.size
        );
        let expected: Digest = digest
            .try_into()
            .ok()
            .with_context(|| format!("{}: a digest of {} bytes", file.name, digest.len()))?;
        ensure!(
            *file.hasher.finalize().as_bytes() == expected,
            "{}: the received bytes do not match the file's digest (corrupted in transit)",
            file.name
        );
        let handle = file
            .file
            .into_inner()
            .map_err(|error| error.into_error())
            .with_context(|| format!("writing {}", file.name))?;
        handle
            .sync_all()
            .with_context(|| format!("syncing {}", file.name))
    }
}

fn check_header(header: &pb::ProjectionSnapshotHeader, partitions: u32) -> anyhow::Result<()> {
    ensure!(
        header.format_version == super::FORMAT_VERSION,
        "snapshot stream format {} (this node reads {})",
        header.format_version,
        super::FORMAT_VERSION
    );
    ensure!(
        header.database_format == crate::db::DB_FORMAT,
        "the source's projections are of format {:?}, this node's {:?}",
        header.database_format,
        crate::db::DB_FORMAT
    );
    ensure!(
        header.partitions == partitions,
        "the source's projections have {} partitions, the cluster {partitions}",
        header.partitions
    );
    ensure!(
        header.files.len() <= limits::SNAPSHOT_FILES_MAX,
        "the snapshot lists {} files (at most {})",
        header.files.len(),
        limits::SNAPSHOT_FILES_MAX
    );
    let mut names = std::collections::HashSet::new();
    for file in &header.files {
        ensure!(
            super::is_plain_file_name(&file.name) && names.insert(file.name.as_str()),
            "the snapshot lists the file name {:?} (a path, or twice)",
            file.name
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(files: &[(&str, &[u8])]) -> pb::ProjectionSnapshotHeader {
        pb::ProjectionSnapshotHeader {
            format_version: super::super::FORMAT_VERSION,
            database_format: crate::db::DB_FORMAT.into(),
            partitions: 2,
            applied_indexes: vec![5, 7],
            files: files
                .iter()
                .map(|(name, bytes)| pb::ProjectionSnapshotFile {
                    name: (*name).into(),
                    size: bytes.len() as u64,
                })
                .collect(),
        }
    }

    fn digest(bytes: &[u8]) -> Part {
        Part::FileDigest(blake3::hash(bytes).as_bytes().to_vec())
    }

    #[test]
    fn files_arrive_in_order_with_their_digests() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("copy");
        let (a, b): (&[u8], &[u8]) = (b"hello world", b"");
        let mut writer =
            SnapshotWriter::create(&target, header(&[("A", a), ("B", b)]), 2).expect("create");
        writer.accept(Part::Chunk(a[..5].to_vec())).expect("chunk");
        writer.accept(Part::Chunk(a[5..].to_vec())).expect("chunk");
        writer.accept(digest(a)).expect("digest");
        // An empty file: its digest alone.
        writer.accept(digest(b)).expect("digest");
        writer.finish().expect("complete");
        assert_eq!(std::fs::read(target.join("A")).unwrap(), a);
        assert_eq!(std::fs::read(target.join("B")).unwrap(), b);
    }

    #[test]
    fn a_corrupted_short_long_or_incomplete_stream_is_refused() {
        let original: &[u8] = b"0123456789";
        let refused = |parts: Vec<Part>| -> String {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut writer =
                SnapshotWriter::create(&dir.path().join("copy"), header(&[("A", original)]), 2)
                    .expect("create");
            for part in parts {
                if let Err(error) = writer.accept(part) {
                    return format!("{error:#}");
                }
            }
            format!("{:#}", writer.finish().expect_err("refused"))
        };
        let mut flipped = original.to_vec();
        flipped[3] ^= 1;
        let corrupted = refused(vec![Part::Chunk(flipped), digest(original)]);
        assert!(
            corrupted.contains("do not match the file's digest"),
            "{corrupted}"
        );
        let short = refused(vec![Part::Chunk(original[..4].to_vec()), digest(original)]);
        assert!(short.contains("4 bytes received"), "{short}");
        let long = refused(vec![Part::Chunk([original, b"x"].concat())]);
        assert!(long.contains("more than the 10 bytes"), "{long}");
        let incomplete = refused(vec![Part::Chunk(original.to_vec())]);
        assert!(
            incomplete.contains("ended before all its files"),
            "{incomplete}"
        );
        let extra = refused(vec![
            Part::Chunk(original.to_vec()),
            digest(original),
            Part::Chunk(b"more".to_vec()),
        ]);
        assert!(
            extra.contains("more data than the snapshot header lists"),
            "{extra}"
        );
        let second = refused(vec![Part::Header(header(&[]))]);
        assert!(second.contains("a second snapshot header"), "{second}");
    }

    #[test]
    fn a_header_of_another_format_partition_count_or_with_paths_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let create = |header: pb::ProjectionSnapshotHeader, partitions: u32| {
            let target = dir.path().join(uuid::Uuid::new_v4().to_string());
            let result = SnapshotWriter::create(&target, header, partitions).map(|_| ());
            (result, target.exists())
        };
        let mut other_format = header(&[]);
        other_format.database_format = "read-node-v2".into();
        let mut other_version = header(&[]);
        other_version.format_version = 2;
        for (header, partitions, expected) in [
            (header(&[]), 3, "2 partitions, the cluster 3"),
            (other_format, 2, "read-node-v2"),
            (other_version, 2, "format 2"),
            (header(&[("../escape", b"x")]), 2, "a path, or twice"),
            (header(&[("A", b"x"), ("A", b"y")]), 2, "a path, or twice"),
        ] {
            let (result, created) = create(header, partitions);
            let error = format!("{:#}", result.expect_err("refused"));
            assert!(error.contains(expected), "{error}");
            assert!(!created, "nothing is written for a refused header");
        }
    }

    #[test]
    fn only_an_absent_or_empty_directory_is_bootstrapped() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(is_empty_dir(&dir.path().join("absent")).unwrap());
        assert!(is_empty_dir(dir.path()).unwrap());
        std::fs::write(dir.path().join("CURRENT"), b"x").unwrap();
        assert!(!is_empty_dir(dir.path()).unwrap());
    }
}
