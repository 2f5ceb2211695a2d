package io.walletledger.checks;

import io.walletledger.client.BalanceWatch;
import io.walletledger.client.QueryClient;
import io.walletledger.client.WalletException;
import io.walletledger.v1.BalanceUpdate;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

/**
 * The watch that survives a read node's kill -9 (client-sdk/test-sdks.sh, {@code test.sh
 * watch}): watches one account's balance, prints {@code ready} once the snapshot arrived, then
 * the sequence of each update, and exits 0 once it has seen {@code --updates} updates after
 * the snapshot whose sequences follow it strictly consecutively (no gap, no repeat); 1
 * otherwise or after {@code --deadline} seconds. The watch resumes by itself while the harness
 * kills and restarts the read node.
 *
 * <pre>WatchCheck --read R1[,R2] --account ID [--updates 6] [--deadline 120]</pre>
 */
public final class WatchCheck {
  private WatchCheck() {}

  public static void main(String[] args) {
    String read = null;
    String account = null;
    int updates = 6;
    long deadlineSeconds = 120;
    for (int i = 0; i + 1 < args.length; i += 2) {
      switch (args[i]) {
        case "--read" -> read = args[i + 1];
        case "--account" -> account = args[i + 1];
        case "--updates" -> updates = Integer.parseInt(args[i + 1]);
        case "--deadline" -> deadlineSeconds = Long.parseLong(args[i + 1]);
        default -> {
          System.err.println("unknown argument " + args[i]);
          System.exit(2);
        }
      }
    }
    if (read == null || account == null) {
      System.err.println("usage: WatchCheck --read R --account ID [--updates N] [--deadline S]");
      System.exit(2);
    }
    System.exit(run(Arrays.asList(read.split(",")), account, updates, deadlineSeconds));
  }

  static int run(List<String> endpoints, String account, int updates, long deadlineSeconds) {
    ScheduledExecutorService timer = Executors.newSingleThreadScheduledExecutor(r -> {
      Thread thread = new Thread(r, "watch-check-deadline");
      thread.setDaemon(true);
      return thread;
    });
    try (QueryClient query = QueryClient.builder().endpoints(endpoints).build();
        BalanceWatch watch = query.watchBalances(List.of(account))) {
      timer.schedule(watch::close, deadlineSeconds, TimeUnit.SECONDS);
      Long last = null;
      int seen = 0;
      while (watch.hasNext()) {
        BalanceUpdate update = watch.next();
        long sequence = update.getBalance().getSequence();
        if (last == null) {
          if (!update.getSnapshot()) {
            System.err.println("first update #" + sequence + " is not a snapshot");
            return 1;
          }
          System.out.println("ready");
        } else {
          System.out.println(sequence);
          if (sequence != last + 1) {
            System.err.println("sequence " + sequence + " after " + last + ": a gap or a repeat");
            return 1;
          }
          seen++;
          if (seen == updates) {
            System.err.println("watch: " + seen + " updates after the snapshot, consecutive, "
                + watch.resumes() + " resumes");
            return 0;
          }
        }
        System.out.flush();
        last = sequence;
      }
      System.err.println("watch ended after " + seen + " of " + updates + " updates (deadline)");
      return 1;
    } catch (WalletException e) {
      System.err.println("watch failed: " + e);
      return 1;
    } finally {
      timer.shutdownNow();
    }
  }
}
