/**
 * Transparent pipelining of `WalletClient.transfer()`, the algorithm of the Rust SDK
 * (`client-sdk/src/pipeline.rs`): concurrent calls bound for the same node share one
 * long-lived `SubmitTransfers` stream, so they cost the node one stream instead of one call
 * each and reach its store together. Nothing waits to be gathered (no timer, no linger), and
 * no call waits for another's answer: the node streams each result back as soon as that
 * transfer is final, naming its transaction id, and the result goes to the caller waiting for
 * that id (a FIFO per id, since the same id may be in flight twice).
 *
 * - Each call picks the node it would be sent to (the cached leader of its routing key,
 *   `fromAccount`, else the first endpoint) and that node's open stream, or opens one.
 * - "success" resolves the caller and records the node as the leader of its routing key;
 *   "rejected" rejects it with the `Rejected` the unary call would give.
 * - The call goes on alone through the unary `Transfer` retry loop (same request, same id,
 *   NOT_LEADER hints, backoff), within what is left of its own deadline, when: its result is
 *   "unavailable" or malformed; no result came within the call timeout (the caller is then
 *   forgotten); the stream could not take it (more than `PIPE_QUEUE_MAX` requests wait to be
 *   written, or another request under the same id with other fields is waiting: results name
 *   only the id, so the two could not be told apart); or the stream ended, failed or was
 *   refused (every caller waiting on it goes on alone, the stream is forgotten and the next
 *   call opens a new one; a closed stream takes no new caller).
 * - A stream nobody has waited on for `PIPE_IDLE_MS` is ended, so an idle client holds no
 *   stream open (and a script that forgets `close()` still exits); `close()` ends them all.
 */
import type { ClientDuplexStream } from "@grpc/grpc-js";

import { deadlineExceeded, itemError, type WalletError } from "./errors";
import type { TransferRequest, TransferResponse, TransferResult } from "./gen/wallet/v1/wallet";

/**
 * Requests one stream holds before they are written to it (the node reads slowly: the
 * stream's `write()` said to wait for "drain"). Beyond that a call goes its own way, unary.
 */
export const PIPE_QUEUE_MAX = 1024;
/** A stream nobody waited on for this long (ms) is ended; the next call opens a new one. */
export const PIPE_IDLE_MS = 1000;

/** Counters of a `WalletClient`'s transfers, for tests and monitoring. */
export interface TransferStats {
  /** `transfer()` calls made. */
  transfers: number;
  /** `SubmitTransfers` streams opened. */
  streamsOpened: number;
  /** Streams that failed (ended with an error status, or were refused) while in use. */
  streamsFailed: number;
  /** Transfers sent down a stream. */
  pipelinedTransfers: number;
  /** Pipelined transfers that got no definite outcome from their stream and went on unary. */
  unaryFallbacks: number;
  /**
   * Transfers that took the unary `Transfer` path: the fallbacks, plus every transfer with
   * pipelining off, or that a stream could not take (full, closed, a conflicting id waiting).
   */
  unaryTransfers: number;
}

/** What the pipeline needs from the client. */
export interface PipelineTransport {
  /** The node a call with `routingKey` goes to now (cached leader, else first endpoint). */
  route(routingKey: string): string;
  /** Opens a `SubmitTransfers` stream to `endpoint` (no deadline: it lives until ended). */
  open(endpoint: string): ClientDuplexStream<TransferRequest, TransferResult>;
  /** The unary `Transfer` retry loop, ending by `deadline` (epoch ms). */
  unary(request: TransferRequest, deadline: number): Promise<TransferResponse>;
  /** Records `endpoint` as the leader for `routingKey`. */
  setLeader(routingKey: string, endpoint: string): void;
  /** Per-attempt timeout, ms: how long a caller waits for its stream's result. */
  callTimeoutMs: number;
}

/** What a stream tells a caller: a definite outcome, or go on unary (with the result, if any). */
type Answer =
  | { kind: "response"; response: TransferResponse }
  | { kind: "error"; error: unknown }
  | { kind: "unary"; result?: TransferResult; expired?: boolean };

/** A caller waiting for its result. */
interface Waiter {
  request: TransferRequest;
  timer?: ReturnType<typeof setTimeout>;
  answer(answer: Answer): void;
}

/** The definite outcome a result carries, as the unary call would give it; else undefined. */
function definite(result: TransferResult): Answer | undefined {
  if (result.status === "success") {
    return {
      kind: "response",
      response: {
        status: result.status,
        transactionId: result.transactionId,
        consistencyToken: result.consistencyToken,
        replayed: result.replayed,
      },
    };
  }
  if (result.status === "rejected" && result.error !== undefined && result.error.code !== 0) {
    return { kind: "error", error: itemError(result.error, true, result.replayed) };
  }
  return undefined;
}

/** Whether two requests under one id are the same transfer: every field, metadata included. */
export function sameTransfer(a: TransferRequest, b: TransferRequest): boolean {
  return (
    a.fromAccount === b.fromAccount &&
    a.toAccount === b.toAccount &&
    a.amount === b.amount &&
    a.currency === b.currency &&
    a.reference === b.reference &&
    sameMetadata(a.metadata, b.metadata)
  );
}

function sameMetadata(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => Object.prototype.hasOwnProperty.call(b, k) && a[k] === b[k]);
}

/** One node's stream, as its callers see it. */
class Pipe {
  /** No new caller may wait here (the stream ended, failed, or is being ended). */
  closed = false;
  /** Ended by the client (idle, or `close()`): its end is no failure. */
  endedByClient = false;
  private readonly waiters = new Map<string, Waiter[]>();
  private waiting = 0;
  /** Requests not yet written: the stream asked to wait for "drain". */
  private backlog: TransferRequest[] = [];
  private blocked = false;
  private idleSince = 0;
  private idleTimer?: ReturnType<typeof setTimeout>;
  private orphaned = false;

  constructor(
    readonly endpoint: string,
    readonly stream: ClientDuplexStream<TransferRequest, TransferResult>,
    private readonly onIdle: (pipe: Pipe) => void,
  ) {}

  /** Sends `request` down the stream; false (nothing sent) if the pipe cannot take it. */
  send(request: TransferRequest, waiter: Waiter): boolean {
    if (this.closed) return false;
    const queue = this.waiters.get(request.transactionId);
    if (queue !== undefined && !sameTransfer(queue[0].request, request)) return false;
    if (this.blocked && this.backlog.length >= PIPE_QUEUE_MAX) return false;
    if (queue === undefined) this.waiters.set(request.transactionId, [waiter]);
    else queue.push(waiter);
    this.waiting += 1;
    if (this.blocked) this.backlog.push(request);
    else if (!this.stream.write(request)) this.blocked = true;
    return true;
  }

  /** "drain": writes what waited, until the stream asks to wait again. */
  drain(): void {
    this.blocked = false;
    if (this.closed) return;
    let written = 0;
    while (written < this.backlog.length && !this.blocked) {
      if (!this.stream.write(this.backlog[written])) this.blocked = true;
      written += 1;
    }
    this.backlog = this.backlog.slice(written);
  }

  /** Hands a result to the first caller waiting for its id (an unknown id is ignored). */
  resolve(result: TransferResult): Waiter | undefined {
    const queue = this.waiters.get(result.transactionId);
    if (queue === undefined) return undefined;
    const waiter = queue.shift()!;
    if (queue.length === 0) this.waiters.delete(result.transactionId);
    this.left();
    return waiter;
  }

  /** Forgets a caller that stopped waiting (timed out); a result for it then goes to the
   * next identical request under its id, if any, else is ignored. */
  forget(waiter: Waiter): void {
    const id = waiter.request.transactionId;
    const queue = this.waiters.get(id);
    const index = queue?.indexOf(waiter) ?? -1;
    if (queue === undefined || index < 0) return;
    queue.splice(index, 1);
    if (queue.length === 0) this.waiters.delete(id);
    this.left();
  }

  /** The stream is over: every caller still waiting goes on alone. */
  orphan(): void {
    this.closed = true;
    if (this.orphaned) return;
    this.orphaned = true;
    this.clearIdle();
    const waiters = [...this.waiters.values()].flat();
    this.waiters.clear();
    this.waiting = 0;
    this.backlog = [];
    for (const waiter of waiters) waiter.answer({ kind: "unary" });
  }

  /** Ends the stream (half-close): the node answers what it has and ends it. */
  end(): void {
    this.closed = true;
    this.endedByClient = true;
    this.clearIdle();
    this.stream.end();
    if (this.waiting === 0) this.orphan();
  }

  /** `close()`: requests never written are answered with `error`; the rest get their results. */
  shut(error: unknown): void {
    const unsent = new Set(this.backlog);
    this.backlog = [];
    for (const [id, queue] of this.waiters) {
      const kept = queue.filter((waiter) => {
        if (!unsent.has(waiter.request)) return true;
        waiter.answer({ kind: "error", error });
        this.waiting -= 1;
        return false;
      });
      if (kept.length === 0) this.waiters.delete(id);
      else this.waiters.set(id, kept);
    }
    this.end();
  }

  private left(): void {
    this.waiting -= 1;
    if (this.waiting > 0) return;
    if (this.endedByClient) {
      // Nobody waits on an ended stream any more: stop it even if the node does not answer.
      this.stream.cancel();
      this.orphan();
      return;
    }
    this.idleSince = Date.now();
    if (this.idleTimer === undefined && !this.closed) this.armIdle(PIPE_IDLE_MS);
  }

  private armIdle(ms: number): void {
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      if (this.closed || this.waiting > 0) return; // busy again: re-armed when idle next
      const idle = Date.now() - this.idleSince;
      if (idle >= PIPE_IDLE_MS) this.onIdle(this);
      else this.armIdle(PIPE_IDLE_MS - idle);
    }, ms);
    this.idleTimer.unref?.();
  }

  private clearIdle(): void {
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }
}

/** The per-node streams of one client. */
export class TransferPipeline {
  private readonly pipes = new Map<string, Pipe>();
  private closed = false;
  private readonly counters: TransferStats = {
    transfers: 0,
    streamsOpened: 0,
    streamsFailed: 0,
    pipelinedTransfers: 0,
    unaryFallbacks: 0,
    unaryTransfers: 0,
  };

  constructor(
    private readonly transport: PipelineTransport,
    readonly enabled: boolean,
  ) {}

  stats(): TransferStats {
    return { ...this.counters };
  }

  /** Streams open now (for tests). */
  openStreams(): number {
    return this.pipes.size;
  }

  /** One transfer, settled by `deadline` (epoch ms). */
  async transfer(request: TransferRequest, deadline: number): Promise<TransferResponse> {
    this.counters.transfers += 1;
    if (!this.enabled || this.closed) {
      this.counters.unaryTransfers += 1;
      return this.transport.unary(request, deadline);
    }
    const waiting = this.pipelined(request, deadline);
    if (waiting === undefined) {
      // No stream could take it: unary at once.
      this.counters.unaryTransfers += 1;
      return this.transport.unary(request, deadline);
    }
    const answer = await waiting;
    if (answer.kind === "response") return answer.response;
    if (answer.kind === "error") throw answer.error;
    this.counters.unaryFallbacks += 1;
    this.counters.unaryTransfers += 1;
    if (answer.expired || Date.now() >= deadline) {
      const error: WalletError =
        answer.result?.error !== undefined && answer.result.error.code !== 0
          ? itemError(answer.result.error, false)
          : deadlineExceeded("the call's deadline passed while its transfer was pipelined");
      throw error;
    }
    return this.transport.unary(request, deadline);
  }

  /**
   * Ends every stream. Requests not yet written are rejected with `error`; transfers written
   * get their results if the node sends them (or go on unary, which a closed client refuses).
   */
  close(error: Error): void {
    this.closed = true;
    for (const pipe of this.pipes.values()) pipe.shut(error);
    this.pipes.clear();
  }

  /** Down the stream: the answer, or undefined if no stream could take the request. */
  private pipelined(request: TransferRequest, deadline: number): Promise<Answer> | undefined {
    const pipe = this.pipe(this.transport.route(request.fromAccount));
    if (pipe === undefined) return undefined;
    let waiter!: Waiter;
    const answer = new Promise<Answer>((resolve) => {
      waiter = {
        request,
        answer: (a) => {
          if (waiter.timer !== undefined) clearTimeout(waiter.timer);
          resolve(a);
        },
      };
    });
    if (!pipe.send(request, waiter)) return undefined;
    this.counters.pipelinedTransfers += 1;
    const left = deadline - Date.now();
    // The call's own deadline, if it comes first (timers may fire a little early: no unary
    // attempt is made then).
    const expired = left <= this.transport.callTimeoutMs;
    waiter.timer = setTimeout(
      () => {
        pipe.forget(waiter);
        waiter.answer({ kind: "unary", expired });
      },
      Math.max(0, Math.min(this.transport.callTimeoutMs, left)),
    );
    return answer;
  }

  /** The open stream to `endpoint`, or a new one; undefined if none can be opened. */
  private pipe(endpoint: string): Pipe | undefined {
    const open = this.pipes.get(endpoint);
    if (open !== undefined && !open.closed) return open;
    let stream: ClientDuplexStream<TransferRequest, TransferResult>;
    try {
      stream = this.transport.open(endpoint);
    } catch {
      return undefined; // e.g. a bad endpoint from a hint: the unary path reports it
    }
    const pipe = new Pipe(endpoint, stream, (idle) => {
      this.forgetPipe(idle);
      idle.end();
    });
    this.pipes.set(endpoint, pipe);
    this.counters.streamsOpened += 1;
    stream.on("data", (result: TransferResult) => {
      const waiter = pipe.resolve(result);
      if (waiter === undefined) return;
      const answer = definite(result);
      if (answer?.kind === "response") this.transport.setLeader(waiter.request.fromAccount, endpoint);
      waiter.answer(answer ?? { kind: "unary", result });
    });
    stream.on("drain", () => pipe.drain());
    // The status comes once, after every message has been pushed; "error" (any status but
    // OK) comes just before it, and messages may still be buffered then: the waiters are
    // orphaned once those are read ("end"), or at the latest on the next turn of the loop.
    stream.on("error", () => {
      if (!pipe.endedByClient) this.counters.streamsFailed += 1;
    });
    stream.on("status", () => {
      pipe.closed = true;
      this.forgetPipe(pipe);
      setImmediate(() => pipe.orphan());
    });
    stream.on("end", () => {
      pipe.closed = true;
      this.forgetPipe(pipe);
      pipe.orphan();
    });
    return pipe;
  }

  private forgetPipe(pipe: Pipe): void {
    if (this.pipes.get(pipe.endpoint) === pipe) this.pipes.delete(pipe.endpoint);
  }
}
