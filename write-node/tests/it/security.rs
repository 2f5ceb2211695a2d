//! TLS, mTLS between peers, token scopes, secrets kept out of logs, and the exposure rule,
//! against real `wallet-write-node` processes. Certificates are made here with rcgen.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use proto::internal::CreditRequest;
use proto::internal::peer_service_client::PeerServiceClient;
use proto::v1::cluster_service_client::ClusterServiceClient;
use proto::v1::wallet_service_client::WalletServiceClient;
use proto::v1::{
    GetAccountRequest, GetClusterStatusRequest, GetTransferRequest, OpenAccountRequest,
    TransferRequest,
};
use security::certs::Ca;
use security::tokens::{Scope, file_entry, file_entry_bound, generate};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
use tonic_types::StatusExt as _;

use testkit::{Cluster, WAIT_MAX, reason, transfer_request};

/// Adds `authorization: Bearer <token>` to every call (or nothing).
#[derive(Clone)]
struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    fn new(token: Option<&str>) -> Bearer {
        Bearer(token.map(|token| format!("Bearer {token}").parse().expect("ascii token")))
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

type Authed = InterceptedService<Channel, Bearer>;

/// Where a test's certificates and tokens live; the tokens themselves stay in memory.
struct Secrets {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    node_cert: PathBuf,
    node_key: PathBuf,
    tokens_file: PathBuf,
    /// A CA the cluster does not trust, and a certificate from it naming 127.0.0.1.
    stranger: (PathBuf, PathBuf),
    /// From the cluster's CA, but naming no peer host.
    client: (PathBuf, PathBuf),
    admin: String,
    /// transfer, read: moves money out of ordinary accounts only.
    app: String,
    reader: String,
    /// issue only: debits issuer accounts (mints), nothing else.
    minter: String,
    /// transfer, read, admin, bound to accounts "tenant-a/...".
    tenant: String,
    /// replicate: what a read node holds.
    replica: String,
}

fn secrets() -> Secrets {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new("test cluster CA").expect("CA");
    let ca_path = dir.path().join("ca.crt");
    std::fs::write(&ca_path, ca.cert_pem()).expect("write CA");
    let (node_cert, node_key) = ca
        .issue("node", &["127.0.0.1".into(), "localhost".into()])
        .expect("node cert")
        .write(dir.path(), "node")
        .expect("write node cert");
    let client = ca
        .issue("client", &["wallet-client".into()])
        .expect("client cert")
        .write(dir.path(), "client")
        .expect("write client cert");
    let stranger = Ca::new("another CA")
        .expect("CA")
        .issue("impostor", &["127.0.0.1".into()])
        .expect("impostor cert")
        .write(dir.path(), "impostor")
        .expect("write impostor cert");
    let admin = generate().expect("token");
    let app = generate().expect("token");
    let reader = generate().expect("token");
    let minter = generate().expect("token");
    let tenant = generate().expect("token");
    let replica = generate().expect("token");
    let tokens_file = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens_file,
        [
            file_entry("ops", &admin, &[Scope::Admin]),
            file_entry("payments", &app, &[Scope::Transfer, Scope::Read]),
            file_entry("dashboard", &reader, &[Scope::Read]),
            file_entry("mint", &minter, &[Scope::Issue]),
            file_entry_bound(
                "tenant-a",
                &tenant,
                &[Scope::Transfer, Scope::Read, Scope::Admin],
                &["tenant-a/".to_owned()],
            ),
            file_entry("read-nodes", &replica, &[Scope::Replicate]),
        ]
        .join("\n"),
    )
    .expect("tokens file");
    Secrets {
        _dir: dir,
        ca: ca_path,
        node_cert,
        node_key,
        tokens_file,
        stranger,
        client,
        admin,
        app,
        reader,
        minter,
        tenant,
        replica,
    }
}

fn tls(ca: &Path, identity: Option<&(PathBuf, PathBuf)>) -> ClientTlsConfig {
    let mut config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(ca).expect("CA")));
    if let Some((cert, key)) = identity {
        config = config.identity(Identity::from_pem(
            std::fs::read(cert).expect("cert"),
            std::fs::read(key).expect("key"),
        ));
    }
    config
}

fn channel(port: u16, tls: Option<ClientTlsConfig>) -> Channel {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://127.0.0.1:{port}"))
        .expect("uri")
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5));
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).expect("tls config");
    }
    endpoint.connect_lazy()
}

fn wallet(channel: Channel, token: Option<&str>) -> WalletServiceClient<Authed> {
    WalletServiceClient::with_interceptor(channel, Bearer::new(token))
}

fn cluster_client(channel: Channel, token: Option<&str>) -> ClusterServiceClient<Authed> {
    ClusterServiceClient::with_interceptor(channel, Bearer::new(token))
}

/// Waits until every node names a leader for every partition (asked with the admin token).
async fn wait_led(channels: &[Channel], admin: &str) {
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let mut led = 0;
        let mut last_error = None;
        for channel in channels {
            match cluster_client(channel.clone(), Some(admin))
                .get_cluster_status(GetClusterStatusRequest::default())
                .await
            {
                Ok(status) => {
                    if status
                        .into_inner()
                        .partitions
                        .iter()
                        .all(|partition| partition.leader_id != 0)
                    {
                        led += 1;
                    }
                }
                Err(status) => last_error = Some(status),
            }
        }
        if led == channels.len() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no leaders within {WAIT_MAX:?}; last error {last_error:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends a write to each node in turn until one (the partition's leader) takes it.
async fn on_any<T, F, Fut>(channels: &[Channel], mut call: F) -> Result<T, Status>
where
    F: FnMut(Channel) -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let deadline = Instant::now() + WAIT_MAX;
    for attempt in 0.. {
        match call(channels[attempt % channels.len()].clone()).await {
            Err(status) if status.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
    unreachable!()
}

async fn open(channels: &[Channel], token: &str, account: &str, issuer: bool) {
    on_any(channels, |channel| async move {
        wallet(channel, Some(token))
            .open_account(OpenAccountRequest {
                account_id: account.into(),
                currency: "USD".into(),
                allow_negative_balance: issuer,
                ..Default::default()
            })
            .await
    })
    .await
    .unwrap_or_else(|status| panic!("open {account}: {status:?}"));
}

async fn transfer(
    channels: &[Channel],
    token: Option<&str>,
    request: &TransferRequest,
) -> Result<String, Status> {
    on_any(channels, |channel| async move {
        wallet(channel, token).transfer(request.clone()).await
    })
    .await
    .map(|response| response.into_inner().status)
}

/// No secret appears in any node log: not the tokens, not a private key.
fn assert_logs_hold_no_secret(cluster: &Cluster, secrets: &Secrets) {
    let key = std::fs::read_to_string(&secrets.node_key).expect("key");
    let key_body = key.lines().nth(1).expect("a PEM body line");
    for node in &cluster.nodes {
        let log = std::fs::read_to_string(&node.log_path).expect("node log");
        assert!(
            log.contains("write node serving"),
            "the log is the node's:\n{log}"
        );
        for (name, secret) in [
            ("admin token", secrets.admin.as_str()),
            ("app token", secrets.app.as_str()),
            ("reader token", secrets.reader.as_str()),
            ("minter token", secrets.minter.as_str()),
            ("tenant token", secrets.tenant.as_str()),
            ("replica token", secrets.replica.as_str()),
            ("private key", key_body),
        ] {
            assert!(!log.contains(secret), "node {} logged the {name}", node.id);
        }
    }
}

fn id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_cluster_serves_transfers_and_refuses_callers_without_a_peer_certificate() {
    let secrets = secrets();
    let args = [
        "--tls-cert",
        secrets.node_cert.to_str().unwrap(),
        "--tls-key",
        secrets.node_key.to_str().unwrap(),
        "--peer-ca",
        secrets.ca.to_str().unwrap(),
        "--tokens-file",
        secrets.tokens_file.to_str().unwrap(),
    ];
    let cluster = Cluster::start_with(3, &args);
    let ports: Vec<u16> = cluster.nodes.iter().map(|node| node.port).collect();
    let channels: Vec<Channel> = ports
        .iter()
        .map(|&port| channel(port, Some(tls(&secrets.ca, None))))
        .collect();
    // Leaders exist only if the nodes' raft streams (mTLS, peer certificates) work.
    wait_led(&channels, &secrets.admin).await;

    open(&channels, &secrets.admin, "issuer", true).await;
    open(&channels, &secrets.admin, "alice", false).await;
    let request = transfer_request(&id(), "issuer", "alice", "10.00", "USD");
    assert_eq!(
        transfer(&channels, Some(&secrets.minter), &request)
            .await
            .unwrap(),
        "success"
    );
    let reader = secrets.reader.as_str();
    let alice = || async {
        on_any(&channels, |channel| async move {
            wallet(channel, Some(reader))
                .get_account(proto::v1::GetAccountRequest {
                    account_id: "alice".into(),
                })
                .await
        })
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap()
        .balance
    };
    let balance = alice().await;
    assert_eq!(balance, "10.00");

    // One endpoint is enough, over mTLS with tokens: every node serves a write whichever node
    // leads its partition, forwarding it with the caller's token (the leader authorizes it:
    // a token bound to other accounts is refused there, and nothing moves).
    for channel in &channels {
        let request = transfer_request(&id(), "issuer", "alice", "1.00", "USD");
        let answer = wallet(channel.clone(), Some(&secrets.minter))
            .transfer(request)
            .await
            .expect("served through this node");
        assert_eq!(answer.into_inner().status, "success");
        let request = transfer_request(&id(), "alice", "issuer", "1.00", "USD");
        let refused = wallet(channel.clone(), Some(&secrets.tenant))
            .transfer(request)
            .await
            .expect_err("outside the token's prefixes");
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    }
    let balance = alice().await;
    assert_eq!(balance, "13.00");

    let port = ports[0];
    let credit = || CreditRequest {
        partition: 0,
        transfers: Vec::new(),
    };
    // Plain text to a TLS port: no gRPC at all.
    let error = PeerServiceClient::new(channel(port, None))
        .credit(credit())
        .await
        .unwrap_err();
    assert_ne!(error.code(), Code::Ok);
    // TLS without a client certificate: the connection is fine (clients need none), the
    // PeerService call is not.
    let error = PeerServiceClient::new(channel(port, Some(tls(&secrets.ca, None))))
        .credit(credit())
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::Unauthenticated, "{error:?}");
    assert_eq!(reason(&error), "PEER_CERT_REQUIRED");
    // Even with the admin token: tokens never open PeerService.
    let error = PeerServiceClient::with_interceptor(
        channel(port, Some(tls(&secrets.ca, None))),
        Bearer::new(Some(&secrets.admin)),
    )
    .credit(credit())
    .await
    .unwrap_err();
    assert_eq!(error.code(), Code::Unauthenticated, "{error:?}");
    // A certificate from another CA: the server ends the handshake, so the call fails at
    // the transport, never answered by a handler (no ErrorInfo reason). Which code says so
    // depends on timing: UNAVAILABLE, or when TLS 1.3 let the client send first, CANCELLED or
    // UNKNOWN with the server's UnknownCA alert or the broken pipe of the closed connection.
    let error = PeerServiceClient::new(channel(
        port,
        Some(tls(&secrets.ca, Some(&secrets.stranger))),
    ))
    .credit(credit())
    .await
    .unwrap_err();
    let text = format!("{error:?}");
    let transport_failure = matches!(error.code(), Code::Unavailable | Code::Cancelled)
        || (error.code() == Code::Unknown
            && (text.contains("UnknownCA") || text.contains("transport error")));
    assert!(transport_failure && reason(&error).is_empty(), "{error:?}");
    // The cluster's CA, but a certificate that names no peer.
    let error =
        PeerServiceClient::new(channel(port, Some(tls(&secrets.ca, Some(&secrets.client)))))
            .credit(credit())
            .await
            .unwrap_err();
    assert_eq!(error.code(), Code::Unauthenticated, "{error:?}");
    assert!(
        error.message().contains("none of the configured peers"),
        "{error:?}"
    );
    // Control: a peer's certificate gets through (an empty credit batch changes nothing).
    let peer = (secrets.node_cert.clone(), secrets.node_key.clone());
    PeerServiceClient::new(channel(port, Some(tls(&secrets.ca, Some(&peer)))))
        .credit(credit())
        .await
        .expect("a peer's certificate is accepted");

    assert_logs_hold_no_secret(&cluster, &secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_scopes_decide_each_call_and_never_reach_the_log() {
    let secrets = secrets();
    let cluster = Cluster::start_with(1, &["--tokens-file", secrets.tokens_file.to_str().unwrap()]);
    let channels = vec![channel(cluster.nodes[0].port, None)];

    // Health needs no token (probes), before and after the node is ready.
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let answer = HealthClient::new(channels[0].clone())
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await;
        if answer.is_ok_and(|answer| answer.into_inner().status == ServingStatus::Serving as i32) {
            break;
        }
        assert!(Instant::now() < deadline, "node never became healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_led(&channels, &secrets.admin).await;
    open(&channels, &secrets.admin, "issuer", true).await;
    open(&channels, &secrets.admin, "bob", false).await;

    let request = transfer_request(&id(), "issuer", "bob", "1.00", "USD");
    let check = |status: Status, code: Code, expected_reason: &str, scope: &str| {
        assert_eq!(status.code(), code, "{status:?}");
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.reason, expected_reason);
        assert_eq!(info.domain, "wallet.ledger");
        assert_eq!(info.metadata.get("scope").map(String::as_str), Some(scope));
        assert!(!status.message().contains("wlt_"), "{status:?}");
    };
    check(
        transfer(&channels, None, &request).await.unwrap_err(),
        Code::Unauthenticated,
        "MISSING_TOKEN",
        "transfer",
    );
    let unknown = generate().unwrap();
    check(
        transfer(&channels, Some(&unknown), &request)
            .await
            .unwrap_err(),
        Code::Unauthenticated,
        "INVALID_TOKEN",
        "transfer",
    );
    check(
        transfer(&channels, Some(&secrets.reader), &request)
            .await
            .unwrap_err(),
        Code::PermissionDenied,
        "SCOPE_DENIED",
        "transfer",
    );
    // The admin scope is not a superuser: it opens accounts, it does not move money.
    check(
        transfer(&channels, Some(&secrets.admin), &request)
            .await
            .unwrap_err(),
        Code::PermissionDenied,
        "SCOPE_DENIED",
        "transfer",
    );
    // Debiting the issuer (it may go negative: minting) needs the issue scope.
    check(
        transfer(&channels, Some(&secrets.app), &request)
            .await
            .unwrap_err(),
        Code::PermissionDenied,
        "ISSUE_SCOPE_REQUIRED",
        "issue",
    );
    assert_eq!(
        transfer(&channels, Some(&secrets.minter), &request)
            .await
            .unwrap(),
        "success"
    );
    // Opening accounts (issuers can go negative) is for admin tokens only.
    let error = wallet(channels[0].clone(), Some(&secrets.app))
        .open_account(OpenAccountRequest {
            account_id: "mint".into(),
            currency: "USD".into(),
            allow_negative_balance: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    check(error, Code::PermissionDenied, "SCOPE_DENIED", "admin");
    // ClusterService: admin only (and read nodes' replicate).
    for token in [&secrets.app, &secrets.reader] {
        let error = cluster_client(channels[0].clone(), Some(token))
            .get_cluster_status(GetClusterStatusRequest::default())
            .await
            .unwrap_err();
        check(error, Code::PermissionDenied, "SCOPE_DENIED", "admin");
    }
    cluster_client(channels[0].clone(), Some(&secrets.admin))
        .get_cluster_status(GetClusterStatusRequest::default())
        .await
        .expect("admin reads the cluster status");

    assert_logs_hold_no_secret(&cluster, &secrets);
}

/// The ErrorInfo reason and metadata of a refusal, checked: domain, no token in the message.
fn refusal(status: &Status, code: Code) -> (String, std::collections::HashMap<String, String>) {
    assert_eq!(status.code(), code, "{status:?}");
    let info = status.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.domain, "wallet.ledger");
    assert!(!status.message().contains("wlt_"), "{status:?}");
    (info.reason, info.metadata)
}

async fn balance(channels: &[Channel], token: &str, account: &str) -> String {
    on_any(channels, |channel| async move {
        wallet(channel, Some(token))
            .get_account(GetAccountRequest {
                account_id: account.into(),
            })
            .await
    })
    .await
    .unwrap_or_else(|status| panic!("balance of {account}: {status:?}"))
    .into_inner()
    .account
    .expect("account")
    .balance
}

/// One SubmitTransfers stream: (status, reason) per transaction id.
async fn submit(
    channels: &[Channel],
    token: &str,
    requests: Vec<TransferRequest>,
) -> std::collections::HashMap<String, (String, String)> {
    let mut results = wallet(channels[0].clone(), Some(token))
        .submit_transfers(tokio_stream::iter(requests))
        .await
        .expect("stream accepted")
        .into_inner();
    let mut outcomes = std::collections::HashMap::new();
    while let Some(result) = results.message().await.expect("result") {
        let reason = result.error.map(|error| {
            assert!(!error.message.contains("wlt_"));
            format!("{:?}:{}", Code::from(error.code), error.reason)
        });
        outcomes.insert(
            result.transaction_id,
            (result.status, reason.unwrap_or_default()),
        );
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuing_needs_its_scope_and_bound_tokens_stay_within_their_prefixes() {
    let secrets = secrets();
    let cluster = Cluster::start_with(1, &["--tokens-file", secrets.tokens_file.to_str().unwrap()]);
    let channels = vec![channel(cluster.nodes[0].port, None)];
    wait_led(&channels, &secrets.admin).await;
    let (app, minter, tenant) = (
        secrets.app.as_str(),
        secrets.minter.as_str(),
        secrets.tenant.as_str(),
    );
    for (account, issuer) in [
        ("issuer", true),
        ("alice", false),
        ("bob", false),
        ("tenant-b/one", false),
    ] {
        open(&channels, &secrets.admin, account, issuer).await;
    }
    // The issuer and alice live on different partitions (of the default 8): the issue check
    // covers the cross-partition path (the saga starts at the same edge).
    assert_ne!(
        ledger::partition_of("issuer", 8),
        ledger::partition_of("alice", 8)
    );

    // A bound token opens accounts within its prefixes only.
    open(&channels, tenant, "tenant-a/one", false).await;
    let error = wallet(channels[0].clone(), Some(tenant))
        .open_account(OpenAccountRequest {
            account_id: "tenant-b/two".into(),
            currency: "USD".into(),
            allow_negative_balance: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    let (why, metadata) = refusal(&error, Code::PermissionDenied);
    assert_eq!(why, "ACCOUNT_PREFIX_DENIED");
    assert_eq!(
        metadata.get("field").map(String::as_str),
        Some("account_id")
    );
    let error = wallet(channels[0].clone(), Some(app))
        .get_account(GetAccountRequest {
            account_id: "tenant-b/two".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&error), "ACCOUNT_NOT_FOUND", "nothing was opened");
    // ... and in bulk, item by item: the one outside its prefixes is refused, the other opened.
    let mut results = wallet(channels[0].clone(), Some(tenant))
        .open_accounts(tokio_stream::iter(["tenant-b/three", "tenant-a/two"].map(
            |account_id| OpenAccountRequest {
                account_id: account_id.into(),
                currency: "USD".into(),
                allow_negative_balance: false,
                ..Default::default()
            },
        )))
        .await
        .expect("OpenAccounts")
        .into_inner();
    let mut verdicts = std::collections::BTreeMap::new();
    while let Some(result) = results.message().await.expect("result") {
        let reason = result.error.map(|e| e.reason).unwrap_or_default();
        verdicts.insert(result.account_id, (result.status, reason));
    }
    assert_eq!(
        verdicts,
        [
            (
                "tenant-a/two".to_owned(),
                ("success".to_owned(), String::new())
            ),
            (
                "tenant-b/three".to_owned(),
                ("rejected".to_owned(), "ACCOUNT_PREFIX_DENIED".to_owned())
            ),
        ]
        .into()
    );
    let error = wallet(channels[0].clone(), Some(app))
        .get_account(GetAccountRequest {
            account_id: "tenant-b/three".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&error), "ACCOUNT_NOT_FOUND", "nothing was opened");

    // The issue scope mints; the transfer scope cannot, on either path.
    let funding = [
        ("alice", "100.00"),
        ("tenant-a/one", "10.00"),
        ("tenant-b/one", "10.00"),
    ];
    for (account, amount) in funding {
        let request = transfer_request(&id(), "issuer", account, amount, "USD");
        assert_eq!(
            transfer(&channels, Some(minter), &request).await.unwrap(),
            "success"
        );
    }
    let minted = transfer_request(&id(), "issuer", "bob", "5.00", "USD");
    for _ in 0..2 {
        // Twice: the second time the issuer's flag comes from the node's cache.
        let error = transfer(&channels, Some(app), &minted).await.unwrap_err();
        let (why, metadata) = refusal(&error, Code::PermissionDenied);
        assert_eq!(why, "ISSUE_SCOPE_REQUIRED");
        assert_eq!(metadata.get("scope").map(String::as_str), Some("issue"));
    }
    let paid = transfer_request(&id(), "alice", "bob", "1.00", "USD");
    let streamed_mint = transfer_request(&id(), "issuer", "bob", "7.00", "USD");
    let outcomes = submit(&channels, app, vec![streamed_mint.clone(), paid.clone()]).await;
    assert_eq!(
        outcomes[&streamed_mint.transaction_id],
        (
            "rejected".into(),
            "PermissionDenied:ISSUE_SCOPE_REQUIRED".into()
        )
    );
    assert_eq!(outcomes[&paid.transaction_id].0, "success");
    // Nothing was proposed for the refused ones: no record, balances as funded.
    for refused in [&minted, &streamed_mint] {
        let error = wallet(channels[0].clone(), Some(app))
            .get_transfer(GetTransferRequest {
                transaction_id: refused.transaction_id.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(reason(&error), "TRANSFER_NOT_FOUND", "{error:?}");
    }
    assert_eq!(balance(&channels, app, "issuer").await, "-120.00");
    assert_eq!(balance(&channels, app, "bob").await, "1.00");
    assert_eq!(balance(&channels, app, "alice").await, "99.00");
    // An issue-only token moves no ordinary account's money.
    let error = transfer(
        &channels,
        Some(minter),
        &transfer_request(&id(), "alice", "bob", "1.00", "USD"),
    )
    .await
    .unwrap_err();
    let (why, metadata) = refusal(&error, Code::PermissionDenied);
    assert_eq!(why, "SCOPE_DENIED");
    assert_eq!(metadata.get("scope").map(String::as_str), Some("transfer"));
    // An account that does not exist is not found (and nothing is proposed).
    let error = transfer(
        &channels,
        Some(app),
        &transfer_request(&id(), "ghost", "bob", "1.00", "USD"),
    )
    .await
    .unwrap_err();
    assert_eq!(
        (error.code(), reason(&error)),
        (Code::NotFound, "ACCOUNT_NOT_FOUND".into())
    );

    // A bound token debits only its own accounts (pays anyone), on both paths.
    let foreign = transfer_request(&id(), "tenant-b/one", "tenant-a/one", "2.00", "USD");
    let error = transfer(&channels, Some(tenant), &foreign)
        .await
        .unwrap_err();
    let (why, metadata) = refusal(&error, Code::PermissionDenied);
    assert_eq!(why, "ACCOUNT_PREFIX_DENIED");
    assert_eq!(
        metadata.get("field").map(String::as_str),
        Some("from_account")
    );
    let own = transfer_request(&id(), "tenant-a/one", "tenant-b/one", "1.00", "USD");
    assert_eq!(
        transfer(&channels, Some(tenant), &own).await.unwrap(),
        "success"
    );
    let foreign_streamed = transfer_request(&id(), "tenant-b/one", "alice", "3.00", "USD");
    let own_streamed = transfer_request(&id(), "tenant-a/one", "alice", "2.00", "USD");
    let outcomes = submit(
        &channels,
        tenant,
        vec![foreign_streamed.clone(), own_streamed.clone()],
    )
    .await;
    assert_eq!(
        outcomes[&foreign_streamed.transaction_id],
        (
            "rejected".into(),
            "PermissionDenied:ACCOUNT_PREFIX_DENIED".into()
        )
    );
    assert_eq!(outcomes[&own_streamed.transaction_id].0, "success");
    assert_eq!(balance(&channels, app, "tenant-b/one").await, "11.00");
    assert_eq!(balance(&channels, app, "tenant-a/one").await, "7.00");
    assert_eq!(balance(&channels, app, "alice").await, "101.00");
    // Holds need what a transfer needs: the transfer scope (issue for an issuer), and a bound
    // token holds and captures on its own accounts only.
    let hold = |from: &str| proto::v1::AuthorizeTransferRequest {
        transaction_id: id(),
        from_account: from.into(),
        to_account: "bob".into(),
        amount: "1.00".into(),
        currency: "USD".into(),
        timeout: Some(prost_types::Duration {
            seconds: 60,
            nanos: 0,
        }),
        ..Default::default()
    };
    let error = wallet(channels[0].clone(), Some(tenant))
        .authorize_transfer(hold("tenant-b/one"))
        .await
        .unwrap_err();
    assert_eq!(
        refusal(&error, Code::PermissionDenied).0,
        "ACCOUNT_PREFIX_DENIED"
    );
    let error = wallet(channels[0].clone(), Some(app))
        .authorize_transfer(hold("issuer"))
        .await
        .unwrap_err();
    assert_eq!(
        refusal(&error, Code::PermissionDenied).0,
        "ISSUE_SCOPE_REQUIRED"
    );
    let own_hold = hold("tenant-a/one");
    wallet(channels[0].clone(), Some(tenant))
        .authorize_transfer(own_hold.clone())
        .await
        .expect("a hold on its own account");
    let capture = proto::v1::CaptureTransferRequest {
        transaction_id: own_hold.transaction_id.clone(),
        from_account: "tenant-a/one".into(),
        amount: String::new(),
    };
    let error = wallet(channels[0].clone(), Some(minter))
        .capture_transfer(capture.clone())
        .await
        .unwrap_err();
    assert_eq!(refusal(&error, Code::PermissionDenied).0, "SCOPE_DENIED");
    wallet(channels[0].clone(), Some(tenant))
        .capture_transfer(capture)
        .await
        .expect("its own capture");
    assert_eq!(balance(&channels, app, "tenant-a/one").await, "6.00");
    // It reads only its own accounts; lookups by transaction id and the cluster status are
    // not about one account, so a bound token gets none of them.
    assert_eq!(balance(&channels, tenant, "tenant-a/one").await, "6.00");
    let error = wallet(channels[0].clone(), Some(tenant))
        .get_account(GetAccountRequest {
            account_id: "tenant-b/one".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        refusal(&error, Code::PermissionDenied).0,
        "ACCOUNT_PREFIX_DENIED"
    );
    let error = wallet(channels[0].clone(), Some(tenant))
        .get_transfer(GetTransferRequest {
            transaction_id: own.transaction_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        refusal(&error, Code::PermissionDenied).0,
        "ACCOUNT_PREFIX_DENIED"
    );
    let error = cluster_client(channels[0].clone(), Some(tenant))
        .get_cluster_status(GetClusterStatusRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        refusal(&error, Code::PermissionDenied).0,
        "ACCOUNT_PREFIX_DENIED"
    );

    // The state digest (a hash of the whole state on the store thread) is admin-only.
    let digest = || GetClusterStatusRequest {
        include_state_digest: true,
    };
    let error = cluster_client(channels[0].clone(), Some(&secrets.replica))
        .get_cluster_status(digest())
        .await
        .unwrap_err();
    let (why, metadata) = refusal(&error, Code::PermissionDenied);
    assert_eq!(why, "SCOPE_DENIED");
    assert_eq!(metadata.get("scope").map(String::as_str), Some("admin"));
    let status = cluster_client(channels[0].clone(), Some(&secrets.replica))
        .get_cluster_status(GetClusterStatusRequest::default())
        .await
        .expect("a read node's token gets the status")
        .into_inner();
    assert!(status.partitions.iter().all(|p| p.state_digest.is_empty()));
    let status = cluster_client(channels[0].clone(), Some(&secrets.admin))
        .get_cluster_status(digest())
        .await
        .expect("admin gets the digest")
        .into_inner();
    assert!(
        status.partitions.iter().all(|p| p.state_digest.len() == 64),
        "{status:?}"
    );

    assert_logs_hold_no_secret(&cluster, &secrets);
}

/// Runs a single write node on `listen` with `extra` flags; returns the child.
fn spawn_node(dir: &Path, listen: &str, port: u16, extra: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_wallet-write-node"))
        .args(["--node-id", "1", "--listen", listen])
        .args(["--peers", &format!("1=127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning wallet-write-node")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_all_interfaces_needs_tls_and_tokens_or_insecure() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = Cluster::create(1).nodes[0].port;
    let listen = format!("0.0.0.0:{port}");

    let refused = spawn_node(dir.path(), &listen, port, &[])
        .wait_with_output()
        .expect("node exits");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0") && stderr.contains("--insecure"),
        "{stderr}"
    );

    let mut child = spawn_node(dir.path(), &listen, port, &["--insecure"]);
    let channel = channel(port, None);
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let answer = HealthClient::new(channel.clone())
            .check(HealthCheckRequest {
                service: "liveness".into(),
            })
            .await;
        if answer.is_ok() {
            break;
        }
        if let Some(status) = child.try_wait().expect("child status") {
            panic!("node with --insecure exited: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "node with --insecure never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().expect("kill");
    child.wait().expect("wait");
}

/// A multi-leg transfer is authorized leg by leg, as a transfer is: each debited account
/// needs `transfer` (or `issue` for an account that may go negative), and a token bound to
/// account prefixes debits only its own accounts; a refusal names the leg and nothing is
/// recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_leg_transfers_are_authorized_leg_by_leg() {
    use proto::v1::{TransferLeg, TransferLegsRequest};
    let secrets = secrets();
    let cluster = Cluster::start_with(1, &["--tokens-file", secrets.tokens_file.to_str().unwrap()]);
    let channels = vec![channel(cluster.nodes[0].port, None)];
    wait_led(&channels, &secrets.admin).await;
    let (app, minter, tenant) = (
        secrets.app.as_str(),
        secrets.minter.as_str(),
        secrets.tenant.as_str(),
    );
    // Every account in the issuer's partition (of the default 8).
    let home = ledger::partition_of("issuer", 8);
    let mut own = testkit::accounts_in(home, 8, "tenant-a/legs-", 2);
    let (a1, a2) = (own.remove(0), own.remove(0));
    let b1 = testkit::accounts_in(home, 8, "tenant-b/legs-", 1).remove(0);
    for (account, issuer) in [("issuer", true), (&a1, false), (&a2, false), (&b1, false)] {
        open(&channels, &secrets.admin, account, issuer).await;
    }
    let leg = |from: &str, to: &str| TransferLeg {
        from_account: from.into(),
        to_account: to.into(),
        amount: "1.00".into(),
        currency: "USD".into(),
    };
    let send = |token: &str, legs: Vec<TransferLeg>| {
        let (channel, token) = (channels[0].clone(), token.to_owned());
        async move {
            let request = TransferLegsRequest {
                transaction_id: id(),
                legs,
                ..Default::default()
            };
            let transaction_id = request.transaction_id.clone();
            let answer = wallet(channel, Some(&token)).transfer_legs(request).await;
            (transaction_id, answer)
        }
    };

    // The issue scope mints in a set; the transfer scope cannot, and nothing is recorded.
    let five = |to: &str| TransferLeg {
        amount: "5.00".into(),
        ..leg("issuer", to)
    };
    let (_, minted) = send(minter, vec![five(&a1), five(&b1)]).await;
    minted.expect("minted");
    let (refused_id, refused) = send(app, vec![leg(&a1, &a2), leg("issuer", &a2)]).await;
    let error = refused.unwrap_err();
    let (why, metadata) = refusal(&error, Code::PermissionDenied);
    assert_eq!(why, "ISSUE_SCOPE_REQUIRED");
    assert_eq!(metadata.get("leg").map(String::as_str), Some("1"));
    let error = wallet(channels[0].clone(), Some(app))
        .get_transfer(GetTransferRequest {
            transaction_id: refused_id,
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&error), "TRANSFER_NOT_FOUND");

    // A bound token debits only its own accounts (pays anyone).
    let (_, foreign) = send(tenant, vec![leg(&a1, &a2), leg(&b1, &a2)]).await;
    let error = foreign.unwrap_err();
    let (why, metadata) = refusal(&error, Code::PermissionDenied);
    assert_eq!(why, "ACCOUNT_PREFIX_DENIED");
    assert_eq!(metadata.get("leg").map(String::as_str), Some("1"));
    let (_, paid) = send(tenant, vec![leg(&a1, &b1), leg(&b1, &a2)]).await;
    let error = paid.unwrap_err();
    assert_eq!(
        refusal(&error, Code::PermissionDenied).0,
        "ACCOUNT_PREFIX_DENIED",
        "b1 pays in the second leg"
    );
    let (_, own_only) = send(tenant, vec![leg(&a1, &b1), leg(&a1, &a2)]).await;
    own_only.expect("a bound token pays anyone from its own accounts");
    assert_eq!(balance(&channels, app, &a1).await, "3.00");
    assert_eq!(balance(&channels, app, &b1).await, "6.00");
    assert_eq!(balance(&channels, app, &a2).await, "1.00");
}
