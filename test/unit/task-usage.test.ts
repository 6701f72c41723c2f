// Per-task CPU share and memory from raw engine counters.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TaskUsageSampler, cpuPercentOfOneCore } from '../../src/runtime/task-usage.js';
import type { ContainerStats } from '../../src/runtime/container-engine.js';

const s = (cpuTotalNs: number, systemCpuNs: number, memoryBytes = 0, onlineCpus = 4): ContainerStats => ({ cpuTotalNs, systemCpuNs, onlineCpus, memoryBytes });

test('CPU share is the container delta over the host delta, scaled to one core', () => {
  // the host's 4 cores ran 4 s of CPU; the container used 1 s of it: one core busy
  assert.equal(cpuPercentOfOneCore(s(0, 0), s(1e9, 4e9)), 100);
  assert.equal(cpuPercentOfOneCore(s(1e9, 4e9), s(1.5e9, 8e9)), 50);
  assert.equal(cpuPercentOfOneCore(undefined, s(1e9, 4e9)), 0, 'no previous sample, no share');
  assert.equal(cpuPercentOfOneCore(s(5e9, 4e9), s(1e9, 8e9)), 0, 'a restarted counter gives 0, not a negative share');
  assert.equal(cpuPercentOfOneCore(s(1e9, 4e9), s(2e9, 4e9)), 0, 'no host time passed');
});

test('the sampler keeps the previous sample per container and drops exited ones', async () => {
  const counters = new Map<string, ContainerStats>([
    ['c1', s(0, 0, 100)],
    ['c2', s(0, 0, 200)],
  ]);
  const sampler = new TaskUsageSampler(async (id) => {
    const c = counters.get(id);
    if (!c) throw new Error(`no such container: ${id}`);
    return c;
  });
  const running = [
    { taskId: 'b', containerId: 'c2' },
    { taskId: 'a', containerId: 'c1' },
  ];
  assert.deepEqual(await sampler.sample(running), [
    { taskId: 'a', cpuPercent: 0, memoryBytes: 100 },
    { taskId: 'b', cpuPercent: 0, memoryBytes: 200 },
  ]);
  counters.set('c1', s(2e9, 4e9, 150));
  counters.delete('c2'); // exited between the list and the stats call
  assert.deepEqual(await sampler.sample(running), [{ taskId: 'a', cpuPercent: 200, memoryBytes: 150 }]);
});
