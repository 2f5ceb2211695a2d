/**
 * Checks against a live cluster (run by client-sdk/test-sdks.sh): bad input gets the
 * documented code, reason and field violation, decoded from the grpc-status-details-bin
 * trailer, and changes nothing; the retry loop gets past a dead node and gives up, bounded,
 * when all are dead; 200 concurrent transfers, pipelined transparently (at most one
 * SubmitTransfers stream per node), each get their own outcome and move exactly the right
 * money, once; the account lifecycle (freeze, unfreeze, overdraft limit, close) with every
 * refusal it documents; a transfer's reference and metadata stored and read back (write node,
 * read node), compared on a retry, and refused over their limits; an account's reference and
 * metadata likewise (set at opening, compared when it is opened again, refused over their
 * limits with no account opened); a multi-leg transfer (transferLegs) moves every leg or none.
 *
 *   node dist/test/live-check.js --write HOST:PORT,... --read HOST:PORT
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";

import { ChannelCredentials, status as Code, type ServiceError } from "@grpc/grpc-js";

import {
  ERROR_DOMAIN,
  Indefinite,
  QueryClient,
  Rejected,
  WalletClient,
  WalletError,
  classify,
  codeName,
  newTransactionId,
  type TransferParams,
  type TransferStats,
} from "../src";
import { BadRequest, ErrorInfo } from "../src/gen/google/rpc/error_details";
import { Status } from "../src/gen/google/rpc/status";
import { type BalanceUpdate, type HistoryEntry, type TransferUpdate } from "../src/gen/wallet/v1/query";
import { type Account, AccountStatus, TransferStatus, WalletServiceClient, type TransferResponse } from "../src/gen/wallet/v1/wallet";

let checks = 0;

async function expectRejected(call: () => Promise<unknown>, code: Code, reason: string, field?: string): Promise<void> {
  try {
    await call();
  } catch (error) {
    assert.ok(error instanceof Rejected, `expected Rejected, got ${error}`);
    assert.deepEqual(
      [codeName(error.code), error.reason, error.field],
      [codeName(code), reason, field],
      `${error.message}`,
    );
    assert.equal(error.details.domain, ERROR_DOMAIN);
    assert.equal(error.definite, true);
    checks += 1;
    return;
  }
  assert.fail(`expected ${codeName(code)} ${reason}, the call succeeded`);
}

/** Straight from the generated client and the trailer, without the SDK's helpers. */
async function rawStatusDecodes(write: string, issuer: string, alice: string): Promise<void> {
  const client = new WalletServiceClient(write, ChannelCredentials.createInsecure());
  const request = { transactionId: newTransactionId(), fromAccount: issuer, toAccount: alice, amount: "abc", currency: "USD", reference: "", metadata: {} };
  const error = await new Promise<ServiceError | null>((resolve) => client.transfer(request, (e) => resolve(e)));
  client.close();
  assert.ok(error !== null, "amount 'abc' was accepted");
  const [raw] = error.metadata.get("grpc-status-details-bin");
  assert.ok(Buffer.isBuffer(raw), "no grpc-status-details-bin trailer");
  const status = Status.decode(raw);
  assert.equal(status.code, Code.INVALID_ARGUMENT);
  const byType = new Map(status.details.map((d) => [d.typeUrl, d.value]));
  const info = ErrorInfo.decode(byType.get("type.googleapis.com/google.rpc.ErrorInfo")!);
  assert.deepEqual([info.reason, info.domain], ["INVALID_AMOUNT", ERROR_DOMAIN]);
  const badRequest = BadRequest.decode(byType.get("type.googleapis.com/google.rpc.BadRequest")!);
  assert.deepEqual(badRequest.fieldViolations.map((v) => v.field), ["amount"]);
  checks += 1;
}

/**
 * The transfers went down at most `streamsMax` streams, none of which failed: every one was
 * pipelined, except (sent unary at once) the second of a conflicting pair under one id, which
 * cannot share a stream with the first while it waits (results name only the id).
 */
function assertPipelined(stats: TransferStats, pipelined: number, unaryAtOnce: number, streamsMax: number): void {
  const context = JSON.stringify(stats);
  assert.ok(stats.streamsOpened >= 1 && stats.streamsOpened <= streamsMax, `streams: ${context}`);
  assert.equal(stats.streamsFailed, 0, context);
  assert.equal(pipelined + unaryAtOnce, 200, context);
  assert.ok(unaryAtOnce <= 10, `more than the 10 conflicting requests went unary at once: ${context}`);
}

/** Cents of a decimal amount with two fraction digits ("12.34" -> 1234). */
const cents = (amount: string) => Math.round(Number(amount) * 100);
const decimal = (c: number) => `${c < 0 ? "-" : ""}${Math.floor(Math.abs(c) / 100)}.${String(Math.abs(c) % 100).padStart(2, "0")}`;

type Kind = "valid" | "duplicate" | "conflict" | "invalid" | "insufficient";
interface Op {
  kind: Kind;
  request: TransferParams;
}
type Outcome = { ok: TransferResponse } | { error: unknown };

/** An outcome with its `replayed` flag cleared: a retry gets the same answer, marked replayed. */
function withoutReplayed<T extends object>(outcome: T): T {
  return "ok" in outcome ? ({ ...outcome, ok: { ...(outcome.ok as object), replayed: false } } as T) : outcome;
}

/**
 * 200 concurrent transfer() calls on one client (Promise.all), pipelined transparently: valid
 * ones, invalid amounts, insufficient funds, exact duplicates of an id and conflicting reuses
 * of one. Each call must get exactly its own outcome, the balances must be exact, the
 * transfers must have gone down at most one stream per node (those no stream could take, or
 * that it left without a definite outcome, unary), and sending all 200 again must move no money.
 */
async function concurrentTransfers(writes: string[], base: string): Promise<number> {
  const prefix = `${base}burst-`;
  let wallet = new WalletClient(writes);
  const payers = Array.from({ length: 10 }, (_, i) => `${prefix}payer${i}`);
  const payees = Array.from({ length: 10 }, (_, i) => `${prefix}payee${i}`);
  const poor = Array.from({ length: 5 }, (_, i) => `${prefix}poor${i}`);
  const issuer = `${prefix}issuer`;
  const usd = (fromAccount: string, toAccount: string, amount: string, transactionId = newTransactionId()): TransferParams => ({
    transactionId,
    fromAccount,
    toAccount,
    amount,
    currency: "USD",
  });
  try {
    await wallet.openAccount(issuer, "USD", true);
    await Promise.all([...payers, ...payees, ...poor].map((a) => wallet.openAccount(a, "USD")));
    await Promise.all([
      ...payers.map((a) => wallet.transfer(usd(issuer, a, "100.00"))),
      ...poor.map((a) => wallet.transfer(usd(issuer, a, "0.50"))),
    ]);
    const start = wallet.stats();

    const ops: Op[] = [];
    for (let i = 0; i < 120; i++) {
      ops.push({ kind: "valid", request: usd(payers[i % 10], payees[(i * 7 + 3) % 10], `${(i % 5) + 1}.00`) });
    }
    for (let i = 0; i < 20; i++) ops.push({ kind: "duplicate", request: { ...ops[i].request } });
    for (let i = 20; i < 30; i++) {
      ops[i].kind = "conflict";
      ops.push({ kind: "conflict", request: { ...ops[i].request, amount: `${(i % 5) + 1}.01` } });
    }
    const invalidAmounts = ["abc", "-1", "0", "1.005", "1e3", " 1.00", "NaN", "", "1,00", "0x10"];
    for (let i = 0; i < 30; i++) {
      ops.push({ kind: "invalid", request: usd(payers[i % 10], payees[i % 10], invalidAmounts[i % invalidAmounts.length]) });
    }
    for (let i = 0; i < 20; i++) ops.push({ kind: "insufficient", request: usd(poor[i % 5], payees[i % 10], "5.00") });
    assert.equal(ops.length, 200);
    for (let i = ops.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [ops[i], ops[j]] = [ops[j], ops[i]];
    }
    const run = (): Promise<Outcome[]> =>
      Promise.all(ops.map((op) => wallet.transfer(op.request).then((ok) => ({ ok }), (error: unknown) => ({ error }))));

    const first = await run();
    const balances = new Map<string, number>([...payers.map((a) => [a, 10_000] as const), ...poor.map((a) => [a, 50] as const)]);
    const move = (r: TransferParams) => {
      balances.set(r.fromAccount, (balances.get(r.fromAccount) ?? 0) - cents(r.amount));
      balances.set(r.toAccount, (balances.get(r.toAccount) ?? 0) + cents(r.amount));
    };
    // The same code, reason and field whether the call got its answer down the stream or unary.
    const rejectedWith = (outcome: Outcome, code: Code, reason: string, field?: string) => {
      assert.ok("error" in outcome && outcome.error instanceof Rejected, `expected ${reason}, got ${JSON.stringify(outcome)}`);
      assert.deepEqual([outcome.error.code, outcome.error.reason, outcome.error.field], [code, reason, field]);
    };
    const winners = new Map<string, Op>(); // transaction id -> the request that moved money
    ops.forEach((op, n) => {
      const outcome = first[n];
      switch (op.kind) {
        case "valid":
        case "duplicate":
          assert.ok("ok" in outcome, `${op.kind} ${JSON.stringify(op.request)}: ${"error" in outcome ? outcome.error : ""}`);
          assert.equal(outcome.ok.transactionId, op.request.transactionId);
          assert.equal(outcome.ok.status, "success");
          if (!winners.has(op.request.transactionId)) {
            winners.set(op.request.transactionId, op);
            move(op.request);
          }
          break;
        case "conflict":
          if ("ok" in outcome) {
            assert.ok(!winners.has(op.request.transactionId), `both requests under ${op.request.transactionId} succeeded`);
            winners.set(op.request.transactionId, op);
            move(op.request);
          } else {
            rejectedWith(outcome, Code.ALREADY_EXISTS, "TRANSACTION_ID_REUSED");
          }
          break;
        case "invalid":
          rejectedWith(outcome, Code.INVALID_ARGUMENT, "INVALID_AMOUNT", "amount");
          break;
        case "insufficient":
          rejectedWith(outcome, Code.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS");
          break;
      }
    });
    // Exact duplicates got the same answer; of each conflicting pair exactly one won.
    ops.forEach((op, n) => {
      if (op.kind === "duplicate") {
        const original = ops.findIndex((o) => o.kind === "valid" && o.request.transactionId === op.request.transactionId);
        // The same answer; the copy decided in a later entry says it was replayed.
        assert.deepEqual(withoutReplayed(first[n]), withoutReplayed(first[original]));
      }
    });
    assert.equal(ops.filter((op) => op.kind === "conflict" && winners.get(op.request.transactionId) === op).length, 10);

    const stats = wallet.stats();
    const delta = (key: keyof TransferStats) => stats[key] - start[key];
    assert.equal(delta("transfers"), 200);
    assertPipelined(stats, delta("pipelinedTransfers"), delta("unaryTransfers") - delta("unaryFallbacks"), writes.length);
    console.log(
      `typescript live checks: 200 concurrent transfers, ${delta("pipelinedTransfers")} pipelined down ` +
        `${stats.streamsOpened} stream(s) (this client's life), ${delta("unaryFallbacks")} retried unary, ` +
        `${delta("unaryTransfers") - delta("unaryFallbacks")} sent unary at once`,
    );

    const checkBalances = async () => {
      for (const [account, expected] of balances) {
        assert.equal((await wallet.getAccount(account)).account!.balance, decimal(expected), account);
      }
    };
    await checkBalances();

    // Everything again, same ids, from a new client (no leader known yet, so everything goes
    // down the first node's stream and what it does not lead is retried unary): the same
    // outcome per call, and no money moves.
    wallet.close();
    wallet = new WalletClient(writes);
    const again = await run();
    const retried = wallet.stats();
    assert.equal(retried.transfers, 200);
    assertPipelined(retried, retried.pipelinedTransfers, retried.unaryTransfers - retried.unaryFallbacks, 1);
    console.log(
      `typescript live checks: the 200 again from a new client, ${retried.pipelinedTransfers} pipelined down ` +
        `${retried.streamsOpened} stream(s), ${retried.unaryFallbacks} retried unary`,
    );
    ops.forEach((op, n) => {
      const [was, is] = [first[n], again[n]];
      if ("ok" in was) {
        assert.ok("ok" in is, `retry of ${op.request.transactionId}: ${"error" in is ? is.error : ""}`);
        assert.deepEqual({ ...is.ok, replayed: false }, { ...was.ok, replayed: false });
      } else {
        assert.ok("error" in is && is.error instanceof Rejected && was.error instanceof Rejected);
        assert.deepEqual([is.error.code, is.error.reason], [was.error.code, was.error.reason]);
      }
    });
    await checkBalances();
    return 3;
  } finally {
    wallet.close();
  }
}

/**
 * `closeAccount`, called again while the node answers ACCOUNT_HAS_TRANSFERS_IN_FLIGHT (a
 * cross-partition transfer from the account answered "success" before its settle step:
 * "retry shortly", as documented).
 */
async function closeWhenSettled(wallet: WalletClient, accountId: string): Promise<Account> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      return await wallet.closeAccount(accountId);
    } catch (error) {
      if (!(error instanceof Rejected) || error.reason !== "ACCOUNT_HAS_TRANSFERS_IN_FLIGHT" || Date.now() > deadline) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Freeze, unfreeze, overdraft limit and close on a fresh account, each refusal with its
 * documented code and reason (FAILED_PRECONDITION carries no field), the status and limit
 * read back.
 */
async function accountLifecycle(writes: string[], prefix: string): Promise<void> {
  const [issuer, account, sink] = [`${prefix}life-issuer`, `${prefix}life-account`, `${prefix}life-sink`];
  const wallet = new WalletClient(writes);
  const move = (fromAccount: string, toAccount: string, amount: string) => () =>
    wallet.transfer({ transactionId: newTransactionId(), fromAccount, toAccount, amount, currency: "USD" });
  const state = async () => {
    const got = (await wallet.getAccount(account)).account!;
    return [got.status, got.balance, got.overdraftLimit];
  };
  const { ACCOUNT_STATUS_ACTIVE: ACTIVE, ACCOUNT_STATUS_FROZEN: FROZEN, ACCOUNT_STATUS_CLOSED: CLOSED } = AccountStatus;
  const precondition = Code.FAILED_PRECONDITION;
  try {
    await wallet.openAccount(issuer, "USD", true);
    const opened = await wallet.openAccount(account, "USD");
    assert.deepEqual([opened.status, opened.overdraftLimit], [ACTIVE, "0.00"]);
    await wallet.openAccount(sink, "USD");
    await move(issuer, account, "20.00")();

    const frozen = await wallet.freezeAccount(account);
    assert.deepEqual([frozen.accountId, frozen.status], [account, FROZEN]);
    assert.equal((await wallet.freezeAccount(account)).status, FROZEN); // idempotent
    await expectRejected(move(account, sink, "5.00"), precondition, "ACCOUNT_FROZEN");
    await expectRejected(move(issuer, account, "5.00"), precondition, "ACCOUNT_FROZEN");
    assert.deepEqual(await state(), [FROZEN, "20.00", "0.00"]);

    assert.equal((await wallet.unfreezeAccount(account)).status, ACTIVE);
    assert.equal((await move(account, sink, "5.00")()).status, "success");

    const limited = await wallet.setOverdraftLimit(account, "50.00", "USD");
    assert.deepEqual([limited.overdraftLimit, limited.status], ["50.00", ACTIVE]);
    assert.equal((await wallet.setOverdraftLimit(account, "50.00", "USD")).overdraftLimit, "50.00"); // idempotent
    await expectRejected(() => wallet.setOverdraftLimit(account, "50.00", "EUR"), precondition, "CURRENCY_MISMATCH");
    await expectRejected(() => wallet.setOverdraftLimit(issuer, "50.00", "USD"), precondition, "OVERDRAFT_UNLIMITED");
    await move(account, sink, "60.00")(); // 15.00 - 60.00: 45.00 below zero, within the limit
    await expectRejected(move(account, sink, "5.01"), precondition, "INSUFFICIENT_FUNDS");
    assert.deepEqual(await state(), [ACTIVE, "-45.00", "50.00"]);

    await expectRejected(() => wallet.closeAccount(account), precondition, "ACCOUNT_NOT_EMPTY");
    await move(issuer, account, "45.00")();
    const closed = await closeWhenSettled(wallet, account);
    assert.deepEqual([closed.status, closed.balance], [CLOSED, "0.00"]);
    assert.equal((await wallet.closeAccount(account)).status, CLOSED); // idempotent
    assert.equal((await state())[0], CLOSED);
    await expectRejected(move(issuer, account, "1.00"), precondition, "ACCOUNT_CLOSED");
    await expectRejected(move(account, sink, "1.00"), precondition, "ACCOUNT_CLOSED");
    await expectRejected(() => wallet.unfreezeAccount(account), precondition, "ACCOUNT_CLOSED");
    await expectRejected(() => wallet.freezeAccount(`${prefix}nobody`), Code.NOT_FOUND, "ACCOUNT_NOT_FOUND", "account_id");
    assert.equal((await wallet.getAccount(sink)).account!.balance, "65.00");
    console.log("typescript live checks: account lifecycle: freeze, unfreeze, overdraft limit and close as documented");
  } finally {
    wallet.close();
  }
}

/**
 * A transfer with a reference and metadata (unicode included) reads back the same from
 * GetTransfer (write node), WatchTransfer and ListTransfers (read node); a retry with the same
 * id and parameters answers the original outcome (replayed), with other metadata or another
 * reference it is ALREADY_EXISTS TRANSACTION_ID_REUSED; 17 metadata entries are
 * INVALID_METADATA and a 129-byte reference INVALID_REFERENCE (INVALID_ARGUMENT, naming the
 * field), down the stream and unary; a hold keeps its reference and metadata.
 */
async function transferAnnotations(writes: string[], read: string, prefix: string): Promise<void> {
  const [payer, payee] = [`${prefix}ann-payer`, `${prefix}ann-payee`];
  const reference = `order-${newTransactionId()}`;
  const metadata = { channel: "sdk-typescript", note: "ünïcode ✓" };
  const wallet = new WalletClient(writes);
  const unaryWallet = new WalletClient(writes, { pipelineTransfers: false });
  const query = new QueryClient([read]);
  const { TRANSFER_STATUS_COMPLETED: COMPLETED, TRANSFER_STATUS_IN_FLIGHT: IN_FLIGHT } = TransferStatus;
  try {
    await wallet.openAccount(payer, "USD", true);
    await wallet.openAccount(payee, "USD");
    const tx = newTransactionId();
    const transfer: TransferParams = { transactionId: tx, fromAccount: payer, toAccount: payee, amount: "3.00", currency: "USD", reference, metadata };
    const done = await wallet.transfer(transfer);
    assert.deepEqual([done.status, done.replayed], ["success", false]);
    const got = await wallet.getTransfer(tx);
    assert.deepEqual([got.reference, got.metadata], [reference, metadata]);
    // COMPLETED, or for a few milliseconds IN_FLIGHT when the accounts' partitions differ.
    assert.ok([COMPLETED, IN_FLIGHT].includes(got.status), `status ${got.status}`);
    assert.equal((await wallet.transfer({ ...transfer, metadata: { ...metadata } })).replayed, true);
    checks += 3;
    await expectRejected(() => wallet.transfer({ ...transfer, metadata: { ...metadata, note: "changed" } }), Code.ALREADY_EXISTS, "TRANSACTION_ID_REUSED");
    await expectRejected(() => unaryWallet.transfer({ ...transfer, reference: `${reference}-other` }), Code.ALREADY_EXISTS, "TRANSACTION_ID_REUSED");

    const tooMany = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, "v"]));
    for (const client of [wallet, unaryWallet]) {
      const fresh = { ...transfer, reference: "", metadata: {}, amount: "1.00" };
      await expectRejected(() => client.transfer({ ...fresh, transactionId: newTransactionId(), metadata: tooMany }), Code.INVALID_ARGUMENT, "INVALID_METADATA", "metadata");
      await expectRejected(() => client.transfer({ ...fresh, transactionId: newTransactionId(), reference: "r".repeat(129) }), Code.INVALID_ARGUMENT, "INVALID_REFERENCE", "reference");
    }
    const hold = { transactionId: newTransactionId(), fromAccount: payer, toAccount: payee, amount: "1.00", currency: "USD", timeoutMs: 60_000 };
    await expectRejected(() => wallet.authorizeTransfer({ ...hold, metadata: { "bad key": "v" } }), Code.INVALID_ARGUMENT, "INVALID_METADATA", "metadata");
    const held = await wallet.authorizeTransfer({ ...hold, transactionId: newTransactionId(), reference: `${reference}-hold`, metadata: { channel: "sdk-typescript" } });
    assert.deepEqual([held.transfer?.reference, held.transfer?.metadata], [`${reference}-hold`, { channel: "sdk-typescript" }]);
    const heldAgain = await wallet.getTransfer(held.transfer!.transactionId);
    assert.deepEqual([heldAgain.reference, heldAgain.metadata], [`${reference}-hold`, { channel: "sdk-typescript" }]);
    await wallet.voidTransfer({ transactionId: held.transfer!.transactionId, fromAccount: payer });
    checks += 2;

    // The read node: the transfer's final update, then the payer's history.
    let final: TransferUpdate | undefined;
    for await (const update of query.watchTransfer(tx, { timeoutMs: 30_000 })) final = update;
    assert.ok(final !== undefined, "watchTransfer ended without an update");
    assert.equal(final.status, COMPLETED);
    assert.deepEqual([final.reference, final.metadata], [reference, metadata]);
    await query.getBalance(payer, done.consistencyToken);
    let entry: HistoryEntry | undefined;
    for await (const e of query.iterateTransfers(payer)) {
      if (e.transactionId === tx) {
        entry = e;
        break;
      }
    }
    assert.ok(entry !== undefined, "the transfer is not in the payer's history");
    assert.deepEqual([entry.reference, entry.metadata], [reference, metadata]);
    checks += 2;
    console.log("typescript live checks: a transfer's reference and metadata stored, read back, compared on a retry, refused over their limits");
  } finally {
    wallet.close();
    unaryWallet.close();
    query.close();
  }
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
async function accountAnnotations(writes: string[], read: string, prefix: string): Promise<void> {
  const suffix = randomBytes(4).toString("hex");
  const [account, issuer] = [`${prefix}acct-ann-${suffix}`, `${prefix}acct-ann-issuer-${suffix}`];
  const reference = "cust-42";
  const metadata = { tier: "gold", region: "eu" };
  const annotated = { accountId: account, currency: "USD", reference, metadata };
  const annotationsOf = (m: { reference: string; metadata: { [key: string]: string } }) => [m.reference, m.metadata];
  const wallet = new WalletClient(writes);
  const query = new QueryClient([read]);
  try {
    const opened = await wallet.openAccount(annotated);
    assert.deepEqual([opened.accountId, opened.currency, ...annotationsOf(opened)], [account, "USD", reference, metadata]);
    assert.deepEqual(annotationsOf((await wallet.getAccount(account)).account!), [reference, metadata]);
    const again = await wallet.openAccount({ ...annotated, metadata: { ...metadata } });
    assert.deepEqual([again.accountId, ...annotationsOf(again)], [account, reference, metadata]);
    checks += 3;

    const exists = [Code.ALREADY_EXISTS, "ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS"] as const;
    await expectRejected(() => wallet.openAccount({ ...annotated, metadata: { tier: "silver" } }), ...exists);
    await expectRejected(() => wallet.openAccount({ ...annotated, reference: "cust-43" }), ...exists);
    await expectRejected(() => wallet.openAccount(account, "USD"), ...exists);
    assert.deepEqual(annotationsOf((await wallet.getAccount(account)).account!), [reference, metadata], "a refused reopening changed the account");
    checks += 1;

    const fresh = `${prefix}acct-ann-refused-${suffix}`;
    await expectRejected(() => wallet.openAccount({ accountId: fresh, currency: "USD", reference: "r".repeat(129) }), Code.INVALID_ARGUMENT, "INVALID_REFERENCE", "reference");
    const tooMany = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, "v"]));
    await expectRejected(() => wallet.openAccount({ accountId: fresh, currency: "USD", metadata: tooMany }), Code.INVALID_ARGUMENT, "INVALID_METADATA", "metadata");
    await expectRejected(() => wallet.getAccount(fresh), Code.NOT_FOUND, "ACCOUNT_NOT_FOUND", "account_id");

    // OpenAccounts: an item with annotations opens with them, an existing account given the
    // same ones answers it, given others it is refused like the unary call.
    const bulk = `${prefix}acct-ann-bulk-${suffix}`;
    const [first, second] = await wallet.openAccounts([
      { accountId: bulk, currency: "USD", reference: "cust-44", metadata: { tier: "bronze" } },
      annotated,
    ]);
    assert.ok(!(first instanceof WalletError), `${first}`);
    assert.deepEqual(annotationsOf(first), ["cust-44", { tier: "bronze" }]);
    assert.ok(!(second instanceof WalletError), `${second}`);
    assert.deepEqual(annotationsOf(second), [reference, metadata]);
    const [refused] = await wallet.openAccounts([{ accountId: bulk, currency: "USD", reference: "cust-45" }]);
    assert.ok(refused instanceof Rejected, `expected Rejected, got ${refused}`);
    assert.deepEqual([codeName(refused.code), refused.reason], [codeName(exists[0]), exists[1]]);
    checks += 2;

    // The read node: GetBalance at least as fresh as a transfer into the account, and the
    // snapshot a watch of it starts with.
    await wallet.openAccount({ accountId: issuer, currency: "USD", allowNegativeBalance: true });
    const funded = await wallet.transfer({ transactionId: newTransactionId(), fromAccount: issuer, toAccount: account, amount: "1.00", currency: "USD" });
    const projected = (await query.getBalance(account, funded.consistencyToken)).balance!;
    assert.deepEqual([projected.accountId, projected.balance, ...annotationsOf(projected)], [account, "1.00", reference, metadata]);
    assert.deepEqual(annotationsOf((await query.getBalance(issuer, funded.consistencyToken)).balance!), ["", {}]);
    const watch = query.watchBalances([account], {}, { timeoutMs: 30_000 });
    let snapshot: BalanceUpdate | undefined;
    try {
      const next = await watch[Symbol.asyncIterator]().next();
      snapshot = next.done ? undefined : next.value;
    } finally {
      watch.cancel();
    }
    assert.ok(snapshot?.balance !== undefined, "the watch ended without a snapshot");
    assert.deepEqual([snapshot.balance.accountId, ...annotationsOf(snapshot.balance)], [account, reference, metadata]);
    checks += 3;
    console.log("typescript live checks: an account's reference and metadata set at opening, read back, compared on reopening, refused over their limits");
  } finally {
    wallet.close();
    query.close();
  }
}

/**
 * Accounts of the multi-leg check, fixed so that the first four are in one partition of the 4 of
 * client-sdk/test-sdks.sh's cluster (the server's partition function) and the last in another;
 * opened idempotently, so the check compares balances as deltas.
 */
const LEGS_ACCOUNTS = ["ts-legs-0", "ts-legs-2", "ts-legs-3", "ts-legs-4"] as const;
const LEGS_ELSEWHERE = "ts-legs-5";

/** `expectRejected`, answering the error (a `Rejected` with `code`, `reason` and `field`). */
async function expectRejectedError(call: () => Promise<unknown>, code: Code, reason: string, field?: string): Promise<Rejected> {
  let caught: unknown;
  await expectRejected(async () => {
    try {
      return await call();
    } catch (error) {
      caught = error;
      throw error;
    }
  }, code, reason, field);
  return caught as Rejected;
}

/**
 * A multi-leg transfer moves every leg or none: three legs among four accounts of one partition
 * move exactly their amounts (GetAccount on the write node, as deltas); the same id and legs
 * again answer the original outcome (replayed) and move nothing, other legs under the id are
 * ALREADY_EXISTS TRANSACTION_ID_REUSED; a set taking more than its first account has is
 * FAILED_PRECONDITION INSUFFICIENT_FUNDS naming leg 0 and moves nothing; a repeated leg, mixed
 * currencies and no legs are INVALID_ARGUMENT (REPEATED_LEG, MIXED_CURRENCIES,
 * LEGS_OUT_OF_RANGE); a set reaching another partition (first -> second and first ->
 * LEGS_ELSEWHERE) completes too, "success" and not replayed, and moves exactly its amounts in
 * both partitions (LEGS_ELSEWHERE read on its own), and the same id and legs again answer
 * replayed and move nothing; GetTransfer answers the set with its legs, COMPLETED, no
 * fromAccount.
 */
async function transferLegsCheck(writes: string[], issuer: string): Promise<void> {
  const [first, second, third, fourth] = LEGS_ACCOUNTS;
  const reference = `legs-${newTransactionId()}`;
  const metadata = { channel: "sdk-typescript" };
  const wallet = new WalletClient(writes);
  try {
    for (const account of [...LEGS_ACCOUNTS, LEGS_ELSEWHERE]) await wallet.openAccount(account, "USD");
    await wallet.transfer({ transactionId: newTransactionId(), fromAccount: issuer, toAccount: first, amount: "100.00", currency: "USD" });
    const balances = async () => Promise.all(LEGS_ACCOUNTS.map(async (a) => cents((await wallet.getAccount(a)).account!.balance)));
    const moved = async (since: number[]) => (await balances()).map((now, i) => now - since[i]);
    const nothing = [0, 0, 0, 0];
    const leg = (fromAccount: string, toAccount: string, amount: string, currency = "USD") => ({ fromAccount, toAccount, amount, currency });
    const legs = [leg(first, second, "30.00"), leg(first, third, "20.00"), leg(second, fourth, "10.00")];

    const before = await balances();
    const transactionId = newTransactionId();
    const done = await wallet.transferLegs({ transactionId, legs, reference, metadata });
    assert.deepEqual([done.status, done.transactionId, done.replayed], ["success", transactionId, false]);
    assert.deepEqual(await moved(before), [-5000, 2000, 2000, 1000], "the legs moved other amounts");
    checks += 2;

    const after = await balances();
    const again = await wallet.transferLegs({ transactionId, legs: legs.map((l) => ({ ...l })), reference, metadata: { ...metadata } });
    assert.deepEqual([again.status, again.transactionId, again.replayed, again.consistencyToken], ["success", transactionId, true, done.consistencyToken]);
    const reused = await expectRejectedError(
      () => wallet.transferLegs({ transactionId, legs: legs.slice(0, 2), reference, metadata }),
      Code.ALREADY_EXISTS, "TRANSACTION_ID_REUSED",
    );
    assert.equal(reused.transactionId, transactionId);
    assert.deepEqual(await moved(after), nothing, "a replay or a reused id moved money");
    checks += 2;

    const tooMuch = decimal(after[0] + 100_000);
    const refused = await expectRejectedError(
      () => wallet.transferLegs({ legs: [leg(first, second, tooMuch), leg(second, fourth, "1.00")] }),
      Code.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS",
    );
    assert.deepEqual([refused.details.metadata.leg, refused.leg], ["0", 0], JSON.stringify(refused.details));
    assert.match(refused.transactionId ?? "", /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const invalid = Code.INVALID_ARGUMENT;
    await expectRejectedError(() => wallet.transferLegs({ legs: [leg(first, second, "1.00"), leg(first, second, "2.00")] }), invalid, "REPEATED_LEG", "legs");
    await expectRejectedError(() => wallet.transferLegs({ legs: [leg(first, second, "1.00"), leg(first, third, "1.00", "EUR")] }), invalid, "MIXED_CURRENCIES", "legs");
    await expectRejectedError(() => wallet.transferLegs({ legs: [] }), invalid, "LEGS_OUT_OF_RANGE", "legs");
    assert.deepEqual(await moved(after), nothing, "a refused set moved money");
    checks += 1;

    // Across partitions: the consistency token names a position in every partition the set
    // touches, so a retry's may differ from the first answer's.
    const elsewhere = async () => cents((await wallet.getAccount(LEGS_ELSEWHERE)).account!.balance);
    const acrossLegs = [leg(first, second, "1.00"), leg(first, LEGS_ELSEWHERE, "1.00")];
    const [acrossBefore, elsewhereBefore] = [await balances(), await elsewhere()];
    const acrossId = newTransactionId();
    const across = await wallet.transferLegs({ transactionId: acrossId, legs: acrossLegs });
    assert.deepEqual([across.status, across.transactionId, across.replayed], ["success", acrossId, false]);
    assert.deepEqual(await moved(acrossBefore), [-200, 100, 0, 0], "the legs across partitions moved other amounts");
    assert.equal((await elsewhere()) - elsewhereBefore, 100, `the legs across partitions moved another amount to ${LEGS_ELSEWHERE}`);
    checks += 2;

    const [acrossAfter, elsewhereAfter] = [await balances(), await elsewhere()];
    const acrossAgain = await wallet.transferLegs({ transactionId: acrossId, legs: acrossLegs.map((l) => ({ ...l })) });
    assert.deepEqual([acrossAgain.status, acrossAgain.transactionId, acrossAgain.replayed], ["success", acrossId, true]);
    assert.deepEqual(await moved(acrossAfter), nothing, "a replay across partitions moved money");
    assert.equal((await elsewhere()) - elsewhereAfter, 0, `a replay across partitions moved money to ${LEGS_ELSEWHERE}`);
    checks += 1;

    const got = await wallet.getTransfer(transactionId);
    assert.equal(got.status, TransferStatus.TRANSFER_STATUS_COMPLETED, JSON.stringify(got));
    assert.deepEqual([got.transactionId, got.fromAccount, got.toAccount, got.amount, got.currency], [transactionId, "", "", "", "USD"], JSON.stringify(got));
    assert.deepEqual(
      got.legs.map((l) => [l.fromAccount, l.toAccount, cents(l.amount)]),
      legs.map((l) => [l.fromAccount, l.toAccount, cents(l.amount)]),
      JSON.stringify(got),
    );
    assert.deepEqual([got.reference, got.metadata, got.rejectedLeg], [reference, metadata, undefined], JSON.stringify(got));
    checks += 1;
    console.log("typescript live checks: a multi-leg transfer moves every leg or none, within and across partitions (replayed, refused as documented, read back)");
  } finally {
    wallet.close();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { write: { type: "string" }, read: { type: "string" } } });
  assert.ok(values.write && values.read, "--write and --read are required");
  const writes = values.write.split(",");
  const prefix = `tscheck-${randomBytes(4).toString("hex")}-`;
  const [issuer, alice] = [prefix + "issuer", prefix + "alice"];
  const wallet = new WalletClient(writes);
  const unaryWallet = new WalletClient(writes, { pipelineTransfers: false });
  const query = new QueryClient([values.read]);
  try {
    await wallet.openAccount(issuer, "USD", true);
    await wallet.openAccount(alice, "USD");
    const funded = await wallet.transfer({
      transactionId: newTransactionId(),
      fromAccount: issuer,
      toAccount: alice,
      amount: "10.00",
      currency: "USD",
    });
    const pay = (amount: string, opts: { id?: string; to?: string; currency?: string } = {}) => () =>
      wallet.transfer({
        transactionId: opts.id ?? newTransactionId(),
        fromAccount: issuer,
        toAccount: opts.to ?? alice,
        amount,
        currency: opts.currency ?? "USD",
      });

    const invalid = Code.INVALID_ARGUMENT;
    for (const amount of ["abc", "-1", "0", "1.005", "1e3", " 1.00", "NaN"]) {
      await expectRejected(pay(amount), invalid, "INVALID_AMOUNT", "amount");
    }
    await expectRejected(pay("1.00", { currency: "XYZ" }), invalid, "UNKNOWN_CURRENCY", "currency");
    await expectRejected(pay("1.00", { id: "not-a-uuid" }), invalid, "INVALID_TRANSACTION_ID", "transaction_id");
    await expectRejected(pay("1.00", { to: issuer }), invalid, "SAME_ACCOUNT", "to_account");
    await expectRejected(() => wallet.openAccount("has space", "USD"), invalid, "INVALID_ACCOUNT_ID", "account_id");
    // NOT_FOUND names the field too (BadRequest); FAILED_PRECONDITION and ALREADY_EXISTS
    // carry ErrorInfo only: down a stream (`wallet`) and unary (`unaryWallet`) alike.
    await expectRejected(pay("1.00", { to: prefix + "nobody" }), Code.NOT_FOUND, "ACCOUNT_NOT_FOUND", "to_account");
    {
      const nobody = { transactionId: newTransactionId(), fromAccount: issuer, toAccount: prefix + "nobody", amount: "1.00", currency: "USD" };
      await expectRejected(() => unaryWallet.transfer(nobody), Code.NOT_FOUND, "ACCOUNT_NOT_FOUND", "to_account");
      const stranger = { ...nobody, transactionId: newTransactionId(), fromAccount: prefix + "stranger", toAccount: alice };
      await expectRejected(() => unaryWallet.transfer(stranger), Code.NOT_FOUND, "ACCOUNT_NOT_FOUND", "from_account");
      const strangerAgain = { ...stranger, transactionId: newTransactionId() };
      await expectRejected(() => wallet.transfer(strangerAgain), Code.NOT_FOUND, "ACCOUNT_NOT_FOUND", "from_account");
    }
    await expectRejected(() => wallet.getAccount(prefix + "nobody"), Code.NOT_FOUND, "ACCOUNT_NOT_FOUND", "account_id");
    await expectRejected(() => wallet.getTransfer(newTransactionId()), Code.NOT_FOUND, "TRANSFER_NOT_FOUND", "transaction_id");
    const overdraft = { transactionId: newTransactionId(), fromAccount: alice, toAccount: issuer, amount: "10.01", currency: "USD" };
    await expectRejected(() => wallet.transfer(overdraft), Code.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS");
    await expectRejected(() => unaryWallet.transfer({ ...overdraft }), Code.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS");
    await expectRejected(pay("9.99", { id: funded.transactionId }), Code.ALREADY_EXISTS, "TRANSACTION_ID_REUSED");
    const reuse = { transactionId: funded.transactionId, fromAccount: issuer, toAccount: alice, amount: "9.98", currency: "USD" };
    await expectRejected(() => unaryWallet.transfer(reuse), Code.ALREADY_EXISTS, "TRANSACTION_ID_REUSED");
    await expectRejected(() => wallet.openAccount(alice, "EUR"), Code.ALREADY_EXISTS, "ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS");
    await rawStatusDecodes(writes[0], issuer, alice);

    // The read node's errors decode the same way, streams included.
    await expectRejected(
      () =>
        new Promise((resolve, reject) => {
          const watch = query.watchBalances([]);
          watch.on("data", () => reject(new Error("an empty watch streamed an update")));
          watch.on("error", reject); // already typed: the watch classifies its errors
          watch.on("end", resolve);
        }),
      invalid,
      "INVALID_ACCOUNT_ID",
      "account_ids",
    );
    await expectRejected(() => query.getBalance(alice, "garbage"), invalid, "INVALID_CONSISTENCY_TOKEN", "consistency_token");

    // Bad input changed nothing.
    assert.equal((await wallet.getAccount(alice)).account!.balance, "10.00");
    assert.equal((await query.getBalance(alice, funded.consistencyToken)).balance!.balance, "10.00");
    assert.equal(unaryWallet.stats().streamsOpened, 0);
  } finally {
    wallet.close();
    unaryWallet.close();
    query.close();
  }

  // A dead node first in the list: the retry loop moves on with the same request.
  const dead = "127.0.0.1:1";
  const past = new WalletClient([dead, ...writes]);
  assert.equal((await past.getAccount(alice)).account!.balance, "10.00");
  past.close();
  // Only dead nodes: an indefinite error, within the total deadline.
  const policy = { callTimeoutMs: 1000, totalDeadlineMs: 2000, attemptsMax: 4, backoffBaseMs: 10, backoffMaxMs: 50 };
  const down = new WalletClient([dead], policy);
  const started = Date.now();
  const lost = { transactionId: newTransactionId(), fromAccount: issuer, toAccount: alice, amount: "1.00", currency: "USD" };
  await assert.rejects(down.transfer(lost), (error: unknown) => {
    assert.ok(error instanceof Indefinite, `${error}`);
    assert.equal(error.code, Code.UNAVAILABLE);
    assert.equal(error.reason, "TRANSPORT_ERROR");
    assert.equal(error.definite, false);
    return true;
  });
  assert.ok(Date.now() - started < policy.totalDeadlineMs + 1000);
  down.close();
  checks += 2;

  await transferLegsCheck(writes, issuer);
  await accountLifecycle(writes, prefix);
  await transferAnnotations(writes, values.read, prefix);
  await accountAnnotations(writes, values.read, prefix);
  checks += await concurrentTransfers(writes, prefix);
  console.log(`typescript live checks: ${checks} passed`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
