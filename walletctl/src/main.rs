//! `walletctl`: the wallet ledger's command-line client, and a local three-node cluster
//! launcher (`walletctl dev`) for development.
//!
//! Why one file of this length: the clap command tree and its dispatch, one short arm per
//! command; the commands' bodies live in the other modules.

mod audit;
mod backup;
mod cut;
mod dev;
mod health;
mod node;
mod output;
mod partition;
mod read;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use wallet_client::{
    ClientConfig, DEFAULT_READ_ENDPOINT, QueryClient, TlsConfig, Transfer, Uuid,
    WALLET_SERVICE_NAME, WalletClient, new_transaction_id,
};

use crate::output::Output;

/// The dev cluster's write nodes, which is also what a developer usually talks to.
const DEFAULT_ENDPOINTS: &str = "127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053";

/// The health service name the read nodes report readiness under.
const READ_SERVICE_NAME: &str = "wallet.v1.QueryService";

/// Exit status for a definite failure (rejected request, bad input, local error).
const EXIT_FAILURE: u8 = 1;

/// Exit status when the outcome is unknown: the same command (same `--id`) must be retried.
const EXIT_INDEFINITE: u8 = 3;

/// Upper bound on `restore --nodes` (raft groups of every node in every partition).
const NODES_MAX: u64 = 15;

/// Upper bound on `dev --partitions`: what a cluster may have, checked before any node starts.
const PARTITIONS_MAX: u32 = placement::PARTITIONS_MAX;

const AFTER_HELP: &str = "\
Exit status: 0 success, 1 definite failure (request rejected, nothing applied),
2 usage error, 3 outcome unknown (retry the same command; for transfers keep the same --id).";

/// Command-line client for the wallet ledger.
#[derive(Debug, Parser)]
#[command(name = "walletctl", version, after_help = AFTER_HELP)]
struct Cli {
    /// Write nodes to talk to, comma-separated host:port or http://host:port.
    #[arg(
        long,
        global = true,
        env = "WALLET_ENDPOINTS",
        value_delimiter = ',',
        default_value = DEFAULT_ENDPOINTS
    )]
    endpoints: Vec<String>,

    /// Read node for `balance`, `watch` and `history` (host:port or http://host:port).
    #[arg(long, global = true, env = "WALLET_READ_ENDPOINT", default_value = DEFAULT_READ_ENDPOINT)]
    read_endpoint: String,

    /// Machine-readable output: one JSON object per result (errors as JSON on stderr).
    #[arg(long, global = true)]
    json: bool,

    #[command(flatten)]
    access: AccessArgs,

    #[command(subcommand)]
    command: Command,
}

/// How to reach secured nodes: TLS and a bearer token.
#[derive(Debug, Args)]
struct AccessArgs {
    /// PEM CA of the nodes' certificates: connect over TLS (host:port then means https://).
    #[arg(long, global = true, env = "WALLET_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// PEM client certificate, for nodes that require one (mTLS).
    #[arg(long, global = true, env = "WALLET_CLIENT_CERT", requires_all = ["tls_key", "tls_ca"])]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, global = true, env = "WALLET_CLIENT_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Name to verify in the nodes' certificates instead of the host dialled (for example a
    /// probe dialling 127.0.0.1 inside a pod whose certificate names the service).
    #[arg(
        long,
        global = true,
        env = "WALLET_TLS_SERVER_NAME",
        requires = "tls_ca"
    )]
    tls_server_name: Option<String>,
    /// Bearer token for nodes that run with a tokens file. Prefer the environment variable:
    /// a flag shows up in the process list.
    #[arg(long, global = true, env = "WALLET_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl AccessArgs {
    fn tls(&self) -> Result<Option<TlsConfig>, wallet_client::Error> {
        let Some(ca) = &self.tls_ca else {
            return Ok(None);
        };
        let mut tls = TlsConfig::from_ca_file(ca)?;
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            tls = tls.with_client_cert_files(cert, key)?;
        }
        tls.domain.clone_from(&self.tls_server_name);
        Ok(Some(tls))
    }

    /// A node for `replay`/`verify --endpoint`, reached with these settings.
    fn live_node(&self, endpoint: String) -> Result<audit::LiveNode, wallet_client::Error> {
        let conn =
            wallet_client::node_channel(&endpoint, self.tls()?.as_ref(), self.token.as_deref())?;
        Ok(audit::LiveNode { endpoint, conn })
    }

    /// Every endpoint, reached with these settings (`partition move`, `node drain`).
    fn reach(&self, endpoints: Vec<String>) -> Result<partition::Reach, wallet_client::Error> {
        Ok(partition::Reach {
            endpoints,
            tls: self.tls()?,
            token: self.token.clone(),
        })
    }

    fn query(&self, endpoint: String) -> Result<QueryClient, wallet_client::Error> {
        QueryClient::connect_with([endpoint], self.tls()?.as_ref(), self.token.as_deref())
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Open or read accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Move money between two accounts, or read a transfer with `transfer get ID`.
    Transfer(TransferArgs),
    /// Holds: reserve money now (`authorize`), move it or part of it later (`capture`), or
    /// release it (`void`).
    #[command(subcommand)]
    Hold(HoldCommand),
    /// Inspect the cluster.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Move partitions' replicas between write nodes.
    #[command(subcommand)]
    Partition(PartitionCommand),
    /// Empty a write node of its replicas.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Run a local three-node write cluster and a read node until Ctrl-C (plain text, no
    /// tokens, loopback only).
    Dev(DevArgs),
    /// Write a development CA and certificates (rcgen, ECDSA P-256) for TLS and peer mTLS:
    /// ca.crt, node.crt/node.key (every node's server and peer certificate), client.crt/key,
    /// and with --read-host read.crt/read.key (the read nodes' own, naming no peer).
    DevCerts {
        /// Directory to write into (created if missing; existing files are replaced).
        #[arg(long, default_value = "./wallet-certs")]
        out: PathBuf,
        /// Names the nodes are dialled by (DNS names or IP addresses); repeat the flag.
        #[arg(long = "host", default_values = ["localhost", "127.0.0.1"])]
        hosts: Vec<String>,
        /// Also write read.crt/read.key, of the same CA, valid for these names only (the read
        /// nodes' Service): read nodes then hold no certificate the write nodes accept as a
        /// peer's. Repeat the flag.
        #[arg(long = "read-host")]
        read_hosts: Vec<String>,
    },
    /// Make a random bearer token and print it with its tokens-file entry (the node keeps
    /// only the SHA-256 hash). The token is shown once: store it in your secret manager.
    Token {
        /// A name for logs and errors (not secret).
        #[arg(long)]
        name: String,
        /// Scopes: transfer, issue, read, admin, replicate (comma-separated or repeated).
        /// `issue` debits accounts opened with allow_negative_balance (mints money).
        #[arg(long = "scopes", value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// Bind the token to accounts whose id starts with this prefix (repeat the flag for
        /// several): it then debits, opens and reads only those accounts. Unbound by default.
        #[arg(long = "account-prefix")]
        account_prefixes: Vec<String>,
    },
    /// Ask every write node (or with --read the read node) whether it is SERVING, as a
    /// Kubernetes gRPC probe does. Exit status 0 only if all are.
    Health {
        /// Check the read node (--read-endpoint) instead of the write nodes (--endpoints).
        #[arg(long)]
        read: bool,
        /// Health service name; default: the node's API service (its readiness).
        #[arg(long)]
        service: Option<String>,
    },
    /// An account's balance from the read node; with --consistency-token, once it reflects
    /// that write.
    Balance {
        /// Account id.
        account: String,
        /// Consistency token of a transfer (read-your-writes).
        #[arg(long, visible_alias = "after")]
        consistency_token: Option<String>,
    },
    /// Print every balance change of the accounts as the read node pushes it, until Ctrl-C.
    Watch {
        /// Account ids.
        #[arg(required = true)]
        accounts: Vec<String>,
    },
    /// Rebuild partitions from a write node's data directory (offline, read-only) and print
    /// their state digest, totals and optionally every balance.
    Replay(ReplayArgs),
    /// Check a write node's data directory: the hash chain of every partition's event log,
    /// conservation after every entry, every stored snapshot. Exit status 1 if anything fails.
    Verify {
        /// The node's data directory (read-only; the node may be running).
        #[arg(
            long,
            required_unless_present_any = ["endpoint", "backup"],
            conflicts_with_all = ["endpoint", "backup"]
        )]
        data_dir: Option<PathBuf>,
        /// Or a live write node (host:port), whose event stream is checked instead.
        #[arg(long, conflicts_with = "backup")]
        endpoint: Option<String>,
        /// Or a backup directory (`walletctl backup`), checked offline: every chain link,
        /// conservation after every block, each partition's state against the manifest.
        #[arg(long, conflicts_with = "partitions")]
        backup: Option<PathBuf>,
        /// Only these partitions (repeat the flag); all when absent.
        #[arg(long = "partition")]
        partitions: Vec<u32>,
    },
    /// Back up a running cluster without stopping writes: every partition's event log (with
    /// its hash chain) from genesis to the highest applied index a node reports at the
    /// start, streamed from any write node (--endpoints), into a new directory with a
    /// manifest. The directory appears only once complete.
    Backup {
        /// The backup directory to create (it must not exist).
        #[arg(long, required_unless_present = "under", conflicts_with = "under")]
        out: Option<PathBuf>,
        /// Or a directory to create the backup in, as `backup-<UTC time>` (a scheduled
        /// backup's volume).
        #[arg(long)]
        under: Option<PathBuf>,
        /// With --under: then delete all but the newest KEEP complete backups there (and any
        /// unfinished one a stopped run left).
        #[arg(long, requires = "under", value_parser = clap::value_parser!(u64).range(1..))]
        keep: Option<u64>,
        /// Only these partitions (repeat the flag); all when absent. A partial backup
        /// verifies but cannot be restored.
        #[arg(long = "partition")]
        partitions: Vec<u32>,
    },
    /// Build the data directories of a new cluster from a backup (offline), each starting
    /// at the backup's positions: OUT/node-1 to OUT/node-N (--out, --nodes), or one
    /// directory per node (--node-dir, e.g. each write pod's volume). Start write node i with
    /// --node-id i, the backup's partition count and its directory as --data-dir.
    Restore {
        /// The backup directory (`walletctl backup`).
        #[arg(long)]
        backup: PathBuf,
        /// Where to write the nodes' directories (absent or empty).
        #[arg(long, requires = "nodes", conflicts_with = "node_dirs")]
        out: Option<PathBuf>,
        /// Write nodes in the new cluster (ids 1 to N), with --out.
        #[arg(long, requires = "out", value_parser = clap::value_parser!(u64).range(1..=NODES_MAX))]
        nodes: Option<u64>,
        /// Or ID=DIR for every node of the new cluster (repeat the flag): node ID's data
        /// directory, absent or empty. The cluster's voters are exactly these ids.
        #[arg(long = "node-dir", value_parser = parse_node_dir, required_unless_present = "out")]
        node_dirs: Vec<(u64, PathBuf)>,
    },
    /// An account's balance changes, newest first, one page at a time.
    History {
        /// Account id.
        account: String,
        /// Entries per page (0 = the server's default).
        #[arg(long, default_value_t = 20)]
        page_size: u32,
        /// `next_page_token` of the previous page.
        #[arg(long)]
        page_token: Option<String>,
    },
}

#[derive(Debug, Args)]
struct ReplayArgs {
    /// The node's data directory (read-only; the node may be running).
    #[arg(
        long,
        required_unless_present = "endpoint",
        conflicts_with = "endpoint"
    )]
    data_dir: Option<PathBuf>,
    /// Or a live write node (host:port): replay its event stream (from genesis).
    #[arg(long)]
    endpoint: Option<String>,
    /// Only these partitions (repeat the flag); all when absent.
    #[arg(long = "partition")]
    partitions: Vec<u32>,
    /// Start from `genesis`, the newest `snapshot` at or below the target, or `snapshot:INDEX`.
    #[arg(long, default_value = "genesis")]
    from: audit::From,
    /// Stop after this log index (default: the last applied index).
    #[arg(long)]
    to_index: Option<u64>,
    /// Stop before the first entry committed after this time: milliseconds since the Unix
    /// epoch or RFC 3339 (e.g. 2026-11-21T09:30:00Z).
    #[arg(long, value_parser = audit::parse_time)]
    to_time: Option<u64>,
    /// Also print every account's balance.
    #[arg(long)]
    balances: bool,
}

#[derive(Debug, Subcommand)]
enum AccountCommand {
    /// Open an account (idempotent when the parameters are the same).
    Open {
        /// Account id: 1 to 256 bytes of UTF-8, no whitespace.
        id: String,
        /// ISO 4217 currency code, e.g. USD.
        #[arg(long)]
        currency: String,
        /// Let the balance go below zero (issuer and settlement accounts).
        #[arg(long)]
        allow_negative_balance: bool,
        /// Set once, at opening; an open of an existing account must repeat them.
        #[command(flatten)]
        annotations: Annotations,
    },
    /// Read an account's balance, linearizably through the leader.
    Get {
        /// Account id.
        id: String,
    },
    /// Freeze an account: it neither sends nor receives until unfrozen (admin scope).
    Freeze {
        /// Account id.
        id: String,
    },
    /// Unfreeze a frozen account (admin scope).
    Unfreeze {
        /// Account id.
        id: String,
    },
    /// Close an account for good; only at a zero balance, with no pending hold and no
    /// transfer in flight (admin scope).
    Close {
        /// Account id.
        id: String,
    },
    /// Set how far below zero an ordinary account may go (admin scope).
    SetOverdraft {
        /// Account id.
        id: String,
        /// The limit in major units, e.g. 250.00 ("0" for none).
        #[arg(long)]
        limit: String,
        /// ISO 4217 code of the account's currency.
        #[arg(long)]
        currency: String,
    },
}

#[derive(Debug, Subcommand)]
enum HoldCommand {
    /// Reserve `--amount` on `--from` for a later capture to `--to`, until `--timeout` after
    /// the authorization (1 ms to 30 days).
    Authorize {
        /// Account the amount is reserved on.
        #[arg(long)]
        from: String,
        /// Account a capture credits.
        #[arg(long)]
        to: String,
        /// Amount in major units, e.g. 12.34.
        #[arg(long)]
        amount: String,
        /// ISO 4217 currency code of both accounts.
        #[arg(long)]
        currency: String,
        /// How long the hold lasts, e.g. 15m, 2h, 7days.
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        /// The hold's transaction id (UUID), for idempotent retries; a new one when absent.
        #[arg(long)]
        id: Option<Uuid>,
        #[command(flatten)]
        annotations: Annotations,
    },
    /// Move the held amount (or `--amount`, at most it) to the hold's `to` and release the rest.
    Capture {
        /// The hold's transaction id.
        id: Uuid,
        /// The hold's `from` account.
        #[arg(long)]
        from: String,
        /// Amount to capture in major units (default: all of it).
        #[arg(long)]
        amount: Option<String>,
    },
    /// Release the hold.
    Void {
        /// The hold's transaction id.
        id: Uuid,
        /// The hold's `from` account.
        #[arg(long)]
        from: String,
    },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct TransferArgs {
    #[command(subcommand)]
    command: Option<TransferCommand>,
    #[command(flatten)]
    new: NewTransfer,
}

#[derive(Debug, Args)]
struct NewTransfer {
    /// Account to debit.
    #[arg(long, required = true)]
    from: Option<String>,
    /// Account to credit.
    #[arg(long, required = true)]
    to: Option<String>,
    /// Amount in major units, e.g. 12.34.
    #[arg(long, required = true)]
    amount: Option<String>,
    /// ISO 4217 currency code of both accounts.
    #[arg(long, required = true)]
    currency: Option<String>,
    /// Transaction id (UUID) for idempotent retries; a new one is generated when absent.
    #[arg(long)]
    id: Option<Uuid>,
    #[command(flatten)]
    annotations: Annotations,
}

/// A transfer's or an account's optional reference and metadata (limits: README "Metadata and
/// references").
#[derive(Debug, Args, Default)]
struct Annotations {
    /// Your reference, e.g. an order or customer number.
    #[arg(long, default_value = "")]
    reference: String,
    /// A metadata entry, KEY=VALUE; repeat for several.
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = metadata_entry)]
    metadata: Vec<(String, String)>,
}

fn metadata_entry(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))?;
    Ok((key.to_owned(), value.to_owned()))
}

#[derive(Debug, Subcommand)]
enum TransferCommand {
    /// Read a transfer's outcome by its transaction id.
    Get {
        /// Transaction id (UUID).
        id: Uuid,
    },
    /// Move money along every leg or along none (a multi-leg transfer), e.g.
    /// `--leg alice bob 10.00 --leg alice carol 5.00 --currency USD`.
    Legs {
        /// A leg: the account to debit, the account to credit, the amount in major units;
        /// repeat for each leg (1 to 64, in order).
        #[arg(long = "leg", num_args = 3, value_names = ["FROM", "TO", "AMOUNT"], required = true)]
        legs: Vec<String>,
        /// ISO 4217 currency code of every leg.
        #[arg(long)]
        currency: String,
        /// Transaction id (UUID) for idempotent retries; a new one is generated when absent.
        #[arg(long)]
        id: Option<Uuid>,
        #[command(flatten)]
        annotations: Annotations,
    },
}

#[derive(Debug, Subcommand)]
enum PartitionCommand {
    /// Move the partition's replica on node --from to node --to (admin token): the new node
    /// learns the log or a snapshot, then takes the old one's vote in one joint-consensus
    /// change, and the old one deletes its copy. Safe to run again after an interruption:
    /// the move goes on from where the partition's group is.
    Move {
        /// The partition (0-based).
        partition: u32,
        /// The write node whose replica moves (its node id).
        #[arg(long)]
        from: u64,
        /// The write node it moves to (its node id).
        #[arg(long)]
        to: u64,
        /// Give up after this many seconds (the move goes on from where it is when run again).
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
    },
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// Move every replica the node holds, and with them its leaderships, to the other write
    /// nodes (admin token), one partition at a time, each to the node holding fewest replicas
    /// that is not in its group yet. The node need not be running. Safe to run again after
    /// an interruption: it plans again from the groups' memberships. Refused when the other
    /// nodes are fewer than the replica count. A node whose data directory was lost is
    /// drained this way before it starts again (its peers refuse it until then).
    Drain {
        /// The write node to empty (its node id).
        node: u64,
        /// Give up after this many seconds (run again to go on).
        #[arg(long, default_value_t = 1800)]
        timeout_secs: u64,
    },
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Every node's view of every partition: role, leader, term, indexes, state digest.
    Status,
    /// Even out the replicas over every write node (admin token), one move at a time, until
    /// no node holds two or more beyond another: after a drain, or once a drained node (one
    /// that lost its data, say) is back. Safe to run again after an interruption.
    Rebalance {
        /// Give up after this many seconds (run again to go on).
        #[arg(long, default_value_t = 1800)]
        timeout_secs: u64,
        /// Nodes to leave out (emptied first if they hold replicas): drained nodes that are
        /// to stay empty; repeat the flag or separate with commas. Nothing records a drain,
        /// so a rebalance without this gives a drained node its share again.
        #[arg(long = "exclude", value_delimiter = ',')]
        excluded: Vec<u64>,
    },
}

#[derive(Debug, Args)]
struct DevArgs {
    /// Where the nodes keep their data and logs; reusing it resumes the same ledger.
    #[arg(long, default_value = "./.wallet-dev")]
    data_dir: PathBuf,
    /// Number of account partitions (raft groups) of a new cluster; an existing data dir
    /// keeps the count it was created with (a node refuses another).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=i64::from(PARTITIONS_MAX)))]
    partitions: u32,
    /// Write nodes to start (ports 50051 onwards); fixed for a data dir, like the partitions.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(3..=dev::WRITE_NODES_MAX))]
    write_nodes: u64,
    /// Replicas of each partition (1, 3, 5, 7 or 9, at most --write-nodes), placed on that
    /// many of the write nodes; fixed for a data dir.
    #[arg(long, default_value_t = 3)]
    replicas: usize,
}

/// Why a command failed, keeping ledger errors typed so they are reported with their code
/// and reason, and a transfer's id so the user can retry with it.
enum Failure {
    Wallet {
        error: wallet_client::Error,
        transaction_id: Option<Uuid>,
    },
    Other(anyhow::Error),
    /// A failure already printed as the command's result (e.g. `verify` found a problem).
    Reported,
}

impl From<wallet_client::Error> for Failure {
    fn from(error: wallet_client::Error) -> Self {
        Self::Wallet {
            error,
            transaction_id: None,
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Self::Other(error)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let out = Output::new(cli.json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            out.other_error(&anyhow::Error::new(e).context("starting the async runtime"));
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(run(cli, &out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Wallet {
            error,
            transaction_id,
        }) => {
            out.wallet_error(&error, transaction_id);
            ExitCode::from(if error.is_definite() {
                EXIT_FAILURE
            } else {
                EXIT_INDEFINITE
            })
        }
        Err(Failure::Other(error)) => {
            out.other_error(&error);
            ExitCode::from(EXIT_FAILURE)
        }
        Err(Failure::Reported) => ExitCode::from(EXIT_FAILURE),
    }
}

async fn run(cli: Cli, out: &Output) -> Result<(), Failure> {
    let Cli {
        endpoints,
        read_endpoint,
        access,
        command,
        ..
    } = cli;
    match command {
        Command::Replay(args) => {
            let request = audit::ReplayRequest {
                partitions: args.partitions,
                from: args.from,
                to_index: args.to_index,
                to_time_ms: args.to_time,
                balances: args.balances,
            };
            match (&args.data_dir, &args.endpoint) {
                (Some(data_dir), _) => {
                    tokio::task::block_in_place(|| audit::replay(data_dir, &request, out))?
                }
                (None, Some(endpoint)) => {
                    let node = access.live_node(endpoint.clone())?;
                    audit::replay_live(&node, &request, out).await?
                }
                (None, None) => unreachable!("clap requires one of --data-dir, --endpoint"),
            }
            Ok(())
        }
        Command::Verify {
            data_dir,
            endpoint,
            backup,
            partitions,
        } => {
            let ok = match (data_dir, endpoint, backup) {
                (Some(data_dir), _, _) => {
                    tokio::task::block_in_place(|| audit::verify(&data_dir, &partitions, out))?
                }
                (None, Some(endpoint), _) => {
                    let node = access.live_node(endpoint)?;
                    audit::verify_live(&node, &partitions, out).await?
                }
                (None, None, Some(dir)) => {
                    tokio::task::block_in_place(|| backup::verify(&dir, out))?
                }
                (None, None, None) => {
                    unreachable!("clap requires one of --data-dir, --endpoint, --backup")
                }
            };
            if ok { Ok(()) } else { Err(Failure::Reported) }
        }
        Command::Backup {
            out: dir,
            under,
            keep,
            partitions,
        } => {
            let target = match (dir, under) {
                (Some(dir), _) => backup::Target::Dir(dir),
                (None, Some(root)) => backup::Target::Dated { root, keep },
                (None, None) => unreachable!("clap requires one of --out, --under"),
            };
            let nodes = endpoints
                .into_iter()
                .filter(|endpoint| !endpoint.trim().is_empty())
                .map(|endpoint| access.live_node(endpoint))
                .collect::<Result<Vec<_>, _>>()?;
            if nodes.is_empty() {
                return Err(anyhow::anyhow!("--endpoints names no node").into());
            }
            let request = backup::BackupRequest { target, partitions };
            backup::backup(&nodes, &request, out).await?;
            Ok(())
        }
        Command::Restore {
            backup: dir,
            out: data,
            nodes,
            node_dirs,
        } => {
            let targets = match (data, nodes) {
                (Some(data), Some(nodes)) => backup::Targets::Under(data, nodes),
                _ => backup::Targets::Each(node_dirs),
            };
            tokio::task::block_in_place(|| backup::restore(&dir, targets, out))?;
            Ok(())
        }
        Command::Balance {
            account,
            consistency_token,
        } => {
            let query = access.query(read_endpoint)?;
            read::balance(&query, out, &account, consistency_token.as_deref()).await?;
            Ok(())
        }
        Command::Watch { accounts } => {
            let query = access.query(read_endpoint)?;
            read::watch(&query, out, accounts).await?;
            Ok(())
        }
        Command::History {
            account,
            page_size,
            page_token,
        } => {
            let query = access.query(read_endpoint)?;
            read::history(&query, out, &account, page_token.as_deref(), page_size).await?;
            Ok(())
        }
        Command::Health { read, service } => {
            let (endpoints, default_service) = if read {
                (vec![read_endpoint], READ_SERVICE_NAME)
            } else {
                (endpoints, WALLET_SERVICE_NAME)
            };
            let service = service.as_deref().unwrap_or(default_service);
            let tls = access.tls()?;
            if health::check_all(&endpoints, service, tls.as_ref(), out).await {
                Ok(())
            } else {
                Err(anyhow::anyhow!("not every node is SERVING {service:?}").into())
            }
        }
        Command::Dev(args) => {
            if !placement::REPLICAS_ALLOWED.contains(&args.replicas)
                || args.replicas as u64 > args.write_nodes
            {
                return Err(anyhow::anyhow!(
                    "--replicas {}: must be one of {:?} and at most --write-nodes ({})",
                    args.replicas,
                    placement::REPLICAS_ALLOWED,
                    args.write_nodes
                )
                .into());
            }
            let config = dev::DevConfig {
                data_dir: args.data_dir,
                partitions: args.partitions,
                write_nodes: args.write_nodes,
                replicas: args.replicas,
            };
            dev::run(config, out).await?;
            Ok(())
        }
        Command::DevCerts {
            out: dir,
            hosts,
            read_hosts,
        } => {
            let files = security::certs::write_dev_certs(&dir, &hosts, &read_hosts)?;
            for file in files {
                println!("{}", file.display());
            }
            println!("node certificate valid for {}", hosts.join(", "));
            if !read_hosts.is_empty() {
                println!("read certificate valid for {}", read_hosts.join(", "));
            }
            println!("for development only (the CA key was not kept)");
            Ok(())
        }
        Command::Token {
            name,
            scopes,
            account_prefixes,
        } => {
            let scopes = scopes
                .iter()
                .map(|scope| security::Scope::parse(scope))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let token = security::tokens::generate()?;
            let entry =
                security::tokens::file_entry_bound(&name, &token, &scopes, &account_prefixes);
            // The nodes would refuse an entry they cannot load: check it the same way now.
            security::TokenTable::parse(&entry)
                .map_err(|error| error.context("the token entry"))?;
            if out.is_json() {
                out.json_line(&serde_json::json!({
                    "name": name,
                    "token": token,
                    "sha256": security::tokens::sha256_hex(&token),
                    "scopes": scopes.iter().map(|scope| scope.as_str()).collect::<Vec<_>>(),
                    "account_prefixes": account_prefixes,
                }));
            } else {
                println!("token (shown once; give it to the client, e.g. WALLET_TOKEN):");
                println!("{token}");
                println!();
                println!("append to the nodes' tokens file:");
                print!("{entry}");
            }
            Ok(())
        }
        Command::Account(command) => {
            let client = connect(endpoints, &access).await?;
            match command {
                AccountCommand::Open {
                    id,
                    currency,
                    allow_negative_balance,
                    annotations,
                } => {
                    let account = client
                        .open_account_with(proto::v1::OpenAccountRequest {
                            account_id: id,
                            currency,
                            allow_negative_balance,
                            reference: annotations.reference,
                            metadata: annotations.metadata.into_iter().collect(),
                        })
                        .await?;
                    out.account_opened(&account);
                }
                AccountCommand::Get { id } => {
                    let response = client.get_account(&id).await?;
                    out.account(&response);
                }
                AccountCommand::Freeze { id } => {
                    out.account_changed(&client.freeze_account(&id).await?);
                }
                AccountCommand::Unfreeze { id } => {
                    out.account_changed(&client.unfreeze_account(&id).await?);
                }
                AccountCommand::Close { id } => {
                    out.account_changed(&client.close_account(&id).await?);
                }
                AccountCommand::SetOverdraft {
                    id,
                    limit,
                    currency,
                } => {
                    let account = client.set_overdraft_limit(&id, &limit, &currency).await?;
                    out.account_changed(&account);
                }
            }
            Ok(())
        }
        Command::Transfer(TransferArgs {
            command: Some(TransferCommand::Get { id }),
            ..
        }) => {
            let client = connect(endpoints, &access).await?;
            let transfer = client
                .get_transfer(id)
                .await
                .map_err(|error| Failure::Wallet {
                    error,
                    transaction_id: Some(id),
                })?;
            out.transfer(&transfer);
            Ok(())
        }
        Command::Transfer(TransferArgs {
            command:
                Some(TransferCommand::Legs {
                    legs,
                    currency,
                    id,
                    annotations,
                }),
            ..
        }) => {
            let client = connect(endpoints, &access).await?;
            let id = id.unwrap_or_else(new_transaction_id);
            let request = proto::v1::TransferLegsRequest {
                transaction_id: id.hyphenated().to_string(),
                legs: legs
                    .chunks(3)
                    .map(|leg| proto::v1::TransferLeg {
                        from_account: leg[0].clone(),
                        to_account: leg[1].clone(),
                        amount: leg[2].clone(),
                        currency: currency.clone(),
                    })
                    .collect(),
                reference: annotations.reference,
                metadata: annotations.metadata.into_iter().collect(),
            };
            let response =
                client
                    .transfer_legs(request)
                    .await
                    .map_err(|error| Failure::Wallet {
                        error,
                        transaction_id: Some(id),
                    })?;
            out.transfer_done(&response);
            Ok(())
        }
        Command::Transfer(TransferArgs { command: None, new }) => {
            let client = connect(endpoints, &access).await?;
            let transfer = Transfer {
                transaction_id: new.id.unwrap_or_else(new_transaction_id),
                from: required(new.from, "--from")?,
                to: required(new.to, "--to")?,
                amount: required(new.amount, "--amount")?,
                currency: required(new.currency, "--currency")?,
                reference: new.annotations.reference,
                metadata: new.annotations.metadata.into_iter().collect(),
            };
            let id = transfer.transaction_id;
            let response = client
                .transfer(&transfer)
                .await
                .map_err(|error| Failure::Wallet {
                    error,
                    transaction_id: Some(id),
                })?;
            out.transfer_done(&response);
            Ok(())
        }
        Command::Hold(command) => {
            let client = connect(endpoints, &access).await?;
            let (id, answer) = match command {
                HoldCommand::Authorize {
                    from,
                    to,
                    amount,
                    currency,
                    timeout,
                    id,
                    annotations,
                } => {
                    let hold = wallet_client::Hold {
                        transaction_id: id.unwrap_or_else(new_transaction_id),
                        from,
                        to,
                        amount,
                        currency,
                        timeout,
                        reference: annotations.reference,
                        metadata: annotations.metadata.into_iter().collect(),
                    };
                    (hold.transaction_id, client.authorize_transfer(&hold).await)
                }
                HoldCommand::Capture { id, from, amount } => {
                    let captured = client.capture_transfer(id, &from, amount.as_deref());
                    (id, captured.await)
                }
                HoldCommand::Void { id, from } => (id, client.void_transfer(id, &from).await),
            };
            let response = answer.map_err(|error| Failure::Wallet {
                error,
                transaction_id: Some(id),
            })?;
            out.hold(&response);
            Ok(())
        }
        Command::Partition(PartitionCommand::Move {
            partition,
            from,
            to,
            timeout_secs,
        }) => {
            let reach = access.reach(endpoints)?;
            let timeout = std::time::Duration::from_secs(timeout_secs);
            let voters = partition::move_replica(&reach, partition, from, to, timeout).await?;
            out.replica_moved(partition, &voters);
            Ok(())
        }
        Command::Node(NodeCommand::Drain { node, timeout_secs }) => {
            let reach = access.reach(endpoints)?;
            let timeout = std::time::Duration::from_secs(timeout_secs);
            let goal = node::Goal::Drain(node);
            let moves =
                node::rebalance(&reach, &goal, timeout, |step| out.replica_left(step)).await?;
            out.replicas_moved(Some(node), &moves);
            Ok(())
        }
        Command::Cluster(ClusterCommand::Rebalance {
            timeout_secs,
            excluded,
        }) => {
            let reach = access.reach(endpoints)?;
            let timeout = std::time::Duration::from_secs(timeout_secs);
            let goal = node::Goal::Even { excluded };
            let moves =
                node::rebalance(&reach, &goal, timeout, |step| out.replica_left(step)).await?;
            out.replicas_moved(None, &moves);
            Ok(())
        }
        Command::Cluster(ClusterCommand::Status) => {
            let client = connect(endpoints, &access).await?;
            let statuses = client.cluster_status(true).await;
            let reachable = statuses.iter().filter(|(_, r)| r.is_ok()).count();
            out.cluster_status(&statuses);
            if reachable == 0 {
                return Err(anyhow::anyhow!("no node answered").into());
            }
            Ok(())
        }
    }
}

/// `--node-dir ID=DIR`.
fn parse_node_dir(text: &str) -> Result<(u64, PathBuf), String> {
    let (id, dir) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected ID=DIR"))?;
    let id = id
        .parse::<u64>()
        .ok()
        .filter(|id| (1..=NODES_MAX).contains(id))
        .ok_or_else(|| format!("{text:?}: the node id must be 1 to {NODES_MAX}"))?;
    if dir.is_empty() {
        return Err(format!("{text:?}: no directory"));
    }
    Ok((id, PathBuf::from(dir)))
}

async fn connect(endpoints: Vec<String>, access: &AccessArgs) -> Result<WalletClient, Failure> {
    let endpoints: Vec<String> = endpoints
        .into_iter()
        .filter(|e| !e.trim().is_empty())
        .collect();
    let mut config = ClientConfig::new(endpoints);
    config.tls = access.tls()?;
    config.token = access.token.clone();
    Ok(WalletClient::connect(config).await?)
}

/// clap enforces these unless `transfer get` is used; this keeps the types honest.
fn required(value: Option<String>, flag: &str) -> Result<String, Failure> {
    value.ok_or_else(|| anyhow::anyhow!("{flag} is required").into())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn transfer_get_does_not_need_transfer_flags() {
        let cli = Cli::try_parse_from([
            "walletctl",
            "transfer",
            "get",
            "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Transfer(TransferArgs {
                command: Some(TransferCommand::Get { .. }),
                ..
            })
        ));
    }

    #[test]
    fn new_transfer_needs_its_flags() {
        assert!(Cli::try_parse_from(["walletctl", "transfer", "--from", "a"]).is_err());
        let cli = Cli::try_parse_from([
            "walletctl",
            "--json",
            "transfer",
            "--from",
            "a",
            "--to",
            "b",
            "--amount",
            "1.00",
            "--currency",
            "USD",
        ])
        .unwrap();
        assert!(cli.json);
    }

    #[test]
    fn read_commands_parse() {
        let cli = Cli::try_parse_from([
            "walletctl",
            "balance",
            "alice",
            "--consistency-token",
            "v1.0.7",
        ])
        .unwrap();
        assert_eq!(cli.read_endpoint, DEFAULT_READ_ENDPOINT);
        assert!(
            matches!(cli.command, Command::Balance { consistency_token: Some(ref t), .. } if t == "v1.0.7")
        );
        // --token is the bearer token, for every command.
        let cli =
            Cli::try_parse_from(["walletctl", "balance", "alice", "--token", "wlt_x"]).unwrap();
        assert_eq!(cli.access.token.as_deref(), Some("wlt_x"));
        assert!(matches!(
            cli.command,
            Command::Balance {
                consistency_token: None,
                ..
            }
        ));
        let cli = Cli::try_parse_from(["walletctl", "--read-endpoint", "h:1", "watch", "a", "b"])
            .unwrap();
        assert_eq!(cli.read_endpoint, "h:1");
        assert!(matches!(cli.command, Command::Watch { ref accounts } if accounts.len() == 2));
        assert!(Cli::try_parse_from(["walletctl", "watch"]).is_err());
        assert!(Cli::try_parse_from(["walletctl", "history", "alice"]).is_ok());
    }

    #[test]
    fn health_parses() {
        let cli = Cli::try_parse_from(["walletctl", "health", "--read"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Health {
                read: true,
                service: None
            }
        ));
        let cli = Cli::try_parse_from(["walletctl", "health", "--service", "liveness"]).unwrap();
        assert!(
            matches!(cli.command, Command::Health { read: false, service: Some(ref s) } if s == "liveness")
        );
    }
}
