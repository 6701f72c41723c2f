// Which replica takes the next request: a healthy one with the fewest requests in flight, ties
// broken round robin from a cursor the caller advances. Pure, so the spread is tested without I/O.
import type { GatewayReplica } from './gateway-directory.js';

/**
 * The replica for a request, or undefined when no healthy one is left. `exclude` holds task ids
 * already tried for this request (a pipe that refused or could not be dialed).
 */
export function pickReplica(
  replicas: readonly GatewayReplica[],
  inFlight: (taskId: string) => number,
  cursor: number,
  exclude: ReadonlySet<string> = new Set(),
): GatewayReplica | undefined {
  const candidates = replicas.filter((r) => r.healthy && !exclude.has(r.taskId));
  const n = candidates.length;
  if (n === 0) return undefined;
  let best: GatewayReplica | undefined;
  let bestLoad = Infinity;
  // Start at the cursor so that equal loads take turns instead of always landing on the first.
  for (let i = 0; i < n; i++) {
    const r = candidates[(((cursor % n) + n) % n + i) % n]!;
    const load = inFlight(r.taskId);
    if (load < bestLoad) {
      best = r;
      bestLoad = load;
    }
  }
  return best;
}
