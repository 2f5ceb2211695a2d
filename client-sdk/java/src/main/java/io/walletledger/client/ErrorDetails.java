package io.walletledger.client;

import io.grpc.Status;
import java.time.Duration;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * What a failed call's {@code google.rpc.Status} (the {@code grpc-status-details-bin} trailer)
 * says, decoded: the code and message, {@code ErrorInfo} (reason, domain, metadata), every
 * {@code BadRequest} field violation and {@code RetryInfo}'s delay.
 */
public final class ErrorDetails {
  /** One {@code BadRequest.FieldViolation}. */
  public static final class FieldViolation {
    public final String field;
    public final String description;

    public FieldViolation(String field, String description) {
      this.field = field;
      this.description = description;
    }

    @Override
    public String toString() {
      return field + ": " + description;
    }
  }

  private final Status.Code code;
  private final String message;
  private final String reason;
  private final String domain;
  private final Map<String, String> metadata;
  private final List<FieldViolation> fieldViolations;
  private final Duration retryDelay;

  public ErrorDetails(
      Status.Code code,
      String message,
      String reason,
      String domain,
      Map<String, String> metadata,
      List<FieldViolation> fieldViolations,
      Duration retryDelay) {
    this.code = code;
    this.message = message == null ? "" : message;
    this.reason = reason == null ? "" : reason;
    this.domain = domain == null ? "" : domain;
    this.metadata = Collections.unmodifiableMap(metadata == null ? Map.of() : metadata);
    this.fieldViolations =
        Collections.unmodifiableList(fieldViolations == null ? List.of() : fieldViolations);
    this.retryDelay = retryDelay;
  }

  /** Details with only a code and a message (no rich status). */
  public static ErrorDetails of(Status.Code code, String message) {
    return new ErrorDetails(code, message, "", "", Map.of(), List.of(), null);
  }

  public Status.Code code() {
    return code;
  }

  public String message() {
    return message;
  }

  /** {@code ErrorInfo.reason} as sent ("" without an ErrorInfo). */
  public String reason() {
    return reason;
  }

  /** {@code ErrorInfo.domain} ({@link Reasons#DOMAIN} for the nodes' errors). */
  public String domain() {
    return domain;
  }

  /** {@code ErrorInfo.metadata}, e.g. {@code leader_address} on NOT_LEADER. */
  public Map<String, String> metadata() {
    return metadata;
  }

  public List<FieldViolation> fieldViolations() {
    return fieldViolations;
  }

  /** {@code RetryInfo.retry_delay}, if the node asked for a pause. */
  public Optional<Duration> retryDelay() {
    return Optional.ofNullable(retryDelay);
  }

  @Override
  public String toString() {
    return "ErrorDetails{code="
        + code
        + ", reason="
        + reason
        + ", domain="
        + domain
        + ", metadata="
        + metadata
        + ", fieldViolations="
        + fieldViolations
        + ", retryDelay="
        + retryDelay
        + ", message="
        + message
        + "}";
  }
}
