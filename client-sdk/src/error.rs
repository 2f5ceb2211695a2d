//! Typed errors, and how a `tonic::Status` from a write node is read and classified.

use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::StatusExt;

/// The `google.rpc.ErrorInfo` domain the nodes put on every error.
pub use proto::ERROR_DOMAIN;

/// Reason of the redirect a follower answers with.
pub const REASON_NOT_LEADER: &str = "NOT_LEADER";

/// The prefix of `wallet.v1.ErrorReason` value names: a reason is the name without it.
const ERROR_REASON_PREFIX: &str = "ERROR_REASON_";

/// The reason string of a `wallet.v1.ErrorReason` value (the enum is the one list of the
/// reasons nodes answer with): `reason_of(ErrorReason::InsufficientFunds)` is
/// `"INSUFFICIENT_FUNDS"`.
pub fn reason_of(reason: proto::v1::ErrorReason) -> &'static str {
    let name = reason.as_str_name();
    name.strip_prefix(ERROR_REASON_PREFIX).unwrap_or(name)
}

/// The `wallet.v1.ErrorReason` a node's reason string names, if it is one (the SDK's own
/// reasons, [`REASON_TRANSPORT`] and the rest, are not).
pub fn node_reason(reason: &str) -> Option<proto::v1::ErrorReason> {
    proto::v1::ErrorReason::from_str_name(&format!("{ERROR_REASON_PREFIX}{reason}"))
        .filter(|&value| value != proto::v1::ErrorReason::Unspecified)
}

/// `ErrorInfo` metadata key holding the leader's `host:port`, when known.
pub const METADATA_LEADER_ADDRESS: &str = "leader_address";

/// `ErrorInfo` metadata key that marks a rejection an earlier entry decided (`"true"`).
pub const METADATA_REPLAYED: &str = proto::REPLAYED_METADATA;

/// `ErrorInfo` metadata key naming the leg a `TransferLegs` refusal is about.
pub const METADATA_LEG: &str = proto::LEG_METADATA;

/// `ErrorInfo` metadata key holding the leader's node id, when known.
pub const METADATA_LEADER_ID: &str = "leader_id";

/// Reason given to failures that never reached a server's application code (connection
/// refused or reset, HTTP/2 errors).
pub const REASON_TRANSPORT: &str = "TRANSPORT_ERROR";

/// Reason given to an attempt that ran out of time, on either side.
pub const REASON_DEADLINE_EXCEEDED: &str = "DEADLINE_EXCEEDED";

/// Reason of [`Error::Config`].
pub const REASON_INVALID_CONFIG: &str = "INVALID_CONFIG";

/// Reason of [`Error::MalformedResponse`].
pub const REASON_MALFORMED_RESPONSE: &str = "MALFORMED_RESPONSE";

/// Why a wallet call failed. The split that matters is [`Error::is_definite`]: a definite
/// error means nothing happened and asking again gives the same answer, an indefinite one
/// means the outcome is unknown.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The ledger refused the request (bad argument, unknown account, insufficient funds,
    /// reused transaction id, ...). Nothing was applied; repeating the same request yields
    /// the same rejection, so it is never retried.
    #[error("{} {reason}: {message}", code_name(*.code))]
    Rejected {
        /// The gRPC status code (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, ...).
        code: Code,
        /// The stable machine-readable reason from `ErrorInfo`, e.g. `INSUFFICIENT_FUNDS`.
        reason: String,
        /// Human-readable detail from the server.
        message: String,
        /// The offending request field, from the `BadRequest` field violation if present.
        field: Option<String>,
        /// An earlier log entry decided this rejection (a retry found it recorded): ErrorInfo
        /// metadata `replayed`, or `TransferResult.replayed`.
        replayed: bool,
        /// For a multi-leg transfer, the index of the leg the rejection is about (ErrorInfo
        /// metadata `leg`).
        leg: Option<u32>,
    },
    /// The outcome is unknown: the request may or may not have been applied (the node was
    /// unreachable, lost leadership mid-flight, was overloaded, or the deadline passed) and
    /// the client's retries ran out. Retry with the same `transaction_id` to learn the
    /// outcome: the ledger deduplicates by it, so a retry can never apply a transfer twice.
    #[error("{} {reason}: {message} (outcome unknown: retry with the same transaction id)", code_name(*.code))]
    Indefinite {
        /// The gRPC status code (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED).
        code: Code,
        /// The stable reason, e.g. `OUTCOME_UNKNOWN`, `NO_LEADER` or `TRANSPORT_ERROR`.
        reason: String,
        /// Human-readable detail.
        message: String,
    },
    /// The client configuration is unusable (no endpoints, a malformed endpoint, ...).
    /// Nothing was sent.
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// A node answered OK but without a field the contract promises. The call may have
    /// taken effect, so this is not a definite outcome.
    #[error("malformed response: {0}")]
    MalformedResponse(String),
}

impl Error {
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::Config(message.into())
    }

    pub(crate) fn malformed(message: impl Into<String>) -> Self {
        Self::MalformedResponse(message.into())
    }

    /// The gRPC status code, so callers can branch without matching every variant.
    pub fn code(&self) -> Code {
        match self {
            Self::Rejected { code, .. } | Self::Indefinite { code, .. } => *code,
            Self::Config(_) => Code::InvalidArgument,
            Self::MalformedResponse(_) => Code::Internal,
        }
    }

    /// The stable machine-readable reason (`INSUFFICIENT_FUNDS`, `NOT_LEADER`, ...): what
    /// programs should match on, rather than the message.
    pub fn reason(&self) -> &str {
        match self {
            Self::Rejected { reason, .. } | Self::Indefinite { reason, .. } => reason,
            Self::Config(_) => REASON_INVALID_CONFIG,
            Self::MalformedResponse(_) => REASON_MALFORMED_RESPONSE,
        }
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        match self {
            Self::Rejected { message, .. } | Self::Indefinite { message, .. } => message,
            Self::Config(message) | Self::MalformedResponse(message) => message,
        }
    }

    /// The offending request field, for rejections that name one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Rejected { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    /// The rejection a stream or batch item reports (`TransferResult`, `OpenAccountResult`):
    /// the error the unary call would have failed with.
    pub(crate) fn from_item(error: proto::v1::TransferError, replayed: bool) -> Error {
        Error::Rejected {
            code: Code::from_i32(error.code),
            reason: error.reason,
            message: error.message,
            field: Some(error.field).filter(|field| !field.is_empty()),
            replayed,
            leg: None,
        }
    }

    /// For a refused multi-leg transfer (or one of its legs refused at the edge), the index
    /// of that leg.
    pub fn leg(&self) -> Option<u32> {
        match self {
            Self::Rejected { leg, .. } => *leg,
            _ => None,
        }
    }

    /// A rejection an earlier log entry decided (this call found it recorded).
    pub fn replayed(&self) -> bool {
        matches!(self, Self::Rejected { replayed: true, .. })
    }

    /// True when the outcome is known: the request was not applied and asking again would
    /// give the same answer. False when the request may have been applied; then retry with
    /// the same transaction id to find out.
    pub fn is_definite(&self) -> bool {
        matches!(self, Self::Rejected { .. } | Self::Config(_))
    }
}

/// What the retry loop should do after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// A follower named the leader: go there at once.
    Redirect(String),
    /// Try the next node after a backoff sleep of at least `retry_after` when the server
    /// asked for one.
    Rotate { retry_after: Option<Duration> },
    /// A definite answer: stop.
    Stop,
}

/// The typed error for a failed attempt, and what to do next.
#[derive(Debug)]
pub(crate) struct Classified {
    pub(crate) error: Error,
    pub(crate) action: Action,
}

/// Reads a failed attempt's status: the `ErrorInfo` reason and leader hint, the
/// `BadRequest` field, `RetryInfo`, and whether the failure came from the transport.
pub(crate) fn classify(status: &Status) -> Classified {
    let info = status.get_details_error_info();
    let server_reason = info
        .as_ref()
        .map(|i| i.reason.clone())
        .filter(|r| !r.is_empty());
    let message = status.message().to_owned();
    let code = status.code();

    if is_local_timeout(status) {
        return Classified {
            error: Error::Indefinite {
                code: Code::DeadlineExceeded,
                reason: REASON_DEADLINE_EXCEEDED.to_owned(),
                message,
            },
            action: Action::Rotate { retry_after: None },
        };
    }

    match code {
        // The caller cancels by dropping the call, so a CANCELLED that comes back means the
        // call was lost on the way (e.g. the connection closed mid-call): it may or may not
        // have been applied, exactly like a transport error.
        Code::Cancelled => Classified {
            error: Error::Indefinite {
                code,
                reason: server_reason.unwrap_or_else(|| REASON_TRANSPORT.to_owned()),
                message,
            },
            action: Action::Rotate { retry_after: None },
        },
        Code::Unavailable => {
            let reason = server_reason.unwrap_or_else(|| {
                // No ErrorInfo: the status was made by tonic (connection refused, reset).
                REASON_TRANSPORT.to_owned()
            });
            let leader = info
                .as_ref()
                .filter(|_| reason == REASON_NOT_LEADER)
                .and_then(|i| i.metadata.get(METADATA_LEADER_ADDRESS))
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty());
            let action = match leader {
                Some(address) => Action::Redirect(address),
                None => Action::Rotate { retry_after: None },
            };
            Classified {
                error: Error::Indefinite {
                    code,
                    reason,
                    message,
                },
                action,
            }
        }
        Code::ResourceExhausted => {
            let retry_after = status.get_details_retry_info().and_then(|r| r.retry_delay);
            let reason = server_reason.unwrap_or_else(|| code_name(code).to_owned());
            Classified {
                error: Error::Indefinite {
                    code,
                    reason,
                    message,
                },
                action: Action::Rotate { retry_after },
            }
        }
        Code::DeadlineExceeded => Classified {
            error: Error::Indefinite {
                code,
                reason: server_reason.unwrap_or_else(|| REASON_DEADLINE_EXCEEDED.to_owned()),
                message,
            },
            action: Action::Rotate { retry_after: None },
        },
        Code::Unknown if server_reason.is_none() && std::error::Error::source(status).is_some() => {
            // tonic wraps connection-level failures (e.g. a hyper error mid-stream) as
            // UNKNOWN with the cause attached; a server-sent status never has a source.
            Classified {
                error: Error::Indefinite {
                    code: Code::Unavailable,
                    reason: REASON_TRANSPORT.to_owned(),
                    message,
                },
                action: Action::Rotate { retry_after: None },
            }
        }
        _ => {
            let field = status.get_details_bad_request().and_then(|b| {
                b.field_violations
                    .into_iter()
                    .map(|v| v.field)
                    .find(|f| !f.is_empty())
            });
            let replayed = info
                .as_ref()
                .and_then(|i| i.metadata.get(METADATA_REPLAYED))
                .is_some_and(|value| value == "true");
            let leg = info
                .as_ref()
                .and_then(|i| i.metadata.get(METADATA_LEG))
                .and_then(|value| value.parse().ok());
            Classified {
                error: Error::Rejected {
                    code,
                    reason: server_reason.unwrap_or_else(|| code_name(code).to_owned()),
                    message,
                    field,
                    replayed,
                    leg,
                },
                action: Action::Stop,
            }
        }
    }
}

/// True for tonic's own per-attempt timeout, which it reports as CANCELLED with a
/// `TimeoutExpired` cause: the request may well have reached the server, so it is an
/// indefinite DEADLINE_EXCEEDED rather than a cancellation.
fn is_local_timeout(status: &Status) -> bool {
    if status.code() != Code::Cancelled {
        return false;
    }
    let mut source = std::error::Error::source(status);
    while let Some(err) = source {
        if err.downcast_ref::<tonic::TimeoutExpired>().is_some() {
            return true;
        }
        source = err.source();
    }
    status.message() == tonic::TimeoutExpired(()).to_string()
}

/// The canonical upper-case gRPC name of a code (`FAILED_PRECONDITION`), as used in logs,
/// the CLI's output and as the fallback reason when a status carries no `ErrorInfo`.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tonic_types::{ErrorDetails, FieldViolation};

    use super::*;

    #[test]
    fn reasons_come_from_the_error_reason_enum() {
        use proto::v1::ErrorReason;
        assert_eq!(
            reason_of(ErrorReason::InsufficientFunds),
            "INSUFFICIENT_FUNDS"
        );
        assert_eq!(reason_of(ErrorReason::NotLeader), REASON_NOT_LEADER);
        assert_eq!(
            node_reason("FORWARD_FAILED"),
            Some(ErrorReason::ForwardFailed)
        );
        for own in [
            REASON_TRANSPORT,
            REASON_DEADLINE_EXCEEDED,
            REASON_INVALID_CONFIG,
            REASON_MALFORMED_RESPONSE,
            "UNSPECIFIED",
        ] {
            assert_eq!(node_reason(own), None, "{own}");
        }
        // Every value round-trips.
        for value in (1..).map_while(|v| ErrorReason::try_from(v).ok()) {
            assert_eq!(node_reason(reason_of(value)), Some(value));
        }
    }

    fn status(code: Code, reason: &str, metadata: &[(&str, &str)]) -> Status {
        let metadata: HashMap<String, String> = metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Status::with_error_details(
            code,
            "details",
            ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata),
        )
    }

    #[test]
    fn hold_expired_is_a_definite_rejection_with_its_reason() {
        use proto::v1::ErrorReason;
        let s = status(Code::FailedPrecondition, "HOLD_EXPIRED", &[]);
        let c = classify(&s);
        assert_eq!(c.action, Action::Stop);
        assert_eq!(c.error.reason(), reason_of(ErrorReason::HoldExpired));
        assert_eq!(c.error.reason(), "HOLD_EXPIRED");
        assert_eq!(node_reason("HOLD_EXPIRED"), Some(ErrorReason::HoldExpired));
        assert!(c.error.is_definite());
        assert_eq!(c.error.code(), Code::FailedPrecondition);
    }

    #[test]
    fn not_leader_with_address_redirects() {
        let s = status(
            Code::Unavailable,
            "NOT_LEADER",
            &[("leader_id", "2"), ("leader_address", "127.0.0.1:50052")],
        );
        let c = classify(&s);
        assert_eq!(c.action, Action::Redirect("127.0.0.1:50052".into()));
        assert_eq!(c.error.reason(), "NOT_LEADER");
        assert!(!c.error.is_definite());
    }

    #[test]
    fn not_leader_without_address_rotates() {
        let c = classify(&status(
            Code::Unavailable,
            "NOT_LEADER",
            &[("leader_address", "")],
        ));
        assert_eq!(c.action, Action::Rotate { retry_after: None });
    }

    #[test]
    fn other_unavailable_reasons_rotate_and_are_indefinite() {
        for reason in [
            "NO_LEADER",
            "OUTCOME_UNKNOWN",
            "SHUTTING_DOWN",
            "STORAGE_FAILURE",
        ] {
            let c = classify(&status(
                Code::Unavailable,
                reason,
                &[("leader_address", "x:1")],
            ));
            assert_eq!(c.action, Action::Rotate { retry_after: None }, "{reason}");
            assert!(matches!(c.error, Error::Indefinite { .. }));
            assert_eq!(c.error.reason(), reason);
            assert_eq!(c.error.code(), Code::Unavailable);
        }
    }

    #[test]
    fn transport_failure_is_indefinite() {
        let c = classify(&Status::unavailable("tcp connect error"));
        assert_eq!(c.error.reason(), REASON_TRANSPORT);
        assert_eq!(c.action, Action::Rotate { retry_after: None });
        assert!(!c.error.is_definite());
    }

    #[test]
    fn connection_lost_mid_call_is_indefinite() {
        let c = classify(&Status::cancelled("operation was canceled"));
        assert_eq!(c.error.reason(), REASON_TRANSPORT);
        assert_eq!(c.action, Action::Rotate { retry_after: None });
        assert!(!c.error.is_definite());
    }

    #[test]
    fn overloaded_carries_retry_info() {
        let mut details = ErrorDetails::with_error_info("OVERLOADED", ERROR_DOMAIN, HashMap::new());
        details.set_retry_info(Some(Duration::from_millis(250)));
        let s = Status::with_error_details(Code::ResourceExhausted, "busy", details);
        let c = classify(&s);
        assert_eq!(
            c.action,
            Action::Rotate {
                retry_after: Some(Duration::from_millis(250))
            }
        );
        assert_eq!(c.error.reason(), "OVERLOADED");
        assert!(!c.error.is_definite());
    }

    #[test]
    fn definite_rejections_stop() {
        for (code, reason) in [
            (Code::InvalidArgument, "INVALID_AMOUNT"),
            (Code::NotFound, "ACCOUNT_NOT_FOUND"),
            (Code::FailedPrecondition, "INSUFFICIENT_FUNDS"),
            (Code::AlreadyExists, "TRANSACTION_ID_REUSED"),
            (Code::Internal, "SOMETHING"),
        ] {
            let c = classify(&status(code, reason, &[]));
            assert_eq!(c.action, Action::Stop);
            assert!(c.error.is_definite());
            assert_eq!(c.error.code(), code);
            assert_eq!(c.error.reason(), reason);
            assert_eq!(c.error.message(), "details");
            assert_eq!(c.error.field(), None);
        }
    }

    #[test]
    fn field_comes_from_bad_request() {
        let mut details =
            ErrorDetails::with_error_info("INVALID_AMOUNT", ERROR_DOMAIN, HashMap::new());
        details.set_bad_request(vec![FieldViolation::new(
            "amount",
            "too many fraction digits",
        )]);
        let s = Status::with_error_details(Code::InvalidArgument, "bad amount", details);
        let c = classify(&s);
        assert_eq!(c.error.field(), Some("amount"));
        assert_eq!(c.error.reason(), "INVALID_AMOUNT");
    }

    #[test]
    fn deadline_exceeded_is_indefinite() {
        let c = classify(&Status::deadline_exceeded("too slow"));
        assert_eq!(c.error.code(), Code::DeadlineExceeded);
        assert_eq!(c.error.reason(), REASON_DEADLINE_EXCEEDED);
        assert!(!c.error.is_definite());
        let local = classify(&Status::cancelled("Timeout expired"));
        assert_eq!(local.error.code(), Code::DeadlineExceeded);
        assert!(!local.error.is_definite());
    }

    #[test]
    fn status_without_details_uses_code_name() {
        let c = classify(&Status::permission_denied("no"));
        assert_eq!(c.error.reason(), "PERMISSION_DENIED");
        assert!(c.error.is_definite());
    }

    #[test]
    fn display_names_code_and_reason() {
        let c = classify(&status(Code::FailedPrecondition, "INSUFFICIENT_FUNDS", &[]));
        assert_eq!(
            c.error.to_string(),
            "FAILED_PRECONDITION INSUFFICIENT_FUNDS: details"
        );
    }
}
