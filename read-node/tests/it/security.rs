//! A secured deployment end to end: write nodes with TLS, peer mTLS and tokens; a read node
//! that serves TLS and tokens and dials the write nodes over TLS with a `replicate` token;
//! the Rust SDK with a CA and tokens on both sides.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use security::certs::Ca;
use security::tokens::{Scope, file_entry, file_entry_bound, generate};
use wallet_client::{
    BalanceAt, ClientConfig, Code, QueryClient, TlsConfig, Transfer, WalletClient,
};

use testkit::{WAIT_MAX, free_port};

/// Kills the processes it holds when the test ends, passed or failed.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(program: &Path, args: &[String], log: &Path) -> Child {
    let log = std::fs::File::create(log).expect("log file");
    Command::new(program)
        .args(args)
        .env("RUST_LOG", "info,h2=warn,tower=warn")
        .stdout(Stdio::from(log.try_clone().expect("log")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawning a node")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_node_follows_write_nodes_over_tls_with_a_token_and_serves_tls_clients() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = |name: &str| dir.path().join(name);
    let ca = Ca::new("test CA").expect("CA");
    std::fs::write(path("ca.crt"), ca.cert_pem()).expect("CA file");
    ca.issue("node", &["127.0.0.1".into()])
        .expect("node cert")
        .write(dir.path(), "node")
        .expect("write cert");
    let (admin, app, replica, tenant) = (
        generate().unwrap(),
        generate().unwrap(),
        generate().unwrap(),
        generate().unwrap(),
    );
    std::fs::write(
        path("tokens.toml"),
        [
            file_entry("ops", &admin, &[Scope::Admin]),
            // issue: the app's transfers debit the issuer account.
            file_entry("app", &app, &[Scope::Transfer, Scope::Issue, Scope::Read]),
            file_entry("read-node", &replica, &[Scope::Replicate]),
            file_entry_bound(
                "tenant-a",
                &tenant,
                &[Scope::Transfer, Scope::Read],
                &["tenant-a/".to_owned()],
            ),
        ]
        .join("\n"),
    )
    .expect("tokens file");
    std::fs::write(path("read-node.token"), format!("{replica}\n")).expect("token file");
    let s = |p: std::path::PathBuf| p.display().to_string();
    let tls_args = [
        "--tls-cert".to_owned(),
        s(path("node.crt")),
        "--tls-key".to_owned(),
        s(path("node.key")),
        "--tokens-file".to_owned(),
        s(path("tokens.toml")),
    ];

    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let peers = ports
        .iter()
        .enumerate()
        .map(|(i, port)| format!("{}=127.0.0.1:{port}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut processes = Processes(Vec::new());
    for (i, port) in ports.iter().enumerate() {
        let mut args = vec![
            "--node-id".to_owned(),
            (i + 1).to_string(),
            "--listen".to_owned(),
            format!("127.0.0.1:{port}"),
            "--peers".to_owned(),
            peers.clone(),
            "--partitions".to_owned(),
            "2".to_owned(),
            "--data-dir".to_owned(),
            s(path(&format!("write-{i}"))),
            "--peer-ca".to_owned(),
            s(path("ca.crt")),
        ];
        args.extend(tls_args.iter().cloned());
        processes.0.push(spawn(
            &testkit::binary("wallet-write-node"),
            &args,
            &path(&format!("write-{i}.log")),
        ));
    }
    let read_port = free_port();
    let write_nodes = ports
        .iter()
        .map(|port| format!("127.0.0.1:{port}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut args = vec![
        "--listen".to_owned(),
        format!("127.0.0.1:{read_port}"),
        "--write-nodes".to_owned(),
        write_nodes.clone(),
        "--data-dir".to_owned(),
        s(path("read")),
        "--write-node-ca".to_owned(),
        s(path("ca.crt")),
        "--write-node-token-file".to_owned(),
        s(path("read-node.token")),
    ];
    args.extend(tls_args.iter().cloned());
    processes.0.push(spawn(
        Path::new(env!("CARGO_BIN_EXE_wallet-read-node")),
        &args,
        &path("read.log"),
    ));

    let tls = TlsConfig::from_ca_file(path("ca.crt")).expect("CA");
    let client = |token: &str| {
        let mut config = ClientConfig::new(write_nodes.split(','));
        config.tls = Some(tls.clone());
        config.token = Some(token.to_owned());
        config
    };
    let ops = WalletClient::connect(client(&admin)).await.expect("client");
    let deadline = Instant::now() + WAIT_MAX;
    for (account, issuer) in [("issuer", true), ("carol", false), ("tenant-a/dan", false)] {
        loop {
            match ops.open_account(account, "USD", issuer).await {
                Ok(_) => break,
                Err(error) => {
                    assert!(Instant::now() < deadline, "open {account}: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    let payments = WalletClient::connect(client(&app)).await.expect("client");
    let paid = Transfer {
        transaction_id: wallet_client::new_transaction_id(),
        from: "issuer".into(),
        to: "carol".into(),
        amount: "2.50".into(),
        currency: "USD".into(),
        ..Default::default()
    };
    let done = payments
        .transfer(&paid)
        .await
        .expect("transfer over TLS with the app token");
    let tenant_paid = payments
        .transfer(&Transfer {
            transaction_id: wallet_client::new_transaction_id(),
            from: "issuer".into(),
            to: "tenant-a/dan".into(),
            amount: "1.25".into(),
            currency: "USD".into(),
            ..Default::default()
        })
        .await
        .expect("transfer to the tenant");

    // The read node got the events over TLS with its replicate token, and serves TLS.
    let query =
        QueryClient::connect_with([format!("127.0.0.1:{read_port}")], Some(&tls), Some(&app))
            .expect("query client");
    let balance = loop {
        match query.balance("carol", Some(&done.consistency_token)).await {
            Ok(balance) => break balance.balance.expect("balance").balance,
            Err(error) => {
                assert!(
                    Instant::now() < deadline,
                    "read node never served carol: {error}\n{}",
                    std::fs::read_to_string(path("read.log")).unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(balance, "2.50");
    let anonymous = QueryClient::connect_with([format!("127.0.0.1:{read_port}")], Some(&tls), None)
        .expect("query client");
    let error = anonymous.balance("carol", None).await.unwrap_err();
    assert_eq!(error.code(), Code::Unauthenticated, "{error}");
    assert_eq!(error.reason(), "MISSING_TOKEN");

    // A token bound to "tenant-a/" reads and watches only those accounts, and cannot watch a
    // transfer by id (not about one account), on every path.
    let bound = QueryClient::connect_with(
        [format!("127.0.0.1:{read_port}")],
        Some(&tls),
        Some(&tenant),
    )
    .expect("query client");
    let own = bound
        .balance("tenant-a/dan", Some(&tenant_paid.consistency_token))
        .await
        .expect("a bound token reads its own account");
    assert_eq!(own.balance.expect("balance").balance, "1.25");
    assert!(
        !bound
            .history("tenant-a/dan", None, 10)
            .await
            .expect("its own history")
            .entries
            .is_empty()
    );
    let denied = |error: wallet_client::Error| {
        assert_eq!(error.code(), Code::PermissionDenied, "{error}");
        assert_eq!(error.reason(), "ACCOUNT_PREFIX_DENIED", "{error}");
        assert!(!error.to_string().contains("wlt_"), "{error}");
    };
    denied(bound.balance("carol", None).await.unwrap_err());
    denied(bound.history("carol", None, 10).await.unwrap_err());
    denied(
        bound
            .balance_at("carol", BalanceAt::TimestampMs(u64::MAX / 2))
            .await
            .unwrap_err(),
    );
    for accounts in [vec!["carol"], vec!["tenant-a/dan", "carol"]] {
        let accounts = accounts.into_iter().map(String::from).collect();
        let first = tokio::time::timeout(WAIT_MAX, bound.watch_balances(accounts).next())
            .await
            .expect("the watch answers")
            .expect("one item");
        denied(first.unwrap_err());
    }
    let snapshot = tokio::time::timeout(
        WAIT_MAX,
        bound.watch_balances(vec!["tenant-a/dan".into()]).next(),
    )
    .await
    .expect("the watch answers")
    .expect("one item")
    .expect("a bound token watches its own account");
    assert_eq!(
        snapshot.balance.expect("balance").account_id,
        "tenant-a/dan"
    );
    let first = tokio::time::timeout(
        WAIT_MAX,
        bound
            .watch_transfer(paid.transaction_id)
            .await
            .expect("watch")
            .next(),
    )
    .await
    .expect("the watch answers")
    .expect("one item");
    denied(first.unwrap_err());
    // The unbound app token still reads every account.
    assert_eq!(
        query
            .balance("tenant-a/dan", None)
            .await
            .expect("unbound")
            .balance
            .expect("balance")
            .balance,
        "1.25"
    );

    // A plain-text client cannot talk to a TLS read node at all.
    let plain = QueryClient::connect([format!("127.0.0.1:{read_port}")]).expect("query client");
    assert!(plain.balance("carol", None).await.is_err());

    let log = std::fs::read_to_string(path("read.log")).expect("read node log");
    assert!(log.contains("read node serving"), "{log}");
    for secret in [&admin, &app, &replica, &tenant] {
        assert!(
            !log.contains(secret.as_str()),
            "the read node logged a token"
        );
    }
}
