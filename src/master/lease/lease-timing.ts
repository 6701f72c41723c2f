// The timing rules of the master lease, as pure functions (tested without a database or timers).
// The lease's end is kept by the database's clock (now() in SQL); a master measures its own side
// with its monotonic clock from the moment it SENT a successful renewal: the database stamped that
// renewal no earlier, so the master's local deadline falls before the database's, and an active
// master stops serving before a standby can take the lease over.
import { ConfigError } from '../../common/errors.js';

/** Default lease: a killed active master is replaced within about this long (plus one renewal). */
export const DEFAULT_LEASE_MS = 5_000;
/** The shortest lease accepted: renewals every lease/5 must not outrun the database's round trips. */
export const MIN_LEASE_MS = 1_000;

export interface LeaseTiming {
  /** How long a granted or renewed lease lasts, by the database's clock. */
  leaseMs: number;
  /** How often the holder renews and a standby tries to take the lease. */
  renewEveryMs: number;
  /** The holder stops serving this long before its lease would end by its own clock. */
  safetyMarginMs: number;
}

/** A lease length into its renewal period (a fifth: four renewals may fail before it ends) and its margin. */
export function leaseTiming(leaseMs: number = DEFAULT_LEASE_MS): LeaseTiming {
  if (!Number.isFinite(leaseMs) || leaseMs < MIN_LEASE_MS) {
    throw new ConfigError(`master: --lease must be at least ${MIN_LEASE_MS / 1000}s, got ${leaseMs / 1000}s`);
  }
  const renewEveryMs = Math.round(leaseMs / 5);
  return { leaseMs, renewEveryMs, safetyMarginMs: renewEveryMs };
}

/**
 * Whether a holder whose last successful renewal was sent at `renewSentAt` (monotonic ms) must
 * stop serving at `now`: from `leaseMs - safetyMarginMs` after it, as the database may end the
 * lease at `leaseMs` and a standby take it from then on.
 */
export function mustStopServing(renewSentAt: number, now: number, t: LeaseTiming): boolean {
  return now - renewSentAt >= t.leaseMs - t.safetyMarginMs;
}
