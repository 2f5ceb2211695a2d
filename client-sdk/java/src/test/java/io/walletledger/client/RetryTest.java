package io.walletledger.client;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import com.google.rpc.ErrorInfo;
import com.google.rpc.RetryInfo;
import io.grpc.Status;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.Test;

/** The retry loop with a fake clock: what is retried, where, how long it sleeps, its bounds. */
public class RetryTest {
  static final List<String> NODES = List.of("a:1", "b:2", "c:3");

  final AtomicLong now = new AtomicLong();
  final List<Duration> sleeps = new ArrayList<>();
  final List<String> sent = new ArrayList<>();

  Retry retry(RetryPolicy policy) {
    return new Retry(policy, d -> {
      sleeps.add(d);
      now.addAndGet(d.toNanos());
    }, now::get);
  }

  static RuntimeException unavailable() {
    return Status.UNAVAILABLE.withDescription("connection refused").asRuntimeException();
  }

  static RuntimeException notLeader(String address) {
    return ErrorsTest.rich(Status.Code.UNAVAILABLE, "not leader",
        ErrorsTest.info(Reasons.NOT_LEADER, Reasons.METADATA_LEADER_ADDRESS, address));
  }

  @Test
  public void indefiniteFailuresMoveToTheNextNodeAfterABackoff() {
    String result = retry(RetryPolicy.defaults()).call((endpoint, timeout) -> {
      sent.add(endpoint);
      if (sent.size() < 3) {
        throw unavailable();
      }
      return "ok@" + endpoint;
    }, NODES, null, null);
    assertEquals("ok@c:3", result);
    assertEquals(List.of("a:1", "b:2", "c:3"), sent);
    assertEquals(2, sleeps.size());
    assertTrue(sleeps.get(0).compareTo(Duration.ofMillis(20)) <= 0);
    assertTrue(sleeps.get(1).compareTo(Duration.ofMillis(40)) <= 0);
  }

  @Test
  public void notLeaderHintIsFollowedAtOnce() {
    List<String> remembered = new ArrayList<>();
    String result = retry(RetryPolicy.defaults()).call((endpoint, timeout) -> {
      sent.add(endpoint);
      if (endpoint.equals("a:1")) {
        throw notLeader("http://c:3");
      }
      return endpoint;
    }, NODES, null, remembered::add);
    assertEquals("c:3", result);
    assertEquals(List.of("a:1", "c:3"), sent);
    assertEquals(List.of(), sleeps);
    assertEquals(List.of("c:3"), remembered);
  }

  @Test
  public void definiteFailuresAreNotRetried() {
    try {
      retry(RetryPolicy.defaults()).call((endpoint, timeout) -> {
        sent.add(endpoint);
        throw ErrorsTest.rich(Status.Code.FAILED_PRECONDITION, "no money",
            ErrorsTest.info(Reasons.INSUFFICIENT_FUNDS));
      }, NODES, "b:2", null);
      fail("expected a rejection");
    } catch (RejectedException e) {
      assertEquals(Reasons.INSUFFICIENT_FUNDS, e.reason());
    }
    assertEquals(List.of("b:2"), sent);
  }

  @Test
  public void attemptsAreBounded() {
    RetryPolicy policy = RetryPolicy.builder().attemptsMax(4).build();
    try {
      retry(policy).call((endpoint, timeout) -> {
        sent.add(endpoint);
        throw unavailable();
      }, NODES, null, null);
      fail("expected an indefinite error");
    } catch (UnavailableException e) {
      assertEquals(Reasons.TRANSPORT_ERROR, e.reason());
    }
    assertEquals(4, sent.size());
  }

  @Test
  public void deadlineIsBoundedAndHonoursRetryInfo() {
    RetryPolicy policy = RetryPolicy.builder().totalDeadline(Duration.ofSeconds(1))
        .attemptsMax(100).callTimeout(Duration.ofMillis(300)).build();
    List<Duration> timeouts = new ArrayList<>();
    RetryInfo pause = RetryInfo.newBuilder()
        .setRetryDelay(com.google.protobuf.Duration.newBuilder().setNanos(300_000_000)).build();
    try {
      retry(policy).call((endpoint, timeout) -> {
        timeouts.add(timeout);
        throw ErrorsTest.rich(Status.Code.RESOURCE_EXHAUSTED, "busy",
            ErrorInfo.newBuilder().setReason(Reasons.OVERLOADED).build(), pause);
      }, NODES, null, null);
      fail("expected an indefinite error");
    } catch (UnavailableException e) {
      assertEquals(Reasons.OVERLOADED, e.reason());
    }
    // 0.3 s pauses (RetryInfo, above the jitter) within a 1 s deadline: attempts at 0, 0.3,
    // 0.6 and 0.9 s; a fourth pause would end past the deadline, so it gives up instead.
    assertEquals(4, timeouts.size());
    assertEquals(3, sleeps.size());
    for (Duration d : sleeps) {
      assertEquals(Duration.ofMillis(300), d);
    }
    assertTrue(now.get() < Duration.ofSeconds(1).toNanos());
    assertEquals(Duration.ofMillis(300), timeouts.get(0));
  }

  @Test
  public void policyIsValidated() {
    try {
      RetryPolicy.builder().attemptsMax(0).build();
      fail();
    } catch (IllegalArgumentException expected) {
      // ok
    }
    try {
      RetryPolicy.builder().backoffBase(Duration.ofSeconds(2)).build();
      fail();
    } catch (IllegalArgumentException expected) {
      // ok
    }
  }
}
