package io.walletledger.client;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import io.grpc.Server;
import io.grpc.ServerInterceptors;
import io.grpc.Status;
import io.grpc.netty.NettyServerBuilder;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.StreamObserver;
import io.walletledger.v1.TransferLeg;
import io.walletledger.v1.TransferLegsRequest;
import io.walletledger.v1.TransferResponse;
import io.walletledger.v1.WalletServiceGrpc;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.OptionalInt;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.function.BiFunction;
import java.util.regex.Pattern;
import org.junit.After;
import org.junit.Test;

/**
 * {@code transferLegs} (TransferLegs, multi-leg transfers) against fake write nodes on loopback
 * sockets: the request carries the legs in order (accounts, amounts as decimal strings,
 * currency), the reference and metadata, and goes to the leader of the first leg's
 * {@code from} (following a NOT_LEADER hint) with {@code wallet-no-forward}; the transaction
 * id the builder makes is a UUID, kept on every retry (UNAVAILABLE: the same request again); a
 * refusal exposes the {@code leg} of its ErrorInfo metadata and is not retried.
 */
public class LegsTest {
  static final Pattern UUID_V4 = Pattern.compile("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");
  static final RetryPolicy FAST = RetryPolicy.builder().callTimeout(Duration.ofSeconds(2))
      .totalDeadline(Duration.ofSeconds(4)).attemptsMax(4).backoffBase(Duration.ofMillis(1))
      .backoffMax(Duration.ofMillis(5)).build();

  final List<Server> servers = new ArrayList<>();

  @After
  public void stop() throws InterruptedException {
    for (Server s : servers) {
      s.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  /**
   * A node whose TransferLegs records each request (and its no-forward header) and answers
   * {@code answer(call number from 1, request)}: a TransferResponse, or a google.rpc.Status.
   */
  Server node(List<TransferLegsRequest> seen, List<String> noForward,
      BiFunction<Integer, TransferLegsRequest, Object> answer) throws Exception {
    WalletServiceGrpc.WalletServiceImplBase service = new WalletServiceGrpc.WalletServiceImplBase() {
      @Override
      public void transferLegs(TransferLegsRequest request, StreamObserver<TransferResponse> out) {
        seen.add(request);
        Object a = answer.apply(seen.size(), request);
        if (a instanceof TransferResponse r) {
          out.onNext(r);
          out.onCompleted();
        } else {
          out.onError(StatusProto.toStatusRuntimeException((com.google.rpc.Status) a));
        }
      }
    };
    Server server = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0))
        .addService(ServerInterceptors.intercept(service, RoutingTest.recordNoForward(noForward)))
        .build().start();
    servers.add(server);
    return server;
  }

  static TransferResponse success(TransferLegsRequest request, boolean replayed) {
    return TransferResponse.newBuilder().setStatus("success").setTransactionId(request.getTransactionId())
        .setConsistencyToken("legs").setReplayed(replayed).build();
  }

  static List<List<String>> legsOf(TransferLegsRequest request) {
    List<List<String>> out = new ArrayList<>();
    for (TransferLeg leg : request.getLegsList()) {
      out.add(List.of(leg.getFromAccount(), leg.getToAccount(), leg.getAmount(), leg.getCurrency()));
    }
    return out;
  }

  static final List<TransferLegs.Leg> LEGS = List.of(
      TransferLegs.leg("alice", "bob", "30.00", "USD"),
      TransferLegs.leg("alice", "carol", "20.00", "USD"),
      TransferLegs.leg("bob", "dave", "10.5", "USD"));

  @Test
  public void theRequestCarriesTheLegsInOrderAndGoesToTheLeaderOfTheFirstSource() throws Exception {
    List<TransferLegsRequest> leaderSeen = new CopyOnWriteArrayList<>();
    List<TransferLegsRequest> followerSeen = new CopyOnWriteArrayList<>();
    List<String> noForward = new CopyOnWriteArrayList<>();
    Server leader = node(leaderSeen, noForward, (n, request) -> success(request, false));
    String leaderAddress = "127.0.0.1:" + leader.getPort();
    Server follower = node(followerSeen, noForward, (n, request) -> HoldsTest.refusal(Status.Code.UNAVAILABLE,
        Reasons.NOT_LEADER, Reasons.METADATA_LEADER_ADDRESS, "http://" + leaderAddress));
    Map<String, String> metadata = new LinkedHashMap<>(Map.of("channel", "sdk-java"));
    TransferLegs split = TransferLegs.builder()
        .leg(LEGS.get(0)).leg("alice", "carol", "20.00", "USD").leg(LEGS.get(2))
        .reference("order-7").metadata(metadata).build();
    metadata.put("channel", "changed afterwards");
    try (WalletClient wallet = WalletClient.builder().retryPolicy(FAST)
        .endpoints("127.0.0.1:" + follower.getPort(), leaderAddress).build()) {
      TransferResponse done = wallet.transferLegs(split);
      assertEquals(List.of("success", split.transactionId(), "legs"),
          List.of(done.getStatus(), done.getTransactionId(), done.getConsistencyToken()));
      assertFalse(done.getReplayed());
      assertEquals(leaderAddress, wallet.leader("alice"));
      wallet.transferLegs(new TransferLegs(Transfer.newTransactionId(), LEGS.subList(0, 1)));
    }
    assertEquals(1, followerSeen.size()); // then straight to the known leader
    assertEquals(2, leaderSeen.size());
    TransferLegsRequest sent = leaderSeen.get(0);
    assertEquals(sent, followerSeen.get(0)); // a redirect sends the same request
    assertTrue(UUID_V4.matcher(sent.getTransactionId()).matches());
    assertEquals(split.transactionId(), sent.getTransactionId());
    assertEquals(List.of(
        List.of("alice", "bob", "30.00", "USD"),
        List.of("alice", "carol", "20.00", "USD"),
        List.of("bob", "dave", "10.5", "USD")), legsOf(sent));
    assertEquals("order-7", sent.getReference());
    assertEquals(Map.of("channel", "sdk-java"), sent.getMetadataMap());
    assertEquals(List.of("", Map.of()), List.of(leaderSeen.get(1).getReference(), leaderSeen.get(1).getMetadataMap()));
    assertEquals(List.of(Channels.NO_FORWARD_VALUE, Channels.NO_FORWARD_VALUE, Channels.NO_FORWARD_VALUE), noForward);
  }

  @Test
  public void theBuilderMakesAUuidAndCopies() {
    TransferLegs a = TransferLegs.builder().legs(LEGS).build();
    TransferLegs b = TransferLegs.builder().legs(LEGS).build();
    assertTrue(UUID_V4.matcher(a.transactionId()).matches());
    assertNotEquals(a.transactionId(), b.transactionId());
    assertEquals("mine", a.toBuilder().transactionId("mine").build().transactionId());
    assertEquals(a, a.toBuilder().build());
    assertEquals(LEGS, a.legs());
    assertThrows(UnsupportedOperationException.class, () -> a.legs().add(LEGS.get(0)));
    assertThrows(NullPointerException.class, () -> TransferLegs.leg("a", null, "1.00", "USD"));
    assertThrows(NullPointerException.class, () -> new TransferLegs(null, LEGS));
    assertEquals(List.of("", Map.of()), List.of(new TransferLegs("t", LEGS, null, null).reference(),
        new TransferLegs("t", LEGS, null, null).metadata()));
  }

  @Test
  public void theIdIsKeptOnEveryRetry() throws Exception {
    List<TransferLegsRequest> seen = new CopyOnWriteArrayList<>();
    Server node = node(seen, new CopyOnWriteArrayList<>(), (n, request) -> n <= 2
        ? HoldsTest.refusal(Status.Code.UNAVAILABLE, Reasons.OUTCOME_UNKNOWN)
        : success(request, true));
    TransferLegs split = TransferLegs.builder().legs(LEGS).reference("r").build();
    try (WalletClient wallet = WalletClient.builder().retryPolicy(FAST).endpoints("127.0.0.1:" + node.getPort()).build()) {
      TransferResponse done = wallet.transferLegs(split);
      assertTrue(done.getReplayed());
      assertEquals(split.transactionId(), done.getTransactionId());
    }
    assertEquals(3, seen.size());
    for (TransferLegsRequest r : seen) {
      assertEquals(seen.get(0), r); // the same request each time
    }
    assertEquals(split.transactionId(), seen.get(0).getTransactionId());
  }

  @Test
  public void anUnknownOutcomeIsUnavailableAfterTheRetries() throws Exception {
    List<TransferLegsRequest> seen = new CopyOnWriteArrayList<>();
    Server node = node(seen, new CopyOnWriteArrayList<>(),
        (n, request) -> HoldsTest.refusal(Status.Code.UNAVAILABLE, Reasons.OUTCOME_UNKNOWN));
    try (WalletClient wallet = WalletClient.builder().retryPolicy(FAST).endpoints("127.0.0.1:" + node.getPort()).build()) {
      wallet.transferLegs(TransferLegs.builder().legs(LEGS).build());
      fail("expected an unknown outcome");
    } catch (UnavailableException e) {
      assertEquals(Reasons.OUTCOME_UNKNOWN, e.reason());
    }
    assertEquals(4, seen.size());
    assertEquals(1, seen.stream().map(TransferLegsRequest::getTransactionId).distinct().count());
  }

  @Test
  public void aRefusalNamesItsLegAndIsNotRetried() throws Exception {
    List<TransferLegsRequest> seen = new CopyOnWriteArrayList<>();
    String[] leg = {"2"};
    Server node = node(seen, new CopyOnWriteArrayList<>(), (n, request) -> request.getLegsCount() == 2
        ? HoldsTest.refusal(Status.Code.INVALID_ARGUMENT, Reasons.REPEATED_LEG)
        : HoldsTest.refusal(Status.Code.FAILED_PRECONDITION, Reasons.INSUFFICIENT_FUNDS, Reasons.METADATA_LEG, leg[0]));
    try (WalletClient wallet = WalletClient.builder().retryPolicy(FAST).endpoints("127.0.0.1:" + node.getPort()).build()) {
      try {
        wallet.transferLegs(TransferLegs.builder().legs(LEGS).build());
        fail("expected INSUFFICIENT_FUNDS");
      } catch (RejectedException e) {
        assertEquals(List.of(Status.Code.FAILED_PRECONDITION, Reasons.INSUFFICIENT_FUNDS), List.of(e.code(), e.reason()));
        assertEquals(OptionalInt.of(2), e.leg());
        assertEquals("2", e.details().metadata().get(Reasons.METADATA_LEG));
      }
      assertEquals(1, seen.size());
      try {
        wallet.transferLegs(TransferLegs.builder().legs(List.of(LEGS.get(0), LEGS.get(0))).build());
        fail("expected REPEATED_LEG");
      } catch (RejectedException e) {
        assertEquals(Reasons.REPEATED_LEG, e.reason());
        assertEquals(OptionalInt.empty(), e.leg());
      }
      assertEquals(2, seen.size());
      Map<String, OptionalInt> cases = Map.of("0", OptionalInt.of(0), "17", OptionalInt.of(17), "", OptionalInt.empty(),
          "-1", OptionalInt.empty(), "x", OptionalInt.empty(), "99999999999", OptionalInt.empty());
      for (Map.Entry<String, OptionalInt> c : cases.entrySet()) {
        leg[0] = c.getKey();
        try {
          wallet.transferLegs(TransferLegs.builder().legs(LEGS).build());
          fail("expected a refusal");
        } catch (RejectedException e) {
          assertEquals(c.getKey(), c.getValue(), e.leg());
        }
      }
    }
  }
}
