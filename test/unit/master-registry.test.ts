// Node presence with a ManualClock: online while reports arrive, offline after 3 missed
// intervals; capacity minus assignments not reflected by a report yet.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../src/common/clock.js';
import { NodeRegistry } from '../../src/master/registry.js';
import { ResourceReport } from '../../src/protocol/gen/hivemind/v1/common.js';

const report = (taskIds: string[] = [], slots = 2) =>
  ResourceReport.fromPartial({ accepting: true, free: { cpus: 4, memoryBytes: 1000, gpuIndexes: [0], taskSlots: slots }, tasks: taskIds.map((taskId) => ({ taskId })) });

test('offline after 3 missed report intervals, online again on the next report', () => {
  const clock = new ManualClock();
  const r = new NodeRegistry(clock, 1000);
  assert.equal(r.onReport('n1', report()), true);
  clock.advance(2999);
  assert.deepEqual(r.sweep(), []);
  r.onReport('n1', report());
  clock.advance(3000);
  assert.deepEqual(r.sweep(), []);
  assert.equal(r.isOnline('n1'), true);
  clock.advance(1);
  assert.deepEqual(r.sweep(), ['n1']);
  assert.equal(r.isOnline('n1'), false);
  assert.deepEqual(r.sweep(), [], 'reported once');
  assert.equal(r.onReport('n1', report()), true);
  assert.equal(r.isOnline('n1'), true);
});

test('a configured node timeout replaces the 3 report intervals', () => {
  const clock = new ManualClock();
  const r = new NodeRegistry(clock, 1000, 10_000);
  assert.equal(r.offlineAfterMs, 10_000);
  r.onReport('n1', report());
  clock.advance(10_000);
  assert.deepEqual(r.sweep(), [], 'silent for 10 reports but within the timeout');
  clock.advance(1);
  assert.deepEqual(r.sweep(), ['n1']);
  assert.equal(new NodeRegistry(clock, 1000).offlineAfterMs, 3000, 'default: 3 report intervals');
});

test('only online nodes with a command stream are schedulable', () => {
  const clock = new ManualClock();
  const r = new NodeRegistry(clock, 1000);
  r.onReport('n1', report());
  assert.deepEqual(r.schedulable(), []);
  const detach = r.attach('n1', { send: () => undefined, close: () => undefined });
  assert.equal(r.schedulable().length, 1);
  clock.advance(3001);
  r.sweep();
  assert.deepEqual(r.schedulable(), []);
  r.onReport('n1', report());
  detach();
  assert.deepEqual(r.schedulable(), []);
});

test('assignments count against capacity until a later report reflects them', () => {
  const clock = new ManualClock();
  const r = new NodeRegistry(clock, 1000);
  r.attach('n1', { send: () => undefined, close: () => undefined });
  r.onReport('n1', report());
  r.addPending('n1', 't1', { cpus: 1, memoryBytes: 100, gpus: 1 });
  assert.deepEqual(r.schedulable()[0]!.free, { cpus: 3, memoryBytes: 900, gpus: 0, taskSlots: 1 });
  // A report that does not show t1 and comes before the node accepted it changes nothing.
  clock.advance(10);
  r.onReport('n1', report());
  assert.equal(r.schedulable()[0]!.free.taskSlots, 1);
  // Accepted, then a later report: its numbers include t1.
  r.markAccepted('n1', 't1');
  clock.advance(10);
  r.onReport('n1', report([], 1));
  assert.equal(r.schedulable()[0]!.free.taskSlots, 1);
  r.addPending('n1', 't2', { cpus: 0, memoryBytes: 0, gpus: 0 });
  r.onReport('n1', report(['t2'], 0));
  assert.equal(r.schedulable()[0]!.free.taskSlots, 0, 'a report listing the task reflects it');
});

test('forgetting a removed node ends its command stream with the reason', () => {
  const r = new NodeRegistry(new ManualClock(), 1000);
  const closed: Error[] = [];
  r.attach('n1', { send: () => undefined, close: (e) => void closed.push(e) });
  r.onReport('n1', report());
  r.forget('n1', new Error('removed by the operator'));
  assert.deepEqual(closed.map((e) => e.message), ['removed by the operator']);
  assert.deepEqual(r.schedulable(), []);
  assert.equal(r.sink('n1'), undefined);
});

test('after a master restart a node holding tasks has the restart grace, not one report period, to return', () => {
  const clock = new ManualClock();
  const r = new NodeRegistry(clock, 1000); // offline after 3 s
  r.awaitReturn('n1', 60_000);
  clock.advance(30_000);
  assert.deepEqual(r.sweep(), [], 'still expected back after 30 s (worker backoff reaches 30 s)');
  clock.advance(30_001);
  assert.deepEqual(r.sweep(), ['n1'], 'given up after the grace');
});
