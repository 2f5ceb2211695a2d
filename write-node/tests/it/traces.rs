//! Traces that work (feature `otel`): a real write node, pointed at an OTLP collector run by
//! the test, exports each call's server span as a child of the caller's W3C trace context.
//! `scripts/test` runs these with `--features write-node/otel`.

use proto::v1::GetClusterStatusRequest;
use proto::v1::cluster_service_client::ClusterServiceClient;
use testkit::Cluster;
use testkit::traces::{Collector, SpanKind, Value};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN_ID: &str = "00f067aa0ba902b7";
/// A trace the caller did not sample (flags 00): the node must not export it either.
const UNSAMPLED_TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";

/// `GetClusterStatus` on node 1, carrying `traceparent` (and `tracestate`) as a client
/// instrumented with OpenTelemetry sends them.
async fn status_in_trace(cluster: &Cluster, traceparent: String, tracestate: &str) {
    let channel = tonic::transport::Channel::from_shared(cluster.endpoint(1))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut request = tonic::Request::new(GetClusterStatusRequest {
        include_state_digest: false,
    });
    let metadata = request.metadata_mut();
    metadata.insert("traceparent", traceparent.parse().expect("ascii"));
    metadata.insert("tracestate", tracestate.parse().expect("ascii"));
    ClusterServiceClient::new(channel)
        .get_cluster_status(request)
        .await
        .expect("GetClusterStatus");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_server_span_continues_the_callers_trace() {
    let collector = Collector::start().await;
    // Ratio 0: the node starts no trace of its own, so the only spans it may export are those
    // of a trace a caller sampled. The batch exporter sends every 100 ms instead of 5 s.
    let cluster = Cluster::create_with(
        1,
        &[
            "--otlp-endpoint",
            &collector.endpoint(),
            "--trace-sample-ratio",
            "0",
        ],
    );
    cluster.start_node_with_env(1, &[("OTEL_BSP_SCHEDULE_DELAY", "100")]);
    // Its status polls carry no trace context: root spans, none sampled at ratio 0.
    cluster.wait_leader().await;

    status_in_trace(
        &cluster,
        format!("00-{UNSAMPLED_TRACE_ID}-{CLIENT_SPAN_ID}-00"),
        "wallet=unsampled",
    )
    .await;
    status_in_trace(
        &cluster,
        format!("00-{TRACE_ID}-{CLIENT_SPAN_ID}-01"),
        "wallet=test",
    )
    .await;

    let span = collector.wait_for(|span| span.trace_id() == TRACE_ID).await;
    assert_eq!(span.service_name, "wallet-write-node");
    assert_eq!(span.span.name, "wallet.v1.ClusterService/GetClusterStatus");
    assert_eq!(span.span.kind, SpanKind::Server as i32);
    assert_eq!(
        span.parent_span_id(),
        CLIENT_SPAN_ID,
        "the server span is a child of the caller's span"
    );
    assert_eq!(span.span.trace_state, "wallet=test");
    assert_eq!(
        span.attribute("rpc.grpc.status_code"),
        Some(&Value::IntValue(0))
    );
    assert_eq!(
        span.attribute("rpc.method"),
        Some(&Value::StringValue("GetClusterStatus".into()))
    );
    assert!(span.span.end_time_unix_nano >= span.span.start_time_unix_nano);

    // Spans are exported in the order they end, so everything that ended before the sampled
    // call is in by now: the status polls (no trace context) and the unsampled call were not
    // exported; the sampled call's trace was.
    let spans = collector.spans();
    let foreign: Vec<_> = spans
        .iter()
        .filter(|span| span.trace_id() != TRACE_ID)
        .collect();
    assert!(
        foreign.is_empty(),
        "at --trace-sample-ratio 0 only the caller-sampled trace may be exported: {foreign:#?}"
    );
}
