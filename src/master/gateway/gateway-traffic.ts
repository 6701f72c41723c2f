// The gateway's counters, per replica task and per service: requests, errors (5xx answered by the
// gateway or the replica, or a response cut off), requests in flight, and the latency to the
// response head (p50/p99 over a ring of the last LATENCY_WINDOW requests). Memory only: they
// restart at zero with the master, as ServiceInfo says.
import type { TrafficStats } from '../../protocol/gen/hivemind/v1/admin.js';
import type { Clock } from '../../common/clock.js';
import type { TrafficView } from './gateway-directory.js';

export const LATENCY_WINDOW = 1024;
/**
 * Replica tasks kept at most: replicas that ended are replaced by new tasks, so without a bound the
 * map would grow with every replacement over the master's life. Idle ones (nothing in flight) are
 * forgotten first, least recently used first.
 */
export const MAX_TRACKED_REPLICAS = 4096;

class Counter {
  requests = 0;
  errors = 0;
  inFlight = 0;
  private ring: Float64Array | undefined;
  private filled = 0;
  private next = 0;

  latency(ms: number): void {
    this.ring ??= new Float64Array(LATENCY_WINDOW);
    this.ring[this.next] = ms;
    this.next = (this.next + 1) % LATENCY_WINDOW;
    this.filled = Math.min(this.filled + 1, LATENCY_WINDOW);
  }

  stats(): TrafficStats {
    const sorted = this.ring ? Array.from(this.ring.subarray(0, this.filled)).sort((a, b) => a - b) : [];
    return { requests: this.requests, errors: this.errors, inFlight: this.inFlight, latencyP50Ms: percentile(sorted, 0.5), latencyP99Ms: percentile(sorted, 0.99) };
  }
}

/** Nearest-rank percentile of ascending values; 0 when there are none. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.ceil(p * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

/** One request's mark on the counters: its head once, its end once (later calls do nothing). */
export interface TrafficTrack {
  /** The response head was sent (or, for an upgrade, the replica's first bytes arrived). */
  head(): void;
  /** The request is over; `error` when it was answered 5xx or cut off. */
  end(error: boolean): void;
}

export class GatewayTraffic implements TrafficView {
  private readonly replicas = new Map<string, Counter>();
  private readonly services = new Map<string, Counter>();

  constructor(private readonly clock: Clock, private readonly maxReplicas = MAX_TRACKED_REPLICAS) {}

  replica(taskId: string): TrafficStats | undefined {
    return this.replicas.get(taskId)?.stats();
  }

  service(name: string): TrafficStats | undefined {
    return this.services.get(name)?.stats();
  }

  /** Requests in flight to a replica task now (0 when unknown), for the pick. */
  inFlight(taskId: string): number {
    return this.replicas.get(taskId)?.inFlight ?? 0;
  }

  serviceInFlight(name: string): number {
    return this.services.get(name)?.inFlight ?? 0;
  }

  /** A request to a service (counted once, whatever replicas it tries). */
  startService(name: string): TrafficTrack {
    let c = this.services.get(name);
    if (!c) this.services.set(name, (c = new Counter()));
    return this.track(c);
  }

  /** One try of a request on a replica task. */
  startReplica(taskId: string): TrafficTrack {
    let c = this.replicas.get(taskId);
    if (c) this.replicas.delete(taskId);
    else c = new Counter();
    this.replicas.set(taskId, c); // last in the map's order: the most recently used
    if (this.replicas.size > this.maxReplicas) this.forgetIdle();
    return this.track(c);
  }

  /** Service names whose counters can be read (metrics rendering). */
  serviceNames(): string[] {
    return [...this.services.keys()].sort();
  }

  /** Drops a removed service's counters. */
  forgetService(name: string): void {
    this.services.delete(name);
  }

  private forgetIdle(): void {
    for (const [taskId, c] of this.replicas) {
      if (this.replicas.size <= this.maxReplicas) return;
      if (c.inFlight === 0) this.replicas.delete(taskId);
    }
  }

  private track(c: Counter): TrafficTrack {
    const started = this.clock.now();
    c.requests++;
    c.inFlight++;
    let headed = false;
    let ended = false;
    return {
      head: () => {
        if (headed || ended) return;
        headed = true;
        c.latency(this.clock.now() - started);
      },
      end: (error) => {
        if (ended) return;
        ended = true;
        c.inFlight--;
        if (error) c.errors++;
      },
    };
  }
}

/**
 * The services' counters in the Prometheus text format (0.0.4), for whoever serves them: the master
 * has no metrics endpoint of its own yet, and the gateway's public listener must not be it.
 */
export function renderTrafficMetrics(traffic: GatewayTraffic): string {
  const names = traffic.serviceNames();
  const lines: string[] = [];
  const family = (metric: string, type: string, help: string, value: (s: TrafficStats) => number) => {
    lines.push(`# HELP ${metric} ${help}`, `# TYPE ${metric} ${type}`);
    for (const name of names) {
      const s = traffic.service(name);
      if (s) lines.push(`${metric}{service="${name}"} ${value(s)}`);
    }
  };
  // Service names are [a-z0-9-] (SERVICE_NAME_RE), so they need no label escaping.
  family('hivemind_gateway_requests_total', 'counter', 'Requests the gateway routed to the service.', (s) => s.requests);
  family('hivemind_gateway_errors_total', 'counter', 'Requests answered 5xx (by the gateway or a replica) or cut off.', (s) => s.errors);
  family('hivemind_gateway_in_flight', 'gauge', 'Requests in flight to the service now.', (s) => s.inFlight);
  family('hivemind_gateway_latency_p50_ms', 'gauge', 'Median time to the response head over the last 1024 requests.', (s) => s.latencyP50Ms);
  family('hivemind_gateway_latency_p99_ms', 'gauge', '99th percentile time to the response head over the last 1024 requests.', (s) => s.latencyP99Ms);
  return `${lines.join('\n')}\n`;
}
