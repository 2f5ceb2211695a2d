//! A transfer's reference and metadata on a real cluster: sent within a partition (through a
//! node that forwards it) and across partitions, on a hold and its capture; returned by
//! GetTransfer; a retry must carry the same ones; values over the limits are refused with
//! their reasons and change nothing; everything survives a restart of every node, and the
//! replicas agree.

use std::collections::BTreeMap;

use proto::v1::{
    AuthorizeTransferRequest, CaptureTransferRequest, TransferRequest, TransferStatus,
};
use testkit::{reason, transfer_request};
use tonic::Code;

use crate::{Spread, id, refused};

fn metadata(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
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
    let too_many: Vec<(String, String)> =
        (0..17).map(|n| (format!("k{n}"), "v".to_owned())).collect();
    let too_many: Vec<(&str, &str)> = too_many
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
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
