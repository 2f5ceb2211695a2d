package io.walletledger.client;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;

import com.google.protobuf.Any;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import com.google.rpc.RetryInfo;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import java.time.Duration;
import java.util.Optional;
import org.junit.Test;

/** Decoding real {@code Status}es with details, as the nodes send them. */
public class ErrorsTest {
  static StatusRuntimeException rich(Status.Code code, String message, com.google.protobuf.Message... details) {
    com.google.rpc.Status.Builder status =
        com.google.rpc.Status.newBuilder().setCode(code.value()).setMessage(message);
    for (com.google.protobuf.Message d : details) {
      status.addDetails(Any.pack(d));
    }
    return StatusProto.toStatusRuntimeException(status.build());
  }

  static ErrorInfo info(String reason, String... metadata) {
    ErrorInfo.Builder b = ErrorInfo.newBuilder().setReason(reason).setDomain(Reasons.DOMAIN);
    for (int i = 0; i + 1 < metadata.length; i += 2) {
      b.putMetadata(metadata[i], metadata[i + 1]);
    }
    return b.build();
  }

  static BadRequest field(String field) {
    return BadRequest.newBuilder().addFieldViolations(
        BadRequest.FieldViolation.newBuilder().setField(field).setDescription("bad " + field)).build();
  }

  @Test
  public void invalidArgumentIsRejectedWithReasonAndField() {
    WalletException e = Errors.classify(rich(Status.Code.INVALID_ARGUMENT, "amount 'abc' is not a decimal",
        info(Reasons.INVALID_AMOUNT), field("amount")));
    assertTrue(e instanceof RejectedException);
    assertTrue(e.isDefinite());
    assertEquals(Status.Code.INVALID_ARGUMENT, e.code());
    assertEquals(Reasons.INVALID_AMOUNT, e.reason());
    assertEquals(Optional.of("amount"), e.field());
    assertEquals(Reasons.DOMAIN, e.details().domain());
    assertEquals("amount 'abc' is not a decimal", e.statusMessage());
    assertEquals("bad amount", e.details().fieldViolations().get(0).description);
  }

  @Test
  public void definiteReasonsWithoutField() {
    WalletException e = Errors.classify(
        rich(Status.Code.FAILED_PRECONDITION, "insufficient", info(Reasons.INSUFFICIENT_FUNDS)));
    assertTrue(e instanceof RejectedException);
    assertEquals(Reasons.INSUFFICIENT_FUNDS, e.reason());
    assertEquals(Optional.empty(), e.field());
    e = Errors.classify(rich(Status.Code.ALREADY_EXISTS, "reused", info(Reasons.TRANSACTION_ID_REUSED)));
    assertEquals(Status.Code.ALREADY_EXISTS, e.code());
    assertEquals(Reasons.TRANSACTION_ID_REUSED, e.reason());
  }

  @Test
  public void notLeaderIsIndefiniteWithLeaderHint() {
    WalletException e = Errors.classify(rich(Status.Code.UNAVAILABLE, "not the leader",
        info(Reasons.NOT_LEADER, Reasons.METADATA_LEADER_ADDRESS, "http://127.0.0.1:5002/",
            Reasons.METADATA_LEADER_ID, "2")));
    assertTrue(e instanceof UnavailableException);
    assertFalse(e.isDefinite());
    assertEquals(Reasons.NOT_LEADER, e.reason());
    assertEquals(Optional.of("127.0.0.1:5002"), Errors.leaderHint(e));
    assertEquals("2", e.details().metadata().get(Reasons.METADATA_LEADER_ID));
    // No address known: no hint; another reason: no hint.
    assertEquals(Optional.empty(), Errors.leaderHint(Errors.classify(
        rich(Status.Code.UNAVAILABLE, "no leader", info(Reasons.NOT_LEADER)))));
    assertEquals(Optional.empty(), Errors.leaderHint(Errors.classify(rich(Status.Code.UNAVAILABLE,
        "x", info(Reasons.NO_LEADER, Reasons.METADATA_LEADER_ADDRESS, "127.0.0.1:1")))));
  }

  @Test
  public void retryInfoIsDecoded() {
    RetryInfo retry = RetryInfo.newBuilder().setRetryDelay(
        com.google.protobuf.Duration.newBuilder().setSeconds(0).setNanos(100_000_000)).build();
    WalletException e = Errors.classify(
        rich(Status.Code.RESOURCE_EXHAUSTED, "busy", info(Reasons.OVERLOADED), retry));
    assertTrue(e instanceof UnavailableException);
    assertEquals(Reasons.OVERLOADED, e.reason());
    assertEquals(Optional.of(Duration.ofMillis(100)), e.retryDelay());
  }

  @Test
  public void statusesWithoutDetails() {
    WalletException e = Errors.classify(Status.UNAVAILABLE.withDescription("io exception").asRuntimeException());
    assertTrue(e instanceof UnavailableException);
    assertEquals(Reasons.TRANSPORT_ERROR, e.reason());
    e = Errors.classify(Status.DEADLINE_EXCEEDED.asRuntimeException());
    assertEquals(Reasons.DEADLINE_EXCEEDED, e.reason());
    assertFalse(e.isDefinite());
    e = Errors.classify(Status.CANCELLED.asRuntimeException());
    assertTrue(e instanceof UnavailableException);
    e = Errors.classify(Status.RESOURCE_EXHAUSTED.asRuntimeException());
    assertEquals("RESOURCE_EXHAUSTED", e.reason());
    e = Errors.classify(Status.PERMISSION_DENIED.asRuntimeException());
    assertTrue(e instanceof RejectedException);
    assertEquals("PERMISSION_DENIED", e.reason());
    e = Errors.classify(new IllegalStateException("boom"));
    assertTrue(e instanceof RejectedException);
    assertEquals(Status.Code.UNKNOWN, e.code());
  }

  @Test
  public void authErrorsAreDefinite() {
    WalletException e = Errors.classify(
        rich(Status.Code.UNAUTHENTICATED, "no token", info(Reasons.MISSING_TOKEN)));
    assertTrue(e instanceof RejectedException);
    assertEquals(Reasons.MISSING_TOKEN, e.reason());
    e = Errors.classify(rich(Status.Code.PERMISSION_DENIED, "scope",
        info(Reasons.SCOPE_DENIED, Reasons.METADATA_SCOPE, "transfer")));
    assertEquals("transfer", e.details().metadata().get(Reasons.METADATA_SCOPE));
  }
}
