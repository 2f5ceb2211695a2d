/**
 * The browser entry point, `@wallet-ledger/client/web`: the read API over gRPC-web (the nodes
 * speak it when started with `--grpc-web-origin <the page's origin>`), on `fetch`.
 *
 * - `GrpcWebTransport`: unary calls, and server streams read from the response body frame by
 *   frame as they arrive (`application/grpc-web+proto`, each frame a flag byte, a 4-byte
 *   big-endian length and the bytes; flag 0x80 marks the trailer frame, `grpc-status:0\r\n...`).
 *   The status comes from that frame, or from the headers (a trailers-only answer); a failed
 *   call rejects with a `GrpcWebError`, shaped as @grpc/grpc-js's `ServiceError` (code,
 *   details, metadata with `grpc-status-details-bin` decoded), so the SDK's own `classify`
 *   turns it into the typed `Rejected` / `Indefinite` errors with reason, field and retry delay.
 * - `WebQueryClient`: `getBalance` (the SDK's retry loop, `callWithRetry`) and `watchBalances`
 *   (the SDK's `BalanceWatch`: resumes by itself after the last delivered sequence, on the next
 *   read node, with the same backoff, never skipping or repeating an update).
 *
 * Messages are encoded and decoded with the generated ts-proto codecs (`./gen`). This module
 * imports nothing from @grpc/grpc-js itself; the modules it reuses do (the status codes, and the
 * generated files' Node clients), so the published browser build (`dist/web/index.mjs`, made by
 * `web/build.mjs` with esbuild) replaces that import with `./browser/grpc-js-stub` and checks
 * that nothing of @grpc/grpc-js is in the bundle. See README.md, "Browsers".
 */
import { EventEmitter } from "node:events";

import { status as Code, type ClientReadableStream } from "@grpc/grpc-js";

import { AUTHORIZATION_HEADER, bearer } from "./connection";
import { type MetadataLike, STATUS_DETAILS_KEY } from "./errors";
import {
  BalanceUpdate,
  GetBalanceRequest,
  GetBalanceResponse,
  WatchBalancesRequest,
} from "./gen/wallet/v1/query";
import { DEFAULT_RETRY_POLICY, callWithRetry, validatePolicy, type RetryPolicy } from "./retry";
import { BalanceWatch, type WatchOptions } from "./watch";

export { BalanceWatch, type WatchOptions } from "./watch";
export * from "./errors";
export { DEFAULT_RETRY_POLICY, type RetryPolicy } from "./retry";
export { BalanceUpdate, GetBalanceResponse } from "./gen/wallet/v1/query";
export type { Balance } from "./gen/wallet/v1/query";

/** The content type of gRPC-web with binary protobuf messages. */
export const GRPC_WEB_CONTENT_TYPE = "application/grpc-web+proto";
/** Flag bit of the trailer frame. */
export const TRAILER_FLAG = 0x80;
/** Flag bit of a compressed frame (never asked for: no `grpc-accept-encoding` is sent). */
const COMPRESSED_FLAG = 0x01;
/** The largest frame accepted (a node's default receive limit is 4 MiB). */
export const FRAME_BYTES_MAX = 16 * 1024 * 1024;

/** Metadata (headers and trailers) of a gRPC-web call: names lower-case, `-bin` values decoded. */
export class WebMetadata implements MetadataLike {
  private readonly values = new Map<string, (string | Uint8Array)[]>();

  /** Adds a value as it travels (text; a `-bin` key's base64 is decoded). */
  add(key: string, value: string): void {
    const name = key.trim().toLowerCase();
    const decoded = name.endsWith("-bin") ? base64Decode(value.trim()) : value.trim();
    const list = this.values.get(name);
    if (list === undefined) this.values.set(name, [decoded]);
    else list.push(decoded);
  }

  get(key: string): (string | Uint8Array)[] {
    return this.values.get(key.toLowerCase()) ?? [];
  }

  /** The first text value of `key`, if any. */
  first(key: string): string | undefined {
    const value = this.get(key)[0];
    return typeof value === "string" ? value : undefined;
  }

  /** Adds every value of `other`. */
  merge(other: WebMetadata): this {
    for (const [key, list] of other.values) {
      const mine = this.values.get(key);
      if (mine === undefined) this.values.set(key, [...list]);
      else mine.push(...list);
    }
    return this;
  }

  /** Every key and its values. */
  entries(): [string, (string | Uint8Array)[]][] {
    return [...this.values];
  }
}

/** A failed gRPC-web call, shaped as @grpc/grpc-js's `ServiceError` (so `classify` reads it). */
export class GrpcWebError extends Error {
  override name = "GrpcWebError";

  constructor(
    readonly code: Code,
    readonly details: string,
    readonly metadata: WebMetadata = new WebMetadata(),
  ) {
    super(`${Code[code] ?? code}: ${details}`);
  }
}

/** One frame of a gRPC-web body. */
export interface Frame {
  /** The trailer frame (flag 0x80): `name:value\r\n` lines. */
  trailer: boolean;
  data: Uint8Array;
}

/** Cuts a gRPC-web body into frames, whatever the chunks it arrives in. */
export class FrameParser {
  private buffer: Uint8Array = new Uint8Array(0);

  /** Adds a chunk; returns the frames it completes, in order. */
  push(chunk: Uint8Array): Frame[] {
    if (this.buffer.length === 0) {
      this.buffer = chunk;
    } else {
      const joined = new Uint8Array(this.buffer.length + chunk.length);
      joined.set(this.buffer);
      joined.set(chunk, this.buffer.length);
      this.buffer = joined;
    }
    const frames: Frame[] = [];
    let offset = 0;
    while (this.buffer.length - offset >= 5) {
      const flags = this.buffer[offset];
      const view = new DataView(this.buffer.buffer, this.buffer.byteOffset + offset + 1, 4);
      const length = view.getUint32(0, false);
      if (length > FRAME_BYTES_MAX) {
        throw new GrpcWebError(Code.RESOURCE_EXHAUSTED, `a frame of ${length} bytes (more than ${FRAME_BYTES_MAX})`);
      }
      if (this.buffer.length - offset - 5 < length) break;
      if (flags & COMPRESSED_FLAG) throw new GrpcWebError(Code.INTERNAL, "a compressed frame (none was asked for)");
      // A copy: the frame outlives the buffer it came in.
      const data = this.buffer.slice(offset + 5, offset + 5 + length);
      frames.push({ trailer: (flags & TRAILER_FLAG) !== 0, data });
      offset += 5 + length;
    }
    this.buffer = this.buffer.subarray(offset);
    return frames;
  }

  /** Bytes of an incomplete frame still waiting for the rest. */
  get pending(): number {
    return this.buffer.length;
  }
}

/** One message as a gRPC-web request body (a data frame). */
export function encodeFrame(message: Uint8Array): Uint8Array<ArrayBuffer> {
  const frame = new Uint8Array(5 + message.length);
  new DataView(frame.buffer).setUint32(1, message.length, false);
  frame.set(message, 5);
  return frame;
}

/** The trailer frame's `name:value\r\n` lines into `into`. */
export function parseTrailers(data: Uint8Array, into: WebMetadata = new WebMetadata()): WebMetadata {
  for (const line of new TextDecoder().decode(data).split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) into.add(line.slice(0, colon), line.slice(colon + 1));
  }
  return into;
}

/** Standard or URL-safe base64, padded or not (as `-bin` values may be). */
export function base64Decode(text: string): Uint8Array {
  let b64 = text.replace(/-/g, "+").replace(/_/g, "/").replace(/=+$/, "");
  b64 += "=".repeat((4 - (b64.length % 4)) % 4);
  const binary = atob(b64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** The gRPC code for an HTTP status that came without a gRPC status (the gRPC HTTP mapping). */
export function codeOfHttpStatus(httpStatus: number): Code {
  switch (httpStatus) {
    case 400:
      return Code.INTERNAL;
    case 401:
      return Code.UNAUTHENTICATED;
    case 403:
      return Code.PERMISSION_DENIED;
    case 404:
      return Code.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return Code.UNAVAILABLE;
    default:
      return Code.UNKNOWN;
  }
}

/** The status in `metadata` (`grpc-status`, `grpc-message` percent-decoded), if there is one. */
function statusOf(metadata: WebMetadata): { code: Code; message: string } | undefined {
  const raw = metadata.first("grpc-status");
  if (raw === undefined) return undefined;
  const code = Number.parseInt(raw, 10);
  let message = metadata.first("grpc-message") ?? "";
  try {
    message = decodeURIComponent(message);
  } catch {
    // not percent-encoded after all: as it came
  }
  return { code: (Number.isInteger(code) && code >= 0 && code <= 16 ? code : Code.UNKNOWN) as Code, message };
}

/** Per call: its deadline, a signal to abandon it, extra headers. */
export interface WebCallOptions {
  deadline?: Date;
  signal?: AbortSignal;
  headers?: Record<string, string>;
}

/** The `grpc-timeout` header value for the time left until `deadline`. */
function grpcTimeout(deadline: Date): string {
  return `${Math.max(Math.ceil(deadline.getTime() - Date.now()), 1)}m`;
}

/** What a `GrpcWebTransport` takes. */
export interface TransportOptions {
  /** The fetch to use (default: the global one). */
  fetch?: typeof fetch;
  /** Headers sent on every call (e.g. `authorization`). */
  headers?: Record<string, string>;
}

/**
 * gRPC-web over `fetch`. `baseUrl` is the node's `http(s)://host:port`; `path` the method's,
 * e.g. `/wallet.v1.QueryService/GetBalance`.
 */
export class GrpcWebTransport {
  private readonly fetchImpl: typeof fetch;
  private readonly headers: Record<string, string>;

  constructor(options: TransportOptions = {}) {
    // Bound: a browser's fetch refuses to be called on another `this`.
    this.fetchImpl = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.headers = { ...options.headers };
  }

  /** A unary call: resolves with the decoded response, rejects with a `GrpcWebError`. */
  async unary<Resp>(
    baseUrl: string,
    path: string,
    request: Uint8Array,
    decode: (bytes: Uint8Array) => Resp,
    options: WebCallOptions = {},
  ): Promise<Resp> {
    let response: Resp | undefined;
    let count = 0;
    await this.exchange(baseUrl, path, request, options, (bytes) => {
      count += 1;
      response = decode(bytes);
    });
    if (count !== 1 || response === undefined) {
      throw new GrpcWebError(Code.INTERNAL, `a unary call answered with ${count} messages`);
    }
    return response;
  }

  /**
   * A server-streaming call, as an event emitter shaped like @grpc/grpc-js's
   * `ClientReadableStream`: "data" (each decoded message, as its frame completes), then "end"
   * (status OK) or "error" (a `GrpcWebError`); `cancel()` aborts the request, after which
   * nothing more is emitted. The request is sent at once.
   */
  serverStream<Resp>(
    baseUrl: string,
    path: string,
    request: Uint8Array,
    decode: (bytes: Uint8Array) => Resp,
    options: WebCallOptions = {},
  ): WebStream<Resp> {
    const stream = new WebStream<Resp>();
    const signal = options.signal === undefined ? stream.signal : anySignal([stream.signal, options.signal]);
    // After the listeners the caller attaches right away.
    queueMicrotask(() => {
      this.exchange(baseUrl, path, request, { ...options, signal }, (bytes) => {
        if (!stream.cancelled) stream.emit("data", decode(bytes));
      }).then(
        () => {
          if (!stream.cancelled) stream.emit("end");
        },
        (error: unknown) => {
          if (stream.cancelled) return;
          stream.emit("error", error instanceof GrpcWebError ? error : new GrpcWebError(Code.INTERNAL, String(error)));
        },
      );
    });
    return stream;
  }

  /**
   * Sends one request and reads the answer frame by frame, handing each message's bytes to
   * `onMessage` as it completes; resolves on status OK, rejects with a `GrpcWebError`.
   */
  private async exchange(
    baseUrl: string,
    path: string,
    request: Uint8Array,
    options: WebCallOptions,
    onMessage: (bytes: Uint8Array) => void,
  ): Promise<void> {
    const headers: Record<string, string> = {
      ...this.headers,
      ...options.headers,
      "content-type": GRPC_WEB_CONTENT_TYPE,
      accept: GRPC_WEB_CONTENT_TYPE,
      "x-grpc-web": "1",
      "x-user-agent": "wallet-ledger-client-web/0.1",
    };
    const controller = new AbortController();
    let timedOut = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    if (options.deadline !== undefined) {
      headers["grpc-timeout"] = grpcTimeout(options.deadline);
      timer = setTimeout(
        () => {
          timedOut = true;
          controller.abort();
        },
        Math.max(options.deadline.getTime() - Date.now(), 0),
      );
    }
    const onAbort = () => controller.abort();
    if (options.signal?.aborted) controller.abort();
    options.signal?.addEventListener("abort", onAbort);
    const aborted = (what: string, error: unknown): GrpcWebError => {
      if (timedOut) return new GrpcWebError(Code.DEADLINE_EXCEEDED, "the call's deadline passed");
      if (controller.signal.aborted) return new GrpcWebError(Code.CANCELLED, "cancelled by the client");
      return new GrpcWebError(Code.UNAVAILABLE, `${what}: ${error instanceof Error ? error.message : String(error)}`);
    };
    try {
      let response: Response;
      try {
        response = await this.fetchImpl(`${baseUrl.replace(/\/+$/, "")}${path}`, {
          method: "POST",
          headers,
          body: encodeFrame(request),
          signal: controller.signal,
          credentials: "omit",
        });
      } catch (error) {
        throw aborted("the request failed (node unreachable, or its CORS does not allow this origin)", error);
      }
      const metadata = new WebMetadata();
      response.headers.forEach((value, key) => metadata.add(key, value));
      const headerStatus = statusOf(metadata);
      if (!response.ok) {
        if (headerStatus !== undefined && headerStatus.code !== Code.OK) {
          throw new GrpcWebError(headerStatus.code, headerStatus.message, metadata);
        }
        throw new GrpcWebError(codeOfHttpStatus(response.status), `HTTP ${response.status} ${response.statusText}`.trim(), metadata);
      }
      const parser = new FrameParser();
      let trailers: WebMetadata | undefined;
      if (response.body !== null) {
        const reader = response.body.getReader();
        try {
          for (;;) {
            let chunk: { done: boolean; value?: Uint8Array };
            try {
              chunk = await reader.read();
            } catch (error) {
              throw aborted("the response broke off", error);
            }
            if (chunk.done) break;
            for (const frame of parser.push(chunk.value ?? new Uint8Array(0))) {
              if (frame.trailer) {
                trailers = parseTrailers(frame.data);
              } else if (trailers === undefined) {
                try {
                  onMessage(frame.data);
                } catch (error) {
                  throw new GrpcWebError(Code.INTERNAL, `a message did not decode: ${error instanceof Error ? error.message : String(error)}`);
                }
              }
            }
          }
        } finally {
          reader.releaseLock();
        }
      }
      if (trailers !== undefined) metadata.merge(trailers);
      const status = trailers !== undefined ? statusOf(trailers) : headerStatus;
      if (status === undefined) {
        const why = parser.pending > 0 ? "the response ended inside a frame" : "the response ended without a status";
        throw new GrpcWebError(Code.UNAVAILABLE, why, metadata);
      }
      if (status.code !== Code.OK) throw new GrpcWebError(status.code, status.message, metadata);
    } finally {
      if (timer !== undefined) clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
    }
  }
}

/** A signal aborted when any of `signals` is. */
function anySignal(signals: AbortSignal[]): AbortSignal {
  const controller = new AbortController();
  for (const signal of signals) {
    if (signal.aborted) controller.abort();
    else signal.addEventListener("abort", () => controller.abort(), { once: true });
  }
  return controller.signal;
}

/** A server stream in progress (see `GrpcWebTransport.serverStream`). */
export class WebStream<T> extends EventEmitter {
  private readonly controller = new AbortController();
  cancelled = false;

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Aborts the request; nothing is emitted afterwards. */
  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.controller.abort();
  }

  override on(event: "data", listener: (message: T) => void): this;
  override on(event: "error", listener: (error: GrpcWebError) => void): this;
  override on(event: "end" | "close", listener: () => void): this;
  override on(event: string | symbol, listener: (...args: any[]) => void): this {
    return super.on(event, listener);
  }
}

/** What a `WebQueryClient` takes: the retry policy's fields (each optional) and a token. */
export interface WebQueryClientOptions extends Partial<RetryPolicy> {
  /** A bearer token (from `walletctl token`), sent on every call as `authorization`. */
  token?: string;
  /** The fetch to use (default: the global one). */
  fetch?: typeof fetch;
}

/** `http(s)://host:port` from an endpoint as given (`host:port` means `http://host:port`). */
export function normalizeWebEndpoint(endpoint: string): string {
  let e = endpoint.trim().replace(/\/+$/, "");
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(e)) e = `http://${e}`;
  const url = new URL(e);
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new RangeError(`endpoint ${JSON.stringify(endpoint)}: expected http(s)://host:port`);
  }
  if (url.pathname !== "/" || url.search !== "" || url.hash !== "") {
    throw new RangeError(`endpoint ${JSON.stringify(endpoint)}: expected http(s)://host:port, no path`);
  }
  return `${url.protocol}//${url.host}`;
}

const QUERY_SERVICE = "/wallet.v1.QueryService";

/**
 * The read API of one or more read nodes from a browser, over gRPC-web: the same behaviour as
 * the Node `QueryClient`'s `getBalance` and `watchBalances`, the same typed errors.
 */
export class WebQueryClient {
  readonly policy: RetryPolicy;
  readonly endpoints: readonly string[];
  private readonly transport: GrpcWebTransport;
  private readonly watches = new Set<BalanceWatch>();

  constructor(endpoints: string | readonly string[], options: WebQueryClientOptions = {}) {
    const { token, fetch: fetchImpl, ...policy } = options;
    const retry: RetryPolicy = { ...DEFAULT_RETRY_POLICY };
    for (const key of Object.keys(DEFAULT_RETRY_POLICY) as (keyof RetryPolicy)[]) {
      if (policy[key] !== undefined) retry[key] = policy[key]!;
    }
    this.policy = validatePolicy(retry);
    const list = (typeof endpoints === "string" ? endpoints.split(",") : [...endpoints]).filter((e) => e.trim() !== "");
    if (list.length === 0) throw new RangeError("at least one endpoint is required");
    this.endpoints = [...new Set(list.map(normalizeWebEndpoint))];
    const headers: Record<string, string> = {};
    if (token !== undefined && token !== "") headers[AUTHORIZATION_HEADER] = bearer(token);
    this.transport = new GrpcWebTransport({ fetch: fetchImpl, headers });
  }

  /** The projected balance; with a token from the write API, at least that fresh. */
  getBalance(accountId: string, consistencyToken = ""): Promise<GetBalanceResponse> {
    const request = GetBalanceRequest.encode({ accountId, consistencyToken }).finish();
    return callWithRetry(
      (endpoint, deadline) =>
        this.transport.unary(endpoint, `${QUERY_SERVICE}/GetBalance`, request, (b) => GetBalanceResponse.decode(b), { deadline }),
      this.endpoints,
      this.policy,
    );
  }

  /**
   * The current balance of each account (or, for the accounts in `resumeAfterSequence`, every
   * change after that sequence), then every change as it happens, per account in sequence
   * order; resumes by itself after the last delivered sequence when the stream breaks (see
   * `BalanceWatch`). "data" / `for await`; "error" gets a typed error; `cancel()` ends it.
   */
  watchBalances(
    accountIds: readonly string[],
    resumeAfterSequence: Record<string, string | number | bigint> = {},
    options: WatchOptions = {},
  ): BalanceWatch {
    const ids = [...accountIds];
    const watch = new BalanceWatch(
      (endpoint, resume, deadline) =>
        this.transport.serverStream(
          endpoint,
          `${QUERY_SERVICE}/WatchBalances`,
          WatchBalancesRequest.encode({ accountIds: ids, resumeAfterSequence: resume }).finish(),
          (b) => BalanceUpdate.decode(b),
          { deadline },
        ) as unknown as ClientReadableStream<BalanceUpdate>,
      this.endpoints,
      resumeAfterSequence,
      options,
    );
    this.watches.add(watch);
    watch.on("close", () => this.watches.delete(watch));
    return watch;
  }

  /** Cancels the running watches. */
  close(): void {
    for (const watch of this.watches) watch.cancel();
    this.watches.clear();
  }
}
