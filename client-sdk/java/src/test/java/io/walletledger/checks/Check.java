package io.walletledger.checks;

import io.grpc.Status;
import io.walletledger.client.Reasons;
import io.walletledger.client.RejectedException;
import io.walletledger.client.WalletException;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;
import java.util.Objects;

/** Assertions and argument parsing shared by the live checks (no assert keyword: always on). */
final class Check {
  private Check() {}

  /** Something that fails. */
  interface Call {
    Object run() throws Exception;
  }

  static void require(boolean condition, String message) {
    if (!condition) {
      throw new AssertionError(message);
    }
  }

  static void equal(Object expected, Object actual, String what) {
    if (!Objects.equals(expected, actual)) {
      throw new AssertionError(what + ": expected " + expected + ", got " + actual);
    }
  }

  /** {@code call} fails with {@code kind}, {@code code} and {@code reason} (any if null). */
  static <E extends WalletException> E expect(Call call, Class<E> kind, Status.Code code, String reason) {
    try {
      Object result = call.run();
      throw new AssertionError("expected " + code + " " + reason + ", the call succeeded: " + result);
    } catch (WalletException e) {
      require(kind.isInstance(e), "expected " + kind.getSimpleName() + ", got " + e);
      require(e.code() == code && (reason == null || reason.equals(e.reason())),
          "expected " + code + " " + reason + ", got " + e.code() + " " + e.reason() + ": " + e.statusMessage());
      return kind.cast(e);
    } catch (RuntimeException e) {
      throw e;
    } catch (Exception e) {
      throw new AssertionError("unexpected " + e, e);
    }
  }

  /**
   * {@code call} is rejected with {@code code} and {@code reason}, naming {@code field} (null:
   * none), in the {@code wallet.ledger} domain.
   */
  static RejectedException expectRejected(Call call, Status.Code code, String reason, String field) {
    RejectedException e = expect(call, RejectedException.class, code, reason);
    equal(field, e.field().orElse(null), code + " " + reason + " field");
    equal(Reasons.DOMAIN, e.details().domain(), reason + " domain");
    require(e.isDefinite(), reason + " is definite");
    return e;
  }

  static Map<String, String> args(String[] argv, String... required) {
    Map<String, String> args = new HashMap<>();
    for (int i = 0; i + 1 < argv.length; i += 2) {
      args.put(argv[i], argv[i + 1]);
    }
    for (String r : required) {
      require(args.containsKey(r), "missing " + r + " (given " + Arrays.toString(argv) + ")");
    }
    return args;
  }
}
