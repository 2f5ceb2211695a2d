package io.walletledger.client;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNotEquals;
import static org.junit.Assert.assertThrows;

import io.grpc.Server;
import io.grpc.Status;
import io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.StreamObserver;
import io.walletledger.v1.Account;
import io.walletledger.v1.AccountStatus;
import io.walletledger.v1.AuthorizeTransferRequest;
import io.walletledger.v1.Balance;
import io.walletledger.v1.BalanceUpdate;
import io.walletledger.v1.GetAccountRequest;
import io.walletledger.v1.GetAccountResponse;
import io.walletledger.v1.GetBalanceRequest;
import io.walletledger.v1.GetBalanceResponse;
import io.walletledger.v1.GetTransferRequest;
import io.walletledger.v1.GetTransferResponse;
import io.walletledger.v1.HoldResponse;
import io.walletledger.v1.OpenAccountRequest;
import io.walletledger.v1.OpenAccountResponse;
import io.walletledger.v1.OpenAccountResult;
import io.walletledger.v1.QueryServiceGrpc;
import io.walletledger.v1.TransferBatchRequest;
import io.walletledger.v1.TransferBatchResponse;
import io.walletledger.v1.TransferRequest;
import io.walletledger.v1.TransferResponse;
import io.walletledger.v1.TransferResult;
import io.walletledger.v1.TransferStatus;
import io.walletledger.v1.WalletServiceGrpc;
import io.walletledger.v1.WatchBalancesRequest;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.junit.After;
import org.junit.Test;

/**
 * A transfer's optional reference and metadata against a fake write node on a loopback
 * socket: {@code transfer}, {@code transferBatch}, {@code submitTransfers} and
 * {@code authorizeTransfer} put them in the request (empty when not given), and
 * {@code getTransfer} hands back what the node answers; the {@link Transfer} record keeps an
 * unmodifiable copy and compares them. An account's reference and metadata likewise:
 * {@code openAccount} and {@code openAccounts} (streamed, and an item the stream answers
 * "unavailable" retried alone) send them; the {@code Account} answered, {@code getAccount}
 * and the read node's {@code Balance} ({@code getBalance}, {@code watchBalances}) carry them.
 */
public class AnnotationsTest {
  static final Map<String, String> METADATA = Map.of("channel", "sdk-java", "note", "ünïcode ✓");

  final List<Server> servers = new ArrayList<>();

  @After
  public void stop() throws InterruptedException {
    for (Server s : servers) {
      s.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  /** How each request came ("unary", "batch", "stream", "authorize"), its id, reference and metadata. */
  record Seen(String how, String id, String reference, Map<String, String> metadata) {}

  Server node(List<Seen> seen) throws Exception {
    WalletServiceGrpc.WalletServiceImplBase service = new WalletServiceGrpc.WalletServiceImplBase() {
      @Override
      public void transfer(TransferRequest r, StreamObserver<TransferResponse> out) {
        seen.add(new Seen("unary", r.getTransactionId(), r.getReference(), r.getMetadataMap()));
        out.onNext(TransferResponse.newBuilder().setStatus("success").setTransactionId(r.getTransactionId()).build());
        out.onCompleted();
      }

      @Override
      public void transferBatch(TransferBatchRequest request, StreamObserver<TransferBatchResponse> out) {
        TransferBatchResponse.Builder response = TransferBatchResponse.newBuilder();
        for (TransferRequest r : request.getTransfersList()) {
          seen.add(new Seen("batch", r.getTransactionId(), r.getReference(), r.getMetadataMap()));
          response.addResults(TransferResult.newBuilder().setTransactionId(r.getTransactionId()).setStatus("success"));
        }
        out.onNext(response.build());
        out.onCompleted();
      }

      @Override
      public StreamObserver<TransferRequest> submitTransfers(StreamObserver<TransferResult> out) {
        return new StreamObserver<>() {
          @Override
          public void onNext(TransferRequest r) {
            seen.add(new Seen("stream", r.getTransactionId(), r.getReference(), r.getMetadataMap()));
            out.onNext(TransferResult.newBuilder().setTransactionId(r.getTransactionId()).setStatus("success").build());
          }

          @Override
          public void onError(Throwable t) {}

          @Override
          public void onCompleted() {
            out.onCompleted();
          }
        };
      }

      @Override
      public void authorizeTransfer(AuthorizeTransferRequest r, StreamObserver<HoldResponse> out) {
        seen.add(new Seen("authorize", r.getTransactionId(), r.getReference(), r.getMetadataMap()));
        out.onNext(HoldResponse.newBuilder().setTransfer(io.walletledger.v1.Transfer.newBuilder()
            .setTransactionId(r.getTransactionId()).setStatus(TransferStatus.TRANSFER_STATUS_PENDING)
            .setReference(r.getReference()).putAllMetadata(r.getMetadataMap())).build());
        out.onCompleted();
      }

      @Override
      public void getTransfer(GetTransferRequest request, StreamObserver<GetTransferResponse> out) {
        for (int i = seen.size() - 1; i >= 0; i--) {
          Seen s = seen.get(i);
          if (s.id().equals(request.getTransactionId())) {
            out.onNext(GetTransferResponse.newBuilder().setTransfer(io.walletledger.v1.Transfer.newBuilder()
                .setTransactionId(s.id()).setStatus(TransferStatus.TRANSFER_STATUS_COMPLETED)
                .setReference(s.reference()).putAllMetadata(s.metadata())).build());
            out.onCompleted();
            return;
          }
        }
        out.onError(Status.NOT_FOUND.asRuntimeException());
      }
    };
    Server server = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0))
        .addService(service).build().start();
    servers.add(server);
    return server;
  }

  @Test
  public void transferSendsReferenceAndMetadataAndGetTransferReturnsThem() throws Exception {
    List<Seen> seen = new CopyOnWriteArrayList<>();
    Server server = node(seen);
    Transfer annotated = Transfer.builder().from("a").to("b").amount("1.00").currency("USD")
        .reference("order-42").metadata(METADATA).build();
    Transfer plain = new Transfer(Transfer.newTransactionId(), "a", "b", "1.00", "USD");
    try (WalletClient wallet = WalletClient.builder().endpoints("127.0.0.1:" + server.getPort()).build()) {
      wallet.transfer(annotated);
      wallet.transfer(plain);
      io.walletledger.v1.Transfer got = wallet.getTransfer(annotated.transactionId());
      assertEquals("order-42", got.getReference());
      assertEquals(METADATA, got.getMetadataMap());
    }
    assertEquals(List.of(
        new Seen("unary", annotated.transactionId(), "order-42", METADATA),
        new Seen("unary", plain.transactionId(), "", Map.of())), seen);
  }

  @Test
  public void batchStreamAndHoldCarryEachItemsOwn() throws Exception {
    List<Seen> seen = new CopyOnWriteArrayList<>();
    Server server = node(seen);
    try (WalletClient wallet = WalletClient.builder().endpoints("127.0.0.1:" + server.getPort()).build()) {
      wallet.transferBatch(List.of(
          Transfer.builder().transactionId("t1").from("a").to("b").amount("1.00").currency("USD")
              .reference("r1").putMetadata("k", "v1").build(),
          Transfer.builder().transactionId("t2").from("a").to("b").amount("2.00").currency("USD")
              .reference("r2").build()));
      List<TransferResult> streamed = wallet.submitTransfers(List.of(
          Transfer.builder().transactionId("s1").from("a").to("b").amount("1.00").currency("USD")
              .reference("r3").putMetadata("k", "v3").build()));
      assertEquals("success", streamed.get(0).getStatus());
      Transfer hold = Transfer.builder().transactionId("h1").from("a").to("b").amount("5.00").currency("USD")
          .reference("inv-7").putMetadata("channel", "pos").build();
      HoldResponse held = wallet.authorizeTransfer(hold, Duration.ofMinutes(1));
      assertEquals("inv-7", held.getTransfer().getReference());
      assertEquals(Map.of("channel", "pos"), held.getTransfer().getMetadataMap());
      wallet.authorizeTransfer("h2", "a", "b", "5.00", "USD", Duration.ofMinutes(1));
    }
    assertEquals(List.of(
        new Seen("batch", "t1", "r1", Map.of("k", "v1")),
        new Seen("batch", "t2", "r2", Map.of()),
        new Seen("stream", "s1", "r3", Map.of("k", "v3")),
        new Seen("authorize", "h1", "inv-7", Map.of("channel", "pos")),
        new Seen("authorize", "h2", "", Map.of())), seen);
  }

  @Test
  public void theRecordKeepsAnUnmodifiableCopyAndComparesThem() {
    Map<String, String> metadata = new HashMap<>(Map.of("k", "v"));
    Transfer t = new Transfer("id", "a", "b", "1.00", "USD", null, metadata);
    metadata.put("k", "changed");
    assertEquals("", t.reference());
    assertEquals(Map.of("k", "v"), t.metadata());
    assertThrows(UnsupportedOperationException.class, () -> t.metadata().put("x", "y"));
    assertEquals(t, t.toBuilder().build());
    assertNotEquals(t, t.toBuilder().putMetadata("k", "other").build());
    assertNotEquals(t, t.toBuilder().reference("r").build());
    assertEquals(new Transfer("id", "a", "b", "1.00", "USD"), new Transfer("id", "a", "b", "1.00", "USD", "", null));
    assertEquals(Map.of("k", "v"), t.toRequest().getMetadataMap());
    Map<String, String> withNull = new HashMap<>();
    withNull.put("k", null);
    assertThrows(NullPointerException.class, () -> new Transfer("id", "a", "b", "1", "USD", "", withNull));
  }

  static final Map<String, String> ACCOUNT_METADATA = Map.of("tier", "gold", "region", "eu");

  /** How each account request came ("unary", "stream"), its id, reference and metadata. */
  record Opened(String how, String id, String reference, Map<String, String> metadata) {}

  static Account accountOf(OpenAccountRequest r) {
    return Account.newBuilder().setAccountId(r.getAccountId()).setCurrency(r.getCurrency())
        .setAllowNegativeBalance(r.getAllowNegativeBalance()).setBalance("0.00")
        .setStatus(AccountStatus.ACCOUNT_STATUS_ACTIVE)
        .setReference(r.getReference()).putAllMetadata(r.getMetadataMap()).build();
  }

  /**
   * A write node that records every OpenAccountRequest and answers the account as asked,
   * reference and metadata included; GetAccount answers the last one opened under the id;
   * OpenAccounts answers the ids in {@code unavailable} "unavailable".
   */
  Server accountsNode(List<Opened> opened, List<OpenAccountRequest> requests, List<String> unavailable) throws Exception {
    WalletServiceGrpc.WalletServiceImplBase service = new WalletServiceGrpc.WalletServiceImplBase() {
      @Override
      public void openAccount(OpenAccountRequest r, StreamObserver<OpenAccountResponse> out) {
        opened.add(new Opened("unary", r.getAccountId(), r.getReference(), r.getMetadataMap()));
        requests.add(r);
        out.onNext(OpenAccountResponse.newBuilder().setAccount(accountOf(r)).build());
        out.onCompleted();
      }

      @Override
      public StreamObserver<OpenAccountRequest> openAccounts(StreamObserver<OpenAccountResult> out) {
        return new StreamObserver<>() {
          @Override
          public void onNext(OpenAccountRequest r) {
            OpenAccountResult.Builder result = OpenAccountResult.newBuilder().setAccountId(r.getAccountId());
            if (unavailable.contains(r.getAccountId())) {
              out.onNext(result.setStatus("unavailable").build());
              return;
            }
            opened.add(new Opened("stream", r.getAccountId(), r.getReference(), r.getMetadataMap()));
            requests.add(r);
            out.onNext(result.setStatus("success").setAccount(accountOf(r)).build());
          }

          @Override
          public void onError(Throwable t) {}

          @Override
          public void onCompleted() {
            out.onCompleted();
          }
        };
      }

      @Override
      public void getAccount(GetAccountRequest request, StreamObserver<GetAccountResponse> out) {
        for (int i = requests.size() - 1; i >= 0; i--) {
          if (requests.get(i).getAccountId().equals(request.getAccountId())) {
            out.onNext(GetAccountResponse.newBuilder().setAccount(accountOf(requests.get(i))).setPosition("p").build());
            out.onCompleted();
            return;
          }
        }
        out.onError(Status.NOT_FOUND.asRuntimeException());
      }
    };
    Server server = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0))
        .addService(service).build().start();
    servers.add(server);
    return server;
  }

  @Test
  public void openAccountSendsReferenceAndMetadataAndTheAccountCarriesThem() throws Exception {
    List<Opened> opened = new CopyOnWriteArrayList<>();
    Server server = accountsNode(opened, new CopyOnWriteArrayList<>(), List.of());
    Map<String, String> metadata = new HashMap<>(ACCOUNT_METADATA);
    try (WalletClient wallet = WalletClient.builder().endpoints("127.0.0.1:" + server.getPort()).build()) {
      Account account = wallet.openAccount("cust", "USD", false, "cust-42", metadata);
      Account plain = wallet.openAccount("plain", "USD", true);
      Account nulls = wallet.openAccount("nulls", "USD", false, null, null);
      assertEquals("cust-42", account.getReference());
      assertEquals(ACCOUNT_METADATA, account.getMetadataMap());
      assertEquals("", plain.getReference());
      assertEquals(Map.of(), plain.getMetadataMap());
      assertEquals(Map.of(), nulls.getMetadataMap());
      Account got = wallet.getAccount("cust").getAccount();
      assertEquals("cust-42", got.getReference());
      assertEquals(ACCOUNT_METADATA, got.getMetadataMap());
    }
    assertEquals(List.of(
        new Opened("unary", "cust", "cust-42", ACCOUNT_METADATA),
        new Opened("unary", "plain", "", Map.of()),
        new Opened("unary", "nulls", "", Map.of())), opened);
  }

  @Test
  public void openAccountsItemsCarryTheirOwnAlsoWhenRetriedAlone() throws Exception {
    List<Opened> opened = new CopyOnWriteArrayList<>();
    Server server = accountsNode(opened, new CopyOnWriteArrayList<>(), List.of("elsewhere"));
    List<OpenAccountResult> results;
    try (WalletClient wallet = WalletClient.builder().endpoints("127.0.0.1:" + server.getPort()).build()) {
      results = wallet.openAccounts(List.of(
          WalletClient.openAccountRequest("a1", "USD", false, "r1", Map.of("k", "v1")),
          WalletClient.openAccountRequest("elsewhere", "EUR", false, "r2", Map.of("k", "v2")),
          WalletClient.openAccountRequest("a3", "USD", false, null, null)));
    }
    assertEquals(List.of(
        new Opened("stream", "a1", "r1", Map.of("k", "v1")),
        new Opened("stream", "a3", "", Map.of()),
        new Opened("unary", "elsewhere", "r2", Map.of("k", "v2"))), opened);
    assertEquals(List.of("success", "success", "success"), results.stream().map(OpenAccountResult::getStatus).toList());
    assertEquals(List.of("r1", "r2", ""), results.stream().map(r -> r.getAccount().getReference()).toList());
    assertEquals(List.of(Map.of("k", "v1"), Map.of("k", "v2"), Map.of()),
        results.stream().map(r -> r.getAccount().getMetadataMap()).toList());
  }

  @Test
  public void openAccountRequestRefusesNullMetadataEntries() {
    Map<String, String> withNull = new HashMap<>();
    withNull.put("k", null);
    assertThrows(NullPointerException.class, () -> WalletClient.openAccountRequest("a", "USD", false, "", withNull));
    OpenAccountRequest request = WalletClient.openAccountRequest("a", "USD", true, "r", Map.of("k", "v"));
    assertEquals(List.of("a", "USD", true, "r", Map.of("k", "v")), List.of(request.getAccountId(), request.getCurrency(),
        request.getAllowNegativeBalance(), request.getReference(), request.getMetadataMap()));
  }

  @Test
  public void theReadNodesBalancesCarryTheAccountsReferenceAndMetadata() throws Exception {
    Map<String, Balance> balances = Map.of(
        "cust", Balance.newBuilder().setAccountId("cust").setCurrency("USD").setBalance("1.00").setSequence(1)
            .setReference("cust-42").putAllMetadata(ACCOUNT_METADATA).build(),
        "plain", Balance.newBuilder().setAccountId("plain").setCurrency("USD").setBalance("0.00").setSequence(1).build());
    List<GetBalanceRequest> asked = new CopyOnWriteArrayList<>();
    Server server = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0))
        .addService(new QueryServiceGrpc.QueryServiceImplBase() {
          @Override
          public void getBalance(GetBalanceRequest request, StreamObserver<GetBalanceResponse> out) {
            asked.add(request);
            out.onNext(GetBalanceResponse.newBuilder().setBalance(balances.get(request.getAccountId())).build());
            out.onCompleted();
          }

          @Override
          public void watchBalances(WatchBalancesRequest request, StreamObserver<BalanceUpdate> out) {
            for (String id : request.getAccountIdsList()) {
              out.onNext(BalanceUpdate.newBuilder().setSnapshot(true).setBalance(balances.get(id)).build());
            } // and stays open
          }
        }).build().start();
    servers.add(server);
    try (QueryClient query = QueryClient.builder().endpoints("127.0.0.1:" + server.getPort()).build()) {
      Balance got = query.getBalance("cust", "tok").getBalance();
      assertEquals("cust-42", got.getReference());
      assertEquals(ACCOUNT_METADATA, got.getMetadataMap());
      Balance bare = query.getBalance("plain").getBalance();
      assertEquals("", bare.getReference());
      assertEquals(Map.of(), bare.getMetadataMap());
      assertEquals(List.of("cust", "tok", "plain", ""), List.of(asked.get(0).getAccountId(),
          asked.get(0).getConsistencyToken(), asked.get(1).getAccountId(), asked.get(1).getConsistencyToken()));
      try (BalanceWatch watch = query.watchBalances(List.of("cust"))) {
        BalanceUpdate snapshot = watch.next();
        assertEquals("cust", snapshot.getBalance().getAccountId());
        assertEquals("cust-42", snapshot.getBalance().getReference());
        assertEquals(ACCOUNT_METADATA, snapshot.getBalance().getMetadataMap());
      }
    }
  }

  @Test
  public void theNewReasonsAreKnown() {
    assertEquals("INVALID_REFERENCE", Reasons.INVALID_REFERENCE);
    assertEquals("INVALID_METADATA", Reasons.INVALID_METADATA);
  }
}
