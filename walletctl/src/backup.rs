//! `walletctl backup`, `walletctl verify --backup` and `walletctl restore`: an online backup
//! of a running cluster's event logs, its offline check, and a new cluster's data built from
//! it. The format and the checks are the write node's (`write_node::backup`); this module
//! streams the logs from live nodes and reports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};
use write_node::backup::{self, Manifest, PartitionManifest, PartitionWriter, RestoredNode};

use crate::audit::{self, Followed, LiveNode};
use crate::cut::{Cut, Need};
use crate::output::Output;

/// Attempts at streaming one partition (each on the next node, resuming after the last block
/// written) before the backup gives up.
const PARTITION_ATTEMPTS_MAX: u32 = 10;
/// Pause before the next attempt at a partition.
const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// Rounds of extending partitions to a whole cut before the backup gives up (each round's
/// extensions are only the transfers that moved while the previous one streamed).
const CUT_ROUNDS_MAX: u32 = 16;
/// How long one extension may wait for the blocks it needs.
const CUT_EXTEND_WAIT_MAX: Duration = Duration::from_secs(30);

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
    let (floor, positions) = floor_and_positions(nodes).await?;
    let partitions = audit::selected(&request.partitions, positions.len() as u32)?;
    let building = backup::sibling(&dir, "partial")?;
    std::fs::create_dir_all(&building)
        .with_context(|| format!("creating {}", building.display()))?;
    let written = write_backup(nodes, floor, &positions, &partitions, &building, out)
        .await
        .and_then(|manifest| move_into_place(&building, &dir).map(|()| manifest));
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

/// Two rounds of status reads: the floors, then the positions (see `cut`).
async fn floor_and_positions(nodes: &[LiveNode]) -> anyhow::Result<(Vec<u64>, Vec<u64>)> {
    let floor = positions(nodes).await?;
    let positions = positions(nodes).await?;
    ensure!(
        positions.len() == floor.len(),
        "the partition count changed between two status reads"
    );
    let positions = positions
        .iter()
        .zip(&floor)
        .map(|(position, floor)| *position.max(floor))
        .collect();
    Ok((floor, positions))
}

/// Syncs the finished backup directory and renames it into place.
fn move_into_place(building: &Path, dir: &Path) -> anyhow::Result<()> {
    sync_dir(building)?;
    std::fs::rename(building, dir)
        .with_context(|| format!("moving {} to {}", building.display(), dir.display()))
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
    floor: Vec<u64>,
    positions: &[u64],
    partitions: &[u32],
    dir: &Path,
    out: &Output,
) -> anyhow::Result<Manifest> {
    let total = partitions.iter().map(|&p| positions[p as usize]).sum();
    let bar = audit::progress(total, out.is_json());
    let mut positions = positions.to_vec();
    let mut cut = Cut::new(floor);
    let mut entries = BTreeMap::new();
    for &partition in partitions {
        bar.set_message(format!("partition {partition}"));
        let target = positions[partition as usize];
        let writer = PartitionWriter::create(dir, partition)?;
        let goal = Goal::Position(target);
        let entry = backup_partition(nodes, partition, goal, writer, &mut cut).await?;
        entries.insert(partition, entry);
        bar.inc(target);
    }
    bar.finish_and_clear();
    // A partial backup is restored by no one: its positions stay per partition.
    if partitions.len() == positions.len() {
        close_the_cut(nodes, &mut cut, &mut positions, &mut entries, dir).await?;
    }
    let manifest = Manifest::new(positions.len() as u32, entries.into_values().collect());
    manifest.write(dir)?;
    Ok(manifest)
}

/// Extends the partitions that hold half of a cross-partition transfer until none does (see
/// `cut`).
async fn close_the_cut(
    nodes: &[LiveNode],
    cut: &mut Cut,
    positions: &mut [u64],
    entries: &mut BTreeMap<u32, PartitionManifest>,
    dir: &Path,
) -> anyhow::Result<()> {
    for _ in 0..CUT_ROUNDS_MAX {
        let needs = cut.needs(positions);
        if needs.is_empty() {
            return Ok(());
        }
        for (partition, need) in needs {
            tracing::info!(
                partition,
                position = positions[partition as usize],
                at_least = need.index,
                debits = need.debits.len(),
                "extending a partition to a whole cut"
            );
            let writer = PartitionWriter::resume(dir, partition)?;
            let extend = backup_partition(nodes, partition, Goal::Need(need), writer, cut);
            let entry = tokio::time::timeout(CUT_EXTEND_WAIT_MAX, extend)
                .await
                .with_context(|| {
                    format!(
                        "partition {partition}: the blocks a cross-partition transfer needs did                          not arrive within {CUT_EXTEND_WAIT_MAX:?}"
                    )
                })??;
            positions[partition as usize] = entry.index;
            entries.insert(partition, entry);
        }
    }
    bail!(
        "the partitions' positions did not settle on a whole cut in {CUT_ROUNDS_MAX} rounds: {:?}",
        cut.needs(positions)
    )
}

/// Where streaming a partition stops.
enum Goal {
    /// Exactly at this position (every block up to it).
    Position(u64),
    /// At the first block at or after `need.index` by which every debit in `need.debits`
    /// has been written.
    Need(Need),
}

impl Goal {
    /// The index the stream runs to (a need of debits stops it from the block handler).
    fn target(&self) -> u64 {
        match self {
            Goal::Position(index) => *index,
            Goal::Need(need) if need.debits.is_empty() => need.index,
            Goal::Need(_) => u64::MAX,
        }
    }

    /// The position reached once the stream stopped, the last block written being `last`.
    fn position(&self, last: u64) -> u64 {
        match self {
            Goal::Position(index) => *index,
            Goal::Need(need) => last.max(need.index),
        }
    }

    /// Whether the goal is reached after `block`, written to `partition`.
    fn reached_after(&mut self, partition: u32, block: u64, cut: &Cut) -> bool {
        match self {
            Goal::Position(index) => block >= *index,
            Goal::Need(need) => {
                need.debits.retain(|id| !cut.has_debit(partition, *id));
                block >= need.index && need.debits.is_empty()
            }
        }
    }
}

/// Streams one partition into `writer` until `goal`, failing over to the next node
/// (resuming after the last block written) when a stream breaks.
async fn backup_partition(
    nodes: &[LiveNode],
    partition: u32,
    mut goal: Goal,
    mut writer: PartitionWriter,
    cut: &mut Cut,
) -> anyhow::Result<PartitionManifest> {
    let mut failures = Vec::new();
    // Partitions start on different nodes, so one backup spreads its reads.
    let mut turn = partition as usize;
    while !matches!(goal, Goal::Position(0)) {
        let node = &nodes[turn % nodes.len()];
        match stream_into(node, partition, &mut goal, &mut writer, cut).await? {
            Ok(()) => break,
            Err(problem) => failures.push(format!("{}: {problem}", node.endpoint)),
        }
        if failures.len() as u32 >= PARTITION_ATTEMPTS_MAX {
            bail!(
                "partition {partition}: no node streamed it in {PARTITION_ATTEMPTS_MAX} \
                 attempts: {}",
                failures.join("; ")
            );
        }
        turn += 1;
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    let position = goal.position(writer.index());
    cut.set_in_flight(partition, writer.ledger());
    writer.finish(position)
}

/// One attempt: streams from `node` after the writer's last block until `goal`. `Err`: the
/// file cannot be written (fatal); `Ok(Err)`: this node failed, try another.
async fn stream_into(
    node: &LiveNode,
    partition: u32,
    goal: &mut Goal,
    writer: &mut PartitionWriter,
    cut: &mut Cut,
) -> anyhow::Result<Result<(), String>> {
    let mut fatal = None;
    let target = goal.target();
    let followed = audit::follow(node, partition, writer.index() + 1, target, |block| {
        cut.observe(partition, block, writer.ledger());
        match writer.append_streamed(block) {
            Ok(Ok(_)) => Ok(!goal.reached_after(partition, block.index, cut)),
            Ok(Err(broken)) => Err((broken.index, broken.problem)),
            Err(error) => {
                fatal = Some(error);
                Ok(false)
            }
        }
    })
    .await;
    if let Some(error) = fatal {
        return Err(error);
    }
    Ok(match followed {
        // Stopped: the goal was reached after a block.
        Ok(Ok(Followed::Reached | Followed::Stopped)) => Ok(()),
        Ok(Ok(Followed::Ended)) => Err(format!(
            "the stream ended at index {} before the backup's position",
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
