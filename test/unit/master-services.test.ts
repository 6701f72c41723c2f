// Services at the master without I/O: the rules a service is held to, the reconciler's plan
// (create, scale, remove, replacement backoff), replica placement, the manager over fakes, and the
// gateway directory's token and health answers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import { EventEmitter } from 'node:events';
import { TaskSpec, TaskState, type ReplicaStatus } from '../../src/protocol/gen/hivemind/v1/common.js';
import { CreateServiceRequest } from '../../src/protocol/gen/hivemind/v1/admin.js';
import { planReplicas, replacementDelayMs, STABLE_RUN_MS, type ReplicaTaskView } from '../../src/master/replica-plan.js';
import { validateGraceMs, validateReplicas, validateServiceName, validateServiceSpec } from '../../src/master/service-rules.js';
import { placeTasks, type SchedulableNode } from '../../src/master/scheduler.js';
import { MAX_SERVICES, ServiceManager } from '../../src/master/service-manager.js';
import { recordHostile } from '../helpers/fault-ledger.js';
import type { ServiceRow, ServiceTokenRow } from '../../src/master/service-store.js';
import { isTerminal, type TaskRow } from '../../src/master/store-rows.js';
import { ServiceDirectory } from '../../src/master/service-directory.js';
import { hashServiceToken, newServiceToken } from '../../src/master/service-tokens.js';
import { toServiceInfo } from '../../src/master/service-info.js';
import type { MasterEvents } from '../../src/master/master-events.js';
import { FakeServiceRecords } from '../helpers/fake-service-records.js';

const spec = (over: Partial<TaskSpec> = {}): TaskSpec => TaskSpec.fromPartial({ image: 'hivemind/busybox:1', command: ['httpd', '-f', '-p', '8080'], service: { port: 8080 }, ...over });

// ---- rules

test('service names: the gateway path segment, lowercase, 1..63 characters', () => {
  assert.equal(validateServiceName('web-1'), 'web-1');
  for (const bad of ['', '-web', 'Web', 'a'.repeat(64), 'web/x', 'web..', 'wé']) {
    assert.throws(() => validateServiceName(bad), /service name .* is not 1 to 63 lowercase letters/, bad);
  }
});

test('service specs: a port is required, no timeout, a plain health path; replicas and grace bounded with defaults', () => {
  assert.throws(() => validateServiceSpec(spec({ service: undefined }), 10_000), /spec.service is required/);
  assert.throws(() => validateServiceSpec(spec({ service: { service: '', replica: 0, port: 0, healthPath: '', graceMs: 0 } }), 10_000), /spec.service.port must be between 1 and 65535, got 0/);
  assert.throws(() => validateServiceSpec(spec({ service: { service: '', replica: 0, port: 70000, healthPath: '', graceMs: 0 } }), 10_000), /got 70000/);
  assert.throws(() => validateServiceSpec(spec({ limits: { cpus: 0, memoryBytes: 0, pids: 0, gpus: 0, timeoutMs: 1000 } }), 10_000), /timeout_ms must be 0 for a service/);
  assert.throws(() => validateServiceSpec(spec({ service: { service: '', replica: 0, port: 80, healthPath: 'health', graceMs: 0 } }), 10_000), /must start with "\/"/);
  assert.throws(() => validateServiceSpec(spec({ service: { service: '', replica: 0, port: 80, healthPath: '/a b', graceMs: 0 } }), 10_000), /printable ASCII/);
  assert.throws(() => validateServiceSpec(spec({ service: { service: '', replica: 0, port: 80, healthPath: '/' + 'a'.repeat(256), graceMs: 0 } }), 10_000), /over the maximum of 256/);
  assert.throws(() => validateServiceSpec(spec({ image: '' }), 10_000), /image/);
  // The master's fields are its own: the name and index a client sent are not kept.
  const ok = validateServiceSpec(spec({ service: { service: 'other', replica: 7, port: 80, healthPath: '/healthz', graceMs: 1 } }), 5000);
  assert.deepEqual(ok.service, { service: '', replica: 0, port: 80, healthPath: '/healthz', graceMs: 5000 });
  assert.equal(validateReplicas(0, true), 1);
  assert.equal(validateReplicas(0, false), 0);
  assert.throws(() => validateReplicas(65, true), /between 0 and 64, got 65/);
  assert.equal(validateGraceMs(0), 10_000);
  assert.throws(() => validateGraceMs(600_001), /at most|between 0 and 600000/);
});

// ---- the plan

const view = (id: string, index: number, state: TaskState, over: Partial<ReplicaTaskView> = {}): ReplicaTaskView => ({
  id, index, state, cancelRequested: false, createdAt: 1, startedAt: null, finishedAt: null, nodeId: null, healthy: false, excludedNodes: [], ...over,
});

test('plan: every wanted index gets a task; scaling down cancels the highest indexes, once', () => {
  assert.deepEqual(planReplicas({ replicas: 3, removing: false }, [], new Map(), 0).create, [0, 1, 2]);
  const tasks = [view('a', 0, TaskState.TASK_STATE_RUNNING), view('b', 1, TaskState.TASK_STATE_RUNNING), view('c', 2, TaskState.TASK_STATE_QUEUED)];
  const down = planReplicas({ replicas: 1, removing: false }, tasks, new Map(), 0);
  assert.deepEqual(down.create, []);
  assert.deepEqual(down.cancel.map((c) => c.taskId), ['b', 'c']);
  assert.match(down.cancel[0]!.reason, /scaled to 1 replicas/);
  // Already being cancelled: not again; and a scale back up does not wait for it to stop.
  const stopping = tasks.map((t) => (t.index > 0 ? { ...t, cancelRequested: true } : t));
  assert.deepEqual(planReplicas({ replicas: 1, removing: false }, stopping, new Map(), 0).cancel, []);
  assert.deepEqual(planReplicas({ replicas: 3, removing: false }, stopping, new Map(), 0).create, [1, 2]);
});

test('plan: removing cancels every live replica and lets the service go once none is live', () => {
  const live = [view('a', 0, TaskState.TASK_STATE_RUNNING), view('b', 1, TaskState.TASK_STATE_RUNNING, { cancelRequested: true })];
  const p = planReplicas({ replicas: 2, removing: true }, live, new Map(), 0);
  assert.deepEqual(p.cancel.map((c) => c.taskId), ['a']);
  assert.equal(p.gone, false);
  assert.deepEqual(p.create, []);
  const done = planReplicas({ replicas: 2, removing: true }, [view('a', 0, TaskState.TASK_STATE_CANCELLED)], new Map(), 0);
  assert.equal(done.gone, true);
});

test('plan: a replica that ended on its own is replaced after a backoff that doubles to 60 s and resets after a stable run', () => {
  assert.deepEqual([1, 2, 3, 7, 8, 20].map(replacementDelayMs), [1000, 2000, 4000, 60_000, 60_000, 60_000]);
  let backoff = new Map();
  let now = 10_000;
  const delays: number[] = [];
  for (let i = 0; i < 8; i++) {
    const ended = view(`t${i}`, 0, TaskState.TASK_STATE_FAILED, { createdAt: i, startedAt: now - 100, finishedAt: now });
    const waiting = planReplicas({ replicas: 1, removing: false }, [ended], backoff, now);
    assert.deepEqual(waiting.create, []);
    const at = waiting.waiting[0]!.at;
    delays.push(at - now);
    // Asked again before its time: still waiting, counted once.
    assert.deepEqual(planReplicas({ replicas: 1, removing: false }, [ended], waiting.backoff, at - 1).waiting, [{ index: 0, at }]);
    const due = planReplicas({ replicas: 1, removing: false }, [ended], waiting.backoff, at);
    assert.deepEqual(due.create, [0]);
    backoff = due.backoff;
    now = at + 50;
  }
  assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000]);
  // One that ran for a while before it failed starts over at 1 s.
  const stable = view('s', 0, TaskState.TASK_STATE_FAILED, { createdAt: 99, startedAt: now - STABLE_RUN_MS, finishedAt: now });
  assert.equal(planReplicas({ replicas: 1, removing: false }, [stable], backoff, now).waiting[0]!.at - now, 1000);
  // Cancelled by a user (not by the service): back at once, no backoff.
  assert.deepEqual(planReplicas({ replicas: 1, removing: false }, [view('c', 0, TaskState.TASK_STATE_CANCELLED)], backoff, now).create, [0]);
});

test('plan: two live tasks for one index (never made by the plan) keep the older', () => {
  const p = planReplicas({ replicas: 1, removing: false }, [view('new', 0, TaskState.TASK_STATE_RUNNING, { createdAt: 5 }), view('old', 0, TaskState.TASK_STATE_RUNNING, { createdAt: 1 })], new Map(), 0);
  assert.deepEqual(p.cancel.map((c) => c.taskId), ['new']);
});

// ---- placement

const node = (nodeId: string, hostsServices: boolean, services: string[] = []): SchedulableNode => ({
  nodeId, label: nodeId, accepting: true, hostsServices, services: new Set(services), free: { cpus: 4, memoryBytes: 8 * 1024 ** 3, gpus: 0, taskSlots: 4 },
});
const replicaTask = (id: string, service = 'web') => ({ id, service, excludedNodes: [], demand: { cpus: 0, memoryBytes: 0, gpus: 0 } });

test('placement: replicas go only to nodes with a gateway pipe, spread over them; batch tasks anywhere', () => {
  const none = placeTasks([replicaTask('r1')], [node('a', false)]);
  assert.deepEqual(none.unplaced, [{ taskId: 'r1', reason: 'no node hosts services (none announced a gateway pipe)' }]);
  const batch = placeTasks([{ id: 'b', excludedNodes: [], demand: { cpus: 0, memoryBytes: 0, gpus: 0 } }], [node('a', false)]);
  assert.equal(batch.assignments.length, 1);
  // Node "a" has more free slots but already holds a replica of web: "b" gets the next one.
  const spread = placeTasks([replicaTask('r1'), replicaTask('r2')], [node('a', true, ['web']), { ...node('b', true), free: { cpus: 4, memoryBytes: 8 * 1024 ** 3, gpus: 0, taskSlots: 1 } }, node('c', false)]);
  assert.deepEqual(spread.assignments, [{ taskId: 'r1', nodeId: 'b' }, { taskId: 'r2', nodeId: 'a' }]);
  // When every host holds one, a second replica still goes somewhere.
  assert.equal(placeTasks([replicaTask('r3')], [node('a', true, ['web'])]).assignments.length, 1);
});

// ---- the manager over fakes

const FakeRecords = FakeServiceRecords;

function managerHarness() {
  const clock = new ManualClock();
  const records = new FakeRecords();
  const cancels: { taskId: string; reason: string }[] = [];
  const refs: string[] = [];
  const removed: string[] = [];
  const manager = new ServiceManager({
    onRemoved: (name) => removed.push(name),
    services: records,
    nodes: { isLeaving: () => false },
    replicas: {
      insert: (t) => records.tasks.push(structuredClone(t)),
      cancel: (taskId, reason) => {
        cancels.push({ taskId, reason });
        const t = records.tasks.find((x) => x.id === taskId)!;
        // As TaskManager.cancel: a queued task ends at once, a placed one is asked to stop.
        if (t.state === TaskState.TASK_STATE_QUEUED) t.state = TaskState.TASK_STATE_CANCELLED;
        else t.cancelRequested = true;
      },
    },
    data: { get: () => ({ size: 10, kind: 1 }), addTaskReference: (taskId, sha) => refs.push(`${taskId}:${sha}`) },
    maxDataBytes: 1 << 30,
    clock,
    log: silentLogger(),
  });
  const end = (t: TaskRow, state: TaskState) => {
    t.state = state;
    t.finishedAt = clock.now();
  };
  return { clock, records, cancels, refs, removed, manager, end };
}

const req = (over: Partial<CreateServiceRequest> = {}) => CreateServiceRequest.fromPartial({ name: 'web', spec: spec(), replicas: 2, graceMs: 3000, ...over });

test('manager: create makes one replica task per index with the role filled in; a second of the same name is refused', () => {
  const h = managerHarness();
  const row = h.manager.create(req());
  assert.equal(row.replicas, 2);
  assert.deepEqual(h.records.tasks.map((t) => t.spec.service), [
    { service: 'web', replica: 0, port: 8080, healthPath: '', graceMs: 3000 },
    { service: 'web', replica: 1, port: 8080, healthPath: '', graceMs: 3000 },
  ]);
  assert.ok(h.records.tasks.every((t) => t.state === TaskState.TASK_STATE_QUEUED && t.maxAttempts === 0));
  assert.throws(() => h.manager.create(req()), (e: Error & { code?: string }) => e.code === 'ALREADY_EXISTS' && /a service named web exists already/.test(e.message));
  assert.throws(() => h.manager.create(req({ name: 'x', spec: spec({ data: [{ sha256: 'a'.repeat(64), path: '/data/a', url: '', size: 0, kind: 0 }] }) })), /sha256|data/i);
});

test('manager: data sets of a replica are referenced by each replica task (protected from data rm as tasks are)', () => {
  const h = managerHarness();
  h.manager.create(req({ replicas: 2, spec: spec({ data: [{ sha256: `sha256:${'b'.repeat(64)}`, path: '/data/b', url: '', size: 0, kind: 0 }] }) }));
  assert.deepEqual(h.refs, h.records.tasks.map((t) => `${t.id}:${'b'.repeat(64)}`));
});

test('manager: a failed replica is replaced after its backoff, scale down cancels, remove deletes once nothing is live', () => {
  const h = managerHarness();
  h.manager.create(req({ replicas: 2 }));
  const [r0, r1] = h.records.tasks;
  for (const t of h.records.tasks) t.state = TaskState.TASK_STATE_RUNNING;
  h.end(r0!, TaskState.TASK_STATE_FAILED);
  h.manager.reconcile('web');
  assert.equal(h.records.tasks.length, 2, 'not before the backoff');
  h.clock.advance(1000);
  h.manager.reconcile('web');
  assert.equal(h.records.tasks.length, 3);
  const replacement = h.records.tasks[2]!;
  assert.equal(replacement.spec.service!.replica, 0);
  assert.notEqual(replacement.id, r0!.id);
  replacement.state = TaskState.TASK_STATE_RUNNING;

  assert.equal(h.manager.scale('web', 1).replicas, 1);
  assert.deepEqual(h.cancels.map((c) => c.taskId), [r1!.id]);
  assert.throws(() => h.manager.scale('web', 65), /between 0 and 64/);
  assert.throws(() => h.manager.scale('nope', 1), /no service nope/);

  h.manager.remove('web');
  assert.deepEqual(h.cancels.map((c) => c.taskId), [r1!.id, replacement.id]);
  assert.ok(h.records.rows.has('web'), 'kept while replicas stop');
  assert.throws(() => h.manager.scale('web', 2), /being removed/);
  h.end(r1!, TaskState.TASK_STATE_CANCELLED);
  h.end(replacement, TaskState.TASK_STATE_CANCELLED);
  h.manager.reconcile('web');
  assert.equal(h.records.rows.has('web'), false);
  assert.equal(h.records.tasks.filter((t) => !isTerminal(t.state)).length, 0);
});

test('manager: removing a service whose replicas are all queued deletes it in the same call', () => {
  const h = managerHarness();
  h.manager.create(req({ replicas: 3 }));
  assert.equal(h.manager.remove('web').removing, true);
  assert.equal(h.records.rows.has('web'), false);
  assert.ok(h.records.tasks.every((t) => t.state === TaskState.TASK_STATE_CANCELLED));
});

test('manager: reconciles on replica task changes and on its timer', async () => {
  const h = managerHarness();
  const events = new EventEmitter() as unknown as MasterEvents;
  h.manager.create(req({ replicas: 1 }));
  h.manager.start(events);
  const t = h.records.tasks[0]!;
  h.end(t, TaskState.TASK_STATE_CANCELLED); // a user's cancel: replaced at once
  events.emit('task', t);
  await new Promise((r) => setImmediate(r));
  assert.equal(h.records.tasks.length, 2);
  h.manager.close();
});

// ---- the gateway directory

test('directory: replicas with their health; tokens admit only their live service; malformed tokens are refused quietly', () => {
  const clock = new ManualClock();
  const healthy: ReplicaStatus = { healthy: true, restarts: 0, lastExit: '', lastExitAtMs: 0, healthMessage: '', restartAtMs: 0, running: true };
  const task = (id: string, state: TaskState, status?: ReplicaStatus, over: Partial<TaskRow> = {}): TaskRow => ({
    id, spec: { ...spec(), service: { service: 'web', replica: 0, port: 8080, healthPath: '', graceMs: 1 } }, state, attempt: 2, maxAttempts: 0, nodeId: 'n1',
    queueReason: '', outcome: undefined, inputSize: 0, inputSha256: '', result: undefined, cancelRequested: false, cancelReason: '',
    createdAt: 0, updatedAt: 0, startedAt: null, finishedAt: null, lastUpdateSeq: 0, excludedNodes: [], replicaStatus: status, ...over,
  });
  const fresh = newServiceToken();
  const tokens = new Map<string, ServiceTokenRow>([[fresh.hash, { id: fresh.id, hash: fresh.hash, service: 'web', label: '', createdAt: 0, expiresAt: clock.now() + 1000, revoked: false, lastUsed: 0 }]]);
  const touched: string[] = [];
  const dir = new ServiceDirectory({
    getService: (n) => (n === 'web' ? { name: 'web', spec: spec(), replicas: 1, public: false, graceMs: 1, createdAt: 0, removing: false } : undefined),
    liveReplicaTasks: () => [task('a', TaskState.TASK_STATE_RUNNING, healthy), task('b', TaskState.TASK_STATE_RUNNING), task('c', TaskState.TASK_STATE_PULLING, healthy), task('d', TaskState.TASK_STATE_RUNNING, healthy, { cancelRequested: true })],
    tokenByHash: (h) => tokens.get(h),
    touchToken: (id) => touched.push(id),
  }, { gatewayOf: (n) => (n === 'n1' ? { host: '10.0.0.2', port: 7000, key: 'k' } : undefined) }, clock);
  assert.deepEqual(dir.service('web')!.replicas.map((r) => [r.taskId, r.healthy, r.attempt]), [['a', true, 2], ['b', false, 2], ['c', false, 2]]);
  assert.equal(dir.service('nope'), undefined);
  assert.equal(dir.tokenAllows('web', fresh.token), true);
  assert.equal(dir.tokenAllows('web', fresh.token), true);
  assert.deepEqual(touched, [fresh.id], 'last_used is written once a minute, not per request');
  assert.equal(dir.tokenAllows('other', fresh.token), false);
  assert.equal(dir.tokenAllows('web', 'hmsvc_' + 'z'.repeat(64)), false);
  assert.equal(dir.tokenAllows('web', 'x'.repeat(100_000)), false);
  assert.equal(hashServiceToken(fresh.token), fresh.hash);
  clock.advance(1000);
  assert.equal(dir.tokenAllows('web', fresh.token), false, 'expired');
  tokens.get(fresh.hash)!.expiresAt = 0;
  tokens.get(fresh.hash)!.revoked = true;
  assert.equal(dir.tokenAllows('web', fresh.token), false, 'revoked');
  assert.deepEqual(dir.pipeOf('n1'), { host: '10.0.0.2', port: 7000, key: 'k' });
});

test('service info: live replicas, the last ended task of a missing index, the healthy count and the endpoint', () => {
  const row: ServiceRow = { name: 'web', spec: spec(), replicas: 2, public: true, graceMs: 10_000, createdAt: 5, removing: false };
  const t = (id: string, index: number, state: TaskState, over: Partial<TaskRow> = {}): TaskRow => ({
    id, spec: { ...spec(), service: { service: 'web', replica: index, port: 8080, healthPath: '', graceMs: 1 } }, state, attempt: 1, maxAttempts: 0, nodeId: null,
    queueReason: 'no node hosts services (none announced a gateway pipe)', outcome: undefined, inputSize: 0, inputSha256: '', result: undefined, cancelRequested: false, cancelReason: '',
    createdAt: 0, updatedAt: 0, startedAt: null, finishedAt: null, lastUpdateSeq: 0, excludedNodes: [], ...over,
  });
  const info = toServiceInfo(row, [
    t('a', 0, TaskState.TASK_STATE_RUNNING, { replicaStatus: { healthy: true, restarts: 1, lastExit: '', lastExitAtMs: 0, healthMessage: '', restartAtMs: 0, running: true } }),
    t('b', 1, TaskState.TASK_STATE_FAILED),
  ], 'https://gw.example/');
  assert.equal(info.endpoint, 'https://gw.example/s/web/');
  assert.equal(info.healthy, 1);
  assert.deepEqual(info.replicaList.map((r) => [r.index, r.taskId, r.queueReason]), [[0, 'a', ''], [1, 'b', '']]);
  const queued = toServiceInfo(row, [t('q', 0, TaskState.TASK_STATE_QUEUED)], 'http://127.0.0.1:8088');
  assert.equal(queued.replicaList[0]!.queueReason, 'no node hosts services (none announced a gateway pipe)');
});

test('manager: at most MAX_SERVICES services; the next create is refused with RESOURCE_EXHAUSTED, and a removed one makes room', () => {
  const h = managerHarness();
  for (let i = 0; i < MAX_SERVICES; i++) h.records.rows.set(`s${i}`, { name: `s${i}`, spec: spec(), replicas: 0, public: false, graceMs: 10_000, createdAt: 0, removing: false });
  let refused = false;
  try {
    h.manager.create(req({ name: 'one-more' }));
  } catch (e) {
    refused = (e as { code?: string }).code === 'RESOURCE_EXHAUSTED' && /holds 1000 services, its limit/.test((e as Error).message);
  }
  recordHostile('service create beyond the master\'s service limit', !refused);
  assert.ok(refused);
  assert.equal(h.records.tasks.length, 0, 'nothing was created');
  h.records.rows.delete('s0');
  assert.equal(h.manager.create(req({ name: 'one-more' })).name, 'one-more');
});

test('manager: a removed service is told to the gateway once it is gone (its counters dropped), not before', () => {
  const h = managerHarness();
  h.manager.create(req({ replicas: 1 }));
  h.records.tasks[0]!.state = TaskState.TASK_STATE_RUNNING;
  h.manager.remove('web');
  assert.deepEqual(h.removed, [], 'a replica still runs: the service is not gone yet');
  h.end(h.records.tasks[0]!, TaskState.TASK_STATE_CANCELLED);
  h.manager.reconcile('web');
  assert.deepEqual(h.removed, ['web']);
});
