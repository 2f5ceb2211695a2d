//! `walletctl backup`, `walletctl verify --backup` and `walletctl restore`: an online backup
//! of a running cluster's event logs, its offline check, and a new cluster's data built from
//! it. The format and the checks are the write node's (`write_node::backup`); this module
//! streams the logs from live nodes and reports.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};
use write_node::backup::{self, Manifest, PartitionManifest, PartitionWriter, RestoredNode};

use crate::audit::{self, Followed, LiveNode};
use crate::output::Output;

/// Attempts at streaming one partition (each on the next node, resuming after the last block
/// written) before the backup gives up.
const PARTITION_ATTEMPTS_MAX: u32 = 10;
/// Pause before the next attempt at a partition.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Names of the backups `--under` creates: this, then the UTC time.
const DATED_PREFIX: &str = "backup-";

/// What `backup` was asked for.
pub struct BackupRequest {
    pub target: Target,
    /// Only these partitions; all when empty.
    pub partitions: Vec<u32>,
}

/// Where a backup goes.
pub enum Target {
    /// This directory, which must not exist.
    Dir(PathBuf),
    /// A new `backup-<UTC time>` directory in `root`; then all but the newest `keep` of them
    /// are deleted.
    Dated { root: PathBuf, keep: Option<u64> },
}

impl Target {
    /// The directory to create.
    fn dir(&self) -> anyhow::Result<PathBuf> {
        match self {
            Target::Dir(dir) => Ok(dir.clone()),
            Target::Dated { root, .. } => {
                std::fs::create_dir_all(root)
                    .with_context(|| format!("creating {}", root.display()))?;
                let now = humantime::format_rfc3339_millis(std::time::SystemTime::now());
                // Colons are awkward in file names; the names still sort by time.
                let stamp = now.to_string().replace(':', "-");
                Ok(root.join(format!("{DATED_PREFIX}{stamp}")))
            }
        }
    }
}

/// `walletctl backup`: every selected partition's event log from genesis up to the highest
/// applied index any reachable node reports at the start, streamed from any node, into a new
/// directory that appears only once complete.
pub async fn backup(
    nodes: &[LiveNode],
    request: &BackupRequest,
    out: &Output,
) -> anyhow::Result<()> {
    let dir = request.target.dir()?;
    ensure!(
        !dir.exists(),
        "{} exists: a backup goes into a new directory",
        dir.display()
    );
    let positions = positions(nodes).await?;
    let partitions = audit::selected(&request.partitions, positions.len() as u32)?;
    let building = backup::sibling(&dir, "partial")?;
    std::fs::create_dir_all(&building)
        .with_context(|| format!("creating {}", building.display()))?;
    let written = write_backup(nodes, &positions, &partitions, &building, out)
        .await
        .and_then(|manifest| {
            sync_dir(&building)?;
            std::fs::rename(&building, &dir)
                .with_context(|| format!("moving {} to {}", building.display(), dir.display()))?;
            Ok(manifest)
        });
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&building);
    }
    let manifest = written?;
    report_backup(&dir, &manifest, out);
    if let Target::Dated {
        root,
        keep: Some(keep),
    } = &request.target
    {
        prune(root, *keep as usize)?;
    }
    Ok(())
}

/// Deletes all but the newest `keep` complete dated backups in `root`, and the unfinished
/// ones of earlier runs (`.backup-*.partial-*`: a run that was stopped).
fn prune(root: &Path, keep: usize) -> anyhow::Result<()> {
    let mut complete = Vec::new();
    for entry in std::fs::read_dir(root).with_context(|| format!("reading {}", root.display()))? {
        let entry = entry.with_context(|| format!("reading {}", root.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(DATED_PREFIX) && entry.path().join(backup::MANIFEST_FILE).exists() {
            complete.push(entry.path());
        } else if name.starts_with(&format!(".{DATED_PREFIX}")) && name.contains(".partial-") {
            remove(&entry.path())?;
        }
    }
    complete.sort();
    let excess = complete.len().saturating_sub(keep);
    for old in &complete[..excess] {
        remove(old)?;
    }
    Ok(())
}

fn remove(dir: &Path) -> anyhow::Result<()> {
    tracing::info!(dir = %dir.display(), "deleting an old backup");
    std::fs::remove_dir_all(dir).with_context(|| format!("deleting {}", dir.display()))
}

/// The index to back each partition up to: the highest applied index any node reports.
async fn positions(nodes: &[LiveNode]) -> anyhow::Result<Vec<u64>> {
    let mut positions: Option<Vec<u64>> = None;
    let mut errors = Vec::new();
    for node in nodes {
        let applied = match audit::live_applied(node).await {
            Ok(applied) => applied,
            Err(error) => {
                errors.push(format!("{error:#}"));
                continue;
            }
        };
        match &mut positions {
            None => positions = Some(applied),
            Some(known) if known.len() == applied.len() => {
                for (known, applied) in known.iter_mut().zip(applied) {
                    *known = (*known).max(applied);
                }
            }
            Some(known) => bail!(
                "{} reports {} partitions, another node {}: not one cluster",
                node.endpoint,
                applied.len(),
                known.len()
            ),
        }
    }
    positions.with_context(|| format!("no node answered: {}", errors.join("; ")))
}

async fn write_backup(
    nodes: &[LiveNode],
    positions: &[u64],
    partitions: &[u32],
    dir: &Path,
    out: &Output,
) -> anyhow::Result<Manifest> {
    let total = partitions.iter().map(|&p| positions[p as usize]).sum();
    let bar = audit::progress(total, out.is_json());
    let mut entries = Vec::new();
    for &partition in partitions {
        bar.set_message(format!("partition {partition}"));
        let target = positions[partition as usize];
        entries.push(backup_partition(nodes, partition, target, dir).await?);
        bar.inc(target);
    }
    bar.finish_and_clear();
    let manifest = Manifest::new(positions.len() as u32, entries);
    manifest.write(dir)?;
    Ok(manifest)
}

/// Streams one partition to `target` into its file, failing over to the next node (resuming
/// after the last block written) when a stream breaks.
async fn backup_partition(
    nodes: &[LiveNode],
    partition: u32,
    target: u64,
    dir: &Path,
) -> anyhow::Result<PartitionManifest> {
    let mut writer = PartitionWriter::create(dir, partition)?;
    let mut failures = Vec::new();
    // Partitions start on different nodes, so one backup spreads its reads.
    let mut turn = partition as usize;
    if target == 0 {
        return writer.finish(0);
    }
    loop {
        let node = &nodes[turn % nodes.len()];
        match stream_into(node, partition, target, &mut writer).await? {
            Ok(()) => break,
            Err(problem) => failures.push(format!("{}: {problem}", node.endpoint)),
        }
        if failures.len() as u32 >= PARTITION_ATTEMPTS_MAX {
            bail!(
                "partition {partition}: no node streamed it to index {target} in \
                 {PARTITION_ATTEMPTS_MAX} attempts: {}",
                failures.join("; ")
            );
        }
        turn += 1;
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    writer.finish(target)
}

/// One attempt: streams from `node` after the writer's last block up to `target`. `Err`: the
/// file cannot be written (fatal); `Ok(Err)`: this node failed, try another.
async fn stream_into(
    node: &LiveNode,
    partition: u32,
    target: u64,
    writer: &mut PartitionWriter,
) -> anyhow::Result<Result<(), String>> {
    let mut fatal = None;
    let followed = audit::follow(
        node,
        partition,
        writer.index() + 1,
        target,
        |block| match writer.append_streamed(block) {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(broken)) => Err((broken.index, broken.problem)),
            Err(error) => {
                fatal = Some(error);
                Ok(false)
            }
        },
    )
    .await;
    if let Some(error) = fatal {
        return Err(error);
    }
    Ok(match followed {
        Ok(Ok(Followed::Reached)) => Ok(()),
        Ok(Ok(Followed::Stopped | Followed::Ended)) => Err(format!(
            "the stream ended at index {} before {target}",
            writer.index()
        )),
        Ok(Err((index, problem))) => Err(format!("index {index}: {problem}")),
        Err(error) => Err(format!("{error:#}")),
    })
}

/// Makes a directory's entries durable (the files were synced as they were finished).
fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|handle| handle.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

fn report_backup(dir: &Path, manifest: &Manifest, out: &Output) {
    if out.is_json() {
        out.json_line(&json!({
            "ok": true,
            "backup": dir.display().to_string(),
            "manifest": manifest,
        }));
        return;
    }
    for entry in &manifest.partitions {
        println!(
            "partition {}: to index {} ({} blocks), state digest {}",
            entry.partition, entry.index, entry.blocks, entry.state_digest
        );
    }
    println!(
        "backup written to {} ({} of {} partitions)",
        dir.display(),
        manifest.partitions.len(),
        manifest.partition_count
    );
}

/// `walletctl verify --backup`: every chain link, conservation after every block, each
/// partition's replayed state against the manifest. Returns whether everything held.
pub fn verify(dir: &Path, out: &Output) -> anyhow::Result<bool> {
    let (manifest, verdicts) = backup::verify(dir, |_, _| {})?;
    let mut all_ok = true;
    let results: Vec<Value> = verdicts
        .into_iter()
        .map(|(partition, verdict)| match verdict {
            Ok(entry) => json!({
                "partition": partition, "ok": true, "index": entry.index,
                "blocks": entry.blocks, "snapshots": [], "state_digest": entry.state_digest,
                "chain_head": entry.chain_head,
            }),
            Err(broken) => {
                all_ok = false;
                json!({
                    "partition": partition, "ok": false, "broken_index": broken.index,
                    "problem": broken.problem, "index": broken.state_index,
                })
            }
        })
        .collect();
    let missing = backup::missing_partitions(&manifest);
    if !missing.is_empty() && !out.is_json() {
        println!(
            "partial backup: partitions {missing:?} of {} are not in it (it cannot be restored)",
            manifest.partition_count
        );
    }
    audit::print_verified(&results, all_ok, out);
    Ok(all_ok)
}

/// Where `restore` writes the new nodes' data.
pub enum Targets {
    /// `DIR/node-1` to `DIR/node-N`.
    Under(PathBuf, u64),
    /// Each node id's own directory.
    Each(Vec<(u64, PathBuf)>),
}

/// `walletctl restore`: the data directories of a new cluster.
pub fn restore(backup_dir: &Path, targets: Targets, out: &Output) -> anyhow::Result<()> {
    let restored = match targets {
        Targets::Under(dir, nodes) => backup::restore_under(backup_dir, &dir, nodes)?,
        Targets::Each(dirs) => {
            let nodes: Vec<RestoredNode> = dirs
                .into_iter()
                .map(|(node_id, data_dir)| RestoredNode { node_id, data_dir })
                .collect();
            backup::restore(backup_dir, &nodes)?;
            nodes
        }
    };
    let manifest = Manifest::read(backup_dir)?;
    if out.is_json() {
        let nodes: Vec<Value> = restored
            .iter()
            .map(|node| {
                json!({ "node_id": node.node_id, "data_dir": node.data_dir.display().to_string() })
            })
            .collect();
        out.json_line(&json!({
            "ok": true,
            "partitions": manifest.partition_count,
            "nodes": nodes,
        }));
        return Ok(());
    }
    for node in &restored {
        println!(
            "node {}: {} (start it with --node-id {} --partitions {} --data-dir {})",
            node.node_id,
            node.data_dir.display(),
            node.node_id,
            manifest.partition_count,
            node.data_dir.display()
        );
    }
    println!(
        "restored {} partitions for {} nodes",
        manifest.partition_count,
        restored.len()
    );
    Ok(())
}
