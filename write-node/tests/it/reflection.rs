//! gRPC conventions every node follows: server reflection lists the client-facing services,
//! and health says SERVING only once the node can take writes.

use std::time::{Duration, Instant};

use tokio_stream::StreamExt as _;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};
use tonic_reflection::pb::v1alpha;

use testkit::{Cluster, WAIT_MAX};

fn channel(endpoint: String) -> Channel {
    Channel::from_shared(endpoint).expect("uri").connect_lazy()
}

/// One request on the v1 reflection stream, and its one answer.
async fn reflect(endpoint: String, request: MessageRequest) -> MessageResponse {
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut responses = ServerReflectionClient::new(channel(endpoint))
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection stream")
        .into_inner();
    let response: ServerReflectionResponse = responses
        .next()
        .await
        .expect("one response")
        .expect("response ok");
    response.message_response.expect("message response")
}

async fn list_services_v1(endpoint: String) -> Vec<String> {
    match reflect(endpoint, MessageRequest::ListServices(String::new())).await {
        MessageResponse::ListServicesResponse(list) => {
            let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
            names.sort();
            names
        }
        other => panic!("unexpected answer to ListServices: {other:?}"),
    }
}

async fn list_services_v1alpha(endpoint: String) -> Vec<String> {
    use v1alpha::server_reflection_request::MessageRequest as Request;
    use v1alpha::server_reflection_response::MessageResponse as Response;
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(Request::ListServices(String::new())),
    };
    let mut responses =
        v1alpha::server_reflection_client::ServerReflectionClient::new(channel(endpoint))
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect("v1alpha reflection stream")
            .into_inner();
    let response = responses.next().await.expect("one response").expect("ok");
    match response.message_response.expect("message response") {
        Response::ListServicesResponse(list) => {
            let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
            names.sort();
            names
        }
        other => panic!("unexpected v1alpha answer to ListServices: {other:?}"),
    }
}

async fn health(endpoint: String, service: &str) -> Result<HealthCheckResponse, tonic::Status> {
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: service.to_owned(),
    });
    request.set_timeout(Duration::from_secs(1));
    HealthClient::new(channel(endpoint))
        .check(request)
        .await
        .map(tonic::Response::into_inner)
}

/// Waits until the node answers a health check of `service` (its server is up) and returns
/// the status it reports.
async fn health_status(cluster: &Cluster, node: u64, service: &str) -> ServingStatus {
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        match health(cluster.endpoint(node), service).await {
            Ok(response) => {
                return ServingStatus::try_from(response.status).expect("known status");
            }
            Err(status) => assert!(
                Instant::now() < deadline,
                "node {node} never answered health checks: {status:?}\n{}",
                cluster.logs()
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_services_and_health_waits_for_leaders() {
    let cluster = Cluster::create(3);
    // One node of three has no quorum, so no partition can have a leader: not ready.
    cluster.start_node(1);
    for service in ["", "wallet.v1.WalletService"] {
        assert_eq!(
            health_status(&cluster, 1, service).await,
            ServingStatus::NotServing,
            "service {service:?} without a quorum"
        );
    }
    let unknown = health(cluster.endpoint(1), "wallet.v1.NoSuchService")
        .await
        .expect_err("unknown service");
    assert_eq!(unknown.code(), Code::NotFound);

    // Reflection answers whether or not the node is ready.
    let expected = [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "wallet.v1.ClusterService",
        "wallet.v1.EventLogService",
        "wallet.v1.WalletService",
    ];
    assert_eq!(list_services_v1(cluster.endpoint(1)).await, expected);
    assert_eq!(list_services_v1alpha(cluster.endpoint(1)).await, expected);
    // Every listed service can be described, so a tool can build calls from the listing.
    for service in expected {
        assert!(
            matches!(
                reflect(
                    cluster.endpoint(1),
                    MessageRequest::FileContainingSymbol(service.into())
                )
                .await,
                MessageResponse::FileDescriptorResponse(_)
            ),
            "{service} is listed but cannot be described"
        );
    }
    match reflect(
        cluster.endpoint(1),
        MessageRequest::FileContainingSymbol("wallet.v1.WalletService.Transfer".into()),
    )
    .await
    {
        MessageResponse::FileDescriptorResponse(files) => {
            use prost::Message as _;
            let names: Vec<String> = files
                .file_descriptor_proto
                .iter()
                .map(|bytes| {
                    prost_types::FileDescriptorProto::decode(bytes.as_slice())
                        .expect("a file descriptor")
                        .name
                        .unwrap_or_default()
                })
                .collect();
            assert!(
                names.contains(&"wallet/v1/wallet.proto".to_owned()),
                "{names:?}"
            );
        }
        other => panic!("unexpected answer to FileContainingSymbol: {other:?}"),
    }
    // With a quorum every partition elects a leader and every node turns SERVING.
    cluster.start_node(2);
    cluster.start_node(3);
    cluster.wait_leaders().await;
    let deadline = Instant::now() + WAIT_MAX;
    for node in 1..=3 {
        for service in ["", "wallet.v1.WalletService"] {
            while health_status(&cluster, node, service).await != ServingStatus::Serving {
                assert!(
                    Instant::now() < deadline,
                    "node {node} not SERVING {service:?} with leaders elected\n{}",
                    cluster.logs()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
