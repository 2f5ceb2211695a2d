package io.walletledger.client;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import com.google.rpc.RetryInfo;
import io.grpc.Status;
import io.grpc.protobuf.StatusProto;
import java.time.Duration;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

/** Decoding of the rich gRPC status the nodes send, and the definite/indefinite split. */
public final class Errors {
  private Errors() {}

  /**
   * Codes whose outcome is unknown (the request may have been applied): retried with the same
   * request, hence the same transaction id. The Rust and Python SDKs' set.
   */
  public static final Set<Status.Code> RETRYABLE_CODES =
      EnumSet.of(
          Status.Code.UNAVAILABLE,
          Status.Code.RESOURCE_EXHAUSTED,
          Status.Code.DEADLINE_EXCEEDED,
          // The caller cancels by abandoning the call, so a CANCELLED that comes back means
          // the connection was lost mid-call.
          Status.Code.CANCELLED);

  /** Decodes the status of a failed call (a {@code StatusRuntimeException} or any throwable). */
  public static ErrorDetails details(Throwable error) {
    Status status = Status.fromThrowable(error);
    String message = status.getDescription() == null ? "" : status.getDescription();
    com.google.rpc.Status rich = null;
    try {
      rich = StatusProto.fromThrowable(error);
    } catch (RuntimeException garbled) {
      // a garbled trailer: treat as absent
    }
    if (rich == null) {
      return ErrorDetails.of(status.getCode(), message);
    }
    String reason = "";
    String domain = "";
    Map<String, String> metadata = new LinkedHashMap<>();
    List<ErrorDetails.FieldViolation> violations = new ArrayList<>();
    Duration retryDelay = null;
    for (Any detail : rich.getDetailsList()) {
      try {
        if (detail.is(ErrorInfo.class)) {
          ErrorInfo info = detail.unpack(ErrorInfo.class);
          reason = info.getReason();
          domain = info.getDomain();
          metadata.putAll(info.getMetadataMap());
        } else if (detail.is(BadRequest.class)) {
          for (BadRequest.FieldViolation v : detail.unpack(BadRequest.class).getFieldViolationsList()) {
            violations.add(new ErrorDetails.FieldViolation(v.getField(), v.getDescription()));
          }
        } else if (detail.is(RetryInfo.class)) {
          com.google.protobuf.Duration d = detail.unpack(RetryInfo.class).getRetryDelay();
          retryDelay = Duration.ofSeconds(d.getSeconds(), d.getNanos());
        }
      } catch (InvalidProtocolBufferException garbled) {
        // one undecodable detail: skip it
      }
    }
    String richMessage = rich.getMessage().isEmpty() ? message : rich.getMessage();
    return new ErrorDetails(
        status.getCode(), richMessage, reason, domain, metadata, violations, retryDelay);
  }

  /** The typed error for a failed attempt: indefinite for {@link #RETRYABLE_CODES}. */
  public static WalletException classify(Throwable error) {
    if (error instanceof WalletException) {
      return (WalletException) error;
    }
    ErrorDetails details = details(error);
    Status.Code code = details.code();
    if (RETRYABLE_CODES.contains(code)) {
      String reason;
      if (!details.reason().isEmpty()) {
        reason = details.reason();
      } else if (code == Status.Code.DEADLINE_EXCEEDED) {
        reason = Reasons.DEADLINE_EXCEEDED;
      } else if (code == Status.Code.RESOURCE_EXHAUSTED) {
        reason = code.name();
      } else {
        // No ErrorInfo: the status was made by the gRPC library (refused, reset, closed).
        reason = Reasons.TRANSPORT_ERROR;
      }
      return new UnavailableException(details, reason, error);
    }
    return new RejectedException(
        details, details.reason().isEmpty() ? code.name() : details.reason(), error);
  }

  /** The error of a call whose own deadline ran out inside the SDK. */
  public static UnavailableException deadlineExceeded(String message) {
    return new UnavailableException(
        ErrorDetails.of(Status.Code.DEADLINE_EXCEEDED, message), Reasons.DEADLINE_EXCEEDED, null);
  }

  /** The leader's {@code host:port} from a NOT_LEADER redirect, if the node knew it. */
  public static Optional<String> leaderHint(WalletException error) {
    if (error.code() != Status.Code.UNAVAILABLE || !Reasons.NOT_LEADER.equals(error.reason())) {
      return Optional.empty();
    }
    String address =
        error.details().metadata().getOrDefault(Reasons.METADATA_LEADER_ADDRESS, "").trim();
    while (address.endsWith("/")) {
      address = address.substring(0, address.length() - 1);
    }
    for (String scheme : new String[] {"http://", "https://"}) {
      if (address.startsWith(scheme)) {
        address = address.substring(scheme.length());
      }
    }
    return address.isEmpty() ? Optional.empty() : Optional.of(address);
  }
}
