//! The server every node builds its services on, with its layers in the one order that is
//! right for security, written once for both node types.

use std::time::Duration;

use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_web::GrpcWebLayer;
use tower::layer::util::{Identity, Stack};
use tower_http::cors::CorsLayer;

use crate::AuthLayer;

/// HTTP/2 keepalive pings on idle connections, and how long a ping may go unanswered.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The connections a node serves, from the listener it bound: every accepted socket without
/// Nagle's delay. (`Server::tcp_nodelay` configures only listeners tonic binds itself; a
/// server fed its own listener's sockets would hold small responses for the peer's delayed
/// ACK, up to 40 ms on Linux.)
pub fn incoming(listener: tokio::net::TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// What a node builds its server from: the builder (TLS if configured), the auth layer, and
/// the origins whose pages may call it with gRPC-web (`crate::web`).
pub struct Secured {
    pub server: Server,
    pub auth: AuthLayer,
    pub web_origins: Vec<String>,
}

/// The layers of a node's server, innermost first (`Stack<Inner, Outer>`).
pub type Layered<Metrics, Guard> = Server<
    Stack<AuthLayer, Stack<Guard, Stack<Metrics, Stack<GrpcWebLayer, Stack<CorsLayer, Identity>>>>>,
>;

impl Secured {
    /// The server with its layers, outermost first: CORS (a browser's preflight is answered
    /// before anything else), gRPC-web (a browser's call becomes the gRPC call every layer
    /// below sees; HTTP/1.1 is accepted for it), the per-RPC metrics (so every answer is
    /// counted, refusals included), the overload guard (sheds a call beyond the node's limit
    /// before its body is read, authenticated or not), then auth, innermost, so it sees
    /// tonic's own response bodies. Also the HTTP/2 settings both node types share: at most
    /// `streams_per_connection_max` calls per connection, keepalive. (Sockets: [`incoming`].)
    pub fn layered<Metrics, Guard>(
        self,
        metrics: Metrics,
        guard: Guard,
        streams_per_connection_max: u32,
    ) -> Layered<Metrics, Guard> {
        self.server
            .accept_http1(true)
            .layer(crate::web::cors(&self.web_origins))
            .layer(GrpcWebLayer::new())
            .layer(metrics)
            .max_concurrent_streams(streams_per_connection_max)
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            .layer(guard)
            .layer(self.auth)
    }
}

#[cfg(test)]
mod tests {
    use tonic::codegen::tokio_stream::StreamExt;

    /// The regression this guards: sockets of a listener the node bound itself kept Nagle's
    /// algorithm, and about 1% of transfers waited 40 ms for a delayed ACK (BENCHMARKS.md,
    /// "Nagle on the nodes' own listeners").
    #[tokio::test]
    async fn accepted_sockets_send_without_nagle_delay() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let mut incoming = super::incoming(listener);
        let client = tokio::net::TcpStream::connect(address);
        let (client, accepted) = tokio::join!(client, incoming.next());
        let _client = client.expect("connect");
        let accepted = accepted.expect("a connection").expect("accepted");
        assert!(accepted.nodelay().expect("TCP_NODELAY readable"));
    }
}
