//! Server reflection on the read node lists what it serves, and only that.

use tokio_stream::StreamExt as _;
use tonic::transport::Channel;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use crate::start_all;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_query_service() {
    let (_cluster, read, _query) = start_all(1).await;
    let channel = Channel::from_shared(format!("http://{}", read.endpoint()))
        .expect("uri")
        .connect_lazy();
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let response = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection stream")
        .into_inner()
        .next()
        .await
        .expect("one response")
        .expect("response ok");
    let MessageResponse::ListServicesResponse(list) =
        response.message_response.expect("message response")
    else {
        panic!("unexpected answer to ListServices");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
            "wallet.v1.QueryService",
        ]
    );
}
