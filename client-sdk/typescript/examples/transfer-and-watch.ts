/**
 * Opens three accounts, funds one, pays another, retries that payment with the same
 * transaction_id (it is not paid twice), and watches both balances change on a read node.
 *
 *   npm run build && node dist/examples/transfer-and-watch.js \
 *     --write 127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053 --read 127.0.0.1:50061
 *
 * The last line printed is a JSON summary (the SDK tests check it).
 */
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";

import { QueryClient, Rejected, WalletClient, newTransactionId } from "../src";
import type { BalanceUpdate } from "../src/gen/wallet/v1/query";

const WATCH_WAIT_MS = 20_000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A read node learns an account once it has folded its opening: wait (bounded). */
async function waitKnown(query: QueryClient, accountId: string): Promise<void> {
  const deadline = Date.now() + WATCH_WAIT_MS;
  for (;;) {
    try {
      await query.getBalance(accountId);
      return;
    } catch (error) {
      if (!(error instanceof Rejected) || error.reason !== "ACCOUNT_NOT_FOUND" || Date.now() > deadline) throw error;
      await sleep(50);
    }
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      write: { type: "string", default: "127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053" },
      read: { type: "string", default: "127.0.0.1:50061" },
      prefix: { type: "string", default: `ts-${randomBytes(4).toString("hex")}-` },
    },
  });
  const prefix = values.prefix!;
  const [issuer, alice, bob] = ["issuer", "alice", "bob"].map((name) => prefix + name);
  const wallet = new WalletClient(values.write!.split(","));
  const query = new QueryClient([values.read!]);
  try {
    await wallet.openAccount(issuer, "USD", true);
    await wallet.openAccount(alice, "USD");
    await wallet.openAccount(bob, "USD");
    for (const account of [alice, bob]) await waitKnown(query, account);

    // Watch first: the current balances arrive, then every change as it is applied.
    const watched: string[] = [];
    const latest = new Map<string, string>();
    const watch = query.watchBalances([alice, bob]);
    const seen = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`watch incomplete: ${watched.join("; ")}`)), WATCH_WAIT_MS);
      watch.on("data", (update: BalanceUpdate) => {
        const balance = update.balance!;
        latest.set(balance.accountId, balance.balance);
        const kind = update.snapshot ? "snapshot" : `change ${update.delta}`;
        watched.push(`${balance.accountId.slice(prefix.length)} #${balance.sequence} ${kind} -> ${balance.balance}`);
        console.log(`watch: ${watched[watched.length - 1]}`);
        if (latest.get(alice) === "69.75" && latest.get(bob) === "30.25") {
          clearTimeout(timer);
          resolve();
        }
      });
      // Typed errors only: disconnects, restarts and WATCH_LAGGED are resumed from inside.
      watch.on("error", (error) => {
        clearTimeout(timer);
        reject(error);
      });
    });

    await wallet.transfer({ transactionId: newTransactionId(), fromAccount: issuer, toAccount: alice, amount: "100.00", currency: "USD" });
    const paymentId = newTransactionId();
    const payment = { transactionId: paymentId, fromAccount: alice, toAccount: bob, amount: "30.25", currency: "USD" };
    const paid = await wallet.transfer(payment);
    // A retry (say, after a timeout) reuses the id and gets the original outcome back.
    const again = await wallet.transfer(payment);
    if (again.transactionId !== paymentId || paid.transactionId !== paymentId) throw new Error("ids differ");

    await seen;
    watch.cancel(); // quietly: "end", no error

    // Read-your-writes: the token names the payment's log positions.
    const projected: Record<string, string> = {};
    const authoritative: Record<string, string> = {};
    for (const [name, account] of [["alice", alice], ["bob", bob]]) {
      projected[name] = (await query.getBalance(account, paid.consistencyToken)).balance!.balance;
      authoritative[name] = (await wallet.getAccount(account)).account!.balance;
    }
    console.log(
      JSON.stringify({
        authoritative,
        projected,
        watched,
        retry_same_outcome: again.consistencyToken === paid.consistencyToken,
      }),
    );
  } finally {
    wallet.close();
    query.close();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
