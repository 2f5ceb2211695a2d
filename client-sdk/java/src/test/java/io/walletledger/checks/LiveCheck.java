package io.walletledger.checks;

import static io.walletledger.checks.Check.equal;
import static io.walletledger.checks.Check.expect;
import static io.walletledger.checks.Check.expectRejected;
import static io.walletledger.checks.Check.require;

import com.google.protobuf.Any;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.NettyChannelBuilder;
import io.grpc.protobuf.StatusProto;
import io.walletledger.client.BalanceWatch;
import io.walletledger.client.QueryClient;
import io.walletledger.client.Reasons;
import io.walletledger.client.RejectedException;
import io.walletledger.client.RetryPolicy;
import io.walletledger.client.Transfer;
import io.walletledger.client.TransferLegs;
import io.walletledger.client.TransferWatch;
import io.walletledger.client.UnavailableException;
import io.walletledger.client.WalletClient;
import io.walletledger.client.WalletException;
import io.walletledger.v1.Account;
import io.walletledger.v1.AccountStatus;
import io.walletledger.v1.Balance;
import io.walletledger.v1.BalanceUpdate;
import io.walletledger.v1.GetClusterStatusResponse;
import io.walletledger.v1.HistoryEntry;
import io.walletledger.v1.ListTransfersResponse;
import io.walletledger.v1.OpenAccountRequest;
import io.walletledger.v1.OpenAccountResult;
import io.walletledger.v1.TransferLeg;
import io.walletledger.v1.TransferResponse;
import io.walletledger.v1.TransferResult;
import io.walletledger.v1.TransferStatus;
import io.walletledger.v1.TransferUpdate;
import io.walletledger.v1.WalletServiceGrpc;
import java.math.BigDecimal;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.OptionalInt;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

/**
 * Checks against a live cluster (client-sdk/python/tests/live_check.py in Java): a transfer and
 * its retry with the same id (the same outcome, no money moved twice); every documented
 * rejection decoded with its code, reason and field (invalid amounts, unknown currency, bad
 * transaction id, same account, unknown accounts and transfers, insufficient funds, currency
 * mismatch, a reused id with other parameters, an account reopened with other parameters),
 * also straight from the generated stub with {@code StatusProto}; the read node's errors,
 * streams included; the retry loop gets past a dead node and gives up, bounded, when all are
 * dead; 200 concurrent transfers on one client each get exactly their own outcome and the
 * balances are exact, also after all 200 are sent again; the other RPC wrappers; the account
 * lifecycle (freeze, unfreeze, overdraft limit, close) with every refusal it documents; a
 * transfer's reference and metadata stored and read back (write node, read node), compared on a
 * retry, and refused over their limits; an account's reference and metadata likewise (set at
 * opening, compared when it is opened again, refused over their limits with no account opened);
 * a multi-leg transfer (transferLegs) moves every leg or none.
 *
 * <pre>client-sdk/java/test.sh live --write HOST:PORT,... --read HOST:PORT</pre>
 */
public final class LiveCheck {
  static final Status.Code INVALID = Status.Code.INVALID_ARGUMENT;
  static int checks;

  public static void main(String[] argv) throws Exception {
    Map<String, String> args = Check.args(argv, "--write", "--read");
    List<String> writes = Arrays.asList(args.get("--write").split(","));
    String read = args.get("--read");
    String prefix = "javacheck-" + UUID.randomUUID().toString().substring(0, 8) + "-";
    String issuer = prefix + "issuer";
    String alice = prefix + "alice";

    try (WalletClient wallet = WalletClient.builder().endpoints(writes).build();
        QueryClient query = QueryClient.builder().endpoints(read).build()) {
      wallet.openAccount(issuer, "USD", true);
      wallet.openAccount(alice, "USD", false);
      TransferResponse funded = wallet.transfer(Transfer.builder()
          .from(issuer).to(alice).amount("10.00").currency("USD").build());
      equal("success", funded.getStatus(), "funding status");

      // A retry with the same id gets the original outcome and moves no money twice.
      Transfer once = Transfer.builder().from(issuer).to(alice).amount("0.50").currency("USD").build();
      TransferResponse first = wallet.transfer(once);
      TransferResponse again = wallet.transfer(once);
      equal(first.getConsistencyToken(), again.getConsistencyToken(), "a retry's consistency token");
      equal(once.transactionId(), again.getTransactionId(), "a retry's transaction id");
      equal("10.50", wallet.getAccount(alice).getAccount().getBalance(), "balance after a transfer and its retry");
      checks++;

      for (String amount : new String[] {"abc", "-1", "0", "1.005", "1e3", " 1.00", "NaN"}) {
        expectRejected(() -> wallet.transfer(pay(issuer, alice, amount)), INVALID, Reasons.INVALID_AMOUNT, "amount");
        checks++;
      }
      expectRejected(() -> wallet.transfer(pay(issuer, alice, "1.00").toBuilder().currency("XYZ").build()),
          INVALID, Reasons.UNKNOWN_CURRENCY, "currency");
      expectRejected(() -> wallet.transfer(pay(issuer, alice, "1.00").toBuilder().transactionId("not-a-uuid").build()),
          INVALID, Reasons.INVALID_TRANSACTION_ID, "transaction_id");
      expectRejected(() -> wallet.transfer(pay(issuer, issuer, "1.00")), INVALID, Reasons.SAME_ACCOUNT, "to_account");
      expectRejected(() -> wallet.openAccount("has space", "USD", false), INVALID, Reasons.INVALID_ACCOUNT_ID, "account_id");
      // Unknown accounts and transfers name the field too.
      expectRejected(() -> wallet.transfer(pay(issuer, prefix + "nobody", "1.00")),
          Status.Code.NOT_FOUND, Reasons.ACCOUNT_NOT_FOUND, "to_account");
      expectRejected(() -> wallet.transfer(pay(prefix + "nobody", alice, "1.00")),
          Status.Code.NOT_FOUND, Reasons.ACCOUNT_NOT_FOUND, "from_account");
      expectRejected(() -> wallet.getAccount(prefix + "nobody"), Status.Code.NOT_FOUND, Reasons.ACCOUNT_NOT_FOUND, "account_id");
      expectRejected(() -> wallet.getTransfer(WalletClient.newTransactionId()),
          Status.Code.NOT_FOUND, Reasons.TRANSFER_NOT_FOUND, "transaction_id");
      expectRejected(() -> wallet.transfer(pay(alice, issuer, "10.51")),
          Status.Code.FAILED_PRECONDITION, Reasons.INSUFFICIENT_FUNDS, null);
      String euros = prefix + "euros";
      wallet.openAccount(euros, "EUR", false);
      expectRejected(() -> wallet.transfer(pay(issuer, euros, "1.00")),
          Status.Code.FAILED_PRECONDITION, Reasons.CURRENCY_MISMATCH, null);
      expectRejected(() -> wallet.transfer(pay(issuer, alice, "9.99").toBuilder().transactionId(funded.getTransactionId()).build()),
          Status.Code.ALREADY_EXISTS, Reasons.TRANSACTION_ID_REUSED, null);
      expectRejected(() -> wallet.openAccount(alice, "EUR", false),
          Status.Code.ALREADY_EXISTS, Reasons.ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS, null);
      checks += 13;
      rawStatusDecodes(writes, issuer, alice);
      checks++;

      // The read node's errors decode the same way, streams included.
      expectRejected(() -> {
        try (BalanceWatch watch = query.watchBalances(List.of())) {
          return watch.hasNext() ? watch.next() : "an empty watch ended quietly";
        }
      }, INVALID, Reasons.INVALID_ACCOUNT_ID, "account_ids");
      expectRejected(() -> query.getBalance(alice, "garbage"), INVALID, Reasons.INVALID_CONSISTENCY_TOKEN, "consistency_token");
      checks += 2;

      // Bad input changed nothing.
      equal("10.50", wallet.getAccount(alice).getAccount().getBalance(), "alice after the rejections");
      equal("10.50", query.getBalance(alice, again.getConsistencyToken()).getBalance().getBalance(), "alice projected");
      checks++;

      otherWrappers(wallet, query, prefix, issuer, alice, funded);
      transferLegs(wallet, issuer);
      accountLifecycle(wallet, prefix);
    }

    // A dead node first in the list: the retry loop moves on with the same request.
    String dead = "127.0.0.1:1";
    List<String> withDead = new ArrayList<>();
    withDead.add(dead);
    withDead.addAll(writes);
    try (WalletClient wallet = WalletClient.builder().endpoints(withDead).build()) {
      equal("10.50", wallet.getAccount(alice).getAccount().getBalance(), "read past a dead node");
    }
    // Only dead nodes: an indefinite error, within the total deadline.
    RetryPolicy policy = RetryPolicy.builder().totalDeadline(Duration.ofSeconds(2)).attemptsMax(4)
        .backoffBase(Duration.ofMillis(10)).backoffMax(Duration.ofMillis(50)).build();
    long started = System.nanoTime();
    try (WalletClient wallet = WalletClient.builder().endpoints(dead).retryPolicy(policy).build()) {
      UnavailableException e = expect(() -> wallet.transfer(pay(issuer, alice, "1.00")),
          UnavailableException.class, Status.Code.UNAVAILABLE, Reasons.TRANSPORT_ERROR);
      require(!e.isDefinite(), "a transport error is indefinite");
    }
    require(System.nanoTime() - started < TimeUnit.MILLISECONDS.toNanos(3000), "the retries stopped in time");
    checks += 2;

    transferAnnotations(writes, read, prefix);
    accountAnnotations(writes, read, prefix);
    concurrentTransfers(writes, prefix);
    System.out.println("java live checks: " + checks + " passed");
  }

  /**
   * {@code closeAccount}, called again while the node answers
   * {@link Reasons#ACCOUNT_HAS_TRANSFERS_IN_FLIGHT} (a cross-partition transfer from the account
   * answered "success" before its settle step: "retry shortly", as documented).
   */
  static Account closeWhenSettled(WalletClient wallet, String accountId) throws InterruptedException {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while (true) {
      try {
        return wallet.closeAccount(accountId);
      } catch (RejectedException e) {
        if (!Reasons.ACCOUNT_HAS_TRANSFERS_IN_FLIGHT.equals(e.reason()) || System.nanoTime() > deadline) {
          throw e;
        }
      }
      Thread.sleep(50);
    }
  }

  /**
   * The accounts of the multi-leg check, fixed so that the first four are in one partition of the
   * 4 of client-sdk/test-sdks.sh's cluster (the server's partition function) and the last in
   * another; opened idempotently, so the check compares balances as deltas.
   */
  static final List<String> LEGS_ACCOUNTS = List.of("java-legs-0", "java-legs-3", "java-legs-4", "java-legs-25");
  static final String LEGS_ELSEWHERE = "java-legs-1";

  /**
   * A multi-leg transfer moves every leg or none: three legs among four accounts of one partition
   * move exactly their amounts (GetAccount on the write node, as deltas); the same
   * {@code TransferLegs} again answers the original outcome (replayed) and moves nothing, other
   * legs under the id are ALREADY_EXISTS TRANSACTION_ID_REUSED; a set taking more than its first
   * account has is FAILED_PRECONDITION INSUFFICIENT_FUNDS naming leg 0 and moves nothing; a
   * repeated leg, mixed currencies and no legs are INVALID_ARGUMENT (REPEATED_LEG,
   * MIXED_CURRENCIES, LEGS_OUT_OF_RANGE); a set reaching another partition (first -> second and
   * first -> LEGS_ELSEWHERE) completes too, "success" and not replayed, and moves exactly its
   * amounts in both partitions (LEGS_ELSEWHERE read on its own), and the same
   * {@code TransferLegs} again answers replayed and moves nothing; getTransfer answers the set
   * with its legs, COMPLETED, no from account.
   */
  static void transferLegs(WalletClient wallet, String issuer) {
    String first = LEGS_ACCOUNTS.get(0);
    String second = LEGS_ACCOUNTS.get(1);
    String third = LEGS_ACCOUNTS.get(2);
    String fourth = LEGS_ACCOUNTS.get(3);
    for (String account : LEGS_ACCOUNTS) {
      wallet.openAccount(account, "USD", false);
    }
    wallet.openAccount(LEGS_ELSEWHERE, "USD", false);
    wallet.transfer(pay(issuer, first, "100.00"));
    java.util.function.Supplier<List<BigDecimal>> balances = () -> LEGS_ACCOUNTS.stream()
        .map(a -> new BigDecimal(wallet.getAccount(a).getAccount().getBalance())).toList();
    java.util.function.Function<List<BigDecimal>, List<BigDecimal>> moved = since -> {
      List<BigDecimal> now = balances.get();
      List<BigDecimal> out = new ArrayList<>();
      for (int i = 0; i < now.size(); i++) {
        out.add(now.get(i).subtract(since.get(i)).setScale(2));
      }
      return out;
    };
    List<BigDecimal> nothing = List.of(new BigDecimal("0.00"), new BigDecimal("0.00"), new BigDecimal("0.00"), new BigDecimal("0.00"));
    String reference = "legs-" + UUID.randomUUID();
    TransferLegs split = TransferLegs.builder()
        .leg(first, second, "30.00", "USD")
        .leg(first, third, "20.00", "USD")
        .leg(second, fourth, "10.00", "USD")
        .reference(reference).putMetadata("channel", "sdk-java").build();

    List<BigDecimal> before = balances.get();
    TransferResponse done = wallet.transferLegs(split);
    equal(List.of("success", split.transactionId(), false),
        List.of(done.getStatus(), done.getTransactionId(), done.getReplayed()), "TransferLegs");
    equal(List.of(new BigDecimal("-50.00"), new BigDecimal("20.00"), new BigDecimal("20.00"), new BigDecimal("10.00")),
        moved.apply(before), "what the legs moved");
    checks += 2;

    List<BigDecimal> after = balances.get();
    TransferResponse again = wallet.transferLegs(split);
    equal(List.of("success", split.transactionId(), true, done.getConsistencyToken()),
        List.of(again.getStatus(), again.getTransactionId(), again.getReplayed(), again.getConsistencyToken()),
        "the same TransferLegs again");
    TransferLegs fewer = split.toBuilder().legs(split.legs().subList(0, 2)).build();
    expectRejected(() -> wallet.transferLegs(fewer), Status.Code.ALREADY_EXISTS, Reasons.TRANSACTION_ID_REUSED, null);
    equal(nothing, moved.apply(after), "what a replay and a reused id moved");
    checks += 2;

    String tooMuch = after.get(0).add(new BigDecimal("1000.00")).toPlainString();
    RejectedException refused = expectRejected(() -> wallet.transferLegs(TransferLegs.builder()
            .leg(first, second, tooMuch, "USD").leg(second, fourth, "1.00", "USD").build()),
        Status.Code.FAILED_PRECONDITION, Reasons.INSUFFICIENT_FUNDS, null);
    equal("0", refused.details().metadata().get(Reasons.METADATA_LEG), "the ErrorInfo metadata leg");
    equal(OptionalInt.of(0), refused.leg(), "the refused leg");
    expectRejected(() -> wallet.transferLegs(TransferLegs.builder()
        .leg(first, second, "1.00", "USD").leg(first, second, "2.00", "USD").build()), INVALID, Reasons.REPEATED_LEG, "legs");
    expectRejected(() -> wallet.transferLegs(TransferLegs.builder()
        .leg(first, second, "1.00", "USD").leg(first, third, "1.00", "EUR").build()), INVALID, Reasons.MIXED_CURRENCIES, "legs");
    expectRejected(() -> wallet.transferLegs(TransferLegs.builder().build()), INVALID, Reasons.LEGS_OUT_OF_RANGE, "legs");
    equal(nothing, moved.apply(after), "what the refused sets moved");
    checks += 4;

    // Across partitions: the consistency token names a position in every partition the set
    // touches, so a retry's may differ from the first answer's.
    java.util.function.Supplier<BigDecimal> elsewhere =
        () -> new BigDecimal(wallet.getAccount(LEGS_ELSEWHERE).getAccount().getBalance());
    TransferLegs across = TransferLegs.builder()
        .leg(first, second, "1.00", "USD")
        .leg(first, LEGS_ELSEWHERE, "1.00", "USD")
        .build();
    List<BigDecimal> acrossBefore = balances.get();
    BigDecimal elsewhereBefore = elsewhere.get();
    TransferResponse acrossDone = wallet.transferLegs(across);
    equal(List.of("success", across.transactionId(), false),
        List.of(acrossDone.getStatus(), acrossDone.getTransactionId(), acrossDone.getReplayed()),
        "TransferLegs across partitions");
    equal(List.of(new BigDecimal("-2.00"), new BigDecimal("1.00"), new BigDecimal("0.00"), new BigDecimal("0.00")),
        moved.apply(acrossBefore), "what the legs across partitions moved");
    equal(new BigDecimal("1.00"), elsewhere.get().subtract(elsewhereBefore).setScale(2),
        "what the legs across partitions moved to " + LEGS_ELSEWHERE);
    checks += 2;

    List<BigDecimal> acrossAfter = balances.get();
    BigDecimal elsewhereAfter = elsewhere.get();
    TransferResponse acrossAgain = wallet.transferLegs(across);
    equal(List.of("success", across.transactionId(), true),
        List.of(acrossAgain.getStatus(), acrossAgain.getTransactionId(), acrossAgain.getReplayed()),
        "the same TransferLegs across partitions again");
    equal(nothing, moved.apply(acrossAfter), "what a replay across partitions moved");
    equal(new BigDecimal("0.00"), elsewhere.get().subtract(elsewhereAfter).setScale(2),
        "what a replay across partitions moved to " + LEGS_ELSEWHERE);
    checks += 2;

    io.walletledger.v1.Transfer got = wallet.getTransfer(split.transactionId());
    equal(TransferStatus.TRANSFER_STATUS_COMPLETED, got.getStatus(), "the legs' status");
    equal(List.of(split.transactionId(), "", "", "", "USD"),
        List.of(got.getTransactionId(), got.getFromAccount(), got.getToAccount(), got.getAmount(), got.getCurrency()),
        "the legs' transfer");
    List<List<Object>> gotLegs = new ArrayList<>();
    for (TransferLeg leg : got.getLegsList()) {
      gotLegs.add(List.of(leg.getFromAccount(), leg.getToAccount(), new BigDecimal(leg.getAmount()).setScale(2)));
    }
    List<List<Object>> sentLegs = new ArrayList<>();
    for (TransferLegs.Leg leg : split.legs()) {
      sentLegs.add(List.of(leg.from(), leg.to(), new BigDecimal(leg.amount()).setScale(2)));
    }
    equal(sentLegs, gotLegs, "getTransfer's legs");
    equal(List.of(reference, Map.of("channel", "sdk-java"), false),
        List.of(got.getReference(), got.getMetadataMap(), got.hasRejectedLeg()), "getTransfer's reference, metadata, rejected leg");
    checks++;
    System.out.println("java live checks: a multi-leg transfer moves every leg or none, within and across partitions (replayed, refused as documented, read back)");
  }

  /**
   * Freeze, unfreeze, overdraft limit and close on a fresh account, each refusal with its
   * documented code and reason (FAILED_PRECONDITION carries no field), the status and limit read
   * back.
   */
  static void accountLifecycle(WalletClient wallet, String prefix) throws Exception {
    String issuer = prefix + "life-issuer";
    String account = prefix + "life-account";
    String sink = prefix + "life-sink";
    Status.Code precondition = Status.Code.FAILED_PRECONDITION;
    wallet.openAccount(issuer, "USD", true);
    Account opened = wallet.openAccount(account, "USD");
    equal(AccountStatus.ACCOUNT_STATUS_ACTIVE, opened.getStatus(), "a new account's status");
    equal("0.00", opened.getOverdraftLimit(), "a new account's overdraft limit");
    wallet.openAccount(sink, "USD");
    wallet.transfer(pay(issuer, account, "20.00"));

    Account frozen = wallet.freezeAccount(account);
    equal(account, frozen.getAccountId(), "the frozen account's id");
    equal(AccountStatus.ACCOUNT_STATUS_FROZEN, frozen.getStatus(), "status after freezing");
    equal(AccountStatus.ACCOUNT_STATUS_FROZEN, wallet.freezeAccount(account).getStatus(), "freezing again (idempotent)");
    expectRejected(() -> wallet.transfer(pay(account, sink, "5.00")), precondition, Reasons.ACCOUNT_FROZEN, null);
    expectRejected(() -> wallet.transfer(pay(issuer, account, "5.00")), precondition, Reasons.ACCOUNT_FROZEN, null);
    Account state = wallet.getAccount(account).getAccount();
    equal(List.of(AccountStatus.ACCOUNT_STATUS_FROZEN, "20.00"), List.of(state.getStatus(), state.getBalance()), "frozen account");

    equal(AccountStatus.ACCOUNT_STATUS_ACTIVE, wallet.unfreezeAccount(account).getStatus(), "status after unfreezing");
    equal("success", wallet.transfer(pay(account, sink, "5.00")).getStatus(), "a transfer after unfreezing");

    Account limited = wallet.setOverdraftLimit(account, "50.00", "USD");
    equal("50.00", limited.getOverdraftLimit(), "the overdraft limit");
    equal("50.00", wallet.setOverdraftLimit(account, "50.00", "USD").getOverdraftLimit(), "the same limit again (idempotent)");
    expectRejected(() -> wallet.setOverdraftLimit(account, "50.00", "EUR"), precondition, Reasons.CURRENCY_MISMATCH, null);
    expectRejected(() -> wallet.setOverdraftLimit(issuer, "50.00", "USD"), precondition, Reasons.OVERDRAFT_UNLIMITED, null);
    wallet.transfer(pay(account, sink, "60.00")); // 15.00 - 60.00: 45.00 below zero, within the limit
    expectRejected(() -> wallet.transfer(pay(account, sink, "5.01")), precondition, Reasons.INSUFFICIENT_FUNDS, null);
    state = wallet.getAccount(account).getAccount();
    equal(List.of(AccountStatus.ACCOUNT_STATUS_ACTIVE, "-45.00", "50.00"),
        List.of(state.getStatus(), state.getBalance(), state.getOverdraftLimit()), "the overdrawn account");

    expectRejected(() -> wallet.closeAccount(account), precondition, Reasons.ACCOUNT_NOT_EMPTY, null);
    wallet.transfer(pay(issuer, account, "45.00"));
    Account closed = closeWhenSettled(wallet, account);
    equal(List.of(AccountStatus.ACCOUNT_STATUS_CLOSED, "0.00"), List.of(closed.getStatus(), closed.getBalance()), "closed");
    equal(AccountStatus.ACCOUNT_STATUS_CLOSED, wallet.closeAccount(account).getStatus(), "closing again (idempotent)");
    equal(AccountStatus.ACCOUNT_STATUS_CLOSED, wallet.getAccount(account).getAccount().getStatus(), "the closed account read back");
    expectRejected(() -> wallet.transfer(pay(issuer, account, "1.00")), precondition, Reasons.ACCOUNT_CLOSED, null);
    expectRejected(() -> wallet.transfer(pay(account, sink, "1.00")), precondition, Reasons.ACCOUNT_CLOSED, null);
    expectRejected(() -> wallet.unfreezeAccount(account), precondition, Reasons.ACCOUNT_CLOSED, null);
    expectRejected(() -> wallet.freezeAccount(prefix + "nobody"), Status.Code.NOT_FOUND, Reasons.ACCOUNT_NOT_FOUND, "account_id");
    equal("65.00", wallet.getAccount(sink).getAccount().getBalance(), "the sink");
    checks += 12;
    System.out.println("java live checks: account lifecycle: freeze, unfreeze, overdraft limit and close as documented");
  }

  /**
   * A transfer with a reference and metadata (unicode included) reads back the same from
   * GetTransfer (write node), WatchTransfer and ListTransfers (read node); a retry with the same
   * id and parameters answers the original outcome (replayed), with other metadata or another
   * reference it is ALREADY_EXISTS TRANSACTION_ID_REUSED; 17 metadata entries are
   * INVALID_METADATA and a 129-byte reference INVALID_REFERENCE (INVALID_ARGUMENT, naming the
   * field), unary and down a SubmitTransfers stream; a hold keeps its reference and metadata.
   */
  static void transferAnnotations(List<String> writes, String read, String prefix) throws Exception {
    String payer = prefix + "ann-payer";
    String payee = prefix + "ann-payee";
    String reference = "order-" + UUID.randomUUID();
    Map<String, String> metadata = new LinkedHashMap<>();
    metadata.put("channel", "sdk-java");
    metadata.put("note", "ünïcode ✓");
    try (WalletClient wallet = WalletClient.builder().endpoints(writes).build();
        QueryClient query = QueryClient.builder().endpoints(read).build()) {
      wallet.openAccount(payer, "USD", true);
      wallet.openAccount(payee, "USD");
      Transfer transfer = Transfer.builder().from(payer).to(payee).amount("3.00").currency("USD")
          .reference(reference).metadata(metadata).build();
      TransferResponse done = wallet.transfer(transfer);
      equal(List.of("success", false), List.of(done.getStatus(), done.getReplayed()), "an annotated transfer");
      io.walletledger.v1.Transfer got = wallet.getTransfer(transfer.transactionId());
      equal(reference, got.getReference(), "GetTransfer reference");
      equal(metadata, got.getMetadataMap(), "GetTransfer metadata");
      // COMPLETED, or for a few milliseconds IN_FLIGHT when the accounts' partitions differ.
      require(got.getStatus() == TransferStatus.TRANSFER_STATUS_COMPLETED
          || got.getStatus() == TransferStatus.TRANSFER_STATUS_IN_FLIGHT, "GetTransfer status " + got.getStatus());
      require(wallet.transfer(transfer.toBuilder().build()).getReplayed(), "the same request again says replayed");
      checks += 3;
      expectRejected(() -> wallet.transfer(transfer.toBuilder().putMetadata("note", "changed").build()),
          Status.Code.ALREADY_EXISTS, Reasons.TRANSACTION_ID_REUSED, null);
      expectRejected(() -> wallet.transfer(transfer.toBuilder().reference(reference + "-other").build()),
          Status.Code.ALREADY_EXISTS, Reasons.TRANSACTION_ID_REUSED, null);

      Map<String, String> tooMany = new LinkedHashMap<>();
      for (int i = 0; i < 17; i++) {
        tooMany.put("k" + i, "v");
      }
      Transfer fresh = Transfer.builder().from(payer).to(payee).amount("1.00").currency("USD").build();
      expectRejected(() -> wallet.transfer(fresh.toBuilder().transactionId(null).metadata(tooMany).build()),
          INVALID, Reasons.INVALID_METADATA, "metadata");
      expectRejected(() -> wallet.transfer(fresh.toBuilder().transactionId(null).reference("r".repeat(129)).build()),
          INVALID, Reasons.INVALID_REFERENCE, "reference");
      // Down a SubmitTransfers stream the item's error names the field too.
      TransferResult streamed = wallet.submitTransfers(
          List.of(fresh.toBuilder().transactionId(null).metadata(tooMany).build())).get(0);
      equal(List.of("rejected", Status.Code.INVALID_ARGUMENT.value(), Reasons.INVALID_METADATA, "metadata"),
          List.of(streamed.getStatus(), streamed.getError().getCode(), streamed.getError().getReason(),
              streamed.getError().getField()), "17 metadata entries down a stream");

      expectRejected(() -> wallet.authorizeTransfer(fresh.toBuilder().transactionId(null).putMetadata("bad key", "v").build(),
          Duration.ofMinutes(1)), INVALID, Reasons.INVALID_METADATA, "metadata");
      Transfer hold = fresh.toBuilder().transactionId(null).reference(reference + "-hold")
          .metadata(Map.of("channel", "sdk-java")).build();
      var held = wallet.authorizeTransfer(hold, Duration.ofMinutes(1));
      equal(List.of(hold.reference(), hold.metadata()),
          List.of(held.getTransfer().getReference(), held.getTransfer().getMetadataMap()), "the hold's answer");
      io.walletledger.v1.Transfer heldAgain = wallet.getTransfer(hold.transactionId());
      equal(List.of(hold.reference(), hold.metadata()),
          List.of(heldAgain.getReference(), heldAgain.getMetadataMap()), "GetTransfer of the hold");
      wallet.voidTransfer(hold.transactionId(), payer);
      checks += 3;

      // The read node: the transfer's final update, then the payer's history.
      TransferUpdate last = null;
      try (TransferWatch watch = query.watchTransfer(transfer.transactionId())) {
        while (watch.hasNext()) {
          last = watch.next();
        }
      }
      require(last != null, "WatchTransfer ended without an update");
      equal(TransferStatus.TRANSFER_STATUS_COMPLETED, last.getStatus(), "WatchTransfer status");
      equal(List.of(reference, metadata), List.of(last.getReference(), last.getMetadataMap()), "WatchTransfer annotations");
      query.getBalance(payer, done.getConsistencyToken());
      HistoryEntry entry = null;
      String token = "";
      do {
        ListTransfersResponse page = query.listTransfers(payer, token, 0);
        for (HistoryEntry e : page.getEntriesList()) {
          if (e.getTransactionId().equals(transfer.transactionId())) {
            entry = e;
          }
        }
        token = page.getNextPageToken();
      } while (entry == null && !token.isEmpty());
      require(entry != null, "the annotated transfer is not in the payer's history");
      equal(List.of(reference, metadata), List.of(entry.getReference(), entry.getMetadataMap()), "ListTransfers annotations");
      checks += 2;
    }
    System.out.println("java live checks: a transfer's reference and metadata stored, read back, compared on a retry, refused over their limits");
  }

  /**
   * A fresh account opened with a reference and metadata carries them in the answer and in
   * GetAccount (write node); opening it again with the same parameters answers the account
   * (also through OpenAccounts), with other metadata or another reference it is ALREADY_EXISTS
   * ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS and nothing changes; a 129-byte reference is
   * INVALID_REFERENCE and 17 metadata entries INVALID_METADATA (INVALID_ARGUMENT, naming the
   * field), and that account then does not exist; the read node's GetBalance (at the consistency
   * token of a transfer into the account) and the snapshot of WatchBalances carry them too.
   */
  static void accountAnnotations(List<String> writes, String read, String prefix) throws Exception {
    String suffix = UUID.randomUUID().toString().substring(0, 8);
    String account = prefix + "acct-ann-" + suffix;
    String issuer = prefix + "acct-ann-issuer-" + suffix;
    String reference = "cust-42";
    Map<String, String> metadata = Map.of("tier", "gold", "region", "eu");
    Status.Code exists = Status.Code.ALREADY_EXISTS;
    try (WalletClient wallet = WalletClient.builder().endpoints(writes).build();
        QueryClient query = QueryClient.builder().endpoints(read).build()) {
      Account opened = wallet.openAccount(account, "USD", false, reference, metadata);
      equal(List.of(account, "USD", reference, metadata),
          List.of(opened.getAccountId(), opened.getCurrency(), opened.getReference(), opened.getMetadataMap()),
          "OpenAccount with a reference and metadata");
      Account got = wallet.getAccount(account).getAccount();
      equal(List.of(reference, metadata), List.of(got.getReference(), got.getMetadataMap()), "GetAccount annotations");
      Account again = wallet.openAccount(account, "USD", false, reference, new LinkedHashMap<>(metadata));
      equal(List.of(account, reference, metadata),
          List.of(again.getAccountId(), again.getReference(), again.getMetadataMap()), "opening again, the same");
      checks += 3;

      expectRejected(() -> wallet.openAccount(account, "USD", false, reference, Map.of("tier", "silver")),
          exists, Reasons.ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS, null);
      expectRejected(() -> wallet.openAccount(account, "USD", false, "cust-43", metadata),
          exists, Reasons.ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS, null);
      expectRejected(() -> wallet.openAccount(account, "USD", false),
          exists, Reasons.ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS, null);
      got = wallet.getAccount(account).getAccount();
      equal(List.of(reference, metadata), List.of(got.getReference(), got.getMetadataMap()),
          "the account after the refused reopenings");
      checks += 4;

      String fresh = prefix + "acct-ann-refused-" + suffix;
      expectRejected(() -> wallet.openAccount(fresh, "USD", false, "r".repeat(129), null),
          INVALID, Reasons.INVALID_REFERENCE, "reference");
      Map<String, String> tooMany = new LinkedHashMap<>();
      for (int i = 0; i < 17; i++) {
        tooMany.put("k" + i, "v");
      }
      expectRejected(() -> wallet.openAccount(fresh, "USD", false, null, tooMany),
          INVALID, Reasons.INVALID_METADATA, "metadata");
      expectRejected(() -> wallet.getAccount(fresh), Status.Code.NOT_FOUND, Reasons.ACCOUNT_NOT_FOUND, "account_id");
      checks += 3;

      // OpenAccounts: an item with annotations opens with them, an existing account given the
      // same ones answers it, given others it is refused like the unary call.
      String bulk = prefix + "acct-ann-bulk-" + suffix;
      List<OpenAccountResult> results = wallet.openAccounts(List.of(
          WalletClient.openAccountRequest(bulk, "USD", false, "cust-44", Map.of("tier", "bronze")),
          WalletClient.openAccountRequest(account, "USD", false, reference, metadata)));
      equal(List.of("success", "success"), List.of(results.get(0).getStatus(), results.get(1).getStatus()),
          "OpenAccounts statuses " + results);
      equal(List.of("cust-44", Map.of("tier", "bronze"), reference, metadata),
          List.of(results.get(0).getAccount().getReference(), results.get(0).getAccount().getMetadataMap(),
              results.get(1).getAccount().getReference(), results.get(1).getAccount().getMetadataMap()),
          "OpenAccounts annotations");
      OpenAccountResult refused = wallet.openAccounts(List.of(
          WalletClient.openAccountRequest(bulk, "USD", false, "cust-45", null))).get(0);
      equal(List.of("rejected", exists.value(), Reasons.ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS),
          List.of(refused.getStatus(), refused.getError().getCode(), refused.getError().getReason()),
          "OpenAccounts with another reference");
      checks += 2;

      // The read node: GetBalance at least as fresh as a transfer into the account, and the
      // snapshot a watch of it starts with.
      wallet.openAccount(issuer, "USD", true);
      TransferResponse funded = wallet.transfer(pay(issuer, account, "1.00"));
      Balance projected = query.getBalance(account, funded.getConsistencyToken()).getBalance();
      equal(List.of(account, "1.00", reference, metadata),
          List.of(projected.getAccountId(), projected.getBalance(), projected.getReference(), projected.getMetadataMap()),
          "GetBalance of the annotated account");
      Balance plain = query.getBalance(issuer, funded.getConsistencyToken()).getBalance();
      equal(List.of("", Map.of()), List.of(plain.getReference(), plain.getMetadataMap()),
          "GetBalance of an account opened without annotations");
      CompletableFuture<BalanceUpdate> first = new CompletableFuture<>();
      BalanceUpdate snapshot;
      BalanceWatch watch = query.watchBalances(List.of(account), Map.of(), first::complete, first::completeExceptionally);
      try {
        snapshot = first.get(30, TimeUnit.SECONDS);
      } finally {
        watch.close();
      }
      equal(List.of(account, reference, metadata),
          List.of(snapshot.getBalance().getAccountId(), snapshot.getBalance().getReference(),
              snapshot.getBalance().getMetadataMap()), "WatchBalances snapshot of the annotated account");
      checks += 3;
    }
    System.out.println("java live checks: an account's reference and metadata set at opening, read back, compared on reopening, refused over their limits");
  }

  static Transfer pay(String from, String to, String amount) {
    return Transfer.builder().from(from).to(to).amount(amount).currency("USD").build();
  }

  /** Straight from the generated stub and {@code StatusProto}, without the SDK's helpers. */
  static void rawStatusDecodes(List<String> writes, String issuer, String alice) throws Exception {
    // Any write node validates the amount before routing, so the first one will do.
    ManagedChannel channel = NettyChannelBuilder.forTarget(writes.get(0)).usePlaintext().build();
    try {
      WalletServiceGrpc.newBlockingStub(channel).withDeadlineAfter(5, TimeUnit.SECONDS)
          .transfer(pay(issuer, alice, "abc").toRequest());
      throw new AssertionError("amount 'abc' was accepted");
    } catch (StatusRuntimeException e) {
      com.google.rpc.Status status = StatusProto.fromThrowable(e);
      require(status != null, "no grpc-status-details-bin trailer");
      equal(Status.Code.INVALID_ARGUMENT.value(), status.getCode(), "raw status code");
      ErrorInfo info = null;
      BadRequest badRequest = null;
      for (Any detail : status.getDetailsList()) {
        if (detail.is(ErrorInfo.class)) {
          info = detail.unpack(ErrorInfo.class);
        } else if (detail.is(BadRequest.class)) {
          badRequest = detail.unpack(BadRequest.class);
        }
      }
      require(info != null && badRequest != null, "ErrorInfo and BadRequest in " + status);
      equal(Reasons.INVALID_AMOUNT, info.getReason(), "raw reason");
      equal(Reasons.DOMAIN, info.getDomain(), "raw domain");
      equal("amount", badRequest.getFieldViolations(0).getField(), "raw field");
      equal(1, badRequest.getFieldViolationsCount(), "raw field violations");
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  /** OpenAccounts, TransferBatch, SubmitTransfers, GetTransfer, WatchTransfer, ListTransfers, GetBalanceAt, GetClusterStatus. */
  static void otherWrappers(WalletClient wallet, QueryClient query, String prefix, String issuer,
      String alice, TransferResponse funded) throws Exception {
    List<OpenAccountRequest> opens = new ArrayList<>();
    for (int i = 0; i < 6; i++) {
      opens.add(OpenAccountRequest.newBuilder().setAccountId(prefix + "bulk-" + i).setCurrency("USD").build());
    }
    opens.add(OpenAccountRequest.newBuilder().setAccountId(alice).setCurrency("EUR").build());
    List<OpenAccountResult> opened = wallet.openAccounts(opens);
    equal(7, opened.size(), "OpenAccounts results");
    for (int i = 0; i < 6; i++) {
      equal("success", opened.get(i).getStatus(), "OpenAccounts " + opened.get(i));
      equal(prefix + "bulk-" + i, opened.get(i).getAccountId(), "OpenAccounts order");
    }
    equal("rejected", opened.get(6).getStatus(), "reopening alice in EUR");
    equal(Reasons.ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS, opened.get(6).getError().getReason(), "its reason");

    // Batches and streams: items whose partition another node leads come back "unavailable"
    // (SubmitTransfers) or are retried by the SDK (TransferBatch).
    List<Transfer> batch = new ArrayList<>();
    for (int i = 0; i < 6; i++) {
      batch.add(pay(issuer, prefix + "bulk-" + i, "1.00"));
    }
    batch.add(pay(issuer, prefix + "bulk-0", "0.001"));
    List<TransferResult> results = wallet.transferBatch(batch);
    equal(7, results.size(), "TransferBatch results");
    for (int i = 0; i < 6; i++) {
      equal("success", results.get(i).getStatus(), "TransferBatch " + results.get(i));
      equal(batch.get(i).transactionId(), results.get(i).getTransactionId(), "TransferBatch order");
    }
    equal(Reasons.INVALID_AMOUNT, results.get(6).getError().getReason(), "TransferBatch rejection");
    equal("amount", results.get(6).getError().getField(), "TransferBatch rejection field");
    List<TransferResult> again = wallet.transferBatch(batch.subList(0, 6));
    for (int i = 0; i < 6; i++) {
      equal(results.get(i).getConsistencyToken(), again.get(i).getConsistencyToken(), "TransferBatch retry");
    }
    List<Transfer> submitted = new ArrayList<>();
    for (int i = 0; i < 4; i++) {
      submitted.add(pay(issuer, prefix + "bulk-" + i, "2.00"));
    }
    Map<String, String> outcome = new LinkedHashMap<>();
    for (TransferResult r : wallet.submitTransfers(submitted)) {
      outcome.put(r.getTransactionId(), r.getStatus());
    }
    equal(4, outcome.size(), "SubmitTransfers results " + outcome);
    for (Transfer t : submitted) {
      if (!"success".equals(outcome.get(t.transactionId()))) {
        equal("unavailable", outcome.get(t.transactionId()), "SubmitTransfers outcome");
        wallet.transfer(t); // the same id, routed to the leader
      }
    }
    for (int i = 0; i < 4; i++) {
      equal("3.00", wallet.getAccount(prefix + "bulk-" + i).getAccount().getBalance(), "bulk-" + i);
    }
    checks += 3;

    io.walletledger.v1.Transfer status = wallet.getTransfer(funded.getTransactionId());
    equal("10.00", status.getAmount(), "GetTransfer amount");
    List<String> states = new ArrayList<>();
    try (TransferWatch watch = query.watchTransfer(funded.getTransactionId())) {
      while (watch.hasNext()) {
        TransferUpdate u = watch.next();
        states.add(u.getStatus().name()); // status: wallet.v1.TransferStatus (state is deprecated)
      }
    }
    require(!states.isEmpty() && states.get(states.size() - 1).equals("TRANSFER_STATUS_COMPLETED"),
        "WatchTransfer states " + states);
    ListTransfersResponse history = query.listTransfers(alice, "", 10);
    require(history.getEntriesCount() >= 2, "ListTransfers " + history);
    equal("0.50", history.getEntries(0).getDelta(), "the newest entry");
    String fundingPosition = history.getEntries(history.getEntriesCount() - 1).getPosition();
    equal("10.00", query.getBalanceAtPosition(alice, fundingPosition).getBalance().getBalance(),
        "GetBalanceAt the funding");
    equal("10.50", query.getBalanceAtTime(alice, System.currentTimeMillis() + 1000).getBalance().getBalance(),
        "GetBalanceAt now");
    GetClusterStatusResponse cluster = wallet.getClusterStatus(false);
    require(cluster.getPartitionsCount() > 0 && cluster.getNodesCount() == 3, "GetClusterStatus " + cluster);
    checks += 4;
  }

  /**
   * 200 concurrent transfer() calls on one client from a thread pool: valid ones, invalid
   * amounts, insufficient funds, replays of earlier ids (same parameters: the original outcome)
   * and reuses of them (other parameters: TRANSACTION_ID_REUSED). Each call gets exactly its
   * own outcome, the balances are exact, and sending all 200 again moves no money twice.
   */
  static void concurrentTransfers(List<String> writes, String prefix) throws Exception {
    String issuer = prefix + "pipe-issuer";
    List<String> payers = new ArrayList<>();
    List<String> payees = new ArrayList<>();
    Map<String, BigDecimal> expected = new LinkedHashMap<>();
    for (int j = 0; j < 4; j++) {
      payers.add(prefix + "pipe-payer-" + j);
      payees.add(prefix + "pipe-payee-" + j);
    }
    for (String a : payers) {
      expected.put(a, new BigDecimal("0.00"));
    }
    for (String a : payees) {
      expected.put(a, new BigDecimal("0.00"));
    }
    try (WalletClient wallet = WalletClient.builder().endpoints(writes).build()) {
      wallet.openAccount(issuer, "USD", true);
      for (String a : expected.keySet()) {
        wallet.openAccount(a, "USD", false);
      }
      for (String payer : payers) {
        wallet.transfer(pay(issuer, payer, "50.00"));
        expected.merge(payer, new BigDecimal("50.00"), BigDecimal::add);
      }
      List<Transfer> earlier = new ArrayList<>();
      List<String> earlierTokens = new ArrayList<>();
      for (int i = 0; i < 10; i++) {
        Transfer t = pay(issuer, payees.get(0), "2.00");
        earlierTokens.add(wallet.transfer(t).getConsistencyToken());
        earlier.add(t);
        expected.merge(payees.get(0), new BigDecimal("2.00"), BigDecimal::add);
      }
      List<Transfer> requests = new ArrayList<>();
      List<String> want = new ArrayList<>(); // "success", "replay <token>" or a reason
      for (int i = 0; i < 200; i++) {
        int j = i % 4;
        switch (i % 5) {
          case 0:
            requests.add(pay(issuer, payees.get(j), "1.00"));
            expected.merge(payees.get(j), new BigDecimal("1.00"), BigDecimal::add);
            want.add("success");
            break;
          case 1:
            requests.add(pay(issuer, payees.get(j), "1.005"));
            want.add(Reasons.INVALID_AMOUNT);
            break;
          case 2:
            requests.add(pay(payers.get(j), payees.get(j), "100.00"));
            want.add(Reasons.INSUFFICIENT_FUNDS);
            break;
          case 3:
            requests.add(pay(payers.get(j), payees.get(j), "0.50"));
            expected.merge(payers.get(j), new BigDecimal("-0.50"), BigDecimal::add);
            expected.merge(payees.get(j), new BigDecimal("0.50"), BigDecimal::add);
            want.add("success");
            break;
          default:
            int k = (i / 5) % 10;
            boolean same = (i / 5) % 2 == 0;
            requests.add(earlier.get(k).toBuilder().amount(same ? "2.00" : "3.00").build());
            want.add(same ? "replay " + earlierTokens.get(k) : Reasons.TRANSACTION_ID_REUSED);
        }
      }
      ExecutorService pool = Executors.newFixedThreadPool(32);
      try {
        List<Object> first = runAll(wallet, pool, requests);
        Map<String, String> tokens = new LinkedHashMap<>();
        for (int i = 0; i < requests.size(); i++) {
          Object got = first.get(i);
          String where = requests.get(i) + " expected " + want.get(i) + ", got " + got;
          if (want.get(i).equals("success") || want.get(i).startsWith("replay ")) {
            require(got instanceof TransferResponse, where);
            TransferResponse r = (TransferResponse) got;
            require(r.getStatus().equals("success") && r.getTransactionId().equals(requests.get(i).transactionId()), where);
            if (want.get(i).startsWith("replay ")) {
              equal(want.get(i).substring(7), r.getConsistencyToken(), where);
            }
            tokens.put(requests.get(i).transactionId(), r.getConsistencyToken());
          } else {
            require(got instanceof RejectedException, where);
            RejectedException e = (RejectedException) got;
            equal(want.get(i), e.reason(), where);
            equal(want.get(i).equals(Reasons.INVALID_AMOUNT) ? "amount" : null, e.field().orElse(null), where + " field");
          }
        }
        checkBalances(wallet, expected);
        // Everything again, with the same ids: the same outcomes, and no money moves twice.
        List<Object> second = runAll(wallet, pool, requests);
        for (int i = 0; i < requests.size(); i++) {
          Object got = second.get(i);
          Object was = first.get(i);
          String where = requests.get(i) + ": first " + was + ", again " + got;
          if (was instanceof TransferResponse) {
            require(got instanceof TransferResponse, where);
            equal(tokens.get(requests.get(i).transactionId()), ((TransferResponse) got).getConsistencyToken(), where);
          } else {
            require(got instanceof RejectedException, where);
            equal(((WalletException) was).reason(), ((WalletException) got).reason(), where);
          }
        }
        checkBalances(wallet, expected);
      } finally {
        pool.shutdownNow();
      }
    }
    System.out.println("java live checks: 200 concurrent transfers (and again with the same ids): exact balances");
    checks += 2;
  }

  static List<Object> runAll(WalletClient wallet, ExecutorService pool, List<Transfer> requests) throws Exception {
    List<Future<Object>> futures = new ArrayList<>();
    for (Transfer t : requests) {
      futures.add(pool.submit(() -> {
        try {
          return (Object) wallet.transfer(t);
        } catch (WalletException e) {
          return e;
        }
      }));
    }
    List<Object> out = new ArrayList<>();
    for (Future<Object> f : futures) {
      out.add(f.get(60, TimeUnit.SECONDS));
    }
    return out;
  }

  static void checkBalances(WalletClient wallet, Map<String, BigDecimal> expected) {
    for (Map.Entry<String, BigDecimal> e : expected.entrySet()) {
      String got = wallet.getAccount(e.getKey()).getAccount().getBalance();
      require(new BigDecimal(got).compareTo(e.getValue()) == 0, e.getKey() + ": " + got + " != " + e.getValue());
    }
  }
}
