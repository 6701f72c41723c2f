// Placement by demand class (task-queue.ts, TaskManager.schedule) against an in-memory store, a
// real registry and fake command streams: the same choices as the pure one-pass placeTasks, FIFO
// within and across classes, exclusions, service spread, data, reasons computed when read, cancel
// and requeue, reload after a restart, and the cost of a report counted in work, not time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import { MasterEvents } from '../../src/master/master-events.js';
import { MasterStore, type TaskRow } from '../../src/master/master-store.js';
import { NodeRegistry } from '../../src/master/registry.js';
import { freshStore } from '../helpers/test-store.js';
import { placeTasks, type QueuedTask, type SchedulableNode } from '../../src/master/scheduler.js';
import { TaskManager } from '../../src/master/task-manager.js';
import { TaskQueue, classKey } from '../../src/master/task-queue.js';
import type { BlobStore } from '../../src/master/blob-store.js';
import { LimitKind, NodeFacts, ResourceReport, TaskNetwork, TaskSpec, TaskState } from '../../src/protocol/gen/hivemind/v1/common.js';
import { TaskUpdate, type NodeCommand } from '../../src/protocol/gen/hivemind/v1/node.js';

const GiB = 1024 ** 3;

interface Limits { cpus?: number; memoryBytes?: number; gpus?: number }

class Harness {
  readonly clock = new ManualClock();
  readonly registry = new NodeRegistry(this.clock, 30_000);
  readonly sent = new Map<string, NodeCommand[]>();
  readonly placed: number[] = [];
  readonly tm: TaskManager;
  private n = 0;

  constructor(readonly store = MasterStore.open(freshStore()), maxAssignmentsPerRound?: number) {
    const blobs = { discardResult: async () => undefined } as unknown as BlobStore;
    this.tm = new TaskManager(store, blobs, this.registry, new MasterEvents(), this.clock, silentLogger(), {
      onPlaced: (ms) => this.placed.push(ms),
      ...(maxAssignmentsPerRound ? { maxAssignmentsPerRound } : {}),
    });
  }

  node(id: string, free: { cpus?: number; memoryBytes?: number; gpus?: number; taskSlots?: number } = {}, opts: { gateway?: boolean; accepting?: boolean } = {}): void {
    if (!this.store.getNode(id)) this.store.insertNode({ id, name: id, facts: NodeFacts.create(), credentialHash: `hash-${id}`, at: this.clock.now() });
    this.registry.seen(id, id);
    this.registry.updateCapacity(id, { cpus: free.cpus ?? 4, memoryBytes: free.memoryBytes ?? 8 * GiB, gpuIndexes: [...Array(free.gpus ?? 0).keys()], taskSlots: free.taskSlots ?? 4 }, opts.accepting ?? true);
    if (opts.gateway) this.registry.setGateway(id, { host: '127.0.0.1', port: 1, key: 'k' });
    if (!this.sent.has(id)) this.sent.set(id, []);
    this.registry.attach(id, { send: (c) => this.sent.get(id)!.push(c), close: () => undefined });
  }

  report(id: string, free: { cpus?: number; memoryBytes?: number; gpus?: number; taskSlots?: number }, running: string[] = []): void {
    this.registry.onReport(id, ResourceReport.fromPartial({
      accepting: true,
      free: { cpus: free.cpus ?? 4, memoryBytes: free.memoryBytes ?? 8 * GiB, gpuIndexes: [...Array(free.gpus ?? 0).keys()], taskSlots: free.taskSlots ?? 4 },
      tasks: running.map((taskId) => ({ taskId })),
    }));
  }

  submit(id: string, limits: Limits = {}, over: Partial<TaskSpec> = {}): TaskRow {
    const at = this.clock.now() + this.n++;
    const row: TaskRow = {
      id, spec: TaskSpec.fromPartial({ image: 'hivemind/busybox:1', limits: { cpus: limits.cpus ?? 0, memoryBytes: limits.memoryBytes ?? 0, gpus: limits.gpus ?? 0 }, ...over }),
      state: TaskState.TASK_STATE_QUEUED, attempt: 1, maxAttempts: 3, nodeId: null, queueReason: 'waiting to be scheduled', outcome: undefined,
      inputSize: 0, inputSha256: '', result: undefined, cancelRequested: false, cancelReason: '', createdAt: at, updatedAt: at,
      startedAt: null, finishedAt: null, lastUpdateSeq: 0, excludedNodes: [],
    };
    this.tm.submit(row, 'submitted');
    return row;
  }

  /** Task id -> node id of every assignment sent so far. */
  assigned(): Map<string, string> {
    const out = new Map<string, string>();
    for (const [nodeId, cmds] of this.sent) for (const c of cmds) if (c.command?.$case === 'assign') out.set(c.command.value.taskId, nodeId);
    return out;
  }

  close(): void {
    this.tm.close();
    this.store.close();
  }
}

test('queue: one class per demand (exclusions in any order), FIFO by submission time, a requeued task back in its place', () => {
  const q = new TaskQueue();
  const t = (id: string, excludedNodes: string[] = [], cpus = 1): QueuedTask => ({ id, demand: { cpus, memoryBytes: 0, gpus: 0 }, excludedNodes });
  assert.equal(classKey(t('a', ['x', 'y'])), classKey(t('b', ['y', 'x'])));
  assert.notEqual(classKey(t('a')), classKey(t('a', [], 2)));
  q.add(t('a'), 10, 0);
  q.add(t('c'), 30, 0);
  q.add(t('b'), 20, 0);
  q.add(t('c'), 30, 0);
  assert.equal(q.size, 3, 'adding a queued task again changes nothing');
  assert.equal(q.classCount, 1);
  const cls = q.get('a')!.cls;
  assert.equal(cls.peek()!.id, 'a');
  q.remove('a');
  assert.equal(cls.peek()!.id, 'b', 'the requeued (older) task is ahead of the newer one');
  q.remove('c');
  q.remove('b');
  assert.equal(q.classCount, 0, 'an empty class is dropped');
  assert.equal(q.remove('b'), false);
});

test('a first round makes the same choices as the one-pass reference placeTasks', () => {
  // A deterministic mix: demands of 5 shapes over nodes of 4 sizes, some slots scarce.
  const h = new Harness();
  const nodes: SchedulableNode[] = [];
  for (let i = 0; i < 12; i++) {
    const free = { cpus: 1 + (i % 4), memoryBytes: (1 + (i % 3)) * GiB, gpus: i % 5 === 0 ? 1 : 0, taskSlots: 1 + (i % 2) };
    const id = `n${String(i).padStart(2, '0')}`;
    h.node(id, free);
    nodes.push({ nodeId: id, label: id, free, accepting: true, hostsServices: false });
  }
  const shapes: Limits[] = [{ cpus: 1 }, { cpus: 2, memoryBytes: 2 * GiB }, { gpus: 1 }, { cpus: 4 }, {}];
  const queued: QueuedTask[] = [];
  for (let i = 0; i < 40; i++) {
    const limits = shapes[(i * 7) % shapes.length]!;
    h.submit(`t${String(i).padStart(2, '0')}`, limits);
    queued.push({ id: `t${String(i).padStart(2, '0')}`, demand: { cpus: limits.cpus ?? 0, memoryBytes: limits.memoryBytes ?? 0, gpus: limits.gpus ?? 0, data: [] }, excludedNodes: [] });
  }
  h.tm.schedule();
  const expected = new Map(placeTasks(queued, nodes).assignments.map((a) => [a.taskId, a.nodeId]));
  assert.ok(expected.size > 5 && expected.size < 40, 'the mix leaves some queued');
  assert.deepEqual(h.assigned(), expected);
  assert.equal(h.placed.length, expected.size, 'each placement reports its latency');
  h.close();
});

test('FIFO across classes: freed room goes to the oldest task that fits it, a big head does not block smaller tasks', () => {
  const h = new Harness();
  h.node('a', { cpus: 2, taskSlots: 1 });
  h.submit('first', { cpus: 1 });
  h.submit('big', { cpus: 8 });
  h.submit('two', { cpus: 2 });
  h.submit('one', { cpus: 1 });
  h.tm.schedule();
  assert.deepEqual([...h.assigned().keys()], ['first']);
  h.report('a', { cpus: 1, taskSlots: 0 }, ['first']);
  h.tm.schedule();
  assert.deepEqual([...h.assigned().keys()], ['first'], 'the report shows the slot taken');
  h.report('a', { cpus: 2, taskSlots: 1 });
  h.tm.schedule();
  assert.deepEqual([...h.assigned().keys()], ['first', 'two'], 'the older of the fitting tasks; big still waits');
  assert.equal(h.tm.withQueueReason(h.store.getTask('big')!).queueReason, 'every online node is at its task limit');
  h.close();
});

test('comparator: the most free slots, then CPUs, then the smallest id; a rejecting node is never offered the task again', () => {
  const h = new Harness();
  h.node('b', { cpus: 4, taskSlots: 2 });
  h.node('a', { cpus: 4, taskSlots: 2 });
  h.node('c', { cpus: 8, taskSlots: 3 });
  h.submit('t1');
  h.submit('t2');
  h.submit('t3');
  h.tm.schedule();
  // c has the most slots, then as many as a and b but more CPUs; then a has the most slots and the smaller id.
  assert.deepEqual(Object.fromEntries(h.assigned()), { t1: 'c', t2: 'c', t3: 'a' });
  // t3 is rejected by a: it is requeued, excluded from a, and goes to b (more free slots than c now).
  h.tm.applyUpdate({ id: 'a', name: 'a' }, TaskUpdate.fromPartial({ taskId: 't3', attempt: 1, seq: 1, state: TaskState.TASK_STATE_REJECTED, message: 'no' }));
  h.tm.schedule();
  assert.equal(h.store.getTask('t3')!.nodeId, 'b');
  assert.equal(h.sent.get('b')!.at(-1)!.command?.$case, 'assign');
  assert.deepEqual(h.store.getTask('t3')!.excludedNodes, ['a']);
  h.close();
});

test('service replicas go to nodes hosting services, spread over them; batch tasks anywhere', () => {
  const h = new Harness();
  h.node('plain', { taskSlots: 8 });
  h.node('h1', { taskSlots: 2 }, { gateway: true });
  h.node('h2', { taskSlots: 2 }, { gateway: true });
  const svc = (replica: number) => ({ service: { service: 'web', replica, port: 8080, healthPath: '', graceMs: 1 } });
  h.submit('r0', {}, svc(0));
  h.submit('r1', {}, svc(1));
  h.submit('batch');
  h.tm.schedule();
  const a = h.assigned();
  assert.deepEqual(new Set([a.get('r0'), a.get('r1')]), new Set(['h1', 'h2']));
  assert.equal(a.get('batch'), 'plain');
  h.close();
});

test('data: a task goes to the node holding its data set; no cache anywhere is its reason', () => {
  const h = new Harness();
  const digest = 'sha256:' + 'a'.repeat(64);
  h.node('empty');
  h.node('holder');
  h.submit('d', {}, { data: [{ sha256: digest, size: GiB, path: '/data', url: '' }] } as Partial<TaskSpec>);
  h.tm.schedule();
  assert.equal(h.tm.withQueueReason(h.store.getTask('d')!).queueReason, 'no node has a data cache (the task mounts data sets)');
  const cache = (held: string[]) => ({ held: held.map((sha256) => ({ sha256, size: GiB })), freeBytes: 10 * GiB, evictableBytes: 0 });
  for (const [id, held] of [['empty', []], ['holder', [digest]]] as const) {
    h.registry.onReport(id, ResourceReport.fromPartial({ accepting: true, free: { cpus: 4, memoryBytes: 8 * GiB, gpuIndexes: [], taskSlots: 4 }, cache: cache([...held]) }));
  }
  h.tm.schedule();
  assert.equal(h.assigned().get('d'), 'holder');
  h.close();
});

test('reasons are computed when read, per class, not written; queue depth by reason code', () => {
  const h = new Harness();
  for (let i = 0; i < 5; i++) h.submit(`g${i}`, { gpus: 1 });
  h.submit('c', { cpus: 64 });
  h.tm.schedule();
  assert.equal(h.tm.withQueueReason(h.store.getTask('g0')!).queueReason, 'no online node');
  h.node('n1', { gpus: 0 });
  h.tm.schedule();
  h.clock.advance(1000);
  assert.equal(h.tm.withQueueReason(h.store.getTask('g3')!).queueReason, 'needs 1 GPU; largest free: node n1 with 0');
  assert.equal(h.store.getTask('g3')!.queueReason, 'waiting to be scheduled', 'nothing written per pass');
  assert.deepEqual(Object.fromEntries(h.tm.queueDepthByReason()), { gpus: 5, cpus: 1 });
  h.close();
});

test('a cancelled queued task leaves the queue; capacity later goes to the next one', () => {
  const h = new Harness();
  h.submit('x');
  h.submit('y');
  h.tm.cancel('x', 'no longer needed');
  h.node('n1', { taskSlots: 1 });
  h.tm.schedule();
  assert.deepEqual([...h.assigned().keys()], ['y']);
  assert.equal(h.store.getTask('x')!.state, TaskState.TASK_STATE_CANCELLED);
  h.close();
});

test('a restarted master reloads the queue from the store, in submission order', () => {
  const store = MasterStore.open(freshStore());
  const first = new Harness(store);
  first.submit('old', { cpus: 1 });
  first.submit('new', { cpus: 1 });
  first.tm.close();
  const second = new Harness(store);
  second.node('n1', { taskSlots: 1 });
  second.tm.schedule();
  assert.deepEqual([...second.assigned().keys()], ['old']);
  second.close();
});

test('a round yields after its assignment budget and continues on the next turn', async () => {
  const h = new Harness(undefined, 3);
  h.node('n1', { taskSlots: 10 });
  for (let i = 0; i < 7; i++) h.submit(`t${i}`);
  h.tm.schedule();
  assert.equal(h.assigned().size, 3);
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  assert.equal(h.assigned().size, 7);
  h.close();
});

// Counts the queue's work, not the store's: it runs on an in-memory SQLite store in both passes
// (110,000 rows written per run would only time PostgreSQL's inserts).
test('cost: with 10,000 nodes and 100,000 queued GPU tasks, a report visits O(classes) and the queue is read once', () => {
  const h = new Harness(MasterStore.open(':memory:'));
  let reads = 0;
  const read = h.store.queuedTasks.bind(h.store);
  h.store.queuedTasks = () => {
    reads++;
    return read();
  };
  for (let i = 0; i < 10_000; i++) h.node(`n${i}`, { gpus: 0 });
  h.store.transaction(() => {
    for (let i = 0; i < 100_000; i++) h.submit(`g${i}`, { gpus: 1 });
  });
  h.tm.schedule();
  assert.equal(h.tm.counters.fitChecks, 10_000, 'the one class was offered every open node once');
  const before = { ...h.tm.counters };
  for (let i = 0; i < 1000; i++) {
    h.report(`n${i}`, { gpus: 0 });
    h.tm.schedule();
  }
  assert.equal(h.tm.counters.classVisits - before.classVisits, 1000, 'one class visit per report');
  assert.equal(h.tm.counters.fitChecks - before.fitChecks, 1000, 'one node checked per report');
  h.submit('late', { gpus: 1 });
  h.tm.schedule();
  assert.equal(h.tm.counters.fitChecks - before.fitChecks, 1000, 'a task joining a waiting class costs no fit check');
  assert.equal(reads, 1);
  h.close();
});

test('start() reads the queue in pages between turns of the event loop; changes meanwhile are kept, placement waits for the whole queue', async () => {
  const store = MasterStore.open(freshStore());
  const first = new Harness(store);
  for (let i = 0; i < 5; i++) first.submit(`t${i}`, { cpus: 1 });
  first.tm.close();
  const h = new Harness(store);
  h.node('n1', { taskSlots: 3 });
  const loading = h.tm.start(2);
  h.tm.schedule();
  assert.equal(h.assigned().size, 0, 'no placement from a partial queue');
  h.tm.cancel('t3', 'not needed');
  await loading;
  h.tm.schedule();
  assert.deepEqual([...h.assigned().keys()], ['t0', 't1', 't2']);
  h.report('n1', { taskSlots: 3 }, ['t0', 't1', 't2']);
  h.report('n1', { taskSlots: 3 });
  h.tm.schedule();
  assert.deepEqual([...h.assigned().keys()], ['t0', 't1', 't2', 't4'], 't3 was cancelled while the queue loaded');
  h.close();
});

test('egress: an egress task goes only to a node that allows egress, waits with its reason, and is placed when one comes', () => {
  const h = new Harness();
  h.node('plain');
  h.submit('e', { cpus: 1 }, { network: TaskNetwork.TASK_NETWORK_EGRESS });
  h.submit('n', { cpus: 1 });
  h.tm.schedule();
  assert.deepEqual([...h.assigned()], [['n', 'plain']], 'the task without network is not held up by the egress one');
  assert.equal(h.tm.withQueueReason(h.store.getTask('e')!).queueReason, 'no accepting node allows egress (start a node with --allow-egress)');
  h.node('open');
  h.registry.setEgress('open', true);
  h.tm.schedule();
  assert.equal(h.assigned().get('e'), 'open');
  h.close();
});

test('engine limits: a task setting a limit waits for a node enforcing it (limits_unenforced); one setting none goes to the rootless node; a node that lost its enforcement takes no more', () => {
  const h = new Harness();
  h.node('rootless');
  h.registry.setUnenforcedLimits('rootless', [LimitKind.LIMIT_KIND_CPUS, LimitKind.LIMIT_KIND_MEMORY, LimitKind.LIMIT_KIND_PIDS]);
  h.submit('m', { memoryBytes: 64 * 1024 ** 2 });
  h.submit('free');
  h.tm.schedule();
  assert.deepEqual([...h.assigned()], [['free', 'rootless']], 'the task setting no limit is not held up by the limited one');
  assert.match(h.tm.withQueueReason(h.store.getTask('m')!).queueReason, /^no accepting node can enforce its memory \(--memory\) limit \(rootless: /);
  assert.equal(h.tm.queueDepthByReason().get('limits_unenforced'), 1);
  // A node enforcing it arrives: the waiting task goes there.
  h.node('docker');
  h.tm.schedule();
  assert.equal(h.assigned().get('m'), 'docker');
  // A node re-registering without enforcement (engine changed) gets no limited task.
  h.registry.setUnenforcedLimits('docker', [LimitKind.LIMIT_KIND_PIDS]);
  h.submit('p', { cpus: 1 }, { limits: { cpus: 1, memoryBytes: 0, gpus: 0, pids: 8, timeoutMs: 0 } });
  h.tm.schedule();
  assert.equal(h.assigned().get('p'), undefined);
  assert.match(h.tm.withQueueReason(h.store.getTask('p')!).queueReason, /^no accepting node can enforce its cpus \(--cpus\) and pids \(--pids\) limits \(rootless, docker: /);
  h.close();
});

test('taskPlacements: one id, a batch and several batches, unknown ids absent, each task once', () => {
  const h = new Harness();
  try {
    const ids = Array.from({ length: 70 }, (_, i) => `tp-${String(i).padStart(2, '0')}`);
    for (const id of ids) h.submit(id);
    const look = (want: string[]) => h.store.taskPlacements(want).map((p) => p.id).sort();
    assert.deepEqual(h.store.taskPlacements([]), []);
    assert.deepEqual(h.store.taskPlacements(['tp-05']), [{ id: 'tp-05', nodeId: null, attempt: 1, state: TaskState.TASK_STATE_QUEUED }]);
    assert.deepEqual(h.store.taskPlacements(['nope']), []);
    for (const n of [2, 31, 32, 33, 64, 70]) assert.deepEqual(look(ids.slice(0, n)), ids.slice(0, n), `${n} ids`);
    assert.deepEqual(look([...ids.slice(0, 40), 'nope-1', 'nope-2']), ids.slice(0, 40), 'unknown ids are absent');
  } finally {
    h.close();
  }
});
