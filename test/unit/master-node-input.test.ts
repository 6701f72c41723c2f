// What a node may say about itself: the validators of facts, reports and the Subscribe running
// list, the size caps applied before decoding, and the per-node call rate.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../src/common/clock.js';
import { toServiceError } from '../../src/protocol/grpc-errors.js';
import { status } from '@grpc/grpc-js';
import { InvalidArgumentError } from '../../src/master/master-errors.js';
import { CallRate, RateLimitedError } from '../../src/master/call-rate.js';
import { boundTaskUpdate, validateCapacity, validateGatewayPipe, validateRegistration, validateReport, validateRunningList } from '../../src/master/node-input-validation.js';
import { SizeCappedEnrollService, SizeCappedNodeService, assertWithinSize } from '../../src/master/size-capped-services.js';
import { NodeFacts, ResourceReport, type DataCacheStatus, type GpuInfo, type GpuUsage } from '../../src/protocol/gen/hivemind/v1/common.js';
import { EnrollRequest } from '../../src/protocol/gen/hivemind/v1/enroll.js';
import { RegisterRequest, SubscribeRequest, TaskUpdate } from '../../src/protocol/gen/hivemind/v1/node.js';
import {
  MAX_CACHE_ENTRIES_REPORTED, MAX_DOCKER_MESSAGE_CHARS, MAX_GPUS, MAX_LABELS, MAX_REPLICA_TEXT_CHARS, MAX_REPORT_BYTES, MAX_SUBSCRIBE_BYTES, heldTaskLimit,
} from '../../src/protocol/node-limits.js';
import { buildReport } from '../../src/worker/resources/report-builder.js';
import { recordHostile } from '../helpers/fault-ledger.js';

const facts = (p: Partial<NodeFacts> = {}): NodeFacts => NodeFacts.create({
  hostname: 'gpu-box-1.example.org', os: 'linux', osRelease: 'Debian GNU/Linux 12 (bookworm)', arch: 'x64', cpuCores: 32,
  cpuModel: 'AMD EPYC 7543 32-Core Processor', memoryBytes: 256 * 1024 ** 3, diskBytes: 4 * 1024 ** 4,
  gpus: [{ index: 0, uuid: 'GPU-5d3c1c6e-8a8f-2b4e-7f1d-0a1b2c3d4e5f', name: 'NVIDIA A100-SXM4-80GB', memoryTotalBytes: 80 * 1024 ** 3 }],
  dockerVersion: '27.3.1', labels: new Map([['zone', 'eu-west'], ['example.org/tier', 'gold']]), workerVersion: '0.1.0', maxTasks: 8, ...p,
});
const gpu = (i: number): GpuInfo => ({ index: i, uuid: `GPU-${i}`, name: 'x', memoryTotalBytes: 1 });
const usage = (i: number): GpuUsage => ({ index: i, utilizationPercent: 50, memoryUsedBytes: 1, memoryTotalBytes: 2, temperatureC: 60, powerW: 250 });
const report = (p: Partial<ResourceReport> = {}): ResourceReport => ResourceReport.create({
  seq: 1, atMs: Date.now(), cpuPercent: 12.5, memoryUsedBytes: 1, memoryTotalBytes: 2, gpus: [usage(0)], dockerOk: true,
  tasks: [{ taskId: '0123456789abcdef', cpuPercent: 180, memoryBytes: 1024 }], free: { cpus: 3.5, memoryBytes: 1024, gpuIndexes: [1, 2], taskSlots: 1 },
  lifecycleState: 'connected', accepting: true, ...p,
});

/** Asserts an INVALID_ARGUMENT whose message matches, recording the hostile case first. */
function refused(name: string, fn: () => void, re: RegExp): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  recordHostile(`node input: ${name}`, !(err instanceof InvalidArgumentError && re.test(err.message)));
  assert.ok(err instanceof InvalidArgumentError, `${name}: expected InvalidArgumentError, got ${String(err)}`);
  assert.match(err.message, re, name);
  assert.equal(toServiceError(err).code, status.INVALID_ARGUMENT);
}

test('real facts, reports and running lists pass', () => {
  validateRegistration('gpu-box-1', facts());
  validateRegistration('', NodeFacts.create());
  validateReport(report(), 8);
  validateReport(ResourceReport.create(), 0);
  validateReport(report({ dockerOk: false, dockerMessage: 'connect ENOENT /var/run/docker.sock\n\tat Socket' }), 8);
  validateRunningList(Array.from({ length: heldTaskLimit(8) }, (_, i) => ({ taskId: i.toString(16).padStart(16, '0'), attempt: 1 })), 8);
  validateCapacity('free', undefined);
});

test('the held-task bound follows the declared slots', () => {
  assert.equal(heldTaskLimit(2), 20);
  assert.equal(heldTaskLimit(256), 528);
  assert.equal(heldTaskLimit(1_000_000), 528, 'slots over the maximum count as the maximum');
  assert.equal(heldTaskLimit(0), 144, 'a node that declares none gets 64 slots');
});

test('hostile facts are refused, each naming the field and the limit', () => {
  const longLabels = new Map(Array.from({ length: 1200 }, (_, i) => [`k${i}`, 'v'.repeat(2048)]));
  const cases: [string, () => void, RegExp][] = [
    ['1,200 labels of 2 kB', () => validateRegistration('n', facts({ labels: longLabels })), /^facts\.labels: 1200 labels, over the limit of 64$/],
    ['a label value of 2 kB', () => validateRegistration('n', facts({ labels: new Map([['a', 'v'.repeat(2048)]]) })), /^facts\.labels\["a"\]: 2048 characters, over the limit of 256$/],
    ['a label key of 1 kB', () => validateRegistration('n', facts({ labels: new Map([['k'.repeat(1024), 'v']]) })), /key "k{32}…" is 1024 characters, over the limit of 128/],
    ['a label key with spaces', () => validateRegistration('n', facts({ labels: new Map([['a b', 'v']]) })), /key "a b" may only hold/],
    ['a name with terminal escapes', () => validateRegistration('\u001b]0;pwned\u0007', facts()), /^name: .* contains control characters$/],
    ['a name of 10 kB', () => validateRegistration('n'.repeat(10_000), facts()), /^name: 10000 characters, over the limit of 253$/],
    ['a hostname of 1 kB', () => validateRegistration('', facts({ hostname: 'h'.repeat(1000) })), /^facts\.hostname: 1000 characters, over the limit of 253$/],
    ['a docker version of 1 kB', () => validateRegistration('n', facts({ dockerVersion: 'x'.repeat(1000) })), /^facts\.docker_version: 1000 characters, over the limit of 128$/],
    ['a worker version with a newline', () => validateRegistration('n', facts({ workerVersion: '1.0\nFAKE LOG LINE' })), /^facts\.worker_version: .* contains control characters$/],
    ['200,000 GPUs in the facts', () => validateRegistration('n', facts({ gpus: Array.from({ length: 200_000 }, (_, i) => gpu(i)) })), /^facts\.gpus: 200000 GPUs, over the limit of 64$/],
    ['a GPU name of 1 kB', () => validateRegistration('n', facts({ gpus: [{ ...gpu(0), name: 'g'.repeat(1000) }] })), /^facts\.gpus\[0\]\.name: 1000 characters/],
    ['a GPU index of 4 billion', () => validateRegistration('n', facts({ gpus: [gpu(4_000_000_000)] })), /^facts\.gpus\[0\]\.index: 4000000000 is outside 0\.\.1023$/],
    ['a million CPU cores', () => validateRegistration('n', facts({ cpuCores: 1_000_000 })), /^facts\.cpu_cores: 1000000 is outside 0\.\.4096$/],
    ['a million task slots', () => validateRegistration('n', facts({ maxTasks: 1_000_000 })), /^facts\.max_tasks: 1000000 is outside 0\.\.256$/],
    ['memory that is not a number', () => validateRegistration('n', facts({ memoryBytes: Number.NaN })), /^facts\.memory_bytes: NaN is not a finite number$/],
  ];
  for (const [name, fn, re] of cases) refused(name, fn, re);
});

test('hostile reports are refused, each naming the field and the limit', () => {
  const cases: [string, () => void, RegExp][] = [
    ['a report with 200,000 GPU entries', () => validateReport(report({ gpus: Array.from({ length: 200_000 }, (_, i) => usage(i)) }), 8), /^gpus: 200000 GPU entries, over the limit of 64$/],
    ['a report with more task usage entries than slots allow', () => validateReport(report({ tasks: Array.from({ length: 21 }, (_, i) => ({ taskId: `t${i}`, cpuPercent: 0, memoryBytes: 0 })) }), 2),
      /^tasks: 21 task usage entries, over the limit of 20 for a node with 2 task slots \(facts\.max_tasks\)$/],
    ['a report with a 1 MB docker message', () => validateReport(report({ dockerMessage: 'x'.repeat(1_000_000) }), 8), /^docker_message: 1000000 characters, over the limit of 2048$/],
    ['a report with a NUL in the docker message', () => validateReport(report({ dockerMessage: 'a\u0000b' }), 8), /^docker_message: .* contains control characters \(only tabs and line breaks are allowed\)$/],
    ['a report with an infinite CPU load', () => validateReport(report({ cpuPercent: Number.POSITIVE_INFINITY }), 8), /^cpu_percent: Infinity is not a finite number$/],
    ['a report with a negative CPU load', () => validateReport(report({ cpuPercent: -5 }), 8), /^cpu_percent: -5 is outside 0\.\.100$/],
    ['a report with a NaN GPU temperature', () => validateReport(report({ gpus: [{ ...usage(0), temperatureC: Number.NaN }] }), 8), /^gpus\[0\]\.temperature_c: NaN is not a finite number$/],
    ['a report with a 150% GPU load', () => validateReport(report({ gpus: [{ ...usage(0), utilizationPercent: 150 }] }), 8), /^gpus\[0\]\.utilization_percent: 150 is outside 0\.\.100$/],
    ['a report with a 1 kB task id', () => validateReport(report({ tasks: [{ taskId: 't'.repeat(1000), cpuPercent: 0, memoryBytes: 0 }] }), 8), /^tasks\[0\]\.task_id: 1000 characters, over the limit of 64$/],
    ['a report with infinite free CPUs', () => validateReport(report({ free: { cpus: Number.POSITIVE_INFINITY, memoryBytes: 0, gpuIndexes: [], taskSlots: 0 } }), 8), /^free\.cpus: Infinity is not a finite number$/],
    ['a report with 100,000 free GPU indexes', () => validateReport(report({ free: { cpus: 1, memoryBytes: 0, gpuIndexes: Array.from({ length: 100_000 }, (_, i) => i), taskSlots: 0 } }), 8), /^free\.gpu_indexes: 100000 GPU indexes, over the limit of 64$/],
    ['a report with a 10 kB lifecycle state', () => validateReport(report({ lifecycleState: 's'.repeat(10_000) }), 8), /^lifecycle_state: 10000 characters, over the limit of 32$/],
    ['a report with a 10 kB tunnel endpoint', () => validateReport(report({ tunnel: { interface: 'hm0', address: '', masterEndpoint: 'e'.repeat(10_000), latestHandshakeMs: 0, rxBytes: 0, txBytes: 0, state: 'up', implementation: 'kernel' } }), 8), /^tunnel\.master_endpoint: 10000 characters, over the limit of 260$/],
  ];
  for (const [name, fn, re] of cases) refused(name, fn, re);
});

test('a running list longer than the node\'s slots allow is refused before any entry is looked at', () => {
  const running = Array.from({ length: 250_000 }, (_, i) => ({ taskId: i.toString(16).padStart(8, '0'), attempt: 1 }));
  refused('a Subscribe naming 250,000 tasks', () => validateRunningList(running, 2),
    /^running: 250000 tasks listed, over the limit of 20 for a node with 2 task slots \(facts\.max_tasks\); a node cannot hold more$/);
  refused('a Subscribe naming a 1 kB task id', () => validateRunningList([{ taskId: 'x'.repeat(1000), attempt: 1 }], 2), /^running\[0\]\.task_id: 1000 characters, over the limit of 64$/);
  refused('a Subscribe naming an empty task id', () => validateRunningList([{ taskId: '', attempt: 1 }], 2), /^running\[0\]\.task_id is empty$/);
});

test('node messages over their size cap are not decoded; the handler refuses them by size', () => {
  const big = Buffer.from(SubscribeRequest.encode({ running: Array.from({ length: 250_000 }, (_, i) => ({ taskId: i.toString(16).padStart(8, '0'), attempt: 1 })), free: undefined, accepting: true, exec: false }).finish());
  assert.ok(big.length > 3_000_000);
  const started = performance.now();
  const msg = SizeCappedNodeService.subscribe.requestDeserialize(big);
  const ms = performance.now() - started;
  assert.equal(msg.running.length, 0, 'nothing was decoded');
  assert.ok(ms < 20, `refusing took ${ms.toFixed(1)} ms`);
  refused('a 3.5 MB Subscribe', () => assertWithinSize(msg), new RegExp(`^Subscribe: the message is ${big.length} bytes, over the limit of ${MAX_SUBSCRIBE_BYTES} bytes; it was not read$`));

  const gpus = Buffer.from(ResourceReport.encode(report({ gpus: Array.from({ length: 200_000 }, (_, i) => usage(i)) })).finish());
  refused('a report of 200,000 GPU entries (bytes)', () => assertWithinSize(SizeCappedNodeService.report.requestDeserialize(gpus)), new RegExp(`^Report: the message is \\d+ bytes, over the limit of ${MAX_REPORT_BYTES} bytes`));
  const labels = new Map(Array.from({ length: 1200 }, (_, i) => [`k${i}`, 'v'.repeat(2048)]));
  const reg = Buffer.from(RegisterRequest.encode({ name: 'n', facts: facts({ labels }) }).finish());
  const regMsg = SizeCappedNodeService.register.requestDeserialize(reg);
  assert.ok(regMsg.facts, 'an oversize Register still has (empty) facts for the handler to read');
  refused('a Register of 2.4 MB', () => assertWithinSize(regMsg), /^Register: the message is \d+ bytes, over the limit of 131072 bytes/);
  const enroll = Buffer.from(EnrollRequest.encode({ name: 'n', facts: facts({ labels }), wgPublicKey: '' }).finish());
  refused('an Enroll of 2.4 MB', () => assertWithinSize(SizeCappedEnrollService.enroll.requestDeserialize(enroll)), /^Enroll: the message is \d+ bytes/);

  // Within the caps: decoded as usual and let through.
  const ok = SizeCappedNodeService.report.requestDeserialize(Buffer.from(ResourceReport.encode(report()).finish()));
  assert.equal(ok.gpus.length, 1);
  assertWithinSize(ok);
  // The largest valid report fits its cap: every list at its limit, every string at its length.
  const largest = report({
    gpus: Array.from({ length: MAX_GPUS }, (_, i) => usage(i)), dockerMessage: 'd'.repeat(MAX_DOCKER_MESSAGE_CHARS),
    tasks: Array.from({ length: heldTaskLimit(256) }, () => ({ taskId: 't'.repeat(64), cpuPercent: 100, memoryBytes: 2 ** 40 })),
  });
  validateReport(largest, 256);
  assert.ok(ResourceReport.encode(largest).finish().length <= MAX_REPORT_BYTES);
  const largestFacts = facts({ labels: new Map(Array.from({ length: MAX_LABELS }, (_, i) => [`${i}`.padEnd(128, 'k'), 'v'.repeat(256)])), gpus: Array.from({ length: MAX_GPUS }, (_, i) => ({ ...gpu(i), uuid: 'u'.repeat(64), name: 'n'.repeat(128) })) });
  validateRegistration('n'.repeat(253), largestFacts);
  assert.ok(RegisterRequest.encode({ name: 'n'.repeat(253), facts: largestFacts }).finish().length <= 128 * 1024);
  const largestSub = { running: Array.from({ length: heldTaskLimit(256) }, () => ({ taskId: 't'.repeat(64), attempt: 4_000_000_000 })), free: undefined, accepting: true, exec: true };
  assert.ok(SubscribeRequest.encode(largestSub).finish().length <= MAX_SUBSCRIBE_BYTES);
});

test('a node may repeat a call a bounded number of times per window', () => {
  const clock = new ManualClock(1_000_000);
  const rate = new CallRate(clock, 'Subscribe', 3, 60_000);
  for (let i = 0; i < 3; i++) rate.take('n1');
  rate.take('n2'); // others are not affected
  assert.throws(() => rate.take('n1', 'node n1'), (e) => e instanceof RateLimitedError && /^node n1: more than 3 Subscribe calls in 60 s; refused, retry in 60 s$/.test(e.message));
  assert.equal(toServiceError(new RateLimitedError('x')).code, status.RESOURCE_EXHAUSTED);
  clock.advance(30_000);
  assert.throws(() => rate.take('n1'), /retry in 30 s/);
  clock.advance(30_000);
  rate.take('n1'); // the first calls left the window
});

test('the worker keeps its docker message inside what the master accepts', () => {
  const r = buildReport({
    seq: 1, free: { cpus: 1, memoryBytes: 1, gpuIndexes: [], taskSlots: 1 }, lifecycleState: 'connected', accepting: true,
    sample: { atMs: 1, cpuPercent: 1, memoryUsedBytes: 1, memoryTotalBytes: 1, diskUsedBytes: 1, diskTotalBytes: 1, netRxBytesPerSec: 0, netTxBytesPerSec: 0, gpus: [], docker: { ok: false, message: `\u001b[31m${'e'.repeat(10_000)}` } },
  });
  assert.equal(r.dockerMessage.length, MAX_DOCKER_MESSAGE_CHARS);
  validateReport(r, 2);
});

test('cache reports are bounded: entries, digests, sizes; the largest valid one fits the report cap', () => {
  const A = `sha256:${'a'.repeat(64)}`;
  const cacheStatus = (held: string[], free: number, evictable: number): DataCacheStatus => ({ held: held.map((sha256) => ({ sha256, size: 1 })), budgetBytes: 2 ** 40, freeBytes: free, evictableBytes: evictable });
  const rep = (c: DataCacheStatus) => report({ cache: c });
  const many = (n: number) => Array.from({ length: n }, (_, i) => `sha256:${i.toString(16).padStart(64, '0')}`);
  const largest = rep(cacheStatus(many(MAX_CACHE_ENTRIES_REPORTED), 2 ** 50, 2 ** 50));
  largest.cache!.held.forEach((h) => (h.size = 2 ** 52));
  validateReport(largest, 4);
  assert.ok(ResourceReport.encode(largest).finish().length <= MAX_REPORT_BYTES, 'the largest valid cache report is under the size cap');
  refused('a cache report of 4097 entries', () => validateReport(rep(cacheStatus(many(MAX_CACHE_ENTRIES_REPORTED + 1), 0, 0)), 4), /^cache\.held: 4097 entries, over the limit of 4096$/);
  refused('a cache entry that is no digest', () => validateReport(rep(cacheStatus([A, 'sha256:../../etc'], 0, 0)), 4), /^cache\.held\[1\]\.sha256: "sha256:\.\.\/\.\.\/etc" is not "sha256:" and 64 lowercase hex digits$/);
  refused('a cache entry of an upper-case digest', () => validateReport(rep(cacheStatus([A.toUpperCase()], 0, 0)), 4), /cache\.held\[0\]\.sha256/);
  const bad = cacheStatus([A], 0, 0);
  bad.held[0]!.size = 2 ** 60;
  refused('a cache entry of 2^60 bytes', () => validateReport(rep(bad), 4), /^cache\.held\[0\]\.size: \d+ is outside 0\.\.9007199254740991$/);
  refused('a cache with an unsafe free size', () => validateReport(rep(cacheStatus([], 2 ** 60, 0)), 4), /^cache\.free_bytes: /);
  refused('data progress of 2^60 bytes', () => boundTaskUpdate(TaskUpdate.fromPartial({ taskId: 't', data: { receivedBytes: 2 ** 60, totalBytes: 1 } })), /^data\.received_bytes: /);
});

test('a replica status from a node: its free text is cut to MAX_REPLICA_TEXT_CHARS, its times are bounded, and a bad gateway pipe is refused', () => {
  const status = { healthy: false, restarts: 3, lastExit: 'x'.repeat(100_000), lastExitAtMs: 1, healthMessage: 'y'.repeat(100_000), restartAtMs: 0, running: true };
  const bounded = boundTaskUpdate(TaskUpdate.fromPartial({ taskId: 't', replica: status })).replica!;
  const kept = bounded.lastExit.length === MAX_REPLICA_TEXT_CHARS + 1 && bounded.healthMessage.length === MAX_REPLICA_TEXT_CHARS + 1;
  recordHostile('node input: a replica status with 100 kB of exit and health text', !kept);
  assert.equal(bounded.lastExit, `${'x'.repeat(MAX_REPLICA_TEXT_CHARS)}…`);
  assert.equal(bounded.healthMessage, `${'y'.repeat(MAX_REPLICA_TEXT_CHARS)}…`);
  assert.equal(bounded.restarts, 3);
  refused('a replica status restarting at 2^60 ms', () => boundTaskUpdate(TaskUpdate.fromPartial({ taskId: 't', replica: { ...status, restartAtMs: 2 ** 60 } })), /^replica\.restart_at_ms: /);
  refused('a gateway pipe on port 0', () => validateGatewayPipe({ port: 0, key: 'ab'.repeat(32) }), /^gateway\.port: 0 is not a TCP port/);
  refused('a gateway pipe key that is no key', () => validateGatewayPipe({ port: 7947, key: 'AB'.repeat(32) }), /^gateway\.key: .* is not 64 lowercase hex digits$/);
});
