// Placement of tasks with data sets: a node must have room for what its cache lacks, the node
// holding most of the data is preferred, the queue reason says why a task waits; the registry
// keeps each node's cache as of its latest report; data progress is kept and shown; removed data
// sets are named in a drop_data command.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../src/common/clock.js';
import { placeTasks, demandOf, type QueuedTask, type SchedulableNode } from '../../src/master/scheduler.js';
import { NodeRegistry } from '../../src/master/registry.js';
import { DataProgressBoard } from '../../src/master/data-progress.js';
import { dropRemovedData } from '../../src/master/data-reclaim.js';
import { silentLogger } from '../../src/common/logger.js';
import { DataKind, ResourceReport, TaskState, type DataCacheStatus } from '../../src/protocol/gen/hivemind/v1/common.js';
import type { NodeCommand } from '../../src/protocol/gen/hivemind/v1/node.js';
import { describeDataProgress, formatTask, formatTaskTable } from '../../src/cli/task-format.js';
import { TaskInfo } from '../../src/protocol/gen/hivemind/v1/admin.js';

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const D = (c: string) => `sha256:${c.repeat(64)}`;
const A = D('a');
const B = D('b');
const cache = (held: string[], room: number) => ({ held: new Set(held), room });
const node = (nodeId: string, c?: { held: Set<string>; room: number }, free: Partial<SchedulableNode['free']> = {}): SchedulableNode => ({
  nodeId, label: nodeId, accepting: true, free: { cpus: 4, memoryBytes: 8 * GiB, gpus: 0, taskSlots: 4, ...free }, ...(c ? { cache: c } : {}),
});
const task = (id: string, data: { sha256: string; size: number }[]): QueuedTask => ({ id, excludedNodes: [], demand: { cpus: 0, memoryBytes: 0, gpus: 0, data } });

test('a task with data goes only to a node with a cache and room for what it lacks', () => {
  const t = task('t', [{ sha256: A, size: GiB }]);
  assert.deepEqual(placeTasks([t], [node('plain')]).unplaced, [{ taskId: 't', reason: 'no node has a data cache (the task mounts data sets)' }]);
  assert.deepEqual(placeTasks([t], [node('small', cache([], 300 * MiB)), node('smaller', cache([], 100 * MiB))]).unplaced, [
    { taskId: 't', reason: 'no node has room for its data sets (needs 1.0 GiB; the most room is 300.0 MiB on node small)' },
  ]);
  // Held data needs no room; an url of unknown size (0) needs none either.
  assert.deepEqual(placeTasks([t], [node('holder', cache([A], 0))]).assignments, [{ taskId: 't', nodeId: 'holder' }]);
  assert.deepEqual(placeTasks([task('u', [{ sha256: B, size: 0 }])], [node('empty', cache([], 0))]).assignments, [{ taskId: 'u', nodeId: 'empty' }]);
  // A task without data still goes anywhere, a node without a cache included.
  assert.deepEqual(placeTasks([task('n', [])], [node('plain')]).assignments, [{ taskId: 'n', nodeId: 'plain' }]);
});

test('the node holding most of the task\'s data bytes is preferred over a less loaded one', () => {
  const nodes = [node('idle', cache([], 10 * GiB), { taskSlots: 8 }), node('holdsA', cache([A], 10 * GiB), { taskSlots: 1 }), node('holdsB', cache([B], 10 * GiB), { taskSlots: 8 })];
  const p = placeTasks([task('t', [{ sha256: A, size: 2 * GiB }, { sha256: B, size: GiB }])], nodes);
  assert.deepEqual(p.assignments, [{ taskId: 't', nodeId: 'holdsA' }]);
  // Without a preference by data the existing order (most free slots) decides.
  assert.deepEqual(placeTasks([task('t', [{ sha256: D('c'), size: GiB }])], nodes).assignments, [{ taskId: 't', nodeId: 'holdsB' }]);
});

test('within a pass, room shrinks by what placed tasks fetch, and a data set on its way is not counted twice', () => {
  const nodes = [node('n1', cache([], GiB + MiB))];
  const p = placeTasks([task('t1', [{ sha256: A, size: GiB }]), task('t2', [{ sha256: A, size: GiB }]), task('t3', [{ sha256: B, size: GiB }])], nodes);
  assert.deepEqual(p.assignments.map((a) => a.taskId), ['t1', 't2']);
  assert.match(p.unplaced[0]!.reason, /^no node has room for its data sets \(needs 1\.0 GiB; the most room is 1\.0 MiB on node n1\)$/);
});

test('demandOf counts each data set once, with its largest declared size', () => {
  const d = demandOf({ image: 'x', command: [], env: new Map(), limits: undefined, network: 0, maxOutputBytes: 0, data: [
    { sha256: A, path: '/a', size: 5, kind: DataKind.DATA_KIND_FILE, url: '' },
    { sha256: A, path: '/b', size: 5, kind: DataKind.DATA_KIND_FILE, url: '' },
    { sha256: B, path: '/c', size: 0, kind: DataKind.DATA_KIND_FILE, url: 'https://e/x' },
  ] });
  assert.deepEqual(d.data, [{ sha256: A, size: 5 }, { sha256: B, size: 0 }]);
});

const status = (held: string[], free: number, evictable: number): DataCacheStatus => ({ held: held.map((sha256) => ({ sha256, size: 1 })), budgetBytes: 10 * GiB, freeBytes: free, evictableBytes: evictable });

test('the registry keeps the latest report\'s cache, and pending assignments take room until reported', () => {
  const r = new NodeRegistry(new ManualClock(), 1000);
  r.attach('n1', { send: () => undefined, close: () => undefined });
  const rep = (c?: DataCacheStatus, tasks: string[] = []) => ResourceReport.fromPartial({ accepting: true, free: { cpus: 4, memoryBytes: GiB, gpuIndexes: [], taskSlots: 2 }, tasks: tasks.map((taskId) => ({ taskId })), ...(c ? { cache: c } : {}) });
  r.onReport('n1', rep());
  assert.equal(r.schedulable()[0]!.cache, undefined, 'no cache reported');
  r.onReport('n1', rep(status([A], 100, 50)));
  const c = r.schedulable()[0]!.cache!;
  assert.equal(c.room, 150, 'free + evictable');
  assert.ok(c.held.has(A));
  r.addPending('n1', 't1', { cpus: 0, memoryBytes: 0, gpus: 0, data: [{ sha256: A, size: 40 }, { sha256: B, size: 60 }] });
  const pend = r.schedulable()[0]!.cache!;
  assert.equal(pend.room, 90, 'the held data set takes no room, the missing one does');
  assert.ok(pend.coming?.has(B));
  r.onReport('n1', rep(status([A, B], 40, 50), ['t1']));
  assert.equal(r.schedulable()[0]!.cache!.room, 90, 'reported: the report\'s numbers stand alone');
  assert.equal(r.schedulable()[0]!.cache!.coming, undefined);
});

test('data progress is kept per task while ACCEPTED, and shown as a percentage', () => {
  const b = new DataProgressBoard();
  b.note('t', TaskState.TASK_STATE_ACCEPTED, { receivedBytes: 460 * MiB, totalBytes: GiB });
  assert.deepEqual(b.of('t', TaskState.TASK_STATE_ACCEPTED), { receivedBytes: 460 * MiB, totalBytes: GiB });
  assert.equal(b.of('t', TaskState.TASK_STATE_RUNNING), undefined, 'only an ACCEPTED task is fetching data');
  b.note('t', TaskState.TASK_STATE_ACCEPTED, undefined);
  assert.equal(b.size, 1, 'an update without progress keeps the last one');
  b.note('t', TaskState.TASK_STATE_PULLING, undefined);
  assert.equal(b.size, 0, 'dropped when the task moves on');
  assert.equal(describeDataProgress({ receivedBytes: 460 * MiB, totalBytes: GiB }), '44% (460.0 MiB of 1.0 GiB)');
  assert.equal(describeDataProgress({ receivedBytes: 5 * MiB, totalBytes: 0 }), '5.0 MiB so far');
  const info = TaskInfo.fromPartial({ taskId: 'ab', state: TaskState.TASK_STATE_ACCEPTED, attempt: 1, maxAttempts: 3, dataProgress: { receivedBytes: GiB / 2, totalBytes: GiB },
    spec: { image: 'x', data: [{ sha256: A, path: '/models', size: GiB, kind: DataKind.DATA_KIND_DIR, url: '' }] } });
  assert.match(formatTask(info), /^fetching data: 50% \(512\.0 MiB of 1\.0 GiB\)$/m);
  assert.match(formatTask(info), new RegExp(`^data {6}/models  ${A} \\(1\\.0 GiB, directory\\)$`, 'm'));
  assert.match(formatTaskTable([info]), /accepted .* fetching data 50%$/m);
});

test('a report listing removed data sets is answered with a drop_data command naming only those', () => {
  const sent: NodeCommand[] = [];
  const removed = new Set(['b'.repeat(64)]);
  const deps = {
    removedData: { removedAmong: (hex: readonly string[]) => hex.filter((h) => removed.has(h)) },
    registry: { sink: () => ({ send: (c: NodeCommand) => sent.push(c), close: () => undefined }) },
    log: silentLogger(),
  };
  const rep = (held: string[]) => ResourceReport.fromPartial({ cache: status(held, 0, 0) });
  assert.deepEqual(dropRemovedData('n1', rep([A]), deps), []);
  assert.equal(sent.length, 0, 'nothing removed: nothing sent');
  assert.deepEqual(dropRemovedData('n1', rep([A, B]), deps), [B]);
  assert.deepEqual(sent, [{ command: { $case: 'dropData', value: { sha256: [B] } } }]);
  assert.deepEqual(dropRemovedData('n1', ResourceReport.fromPartial({}), deps), [], 'no cache reported');
});
