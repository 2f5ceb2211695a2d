//! A transfer's reference and metadata on a real cluster: sent within a partition (through a
//! node that forwards it) and across partitions, on a hold and its capture; returned by
//! GetTransfer; a retry must carry the same ones; values over the limits are refused with
//! their reasons and change nothing; everything survives a restart of every node, and the
//! replicas agree.

use std::collections::BTreeMap;

use proto::v1::{
    Account, AuthorizeTransferRequest, CaptureTransferRequest, FreezeAccountRequest,
    OpenAccountRequest, TransferRequest, TransferStatus,
};
use testkit::{Cluster, reason, transfer_request};
use tonic::Code;

use crate::{Spread, id, refused};

fn metadata(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// Seventeen metadata entries: one more than the limit.
fn too_many_entries() -> Vec<(String, String)> {
    (0..17).map(|n| (format!("k{n}"), "v".to_owned())).collect()
}

fn pairs(entries: &[(String, String)]) -> Vec<(&str, &str)> {
    entries
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect()
}

fn annotated(
    transaction_id: &str,
    from: &str,
    to: &str,
    reference: &str,
    entries: &[(&str, &str)],
) -> TransferRequest {
    TransferRequest {
        reference: reference.into(),
        metadata: metadata(entries),
        ..transfer_request(transaction_id, from, to, "1.00", "USD")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn references_and_metadata_are_stored_returned_compared_and_bounded() {
    let spread = Spread::start("ann").await;
    let cluster = &spread.cluster;
    let (a, b, c) = (spread.a.clone(), spread.b.clone(), spread.c.clone());
    let follower = spread.follower();
    let mut forwarded = cluster.wallet(follower).await;
    let entries = [
        ("channel", "app"),
        ("note", "ünïcode ✓"),
        ("order:line", "3"),
    ];

    // Within a partition, forwarded by a follower; then across partitions.
    let local = id();
    forwarded
        .transfer(annotated(&local, &a, &b, "order-1042", &entries))
        .await
        .expect("local");
    let cross = id();
    cluster
        .transfer(&annotated(&cross, &a, &c, "invoice 7", &[("k", "v")]))
        .await
        .expect("cross");
    cluster.wait_no_in_flight().await;
    let shown = |transfer: &proto::v1::Transfer| {
        (
            transfer.status(),
            transfer.reference.clone(),
            transfer.metadata.clone(),
        )
    };
    assert_eq!(
        shown(&cluster.get_transfer(&local).await.unwrap()),
        (
            TransferStatus::Completed,
            "order-1042".to_owned(),
            metadata(&entries)
        )
    );
    assert_eq!(
        shown(&cluster.get_transfer(&cross).await.unwrap()),
        (
            TransferStatus::Completed,
            "invoice 7".to_owned(),
            metadata(&[("k", "v")])
        )
    );
    // A plain transfer shows none.
    let plain = id();
    cluster
        .transfer(&transfer_request(&plain, &b, &a, "1.00", "USD"))
        .await
        .expect("plain");
    let plain_shown = cluster.get_transfer(&plain).await.unwrap();
    assert_eq!(
        (plain_shown.reference.as_str(), plain_shown.metadata.len()),
        ("", 0)
    );

    // A retry with the same annotations is the same transfer; with others it reuses the id.
    let again = cluster
        .transfer(&annotated(&local, &a, &b, "order-1042", &entries))
        .await
        .expect("retry");
    assert!(again.replayed);
    let balances = (
        cluster.account(&a).await.unwrap().balance,
        cluster.account(&b).await.unwrap().balance,
    );
    for other in [
        annotated(&local, &a, &b, "order-1043", &entries),
        annotated(&local, &a, &b, "order-1042", &[("channel", "web")]),
        transfer_request(&local, &a, &b, "1.00", "USD"),
    ] {
        refused(
            cluster.transfer(&other).await,
            Code::AlreadyExists,
            "TRANSACTION_ID_REUSED",
        );
    }

    // Over the limits: refused at the edge with the reason and the field; nothing recorded.
    let too_many = too_many_entries();
    let too_many = pairs(&too_many);
    let long_value = "x".repeat(513);
    for (request, expected) in [
        (
            annotated(&id(), &a, &b, &"r".repeat(129), &[]),
            "INVALID_REFERENCE",
        ),
        (
            annotated(&id(), &a, &b, "line\nbreak", &[]),
            "INVALID_REFERENCE",
        ),
        (annotated(&id(), &a, &b, "", &too_many), "INVALID_METADATA"),
        (
            annotated(&id(), &a, &b, "", &[("a key", "v")]),
            "INVALID_METADATA",
        ),
        (
            annotated(&id(), &a, &b, "", &[("k", &long_value)]),
            "INVALID_METADATA",
        ),
        (
            annotated(&id(), &a, &c, "", &[("", "v")]),
            "INVALID_METADATA",
        ),
    ] {
        let transaction_id = request.transaction_id.clone();
        let status = forwarded.transfer(request).await.expect_err("refused");
        assert_eq!(
            (status.code(), reason(&status).as_str()),
            (Code::InvalidArgument, expected),
            "{status:?}"
        );
        refused(
            cluster.get_transfer(&transaction_id).await,
            Code::NotFound,
            "TRANSFER_NOT_FOUND",
        );
    }
    assert_eq!(
        (
            cluster.account(&a).await.unwrap().balance,
            cluster.account(&b).await.unwrap().balance,
        ),
        balances
    );

    // A hold carries them from its authorization through its capture across partitions.
    let hold = id();
    let mut at_leader = cluster.wallet(spread.leader()).await;
    at_leader
        .authorize_transfer(AuthorizeTransferRequest {
            transaction_id: hold.clone(),
            from_account: a.clone(),
            to_account: c.clone(),
            amount: "5.00".into(),
            currency: "USD".into(),
            timeout: Some(prost_types::Duration {
                seconds: 60,
                nanos: 0,
            }),
            reference: "booking-9".into(),
            metadata: metadata(&[("hotel", "2 nights")]),
        })
        .await
        .expect("authorize");
    at_leader
        .capture_transfer(CaptureTransferRequest {
            transaction_id: hold.clone(),
            from_account: a.clone(),
            amount: "4.00".into(),
        })
        .await
        .expect("capture");
    cluster.wait_no_in_flight().await;
    let captured = cluster.get_transfer(&hold).await.unwrap();
    assert_eq!(
        shown(&captured),
        (
            TransferStatus::Completed,
            "booking-9".to_owned(),
            metadata(&[("hotel", "2 nights")])
        )
    );
    assert_eq!(cluster.account(&c).await.unwrap().balance, "105.00");

    // Everything survives a restart of every node (records on disk, replay), and the
    // replicas agree.
    for node in 1..=3 {
        cluster.kill(node);
    }
    for node in 1..=3 {
        cluster.start_node(node);
    }
    cluster.wait_leaders().await;
    assert_eq!(
        shown(&cluster.get_transfer(&local).await.unwrap()).2,
        metadata(&entries)
    );
    assert_eq!(
        shown(&cluster.get_transfer(&hold).await.unwrap()).1,
        "booking-9"
    );
    let retried = cluster
        .transfer(&annotated(&cross, &a, &c, "invoice 7", &[("k", "v")]))
        .await
        .expect("retry after restart");
    assert!(retried.replayed);
    cluster.wait_replicas_agree().await;
}

fn open_request(account_id: &str, reference: &str, entries: &[(&str, &str)]) -> OpenAccountRequest {
    OpenAccountRequest {
        account_id: account_id.into(),
        currency: "USD".into(),
        allow_negative_balance: false,
        reference: reference.into(),
        metadata: metadata(entries),
    }
}

/// An account's reference and metadata on a real cluster: set at opening (through a node
/// that forwards it, and over the OpenAccounts stream), returned by OpenAccount, GetAccount
/// on every node and the lifecycle calls; a re-open must carry the same ones; values over
/// the limits are refused with their reasons and open nothing; everything survives a restart
/// of every node (a re-open is still compared), and the replicas agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_references_and_metadata_are_set_once_and_returned_by_every_read() {
    let spread = Spread::start("acc").await;
    let cluster = &spread.cluster;
    let mut forwarded = cluster.wallet(spread.follower()).await;
    let entries = [("tier", "gold"), ("region", "eu")];
    let [customer, streamed, plain] =
        ["cust", "bulk", "plain"].map(|name| format!("{}-{name}", spread.a));
    let shown = |account: &Account| (account.reference.clone(), account.metadata.clone());
    let expected = ("cust-42".to_owned(), metadata(&entries));

    let opened = forwarded
        .open_account(open_request(&customer, "cust-42", &entries))
        .await
        .expect("open")
        .into_inner()
        .account
        .expect("account");
    assert_eq!(shown(&opened), expected);
    let bulk = forwarded
        .open_accounts(tokio_stream::iter([open_request(
            &streamed,
            "",
            &[("source", "import")],
        )]))
        .await
        .expect("open accounts")
        .into_inner()
        .message()
        .await
        .expect("a result")
        .expect("one result");
    assert_eq!(bulk.status, "success", "{bulk:?}");
    assert_eq!(
        shown(bulk.account.as_ref().expect("account")),
        (String::new(), metadata(&[("source", "import")]))
    );
    cluster
        .open_account(&plain, "USD", false)
        .await
        .expect("plain");
    for node in 1..=3 {
        let read = cluster.account_on(node, &customer).await.expect("read");
        assert_eq!(shown(&read), expected, "node {node}");
        let read = cluster.account_on(node, &plain).await.expect("read");
        assert_eq!(shown(&read), Default::default(), "node {node}");
    }

    // The same open again is the account; other annotations, or none, are refused.
    let again = forwarded
        .open_account(open_request(&customer, "cust-42", &entries))
        .await
        .expect("re-open")
        .into_inner()
        .account
        .expect("account");
    assert_eq!(shown(&again), expected);
    for other in [
        open_request(&customer, "cust-42", &[("tier", "silver")]),
        open_request(&customer, "cust-43", &entries),
        open_request(&customer, "", &[]),
        open_request(&plain, "cust-42", &[]),
    ] {
        refused(
            forwarded.open_account(other).await,
            Code::AlreadyExists,
            "ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS",
        );
    }

    // Over the limits: refused at the edge with the reason; no account.
    let too_many = too_many_entries();
    let too_many = pairs(&too_many);
    for (n, (reference, entries, expected)) in [
        ("r".repeat(129), &[][..], "INVALID_REFERENCE"),
        ("tab\there".to_owned(), &[][..], "INVALID_REFERENCE"),
        (String::new(), &too_many[..], "INVALID_METADATA"),
        (String::new(), &[("bad key", "v")][..], "INVALID_METADATA"),
    ]
    .into_iter()
    .enumerate()
    {
        let account_id = format!("{}-bad-{n}", spread.a);
        let status = forwarded
            .open_account(open_request(&account_id, &reference, entries))
            .await
            .expect_err("refused");
        assert_eq!(
            (status.code(), reason(&status).as_str()),
            (Code::InvalidArgument, expected),
            "{status:?}"
        );
        refused(
            cluster.account(&account_id).await,
            Code::NotFound,
            "ACCOUNT_NOT_FOUND",
        );
    }

    // A lifecycle call answers with them too.
    let frozen = forwarded
        .freeze_account(FreezeAccountRequest {
            account_id: customer.clone(),
        })
        .await
        .expect("freeze")
        .into_inner()
        .account
        .expect("account");
    assert_eq!(shown(&frozen), expected);

    // Everything survives a restart of every node (the accounts column family, and the
    // hashes a re-open is compared with, from snapshots and replay); the replicas agree.
    for node in 1..=3 {
        cluster.kill(node);
    }
    for node in 1..=3 {
        cluster.start_node(node);
    }
    cluster.wait_leaders().await;
    for node in 1..=3 {
        let read = cluster.account_on(node, &customer).await.expect("read");
        assert_eq!(shown(&read), expected, "node {node} after the restart");
    }
    let mut any = cluster.wallet(1).await;
    refused(
        any.open_account(open_request(&customer, "cust-42", &[("tier", "silver")]))
            .await,
        Code::AlreadyExists,
        "ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS",
    );
    any.open_account(open_request(&streamed, "", &[("source", "import")]))
        .await
        .expect("re-open after the restart");
    cluster.wait_replicas_agree().await;
}

/// A follower away while an account is opened with a reference and the log is compacted
/// past the opening catches up (by snapshot, state format 7, rebuilding the `accounts`
/// column family from the fetched events; or from the log, whichever the leader sends) and
/// then answers GetAccount with the reference from its own disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_catches_up_learns_what_accounts_were_opened_with() {
    let cluster = Cluster::start_partitioned(
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
    cluster.open_funded_usd(&["payer"], "100.00").await;
    let follower = (1..=3).find(|&node| node != leader).expect("a follower");
    cluster.wait_replicas_agree().await;
    cluster.kill(follower);
    cluster
        .on_leader(|mut client| async move {
            client
                .open_account(open_request("cust", "cust-42", &[("tier", "gold")]))
                .await
        })
        .await
        .expect("open while the follower is away");
    for _ in 0..60 {
        cluster
            .transfer(&transfer_request(&id(), "payer", "cust", "0.01", "USD"))
            .await
            .expect("transfer");
    }
    cluster.start_node(follower);
    cluster.wait_replicas_agree().await;
    let read = cluster.account_on(follower, "cust").await.expect("read");
    assert_eq!(
        (read.reference.as_str(), read.metadata),
        ("cust-42", metadata(&[("tier", "gold")]))
    );
    if !cluster.log(follower).contains("snapshot installed") {
        eprintln!("the follower caught up from the log this time");
    }
}
