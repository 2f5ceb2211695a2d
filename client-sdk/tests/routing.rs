//! Routing and retry behaviour against in-process fake write nodes: redirects to the
//! leader, the leader cache, backoff on overload, moving past dead nodes, and that
//! rejections are never retried. Every retry must carry the same transaction id.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::v1::wallet_service_server::{WalletService, WalletServiceServer};
use proto::v1::{
    Account, GetAccountRequest, GetAccountResponse, GetTransferRequest, GetTransferResponse,
    OpenAccountRequest, OpenAccountResponse, OpenAccountResult, TransferBatchRequest,
    TransferBatchResponse, TransferRequest, TransferResponse, TransferResult,
};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};
use wallet_client::{
    ClientConfig, DEFAULT_PARTITION, Error, Transfer, WalletClient, new_transaction_id,
};

/// How a fake node answers Transfer.
#[derive(Clone)]
enum Mode {
    /// NOT_LEADER pointing at this address.
    Follower(String),
    /// Fails with `code`/`reason` for the first `failures` calls, then succeeds.
    FlakyLeader {
        code: Code,
        reason: &'static str,
        failures: usize,
    },
    /// Always rejects with `code`/`reason`.
    Rejecting { code: Code, reason: &'static str },
}

#[derive(Clone)]
struct FakeNode {
    mode: Mode,
    calls: Arc<AtomicUsize>,
    ids: Arc<Mutex<Vec<String>>>,
    /// Per Transfer call: whether it asked not to be forwarded (`wallet-no-forward`).
    no_forward: Arc<Mutex<Vec<bool>>>,
}

fn error(code: Code, reason: &str, metadata: HashMap<String, String>) -> Status {
    Status::with_error_details(
        code,
        format!("fake {reason}"),
        ErrorDetails::with_error_info(reason, "wallet.ledger", metadata),
    )
}

impl FakeNode {
    fn answer(&self) -> Result<(), Status> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        match &self.mode {
            Mode::Follower(leader) => Err(error(
                Code::Unavailable,
                "NOT_LEADER",
                HashMap::from([
                    ("leader_address".to_owned(), leader.clone()),
                    ("leader_id".to_owned(), "9".to_owned()),
                ]),
            )),
            Mode::FlakyLeader {
                code,
                reason,
                failures,
            } if call < *failures => Err(error(*code, reason, HashMap::new())),
            Mode::FlakyLeader { .. } => Ok(()),
            Mode::Rejecting { code, reason } => Err(error(*code, reason, HashMap::new())),
        }
    }
}

#[tonic::async_trait]
impl WalletService for FakeNode {
    async fn open_account(
        &self,
        request: Request<OpenAccountRequest>,
    ) -> Result<Response<OpenAccountResponse>, Status> {
        self.answer()?;
        let r = request.into_inner();
        Ok(Response::new(OpenAccountResponse {
            account: Some(Account {
                account_id: r.account_id,
                currency: r.currency,
                allow_negative_balance: r.allow_negative_balance,
                balance: "0.00".into(),
                balance_minor: 0,
                ..Account::default()
            }),
        }))
    }

    async fn transfer(
        &self,
        request: Request<TransferRequest>,
    ) -> Result<Response<TransferResponse>, Status> {
        let asked = request.metadata().contains_key(proto::NO_FORWARD_METADATA);
        self.no_forward.lock().unwrap().push(asked);
        let r = request.into_inner();
        self.ids.lock().unwrap().push(r.transaction_id.clone());
        self.answer()?;
        Ok(Response::new(TransferResponse {
            status: "success".into(),
            transaction_id: r.transaction_id,
            consistency_token: "0:1:7".into(),
            replayed: false,
        }))
    }

    type SubmitTransfersStream = tokio_stream::Empty<Result<TransferResult, Status>>;

    async fn submit_transfers(
        &self,
        _request: Request<tonic::Streaming<TransferRequest>>,
    ) -> Result<Response<Self::SubmitTransfersStream>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn transfer_batch(
        &self,
        _request: Request<TransferBatchRequest>,
    ) -> Result<Response<TransferBatchResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    type OpenAccountsStream = tokio_stream::Empty<Result<OpenAccountResult, Status>>;

    async fn open_accounts(
        &self,
        _request: Request<tonic::Streaming<OpenAccountRequest>>,
    ) -> Result<Response<Self::OpenAccountsStream>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn transfer_legs(
        &self,
        _request: Request<proto::v1::TransferLegsRequest>,
    ) -> Result<Response<TransferResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn authorize_transfer(
        &self,
        _request: Request<proto::v1::AuthorizeTransferRequest>,
    ) -> Result<Response<proto::v1::HoldResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn capture_transfer(
        &self,
        _request: Request<proto::v1::CaptureTransferRequest>,
    ) -> Result<Response<proto::v1::HoldResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn void_transfer(
        &self,
        _request: Request<proto::v1::VoidTransferRequest>,
    ) -> Result<Response<proto::v1::HoldResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn freeze_account(
        &self,
        _request: Request<proto::v1::FreezeAccountRequest>,
    ) -> Result<Response<proto::v1::FreezeAccountResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn unfreeze_account(
        &self,
        _request: Request<proto::v1::UnfreezeAccountRequest>,
    ) -> Result<Response<proto::v1::UnfreezeAccountResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn close_account(
        &self,
        _request: Request<proto::v1::CloseAccountRequest>,
    ) -> Result<Response<proto::v1::CloseAccountResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn set_overdraft_limit(
        &self,
        _request: Request<proto::v1::SetOverdraftLimitRequest>,
    ) -> Result<Response<proto::v1::SetOverdraftLimitResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn get_account(
        &self,
        _request: Request<GetAccountRequest>,
    ) -> Result<Response<GetAccountResponse>, Status> {
        self.answer()?;
        Err(Status::with_error_details(
            Code::NotFound,
            "no such account",
            ErrorDetails::with_bad_request_violation("account_id", "unknown"),
        ))
    }

    async fn get_transfer(
        &self,
        _request: Request<GetTransferRequest>,
    ) -> Result<Response<GetTransferResponse>, Status> {
        self.answer()?;
        Err(Status::not_found("unknown"))
    }
}

/// Binds an ephemeral port first so followers can be told the leader's address.
async fn bind() -> (tokio::net::TcpListener, SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    (listener, address)
}

fn serve(listener: tokio::net::TcpListener, mode: Mode) -> FakeNode {
    let node = FakeNode {
        mode,
        calls: Arc::default(),
        ids: Arc::default(),
        no_forward: Arc::default(),
    };
    let service = WalletServiceServer::new(node.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    node
}

fn fast_config(endpoints: Vec<String>) -> ClientConfig {
    let mut config = ClientConfig::new(endpoints);
    config.call_timeout = Duration::from_secs(2);
    config.total_deadline = Duration::from_secs(5);
    config.backoff_base = Duration::from_millis(1);
    config.backoff_max = Duration::from_millis(10);
    config
}

fn sample_transfer() -> Transfer {
    Transfer {
        transaction_id: new_transaction_id(),
        from: "issuer".into(),
        to: "alice".into(),
        amount: "12.34".into(),
        currency: "USD".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn follower_redirects_to_leader_which_is_then_cached() {
    let (leader_listener, leader_address) = bind().await;
    let (follower_listener, follower_address) = bind().await;
    let leader = serve(
        leader_listener,
        Mode::FlakyLeader {
            code: Code::Ok,
            reason: "",
            failures: 0,
        },
    );
    let follower = serve(
        follower_listener,
        Mode::Follower(leader_address.to_string()),
    );

    let client = WalletClient::connect(fast_config(vec![
        follower_address.to_string(),
        leader_address.to_string(),
    ]))
    .await
    .unwrap();
    let transfer = sample_transfer();
    let done = client.transfer(&transfer).await.unwrap();
    assert_eq!(done.transaction_id, transfer.transaction_id.to_string());
    assert_eq!(follower.calls.load(Ordering::SeqCst), 1);
    assert_eq!(leader.calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        client.leader(DEFAULT_PARTITION),
        Some(format!("http://{leader_address}"))
    );

    // The next call goes straight to the cached leader.
    client.open_account("alice", "USD", false).await.unwrap();
    assert_eq!(follower.calls.load(Ordering::SeqCst), 1);
    assert_eq!(leader.calls.load(Ordering::SeqCst), 2);
    let seen: Vec<String> = follower
        .ids
        .lock()
        .unwrap()
        .iter()
        .chain(leader.ids.lock().unwrap().iter())
        .cloned()
        .collect();
    assert_eq!(seen, vec![transfer.transaction_id.to_string(); 2]);
}

/// Given several write endpoints the client routes by hints, so it asks every node not to
/// forward; given one address, it lets that node forward.
#[tokio::test]
async fn writes_ask_not_to_be_forwarded_only_given_several_endpoints() {
    let (leader_listener, leader_address) = bind().await;
    let (follower_listener, follower_address) = bind().await;
    let leader = serve(
        leader_listener,
        Mode::FlakyLeader {
            code: Code::Ok,
            reason: "",
            failures: 0,
        },
    );
    let follower = serve(
        follower_listener,
        Mode::Follower(leader_address.to_string()),
    );
    let several = WalletClient::connect(fast_config(vec![
        follower_address.to_string(),
        leader_address.to_string(),
    ]))
    .await
    .unwrap();
    several.transfer(&sample_transfer()).await.unwrap();
    assert_eq!(*follower.no_forward.lock().unwrap(), [true]);
    assert_eq!(*leader.no_forward.lock().unwrap(), [true]);

    // The same address twice is one endpoint.
    let one = WalletClient::connect(fast_config(vec![
        leader_address.to_string(),
        format!("http://{leader_address}"),
    ]))
    .await
    .unwrap();
    one.transfer(&sample_transfer()).await.unwrap();
    assert_eq!(*leader.no_forward.lock().unwrap(), [true, false]);
}

#[tokio::test]
async fn overload_is_retried_with_the_same_id() {
    let (listener, address) = bind().await;
    let node = serve(
        listener,
        Mode::FlakyLeader {
            code: Code::ResourceExhausted,
            reason: "OVERLOADED",
            failures: 2,
        },
    );
    let client = WalletClient::connect(fast_config(vec![address.to_string()]))
        .await
        .unwrap();
    let transfer = sample_transfer();
    client.transfer(&transfer).await.unwrap();
    assert_eq!(node.calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        *node.ids.lock().unwrap(),
        vec![transfer.transaction_id.to_string(); 3]
    );
}

#[tokio::test]
async fn outcome_unknown_exhausts_attempts_and_stays_indefinite() {
    let (listener, address) = bind().await;
    let node = serve(
        listener,
        Mode::FlakyLeader {
            code: Code::Unavailable,
            reason: "OUTCOME_UNKNOWN",
            failures: usize::MAX,
        },
    );
    let mut config = fast_config(vec![address.to_string()]);
    config.attempts_max = 4;
    let client = WalletClient::connect(config).await.unwrap();
    let err = client.transfer(&sample_transfer()).await.unwrap_err();
    assert!(matches!(err, Error::Indefinite { .. }), "{err}");
    assert_eq!(err.reason(), "OUTCOME_UNKNOWN");
    assert_eq!(node.calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn dead_node_is_skipped() {
    let (listener, address) = bind().await;
    let node = serve(
        listener,
        Mode::FlakyLeader {
            code: Code::Ok,
            reason: "",
            failures: 0,
        },
    );
    // Port 1 refuses connections.
    let client =
        WalletClient::connect(fast_config(vec!["127.0.0.1:1".into(), address.to_string()]))
            .await
            .unwrap();
    client.transfer(&sample_transfer()).await.unwrap();
    assert_eq!(node.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn rejections_are_not_retried() {
    let (listener, address) = bind().await;
    let node = serve(
        listener,
        Mode::Rejecting {
            code: Code::FailedPrecondition,
            reason: "INSUFFICIENT_FUNDS",
        },
    );
    let client = WalletClient::connect(fast_config(vec![address.to_string()]))
        .await
        .unwrap();
    let err = client.transfer(&sample_transfer()).await.unwrap_err();
    assert!(err.is_definite());
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(err.reason(), "INSUFFICIENT_FUNDS");
    assert_eq!(node.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn not_found_carries_the_field() {
    let (listener, address) = bind().await;
    serve(
        listener,
        Mode::FlakyLeader {
            code: Code::Ok,
            reason: "",
            failures: 0,
        },
    );
    let client = WalletClient::connect(fast_config(vec![address.to_string()]))
        .await
        .unwrap();
    let err = client.get_account("nobody").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.field(), Some("account_id"));
    assert!(err.is_definite());
}
