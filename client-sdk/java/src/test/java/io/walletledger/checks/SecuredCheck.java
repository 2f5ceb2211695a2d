package io.walletledger.checks;

import static io.walletledger.checks.Check.equal;
import static io.walletledger.checks.Check.expect;
import static io.walletledger.checks.Check.require;

import io.grpc.Status;
import io.walletledger.client.Reasons;
import io.walletledger.client.RejectedException;
import io.walletledger.client.RetryPolicy;
import io.walletledger.client.TlsConfig;
import io.walletledger.client.Transfer;
import io.walletledger.client.UnavailableException;
import io.walletledger.client.WalletClient;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

/**
 * Checks against a secured write node (client-sdk/python/tests/secured_check.py in Java): TLS
 * with the cluster's CA, a client certificate (the node requires one: mTLS), a server name
 * override (the certificate names only {@code --server-name}; the node is dialled by IP
 * address), and bearer tokens: with the right token transfers work; without one, or with a wrong
 * one, calls are UNAUTHENTICATED; the read-only token reads but cannot transfer
 * (PERMISSION_DENIED); without the client certificate or the server name override no connection
 * is made.
 *
 * <pre>WALLET_TOKEN=... WALLET_READ_TOKEN=... client-sdk/java/test.sh secured --write 127.0.0.1:PORT --certs DIR --server-name NAME</pre>
 *
 * DIR holds ca.crt, client.crt and client.key ({@code walletctl dev-certs --out DIR --host NAME}:
 * the key is PKCS#8 PEM already; test.sh converts another format with openssl first).
 */
public final class SecuredCheck {
  static final RetryPolicy QUICK = RetryPolicy.builder().callTimeout(Duration.ofSeconds(2))
      .totalDeadline(Duration.ofSeconds(3)).attemptsMax(3).backoffBase(Duration.ofMillis(10))
      .backoffMax(Duration.ofMillis(100)).build();

  public static void main(String[] argv) throws Exception {
    Map<String, String> args = Check.args(argv, "--write", "--certs", "--server-name");
    String write = args.get("--write");
    Path certs = Path.of(args.get("--certs"));
    String serverName = args.get("--server-name");
    String token = System.getenv("WALLET_TOKEN");
    String readToken = System.getenv("WALLET_READ_TOKEN");
    require(token != null && readToken != null, "WALLET_TOKEN and WALLET_READ_TOKEN must be set");
    TlsConfig tls = TlsConfig.builder()
        .caFile(certs.resolve("ca.crt"))
        .clientCertificate(certs.resolve("client.crt"), certs.resolve("client.key"))
        .serverName(serverName)
        .build();
    String prefix = "javasecure-" + UUID.randomUUID().toString().substring(0, 8) + "-";
    String issuer = prefix + "issuer";
    String alice = prefix + "alice";
    int checks = 0;

    try (WalletClient wallet = client(write, tls, token)) {
      long readyBy = System.nanoTime() + TimeUnit.SECONDS.toNanos(60); // the node may still be electing itself
      while (true) {
        try {
          wallet.openAccount(issuer, "USD", true);
          break;
        } catch (UnavailableException e) {
          if (System.nanoTime() > readyBy) {
            throw e;
          }
          Thread.sleep(200);
        }
      }
      wallet.openAccount(alice, "USD", false);
      ExecutorService pool = Executors.newFixedThreadPool(8);
      try {
        List<Future<String>> calls = new ArrayList<>();
        for (int i = 0; i < 20; i++) {
          calls.add(pool.submit(() -> wallet.transfer(pay(issuer, alice)).getStatus()));
        }
        for (Future<String> call : calls) {
          equal("success", call.get(30, TimeUnit.SECONDS), "a transfer over TLS with the token");
        }
      } finally {
        pool.shutdownNow();
      }
      equal("20.00", wallet.getAccount(alice).getAccount().getBalance(), "alice after 20 transfers");
      Transfer once = pay(issuer, alice);
      equal(wallet.transfer(once).getConsistencyToken(), wallet.transfer(once).getConsistencyToken(),
          "a retry over TLS");
      equal("21.00", wallet.getAccount(alice).getAccount().getBalance(), "alice after a retried transfer");
      checks += 2;
    }

    try (WalletClient wallet = client(write, tls, null)) {
      expect(() -> wallet.transfer(pay(issuer, alice)), RejectedException.class, Status.Code.UNAUTHENTICATED, Reasons.MISSING_TOKEN);
      expect(() -> wallet.getAccount(alice), RejectedException.class, Status.Code.UNAUTHENTICATED, Reasons.MISSING_TOKEN);
    }
    try (WalletClient wallet = client(write, tls, "wrong-" + token)) {
      expect(() -> wallet.transfer(pay(issuer, alice)), RejectedException.class, Status.Code.UNAUTHENTICATED, Reasons.INVALID_TOKEN);
    }
    try (WalletClient wallet = client(write, tls, readToken)) {
      equal("21.00", wallet.getAccount(alice).getAccount().getBalance(), "alice read with the read-only token");
      expect(() -> wallet.transfer(pay(issuer, alice)), RejectedException.class, Status.Code.PERMISSION_DENIED, Reasons.SCOPE_DENIED);
    }
    checks += 4;

    TlsConfig noClientCert = TlsConfig.builder().caFile(certs.resolve("ca.crt")).serverName(serverName).build();
    TlsConfig noServerName = TlsConfig.builder().caFile(certs.resolve("ca.crt"))
        .clientCertificate(certs.resolve("client.crt"), certs.resolve("client.key")).build();
    for (TlsConfig settings : new TlsConfig[] {noClientCert, noServerName}) {
      try (WalletClient wallet = client(write, settings, token)) {
        expect(() -> wallet.getAccount(alice), UnavailableException.class, Status.Code.UNAVAILABLE, null);
      }
    }
    try {
      WalletClient.builder().endpoints("http://" + write).tls(tls).build().close();
      throw new AssertionError("http:// with TLS settings was accepted");
    } catch (IllegalArgumentException expected) {
      // TLS is never silently skipped
    }
    checks += 3;
    System.out.println("java secured checks: " + checks + " passed");
  }

  static WalletClient client(String write, TlsConfig tls, String token) {
    return WalletClient.builder().endpoints(write).tls(tls).token(token).retryPolicy(QUICK).build();
  }

  static Transfer pay(String from, String to) {
    return Transfer.builder().from(from).to(to).amount("1.00").currency("USD").build();
  }
}
