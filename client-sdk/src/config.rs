//! Client configuration: where the write nodes are, and how long and how often to try.

use std::time::Duration;

use crate::auth::TlsConfig;
use crate::error::Error;

/// Per-attempt deadline used by [`ClientConfig::new`]: long enough for a transfer to commit
/// through Raft on a loaded cluster, short enough that a hung node is abandoned quickly.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Whole-call deadline used by [`ClientConfig::new`]: covers a leader election (a few
/// hundred milliseconds) several times over, plus redirects and backoff.
pub const DEFAULT_TOTAL_DEADLINE: Duration = Duration::from_secs(15);

/// Attempt budget used by [`ClientConfig::new`]: enough to walk all nodes of a small
/// cluster a few times while an election settles.
pub const DEFAULT_ATTEMPTS_MAX: u32 = 10;

/// First backoff ceiling used by [`ClientConfig::new`]; it doubles with every attempt.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(20);

/// Largest backoff ceiling used by [`ClientConfig::new`], so a long outage is polled at
/// least once a second rather than ever more rarely.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// TCP connect timeout used by [`ClientConfig::new`]: a node that does not accept a
/// connection within this time is treated as down and the next one is tried.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Upper bound on `attempts_max`, so a misconfiguration cannot make a call loop for ages.
pub const ATTEMPTS_MAX_LIMIT: u32 = 100;

/// Upper bound on the number of configured endpoints: the client keeps one channel each.
pub const ENDPOINTS_MAX: usize = 64;

/// Settings of a [`crate::WalletClient`]. Built with [`ClientConfig::new`], which fills in the
/// defaults, then adjusted field by field where needed. `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Write nodes, as `host:port`, `http://host:port` or `https://host:port`. Tried in this
    /// order when no leader is known. With `tls`, `host:port` means `https://host:port`.
    pub endpoints: Vec<String>,
    /// Deadline of one attempt (sent to the server as `grpc-timeout` and enforced locally).
    pub call_timeout: Duration,
    /// Deadline of a whole call, all attempts and backoff sleeps included.
    pub total_deadline: Duration,
    /// Most attempts one call may make, redirects to the leader included.
    pub attempts_max: u32,
    /// Backoff ceiling after the first failed attempt; doubles with every further attempt.
    pub backoff_base: Duration,
    /// Cap on the backoff ceiling.
    pub backoff_max: Duration,
    /// TCP connect timeout for each node.
    pub connect_timeout: Duration,
    /// TLS to the nodes (their CA, optionally a client certificate); plain text if `None`.
    pub tls: Option<TlsConfig>,
    /// Bearer token sent as `authorization: Bearer <token>` on every call, for nodes that
    /// run with a tokens file. Its scopes decide which calls succeed.
    pub token: Option<String>,
    /// Whether [`crate::WalletClient::transfer`] sends transfers down one shared
    /// `SubmitTransfers` stream per node (see "Pipelining" there; the default) or each as its
    /// own unary `Transfer` call.
    pub pipeline_transfers: bool,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("endpoints", &self.endpoints)
            .field("call_timeout", &self.call_timeout)
            .field("total_deadline", &self.total_deadline)
            .field("attempts_max", &self.attempts_max)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_max", &self.backoff_max)
            .field("connect_timeout", &self.connect_timeout)
            .field("tls", &self.tls)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("pipeline_transfers", &self.pipeline_transfers)
            .finish()
    }
}

impl ClientConfig {
    /// A configuration for `endpoints` with the default timeouts, attempt budget and backoff.
    pub fn new<I, S>(endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            call_timeout: DEFAULT_CALL_TIMEOUT,
            total_deadline: DEFAULT_TOTAL_DEADLINE,
            attempts_max: DEFAULT_ATTEMPTS_MAX,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_max: DEFAULT_BACKOFF_MAX,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            tls: None,
            token: None,
            pipeline_transfers: true,
        }
    }

    /// Checks the settings before any connection is made, so a bad configuration fails
    /// at start-up rather than on the first call.
    pub fn validate(&self) -> Result<(), Error> {
        if self.endpoints.is_empty() {
            return Err(Error::config("at least one endpoint is required"));
        }
        if self.endpoints.len() > ENDPOINTS_MAX {
            return Err(Error::config(format!(
                "{} endpoints given, at most {ENDPOINTS_MAX} are supported",
                self.endpoints.len()
            )));
        }
        if self.call_timeout.is_zero() || self.total_deadline.is_zero() {
            return Err(Error::config(
                "call_timeout and total_deadline must be positive",
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(Error::config("connect_timeout must be positive"));
        }
        if self.attempts_max == 0 || self.attempts_max > ATTEMPTS_MAX_LIMIT {
            return Err(Error::config(format!(
                "attempts_max must be between 1 and {ATTEMPTS_MAX_LIMIT}, got {}",
                self.attempts_max
            )));
        }
        if self.backoff_base > self.backoff_max {
            return Err(Error::config("backoff_base must not exceed backoff_max"));
        }
        Ok(())
    }
}

pub use crate::endpoint::{normalize_endpoint, normalize_endpoint_for};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token() {
        let mut config = ClientConfig::new(["a:1"]);
        config.token = Some("wlt_secret".into());
        let text = format!("{config:?}");
        assert!(
            !text.contains("wlt_secret") && text.contains("redacted"),
            "{text}"
        );
    }

    #[test]
    fn defaults_validate() {
        let config = ClientConfig::new(["127.0.0.1:50051"]);
        assert_eq!(config.call_timeout, Duration::from_secs(5));
        assert_eq!(config.total_deadline, Duration::from_secs(15));
        assert_eq!(config.attempts_max, 10);
        assert_eq!(config.backoff_base, Duration::from_millis(20));
        assert_eq!(config.backoff_max, Duration::from_secs(1));
        assert!(config.pipeline_transfers);
        config.validate().unwrap();
    }

    #[test]
    fn invalid_settings_are_refused() {
        let none: [&str; 0] = [];
        assert!(ClientConfig::new(none).validate().is_err());
        let mut config = ClientConfig::new(["a:1"]);
        config.attempts_max = 0;
        assert!(config.validate().is_err());
        let mut config = ClientConfig::new(["a:1"]);
        config.backoff_base = Duration::from_secs(2);
        assert!(config.validate().is_err());
    }
}
