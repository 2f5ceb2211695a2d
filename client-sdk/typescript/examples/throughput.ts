/**
 * Closed-loop transfer throughput of the TypeScript SDK, with pipelining on (the default:
 * concurrent calls share one SubmitTransfers stream per node) and off (every call a unary
 * Transfer). N loops each call `transfer()` again as soon as the previous one answers, for a
 * fixed time, between a few pre-funded accounts (random pairs, so many transfers cross
 * partitions); each run uses a new client, which learns the leaders first.
 *
 * Against a dev cluster (write nodes on 127.0.0.1:50051-50053, read node on 50061; check
 * first that nothing else listens there, e.g. `ss -ltn | grep 5005`):
 *
 *   data=$(mktemp -d)
 *   /var/tmp/wallet-ledger-target/debug/walletctl dev --data-dir "$data" &    # or target/debug/walletctl
 *   dev=$!
 *   cd client-sdk/typescript && npm run build
 *   node dist/examples/throughput.js --write 127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053 \
 *     --concurrency 1,32 --modes pipelined,unary --seconds 10 --runs 2
 *   kill $dev; wait $dev; rm -rf "$data"                                     # stop the cluster
 *
 * Prints one JSON line per run (mode, concurrency, transfers/s, latency percentiles, errors,
 * the client's stats()) and a summary table.
 */
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";

import { WalletClient, newTransactionId, type TransferStats } from "../src";

interface Run {
  mode: "pipelined" | "unary";
  concurrency: number;
  run: number;
  transfersPerSecond: number;
  transfers: number;
  errors: Record<string, number>;
  p50Ms: number;
  p99Ms: number;
  stats: TransferStats;
}

const percentile = (sorted: number[], p: number) =>
  sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];

async function measure(
  writes: string[],
  accounts: string[],
  mode: Run["mode"],
  concurrency: number,
  seconds: number,
  run: number,
): Promise<Run> {
  const wallet = new WalletClient(writes, { pipelineTransfers: mode === "pipelined" });
  try {
    // Opening an open account again changes nothing, and teaches the client its leader.
    for (const account of accounts) await wallet.openAccount(account, "USD");
    const latencies: number[] = [];
    const errors: Record<string, number> = {};
    let done = 0;
    const started = Date.now();
    const until = started + seconds * 1000;
    const loop = async () => {
      while (Date.now() < until) {
        const from = accounts[Math.floor(Math.random() * accounts.length)];
        let to = from;
        while (to === from) to = accounts[Math.floor(Math.random() * accounts.length)];
        const t0 = performance.now();
        try {
          await wallet.transfer({ transactionId: newTransactionId(), fromAccount: from, toAccount: to, amount: "0.01", currency: "USD" });
          latencies.push(performance.now() - t0);
          done += 1;
        } catch (error) {
          const reason = (error as { reason?: string }).reason ?? String(error);
          errors[reason] = (errors[reason] ?? 0) + 1;
        }
      }
    };
    await Promise.all(Array.from({ length: concurrency }, loop));
    const elapsed = (Date.now() - started) / 1000;
    latencies.sort((a, b) => a - b);
    return {
      mode,
      concurrency,
      run,
      transfersPerSecond: Math.round(done / elapsed),
      transfers: done,
      errors,
      p50Ms: Number(percentile(latencies, 50).toFixed(2)),
      p99Ms: Number(percentile(latencies, 99).toFixed(2)),
      stats: wallet.stats(),
    };
  } finally {
    wallet.close();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      write: { type: "string", default: "127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053" },
      concurrency: { type: "string", default: "1,32" },
      modes: { type: "string", default: "pipelined,unary" },
      seconds: { type: "string", default: "10" },
      runs: { type: "string", default: "2" },
      accounts: { type: "string", default: "8" },
    },
  });
  const writes = values.write.split(",");
  const levels = values.concurrency.split(",").map(Number);
  const modes = values.modes.split(",") as Run["mode"][];
  for (const mode of modes) if (mode !== "pipelined" && mode !== "unary") throw new RangeError(`mode ${mode}: pipelined or unary`);
  const [seconds, runs] = [Number(values.seconds), Number(values.runs)];

  // A few accounts, funded far beyond what the runs move (0.01 each).
  const prefix = `throughput-${randomBytes(4).toString("hex")}-`;
  const accounts = Array.from({ length: Number(values.accounts) }, (_, i) => `${prefix}${i}`);
  const setup = new WalletClient(writes, { totalDeadlineMs: 60_000, attemptsMax: 100 });
  try {
    await setup.openAccount(`${prefix}issuer`, "USD", true);
    for (const account of accounts) {
      await setup.openAccount(account, "USD");
      await setup.transfer({
        transactionId: newTransactionId(),
        fromAccount: `${prefix}issuer`,
        toAccount: account,
        amount: "1000000.00",
        currency: "USD",
      });
    }
  } finally {
    setup.close();
  }

  const results: Run[] = [];
  for (const concurrency of levels) {
    for (let run = 1; run <= runs; run++) {
      // Alternate the modes within a round, so a noisy machine hurts both alike.
      for (const mode of modes) {
        const result = await measure(writes, accounts, mode, concurrency, seconds, run);
        results.push(result);
        console.log(JSON.stringify(result));
      }
    }
  }
  console.log("\nmode       N    run  transfers/s  p50 ms  p99 ms  errors");
  for (const r of results) {
    const errors = Object.values(r.errors).reduce((a, b) => a + b, 0);
    console.log(
      `${r.mode.padEnd(9)} ${String(r.concurrency).padStart(3)}  ${String(r.run).padStart(3)}  ${String(r.transfersPerSecond).padStart(11)}  ` +
        `${r.p50Ms.toFixed(2).padStart(6)}  ${r.p99Ms.toFixed(2).padStart(6)}  ${errors}`,
    );
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
