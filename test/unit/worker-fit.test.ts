import { test } from 'node:test';
import assert from 'node:assert/strict';
import { recordHostile } from '../helpers/fault-ledger.js';
import { fitAssignment, freeCapacity, type NodeBudget, type Reservation } from '../../src/worker/fit.js';

const MiB = 1024 * 1024;
const budget: NodeBudget = {
  maxTasks: 3,
  cpus: 4,
  memoryBytes: 4096 * MiB,
  gpuIndexes: [0, 1, 2],
  taskDefaults: { cpus: 1, memoryBytes: 512 * MiB },
};
const limits = (l: Partial<{ cpus: number; memoryBytes: number; gpus: number }>) => ({ cpus: 0, memoryBytes: 0, pids: 0, gpus: 0, timeoutMs: 0, ...l });

test('an empty node takes a task and pins the lowest GPUs', () => {
  const d = fitAssignment(limits({ cpus: 2, memoryBytes: 1024 * MiB, gpus: 2 }), budget, []);
  assert.deepEqual(d, { ok: true, gpuIndexes: [0, 1], reservation: { cpus: 2, memoryBytes: 1024 * MiB, gpuIndexes: [0, 1] } });
});

test('GPU choice skips indexes held by running tasks', () => {
  const running: Reservation[] = [{ cpus: 1, memoryBytes: 0, gpuIndexes: [0, 2] }];
  const d = fitAssignment(limits({ gpus: 1 }), budget, running);
  assert.equal(d.ok, true);
  assert.deepEqual(d.ok && d.gpuIndexes, [1]);
  const no = fitAssignment(limits({ gpus: 2 }), budget, running);
  assert.deepEqual(no, { ok: false, reason: 'needs 2 GPUs, 1 free' });
  assert.deepEqual(fitAssignment(limits({ gpus: 4 }), budget, []), { ok: false, reason: 'needs 4 GPUs, node has 3' });
});

test('memory: readable reason with what is free', () => {
  const running: Reservation[] = [{ cpus: 1, memoryBytes: 3584 * MiB, gpuIndexes: [] }];
  assert.deepEqual(fitAssignment(limits({ memoryBytes: 2048 * MiB }), budget, running), { ok: false, reason: 'needs 2048 MiB memory, 512 MiB free' });
  assert.equal(fitAssignment(limits({ memoryBytes: 512 * MiB }), budget, running).ok, true);
});

test('cpu: fractional cores add up, over-asks are told apart', () => {
  const running: Reservation[] = [
    { cpus: 1.5, memoryBytes: 0, gpuIndexes: [] },
    { cpus: 1.5, memoryBytes: 0, gpuIndexes: [] },
  ];
  assert.deepEqual(fitAssignment(limits({ cpus: 1.5 }), budget, running), { ok: false, reason: 'needs 1.5 CPUs, 1 free' });
  assert.equal(fitAssignment(limits({ cpus: 1 }), budget, running).ok, true);
  assert.deepEqual(fitAssignment(limits({ cpus: 8 }), budget, []), { ok: false, reason: 'needs 8 CPUs, node offers at most 4' });
});

test('zero limits are accounted as the node defaults', () => {
  const running: Reservation[] = [{ cpus: 3.5, memoryBytes: 0, gpuIndexes: [] }];
  // default 1 CPU > 0.5 free
  assert.deepEqual(fitAssignment(limits({}), budget, running), { ok: false, reason: 'needs 1 CPUs, 0.5 free' });
  const d = fitAssignment(undefined, budget, []);
  assert.equal(d.ok && d.reservation.memoryBytes, 512 * MiB);
});

test('slots: the concurrency limit wins before resources', () => {
  const running: Reservation[] = [0, 1, 2].map(() => ({ cpus: 0.1, memoryBytes: MiB, gpuIndexes: [] }));
  assert.deepEqual(fitAssignment(limits({ cpus: 0.1 }), budget, running), { ok: false, reason: 'all 3 task slots are busy' });
});

test('free capacity for reports', () => {
  const running: Reservation[] = [
    { cpus: 0.1, memoryBytes: 100 * MiB, gpuIndexes: [1] },
    { cpus: 0.2, memoryBytes: 200 * MiB, gpuIndexes: [] },
  ];
  assert.deepEqual(freeCapacity(budget, running), { cpus: 3.7, memoryBytes: 3796 * MiB, gpuIndexes: [0, 2], taskSlots: 1 });
});

test('a task asking for more CPU, memory or GPUs than the node has is refused with the reason', () => {
  const asks: [string, ReturnType<typeof limits>, RegExp][] = [
    ['CPUs', limits({ cpus: 64 }), /^needs 64 CPUs, node offers at most 4$/],
    ['memory', limits({ memoryBytes: 64 * 1024 * MiB }), /^needs 65536 MiB memory, node offers at most 4096 MiB$/],
    ['GPUs', limits({ gpus: 8 }), /^needs 8 GPUs, node has 3$/],
  ];
  for (const [what, ask, reason] of asks) {
    const d = fitAssignment(ask, budget, []);
    recordHostile(`task spec: more ${what} than the node has`, d.ok);
    assert.ok(!d.ok && reason.test(d.reason), `${what}: ${JSON.stringify(d)}`);
  }
});
