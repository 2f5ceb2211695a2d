//! gRPC-web, as a browser speaks it (HTTP/1.1, `application/grpc-web+proto`, a CORS
//! preflight first), over a real socket to real nodes: a listed origin is allowed and its
//! calls are answered like any gRPC call, trailers in the body; another origin gets no CORS
//! grant; the auth layer still decides.

use prost::Message as _;
use proto::v1::{GetBalanceRequest, GetBalanceResponse};
use testkit::Cluster;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::harness::ReadNode;

const ORIGIN: &str = "http://127.0.0.1:8080";

/// One HTTP/1.1 exchange on a fresh connection (`Connection: close`): the status code, the
/// headers (lower-case names) and the body.
async fn exchange(port: u16, request: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    socket.write_all(request).await.expect("send");
    let mut answer = Vec::new();
    socket.read_to_end(&mut answer).await.expect("read");
    let split = answer
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8(answer[..split].to_vec()).expect("ASCII headers");
    let mut lines = head.split("\r\n");
    let status = lines.next().expect("status line");
    let code = status
        .split(' ')
        .nth(1)
        .expect("code")
        .parse()
        .expect("code");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let mut body = answer[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (code, headers, body)
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size");
        let size = usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap(), 16)
            .expect("hex size");
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[line_end + 2..line_end + 2 + size]);
        body = &body[line_end + 2 + size + 2..];
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn preflight(path: &str, origin: &str) -> Vec<u8> {
    format!(
        "OPTIONS {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: {origin}\r\n\
         Access-Control-Request-Method: POST\r\n\
         Access-Control-Request-Headers: content-type,x-grpc-web,authorization\r\n\
         Connection: close\r\n\r\n"
    )
    .into_bytes()
}

/// A unary gRPC-web call: one length-prefixed message in the body.
fn call(path: &str, origin: &str, message: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: {origin}\r\n\
         Content-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        frame.len()
    )
    .into_bytes();
    request.extend_from_slice(&frame);
    request
}

/// The frames of a gRPC-web response body: (message frames, the trailer frame's text).
fn frames(mut body: &[u8]) -> (Vec<Vec<u8>>, String) {
    let (mut messages, mut trailers) = (Vec::new(), String::new());
    while body.len() >= 5 {
        let length = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        let payload = body[5..5 + length].to_vec();
        if body[0] & 0x80 != 0 {
            trailers = String::from_utf8(payload).expect("ASCII trailers");
        } else {
            messages.push(payload);
        }
        body = &body[5 + length..];
    }
    (messages, trailers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_call_the_nodes_with_grpc_web_from_the_listed_origins_only() {
    let origin_flag = format!("--grpc-web-origin={ORIGIN}");
    let cluster = Cluster::start_with(3, &[&origin_flag]);
    let read = ReadNode::start_with(&cluster, vec![origin_flag.clone()]);
    read.wait_serving().await;
    cluster.open_funded_usd(&["web-alice"], "12.34").await;

    // The preflight of the listed origin is granted, with the headers gRPC-web needs.
    let path = "/wallet.v1.QueryService/GetBalance";
    let (code, headers, _) = exchange(read.port, &preflight(path, ORIGIN)).await;
    assert!((200..300).contains(&code), "preflight {code} {headers:?}");
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some(ORIGIN)
    );
    let allowed = header(&headers, "access-control-allow-headers").unwrap_or_default();
    for name in ["x-grpc-web", "authorization", "content-type"] {
        assert!(allowed.contains(name), "{name} not in {allowed:?}");
    }

    // The call itself: the projected balance, and the status in the trailer frame.
    let request = GetBalanceRequest {
        account_id: "web-alice".into(),
        consistency_token: String::new(),
    };
    let deadline = std::time::Instant::now() + testkit::WAIT_MAX;
    let balance = loop {
        let (code, headers, body) =
            exchange(read.port, &call(path, ORIGIN, &request.encode_to_vec())).await;
        assert_eq!(code, 200, "{headers:?}");
        assert_eq!(
            header(&headers, "access-control-allow-origin"),
            Some(ORIGIN)
        );
        let expose = header(&headers, "access-control-expose-headers").unwrap_or_default();
        assert!(expose.contains("grpc-status"), "{expose:?}");
        let (messages, trailers) = frames(&body);
        let status = header(&headers, "grpc-status")
            .map(str::to_owned)
            .or_else(|| {
                trailers
                    .split("\r\n")
                    .find_map(|line| line.strip_prefix("grpc-status:"))
                    .map(|status| status.trim().to_owned())
            });
        match status.as_deref() {
            Some("0") => {
                let response = GetBalanceResponse::decode(&messages[0][..]).expect("response");
                break response.balance.expect("balance").balance;
            }
            // The read node has not folded the funding yet: NOT_FOUND for a moment.
            Some("5") if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            other => panic!("status {other:?}, headers {headers:?}, trailers {trailers:?}"),
        }
    };
    assert_eq!(balance, "12.34");

    // Another origin gets no grant (the browser then refuses to read the answer).
    let (_, headers, _) = exchange(read.port, &preflight(path, "http://evil.example")).await;
    assert_eq!(header(&headers, "access-control-allow-origin"), None);

    // A write node speaks gRPC-web too: an account read through its WalletService.
    let path = "/wallet.v1.WalletService/GetAccount";
    let request = proto::v1::GetAccountRequest {
        account_id: "web-alice".into(),
    };
    let (code, headers, body) = exchange(
        cluster.nodes[0].port,
        &call(path, ORIGIN, &request.encode_to_vec()),
    )
    .await;
    assert_eq!(code, 200, "{headers:?}");
    let (messages, trailers) = frames(&body);
    assert!(trailers.contains("grpc-status:0"), "{trailers:?}");
    let account = proto::v1::GetAccountResponse::decode(&messages[0][..]).expect("response");
    assert_eq!(account.account.expect("account").balance, "12.34");
}
