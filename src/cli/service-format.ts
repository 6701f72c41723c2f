// What `hivemind service ls | get | token ...` print: tables for humans, and --json objects with
// stable names whose enums are words ("running", "file"), not the protocol's numbers. Every string
// from the master (names, messages, a replica's last exit) may come from a hostile node or client:
// tables pass through terminalSafe, JSON through printJson's terminalSafeJson.
import type { ReplicaInfo, ServiceInfo, ServiceTokenInfo, TrafficStats } from '../protocol/gen/hivemind/v1/admin.js';
import { DataKind, TaskState, type TaskSpec } from '../protocol/gen/hivemind/v1/common.js';
import { durationText, formatBytes } from '../common/units.js';
import { stateName, table } from './task-format.js';
import { terminalSafe } from './terminal-text.js';

// ---------------------------------------------------------------- JSON

export interface TrafficJson {
  requests: number;
  errors: number;
  inFlight: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
}

export interface ReplicaJson {
  index: number;
  taskId: string;
  attempt: number;
  nodeId: string;
  /** The replica task's state as a word: queued, assigned, running, ... */
  state: string;
  /** healthy, unhealthy, restarting, down, or pending (not running yet): see replicaHealth. */
  health: string;
  healthy: boolean;
  running: boolean;
  restarts: number;
  lastExit: string;
  lastExitAtMs: number;
  healthMessage: string;
  restartAtMs: number;
  queueReason: string;
  stopping: boolean;
  traffic: TrafficJson;
}

export interface ServiceJson {
  name: string;
  endpoint: string;
  public: boolean;
  /** The wanted replica count. */
  replicas: number;
  healthy: number;
  removing: boolean;
  graceMs: number;
  createdAtMs: number;
  image: string;
  command: string[];
  env: Map<string, string>;
  port: number;
  healthPath: string;
  limits: { cpus: number; memoryBytes: number; pids: number; gpus: number };
  data: { sha256: string; path: string; size: number; kind: string; url: string }[];
  traffic: TrafficJson;
  replicaList: ReplicaJson[];
}

export interface ServiceTokenJson {
  tokenId: string;
  service: string;
  label: string;
  /** valid, expired or revoked (at `now`). */
  state: string;
  createdAtMs: number;
  expiresAtMs: number;
  revoked: boolean;
  lastUsedMs: number;
}

function trafficJson(t: TrafficStats | undefined): TrafficJson {
  return { requests: t?.requests ?? 0, errors: t?.errors ?? 0, inFlight: t?.inFlight ?? 0, latencyP50Ms: t?.latencyP50Ms ?? 0, latencyP99Ms: t?.latencyP99Ms ?? 0 };
}

export function dataKindName(k: DataKind): string {
  return k === DataKind.DATA_KIND_FILE ? 'file' : k === DataKind.DATA_KIND_DIR ? 'dir' : '';
}

/**
 * How a replica is doing, one word: pending (its task is not running yet), healthy (in the
 * gateway's rotation), restarting (waiting out its backoff), down (its container is not running)
 * or unhealthy (running, failing its checks).
 */
export function replicaHealth(r: ReplicaInfo): string {
  if (r.state !== TaskState.TASK_STATE_RUNNING || !r.status) return 'pending';
  if (r.status.healthy) return 'healthy';
  if (r.status.restartAtMs > 0) return 'restarting';
  if (!r.status.running) return 'down';
  return 'unhealthy';
}

export function replicaJson(r: ReplicaInfo): ReplicaJson {
  const s = r.status;
  return {
    index: r.index,
    taskId: r.taskId,
    attempt: r.attempt,
    nodeId: r.nodeId,
    state: stateName(r.state),
    health: replicaHealth(r),
    healthy: s?.healthy ?? false,
    running: s?.running ?? false,
    restarts: s?.restarts ?? 0,
    lastExit: s?.lastExit ?? '',
    lastExitAtMs: s?.lastExitAtMs ?? 0,
    healthMessage: s?.healthMessage ?? '',
    restartAtMs: s?.restartAtMs ?? 0,
    queueReason: r.queueReason,
    stopping: r.stopping,
    traffic: trafficJson(r.traffic),
  };
}

export function serviceJson(s: ServiceInfo): ServiceJson {
  const spec: Partial<TaskSpec> = s.spec ?? {};
  const l = spec.limits;
  return {
    name: s.name,
    endpoint: s.endpoint,
    public: s.public,
    replicas: s.replicas,
    healthy: s.healthy,
    removing: s.removing,
    graceMs: s.graceMs,
    createdAtMs: s.createdAtMs,
    image: spec.image ?? '',
    command: spec.command ?? [],
    env: spec.env ?? new Map(),
    port: spec.service?.port ?? 0,
    healthPath: spec.service?.healthPath ?? '',
    limits: { cpus: l?.cpus ?? 0, memoryBytes: l?.memoryBytes ?? 0, pids: l?.pids ?? 0, gpus: l?.gpus ?? 0 },
    data: (spec.data ?? []).map((m) => ({ sha256: m.sha256, path: m.path, size: m.size, kind: dataKindName(m.kind), url: m.url })),
    traffic: trafficJson(s.traffic),
    replicaList: [...s.replicaList].sort((a, b) => a.index - b.index).map(replicaJson),
  };
}

export function tokenState(t: ServiceTokenInfo, now: number): string {
  if (t.revoked) return 'revoked';
  if (t.expiresAtMs > 0 && t.expiresAtMs <= now) return 'expired';
  return 'valid';
}

export function tokenJson(t: ServiceTokenInfo, now: number): ServiceTokenJson {
  return {
    tokenId: t.tokenId,
    service: t.service,
    label: t.label,
    state: tokenState(t, now),
    createdAtMs: t.createdAtMs,
    expiresAtMs: t.expiresAtMs,
    revoked: t.revoked,
    lastUsedMs: t.lastUsedMs,
  };
}

// ---------------------------------------------------------------- tables

function ms(v: number): string {
  return v > 0 ? `${v < 10 ? v.toFixed(1) : Math.round(v)}ms` : '-';
}

function when(atMs: number): string {
  return atMs > 0 ? new Date(atMs).toISOString() : '-';
}

/** `service ls`: one row per service. */
export function formatServiceTable(services: ServiceInfo[]): string {
  if (services.length === 0) return 'no services';
  const rows = [['NAME', 'HEALTHY', 'IMAGE', 'PORT', 'ACCESS', 'REQUESTS', 'ERRORS', 'ENDPOINT']];
  for (const s of services) {
    rows.push([
      s.name,
      `${s.healthy}/${s.replicas}${s.removing ? ' removing' : ''}`,
      s.spec?.image ?? '',
      String(s.spec?.service?.port ?? ''),
      s.public ? 'public' : 'token',
      String(s.traffic?.requests ?? 0),
      String(s.traffic?.errors ?? 0),
      s.endpoint || '-',
    ]);
  }
  return table(rows);
}

/** What a replica row's last column says: why it waits, why it is unhealthy, or that it is stopping. */
function replicaNote(r: ReplicaInfo, now: number): string {
  const notes: string[] = [];
  if (r.stopping) notes.push('stopping');
  if (r.state === TaskState.TASK_STATE_QUEUED && r.queueReason) notes.push(r.queueReason);
  const s = r.status;
  if (s && r.state === TaskState.TASK_STATE_RUNNING) {
    if (s.restartAtMs > 0) notes.push(`restart in ${durationText(Math.max(0, s.restartAtMs - now))}`);
    if (!s.healthy && s.healthMessage) notes.push(s.healthMessage);
  }
  return notes.join('; ');
}

/** `service get`: the service, then a table of its replicas. */
export function formatService(s: ServiceInfo, now: number): string {
  const spec = s.spec;
  const l = spec?.limits;
  const limits = [
    l?.cpus ? `${l.cpus} cpus` : '',
    l?.memoryBytes ? `memory ${formatBytes(l.memoryBytes)}` : '',
    l?.gpus ? `${l.gpus} gpus` : '',
    l?.pids ? `${l.pids} pids` : '',
  ].filter(Boolean);
  const t = s.traffic;
  const lines = [
    `service   ${s.name}${s.removing ? ' (removing)' : ''}`,
    `endpoint  ${s.endpoint}${s.public ? ' (public: no token needed)' : ' (needs a token: hivemind service token create)'}`,
    `image     ${spec?.image ?? ''}`,
    `command   ${JSON.stringify(spec?.command ?? [])}`,
    `port      ${spec?.service?.port ?? ''}, health ${spec?.service?.healthPath ? `GET ${spec.service.healthPath}` : 'TCP connect'}, grace ${durationText(s.graceMs)}`,
  ];
  if (limits.length) lines.push(`limits    ${limits.join(', ')}`);
  for (const m of spec?.data ?? []) lines.push(`data      ${m.path}  ${m.sha256}`);
  lines.push(`replicas  ${s.healthy} healthy of ${s.replicas} wanted`);
  lines.push(`traffic   ${t?.requests ?? 0} requests, ${t?.errors ?? 0} errors, ${t?.inFlight ?? 0} in flight, p50 ${ms(t?.latencyP50Ms ?? 0)}, p99 ${ms(t?.latencyP99Ms ?? 0)}`);
  const head = lines.map((line) => terminalSafe(line)).join('\n');
  if (s.replicaList.length === 0) return `${head}\n\nno replicas`;
  const rows = [['REPLICA', 'TASK', 'NODE', 'STATE', 'HEALTH', 'RESTARTS', 'LAST EXIT', 'REQUESTS', 'ERRORS', 'P50', 'P99', 'NOTE']];
  for (const r of [...s.replicaList].sort((a, b) => a.index - b.index)) {
    rows.push([
      String(r.index),
      r.taskId || '-',
      r.nodeId ? r.nodeId.slice(0, 12) : '-',
      stateName(r.state),
      replicaHealth(r),
      String(r.status?.restarts ?? 0),
      r.status?.lastExit || '-',
      String(r.traffic?.requests ?? 0),
      String(r.traffic?.errors ?? 0),
      ms(r.traffic?.latencyP50Ms ?? 0),
      ms(r.traffic?.latencyP99Ms ?? 0),
      replicaNote(r, now),
    ]);
  }
  return `${head}\n\n${table(rows)}`;
}

/** `service token ls`. */
export function formatTokenTable(tokens: ServiceTokenInfo[], now: number): string {
  if (tokens.length === 0) return 'no tokens';
  const rows = [['TOKEN ID', 'STATE', 'LABEL', 'CREATED', 'EXPIRES', 'LAST USED']];
  for (const t of tokens) {
    rows.push([t.tokenId, tokenState(t, now), t.label || '-', when(t.createdAtMs), t.expiresAtMs > 0 ? when(t.expiresAtMs) : 'never', when(t.lastUsedMs)]);
  }
  return table(rows);
}
