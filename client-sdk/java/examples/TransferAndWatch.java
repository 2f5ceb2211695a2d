// Opens three accounts, funds one, pays another, retries that payment with the same
// transaction id (it is not paid twice), and watches both balances change on a read node:
// client-sdk/python/examples/transfer_and_watch.py in Java.
//
//   client-sdk/java/test.sh example --write 127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053 --read 127.0.0.1:50061
//
// (or: java -cp "$(client-sdk/java/test.sh classpath):<these classes>" TransferAndWatch --write ... --read ...).
// The last line printed is a JSON summary (the SDK tests check it).

import io.walletledger.client.BalanceWatch;
import io.walletledger.client.QueryClient;
import io.walletledger.client.Reasons;
import io.walletledger.client.RejectedException;
import io.walletledger.client.Transfer;
import io.walletledger.client.WalletClient;
import io.walletledger.client.WalletException;
import io.walletledger.v1.Balance;
import io.walletledger.v1.BalanceUpdate;
import io.walletledger.v1.TransferResponse;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

public final class TransferAndWatch {
  static final long WATCH_WAIT_MILLIS = 20_000;

  /** A read node learns an account once it has folded its opening: wait (bounded). */
  static void waitKnown(QueryClient query, String accountId) throws InterruptedException {
    long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(WATCH_WAIT_MILLIS);
    while (true) {
      try {
        query.getBalance(accountId);
        return;
      } catch (RejectedException e) {
        if (!Reasons.ACCOUNT_NOT_FOUND.equals(e.reason()) || System.nanoTime() > deadline) {
          throw e;
        }
        Thread.sleep(50);
      }
    }
  }

  public static void main(String[] argv) throws Exception {
    Map<String, String> args = new HashMap<>();
    args.put("--write", "127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053");
    args.put("--read", "127.0.0.1:50061");
    args.put("--prefix", "java-" + UUID.randomUUID().toString().replace("-", "").substring(0, 8) + "-");
    for (int i = 0; i + 1 < argv.length; i += 2) {
      if (!args.containsKey(argv[i])) {
        throw new IllegalArgumentException("unknown option " + argv[i]);
      }
      args.put(argv[i], argv[i + 1]);
    }
    String prefix = args.get("--prefix");
    String issuer = prefix + "issuer";
    String alice = prefix + "alice";
    String bob = prefix + "bob";

    try (WalletClient wallet = WalletClient.builder()
            .endpoints(Arrays.asList(args.get("--write").split(",")))
            .build();
        QueryClient query = QueryClient.builder().endpoints(args.get("--read")).build()) {
      wallet.openAccount(issuer, "USD", true);
      wallet.openAccount(alice, "USD", false);
      wallet.openAccount(bob, "USD", false);
      for (String account : List.of(alice, bob)) {
        waitKnown(query, account);
      }

      // Watch first: the current balances arrive, then every change as it is applied.
      BlockingQueue<Object> updates = new LinkedBlockingQueue<>();
      BalanceWatch watch = query.watchBalances(List.of(alice, bob), Map.of(), updates::add, updates::add);
      List<String> watched = new ArrayList<>();
      Map<String, String> latest = new HashMap<>();
      long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(WATCH_WAIT_MILLIS);
      // Both snapshots in hand means the watch is registered: no change can slip past it.
      while (!(latest.containsKey(alice) && latest.containsKey(bob))) {
        take(updates, deadline, prefix, watched, latest);
      }

      wallet.transfer(Transfer.builder()
          .transactionId(WalletClient.newTransactionId())
          .from(issuer).to(alice).amount("100.00").currency("USD").build());
      Transfer payment = Transfer.builder()
          .transactionId(WalletClient.newTransactionId())
          .from(alice).to(bob).amount("30.25").currency("USD").build();
      TransferResponse paid = wallet.transfer(payment);
      // A retry (say, after a timeout) reuses the id and gets the original outcome back.
      TransferResponse again = wallet.transfer(payment);
      if (!again.getTransactionId().equals(paid.getTransactionId())
          || !paid.getTransactionId().equals(payment.transactionId())) {
        throw new AssertionError("the retry answered another transaction id");
      }

      while (!"69.75".equals(latest.get(alice)) || !"30.25".equals(latest.get(bob))) {
        take(updates, deadline, prefix, watched, latest);
      }
      watch.close();

      // Read-your-writes: the token names the payment's log positions.
      Map<String, String> projected = new LinkedHashMap<>();
      Map<String, String> authoritative = new LinkedHashMap<>();
      for (String[] pair : new String[][] {{"alice", alice}, {"bob", bob}}) {
        projected.put(pair[0],
            query.getBalance(pair[1], paid.getConsistencyToken()).getBalance().getBalance());
        authoritative.put(pair[0], wallet.getAccount(pair[1]).getAccount().getBalance());
      }
      boolean sameOutcome = again.getConsistencyToken().equals(paid.getConsistencyToken());
      System.out.println("{\"authoritative\": " + json(authoritative)
          + ", \"projected\": " + json(projected)
          + ", \"watched\": " + json(watched)
          + ", \"retry_same_outcome\": " + sameOutcome + "}");
    }
  }

  /** Takes one update off the watch's queue (bounded by {@code deadline}) and records it. */
  static void take(BlockingQueue<Object> updates, long deadline, String prefix,
      List<String> watched, Map<String, String> latest) throws InterruptedException {
    long wait = Math.max(deadline - System.nanoTime(), TimeUnit.MILLISECONDS.toNanos(10));
    Object item = updates.poll(wait, TimeUnit.NANOSECONDS);
    if (item == null) {
      throw new AssertionError("no balance update within " + WATCH_WAIT_MILLIS + " ms; saw " + watched);
    }
    if (item instanceof WalletException) {
      throw (WalletException) item;
    }
    BalanceUpdate update = (BalanceUpdate) item;
    Balance balance = update.getBalance();
    latest.put(balance.getAccountId(), balance.getBalance());
    String kind = update.getSnapshot() ? "snapshot" : "change " + update.getDelta();
    String name = balance.getAccountId().substring(prefix.length());
    watched.add(name + " #" + Long.toUnsignedString(balance.getSequence()) + " " + kind + " -> "
        + balance.getBalance());
    System.out.println("watch: " + watched.get(watched.size() - 1));
  }

  static String json(String s) {
    StringBuilder out = new StringBuilder("\"");
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      switch (c) {
        case '"': out.append("\\\""); break;
        case '\\': out.append("\\\\"); break;
        case '\n': out.append("\\n"); break;
        case '\r': out.append("\\r"); break;
        case '\t': out.append("\\t"); break;
        default:
          if (c < 0x20) {
            out.append(String.format("\\u%04x", (int) c));
          } else {
            out.append(c);
          }
      }
    }
    return out.append('"').toString();
  }

  static String json(Map<String, String> map) {
    StringBuilder out = new StringBuilder("{");
    for (Map.Entry<String, String> e : map.entrySet()) {
      out.append(out.length() > 1 ? ", " : "").append(json(e.getKey())).append(": ").append(json(e.getValue()));
    }
    return out.append('}').toString();
  }

  static String json(List<String> list) {
    StringBuilder out = new StringBuilder("[");
    for (String s : list) {
      out.append(out.length() > 1 ? ", " : "").append(json(s));
    }
    return out.append(']').toString();
  }
}
