// Pure checks of what a node says about itself (Register/Enroll facts, resource reports, the
// Subscribe running list) against the bounds in protocol/node-limits.ts. Each failure is an
// InvalidArgumentError naming the field, what was sent and the bound, so the node's log says what
// to fix; nothing is stored from a refused message. Every check is O(size of the message), and the
// message size is capped before decoding (size-capped-services.ts).
import type { Capacity, DataCacheStatus, GpuInfo, NodeFacts, ResourceReport, TunnelStatus } from '../protocol/gen/hivemind/v1/common.js';
import type { RunningTask, TaskUpdate } from '../protocol/gen/hivemind/v1/node.js';
import {
  CONTROL_CHARACTERS, CONTROL_CHARACTERS_EXCEPT_WHITESPACE, MAX_CACHE_ENTRIES_REPORTED, GPU_TEMPERATURE_RANGE_C, LABEL_KEY_PATTERN, MAX_CPU_CORES, MAX_DOCKER_MESSAGE_CHARS, MAX_FACT_CHARS, MAX_GPU_INDEX,
  MAX_GPU_POWER_W, MAX_GPU_UUID_CHARS, MAX_GPUS, MAX_HOSTNAME_CHARS, MAX_LABEL_KEY_CHARS, MAX_LABEL_VALUE_CHARS, MAX_LABELS,
  MAX_NODE_NAME_CHARS, MAX_STATE_CHARS, MAX_TASK_ID_CHARS, MAX_TASK_SLOTS, MAX_TUNNEL_FIELD_CHARS, cutReplicaText, cutUpdateMessage, heldTaskLimit,
} from '../protocol/node-limits.js';
import { InvalidArgumentError } from './master-errors.js';
import { offeredIsolationsViolation } from '../protocol/isolation-rules.js';
import { engineViolation, unenforcedLimitsViolation } from '../protocol/limit-rules.js';
import { progressViolation } from '../protocol/progress-rules.js';

/** A short, printable excerpt of a hostile string for an error message. */
function excerpt(s: string): string {
  const head = s.length > 32 ? `${s.slice(0, 32)}…` : s;
  return JSON.stringify(head);
}

function checkText(field: string, value: string, max: number, opts: { multiline?: boolean } = {}): void {
  if (value.length > max) throw new InvalidArgumentError(`${field}: ${value.length} characters, over the limit of ${max}`);
  if ((opts.multiline ? CONTROL_CHARACTERS_EXCEPT_WHITESPACE : CONTROL_CHARACTERS).test(value)) {
    throw new InvalidArgumentError(`${field}: ${excerpt(value)} contains control characters${opts.multiline ? ' (only tabs and line breaks are allowed)' : ''}`);
  }
}

function checkNumber(field: string, value: number, min: number, max: number): void {
  if (!Number.isFinite(value)) throw new InvalidArgumentError(`${field}: ${value} is not a finite number`);
  if (value < min || value > max) throw new InvalidArgumentError(`${field}: ${value} is outside ${min}..${max}`);
}

function checkBytes(field: string, value: number): void {
  checkNumber(field, value, 0, Number.MAX_SAFE_INTEGER);
}

function checkCount(field: string, n: number, max: number, what: string): void {
  if (n > max) throw new InvalidArgumentError(`${field}: ${n} ${what}, over the limit of ${max}`);
}

function checkGpuInfo(at: string, g: GpuInfo): void {
  checkNumber(`${at}.index`, g.index, 0, MAX_GPU_INDEX);
  checkText(`${at}.uuid`, g.uuid, MAX_GPU_UUID_CHARS);
  checkText(`${at}.name`, g.name, MAX_FACT_CHARS);
  checkBytes(`${at}.memory_total_bytes`, g.memoryTotalBytes);
}

/** The name and facts of Register and Enroll. */
export function validateRegistration(name: string, facts: NodeFacts): void {
  checkText('name', name, MAX_NODE_NAME_CHARS);
  checkText('facts.hostname', facts.hostname, MAX_HOSTNAME_CHARS);
  for (const [field, value] of [
    ['facts.os', facts.os], ['facts.os_release', facts.osRelease], ['facts.arch', facts.arch], ['facts.cpu_model', facts.cpuModel],
    ['facts.docker_version', facts.dockerVersion], ['facts.worker_version', facts.workerVersion],
  ] as const) {
    checkText(field, value, MAX_FACT_CHARS);
  }
  checkNumber('facts.cpu_cores', facts.cpuCores, 0, MAX_CPU_CORES);
  checkBytes('facts.memory_bytes', facts.memoryBytes);
  checkBytes('facts.disk_bytes', facts.diskBytes);
  checkNumber('facts.max_tasks', facts.maxTasks, 0, MAX_TASK_SLOTS);
  checkCount('facts.gpus', facts.gpus.length, MAX_GPUS, 'GPUs');
  const isolations = offeredIsolationsViolation('facts.isolations', facts.isolations ?? []);
  if (isolations) throw new InvalidArgumentError(isolations);
  const unenforced = unenforcedLimitsViolation('facts.unenforced_limits', facts.unenforcedLimits ?? []);
  if (unenforced) throw new InvalidArgumentError(unenforced);
  const engine = engineViolation('facts.engine', facts.engine ?? '');
  if (engine) throw new InvalidArgumentError(engine);
  facts.gpus.forEach((g, i) => checkGpuInfo(`facts.gpus[${i}]`, g));
  const labels = [...facts.labels];
  checkCount('facts.labels', labels.length, MAX_LABELS, 'labels');
  for (const [key, value] of labels) {
    if (key.length > MAX_LABEL_KEY_CHARS) throw new InvalidArgumentError(`facts.labels: key ${excerpt(key)} is ${key.length} characters, over the limit of ${MAX_LABEL_KEY_CHARS}`);
    if (!LABEL_KEY_PATTERN.test(key)) throw new InvalidArgumentError(`facts.labels: key ${excerpt(key)} may only hold letters, digits and _ . - /`);
    checkText(`facts.labels[${JSON.stringify(key)}]`, value, MAX_LABEL_VALUE_CHARS);
  }
}

/** Free capacity as a node announces it (Subscribe, reports). */
export function validateCapacity(field: string, c: Capacity | undefined): void {
  if (!c) return;
  checkNumber(`${field}.cpus`, c.cpus, 0, MAX_CPU_CORES);
  checkBytes(`${field}.memory_bytes`, c.memoryBytes);
  checkCount(`${field}.gpu_indexes`, c.gpuIndexes.length, MAX_GPUS, 'GPU indexes');
  c.gpuIndexes.forEach((g, i) => checkNumber(`${field}.gpu_indexes[${i}]`, g, 0, MAX_GPU_INDEX));
  checkNumber(`${field}.task_slots`, c.taskSlots, 0, MAX_TASK_SLOTS);
}

function heldLimitText(maxTasks: number): string {
  return maxTasks > 0 ? `for a node with ${Math.min(maxTasks, MAX_TASK_SLOTS)} task slots` : 'for a node that declares no max_tasks';
}

/**
 * The tasks a subscribing node says it holds. `maxTasks` is the node's registered slot count;
 * the bound is checked before anything is looked up, so a long list costs nothing per entry.
 */
export function validateRunningList(running: readonly RunningTask[], maxTasks: number): void {
  const limit = heldTaskLimit(maxTasks);
  if (running.length > limit) {
    throw new InvalidArgumentError(`running: ${running.length} tasks listed, over the limit of ${limit} ${heldLimitText(maxTasks)} (facts.max_tasks); a node cannot hold more`);
  }
  running.forEach((r, i) => {
    if (r.taskId.length === 0) throw new InvalidArgumentError(`running[${i}].task_id is empty`);
    checkText(`running[${i}].task_id`, r.taskId, MAX_TASK_ID_CHARS);
  });
}

function checkTunnel(t: TunnelStatus): void {
  checkText('tunnel.interface', t.interface, MAX_TUNNEL_FIELD_CHARS);
  checkText('tunnel.address', t.address, MAX_TUNNEL_FIELD_CHARS);
  checkText('tunnel.master_endpoint', t.masterEndpoint, MAX_TUNNEL_FIELD_CHARS);
  checkText('tunnel.state', t.state, MAX_STATE_CHARS);
  checkText('tunnel.implementation', t.implementation, MAX_STATE_CHARS);
  checkBytes('tunnel.rx_bytes', t.rxBytes);
  checkBytes('tunnel.tx_bytes', t.txBytes);
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** The node's data cache status: bounded count, digests, sizes. */
function checkCache(c: DataCacheStatus): void {
  checkCount('cache.held', c.held.length, MAX_CACHE_ENTRIES_REPORTED, 'entries');
  c.held.forEach((h, i) => {
    if (!DIGEST.test(h.sha256)) throw new InvalidArgumentError(`cache.held[${i}].sha256: ${excerpt(h.sha256)} is not "sha256:" and 64 lowercase hex digits`);
    checkBytes(`cache.held[${i}].size`, h.size);
  });
  checkBytes('cache.budget_bytes', c.budgetBytes);
  checkBytes('cache.free_bytes', c.freeBytes);
  checkBytes('cache.evictable_bytes', c.evictableBytes);
}

/** One ResourceReport of a node with `maxTasks` registered slots. */
export function validateReport(r: ResourceReport, maxTasks: number): void {
  checkNumber('cpu_percent', r.cpuPercent, 0, 100);
  for (const [field, value] of [
    ['memory_used_bytes', r.memoryUsedBytes], ['memory_total_bytes', r.memoryTotalBytes], ['disk_used_bytes', r.diskUsedBytes],
    ['disk_total_bytes', r.diskTotalBytes], ['net_rx_bytes_per_sec', r.netRxBytesPerSec], ['net_tx_bytes_per_sec', r.netTxBytesPerSec],
  ] as const) {
    checkBytes(field, value);
  }
  checkCount('gpus', r.gpus.length, MAX_GPUS, 'GPU entries');
  r.gpus.forEach((g, i) => {
    checkNumber(`gpus[${i}].index`, g.index, 0, MAX_GPU_INDEX);
    checkNumber(`gpus[${i}].utilization_percent`, g.utilizationPercent, 0, 100);
    checkBytes(`gpus[${i}].memory_used_bytes`, g.memoryUsedBytes);
    checkBytes(`gpus[${i}].memory_total_bytes`, g.memoryTotalBytes);
    checkNumber(`gpus[${i}].temperature_c`, g.temperatureC, GPU_TEMPERATURE_RANGE_C[0], GPU_TEMPERATURE_RANGE_C[1]);
    checkNumber(`gpus[${i}].power_w`, g.powerW, 0, MAX_GPU_POWER_W);
  });
  checkText('docker_message', r.dockerMessage, MAX_DOCKER_MESSAGE_CHARS, { multiline: true });
  const limit = heldTaskLimit(maxTasks);
  if (r.tasks.length > limit) throw new InvalidArgumentError(`tasks: ${r.tasks.length} task usage entries, over the limit of ${limit} ${heldLimitText(maxTasks)} (facts.max_tasks)`);
  r.tasks.forEach((t, i) => {
    checkText(`tasks[${i}].task_id`, t.taskId, MAX_TASK_ID_CHARS);
    checkNumber(`tasks[${i}].cpu_percent`, t.cpuPercent, 0, 100 * MAX_CPU_CORES);
    checkBytes(`tasks[${i}].memory_bytes`, t.memoryBytes);
  });
  validateCapacity('free', r.free);
  checkText('lifecycle_state', r.lifecycleState, MAX_STATE_CHARS);
  if (r.tunnel) checkTunnel(r.tunnel);
  if (r.cache) checkCache(r.cache);
}

/**
 * A task update within bounds: the task id and result hash checked, the free capacity checked like
 * a report's, the free text cut (a state change is not refused for its wording, but never stores
 * more than MAX_UPDATE_MESSAGE_CHARS).
 */
export function boundTaskUpdate(u: TaskUpdate): TaskUpdate {
  if (u.taskId.length > MAX_TASK_ID_CHARS) throw new InvalidArgumentError(`task_id: ${u.taskId.length} characters, over the limit of ${MAX_TASK_ID_CHARS}`);
  validateCapacity('free', u.free);
  if (u.pull) {
    checkBytes('pull.current_bytes', u.pull.currentBytes);
    checkBytes('pull.total_bytes', u.pull.totalBytes);
  }
  if (u.data) {
    checkBytes('data.received_bytes', u.data.receivedBytes);
    checkBytes('data.total_bytes', u.data.totalBytes);
  }
  const o = u.outcome;
  if (o) {
    if (o.resultSha256 !== '' && !/^[0-9a-f]{64}$/.test(o.resultSha256)) throw new InvalidArgumentError(`outcome.result_sha256: ${excerpt(o.resultSha256)} is not 64 lowercase hex digits`);
    checkBytes('outcome.result_size', o.resultSize);
    checkBytes('outcome.duration_ms', o.durationMs);
  }
  const r = u.replica;
  if (r) {
    checkBytes('replica.last_exit_at_ms', r.lastExitAtMs);
    checkBytes('replica.restart_at_ms', r.restartAtMs);
  }
  const message = cutUpdateMessage(u.message);
  const outcomeMessage = o ? cutUpdateMessage(o.message) : '';
  const replica = r && { ...r, lastExit: cutReplicaText(r.lastExit), healthMessage: cutReplicaText(r.healthMessage) };
  if (message === u.message && (!o || outcomeMessage === o.message) && (!r || (replica!.lastExit === r.lastExit && replica!.healthMessage === r.healthMessage))) return u;
  return { ...u, message, ...(o ? { outcome: { ...o, message: outcomeMessage } } : {}), ...(replica ? { replica } : {}) };
}

/**
 * The update without its progress report when that breaks the rules the node should have held it
 * to (docs/progress.md: limits), with why: a bad report costs only itself, and the state change
 * and everything else in the update still apply.
 */
export function screenProgress(u: TaskUpdate): { update: TaskUpdate; refused?: string } {
  if (!u.progress) return { update: u };
  const refused = progressViolation(u.progress);
  if (refused === undefined) return { update: u };
  const { progress: _dropped, ...rest } = u;
  return { update: rest, refused };
}

/**
 * The gateway pipe a node announces (SubscribeRequest.gateway), or a precise refusal: the master
 * dials this port with this key, so both are held to their exact form.
 */
export function validateGatewayPipe(g: { port: number; key: string }): void {
  if (!Number.isInteger(g.port) || g.port < 1 || g.port > 65535) throw new InvalidArgumentError(`gateway.port: ${g.port} is not a TCP port (1..65535)`);
  if (!/^[0-9a-f]{64}$/.test(g.key)) throw new InvalidArgumentError(`gateway.key: ${excerpt(g.key)} is not 64 lowercase hex digits`);
}
