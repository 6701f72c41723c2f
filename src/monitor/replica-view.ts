// The Services panel's data: the replicas on this node (the worker's latest word on each) joined
// with their gateway pipe counters, and requests per second estimated from those counters. Pure
// but for PipeRates' memory of earlier samples, which the caller owns.
import type { GatewayPipeView, ReplicaPipeCounters, ReplicaView } from '../worker/contracts.js';
import type { ReplicaRowView, ReplicaStateName, ServicesView } from './monitor-types.js';

/** The span requests per second are averaged over. */
export const RATE_WINDOW_MS = 10_000;
/** Samples closer than this to the previous one are not kept (a burst of pushes adds nothing). */
const RATE_SAMPLE_SPACING_MS = 1_000;

export function replicaState(r: ReplicaView): ReplicaStateName {
  const s = r.status;
  if (s?.running) return 'running';
  if (s && s.restartAtMs > 0) return 'restarting';
  return 'starting';
}

/**
 * Connections per second per replica attempt from its cumulative connection counter, sampled
 * whenever the view is built: over the samples of the last RATE_WINDOW_MS (or longer, when there
 * were none in between). Null until a second has passed since the first sample.
 */
export class PipeRates {
  private readonly samples = new Map<string, { at: number; connections: number }[]>();

  constructor(private readonly windowMs = RATE_WINDOW_MS) {}

  rate(key: string, connections: number, now: number): number | null {
    let list = this.samples.get(key);
    if (!list) this.samples.set(key, (list = []));
    const last = list[list.length - 1];
    if (!last || now - last.at >= RATE_SAMPLE_SPACING_MS) list.push({ at: now, connections });
    // Keep one sample at least a window old as the base, drop the ones before it.
    while (list.length > 1 && now - list[1]!.at >= this.windowMs) list.shift();
    const base = list[0]!;
    const dt = now - base.at;
    if (dt < RATE_SAMPLE_SPACING_MS) return null;
    return Math.max(0, connections - base.connections) / (dt / 1000);
  }

  /** Forgets replicas no longer on the node. */
  retain(keys: ReadonlySet<string>): void {
    for (const k of this.samples.keys()) if (!keys.has(k)) this.samples.delete(k);
  }
}

const NO_TRAFFIC = { connections: 0, open: 0, bytesIn: 0, bytesOut: 0 };

export function servicesView(replicas: readonly ReplicaView[], gateway: GatewayPipeView | undefined, rates: PipeRates, now: number): ServicesView {
  const pipes = new Map<string, ReplicaPipeCounters>((gateway?.counters.replicas ?? []).map((c) => [`${c.taskId}#${c.attempt}`, c]));
  const keys = new Set<string>();
  const rows = replicas.map((r): ReplicaRowView => {
    const key = `${r.taskId}#${r.attempt}`;
    keys.add(key);
    const s = r.status;
    const c = pipes.get(key);
    return {
      taskId: r.taskId,
      attempt: r.attempt,
      service: r.service,
      index: r.index,
      state: replicaState(r),
      healthy: s?.healthy ?? false,
      healthMessage: s?.healthMessage ?? '',
      restarts: s?.restarts ?? 0,
      lastExit: s?.lastExit ? s.lastExit : null,
      lastExitAtMs: s?.lastExitAtMs ? s.lastExitAtMs : null,
      restartAtMs: s?.restartAtMs ? s.restartAtMs : null,
      pipe: c ? { connections: c.connections, open: c.open, bytesIn: c.bytesIn, bytesOut: c.bytesOut } : { ...NO_TRAFFIC },
      requestsPerSecond: gateway ? rates.rate(key, c?.connections ?? 0, now) : null,
    };
  });
  rates.retain(keys);
  rows.sort((a, b) => a.service.localeCompare(b.service) || a.index - b.index || a.taskId.localeCompare(b.taskId));
  const g = gateway?.counters;
  return {
    gateway: gateway && g ? { port: gateway.port, open: g.open, relayed: g.relayed, errors: g.errors, refused: Object.values(g.refused).reduce((a, b) => a + b, 0) } : null,
    replicas: rows,
  };
}
