//! The clients: transfer workers, a reader of all balances, and two balance watchers, each
//! recording what it did in the history.
//!
//! The workload is a bank (Jepsen's): a fixed set of accounts per currency, funded once from
//! an issuer account, then random transfers between the ordinary accounts of one currency,
//! many of them across partitions (saga), some of them too large (rejected: insufficient
//! funds). Only the issuer may go negative; the sum of all balances of a currency is zero.
//!
//! Alongside, workers take holds between the same accounts ([`hold`]: captured in full or in
//! part, voided, captured and voided at once, over-captured, left to expire, captured after
//! their expiry), and a freezer ([`freezer`]) freezes one ordinary account at a time for a
//! short period, so transfers, holds and captures meet frozen accounts.
//!
//! Workers also send multi-leg transfers ([`legs`]): 2 to 4 legs among the accounts of one
//! partition and one currency ([`leg_group`]: `nem-<cur>-0`, the other ordinary accounts of
//! its partition, and [`LEG_ACCOUNTS_PER_CURRENCY`] extra accounts named to fall there),
//! moved all together or not at all.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use proto::v1::WatchBalancesRequest;
use proto::v1::query_service_client::QueryServiceClient;
use tokio::sync::RwLock;
use wallet_client::pb::{HoldResponse, TransferStatus};
use wallet_client::{ClientConfig, Hold, QueryClient, Transfer, Uuid, WalletClient};

use crate::history::{AccountChange, History, HoldStep, Leg, Op, Phase};
use crate::schedule::Prng;

/// Currencies of the bank; both have two minor digits.
pub const CURRENCIES: [&str; 2] = ["USD", "EUR"];
/// Ordinary accounts per currency.
pub const ACCOUNTS_PER_CURRENCY: usize = 6;
/// Extra ordinary accounts per currency, in the partition of `nem-<cur>-0`, so multi-leg
/// sets (which must keep to one partition) have at least three accounts to move money among.
/// Only multi-leg transfers use them; they are opened, funded, swept and watched like the
/// others.
pub const LEG_ACCOUNTS_PER_CURRENCY: usize = 2;
/// Every ordinary account of a currency (what conservation counts).
pub const ORDINARY_PER_CURRENCY: usize = ACCOUNTS_PER_CURRENCY + LEG_ACCOUNTS_PER_CURRENCY;
/// Partitions of the nemesis cluster (the write nodes' default).
pub const PARTITIONS: u32 = 8;
/// One operation of a worker in this many (of those that are not holds) is a multi-leg
/// transfer (see [`legs`]).
pub const LEGS_ONE_IN: u64 = 5;
/// What the issuer gives each ordinary account at the start, in minor units (1000.00).
pub const FUNDING_MINOR: i64 = 100_000;
/// Largest workload transfer, minor units (300.00): large enough that some are rejected.
pub const TRANSFER_MINOR_MAX: i64 = 30_000;
/// How often a worker resubmits a transfer (same id) whose outcome stayed unknown after the
/// SDK's own retries, before leaving it unknown for the final check to resolve.
pub const CLIENT_RESUBMITS_MAX: usize = 3;
/// Pause between a worker's transfers, so the history stays small and the cluster is not
/// saturated (faults, not overload, are under test here).
pub const WORKER_PAUSE: Duration = Duration::from_millis(15);
/// One transfer in this many reuses an id the worker used before (see [`reuse`]).
pub const REUSE_ONE_IN: u64 = 12;
/// Finished transfers a worker remembers as candidates for reuse.
pub const REUSE_CANDIDATES_MAX: usize = 16;
/// One operation of a worker in this many is a hold (see [`hold`]) instead of a transfer.
pub const HOLD_ONE_IN: u64 = 4;
/// Largest hold, minor units (as a transfer's: some are refused for insufficient funds).
pub const HOLD_MINOR_MAX: i64 = TRANSFER_MINOR_MAX;
/// Timeout of a hold the worker means to capture or void: long enough for a capture through
/// an election, short enough that the end of the run need not wait long for what a fault
/// left pending to expire.
pub const HOLD_TIMEOUT: Duration = Duration::from_secs(4);
/// Timeouts of holds meant to expire (the cluster expires them itself), milliseconds.
pub const HOLD_SHORT_TIMEOUT_MS: (u64, u64) = (300, 800);
/// The longest timeout the workload gives a hold (what the end of a run waits for).
pub const HOLD_TIMEOUT_MAX: Duration = HOLD_TIMEOUT;
/// A late capture is sent this long after the hold's timeout has passed since its
/// acknowledgement, so the node must decide it after the expiry (leader time stamps are
/// taken when a request arrives, on the same machine's clock).
pub const LATE_CAPTURE_MARGIN: Duration = Duration::from_millis(300);
/// Longest wait between authorizing a hold and capturing or voiding it.
pub const HOLD_THINK_MS_MAX: u64 = 200;
/// How long the freezer keeps an account frozen, milliseconds.
pub const FROZEN_MS: (u64, u64) = (200, 800);
/// Pause between the freezer's freeze-unfreeze cycles, milliseconds.
pub const FREEZER_PAUSE_MS: (u64, u64) = (500, 1500);
/// Attempts at unfreezing an account before the freezer gives up (the end of the run
/// unfreezes whatever is still frozen, and records it).
pub const UNFREEZE_ATTEMPTS_MAX: usize = 20;
/// Pause between the reader's sweeps.
pub const READER_PAUSE: Duration = Duration::from_millis(200);

pub fn issuer(currency: &str) -> String {
    format!("nem-{}-issuer", currency.to_lowercase())
}

pub fn ordinary(currency: &str, index: usize) -> String {
    format!("nem-{}-{index}", currency.to_lowercase())
}

/// The extra accounts of `currency` for multi-leg sets: `nem-<cur>-legs-<k>` for the first
/// [`LEG_ACCOUNTS_PER_CURRENCY`] values of `k` whose account falls in the partition of
/// `nem-<cur>-0` (deterministic: the partition is a hash of the name).
pub fn leg_accounts(currency: &str) -> Vec<String> {
    let partition = ledger::partition_of(&ordinary(currency, 0), PARTITIONS);
    (0..)
        .map(|k| format!("nem-{}-legs-{k}", currency.to_lowercase()))
        .filter(|id| ledger::partition_of(id, PARTITIONS) == partition)
        .take(LEG_ACCOUNTS_PER_CURRENCY)
        .collect()
}

/// The accounts multi-leg sets of `currency` draw from, all in one partition: `nem-<cur>-0`,
/// the other ordinary accounts of its partition, and the [`leg_accounts`].
pub fn leg_group(currency: &str) -> Vec<String> {
    let partition = ledger::partition_of(&ordinary(currency, 0), PARTITIONS);
    let mut group: Vec<String> = (0..ACCOUNTS_PER_CURRENCY)
        .map(|index| ordinary(currency, index))
        .filter(|id| ledger::partition_of(id, PARTITIONS) == partition)
        .collect();
    group.extend(leg_accounts(currency));
    group
}

/// Every account: `(id, currency, is_issuer)`.
pub fn accounts() -> Vec<(String, &'static str, bool)> {
    let mut all = Vec::new();
    for currency in CURRENCIES {
        all.push((issuer(currency), currency, true));
        for index in 0..ACCOUNTS_PER_CURRENCY {
            all.push((ordinary(currency, index), currency, false));
        }
        for id in leg_accounts(currency) {
            all.push((id, currency, false));
        }
    }
    all
}

/// `12345` minor units as `"123.45"` (two minor digits).
pub fn format_minor(minor: i64) -> String {
    assert!(minor > 0);
    format!("{}.{:02}", minor / 100, minor % 100)
}

/// The SDK client every worker shares: short attempts, so a hung (blackholed, paused) node
/// is left quickly; a bounded whole-call deadline.
pub async fn wallet_client(endpoints: Vec<String>) -> anyhow::Result<WalletClient> {
    let mut config = ClientConfig::new(endpoints);
    config.call_timeout = Duration::from_secs(2);
    config.total_deadline = Duration::from_secs(8);
    config.attempts_max = 12;
    config.connect_timeout = Duration::from_millis(500);
    Ok(WalletClient::connect(config).await?)
}

/// An impatient client: one short attempt per node and a whole-call deadline shorter than
/// an election, so under faults its calls often end with an unknown outcome. The worker then
/// resubmits with the same id, and the checker sees unknown outcomes resolved later: the
/// path where a client cannot tell whether its money moved.
pub async fn impatient_client(endpoints: Vec<String>) -> anyhow::Result<WalletClient> {
    let mut config = ClientConfig::new(endpoints);
    config.call_timeout = Duration::from_millis(400);
    config.total_deadline = Duration::from_millis(900);
    config.attempts_max = 3;
    config.backoff_max = Duration::from_millis(200);
    config.connect_timeout = Duration::from_millis(200);
    Ok(WalletClient::connect(config).await?)
}

/// Shared state of the clients.
pub struct Clients {
    pub wallet: WalletClient,
    /// Used by worker 0 (see [`impatient_client`]).
    pub impatient: WalletClient,
    pub history: Arc<History>,
    /// Workers hold it shared for each operation; a quiescent check holds it exclusively, so
    /// while it runs no client operation is in progress.
    pub gate: Arc<RwLock<()>>,
    pub stop: Arc<AtomicBool>,
}

/// What a submitted transfer is to the checker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Submission {
    /// A transfer under a fresh id; resubmitted with the same id while its outcome is unknown.
    New,
    /// Another transfer under an id already used (see [`reuse`]): submitted once, since an
    /// unknown outcome may stay unknown (the checker's fold catches any money it moved).
    Reuse,
}

/// Submits one transfer, resubmitting a new one with the same id while its outcome is
/// unknown, and records every attempt. Returns the last phase.
pub async fn transfer(
    wallet: &WalletClient,
    history: &History,
    process: &str,
    transfer: &Transfer,
    amount_minor: i64,
    submission: Submission,
) -> Phase {
    let op = |detail: String| Op::Transfer {
        transaction_id: transfer.transaction_id.to_string(),
        from: transfer.from.clone(),
        to: transfer.to.clone(),
        amount_minor,
        currency: transfer.currency.clone(),
        detail,
        reuse: submission == Submission::Reuse,
    };
    let resubmits_max = match submission {
        Submission::New => CLIENT_RESUBMITS_MAX,
        Submission::Reuse => 1,
    };
    let mut phase = Phase::Unknown;
    for resubmit in 0..resubmits_max {
        if !history.record(process, Phase::Invoke, op(String::new())) {
            return phase;
        }
        let (next, detail) = match wallet.transfer(transfer).await {
            Ok(done) => (Phase::Ok, done.consistency_token),
            Err(e) if e.is_definite() => (Phase::Fail, e.reason().to_owned()),
            Err(e) => (Phase::Unknown, format!("{}: {}", e.reason(), e.message())),
        };
        phase = next;
        history.record(process, phase, op(detail));
        if phase != Phase::Unknown || resubmit + 1 == resubmits_max {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    phase
}

/// The shape of a multi-leg set (see [`random_legs`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegsPlan {
    /// Random distinct pairs of the group, amounts up to [`TRANSFER_MINOR_MAX`].
    Random,
    /// A chain A→B→C(→D): each account passes on about what it receives, in amounts up to
    /// twice an account's funding, so an intermediate account often could not pay its leg
    /// alone (funds are checked after all of an account's legs); A may lack the funds.
    PassThrough,
    /// Random legs with one leg larger than all the money of the currency: always refused
    /// (INSUFFICIENT_FUNDS), nothing may move.
    TooLarge,
    /// Random distinct pairs of every ordinary account of the currency and the
    /// [`leg_accounts`], so the set usually spans partitions (moved step by step: every
    /// part prepared, the home decides, every part resolved).
    Across,
}

impl LegsPlan {
    /// Every plan, as the workers draw them.
    pub const ALL: [LegsPlan; 4] = [
        LegsPlan::Random,
        LegsPlan::PassThrough,
        LegsPlan::TooLarge,
        LegsPlan::Across,
    ];
}

/// A multi-leg set of 2 to 4 legs among the accounts of [`leg_group`] of `currency` (for
/// [`LegsPlan::Across`], of every partition), no two legs with the same `from` and `to`.
pub fn random_legs(currency: &str, plan: LegsPlan, rng: &mut Prng) -> Vec<Leg> {
    let group = match plan {
        LegsPlan::Across => {
            let mut all: Vec<String> = (0..ACCOUNTS_PER_CURRENCY)
                .map(|index| ordinary(currency, index))
                .collect();
            all.extend(leg_accounts(currency));
            all
        }
        _ => leg_group(currency),
    };
    let size = group.len();
    assert!(
        size >= 3,
        "multi-leg group of {currency} has {size} accounts"
    );
    let mut legs: Vec<Leg> = Vec::new();
    match plan {
        LegsPlan::PassThrough => {
            // `hops` legs over `hops + 1` distinct accounts (a random order of the group).
            let hops = 2 + rng.below((size as u64 - 1).min(4) - 1) as usize;
            let mut order: Vec<usize> = (0..size).collect();
            for i in 0..size {
                let j = i + rng.below((size - i) as u64) as usize;
                order.swap(i, j);
            }
            let mut amount = 1 + rng.below(2 * FUNDING_MINOR as u64) as i64;
            for hop in 0..hops {
                legs.push(Leg {
                    from: group[order[hop]].clone(),
                    to: group[order[hop + 1]].clone(),
                    amount_minor: amount,
                });
                // The next account keeps a little of what it got (never more than it got,
                // so its own funds never decide it).
                amount = (amount - rng.below(1_000) as i64).max(1);
            }
        }
        LegsPlan::Random | LegsPlan::TooLarge | LegsPlan::Across => {
            let count = 2 + rng.below(3) as usize;
            while legs.len() < count {
                let from = rng.below(size as u64) as usize;
                let to = (from + 1 + rng.below(size as u64 - 1) as usize) % size;
                let (from, to) = (group[from].clone(), group[to].clone());
                if legs.iter().any(|leg| leg.from == from && leg.to == to) {
                    continue;
                }
                let amount_minor = 1 + rng.below(TRANSFER_MINOR_MAX as u64) as i64;
                legs.push(Leg {
                    from,
                    to,
                    amount_minor,
                });
            }
            if plan == LegsPlan::TooLarge {
                let index = rng.below(count as u64) as usize;
                legs[index].amount_minor = ORDINARY_PER_CURRENCY as i64 * FUNDING_MINOR + 1;
            }
        }
    }
    legs
}

/// Submits one multi-leg transfer, resubmitting it (same id, same legs) while its outcome
/// is unknown, and records every attempt. Returns the last phase.
pub async fn legs(
    wallet: &WalletClient,
    history: &History,
    process: &str,
    rng: &mut Prng,
    plan: LegsPlan,
) -> Phase {
    let currency = CURRENCIES[rng.below(CURRENCIES.len() as u64) as usize];
    let legs = random_legs(currency, plan, rng);
    let transaction_id = seeded_transaction_id(rng);
    let request = proto::v1::TransferLegsRequest {
        transaction_id: transaction_id.to_string(),
        legs: legs
            .iter()
            .map(|leg| proto::v1::TransferLeg {
                from_account: leg.from.clone(),
                to_account: leg.to.clone(),
                amount: format_minor(leg.amount_minor),
                currency: currency.to_owned(),
            })
            .collect(),
        ..Default::default()
    };
    let op = |detail: String, leg: Option<u32>| Op::Legs {
        transaction_id: transaction_id.to_string(),
        currency: currency.to_owned(),
        legs: legs.clone(),
        detail,
        leg,
    };
    let mut phase = Phase::Unknown;
    for resubmit in 0..CLIENT_RESUBMITS_MAX {
        if !history.record(process, Phase::Invoke, op(String::new(), None)) {
            return phase;
        }
        let (next, detail, leg) = match wallet.transfer_legs(request.clone()).await {
            Ok(done) => (Phase::Ok, done.consistency_token, None),
            Err(e) if e.is_definite() => (Phase::Fail, e.reason().to_owned(), e.leg()),
            Err(e) => (
                Phase::Unknown,
                format!("{}: {}", e.reason(), e.message()),
                None,
            ),
        };
        phase = next;
        history.record(process, phase, op(detail, leg));
        if phase != Phase::Unknown || resubmit + 1 == CLIENT_RESUBMITS_MAX {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    phase
}

/// A v4 UUID from the seeded generator, so a rerun of a seed uses the same ids (histories of
/// two runs line up id by id).
pub fn seeded_transaction_id(rng: &mut Prng) -> Uuid {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
    bytes[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// A finished transfer a worker may reuse the id of.
struct Finished {
    transfer: Transfer,
    completed: bool,
}

/// A transfer that reuses `first`'s id for other parameters, sent from an account whose
/// partition recorded the id once `first` was final: `first`'s source (which records every
/// transfer it decides, completed or rejected), or, if `first` completed, its target (which
/// recorded the credit, or the whole transfer inside one partition). Either way the source
/// refuses it with `TRANSACTION_ID_REUSED` before any money moves, whichever order the two
/// partitions recorded the id in; a completed first transfer keeps its record.
fn reuse(first: &Finished, rng: &mut Prng) -> (Transfer, i64) {
    let currency = first.transfer.currency.as_str();
    let from = if first.completed && rng.below(2) == 0 {
        first.transfer.to.clone()
    } else {
        first.transfer.from.clone()
    };
    let to = loop {
        let candidate = ordinary(currency, rng.below(ACCOUNTS_PER_CURRENCY as u64) as usize);
        if candidate != from {
            break candidate;
        }
    };
    let mut amount_minor = 1 + rng.below(TRANSFER_MINOR_MAX as u64) as i64;
    // Other parameters, always: the same source, target and amount would be a retry, which
    // the cluster rightly answers with the first transfer's outcome.
    if from == first.transfer.from
        && to == first.transfer.to
        && format_minor(amount_minor) == first.transfer.amount
    {
        amount_minor = amount_minor % TRANSFER_MINOR_MAX + 1;
    }
    let transfer = Transfer {
        transaction_id: first.transfer.transaction_id,
        from,
        to,
        amount: format_minor(amount_minor),
        currency: currency.to_owned(),
        ..Default::default()
    };
    (transfer, amount_minor)
}

/// What a worker does with a hold it took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldPlan {
    CaptureFull,
    CapturePartial,
    Void,
    /// A capture and a void sent at once: at most one may succeed.
    CaptureAndVoid,
    /// A capture of more than the hold (refused `CAPTURE_EXCEEDS_HOLD`), then a void.
    OverCapture,
    /// A short hold left alone: the cluster expires it.
    Expire,
    /// A short hold captured after its expiry: refused `HOLD_EXPIRED`.
    LateCapture,
}

impl HoldPlan {
    const ALL: [HoldPlan; 7] = [
        HoldPlan::CaptureFull,
        HoldPlan::CapturePartial,
        HoldPlan::Void,
        HoldPlan::CaptureAndVoid,
        HoldPlan::OverCapture,
        HoldPlan::Expire,
        HoldPlan::LateCapture,
    ];

    fn short(self) -> bool {
        matches!(self, HoldPlan::Expire | HoldPlan::LateCapture)
    }
}

/// Sends one hold step, resubmitting it (same id, same parameters) while its outcome is
/// unknown, at most `resubmits_max` times, and records every attempt. `op` builds the entry
/// from the completion's detail and captured amount. Returns the last phase.
async fn hold_step<F, Fut>(
    history: &History,
    process: &str,
    op: impl Fn(String, i64) -> Op,
    resubmits_max: usize,
    call: F,
) -> Phase
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<HoldResponse, wallet_client::Error>>,
{
    let mut phase = Phase::Unknown;
    for resubmit in 0..resubmits_max {
        if !history.record(process, Phase::Invoke, op(String::new(), 0)) {
            return phase;
        }
        let (next, detail, captured) = match call().await {
            Ok(response) => {
                let hold = response.transfer.unwrap_or_default();
                let status = TransferStatus::try_from(hold.status)
                    .unwrap_or(TransferStatus::Unspecified)
                    .as_str_name()
                    .trim_start_matches("TRANSFER_STATUS_")
                    .to_owned();
                let captured = hold
                    .hold
                    .map_or(0, |info| parse_minor_or_zero(&info.captured_amount));
                (Phase::Ok, status, captured)
            }
            Err(e) if e.is_definite() => (Phase::Fail, e.reason().to_owned(), 0),
            Err(e) => (
                Phase::Unknown,
                format!("{}: {}", e.reason(), e.message()),
                0,
            ),
        };
        phase = next;
        history.record(process, phase, op(detail, captured));
        if phase != Phase::Unknown || resubmit + 1 == resubmits_max {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    phase
}

/// `"123.45"` → 12345; an empty or unreadable amount → 0 (two minor digits, non-negative).
pub fn parse_minor_or_zero(amount: &str) -> i64 {
    let (units, fraction) = amount.split_once('.').unwrap_or((amount, ""));
    let fraction = format!("{fraction:0<2}");
    match (units.parse::<i64>(), fraction[..2].parse::<i64>()) {
        (Ok(units), Ok(fraction)) if units >= 0 => units * 100 + fraction,
        _ => 0,
    }
}

/// One hold from authorization to its end as `plan` says, every step recorded.
pub async fn hold(
    wallet: &WalletClient,
    history: &History,
    process: &str,
    rng: &mut Prng,
    plan: HoldPlan,
) {
    let currency = CURRENCIES[rng.below(CURRENCIES.len() as u64) as usize];
    let from = rng.below(ACCOUNTS_PER_CURRENCY as u64) as usize;
    let to =
        (from + 1 + rng.below(ACCOUNTS_PER_CURRENCY as u64 - 1) as usize) % ACCOUNTS_PER_CURRENCY;
    let amount_minor = 1 + rng.below(HOLD_MINOR_MAX as u64) as i64;
    let timeout = if plan.short() {
        rng.millis(HOLD_SHORT_TIMEOUT_MS.0, HOLD_SHORT_TIMEOUT_MS.1)
    } else {
        HOLD_TIMEOUT
    };
    let request = Hold {
        transaction_id: seeded_transaction_id(rng),
        from: ordinary(currency, from),
        to: ordinary(currency, to),
        amount: format_minor(amount_minor),
        currency: currency.to_owned(),
        timeout,
        ..Default::default()
    };
    let id = request.transaction_id;
    let op = |step: HoldStep, amount_minor: i64, timeout_ms: u64| {
        let request = &request;
        move |detail: String, captured_minor: i64| Op::Hold {
            step,
            transaction_id: id.to_string(),
            from: request.from.clone(),
            to: request.to.clone(),
            currency: request.currency.clone(),
            amount_minor,
            timeout_ms,
            detail,
            captured_minor,
        }
    };
    let authorized = hold_step(
        history,
        process,
        op(
            HoldStep::Authorize,
            amount_minor,
            timeout.as_millis() as u64,
        ),
        CLIENT_RESUBMITS_MAX,
        || wallet.authorize_transfer(&request),
    )
    .await;
    if authorized != Phase::Ok {
        // Refused, or unknown: an unknown hold that exists expires by itself.
        return;
    }
    let from = request.from.as_str();
    let capture = |amount_minor: i64| {
        let amount = (amount_minor > 0).then(|| format_minor(amount_minor));
        let op = op(HoldStep::Capture, amount_minor, 0);
        async move {
            hold_step(history, process, op, CLIENT_RESUBMITS_MAX, || {
                wallet.capture_transfer(id, from, amount.as_deref())
            })
            .await
        }
    };
    let void = || {
        hold_step(
            history,
            process,
            op(HoldStep::Void, 0, 0),
            CLIENT_RESUBMITS_MAX,
            || wallet.void_transfer(id, from),
        )
    };
    if plan == HoldPlan::LateCapture {
        tokio::time::sleep(timeout + LATE_CAPTURE_MARGIN).await;
    } else {
        tokio::time::sleep(Duration::from_millis(rng.below(HOLD_THINK_MS_MAX + 1))).await;
    }
    match plan {
        HoldPlan::CaptureFull | HoldPlan::LateCapture => {
            capture(0).await;
        }
        HoldPlan::CapturePartial => {
            let part = 1 + rng.below(amount_minor as u64) as i64;
            capture(part).await;
        }
        HoldPlan::Void => {
            void().await;
        }
        HoldPlan::CaptureAndVoid => {
            tokio::join!(capture(0), void());
        }
        HoldPlan::OverCapture => {
            capture(amount_minor + 1).await;
            void().await;
        }
        HoldPlan::Expire => {}
    }
}

/// The freezer: one ordinary account at a time frozen for a short period, then unfrozen
/// (retried until the unfreeze is acknowledged), every call recorded. It holds the gate
/// shared from the freeze to the unfreeze, so no quiescent check sees an account frozen.
pub async fn freezer(clients: Arc<Clients>, seed: u64) {
    let process = "freezer";
    let mut rng = Prng::new(seed ^ 0x0F4E_E2E4);
    while !clients.stop.load(Ordering::Relaxed) && !clients.history.full() {
        tokio::time::sleep(rng.millis(FREEZER_PAUSE_MS.0, FREEZER_PAUSE_MS.1)).await;
        let _shared = clients.gate.read().await;
        let currency = CURRENCIES[rng.below(CURRENCIES.len() as u64) as usize];
        let account = ordinary(currency, rng.below(ACCOUNTS_PER_CURRENCY as u64) as usize);
        let frozen = change_account(
            &clients.wallet,
            &clients.history,
            process,
            AccountChange::Freeze,
            &account,
            CLIENT_RESUBMITS_MAX,
        )
        .await;
        if frozen == Phase::Fail {
            continue;
        }
        tokio::time::sleep(rng.millis(FROZEN_MS.0, FROZEN_MS.1)).await;
        change_account(
            &clients.wallet,
            &clients.history,
            process,
            AccountChange::Unfreeze,
            &account,
            UNFREEZE_ATTEMPTS_MAX,
        )
        .await;
    }
}

/// Freezes or unfreezes `account`, resubmitting while the outcome is unknown (the change is
/// idempotent by effect), at most `attempts_max` times; records every attempt.
pub async fn change_account(
    wallet: &WalletClient,
    history: &History,
    process: &str,
    change: AccountChange,
    account: &str,
    attempts_max: usize,
) -> Phase {
    let op = |detail: String| Op::Account {
        change,
        account_id: account.to_owned(),
        detail,
    };
    let mut phase = Phase::Unknown;
    for attempt in 0..attempts_max {
        if !history.record(process, Phase::Invoke, op(String::new())) {
            return phase;
        }
        let answer = match change {
            AccountChange::Freeze => wallet.freeze_account(account).await,
            AccountChange::Unfreeze => wallet.unfreeze_account(account).await,
        };
        let (next, detail) = match answer {
            Ok(account) => (
                Phase::Ok,
                wallet_client::pb::AccountStatus::try_from(account.status)
                    .unwrap_or(wallet_client::pb::AccountStatus::Unspecified)
                    .as_str_name()
                    .to_owned(),
            ),
            Err(e) if e.is_definite() => (Phase::Fail, e.reason().to_owned()),
            Err(e) => (Phase::Unknown, format!("{}: {}", e.reason(), e.message())),
        };
        phase = next;
        history.record(process, phase, op(detail));
        if phase != Phase::Unknown || attempt + 1 == attempts_max {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    phase
}

/// A transfer worker: random same-currency transfers between ordinary accounts until
/// stopped or the history is full; one in [`HOLD_ONE_IN`] is a hold instead, with a
/// random [`HoldPlan`]; one in [`REUSE_ONE_IN`] of the others reuses the id of one of its
/// finished transfers for other parameters (a client bug the ledger must refuse); one in
/// [`LEGS_ONE_IN`] of the others is a multi-leg transfer with a random [`LegsPlan`].
pub async fn worker(clients: Arc<Clients>, seed: u64, index: usize) {
    let process = format!("worker-{index}");
    let mut rng = Prng::new(seed ^ (0xC0FFEE + index as u64));
    let mut finished: Vec<Finished> = Vec::new();
    while !clients.stop.load(Ordering::Relaxed) && !clients.history.full() {
        {
            let _shared = clients.gate.read().await;
            let wallet = if index == 0 {
                &clients.impatient
            } else {
                &clients.wallet
            };
            if rng.below(HOLD_ONE_IN) == 0 {
                let plan = HoldPlan::ALL[rng.below(HoldPlan::ALL.len() as u64) as usize];
                hold(wallet, &clients.history, &process, &mut rng, plan).await;
            } else if rng.below(LEGS_ONE_IN) == 0 {
                let plan = LegsPlan::ALL[rng.below(LegsPlan::ALL.len() as u64) as usize];
                legs(wallet, &clients.history, &process, &mut rng, plan).await;
            } else if !finished.is_empty() && rng.below(REUSE_ONE_IN) == 0 {
                let first = &finished[rng.below(finished.len() as u64) as usize];
                let (request, amount_minor) = reuse(first, &mut rng);
                let history = &clients.history;
                transfer(
                    wallet,
                    history,
                    &process,
                    &request,
                    amount_minor,
                    Submission::Reuse,
                )
                .await;
            } else {
                new_transfer(wallet, &clients.history, &process, &mut rng, &mut finished).await;
            }
        }
        tokio::time::sleep(WORKER_PAUSE).await;
    }
}

/// A random same-currency transfer between two ordinary accounts, remembered for reuse once
/// its outcome is known.
async fn new_transfer(
    wallet: &WalletClient,
    history: &History,
    process: &str,
    rng: &mut Prng,
    finished: &mut Vec<Finished>,
) {
    let currency = CURRENCIES[rng.below(CURRENCIES.len() as u64) as usize];
    let from = rng.below(ACCOUNTS_PER_CURRENCY as u64) as usize;
    let to =
        (from + 1 + rng.below(ACCOUNTS_PER_CURRENCY as u64 - 1) as usize) % ACCOUNTS_PER_CURRENCY;
    let amount_minor = 1 + rng.below(TRANSFER_MINOR_MAX as u64) as i64;
    let request = Transfer {
        transaction_id: seeded_transaction_id(rng),
        from: ordinary(currency, from),
        to: ordinary(currency, to),
        amount: format_minor(amount_minor),
        currency: currency.to_owned(),
        ..Default::default()
    };
    let phase = transfer(
        wallet,
        history,
        process,
        &request,
        amount_minor,
        Submission::New,
    )
    .await;
    if phase != Phase::Unknown {
        if finished.len() == REUSE_CANDIDATES_MAX {
            finished.remove(0);
        }
        finished.push(Finished {
            transfer: request,
            completed: phase == Phase::Ok,
        });
    }
}

/// Reads every account once (`GetAccount`, linearizable, one account at a time); `None` if
/// any read failed.
pub async fn sweep(wallet: &WalletClient) -> Option<Vec<(String, i64)>> {
    let mut balances = Vec::new();
    for (account, _, _) in accounts() {
        let response = wallet.get_account(&account).await.ok()?;
        balances.push((account, response.account?.balance_minor));
    }
    Some(balances)
}

/// The reader: sweeps of all balances while the workload runs. They are not snapshots (the
/// accounts are read one after another while transfers move money), so the checker uses
/// them for "never negative" and bounds, not for conservation.
pub async fn reader(clients: Arc<Clients>) {
    while !clients.stop.load(Ordering::Relaxed) && !clients.history.full() {
        {
            let _shared = clients.gate.read().await;
            let invoke = Op::Read {
                balances: Vec::new(),
                quiescent: false,
            };
            clients
                .history
                .record("reader", Phase::Invoke, invoke.clone());
            match sweep(&clients.wallet).await {
                Some(balances) => clients.history.record(
                    "reader",
                    Phase::Ok,
                    Op::Read {
                        balances,
                        quiescent: false,
                    },
                ),
                None => clients.history.record("reader", Phase::Fail, invoke),
            };
        }
        tokio::time::sleep(READER_PAUSE).await;
    }
}

/// The SDK's watch (`QueryClient::watch_balances`), which resumes by itself across read-node
/// restarts. It drops updates whose sequence it already delivered (defensive), so it shows
/// what an SDK user sees; gaps and disorder still show.
pub async fn sdk_watcher(read_endpoint: String, history: Arc<History>, stop: Arc<AtomicBool>) {
    use futures::StreamExt as _;
    let process = "watcher-sdk";
    let Ok(query) = QueryClient::connect([read_endpoint]) else {
        return;
    };
    let ids = accounts().into_iter().map(|(id, _, _)| id).collect();
    let mut updates = query.watch_balances(ids);
    while !stop.load(Ordering::Relaxed) {
        let next = tokio::time::timeout(Duration::from_millis(200), updates.next()).await;
        match next {
            Err(_) => continue,
            Ok(None) => break,
            Ok(Some(Ok(update))) => record_push(&history, process, &update),
            Ok(Some(Err(e))) => {
                history.record(
                    process,
                    Phase::Fail,
                    Op::Nemesis {
                        fault: "watch_ended".into(),
                        node: "read".into(),
                        detail: e.to_string(),
                    },
                );
                break;
            }
        }
    }
}

/// A watch on the raw gRPC API that resumes by itself (with `resume_after_sequence`) and
/// records every message exactly as the read node sent it: duplicates the SDK would hide
/// are visible here.
pub async fn raw_watcher(read_endpoint: String, history: Arc<History>, stop: Arc<AtomicBool>) {
    let process = "watcher-raw";
    let ids: Vec<String> = accounts().into_iter().map(|(id, _, _)| id).collect();
    let mut last: HashMap<String, u64> = HashMap::new();
    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(format!("http://{read_endpoint}"))
    else {
        return;
    };
    let channel = endpoint
        .connect_timeout(Duration::from_millis(500))
        .connect_lazy();
    while !stop.load(Ordering::Relaxed) {
        let request = WatchBalancesRequest {
            account_ids: ids.clone(),
            resume_after_sequence: last.clone().into_iter().collect(),
        };
        let mut client = QueryServiceClient::new(channel.clone());
        if let Ok(response) = client.watch_balances(request).await {
            let mut stream = response.into_inner();
            while !stop.load(Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_millis(200), stream.message()).await {
                    Err(_) => continue,
                    Ok(Ok(Some(update))) => {
                        if let Some(balance) = &update.balance {
                            // Resume after the highest sequence seen, so a duplicate does not
                            // make the next resume ask for history again.
                            let seen = last.entry(balance.account_id.clone()).or_insert(0);
                            *seen = (*seen).max(balance.sequence);
                        }
                        record_push(&history, process, &update);
                    }
                    Ok(Ok(None)) | Ok(Err(_)) => break,
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn record_push(history: &History, process: &str, update: &proto::v1::BalanceUpdate) {
    let Some(balance) = &update.balance else {
        return;
    };
    history.record(
        process,
        Phase::Ok,
        Op::Push {
            watcher: process.to_owned(),
            account_id: balance.account_id.clone(),
            sequence: balance.sequence,
            snapshot: update.snapshot,
            balance_minor: balance.balance_minor,
            delta_minor: update.delta_minor,
            transaction_id: update.transaction_id.clone(),
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every set the workload draws keeps to one currency, has 2 to 4 legs and no repeated
    /// (from, to) pair, as `TransferLegs` requires; every plan but `Across` keeps to one
    /// partition, and `Across` usually spans several.
    #[test]
    fn multi_leg_sets_keep_to_one_partition_unless_drawn_across() {
        let mut rng = Prng::new(7);
        for currency in CURRENCIES {
            let group = leg_group(currency);
            assert!(group.len() >= 3, "{group:?}");
            let mut spanning = 0;
            for plan in LegsPlan::ALL {
                for _ in 0..200 {
                    let legs = random_legs(currency, plan, &mut rng);
                    assert!((2..=4).contains(&legs.len()), "{legs:?}");
                    let partition = ledger::partition_of(&legs[0].from, PARTITIONS);
                    let spans = legs.iter().any(|leg| {
                        [&leg.from, &leg.to]
                            .iter()
                            .any(|account| ledger::partition_of(account, PARTITIONS) != partition)
                    });
                    assert!(plan == LegsPlan::Across || !spans, "{plan:?} {legs:?}");
                    spanning += usize::from(spans);
                    for (index, leg) in legs.iter().enumerate() {
                        assert_ne!(leg.from, leg.to);
                        assert!(leg.amount_minor > 0);
                        for account in [&leg.from, &leg.to] {
                            assert!(
                                accounts()
                                    .iter()
                                    .any(|(id, c, _)| id == account && *c == currency)
                            );
                        }
                        assert!(
                            legs[..index]
                                .iter()
                                .all(|other| (&other.from, &other.to) != (&leg.from, &leg.to))
                        );
                    }
                }
            }
            assert!(
                spanning > 100,
                "{currency}: {spanning} of 200 sets drawn across span"
            );
        }
    }
}
