//! Holds on a real cluster: authorize, capture in part (within a partition and across),
//! void, expiry decided by the cluster, and the refusals, each with its documented code and
//! reason and nothing changed; every call goes through a node that does not lead the hold's
//! partition too (forwarded), and the replicas agree at the end.

use std::time::{Duration, Instant};

use proto::v1::{
    AuthorizeTransferRequest, CaptureTransferRequest, HoldResponse, TransferStatus,
    VoidTransferRequest,
};
use testkit::{Cluster, accounts_in, reason, transfer_request};
use tonic::Code;

use crate::{Spread, id, refused};

fn authorize(
    id: &str,
    from: &str,
    to: &str,
    amount: &str,
    timeout_ms: u64,
) -> AuthorizeTransferRequest {
    AuthorizeTransferRequest {
        transaction_id: id.into(),
        from_account: from.into(),
        to_account: to.into(),
        amount: amount.into(),
        currency: "USD".into(),
        timeout: Some(prost_types::Duration {
            seconds: (timeout_ms / 1_000) as i64,
            nanos: ((timeout_ms % 1_000) * 1_000_000) as i32,
        }),
        ..Default::default()
    }
}

fn capture(id: &str, from: &str, amount: &str) -> CaptureTransferRequest {
    CaptureTransferRequest {
        transaction_id: id.into(),
        from_account: from.into(),
        amount: amount.into(),
    }
}

fn void(id: &str, from: &str) -> VoidTransferRequest {
    VoidTransferRequest {
        transaction_id: id.into(),
        from_account: from.into(),
    }
}

/// (status, captured amount, replayed) of a hold step's answer.
fn verdict(response: &HoldResponse) -> (TransferStatus, String, bool) {
    let transfer = response.transfer.as_ref().expect("the hold");
    let hold = transfer.hold.as_ref().expect("hold info");
    (
        transfer.status(),
        hold.captured_amount.clone(),
        response.replayed,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_reserve_capture_void_and_expire_exactly_once() {
    let spread = Spread::start("hold").await;
    let (cluster, leader, other) = (&spread.cluster, spread.leader(), spread.follower());
    let (a, b, c) = (&spread.a, &spread.b, &spread.c);
    let nobody = accounts_in(spread.q, spread.partitions, "hold-nobody", 1).remove(0);
    let mut at_leader = cluster.wallet(leader).await;
    let mut forwarded = cluster.wallet(other).await;
    let account = async |id: &str| {
        let account = cluster.account(id).await.expect("account");
        (account.balance, account.held, account.available)
    };
    let usd = |text: &str| text.to_owned();

    // Authorized: the balance stays, the available amount drops, and a transfer can no
    // longer spend what is held.
    let h1 = id();
    let held = at_leader
        .authorize_transfer(authorize(&h1, a, b, "60.00", 60_000))
        .await
        .expect("authorize")
        .into_inner();
    let transfer = held.transfer.as_ref().unwrap();
    assert_eq!(transfer.status(), TransferStatus::Pending);
    assert!(transfer.hold.as_ref().unwrap().expires_at.is_some());
    assert!(!held.replayed);
    assert_eq!(
        account(a).await,
        (usd("100.00"), usd("60.00"), usd("40.00"))
    );
    let spend = cluster
        .transfer(&transfer_request(&id(), a, b, "50.00", "USD"))
        .await
        .expect_err("only 40.00 is available");
    assert_eq!(reason(&spend), "INSUFFICIENT_FUNDS");
    // A retry answers the original; other parameters under the id are a conflict, and so is
    // a transfer under a hold's id.
    let again = forwarded
        .authorize_transfer(authorize(&h1, a, b, "60.00", 60_000))
        .await
        .expect("retry")
        .into_inner();
    assert!(again.replayed);
    refused(
        forwarded
            .authorize_transfer(authorize(&h1, a, b, "61.00", 60_000))
            .await
            .map(tonic::Response::into_inner),
        Code::AlreadyExists,
        "TRANSACTION_ID_REUSED",
    );
    let reused = cluster
        .transfer(&transfer_request(&h1, a, b, "60.00", "USD"))
        .await
        .expect_err("a hold's id");
    assert_eq!(reason(&reused), "TRANSACTION_ID_REUSED");

    // Bad captures change nothing.
    let capture_here = async |request| {
        cluster
            .wallet(other)
            .await
            .capture_transfer(request)
            .await
            .map(tonic::Response::into_inner)
    };
    refused(
        capture_here(capture(&h1, a, "60.01")).await,
        Code::FailedPrecondition,
        "CAPTURE_EXCEEDS_HOLD",
    );
    refused(
        capture_here(capture(&h1, a, "1.001")).await,
        Code::InvalidArgument,
        "INVALID_AMOUNT",
    );
    refused(
        capture_here(capture(&h1, b, "1.00")).await,
        Code::NotFound,
        "HOLD_NOT_FOUND",
    );
    refused(
        capture_here(capture(&id(), a, "1.00")).await,
        Code::NotFound,
        "HOLD_NOT_FOUND",
    );
    refused(
        capture_here(capture("not-a-uuid", a, "")).await,
        Code::InvalidArgument,
        "INVALID_TRANSACTION_ID",
    );
    let plain = id();
    cluster
        .transfer(&transfer_request(&plain, a, b, "1.00", "USD"))
        .await
        .expect("a plain transfer");
    refused(
        capture_here(capture(&plain, a, "")).await,
        Code::FailedPrecondition,
        "NOT_A_HOLD",
    );
    let mut no_timeout = authorize(&id(), a, b, "1.00", 1);
    no_timeout.timeout = None;
    refused(
        forwarded
            .authorize_transfer(no_timeout)
            .await
            .map(tonic::Response::into_inner),
        Code::InvalidArgument,
        "HOLD_TIMEOUT_OUT_OF_RANGE",
    );
    assert_eq!(account(a).await, (usd("99.00"), usd("60.00"), usd("39.00")));

    // Captured in part, through a node that forwards it: 25.00 moves, the rest is free.
    let captured = capture_here(capture(&h1, a, "25.00"))
        .await
        .expect("capture");
    assert_eq!(
        verdict(&captured),
        (TransferStatus::Completed, usd("25.00"), false)
    );
    assert_eq!(account(a).await, (usd("74.00"), usd("0.00"), usd("74.00")));
    assert_eq!(account(b).await.0, usd("126.00"));
    let retried = capture_here(capture(&h1, a, "25.00")).await.expect("retry");
    assert_eq!(
        verdict(&retried),
        (TransferStatus::Completed, usd("25.00"), true)
    );
    refused(
        capture_here(capture(&h1, a, "30.00")).await,
        Code::FailedPrecondition,
        "HOLD_ALREADY_CAPTURED",
    );
    refused(
        forwarded
            .void_transfer(void(&h1, a))
            .await
            .map(tonic::Response::into_inner),
        Code::FailedPrecondition,
        "HOLD_ALREADY_CAPTURED",
    );

    // Across partitions: the source holds, the capture credits the target.
    let h2 = id();
    at_leader
        .authorize_transfer(authorize(&h2, a, c, "10.00", 60_000))
        .await
        .expect("authorize across");
    let across = capture_here(capture(&h2, a, ""))
        .await
        .expect("capture across");
    assert!(matches!(
        verdict(&across).0,
        TransferStatus::Completed | TransferStatus::InFlight
    ));
    assert_eq!(account(a).await, (usd("64.00"), usd("0.00"), usd("64.00")));
    assert_eq!(account(c).await.0, usd("110.00"));
    // A capture the target refuses (no such account there) is refunded: nothing stays held.
    let h3 = id();
    at_leader
        .authorize_transfer(authorize(&h3, a, &nobody, "5.00", 60_000))
        .await
        .expect("authorize to an account the target does not have");
    assert_eq!(account(a).await.2, usd("59.00"));
    refused(
        capture_here(capture(&h3, a, "")).await,
        Code::NotFound,
        "ACCOUNT_NOT_FOUND",
    );
    assert_eq!(account(a).await, (usd("64.00"), usd("0.00"), usd("64.00")));
    refused(
        forwarded
            .void_transfer(void(&h3, a))
            .await
            .map(tonic::Response::into_inner),
        Code::FailedPrecondition,
        "HOLD_CAPTURE_REFUSED",
    );

    // Voided: released; a capture after it is refused; a retry of the void answers it.
    let h4 = id();
    at_leader
        .authorize_transfer(authorize(&h4, a, b, "7.00", 60_000))
        .await
        .expect("authorize");
    let voided = forwarded
        .void_transfer(void(&h4, a))
        .await
        .expect("void")
        .into_inner();
    assert_eq!(voided.transfer.unwrap().status(), TransferStatus::Voided);
    let again = forwarded
        .void_transfer(void(&h4, a))
        .await
        .expect("void retry")
        .into_inner();
    assert!(again.replayed);
    refused(
        capture_here(capture(&h4, a, "")).await,
        Code::FailedPrecondition,
        "HOLD_ALREADY_VOIDED",
    );
    assert_eq!(account(a).await, (usd("64.00"), usd("0.00"), usd("64.00")));

    // Expired: the cluster releases it without any call, and a capture is refused.
    let h5 = id();
    at_leader
        .authorize_transfer(authorize(&h5, a, b, "9.00", 300))
        .await
        .expect("authorize");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let transfer = cluster.get_transfer(&h5).await.expect("the hold");
        if transfer.status() == TransferStatus::Expired {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the hold never expired: {transfer:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(account(a).await, (usd("64.00"), usd("0.00"), usd("64.00")));
    refused(
        capture_here(capture(&h5, a, "")).await,
        Code::FailedPrecondition,
        "HOLD_EXPIRED",
    );
    refused(
        forwarded
            .void_transfer(void(&h5, a))
            .await
            .map(tonic::Response::into_inner),
        Code::FailedPrecondition,
        "HOLD_EXPIRED",
    );
    // A retry of the authorization answers the hold as it stands.
    let expired = forwarded
        .authorize_transfer(authorize(&h5, a, b, "9.00", 300))
        .await
        .expect("authorize retry")
        .into_inner();
    assert_eq!(verdict(&expired).0, TransferStatus::Expired);
    assert!(expired.replayed);

    cluster.wait_no_in_flight().await;
    cluster.wait_replicas_agree().await;

    // After a restart of every node, retries are answered from the records on disk.
    for node in 1..=3 {
        cluster.kill(node);
    }
    for node in 1..=3 {
        cluster.start_node(node);
    }
    cluster.wait_leaders().await;
    let capture_retry = cluster
        .wallet(other)
        .await
        .capture_transfer(capture(&h1, a, "25.00"))
        .await
        .expect("capture retry after the restart")
        .into_inner();
    assert_eq!(
        verdict(&capture_retry),
        (TransferStatus::Completed, usd("25.00"), true)
    );
    let authorize_retry = cluster
        .wallet(other)
        .await
        .authorize_transfer(authorize(&h4, a, b, "7.00", 60_000))
        .await
        .expect("authorize retry after the restart")
        .into_inner();
    assert_eq!(verdict(&authorize_retry).0, TransferStatus::Voided);
    assert!(authorize_retry.replayed);
    assert_eq!(account(a).await, (usd("64.00"), usd("0.00"), usd("64.00")));
}

/// The README's hold, through walletctl: authorize, capture part of it, a retry, and a void
/// after the capture, each answered as documented (`--json`), with the balances to match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walletctl_takes_a_hold_from_authorize_to_capture() {
    use crate::audit::walletctl_on_cluster;
    let cluster = Cluster::start(3);
    let partitions = cluster.wait_leaders().await.len() as u32;
    // In one partition, so the capture completes in its own entry (across partitions it
    // answers IN_FLIGHT, the settle following).
    let mut accounts = accounts_in(0, partitions, "shop", 2);
    let (alice, shop) = (accounts.remove(0), accounts.remove(0));
    cluster.open_funded_usd(&[&alice, &shop], "100.00").await;
    let endpoints = cluster.write_nodes();
    let authorize = [
        "hold",
        "authorize",
        "--from",
        &alice,
        "--to",
        &shop,
        "--amount",
        "60.00",
        "--currency",
        "USD",
        "--timeout",
        "15m",
        "--reference",
        "booking-9",
        "--metadata",
        "hotel=2 nights",
        "--metadata",
        "room=12",
    ];
    let (code, authorized) = walletctl_on_cluster(&authorize, &endpoints);
    assert_eq!(code, 0, "{authorized}");
    assert_eq!(authorized["hold"]["status"], "pending", "{authorized}");
    assert_eq!(authorized["hold"]["reference"], "booking-9");
    assert_eq!(
        authorized["hold"]["metadata"],
        serde_json::json!({"hotel": "2 nights", "room": "12"})
    );
    // A metadata entry that is not KEY=VALUE is a usage error: nothing is sent.
    let bad = std::process::Command::new(crate::audit::walletctl())
        .args(["--endpoints", &endpoints])
        .args(&authorize[..authorize.len() - 1])
        .arg("no-equals-sign")
        .output()
        .expect("run walletctl");
    assert_eq!(bad.status.code(), Some(2));
    let usage = String::from_utf8_lossy(&bad.stderr);
    assert!(usage.contains("is not KEY=VALUE"), "{usage}");
    let hold = authorized["hold"]["transaction_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let available = cluster.account(&alice).await.unwrap().available;
    assert_eq!(available, "40.00");

    let capture = [
        "hold", "capture", &hold, "--from", &alice, "--amount", "25.00",
    ];
    let (code, captured) = walletctl_on_cluster(&capture, &endpoints);
    assert_eq!(code, 0, "{captured}");
    assert_eq!(captured["hold"]["status"], "completed", "{captured}");
    assert_eq!(captured["hold"]["captured_amount"], "25.00");
    assert_eq!(captured["replayed"], false);
    let get = ["transfer", "get", &hold];
    let (code, shown) = walletctl_on_cluster(&get, &endpoints);
    assert_eq!(code, 0, "{shown}");
    assert_eq!(
        (
            &shown["transfer"]["reference"],
            &shown["transfer"]["metadata"]["room"]
        ),
        (&serde_json::json!("booking-9"), &serde_json::json!("12"))
    );
    let (_, again) = walletctl_on_cluster(&capture, &endpoints);
    assert_eq!(
        again["replayed"], true,
        "a retry answers the capture: {again}"
    );
    let account = cluster.account(&alice).await.unwrap();
    assert_eq!(
        (account.balance, account.held),
        ("75.00".into(), "0.00".into())
    );

    let void = ["hold", "void", &hold, "--from", &alice];
    let (code, voided) = walletctl_on_cluster(&void, &endpoints);
    assert_eq!(code, 1, "a captured hold cannot be voided: {voided}");
    assert_eq!(
        voided["error"]["reason"], "HOLD_ALREADY_CAPTURED",
        "{voided}"
    );
}
