// The handover of a service replica from a node that stops accepting tasks, over real gRPC and
// SQLite or PostgreSQL: a real Master and scripted nodes. The surge starts on the other node and the old task is
// cancelled only once the surge is healthy, so `service get` never shows 0 healthy replicas; a
// surge no node takes is given up and the old replica keeps running; a node that accepts again
// calls the surge off.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { CreateServiceRequest, ServiceInfo } from '../../src/protocol/gen/hivemind/v1/admin.js';
import { OutcomeKind, TaskOutcome, TaskSpec, TaskState } from '../../src/protocol/gen/hivemind/v1/common.js';
import { HANDOVER_PLACE_MS } from '../../src/master/replica-plan.js';
import { ScriptedNode } from '../helpers/scripted-node.js';
import { callAdmin, startServicesMaster, type ServicesMaster } from '../helpers/services-master.js';

type Harness = ServicesMaster;
const startMaster = startServicesMaster;
const call = callAdmin;

const spec = TaskSpec.fromPartial({ image: 'hivemind/busybox:1', command: ['httpd', '-f', '-p', '8080'], service: { port: 8080, healthPath: '/' } });
const healthy = { healthy: true, restarts: 0, lastExit: '', lastExitAtMs: 0, healthMessage: '', restartAtMs: 0, running: true };
const get = (h: Harness) => call<unknown, ServiceInfo>(h, 'getService', { name: 'web' });

async function host(h: Harness, t: TestContext, name: string, port: number): Promise<ScriptedNode> {
  const n = new ScriptedNode(h.address);
  t.after(() => n.close());
  await n.register((await h.admin.createToken()).token, name);
  n.online({ gateway: { port, key: 'ab'.repeat(32) } });
  return n;
}

/** A replica of `web` (1 replica) running healthy on node A. */
async function runningOnA(h: Harness, t: TestContext) {
  const a = await host(h, t, 'a', 47101);
  await call<CreateServiceRequest, ServiceInfo>(h, 'createService', { name: 'web', spec, replicas: 1, public: false, graceMs: 0 });
  const old = await a.nextAssignment();
  await a.update(old.taskId, old.attempt, TaskState.TASK_STATE_RUNNING, '', undefined, undefined, healthy);
  assert.equal((await get(h)).healthy, 1);
  return { a, old };
}

/** Polls `service get` every 200 ms until stopped: the healthy counts seen. */
function watchHealthy(h: Harness): { stop(): Promise<number[]> } {
  const seen: number[] = [];
  let on = true;
  const loop = (async () => {
    while (on) {
      seen.push((await get(h)).healthy);
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  return { stop: async () => ((on = false), await loop, seen) };
}

test('a paused node hands its replica over: the surge starts on the other node, the old one stops once it is healthy, never 0 healthy', async (t) => {
  const h = await startMaster(t);
  const { a, old } = await runningOnA(h, t);
  const b = await host(h, t, 'b', 47102);
  const watch = watchHealthy(h);

  a.accepting = false; // paused: its reports and updates say so
  await a.report();
  const surge = await b.nextAssignment();
  assert.equal(surge.spec!.service!.replica, 0, 'the surge is the same replica index');
  assert.notEqual(surge.taskId, old.taskId);
  const both = await get(h);
  assert.deepEqual(both.replicaList.map((r) => [r.taskId, r.stopping]), [[old.taskId, false], [surge.taskId, false]]);
  assert.equal(both.replicas, 1, 'still one wanted replica');
  await new Promise((r) => setTimeout(r, 500));
  await assert.rejects(a.nextCommand('cancel', 300), /no cancel command/, 'the old replica is kept while the surge is not healthy');

  await b.update(surge.taskId, surge.attempt, TaskState.TASK_STATE_RUNNING, '', undefined, undefined, { ...healthy, healthy: false, healthMessage: 'starting' });
  await new Promise((r) => setTimeout(r, 300));
  assert.equal((await get(h)).replicaList.find((r) => r.taskId === old.taskId)!.stopping, false, 'not before the surge is healthy');
  await b.update(surge.taskId, surge.attempt, TaskState.TASK_STATE_RUNNING, '', undefined, undefined, healthy);
  const cancel = await a.nextCommand('cancel', 5000);
  assert.equal(cancel.taskId, old.taskId);
  assert.match(cancel.reason, /handed over to task/);
  const stopping = await get(h);
  assert.deepEqual(stopping.replicaList.map((r) => [r.taskId, r.stopping]), [[old.taskId, true], [surge.taskId, false]]);
  assert.equal(stopping.healthy, 1);
  assert.deepEqual(h.master.gatewayDirectory.service('web')!.replicas.map((r) => r.taskId), [surge.taskId], 'the gateway routes to the surge only');

  await a.update(old.taskId, old.attempt, TaskState.TASK_STATE_CANCELLED, 'stopped', TaskOutcome.fromPartial({ kind: OutcomeKind.OUTCOME_KIND_CANCELLED }));
  await new Promise((r) => setTimeout(r, 500));
  const after = await get(h);
  assert.deepEqual(after.replicaList.map((r) => [r.taskId, r.nodeId]), [[surge.taskId, b.nodeId]], 'no replacement of the handed over task');
  const seen = await watch.stop();
  assert.ok(seen.length >= 5, `polled ${seen.length} times`);
  assert.ok(seen.every((n) => n >= 1), `healthy never 0 during the handover: ${seen.join(',')}`);
});

test('a node that accepts again before the surge is healthy calls the surge off; the old replica stays', async (t) => {
  const h = await startMaster(t);
  const { a, old } = await runningOnA(h, t);
  const b = await host(h, t, 'b', 47103);
  a.accepting = false;
  await a.report();
  const surge = await b.nextAssignment();
  a.accepting = true;
  await a.report();
  const cancel = await b.nextCommand('cancel', 5000);
  assert.equal(cancel.taskId, surge.taskId);
  assert.match(cancel.reason, /accepts tasks again: its handover is called off/);
  const info = await get(h);
  assert.equal(info.replicaList.find((r) => r.taskId === old.taskId)!.stopping, false);
  assert.equal(info.healthy, 1);
});

test('with no other node the surge is given up after 10 s and the replica keeps running on the paused node', async (t) => {
  const h = await startMaster(t);
  const { a, old } = await runningOnA(h, t);
  const watch = watchHealthy(h);
  a.accepting = false;
  await a.report();
  const queued = await (async () => {
    for (;;) {
      const s = await get(h);
      const q = s.replicaList.find((r) => r.taskId !== old.taskId);
      if (q) return q;
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  assert.equal(queued.state, TaskState.TASK_STATE_QUEUED);
  await new Promise((r) => setTimeout(r, HANDOVER_PLACE_MS + 1_500));
  const info = await get(h);
  assert.deepEqual(info.replicaList.map((r) => [r.taskId, r.stopping]), [[old.taskId, false]], 'the surge is gone, the old replica stays');
  assert.equal((await h.admin.getTask(queued.taskId)).state, TaskState.TASK_STATE_CANCELLED);
  await assert.rejects(a.nextCommand('cancel', 200), /no cancel command/);
  const seen = await watch.stop();
  assert.ok(seen.every((n) => n === 1), `healthy stayed 1: ${seen.join(',')}`);
});
