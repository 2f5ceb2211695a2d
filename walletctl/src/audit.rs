//! `walletctl replay` and `walletctl verify`: rebuild and check partitions from a write node's
//! data directory, offline and read-only, with the node's own code (`write_node::audit`: the
//! same chain checks and `ledger::evolve` the nodes apply with).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use ledger::{Currency, format_minor};
use serde_json::{Value, json};
use write_node::audit::{self, AuditedNode, Folded, Start, State, Until};
use write_node::backup::hex;

use crate::output::Output;

/// Where a replay starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum From {
    Genesis,
    /// The newest stored snapshot at or below the target.
    Snapshot,
    /// The stored snapshot at exactly this index.
    SnapshotAt(u64),
}

impl std::str::FromStr for From {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "genesis" => Ok(From::Genesis),
            "snapshot" => Ok(From::Snapshot),
            _ => match text.strip_prefix("snapshot:").map(str::parse) {
                Some(Ok(index)) => Ok(From::SnapshotAt(index)),
                _ => Err(format!(
                    "{text:?}: expected genesis, snapshot or snapshot:INDEX"
                )),
            },
        }
    }
}

/// What `replay` was asked for.
pub struct ReplayRequest {
    pub partitions: Vec<u32>,
    pub from: From,
    pub to_index: Option<u64>,
    /// Milliseconds since the Unix epoch.
    pub to_time_ms: Option<u64>,
    pub balances: bool,
}

/// Parses `--to-time`: milliseconds since the Unix epoch, or an RFC 3339 time.
pub fn parse_time(text: &str) -> Result<u64, String> {
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    let time = humantime::parse_rfc3339_weak(text)
        .map_err(|error| format!("{text:?}: not milliseconds or an RFC 3339 time ({error})"))?;
    let since_epoch = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| format!("{text:?} is before 1970"))?;
    Ok(since_epoch.as_millis() as u64)
}

fn open(data_dir: &Path) -> anyhow::Result<(AuditedNode, u32)> {
    let node = audit::open_read_only(data_dir)?;
    let count = node.partitions();
    Ok((node, count))
}

pub(crate) fn selected(partitions: &[u32], count: u32) -> anyhow::Result<Vec<u32>> {
    if partitions.is_empty() {
        return Ok((0..count).collect());
    }
    if let Some(bad) = partitions.iter().find(|&&partition| partition >= count) {
        bail!("partition {bad} does not exist: this data has partitions 0..{count}");
    }
    Ok(partitions.to_vec())
}

pub(crate) fn progress(total: u64, json: bool) -> ProgressBar {
    if json {
        return ProgressBar::hidden();
    }
    // Draws on stderr only when it is a terminal.
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {pos}/{len} log entries, {per_sec}, eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

/// `walletctl replay`.
pub fn replay(data_dir: &Path, request: &ReplayRequest, out: &Output) -> anyhow::Result<()> {
    let (db, count) = open(data_dir)?;
    let partitions = selected(&request.partitions, count)?;
    let mut targets = BTreeMap::new();
    for &partition in &partitions {
        let applied = db.applied_index(partition)?;
        let index = request.to_index.map_or(applied, |to| to.min(applied));
        targets.insert(partition, index);
    }
    let bar = progress(targets.values().sum(), out.is_json());
    let mut results = Vec::new();
    let mut sums: BTreeMap<Currency, (i128, i128)> = BTreeMap::new();
    for &partition in &partitions {
        let target = targets[&partition];
        bar.set_message(format!("partition {partition}"));
        let (mut state, from) = start(&db, partition, request.from, target)?;
        let until = match request.to_time_ms {
            Some(timestamp_ms) => Until::Time {
                timestamp_ms,
                index: target,
            },
            None => Until::Index(target),
        };
        let (mut blocks, mut events, mut shown) = (0u64, 0u64, state.index);
        db.replay(partition, &mut state, until, |folded, state| {
            blocks += 1;
            events += folded.events as u64;
            bar.inc(state.index - shown);
            shown = state.index;
        })?;
        bar.inc(target.saturating_sub(shown));
        for (currency, total) in state.ledger.totals_by_currency() {
            sums.entry(currency).or_default().0 += total;
        }
        for (currency, outflow) in state.ledger.outflow_by_currency() {
            sums.entry(*currency).or_default().1 += outflow;
        }
        results.push(partition_json(
            partition,
            &state,
            from,
            blocks,
            events,
            request.balances,
        ));
    }
    bar.finish_and_clear();
    let totals: Vec<Value> = sums
        .iter()
        .map(|(currency, (balances, outflow))| {
            json!({
                "currency": currency.code(),
                "balances": format_minor(*balances, *currency),
                "in_flight": format_minor(*outflow, *currency),
            })
        })
        .collect();
    if out.is_json() {
        out.json_line(&json!({ "ok": true, "partitions": results, "totals": totals }));
        return Ok(());
    }
    for result in &results {
        print_partition(result);
    }
    println!("all replayed partitions:");
    for total in &totals {
        println!(
            "  {}  balances sum {}  in flight between partitions {}",
            total["currency"].as_str().unwrap_or_default(),
            total["balances"].as_str().unwrap_or_default(),
            total["in_flight"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}

/// The starting state for a replay of `partition` up to `target`.
fn start(
    db: &AuditedNode,
    partition: u32,
    from: From,
    target: u64,
) -> anyhow::Result<(State, Value)> {
    let start = match from {
        From::Genesis => Start::Genesis,
        From::Snapshot => Start::Snapshot,
        From::SnapshotAt(index) => Start::SnapshotAt(index),
    };
    let (state, snapshot) = db.start(partition, start, target)?;
    Ok((
        state,
        snapshot.map_or_else(|| json!("genesis"), |index| json!(index)),
    ))
}

fn partition_json(
    partition: u32,
    state: &State,
    from: Value,
    blocks: u64,
    events: u64,
    balances: bool,
) -> Value {
    let outflow = state.ledger.outflow_by_currency();
    let totals: Vec<Value> = state
        .ledger
        .totals_by_currency()
        .iter()
        .map(|(currency, total)| {
            json!({
                "currency": currency.code(),
                "balances": format_minor(*total, *currency),
                "outflow": format_minor(outflow.get(currency).copied().unwrap_or(0), *currency),
            })
        })
        .collect();
    let mut value = json!({
        "partition": partition,
        "from": from,
        "index": state.index,
        "blocks": blocks,
        "events": events,
        "accounts": state.ledger.accounts_count(),
        "transfers": state.ledger.transfers_count(),
        "state_digest": hex(&state.digest()),
        "chain_head": hex(&state.chain_head),
        "totals": totals,
    });
    if balances {
        value["balances"] = state
            .ledger
            .accounts()
            .map(|account| {
                json!({
                    "account_id": account.account_id,
                    "currency": account.currency.code(),
                    "balance": format_minor(account.balance_minor, account.currency),
                })
            })
            .collect();
    }
    value
}

fn print_partition(result: &Value) {
    println!(
        "partition {}: from {} to index {} ({} blocks, {} events applied), {} accounts, {} transfers",
        result["partition"],
        result["from"]
            .as_str()
            .map_or_else(|| format!("snapshot {}", result["from"]), str::to_owned),
        result["index"],
        result["blocks"],
        result["events"],
        result["accounts"],
        result["transfers"]
    );
    println!(
        "  state digest {}",
        result["state_digest"].as_str().unwrap_or_default()
    );
    println!(
        "  chain head   {}",
        result["chain_head"].as_str().unwrap_or_default()
    );
    for total in result["totals"].as_array().into_iter().flatten() {
        println!(
            "  {}  balances {}  outflow {}",
            total["currency"].as_str().unwrap_or_default(),
            total["balances"].as_str().unwrap_or_default(),
            total["outflow"].as_str().unwrap_or_default()
        );
    }
    for balance in result["balances"].as_array().into_iter().flatten() {
        println!(
            "    {} {} {}",
            balance["account_id"].as_str().unwrap_or_default(),
            balance["balance"].as_str().unwrap_or_default(),
            balance["currency"].as_str().unwrap_or_default()
        );
    }
}

/// `walletctl verify`: every partition's hash chain from genesis, conservation after every
/// entry, and every stored snapshot against the replayed state at its index. Returns whether
/// everything held.
pub fn verify(data_dir: &Path, partitions: &[u32], out: &Output) -> anyhow::Result<bool> {
    let (db, count) = open(data_dir)?;
    let partitions = selected(partitions, count)?;
    let mut total = 0;
    for &partition in &partitions {
        total += db.applied_index(partition)?;
    }
    let bar = progress(total, out.is_json());
    let mut all_ok = true;
    let mut results = Vec::new();
    for &partition in &partitions {
        bar.set_message(format!("partition {partition}"));
        let result = verify_partition(&db, partition, &bar)?;
        all_ok &= result["ok"].as_bool() == Some(true);
        results.push(result);
    }
    bar.finish_and_clear();
    print_verified(&results, all_ok, out);
    Ok(all_ok)
}

fn verify_partition(db: &AuditedNode, partition: u32, bar: &ProgressBar) -> anyhow::Result<Value> {
    let applied = db.applied_index(partition)?;
    let mut shown = 0;
    let verdict = db.verify(partition, |_, state| {
        bar.inc(state.index.min(applied).saturating_sub(shown));
        shown = state.index.min(applied);
    })?;
    Ok(match verdict {
        Err(broken) => json!({
            "partition": partition,
            "ok": false,
            "broken_index": broken.index,
            "problem": broken.problem,
            "index": broken.state_index,
        }),
        Ok(verified) => {
            let snapshots: Vec<Value> = verified
                .snapshots
                .iter()
                .map(|(index, digest)| json!({ "index": index, "state_digest": hex(digest) }))
                .collect();
            json!({
                "partition": partition,
                "ok": true,
                "index": verified.state.index.min(applied),
                "blocks": verified.blocks,
                "snapshots": snapshots,
                "state_digest": hex(&verified.state.digest()),
                "chain_head": hex(&verified.state.chain_head),
            })
        }
    })
}

/// Records the first entry after which a currency's balances and outflow do not sum to zero.
fn note_imbalance(first: &mut Option<(u64, String)>, index: u64, state: &State) {
    if first.is_none()
        && let Some(problem) = audit::conservation_problem(state)
    {
        *first = Some((index, problem));
    }
}

/// How [`follow`] ended.
pub(crate) enum Followed {
    /// A block or progress marker at or beyond the target arrived.
    Reached,
    /// The block handler asked to stop.
    Stopped,
    /// The stream ended before the target (a node's stream never ends by itself).
    Ended,
}

/// Streams `partition` from `node`, from index `from` (>= 1), handing each block with
/// events up to `target` to `on_block` (`Ok(false)`: stop; `Err((index, problem))`: the
/// block is refused). `Err` when the subscription cannot be opened; `Ok(Err)` when the node
/// ends the stream with an error or `on_block` refuses a block.
pub(crate) async fn follow(
    node: &LiveNode,
    partition: u32,
    from: u64,
    target: u64,
    mut on_block: impl FnMut(&proto::v1::SubscribeResponse) -> Result<bool, (u64, String)>,
) -> anyhow::Result<Result<Followed, (u64, String)>> {
    use proto::v1::SubscribeRequest;
    use proto::v1::event_log_service_client::EventLogServiceClient;
    let mut client = EventLogServiceClient::new(node.conn.clone())
        .max_decoding_message_size(STREAM_MESSAGE_BYTES_MAX);
    let mut stream = client
        .subscribe(SubscribeRequest {
            partition,
            from_index: from,
        })
        .await
        .with_context(|| format!("subscribing to partition {partition} of {}", node.endpoint))?
        .into_inner();
    let mut next = from;
    while let Some(response) = stream.message().await.transpose() {
        let response = match response {
            Ok(response) => response,
            Err(status) => {
                let problem = format!(
                    "the node ended the stream: {:?} {}",
                    status.code(),
                    status.message()
                );
                return Ok(Err((next, problem)));
            }
        };
        if response.index > target {
            return Ok(Ok(Followed::Reached));
        }
        if !response.events.is_empty() {
            match on_block(&response) {
                Ok(true) => {}
                Ok(false) => return Ok(Ok(Followed::Stopped)),
                Err(refused) => return Ok(Err(refused)),
            }
        }
        if response.index >= target {
            return Ok(Ok(Followed::Reached));
        }
        next = response.index + 1;
    }
    Ok(Ok(Followed::Ended))
}

/// Largest message of a node's event stream walletctl accepts.
const STREAM_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// The stream of one partition from a live node, folded like `AuditedNode::replay` does a data
/// directory (`audit::apply_streamed`: each block's events must give the chain hash the node
/// sent, then are applied with the same `ledger::evolve`).
async fn fold_live(
    node: &LiveNode,
    partition: u32,
    until: Until,
    mut each: impl FnMut(Folded, &State),
) -> anyhow::Result<Result<State, (u64, String, State)>> {
    let (target, time_limit) = match until {
        Until::Index(index) => (index, None),
        Until::Time {
            timestamp_ms,
            index,
        } => (index, Some(timestamp_ms)),
    };
    let mut state = State::genesis();
    if target == 0 {
        return Ok(Ok(state));
    }
    let followed = follow(node, partition, 1, target, |response| {
        if time_limit.is_some_and(|limit| response.timestamp_ms > limit) {
            return Ok(false);
        }
        let folded = audit::apply_streamed(&mut state, response)
            .map_err(|broken| (broken.index, broken.problem))?;
        each(folded, &state);
        Ok(true)
    })
    .await?;
    match followed {
        Err((index, problem)) => Ok(Err((index, problem, state))),
        Ok(Followed::Reached) => {
            state.index = target;
            Ok(Ok(state))
        }
        Ok(Followed::Stopped | Followed::Ended) => Ok(Ok(state)),
    }
}

/// A live node to replay or verify: its address as given (for messages) and a channel to it
/// carrying the TLS settings and token of the command line.
pub struct LiveNode {
    pub endpoint: String,
    pub conn: wallet_client::Conn,
}

/// Applied index per partition as the live node reports it.
pub(crate) async fn live_applied(node: &LiveNode) -> anyhow::Result<Vec<u64>> {
    use proto::v1::GetClusterStatusRequest;
    use proto::v1::cluster_service_client::ClusterServiceClient;
    let status = ClusterServiceClient::new(node.conn.clone())
        .get_cluster_status(GetClusterStatusRequest {
            include_state_digest: false,
        })
        .await
        .with_context(|| format!("cluster status from {}", node.endpoint))?
        .into_inner();
    Ok(status
        .partitions
        .iter()
        .map(|partition| partition.applied_index)
        .collect())
}

/// `walletctl replay --endpoint`: the same replay from a live node's event stream.
pub async fn replay_live(
    node: &LiveNode,
    request: &ReplayRequest,
    out: &Output,
) -> anyhow::Result<()> {
    if request.from != From::Genesis {
        bail!(
            "a live event stream replays from genesis only (snapshots are read from data directories)"
        );
    }
    let applied = live_applied(node).await?;
    let partitions = selected(&request.partitions, applied.len() as u32)?;
    let bar = progress(
        partitions.iter().map(|&p| applied[p as usize]).sum(),
        out.is_json(),
    );
    let mut results = Vec::new();
    for &partition in &partitions {
        bar.set_message(format!("partition {partition}"));
        let applied = applied[partition as usize];
        let target = request.to_index.map_or(applied, |to| to.min(applied));
        let until = match request.to_time_ms {
            Some(timestamp_ms) => Until::Time {
                timestamp_ms,
                index: target,
            },
            None => Until::Index(target),
        };
        let (mut blocks, mut events, mut shown) = (0u64, 0u64, 0u64);
        let state = fold_live(node, partition, until, |folded, state| {
            blocks += 1;
            events += folded.events as u64;
            bar.inc(state.index - shown);
            shown = state.index;
        })
        .await?
        .map_err(|(index, problem, _)| {
            anyhow::anyhow!("partition {partition}, index {index}: {problem}")
        })?;
        results.push(partition_json(
            partition,
            &state,
            json!("genesis"),
            blocks,
            events,
            request.balances,
        ));
    }
    bar.finish_and_clear();
    if out.is_json() {
        out.json_line(&json!({ "ok": true, "partitions": results }));
    } else {
        for result in &results {
            print_partition(result);
        }
    }
    Ok(())
}

/// `walletctl verify --endpoint`: chain and conservation over a live node's event stream.
pub async fn verify_live(
    node: &LiveNode,
    partitions: &[u32],
    out: &Output,
) -> anyhow::Result<bool> {
    let applied = live_applied(node).await?;
    let partitions = selected(partitions, applied.len() as u32)?;
    let mut results = Vec::new();
    let mut all_ok = true;
    for &partition in &partitions {
        let mut imbalance: Option<(u64, String)> = None;
        let mut blocks = 0u64;
        let folded = fold_live(
            node,
            partition,
            Until::Index(applied[partition as usize]),
            |block, state| {
                blocks += 1;
                note_imbalance(&mut imbalance, block.index, state);
            },
        )
        .await?;
        let result = match (folded, imbalance) {
            (Err((index, problem, state)), _) | (Ok(state), Some((index, problem))) => json!({
                "partition": partition, "ok": false, "broken_index": index,
                "problem": problem, "index": state.index,
            }),
            (Ok(state), None) => json!({
                "partition": partition, "ok": true, "index": state.index, "blocks": blocks,
                "snapshots": [], "state_digest": hex(&state.digest()),
                "chain_head": hex(&state.chain_head),
            }),
        };
        all_ok &= result["ok"] == true;
        results.push(result);
    }
    print_verified(&results, all_ok, out);
    Ok(all_ok)
}

pub(crate) fn print_verified(results: &[Value], all_ok: bool, out: &Output) {
    if out.is_json() {
        out.json_line(&json!({ "ok": all_ok, "partitions": results }));
        return;
    }
    for result in results {
        match result["problem"].as_str() {
            None => println!(
                "partition {}: ok to index {} ({} blocks, {} snapshots checked), state digest {}",
                result["partition"],
                result["index"],
                result["blocks"],
                result["snapshots"].as_array().map_or(0, Vec::len),
                result["state_digest"].as_str().unwrap_or_default()
            ),
            Some(problem) => println!(
                "partition {}: BROKEN at index {}: {problem}",
                result["partition"], result["broken_index"]
            ),
        }
    }
    println!(
        "{}",
        if all_ok {
            "verify: ok"
        } else {
            "verify: FAILED"
        }
    );
}
