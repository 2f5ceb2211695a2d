//! Transfer records on disk (issue 15): a write node keeps no finished record in memory, so
//! retries are answered from the `records` column family with the original outcome, before
//! and after a restart of the whole cluster, and after migrating data of format 2 (no
//! `records` column family) to format 3.

use std::path::Path;

use proto::v1::TransferRequest;
use testkit::{Cluster, reason, transfer_request};
use tonic::Code;

fn parse_cents(amount: &str) -> i64 {
    let (units, cents) = amount.split_once('.').expect("two decimals");
    units.parse::<i64>().expect("units") * 100 + cents.parse::<i64>().expect("cents")
}

fn id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Accounts of one partition (of the default 8) as `a`, another account there, and one of
/// another partition.
fn accounts() -> (String, String, String) {
    let of = |account: &str| ledger::partition_of(account, 8);
    let alice = "alice".to_string();
    let carol = (0..)
        .map(|n| format!("carol-{n}"))
        .find(|id| of(id) == of(&alice))
        .expect("an id in alice's partition");
    let bob = (0..)
        .map(|n| format!("bob-{n}"))
        .find(|id| of(id) != of(&alice))
        .expect("an id in another partition");
    (alice, carol, bob)
}

/// What each request was answered: a consistency token, or a definite error's code and
/// reason.
type Answer = Result<String, (Code, String)>;

async fn answer(cluster: &Cluster, request: &TransferRequest) -> Answer {
    cluster
        .transfer(request)
        .await
        .map(|response| response.consistency_token)
        .map_err(|status| (status.code(), reason(&status)))
}

/// A same-partition transfer, a cross-partition one and a rejected one, after funding.
async fn history(cluster: &Cluster) -> Vec<(TransferRequest, Answer)> {
    let (alice, carol, bob) = accounts();
    cluster
        .open_account("issuer", "USD", true)
        .await
        .expect("issuer");
    for account in [&alice, &carol, &bob] {
        cluster
            .open_account(account, "USD", false)
            .await
            .expect("open");
    }
    let requests = [
        transfer_request(&id(), "issuer", &alice, "100.00", "USD"),
        transfer_request(&id(), &alice, &carol, "1.00", "USD"),
        transfer_request(&id(), &alice, &bob, "2.00", "USD"),
        transfer_request(&id(), &alice, &carol, "1000.00", "USD"),
        transfer_request(&id(), &alice, &bob, "1000.00", "USD"),
    ];
    let mut answered = Vec::new();
    for request in requests {
        let answer = answer(cluster, &request).await;
        answered.push((request, answer));
    }
    let rejected: Vec<&Answer> = answered[3..].iter().map(|(_, answer)| answer).collect();
    assert_eq!(
        rejected,
        vec![&Err((Code::FailedPrecondition, "INSUFFICIENT_FUNDS".to_string())); 2]
    );
    assert!(answered[..3].iter().all(|(_, answer)| answer.is_ok()));
    cluster.wait_no_in_flight().await;
    answered
}

/// Every retry gets the original answer, every record reads back, a reused id is refused,
/// and the money moved once.
async fn check(cluster: &Cluster, answered: &[(TransferRequest, Answer)]) {
    for (request, original) in answered {
        assert_eq!(
            &answer(cluster, request).await,
            original,
            "retry of {}",
            request.transaction_id
        );
        let record = cluster
            .get_transfer(&request.transaction_id)
            .await
            .expect("the record of a decided transfer");
        assert_eq!(record.amount, request.amount);
    }
    let mut reused = answered[1].0.clone();
    reused.amount = "5.00".into();
    assert_eq!(
        answer(cluster, &reused).await,
        Err((Code::AlreadyExists, "TRANSACTION_ID_REUSED".to_string()))
    );
    // Transfers after the first five, all from alice to carol.
    let moved_later: i64 = answered
        .iter()
        .skip(5)
        .map(|(request, _)| parse_cents(&request.amount))
        .sum();
    let (alice, carol, bob) = accounts();
    let balance = |account: String| async move {
        cluster
            .account(&account)
            .await
            .expect("account")
            .balance_minor
    };
    assert_eq!(
        (
            balance(alice).await,
            balance(carol).await,
            balance(bob).await
        ),
        (9_700 - moved_later, 100 + moved_later, 200)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_answered_from_disk_before_and_after_a_restart() {
    let cluster = Cluster::start(3);
    cluster.wait_leaders().await;
    let mut answered = history(&cluster).await;
    check(&cluster, &answered).await;

    // The same new transfer sent eight times at once: the copies land in one entry or in
    // one round's entries, before the first one's record reaches RocksDB. One pays; all
    // get its answer.
    let (alice, carol, _) = accounts();
    let twice = transfer_request(&id(), &alice, &carol, "0.50", "USD");
    let answers = futures::future::join_all((0..8).map(|_| answer(&cluster, &twice))).await;
    let a = answers[0].clone();
    assert!(a.is_ok(), "{a:?}");
    assert!(answers.iter().all(|answer| *answer == a), "{answers:?}");
    answered.push((twice, a));
    check(&cluster, &answered).await;
    for node in 1..=3 {
        cluster.kill(node);
    }
    for node in 1..=3 {
        cluster.start_node(node);
    }
    cluster.wait_leaders().await;
    check(&cluster, &answered).await;
    cluster.wait_replicas_agree().await;
}

/// A clean stop (SIGTERM) flushes every column family after the store thread has stopped:
/// the write-ahead logs are empty, so a restart opens without replaying one (seconds per
/// node at 10M accounts), and every answer is still there after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_leaves_no_write_ahead_log_to_replay() {
    let cluster = Cluster::start(3);
    cluster.wait_leaders().await;
    let answered = history(&cluster).await;
    check(&cluster, &answered).await;
    for node in 1..=3 {
        let exit = cluster.stop(node);
        assert!(
            exit.success(),
            "a clean stop exits 0: {exit}\n{}",
            cluster.log(node)
        );
    }
    for node in &cluster.nodes {
        let logs = testkit::write_ahead_logs(&node.data_dir);
        assert!(!logs.is_empty(), "RocksDB keeps a write-ahead log file");
        assert!(
            logs.iter().all(|(_, bytes)| *bytes == 0),
            "node {}: {logs:?}",
            node.id
        );
    }
    for node in 1..=3 {
        cluster.start_node(node);
    }
    cluster.wait_leaders().await;
    check(&cluster, &answered).await;
}

/// A stopped node's RocksDB, opened directly.
fn open_stopped(data_dir: &Path) -> rocksdb::DB {
    let families = [
        "raft_log",
        "raft_state",
        "events",
        "meta",
        "snapshots",
        "records",
        "accounts",
    ]
    .into_iter()
    .map(|name| rocksdb::ColumnFamilyDescriptor::new(name, rocksdb::Options::default()));
    rocksdb::DB::open_cf_descriptors(&rocksdb::Options::default(), data_dir, families)
        .expect("open the stopped node's data")
}

/// Marks a stopped node's data as `version` (what a release of that format left).
fn mark_format(db: &rocksdb::DB, version: u32) {
    let meta = db.cf_handle("meta").expect("meta");
    db.put_cf(meta, b"format_version", version.to_be_bytes())
        .expect("format");
}

/// Makes a stopped node's data look like an earlier release's (format 2): no `records`
/// column family content, format version 2.
fn downgrade_to_format_2(data_dir: &Path) {
    let db = open_stopped(data_dir);
    let cf = db.cf_handle("records").expect("records");
    let stored = db.iterator_cf(cf, rocksdb::IteratorMode::Start).count();
    assert!(stored >= 5, "the node stored its records ({stored})");
    db.delete_range_cf(cf, [0u8; 20], [0xffu8; 20])
        .expect("drop the records");
    mark_format(&db, 2);
    db.flush_cf(cf).expect("flush");
    assert_eq!(db.iterator_cf(cf, rocksdb::IteratorMode::Start).count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_of_format_2_is_migrated_and_keeps_every_answer() {
    let cluster = Cluster::start(1);
    cluster.wait_leaders().await;
    let answered = history(&cluster).await;
    cluster.kill(1);
    downgrade_to_format_2(&cluster.nodes[0].data_dir);
    cluster.start_node(1);
    cluster.wait_leaders().await;
    check(&cluster, &answered).await;
    let log = cluster.log(1);
    assert!(
        log.contains("data migrated: transfer records moved to the records column family"),
        "{log}"
    );
}

/// Formats 3 (before holds), 4 (before account lifecycle), 5 (before annotations) and 6
/// (before annotated accounts) are marked as format 7 without rebuilding anything and keep
/// every answer; a format newer than the binary reads is refused with a clear message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_of_formats_3_to_6_is_marked_and_a_newer_format_is_refused() {
    let cluster = Cluster::start(1);
    cluster.wait_leaders().await;
    let answered = history(&cluster).await;
    for (version, marks) in [(3, 1), (4, 2), (5, 3), (6, 4)] {
        cluster.kill(1);
        mark_format(&open_stopped(&cluster.nodes[0].data_dir), version);
        cluster.start_node(1);
        cluster.wait_leaders().await;
        check(&cluster, &answered).await;
        let log = cluster.log(1);
        assert_eq!(
            log.matches("data format marked as the current one").count(),
            marks,
            "format {version}: {log}"
        );
        assert!(!log.contains("transfer records moved"), "{log}");
    }

    cluster.kill(1);
    mark_format(&open_stopped(&cluster.nodes[0].data_dir), 8);
    cluster.start_node(1);
    let status = cluster.wait_exit(1).await;
    assert!(!status.success());
    let log = cluster.log(1);
    assert!(
        log.contains("data format version 8: this binary reads version 7"),
        "{log}"
    );
}
