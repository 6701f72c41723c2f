// When a CLI command that holds a stream open (wait, logs -f, an attached run) moves to another
// master, and how long it keeps trying: pure decisions, tested without a master or a clock.
// A killed master drops the connection (UNAVAILABLE), a master that lost its lease refuses every
// call with UNAVAILABLE "standby master: …", and a stream may also just end early when its
// master closes: all three mean "pick the active master again", nothing else does.
import { status, type ServiceError } from '@grpc/grpc-js';
import { HivemindError } from '../common/errors.js';

export interface FailoverPolicy {
  /** The first wait before asking the masters again; doubled after each miss. */
  firstDelayMs: number;
  /** No single wait is longer than this. */
  maxDelayMs: number;
  /**
   * How long, from the loss, the command keeps looking for an active master. A standby takes over
   * within the lease plus one renewal, then loads the state; the margin covers that load and a
   * master started with a longer --lease than the default.
   */
  boundMs: number;
}

/** The master's default --lease (master/lease/lease-timing.ts), not imported: the client does not load master code. */
const MASTER_DEFAULT_LEASE_MS = 5_000;

export const DEFAULT_FAILOVER: FailoverPolicy = { firstDelayMs: 250, maxDelayMs: 2_000, boundMs: MASTER_DEFAULT_LEASE_MS + 25_000 };

/** True for an error that means the master went away or stepped down (a MasterCallError or a raw gRPC error). */
export function isMasterLoss(err: unknown): boolean {
  const e = err as (Partial<ServiceError> & { status?: unknown }) | null;
  const code = typeof e?.status === 'number' ? e.status : e?.code;
  return code === status.UNAVAILABLE;
}

/**
 * The wait before attempt `attempt` (0 = the first retry) at `elapsedMs` since the loss, or
 * undefined once the bound is reached. Half fixed, half random: CLIs that lost the same master do
 * not all ask the next one in the same millisecond. Never waits past the bound.
 */
export function retryDelay(attempt: number, elapsedMs: number, p: FailoverPolicy, random: () => number = Math.random): number | undefined {
  if (elapsedMs >= p.boundMs) return undefined;
  const base = Math.min(p.maxDelayMs, p.firstDelayMs * 2 ** Math.min(attempt, 30));
  const wait = base / 2 + (random() * base) / 2;
  return Math.max(0, Math.min(Math.round(wait), p.boundMs - elapsedMs));
}

/** No master answered as active for the whole bound. */
export class FailoverExhaustedError extends HivemindError {
  constructor(what: string, elapsedMs: number, lastWhy: string, options?: { cause?: unknown }) {
    super(
      'FAILOVER_EXHAUSTED',
      `${what}: lost the master and found no active one in ${(elapsedMs / 1000).toFixed(1)} s; last try: ${lastWhy} ` +
        '(is a master running on the store? check --master / HIVEMIND_MASTER; the task itself goes on)',
      options,
    );
  }
}
