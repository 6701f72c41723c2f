// The master's /metrics, served on the gateway's listener to the admin token only: the gateway's
// traffic per service (gateway-traffic.ts) and per replica task, and each service's replicas
// wanted, placed and healthy. Pure rendering over the traffic counters and the services as read.
import type { TrafficStats } from '../../protocol/gen/hivemind/v1/admin.js';
import type { GatewayReplica } from './gateway-directory.js';
import { bearerToken } from './gateway-path.js';
import { renderTrafficMetrics, type GatewayTraffic } from './gateway-traffic.js';

export const METRICS_PATH = '/metrics';

/** What the gateway needs to serve /metrics; without it, /metrics is not a route (404). */
export interface GatewayMetricsSource {
  /** Whether a presented Bearer secret is the master's admin token (compared in constant time). */
  isAdminToken(token: string): boolean;
  /** Every service of the master with the replica count it wants now (0 while it is being removed). */
  services(): { name: string; wanted: number }[];
}

/**
 * Why a request's Authorization header does not read the master's metrics (a 401's message), or
 * undefined when it carries the admin token. One check for every listener that serves them.
 */
export function adminTokenRefusal(authorization: string | undefined, isAdminToken: (token: string) => boolean): string | undefined {
  const token = bearerToken(authorization);
  if (token === undefined) return 'metrics need the master\'s admin token: send Authorization: Bearer <admin token> (<data dir>/admin.token)';
  if (!isAdminToken(token)) return 'the token is not the master\'s admin token (a service token does not read metrics)';
  return undefined;
}

/** The challenge sent with that 401. */
export const ADMIN_CHALLENGE = { 'WWW-Authenticate': 'Bearer realm="hivemind-admin"' };

export interface ServiceReplicasNow {
  name: string;
  wanted: number;
  /** Replica tasks placed on a node and not ending (the gateway directory's view). */
  replicas: GatewayReplica[];
}

/** Label values in the text format: backslash, quote and newline escaped. */
function label(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

const ZERO: TrafficStats = { requests: 0, errors: 0, inFlight: 0, latencyP50Ms: 0, latencyP99Ms: 0 };

/**
 * The whole /metrics body (text format 0.0.4). Per replica series name the service, the replica
 * index and its task: a replaced replica is a new task, so its counters start a new series rather
 * than reading as a reset of the old one. Replicas with no request yet show zeros.
 */
export function renderGatewayMetrics(traffic: GatewayTraffic, services: readonly ServiceReplicasNow[]): string {
  const lines: string[] = [];
  const sorted = [...services].sort((a, b) => a.name.localeCompare(b.name));
  const perService = (metric: string, help: string, value: (s: ServiceReplicasNow) => number) => {
    lines.push(`# HELP ${metric} ${help}`, `# TYPE ${metric} gauge`);
    for (const s of sorted) lines.push(`${metric}{service="${label(s.name)}"} ${value(s)}`);
  };
  perService('hivemind_service_replicas_wanted', 'Replicas the service wants (0 while it is being removed).', (s) => s.wanted);
  perService('hivemind_service_replicas_placed', 'Replica tasks of the service placed on a node and not ending.', (s) => s.replicas.length);
  perService('hivemind_service_replicas_healthy', 'Replicas running and healthy: in the gateway\'s rotation.', (s) => s.replicas.filter((r) => r.healthy).length);

  const replicas = sorted.flatMap((s) => [...s.replicas].sort((a, b) => a.index - b.index || a.taskId.localeCompare(b.taskId)).map((r) => ({ service: s.name, r, stats: traffic.replica(r.taskId) ?? ZERO })));
  const perReplica = (metric: string, type: string, help: string, value: (s: TrafficStats) => number) => {
    lines.push(`# HELP ${metric} ${help}`, `# TYPE ${metric} ${type}`);
    for (const { service, r, stats } of replicas) lines.push(`${metric}{service="${label(service)}",replica="${r.index}",task="${label(r.taskId)}"} ${value(stats)}`);
  };
  perReplica('hivemind_gateway_replica_requests_total', 'counter', 'Tries of requests on the replica task (a request whose first pipe failed tries one other replica).', (s) => s.requests);
  perReplica('hivemind_gateway_replica_errors_total', 'counter', 'Tries on the replica answered 5xx, cut off, or whose pipe failed.', (s) => s.errors);
  perReplica('hivemind_gateway_replica_in_flight', 'gauge', 'Requests in flight to the replica now.', (s) => s.inFlight);
  perReplica('hivemind_gateway_replica_latency_p50_ms', 'gauge', 'Median time to the response head over the replica\'s last 1024 requests.', (s) => s.latencyP50Ms);
  perReplica('hivemind_gateway_replica_latency_p99_ms', 'gauge', '99th percentile time to the response head over the replica\'s last 1024 requests.', (s) => s.latencyP99Ms);
  return `${lines.join('\n')}\n${renderTrafficMetrics(traffic)}`;
}
