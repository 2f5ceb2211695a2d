/**
 * The watch that survives a read node's kill -9 (client-sdk/test-sdks.sh): watches one
 * account's balance, prints `ready` once the snapshot arrived, then the sequence of each
 * update, and exits 0 once it has seen `--updates` updates after the snapshot whose sequences
 * follow it strictly consecutively (no gap, no repeat); 1 otherwise or after `--deadline`
 * seconds. The watch resumes by itself while the harness kills and restarts the read node.
 *
 *   node dist/test/watch-check.js --read 127.0.0.1:50061 --account acct --updates 6
 */
import { parseArgs } from "node:util";

import { QueryClient } from "../src";

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      read: { type: "string" },
      account: { type: "string" },
      updates: { type: "string", default: "6" },
      deadline: { type: "string", default: "120" },
    },
  });
  if (!values.read || !values.account) {
    console.error("usage: watch-check --read R --account ID [--updates N] [--deadline S]");
    return 2;
  }
  const wanted = Number(values.updates);
  const deadlineMs = Number(values.deadline) * 1000;
  const query = new QueryClient(values.read.split(","));
  const watch = query.watchBalances([values.account], {}, { timeoutMs: deadlineMs });
  const timer = setTimeout(() => watch.cancel(), deadlineMs);
  let last: bigint | undefined;
  let seen = 0;
  try {
    for await (const update of watch) {
      const sequence = BigInt(update.balance!.sequence);
      if (last === undefined) {
        if (!update.snapshot) {
          console.error(`first update #${sequence} is not a snapshot`);
          return 1;
        }
        console.log("ready");
      } else {
        console.log(sequence.toString());
        if (sequence !== last + 1n) {
          console.error(`sequence ${sequence} after ${last}: a gap or a repeat`);
          return 1;
        }
        seen += 1;
        if (seen === wanted) {
          console.error(`watch: ${seen} updates after the snapshot, consecutive, ${watch.resumes} resumes`);
          return 0;
        }
      }
      last = sequence;
    }
    console.error(`watch ended after ${seen} of ${wanted} updates (deadline)`);
    return 1;
  } catch (error) {
    console.error(`watch failed: ${String(error)}`);
    return 1;
  } finally {
    clearTimeout(timer);
    watch.cancel();
    query.close();
  }
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
