//! The server every node builds its services on, with its layers in the one order that is
//! right for security, written once for both node types.

use std::time::Duration;

use tonic::transport::Server;
use tower::layer::util::{Identity, Stack};

use crate::AuthLayer;

/// HTTP/2 keepalive pings on idle connections, and how long a ping may go unanswered.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a node builds its server from: the builder (TLS if configured) and the auth layer.
pub struct Secured {
    pub server: Server,
    pub auth: AuthLayer,
}

/// The layers of a node's server, outermost first.
pub type Layered<Metrics, Guard> = Server<Stack<AuthLayer, Stack<Guard, Stack<Metrics, Identity>>>>;

impl Secured {
    /// The server with its layers, outermost first: the per-RPC metrics (so every answer is
    /// counted, refusals included), the overload guard (sheds a call beyond the node's limit
    /// before its body is read, authenticated or not), then auth, innermost, so it sees
    /// tonic's own response bodies. Also the HTTP/2 settings both node types share: no Nagle
    /// delay, at most `streams_per_connection_max` calls per connection, keepalive.
    pub fn layered<Metrics, Guard>(
        self,
        metrics: Metrics,
        guard: Guard,
        streams_per_connection_max: u32,
    ) -> Layered<Metrics, Guard> {
        self.server
            .layer(metrics)
            .tcp_nodelay(true)
            .max_concurrent_streams(streams_per_connection_max)
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            .layer(guard)
            .layer(self.auth)
    }
}
