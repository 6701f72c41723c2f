// When a replica's container is started again after it stopped, and how its stop is worded: pure
// functions of the run that ended, so the crash-loop backoff is tested without Docker.

export interface RestartPolicy {
  /** Delay before the first restart of a streak. Default 1 s. */
  initialMs: number;
  /** The most any restart waits. Default 60 s. */
  maxMs: number;
  /** A run healthy at least this long ends the streak: the next restart waits `initialMs` again. Default 60 s. */
  resetAfterHealthyMs: number;
}

export const RESTART_DEFAULTS: Readonly<RestartPolicy> = Object.freeze({ initialMs: 1_000, maxMs: 60_000, resetAfterHealthyMs: 60_000 });

/**
 * The delay before the next start and the streak it belongs to. `streak` counts the restarts
 * since the replica last ran healthy for `resetAfterHealthyMs`; `healthyForMs` is how long the
 * run that ended was healthy without a break (0 if never). No jitter: one container, no herd.
 */
export function nextRestart(streak: number, healthyForMs: number, policy: RestartPolicy = RESTART_DEFAULTS): { delayMs: number; streak: number } {
  const s = healthyForMs >= policy.resetAfterHealthyMs ? 0 : streak;
  const delayMs = Math.min(policy.maxMs, policy.initialMs * 2 ** Math.min(s, 30));
  return { delayMs, streak: s + 1 };
}

/** Why a run ended, as the replica status says it ("exited with code 3", "OOM killed"). */
export function describeExit(end: { exitCode: number; oomKilled: boolean; unhealthy?: string }): string {
  if (end.unhealthy !== undefined) return `unhealthy: ${end.unhealthy}`;
  if (end.oomKilled) return `OOM killed (exit code ${end.exitCode})`;
  return `exited with code ${end.exitCode}`;
}
