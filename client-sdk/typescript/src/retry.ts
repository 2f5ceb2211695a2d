/**
 * The retry loop: the TypeScript twin of the Rust SDK's (`client-sdk/src/client.rs`). A call
 * is retried only when its outcome is unknown (UNAVAILABLE, RESOURCE_EXHAUSTED,
 * DEADLINE_EXCEEDED, CANCELLED), with full-jitter exponential backoff, a bounded number of
 * attempts and a total deadline. The caller's request is sent unchanged on every attempt, so
 * a transfer keeps its transaction_id and a retry can never pay twice.
 */
import { Indefinite, classify, isServiceError, leaderHint } from "./errors";

/** How long and how often to try. The defaults are the Rust SDK's. */
export interface RetryPolicy {
  /** Deadline of one attempt, ms (sent to the server as `grpc-timeout`). */
  callTimeoutMs: number;
  /** Deadline of a whole call, all attempts and sleeps included, ms. */
  totalDeadlineMs: number;
  /** Most attempts one call may make, redirects to the leader included. */
  attemptsMax: number;
  /** Backoff ceiling after the first failed attempt, ms; doubles with every further one. */
  backoffBaseMs: number;
  /** Cap on the backoff ceiling, ms. */
  backoffMaxMs: number;
}

export const DEFAULT_RETRY_POLICY: Readonly<RetryPolicy> = Object.freeze({
  callTimeoutMs: 5_000,
  totalDeadlineMs: 15_000,
  attemptsMax: 10,
  backoffBaseMs: 20,
  backoffMaxMs: 1_000,
});

/** Past this exponent the ceiling is `backoffMaxMs` anyway. */
const EXPONENT_MAX = 30;
/** Floor on one attempt's timeout, so the last attempt before the deadline is still usable. */
const ATTEMPT_TIMEOUT_MIN_MS = 50;

/** Checks a policy before any call is made, so a bad one fails at start-up. */
export function validatePolicy(policy: RetryPolicy): RetryPolicy {
  if (!Number.isInteger(policy.attemptsMax) || policy.attemptsMax < 1 || policy.attemptsMax > 100) {
    throw new RangeError("attemptsMax must be an integer between 1 and 100");
  }
  if (!(policy.callTimeoutMs > 0 && policy.totalDeadlineMs > 0)) {
    throw new RangeError("callTimeoutMs and totalDeadlineMs must be positive");
  }
  if (!(policy.backoffBaseMs >= 0 && policy.backoffBaseMs <= policy.backoffMaxMs)) {
    throw new RangeError("need 0 <= backoffBaseMs <= backoffMaxMs");
  }
  return policy;
}

/** `min(maxMs, baseMs * 2^attempt)` for failed attempt number `attempt` (0-based). */
export function backoffCeiling(attempt: number, baseMs: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.min(attempt, EXPONENT_MAX));
}

/** A uniformly random sleep in `[0, backoffCeiling(attempt, baseMs, maxMs)]`, ms. */
export function fullJitter(attempt: number, baseMs: number, maxMs: number): number {
  return Math.random() * backoffCeiling(attempt, baseMs, maxMs);
}

/** Hooks for tests: the clock and the sleep. */
export interface RetryHooks {
  /** The endpoint of the first attempt (the cached leader), instead of `endpoints[0]`. */
  first?: string;
  /**
   * The call's deadline (in `now()`'s milliseconds), instead of `now() + totalDeadlineMs`:
   * for a call that already spent part of its time elsewhere (a transfer that went on unary
   * after its stream gave no definite outcome).
   */
  deadline?: number;
  onSuccess?: (endpoint: string) => void;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

const realSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Calls `send(endpoint, deadline)` until it resolves, following NOT_LEADER hints at once and
 * moving to the next endpoint after a backoff on other unknown outcomes. Rejects with
 * `Rejected` at once for a definite answer, with `Indefinite` when the attempts or the
 * deadline run out. Errors that are not gRPC errors propagate unchanged. `send` must send
 * the same request every time.
 */
export async function callWithRetry<T>(
  send: (endpoint: string, deadline: Date) => Promise<T>,
  endpoints: readonly string[],
  policy: RetryPolicy = DEFAULT_RETRY_POLICY,
  hooks: RetryHooks = {},
): Promise<T> {
  if (endpoints.length === 0) throw new RangeError("at least one endpoint is required");
  const now = hooks.now ?? Date.now;
  const sleep = hooks.sleep ?? realSleep;
  const deadline = hooks.deadline ?? now() + policy.totalDeadlineMs;
  let target = hooks.first ?? endpoints[0];
  let attempt = 0;
  for (;;) {
    const timeout = Math.max(Math.min(policy.callTimeoutMs, deadline - now()), ATTEMPT_TIMEOUT_MIN_MS);
    let error;
    try {
      const result = await send(target, new Date(now() + timeout));
      hooks.onSuccess?.(target);
      return result;
    } catch (caught) {
      if (!isServiceError(caught)) throw caught;
      error = classify(caught);
    }
    attempt += 1;
    if (!(error instanceof Indefinite) || attempt >= policy.attemptsMax) throw error;
    const hint = leaderHint(error);
    if (hint !== undefined && hint !== target) {
      target = hint;
      if (now() >= deadline) throw error;
      continue;
    }
    const index = endpoints.indexOf(target);
    target = endpoints[index < 0 ? 0 : (index + 1) % endpoints.length];
    let pause = fullJitter(attempt - 1, policy.backoffBaseMs, policy.backoffMaxMs);
    if (error.details.retryDelayMs !== undefined) pause = Math.max(pause, error.details.retryDelayMs);
    if (now() + pause >= deadline) throw error;
    await sleep(pause);
  }
}
