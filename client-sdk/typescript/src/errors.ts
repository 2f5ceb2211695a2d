/**
 * Typed errors, read from the rich gRPC status the wallet's nodes send: every error carries
 * `google.rpc.ErrorInfo` (domain `wallet.ledger`) with a stable `reason`, a `BadRequest`
 * field violation naming the offending field (invalid input, an unknown account or
 * transfer), and `RetryInfo` where waiting helps, all inside a `google.rpc.Status` in the
 * `grpc-status-details-bin` trailer.
 */
import { status as Code, type ServiceError } from "@grpc/grpc-js";

import { BadRequest, ErrorInfo, RetryInfo } from "./gen/google/rpc/error_details";
import { Status } from "./gen/google/rpc/status";
import { ErrorReason } from "./gen/wallet/v1/errors";

export { ErrorReason };

const REASON_PREFIX = "ERROR_REASON_";

/**
 * The reason string of a generated `ErrorReason` value, its name without `ERROR_REASON_`
 * (`ErrorReason.ERROR_REASON_INSUFFICIENT_FUNDS` is "INSUFFICIENT_FUNDS"); "" for
 * `ERROR_REASON_UNSPECIFIED`, `UNRECOGNIZED` or an unknown value.
 */
export function reasonOf(value: ErrorReason): string {
  const name = (ErrorReason as unknown as Record<number, string | undefined>)[value];
  if (value <= 0 || name === undefined || !name.startsWith(REASON_PREFIX)) return "";
  return name.slice(REASON_PREFIX.length);
}

/**
 * Every reason the nodes give (`ErrorInfo.reason`, `TransferError.reason`), generated from the
 * `wallet.v1.ErrorReason` enum (proto/wallet/v1/errors.proto). A reason outside it (from a
 * newer node) is passed on as it comes: decide by the gRPC code then.
 */
export const REASONS: ReadonlySet<string> = new Set(
  Object.values(ErrorReason)
    .filter((value): value is ErrorReason => typeof value === "number")
    .map(reasonOf)
    .filter((reason) => reason !== ""),
);

/** The `google.rpc.ErrorInfo` domain of every wallet error. */
export const ERROR_DOMAIN = "wallet.ledger";
/** Reason of the redirect a write node that does not lead the partition answers with. */
export const REASON_NOT_LEADER = reasonOf(ErrorReason.ERROR_REASON_NOT_LEADER);
/**
 * `ErrorInfo` metadata key set to "true" when an earlier log entry decided this rejection and
 * this call found it recorded (a retry).
 */
export const METADATA_REPLAYED = "replayed";
/** `ErrorInfo` metadata key with the leader's `host:port`, when known. */
export const METADATA_LEADER_ADDRESS = "leader_address";
/**
 * `ErrorInfo` metadata key of a `TransferLegs` refusal: the index (0-based, a decimal string) of
 * the first leg refused (`WalletError.leg`).
 */
export const METADATA_LEG = "leg";
// The two reasons below are this SDK's own, for failures no node answered: not in REASONS.
/** Reason given to failures that never reached a node's application code. */
export const REASON_TRANSPORT = "TRANSPORT_ERROR";
/** Reason given to an attempt that ran out of time. */
export const REASON_DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED";
/** The trailer holding the serialized `google.rpc.Status`. */
export const STATUS_DETAILS_KEY = "grpc-status-details-bin";

/**
 * Codes whose outcome is unknown (the request may have been applied): retried with the same
 * request, hence the same transaction_id. The same set as the Rust SDK's. CANCELLED counts
 * because the caller cancels by abandoning a call: one that comes back was lost mid-call.
 */
export const RETRYABLE_CODES: ReadonlySet<Code> = new Set([
  Code.UNAVAILABLE,
  Code.RESOURCE_EXHAUSTED,
  Code.DEADLINE_EXCEEDED,
  Code.CANCELLED,
]);

const TYPE_PREFIX = "type.googleapis.com/";

/** What a failed call's `google.rpc.Status` says, decoded. */
export interface ErrorDetails {
  code: Code;
  message: string;
  reason: string;
  domain: string;
  metadata: Record<string, string>;
  /** Each `BadRequest` field violation. */
  fieldViolations: { field: string; description: string }[];
  /** Milliseconds from `RetryInfo.retry_delay`, if the server asked for a pause. */
  retryDelayMs?: number;
}

/** The canonical upper-case name of a code, e.g. `FAILED_PRECONDITION`. */
export function codeName(code: Code): string {
  return Code[code] ?? `CODE_${code}`;
}

/**
 * What the error decoding needs of a call's metadata (trailers): `@grpc/grpc-js`'s `Metadata`,
 * or the browser transport's `WebMetadata` (`./web`). Checked by shape, not by class, so that
 * the browser build needs no @grpc/grpc-js at run time.
 */
export interface MetadataLike {
  get(key: string): (string | Uint8Array)[];
}

/** A failed call as the error decoding sees it: a gRPC code, its message and its trailers. */
export interface FailedCall {
  code: ServiceError["code"];
  details?: string;
  metadata?: MetadataLike;
}

/** Decodes the rich status of a failed call from its trailers. */
export function errorDetails(error: FailedCall): ErrorDetails {
  const details: ErrorDetails = {
    code: error.code,
    message: error.details ?? "",
    reason: "",
    domain: "",
    metadata: {},
    fieldViolations: [],
  };
  const raw = typeof error.metadata?.get === "function" ? error.metadata.get(STATUS_DETAILS_KEY)[0] : undefined;
  if (raw === undefined || typeof raw === "string") {
    return details;
  }
  const status = Status.decode(raw);
  details.message = status.message || details.message;
  for (const detail of status.details) {
    const type = detail.typeUrl.startsWith(TYPE_PREFIX) ? detail.typeUrl.slice(TYPE_PREFIX.length) : detail.typeUrl;
    if (type === "google.rpc.ErrorInfo") {
      const info = ErrorInfo.decode(detail.value);
      details.reason = info.reason;
      details.domain = info.domain;
      details.metadata = { ...info.metadata };
    } else if (type === "google.rpc.BadRequest") {
      for (const violation of BadRequest.decode(detail.value).fieldViolations) {
        details.fieldViolations.push({ field: violation.field, description: violation.description });
      }
    } else if (type === "google.rpc.RetryInfo") {
      const delay = RetryInfo.decode(detail.value).retryDelay;
      if (delay !== undefined) {
        details.retryDelayMs = Number(delay.seconds) * 1000 + delay.nanos / 1e6;
      }
    }
  }
  return details;
}

/** A failed wallet call. Match on `reason` (stable), not on the message. */
export abstract class WalletError extends Error {
  readonly code: Code;
  readonly reason: string;
  /** The offending request field, from the first `BadRequest` field violation. */
  readonly field?: string;
  /**
   * The transaction id of the failed call, set by calls that may make one themselves
   * (`transferLegs` without a `transactionId`): ask again with it after an `Indefinite` error.
   */
  transactionId?: string;

  constructor(
    readonly details: ErrorDetails,
    reason: string,
  ) {
    super(`${codeName(details.code)} ${reason}: ${details.message}`);
    this.code = details.code;
    this.reason = reason;
    this.field = details.fieldViolations.find((v) => v.field !== "")?.field;
  }

  /** True when nothing was applied and asking again gives the same answer. */
  abstract get definite(): boolean;

  /**
   * For a refused `TransferLegs`: the index (0-based) of the first leg refused, from the
   * `ErrorInfo` metadata "leg" (for insufficient funds, the leg of the account's first debit);
   * undefined when the error names no leg (e.g. REPEATED_LEG, or another call).
   */
  get leg(): number | undefined {
    const value = this.details.metadata[METADATA_LEG];
    return value !== undefined && /^[0-9]+$/.test(value) ? Number(value) : undefined;
  }

  /**
   * True when an earlier log entry decided this outcome and this call found it recorded (a
   * retry): `ErrorInfo` metadata `replayed` = "true", or `TransferResult.replayed` for a
   * pipelined, streamed or batched transfer. Older nodes never set it.
   */
  get replayed(): boolean {
    return this.details.metadata[METADATA_REPLAYED] === "true";
  }
}

/**
 * The ledger refused the request (bad argument, unknown account, insufficient funds, reused
 * transaction id, ...). Nothing was applied; never retried.
 */
export class Rejected extends WalletError {
  override name = "Rejected";
  get definite(): boolean {
    return true;
  }
}

/**
 * The outcome is unknown and the retries ran out: the request may or may not have been
 * applied. Retry with the same transaction_id to learn the outcome; the ledger deduplicates
 * by it, so a retry can never pay twice.
 */
export class Indefinite extends WalletError {
  override name = "Indefinite";
  get definite(): boolean {
    return false;
  }
}

/** True for the errors @grpc/grpc-js reports for a failed call. */
export function isServiceError(error: unknown): error is ServiceError {
  return error instanceof Error && typeof (error as ServiceError).code === "number" && "metadata" in error;
}

/** The typed error for a failed attempt. */
export function classify(error: FailedCall): WalletError {
  const details = errorDetails(error);
  if (RETRYABLE_CODES.has(details.code)) {
    let reason = details.reason;
    if (reason === "") {
      if (details.code === Code.DEADLINE_EXCEEDED) reason = REASON_DEADLINE_EXCEEDED;
      else if (details.code === Code.RESOURCE_EXHAUSTED) reason = codeName(details.code);
      // No ErrorInfo: the status was made by the gRPC library (refused, reset, closed).
      else reason = REASON_TRANSPORT;
    }
    return new Indefinite(details, reason);
  }
  return new Rejected(details, details.reason || codeName(details.code));
}

/** The leader's `host:port` from a NOT_LEADER redirect, if the node knew it. */
export function leaderHint(error: WalletError): string | undefined {
  if (error.code !== Code.UNAVAILABLE || error.reason !== REASON_NOT_LEADER) return undefined;
  const address = (error.details.metadata[METADATA_LEADER_ADDRESS] ?? "").trim();
  return address === "" ? undefined : address;
}

/**
 * The typed error for one result of a `SubmitTransfers` stream or a `TransferBatch`
 * (`TransferResult.error`: the code, reason, message and field the unary call would have
 * failed with): `Rejected` for a "rejected" item, `Indefinite` otherwise. `details` is what
 * the unary call's trailer would decode to: the wallet's domain, the reason, and the field as
 * given, whatever the code, as a field violation (the nodes name one for INVALID_ARGUMENT and
 * NOT_FOUND, as the unary call's `BadRequest` does), so a pipelined call fails exactly as the
 * unary one would. `replayed` is the result's `TransferResult.replayed` (the error's `replayed`).
 */
export function itemError(
  error: { code: number; reason: string; message: string; field: string },
  definite: boolean,
  replayed = false,
): WalletError {
  const details: ErrorDetails = {
    code: error.code as Code,
    message: error.message,
    reason: error.reason,
    domain: ERROR_DOMAIN,
    metadata: replayed ? { [METADATA_REPLAYED]: "true" } : {},
    fieldViolations: error.field !== "" ? [{ field: error.field, description: error.message }] : [],
  };
  const reason = error.reason || codeName(error.code as Code);
  return definite ? new Rejected(details, reason) : new Indefinite(details, reason);
}

/** An `Indefinite` DEADLINE_EXCEEDED made by the client itself (no attempt answered in time). */
export function deadlineExceeded(message: string): Indefinite {
  return new Indefinite(
    { code: Code.DEADLINE_EXCEEDED, message, reason: "", domain: "", metadata: {}, fieldViolations: [] },
    REASON_DEADLINE_EXCEEDED,
  );
}
