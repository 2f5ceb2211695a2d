//! OpenAccounts: bulk opening over one stream per partition leader, each item answered like
//! the unary OpenAccount (success, the same definite errors; a follower forwards the item to
//! its leader).

use std::collections::BTreeMap;

use proto::v1::{OpenAccountRequest, OpenAccountResult};
use tokio_stream::StreamExt as _;
use tonic::Code;

use testkit::{Cluster, accounts_in};

fn open(account_id: &str, currency: &str, allow_negative_balance: bool) -> OpenAccountRequest {
    OpenAccountRequest {
        account_id: account_id.into(),
        currency: currency.into(),
        allow_negative_balance,
        ..Default::default()
    }
}

/// Sends `requests` over one OpenAccounts stream to `node`; the results, one per request.
async fn open_all(
    cluster: &Cluster,
    node: u64,
    requests: Vec<OpenAccountRequest>,
) -> Vec<OpenAccountResult> {
    let count = requests.len();
    let mut results = cluster
        .wallet(node)
        .await
        .open_accounts(tokio_stream::iter(requests))
        .await
        .expect("OpenAccounts")
        .into_inner();
    let mut out = Vec::with_capacity(count);
    while let Some(result) = results.next().await {
        out.push(result.expect("result"));
    }
    assert_eq!(out.len(), count, "a result per request");
    out
}

/// (status, code, reason) of a result, for comparisons.
fn verdict(result: &OpenAccountResult) -> (String, i32, String) {
    let (code, reason) = result
        .error
        .as_ref()
        .map_or((0, String::new()), |e| (e.code, e.reason.clone()));
    (result.status.clone(), code, reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_accounts_opens_each_partitions_accounts_on_its_leader() {
    const PER_PARTITION: usize = 300;
    let cluster = Cluster::start(3);
    let leaders = cluster.wait_leaders().await;
    let partitions = leaders.len() as u32;

    // Accounts grouped by partition: each partition's go to its leader in one stream.
    let by_partition: BTreeMap<u32, Vec<String>> = (0..partitions)
        .map(|p| (p, accounts_in(p, partitions, "bulk", PER_PARTITION)))
        .collect();
    let streams = by_partition.iter().map(|(&partition, ids)| {
        let requests = ids
            .iter()
            .enumerate()
            .map(|(n, id)| open(id, "USD", n == 0))
            .collect();
        open_all(&cluster, leaders[partition as usize], requests)
    });
    for results in futures::future::join_all(streams).await {
        for result in results {
            assert_eq!(result.status, "success", "{result:?}");
            let account = result.account.expect("an account on success");
            assert_eq!(
                (
                    account.account_id.as_str(),
                    account.balance.as_str(),
                    account.balance_minor
                ),
                (result.account_id.as_str(), "0.00", 0)
            );
            assert!(result.error.is_none());
        }
    }

    // Mixed items in one stream: a retry with the same parameters succeeds, other
    // parameters conflict, bad input is refused per item; the stream goes on after each.
    let (&partition, ids) = by_partition.iter().next().expect("a partition");
    let leader = leaders[partition as usize];
    let fresh = accounts_in(partition, partitions, "bulk-late", 1).remove(0);
    let mixed = vec![
        open(&ids[1], "USD", false),
        open(&ids[1], "EUR", false),
        open(&ids[0], "USD", false),
        open("", "USD", false),
        open("has space", "USD", false),
        open(&fresh, "XAU", false),
        open(&fresh, "usd", false),
        open(&fresh, "JPY", false),
    ];
    let results: BTreeMap<(String, usize), (String, i32, String)> = {
        let answers = open_all(&cluster, leader, mixed.clone()).await;
        // Results may come in any order; match them to the requests by id, in order.
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        answers
            .iter()
            .map(|result| {
                let n = seen.entry(result.account_id.clone()).or_default();
                *n += 1;
                ((result.account_id.clone(), *n), verdict(result))
            })
            .collect()
    };
    let success = || ("success".to_owned(), 0, String::new());
    let rejected = |code: Code, reason: &str| ("rejected".to_owned(), code as i32, reason.into());
    let conflict = rejected(Code::AlreadyExists, "ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS");
    // The two items on ids[1] and the three on `fresh` may be decided in either order within
    // their id; compare them as multisets.
    let of = |id: &str| -> Vec<(String, i32, String)> {
        let mut v: Vec<_> = results
            .iter()
            .filter(|((key, _), _)| key == id)
            .map(|(_, verdict)| verdict.clone())
            .collect();
        v.sort();
        v
    };
    let mut expected_retry = vec![success(), conflict.clone()];
    expected_retry.sort();
    assert_eq!(of(&ids[1]), expected_retry, "retry and conflict");
    assert_eq!(
        of(&ids[0]),
        vec![conflict.clone()],
        "an issuer reopened as ordinary"
    );
    assert_eq!(
        of(""),
        vec![rejected(Code::InvalidArgument, "INVALID_ACCOUNT_ID")]
    );
    assert_eq!(
        of("has space"),
        vec![rejected(Code::InvalidArgument, "INVALID_ACCOUNT_ID")]
    );
    let fresh_verdicts = of(&fresh);
    assert_eq!(
        fresh_verdicts
            .iter()
            .filter(|v| **v == rejected(Code::InvalidArgument, "UNKNOWN_CURRENCY"))
            .count(),
        2,
        "{fresh_verdicts:?}"
    );
    assert!(fresh_verdicts.contains(&success()), "{fresh_verdicts:?}");

    // A follower forwards each item to its partition's leader: the account is opened, and
    // the item's answer is the leader's, the account included; a forwarded duplicate with
    // other parameters is refused with the leader's definite error.
    let follower = (1..=3).find(|&node| node != leader).expect("a follower");
    let elsewhere = accounts_in(partition, partitions, "bulk-follower", 1).remove(0);
    let on_follower = open_all(
        &cluster,
        follower,
        vec![
            open(&elsewhere, "USD", false),
            open(&elsewhere, "EUR", false),
        ],
    )
    .await;
    let mut verdicts: Vec<_> = on_follower.iter().map(verdict).collect();
    verdicts.sort();
    assert_eq!(verdicts, [conflict.clone(), success()], "{on_follower:?}");
    // Whichever of the two the leader decided first is the account.
    let opened = on_follower
        .iter()
        .find_map(|result| result.account.as_ref())
        .expect("the opened account");
    assert_eq!(opened.account_id, elsewhere);
    let stored = cluster.account(&elsewhere).await.expect("opened");
    assert_eq!(stored.currency, opened.currency);

    // Every replica holds every account the streams opened, as opened.
    cluster.wait_replicas_agree().await;
    for node in 1..=3 {
        for ids in by_partition.values() {
            for (n, id) in ids.iter().enumerate().step_by(37) {
                let account = cluster.account_on(node, id).await.expect("opened");
                assert_eq!(
                    (account.currency.as_str(), account.allow_negative_balance),
                    ("USD", n == 0),
                    "{id} on node {node}"
                );
            }
        }
        let late = cluster.account_on(node, &fresh).await.expect("fresh");
        assert_eq!(late.currency, "JPY");
    }
}
