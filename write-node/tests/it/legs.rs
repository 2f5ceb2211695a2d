//! Multi-leg transfers on a real cluster: every leg moves or none does, through a node that
//! forwards the call and on the leader; a retry answers the original; refusals are recorded
//! with the leg at fault and move nothing; bad input is refused at the edge with its reason
//! and leg; GetTransfer shows the legs on every node; everything survives a restart of every
//! node, and the replicas agree. Sets across partitions, step by step: every leg or none,
//! a part's refusal refunding the others, a retry answering the original.

use std::collections::BTreeMap;

use proto::v1::{
    FreezeAccountRequest, GetTransferRequest, TransferLeg, TransferLegsRequest, TransferStatus,
};
use testkit::reason;
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::{Spread, balances_on, id, refused};

fn leg(from: &str, to: &str, amount: &str) -> TransferLeg {
    TransferLeg {
        from_account: from.into(),
        to_account: to.into(),
        amount: amount.into(),
        currency: "USD".into(),
    }
}

fn legs_request(transaction_id: &str, legs: Vec<TransferLeg>) -> TransferLegsRequest {
    TransferLegsRequest {
        transaction_id: transaction_id.into(),
        legs,
        ..Default::default()
    }
}

/// The ErrorInfo metadata `leg` of a refusal.
fn leg_of(status: &tonic::Status) -> Option<String> {
    status
        .get_details_error_info()
        .and_then(|info| info.metadata.get("leg").cloned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_leg_transfer_moves_every_leg_or_none() {
    let spread = Spread::start("legs").await;
    let cluster = &spread.cluster;
    let (a, b) = (spread.a.clone(), spread.b.clone());
    // A fourth account in a and b's partition, opened empty.
    let d = testkit::accounts_in(0, spread.partitions, "legs-d", 1).remove(0);
    cluster
        .open_account(&d, "USD", false)
        .await
        .expect("open d");
    let accounts = [a.as_str(), b.as_str(), d.as_str()];
    let mut forwarded = cluster.wallet(spread.follower()).await;
    let mut at_leader = cluster.wallet(spread.leader()).await;

    // Through a follower, which forwards it: d passes on in one leg what it gets in another.
    let paid = id();
    let mut request = legs_request(
        &paid,
        vec![
            leg(&a, &d, "30.00"),
            leg(&b, &d, "20.00"),
            leg(&d, &b, "45.00"),
            leg(&a, &b, "0.01"),
        ],
    );
    request.reference = "payroll-12".into();
    request.metadata = BTreeMap::from([("batch".to_owned(), "7".to_owned())]);
    let first = forwarded
        .transfer_legs(request.clone())
        .await
        .expect("legs")
        .into_inner();
    assert_eq!(first.status, "success");
    assert!(!first.replayed);
    let moved = BTreeMap::from([(a.clone(), 6_999), (b.clone(), 12_501), (d.clone(), 500)]);
    for node in 1..=3 {
        assert_eq!(balances_on(cluster, node, &accounts).await, moved);
    }

    // A retry answers the original, with the same token, and moves nothing.
    let again = at_leader
        .transfer_legs(request.clone())
        .await
        .expect("retry")
        .into_inner();
    assert!(again.replayed);
    assert_eq!(again.consistency_token, first.consistency_token);
    assert_eq!(balances_on(cluster, 1, &accounts).await, moved);

    // GetTransfer shows the set on every node: its legs, no single from/to/amount.
    for node in 1..=3 {
        let shown = cluster
            .wallet(node)
            .await
            .get_transfer(GetTransferRequest {
                transaction_id: paid.clone(),
            })
            .await
            .expect("get")
            .into_inner()
            .transfer
            .expect("transfer");
        assert_eq!(shown.status(), TransferStatus::Completed);
        assert_eq!(shown.legs, request.legs);
        assert_eq!(
            (shown.from_account.as_str(), shown.amount.as_str()),
            ("", "")
        );
        assert_eq!(
            (shown.reference.as_str(), shown.currency.as_str()),
            ("payroll-12", "USD")
        );
        assert_eq!(shown.consistency_token, first.consistency_token);
    }

    // The id is taken: other legs, or a transfer under it, reuse it.
    refused(
        at_leader
            .transfer_legs(legs_request(&paid, vec![leg(&a, &d, "30.00")]))
            .await,
        Code::AlreadyExists,
        "TRANSACTION_ID_REUSED",
    );
    refused(
        cluster
            .transfer(&testkit::transfer_request(&paid, &a, &d, "30.00", "USD"))
            .await,
        Code::AlreadyExists,
        "TRANSACTION_ID_REUSED",
    );

    // A refusal is recorded with the leg at fault (here a's first debit: a has 69.99 and
    // its legs take 70.00 together) and moves nothing, not even the covered legs.
    let short = id();
    let short_request = legs_request(
        &short,
        vec![
            leg(&b, &d, "1.00"),
            leg(&a, &d, "40.00"),
            leg(&a, &b, "30.00"),
        ],
    );
    let status = forwarded
        .transfer_legs(short_request.clone())
        .await
        .expect_err("refused");
    assert_eq!(
        (status.code(), reason(&status).as_str(), leg_of(&status)),
        (
            Code::FailedPrecondition,
            "INSUFFICIENT_FUNDS",
            Some("1".to_owned())
        ),
        "{status:?}"
    );
    assert_eq!(balances_on(cluster, 1, &accounts).await, moved);
    let shown = cluster.get_transfer(&short).await.expect("recorded");
    assert_eq!(
        (
            shown.status(),
            shown.reject_reason.as_str(),
            shown.rejected_leg
        ),
        (TransferStatus::Rejected, "INSUFFICIENT_FUNDS", Some(1))
    );
    // Funding a afterwards does not change the recorded answer.
    cluster
        .transfer(&testkit::transfer_request(
            &id(),
            "issuer",
            &a,
            "100.00",
            "USD",
        ))
        .await
        .expect("fund");
    let replayed = at_leader
        .transfer_legs(short_request)
        .await
        .expect_err("still refused");
    assert_eq!(
        (reason(&replayed).as_str(), leg_of(&replayed)),
        ("INSUFFICIENT_FUNDS", Some("1".to_owned()))
    );
    let replayed_flag = replayed
        .get_details_error_info()
        .and_then(|info| info.metadata.get("replayed").cloned());
    assert_eq!(replayed_flag.as_deref(), Some("true"));

    // A frozen account refuses its leg like a transfer would.
    cluster
        .on_leader(|mut client| {
            let account_id = d.clone();
            async move {
                client
                    .freeze_account(FreezeAccountRequest { account_id })
                    .await
            }
        })
        .await
        .expect("freeze");
    let frozen = forwarded
        .transfer_legs(legs_request(
            &id(),
            vec![leg(&a, &b, "1.00"), leg(&b, &d, "1.00")],
        ))
        .await
        .expect_err("frozen");
    assert_eq!(
        (reason(&frozen).as_str(), leg_of(&frozen)),
        ("ACCOUNT_FROZEN", Some("1".to_owned()))
    );

    // Bad input: refused at the edge with the reason and the leg, nothing recorded.
    let mut eur = leg(&b, &a, "1.00");
    eur.currency = "EUR".into();
    let too_many: Vec<TransferLeg> = (0..65).map(|n| leg(&a, &format!("x{n}"), "1.00")).collect();
    let cases = [
        (vec![], Code::InvalidArgument, "LEGS_OUT_OF_RANGE", None),
        (too_many, Code::InvalidArgument, "LEGS_OUT_OF_RANGE", None),
        (
            vec![
                leg(&a, &b, "1.00"),
                leg(&b, &d, "1.00"),
                leg(&a, &b, "2.00"),
            ],
            Code::InvalidArgument,
            "REPEATED_LEG",
            Some("2"),
        ),
        (
            vec![leg(&a, &b, "1.00"), eur],
            Code::InvalidArgument,
            "MIXED_CURRENCIES",
            Some("1"),
        ),
        (
            vec![leg(&a, &b, "1.00"), leg(&b, &b, "1.00")],
            Code::InvalidArgument,
            "SAME_ACCOUNT",
            Some("1"),
        ),
        (
            vec![leg(&a, &b, "1.001")],
            Code::InvalidArgument,
            "INVALID_AMOUNT",
            Some("0"),
        ),
        (
            vec![leg(&a, &b, "1.00"), leg(&a, "", "1.00")],
            Code::InvalidArgument,
            "INVALID_ACCOUNT_ID",
            Some("1"),
        ),
    ];
    for (legs, code, expected, leg_index) in cases {
        let transaction_id = id();
        let status = forwarded
            .transfer_legs(legs_request(&transaction_id, legs))
            .await
            .expect_err("refused");
        assert_eq!(
            (status.code(), reason(&status).as_str(), leg_of(&status)),
            (code, expected, leg_index.map(str::to_owned)),
            "{status:?}"
        );
        if code == Code::InvalidArgument {
            let field = status
                .get_details_bad_request()
                .and_then(|bad| bad.field_violations.first().map(|v| v.field.clone()));
            assert_eq!(field.as_deref(), Some("legs"), "{status:?}");
        }
        refused(
            cluster.get_transfer(&transaction_id).await,
            Code::NotFound,
            "TRANSFER_NOT_FOUND",
        );
    }
    refused(
        at_leader
            .transfer_legs(legs_request("not-a-uuid", vec![leg(&a, &b, "1.00")]))
            .await,
        Code::InvalidArgument,
        "INVALID_TRANSACTION_ID",
    );
    let after_funding = balances_on(cluster, 1, &accounts).await;

    // Everything survives a restart of every node (records on disk), and replicas agree.
    for node in 1..=3 {
        cluster.kill(node);
    }
    for node in 1..=3 {
        cluster.start_node(node);
    }
    cluster.wait_leaders().await;
    let retried = cluster
        .on_leader(|mut client| {
            let request = request.clone();
            async move { client.transfer_legs(request).await }
        })
        .await
        .expect("retry after restart")
        .into_inner();
    assert!(retried.replayed);
    assert_eq!(
        cluster.get_transfer(&paid).await.unwrap().legs,
        request.legs
    );
    for node in 1..=3 {
        assert_eq!(balances_on(cluster, node, &accounts).await, after_funding);
    }
    cluster.wait_replicas_agree().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_across_partitions_moves_every_leg_or_none() {
    let spread = Spread::start("legs-across").await;
    let cluster = &spread.cluster;
    let (a, b, c) = (spread.a.clone(), spread.b.clone(), spread.c.clone());
    let accounts = [a.as_str(), b.as_str(), c.as_str()];
    let mut forwarded = cluster.wallet(spread.follower()).await;

    // a (partition 0, the home) pays c (another partition, another leader) 30.00; c passes
    // 10.00 of it on to b, in the same set.
    let paid = id();
    let request = legs_request(&paid, vec![leg(&a, &c, "30.00"), leg(&c, &b, "10.00")]);
    let first = forwarded
        .transfer_legs(request.clone())
        .await
        .expect("legs")
        .into_inner();
    assert_eq!(first.status, "success");
    assert!(!first.replayed);
    // The token names a position in both partitions: reads anywhere see every change.
    let named: std::collections::BTreeSet<u32> = proto::token::parse(&first.consistency_token)
        .expect("token")
        .into_iter()
        .map(|(partition, _)| partition)
        .collect();
    assert_eq!(named, [0, spread.q].into());
    let moved = BTreeMap::from([(a.clone(), 7_000), (b.clone(), 11_000), (c.clone(), 12_000)]);
    for node in 1..=3 {
        assert_eq!(balances_on(cluster, node, &accounts).await, moved);
    }

    // A retry answers the original and moves nothing; GetTransfer shows the set, once, from
    // its home.
    let again = cluster
        .wallet(spread.leader())
        .await
        .transfer_legs(request.clone())
        .await
        .expect("retry")
        .into_inner();
    assert!(again.replayed);
    assert_eq!(balances_on(cluster, 1, &accounts).await, moved);
    for node in 1..=3 {
        let shown = cluster
            .wallet(node)
            .await
            .get_transfer(GetTransferRequest {
                transaction_id: paid.clone(),
            })
            .await
            .expect("get")
            .into_inner()
            .transfer
            .expect("transfer");
        assert_eq!(shown.status(), TransferStatus::Completed);
        assert_eq!(shown.legs, request.legs);
    }

    // c frozen: its part refuses, and a's debit on the home comes back; the rejection names
    // c's first leg and is recorded (a retry is answered with it).
    cluster
        .on_leader(|mut client| {
            let account_id = c.clone();
            async move {
                client
                    .freeze_account(FreezeAccountRequest { account_id })
                    .await
            }
        })
        .await
        .expect("freeze");
    let refused_id = id();
    let refused_request = legs_request(&refused_id, vec![leg(&a, &b, "5.00"), leg(&a, &c, "5.00")]);
    let frozen = forwarded
        .transfer_legs(refused_request.clone())
        .await
        .expect_err("frozen");
    assert_eq!(
        (frozen.code(), reason(&frozen).as_str(), leg_of(&frozen)),
        (
            Code::FailedPrecondition,
            "ACCOUNT_FROZEN",
            Some("1".to_owned())
        )
    );
    for node in 1..=3 {
        assert_eq!(balances_on(cluster, node, &accounts).await, moved);
    }
    let shown = cluster.get_transfer(&refused_id).await.expect("get");
    assert_eq!(shown.status(), TransferStatus::Rejected);
    assert_eq!(shown.rejected_leg, Some(1));
    let replayed = forwarded
        .transfer_legs(refused_request)
        .await
        .expect_err("still refused");
    assert_eq!(reason(&replayed), "ACCOUNT_FROZEN");

    // Everything survives a restart of every node, and the replicas agree.
    for node in 1..=3 {
        cluster.kill(node);
    }
    for node in 1..=3 {
        cluster.start_node(node);
    }
    cluster.wait_leaders().await;
    let retried = cluster
        .on_leader(|mut client| {
            let request = request.clone();
            async move { client.transfer_legs(request).await }
        })
        .await
        .expect("retry after restart")
        .into_inner();
    assert!(retried.replayed);
    for node in 1..=3 {
        assert_eq!(balances_on(cluster, node, &accounts).await, moved);
    }
    cluster.wait_replicas_agree().await;
}

/// A multi-leg transfer through walletctl (`--json`): done, read back with its legs, and a
/// refusal that names its leg.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walletctl_moves_a_multi_leg_transfer() {
    use crate::audit::walletctl_on_cluster;
    let cluster = testkit::Cluster::start(3);
    let partitions = cluster.wait_leaders().await.len() as u32;
    let mut accounts = testkit::accounts_in(0, partitions, "ctl-legs", 3);
    let (alice, bob, carol) = (accounts.remove(0), accounts.remove(0), accounts.remove(0));
    let dave = testkit::accounts_in(partitions - 1, partitions, "ctl-legs", 1).remove(0);
    cluster
        .open_funded_usd(&[&alice, &bob, &carol, &dave], "10.00")
        .await;
    let endpoints = cluster.write_nodes();
    let legs = [
        "transfer",
        "legs",
        "--leg",
        &alice,
        &bob,
        "4.00",
        "--leg",
        &alice,
        &carol,
        "1.50",
        "--currency",
        "USD",
        "--reference",
        "split",
    ];
    let (code, done) = walletctl_on_cluster(&legs, &endpoints);
    assert_eq!(code, 0, "{done}");
    assert_eq!(done["status"], "success", "{done}");
    let id = done["transaction_id"].as_str().expect("id").to_owned();
    let (code, shown) = walletctl_on_cluster(&["transfer", "get", &id], &endpoints);
    assert_eq!(code, 0, "{shown}");
    assert_eq!(shown["transfer"]["status"], "completed");
    assert_eq!(shown["transfer"]["reference"], "split");
    assert_eq!(
        shown["transfer"]["legs"],
        serde_json::json!([
            {"from_account": alice, "to_account": bob, "amount": "4.00"},
            {"from_account": alice, "to_account": carol, "amount": "1.50"},
        ])
    );
    assert_eq!(cluster.account(&alice).await.unwrap().balance, "4.50");

    let short = [
        "transfer",
        "legs",
        "--leg",
        &bob,
        &carol,
        "1.00",
        "--leg",
        &carol,
        &alice,
        "99.00",
        "--currency",
        "USD",
    ];
    let (code, refused) = walletctl_on_cluster(&short, &endpoints);
    assert_ne!(code, 0, "{refused}");
    assert_eq!(
        refused["error"]["reason"], "INSUFFICIENT_FUNDS",
        "{refused}"
    );
    assert_eq!(refused["error"]["leg"], 1, "{refused}");
    assert_eq!(cluster.account(&bob).await.unwrap().balance, "14.00");

    // A set across partitions: alice pays dave (another partition), dave passes some on.
    let across = [
        "transfer",
        "legs",
        "--leg",
        &alice,
        &dave,
        "2.00",
        "--leg",
        &dave,
        &carol,
        "0.50",
        "--currency",
        "USD",
    ];
    let (code, done) = walletctl_on_cluster(&across, &endpoints);
    assert_eq!(code, 0, "{done}");
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(cluster.account(&alice).await.unwrap().balance, "2.50");
    assert_eq!(cluster.account(&dave).await.unwrap().balance, "11.50");
    assert_eq!(cluster.account(&carol).await.unwrap().balance, "12.00");

    // A set counts once in the transfer metrics (across partitions: on its home, when
    // decided): four fundings and the two sets committed, the refused set rejected, on every
    // replica.
    let deadline = std::time::Instant::now() + testkit::WAIT_MAX;
    for node in &cluster.nodes {
        loop {
            let scrape = testkit::metrics::scrape(node.metrics_port);
            let counted = (
                testkit::metrics::sum(&scrape, "wallet_transfers_committed_total", &[]),
                testkit::metrics::sum(&scrape, "wallet_transfers_rejected_total", &[]),
            );
            if counted == (6.0, 1.0) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "node {}: {counted:?}",
                node.id
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// A follower that catches up past compaction (a snapshot, then the records rebuilt from the
/// events) answers for a multi-leg transfer decided while it was away: GetTransfer on it
/// shows the legs. In a cluster of one partition any set is within it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_catches_up_knows_the_multi_leg_transfers_it_missed() {
    let cluster = testkit::Cluster::start_partitioned(
        3,
        1,
        &[
            "--snapshot-interval-entries",
            "20",
            "--log-retain-entries",
            "5",
        ],
    );
    let leader = cluster.wait_leader().await;
    cluster
        .open_funded_usd(&["payer", "payee-1", "payee-2"], "100.00")
        .await;
    let follower = (1..=3).find(|&node| node != leader).expect("a follower");
    cluster.wait_replicas_agree().await;
    cluster.kill(follower);
    let paid = id();
    let request = legs_request(
        &paid,
        vec![
            leg("payer", "payee-1", "7.00"),
            leg("payer", "payee-2", "3.00"),
        ],
    );
    cluster
        .on_leader(|mut client| {
            let request = request.clone();
            async move { client.transfer_legs(request).await }
        })
        .await
        .expect("legs while the follower is away");
    for _ in 0..60 {
        cluster
            .transfer(&testkit::transfer_request(
                &id(),
                "payee-1",
                "payer",
                "0.01",
                "USD",
            ))
            .await
            .expect("transfer");
    }
    cluster.start_node(follower);
    cluster.wait_replicas_agree().await;
    let shown = cluster
        .wallet(follower)
        .await
        .get_transfer(GetTransferRequest {
            transaction_id: paid.clone(),
        })
        .await
        .expect("get on the follower")
        .into_inner()
        .transfer
        .expect("transfer");
    assert_eq!(
        (shown.status(), shown.legs),
        (TransferStatus::Completed, request.legs)
    );
    if !cluster.log(follower).contains("snapshot installed") {
        eprintln!("the follower caught up from the log this time");
    }
}

/// Sets across partitions from three clients while the leader of a home partition and then
/// of another partition are killed and restarted: every call ends with a definite answer
/// (retried with its id until it gets one), nothing stays in flight, balances are the fold of
/// the completed sets (each all or none), GetTransfer agrees with every answer, and the
/// replicas agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_across_partitions_finish_through_leader_failovers() {
    use std::sync::Arc;
    use std::time::Duration;

    let cluster = Arc::new(testkit::Cluster::start(3));
    let partitions = cluster.wait_leaders().await.len() as u32;
    let accounts: Vec<String> = (0..partitions)
        .flat_map(|partition| testkit::accounts_in(partition, partitions, "legs-fo", 2))
        .collect();
    let names: Vec<&str> = accounts.iter().map(String::as_str).collect();
    cluster.open_funded_usd(&names, "100.00").await;
    let accounts = Arc::new(accounts);

    let mut workers = Vec::new();
    for worker in 0..3_u64 {
        let (cluster, accounts) = (cluster.clone(), accounts.clone());
        workers.push(tokio::spawn(async move {
            let mut state = 0x2545_f491_4f6c_dd1d_u64 ^ (worker + 1);
            let mut next = move || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            };
            let mut outcomes = Vec::new();
            for _ in 0..25 {
                let pick = |n: u64| accounts[(n % accounts.len() as u64) as usize].clone();
                let (x, y) = (pick(next()), pick(next()));
                let z = pick(next());
                if x == y || y == z {
                    continue;
                }
                let request = legs_request(
                    &id(),
                    vec![
                        leg(&x, &y, &format!("{}.00", 1 + next() % 60)),
                        leg(&y, &z, &format!("{}.00", 1 + next() % 60)),
                    ],
                );
                let answer = cluster
                    .on_leader(|mut client| {
                        let request = request.clone();
                        async move { client.transfer_legs(request).await }
                    })
                    .await;
                let completed = match answer {
                    Ok(_) => true,
                    Err(status) if status.code() == Code::FailedPrecondition => false,
                    Err(status) => panic!("a set without a definite answer: {status:?}"),
                };
                outcomes.push((request, completed));
            }
            outcomes
        }));
    }
    // Kill the leader of a home partition, restart it, then the leader of another one.
    for partition in [0, partitions - 1] {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let victim = cluster.wait_leaders().await[partition as usize];
        cluster.kill(victim);
        cluster.wait_leaders().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        cluster.start_node(victim);
    }
    let mut outcomes = Vec::new();
    for worker in workers {
        outcomes.extend(worker.await.expect("worker"));
    }
    cluster.wait_leaders().await;
    cluster.wait_no_in_flight().await;

    let mut expected: BTreeMap<String, i64> = accounts
        .iter()
        .map(|account| (account.clone(), 10_000))
        .collect();
    let cents = |amount: &str| amount.replace('.', "").parse::<i64>().expect("cents");
    let mut completed = 0;
    for (request, done) in &outcomes {
        let shown = cluster
            .get_transfer(&request.transaction_id)
            .await
            .expect("every answered set is recorded");
        let status = if *done {
            TransferStatus::Completed
        } else {
            TransferStatus::Rejected
        };
        assert_eq!(shown.status(), status, "{}", request.transaction_id);
        if *done {
            completed += 1;
            for leg in &request.legs {
                *expected.get_mut(&leg.from_account).expect("known") -= cents(&leg.amount);
                *expected.get_mut(&leg.to_account).expect("known") += cents(&leg.amount);
            }
        }
    }
    eprintln!("{completed} of {} sets completed", outcomes.len());
    assert!(completed > 0 && completed < outcomes.len());
    let mut balances = BTreeMap::new();
    for account in accounts.iter() {
        let balance = cluster
            .account(account)
            .await
            .expect("account")
            .balance_minor;
        balances.insert(account.clone(), balance);
    }
    assert_eq!(
        balances, expected,
        "balances are the fold of the completed sets"
    );
    cluster.wait_replicas_agree().await;
}
