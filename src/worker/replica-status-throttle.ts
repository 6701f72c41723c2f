// When a service replica's status goes to the master: every change lands in the outbox (and in the
// master's store), so a replica whose health check flaps must not write one per check. The latest
// status wins; a change the gateway acts on (healthy or not) or a restart goes at once.

/** At most one replica status update a second per replica, unless it matters at once. */
export const REPLICA_STATUS_INTERVAL_MS = 1_000;

/** What was last sent of a replica's status. */
export interface SentReplicaStatus {
  atMs: number;
  healthy: boolean;
  restarts: number;
}

/** 0: send now; otherwise wait this long, then send the latest status. */
export function replicaSendDelay(last: SentReplicaStatus | undefined, next: { healthy: boolean; restarts: number }, nowMs: number, intervalMs = REPLICA_STATUS_INTERVAL_MS): number {
  if (!last || last.healthy !== next.healthy || last.restarts !== next.restarts) return 0;
  return Math.max(0, last.atMs + intervalMs - nowMs);
}
