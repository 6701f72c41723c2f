// FIFO placement: fit on every dimension, submission order, reasons for waiting tasks, exclusion.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { placeTasks, type QueuedTask, type SchedulableNode } from '../../src/master/scheduler.js';

const GiB = 1024 ** 3;
const node = (nodeId: string, free: Partial<SchedulableNode['free']> = {}, accepting = true): SchedulableNode => ({
  nodeId, label: nodeId, accepting, free: { cpus: 4, memoryBytes: 8 * GiB, gpus: 0, taskSlots: 4, ...free },
});
const task = (id: string, demand: Partial<QueuedTask['demand']> = {}, excludedNodes: string[] = []): QueuedTask => ({
  id, excludedNodes, demand: { cpus: 0, memoryBytes: 0, gpus: 0, ...demand },
});

test('no online node', () => {
  assert.deepEqual(placeTasks([task('t1')], []), { assignments: [], unplaced: [{ taskId: 't1', reason: 'no online node' }] });
});

test('places in FIFO order and shrinks the capacity it hands out', () => {
  const p = placeTasks([task('t1', { cpus: 3 }), task('t2', { cpus: 3 }), task('t3', { cpus: 1 })], [node('ab12')]);
  assert.deepEqual(p.assignments, [{ taskId: 't1', nodeId: 'ab12' }, { taskId: 't3', nodeId: 'ab12' }]);
  assert.deepEqual(p.unplaced, [{ taskId: 't2', reason: 'needs 3 CPUs; largest free: node ab12 with 1' }]);
});

test('the oldest task gets the scarce room', () => {
  const p = placeTasks([task('old', { gpus: 1 }), task('new', { gpus: 1 })], [node('g1', { gpus: 1 })]);
  assert.deepEqual(p.assignments, [{ taskId: 'old', nodeId: 'g1' }]);
  assert.equal(p.unplaced[0]!.taskId, 'new');
});

test('reasons name the dimension and the best node', () => {
  const nodes = [node('ab12', { cpus: 2 }), node('cd34', { cpus: 1 })];
  assert.equal(placeTasks([task('t', { cpus: 4 })], nodes).unplaced[0]!.reason, 'needs 4 CPUs; largest free: node ab12 with 2');
  assert.equal(placeTasks([task('t', { memoryBytes: 16 * GiB })], nodes).unplaced[0]!.reason, 'needs 16.0 GiB memory; largest free: node ab12 with 8.0 GiB');
  assert.equal(placeTasks([task('t', { gpus: 2 })], nodes).unplaced[0]!.reason, 'needs 2 GPUs; largest free: node ab12 with 0');
  assert.equal(placeTasks([task('t')], [node('a', { taskSlots: 0 })]).unplaced[0]!.reason, 'every online node is at its task limit');
  assert.equal(placeTasks([task('t')], [node('a', {}, false)]).unplaced[0]!.reason, 'no online node is accepting tasks (all draining or paused)');
  // Each dimension exists somewhere, but not together on one node.
  const split = [node('cpu', { cpus: 8, gpus: 0 }), node('gpu', { cpus: 1, gpus: 1 })];
  assert.match(placeTasks([task('t', { cpus: 4, gpus: 1 })], split).unplaced[0]!.reason, /no single node has 4 CPUs/);
});

test('a node that rejected a task is never offered it again', () => {
  const p = placeTasks([task('t', {}, ['a'])], [node('a'), node('b')]);
  assert.deepEqual(p.assignments, [{ taskId: 't', nodeId: 'b' }]);
  const none = placeTasks([task('t', {}, ['a'])], [node('a')]);
  assert.deepEqual(none.unplaced, [{ taskId: 't', reason: 'rejected by every accepting node (a)' }]);
});

test('spreads over the node with the most free slots, then CPUs', () => {
  const p = placeTasks([task('t1'), task('t2')], [node('a', { taskSlots: 1 }), node('b', { taskSlots: 2 })]);
  assert.deepEqual(p.assignments.map((a) => a.nodeId), ['b', 'a']);
});

test('zero limits only need a task slot', () => {
  const p = placeTasks([task('t')], [node('tiny', { cpus: 0, memoryBytes: 0, taskSlots: 1 })]);
  assert.deepEqual(p.assignments, [{ taskId: 't', nodeId: 'tiny' }]);
});
