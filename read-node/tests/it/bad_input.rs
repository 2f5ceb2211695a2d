//! The bad-input matrix: malformed requests to every RPC of the write node (WalletService,
//! ClusterService, EventLogService, PeerService) and the read node (QueryService), each
//! answered with its documented code, ErrorInfo reason and BadRequest field, and none of them
//! changing any state. One row per case; `run` performs a row, `answer` reads what came back.
//!
//! Rows that need bytes no well-typed client can produce (invalid UTF-8 in a string field, a
//! wrong wire type, a truncated message, a message above the server's decoding limit) go
//! through `RawCodec`, which sends the given bytes as the gRPC message.
//!
//! No request message of the API has an enum field (prost would keep an unknown value like
//! 99 as is); the protobuf-level equivalent, an unknown field number, is sent raw and must be
//! ignored as protobuf requires (the "served" rows).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::{Buf as _, BufMut as _};
use futures::StreamExt as _;
use proto::internal::peer_service_client::PeerServiceClient;
use proto::internal::{CreditRequest, FetchSnapshotRequest, RaftBatch, RaftEnvelope};
use proto::v1::event_log_service_client::EventLogServiceClient;
use proto::v1::get_balance_at_request::Point;
use proto::v1::query_service_client::QueryServiceClient;
use proto::v1::wallet_service_client::WalletServiceClient;
use proto::v1::{
    GetAccountRequest, GetBalanceAtRequest, GetBalanceRequest, GetTransferRequest,
    ListTransfersRequest, OpenAccountRequest, SubscribeRequest, TransferRequest,
    WatchBalancesRequest, WatchTransferRequest,
};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{AsciiMetadataValue, BinaryMetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt as _;

use crate::harness::ReadNode;
use testkit::{Cluster, WAIT_MAX, transfer_request};

const PARTITIONS: u32 = 4;
const MIB: usize = 1024 * 1024;
/// Valid UUIDs used by rejected transfers: none of them may exist afterwards.
const BAD_TX: [&str; 3] = [
    "0b6f4b2e-4f7e-4d1a-9a53-5d2f3f2c0a01",
    "0b6f4b2e-4f7e-4d1a-9a53-5d2f3f2c0a02",
    "0b6f4b2e-4f7e-4d1a-9a53-5d2f3f2c0a03",
];
/// Well-formed account ids used by rejected requests: none of them may exist afterwards.
const NEVER_OPENED: [&str; 2] = ["guard-new-1", "guard-new-2"];
const UNKNOWN_TX: &str = "0b6f4b2e-4f7e-4d1a-9a53-5d2f3f2c0aff";

/// Sends the bytes it is given as the gRPC message and returns the response's bytes.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let length = src.remaining();
        Ok(Some(src.copy_to_bytes(length).to_vec()))
    }
}

#[derive(Clone, Copy, Debug)]
enum Node {
    Write,
    Read,
}

#[derive(Clone, Copy, Debug)]
enum RawKind {
    Unary,
    ServerStream,
    /// Client-and-server streaming (SubmitTransfers): one frame, then the input ends.
    BidiOneFrame,
}

#[derive(Clone, Debug)]
enum Call {
    Transfer(TransferRequest),
    /// One SubmitTransfers stream with one request; the answer is its result's error.
    Submit(TransferRequest),
    OpenAccount(OpenAccountRequest),
    GetAccount(String),
    GetTransfer(String),
    Subscribe(SubscribeRequest),
    Credit(CreditRequest),
    FetchSnapshot(FetchSnapshotRequest),
    Raft(RaftBatch),
    GetBalance(GetBalanceRequest),
    WatchBalances(WatchBalancesRequest),
    WatchTransfer(String),
    ListTransfers(ListTransfersRequest),
    GetBalanceAt(GetBalanceAtRequest),
    Raw {
        node: Node,
        path: &'static str,
        kind: RawKind,
        body: Vec<u8>,
    },
}

/// What a call got back: served normally, or a status reduced to what the contract names.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Answer {
    Served,
    Rejected {
        code: Code,
        reason: String,
        /// The first BadRequest field violation, "" when there is none.
        field: String,
    },
}

fn answer(status: &Status) -> Answer {
    Answer::Rejected {
        code: status.code(),
        reason: status
            .get_details_error_info()
            .map(|info| info.reason)
            .unwrap_or_default(),
        field: status
            .get_details_bad_request()
            .and_then(|bad| bad.field_violations.first().map(|v| v.field.clone()))
            .unwrap_or_default(),
    }
}

fn bad(reason: &str, field: &str) -> Answer {
    Answer::Rejected {
        code: Code::InvalidArgument,
        reason: reason.into(),
        field: field.into(),
    }
}

fn rejected(code: Code, reason: &str) -> Answer {
    Answer::Rejected {
        code,
        reason: reason.into(),
        field: String::new(),
    }
}

/// NOT_FOUND naming the field that names what does not exist (`BadRequest`, as for
/// INVALID_ARGUMENT).
fn not_found(reason: &str, field: &str) -> Answer {
    Answer::Rejected {
        code: Code::NotFound,
        reason: reason.into(),
        field: field.into(),
    }
}

struct Case {
    name: &'static str,
    call: Call,
    /// gRPC metadata sent with the call: (key, raw value bytes); `-bin` keys are binary.
    metadata: Vec<(&'static str, Vec<u8>)>,
    expect: Answer,
}

fn case(name: &'static str, call: Call, expect: Answer) -> Case {
    Case {
        name,
        call,
        metadata: Vec::new(),
        expect,
    }
}

fn request<T>(message: T, metadata: &[(&'static str, Vec<u8>)]) -> Request<T> {
    let mut request = Request::new(message);
    // Before the metadata, so a row can replace grpc-timeout.
    request.set_timeout(Duration::from_secs(10));
    for (key, value) in metadata {
        if key.ends_with("-bin") {
            request
                .metadata_mut()
                .insert_bin(*key, BinaryMetadataValue::from_bytes(value));
        } else {
            let value = AsciiMetadataValue::try_from(value.as_slice())
                .expect("the value is a valid HTTP header value");
            request.metadata_mut().insert(*key, value);
        }
    }
    request
}

struct Endpoints {
    write: Channel,
    read: Channel,
}

async fn run(endpoints: &Endpoints, case: &Case) -> Answer {
    let metadata = &case.metadata;
    let write = || endpoints.write.clone();
    let result: Result<(), Status> = match case.call.clone() {
        Call::Transfer(message) => WalletServiceClient::new(write())
            .transfer(request(message, metadata))
            .await
            .map(drop),
        Call::Submit(message) => {
            let stream = tokio_stream::iter(vec![message]);
            match WalletServiceClient::new(write())
                .submit_transfers(request(stream, metadata))
                .await
            {
                Err(status) => Err(status),
                Ok(response) => {
                    let mut results = response.into_inner();
                    let first = match results.next().await.expect("one result per request") {
                        Ok(first) => first,
                        Err(status) => return answer(&status),
                    };
                    let error = first.error.expect("a rejected transfer carries its error");
                    assert_eq!(first.status, "rejected", "{}", case.name);
                    return Answer::Rejected {
                        code: Code::from(error.code),
                        reason: error.reason,
                        field: error.field,
                    };
                }
            }
        }
        Call::OpenAccount(message) => WalletServiceClient::new(write())
            .open_account(request(message, metadata))
            .await
            .map(drop),
        Call::GetAccount(account_id) => WalletServiceClient::new(write())
            .get_account(request(GetAccountRequest { account_id }, metadata))
            .await
            .map(drop),
        Call::GetTransfer(transaction_id) => WalletServiceClient::new(write())
            .get_transfer(request(GetTransferRequest { transaction_id }, metadata))
            .await
            .map(drop),
        Call::Subscribe(message) => EventLogServiceClient::new(write())
            .subscribe(request(message, metadata))
            .await
            .map(drop),
        Call::Credit(message) => PeerServiceClient::new(write())
            .credit(request(message, metadata))
            .await
            .map(drop),
        Call::FetchSnapshot(message) => PeerServiceClient::new(write())
            .fetch_snapshot(request(message, metadata))
            .await
            .map(drop),
        Call::Raft(batch) => PeerServiceClient::new(write())
            .raft(request(tokio_stream::iter(vec![batch]), metadata))
            .await
            .map(drop),
        Call::GetBalance(message) => QueryServiceClient::new(endpoints.read.clone())
            .get_balance(request(message, metadata))
            .await
            .map(drop),
        Call::WatchBalances(message) => QueryServiceClient::new(endpoints.read.clone())
            .watch_balances(request(message, metadata))
            .await
            .map(drop),
        Call::WatchTransfer(transaction_id) => QueryServiceClient::new(endpoints.read.clone())
            .watch_transfer(request(WatchTransferRequest { transaction_id }, metadata))
            .await
            .map(drop),
        Call::ListTransfers(message) => QueryServiceClient::new(endpoints.read.clone())
            .list_transfers(request(message, metadata))
            .await
            .map(drop),
        Call::GetBalanceAt(message) => QueryServiceClient::new(endpoints.read.clone())
            .get_balance_at(request(message, metadata))
            .await
            .map(drop),
        Call::Raw {
            node,
            path,
            kind,
            body,
        } => {
            let channel = match node {
                Node::Write => write(),
                Node::Read => endpoints.read.clone(),
            };
            let mut grpc = tonic::client::Grpc::new(channel);
            grpc.ready().await.expect("channel ready");
            let path = PathAndQuery::from_static(path);
            match kind {
                RawKind::Unary => grpc
                    .unary(request(body, metadata), path, RawCodec)
                    .await
                    .map(drop),
                RawKind::ServerStream => grpc
                    .server_streaming(request(body, metadata), path, RawCodec)
                    .await
                    .map(drop),
                RawKind::BidiOneFrame => {
                    let frames = tokio_stream::iter(vec![body]);
                    match grpc
                        .streaming(request(frames, metadata), path, RawCodec)
                        .await
                    {
                        Err(status) => Err(status),
                        // The stream ends with the status once the frame fails to decode.
                        Ok(response) => {
                            let mut results = response.into_inner();
                            loop {
                                match results.next().await {
                                    Some(Ok(_)) => continue,
                                    Some(Err(status)) => break Err(status),
                                    None => break Ok(()),
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    match result {
        Ok(()) => Answer::Served,
        Err(status) => answer(&status),
    }
}

/// Protobuf wire helpers for the raw rows.
fn tag(field: u32, wire_type: u8) -> Vec<u8> {
    varint(u64::from(field) << 3 | u64::from(wire_type))
}

fn varint(mut value: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            bytes.push(byte);
            return bytes;
        }
        bytes.push(byte | 0x80);
    }
}

fn string_field(field: u32, value: &[u8]) -> Vec<u8> {
    let mut bytes = tag(field, 2);
    bytes.extend(varint(value.len() as u64));
    bytes.extend_from_slice(value);
    bytes
}

fn concat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// A message of `length` bytes or a little more (one string field): used above the limit.
fn oversized(length: usize) -> Vec<u8> {
    string_field(1, &vec![b'a'; length])
}

fn transfer(tx: &str, from: &str, to: &str, amount: &str, currency: &str) -> TransferRequest {
    transfer_request(tx, from, to, amount, currency)
}

fn raw(node: Node, path: &'static str, kind: RawKind, body: Vec<u8>) -> Call {
    Call::Raw {
        node,
        path,
        kind,
        body,
    }
}

fn cases(alice_partition: u32) -> Vec<Case> {
    use Call::*;
    use Node::{Read, Write};
    use RawKind::{BidiOneFrame, ServerStream, Unary};
    let huge = "a".repeat(MIB);
    let write_limit = write_node::limits::GRPC_MESSAGE_BYTES_MAX;
    let read_limit = read_node::limits::GRPC_MESSAGE_BYTES_MAX;
    let other_partition = (alice_partition + 1) % PARTITIONS;
    let invalid_utf8 = b"ali\xc3\x28ce".to_vec();
    vec![
        // --- WalletService.Transfer (the basic amount/currency/id cases live in the write
        // node's own test; these are the hostile shapes).
        case(
            "transfer: transaction_id with a trailing space",
            Transfer(transfer(
                "0b6f4b2e-4f7e-4d1a-9a53-5d2f3f2c0a0 ",
                "alice",
                "bob",
                "1.00",
                "USD",
            )),
            bad("INVALID_TRANSACTION_ID", "transaction_id"),
        ),
        case(
            "transfer: transaction_id in braces",
            Transfer(transfer(
                "{0b6f4b2e-4f7e-4d1a-9a53-5d2f3f2c0a01}",
                "alice",
                "bob",
                "1.00",
                "USD",
            )),
            bad("INVALID_TRANSACTION_ID", "transaction_id"),
        ),
        case(
            "transfer: transaction_id as a URN",
            Transfer(transfer(
                "urn:uuid:0b6f4b2e-4f7e-4d1a-9a53-5d2f3f2c0a01",
                "alice",
                "bob",
                "1.00",
                "USD",
            )),
            bad("INVALID_TRANSACTION_ID", "transaction_id"),
        ),
        case(
            "transfer: 1 MiB transaction_id",
            Transfer(transfer(&huge, "alice", "bob", "1.00", "USD")),
            bad("INVALID_TRANSACTION_ID", "transaction_id"),
        ),
        case(
            "transfer: from_account with a tab",
            Transfer(transfer(BAD_TX[0], "al\tice", "bob", "1.00", "USD")),
            bad("INVALID_ACCOUNT_ID", "from_account"),
        ),
        case(
            "transfer: to_account with a NUL byte",
            Transfer(transfer(BAD_TX[0], "alice", "bob\0", "1.00", "USD")),
            bad("INVALID_ACCOUNT_ID", "to_account"),
        ),
        case(
            "transfer: 1 MiB to_account",
            Transfer(transfer(BAD_TX[0], "alice", &huge, "1.00", "USD")),
            bad("INVALID_ACCOUNT_ID", "to_account"),
        ),
        case(
            "transfer: 100000-digit amount",
            Transfer(transfer(
                BAD_TX[0],
                "alice",
                "bob",
                &"9".repeat(100_000),
                "USD",
            )),
            bad("INVALID_AMOUNT", "amount"),
        ),
        case(
            "transfer: amount with a trailing newline",
            Transfer(transfer(BAD_TX[0], "alice", "bob", "1.00\n", "USD")),
            bad("INVALID_AMOUNT", "amount"),
        ),
        case(
            "transfer: amount in full-width digits",
            Transfer(transfer(BAD_TX[0], "alice", "bob", "\u{ff11}", "USD")),
            bad("INVALID_AMOUNT", "amount"),
        ),
        case(
            "transfer: 1 MiB currency",
            Transfer(transfer(BAD_TX[0], "alice", "bob", "1.00", &huge)),
            bad("UNKNOWN_CURRENCY", "currency"),
        ),
        case(
            "transfer: currency XXX (no minor units)",
            Transfer(transfer(BAD_TX[0], "alice", "bob", "1", "XXX")),
            bad("UNKNOWN_CURRENCY", "currency"),
        ),
        case(
            "transfer: raw, invalid UTF-8 in from_account",
            raw(
                Write,
                "/wallet.v1.WalletService/Transfer",
                Unary,
                concat(&[
                    string_field(1, BAD_TX[1].as_bytes()),
                    string_field(2, &invalid_utf8),
                    string_field(3, b"bob"),
                    string_field(4, b"1.00"),
                    string_field(5, b"USD"),
                ]),
            ),
            bad("MALFORMED_MESSAGE", ""),
        ),
        case(
            "transfer: raw, message above the decoding limit",
            raw(
                Write,
                "/wallet.v1.WalletService/Transfer",
                Unary,
                oversized(write_limit + 1),
            ),
            bad("MESSAGE_TOO_LARGE", ""),
        ),
        // --- WalletService.SubmitTransfers: per-transfer results, and frames that are not
        // transfers end the stream with the status.
        case(
            "submit: empty transaction_id",
            Submit(transfer("", "alice", "bob", "1.00", "USD")),
            bad("INVALID_TRANSACTION_ID", "transaction_id"),
        ),
        case(
            "submit: negative amount",
            Submit(transfer(BAD_TX[1], "alice", "bob", "-5.00", "USD")),
            bad("INVALID_AMOUNT", "amount"),
        ),
        case(
            "submit: raw frame that is not protobuf",
            raw(
                Write,
                "/wallet.v1.WalletService/SubmitTransfers",
                BidiOneFrame,
                vec![0xff; 16],
            ),
            bad("MALFORMED_MESSAGE", ""),
        ),
        case(
            "submit: raw frame with invalid UTF-8 in to_account",
            raw(
                Write,
                "/wallet.v1.WalletService/SubmitTransfers",
                BidiOneFrame,
                concat(&[
                    string_field(1, BAD_TX[2].as_bytes()),
                    string_field(2, b"alice"),
                    string_field(3, &invalid_utf8),
                    string_field(4, b"1.00"),
                    string_field(5, b"USD"),
                ]),
            ),
            bad("MALFORMED_MESSAGE", ""),
        ),
        case(
            "submit: raw frame above the decoding limit",
            raw(
                Write,
                "/wallet.v1.WalletService/SubmitTransfers",
                BidiOneFrame,
                oversized(write_limit + 1),
            ),
            bad("MESSAGE_TOO_LARGE", ""),
        ),
        // --- WalletService.OpenAccount
        case(
            "open: account_id with a trailing space",
            OpenAccount(OpenAccountRequest {
                account_id: "guard-new-1 ".into(),
                currency: "USD".into(),
                allow_negative_balance: false,
                ..Default::default()
            }),
            bad("INVALID_ACCOUNT_ID", "account_id"),
        ),
        case(
            "open: 257-byte account_id",
            OpenAccount(OpenAccountRequest {
                account_id: "a".repeat(257),
                currency: "USD".into(),
                allow_negative_balance: false,
                ..Default::default()
            }),
            bad("INVALID_ACCOUNT_ID", "account_id"),
        ),
        case(
            "open: account_id with DEL (0x7f)",
            OpenAccount(OpenAccountRequest {
                account_id: "guard\u{7f}".into(),
                currency: "USD".into(),
                allow_negative_balance: true,
                ..Default::default()
            }),
            bad("INVALID_ACCOUNT_ID", "account_id"),
        ),
        case(
            "open: lowercase currency",
            OpenAccount(OpenAccountRequest {
                account_id: NEVER_OPENED[0].into(),
                currency: "usd".into(),
                allow_negative_balance: false,
                ..Default::default()
            }),
            bad("UNKNOWN_CURRENCY", "currency"),
        ),
        case(
            "open: currency XAU (no minor units)",
            OpenAccount(OpenAccountRequest {
                account_id: NEVER_OPENED[1].into(),
                currency: "XAU".into(),
                allow_negative_balance: false,
                ..Default::default()
            }),
            bad("UNKNOWN_CURRENCY", "currency"),
        ),
        case(
            "open: raw, account_id sent as a varint (wrong wire type)",
            raw(
                Write,
                "/wallet.v1.WalletService/OpenAccount",
                Unary,
                concat(&[tag(1, 0), varint(7), string_field(2, b"USD")]),
            ),
            bad("MALFORMED_MESSAGE", ""),
        ),
        // --- WalletService.GetAccount
        case(
            "get account: empty account_id",
            GetAccount(String::new()),
            bad("INVALID_ACCOUNT_ID", "account_id"),
        ),
        case(
            "get account: 1 MiB account_id",
            GetAccount(huge.clone()),
            bad("INVALID_ACCOUNT_ID", "account_id"),
        ),
        case(
            "get account: unknown account",
            GetAccount(NEVER_OPENED[0].into()),
            not_found("ACCOUNT_NOT_FOUND", "account_id"),
        ),
        case(
            "get account: raw, truncated message",
            raw(
                Write,
                "/wallet.v1.WalletService/GetAccount",
                Unary,
                concat(&[tag(1, 2), varint(10), b"ab".to_vec()]),
            ),
            bad("MALFORMED_MESSAGE", ""),
        ),
        // --- WalletService.GetTransfer
        case(
            "get transfer: not a UUID",
            GetTransfer("not-a-uuid".into()),
            bad("INVALID_TRANSACTION_ID", "transaction_id"),
        ),
        case(
            "get transfer: nil UUID",
            GetTransfer("00000000-0000-0000-0000-000000000000".into()),
            bad("INVALID_TRANSACTION_ID", "transaction_id"),
        ),
        case(
            "get transfer: UUID without hyphens",
            GetTransfer("0b6f4b2e4f7e4d1a9a535d2f3f2c0a01".into()),
            bad("INVALID_TRANSACTION_ID", "transaction_id"),
        ),
        case(
            "get transfer: unknown id",
            GetTransfer(UNKNOWN_TX.into()),
            not_found("TRANSFER_NOT_FOUND", "transaction_id"),
        ),
        // --- ClusterService
        case(
            "cluster status: raw, bool sent as a string (wrong wire type)",
            raw(
                Write,
                "/wallet.v1.ClusterService/GetClusterStatus",
                Unary,
                string_field(1, b"yes"),
            ),
            bad("MALFORMED_MESSAGE", ""),
        ),
        case(
            "cluster status: raw, above the decoding limit",
            raw(
                Write,
                "/wallet.v1.ClusterService/GetClusterStatus",
                Unary,
                oversized(write_limit + 1),
            ),
            bad("MESSAGE_TOO_LARGE", ""),
        ),
        case(
            "cluster status: raw, unknown field 99 = 99 (ignored, as protobuf requires)",
            raw(
                Write,
                "/wallet.v1.ClusterService/GetClusterStatus",
                Unary,
                concat(&[tag(99, 0), varint(99)]),
            ),
            Answer::Served,
        ),
        // --- EventLogService.Subscribe
        case(
            "subscribe: partition = partition count",
            Subscribe(SubscribeRequest {
                partition: PARTITIONS,
                from_index: 1,
            }),
            bad("INVALID_PARTITION", "partition"),
        ),
        case(
            "subscribe: partition u32::MAX",
            Subscribe(SubscribeRequest {
                partition: u32::MAX,
                from_index: 1,
            }),
            bad("INVALID_PARTITION", "partition"),
        ),
        case(
            "subscribe: from_index 0",
            Subscribe(SubscribeRequest {
                partition: 0,
                from_index: 0,
            }),
            bad("INVALID_FROM_INDEX", "from_index"),
        ),
        case(
            "subscribe: raw, 11-byte varint (overflowing)",
            raw(
                Write,
                "/wallet.v1.EventLogService/Subscribe",
                ServerStream,
                concat(&[tag(2, 0), vec![0xff; 10], vec![0x01]]),
            ),
            bad("MALFORMED_MESSAGE", ""),
        ),
        // --- PeerService (internal, but on the same port)
        case(
            "peer fetch snapshot: from a node that is not a peer",
            FetchSnapshot(FetchSnapshotRequest {
                from_node: 99,
                partition: 0,
                index: 1,
                events_after: 0,
            }),
            rejected(Code::PermissionDenied, "NOT_A_PEER"),
        ),
        case(
            "peer fetch snapshot: unknown snapshot",
            FetchSnapshot(FetchSnapshotRequest {
                from_node: 2,
                partition: 0,
                index: u64::MAX,
                events_after: 0,
            }),
            not_found("SNAPSHOT_NOT_FOUND", "index"),
        ),
        case(
            "peer credit: partition out of range",
            Credit(CreditRequest {
                partition: 99,
                transfers: vec![],
            }),
            bad("INVALID_PARTITION", "partition"),
        ),
        case(
            "peer credit: undecodable transfer",
            Credit(CreditRequest {
                partition: 0,
                transfers: vec![vec![0xff; 7]],
            }),
            bad("MALFORMED_MESSAGE", "transfers"),
        ),
        case(
            "peer raft: from a node that is not a peer",
            Raft(RaftBatch {
                from_node: 99,
                messages: vec![],
                ..Default::default()
            }),
            rejected(Code::PermissionDenied, "NOT_A_PEER"),
        ),
        case(
            "peer raft: undecodable raft message",
            Raft(RaftBatch {
                from_node: 2,
                messages: vec![RaftEnvelope {
                    partition: 0,
                    message: vec![0xff; 9],
                }],
                ..Default::default()
            }),
            bad("MALFORMED_MESSAGE", "messages"),
        ),
        // --- QueryService.GetBalance
        case(
            "balance: empty account_id",
            GetBalance(GetBalanceRequest {
                account_id: String::new(),
                consistency_token: String::new(),
            }),
            bad("INVALID_ACCOUNT_ID", "account_id"),
        ),
        case(
            "balance: token that is not a token",
            GetBalance(GetBalanceRequest {
                account_id: "alice".into(),
                consistency_token: "garbage".into(),
            }),
            bad("INVALID_CONSISTENCY_TOKEN", "consistency_token"),
        ),
        case(
            "balance: token naming partition 99",
            GetBalance(GetBalanceRequest {
                account_id: "alice".into(),
                consistency_token: "v1.99.1".into(),
            }),
            bad("INVALID_CONSISTENCY_TOKEN", "consistency_token"),
        ),
        case(
            "balance: token index above u64::MAX",
            GetBalance(GetBalanceRequest {
                account_id: "alice".into(),
                consistency_token: "v1.0.18446744073709551616".into(),
            }),
            bad("INVALID_CONSISTENCY_TOKEN", "consistency_token"),
        ),
        case(
            "balance: token index 0",
            GetBalance(GetBalanceRequest {
                account_id: "alice".into(),
                consistency_token: "v1.0.0".into(),
            }),
            bad("INVALID_CONSISTENCY_TOKEN", "consistency_token"),
        ),
        case(
            "balance: negative token index",
            GetBalance(GetBalanceRequest {
                account_id: "alice".into(),
                consistency_token: "v1.0.-1".into(),
            }),
            bad("INVALID_CONSISTENCY_TOKEN", "consistency_token"),
        ),
        case(
            "balance: token naming three positions",
            GetBalance(GetBalanceRequest {
                account_id: "alice".into(),
                consistency_token: "v1.0.1.1.1.2.1".into(),
            }),
            bad("INVALID_CONSISTENCY_TOKEN", "consistency_token"),
        ),
        case(
            "balance: 1 MiB token",
            GetBalance(GetBalanceRequest {
                account_id: "alice".into(),
                consistency_token: format!("v1{}", ".0.1".repeat(MIB / 4)),
            }),
            bad("INVALID_CONSISTENCY_TOKEN", "consistency_token"),
        ),
        case(
            "balance: unknown account",
            GetBalance(GetBalanceRequest {
                account_id: NEVER_OPENED[0].into(),
                consistency_token: String::new(),
            }),
            not_found("ACCOUNT_NOT_FOUND", "account_id"),
        ),
        case(
            "balance: raw, invalid UTF-8 in account_id",
            raw(
                Read,
                "/wallet.v1.QueryService/GetBalance",
                Unary,
                string_field(1, &invalid_utf8),
            ),
            bad("MALFORMED_MESSAGE", ""),
        ),
        // --- QueryService.WatchBalances
        case(
            "watch balances: no accounts",
            WatchBalances(WatchBalancesRequest {
                account_ids: vec![],
                resume_after_sequence: Default::default(),
            }),
            bad("INVALID_ACCOUNT_ID", "account_ids"),
        ),
        case(
            "watch balances: 1001 accounts",
            WatchBalances(WatchBalancesRequest {
                account_ids: (0..1001).map(|i| format!("acct-{i}")).collect(),
                resume_after_sequence: Default::default(),
            }),
            bad("TOO_MANY_ACCOUNTS", "account_ids"),
        ),
        case(
            "watch balances: one id with a newline",
            WatchBalances(WatchBalancesRequest {
                account_ids: vec!["alice".into(), "b\nob".into()],
                resume_after_sequence: Default::default(),
            }),
            bad("INVALID_ACCOUNT_ID", "account_ids"),
        ),
        case(
            "watch balances: resume sequence for an account not watched",
            WatchBalances(WatchBalancesRequest {
                account_ids: vec!["alice".into()],
                resume_after_sequence: [("bob".to_string(), 1)].into(),
            }),
            bad("INVALID_RESUME_SEQUENCE", "resume_after_sequence"),
        ),
        case(
            "watch balances: raw, above the decoding limit",
            raw(
                Read,
                "/wallet.v1.QueryService/WatchBalances",
                ServerStream,
                oversized(read_limit + 1),
            ),
            bad("MESSAGE_TOO_LARGE", ""),
        ),
        // --- QueryService.WatchTransfer
        case(
            "watch transfer: not a UUID",
            WatchTransfer("xyz".into()),
            bad("INVALID_TRANSACTION_ID", "transaction_id"),
        ),
        case(
            "watch transfer: UUID with a control character",
            WatchTransfer("0b6f4b2e-4f7e-4d1a-9a53-5d2f3f2c0a0\u{1}".into()),
            bad("INVALID_TRANSACTION_ID", "transaction_id"),
        ),
        // --- QueryService.ListTransfers
        case(
            "history: page_size 1001",
            ListTransfers(ListTransfersRequest {
                account_id: "alice".into(),
                page_token: String::new(),
                page_size: 1001,
                ..Default::default()
            }),
            bad("PAGE_SIZE_TOO_LARGE", "page_size"),
        ),
        case(
            "history: page_size u32::MAX",
            ListTransfers(ListTransfersRequest {
                account_id: "alice".into(),
                page_token: String::new(),
                page_size: u32::MAX,
                ..Default::default()
            }),
            bad("PAGE_SIZE_TOO_LARGE", "page_size"),
        ),
        case(
            "history: raw, page_size as a 64-bit varint (prost truncates to u32::MAX)",
            raw(
                Read,
                "/wallet.v1.QueryService/ListTransfers",
                Unary,
                concat(&[string_field(1, b"alice"), tag(3, 0), varint(u64::MAX)]),
            ),
            bad("PAGE_SIZE_TOO_LARGE", "page_size"),
        ),
        case(
            "history: page_token h1.0",
            ListTransfers(ListTransfersRequest {
                account_id: "alice".into(),
                page_token: "h1.0".into(),
                page_size: 10,
                ..Default::default()
            }),
            bad("INVALID_PAGE_TOKEN", "page_token"),
        ),
        case(
            "history: negative page_token",
            ListTransfers(ListTransfersRequest {
                account_id: "alice".into(),
                page_token: "h1.-5".into(),
                page_size: 10,
                ..Default::default()
            }),
            bad("INVALID_PAGE_TOKEN", "page_token"),
        ),
        case(
            "history: page_token above u64::MAX",
            ListTransfers(ListTransfersRequest {
                account_id: "alice".into(),
                page_token: "h1.99999999999999999999".into(),
                page_size: 10,
                ..Default::default()
            }),
            bad("INVALID_PAGE_TOKEN", "page_token"),
        ),
        case(
            "history: 1 MiB account_id",
            ListTransfers(ListTransfersRequest {
                account_id: huge.clone(),
                page_token: String::new(),
                page_size: 10,
                ..Default::default()
            }),
            bad("INVALID_ACCOUNT_ID", "account_id"),
        ),
        case(
            "history: end_time before start_time",
            ListTransfers(ListTransfersRequest {
                account_id: "alice".into(),
                start_time: Some(prost_types::Timestamp {
                    seconds: 2_000_000_000,
                    nanos: 0,
                }),
                end_time: Some(prost_types::Timestamp {
                    seconds: 1_000_000_000,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            bad("INVALID_TIME_RANGE", "end_time"),
        ),
        case(
            "history: start_time before the epoch",
            ListTransfers(ListTransfersRequest {
                account_id: "alice".into(),
                start_time: Some(prost_types::Timestamp {
                    seconds: -1,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            bad("INVALID_TIME_RANGE", "start_time"),
        ),
        // --- QueryService.GetBalanceAt
        case(
            "balance at: no point",
            GetBalanceAt(GetBalanceAtRequest {
                account_id: "alice".into(),
                point: None,
            }),
            bad("MISSING_POINT", "point"),
        ),
        case(
            "balance at: position that is not a token",
            GetBalanceAt(GetBalanceAtRequest {
                account_id: "alice".into(),
                point: Some(Point::Position("abc".into())),
            }),
            bad("INVALID_POSITION", "position"),
        ),
        case(
            "balance at: position in another partition",
            GetBalanceAt(GetBalanceAtRequest {
                account_id: "alice".into(),
                point: Some(Point::Position(format!("v1.{other_partition}.1"))),
            }),
            bad("POSITION_PARTITION_MISMATCH", "position"),
        ),
        case(
            "balance at: timestamp 0 (before the account existed)",
            GetBalanceAt(GetBalanceAtRequest {
                account_id: "alice".into(),
                point: Some(Point::TimestampMs(0)),
            }),
            not_found("ACCOUNT_NOT_FOUND", "account_id"),
        ),
        // --- Metadata the services do not use is ignored, whatever its bytes: these calls
        // are served (and the bad ones among them still get their own error).
        Case {
            name: "metadata: ASCII value with non-ASCII (invalid UTF-8) bytes",
            call: GetAccount("alice".into()),
            metadata: vec![("x-note", b"caf\xc3\x28 \xff\xfe".to_vec())],
            expect: Answer::Served,
        },
        Case {
            name: "metadata: binary value that is not UTF-8",
            call: GetBalance(GetBalanceRequest {
                account_id: "alice".into(),
                consistency_token: String::new(),
            }),
            metadata: vec![("x-trace-bin", vec![0xff, 0x00, 0xc3, 0x28])],
            expect: Answer::Served,
        },
        Case {
            name: "metadata: grpc-timeout that is not a timeout (ignored)",
            call: GetAccount("alice".into()),
            metadata: vec![("grpc-timeout", b"soon".to_vec())],
            expect: Answer::Served,
        },
        Case {
            name: "metadata: grpc-encoding the server does not accept",
            call: GetAccount("alice".into()),
            metadata: vec![("grpc-encoding", b"br".to_vec())],
            expect: rejected(Code::Unimplemented, "UNSUPPORTED_COMPRESSION"),
        },
        Case {
            name: "metadata: grpc-encoding with non-ASCII bytes",
            call: GetBalance(GetBalanceRequest {
                account_id: "alice".into(),
                consistency_token: String::new(),
            }),
            metadata: vec![("grpc-encoding", vec![0xc3, 0x28])],
            expect: rejected(Code::Unimplemented, "UNSUPPORTED_COMPRESSION"),
        },
        case(
            "unknown method of a known service",
            raw(Write, "/wallet.v1.WalletService/Nope", Unary, vec![]),
            rejected(Code::Unimplemented, "UNKNOWN_METHOD"),
        ),
        case(
            "unknown service",
            raw(Read, "/wallet.v1.NoSuchService/Get", Unary, vec![]),
            rejected(Code::Unimplemented, "UNKNOWN_METHOD"),
        ),
        Case {
            name: "metadata: junk metadata on an invalid transfer",
            call: Transfer(transfer(BAD_TX[2], "alice", "bob", "NaN", "USD")),
            metadata: vec![("x-note", vec![0x80; 64])],
            expect: bad("INVALID_AMOUNT", "amount"),
        },
    ]
}

/// Everything the matrix could have changed, as seen by the write and the read side.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    balances: Vec<(String, String)>,
    transfers: Vec<(String, Result<i32, Code>)>,
    accounts_missing: Vec<(String, Code)>,
    history_len: usize,
    read_balances: Vec<(String, i64)>,
}

async fn observe(cluster: &Cluster, read: &Channel, transfers: &[String]) -> Observed {
    let mut balances = Vec::new();
    for account in ["issuer", "alice", "bob"] {
        let account = cluster.account(account).await.expect("account");
        balances.push((account.account_id, account.balance));
    }
    let mut observed_transfers = Vec::new();
    for transaction_id in transfers.iter().map(String::as_str).chain(BAD_TX) {
        let answer = cluster
            .on_leader(|mut client| {
                let transaction_id = transaction_id.to_owned();
                async move {
                    client
                        .get_transfer(GetTransferRequest { transaction_id })
                        .await
                }
            })
            .await;
        observed_transfers.push((
            transaction_id.to_owned(),
            answer
                .map(|response| response.into_inner().transfer.expect("transfer").status)
                .map_err(|status| status.code()),
        ));
    }
    let mut accounts_missing = Vec::new();
    for account in NEVER_OPENED {
        let code = cluster.account(account).await.expect_err("never opened");
        accounts_missing.push((account.to_owned(), code.code()));
    }
    let mut query = QueryServiceClient::new(read.clone());
    let history_len = query
        .list_transfers(ListTransfersRequest {
            account_id: "alice".into(),
            page_token: String::new(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("history")
        .into_inner()
        .entries
        .len();
    let mut read_balances = Vec::new();
    for account in ["issuer", "alice", "bob"] {
        let balance = query
            .get_balance(GetBalanceRequest {
                account_id: account.into(),
                consistency_token: String::new(),
            })
            .await
            .expect("balance")
            .into_inner()
            .balance
            .expect("balance");
        read_balances.push((account.to_owned(), balance.balance_minor));
    }
    Observed {
        balances,
        transfers: observed_transfers,
        accounts_missing,
        history_len,
        read_balances,
    }
}

/// (term, commit index) of every partition on node 1: no bad input may reach a raft log.
async fn logs(cluster: &Cluster) -> BTreeMap<u32, (u64, u64)> {
    let status = cluster.status(1).await.expect("status");
    status
        .partitions
        .iter()
        .map(|p| (p.partition, (p.term, p.commit_index)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_matrix_gets_documented_errors_and_changes_nothing() {
    let cluster = Cluster::start_partitioned(3, PARTITIONS, &[]);
    cluster.wait_leader().await;
    let read = ReadNode::start(&cluster);
    read.wait_serving().await;
    for (account, issuer) in [("issuer", true), ("alice", false), ("bob", false)] {
        cluster
            .open_account(account, "USD", issuer)
            .await
            .expect("open");
    }
    let funding = uuid::Uuid::new_v4().to_string();
    let payment = uuid::Uuid::new_v4().to_string();
    cluster
        .transfer(&transfer(&funding, "issuer", "alice", "100.00", "USD"))
        .await
        .expect("fund");
    let paid = cluster
        .transfer(&transfer(&payment, "alice", "bob", "10.00", "USD"))
        .await
        .expect("pay");
    let endpoints = Endpoints {
        write: Channel::from_shared(cluster.endpoint(1))
            .expect("uri")
            .connect_lazy(),
        read: Channel::from_shared(format!("http://{}", read.endpoint()))
            .expect("uri")
            .connect_lazy(),
    };
    // The read node has folded everything before the matrix starts.
    QueryServiceClient::new(endpoints.read.clone())
        .get_balance(GetBalanceRequest {
            account_id: "bob".into(),
            consistency_token: paid.consistency_token.clone(),
        })
        .await
        .expect("read node caught up");

    let known = [funding, payment];
    let before = observe(&cluster, &endpoints.read, &known).await;
    let logs_before = logs(&cluster).await;
    let cases = cases(ledger::partition_of("alice", PARTITIONS));
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let deadline = Instant::now() + WAIT_MAX;
        // Only an election in progress may make a read row answer UNAVAILABLE: retry those.
        let got = loop {
            let got = run(&endpoints, case).await;
            match &got {
                Answer::Rejected { code, .. }
                    if *code == Code::Unavailable && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                _ => break got,
            }
        };
        if got != case.expect {
            failures.push(format!(
                "{}:\n    expected {:?}\n    got      {:?}",
                case.name, case.expect, got
            ));
        }
    }
    eprintln!(
        "bad-input matrix: {} cases, {} answered as documented",
        cases.len(),
        cases.len() - failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases answered otherwise:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    let after = observe(&cluster, &endpoints.read, &known).await;
    assert_eq!(before, after, "a bad input changed the ledger");
    assert!(
        after
            .transfers
            .iter()
            .filter(|(id, _)| BAD_TX.contains(&id.as_str()))
            .all(|(_, answer)| *answer == Err(Code::NotFound)),
        "{after:?}"
    );
    assert!(
        after
            .accounts_missing
            .iter()
            .all(|(_, code)| *code == Code::NotFound)
    );
    // Nothing was proposed: every partition whose leader stayed put has the same commit index.
    let logs_after = logs(&cluster).await;
    for (partition, (term, commit)) in &logs_before {
        let (term_after, commit_after) = logs_after[partition];
        if term_after == *term {
            assert_eq!(
                commit_after, *commit,
                "partition {partition}: a bad input reached the raft log"
            );
        }
    }
    // Both nodes still serve normally.
    assert_eq!(
        run(
            &endpoints,
            &case("after", Call::GetAccount("alice".into()), Answer::Served)
        )
        .await,
        Answer::Served
    );
    let mut query = QueryServiceClient::new(endpoints.read.clone());
    query
        .get_balance(GetBalanceRequest {
            account_id: "alice".into(),
            consistency_token: String::new(),
        })
        .await
        .expect("read node serves");
}
