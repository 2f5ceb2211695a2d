/**
 * A consumer of the packed SDK, as an application team would write it: installed from the
 * `npm pack` tarball into an empty project, compiled with `tsc --strict`, run against a live
 * cluster (client-sdk/test-sdks.sh). Opens two accounts, makes one transfer, retries it.
 *
 *   node index.js 127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053
 */
import { randomBytes } from "node:crypto";

import {
  Indefinite,
  Rejected,
  WalletClient,
  newTransactionId,
  type TransferParams,
  type TransferStats,
  type WalletClientOptions,
  type wallet,
} from "@wallet-ledger/client";
// The browser entry point (package.json exports "./web") resolves and type-checks too.
import { WebQueryClient } from "@wallet-ledger/client/web";

async function main(endpoints: string[]): Promise<void> {
  const web = new WebQueryClient("http://127.0.0.1:1", { fetch: (() => Promise.reject(new Error("unused"))) as typeof fetch });
  web.close();
  const options: WalletClientOptions = { totalDeadlineMs: 10_000, pipelineTransfers: true };
  const client = new WalletClient(endpoints, options);
  const prefix = `consumer-${randomBytes(4).toString("hex")}-`;
  try {
    const issuer: wallet.Account = await client.openAccount(`${prefix}issuer`, "USD", true);
    await client.openAccount(`${prefix}alice`, "USD");
    const transfer: TransferParams = {
      transactionId: newTransactionId(),
      fromAccount: issuer.accountId,
      toAccount: `${prefix}alice`,
      amount: "12.34",
      currency: "USD",
    };
    const done: wallet.TransferResponse = await client.transfer(transfer);
    const again = await client.transfer(transfer); // same id: the same outcome, paid once
    const balance = (await client.getAccount(`${prefix}alice`)).account?.balance;
    const stats: TransferStats = client.stats();
    if (done.status !== "success" || again.consistencyToken !== done.consistencyToken || balance !== "12.34") {
      throw new Error(`unexpected: ${JSON.stringify({ done, again, balance })}`);
    }
    console.log(JSON.stringify({ status: done.status, balance, transfers: stats.transfers }));
  } catch (error) {
    if (error instanceof Rejected || error instanceof Indefinite) console.error(error.reason, error.definite);
    throw error;
  } finally {
    client.close();
  }
}

main((process.argv[2] ?? "127.0.0.1:50051").split(",")).catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
