/**
 * Transparent batching of `WalletClient.transfer()`: concurrent calls bound for the same node
 * are gathered into `TransferBatch` calls, while each call keeps its own outcome, errors and
 * retry-with-the-same-id semantics. The algorithm is the same in the Rust and Python SDKs:
 *
 * - Each call picks the node it would be sent to: the cached leader for its routing key
 *   (`fromAccount`), else the first endpoint.
 * - Per node, at most `batchInFlightMax` batches are in flight. A call that finds fewer in
 *   flight goes at once (with whatever is queued for that node); otherwise it waits in the
 *   node's queue, and when a batch to the node returns, everything queued (at most
 *   `TRANSFER_BATCH_MAX`, in arrival order) goes as the next batch. No timer, no linger:
 *   nothing waits when the client is idle, and batches grow by themselves under load.
 * - A batch call has the call timeout. Results are matched to callers by position.
 *   "success" resolves the caller; "rejected" rejects it with the `Rejected` the unary call
 *   would give; anything else ("unavailable", a malformed or missing result, a failed batch
 *   call) sends that caller's request again, unchanged, through the unary retry loop
 *   (`Transfer`, NOT_LEADER hints, backoff) within what is left of the caller's own deadline.
 * - A successful batch records its node as the leader of its successful items' routing keys.
 */
import { isServiceError, classify, deadlineExceeded, itemError, type WalletError } from "./errors";
import type { TransferBatchResponse, TransferRequest, TransferResponse, TransferResult } from "./gen/wallet/v1/wallet";

/** Most transfers in one `TransferBatch` call (the proto's limit). */
export const TRANSFER_BATCH_MAX = 1024;
/** Default of `batchInFlightMax`: batches in flight per node. */
export const DEFAULT_BATCH_IN_FLIGHT_MAX = 2;

/** Counters of a `WalletClient`'s transfers, for tests and monitoring. */
export interface TransferStats {
  /** `transfer()` calls made. */
  transfers: number;
  /** `TransferBatch` calls sent. */
  batchCalls: number;
  /** Transfers sent inside batches. */
  batchedTransfers: number;
  /** The largest batch sent. */
  largestBatch: number;
  /** `TransferBatch` calls that failed as a whole (their transfers went unary). */
  batchCallsFailed: number;
  /** Transfers retried through the unary path after their batch gave no definite outcome. */
  fallbacks: number;
  /** Transfers that took the unary path (batching off, or a fallback). */
  unaryTransfers: number;
}

/** What the batcher needs from the client. */
export interface BatchTransport {
  /** The node a call with `routingKey` goes to now (cached leader, else first endpoint). */
  route(routingKey: string): string;
  /** One `TransferBatch` attempt to `endpoint`, bounded by `deadline`. */
  sendBatch(endpoint: string, transfers: TransferRequest[], deadline: Date): Promise<TransferBatchResponse>;
  /** The unary `Transfer` retry loop, ending by `deadline` (epoch ms). */
  unary(request: TransferRequest, deadline: number): Promise<TransferResponse>;
  /** Records `endpoint` as the leader for `routingKey`. */
  setLeader(routingKey: string, endpoint: string): void;
  /** Per-attempt timeout, ms. */
  callTimeoutMs: number;
}

type State = "queued" | "sent" | "done";

interface Pending {
  request: TransferRequest;
  deadline: number;
  state: State;
  timer?: ReturnType<typeof setTimeout>;
  resolve(response: TransferResponse): void;
  reject(error: unknown): void;
}

interface Lane {
  inFlight: number;
  queue: Pending[];
}

/** The per-node lanes of one client. */
export class TransferBatcher {
  private readonly lanes = new Map<string, Lane>();
  private readonly counters: TransferStats = {
    transfers: 0,
    batchCalls: 0,
    batchedTransfers: 0,
    largestBatch: 0,
    batchCallsFailed: 0,
    fallbacks: 0,
    unaryTransfers: 0,
  };

  constructor(
    private readonly transport: BatchTransport,
    readonly inFlightMax: number,
  ) {
    if (!Number.isInteger(inFlightMax) || inFlightMax < 0) {
      throw new RangeError("batchInFlightMax must be a non-negative integer (0 turns batching off)");
    }
  }

  stats(): TransferStats {
    return { ...this.counters };
  }

  /** Transfers waiting in the queues (not yet sent). */
  queued(): number {
    let n = 0;
    for (const lane of this.lanes.values()) n += lane.queue.length;
    return n;
  }

  /** One transfer, settled by `deadline` (epoch ms). */
  transfer(request: TransferRequest, deadline: number): Promise<TransferResponse> {
    this.counters.transfers += 1;
    if (this.inFlightMax === 0) {
      this.counters.unaryTransfers += 1;
      return this.transport.unary(request, deadline);
    }
    return new Promise((resolve, reject) => {
      const pending: Pending = { request, deadline, state: "queued", resolve, reject };
      const endpoint = this.transport.route(request.fromAccount);
      let lane = this.lanes.get(endpoint);
      if (lane === undefined) {
        lane = { inFlight: 0, queue: [] };
        this.lanes.set(endpoint, lane);
      }
      lane.queue.push(pending);
      // The caller's own deadline holds while it waits and while its batch is in flight.
      pending.timer = setTimeout(() => this.expire(endpoint, pending), Math.max(0, deadline - Date.now()));
      this.pump(endpoint, lane);
    });
  }

  /** Rejects every queued transfer (the client is closing); batches in flight finish. */
  abandon(error: Error): void {
    for (const lane of this.lanes.values()) {
      for (const pending of lane.queue.splice(0)) this.settle(pending, undefined, error);
    }
  }

  private expire(endpoint: string, pending: Pending): void {
    if (pending.state === "done") return;
    if (pending.state === "queued") {
      const lane = this.lanes.get(endpoint);
      const index = lane?.queue.indexOf(pending) ?? -1;
      if (lane !== undefined && index >= 0) lane.queue.splice(index, 1);
    }
    this.settle(pending, undefined, deadlineExceeded("the call's deadline passed while its transfer was batched"));
  }

  private settle(pending: Pending, response: TransferResponse | undefined, error?: unknown): void {
    if (pending.state === "done") return;
    pending.state = "done";
    if (pending.timer !== undefined) clearTimeout(pending.timer);
    if (error !== undefined) pending.reject(error);
    else pending.resolve(response!);
  }

  /** Sends batches while the lane has room and work. */
  private pump(endpoint: string, lane: Lane): void {
    while (lane.inFlight < this.inFlightMax && lane.queue.length > 0) {
      const items = lane.queue.splice(0, TRANSFER_BATCH_MAX);
      lane.inFlight += 1;
      void this.send(endpoint, items)
        // Only a bug gets here (send handles every gRPC outcome): no caller is left hanging.
        .catch((error: unknown) => items.forEach((item) => this.settle(item, undefined, error)))
        .finally(() => {
          lane.inFlight -= 1;
          if (lane.inFlight === 0 && lane.queue.length === 0) {
            if (this.lanes.get(endpoint) === lane) this.lanes.delete(endpoint);
          } else {
            this.pump(endpoint, lane);
          }
        });
    }
  }

  private async send(endpoint: string, items: Pending[]): Promise<void> {
    for (const item of items) item.state = "sent";
    this.counters.batchCalls += 1;
    this.counters.batchedTransfers += items.length;
    this.counters.largestBatch = Math.max(this.counters.largestBatch, items.length);
    let results: TransferResult[] | undefined;
    let failure: unknown;
    try {
      const response = await this.transport.sendBatch(
        endpoint,
        items.map((item) => item.request),
        new Date(Date.now() + this.transport.callTimeoutMs),
      );
      results = response.results;
    } catch (error) {
      failure = error;
      this.counters.batchCallsFailed += 1;
    }
    // Matched by position; a count that differs means no result can be trusted.
    const matched = results !== undefined && results.length === items.length ? results : undefined;
    items.forEach((item, position) => {
      if (item.state !== "sent") return; // its deadline passed meanwhile
      const result = matched?.[position];
      if (result !== undefined && result.transactionId === item.request.transactionId) {
        if (result.status === "success") {
          this.transport.setLeader(item.request.fromAccount, endpoint);
          this.settle(item, {
            status: result.status,
            transactionId: result.transactionId,
            consistencyToken: result.consistencyToken,
          });
          return;
        }
        if (result.status === "rejected" && result.error !== undefined && result.error.code !== 0) {
          this.settle(item, undefined, itemError(result.error, true));
          return;
        }
      }
      this.fallback(item, result, failure);
    });
  }

  /** No definite outcome from the batch: the unary retry loop, same request, same deadline. */
  private fallback(item: Pending, result: TransferResult | undefined, failure: unknown): void {
    if (failure !== undefined && !isServiceError(failure)) {
      // Not a gRPC error (a bug, a bad argument): it would fail the unary call the same way.
      this.settle(item, undefined, failure);
      return;
    }
    if (Date.now() >= item.deadline) {
      let error: WalletError;
      if (failure !== undefined) error = classify(failure);
      else if (result?.error !== undefined && result.error.code !== 0) error = itemError(result.error, false);
      else error = deadlineExceeded("the call's deadline passed while its transfer was batched");
      this.settle(item, undefined, error);
      return;
    }
    // The unary loop bounds itself by the same deadline; the batch timer is not needed.
    if (item.timer !== undefined) clearTimeout(item.timer);
    item.timer = undefined;
    this.counters.fallbacks += 1;
    this.counters.unaryTransfers += 1;
    this.transport.unary(item.request, item.deadline).then(
      (response) => this.settle(item, response),
      (error) => this.settle(item, undefined, error),
    );
  }
}
