/**
 * Watches that resume by themselves: `BalanceWatch` and `TransferWatch`, the TypeScript
 * counterparts of the Rust, Go, Java and Python SDKs' watches.
 *
 * A watch opens its stream on the first read node given (when the first "data" listener is
 * attached, or iteration starts). When the stream fails in a way the same watch may get past
 * later or elsewhere (the node is unreachable or restarting, it cut the watcher off for lagging,
 * WATCH_LAGGED, it serves its maximum number of streams, the stream simply ended), the watch
 * waits a backoff (full jitter, 100 ms doubling to 2 s, back to 100 ms once an update arrives)
 * and reopens it on the next read node, asking each account to resume after the last sequence
 * it delivered (`resume_after_sequence`). Every read node folds the same log into the same
 * per-account sequences, so nothing is skipped; anything at or below the last delivered
 * sequence (a replay) is dropped, so nothing is repeated. A transfer watch delivers only
 * versions newer than the last one it delivered, and ends after the final state.
 *
 * Consume it with `for await` or with "data" / "error" / "end" events. It ends with a typed
 * error (`Rejected`: the request is wrong, e.g. ACCOUNT_NOT_FOUND; `Indefinite`: `timeoutMs`
 * ran out, or `maxResumes` reconnections did not get it going again), after the final
 * transfer state ("end"), or after `cancel()` ("end", quietly).
 */
import { EventEmitter } from "node:events";

import { type ClientReadableStream, type ServiceError, status as Code } from "@grpc/grpc-js";

import { Indefinite, type WalletError, classify, deadlineExceeded, isServiceError } from "./errors";
import { type BalanceUpdate, type TransferUpdate } from "./gen/wallet/v1/query";

export const WATCH_RESUME_BACKOFF_MIN_MS = 100;
export const WATCH_RESUME_BACKOFF_MAX_MS = 2_000;

/** Codes after which the same watch may succeed later or on another read node. */
export const RESUMABLE_WATCH_CODES: ReadonlySet<Code> = new Set([
  Code.UNAVAILABLE,
  Code.ABORTED, // WATCH_LAGGED
  Code.RESOURCE_EXHAUSTED, // TOO_MANY_WATCHERS
  Code.DEADLINE_EXCEEDED, // one stream's, while the watch's own runs on
  Code.CANCELLED, // not by us: the connection went away
  Code.UNKNOWN,
]);

function stopped(message: string, reason: string): Indefinite {
  return new Indefinite({ code: Code.UNAVAILABLE, message, reason, domain: "", metadata: {}, fieldViolations: [] }, reason);
}

/** Bounds of a watch. */
export interface WatchOptions {
  /** The whole watch's deadline, ms from now (default: none). */
  timeoutMs?: number;
  /** Most reconnections (default: unbounded). */
  maxResumes?: number;
}

/** Opens one stream: (endpoint, deadline or undefined) -> the call. */
export type OpenStream<T> = (endpoint: string, deadline: Date | undefined) => ClientReadableStream<T>;

/** What `BalanceWatch` and `TransferWatch` share. */
export abstract class ResumingWatch<T> extends EventEmitter implements AsyncIterable<T> {
  /** Reconnections made so far. */
  resumes = 0;
  /** The terminal error, once the watch failed. */
  error: WalletError | undefined;
  private stream: ClientReadableStream<T> | undefined;
  private started = false;
  private stopped = false;
  private attempt = 0;
  private backoffMs = WATCH_RESUME_BACKOFF_MIN_MS;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly deadline: number | undefined;
  private readonly maxResumes: number | undefined;

  protected constructor(
    private readonly openStream: OpenStream<T>,
    private readonly endpoints: readonly string[],
    options: WatchOptions,
  ) {
    super();
    if (endpoints.length === 0) throw new RangeError("at least one endpoint is required");
    if (options.maxResumes !== undefined && !(options.maxResumes >= 0)) throw new RangeError("maxResumes must be >= 0");
    this.deadline = options.timeoutMs === undefined ? undefined : Date.now() + options.timeoutMs;
    this.maxResumes = options.maxResumes;
    this.on("newListener", (event: string) => {
      if (event === "data") process.nextTick(() => this.start());
    });
  }

  /** Whether to deliver `update` (false: a replay, dropped). */
  protected abstract accept(update: T): boolean;

  /** True once nothing more will come (a transfer's final state). */
  protected finished(): boolean {
    return false;
  }

  /** Opens the stream if not yet done (the first "data" listener or iteration does). */
  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    this.connect();
  }

  /** True while the watch runs (not cancelled, failed or finished). */
  get running(): boolean {
    return !this.stopped;
  }

  private connect(): void {
    this.timer = undefined;
    if (this.stopped) return;
    const endpoint = this.endpoints[this.attempt % this.endpoints.length];
    let stream: ClientReadableStream<T>;
    try {
      stream = this.openStream(endpoint, this.deadline === undefined ? undefined : new Date(this.deadline));
    } catch (error) {
      this.fail(stopped(error instanceof Error ? error.message : String(error), "CLIENT_CLOSED"));
      return;
    }
    this.stream = stream;
    let over = false;
    const interrupted = (error: ServiceError | undefined) => {
      if (over) return;
      over = true;
      if (this.stream === stream) this.stream = undefined;
      stream.removeAllListeners("data");
      stream.on("error", () => {}); // a late error of a dropped stream
      stream.cancel();
      this.interrupted(error);
    };
    stream.on("data", (update: T) => {
      if (over || this.stopped) return;
      this.backoffMs = WATCH_RESUME_BACKOFF_MIN_MS;
      if (!this.accept(update)) return;
      this.emit("data", update);
      if (this.finished()) {
        over = true;
        this.stream = undefined;
        stream.on("error", () => {});
        stream.cancel();
        this.finish();
      }
    });
    stream.on("error", (error: Error) => interrupted(isServiceError(error) ? error : undefined));
    stream.on("end", () => interrupted(undefined));
  }

  private interrupted(error: ServiceError | undefined): void {
    if (this.stopped) return;
    if (error !== undefined && !RESUMABLE_WATCH_CODES.has(error.code)) {
      this.fail(classify(error));
      return;
    }
    if (this.deadline !== undefined && Date.now() >= this.deadline) {
      this.fail(error?.code === Code.DEADLINE_EXCEEDED ? classify(error) : deadlineExceeded("the watch's timeout ran out"));
      return;
    }
    if (this.maxResumes !== undefined && this.resumes >= this.maxResumes) {
      this.fail(error !== undefined ? classify(error) : stopped("the watch stream ended", "STREAM_ENDED"));
      return;
    }
    this.resumes += 1;
    this.attempt += 1;
    let pause = Math.random() * this.backoffMs + this.backoffMs / 2;
    this.backoffMs = Math.min(this.backoffMs * 2, WATCH_RESUME_BACKOFF_MAX_MS);
    if (this.deadline !== undefined) pause = Math.min(pause, Math.max(this.deadline - Date.now(), 0));
    this.timer = setTimeout(() => this.connect(), pause);
  }

  private fail(error: WalletError): void {
    if (this.stopped) return;
    this.stopped = true;
    this.error = error;
    if (this.listenerCount("error") > 0) this.emit("error", error);
    this.emit("close");
  }

  private finish(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.emit("end");
    this.emit("close");
  }

  /** Ends the watch: "end" is emitted and iteration stops, quietly. */
  cancel(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    const stream = this.stream;
    this.stream = undefined;
    if (stream !== undefined) {
      stream.removeAllListeners("data");
      stream.on("error", () => {});
      stream.cancel();
    }
    this.finish();
  }

  /** `for await (const update of watch)`; breaking out of the loop cancels the watch. */
  [Symbol.asyncIterator](): AsyncIterator<T> {
    const queue: T[] = [];
    let waiting: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void } | undefined;
    let failure: WalletError | undefined;
    let done = false;
    const onData = (update: T) => {
      if (waiting !== undefined) {
        const w = waiting;
        waiting = undefined;
        w.resolve({ value: update, done: false });
      } else {
        queue.push(update);
      }
    };
    const onError = (error: WalletError) => {
      failure = error;
      if (waiting !== undefined) {
        const w = waiting;
        waiting = undefined;
        w.reject(error);
      }
    };
    const onEnd = () => {
      done = true;
      if (waiting !== undefined) {
        const w = waiting;
        waiting = undefined;
        w.resolve({ value: undefined, done: true });
      }
    };
    if (this.error !== undefined) failure = this.error;
    else if (this.stopped) done = true;
    this.on("data", onData);
    this.on("error", onError);
    this.on("end", onEnd);
    const detach = () => {
      this.off("data", onData);
      this.off("error", onError);
      this.off("end", onEnd);
    };
    return {
      next: () => {
        const update = queue.shift();
        if (update !== undefined) return Promise.resolve({ value: update, done: false });
        if (failure !== undefined) {
          detach();
          return Promise.reject(failure);
        }
        if (done) {
          detach();
          return Promise.resolve({ value: undefined, done: true });
        }
        return new Promise((resolve, reject) => {
          waiting = { resolve, reject };
        });
      },
      return: () => {
        detach();
        this.cancel();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}

/**
 * A running `WatchBalances` that resumes by itself (see the module comment): per account in
 * sequence order, gap-free and duplicate-free across reconnections. `lastSequences()` is what
 * a later watch needs to resume.
 */
export class BalanceWatch extends ResumingWatch<BalanceUpdate> {
  private readonly last = new Map<string, bigint>();

  constructor(
    open: (endpoint: string, resumeAfterSequence: Record<string, string>, deadline: Date | undefined) => ClientReadableStream<BalanceUpdate>,
    endpoints: readonly string[],
    resumeAfterSequence: Record<string, string | number | bigint> = {},
    options: WatchOptions = {},
  ) {
    super((endpoint, deadline) => open(endpoint, this.lastSequences(), deadline), endpoints, options);
    for (const [account, sequence] of Object.entries(resumeAfterSequence)) this.last.set(account, BigInt(sequence));
  }

  protected accept(update: BalanceUpdate): boolean {
    if (update.balance === undefined) return false;
    const account = update.balance.accountId;
    const sequence = BigInt(update.balance.sequence);
    const seen = this.last.get(account);
    if (seen !== undefined && sequence <= seen) return false; // delivered before a reconnection
    this.last.set(account, sequence);
    return true;
  }

  /** Per account, the sequence (a decimal string) of the last update delivered or given. */
  lastSequences(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [account, sequence] of this.last) out[account] = sequence.toString();
    return out;
  }
}

/**
 * A running `WatchTransfer` that resumes by itself: the transfer's state, then every newer
 * state until the final one, then "end" (a state that came and went while disconnected is
 * skipped; the final state always arrives).
 */
export class TransferWatch extends ResumingWatch<TransferUpdate> {
  private lastVersion = 0;
  private done = false;

  constructor(open: OpenStream<TransferUpdate>, endpoints: readonly string[], options: WatchOptions = {}) {
    super(open, endpoints, options);
  }

  protected accept(update: TransferUpdate): boolean {
    if (update.version <= this.lastVersion) return false;
    this.lastVersion = update.version;
    if (update.isFinal) this.done = true;
    return true;
  }

  protected finished(): boolean {
    return this.done;
  }
}

