/** Clients of the write nodes (`WalletService`) and of a read node (`QueryService`). */
import { randomUUID } from "node:crypto";

import { type ClientDuplexStream, type Metadata, type ServiceError } from "@grpc/grpc-js";

import { Connection, type ConnectionOptions } from "./connection";
import { Indefinite, Rejected, WalletError, itemError } from "./errors";
import { ClusterServiceClient, type GetClusterStatusResponse } from "./gen/wallet/v1/cluster";
import {
  type Balance,
  type GetBalanceResponse,
  type HistoryEntry,
  type ListTransfersResponse,
  QueryServiceClient,
} from "./gen/wallet/v1/query";
import {
  type Account,
  type AuthorizeTransferRequest,
  type GetAccountResponse,
  type HoldResponse,
  type OpenAccountRequest,
  type OpenAccountResult,
  type SetOverdraftLimitRequest,
  type Transfer,
  type TransferLegsRequest,
  type TransferRequest,
  type TransferResponse,
  type TransferResult,
  WalletServiceClient,
} from "./gen/wallet/v1/wallet";
import { TransferPipeline, type TransferStats } from "./pipeline";
import { callWithRetry, type RetryPolicy } from "./retry";
import { BalanceWatch, TransferWatch, type WatchOptions } from "./watch";

/** Clients kept for nodes learnt from leader hints rather than configured. */
export const DISCOVERED_ENDPOINTS_MAX = 16;
/** Routing keys (accounts) whose last known leader is remembered. */
export const LEADER_CACHE_MAX = 4096;

/**
 * A fresh idempotency key: a random UUID in canonical form. Make one per intended transfer
 * and keep it for every retry.
 */
export function newTransactionId(): string {
  return randomUUID();
}

/** Options of a `WalletClient`: the connection's, the retry policy's, and pipelining. */
export interface WalletClientOptions extends ConnectionOptions {
  /**
   * Send concurrent `transfer()` calls down one shared `SubmitTransfers` stream per node
   * (default true). false: every transfer is a unary `Transfer` call.
   */
  pipelineTransfers?: boolean;
}

/** Options of a `QueryClient`. */
export type QueryClientOptions = ConnectionOptions;

/** One transfer: the fields of a `TransferRequest`. */
export interface TransferParams {
  /** The idempotency key (`newTransactionId()`): keep it until the outcome is known. */
  transactionId: string;
  /** The account debited (also the routing key: its partition's leader gets the call). */
  fromAccount: string;
  /** The account credited. */
  toAccount: string;
  /** Decimal string in the currency's major unit, e.g. "12.34". */
  amount: string;
  /** ISO 4217 code, the currency of both accounts. */
  currency: string;
  /**
   * Optional: the caller's own reference (an order or invoice number), stored with the
   * transfer and returned by `getTransfer`, `watchTransfer` and `listTransfers`. At most 128
   * bytes without control characters (else `Rejected` INVALID_ARGUMENT INVALID_REFERENCE).
   */
  reference?: string;
  /**
   * Optional string metadata, stored and returned like `reference`: at most 16 entries, keys of
   * 1 to 64 characters from [A-Za-z0-9_.:-], values of at most 512 bytes without control
   * characters, 4096 bytes in all (else `Rejected` INVALID_ARGUMENT INVALID_METADATA). Part of
   * the request: a retry must repeat it (the same id with other metadata is TRANSACTION_ID_REUSED).
   */
  metadata?: Readonly<Record<string, string>>;
}

/** The `TransferRequest` of one transfer (`reference` and `metadata` empty when not given). */
export function transferRequest(t: TransferParams): TransferRequest {
  return {
    transactionId: t.transactionId,
    fromAccount: t.fromAccount,
    toAccount: t.toAccount,
    amount: t.amount,
    currency: t.currency,
    reference: t.reference ?? "",
    metadata: metadataOf(t.metadata),
  };
}

/** A copy of `metadata` ({} when absent), refusing what is not an object of strings. */
function metadataOf(metadata: Readonly<Record<string, string>> | undefined): { [key: string]: string } {
  if (metadata === undefined || metadata === null) return {};
  if (typeof metadata !== "object" || Array.isArray(metadata) || metadata instanceof Map) {
    throw new TypeError("metadata must be a plain object of string keys and string values");
  }
  const copy: { [key: string]: string } = {};
  for (const [key, value] of Object.entries(metadata)) {
    if (typeof value !== "string") throw new TypeError(`metadata value of "${key}" must be a string, got ${typeof value}`);
    copy[key] = value;
  }
  return copy;
}

/** One leg of a multi-leg transfer (`transferLegs`): the fields of a `TransferLeg`. */
export interface TransferLegParams {
  /** The account debited (the first leg's is the routing key). */
  fromAccount: string;
  /** The account credited. */
  toAccount: string;
  /** Decimal string in the currency's major unit, e.g. "12.34". */
  amount: string;
  /** ISO 4217 code; every leg of a set has the same. */
  currency: string;
}

/** A multi-leg transfer (`transferLegs`): the fields of a `TransferLegsRequest`. */
export interface TransferLegsParams {
  /**
   * The idempotency key (`newTransactionId()`), shared with transfers and holds; omitted, the
   * client makes one (a UUID), found on the response's `transactionId` and on the error's.
   */
  transactionId?: string;
  /** 1 to 64 legs, applied in this order, no two with the same fromAccount and toAccount. */
  legs: readonly TransferLegParams[];
  /** Optional: as `TransferParams.reference`, one for the whole set. */
  reference?: string;
  /** Optional: as `TransferParams.metadata`, one for the whole set. */
  metadata?: Readonly<Record<string, string>>;
}

/**
 * The `TransferLegsRequest` of a multi-leg transfer: the legs copied in the order given, a
 * fresh `transactionId` when none is given, `reference` and `metadata` empty when not given.
 */
export function transferLegsRequest(p: TransferLegsParams): TransferLegsRequest {
  if (!Array.isArray(p.legs)) throw new TypeError("legs must be an array of { fromAccount, toAccount, amount, currency }");
  return {
    transactionId: p.transactionId ?? newTransactionId(),
    legs: p.legs.map((leg: TransferLegParams) => {
      if (typeof leg !== "object" || leg === null) throw new TypeError(`a leg must be an object, got ${leg === null ? "null" : typeof leg}`);
      return { fromAccount: leg.fromAccount, toAccount: leg.toAccount, amount: leg.amount, currency: leg.currency };
    }),
    reference: p.reference ?? "",
    metadata: metadataOf(p.metadata),
  };
}

/**
 * One hold to authorize (`authorizeTransfer`): a transfer's fields plus `timeoutMs`, how long
 * the hold lasts from its authorization, in milliseconds (a whole number, 1 ms to 30 days;
 * otherwise the node refuses it, HOLD_TIMEOUT_OUT_OF_RANGE).
 */
export interface AuthorizeParams extends TransferParams {
  timeoutMs: number;
}

/** A capture (`captureTransfer`): the hold's id and account, and `amount` (omitted: all of it). */
export interface CaptureParams {
  transactionId: string;
  /** The hold's source account (the routing key). */
  fromAccount: string;
  /** Decimal string, at most the held amount; omitted or "" captures the whole hold. */
  amount?: string;
}

/** A void (`voidTransfer`): the hold's id and account. */
export interface VoidParams {
  transactionId: string;
  /** The hold's source account (the routing key). */
  fromAccount: string;
}

/** The account a lifecycle call (`method`) answered with; an answer without one is malformed. */
function changedAccount(method: string, account: Account | undefined): Account {
  if (account === undefined) throw new Error(`${method} answered without an account`);
  return account;
}

/** A `google.protobuf.Duration` of `ms` milliseconds (a finite number >= 0). */
export function durationOfMs(ms: number): { seconds: string; nanos: number } {
  if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`a duration must be a finite number of ms >= 0, got ${ms}`);
  const whole = Math.floor(ms);
  return { seconds: String(Math.floor(whole / 1000)), nanos: (whole % 1000) * 1_000_000 + Math.round((ms - whole) * 1_000_000) };
}

/** One account to open (`openAccount`, `openAccounts`): the fields of an `OpenAccountRequest`. */
export interface OpenAccountParams {
  accountId: string;
  currency: string;
  allowNegativeBalance?: boolean;
  /**
   * Optional: the caller's own reference for the account (a customer number), set when it is
   * opened and never changed, returned by every read of it (`Account.reference`, and the read
   * node's `Balance.reference`). The limits of `TransferParams.reference` (else `Rejected`
   * INVALID_ARGUMENT INVALID_REFERENCE, and no account is opened).
   */
  reference?: string;
  /**
   * Optional string metadata, set and returned like `reference`, with the limits of
   * `TransferParams.metadata` (else `Rejected` INVALID_ARGUMENT INVALID_METADATA). Opening an
   * existing account again with another reference or other metadata is `Rejected`
   * ALREADY_EXISTS ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS, like another currency.
   */
  metadata?: Readonly<Record<string, string>>;
}

/** The `OpenAccountRequest` of one account (`reference` and `metadata` empty when not given). */
export function openAccountRequest(a: OpenAccountParams): OpenAccountRequest {
  return {
    accountId: a.accountId,
    currency: a.currency,
    allowNegativeBalance: a.allowNegativeBalance ?? false,
    reference: a.reference ?? "",
    metadata: metadataOf(a.metadata),
  };
}

/** One page of `listTransfers`. */
export interface ListTransfersParams {
  accountId: string;
  /** A previous page's `nextPageToken`; "" (default) for the newest entries. */
  pageToken?: string;
  /** 0 (default) is the read node's default; above its maximum is INVALID_ARGUMENT. */
  pageSize?: number;
  /** Only entries committed at or after this time (keep it when following the pages). */
  startTime?: Date;
  /** Only entries committed before this time. */
  endTime?: Date;
}

/** A point in an account's past: a position token of its partition, or a time. */
export type BalanceAtPoint = { position: string } | { timestampMs: number | string };

/** Which node `getClusterStatus` asks, and whether to hash each partition's state. */
export interface ClusterStatusParams {
  /** A node; default: the first configured one that answers. */
  endpoint?: string;
  /** Costly (hashes the whole state); needs the admin scope on a secured node. */
  includeStateDigest?: boolean;
}

function clusterStatus(
  endpoints: readonly string[],
  client: (endpoint: string) => ClusterServiceClient,
  connection: Connection,
  params: ClusterStatusParams,
): Promise<GetClusterStatusResponse> {
  const targets = params.endpoint ? [connection.normalize(params.endpoint)] : endpoints;
  return callWithRetry(
    (endpoint, deadline) => {
      const c = client(endpoint);
      return unary(
        c.getClusterStatus.bind(c),
        { includeStateDigest: params.includeStateDigest ?? false },
        connection.metadata(),
        deadline,
      );
    },
    targets,
    connection.policy,
  );
}

/** One generated client per node, made on first use; closed together. */
class Clients<C extends { close(): void }> {
  readonly endpoints: string[];
  private readonly clients = new Map<string, C>();
  private closed = false;

  constructor(
    endpoints: readonly string[],
    normalize: (endpoint: string) => string,
    private readonly make: (address: string) => C,
  ) {
    this.endpoints = [...new Set(endpoints.map(normalize))];
    if (this.endpoints.length === 0) throw new RangeError("at least one endpoint is required");
  }

  get(endpoint: string): C {
    if (this.closed) throw new Error("the client is closed");
    let client = this.clients.get(endpoint);
    if (client === undefined) {
      client = this.make(endpoint);
      if (this.clients.size < this.endpoints.length + DISCOVERED_ENDPOINTS_MAX) {
        this.clients.set(endpoint, client);
      }
    }
    return client;
  }

  /** Closes every connection; calls made (or retried) afterwards fail at once. */
  close(): void {
    this.closed = true;
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
}

type Unary<Req, Resp> = (
  request: Req,
  metadata: Metadata,
  options: { deadline: Date },
  callback: (error: ServiceError | null, response: Resp) => void,
) => unknown;

/** One attempt of a unary call, as a promise. */
function unary<Req, Resp>(method: Unary<Req, Resp>, request: Req, metadata: Metadata, deadline: Date): Promise<Resp> {
  return new Promise((resolve, reject) => {
    method(request, metadata, { deadline }, (error, response) => (error ? reject(error) : resolve(response)));
  });
}

/** The options argument, or a full `RetryPolicy` as earlier versions took. */
function optionsOf<O extends ConnectionOptions>(options: O | RetryPolicy | undefined): O {
  return (options ?? {}) as O;
}

/**
 * The write API with routing and retries. Writes go to the account's partition leader, learnt
 * from NOT_LEADER hints; calls whose outcome is unknown are retried with the same request
 * (same transaction_id) under `policy`. Concurrent `transfer()` calls are pipelined
 * transparently (one `SubmitTransfers` stream per node; see README.md, "Pipelining").
 */
export class WalletClient {
  readonly policy: RetryPolicy;
  private readonly connection: Connection;
  private readonly clients: Clients<WalletServiceClient>;
  private readonly leaders = new Map<string, string>();
  private readonly pipeline: TransferPipeline;
  private readonly clusterClients: Clients<ClusterServiceClient>;

  constructor(endpoints: readonly string[], options?: WalletClientOptions | RetryPolicy) {
    const opts = optionsOf<WalletClientOptions>(options);
    this.connection = new Connection(opts);
    this.policy = this.connection.policy;
    const { credentials, channelOptions } = this.connection;
    this.clients = new Clients(
      endpoints,
      (e) => this.connection.normalize(e),
      (a) => new WalletServiceClient(a, credentials, channelOptions),
    );
    this.clusterClients = new Clients(
      endpoints,
      (e) => this.connection.normalize(e),
      (a) => new ClusterServiceClient(a, credentials, channelOptions),
    );
    // Given every write node, the client routes by leader hints (a hop fewer); given one
    // address (a Service, a port-forward, a load balancer), the nodes forward.
    this.connection.routesItself = this.clients.endpoints.length > 1;
    if (opts.pipelineTransfers !== undefined && typeof opts.pipelineTransfers !== "boolean") {
      throw new RangeError("pipelineTransfers must be a boolean");
    }
    this.pipeline = new TransferPipeline(
      {
        route: (key) => this.leaders.get(key) ?? this.clients.endpoints[0],
        open: (endpoint) => this.clients.get(endpoint).submitTransfers(this.connection.metadata()),
        unary: (request, deadline) => this.call((c) => c.transfer, request, request.fromAccount, deadline),
        setLeader: (key, endpoint) => this.setLeader(key, endpoint),
        callTimeoutMs: this.policy.callTimeoutMs,
      },
      opts.pipelineTransfers ?? true,
    );
  }

  /**
   * Closes the connections and ends the transfer streams, so Node can exit. Transfers not
   * yet written to a stream are rejected; those written get the node's answer if it comes
   * before the connection closes, and none is retried.
   */
  close(): void {
    this.pipeline.close(new Error("WalletClient closed before the transfer was sent"));
    this.clients.close();
    this.clusterClients.close();
  }

  /** Counters of `transfer()` calls, the streams that carried them and the unary fallbacks. */
  stats(): TransferStats {
    return this.pipeline.stats();
  }

  /** The node last seen leading `routingKey`'s partition (an account id), if known. */
  leader(routingKey: string): string | undefined {
    return this.leaders.get(routingKey);
  }

  private setLeader(routingKey: string, endpoint: string): void {
    if (this.leaders.size >= LEADER_CACHE_MAX && !this.leaders.has(routingKey)) this.leaders.clear();
    this.leaders.set(routingKey, endpoint);
  }

  private call<Req, Resp>(
    pick: (client: WalletServiceClient) => Unary<Req, Resp>,
    request: Req,
    routingKey = "",
    deadline?: number,
  ): Promise<Resp> {
    return callWithRetry(
      (endpoint, attemptDeadline) => {
        const client = this.clients.get(endpoint);
        return unary(pick(client).bind(client), request, this.connection.metadata(), attemptDeadline);
      },
      this.clients.endpoints,
      this.policy,
      {
        first: routingKey ? this.leaders.get(routingKey) : undefined,
        deadline,
        onSuccess: routingKey ? (endpoint) => this.setLeader(routingKey, endpoint) : undefined,
      },
    );
  }

  /**
   * Opens a single-currency account; the same call again is a no-op success, with other
   * parameters it is `Rejected` (ALREADY_EXISTS ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS).
   * Optional `reference` and `metadata` are set when the account is opened and returned by
   * every read of it (see `OpenAccountParams`): `openAccount({ accountId, currency, reference,
   * metadata })`.
   */
  openAccount(account: OpenAccountParams): Promise<Account>;
  openAccount(accountId: string, currency: string, allowNegativeBalance?: boolean): Promise<Account>;
  async openAccount(first: OpenAccountParams | string, currency?: string, allowNegativeBalance = false): Promise<Account> {
    const request = openAccountRequest(
      typeof first === "string" ? { accountId: first, currency: currency!, allowNegativeBalance } : first,
    );
    return this.openAccountWith(request);
  }

  private async openAccountWith(request: OpenAccountRequest): Promise<Account> {
    const response = await this.call((c) => c.openAccount, request, request.accountId);
    if (response.account === undefined) throw new Error("OpenAccount answered without an account");
    return response.account;
  }

  /**
   * Moves `amount` (a decimal string, e.g. "12.34") and resolves once the transfer is final.
   * `transactionId` (from `newTransactionId()`) is the idempotency key: keep it until the
   * outcome is known. Every automatic retry sends it again, and so should yours after an
   * `Indefinite` error: a retry returns the original outcome and never pays twice.
   * Concurrent calls share one `SubmitTransfers` stream per node; each still gets its own
   * outcome and error, as soon as its transfer is final, within its own deadline
   * (`totalDeadlineMs`); without a definite outcome from the stream it goes on unary.
   * Optional `reference` and `metadata` are stored with the transfer (see `TransferParams`).
   */
  transfer(transfer: TransferParams): Promise<TransferResponse>;
  /** @deprecated Pass one object: `transfer({ transactionId, fromAccount, toAccount, amount, currency })`. */
  transfer(
    transactionId: string,
    fromAccount: string,
    toAccount: string,
    amount: string,
    currency: string,
  ): Promise<TransferResponse>;
  transfer(
    first: TransferParams | string,
    fromAccount?: string,
    toAccount?: string,
    amount?: string,
    currency?: string,
  ): Promise<TransferResponse> {
    const t: TransferParams =
      typeof first === "string"
        ? { transactionId: first, fromAccount: fromAccount!, toAccount: toAccount!, amount: amount!, currency: currency! }
        : first;
    return this.pipeline.transfer(transferRequest(t), Date.now() + this.policy.totalDeadlineMs);
  }

  /**
   * A multi-leg transfer (`TransferLegs`): 1 to 64 legs, all in one currency, that move money
   * all together or not at all, applied in the order given; resolves once it is final, like
   * `transfer()` (`status` "success", `transactionId`, `consistencyToken`, `replayed`). A
   * refusal moves nothing.
   *
   * `transactionId` is the idempotency key; omitted, the client makes one (a UUID), returned
   * as the response's `transactionId` and, on failure, as the error's `transactionId`. Every
   * automatic retry sends the same request, id included, and so should yours after an
   * `Indefinite` error: the same id and legs answer the original outcome (`replayed`); the same
   * id with other legs (or a transfer or hold under it) is `Rejected` ALREADY_EXISTS
   * TRANSACTION_ID_REUSED. Optional `reference` and `metadata`, one of each for the whole set,
   * as for `transfer()`.
   *
   * Routed to the leader of the partition of the first leg's `fromAccount` and retried like the
   * unary `Transfer` (the same request again; it does not go down the `SubmitTransfers`
   * stream). Refusals are `Rejected`; a refusal of one leg (e.g. FAILED_PRECONDITION
   * INSUFFICIENT_FUNDS, or INVALID_ARGUMENT INVALID_AMOUNT with `field` "legs")
   * names the index of the first leg refused, 0-based, as the error's `leg` (`ErrorInfo`
   * metadata "leg"). The whole set is refused as INVALID_ARGUMENT (field "legs")
   * LEGS_OUT_OF_RANGE (no legs, more than 64), REPEATED_LEG (two legs with the same fromAccount
   * and toAccount: merge them) or MIXED_CURRENCIES.
   *
   * A set may span partitions. It is applied all or none, step by step: every partition's part
   * is checked and its debits taken first, then the home partition (that of the first leg's
   * `fromAccount`) decides, then every part is resolved; the answer comes once every part is. A
   * refusal by any part refuses the whole set with that part's reason and `leg`, and nothing
   * moves anywhere. The `consistencyToken` names a position in every partition the set touches
   * (a retry's may name other ones than the first answer's). Nodes before 0.3, which did not
   * move sets across partitions, refuse such a set as FAILED_PRECONDITION LEGS_SPAN_PARTITIONS.
   */
  async transferLegs(params: TransferLegsParams): Promise<TransferResponse> {
    const request = transferLegsRequest(params);
    try {
      return await this.call((c) => c.transferLegs, request, request.legs[0]?.fromAccount ?? "");
    } catch (error) {
      if (error instanceof WalletError) error.transactionId = request.transactionId;
      throw error;
    }
  }

  /**
   * Holds `amount` on `fromAccount` for `timeoutMs`: the account's available amount drops,
   * its balance does not, until the hold is captured (`captureTransfer`), voided
   * (`voidTransfer`) or expires. Resolves to the hold (`transfer`, status PENDING,
   * `hold.expiresAt`) and `replayed`. Routed to the leader of `fromAccount`'s partition and
   * retried like `transfer()` (unary; the same `transactionId` answers the original hold).
   * Optional `reference` and `metadata` as for `transfer()`: the hold keeps them.
   */
  authorizeTransfer(params: AuthorizeParams): Promise<HoldResponse> {
    const request: AuthorizeTransferRequest = {
      transactionId: params.transactionId,
      fromAccount: params.fromAccount,
      toAccount: params.toAccount,
      amount: params.amount,
      currency: params.currency,
      timeout: durationOfMs(params.timeoutMs),
      reference: params.reference ?? "",
      metadata: metadataOf(params.metadata),
    };
    return this.call((c) => c.authorizeTransfer, request, params.fromAccount);
  }

  /**
   * Moves `amount` (omitted: all of it) of the hold `transactionId` of `fromAccount` to its
   * target and releases the rest, exactly once (a retry with the same amount answers the
   * capture, `replayed`). Refusals are `Rejected` with the reason: HOLD_NOT_FOUND,
   * CAPTURE_EXCEEDS_HOLD, HOLD_ALREADY_CAPTURED, HOLD_ALREADY_VOIDED, HOLD_EXPIRED, ...
   */
  captureTransfer(params: CaptureParams): Promise<HoldResponse> {
    const request = { transactionId: params.transactionId, fromAccount: params.fromAccount, amount: params.amount ?? "" };
    return this.call((c) => c.captureTransfer, request, params.fromAccount);
  }

  /**
   * Releases the pending hold `transactionId` of `fromAccount` (status VOIDED); a retry answers
   * the void (`replayed`). `Rejected` HOLD_ALREADY_CAPTURED after a capture, HOLD_EXPIRED after
   * the expiry, ...
   */
  voidTransfer(params: VoidParams): Promise<HoldResponse> {
    const request = { transactionId: params.transactionId, fromAccount: params.fromAccount };
    return this.call((c) => c.voidTransfer, request, params.fromAccount);
  }

  /**
   * Freezes `accountId` (`FreezeAccount`): until unfrozen it neither sends nor receives (a
   * transfer from or to it, a hold from it, a capture touching it are `Rejected`
   * ACCOUNT_FROZEN). Resolves to the account after the change (`status`
   * `wallet.AccountStatus.ACCOUNT_STATUS_FROZEN`). Idempotent by effect (freezing a frozen account
   * answers it unchanged), so it is routed to the leader of the account's partition and
   * retried like `openAccount()`. `Rejected` ACCOUNT_NOT_FOUND, ACCOUNT_CLOSED; needs the
   * admin scope when the nodes check tokens.
   */
  async freezeAccount(accountId: string): Promise<Account> {
    const response = await this.call((c) => c.freezeAccount, { accountId }, accountId);
    return changedAccount("FreezeAccount", response.account);
  }

  /** Unfreezes `accountId` (`UnfreezeAccount`; status back to ACTIVE). Idempotent, routed and retried like `freezeAccount()`. */
  async unfreezeAccount(accountId: string): Promise<Account> {
    const response = await this.call((c) => c.unfreezeAccount, { accountId }, accountId);
    return changedAccount("UnfreezeAccount", response.account);
  }

  /**
   * Closes `accountId` for good (`CloseAccount`; status CLOSED): afterwards it neither sends nor
   * receives (ACCOUNT_CLOSED) and stays readable. Only at a zero balance (else `Rejected`
   * ACCOUNT_NOT_EMPTY), with no pending hold from it (ACCOUNT_HAS_PENDING_HOLDS) and no
   * cross-partition transfer from it in flight (ACCOUNT_HAS_TRANSFERS_IN_FLIGHT: call again
   * shortly). Idempotent, routed and retried like `freezeAccount()`.
   */
  async closeAccount(accountId: string): Promise<Account> {
    const response = await this.call((c) => c.closeAccount, { accountId }, accountId);
    return changedAccount("CloseAccount", response.account);
  }

  /**
   * Sets how far below zero the ordinary account `accountId` may go (`SetOverdraftLimit`):
   * `overdraftLimit` is a decimal string in `currency`, the account's ("50.00"; "0" for none,
   * the default). A transfer or hold is then `Rejected` INSUFFICIENT_FUNDS only beyond
   * `available` plus the limit. Resolves to the account (`overdraftLimit` set). `Rejected`
   * OVERDRAFT_UNLIMITED for an account opened with `allowNegativeBalance`, CURRENCY_MISMATCH
   * for another currency, INVALID_AMOUNT / AMOUNT_OUT_OF_RANGE for a bad limit. Idempotent,
   * routed and retried like `freezeAccount()`.
   */
  async setOverdraftLimit(accountId: string, overdraftLimit: string, currency: string): Promise<Account> {
    const request: SetOverdraftLimitRequest = { accountId, overdraftLimit, currency };
    const response = await this.call((c) => c.setOverdraftLimit, request, accountId);
    return changedAccount("SetOverdraftLimit", response.account);
  }

  /** The authoritative account, read linearizably, with the position it reflects. */
  getAccount(accountId: string): Promise<GetAccountResponse> {
    return this.call((c) => c.getAccount, { accountId });
  }

  /** A transfer's status and outcome; `Rejected` NOT_FOUND if the id is unknown. */
  async getTransfer(transactionId: string): Promise<Transfer> {
    const response = await this.call((c) => c.getTransfer, { transactionId });
    if (response.transfer === undefined) throw new Error("GetTransfer answered without a transfer");
    return response.transfer;
  }

  /**
   * Decides 1 to 1,024 transfers in one `TransferBatch` call (each on its own, as `transfer()`
   * would: a batch is not atomic) and resolves to one outcome per transfer, in order: its
   * `TransferResponse`, or its typed error (`Rejected`; `Indefinite` if even the retries left
   * it unknown). The batch goes to the known leader of its first item's source and is retried
   * whole, same ids, when its outcome is unknown; items answered "unavailable" (another node
   * leads their source partition) then go through the unary `Transfer` retry loop with the
   * same id. Rejects only when the batch as a whole failed (e.g. an empty or oversized batch).
   */
  async transferBatch(transfers: readonly TransferParams[]): Promise<(TransferResponse | WalletError)[]> {
    const requests: TransferRequest[] = transfers.map(transferRequest);
    const response = await this.call((c) => c.transferBatch, { transfers: requests }, requests[0]?.fromAccount ?? "");
    if (response.results.length !== requests.length) {
      throw new Indefinite(
        {
          code: 13,
          message: `${response.results.length} results for ${requests.length} transfers`,
          reason: "MALFORMED_RESPONSE",
          domain: "",
          metadata: {},
          fieldViolations: [],
        },
        "MALFORMED_RESPONSE",
      );
    }
    return Promise.all(
      response.results.map(async (result, i): Promise<TransferResponse | WalletError> => {
        const request = requests[i];
        if (result.status === "success") {
          return {
            status: "success",
            transactionId: result.transactionId || request.transactionId,
            consistencyToken: result.consistencyToken,
            replayed: result.replayed,
          };
        }
        if (result.status === "rejected" && result.error !== undefined) return itemError(result.error, true, result.replayed);
        try {
          return await this.call((c) => c.transfer, request, request.fromAccount);
        } catch (error) {
          if (error instanceof Rejected || error instanceof Indefinite) return error;
          throw error;
        }
      }),
    );
  }

  /**
   * Opens many accounts through one `OpenAccounts` stream and resolves to one outcome per
   * account, in order: the `Account`, or its typed error. Items the stream answers
   * "unavailable" (another node leads their partition, or the stream broke) go through
   * `openAccount()`'s retry loop: reopening an open account with the same parameters is safe.
   * Each item may carry its own `reference` and `metadata`.
   */
  async openAccounts(accounts: readonly OpenAccountParams[]): Promise<(Account | WalletError)[]> {
    const requests: OpenAccountRequest[] = accounts.map(openAccountRequest);
    const outcomes: (Account | WalletError | undefined)[] = requests.map(() => undefined);
    const pending = new Map<string, number[]>();
    requests.forEach((r, i) => pending.set(r.accountId, [...(pending.get(r.accountId) ?? []), i]));
    const endpoint = (requests.length > 0 ? this.leaders.get(requests[0].accountId) : undefined) ?? this.clients.endpoints[0];
    await new Promise<void>((resolve) => {
      let stream: ClientDuplexStream<OpenAccountRequest, OpenAccountResult>;
      try {
        stream = this.clients
          .get(endpoint)
          .openAccounts(this.connection.metadata(), { deadline: new Date(Date.now() + this.policy.totalDeadlineMs) });
      } catch {
        resolve();
        return;
      }
      stream.on("data", (result: OpenAccountResult) => {
        const indexes = pending.get(result.accountId);
        if (indexes === undefined || indexes.length === 0 || result.status === "unavailable") return;
        const i = indexes.shift()!;
        if (result.status === "success" && result.account !== undefined) {
          outcomes[i] = result.account;
          this.setLeader(result.accountId, endpoint);
        } else if (result.error !== undefined) {
          outcomes[i] = itemError(result.error, result.status === "rejected");
        }
      });
      stream.on("error", () => resolve()); // the rest goes unary
      stream.on("end", () => resolve());
      for (const request of requests) stream.write(request);
      stream.end();
    });
    return Promise.all(
      outcomes.map(async (outcome, i) => {
        if (outcome !== undefined) return outcome;
        const r = requests[i];
        try {
          return await this.openAccountWith(r);
        } catch (error) {
          if (error instanceof Rejected || error instanceof Indefinite) return error;
          throw error;
        }
      }),
    );
  }

  /**
   * Opens a raw `SubmitTransfers` stream (the high-throughput path) to `endpoint` (default: the
   * first configured): write `TransferRequest`s, end() when done, read `TransferResult`s as
   * transfers become final, in any order. Nothing is retried: items another node leads come
   * back "unavailable" (send those through `transfer()`); `itemError` decodes a result's
   * error, `classify` the stream's. `transfer()` already pipelines concurrent calls down such
   * streams; this is for callers that manage their own.
   */
  submitTransfers(endpoint?: string): ClientDuplexStream<TransferRequest, TransferResult> {
    const target = endpoint ? this.connection.normalize(endpoint) : this.clients.endpoints[0];
    return this.clients.get(target).submitTransfers(this.connection.metadata());
  }

  /** What a write node knows about the cluster (`ClusterService`). */
  getClusterStatus(params: ClusterStatusParams = {}): Promise<GetClusterStatusResponse> {
    return clusterStatus(this.clients.endpoints, (e) => this.clusterClients.get(e), this.connection, params);
  }
}

/** The read API of one or more read nodes (all fold the same log, so any will do). */
export class QueryClient {
  readonly policy: RetryPolicy;
  private readonly connection: Connection;
  private readonly clients: Clients<QueryServiceClient>;
  private readonly clusterClients: Clients<ClusterServiceClient>;

  constructor(endpoints: readonly string[], options?: QueryClientOptions | RetryPolicy) {
    this.connection = new Connection(optionsOf<QueryClientOptions>(options));
    this.policy = this.connection.policy;
    const { credentials, channelOptions } = this.connection;
    this.clients = new Clients(
      endpoints,
      (e) => this.connection.normalize(e),
      (a) => new QueryServiceClient(a, credentials, channelOptions),
    );
    this.clusterClients = new Clients(
      endpoints,
      (e) => this.connection.normalize(e),
      (a) => new ClusterServiceClient(a, credentials, channelOptions),
    );
  }

  /** Closes the connections (running watches fail with an `Indefinite` error or end). */
  close(): void {
    this.clients.close();
    this.clusterClients.close();
  }

  private call<Req, Resp>(pick: (client: QueryServiceClient) => Unary<Req, Resp>, request: Req): Promise<Resp> {
    return callWithRetry(
      (endpoint, deadline) => {
        const client = this.clients.get(endpoint);
        return unary(pick(client).bind(client), request, this.connection.metadata(), deadline);
      },
      this.clients.endpoints,
      this.policy,
    );
  }

  /**
   * One page of the account's balance changes (one per transfer that moved its money), newest
   * first; `nextPageToken` ("" on the last page) asks for the next.
   */
  listTransfers(params: ListTransfersParams): Promise<ListTransfersResponse> {
    return this.call((c) => c.listTransfers, {
      accountId: params.accountId,
      pageToken: params.pageToken ?? "",
      pageSize: params.pageSize ?? 0,
      startTime: params.startTime,
      endTime: params.endTime,
    });
  }

  /**
   * Every balance change of the account, newest first, fetching page after page as the
   * iteration goes (`for await`); history is append-only, so the pages are stable.
   */
  async *iterateTransfers(accountId: string, pageSize = 0): AsyncGenerator<HistoryEntry, void, undefined> {
    let pageToken = "";
    for (;;) {
      const page = await this.listTransfers({ accountId, pageToken, pageSize });
      yield* page.entries;
      if (page.nextPageToken === "") return;
      pageToken = page.nextPageToken;
    }
  }

  /**
   * The account as of a past point: `{ position }` (a position token of its partition: the
   * balance right after that entry) or `{ timestampMs }` (milliseconds since the Unix epoch:
   * the balance after the last change at or before it).
   */
  async getBalanceAt(accountId: string, at: BalanceAtPoint): Promise<Balance> {
    const request =
      "position" in at
        ? { accountId, position: at.position }
        : { accountId, timestampMs: String(at.timestampMs) };
    const response = await this.call((c) => c.getBalanceAt, request);
    if (response.balance === undefined) throw new Error("GetBalanceAt answered without a balance");
    return response.balance;
  }

  /** What a read node knows about the cluster (`ClusterService`). */
  getClusterStatus(params: ClusterStatusParams = {}): Promise<GetClusterStatusResponse> {
    return clusterStatus(this.clients.endpoints, (e) => this.clusterClients.get(e), this.connection, params);
  }

  /** The projected balance; with a token from the write API, at least that fresh. */
  getBalance(accountId: string, consistencyToken = ""): Promise<GetBalanceResponse> {
    return callWithRetry(
      (endpoint, deadline) => {
        const client = this.clients.get(endpoint);
        return unary(
          client.getBalance.bind(client),
          { accountId, consistencyToken },
          this.connection.metadata(),
          deadline,
        );
      },
      this.clients.endpoints,
      this.policy,
    );
  }

  /**
   * The current balance of each account (or, for the accounts in `resumeAfterSequence`, every
   * change after that sequence), then every change, per account in sequence order. The watch
   * resumes by itself: after a disconnect, a read node's restart or a WATCH_LAGGED cut-off it
   * reconnects (on the next read node given, after a backoff) and resumes every account after
   * the last sequence it delivered, never skipping or repeating an update (see `BalanceWatch`).
   * Consume it with `for await` or "data" events; "error" gets a typed error (`Rejected`,
   * e.g. ACCOUNT_NOT_FOUND; `Indefinite` past `timeoutMs` or `maxResumes`); `.cancel()` ends it
   * quietly ("end").
   */
  watchBalances(
    accountIds: readonly string[],
    resumeAfterSequence: Record<string, string | number | bigint> = {},
    options: WatchOptions = {},
  ): BalanceWatch {
    const ids = [...accountIds];
    return new BalanceWatch(
      (endpoint, resume, deadline) =>
        this.clients
          .get(endpoint)
          .watchBalances({ accountIds: ids, resumeAfterSequence: resume }, this.connection.metadata(), deadline ? { deadline } : {}),
      this.clients.endpoints,
      resumeAfterSequence,
      options,
    );
  }

  /**
   * The transfer's state, then every newer state until the final one (then "end"). Resumes
   * by itself like `watchBalances`, delivering only versions newer than the last delivered. An
   * id the read node does not know yet is waited for (bounded by the node).
   */
  watchTransfer(transactionId: string, options: WatchOptions = {}): TransferWatch {
    return new TransferWatch(
      (endpoint, deadline) =>
        this.clients.get(endpoint).watchTransfer({ transactionId }, this.connection.metadata(), deadline ? { deadline } : {}),
      this.clients.endpoints,
      options,
    );
  }
}
