//! Rendering of results and errors: short human lines by default, one JSON object per
//! result with `--json` so scripts never have to parse the human form.

use serde_json::{Value, json};
use wallet_client::pb::{
    Account, AccountStatus, GetAccountResponse, GetClusterStatusResponse, HoldResponse, Transfer,
    TransferResponse, TransferStatus,
};
use wallet_client::{Error, Uuid, code_name};

/// How many hex characters of a state digest the status table shows: enough to spot a
/// divergent replica at a glance.
const DIGEST_PREFIX_CHARS: usize = 16;

/// Where and how results are written.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    json: bool,
}

impl Output {
    /// Human output unless `json`.
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    /// Whether `--json` was given.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Prints one JSON object as a single line on stdout.
    pub fn json_line(&self, value: &Value) {
        println!("{value}");
    }

    /// A newly opened (or already existing, identical) account.
    pub fn account_opened(&self, account: &Account) {
        if self.json {
            self.json_line(&json!({ "ok": true, "account": account_json(account) }));
        } else {
            println!("ok: account {}", account_line(account));
        }
    }

    /// An account after a lifecycle change.
    pub fn account_changed(&self, account: &Account) {
        if self.json {
            self.json_line(&json!({ "ok": true, "account": account_json(account) }));
        } else {
            println!("ok: account {}", account_line(account));
        }
    }

    /// An account read back with the log position it reflects.
    pub fn account(&self, response: &GetAccountResponse) {
        let Some(account) = &response.account else {
            return;
        };
        if self.json {
            self.json_line(&json!({
                "ok": true,
                "account": account_json(account),
                "position": response.position,
            }));
        } else {
            println!("{}  position {}", account_line(account), response.position);
        }
    }

    /// A transfer that is final.
    pub fn transfer_done(&self, response: &TransferResponse) {
        if self.json {
            self.json_line(&json!({
                "ok": true,
                "transaction_id": response.transaction_id,
                "status": response.status,
                "consistency_token": response.consistency_token,
            }));
        } else {
            println!(
                "ok: transfer {}  {}  token={}",
                response.transaction_id, response.status, response.consistency_token
            );
        }
    }

    /// A hold after a step (authorize, capture, void).
    pub fn hold(&self, response: &HoldResponse) {
        let Some(transfer) = &response.transfer else {
            return;
        };
        let status = transfer_status_name(transfer.status);
        let hold = transfer.hold.clone().unwrap_or_default();
        let expires_at = hold
            .expires_at
            .map(|at| at.seconds * 1_000 + i64::from(at.nanos / 1_000_000))
            .unwrap_or_default();
        if self.json {
            self.json_line(&json!({
                "ok": true,
                "replayed": response.replayed,
                "hold": {
                    "transaction_id": transfer.transaction_id,
                    "from_account": transfer.from_account,
                    "to_account": transfer.to_account,
                    "amount": transfer.amount,
                    "currency": transfer.currency,
                    "status": status,
                    "reject_reason": transfer.reject_reason,
                    "expires_at_unix_ms": expires_at,
                    "captured_amount": hold.captured_amount,
                    "reference": transfer.reference,
                    "metadata": transfer.metadata,
                }
            }));
        } else {
            let captured = if hold.captured_amount.is_empty() {
                String::new()
            } else {
                format!("  captured {}", hold.captured_amount)
            };
            println!(
                "ok: hold {}  {}  {} -> {}  {} {}{captured}  expires_at_unix_ms={expires_at}{}",
                transfer.transaction_id,
                status,
                transfer.from_account,
                transfer.to_account,
                transfer.amount,
                transfer.currency,
                if response.replayed {
                    "  (replayed)"
                } else {
                    ""
                },
            );
        }
    }

    /// A transfer read back by id.
    pub fn transfer(&self, transfer: &Transfer) {
        let status = transfer_status_name(transfer.status);
        if self.json {
            self.json_line(&json!({
                "ok": true,
                "transfer": {
                    "transaction_id": transfer.transaction_id,
                    "from_account": transfer.from_account,
                    "to_account": transfer.to_account,
                    "amount": transfer.amount,
                    "currency": transfer.currency,
                    "status": status,
                    "reject_reason": transfer.reject_reason,
                    "committed_at_unix_ms": transfer.committed_at_unix_ms,
                    "consistency_token": transfer.consistency_token,
                    "reference": transfer.reference,
                    "metadata": transfer.metadata,
                    "legs": transfer.legs.iter().map(|leg| json!({
                        "from_account": leg.from_account,
                        "to_account": leg.to_account,
                        "amount": leg.amount,
                    })).collect::<Vec<_>>(),
                    "rejected_leg": transfer.rejected_leg,
                }
            }));
        } else {
            let outcome = if transfer.reject_reason.is_empty() {
                status.to_owned()
            } else {
                format!("{status} ({})", transfer.reject_reason)
            };
            println!(
                "transfer {}  {}  {} -> {}  {} {}  committed_at_unix_ms={}  token={}",
                transfer.transaction_id,
                outcome,
                transfer.from_account,
                transfer.to_account,
                transfer.amount,
                transfer.currency,
                transfer.committed_at_unix_ms,
                transfer.consistency_token
            );
            for (index, leg) in transfer.legs.iter().enumerate() {
                let refused = if transfer.rejected_leg == Some(index as u32) {
                    "  (refused)"
                } else {
                    ""
                };
                println!(
                    "  leg {index}  {} -> {}  {} {}{refused}",
                    leg.from_account, leg.to_account, leg.amount, leg.currency
                );
            }
            if !transfer.reference.is_empty() {
                println!("  reference {}", transfer.reference);
            }
            for (key, value) in &transfer.metadata {
                println!("  metadata {key}={value}");
            }
        }
    }

    /// A completed replica move: the partition's voters now.
    pub fn replica_moved(&self, partition: u32, voters: &[u64]) {
        if self.json {
            self.json_line(&json!({"ok": true, "partition": partition, "replica_ids": voters}));
        } else {
            println!("ok: partition {partition} is on nodes {voters:?}");
        }
    }

    /// One move of a drain or a rebalance, as it completes (text only: the JSON answer lists
    /// them all).
    pub fn replica_left(&self, step: &placement::Move) {
        if !self.json {
            println!(
                "partition {}: moved from node {} to node {}",
                step.partition, step.from, step.to
            );
        }
    }

    /// The end of a drain (of `drained`: it holds no replica) or a rebalance.
    pub fn replicas_moved(&self, drained: Option<u64>, moves: &[placement::Move]) {
        if self.json {
            let moves: Vec<_> = moves
                .iter()
                .map(|step| json!({"partition": step.partition, "from": step.from, "to": step.to}))
                .collect();
            self.json_line(&json!({"ok": true, "node_id": drained, "moves": moves}));
        } else if let Some(node) = drained {
            println!(
                "ok: node {node} holds no replica ({} moved by this run)",
                moves.len()
            );
        } else {
            println!("ok: replicas even ({} moved by this run)", moves.len());
        }
    }

    /// Every node's answer: a table row per partition, or the node marked unreachable.
    pub fn cluster_status(&self, statuses: &[(String, Result<GetClusterStatusResponse, Error>)]) {
        if self.json {
            for (endpoint, result) in statuses {
                let value = match result {
                    Ok(status) => json!({
                        "ok": true,
                        "endpoint": endpoint,
                        "node_id": status.node_id,
                        "nodes": status.nodes.iter().map(|n| json!({
                            "node_id": n.node_id,
                            "address": n.address,
                        })).collect::<Vec<_>>(),
                        "partitions": status.partitions.iter().map(|p| json!({
                            "partition": p.partition,
                            "role": p.role,
                            "leader_id": p.leader_id,
                            "term": p.term,
                            "commit_index": p.commit_index,
                            "applied_index": p.applied_index,
                            "snapshot_index": p.snapshot_index,
                            "log_first_index": p.log_first_index,
                            "replica_ids": p.replica_ids,
                            "learner_ids": p.learner_ids,
                            "preferred_leader_id": p.preferred_leader_id,
                            "in_flight_transfers": p.in_flight_transfers,
                            "state_digest": p.state_digest,
                        })).collect::<Vec<_>>(),
                    }),
                    Err(error) => json!({
                        "ok": false,
                        "endpoint": endpoint,
                        "error": error_json(error),
                    }),
                };
                self.json_line(&value);
            }
            return;
        }
        let header = [
            "NODE",
            "PARTITION",
            "ROLE",
            "LEADER",
            "PREFERRED",
            "TERM",
            "COMMIT",
            "APPLIED",
            "SNAPSHOT",
            "LOG_FROM",
            "DIGEST",
        ];
        let mut rows: Vec<Vec<String>> = Vec::new();
        for (endpoint, result) in statuses {
            match result {
                Ok(status) if status.partitions.is_empty() => {
                    rows.push(vec![
                        format!("{} {endpoint}", status.node_id),
                        "-".into(),
                        "(no partitions)".into(),
                    ]);
                }
                Ok(status) => {
                    for p in &status.partitions {
                        rows.push(vec![
                            format!("{} {endpoint}", status.node_id),
                            p.partition.to_string(),
                            p.role.clone(),
                            if p.leader_id == 0 {
                                "-".into()
                            } else {
                                p.leader_id.to_string()
                            },
                            p.preferred_leader_id.to_string(),
                            p.term.to_string(),
                            p.commit_index.to_string(),
                            p.applied_index.to_string(),
                            p.snapshot_index.to_string(),
                            p.log_first_index.to_string(),
                            p.state_digest.chars().take(DIGEST_PREFIX_CHARS).collect(),
                        ]);
                    }
                }
                Err(error) => {
                    let what = if error.is_definite() {
                        "error"
                    } else {
                        "unreachable"
                    };
                    let mut detail = format!("{} {}", code_name(error.code()), error.reason());
                    if !error.message().is_empty() {
                        detail = format!("{detail}: {}", error.message());
                    }
                    rows.push(vec![
                        format!("? {endpoint}"),
                        "-".into(),
                        format!("{what} ({detail})"),
                    ]);
                }
            }
        }
        print_table(&header, &rows);
    }

    /// A ledger error: code, reason, message, and for transfers the id to retry with.
    pub fn wallet_error(&self, error: &Error, transaction_id: Option<Uuid>) {
        if self.json {
            let mut value = json!({ "ok": false, "error": error_json(error) });
            if let Some(id) = transaction_id {
                value["transaction_id"] = json!(id.to_string());
            }
            eprintln!("{value}");
            return;
        }
        eprintln!(
            "error: {} {}: {}",
            code_name(error.code()),
            error.reason(),
            error.message()
        );
        if let Some(field) = error.field() {
            eprintln!("  field: {field}");
        }
        if let Some(leg) = error.leg() {
            eprintln!("  leg: {leg}");
        }
        if let Some(id) = transaction_id {
            eprintln!("  transaction id: {id}");
        }
        if !error.is_definite() {
            match transaction_id {
                Some(id) => eprintln!(
                    "  outcome unknown: repeat the command with --id {id} (it cannot apply twice), \
                     or check with `walletctl transfer get {id}`"
                ),
                None => eprintln!("  outcome unknown: the command is safe to repeat"),
            }
        }
    }

    /// Any other failure (bad arguments, local I/O, a node that would not start).
    pub fn other_error(&self, error: &anyhow::Error) {
        if self.json {
            eprintln!(
                "{}",
                json!({
                    "ok": false,
                    "error": { "code": "LOCAL", "reason": "LOCAL_ERROR", "message": format!("{error:#}") }
                })
            );
        } else {
            eprintln!("error: {error:#}");
        }
    }
}

fn account_json(account: &Account) -> Value {
    json!({
        "account_id": account.account_id,
        "currency": account.currency,
        "allow_negative_balance": account.allow_negative_balance,
        "balance": account.balance,
        "balance_minor": account.balance_minor,
        "held": account.held,
        "available": account.available,
        "status": account_status_name(account.status),
        "overdraft_limit": account.overdraft_limit,
        "reference": account.reference,
        "metadata": account.metadata,
    })
}

fn account_status_name(status: i32) -> &'static str {
    match AccountStatus::try_from(status) {
        Ok(AccountStatus::Active) => "active",
        Ok(AccountStatus::Frozen) => "frozen",
        Ok(AccountStatus::Closed) => "closed",
        _ => "unknown",
    }
}

fn account_line(account: &Account) -> String {
    let mut line = format!(
        "{}  {}  balance {}",
        account.account_id, account.currency, account.balance
    );
    if !account.held.is_empty() {
        line += &format!("  held {}  available {}", account.held, account.available);
    }
    line += &format!("  {}", account_status_name(account.status));
    if !account.overdraft_limit.is_empty() {
        line += &format!("  overdraft limit {}", account.overdraft_limit);
    }
    line += &format!(
        "  (allow_negative_balance={})",
        account.allow_negative_balance
    );
    if !account.reference.is_empty() {
        line += &format!("  reference {}", account.reference);
    }
    for (key, value) in &account.metadata {
        line += &format!("  metadata {key}={value}");
    }
    line
}

fn error_json(error: &Error) -> Value {
    json!({
        "code": code_name(error.code()),
        "code_number": i32::from(error.code()),
        "reason": error.reason(),
        "message": error.message(),
        "field": error.field(),
        "leg": error.leg(),
        "definite": error.is_definite(),
    })
}

fn transfer_status_name(status: i32) -> &'static str {
    match TransferStatus::try_from(status) {
        Ok(TransferStatus::Completed) => "completed",
        Ok(TransferStatus::Rejected) => "rejected",
        Ok(TransferStatus::InFlight) => "in_flight",
        Ok(TransferStatus::Pending) => "pending",
        Ok(TransferStatus::Voided) => "voided",
        Ok(TransferStatus::Expired) => "expired",
        Ok(TransferStatus::Unspecified) | Err(_) => "unknown",
    }
}

/// Left-aligned columns sized to their widest cell; short rows (unreachable nodes) let
/// their last cell run on.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            widths[i] = widths[i].max(cell.chars().count());
        }
        if row.len() == header.len()
            && let Some(last) = row.last()
        {
            let i = row.len() - 1;
            widths[i] = widths[i].max(last.chars().count());
        }
    }
    let render = |cells: &mut dyn Iterator<Item = &str>| {
        let line: Vec<String> = cells
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = widths[i]))
            .collect();
        println!("{}", line.join("  ").trim_end());
    };
    render(&mut header.iter().copied());
    for row in rows {
        render(&mut row.iter().map(String::as_str));
    }
}
