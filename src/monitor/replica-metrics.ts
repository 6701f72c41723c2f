// Prometheus metrics of the service replicas on this node and of its gateway pipe, read from the
// worker at each scrape. Pipe traffic is labelled by service: the pipe counts per replica attempt,
// and replicas are replaced by new attempts, so the totals keep what ended attempts carried (a
// counter that went down when a replica was replaced would read as a reset).
import { Counter, Gauge, type Registry } from 'prom-client';
import type { GatewayPipeView, PipeRefusal, ReplicaView } from '../worker/contracts.js';
import { replicaState } from './replica-view.js';

export interface PipeTotals {
  connections: number;
  open: number;
  bytesIn: number;
  bytesOut: number;
}

/** Replica attempts whose last counters are remembered one by one; older ones are folded into their service's carry. */
export const MAX_REMEMBERED_ATTEMPTS = 1024;

/** Per-service pipe totals that never go down while the worker runs, across replica replacements. */
export class ServicePipeTotals {
  /** taskId#attempt → its service and its last counters (Map order: least recently seen first). */
  private readonly attempts = new Map<string, { service: string; last: PipeTotals }>();
  /** What forgotten attempts had reached, per service (nothing of theirs is open any more). */
  private readonly carry = new Map<string, PipeTotals>();

  constructor(private readonly maxAttempts = MAX_REMEMBERED_ATTEMPTS) {}

  update(replicas: readonly ReplicaView[], gateway: GatewayPipeView | undefined): void {
    for (const r of replicas) {
      const k = `${r.taskId}#${r.attempt}`;
      if (!this.attempts.has(k)) this.attempts.set(k, { service: r.service, last: { connections: 0, open: 0, bytesIn: 0, bytesOut: 0 } });
    }
    // Counters of attempts that already ended still count (the pipe keeps them a while).
    for (const c of gateway?.counters.replicas ?? []) {
      const k = `${c.taskId}#${c.attempt}`;
      const known = this.attempts.get(k);
      if (!known) continue; // not (yet) known as a replica here: its service is unknown
      this.attempts.delete(k);
      known.last = { connections: c.connections, open: c.open, bytesIn: c.bytesIn, bytesOut: c.bytesOut };
      this.attempts.set(k, known);
    }
    const live = new Set(replicas.map((r) => `${r.taskId}#${r.attempt}`));
    for (const [k, a] of this.attempts) {
      if (this.attempts.size <= this.maxAttempts) break;
      if (live.has(k)) continue;
      const c = this.carry.get(a.service) ?? { connections: 0, open: 0, bytesIn: 0, bytesOut: 0 };
      this.carry.set(a.service, { connections: c.connections + a.last.connections, open: 0, bytesIn: c.bytesIn + a.last.bytesIn, bytesOut: c.bytesOut + a.last.bytesOut });
      this.attempts.delete(k);
    }
  }

  /** By service name, sorted. `open` counts the connections of attempts still seen. */
  totals(): [string, PipeTotals][] {
    const out = new Map<string, PipeTotals>();
    for (const [s, c] of this.carry) out.set(s, { ...c });
    for (const { service, last } of this.attempts.values()) {
      const t = out.get(service) ?? { connections: 0, open: 0, bytesIn: 0, bytesOut: 0 };
      out.set(service, { connections: t.connections + last.connections, open: t.open + last.open, bytesIn: t.bytesIn + last.bytesIn, bytesOut: t.bytesOut + last.bytesOut });
    }
    return [...out].sort(([a], [b]) => a.localeCompare(b));
  }
}

export interface ReplicaSource {
  replicas(): ReplicaView[];
  readonly gateway: GatewayPipeView | undefined;
}

const REFUSALS: readonly PipeRefusal[] = ['source', 'key', 'malformed', 'timeout', 'over-limit'];

export function registerReplicaMetrics(registry: Registry, node: ReplicaSource): void {
  const registers = [registry];
  const totals = new ServicePipeTotals();
  // One read of the worker per scrape (the registry calls every collect() in the same tick).
  let snapshot: { replicas: ReplicaView[]; gateway: GatewayPipeView | undefined; totals: [string, PipeTotals][] } | undefined;
  const read = () => {
    if (!snapshot) {
      const replicas = node.replicas();
      const gateway = node.gateway;
      totals.update(replicas, gateway);
      snapshot = { replicas, gateway, totals: totals.totals() };
      queueMicrotask(() => (snapshot = undefined));
    }
    return snapshot;
  };
  new Gauge({
    name: 'hivemind_replicas',
    help: 'Service replicas on this node (1 per replica), by service, replica index, state (starting, running, restarting) and health',
    labelNames: ['service', 'replica', 'state', 'healthy'],
    registers,
    collect() {
      this.reset();
      for (const r of read().replicas) this.set({ service: r.service, replica: String(r.index), state: replicaState(r), healthy: r.status?.healthy ? 'true' : 'false' }, 1);
    },
  });
  new Counter({
    name: 'hivemind_replica_restarts_total',
    help: 'Container restarts of each replica in its current attempt (a new attempt starts again at 0)',
    labelNames: ['service', 'replica'],
    registers,
    collect() {
      this.reset();
      for (const r of read().replicas) this.inc({ service: r.service, replica: String(r.index) }, r.status?.restarts ?? 0);
    },
  });
  new Gauge({
    name: 'hivemind_gateway_pipe_listening',
    help: '1 while the node listens for the master gateway (it hosts services), 0 otherwise',
    registers,
    collect() {
      this.set(read().gateway ? 1 : 0);
    },
  });
  new Counter({
    name: 'hivemind_gateway_pipe_connections_total',
    help: 'Gateway pipe connections relayed to the service replicas on this node (one per request or WebSocket)',
    labelNames: ['service'],
    registers,
    collect() {
      this.reset();
      for (const [service, t] of read().totals) this.inc({ service }, t.connections);
    },
  });
  new Gauge({
    name: 'hivemind_gateway_pipe_open_connections',
    help: 'Gateway pipe connections relaying to the service now',
    labelNames: ['service'],
    registers,
    collect() {
      this.reset();
      for (const [service, t] of read().totals) this.set({ service }, t.open);
    },
  });
  new Counter({
    name: 'hivemind_gateway_pipe_bytes_total',
    help: 'Bytes relayed through the gateway pipe: direction "in" from the gateway to the replicas, "out" back',
    labelNames: ['service', 'direction'],
    registers,
    collect() {
      this.reset();
      for (const [service, t] of read().totals) {
        this.inc({ service, direction: 'in' }, t.bytesIn);
        this.inc({ service, direction: 'out' }, t.bytesOut);
      }
    },
  });
  new Counter({
    name: 'hivemind_gateway_pipe_refused_total',
    help: 'Connections to the gateway pipe closed without an answer (not the master), by reason',
    labelNames: ['reason'],
    registers,
    collect() {
      this.reset();
      const g = read().gateway;
      if (!g) return;
      for (const reason of REFUSALS) this.inc({ reason }, g.counters.refused[reason]);
    },
  });
  new Counter({
    name: 'hivemind_gateway_pipe_errors_total',
    help: 'Gateway pipe connections answered ERR (the replica was not running here or its port did not answer)',
    registers,
    collect() {
      this.reset();
      const g = read().gateway;
      if (g) this.inc(g.counters.errors);
    },
  });
}
