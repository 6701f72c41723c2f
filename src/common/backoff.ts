// Exponential backoff with full jitter (a pure function of its inputs and a random source),
// so that a fleet of workers reconnecting to a restarted master does not stampede it.

export interface BackoffOptions {
  /** Delay bound for the first retry. */
  initialMs: number;
  /** Upper bound for any delay. */
  maxMs: number;
  /** Growth factor per attempt. */
  factor: number;
}

export const defaultBackoff: BackoffOptions = { initialMs: 250, maxMs: 30_000, factor: 2 };

/**
 * Delay before retry number `attempt` (0-based): uniform in [cap/2, cap] where
 * cap = min(maxMs, initialMs * factor^attempt). Half-jitter keeps a floor so retries
 * never hammer at 0 ms, while still spreading a fleet over the window.
 */
export function backoffDelay(attempt: number, opts: BackoffOptions = defaultBackoff, random: () => number = Math.random): number {
  const exp = Math.min(opts.maxMs, opts.initialMs * Math.pow(opts.factor, Math.max(0, attempt)));
  const cap = Number.isFinite(exp) ? exp : opts.maxMs;
  return Math.round(cap / 2 + random() * (cap / 2));
}
