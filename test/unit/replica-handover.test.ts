// The handover of service replicas from a node that stops accepting tasks (paused or draining),
// without I/O: the plan's surge, the old task cancelled once the surge is healthy, the give-up
// when no node takes the surge, the call-off when the node accepts again; and the manager over
// fakes (the surge is kept off the old node, never counted as an extra replica).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import { TaskSpec, TaskState } from '../../src/protocol/gen/hivemind/v1/common.js';
import { CreateServiceRequest } from '../../src/protocol/gen/hivemind/v1/admin.js';
import {
  HANDOVER_HEALTHY_MS, HANDOVER_PLACE_MS, HANDOVER_RETRY_MS, planReplicas, type HandoverMemo, type ReplicaPlan, type ReplicaTaskView,
} from '../../src/master/replica-plan.js';
import { ServiceManager } from '../../src/master/service-manager.js';
import type { TaskRow } from '../../src/master/store-rows.js';
import { toServiceInfo } from '../../src/master/service-info.js';
import { NodeRegistry } from '../../src/master/registry.js';
import { FakeServiceRecords } from '../helpers/fake-service-records.js';

const RUNNING = TaskState.TASK_STATE_RUNNING;
const QUEUED = TaskState.TASK_STATE_QUEUED;

const view = (id: string, over: Partial<ReplicaTaskView> = {}): ReplicaTaskView => ({
  id, index: 0, state: RUNNING, cancelRequested: false, createdAt: 1, startedAt: 1, finishedAt: null,
  nodeId: 'node-a', healthy: true, excludedNodes: [], ...over,
});

const svc = { replicas: 1, removing: false };

/** Plans at `now` with `leaving` nodes and the memos of the previous pass. */
function plan(tasks: ReplicaTaskView[], now: number, leaving: string[], memos: ReadonlyMap<string, HandoverMemo> = new Map()): ReplicaPlan {
  return planReplicas(svc, tasks, new Map(), now, { leaving: (n) => leaving.includes(n), memos });
}

test('handover plan: a replica on a leaving node gets a surge of its index kept off that node; nothing while the node accepts', () => {
  const old = view('old');
  assert.deepEqual(plan([old], 100, []).surge, []);
  assert.deepEqual(plan([old], 100, []).create, []);
  const p = plan([old], 100, ['node-a']);
  assert.deepEqual(p.surge, [{ index: 0, replaces: 'old', avoidNode: 'node-a' }]);
  assert.deepEqual(p.create, [], 'the surge is not a new replica');
  assert.deepEqual(p.cancel, []);
  assert.deepEqual(p.handovers.get('old'), { surgeOut: true, retryAt: 0 });
  // A queued replica (no node) has nothing to hand over.
  assert.deepEqual(plan([view('q', { state: QUEUED, nodeId: null, healthy: false })], 100, ['node-a']).surge, []);
});

test('handover plan: while the surge starts both stay; once it is healthy the old task is cancelled, not the surge', () => {
  const old = view('old');
  const surge = view('surge', { createdAt: 100, nodeId: 'node-b', healthy: false, state: TaskState.TASK_STATE_PULLING, excludedNodes: ['node-a'] });
  const memos = new Map([['old', { surgeOut: true, retryAt: 0 }]]);
  const starting = plan([old, surge], 2_000, ['node-a'], memos);
  assert.deepEqual(starting.cancel, [], 'the surge is no extra task of index 0');
  assert.deepEqual(starting.surge, [], 'no second surge');
  assert.deepEqual(starting.create, []);
  const healthy = plan([old, { ...surge, state: RUNNING, healthy: true }], 3_000, ['node-a'], memos);
  assert.equal(healthy.cancel.length, 1);
  assert.equal(healthy.cancel[0]!.taskId, 'old');
  assert.match(healthy.cancel[0]!.reason, /its node stopped accepting tasks: replica 0 was handed over to task surge/);
  // Next pass: the old one is stopping; the surge is the replica, nothing more is done.
  const after = plan([{ ...old, cancelRequested: true }, { ...surge, state: RUNNING, healthy: true }], 3_500, ['node-a'], healthy.handovers);
  assert.deepEqual([after.cancel, after.surge, after.create], [[], [], []]);
  assert.equal(after.handovers.size, 0);
});

test('handover plan: a surge no node takes within 10 s is given up, the old replica keeps running, a new try after 60 s', () => {
  const old = view('old');
  const surge = view('surge', { createdAt: 1_000, state: QUEUED, nodeId: null, healthy: false, excludedNodes: ['node-a'] });
  const memos = new Map([['old', { surgeOut: true, retryAt: 0 }]]);
  const early = plan([old, surge], 1_000 + HANDOVER_PLACE_MS - 1, ['node-a'], memos);
  assert.deepEqual(early.cancel, []);
  assert.deepEqual(early.waiting, [{ index: 0, at: 1_000 + HANDOVER_PLACE_MS }]);
  const now = 1_000 + HANDOVER_PLACE_MS;
  const late = plan([old, surge], now, ['node-a'], memos);
  assert.equal(late.cancel.length, 1);
  assert.equal(late.cancel[0]!.taskId, 'surge');
  assert.match(late.cancel[0]!.reason, /no other node could take replica 0 within 10 s: the handover is given up, task old keeps running/);
  assert.deepEqual(late.handovers.get('old'), { surgeOut: false, retryAt: now + HANDOVER_RETRY_MS });
  // The queued surge is gone: no new one until the retry time, then one.
  const waiting = plan([old], now + 1, ['node-a'], late.handovers);
  assert.deepEqual(waiting.surge, []);
  assert.deepEqual(waiting.waiting, [{ index: 0, at: now + HANDOVER_RETRY_MS }]);
  assert.deepEqual(plan([old], now + HANDOVER_RETRY_MS, ['node-a'], waiting.handovers).surge, [{ index: 0, replaces: 'old', avoidNode: 'node-a' }]);
});

test('handover plan: a placed surge not healthy within 5 min is given up; one that ended on its own waits for the retry', () => {
  const old = view('old');
  const memos = new Map([['old', { surgeOut: true, retryAt: 0 }]]);
  const sick = view('surge', { createdAt: 10, nodeId: 'node-b', healthy: false, excludedNodes: ['node-a'] });
  assert.deepEqual(plan([old, sick], 10 + HANDOVER_HEALTHY_MS - 1, ['node-a'], memos).cancel, []);
  const given = plan([old, sick], 10 + HANDOVER_HEALTHY_MS, ['node-a'], memos);
  assert.deepEqual(given.cancel.map((c) => c.taskId), ['surge']);
  assert.match(given.cancel[0]!.reason, /not healthy within 300 s/);
  // The surge failed (it is no longer live): it is not remade at once, a crash loop is not rebuilt per pass.
  const failed = plan([old, { ...sick, state: TaskState.TASK_STATE_FAILED, finishedAt: 50 }], 60, ['node-a'], memos);
  assert.deepEqual(failed.surge, []);
  assert.deepEqual(failed.handovers.get('old'), { surgeOut: false, retryAt: 60 + HANDOVER_RETRY_MS });
});

test('handover plan: the node accepts again before the surge is healthy: the surge is called off, the old task stays', () => {
  const old = view('old');
  const surge = view('surge', { createdAt: 100, nodeId: 'node-b', healthy: false, excludedNodes: ['node-a'] });
  const p = plan([old, surge], 500, [], new Map([['old', { surgeOut: true, retryAt: 0 }]]));
  assert.deepEqual(p.cancel.map((c) => c.taskId), ['surge']);
  assert.match(p.cancel[0]!.reason, /accepts tasks again: its handover is called off/);
  assert.equal(p.handovers.size, 0, 'the memo is dropped');
});

test('handover plan: scaling down cancels the surge with its index; removing cancels both; a stray extra is still cancelled', () => {
  const old = view('old', { index: 1 });
  const surge = view('surge', { index: 1, createdAt: 100, nodeId: 'node-b', excludedNodes: ['node-a'] });
  const down = planReplicas({ replicas: 1, removing: false }, [view('zero', { nodeId: 'node-b' }), old, surge], new Map(), 200, { leaving: (n) => n === 'node-a', memos: new Map() });
  assert.deepEqual(down.cancel.map((c) => c.taskId).sort(), ['old', 'surge']);
  assert.deepEqual(down.surge, []);
  const gone = planReplicas({ replicas: 2, removing: true }, [old, surge], new Map(), 200, { leaving: () => true, memos: new Map() });
  assert.deepEqual(gone.cancel.map((c) => c.taskId).sort(), ['old', 'surge']);
  const stray = view('stray', { createdAt: 50, nodeId: 'node-c' });
  const mixed = plan([view('old'), stray, { ...surge, index: 0, healthy: false }], 200, ['node-a'], new Map([['old', { surgeOut: true, retryAt: 0 }]]));
  assert.deepEqual(mixed.cancel.map((c) => c.taskId), ['stray']);
});

// ---- the manager over fakes

const FakeRecords = FakeServiceRecords;

test('manager: a paused node hands its replica over; `service get` shows the old one stopping and the healthy count never drops', () => {
  const clock = new ManualClock(1_000);
  const records = new FakeRecords();
  const leaving = new Set<string>();
  const manager = new ServiceManager({
    services: records,
    nodes: { isLeaving: (n) => leaving.has(n) },
    replicas: {
      insert: (t) => records.tasks.push(structuredClone(t)),
      cancel: (taskId) => {
        const t = records.tasks.find((x) => x.id === taskId)!;
        if (t.state === QUEUED) t.state = TaskState.TASK_STATE_CANCELLED;
        else t.cancelRequested = true;
      },
    },
    data: { get: () => undefined, addTaskReference: () => undefined },
    maxDataBytes: 1 << 30,
    clock,
    log: silentLogger(),
  });
  const row = manager.create(CreateServiceRequest.fromPartial({ name: 'web', replicas: 1, graceMs: 1000, spec: TaskSpec.fromPartial({ image: 'hivemind/busybox:1', service: { port: 8080 } }) }));
  const [old] = records.tasks;
  const run = (t: TaskRow, node: string) => Object.assign(t, { state: RUNNING, nodeId: node, startedAt: clock.now(), replicaStatus: { healthy: true, restarts: 0, lastExitCode: 0, message: '', checkedAtMs: 0 } });
  run(old!, 'node-a');
  const info = () => toServiceInfo(row, records.replicaTasks('web'), '');
  leaving.add('node-a');
  clock.advance(1_000);
  manager.reconcile('web');
  assert.equal(records.tasks.length, 2);
  const surge = records.tasks[1]!;
  assert.deepEqual(surge.excludedNodes, ['node-a'], 'the scheduler keeps the surge off the leaving node');
  assert.equal(surge.spec.service!.replica, 0);
  assert.equal(info().healthy, 1);
  manager.reconcile('web');
  assert.equal(records.tasks.length, 2, 'a pass while the surge starts makes nothing more');
  assert.equal(surge.cancelRequested, false);
  run(surge, 'node-b');
  manager.reconcile('web');
  assert.equal(old!.cancelRequested, true, 'the old replica is stopped once the surge is healthy');
  const shown = info();
  assert.equal(shown.healthy, 1);
  assert.deepEqual(shown.replicaList.map((r) => [r.taskId, r.nodeId, r.stopping]), [[old!.id, 'node-a', true], [surge.id, 'node-b', false]]);
  old!.state = TaskState.TASK_STATE_CANCELLED;
  manager.reconcile('web');
  assert.equal(records.tasks.filter((t) => t.state !== TaskState.TASK_STATE_CANCELLED).length, 1, 'no replacement of the handed over task');
});

test('registry: a node is leaving while online with a known capacity and not accepting; not before it reported, not once offline', () => {
  const clock = new ManualClock(0);
  const r = new NodeRegistry(clock, 1000);
  const free = { cpus: 1, memoryBytes: 1, gpuIndexes: [], taskSlots: 1 };
  r.seen('n');
  assert.equal(r.isLeaving('n'), false, 'awaiting its first report after a master restart: not leaving');
  r.updateCapacity('n', free, true);
  assert.equal(r.isLeaving('n'), false);
  r.updateCapacity('n', free, false);
  assert.equal(r.isLeaving('n'), true);
  clock.advance(r.offlineAfterMs + 1);
  r.sweep();
  assert.equal(r.isLeaving('n'), false, 'a lost node is handled by requeueing, not by a handover');
  assert.equal(r.isLeaving('unknown'), false);
});
